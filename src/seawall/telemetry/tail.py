"""Tail sampling: which traces the collector keeps, decided once each is whole.

The OpenTelemetry Collector's ``tail_sampling`` processor decides per trace
after ``decision_wait`` from its first span; this is that rule, sans-I/O, for
``tracing.collector.tail_sampling`` in mesh.yaml. A trace is kept when any
of these holds, checked in this order (the first that holds is the reason):

1. ``error``: a span has an error status (``errors: true``);
2. ``latency``: a span is slower than its route's threshold
   (``latency.routes["service/route"]``, then ``latency.routes["service"]``,
   then ``latency.default``; the route is the span's ``seawall.route``, or
   ``http.route`` for an application's span);
3. ``policy_event``: a span has a policy event (``policy_events: true``):
   any ``seawall.*`` event but ``seawall.deadline``, which every hop with a
   deadline records;
4. ``probability``: the trace id's last 56 bits fall under the share kept,
   as head sampling decides (``seawall_trace::sampled_at``), so the same
   traces are kept by every collector.

Spans of a trace already decided follow its decision (a late span of a
kept trace is kept) for as long as the decision is remembered: the last
``max_traces`` decisions. Traces waiting for their decision are bounded by
``max_traces`` too: past it the oldest is decided at once.

:class:`TailSampler` is told the time (monotonic seconds); the collector
calls :meth:`~TailSampler.offer` as spans arrive and :meth:`~TailSampler.due`
on a timer, and stores what they return.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .spans import SpanRow, StatusCode

__all__ = ["Decision", "TailPolicy", "TailSampler"]

_RANDOM_BITS = 56


@dataclass(frozen=True, slots=True)
class TailPolicy:
    """The rules, as ``tracing.collector.tail_sampling`` gives them (seconds, 0-1)."""

    decision_wait: float = 5.0
    errors: bool = True
    latency_default: float | None = 1.0
    latency_routes: Mapping[str, float] = field(default_factory=dict)
    policy_events: bool = True
    probability: float = 0.1
    max_traces: int = 50_000

    def __post_init__(self) -> None:
        if not self.decision_wait > 0:
            raise ValueError(f"decision_wait: must be > 0, got {self.decision_wait!r}")
        if not 0 <= self.probability <= 1:
            raise ValueError(f"probability: must be from 0 to 1, got {self.probability!r}")
        if self.max_traces < 1:
            raise ValueError(f"max_traces: must be >= 1, got {self.max_traces!r}")

    def threshold(self, service: str, route: str | None) -> float | None:
        """Seconds a span of ``service``'s ``route`` may take before its trace is kept."""
        if route is not None:
            found = self.latency_routes.get(f"{service}/{route}")
            if found is not None:
                return found
        found = self.latency_routes.get(service)
        return self.latency_default if found is None else found


@dataclass(frozen=True, slots=True)
class Decision:
    """One trace decided: kept or not, why, and its spans (empty when dropped)."""

    trace_id: bytes
    kept: bool
    reason: str  # error, latency, policy_event, probability, or dropped
    rows: tuple[SpanRow, ...]


def sampled_at(trace_id: bytes, probability: float) -> bool:
    """Whether the trace id's random bits fall under ``probability`` (as the sidecar)."""
    if probability >= 1:
        return True
    if probability <= 0:
        return False
    random = int.from_bytes(trace_id[-7:], "big")
    return random < int(probability * (1 << _RANDOM_BITS))


def _attribute(attributes_json: str, key: str) -> str | None:
    """A string attribute's value from a row's OTLP JSON attributes."""
    if f'"{key}"' not in attributes_json:  # most spans: no parse
        return None
    for kv in json.loads(attributes_json):
        if kv.get("key") == key:
            value = kv.get("value", {}).get("stringValue")
            return value if isinstance(value, str) else None
    return None


def _has_policy_event(events_json: str) -> bool:
    if '"seawall.' not in events_json:
        return False
    return any(
        str(e.get("name", "")).startswith("seawall.") and e.get("name") != "seawall.deadline"
        for e in json.loads(events_json)
    )


def reason_to_keep(policy: TailPolicy, rows: Sequence[SpanRow]) -> str | None:
    """Why a trace with these spans is kept by the rules 1-3, or ``None``."""
    if policy.errors and any(r.status_code == StatusCode.ERROR for r in rows):
        return "error"
    for r in rows:
        route = _attribute(r.attributes, "seawall.route") or _attribute(r.attributes, "http.route")
        limit = policy.threshold(r.service, route)
        if limit is not None and r.duration_ns > limit * 1e9:
            return "latency"
    if policy.policy_events and any(_has_policy_event(r.events) for r in rows):
        return "policy_event"
    return None


class TailSampler:
    """Traces waiting for their decision, and the decisions remembered."""

    def __init__(self, policy: TailPolicy) -> None:
        self.policy = policy
        # trace id -> (first span's arrival, its spans), oldest first
        self._waiting: OrderedDict[bytes, tuple[float, list[SpanRow]]] = OrderedDict()
        self._decided: OrderedDict[bytes, bool] = OrderedDict()
        self.kept = 0
        self.dropped = 0

    @property
    def waiting(self) -> int:
        """Traces waiting for their decision."""
        return len(self._waiting)

    def offer(self, rows: Iterable[SpanRow], now: float) -> tuple[list[SpanRow], list[Decision]]:
        """Spans arrived at ``now``: those of traces already kept (store them now),
        and the decisions forced by the bound on waiting traces."""
        late: list[SpanRow] = []
        forced: list[Decision] = []
        for row in rows:
            decided = self._decided.get(row.trace_id)
            if decided is not None:
                if decided:
                    late.append(row)
                continue
            entry = self._waiting.get(row.trace_id)
            if entry is None:
                if len(self._waiting) >= self.policy.max_traces:
                    oldest = next(iter(self._waiting))
                    forced.append(self._decide(oldest))
                self._waiting[row.trace_id] = (now, [row])
            else:
                entry[1].append(row)
        return late, forced

    def due(self, now: float) -> list[Decision]:
        """Decide every trace whose first span came ``decision_wait`` ago or more."""
        out: list[Decision] = []
        wait = self.policy.decision_wait
        while self._waiting:
            trace_id, (first, _) = next(iter(self._waiting.items()))
            if now - first < wait:
                break
            out.append(self._decide(trace_id))
        return out

    def flush(self) -> list[Decision]:
        """Decide every waiting trace now (the collector is stopping)."""
        return [self._decide(t) for t in list(self._waiting)]

    def _decide(self, trace_id: bytes) -> Decision:
        _, rows = self._waiting.pop(trace_id)
        reason = reason_to_keep(self.policy, rows)
        if reason is None and sampled_at(trace_id, self.policy.probability):
            reason = "probability"
        kept = reason is not None
        self._decided[trace_id] = kept
        if len(self._decided) > self.policy.max_traces:
            self._decided.popitem(last=False)
        if kept:
            self.kept += 1
            return Decision(trace_id, True, reason or "", tuple(rows))
        self.dropped += 1
        return Decision(trace_id, False, "dropped", ())
