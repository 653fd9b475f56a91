"""Tests for seawall.proxy.routing: route matching, traffic split, mirroring, fault injection."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.proxy.routing import (
    Decider,
    FaultDecision,
    FaultSpec,
    HeaderMatch,
    MirrorSpec,
    Route,
    RouteMatch,
    RouteTable,
    WeightedSplit,
    shadow_host,
)


def table(*matches: RouteMatch) -> RouteTable[int]:
    return RouteTable([Route(m, i, name=f"r{i}") for i, m in enumerate(matches)])


def matched(t: RouteTable[int], method: bytes, path: bytes, headers: Any = ()) -> int | None:
    route = t.match(method, path, headers)
    return None if route is None else route.data


# --------------------------------------------------------------------------- paths


def test_prefix_is_a_plain_prefix_of_the_raw_path() -> None:
    t = table(RouteMatch(path_prefix="/api"))
    assert matched(t, b"GET", b"/api") == 0
    assert matched(t, b"GET", b"/api/users?x=1") == 0
    assert matched(t, b"GET", b"/apix") == 0  # as Envoy: use "/api/" for a segment
    assert matched(t, b"GET", b"/ap") is None
    assert matched(t, b"GET", b"/API") is None  # case-sensitive


def test_exact_ignores_the_query() -> None:
    t = table(RouteMatch(path_exact="/health"))
    assert matched(t, b"GET", b"/health") == 0
    assert matched(t, b"GET", b"/health?verbose=1") == 0
    assert matched(t, b"GET", b"/health/") is None
    assert matched(t, b"GET", b"/healthz") is None


def test_regex_must_match_the_whole_path_without_query() -> None:
    t = table(RouteMatch(path_regex=r"/users/[0-9]+"))
    assert matched(t, b"GET", b"/users/42") == 0
    assert matched(t, b"GET", b"/users/42?x=/users/a") == 0
    assert matched(t, b"GET", b"/users/42/orders") is None
    assert matched(t, b"GET", b"/v1/users/42") is None


def test_no_path_matcher_matches_every_path() -> None:
    t = table(RouteMatch(), RouteMatch(path_prefix="/"))
    assert matched(t, b"GET", b"/anything") == 0
    t = table(RouteMatch(path_prefix="/"))
    assert matched(t, b"DELETE", b"/") == 0


# --------------------------------------------------------------------------- methods and headers


def test_methods() -> None:
    t = table(RouteMatch(methods=frozenset({"post", "PUT"})))
    assert t.routes[0].match.methods == frozenset({"POST", "PUT"})
    assert matched(t, b"POST", b"/") == 0
    assert matched(t, b"PUT", b"/") == 0
    assert matched(t, b"GET", b"/") is None
    assert matched(t, b"post", b"/") is None  # methods are case-sensitive on the wire


def test_header_exact_regex_present_absent() -> None:
    t = table(
        RouteMatch(headers=(HeaderMatch("X-Canary", exact="1"),)),
        RouteMatch(headers=(HeaderMatch("x-user", regex=r"u-[0-9]+"),)),
        RouteMatch(headers=(HeaderMatch("x-debug", present=True),)),
        RouteMatch(headers=(HeaderMatch("authorization", present=False),)),
    )
    assert matched(t, b"GET", b"/", [(b"x-canary", b"1")]) == 0
    assert matched(t, b"GET", b"/", [(b"X-CANARY", b"1")]) == 0  # names: any case
    assert matched(t, b"GET", b"/", [(b"x-canary", b"2"), (b"x-user", b"u-7")]) == 1
    assert matched(t, b"GET", b"/", [(b"x-user", b"u-7x")]) == 3  # regex is a full match
    assert matched(t, b"GET", b"/", [(b"x-debug", b"")]) == 2
    assert matched(t, b"GET", b"/", [(b"authorization", b"Bearer x")]) is None
    assert matched(t, b"GET", b"/") == 3


def test_all_header_conditions_must_hold() -> None:
    t = table(RouteMatch(headers=(HeaderMatch("a", exact="1"), HeaderMatch("b", present=True))))
    assert matched(t, b"GET", b"/", [(b"a", b"1"), (b"b", b"x")]) == 0
    assert matched(t, b"GET", b"/", [(b"a", b"1")]) is None
    assert matched(t, b"GET", b"/", [(b"b", b"x")]) is None


def test_repeated_headers_are_joined_with_commas() -> None:
    t = table(RouteMatch(headers=(HeaderMatch("x-tag", exact="a,b"),)))
    assert matched(t, b"GET", b"/", [(b"x-tag", b"a"), (b"X-Tag", b"b")]) == 0
    assert matched(t, b"GET", b"/", [(b"x-tag", b"a")]) is None


def test_headers_as_a_mapping() -> None:
    t = table(RouteMatch(headers=(HeaderMatch("x-canary", exact="1"),)))
    assert matched(t, b"GET", b"/", {b"x-canary": b"1"}) == 0
    assert matched(t, b"GET", b"/", {b"x-canary": b"0"}) is None


def test_headers_are_not_read_without_header_conditions() -> None:
    class Exploding:
        def __iter__(self) -> Any:
            raise AssertionError("headers read")

    t = table(RouteMatch(path_prefix="/a"))
    assert matched(t, b"GET", b"/a", Exploding()) == 0


def test_first_match_wins_in_config_order() -> None:
    t = table(
        RouteMatch(path_prefix="/checkout", methods=frozenset({"POST"})),
        RouteMatch(path_prefix="/checkout"),
        RouteMatch(path_prefix="/"),
    )
    assert matched(t, b"POST", b"/checkout/1") == 0
    assert matched(t, b"GET", b"/checkout/1") == 1
    assert matched(t, b"GET", b"/other") == 2


def test_no_route_matches() -> None:
    assert matched(table(RouteMatch(path_prefix="/a")), b"GET", b"/b") is None
    assert RouteTable[int]([]).match(b"GET", b"/") is None


def test_route_carries_typed_data_and_compares_by_identity() -> None:
    r1 = Route(RouteMatch(path_prefix="/"), {"retries": 3}, name="all")
    r2 = Route(RouteMatch(path_prefix="/"), {"retries": 3}, name="all")
    assert r1 != r2
    assert {r1: 1, r2: 2}[r1] == 1
    t = RouteTable([r1, r2])
    hit = t.match(b"GET", b"/x")
    assert hit is r1
    assert hit.data["retries"] == 3


# --------------------------------------------------------------------------- spec validation


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: HeaderMatch("x a", exact="1"), "HeaderMatch: name must be a header field name"),
        (lambda: HeaderMatch("x"), "HeaderMatch: exactly one of exact, regex, present"),
        (lambda: HeaderMatch("x", exact="1", present=True), "exactly one of"),
        (lambda: HeaderMatch("x", regex="("), "HeaderMatch: regex must be a valid regular exp"),
        (lambda: HeaderMatch("x", present=1), "HeaderMatch: present must be a bool, got 1"),  # type: ignore[arg-type]
        (lambda: RouteMatch(path_prefix="api"), "RouteMatch: path_prefix must be an ASCII path"),
        (lambda: RouteMatch(path_exact="/a?b"), "RouteMatch: path_exact must be an ASCII path"),
        (lambda: RouteMatch(path_exact="/é"), "path_exact must be an ASCII path"),
        (lambda: RouteMatch(path_prefix="/a", path_exact="/a"), "at most one path matcher"),
        (lambda: RouteMatch(path_regex="[a-"), "RouteMatch: path_regex must be a valid regular"),
        (lambda: RouteMatch(methods="GET"), "RouteMatch: methods must be a set of method names"),  # type: ignore[arg-type]
        (lambda: RouteMatch(methods=frozenset({"G T"})), "methods must be method names, got 'G T'"),
        (lambda: RouteMatch(headers=("x",)), "RouteMatch: headers must be HeaderMatch objects"),  # type: ignore[arg-type]
        (lambda: WeightedSplit.of({}), "WeightedSplit: weights must be a non-empty tuple"),
        (lambda: WeightedSplit.of({"v1": -1}), "weight of 'v1' must be a finite number >= 0"),
        (lambda: WeightedSplit.of({"v1": float("nan")}), "weight of 'v1' must be a finite"),
        (lambda: WeightedSplit.of({"v1": True}), "weight of 'v1' must be a finite number"),
        (lambda: WeightedSplit.of({"v1": 0, "v2": 0}), "at least one weight must be > 0"),
        (lambda: WeightedSplit.of({"": 1}), "subset must be a non-empty str, got ''"),
        (lambda: WeightedSplit((("v1", 1), ("v1", 2))), "subsets must be unique, got 'v1' twice"),
        (lambda: MirrorSpec(""), "MirrorSpec: destination must be a non-empty str"),
        (
            lambda: MirrorSpec("s", percent=101),
            r"MirrorSpec: percent must be in \[0, 100\], got 101",
        ),
        (lambda: FaultSpec(delay=-1), "FaultSpec: delay must be a finite number of seconds >= 0"),
        (
            lambda: FaultSpec(delay_percent=120),
            r"FaultSpec: delay_percent must be in \[0, 100\], got 120",
        ),
        (
            lambda: FaultSpec(abort_percent=-1),
            r"FaultSpec: abort_percent must be in \[0, 100\], got -1",
        ),
        (lambda: FaultSpec(abort_status=99), "FaultSpec: abort_status must be an int in 200..599"),
        (lambda: FaultSpec(abort_status=503.0), "abort_status must be an int in 200..599"),  # type: ignore[arg-type]
        (lambda: FaultSpec(header_faults=1), "FaultSpec: header_faults must be a bool, got 1"),  # type: ignore[arg-type]
        (lambda: Route("x", 1), "Route: match must be a RouteMatch, got 'x'"),  # type: ignore[arg-type]
        (lambda: Route(RouteMatch(), 1, split={"v1": 1}), "Route: split must be a WeightedSplit"),  # type: ignore[arg-type]
        (lambda: RouteTable(["x"]), "RouteTable: routes must be Route objects, got 'x'"),  # type: ignore[arg-type]
    ],
)
def test_spec_validation(factory: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


# --------------------------------------------------------------------------- split


def test_split_of_mapping() -> None:
    split = WeightedSplit.of({"v1": 90, "v2": 10})
    assert split.weights == (("v1", 90), ("v2", 10))
    assert split.total == 100


def test_zero_weight_subset_is_never_chosen() -> None:
    decide = Decider(random.Random(1))
    for weights in ({"a": 0, "b": 1}, {"a": 1, "b": 0}, {"a": 0, "b": 1, "c": 0}):
        split = WeightedSplit.of(weights)
        chosen = {decide.choose_subset(split) for _ in range(2000)}
        assert chosen == {k for k, w in weights.items() if w > 0}


def test_choose_subset_at_the_edges_of_random() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__(0)
            self.value = value

        def random(self) -> float:
            return self.value

    split = WeightedSplit.of({"a": 1, "b": 0, "c": 1})
    assert Decider(Fixed(0.0)).choose_subset(split) == "a"
    assert Decider(Fixed(0.5)).choose_subset(split) == "c"
    assert Decider(Fixed(1 - 2**-53)).choose_subset(split) == "c"


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    weights=st.lists(st.integers(0, 100), min_size=1, max_size=5).filter(lambda w: sum(w) > 0),
    seed=st.integers(0, 2**32 - 1),
)
def test_split_is_within_two_percent_over_10000_requests(weights: list[int], seed: int) -> None:
    split = WeightedSplit.of({f"v{i}": w for i, w in enumerate(weights)})
    decide = Decider(random.Random(seed))
    counts = Counter(decide.choose_subset(split) for _ in range(10_000))
    total = sum(weights)
    for i, w in enumerate(weights):
        share = counts[f"v{i}"] / 10_000
        assert abs(share - w / total) <= 0.02, (weights, counts)


# --------------------------------------------------------------------------- mirror


def test_should_mirror() -> None:
    decide = Decider(random.Random(3))
    assert not any(decide.should_mirror(0) for _ in range(1000))
    assert all(decide.should_mirror(100) for _ in range(1000))
    share = sum(decide.should_mirror(30) for _ in range(10_000)) / 10_000
    assert share == pytest.approx(0.30, abs=0.02)


def test_certain_decisions_draw_nothing() -> None:
    rng = random.Random(5)
    state = rng.getstate()
    decide = Decider(rng)
    decide.should_mirror(0)
    decide.should_mirror(100)
    assert decide.fault(FaultSpec()) is None
    assert decide.fault(None) is None
    assert rng.getstate() == state


@pytest.mark.parametrize(
    ("host", "shadow"),
    [
        (b"orders", b"orders-shadow"),
        (b"orders:8002", b"orders-shadow:8002"),
        (b"10.0.0.1:80", b"10.0.0.1-shadow:80"),
        (b"[::1]:80", b"[::1]-shadow:80"),
        (b"[::1]", b"[::1]-shadow"),
    ],
)
def test_shadow_host(host: bytes, shadow: bytes) -> None:
    assert shadow_host(host) == shadow


# --------------------------------------------------------------------------- fault


def test_configured_delay_and_abort_percentages() -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(delay=0.3, delay_percent=10, abort_status=502, abort_percent=20)
    results = [decide.fault(spec) for _ in range(10_000)]
    delays = sum(r is not None and r.delay == 0.3 for r in results)
    aborts = sum(r is not None and r.abort_status == 502 for r in results)
    assert delays / 10_000 == pytest.approx(0.10, abs=0.02)
    assert aborts / 10_000 == pytest.approx(0.20, abs=0.02)
    # drawn independently: some requests get both
    assert any(r is not None and r.delay and r.abort_status for r in results)


def test_always_fault() -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(delay=0.25, delay_percent=100, abort_status=503, abort_percent=100)
    assert decide.fault(spec) == FaultDecision(0.25, 503)


def test_header_faults_when_allowed() -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(header_faults=True)
    assert decide.fault(spec) is None
    assert decide.fault(spec, [(b"x-seawall-fault-delay-ms", b"250")]) == FaultDecision(0.25)
    assert decide.fault(spec, [(b"X-Seawall-Fault-Abort", b"503")]) == FaultDecision(0.0, 503)
    both = [(b"x-seawall-fault-delay-ms", b"10"), (b"x-seawall-fault-abort", b"429")]
    assert decide.fault(spec, both) == FaultDecision(0.01, 429)
    assert decide.fault(spec, {b"x-seawall-fault-abort": b"500"}) == FaultDecision(0.0, 500)


def test_header_faults_ignored_unless_allowed() -> None:
    decide = Decider(random.Random(9))
    headers = [(b"x-seawall-fault-delay-ms", b"250"), (b"x-seawall-fault-abort", b"503")]
    assert decide.fault(FaultSpec(), headers) is None
    assert decide.fault(None, headers) is None


def test_header_delay_is_capped() -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(header_faults=True, max_header_delay=2.0)
    assert decide.fault(spec, [(b"x-seawall-fault-delay-ms", b"999999999")]) == FaultDecision(2.0)


def test_header_overrides_configured_fault_of_its_kind() -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(delay=1.0, delay_percent=100, abort_percent=0, header_faults=True)
    assert decide.fault(spec, [(b"x-seawall-fault-delay-ms", b"5")]) == FaultDecision(0.005)
    assert decide.fault(spec, [(b"x-seawall-fault-abort", b"504")]) == FaultDecision(1.0, 504)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"-5",
        b"+5",
        b" 5",
        b"5 ",
        b"1.5",
        b"abc",
        b"1e3",
        b"0x10",
        b"1_000",
        "\uff15".encode(),
        b"1234567890",
        b"5\x00",
    ],
)
def test_bad_delay_header_is_ignored(value: bytes) -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(header_faults=True, delay=0.5, delay_percent=100)
    # the configured delay applies, as if the header were absent
    assert decide.fault(spec, [(b"x-seawall-fault-delay-ms", value)]) == FaultDecision(0.5)


@pytest.mark.parametrize(
    "value", [b"", b"50", b"5030", b"600", b"199", b"abc", b" 503", b"503 ", b"+50", b"5.0"]
)
def test_bad_abort_header_is_ignored(value: bytes) -> None:
    decide = Decider(random.Random(9))
    spec = FaultSpec(header_faults=True)
    assert decide.fault(spec, [(b"x-seawall-fault-abort", value)]) is None
