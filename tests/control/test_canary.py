"""Budget-aware canaries: the rule and the state machine, on a fake clock, with figures
computed by hand."""

from __future__ import annotations

import math
import random

import pytest

from seawall.config import parse_mesh
from seawall.config.model import ProgressiveConfig
from seawall.control.canary import (
    INTERIM_ALPHA,
    PLAIN_5XX,
    Judge,
    Rollout,
    RolloutKey,
    Tally,
    compare,
    judges_for,
    subset_counts,
    upper_tail,
    with_canary,
)

KEY = RolloutKey("orders", "place-order")


def progressive(**kw: object) -> ProgressiveConfig:
    return ProgressiveConfig.model_validate(
        {"canary": "v2", "steps": [10, 50, 100], "interval": "60s", "min_events": 100, **kw}
    )


# -- the rule ------------------------------------------------------------------------


def test_the_canarys_share_of_the_bad_requests_is_binomial() -> None:
    # 100 canary requests beside 1000: a bad request is the canary's with pi = 1/11
    pi = 100 / 1100
    ok = compare(PLAIN_5XX, Tally(100, 1), Tally(1000, 0), min_events=100, max_burn_ratio=1)
    assert ok.verdict == "ok"  # P(X >= 1 | k = 1) = pi = 0.091
    assert upper_tail(2, pi, 2) == pytest.approx(pi**2)  # 0.0083: under 1 in 100
    worse = compare(PLAIN_5XX, Tally(100, 2), Tally(1000, 0), min_events=100, max_burn_ratio=1)
    assert (worse.verdict, worse.allowed_bad) == ("worse", 1.0)
    # a look inside a step is stricter: 2 of 2 is allowed (pi^3 = 0.00075 < 1/1000 is not)
    interim = compare(PLAIN_5XX, Tally(100, 2), Tally(1000, 0), min_events=100,
                      max_burn_ratio=1, alpha=INTERIM_ALPHA)  # fmt: skip
    assert (interim.verdict, interim.allowed_bad) == ("ok", 2.0)
    assert upper_tail(3, pi, 3) == pytest.approx(pi**3)


def test_both_sides_noise_is_weighed_and_the_ratio_scales_the_canarys_side() -> None:
    # baseline 9 bad of 999, canary 400: pi = 400 / 1399; with b canary bad requests,
    # P(X >= b) for X ~ Binomial(b + 9, pi); 11 is the most that stays above 1%
    judge = Judge("orders:availability", "availability", 99.0)
    pi = 400 / 1399

    def tail(b: int, k: int) -> float:
        return sum(math.comb(k, i) * pi**i * (1 - pi) ** (k - i) for i in range(b, k + 1))

    assert upper_tail(20, pi, 11) == pytest.approx(tail(11, 20))
    assert tail(11, 20) == pytest.approx(0.01178, abs=1e-5)
    assert tail(12, 21) == pytest.approx(0.00574, abs=1e-5)
    ok = compare(judge, Tally(400, 11), Tally(999, 9), min_events=100, max_burn_ratio=1)
    assert (ok.verdict, ok.allowed_bad) == ("ok", 11.0)
    # burn rates: bad share over the 1% budget
    assert ok.canary_burn == pytest.approx(2.75)  # 11 / 400
    assert ok.baseline_burn == pytest.approx(0.9009, abs=1e-4)  # 9 / 999
    assert compare(judge, Tally(400, 12), Tally(999, 9), min_events=100,
                   max_burn_ratio=1).verdict == "worse"  # fmt: skip
    # twice the baseline's burn allowed: the canary weighs double, pi = 800 / 1799
    twice = compare(judge, Tally(400, 19), Tally(999, 9), min_events=100, max_burn_ratio=2)
    assert (twice.verdict, twice.allowed_bad) == ("ok", 19.0)
    assert compare(judge, Tally(400, 20), Tally(999, 9), min_events=100,
                   max_burn_ratio=2).verdict == "worse"  # fmt: skip


def test_a_canary_as_good_as_its_baseline_is_seldom_rolled_back() -> None:
    """An identical canary (1% errors on both sides), 200 seeded rollouts of four steps
    at 100 requests a second, a look every 10 s and 60 s steps: the rule's false
    rollbacks stay rare (an interim look at 1/1000, the step's end at 1/100)."""
    rng = random.Random(7)
    rolled = 0
    for _ in range(200):
        r = Rollout(KEY, progressive(steps=[5, 25, 50, 100], min_events=50),
                    {"v1": 100, "v2": 0})  # fmt: skip
        totals = {"v1": [0.0, 0.0], "v2": [0.0, 0.0]}
        r.observe("a", {("5xx", s): Tally(*t) for s, t in totals.items()})
        now = 0.0
        while r.phase in ("pending", "progressing") and now < 600:
            r.tick(now)
            now += 10.0
            for subset, weight in r.weights().items():
                n = int(1000 * weight / 100)
                bad = sum(rng.random() < 0.01 for _ in range(n))
                totals[subset][0] += n
                totals[subset][1] += bad
            r.observe("a", {("5xx", s): Tally(*t) for s, t in totals.items()})
        rolled += r.phase == "rolled_back"
    assert rolled <= 0.08 * 200, rolled


def test_too_few_events_on_either_side_say_nothing() -> None:
    few = compare(PLAIN_5XX, Tally(99, 99), Tally(5000, 0), min_events=100, max_burn_ratio=1)
    assert (few.verdict, few.allowed_bad) == ("too_few", None)
    assert compare(PLAIN_5XX, Tally(100, 0), Tally(99, 0), min_events=100,
                   max_burn_ratio=1).verdict == "too_few"  # fmt: skip
    assert few.describe() == ("5xx: canary 99 bad of 99 (100.00%), baseline 0 bad of 5000 (0.00%)")


# -- the weights ---------------------------------------------------------------------


def test_the_baseline_shares_the_rest_in_proportion() -> None:
    assert with_canary({"v1": 100, "v2": 0}, "v2", 5) == {"v1": 95, "v2": 5}
    # v1 and v3 keep their 2:1 ratio: 80 * 2/3 and 80 * 1/3
    split = with_canary({"v1": 60, "v3": 30, "v2": 10}, "v2", 20)
    assert split["v1"] == pytest.approx(160 / 3)
    assert split["v3"] == pytest.approx(80 / 3)
    assert sum(split.values()) == 100
    assert with_canary({"v1": 0, "v3": 0, "v2": 100}, "v2", 50) == {"v1": 25, "v3": 25, "v2": 50}


# -- the state machine ---------------------------------------------------------------


def counts(canary: tuple[float, float], baseline: tuple[float, float]) -> dict[tuple[str, str],
                                                                               Tally]:  # fmt: skip
    return {("5xx", "v2"): Tally(*canary), ("5xx", "v1"): Tally(*baseline)}


def test_it_starts_advances_holds_and_promotes() -> None:
    r = Rollout(KEY, progressive(), {"v1": 100, "v2": 0})
    assert (r.phase, r.weight, r.weights()) == ("pending", None, {"v1": 100, "v2": 0})
    r.observe("api-1", counts((0, 0), (5000, 3)))  # before the start: a baseline only
    d = r.tick(0.0)
    assert d is not None
    assert (d.action, d.step, d.weight) == ("start", 0, 10)
    assert d.reason == "v2 begins at 10% (step 1 of 3)"
    assert r.weights() == {"v1": 90, "v2": 10}
    # a sidecar's first sample is its baseline: 700 requests it made before count for nothing
    r.observe("api-2", counts((70, 0), (630, 0)))
    r.observe("api-1", counts((60, 0), (5540, 3)))  # +60 canary, +540 baseline
    assert r.tick(30.0) is None  # good so far, but the step lasts 60 s
    r.observe("api-2", counts((120, 1), (1080, 1)))  # +50 (1 bad), +450 (1 bad)
    (c,) = r.comparisons()
    assert (c.canary, c.baseline) == (Tally(110, 1), Tally(990, 1))
    d = r.tick(60.0)
    assert d is not None
    assert (d.action, d.step, d.weight) == ("advance", 1, 50)
    # pi = 110 / 1100 = 0.1; with the baseline's 1, the canary's 2 bad of 3 would have
    # the chance 3 pi^2 (1 - pi) + pi^3 = 0.028, 3 of 4 0.0037 (< 1%): 2 allowed
    assert d.comparisons[0].allowed_bad == 2.0
    assert d.reason == (
        "v2 to 50%: 5xx: canary 1 bad of 110 (0.91%), baseline 1 bad of 990 (0.10%); "
        "canary allowed 2 bad (step 2 of 3)"
    )
    # the next step counts from its start
    r.observe("api-1", counts((100, 0), (5600, 3)))  # +40 canary, +60 baseline
    assert r.comparisons()[0].canary == Tally(40, 0)
    d = r.tick(120.0)
    assert d is not None
    assert (d.action, d.step, d.weight) == ("hold", 1, 50)
    assert d.reason.startswith("too few events to judge (each side needs 100): 5xx: canary 0")
    assert r.tick(121.0) is None  # a hold is said once a step
    r.observe("api-1", counts((200, 0), (5700, 3)))
    d = r.tick(130.0)
    assert d is not None
    assert (d.action, d.step, d.weight) == ("promote", 2, 100)
    assert d.reason.startswith("v2 takes 100%: 5xx: canary 0 bad of 140 (0.00%)")
    assert (r.phase, r.weights()) == ("promoted", {"v1": 0, "v2": 100})
    r.observe("api-1", counts((900, 900), (5700, 3)))
    assert r.tick(1000.0) is None  # final


def test_it_rolls_back_at_once_when_the_canary_burns_faster() -> None:
    r = Rollout(KEY, progressive(steps=[1, 5, 25, 50, 100], min_events=20), {"v1": 100, "v2": 0})
    r.tick(0.0)
    r.observe("api-1", counts((0, 0), (0, 0)))
    r.observe("api-1", counts((19, 19), (2000, 0)))
    assert r.tick(1.0) is None  # 19 < min_events: no verdict yet
    r.observe("api-1", counts((20, 20), (2100, 0)))
    d = r.tick(2.0)  # long before the interval: a rollback does not wait for it
    assert d is not None
    assert (d.action, d.step, d.weight) == ("rollback", -1, 0.0)
    # an interim look: pi = 20 / 2120; 1 bad of 1 has the chance pi = 0.0094, 2 of 2
    # pi^2 = 0.00009 (< 1/1000): 1 allowed
    assert d.reason == (
        "v2 burns faster than the baseline: 5xx: canary 20 bad of 20 (100.00%), "
        "baseline 0 bad of 2100 (0.00%); canary allowed 1 bad"
    )
    assert (r.phase, r.weights()) == ("rolled_back", {"v1": 100, "v2": 0})
    assert r.tick(100.0) is None


def test_a_reset_counter_counts_again_from_zero_and_a_returning_sidecar_is_a_baseline() -> None:
    r = Rollout(KEY, progressive(), {"v1": 100, "v2": 0})
    r.tick(0.0)
    r.observe("api-1", counts((500, 5), (5000, 5)))
    r.observe("api-1", counts((30, 1), (300, 0)))  # restarted: 30 and 300 since
    assert r.comparisons()[0].canary == Tally(30, 1)
    assert r.comparisons()[0].baseline == Tally(300, 0)
    r.forget("api-1")
    r.observe("api-1", counts((50, 1), (600, 0)))  # back: a baseline again
    assert r.comparisons()[0].canary == Tally(30, 1)


def test_every_judge_must_pass_and_one_failing_is_enough_to_roll_back() -> None:
    avail = Judge("orders:availability", "availability", 99.5)
    slow = Judge("orders:latency", "latency", 95.0, threshold=0.3)
    r = Rollout(KEY, progressive(), {"v1": 100, "v2": 0}, (avail, slow))
    r.tick(0.0)
    zero = {(j, s): Tally() for j in (avail.name, slow.name) for s in ("v1", "v2")}
    r.observe("api-1", zero)
    r.observe("api-1", {
        (avail.name, "v2"): Tally(200, 0), (avail.name, "v1"): Tally(2000, 2),
        (slow.name, "v2"): Tally(200, 40), (slow.name, "v1"): Tally(2000, 60),
    })  # fmt: skip
    d = r.tick(10.0)
    assert d is not None
    assert d.action == "rollback"
    # availability was fine; latency: q = 61/2001, e = 6.097, allowed = 6.097 + 2 sqrt(7.097)
    assert [c.verdict for c in d.comparisons] == ["ok", "worse"]
    assert "orders:latency: canary 40 bad of 200 (20.00%, burn 4.0x)" in d.reason
    assert "orders:availability" not in d.reason


def test_a_saved_state_carries_on_with_its_step_begun_again() -> None:
    r = Rollout(KEY, progressive(), {"v1": 100, "v2": 0})
    r.restore("progressing", 1, now=500.0)
    assert (r.phase, r.weight) == ("progressing", 50)
    assert r.tick(520.0) is None  # the step began again at 500
    promoted = Rollout(KEY, progressive(), {"v1": 100, "v2": 0})
    promoted.restore("promoted", 0, now=0.0)
    assert promoted.weights() == {"v1": 0, "v2": 100}
    with pytest.raises(ValueError, match="no step 2 of 3"):
        Rollout(KEY, progressive(), {"v1": 100, "v2": 0}).restore("progressing", 2, now=0.0)


# -- what it reads -------------------------------------------------------------------


def _line(name: str, value: float, route: str = "place-order", dest: str = "orders",
          **labels: str) -> str:  # fmt: skip
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'seawall_subset_{name}{{destination="{dest}",route="{route}"{extra}}} {value}'


PAGE = "\n".join([
    "# TYPE seawall_subset_requests_total counter",
    _line("requests_total", 90, subset="v1", status_class="2xx"),
    _line("requests_total", 2, subset="v1", status_class="5xx"),
    _line("requests_total", 7, subset="v2", status_class="5xx"),
    _line("requests_total", 3, subset="v2", status_class="2xx"),
    _line("requests_total", 50, route="order-status", subset="v2", status_class="5xx"),
    _line("requests_total", 50, dest="payments", subset="v2", status_class="5xx"),
    _line("request_duration_seconds_bucket", 80, subset="v1", le="0.3"),
    _line("request_duration_seconds_bucket", 92, subset="v1", le="+Inf"),
    _line("request_duration_seconds_count", 92, subset="v1"),
    _line("request_duration_seconds_bucket", 10, subset="v2", le="0.3"),
    _line("request_duration_seconds_count", 10, subset="v2"),
    'seawall_requests_total{direction="outbound",destination="orders",route="place-order",'
    'status_class="5xx"} 9',
]) + "\n"  # fmt: skip


def test_the_subset_counters_of_a_page() -> None:
    slow = Judge("orders:latency", "latency", 95.0, threshold=0.3)
    found = subset_counts(PAGE, "gateway", KEY, [PLAIN_5XX, slow])
    assert found == {
        ("5xx", "v1"): Tally(92, 2),
        ("5xx", "v2"): Tally(10, 7),
        ("orders:latency", "v1"): Tally(92, 12),  # 92 - 80 above 300ms
        ("orders:latency", "v2"): Tally(10, 0),
    }
    # a threshold the sidecar has no bound for says nothing; a caller's judge reads its pages
    other = Judge("orders:latency", "latency", 95.0, threshold=0.25)
    assert subset_counts(PAGE, "gateway", KEY, [other]) == {}
    mine = Judge("orders:availability", caller="web")
    assert subset_counts(PAGE, "gateway", KEY, [mine]) == {}
    assert subset_counts(PAGE + 'seawall_subset_requests_total{oops 1\n', "gateway", KEY,
                         [PLAIN_5XX]) == {}  # fmt: skip


def test_the_judges_are_the_destinations_slos_for_the_route() -> None:
    ports = {"inbound": 18002, "outbound": 15002, "admin": 19002}
    doc = {
        "mesh": "shop",
        "services": {
            "orders": {"port": 8002, "sidecar": ports, "subsets": {"v1": {}, "v2": {}}},
            "web": {"port": 8001, "sidecar": {"inbound": 18001, "outbound": 15001, "admin": 19001}},
        },  # fmt: skip
        "policies": {
            "orders": {
                "routes": [
                    {"name": "place-order", "split": {"v1": 100, "v2": 0}, "progressive": {}},
                    {"name": "order-status", "match": {"path_prefix": "/orders/"}},
                ]
            }
        },  # fmt: skip
        "slos": {
            "orders": {
                "availability": "99.5%",
                "latency": {"threshold": "300ms", "percent": "95%"},
            },  # fmt: skip
            "status": {"service": "orders", "route": "order-status", "availability": "99%"},
            "from-web": {
                "service": "orders",
                "caller": "web",
                "measured_at": "callers",
                "route": "place-order",
                "availability": "99.9%",
            },  # fmt: skip
            "web": {"availability": "99%"},
        },
    }
    mesh = parse_mesh(doc)
    assert mesh.policies["orders"].routes[0].progressive is not None
    assert mesh.policies["orders"].routes[0].progressive.canary == "v2"  # the lightest
    assert judges_for(mesh, KEY) == (
        Judge("orders:availability", "availability", 99.5),
        Judge("orders:latency", "latency", 95.0, 0.3),
        Judge("from-web:availability", "availability", 99.9, caller="web"),
    )
    assert judges_for(mesh, RolloutKey("web", "route0")) == (
        Judge("web:availability", "availability", 99.0),
    )
    del doc["slos"]
    assert judges_for(parse_mesh(doc), KEY) == (PLAIN_5XX,)
