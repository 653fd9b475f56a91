"""Criticality shedding: a concurrency limit, fixed or adaptive, that sheds the least
critical requests first. Sans-I/O; the twin of the Rust core's ``seawall_policy::shed``,
which the inbound sidecar keeps in front of its app (``services.<name>.shedding``).

A request takes a slot while fewer than the limit are in flight and none is queued.
Otherwise it queues, up to ``max_waiting`` requests, for at most ``max_wait`` seconds
(never past its deadline: the adapter's part). The queue is ordered by criticality,
then arrival: a freed slot goes to the most critical request that waited longest. A
request that finds the queue full takes the place of the least critical, newest
request queued when that one is less critical than itself (that one is shed);
otherwise it is shed itself. So under overload the lowest criticality absorbs the
shedding.

The adaptive limit is a gradient in the manner of Netflix's concurrency-limits
(``Gradient2Limit``): each finished request's latency is compared with a long-term
average (a plain mean over the first ``warmup`` samples, then an exponential average
over ``long_window``). ``gradient = clamp(tolerance * average / latency, 0.5, 1)``;
the new limit is ``limit * gradient + sqrt(limit)``, of which ``smoothing`` is taken,
within ``[min_limit, max_limit]``. While latency holds the limit grows by about its
square root per step; when the app slows down (requests queue inside it) it shrinks,
to no less than half a step. A service using under half its limit is not measured
against it. A latency under half the average (a recovery) pulls the average down 5%.

Both runtimes do the same float operations in the same order: the shared conformance
corpus (``tests/conformance/corpus/shed``) checks them step by step, bit for bit.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from ._validate import require_int, require_number, require_seconds

__all__ = ["Admission", "Criticality", "LoadShedder", "ShedSettings"]


class Criticality(StrEnum):
    """How much a request matters when its service is overloaded, most critical first
    (Google's levels). Carried by ``x-seawall-criticality``."""

    CRITICAL_PLUS = "critical_plus"
    CRITICAL = "critical"
    SHEDDABLE_PLUS = "sheddable_plus"
    SHEDDABLE = "sheddable"

    @property
    def rank(self) -> int:
        """0 for the most critical, 3 for the least."""
        return _LEVELS.index(self)

    @classmethod
    def parse(cls, name: str) -> Criticality:
        """A level by name, in any case; ``ValueError`` naming the levels otherwise."""
        wanted = name.strip().lower()
        for level in _LEVELS:
            if level.value == wanted:
                return level
        names = ", ".join(level.value for level in _LEVELS)
        raise ValueError(f"criticality {name!r} is not one of {names}")


_LEVELS: tuple[Criticality, ...] = tuple(Criticality)


@dataclass(frozen=True, slots=True)
class Admission:
    """What became of a request that asked for a slot: ``admitted`` (it holds one:
    release it), ``queued`` (it waits under ``ticket``; ``evicted``: the ticket of a
    less critical request it displaced, shed now) or ``shed``."""

    kind: Literal["admitted", "queued", "shed"]
    ticket: int | None = None
    evicted: int | None = None


@dataclass(slots=True)
class _Waiter:
    ticket: int
    criticality: Criticality
    since: float


@dataclass(slots=True)
class _Counts:
    admitted: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    shed: list[int] = field(default_factory=lambda: [0, 0, 0, 0])


_OWNER = "LoadShedder"


@dataclass(frozen=True, slots=True)
class ShedSettings:
    """Validated settings of a :class:`LoadShedder` (its constructor's keywords).

    ``limit``: a fixed limit; when ``None``, the gradient's settings apply.
    """

    limit: int | None = None
    initial_limit: float = 20.0
    min_limit: float = 1.0
    max_limit: float = 1000.0
    smoothing: float = 0.2
    tolerance: float = 1.5
    long_window: int = 600
    warmup: int = 10
    max_waiting: int = 50
    max_wait: float = 0.1

    def __post_init__(self) -> None:
        require_int(_OWNER, "limit", self.limit, minimum=1, allow_none=True)
        if self.limit is None:
            require_number(_OWNER, "min_limit", self.min_limit, ge=1)
            require_number(_OWNER, "max_limit", self.max_limit, ge=self.min_limit)
            require_number(
                _OWNER, "initial_limit", self.initial_limit, ge=self.min_limit, le=self.max_limit
            )
            require_number(_OWNER, "smoothing", self.smoothing, gt=0, le=1)
            require_number(_OWNER, "tolerance", self.tolerance, ge=1)
            require_int(_OWNER, "long_window", self.long_window, minimum=1)
            require_int(_OWNER, "warmup", self.warmup, minimum=1)
        require_int(_OWNER, "max_waiting", self.max_waiting, minimum=0)
        require_seconds(_OWNER, "max_wait", self.max_wait, allow_zero=True)
        # the limit's arithmetic is in floats, as the Rust twin's (bit for bit)
        for name in ("initial_limit", "min_limit", "max_limit", "smoothing", "tolerance",
                     "max_wait"):  # fmt: skip
            object.__setattr__(self, name, float(getattr(self, name)))


class LoadShedder:
    """The limit and the queue (see the module's documentation). Not thread-safe: an
    adapter holds its own lock around each call (never around the request itself).

    ``limit``: a fixed limit; when ``None``, the gradient's settings apply
    (``initial_limit``, ``min_limit``, ``max_limit``, ``smoothing``, ``tolerance``,
    ``long_window``, ``warmup``); see :class:`ShedSettings`.
    """

    def __init__(
        self,
        limit: int | None = None,
        *,
        initial_limit: float = 20.0,
        min_limit: float = 1.0,
        max_limit: float = 1000.0,
        smoothing: float = 0.2,
        tolerance: float = 1.5,
        long_window: int = 600,
        warmup: int = 10,
        max_waiting: int = 50,
        max_wait: float = 0.1,
    ) -> None:
        self.settings = ShedSettings(
            limit,
            float(initial_limit),
            float(min_limit),
            float(max_limit),
            float(smoothing),
            float(tolerance),
            long_window,
            warmup,
            max_waiting,
            float(max_wait),
        )
        self._limit = float(limit) if limit is not None else self.settings.initial_limit
        self._in_flight = 0
        self._queue: deque[_Waiter] = deque()
        self._next_ticket = 0
        self._long = 0.0
        self._samples = 0
        self._counts = _Counts()

    # ------------------------------------------------------------------ reading

    @property
    def limit(self) -> float:
        """The limit now (the adaptive one is a real number; its slots are its floor,
        at least 1)."""
        return self._limit

    @property
    def adaptive(self) -> bool:
        return self.settings.limit is None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def counts(self) -> dict[str, dict[str, int]]:
        """Requests admitted and shed since the shedder was made, by criticality."""
        return {
            "admitted": {c.value: n for c, n in zip(_LEVELS, self._counts.admitted, strict=True)},
            "shed": {c.value: n for c, n in zip(_LEVELS, self._counts.shed, strict=True)},
        }

    def _slots(self) -> int:
        return max(1, math.floor(self._limit))

    # ------------------------------------------------------------------ events

    def acquire(self, now: float, criticality: Criticality | str) -> Admission:
        """A request of this criticality asks for a slot at ``now``."""
        level = (
            criticality if isinstance(criticality, Criticality) else Criticality.parse(criticality)
        )
        rank = level.rank
        if self._in_flight < self._slots() and not self._queue:
            self._in_flight += 1
            self._counts.admitted[rank] += 1
            return Admission("admitted")
        evicted = None
        if len(self._queue) >= self.settings.max_waiting:
            last = self._queue[-1] if self._queue else None
            if last is not None and last.criticality.rank > rank:
                evicted = last.ticket
                self._counts.shed[last.criticality.rank] += 1
                self._queue.pop()
            else:
                self._counts.shed[rank] += 1
                return Admission("shed")
        ticket = self._next_ticket
        self._next_ticket += 1
        at = next(
            (i for i, w in enumerate(self._queue) if w.criticality.rank > rank), len(self._queue)
        )
        self._queue.insert(at, _Waiter(ticket, level, now))
        return Admission("queued", ticket, evicted)

    def release(self, latency: float | None = None) -> list[int]:
        """A request that held a slot ended; ``latency``: how long the app took to
        answer it (``None``: nothing worth measuring). Returns the tickets granted the
        freed slot (or new ones, when the limit grew)."""
        busy = self._in_flight
        self._in_flight = max(0, self._in_flight - 1)
        measured = latency is not None and math.isfinite(latency) and latency > 0.0
        if self.settings.limit is None and latency is not None and measured:
            self._measure(float(latency), busy)
        return self._grant()

    def _measure(self, latency: float, busy: int) -> None:
        c = self.settings
        self._samples += 1
        if self._samples <= c.warmup:
            n = float(self._samples)
            self._long = self._long * ((n - 1.0) / n) + latency / n
        else:
            k = 2.0 / (float(c.long_window) + 1.0)
            self._long = self._long * (1.0 - k) + latency * k
        if self._long / latency > 2.0:
            self._long *= 0.95
        if float(busy) < self._limit / 2.0:
            return
        gradient = min(max(c.tolerance * self._long / latency, 0.5), 1.0)
        grown = self._limit * gradient + math.sqrt(self._limit)
        smoothed = self._limit * (1.0 - c.smoothing) + grown * c.smoothing
        self._limit = min(max(smoothed, c.min_limit), c.max_limit)

    def _grant(self) -> list[int]:
        granted = []
        while self._in_flight < self._slots() and self._queue:
            w = self._queue.popleft()
            self._in_flight += 1
            self._counts.admitted[w.criticality.rank] += 1
            granted.append(w.ticket)
        return granted

    def expired(self, now: float) -> list[int]:
        """The queued tickets whose wait ran out by ``now``: shed, out of the queue."""
        gone = []
        kept: deque[_Waiter] = deque()
        for w in self._queue:
            if now - w.since < self.settings.max_wait:
                kept.append(w)
            else:
                self._counts.shed[w.criticality.rank] += 1
                gone.append(w.ticket)
        self._queue = kept
        return gone

    def cancel(self, ticket: int) -> bool:
        """A queued request gives up: ``True`` if it was still queued (shed now),
        ``False`` if it was granted a slot already (release it) or shed before."""
        for i, w in enumerate(self._queue):
            if w.ticket == ticket:
                del self._queue[i]
                self._counts.shed[w.criticality.rank] += 1
                return True
        return False

    def reconfigure(self, **settings: Any) -> tuple[list[int], list[int]]:
        """New settings for a live shedder (the constructor's keywords, every one unset
        back to its default): what is in flight and queued carries over; an adaptive
        limit stays adaptive with what it learnt (within the new bounds), any other
        change starts from the new initial value. Returns the tickets granted, and those
        a shorter queue shed (its least critical, newest)."""
        was_adaptive = self.settings.limit is None
        new = ShedSettings(**settings)
        self.settings = new
        if was_adaptive and new.limit is None:
            self._limit = min(max(self._limit, float(new.min_limit)), float(new.max_limit))
        else:
            self._limit = float(new.limit) if new.limit is not None else float(new.initial_limit)
        shed = []
        while len(self._queue) > new.max_waiting:
            w = self._queue.pop()
            self._counts.shed[w.criticality.rank] += 1
            shed.append(w.ticket)
        return self._grant(), shed
