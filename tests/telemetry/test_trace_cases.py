"""The shared W3C Trace Context table, checked against seawall.telemetry.tracecontext.

``crates/seawall-trace/tests/cases.json`` holds (input, expected) cases that the
Rust twin (crate ``seawall-trace``, ``tests/cases.rs``) checks too, so the two
runtimes agree on one table. Here: ``TraceParent.parse``, ``TraceState.parse``
and the trace part of ``continue_trace`` (the request id is the sidecar's, and
has its own Python tests).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from seawall.telemetry import TraceParent, TraceState, continue_trace

CASES_PATH = (
    Path(__file__).resolve().parents[2] / "crates" / "seawall-trace" / "tests" / "cases.json"
)
CASES: dict[str, Any] = json.loads(CASES_PATH.read_text(encoding="utf-8"))


def _params(section: str) -> list[Any]:
    return [pytest.param(case, id=case["name"]) for case in CASES[section]]


def test_the_table_is_substantial_and_names_are_unique() -> None:
    for section, minimum in (("traceparent", 60), ("tracestate", 60), ("continue_trace", 15)):
        names = [case["name"] for case in CASES[section]]
        assert len(names) >= minimum, section
        assert len(set(names)) == len(names), section
    assert any(case["expected"] is None for case in CASES["traceparent"])
    assert any(case["expected"] is not None for case in CASES["traceparent"])


@pytest.mark.parametrize("case", _params("traceparent"))
def test_traceparent_parse(case: dict[str, Any]) -> None:
    tp = TraceParent.parse(case["input"])
    expected = case["expected"]
    if expected is None:
        assert tp is None
        return
    assert tp is not None
    assert tp == TraceParent(
        expected["version"], expected["trace_id"], expected["parent_id"], expected["flags"]
    )
    assert tp.format() == (
        f"{expected['version']:02x}-{expected['trace_id']}-{expected['parent_id']}"
        f"-{expected['flags']:02x}"
    )


@pytest.mark.parametrize("case", _params("tracestate"))
def test_tracestate_parse(case: dict[str, Any]) -> None:
    ts = TraceState.parse(case["input"])
    expected = case["expected"]
    if expected is None:
        assert ts is None
        return
    assert ts is not None
    assert [list(entry) for entry in ts] == expected
    assert ts.format() == ",".join(f"{k}={v}" for k, v in expected)


def _combined(headers: list[list[str]]) -> dict[str, str]:
    """Fields of one name combined into one value, as RFC 9110 section 5.3 allows."""
    combined: dict[str, str] = {}
    for name, value in headers:
        combined[name] = f"{combined[name]}, {value}" if name in combined else value
    return combined


@pytest.mark.parametrize("case", _params("continue_trace"))
def test_continue_trace(case: dict[str, Any]) -> None:
    headers = _combined(case["headers"])
    tp, ts = continue_trace(headers, rng=random.Random(0))
    incoming = TraceParent.parse(headers.get("traceparent", ""))
    if case["trace_id"] == "kept":
        assert incoming is not None
        assert tp.trace_id == incoming.trace_id
        assert tp.parent_id != incoming.parent_id
    else:
        assert incoming is None or tp.trace_id != incoming.trace_id
    assert tp.version == 0
    assert tp.flags == case["flags"]
    assert (ts.format() if ts is not None else None) == case["tracestate"]
