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

__all__ = ["EventSeries", "Events", "SeriesChanges"]


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


@dataclass(frozen=True, slots=True)
class SeriesChanges:
    """What an :class:`EventSeries` changed since it was last asked: the buckets from the
    lowest one changed on, per tier (index, (total, bad, missing, expected)), where each
    tier now begins (older rows are gone), and every source's last sample."""

    fine_first: int | None
    coarse_first: int | None
    folded_to: float
    fine: list[tuple[int, tuple[float, float, float, float]]]
    coarse: list[tuple[int, tuple[float, float, float, float]]]
    sources: dict[str, tuple[float, float, float]]


@dataclass(slots=True)
class _Source:
    t: float
    total: float
    bad: float
    since: float
    """When the source's samples began (or began again after it was silent)."""


class EventSeries:
    """The events of one objective, from any number of sources; see the module."""

    def __init__(
        self,
        resolution: float = 60.0,
        max_gap: float | None = None,
        *,
        coarse: float = 600.0,
        fine_span: float = 86_400.0,
        keep: float = 33 * 86_400.0,
    ) -> None:
        if not resolution > 0:
            raise ValueError(f"resolution must be > 0 seconds, got {resolution!r}")
        if not (coarse >= resolution and coarse % resolution == 0):
            raise ValueError(f"coarse must be a multiple of resolution, got {coarse!r}")
        if not (fine_span >= coarse and keep >= fine_span):
            raise ValueError(
                f"need resolution <= coarse <= fine_span <= keep, got {fine_span!r}, {keep!r}"
            )
        self.resolution = resolution
        self.max_gap = 3 * resolution if max_gap is None else max_gap
        if not self.max_gap > 0:
            raise ValueError(f"max_gap must be > 0 seconds, got {max_gap!r}")
        self.fine_span = fine_span
        self.keep = keep
        self._sources: dict[str, _Source] = {}
        self._fine = _Tier(resolution)
        self._coarse = _Tier(coarse)
        self._folded_to = -math.inf

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
        self._compact(t)

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
        total, bad, missing, expected = self._sums(start, end)
        now = end if now is None else now
        for source in self._sources.values():
            if now - source.t > self.max_gap:  # silent: missing since its last sample
                lo, hi = max(start, source.t), min(end, now)
                if hi > lo:
                    missing += hi - lo
                    expected += hi - lo
        coverage = 1.0 if expected <= 0 else max(0.0, 1.0 - missing / expected)
        return Events(total, min(bad, total), coverage)

    # -- keeping it -----------------------------------------------------------

    def take_changes(self) -> SeriesChanges:
        """What changed since the last call, for a store to write (see :class:`SeriesChanges`)."""
        return SeriesChanges(
            fine_first=self._fine.first,
            coarse_first=self._coarse.first,
            folded_to=self._folded_to,
            fine=self._fine.take_changes(),
            coarse=self._coarse.take_changes(),
            sources={k: (v.t, v.total, v.bad) for k, v in self._sources.items()},
        )

    def restore(
        self,
        fine: list[tuple[int, _Values]],
        coarse: list[tuple[int, _Values]],
        folded_to: float,
        sources: dict[str, tuple[float, float, float]],
    ) -> None:
        """The state a store kept (its buckets and each source's last sample)."""
        self._fine.load(fine)
        self._coarse.load(coarse)
        self._folded_to = folded_to
        self._sources = {k: _Source(t, total, bad, t) for k, (t, total, bad) in sources.items()}

    # -- tiers --------------------------------------------------------------

    @property
    def _boundary(self) -> float:
        """Where the fine tier begins once buckets were folded into the coarse one (a
        coarse edge); before that, the fine tier takes everything."""
        return self._folded_to

    def _sums(self, start: float, end: float) -> tuple[float, float, float, float]:
        boundary = self._boundary
        if start >= boundary:
            return self._fine.between(start, end)
        older = self._coarse.between(start, min(end, boundary))
        if end <= boundary:
            return older
        newer = self._fine.between(boundary, end)
        return (older[0] + newer[0], older[1] + newer[1], older[2] + newer[2],
                older[3] + newer[3])  # fmt: skip

    def _spread(self, t0: float, t1: float, total: float, bad: float, *, missing: bool) -> None:
        """Add counts evenly over ``(t0, t1]``; the part older than the fine tier goes to
        the coarse one."""
        boundary = self._boundary
        if t0 < boundary < t1:  # a step across the tiers: each its share
            share = (boundary - t0) / (t1 - t0)
            self._coarse.spread(t0, boundary, total * share, bad * share, missing=missing)
            self._fine.spread(boundary, t1, total * (1 - share), bad * (1 - share),
                              missing=missing)  # fmt: skip
        elif t1 <= boundary:
            self._coarse.spread(t0, t1, total, bad, missing=missing)
        else:
            self._fine.spread(t0, t1, total, bad, missing=missing)

    def _compact(self, now: float) -> None:
        """Fold the fine buckets older than ``fine_span`` into coarse ones (whole coarse
        buckets at a time), and drop what is older than ``keep``."""
        per = round(self._coarse.resolution / self.resolution)
        first = self._fine.first
        if first is None:
            return
        # fine buckets wholly before this coarse edge move
        edge = math.floor((now - self.fine_span) / self._coarse.resolution) * per
        if edge <= first:
            return
        moved = self._fine.pop_before(edge)
        for index, values in moved:
            self._coarse.add(index // per, values)
        self._folded_to = max(self._folded_to, edge * self.resolution)
        self._coarse.drop_before(math.floor((now - self.keep) / self._coarse.resolution))


_Values = tuple[float, float, float, float]
"""A bucket's total, bad, missing source-seconds and expected source-seconds."""


class _Tier:
    """Buckets of one resolution, as running sums: ``cum[k][i]`` is the sum of field
    ``k`` over buckets ``first .. first + i - 1`` (so one more entry than buckets)."""

    def __init__(self, resolution: float) -> None:
        self.resolution = resolution
        self.first: int | None = None
        self.cums = tuple(array("d", [0.0]) for _ in range(4))
        self.dirty: int | None = None
        """The lowest bucket changed since :meth:`take_changes` last ran."""

    def _touched(self, index: int) -> None:
        self.dirty = index if self.dirty is None else min(self.dirty, index)

    def buckets(self, start: int | None = None) -> list[tuple[int, _Values]]:
        """Each bucket from ``start`` (default: the first): its index and values."""
        if self.first is None:
            return []
        at = 0 if start is None else max(0, start - self.first)
        cums = self.cums
        return [
            (self.first + i, (cums[0][i + 1] - cums[0][i], cums[1][i + 1] - cums[1][i],
                              cums[2][i + 1] - cums[2][i], cums[3][i + 1] - cums[3][i]))
            for i in range(at, len(cums[0]) - 1)
        ]  # fmt: skip

    def take_changes(self) -> list[tuple[int, _Values]]:
        """The buckets changed since the last call (and every one after them)."""
        if self.dirty is None:
            return []
        changed = self.buckets(self.dirty)
        self.dirty = None
        return changed

    def load(self, rows: list[tuple[int, _Values]]) -> None:
        """Buckets read back (any order, gaps empty), replacing what is held."""
        self.first = None
        self.cums = tuple(array("d", [0.0]) for _ in range(4))
        for index, values in sorted(rows):
            self.add(index, values)
        self.dirty = None

    def _grow(self, first: int, last: int) -> None:
        """Make buckets ``first .. last`` exist."""
        if self.first is None:
            self.first = first
        elif first < self.first:  # older than any so far: empty buckets before
            empty = array("d", [0.0]) * (self.first - first)
            for cum in self.cums:
                base = array("d", [cum[0]]) * (self.first - first)
                cum[0:0] = base if cum[0] else empty
            self.first = first
        more = last - self.first + 1 - (len(self.cums[0]) - 1)
        if more > 0:
            for cum in self.cums:
                cum.extend([cum[-1]] * more)

    def add(self, index: int, values: _Values) -> None:
        self._grow(index, index)
        self._apply(index, [values])
        self._touched(index)

    def spread(self, t0: float, t1: float, total: float, bad: float, *, missing: bool) -> None:
        first = math.floor(t0 / self.resolution)
        last = math.floor(t1 / self.resolution)
        self._grow(first, last)
        span = t1 - t0
        adds: list[_Values] = []
        for index in range(first, last + 1):
            seconds = min(t1, (index + 1) * self.resolution) - max(t0, index * self.resolution)
            share = seconds / span if span > 0 else 0.0
            adds.append((total * share, bad * share, seconds if missing else 0.0, seconds))
        self._apply(first, adds)
        self._touched(first)

    def _apply(self, index: int, adds: list[_Values]) -> None:
        """Add to consecutive buckets from ``index``: one pass over the running sums from
        there (recent buckets, so a short one)."""
        assert self.first is not None
        at = index - self.first
        sums = [0.0, 0.0, 0.0, 0.0]
        for i in range(at + 1, len(self.cums[0])):
            if i - at - 1 < len(adds):
                for k, value in enumerate(adds[i - at - 1]):
                    sums[k] += value
            for k, cum in enumerate(self.cums):
                cum[i] += sums[k]

    def between(self, start: float, end: float) -> _Values:
        """The sums over ``[start, end)``, each end rounded up to a bucket's edge: a window
        ending now includes the bucket now fills (its data so far), and keeps its length
        by leaving out the part-bucket at its start."""
        if self.first is None:
            return (0.0, 0.0, 0.0, 0.0)
        first, n = self.first, len(self.cums[0]) - 1

        def at(t: float) -> int:
            return min(max(math.ceil(t / self.resolution) - first, 0), n)

        lo, hi = at(start), at(end)
        total, bad, missing, expected = (cum[hi] - cum[lo] for cum in self.cums)
        return total, bad, missing, expected

    def pop_before(self, index: int) -> list[tuple[int, _Values]]:
        """Remove the buckets before ``index``; each one's index and values."""
        if self.first is None or index <= self.first:
            return []
        count = min(index - self.first, len(self.cums[0]) - 1)
        out = []
        for i in range(count):
            values = tuple(cum[i + 1] - cum[i] for cum in self.cums)
            out.append((self.first + i, values))
        for cum in self.cums:
            del cum[:count]
        self.first += count
        return out  # type: ignore[return-value]

    def drop_before(self, index: int) -> None:
        self.pop_before(index)
