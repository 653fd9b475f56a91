"""Clocks and sleeps, injected into every policy.

A policy never reads the time itself: it is told ``now`` by its wrapper, which
reads it from a :data:`Clock` (any zero-argument callable returning monotonic
seconds as a float). Sleeping goes through a sleeper the wrapper is given, so
tests replace both with a :class:`FakeClock` and run without real waiting.

Only monotonic clocks are valid: wall-clock time jumps (NTP, DST, an operator)
would open breakers early or stretch backoff.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeAlias

from ._validate import require_seconds

__all__ = [
    "AsyncSleep",
    "Clock",
    "FakeClock",
    "MONOTONIC",
    "Sleep",
    "async_sleep",
    "sync_sleep",
]

Clock: TypeAlias = Callable[[], float]
"""A monotonic clock: returns seconds as a float, never going backwards."""

Sleep: TypeAlias = Callable[[float], None]
"""A blocking sleep of the given number of seconds."""

AsyncSleep: TypeAlias = Callable[[float], Awaitable[None]]
"""An awaitable sleep of the given number of seconds."""

MONOTONIC: Clock = time.monotonic
"""The default clock, :func:`time.monotonic`; also the clock of asyncio's loop."""

sync_sleep: Sleep = time.sleep
"""The default blocking sleep."""


async def async_sleep(seconds: float) -> None:
    """The default awaitable sleep (:func:`asyncio.sleep`)."""
    await asyncio.sleep(seconds)


class FakeClock:
    """A manually driven monotonic clock for deterministic tests.

    Call it to read the time. ``advance(seconds)`` moves it forward;
    :meth:`sleep` and :meth:`async_sleep` advance it instead of waiting and
    record each requested delay in :attr:`sleeps`, so tests can assert the
    exact backoff schedule. Thread-safe.

    >>> clock = FakeClock()
    >>> clock.advance(1.5)
    >>> clock()
    1.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            require_seconds(
                "FakeClock.advance", "seconds", seconds, allow_zero=True, allow_inf=True
            )
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Record the delay and advance the clock by it, without waiting."""
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    async def async_sleep(self, seconds: float) -> None:
        """Record the delay, advance the clock by it, and yield to the loop once."""
        self.sleep(seconds)
        await asyncio.sleep(0)
