"""The sidecar's operator log, Python side: one line per event, text or JSON lines.

The Rust core writes the data plane's events (breakers, ejections, budgets,
bulkheads, config swaps: ``crates/seawall-proxy/src/events.rs``); this module
writes the rest (the process, reloads, certificates, the control plane, the
registry) in the same two formats, so that one stream reads as one log:

* text (the default): ``<time> <service> <event> destination=<d> key=value ...``;
* JSON lines (``seawall sidecar --log-format json``): one object per line with
  ``time``, ``service``, ``event``, ``destination`` and the figures.

Events that can repeat fast (a control plane lost again and again) are
rate-limited per (event, destination) as in the core: a burst of
:data:`BURST`, then one line per :data:`INTERVAL` seconds, each saying how
many like it were ``dropped`` since the last one (:class:`Limiter`, a state
machine told the time). An operator's action (a reload) or the process's
life (serving, draining) is always written.

Imports are few on purpose: this runs in the lean long-running process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TextIO

__all__ = ["BURST", "FORMATS", "INTERVAL", "EventLog", "Limiter"]

FORMATS = ("text", "json")
BURST = 5
"""Lines allowed per (event, destination) at once."""
INTERVAL = 10.0
"""Seconds between two lines of one (event, destination) once its burst is spent."""


class Limiter:
    """Per-key token buckets of :data:`BURST`, one token back every :data:`INTERVAL`,
    kept as a theoretical arrival time (GCRA, as the core's ``Limiter``)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str], list[float]] = {}  # [tat, dropped]

    def decide(self, key: tuple[str, str], now: float) -> int | None:
        """``None``: drop this one; else write it, and this many like it were dropped."""
        bucket = self._keys.setdefault(key, [now, 0])
        tat = max(bucket[0], now)
        if tat - now > (BURST - 1) * INTERVAL:
            bucket[1] += 1
            return None
        bucket[0] = tat + INTERVAL
        dropped, bucket[1] = int(bucket[1]), 0
        return dropped


def _utc(wall: float) -> str:
    seconds = int(wall)
    millis = int((wall - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in ' "=\n'):
        return value
    return json.dumps(value)


class EventLog:
    """Where one sidecar process writes its events."""

    def __init__(
        self,
        service: str,
        fmt: str = "text",
        *,
        out: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format {fmt!r}: must be text or json")
        self.service = service
        self.format = fmt
        self._out = out
        self._clock = clock
        self._wall = wall
        self._limiter = Limiter()

    def event(
        self, event: str, destination: str = "", *, limited: bool = False, **figures: Any
    ) -> None:
        """One event: ``event`` names it (``certificate_rotated``...). ``limited``: one
        that may repeat fast (a connection lost again and again) is rate-limited;
        the rest (operators' actions, the process's life) are always written."""
        if limited:
            dropped = self._limiter.decide((event, destination), self._clock())
            if dropped is None:
                return
            if dropped:
                figures["dropped"] = dropped
        self._write(self.line(event, destination, figures))

    def message(self, text: str, event: str = "message") -> None:
        """A line of prose (startup, reloads, errors), as an event with a ``message``."""
        self.event(event, message=text)

    def line(self, event: str, destination: str, figures: dict[str, Any]) -> str:
        """One line in this log's format (ending with a newline)."""
        when = _utc(self._wall())
        if self.format == "json":
            doc = {"time": when, "service": self.service, "event": event,
                   "destination": destination, **figures}  # fmt: skip
            return json.dumps(doc) + "\n"
        parts = [when, self.service, event, f"destination={destination}"]
        parts += [f"{k}={_text_value(v)}" for k, v in figures.items()]
        return " ".join(parts) + "\n"

    def _write(self, line: str) -> None:
        out = self._out or sys.stderr
        out.write(line)
        out.flush()
