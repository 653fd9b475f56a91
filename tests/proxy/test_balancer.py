"""Tests for seawall.proxy.upstream: endpoints, their stats, and the balancers."""

from __future__ import annotations

import copy
import heapq
import math
import pickle
import random
from collections import Counter
from typing import Any

import pytest

from seawall.policy.clock import FakeClock
from seawall.proxy.upstream import (
    DEFAULT_RTT,
    Balancer,
    Endpoint,
    EndpointStats,
    LeastRequestP2C,
    OutlierDetector,
    PeakEwmaP2C,
    RoundRobin,
    create_balancer,
)

ALL_KINDS = [RoundRobin, LeastRequestP2C, PeakEwmaP2C]


def eps(n: int, **kwargs: Any) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}", 8080, **kwargs) for i in range(n)]


def picks(balancer: Balancer, n: int, now: float = 0.0, **kwargs: Any) -> list[Endpoint]:
    out = []
    for _ in range(n):
        ep = balancer.pick(now, **kwargs)
        assert ep is not None
        out.append(ep)
    return out


# --------------------------------------------------------------------------- Endpoint


def test_endpoint_identity_is_address_and_port() -> None:
    a = Endpoint("10.0.0.1", 80, subset="v1", weight=1, metadata={"zone": "a"})
    b = Endpoint("10.0.0.1", 80, subset="v2", weight=5)
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert a != Endpoint("10.0.0.1", 81)
    assert a != Endpoint("10.0.0.2", 80)


def test_endpoint_metadata_is_read_only_copy() -> None:
    labels = {"zone": "a"}
    ep = Endpoint("h", 1, metadata=labels)
    labels["zone"] = "b"
    assert ep.metadata["zone"] == "a"
    with pytest.raises(TypeError):
        ep.metadata["zone"] = "c"  # type: ignore[index]


def test_endpoint_pickles_and_copies() -> None:
    ep = Endpoint("10.0.0.1", 80, subset="v1", weight=2, metadata={"zone": "a"})
    for clone in (pickle.loads(pickle.dumps(ep)), copy.deepcopy(ep), copy.copy(ep)):
        assert clone == ep
        assert hash(clone) == hash(ep)
        assert (clone.subset, clone.weight, dict(clone.metadata)) == ("v1", 2, {"zone": "a"})


def test_endpoint_str() -> None:
    assert str(Endpoint("orders", 8002)) == "orders:8002"
    assert str(Endpoint("::1", 80)) == "[::1]:80"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"address": "", "port": 80}, "Endpoint: address must be a non-empty str, got ''"),
        ({"address": "h", "port": 0}, "Endpoint: port must be an int in 1..65535, got 0"),
        ({"address": "h", "port": 65536}, "port must be an int in 1..65535, got 65536"),
        ({"address": "h", "port": True}, "port must be an int in 1..65535, got True"),
        ({"address": "h", "port": 80, "weight": 0}, "weight must be an int >= 1, got 0"),
        ({"address": "h", "port": 80, "weight": 1.5}, "weight must be an int >= 1, got 1.5"),
        ({"address": "h", "port": 80, "subset": ""}, "subset must be a non-empty str or None"),
        ({"address": "h", "port": 80, "metadata": [1]}, "metadata must be a mapping, got \\[1\\]"),
    ],
)
def test_endpoint_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Endpoint(**kwargs)


# --------------------------------------------------------------------------- EndpointStats


def test_stats_start_at_default_rtt_and_count_in_flight() -> None:
    s = EndpointStats()
    assert s.latency(0.0) == DEFAULT_RTT
    assert s.cost(0.0) == DEFAULT_RTT
    s.on_start(0.0)
    s.on_start(0.0)
    assert s.in_flight == 2
    assert s.cost(0.0) == pytest.approx(DEFAULT_RTT * 3)
    s.on_finish(0.0, 0.01, True)
    s.on_finish(0.0, 0.01, False)
    s.on_finish(0.0, 0.01, True)  # one too many: never negative
    assert (s.in_flight, s.requests, s.failures) == (0, 3, 1)


def test_stats_peak_replaces_estimate_at_once() -> None:
    s = EndpointStats(default_rtt=0.01)
    s.on_start(0.0)
    s.on_finish(0.5, 0.5, True)
    assert s.latency(0.5) == 0.5


def test_stats_faster_sample_decays_toward_it_by_elapsed_time() -> None:
    s = EndpointStats(default_rtt=0.01, decay=10.0)
    s.on_start(0.0)
    s.on_finish(1.0, 1.0, True)  # peak: 1.0 at t=1
    s.on_finish(6.0, 0.1, True)  # 5 s later, a 0.1 s sample
    w = math.exp(-5 / 10)
    assert s.latency(6.0) == pytest.approx(1.0 * w + 0.1 * (1 - w))


def test_stats_decay_toward_zero_while_idle() -> None:
    s = EndpointStats(default_rtt=0.01, decay=10.0)
    s.on_start(0.0)
    s.on_finish(1.0, 1.0, True)
    assert s.latency(11.0) == pytest.approx(math.exp(-1))
    # Reading twice decays once in total (exp composes).
    assert s.latency(21.0) == pytest.approx(math.exp(-2))


def test_stats_fast_failure_never_lowers_the_estimate() -> None:
    s = EndpointStats(default_rtt=0.01, decay=10.0)
    s.on_start(0.0)
    s.on_finish(1.0, 1.0, True)
    s.on_finish(6.0, 0.001, False)  # fast failure: not a sample
    assert s.latency(6.0) == pytest.approx(math.exp(-0.5))  # only idle decay
    s.on_finish(6.0, 2.0, False)  # a slow failure still raises the peak
    assert s.latency(6.0) == 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"default_rtt": 0}, "EndpointStats: default_rtt must be a finite number > 0, got 0"),
        ({"decay": -1.0}, "EndpointStats: decay must be a finite number > 0, got -1.0"),
        ({"decay": math.inf}, "decay must be a finite number > 0, got inf"),
        ({"decay": math.nan}, "decay must be a finite number > 0, got nan"),
    ],
)
def test_stats_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EndpointStats(**kwargs)


# --------------------------------------------------------------------------- common behaviour


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_empty_set_picks_none(cls: type[Balancer]) -> None:
    b = cls(rng=random.Random(1))
    assert b.pick(0.0) is None
    assert b.pick(0.0, exclude={Endpoint("h", 1)}) is None
    assert b.pick(0.0, subset="v1") is None


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_single_endpoint_always_picked(cls: type[Balancer]) -> None:
    (only,) = eps(1)
    b = cls([only], rng=random.Random(1))
    assert set(picks(b, 20)) == {only}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_exclude_goes_to_another_endpoint(cls: type[Balancer]) -> None:
    a, b_, c = eps(3)
    b = cls([a, b_, c], rng=random.Random(3))
    assert a not in set(picks(b, 200, exclude={a}))
    assert set(picks(b, 50, exclude={a, b_})) == {c}
    # a list works as well as a set
    assert set(picks(b, 50, exclude=[a, c])) == {b_}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_exclude_everything_falls_back_to_all(cls: type[Balancer]) -> None:
    a, b_ = eps(2)
    b = cls([a, b_], rng=random.Random(3))
    assert set(picks(b, 100, exclude={a, b_})) == {a, b_}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_subset_picks_only_its_endpoints(cls: type[Balancer]) -> None:
    v1 = [Endpoint(f"10.1.0.{i}", 80, subset="v1") for i in range(3)]
    v2 = [Endpoint(f"10.2.0.{i}", 80, subset="v2") for i in range(2)]
    plain = Endpoint("10.3.0.1", 80)
    b = cls([*v1, *v2, plain], rng=random.Random(5))
    assert b.subsets == frozenset({"v1", "v2"})
    assert set(picks(b, 200, subset="v2")) == set(v2)
    assert set(picks(b, 200, subset="v1")) == set(v1)
    assert set(picks(b, 600)) == {*v1, *v2, plain}
    assert b.pick(0.0, subset="v3") is None
    # exclusion within a subset
    assert set(picks(b, 50, subset="v2", exclude={v2[0]})) == {v2[1]}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_update_keeps_stats_of_endpoints_that_remain(cls: type[Balancer]) -> None:
    a, b_, c = eps(3)
    bal = cls([a, b_], rng=random.Random(1))
    bal.on_start(a, 0.0)
    bal.on_start(a, 0.0)
    bal.on_start(b_, 0.0)
    stats_a = bal.stats(a)
    assert stats_a is not None
    # a stays (with a new weight), b leaves, c joins
    bal.update([Endpoint("10.0.0.0", 8080, weight=3), c])
    assert bal.stats(a) is stats_a
    assert stats_a.in_flight == 2
    assert bal.stats(b_) is None
    new_c = bal.stats(c)
    assert new_c is not None
    assert new_c.in_flight == 0
    assert bal.endpoints == (a, c)
    assert bal.endpoints[0].weight == 3
    # the finish of a request to the departed endpoint is ignored
    bal.on_finish(b_, 1.0, 0.1, True)
    bal.on_start(b_, 1.0)
    bal.on_finish(a, 1.0, 0.1, True)
    assert stats_a.in_flight == 1
    assert set(picks(bal, 100)) <= {a, c}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_update_rejects_duplicates(cls: type[Balancer]) -> None:
    with pytest.raises(
        ValueError, match=f"{cls.__name__}: endpoints must be unique, got h:1 twice"
    ):
        cls([Endpoint("h", 1), Endpoint("h", 1, weight=2)])


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_validation_names_the_balancer(cls: type[Balancer]) -> None:
    with pytest.raises(
        ValueError, match=f"{cls.__name__}: default_rtt must be a finite number > 0"
    ):
        cls(default_rtt=0.0)
    with pytest.raises(ValueError, match=f"{cls.__name__}: decay must be a finite number > 0"):
        cls(decay=-1)


def test_create_balancer() -> None:
    assert type(create_balancer()) is PeakEwmaP2C
    assert type(create_balancer("round_robin", eps(2))) is RoundRobin
    assert type(create_balancer("least_request")) is LeastRequestP2C
    with pytest.raises(ValueError, match="create_balancer: kind must be one of .*, got 'random'"):
        create_balancer("random")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- with ejections


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_ejected_endpoints_are_skipped_until_they_return(cls: type[Balancer]) -> None:
    clock = FakeClock(100.0)
    endpoints = eps(3)
    a, b_, c = endpoints
    od = OutlierDetector(endpoints, max_ejected_percent=100, base_ejection=30)
    bal = cls(endpoints, rng=random.Random(2), ejections=od)
    assert set(picks(bal, 100, clock())) == {a, b_, c}
    for _ in range(5):
        od.on_result(b_, clock(), 500)
    assert od.is_ejected(b_, clock())
    assert b_ not in set(picks(bal, 200, clock()))
    clock.advance(29.9)
    assert b_ not in set(picks(bal, 200, clock()))
    clock.advance(0.1)  # the ejection time is over: back without any other event
    assert b_ in set(picks(bal, 200, clock()))


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_healthy_excluded_is_preferred_to_ejected(cls: type[Balancer]) -> None:
    a, b_ = eps(2)
    od = OutlierDetector([a, b_], max_ejected_percent=50)
    bal = cls([a, b_], rng=random.Random(2), ejections=od)
    for _ in range(5):
        od.on_result(b_, 0.0, None, gateway_error=True)
    # a retry after a failed on a: a again, not the ejected b
    assert set(picks(bal, 50, exclude={a})) == {a}


@pytest.mark.parametrize("cls", ALL_KINDS)
def test_panic_when_every_endpoint_is_ejected(cls: type[Balancer]) -> None:
    a, b_ = eps(2)
    od = OutlierDetector([a, b_], max_ejected_percent=100)
    panicking = cls([a, b_], rng=random.Random(2), ejections=od)
    strict = cls([a, b_], rng=random.Random(2), ejections=od, panic=False)
    for ep in (a, b_):
        for _ in range(5):
            od.on_result(ep, 0.0, 503)
    assert od.ejected_count(0.0) == 2
    assert set(picks(panicking, 100)) == {a, b_}
    assert set(picks(panicking, 50, exclude={a})) == {b_}
    assert strict.pick(0.0) is None


def test_panic_is_per_subset() -> None:
    v1 = Endpoint("10.1.0.1", 80, subset="v1")
    v2 = [Endpoint(f"10.2.0.{i}", 80, subset="v2") for i in range(2)]
    od = OutlierDetector([v1, *v2], max_ejected_percent=100)
    bal = PeakEwmaP2C([v1, *v2], rng=random.Random(2), ejections=od)
    for _ in range(5):
        od.on_result(v1, 0.0, 500)
    assert set(picks(bal, 20, subset="v1")) == {v1}  # only member: panic
    assert v1 not in set(picks(bal, 200))  # the whole set still has healthy ones


# --------------------------------------------------------------------------- RoundRobin


def test_round_robin_equal_weights_is_a_rotation() -> None:
    endpoints = eps(4)
    b = RoundRobin(endpoints, rng=random.Random(11))
    seq = picks(b, 12)
    start = endpoints.index(seq[0])
    assert seq == [endpoints[(start + k) % 4] for k in range(12)]


def test_round_robin_start_is_random() -> None:
    starts = {RoundRobin(eps(5), rng=random.Random(seed)).pick(0.0) for seed in range(40)}
    assert len(starts) >= 4


def test_round_robin_smooth_weighted_order_is_nginx() -> None:
    a = Endpoint("a", 80, weight=5)
    b_ = Endpoint("b", 80, weight=1)
    c = Endpoint("c", 80, weight=1)
    bal = RoundRobin([a, b_, c], rng=random.Random(1))
    # nginx's documented sequence for weights 5, 1, 1: { a, a, b, a, c, a, a }
    names = [ep.address for ep in picks(bal, 14)]
    assert names == list("aabacaa" * 2)


def test_round_robin_weights_are_exact_per_period() -> None:
    weights = {"a": 3, "b": 2, "c": 1}
    bal = RoundRobin([Endpoint(n, 80, weight=w) for n, w in weights.items()], rng=random.Random(1))
    seq = [ep.address for ep in picks(bal, 600)]
    for period in range(100):
        assert Counter(seq[period * 6 : period * 6 + 6]) == weights
    assert seq[:6] == ["a", "b", "a", "c", "b", "a"]  # spread out, not bunched


def test_round_robin_weighted_exclude_skips_like_nginx() -> None:
    a = Endpoint("a", 80, weight=5)
    b_ = Endpoint("b", 80, weight=1)
    bal = RoundRobin([a, b_], rng=random.Random(1))
    assert picks(bal, 3, exclude={a}) == [b_, b_, b_]
    assert Counter(ep.address for ep in picks(bal, 600)) == {"a": 500, "b": 100}


# --------------------------------------------------------------------------- P2C


def test_least_request_never_picks_the_most_loaded_of_three() -> None:
    a, b_, c = eps(3)
    bal = LeastRequestP2C([a, b_, c], rng=random.Random(4))
    for _ in range(10):
        bal.on_start(a, 0.0)
    bal.on_start(b_, 0.0)
    counts = Counter(picks(bal, 3000))
    # a is never the less loaded of two distinct candidates
    assert counts[a] == 0
    # c (0 in flight) beats b (1) whenever they meet: c gets 2/3 of all picks
    assert counts[c] / 3000 == pytest.approx(2 / 3, abs=0.03)


def test_least_request_is_uniform_when_idle() -> None:
    endpoints = eps(4)
    bal = LeastRequestP2C(endpoints, rng=random.Random(4))
    counts = Counter(picks(bal, 8000))
    for ep in endpoints:
        assert counts[ep] / 8000 == pytest.approx(0.25, abs=0.03)


def test_least_request_weights_scale_load() -> None:
    heavy = Endpoint("heavy", 80, weight=3)
    light = Endpoint("light", 80, weight=1)
    bal = LeastRequestP2C([heavy, light], rng=random.Random(4))
    for _ in range(2):
        bal.on_start(heavy, 0.0)
    # (2 + 1) / 3 == (0 + 1) / 1: a tie, either may win
    assert set(picks(bal, 50)) == {heavy, light}
    bal.on_start(heavy, 0.0)
    # (3 + 1) / 3 > (0 + 1) / 1
    assert set(picks(bal, 50)) == {light}


def _simulate(
    balancer: Balancer,
    endpoints: list[Endpoint],
    latency: Any,
    until: float,
    step: float = 0.002,
) -> list[tuple[float, Endpoint]]:
    """Open-loop load: a request every ``step`` s; each takes ``latency(endpoint, t)``."""
    pending: list[tuple[float, int, float]] = []
    log: list[tuple[float, Endpoint]] = []
    t = 0.0
    while t < until:
        while pending and pending[0][0] <= t:
            finish, index, start = heapq.heappop(pending)
            balancer.on_finish(endpoints[index], finish, finish - start, True)
        ep = balancer.pick(t)
        assert ep is not None
        balancer.on_start(ep, t)
        heapq.heappush(pending, (t + latency(ep, t), endpoints.index(ep), t))
        log.append((t, ep))
        t += step
    return log


def _share(log: list[tuple[float, Endpoint]], ep: Endpoint, lo: float, hi: float) -> float:
    window = [e for t, e in log if lo <= t < hi]
    return sum(e == ep for e in window) / len(window)


def test_peak_ewma_moves_traffic_away_from_a_slow_endpoint_and_back() -> None:
    endpoints = eps(3)
    slow = endpoints[1]

    def latency(ep: Endpoint, t: float) -> float:
        return 0.5 if ep == slow and 10.0 <= t < 20.0 else 0.010

    bal = PeakEwmaP2C(endpoints, rng=random.Random(7))
    log = _simulate(bal, endpoints, latency, until=60.0)
    assert _share(log, slow, 0.0, 10.0) == pytest.approx(1 / 3, abs=0.05)
    # Slow from t=10: its first slow answer arrives at 10.5 s; within the next
    # 50 requests (0.1 s) it gets (almost) nothing.
    assert _share(log, slow, 10.5, 10.6) <= 0.02
    assert _share(log, slow, 10.6, 20.0) <= 0.01
    # Fast again from t=20. Its 0.5 s peak decays with the 10 s time constant
    # until it is tried again, and then it earns its share back.
    assert _share(log, slow, 50.0, 60.0) == pytest.approx(1 / 3, abs=0.05)


def test_peak_ewma_prefers_the_faster_endpoint() -> None:
    fast, slower = eps(2)
    bal = PeakEwmaP2C([fast, slower], rng=random.Random(7))
    log = _simulate(bal, [fast, slower], lambda ep, t: 0.005 if ep == fast else 0.050, 5.0)
    assert _share(log, fast, 1.0, 5.0) > 0.8


def test_peak_ewma_new_endpoint_is_not_flooded() -> None:
    old = eps(3)
    new = Endpoint("10.0.0.9", 8080)
    bal = PeakEwmaP2C(old, rng=random.Random(7))
    log = _simulate(bal, old, lambda ep, t: 0.010, 5.0)
    assert log
    bal.update([*old, new])
    now = 5.0
    # New requests that do not finish yet: the new endpoint's default 30 ms
    # estimate times its growing in-flight count keeps it to a fair share.
    counts: Counter[Endpoint] = Counter()
    for _ in range(40):
        ep = bal.pick(now)
        assert ep is not None
        bal.on_start(ep, now)
        counts[ep] += 1
    assert counts[new] <= 12
