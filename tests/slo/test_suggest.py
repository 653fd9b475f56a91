"""slo suggest's maths, against hand-computed cases."""

from __future__ import annotations

import pytest

from seawall.slo.suggest import Dependency, snippet, suggest


def test_achieved_ceiling_and_retries_by_hand() -> None:
    # gateway: 10,000 calls, 30 failed: 99.7% achieved
    # orders fails 0.2% of its calls, payments 0.5% (3 attempts), email is soft
    s = suggest(
        "gateway", 10_000, 30,
        [Dependency("orders", 5000, 10), Dependency("payments", 2000, 10, attempts=3),
         Dependency("email", 1000, 500)],
        p50_ms=12.0, p99_ms=180.0, soft=["email"],
    )  # fmt: skip
    assert s.achieved == pytest.approx(99.7)
    # ceiling: (1 - 0.002) * (1 - 0.005) = 0.998 * 0.995 = 0.99301
    assert s.ceiling == pytest.approx(99.301)
    # with retries: (1 - 0.002) * (1 - 0.005**3) = 0.998 * 0.999999875
    assert s.ceiling_with_retries == pytest.approx(99.799987525)
    by_target = {r.target: r for r in s.rows}
    assert by_target[99.0].held
    assert by_target[99.0].budget_left == pytest.approx(1 - 0.003 / 0.01)  # 70% left
    assert by_target[99.5].held
    assert by_target[99.5].budget_left == pytest.approx(1 - 0.003 / 0.005)  # 40% left
    assert not by_target[99.9].held
    assert by_target[99.9].budget_left == pytest.approx(1 - 0.003 / 0.001)  # -2: overspent
    assert by_target[99.0].reachable
    assert not by_target[99.5].reachable  # 99.301 < 99.5 without retries...
    assert by_target[99.5].reachable_with_retries  # ...99.79999 with them
    assert not by_target[99.9].reachable_with_retries
    assert s.suggested == 99.5
    assert [d.name for d in s.dependencies] == ["orders", "payments"]  # email: soft
    assert snippet(s) == (
        "slos:\n  gateway: {availability: 99.5%, latency: {threshold: 200ms, percent: 99%}}\n"
    )
    assert snippet(s, route="checkout").startswith("slos:\n  gateway: {route: checkout, ")


def test_no_dependency_no_ceiling_and_no_data_no_suggestion() -> None:
    alone = suggest("login", 1000, 0, [])
    assert alone.ceiling == 100.0
    assert alone.suggested == 99.99
    empty = suggest("idle", 0, 0, [])
    assert empty.achieved is None
    assert empty.suggested is None
    assert snippet(empty) == "# idle: no data to suggest from\n"
    with pytest.raises(ValueError, match="errors <= calls"):
        suggest("x", 10, 11, [])
    with pytest.raises(ValueError, match="attempts"):
        suggest("x", 10, 1, [Dependency("y", 10, 1, attempts=0)])
