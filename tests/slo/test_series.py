"""EventSeries: counters to windowed events, with resets, gaps and silent sources."""

from __future__ import annotations

import pytest

from seawall.slo import EventSeries


def test_increases_are_summed_over_sources_and_windows() -> None:
    s = EventSeries(resolution=10)
    s.observe("a", 0, 100, 1)  # baselines: what came before is not charged
    s.observe("b", 0, 50, 0)
    s.observe("a", 10, 200, 3)  # +100, +2 in [0, 10)
    s.observe("b", 10, 80, 1)  # +30, +1
    s.observe("a", 20, 260, 3)  # +60 in [10, 20)
    s.observe("b", 20, 80, 1)
    ev = s.events(0, 20)
    assert (ev.total, ev.bad, ev.coverage) == (190, 3, 1.0)
    first = s.events(0, 10)
    assert (first.total, first.bad) == (130, 3)
    assert first.good_ratio == pytest.approx(127 / 130)
    assert s.events(10, 20).total == 60
    assert s.events(30, 40).total == 0
    assert s.events(0, 0).good_ratio is None


def test_a_reset_counts_from_zero_and_its_step_is_missing() -> None:
    s = EventSeries(resolution=10)
    s.observe("a", 0, 1000, 10)
    s.observe("a", 10, 1100, 10)
    s.observe("a", 20, 30, 2)  # restarted: 30 requests (2 bad) since; the step is lost time
    ev = s.events(10, 20)
    assert (ev.total, ev.bad) == (30, 2)
    assert ev.coverage == 0.0
    assert s.events(0, 20).coverage == pytest.approx(0.5)


def test_a_long_gap_keeps_its_counts_spread_over_it() -> None:
    s = EventSeries(resolution=10, max_gap=30)
    s.observe("a", 0, 0, 0)
    s.observe("a", 60, 600, 60)  # six buckets' worth, when exactly is unknown
    for k in range(6):
        ev = s.events(k * 10, k * 10 + 10)
        assert (ev.total, ev.bad, ev.coverage) == (pytest.approx(100), pytest.approx(10), 1.0)


def test_a_silent_source_is_missing_not_perfect_until_forgotten() -> None:
    s = EventSeries(resolution=10, max_gap=30)
    for t in range(0, 70, 10):
        s.observe("a", t, t * 10, 0)
        if t <= 20:
            s.observe("b", t, t * 5, 0)
    # b stopped after t=20: from 20 to 60 it is missing for half the source-seconds
    ev = s.events(0, 60, now=60)
    assert ev.coverage == pytest.approx(1 - 40 / (60 + 60))
    assert s.events(40, 60, now=60).coverage == pytest.approx(0.5)
    s.forget("b")  # it left the registry: gone, not missing
    assert s.events(40, 60, now=60).coverage == 1.0


def test_a_source_whose_first_step_began_earlier_is_kept() -> None:
    s = EventSeries(resolution=10)
    s.observe("a", 100, 0, 0)
    s.observe("b", 50, 0, 0)
    s.observe("a", 110, 10, 0)
    s.observe("b", 110, 60, 6)  # (50, 110]: before a's first step
    assert s.events(50, 110).total == pytest.approx(70)
    assert s.events(50, 100).bad == pytest.approx(5)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ((5, 10, 0), "is not after the last one"),
        ((20, 10, 11), "0 <= bad <= total"),
        ((20, -1, 0), "0 <= bad <= total"),
        ((float("nan"), 1, 0), "must be finite"),
    ],
)
def test_bad_samples_are_refused_and_change_nothing(
    sample: tuple[float, float, float], message: str
) -> None:
    s = EventSeries(resolution=10)
    s.observe("a", 10, 5, 0)
    s.observe("a", 15, 10, 1)
    before = s.events(0, 30)
    with pytest.raises(ValueError, match=message):
        s.observe("a", *sample)
    assert s.events(0, 30) == before


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="resolution"):
        EventSeries(resolution=0)
    with pytest.raises(ValueError, match="max_gap"):
        EventSeries(max_gap=-1)
    with pytest.raises(ValueError, match="end"):
        EventSeries().events(10, 5)


def test_old_buckets_fold_into_coarse_ones_and_the_sums_hold() -> None:
    s = EventSeries(resolution=60, coarse=600, fine_span=86_400, keep=5 * 86_400)
    t = total = bad = 0.0
    s.observe("a", t, total, bad)
    for minute in range(10 * 1440):  # ten days, one request a second, 1% bad
        t += 60
        total += 60
        bad += 0.6
        s.observe("a", t, total, bad)
    # memory is bounded: a day of minutes, the rest in ten-minute buckets, five days kept
    assert len(s._fine.cums[0]) - 1 <= 1440 + 10
    assert len(s._coarse.cums[0]) - 1 <= 4 * 144 + 2
    # windows on coarse edges are exact, across the tiers too
    for days in (0.5, 1, 2, 3, 4):
        ev = s.events(t - days * 86_400, t)
        assert ev.total == pytest.approx(days * 86_400)
        assert ev.bad == pytest.approx(days * 864)
        assert ev.coverage == 1.0
    assert s.events(t - 7 * 86_400, t - 6 * 86_400).total == 0  # older than keep: gone
    # a step from before the fine tier (a sidecar silent for two days) goes to both tiers
    s.observe("b", t - 3 * 86_400, 0, 0)  # (its baseline, long ago)
    s.observe("b", t + 60, 3 * 86_400 + 60, 0)
    both = s.events(t - 3 * 86_400, t + 60)
    assert both.total == pytest.approx(3 * 86_400 + 3 * 86_400 + 60, rel=1e-3)


def test_tier_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="multiple of resolution"):
        EventSeries(resolution=60, coarse=90)
    with pytest.raises(ValueError, match="fine_span"):
        EventSeries(resolution=60, coarse=600, fine_span=300)
