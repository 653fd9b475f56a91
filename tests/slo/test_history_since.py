"""``history(..., since=)``: the rows from a time on, as the SLO page draws a new
objective from its first data (``GET /v1/slos/{name}/history?since=``)."""

from __future__ import annotations

import pytest
from test_engine import T0, three_hours

from seawall.config import SloConfig
from seawall.slo import objectives
from seawall.slo.engine import history


def test_since_keeps_the_grid_and_counts_the_budget_from_the_periods_start() -> None:
    (o,) = objectives({"orders": SloConfig.model_validate({"availability": "99%", "window": "2d"})})
    s, t = three_hours()  # three hours at 100 a minute; the second hour 2% bad
    whole = history(o, s, t, step=600)
    since = history(o, s, t, step=600, since=T0 + 3_601)  # in a row: from that row on
    assert since == whole[-len(since) :]
    assert since[0]["start"] <= T0 + 3_601 < since[0]["end"]
    assert since[-1]["budget_remaining"] == pytest.approx(1 - (120 / 18000) / 0.01)
    assert sum(r["bad"] or 0 for r in since) == 120  # (the first hour: none bad)
    # before the period, or after now: the whole period, or the last row
    assert history(o, s, t, step=600, since=0) == whole
    assert history(o, s, t, step=600, since=t + 10**6) == whole[-1:]
