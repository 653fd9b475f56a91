"""An objective's state at a given time: SLI, budget left, burn rates, time left.

One SLO of mesh.yaml is one or two *objectives* (:func:`objectives`): its
availability (bad: answered 5xx) and its latency (bad: slower than the
threshold), each with its own budget. Each has an :class:`EventSeries`
(:mod:`seawall.slo.series`); :func:`evaluate` reads the windows it needs.

**Occurrences** (the default): the SLI is good events over all events; the
budget is ``1 - objective`` of them. ``budget_remaining`` is the fraction of
the period's budget not spent yet: ``1 - (bad / total) / (1 - objective)``,
1.0 untouched, 0 spent, below 0 overspent.

**Timeslices**: the period is cut in ``slice``-long stretches from its start;
a stretch is good when its SLI reaches ``good_when`` (by default the
objective), or it had no requests, and bad otherwise, or when less than
half of it is covered by data (a silent sidecar is not a good minute). The
SLI is good stretches over the stretches so far; the budget is
``1 - objective`` of the period's stretches.

**Burn rate** over a window: the window's bad share over the budget's share,
``(bad / total) / (1 - objective)``: at 1 the budget lasts exactly the
period, at 14.4 a 30-day budget's 2% goes in an hour. ``None`` when the
window holds no event or less than half of it is covered by data.

**Time to exhaustion**: the budget left, at the burn of the shortest long
alert window (by default the last hour): ``remaining * period / burn``;
``None`` when nothing burns; 0 when it is spent.

**Journeys** (``journey: {of: ..., combine: ...}``) are read from their
objectives' states: ``worst`` takes the lowest budget left and the highest
burn of each window, ``weighted`` the weighted means (of the parts with a
value).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..config.model import BurnAlert, SloAlerts, SloBudgeting, SloConfig, SloWindow
from .series import Events, EventSeries
from .windows import period

__all__ = [
    "MIN_COVERAGE",
    "BurnRate",
    "Objective",
    "ObjectiveStatus",
    "SliceVerdicts",
    "evaluate",
    "journey",
    "objectives",
]

MIN_COVERAGE = 0.5
"""Below this share of a window covered by data, the window says nothing (``None``)."""

Kind = Literal["availability", "latency"]


@dataclass(frozen=True, slots=True)
class Objective:
    """One budget: an SLO's availability or its latency."""

    slo: str
    kind: Kind
    target: float
    """Percent, in (0, 100)."""
    window: SloWindow
    budgeting: SloBudgeting
    alerts: SloAlerts
    threshold: float | None = None
    """Seconds, for a latency objective."""
    service: str = ""
    """The service measured (the SLO's ``service``, else its name)."""

    @property
    def name(self) -> str:
        return f"{self.slo}:{self.kind}"

    @property
    def budget(self) -> float:
        """The share of events (or stretches) that may be bad."""
        return 1.0 - self.target / 100.0


def objectives(slos: Mapping[str, SloConfig]) -> list[Objective]:
    """The objectives of mesh.yaml's ``slos:`` (journeys have none of their own)."""
    out = []
    for name, slo in slos.items():
        if slo.availability is not None:
            out.append(
                Objective(name, "availability", slo.availability, slo.window, slo.budgeting,
                          slo.alerts, service=slo.service or name)
            )  # fmt: skip
        if slo.latency is not None:
            out.append(
                Objective(name, "latency", slo.latency.percent, slo.window, slo.budgeting,
                          slo.alerts, threshold=slo.latency.threshold,
                          service=slo.service or name)
            )  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class BurnRate:
    """One burn-rate alert's windows now: their burn rates and the long window's events."""

    alert: BurnAlert
    long: float | None
    short: float | None
    long_events: float
    """Requests in the long window (whatever the budgeting), for ``min_events``."""


@dataclass(frozen=True, slots=True)
class ObjectiveStatus:
    """An objective at ``now``; see the module for each figure's definition."""

    name: str
    target: float
    now: float
    start: float
    """The period's start; its end is ``now`` for a rolling window, else ``end``."""
    end: float
    total: float
    bad: float
    coverage: float
    sli: float | None
    """Percent good, over the period so far; ``None`` without data."""
    budget_remaining: float | None
    burn: tuple[BurnRate, ...]
    exhaustion_s: float | None
    recent_coverage: float = 1.0
    """The coverage of the shortest short alert window (by default the last 5m)."""
    service: str = ""
    """The service measured; empty for a journey."""


class SliceVerdicts:
    """The good or bad stretches of a timeslices objective, each judged once it is over
    (and ``max_gap`` later, when its data is in), kept as running counts."""

    def __init__(self, slice_s: float, good_when: float, max_gap: float) -> None:
        self.slice_s = slice_s
        self.good_when = good_when
        self.max_gap = max_gap
        self._first: int | None = None
        self._bad = [0]  # _bad[i]: bad stretches before stretch _first + i
        self._judged = 0  # stretches judged

    def _judge(self, series: EventSeries, now: float) -> None:
        last_done = math.floor((now - self.max_gap) / self.slice_s)  # stretches < this are over
        if self._first is None:
            self._first = last_done
            return
        while self._first + self._judged < last_done:
            k = self._first + self._judged
            ev = series.events(k * self.slice_s, (k + 1) * self.slice_s, now)
            good = ev.coverage >= MIN_COVERAGE and (
                ev.total <= 0 or (ev.total - ev.bad) / ev.total * 100.0 >= self.good_when
            )
            self._bad.append(self._bad[-1] + (0 if good else 1))
            self._judged += 1

    def count(self, series: EventSeries, start: float, end: float, now: float) -> tuple[int, int]:
        """(stretches, bad ones) judged within ``[start, end)``."""
        self._judge(series, now)
        assert self._first is not None
        lo = min(max(math.ceil(start / self.slice_s) - self._first, 0), self._judged)
        hi = min(max(math.floor(end / self.slice_s) - self._first, 0), self._judged)
        if hi <= lo:
            return 0, 0
        return hi - lo, self._bad[hi] - self._bad[lo]


def _ratio(objective: Objective, ev: Events) -> float | None:
    """The bad share of a window's events, or None when the window says nothing."""
    if ev.coverage < MIN_COVERAGE or ev.total <= 0:
        return None
    return ev.bad / ev.total


def evaluate(
    objective: Objective,
    series: EventSeries,
    now: float,
    slices: SliceVerdicts | None = None,
) -> ObjectiveStatus:
    """The state of ``objective`` at ``now`` from its events (``slices`` for timeslices)."""
    budget = objective.budget
    bounds = period(objective.window, now)
    start, end = bounds.start, bounds.end
    until = min(now, end)
    timeslices = objective.budgeting.method == "timeslices"
    if timeslices and slices is None:
        raise ValueError(f"{objective.name}: timeslices budgeting needs its SliceVerdicts")

    def bad_share(lo: float, hi: float) -> tuple[float | None, float]:
        """(bad share or None, requests) of [lo, hi)."""
        ev = series.events(lo, hi, now)
        if slices is not None and timeslices:
            n, bad = slices.count(series, lo, hi, now)
            return (bad / n if n else None), ev.total
        return _ratio(objective, ev), ev.total

    whole = series.events(start, until, now)
    share, _ = bad_share(start, until)
    if share is None:
        sli = remaining = None
    else:
        sli = 100.0 * (1.0 - share)
        remaining = 1.0 - share / budget
    if remaining is None and whole.coverage >= MIN_COVERAGE and whole.total <= 0:
        remaining = 1.0  # a period without requests spent nothing

    burns = []
    for alert in objective.alerts.burn:
        long_share, long_events = bad_share(now - alert.long, now)
        short_share, _ = bad_share(now - alert.short, now)
        burns.append(
            BurnRate(
                alert,
                None if long_share is None else long_share / budget,
                None if short_share is None else short_share / budget,
                long_events,
            )
        )
    shortest = min((a.short for a in objective.alerts.burn), default=300.0)
    recent = series.events(now - shortest, now, now).coverage
    exhaustion = None
    if burns and remaining is not None:
        fastest = min(burns, key=lambda b: b.alert.long)
        if remaining <= 0:
            exhaustion = 0.0
        elif fastest.long:
            exhaustion = remaining * bounds.length / fastest.long
    return ObjectiveStatus(
        name=objective.name,
        target=objective.target,
        now=now,
        start=start,
        end=end,
        total=whole.total,
        bad=whole.bad,
        coverage=whole.coverage,
        sli=sli,
        budget_remaining=remaining,
        burn=tuple(burns),
        exhaustion_s=exhaustion,
        recent_coverage=recent,
        service=objective.service,
    )


def journey(
    name: str,
    parts: Sequence[tuple[ObjectiveStatus, float]],
    combine: Literal["worst", "weighted"],
) -> ObjectiveStatus:
    """A journey's state from its objectives' states and weights (see the module).

    The journey's burn windows are its parts' (the same alert windows by
    position, the first part's alerts); its events are the sum of theirs.
    """
    if not parts:
        raise ValueError(f"{name}: a journey needs objectives")

    def pick(values: list[tuple[float | None, float]], worst: str) -> float | None:
        known = [(v, w) for v, w in values if v is not None]
        if not known:
            return None
        if combine == "worst":
            return (min if worst == "min" else max)(v for v, _ in known)
        weight = sum(w for _, w in known)
        return sum(v * w for v, w in known) / weight

    first = parts[0][0]
    burns = []
    for i, alert_burn in enumerate(first.burn):
        at = [(s.burn[i], w) for s, w in parts if i < len(s.burn)]
        burns.append(
            BurnRate(
                alert_burn.alert,
                pick([(b.long, w) for b, w in at], "max"),
                pick([(b.short, w) for b, w in at], "max"),
                min(b.long_events for b, _ in at),
            )
        )
    exhaustion = pick([(s.exhaustion_s, w) for s, w in parts], "min")
    return ObjectiveStatus(
        name=name,
        target=pick([(s.target, w) for s, w in parts], "max") or first.target,
        now=first.now,
        start=min(s.start for s, _ in parts),
        end=max(s.end for s, _ in parts),
        total=sum(s.total for s, _ in parts),
        bad=sum(s.bad for s, _ in parts),
        coverage=min(s.coverage for s, _ in parts),
        sli=pick([(s.sli, w) for s, w in parts], "min"),
        budget_remaining=pick([(s.budget_remaining, w) for s, w in parts], "min"),
        burn=tuple(burns),
        exhaustion_s=exhaustion,
        recent_coverage=min(s.recent_coverage for s, _ in parts),
    )
