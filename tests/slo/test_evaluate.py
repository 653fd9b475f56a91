"""evaluate(): SLI, budget left, burn rates and time to exhaustion, hand-computed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from seawall.config import SloConfig
from seawall.config.model import SloWindow
from seawall.slo import EventSeries, SliceVerdicts, evaluate, journey, objectives, period

DAY = 86_400.0
T0 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def objective(**slo: object) -> object:
    (o,) = objectives({"checkout": SloConfig.model_validate({"availability": "99%", **slo})})
    return o


def steady(series: EventSeries, start: float, end: float, per_min: float, bad_share: float,
           source: str = "a") -> None:  # fmt: skip
    """A source serving ``per_min`` requests a minute, ``bad_share`` of them bad."""
    total = bad = 0.0
    t = start
    series.observe(source, t, total, bad)
    while t < end:
        t += 60
        total += per_min
        bad += per_min * bad_share
        series.observe(source, t, total, bad)


def test_a_steady_one_percent_spends_the_whole_budget_at_burn_one() -> None:
    o = objective(window="30d")
    s = EventSeries(resolution=60)
    steady(s, T0 - 30 * DAY, T0, 100, 0.01)
    st = evaluate(o, s, T0)  # type: ignore[arg-type]
    assert st.sli == pytest.approx(99.0)
    assert st.budget_remaining == pytest.approx(0.0, abs=1e-9)
    assert st.exhaustion_s == pytest.approx(0.0, abs=1e-3)
    assert [b.long for b in st.burn] == pytest.approx([1.0] * 4)
    assert st.burn[0].long_events == pytest.approx(6000)  # an hour of 100 a minute


def test_a_burst_burns_the_short_windows_and_gives_the_time_left() -> None:
    o = objective(window="30d")
    s = EventSeries(resolution=60)
    steady(s, T0 - 10 * DAY, T0 - 3600, 100, 0.0)
    steady_until = T0
    # the last hour: 14.4% bad (burn 14.4 against a 1% budget)
    t, total, bad = T0 - 3600, 100 * (10 * 1440 - 60), 0.0
    while t < steady_until:
        t += 60
        total += 100
        bad += 14.4
        s.observe("a", t, total, bad)
    st = evaluate(o, s, T0)  # type: ignore[arg-type]
    page_1h = st.burn[0]
    assert (page_1h.long, page_1h.short) == (pytest.approx(14.4), pytest.approx(14.4))
    assert st.burn[1].long == pytest.approx(14.4 / 6)  # 6h: one bad hour in six
    spent = 864 / (10 * 1440 * 100)  # bad share of the period so far
    assert st.budget_remaining == pytest.approx(1 - spent / 0.01)
    assert st.exhaustion_s == pytest.approx(st.budget_remaining * 30 * DAY / 14.4)


def test_no_requests_spend_nothing_and_no_data_says_nothing() -> None:
    o = objective(window="30d")
    quiet = EventSeries(resolution=60)
    steady(quiet, T0 - DAY, T0, 0, 0.0)
    st = evaluate(o, quiet, T0)  # type: ignore[arg-type]
    assert st.sli is None
    assert st.budget_remaining == 1.0
    assert all(b.long is None for b in st.burn)
    empty = evaluate(o, EventSeries(), T0)  # type: ignore[arg-type]
    assert empty.budget_remaining == 1.0  # no source was ever seen: nothing is missing
    silent = EventSeries(resolution=60)
    steady(silent, T0 - DAY, T0 - 0.5 * DAY, 100, 0.0)  # then the sidecar went away
    st = evaluate(o, silent, T0)  # type: ignore[arg-type]
    assert st.coverage == pytest.approx(0.5, abs=0.01)
    assert st.burn[0].long is None  # the last hour has no data: not a perfect hour


def test_timeslices_count_bad_minutes_and_missing_ones() -> None:
    o = objective(window="30d", budgeting={"method": "timeslices", "good_when": "95%"})
    s = EventSeries(resolution=60, max_gap=180)
    slices = SliceVerdicts(60, 95.0, s.max_gap)
    start = T0 - 3600
    evaluate(o, s, start, slices)  # type: ignore[arg-type]  # judging starts here
    t, total, bad = start, 0.0, 0.0
    s.observe("a", t, total, bad)
    for minute in range(60):
        t += 60
        total += 100
        bad += 10 if minute < 6 else 0  # six minutes at 90%: bad against 95%
        s.observe("a", t, total, bad)
    now = t + s.max_gap  # every stretch of the hour is over and its data in
    st = evaluate(o, s, now, slices)  # type: ignore[arg-type]
    # judged: the hour's 60 minutes, and the 3 before it (judging began max_gap before
    # start), which had no source yet: nothing missing, no request, good
    assert st.sli == pytest.approx(100 * (1 - 6 / 63))
    # the last hour is [start + 3m, start + 63m): minutes 3 to 59 judged, 3 of them bad
    hour = [b for b in st.burn if b.alert.long == 3600][0]
    assert hour.long_events == 5700  # requests, for min_events
    assert hour.long == pytest.approx((3 / 57) / 0.01)
    # the sidecar goes away: its minutes are missing, so bad
    later = now + 600
    st = evaluate(o, s, later, slices)  # type: ignore[arg-type]
    assert st.sli == pytest.approx(100 * (1 - (6 + 10) / 73))


def test_a_calendar_month_starts_on_the_first_in_its_timezone() -> None:
    window = SloWindow.model_validate({"calendar": "month", "timezone": "Europe/Paris"})
    p = period(window, datetime(2026, 11, 15, 12, tzinfo=UTC).timestamp())
    assert datetime.fromtimestamp(p.start, UTC) == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert datetime.fromtimestamp(p.end, UTC) == datetime(2026, 11, 30, 23, tzinfo=UTC)
    week = SloWindow.model_validate({"calendar": "week", "timezone": "Europe/Paris"})
    # the week of the spring DST change (Sunday 29 March 2026) is 167 hours long
    p = period(week, datetime(2026, 3, 27, 12, tzinfo=UTC).timestamp())
    assert p.length == 167 * 3600
    assert datetime.fromtimestamp(p.start, UTC) == datetime(2026, 3, 22, 23, tzinfo=UTC)
    o = objective(window="month")
    s = EventSeries(resolution=60)
    steady(s, T0 - 2 * DAY, T0 + DAY, 100, 0.02)  # a bad share before the month began
    st = evaluate(o, s, T0 + DAY)  # type: ignore[arg-type]
    assert st.start == T0  # 1 November, UTC
    assert st.total == pytest.approx(100 * 1440)  # only November's day counts
    assert st.budget_remaining == pytest.approx(1 - 0.02 / 0.01)  # overspent: -1


def test_a_journey_takes_the_worst_or_the_weighted_mean() -> None:
    o = objective(window="30d")
    good, bad = EventSeries(resolution=60), EventSeries(resolution=60)
    steady(good, T0 - DAY, T0, 100, 0.0)
    steady(bad, T0 - DAY, T0, 100, 0.005)
    a = evaluate(o, good, T0)  # type: ignore[arg-type]
    b = evaluate(o, bad, T0)  # type: ignore[arg-type]
    worst = journey("trip", [(a, 1), (b, 1)], "worst")
    assert worst.budget_remaining == pytest.approx(0.5)
    assert worst.burn[0].long == pytest.approx(0.5)
    weighted = journey("trip", [(a, 3), (b, 1)], "weighted")
    assert weighted.budget_remaining == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert weighted.sli == pytest.approx((3 * 100 + 99.5) / 4)
    with pytest.raises(ValueError, match="needs objectives"):
        journey("trip", [], "worst")


def test_timeslices_without_their_verdicts_are_refused() -> None:
    o = objective(budgeting="timeslices")
    with pytest.raises(ValueError, match="SliceVerdicts"):
        evaluate(o, EventSeries(), T0)  # type: ignore[arg-type]
