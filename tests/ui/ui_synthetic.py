"""Synthetic spans, written straight into a store: for the UI's unit tests and for the
browser tests' big traces (a 5,000-span trace, 100,000 calls for a heatmap)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping

from seawall.telemetry.spans import SpanKind, SpanRow, StatusCode


def _any(value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": str(value)}


def _tag(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def key_values(attributes: Mapping[str, object]) -> str:
    return json.dumps(
        [{"key": k, "value": _any(v)} for k, v in attributes.items()], separators=(",", ":")
    )


def span(
    trace_id: bytes,
    span_id: bytes,
    parent: bytes,
    service: str,
    name: str,
    start_ns: int,
    end_ns: int,
    *,
    kind: int = SpanKind.SERVER,
    error: bool = False,
    attributes: Mapping[str, object] | None = None,
    events: list[tuple[int, str, Mapping[str, object]]] | None = None,
    links: list[tuple[bytes, bytes, Mapping[str, object]]] | None = None,
) -> SpanRow:
    """One span as the collector would store it (``events``: (time ns, name, attributes))."""
    attributes = dict(attributes or {})
    resource = {"service.name": service}
    return SpanRow(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        service=service,
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=end_ns,
        status_code=StatusCode.ERROR if error else StatusCode.UNSET,
        status_message="",
        flags=1,
        trace_state="",
        attributes=key_values(attributes),
        events=json.dumps(
            [
                {"timeUnixNano": str(t), "name": n, "attributes": json.loads(key_values(a))}
                for t, n, a in events or ()
            ],
            separators=(",", ":"),
        ),
        links=json.dumps(
            [
                {
                    "traceId": t.hex(),
                    "spanId": s.hex(),
                    "traceState": "",
                    "attributes": json.loads(key_values(a)),
                }
                for t, s, a in links or ()
            ],
            separators=(",", ":"),
        ),
        resource=key_values(resource),
        scope='{"name":"synthetic"}',
        tags=tuple(f"{k}={_tag(v)}" for k, v in {**attributes, **resource}.items()),
    )


class Ids:
    """Deterministic, non-zero trace and span ids."""

    def __init__(self, seed: int = 1) -> None:
        self._random = random.Random(seed)

    def trace(self) -> bytes:
        return self._random.getrandbits(128).to_bytes(16, "big") or b"\1" * 16

    def span(self) -> bytes:
        return self._random.getrandbits(64).to_bytes(8, "big") or b"\1" * 8


def big_trace(ids: Ids, start_ns: int, spans: int = 5000) -> list[SpanRow]:
    """One trace of ``spans`` spans over 8 services, a tree about 6 deep, 2 s long."""
    rnd = random.Random(7)
    trace_id = ids.trace()
    services = [f"svc-{n}" for n in range(8)]
    root = ids.span()
    rows = [span(trace_id, root, b"", "gateway", "GET /big", start_ns, start_ns + 2_000_000_000)]
    frontier = [(root, start_ns, start_ns + 2_000_000_000, 0)]
    while len(rows) < spans:
        parent, p_start, p_end, depth = frontier[rnd.randrange(len(frontier))]
        width = p_end - p_start
        s = p_start + rnd.randrange(max(1, width // 2))
        e = min(p_end, s + max(1000, rnd.randrange(max(2, width // 3))))
        sid = ids.span()
        service = services[rnd.randrange(len(services))]
        rows.append(
            span(
                trace_id,
                sid,
                parent,
                service,
                f"op-{rnd.randrange(40)}",
                s,
                e,
                kind=SpanKind.CLIENT if depth % 2 else SpanKind.SERVER,
                error=rnd.random() < 0.01,
                attributes={"seawall.attempt": 1, "url.path": f"/p/{rnd.randrange(100)}"},
            )
        )
        if depth < 6:
            frontier.append((sid, s, e, depth + 1))
    return rows


def many_calls(
    ids: Ids, start_ns: int, end_ns: int, count: int, *, service: str = "bulk"
) -> Iterator[SpanRow]:
    """``count`` one-span traces of ``service`` spread over the window: SERVER spans
    named ``GET /bulk``, a log-normal latency around 20 ms, a slow band of 5 % near
    400 ms on instance ``b``."""
    rnd = random.Random(11)
    step = (end_ns - start_ns) // count
    for n in range(count):
        slow = rnd.random() < 0.05
        ms = rnd.lognormvariate(5.99, 0.2) if slow else rnd.lognormvariate(3.0, 0.5)
        s = start_ns + n * step
        yield span(
            ids.trace(),
            ids.span(),
            b"",
            service,
            "GET /bulk",
            s,
            s + int(ms * 1_000_000),
            attributes={"instance": "b" if slow else rnd.choice("ac"), "http.route": "/bulk"},
        )
