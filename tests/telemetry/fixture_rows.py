"""The hand-written fixture traces (``fixtures/span_rows.json``) as stored rows, for the
tests of the Jaeger model, of the OTLP JSON answers and of the collector over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

from seawall.telemetry.spans import SpanRow

FIXTURES = Path(__file__).parent / "fixtures"
TRACES = ["checkout", "retry", "error_events", "link"]


def compact(value: object) -> str:
    """A JSON column as spans.py stores it: compact, no spaces."""
    return json.dumps(value, separators=(",", ":"))


def load_rows(name: str) -> list[SpanRow]:
    """The spans of fixture trace ``name``, as the store keeps them."""
    data = json.loads((FIXTURES / "span_rows.json").read_text())
    return [
        SpanRow(
            trace_id=bytes.fromhex(r["trace_id"]),
            span_id=bytes.fromhex(r["span_id"]),
            parent_span_id=bytes.fromhex(r["parent_span_id"]),
            service=r["service"],
            name=r["name"],
            kind=r["kind"],
            start_ns=r["start_ns"],
            end_ns=r["end_ns"],
            status_code=r["status_code"],
            status_message=r["status_message"],
            flags=r["flags"],
            trace_state=r["trace_state"],
            attributes=compact(r.get("attributes", [])),
            events=compact(r.get("events", [])),
            links=compact(r.get("links", [])),
            resource=compact(data["resources"][r["resource"]]),
            scope=compact(data["scopes"][r["scope"]]),
            tags=(),
        )
        for r in data["traces"][name]
    ]
