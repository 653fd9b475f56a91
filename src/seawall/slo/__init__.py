"""Service level objectives: error budgets, burn rates and burn-rate alerts.

The sans-I/O core of issue 11, fed by the control plane's scrapes of the
sidecars (``docs/slo.md``):

* :mod:`~seawall.slo.series`: an objective's events (requests, bad ones) from
  its sidecars' counters, resets and missing scrapes included;
* :mod:`~seawall.slo.windows`: the period a budget covers, rolling or calendar;
* :mod:`~seawall.slo.evaluate`: SLI, budget left, burn rates, time to
  exhaustion, journeys;
* :mod:`~seawall.slo.alerts`: pending, firing and resolved alerts, and
  Alertmanager's webhook payload;
* :mod:`~seawall.slo.scrape`: a sidecar's metrics page, read for each objective;
* :mod:`~seawall.slo.engine`: every SLO of a mesh, pages in, statuses and notices out;
* :mod:`~seawall.slo.rules`: the same as Prometheus rules (``seawall slo rules``).
"""

from __future__ import annotations

from .alerts import Alert, AlertTracker, Notice, webhook_payload
from .engine import Evaluation, SloEngine
from .evaluate import (
    MIN_COVERAGE,
    BurnRate,
    Objective,
    ObjectiveStatus,
    SliceVerdicts,
    evaluate,
    journey,
    objectives,
)
from .scrape import MetricsError, Sample, counters, parse
from .series import Events, EventSeries
from .windows import Period, period

__all__ = [
    "MIN_COVERAGE",
    "Alert",
    "AlertTracker",
    "BurnRate",
    "EventSeries",
    "Evaluation",
    "Events",
    "MetricsError",
    "Notice",
    "Objective",
    "ObjectiveStatus",
    "Period",
    "Sample",
    "SliceVerdicts",
    "SloEngine",
    "counters",
    "evaluate",
    "journey",
    "objectives",
    "parse",
    "period",
    "webhook_payload",
]
