"""From a mesh config to the Rust core's spec: the one place config enters the data plane.

:func:`sidecar_spec` turns a validated :class:`~seawall.config.MeshConfig`
and the name of the local service into a plain JSON document that the Rust
core (``seawall._native``) deserialises into typed structs. Everything that
needs judgement happens here, once, in Python: a route's retry settings are
merged with its destination's, retry conditions become status sets, defaults
are filled in, endpoints are resolved. The core only reads numbers, strings
and lists; a reload or a control-plane push builds a new spec and the core
swaps it in whole.

Durations are seconds (floats), sizes bytes, percentages 0..100.

``python -m seawall.proxy.spec --config mesh.yaml --service NAME`` prints the
spec of one sidecar (the sidecar process runs it in a short-lived child, so
that the long-running process never imports the config model).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import ConfigError, MeshConfig, load_mesh
from ..config.effective import (
    IDEMPOTENT,
    breaker_settings,
    budget_settings,
    hedge_settings,
    outlier_settings,
    rate_limit_settings,
    retry_settings,
)
from ..config.model import (
    AuthorizationConfig,
    BulkheadConfig,
    DestinationPolicy,
    EndpointConfig,
    RouteConfig,
    SheddingConfig,
)

__all__ = ["SPEC_VERSION", "EndpointSpec", "destination_spec", "main", "sidecar_spec"]

SPEC_VERSION = 1
"""Bumped when the document's shape changes; the core refuses another version."""

EndpointSpec = dict[str, Any]
"""``{"address", "port", "subset", "weight"}``: one instance of a destination."""


def _route(index: int, policy: DestinationPolicy, rc: RouteConfig) -> dict[str, Any]:
    m = rc.match
    methods = sorted({x.upper() for x in (m.methods or ((m.method,) if m.method else ()))})
    fault = None
    if rc.fault is not None:
        f = rc.fault
        fault = {
            "delay": f.delay.duration if f.delay else 0.0,
            "delay_percent": f.delay.percent if f.delay else 0.0,
            "abort_status": f.abort.status if f.abort else 503,
            "abort_percent": f.abort.percent if f.abort else 0.0,
            "header_faults": f.header_trigger,
        }
    return {
        "name": rc.name or f"route{index}",
        "match": {
            "path_prefix": m.path_prefix,
            "path_exact": m.path_exact,
            "path_regex": m.path_regex,
            "methods": methods,
            "headers": [
                {"name": name.lower(), "exact": h.exact, "regex": h.regex, "present": h.present}
                for name, h in m.headers.items()
            ],
        },
        "timeout": policy.timeout_for(rc),
        "retry": retry_settings(policy.retry_for(rc)),
        "split": None if rc.split is None else [[k, v] for k, v in rc.split.items()],
        "mirror": None
        if rc.mirror is None
        else {"to": rc.mirror.to, "subset": rc.mirror.subset, "percent": rc.mirror.percent},
        "fault": fault,
        "upgrades": list(policy.upgrades if rc.upgrades is None else rc.upgrades),
        "criticality": rc.criticality,
    }


def _endpoint(address: str, port: int, subset: str | None = None, weight: int = 1) -> EndpointSpec:
    return {"address": address, "port": port, "subset": subset, "weight": weight}


def _config_endpoints(endpoints: Sequence[EndpointConfig]) -> list[EndpointSpec]:
    return [_endpoint(e.address, e.port, e.subset, e.weight) for e in endpoints]


def destination_spec(
    config: MeshConfig,
    name: str,
    *,
    inbound: bool = False,
    pushed: Mapping[str, Sequence[EndpointSpec]] | None = None,
) -> dict[str, Any]:
    """One destination: its endpoints, pool limits, breaker, budget, outlier and routes.

    Inbound (the local app), the caller's sidecar has retried already: one
    attempt, no breaker, budget or outlier detection.
    """
    policy = config.policy_for(name)
    ext = config.external.get(name)
    tls = None
    if ext is not None:  # a host outside the mesh, by its own name: never pushed
        endpoints = [_endpoint(ext.host, ext.effective_port())]
        if ext.tls:
            tls = {"server_name": ext.server_name or ext.host, "ca_file": ext.ca_file}
        spec = _destination(name, policy, endpoints, inbound=False, external=True, tls=tls)
        # the real host's name goes upstream (virtual hosting, the certificate's name)
        default_port = 443 if ext.tls else 80
        port = ext.effective_port()
        spec["authority"] = ext.host if port == default_port else f"{ext.host}:{port}"
        return spec
    svc = config.services[name]
    if inbound:
        endpoints = [_endpoint(svc.host, svc.port)]
    elif pushed is not None:  # the control plane's registry is the truth, even when empty
        endpoints = [dict(e) for e in pushed.get(name, ())]
    elif svc.endpoints:
        endpoints = _config_endpoints(svc.endpoints)
    else:  # the destination's inbound sidecar on the same host
        endpoints = [_endpoint(svc.host, svc.sidecar.inbound)]
    spec = _destination(name, policy, endpoints, inbound=inbound)
    if inbound and svc.rate_limit is not None:  # the service's own limit, per caller
        spec["rate_limit"] = rate_limit_settings(svc.rate_limit)
    if inbound and svc.shedding is not None:  # the concurrency limit in front of the app
        spec["shedding"] = shedding_settings(svc.shedding)
    spec["latency_bounds"] = latency_bounds(config, name, inbound=inbound)
    return spec


def shedding_settings(shedding: SheddingConfig) -> dict[str, Any]:
    """``services.X.shedding`` as the core's shedder takes it (the keywords of
    :class:`seawall.policy.shed.LoadShedder`)."""
    a = shedding.adaptive
    return {
        "limit": None if shedding.limit == "adaptive" else shedding.limit,
        "initial_limit": a.initial,
        "min_limit": a.min,
        "max_limit": a.max,
        "smoothing": a.smoothing,
        "tolerance": a.tolerance,
        "long_window": a.long_window,
        "warmup": 10,
        "max_waiting": shedding.max_waiting,
        "max_wait": shedding.max_wait,
    }


def latency_bounds(config: MeshConfig, service: str, *, inbound: bool) -> list[float]:
    """The latency thresholds of the SLOs measured at this side of ``service`` (its
    inbound sidecar for ``measured_at: server``, its callers' for ``callers``): exact
    bounds of the histograms there, so no SLO leans on a nearby bucket. A service with a
    progressive split has its canary judged at its callers on every latency SLO it
    has, wherever that SLO is measured: its callers get every threshold then."""
    side = "server" if inbound else "callers"
    progressive = any(r.progressive is not None for r in config.policy_for(service).routes)
    return sorted(
        {
            slo.latency.threshold
            for key, slo in config.slos.items()
            if slo.latency is not None
            and (slo.service or key) == service
            and (slo.measured_at == side or (progressive and not inbound))
        }
    )


def _destination(
    name: str,
    policy: DestinationPolicy,
    endpoints: list[EndpointSpec],
    *,
    inbound: bool,
    external: bool = False,
    tls: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A destination's spec from its policy: the caller's side of it (breaker, budget,
    outlier, routes, hedging, rate limit) only outbound."""
    bh = policy.bulkhead
    # the caller's side of a policy, outbound only: the caller's sidecar has
    # retried already when a request reaches the app
    outbound = not inbound
    return {
        "name": name,
        "inbound": inbound,
        # its endpoints are sidecars: mTLS to them when this sidecar has an identity
        "mesh": not inbound and not external,
        "external": external,
        "tls": tls,
        "hedge": hedge_settings(policy.hedge) if outbound else None,
        "rate_limit": rate_limit_settings(policy.rate_limit) if outbound else None,
        "endpoints": endpoints,
        "load_balancer": policy.load_balancer,
        # the request timeout covers every attempt; each attempt may have a shorter one
        "timeout": policy.timeout,
        "per_try_timeout": None if inbound else policy.per_try_timeout,
        "idle_timeout": policy.idle_timeout,
        "connect_timeout": policy.connect_timeout,
        "upgrades": list(policy.upgrades),
        "tunnel_idle_timeout": policy.tunnel_idle_timeout,
        "retry": retry_settings(policy.retry, single=inbound),
        "budget": budget_settings(policy.retry.budget) if outbound else None,
        "breaker": breaker_settings(policy.circuit_breaker) if outbound else None,
        "outlier": outlier_settings(policy.outlier) if outbound else None,
        "bulkhead": {
            "max_connections": bh.max_connections,
            "max_pending": bh.max_pending,
            "max_in_flight": bh.max_in_flight,
            "max_retries": bh.max_retries,
        },
        "routes": [
            _inbound_route(i, policy, rc) if inbound else _route(i, policy, rc)
            for i, rc in enumerate(policy.routes)
        ],
    }


def _inbound_route(index: int, policy: DestinationPolicy, rc: RouteConfig) -> dict[str, Any]:
    """A route of the service's policy, at its own inbound sidecar: named and matched
    the same (its metrics, spans and SLOs are per route), but what the caller's sidecar
    did already (retries, splits, mirrors, faults, the route's timeout) is not repeated."""
    route = _route(index, policy, rc)
    route.update(
        timeout=policy.timeout,
        retry=retry_settings(policy.retry, single=True),
        split=None,
        mirror=None,
        fault=None,
    )
    return route


def egress_spec(config: MeshConfig) -> dict[str, Any]:
    """Calls to hosts outside the mesh: the mode, CONNECT's bounds, and the policy
    every external host gets (the core fills in its name and address per host).

    The policy: the egress timeouts; a connect failure retried once, for an
    idempotent method only (a non-idempotent call is never sent twice); no
    breaker, outlier detection or retry budget (one host, nothing to balance
    away from, and no mesh to protect); the default pool limits.
    """
    e = config.egress
    return {
        "mode": e.mode,
        "max_tunnels": e.max_tunnels,
        "tunnel_idle_timeout": e.tunnel_idle_timeout,
        "metric_hosts": e.metric_hosts,
        "policy": {
            "name": "egress",
            "inbound": False,
            "mesh": False,
            "external": True,
            "endpoints": [],
            "load_balancer": "round_robin",
            "timeout": e.timeout,
            "per_try_timeout": None,
            "idle_timeout": None,
            "connect_timeout": e.connect_timeout,
            "upgrades": ["websocket"],
            "tunnel_idle_timeout": e.tunnel_idle_timeout,
            "retry": {
                "attempts": 2,
                "statuses": [],
                "on_reset": False,
                "on_connect_failure": True,
                "backoff": {"jitter": "full", "base": 0.025, "max": 0.25},
                "methods": sorted(IDEMPOTENT),
            },
            "budget": None,
            "breaker": None,
            "outlier": None,
            "bulkhead": BulkheadConfig().model_dump(),
            "routes": [],
        },
    }


def _authorization(auth: AuthorizationConfig, strict: bool) -> dict[str, Any] | None:
    """The inbound rules; ``None`` when nothing can be denied (the core then asks nothing)."""
    denies = any(r.action == "deny" for r in auth.rules)
    if auth.default == "allow" and not denies and not strict and not auth.refuse:
        return None
    rules = []
    for index, rule in enumerate(auth.rules):
        callers = rule.from_
        paths = list(rule.paths or ())
        rules.append(
            {
                "name": f"rules[{index}]",
                "allow": rule.action == "allow",
                "any_authenticated": callers == ("*",),
                "callers": None if callers is None or callers == ("*",) else sorted(callers),
                "methods": None if rule.methods is None else sorted(rule.methods),
                "exact": sorted(p for p in paths if not p.endswith("*")),
                "prefixes": [p[:-1] for p in paths if p.endswith("*")],
            }
        )
    return {
        "default_allow": auth.default == "allow",
        "require_peer": strict,
        "rules": rules,
        "refuse": sorted(set(auth.refuse)),
    }


def tracing_spec(config: MeshConfig, service: str) -> dict[str, Any] | None:
    """``tracing`` for the sidecar of ``service``: ``None`` when tracing is off.

    ``sample`` is a probability (0 to 1): the service's ``trace_sample`` or
    the mesh's ``tracing.sample``.
    """
    t = config.tracing
    if not t.enabled:
        return None
    svc = config.services[service]
    percent = t.sample if svc.trace_sample is None else svc.trace_sample
    return {
        "endpoint": t.export_endpoint(),
        "sample": percent / 100,
        "queue": t.queue,
        "batch": t.batch,
        "interval": t.interval,
        "resource": {},
    }


def sidecar_spec(
    config: MeshConfig,
    service: str,
    *,
    endpoints: Mapping[str, Sequence[EndpointSpec]] | None = None,
) -> dict[str, Any]:
    """The spec of the sidecar of ``service`` (raises KeyError for an unknown service).

    ``endpoints`` are the endpoint sets pushed by the control plane, by
    destination: when given they replace the config's (a destination missing
    from them has no endpoint).
    """
    if service not in config.services:
        raise KeyError(f"no service {service!r} in mesh {config.mesh!r}")
    svc = config.services[service]
    lim = config.limits
    listeners: dict[str, Any] = {
        "inbound": [svc.host, svc.sidecar.inbound],
        "outbound": ["127.0.0.1", svc.sidecar.outbound],
        "admin": ["127.0.0.1", svc.sidecar.admin],
        "upstreams": {dest: ["127.0.0.1", port] for dest, port in svc.sidecar.upstreams.items()},
    }
    return {
        "version": SPEC_VERSION,
        "mesh": config.mesh,
        "trust_domain": config.trust_domain,
        "service": service,
        "digest": config.digest(),
        "listeners": listeners,
        "limits": {
            "max_request_line": lim.max_request_line,
            "max_header_count": lim.max_header_count,
            "max_header_bytes": lim.max_header_bytes,
            "max_body_bytes": lim.max_body_bytes or None,
            "retry_buffer_bytes": lim.retry_buffer_bytes,
            "header_timeout": lim.header_timeout,
            "body_timeout": lim.body_timeout,
            "idle_timeout": lim.idle_timeout,
        },
        "access_log": config.sidecar.access_log,
        "drain_grace": config.sidecar.drain_grace,
        "mtls": svc.mtls,
        "authorization": _authorization(svc.authorization, svc.mtls == "strict"),
        "inbound": destination_spec(config, service, inbound=True),
        "destinations": [
            destination_spec(config, name, pushed=endpoints)
            for name in (*config.services, *config.external)
        ],
        "egress": egress_spec(config),
        "tracing": tracing_spec(config, service),
        # the whole config, every default filled in, for the admin /config page
        "config": config.model_dump(mode="json"),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print one sidecar's spec as JSON; a config error is printed with every issue (exit 2)."""
    parser = argparse.ArgumentParser(prog="python -m seawall.proxy.spec")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="path to mesh.yaml")
    source.add_argument("--stdin", action="store_true", help="read mesh.yaml from stdin")
    parser.add_argument("--service", required=True)
    parser.add_argument("--name", help="the file the bytes on stdin came from (for errors)")
    args = parser.parse_args(argv)
    try:
        config = load_mesh(sys.stdin.buffer.read() if args.stdin else args.config)
        spec = sidecar_spec(config, args.service)
    except ConfigError as exc:
        if args.stdin and args.name:
            exc = ConfigError(exc.errors, args.name)
        sys.stderr.write(f"{exc.describe() if exc.source else exc}\n")
        return 2
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2
    sys.stdout.write(json.dumps(spec, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
