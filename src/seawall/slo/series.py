"""One objective's events over time: counters scraped from sidecars, as buckets.

An SLO counts *events*: requests (``total``) and the bad ones among them
(``bad``: answered 5xx, or slower than the latency threshold). Each sidecar
that measures the SLO exposes both as cumulative counters; every scrape is
one :meth:`EventSeries.observe` of a *source* (a sidecar) at a time ``t``
(Unix seconds, from the scraper's clock). The series keeps the increases,
summed over its sources, in buckets of ``resolution`` seconds, with running
sums, so the events of any window are two lookups
(:meth:`EventSeries.events`), whatever its length.

The counters' rules, the same as Prometheus's ``increase()`` where it has one:

* **The first sample of a source is a baseline.** What it counted before
  was counted before the series knew it; it is not charged to any window.
* **A counter that went down was reset** (the sidecar restarted): its new
  value is what it counted since, from zero. What it counted between the
  last sample and the restart is lost, and the time of that step is
  recorded as *missing* for that source.
* **A step longer than ``max_gap``** (scrapes missed) still carries exact
  counts, cumulative counters lose nothing, but not when they happened: the
  increase is spread evenly over the step's buckets. With a reset in it,
  the whole step is missing.
* **A source that stops answering** is missing from its last sample on (at
  :meth:`EventSeries.events`, counted up to ``now``) until it answers again
  or is :meth:`forgotten <EventSeries.forget>` (it left the registry: gone,
  not missing). So a sidecar that disappears never looks like a perfect
  minute: its silence lowers the window's *coverage*, and the evaluator
  (:mod:`seawall.slo.evaluate`) does not take a window without data for a
  good one.

Sans-I/O: the scraper tells it samples and the time; nothing here reads a
clock or a socket.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass

__all__ = ["EventSeries", "Events"]


@dataclass(frozen=True, slots=True)
class Events:
    """The events of one window: requests, the bad ones, and how much of the window the
    sources' samples cover (1.0: every source, all the time)."""

    total: float
    bad: float
    coverage: float

    @property
    def good_ratio(self) -> float | None:
        """The SLI of the window: good over total; ``None`` without any event."""
        return None if self.total <= 0 else (self.total - self.bad) / self.total


@dataclass(slots=True)
class _Source:
    t: float
    total: float
    bad: float
    since: float
    """When the source's samples began (or began again after it was silent)."""


class EventSeries:
    """The events of one objective, from any number of sources; see the module."""

    def __init__(self, resolution: float = 60.0, max_gap: float | None = None) -> None:
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0 seconds, got {resolution!r}")
        self.resolution = resolution
        self.max_gap = 3 * resolution if max_gap is None else max_gap
        if not self.max_gap > 0:
            raise ValueError(f"max_gap must be > 0 seconds, got {max_gap!r}")
        self._sources: dict[str, _Source] = {}
        self._first: int | None = None  # the index of bucket 0
        # running sums: _cum_x[i] is the sum of buckets < i (so one more entry than buckets)
        self._cum_total = array("d", [0.0])
        self._cum_bad = array("d", [0.0])
        self._cum_missing = array("d", [0.0])  # source-seconds without data
        self._cum_sources = array("d", [0.0])  # source-seconds expected (coverage's unit)

    # -- input --------------------------------------------------------------

    def observe(self, source: str, t: float, total: float, bad: float) -> None:
        """A scrape of ``source`` at ``t``: its cumulative ``total`` and ``bad`` counters.

        Raises :class:`ValueError` for a sample older than the source's last, a
        negative counter, or ``bad > total``: the scraper's bug, never stored.
        """
        if not (math.isfinite(t) and math.isfinite(total) and math.isfinite(bad)):
            raise ValueError(f"{source}: a sample must be finite, got ({t}, {total}, {bad})")
        if total < 0 or bad < 0 or bad > total:
            raise ValueError(f"{source}: counters need 0 <= bad <= total, got {bad} of {total}")
        last = self._sources.get(source)
        if last is None:
            self._sources[source] = _Source(t, total, bad, t)
            return
        if t <= last.t:
            raise ValueError(f"{source}: sample at {t} is not after the last one ({last.t})")
        reset = total < last.total or bad < last.bad
        d_total, d_bad = (total, bad) if reset else (total - last.total, bad - last.bad)
        # a long step carries exact counts at unknown times: spread over it; after a reset
        # only the counts since the restart are known, and the step is missing
        self._spread(last.t, t, d_total, d_bad, missing=reset)
        last.t, last.total, last.bad = t, total, bad

    def forget(self, source: str) -> None:
        """``source`` left (deregistered): from now on it is gone, not missing."""
        self._sources.pop(source, None)

    @property
    def sources(self) -> list[str]:
        return sorted(self._sources)

    # -- output -------------------------------------------------------------

    def events(self, start: float, end: float, now: float | None = None) -> Events:
        """The events in ``[start, end)`` (to the bucket: see :meth:`_between`), and their
        coverage.

        ``now`` (by default ``end``) counts the sources silent for more than
        ``max_gap`` as missing from their last sample to ``now``.
        """
        if end < start:
            raise ValueError(f"end ({end}) must be >= start ({start})")
        total = self._between(self._cum_total, start, end)
        bad = self._between(self._cum_bad, start, end)
        missing = self._between(self._cum_missing, start, end)
        expected = self._between(self._cum_sources, start, end)
        now = end if now is None else now
        for source in self._sources.values():
            if now - source.t > self.max_gap:  # silent: missing since its last sample
                lo, hi = max(start, source.t), min(end, now)
                if hi > lo:
                    missing += hi - lo
                    expected += hi - lo
        coverage = 1.0 if expected <= 0 else max(0.0, 1.0 - missing / expected)
        return Events(total, min(bad, total), coverage)

    # -- buckets ------------------------------------------------------------

    def _index(self, t: float) -> int:
        return math.floor(t / self.resolution)

    def _grow_to(self, index: int) -> None:
        """Make bucket ``index`` exist (buckets before the first are never made)."""
        if self._first is None:
            self._first = index
        length = len(self._cum_total) - 1
        missing = index - self._first + 1 - length
        if missing > 0:
            for cum in (self._cum_total, self._cum_bad, self._cum_missing, self._cum_sources):
                cum.extend([cum[-1]] * missing)

    def _spread(self, t0: float, t1: float, total: float, bad: float, *, missing: bool) -> None:
        """Add counts evenly over ``(t0, t1]``, its seconds as expected (and missing)."""
        first, last = self._index(t0), self._index(t1)
        if self._first is None:
            self._first = first
        elif first < self._first:  # a source's first step began before any other's
            empty = array("d", [0.0]) * (self._first - first)
            for cum in (self._cum_total, self._cum_bad, self._cum_missing, self._cum_sources):
                cum[0:0] = empty
            self._first = first
        self._grow_to(last)
        span = t1 - t0
        adds: list[tuple[float, float, float, float]] = []
        for index in range(first, last + 1):
            seconds = min(t1, (index + 1) * self.resolution) - max(t0, index * self.resolution)
            share = seconds / span
            adds.append((total * share, bad * share, seconds if missing else 0.0, seconds))
        # one pass over the running sums from the first bucket touched (recent ones: short)
        at = first - self._first
        sums = [0.0, 0.0, 0.0, 0.0]
        cums = (self._cum_total, self._cum_bad, self._cum_missing, self._cum_sources)
        for i in range(at + 1, len(self._cum_total)):
            if i - at - 1 < len(adds):
                for k, value in enumerate(adds[i - at - 1]):
                    sums[k] += value
            for k, cum in enumerate(cums):
                cum[i] += sums[k]

    def _between(self, cum: array[float], start: float, end: float) -> float:
        """The sum over the buckets of ``[start, end)``, each end rounded up to a bucket's
        edge: a window ending now includes the bucket now fills (its data so far), and
        keeps its length by leaving out the part-bucket at its start."""
        if self._first is None:
            return 0.0
        first, n = self._first, len(cum) - 1

        def at(t: float) -> int:
            return min(max(math.ceil(t / self.resolution) - first, 0), n)

        return cum[at(end)] - cum[at(start)]
