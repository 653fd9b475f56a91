"""Tail sampling (seawall.telemetry.tail): the rules, the wait, the bounds, on a fake clock."""

from __future__ import annotations

import json

import pytest

from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode
from seawall.telemetry.tail import TailPolicy, TailSampler, reason_to_keep, sampled_at


def row(
    trace: int,
    span: int,
    *,
    service: str = "orders",
    ms: float = 10,
    error: bool = False,
    route: str | None = None,
    events: tuple[str, ...] = (),
) -> SpanRow:
    attrs = [] if route is None else [{"key": "seawall.route", "value": {"stringValue": route}}]
    evs = [{"timeUnixNano": "1", "name": n, "attributes": []} for n in events]
    return SpanRow(
        trace.to_bytes(16, "big"),
        span.to_bytes(8, "big"),
        b"",
        service,
        "GET",
        SpanKind.SERVER,
        1_000_000_000,
        1_000_000_000 + int(ms * 1e6),
        StatusCode.ERROR if error else StatusCode.UNSET,
        "",
        1,
        "",
        json.dumps(attrs, separators=(",", ":")),
        json.dumps(evs, separators=(",", ":")),
        "[]",
        "[]",
        "{}",
        (),
    )


def test_each_rule_keeps_and_says_why() -> None:
    policy = TailPolicy(latency_default=1.0, latency_routes={"orders/checkout": 0.2})
    assert reason_to_keep(policy, [row(1, 1), row(1, 2, error=True)]) == "error"
    assert reason_to_keep(policy, [row(1, 1, ms=300, route="checkout")]) == "latency"
    # the route's threshold, not the default: 300 ms elsewhere is fine
    assert reason_to_keep(policy, [row(1, 1, ms=300, route="list")]) is None
    assert reason_to_keep(policy, [row(1, 1, ms=1500)]) == "latency"
    assert reason_to_keep(policy, [row(1, 1, events=("seawall.breaker.rejected",))]) == (
        "policy_event"
    )
    # every hop with a deadline records one: not a reason to keep
    assert reason_to_keep(policy, [row(1, 1, events=("seawall.deadline",))]) is None
    off = TailPolicy(errors=False, latency_default=None, policy_events=False)
    assert reason_to_keep(off, [row(1, 1, error=True, ms=5000, events=("seawall.retry",))]) is None


def test_a_service_threshold_applies_to_its_routes_without_one() -> None:
    policy = TailPolicy(latency_default=None, latency_routes={"pay": 0.05, "pay/refund": 2.0})
    assert reason_to_keep(policy, [row(1, 1, service="pay", ms=60, route="charge")]) == "latency"
    assert reason_to_keep(policy, [row(1, 1, service="pay", ms=60, route="refund")]) is None
    assert reason_to_keep(policy, [row(1, 1, service="orders", ms=6000)]) is None


def test_the_decision_waits_for_the_trace_and_late_spans_follow_it() -> None:
    s = TailSampler(TailPolicy(decision_wait=5, probability=0))
    late, forced = s.offer([row(1, 1)], now=100.0)
    assert (late, forced) == ([], [])
    s.offer([row(1, 2, error=True), row(2, 1)], now=103.0)
    assert s.due(104.9) == []
    decided = s.due(105.0)
    assert [(d.trace_id[-1], d.kept, d.reason, len(d.rows)) for d in decided] == [
        (1, True, "error", 2)
    ]
    # a late span of the kept trace is stored at once; trace 2 still waits
    late, _ = s.offer([row(1, 3)], now=106.0)
    assert [r.span_id[-1] for r in late] == [3]
    assert s.waiting == 1
    (d2,) = s.due(108.0)
    assert (d2.kept, d2.reason, d2.rows) == (False, "dropped", ())
    late, _ = s.offer([row(2, 9, error=True)], now=109.0)
    assert late == []  # trace 2 was dropped: its late spans go too
    assert (s.kept, s.dropped) == (1, 1)


def test_waiting_traces_are_bounded_and_the_oldest_is_decided_first() -> None:
    s = TailSampler(TailPolicy(max_traces=2, probability=1))
    s.offer([row(1, 1)], 0.0)
    s.offer([row(2, 1)], 0.0)
    _, forced = s.offer([row(3, 1)], 0.0)
    assert [d.trace_id[-1] for d in forced] == [1]
    assert forced[0].reason == "probability"
    assert s.waiting == 2
    assert [d.trace_id[-1] for d in s.flush()] == [2, 3]


def test_the_probability_is_decided_on_the_trace_ids_random_bits() -> None:
    half = 1 << 55
    assert sampled_at((half - 1).to_bytes(16, "big"), 0.5)
    assert not sampled_at(half.to_bytes(16, "big"), 0.5)
    # the high bits do not count
    assert sampled_at(b"\xff" * 9 + b"\x00" * 7, 0.001)
    kept = sum(sampled_at(i.to_bytes(16, "big") * 1, 0.25) for i in range(0, 1 << 56, 1 << 48))
    assert kept == 64  # a quarter of 256 evenly spread ids


@pytest.mark.parametrize(
    ("field", "value"), [("decision_wait", 0), ("probability", 1.5), ("max_traces", 0)]
)
def test_bad_rules_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        TailPolicy(**{field: value})  # type: ignore[arg-type]
