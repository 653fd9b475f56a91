"""Realistic objectives from data: what a service achieved, and what its dependencies allow.

``seawall slo suggest SERVICE`` answers "how do you calculate realistic SLOs
for critical services?" from the traces the mesh already keeps (the
service graph of ``seawall traces``: calls and errors per service and per
edge, over a lookback):

* **What was achieved**: the service's availability (calls not in error over
  all calls) and latency (p50, p99); for each usual target (99% to 99.99%),
  whether it would have held, and the budget it would have left,
  ``1 - (1 - achieved) / (1 - target)``.
* **What the dependencies allow**: a call that needs every one of its hard,
  serial dependencies succeeds only if each does, so its availability is at
  most the product of theirs: ``ceiling = prod(1 - p_i)``, ``p_i`` the share
  of calls to dependency ``i`` that failed. A target above the ceiling is
  unreachable without fallbacks or retries.
* **What the retries buy**: ``n`` attempts of a call that fails independently
  with ``p`` fail together with ``p ** n``: ``ceiling = prod(1 - p_i ** n_i)``,
  ``n_i`` the attempts ``policies.<dependency>.retry`` allows (1 without
  mesh.yaml). Independence is the optimistic case: failures that come
  together (an outage) are not retried away.

Every callee of the service counts as a hard, serial dependency unless
named ``soft`` (a call with a fallback, or one made in parallel with an
alternative). Sans-I/O: figures in, rows out.

**Per route** (``--route R``): :func:`route_calls` reads the figures from
whole traces (Jaeger's JSON, as ``/api/traces`` answers) instead of the
service graph: the service's requests on route ``R`` (a request is a SERVER
span of the service whose parent is not one of its own SERVER spans, as the
graph counts them; it is on ``R`` when it, or a SERVER span of the service
under it, has ``seawall.route`` or ``http.route`` ``R``: the sidecar's route
name or the application's template), their errors and latency; and, under
those requests only, the calls to other services (a SERVER span of another
service whose parent is one of the service's spans, or a CLIENT span of the
service that no one answered, by its ``seawall.destination``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TARGETS",
    "Dependency",
    "RouteCalls",
    "Suggestion",
    "TargetRow",
    "route_calls",
    "snippet",
    "suggest",
]

TARGETS = (99.0, 99.5, 99.9, 99.95, 99.99)
"""The targets a suggestion weighs, percent."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """A callee of the service: its calls and failed ones, and the attempts a call gets."""

    name: str
    calls: int
    errors: int
    attempts: int = 1

    @property
    def failure(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class TargetRow:
    target: float
    held: bool
    """The achieved availability reached it."""
    budget_left: float | None
    """Of the budget the target allows, the share the achieved availability left."""
    reachable: bool
    """Under the dependencies' ceiling, without retries."""
    reachable_with_retries: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    service: str
    calls: int
    errors: int
    achieved: float | None
    """Percent of the calls not in error; ``None`` without calls."""
    p50_ms: float | None
    p99_ms: float | None
    ceiling: float
    """Percent: the product of the hard dependencies' availabilities."""
    ceiling_with_retries: float
    dependencies: tuple[Dependency, ...]
    rows: tuple[TargetRow, ...]

    @property
    def suggested(self) -> float | None:
        """The strictest target that held and that the dependencies allow with retries."""
        fits = [r.target for r in self.rows if r.held and r.reachable_with_retries]
        return max(fits) if fits else None


def suggest(
    service: str,
    calls: int,
    errors: int,
    dependencies: Iterable[Dependency],
    *,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    soft: Sequence[str] = (),
    targets: Sequence[float] = TARGETS,
) -> Suggestion:
    """The rows of ``seawall slo suggest`` (see the module for each figure)."""
    if calls < 0 or not 0 <= errors <= max(calls, 0):
        raise ValueError(f"need 0 <= errors <= calls, got {errors} of {calls}")
    hard = tuple(d for d in dependencies if d.name not in soft and d.calls > 0)
    for d in hard:
        if d.attempts < 1 or not 0 <= d.errors <= d.calls:
            raise ValueError(f"{d.name}: need attempts >= 1 and 0 <= errors <= calls")
    ceiling = math.prod(1 - d.failure for d in hard)
    with_retries = math.prod(1 - d.failure**d.attempts for d in hard)
    achieved = None if calls == 0 else 100.0 * (1 - errors / calls)
    rows = []
    for target in targets:
        allowed = 1 - target / 100
        left = None if achieved is None else 1 - (1 - achieved / 100) / allowed
        rows.append(
            TargetRow(
                target,
                held=achieved is not None and achieved >= target,
                budget_left=left,
                reachable=ceiling * 100 >= target,
                reachable_with_retries=with_retries * 100 >= target,
            )
        )
    return Suggestion(
        service, calls, errors, achieved, p50_ms, p99_ms, 100 * ceiling, 100 * with_retries,
        hard, tuple(rows),
    )  # fmt: skip


def _threshold(p99_ms: float) -> str:
    """The p99 rounded up to a round threshold (1-2-2.5-5 per decade)."""
    for scale in (1, 10, 100, 1000, 10_000):
        for step in (1, 2, 2.5, 5):
            if step * scale >= p99_ms:
                value = step * scale
                return f"{value:g}ms" if value < 1000 else f"{value / 1000:g}s"
    return "60s"


def snippet(s: Suggestion, route: str | None = None) -> str:
    """A ready ``slos:`` entry for the suggestion (mesh.yaml's syntax)."""
    fields = []
    if route is not None:
        fields.append(f"route: {route}")
    if s.suggested is not None:
        fields.append(f"availability: {s.suggested:g}%")
    if s.p99_ms is not None:
        fields.append(f"latency: {{threshold: {_threshold(s.p99_ms)}, percent: 99%}}")
    if not fields:
        return f"# {s.service}: no data to suggest from\n"
    return f"slos:\n  {s.service}: {{{', '.join(fields)}}}\n"


@dataclass(frozen=True, slots=True)
class RouteCalls:
    """A service's requests on one route, from traces, and the calls they made."""

    calls: int
    errors: int
    p50_ms: float | None
    p99_ms: float | None
    dependencies: tuple[Dependency, ...]
    """Per callee, sorted by name (one attempt a call: the caller sets the retries)."""
    traces: int
    """Traces read."""
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per callee, the routes of the service's own sidecar its calls took (its
    outbound spans' ``seawall.route``): their retries are the ones these calls get."""


@dataclass(slots=True)
class _Span:
    service: str
    kind: str
    parent: str | None
    duration_us: int
    error: bool
    tags: dict[str, Any]
    children: list[str]


def _spans(trace: Mapping[str, Any]) -> dict[str, _Span]:
    processes = trace.get("processes") or {}
    spans: dict[str, _Span] = {}
    for raw in trace.get("spans") or ():
        tags = {t.get("key"): t.get("value") for t in raw.get("tags") or ()}
        refs = raw.get("references") or ()
        parent = next((r.get("spanID") for r in refs if r.get("refType") == "CHILD_OF"), None)
        process = processes.get(raw.get("processID")) or {}
        error = tags.get("error") is True or tags.get("otel.status_code") == "ERROR"
        spans[str(raw.get("spanID"))] = _Span(
            str(process.get("serviceName", "")), str(tags.get("span.kind", "")), parent,
            int(raw.get("duration") or 0), error, tags, [],
        )  # fmt: skip
    for span_id, span in spans.items():
        if span.parent in spans:
            spans[span.parent].children.append(span_id)
    return spans


def _nearest_rank_ms(sorted_us: Sequence[int], q: float) -> float | None:
    if not sorted_us:
        return None
    return sorted_us[max(0, math.ceil(q * len(sorted_us)) - 1)] / 1000.0


def route_calls(traces: Iterable[Mapping[str, Any]], service: str, route: str) -> RouteCalls:
    """The figures of ``service``'s requests on ``route`` in ``traces`` (see the module);
    a trace seen twice counts once."""
    calls = errors = read = 0
    durations: list[int] = []
    deps: dict[str, list[int]] = {}
    routes: dict[str, set[str]] = {}
    seen: set[str] = set()
    for trace in traces:
        trace_id = str(trace.get("traceID", ""))
        if trace_id in seen:
            continue
        seen.add(trace_id)
        read += 1
        spans = _spans(trace)
        for span in spans.values():
            if span.service != service or span.kind != "server":
                continue
            parent = spans.get(span.parent) if span.parent is not None else None
            if parent is not None and parent.service == service and parent.kind == "server":
                continue  # the app's SERVER span under its sidecar's: the same request
            inside = _own_subtree(spans, span)
            if not any(s.kind == "server" and _on_route(s, route) for s in inside):
                continue
            calls += 1
            errors += span.error
            durations.append(span.duration_us)
            for s in inside:
                for child in (spans[c] for c in s.children):
                    if child.service != service and child.kind == "server":
                        _count(deps, child.service, child.error)
                if s.kind == "client":
                    out = s.tags.get("seawall.route")
                    to = s.tags.get("seawall.destination")
                    if isinstance(out, str) and isinstance(to, str) and to != service:
                        routes.setdefault(to, set()).add(out)
                if s.kind == "client" and not s.children:
                    callee = s.tags.get("seawall.destination") or s.tags.get("peer.service")
                    if isinstance(callee, str) and callee and callee != service:
                        _count(deps, callee, s.error)
    durations.sort()
    found = tuple(Dependency(name, c, e) for name, (c, e) in sorted(deps.items()))
    return RouteCalls(calls, errors, _nearest_rank_ms(durations, 0.5),
                      _nearest_rank_ms(durations, 0.99), found, read,
                      {name: tuple(sorted(r)) for name, r in sorted(routes.items())})  # fmt: skip


def _own_subtree(spans: Mapping[str, _Span], top: _Span) -> list[_Span]:
    """``top`` and every span under it reached through spans of its own service."""
    out, stack = [], [top]
    while stack:
        span = stack.pop()
        out.append(span)
        stack += [spans[c] for c in span.children if spans[c].service == top.service]
    return out


def _on_route(span: _Span, route: str) -> bool:
    return route in (span.tags.get("seawall.route"), span.tags.get("http.route"))


def _count(deps: dict[str, list[int]], name: str, error: bool) -> None:
    acc = deps.setdefault(name, [0, 0])
    acc[0] += 1
    acc[1] += error
