"""Every SLO of a mesh at once: scraped pages in, statuses and alert notices out.

:class:`SloEngine` keeps one :class:`~seawall.slo.series.EventSeries` per
objective and one :class:`~seawall.slo.alerts.AlertTracker`. The control
plane's scraper gives it each sidecar's page (:meth:`SloEngine.scrape`: the
sidecar's id, its service, the text, the time) and, on its interval, asks
:meth:`SloEngine.evaluate` for every objective's and journey's status and the
notices to send; each objective keeps the last few exemplars of its bad
requests that the pages showed (:meth:`SloEngine.exemplars`). A sidecar that
leaves the registry is :meth:`forgotten <SloEngine.forget>`; a new config
(:meth:`SloEngine.apply`) keeps the series of every objective it leaves as it
was, so a config change elsewhere in mesh.yaml loses no history.

Sans-I/O: nothing here reads a clock, a socket or a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..config.model import SloConfig
from .alerts import AlertTracker, Notice
from .evaluate import Objective, ObjectiveStatus, SliceVerdicts, evaluate, journey, objectives
from .exemplars import BadExemplar, RecentExemplars, newest
from .scrape import MetricsError, PageIndex, bad_exemplars, counters, parse
from .series import EventSeries
from .windows import period

__all__ = ["Evaluation", "SloEngine", "history"]


@dataclass(slots=True)
class _Tracked:
    objective: Objective
    slo: SloConfig
    series: EventSeries
    slices: SliceVerdicts | None
    exemplars: RecentExemplars = field(default_factory=RecentExemplars)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One evaluation: every objective's status, then every journey's; the notices."""

    statuses: list[ObjectiveStatus]
    notices: list[Notice] = field(default_factory=list)


class SloEngine:
    """The SLOs of one mesh; see the module."""

    def __init__(
        self, slos: Mapping[str, SloConfig], *, resolution: float = 60.0, max_gap: float = 90.0
    ) -> None:
        self.resolution = resolution
        self.max_gap = max_gap
        self._tracked: dict[str, _Tracked] = {}
        self._journeys: dict[str, SloConfig] = {}
        self.alerts = AlertTracker()
        self.pages = 0
        self.malformed = 0
        """Pages refused (malformed): the metric ``seawall_slo_pages_malformed_total``."""
        self.apply(slos)

    def apply(self, slos: Mapping[str, SloConfig]) -> list[str]:
        """A new config: objectives unchanged keep their series; removed ones go. The
        names of the objectives begun anew (a store may have their history)."""
        tracked: dict[str, _Tracked] = {}
        fresh: list[str] = []
        for name, slo in slos.items():
            for o in objectives({name: slo}):
                old = self._tracked.get(o.name)
                if old is not None and old.objective == o and _same_scope(old.slo, slo):
                    tracked[o.name] = old
                    continue
                series = EventSeries(self.resolution, self.max_gap, keep=_keep(o))
                slices = None
                if o.budgeting.method == "timeslices":
                    good_when = o.budgeting.good_when or o.target
                    slices = SliceVerdicts(o.budgeting.slice, good_when, self.max_gap)
                tracked[o.name] = _Tracked(o, slo, series, slices)
                fresh.append(o.name)
        self._tracked = tracked
        self._journeys = {n: s for n, s in slos.items() if s.journey is not None}
        return fresh

    def objective(self, name: str) -> Objective:
        """Objective ``name`` (``slo:kind``); :class:`KeyError` if none."""
        return self._tracked[name].objective

    @property
    def objectives(self) -> list[Objective]:
        return [t.objective for t in self._tracked.values()]

    def series(self, name: str) -> EventSeries:
        """The events of objective ``name`` (``slo:kind``); :class:`KeyError` if none."""
        return self._tracked[name].series

    def scrape(self, source: str, service: str, page: str, t: float) -> str | None:
        """One sidecar's page at ``t``; the reason it was refused, else ``None``.

        A malformed page changes nothing (every objective's counters are read
        before any is stored).
        """
        self.pages += 1
        try:
            index = PageIndex(parse(page))
            readings = []
            examples: list[tuple[RecentExemplars, list[BadExemplar]]] = []
            for tracked in self._tracked.values():
                found = counters(tracked.objective, tracked.slo, service, index)
                if found is not None:
                    total, bad = found
                    if not (total >= 0 and total != float("inf")):
                        raise MetricsError(f"{tracked.objective.name}: a counter of {total}")
                    readings.append((tracked.series, total, bad))
                    if index.exemplars:
                        bad_ones = bad_exemplars(tracked.objective, tracked.slo, service, index, t)
                        examples.append((tracked.exemplars, bad_ones))
            for series, total, bad in readings:
                series.observe(source, t, total, bad)
            for keeper, bad_ones in examples:
                keeper.add(bad_ones)
        except (MetricsError, ValueError) as exc:
            self.malformed += 1
            return f"{source}: {exc}"
        return None

    def exemplars(self, name: str) -> list[BadExemplar]:
        """The last exemplars of objective ``name``'s bad requests, newest first; a
        journey's are its objectives'. :class:`KeyError` if there is no such name."""
        tracked = self._tracked.get(name)
        if tracked is not None:
            return tracked.exemplars.items
        slo = self._journeys[name]
        assert slo.journey is not None
        of = slo.journey.of
        return newest(t.exemplars.items for t in self._tracked.values() if t.objective.slo in of)

    def forget(self, source: str) -> None:
        """``source`` left the registry: gone, not missing."""
        for tracked in self._tracked.values():
            tracked.series.forget(source)

    def evaluate(self, now: float) -> Evaluation:
        """Every objective's and journey's status at ``now``, and the alert notices."""
        statuses = [evaluate(t.objective, t.series, now, t.slices) for t in self._tracked.values()]
        by_slo: dict[str, list[ObjectiveStatus]] = {}
        for t, status in zip(self._tracked.values(), statuses, strict=True):
            by_slo.setdefault(t.objective.slo, []).append(status)
        tracked = self._tracked.values()
        judged = [(s, t.slo.alerts.min_events) for t, s in zip(tracked, statuses, strict=True)]
        for name, slo in self._journeys.items():
            assert slo.journey is not None
            parts = [
                (status, weight)
                for part, weight in slo.journey.of.items()
                for status in by_slo.get(part, [])
            ]
            if parts:
                status = journey(name, parts, slo.journey.combine)
                statuses.append(status)
                judged.append((status, slo.alerts.min_events))
        return Evaluation(statuses, self.alerts.update(judged, now))


def history(
    objective: Objective,
    series: EventSeries,
    now: float,
    step: float | None = None,
    since: float | None = None,
) -> list[dict[str, float | None]]:
    """How an objective's budget was spent over its period up to ``now``: per ``step``
    (by default a day, or an hour for a period of two days or less), the interval's
    requests, bad ones and burn rate, and the budget left at its end. ``since``: only
    the rows from the one holding that time (the budget left still counts from the
    period's start), so a fine step over the last hours of a long period stays short."""
    bounds = period(objective.window, now)
    start = bounds.start
    if step is None:
        step = 3_600.0 if bounds.length <= 2 * 86_400 else 86_400.0
    if not step > 0:
        raise ValueError(f"step must be > 0 seconds, got {step!r}")
    budget = objective.budget
    rows: list[dict[str, float | None]] = []
    at = start
    if since is not None and since > start:  # (rows on the same grid as without it)
        at = start + math.floor((min(since, now) - start) / step) * step
        if at >= now:  # since now or later: the last row, which ends now
            at = max(start, at - step)
    while at < min(now, bounds.end):
        end = min(at + step, now)
        part = series.events(at, end, now)
        so_far = series.events(start, end, now)
        share = part.bad / part.total if part.total > 0 else None
        spent = so_far.bad / so_far.total if so_far.total > 0 else 0.0
        rows.append(
            {
                "start": at,
                "end": end,
                "total": part.total,
                "bad": part.bad,
                "coverage": part.coverage,
                "burn": None if share is None else share / budget,
                "budget_remaining": 1.0 - spent / budget,
            }
        )
        at = end
    return rows


def _keep(o: Objective) -> float:
    """How long an objective's events are kept: its period (a calendar month at its
    longest) or its longest alert window, whichever is longer, and a day more."""
    period = o.window.rolling or (31 * 86_400.0 if o.window.calendar == "month" else 7 * 86_400.0)
    longest = max((a.long for a in o.alerts.burn), default=0.0)
    return max(period, longest, 86_400.0) + 86_400.0


def _same_scope(a: SloConfig, b: SloConfig) -> bool:
    """Whether two configs of one SLO measure the same requests (so its history holds)."""
    keys = ("service", "route", "caller", "measured_at")
    return all(getattr(a, k) == getattr(b, k) for k in keys)
