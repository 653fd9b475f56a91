"""``seawall slo suggest SERVICE``: :mod:`seawall.slo.suggest` from a running ``seawall traces``.

Reads the service graph of the lookback (``GET /api/seawall/graph``: calls,
errors and latency per service and per edge) from the collector, the
attempts each dependency's calls get from mesh.yaml (``-f``; one without
it), and prints the table and a ready ``slos:`` snippet (``--json``: the
same as JSON).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import httpx

from ..config import ConfigError, load_mesh
from .suggest import Dependency, snippet, suggest

__all__ = ["suggest_command"]


def suggest_command(
    service: str,
    *,
    traces: str,
    lookback: str,
    mesh_file: str | None,
    soft: list[str],
    as_json: bool,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Exit status: 0, 1 (no data for the service, a bad mesh.yaml), 2 (no collector)."""
    attempts: dict[str, int] = {}
    if mesh_file is not None:
        try:
            mesh = load_mesh(Path(mesh_file))
        except ConfigError as exc:
            err.write(exc.describe() + "\n")
            return 1
        except OSError as exc:
            err.write(f"seawall slo suggest: cannot read {mesh_file}: {exc.strerror or exc}\n")
            return 1
        attempts = {name: mesh.policy_for(name).retry.attempts for name in mesh.policies}
    try:
        with httpx.Client(trust_env=False, timeout=60) as client:
            answer = client.get(
                f"{traces.rstrip('/')}/api/seawall/graph", params={"lookback": lookback}
            )
    except httpx.HTTPError as exc:
        err.write(f"seawall slo suggest: cannot reach the collector at {traces}: {exc}\n")
        return 2
    if answer.status_code != 200:
        err.write(f"seawall slo suggest: the collector answered {answer.status_code}:"
                  f" {answer.text[:300]}\n")  # fmt: skip
        return 2
    graph: dict[str, Any] = answer.json()
    node = next((n for n in graph.get("nodes", []) if n["service"] == service), None)
    if node is None:
        known = ", ".join(sorted(n["service"] for n in graph.get("nodes", []))) or "none"
        err.write(f"seawall slo suggest: no calls of {service!r} in the last {lookback}"
                  f" (services seen: {known})\n")  # fmt: skip
        return 1
    deps = [
        Dependency(e["callee"], int(e["calls"]), int(e["errors"]), attempts.get(e["callee"], 1))
        for e in graph.get("edges", [])
        if e["caller"] == service and e["callee"] != service
    ]
    s = suggest(service, int(node["calls"]), int(node["errors"]), deps,
                p50_ms=node.get("p50Ms"), p99_ms=node.get("p99Ms"), soft=soft)  # fmt: skip
    if as_json:
        doc = asdict(s)
        doc["suggested"] = s.suggested
        doc["snippet"] = snippet(s)
        out.write(json.dumps(doc, indent=1) + "\n")
        return 0
    p99 = "-" if s.p99_ms is None else f"{s.p99_ms:.0f} ms"
    out.write(
        f"{service}, the last {lookback}: {s.calls} calls, {s.errors} failed:"
        f" {s.achieved:.3f}% available; latency p50"
        f" {'-' if s.p50_ms is None else f'{s.p50_ms:.0f} ms'}, p99 {p99}\n"
    )
    for d in s.dependencies:
        out.write(f"  depends on {d.name}: {100 * (1 - d.failure):.3f}% of {d.calls} calls,"
                  f" {d.attempts} attempt(s) a call\n")  # fmt: skip
    out.write(f"ceiling from its dependencies: {s.ceiling:.3f}%, with retries"
              f" {s.ceiling_with_retries:.4f}%\n\n")  # fmt: skip
    out.write("TARGET  HELD  BUDGET LEFT  UNDER THE CEILING  WITH RETRIES\n")
    for r in s.rows:
        left = "-" if r.budget_left is None else f"{r.budget_left * 100:.0f}%"
        out.write(f"{r.target:<7g} {'yes' if r.held else 'no':<5} {left:<12} "
                  f"{'yes' if r.reachable else 'no':<18} "
                  f"{'yes' if r.reachable_with_retries else 'no (unreachable)'}\n")  # fmt: skip
    out.write("\n" + snippet(s))
    return 0
