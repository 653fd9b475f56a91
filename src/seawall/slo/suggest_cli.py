"""``seawall slo suggest SERVICE [--route R]``: :mod:`seawall.slo.suggest` from a running
``seawall traces``.

Reads the service graph of the lookback (``GET /api/seawall/graph``: calls,
errors and latency per service and per edge) from the collector, the
attempts each dependency's calls get from mesh.yaml (``-f``; one without
it), and prints the table and a ready ``slos:`` snippet (``--json``: the
same as JSON). With ``--route R``, the figures are the route's: the traces
of the lookback with a span of the service on ``R`` (``GET /api/traces``,
by ``seawall.route`` and by ``http.route``, the newest :data:`ROUTE_TRACES`
of each), read by :func:`~seawall.slo.suggest.route_calls`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from ..config import ConfigError, MeshConfig, load_mesh, parse_duration
from .suggest import Dependency, RouteCalls, Suggestion, route_calls, snippet, suggest

__all__ = ["ROUTE_TRACES", "suggest_command"]

ROUTE_TRACES = 10_000
"""Traces read per route tag (the collector's largest search)."""

_ROUTE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # a route name of mesh.yaml


def suggest_command(
    service: str,
    *,
    traces: str,
    lookback: str,
    mesh_file: str | None,
    soft: list[str],
    as_json: bool,
    route: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Exit status: 0, 1 (no data for the service, a bad mesh.yaml), 2 (no collector)."""
    if route is not None:
        return _route_command(service, route, traces=traces, lookback=lookback,
                              mesh_file=mesh_file, soft=soft, as_json=as_json, out=out,
                              err=err)  # fmt: skip
    attempts = _attempts(mesh_file, err)
    if attempts is None:
        return 1
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
    _show(s, f"{service}, the last {lookback}", None, as_json, out)
    return 0


def _mesh(mesh_file: str | None, err: TextIO) -> MeshConfig | Literal[False] | None:
    """mesh.yaml (``None`` without one); ``False``: an unreadable or invalid file
    (reported)."""
    if mesh_file is None:
        return None
    try:
        return load_mesh(Path(mesh_file))
    except ConfigError as exc:
        err.write(exc.describe() + "\n")
    except OSError as exc:
        err.write(f"seawall slo suggest: cannot read {mesh_file}: {exc.strerror or exc}\n")
    return False


def _attempts(mesh_file: str | None, err: TextIO) -> dict[str, int] | None:
    """Each destination's retry attempts in mesh.yaml (none without it); ``None``: an
    unreadable or invalid file (reported)."""
    mesh = _mesh(mesh_file, err)
    if mesh is False:
        return None
    if mesh is None:
        return {}
    return {name: mesh.policy_for(name).retry.attempts for name in mesh.policies}


def _route_attempts(mesh: MeshConfig, callee: str, routes: Sequence[str]) -> int:
    """The attempts a call to ``callee`` gets: the retries of the routes of
    ``policies.<callee>`` the calls took (the fewest, if they took several: a route
    that never retries, such as a charge, is not helped by another that does), else the
    destination's; 1 for a callee the mesh does not know."""
    try:
        policy = mesh.policy_for(callee)
    except KeyError:
        return 1
    by_name = {r.name: r for r in policy.routes if r.name is not None}
    taken = [by_name[name] for name in routes if name in by_name]
    if not taken:
        return policy.retry.attempts
    return min(policy.retry_for(r).attempts for r in taken)


def policy_route(mesh: MeshConfig, service: str, path: str) -> str | None:
    """The name of the route of ``policies.<service>.routes`` a request for ``path``
    takes (its path condition: exact, prefix or regex; the first that matches, as the
    sidecar checks them), if it has a name; ``None`` otherwise."""
    for i, r in enumerate(mesh.policy_for(service).routes):
        m = r.match
        if m.path_exact is not None and m.path_exact != path:
            continue
        if m.path_prefix is not None and not path.startswith(m.path_prefix):
            continue
        if m.path_regex is not None and re.fullmatch(m.path_regex, path) is None:
            continue
        return r.name or f"route{i}"
    return None


def _route_command(
    service: str, route: str, *, traces: str, lookback: str, mesh_file: str | None,
    soft: list[str], as_json: bool, out: TextIO, err: TextIO,
) -> int:  # fmt: skip
    mesh = _mesh(mesh_file, err)
    if mesh is False:
        return 1
    # a path (an application's template, /checkout) names the policy route it takes
    named = route if _ROUTE_NAME.fullmatch(route) else None
    if named is None and mesh is not None:
        named = policy_route(mesh, service, route)
    try:
        seconds = parse_duration(lookback)
    except ValueError as exc:
        err.write(f"seawall slo suggest: --lookback: {exc}\n")
        return 2
    end_us = int(time.time() * 1_000_000)
    found: list[dict[str, Any]] = []
    try:
        with httpx.Client(trust_env=False, timeout=120) as client:
            for tag in ("seawall.route", "http.route"):
                answer = client.get(f"{traces.rstrip('/')}/api/traces", params={
                    "service": service, "tags": json.dumps({tag: route}),
                    "start": str(end_us - int(seconds * 1_000_000)), "end": str(end_us),
                    "limit": str(ROUTE_TRACES),
                })  # fmt: skip
                if answer.status_code != 200:
                    err.write(f"seawall slo suggest: the collector answered"
                              f" {answer.status_code}: {answer.text[:300]}\n")  # fmt: skip
                    return 2
                found += answer.json().get("data") or []
    except httpx.HTTPError as exc:
        err.write(f"seawall slo suggest: cannot reach the collector at {traces}: {exc}\n")
        return 2
    calls: RouteCalls = route_calls(found, service, route)
    if calls.calls == 0:
        err.write(f"seawall slo suggest: no calls of {service!r} on route {route!r} in the"
                  f" last {lookback} ({calls.traces} traces read)\n")  # fmt: skip
        return 1
    deps = [
        replace(d, attempts=_route_attempts(mesh, d.name, calls.routes.get(d.name, ()))
                if mesh is not None else 1)
        for d in calls.dependencies
    ]  # fmt: skip
    s = suggest(service, calls.calls, calls.errors, deps, p50_ms=calls.p50_ms,
                p99_ms=calls.p99_ms, soft=soft)  # fmt: skip
    where = f"{service}, route {route}, the last {lookback} ({calls.traces} traces)"
    _show(s, where, route, as_json, out, named=named)
    return 0


def _show(
    s: Suggestion,
    where: str,
    route: str | None,
    as_json: bool,
    out: TextIO,
    *,
    named: str | None = None,
) -> None:
    """The suggestion as a table and a snippet, or as JSON. ``named``: the route of
    mesh.yaml the snippet names (``route`` itself, or the policy route a path takes)."""
    # a route of mesh.yaml goes in the snippet; an application's template (/checkout) is
    # not one: the SLO needs the name of the policy route that matches it
    text = snippet(s, route=named)
    if route is not None and named is None:
        text = (f"# {route} is not a route name of mesh.yaml: add the name of the"
                f" policies.{s.service}.routes entry that matches it (or give -f)\n"
                ) + text  # fmt: skip
    if as_json:
        doc = asdict(s)
        doc["route"] = route
        doc["suggested"] = s.suggested
        doc["snippet"] = text
        out.write(json.dumps(doc, indent=1) + "\n")
        return
    p99 = "-" if s.p99_ms is None else f"{s.p99_ms:.0f} ms"
    out.write(
        f"{where}: {s.calls} calls, {s.errors} failed:"
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
    out.write("\n" + text)
