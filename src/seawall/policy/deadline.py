"""Deadlines carried in a context variable.

Inside a process a deadline is an absolute monotonic time (on the clock the
policies are given); across the network it travels as time remaining, in the
``x-seawall-deadline-ms`` header. Nested scopes take the sooner deadline.
"""

from __future__ import annotations

from contextvars import ContextVar

from .clock import MONOTONIC, Clock

__all__ = ["current_deadline", "remaining"]

_DEADLINE: ContextVar[float | None] = ContextVar("seawall_deadline", default=None)


def current_deadline() -> float | None:
    """The absolute monotonic deadline in force in this context, or ``None``."""
    return _DEADLINE.get()


def remaining(clock: Clock = MONOTONIC) -> float | None:
    """Seconds left before the current deadline (may be negative), or ``None`` if none is set."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    return deadline - clock()
