"""From a mesh config to the objects that serve requests: the one place config enters.

:func:`build_runtime` turns a validated :class:`~seawall.config.MeshConfig`
and the name of the local service into a :class:`Runtime`: a cluster and a
route table per destination, each route's policy (assembled in
:func:`route_policy`, top to bottom, one step per concern), and the listeners
to open. A reload builds a new runtime and swaps it in whole: a request keeps
the runtime it started with, so no request ever sees half a config. The control
plane will push configs through the same function.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..config import MeshConfig
from ..config.model import DestinationPolicy, RouteConfig, RouteRetry
from ..policy.backoff import Backoff, backoff
from ..policy.breaker import BreakerState, CircuitBreaker
from ..policy.budget import RetryBudget
from ..policy.clock import MONOTONIC, Clock
from .authz import Authorizer
from .cluster import Cluster, ClusterLimits
from .http1 import DEFAULT_LIMITS, Limits
from .metrics import SidecarMetrics
from .routing import (
    FaultSpec,
    HeaderMatch,
    MirrorSpec,
    Route,
    RouteMatch,
    RouteTable,
    WeightedSplit,
)
from .upstream.balancer import create_balancer
from .upstream.endpoint import Endpoint
from .upstream.outlier import OutlierDetector

__all__ = [
    "Destination",
    "EndpointSets",
    "RetryPolicy",
    "RoutePolicy",
    "Runtime",
    "build_runtime",
]

EndpointSets = Mapping[str, Sequence[Endpoint]]
"""Endpoints by destination service, as the control plane pushes them."""

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
GATEWAY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how a route retries (built from ``retry:`` in mesh.yaml)."""

    attempts: int
    statuses: frozenset[int]  # retried status codes ("5xx", "gateway-error" and explicit ones)
    on_reset: bool  # the connection failed after it was made, before a response head
    on_connect_failure: bool  # no connection could be made
    backoff: Backoff
    methods: frozenset[bytes]  # methods that may be retried (idempotent ones + configured)

    def may_retry(self, method: bytes) -> bool:
        """Whether a request with ``method`` may be sent more than once."""
        return self.attempts > 1 and method in self.methods


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything the forwarder needs to know about one route."""

    name: str
    timeout: float  # the whole request, retries included
    per_try_timeout: float | None
    idle_timeout: float | None  # longest silence from the upstream on a request in flight
    retry: RetryPolicy
    retry_buffer: int  # a body up to this size is buffered so it can be re-sent


@dataclass(slots=True)
class Destination:
    """One service this sidecar sends requests to (or, inbound, its own app)."""

    name: str
    cluster: Cluster
    routes: RouteTable[RoutePolicy]
    default_route: Route[RoutePolicy]


@dataclass(slots=True)
class Runtime:
    """The effective config of one sidecar, ready to serve."""

    config: MeshConfig
    service: str
    destinations: dict[str, Destination]
    inbound: Destination
    limits: Limits
    listeners: dict[str, tuple[str, int]]  # name -> (host, port); "upstream:<dest>" too
    upstream_ports: dict[int, str]  # local port -> destination (per-destination listeners)
    metrics: SidecarMetrics
    access_log: bool
    rng: random.Random = field(default_factory=random.Random)
    mtls: str = "permissive"  # the service's inbound mode: "strict" or "permissive"
    authz: Authorizer | None = None  # None: every inbound request is allowed (nothing to ask)

    def close(self) -> None:
        """Close pooled connections (called when a newer runtime replaced this one)."""
        for dest in self.destinations.values():
            dest.cluster.close()
        self.inbound.cluster.close()


# --------------------------------------------------------------------------- per route


def retry_policy(policy: DestinationPolicy, override: RouteRetry | None) -> RetryPolicy:
    """Merge the destination's retry settings with a route's overrides."""
    base = policy.retry
    attempts = override.attempts if override and override.attempts is not None else base.attempts
    on = override.on if override and override.on is not None else base.on
    conf = override.backoff if override and override.backoff is not None else base.backoff
    extra = override.methods if override and override.methods is not None else base.methods
    statuses: set[int] = set()
    for cond in on:
        if cond == "5xx":
            statuses.update(range(500, 600))
        elif cond == "gateway-error":
            statuses.update(GATEWAY_STATUSES)
        elif isinstance(cond, int):
            statuses.add(cond)
    return RetryPolicy(
        attempts=attempts,
        statuses=frozenset(statuses),
        on_reset="reset" in on or "gateway-error" in on or "5xx" in on,
        on_connect_failure="connect-failure" in on or "gateway-error" in on or "5xx" in on,
        backoff=backoff(conf.jitter, base=conf.base, max=conf.max),
        methods=IDEMPOTENT | {m.encode("ascii").upper() for m in extra},
    )


def route_policy(
    name: str, policy: DestinationPolicy, route: RouteConfig | None, limits_buffer: int
) -> RoutePolicy:
    """One route's behaviour, read top to bottom (the forwarder applies it in this order)."""
    return RoutePolicy(
        name=name,
        # 1. the request timeout covers every attempt (the route's, else the destination's)
        timeout=route.timeout if route and route.timeout is not None else policy.timeout,
        # 2. each attempt may have its own, shorter timeout
        per_try_timeout=policy.per_try_timeout,
        # ... and the upstream may stay silent at most this long (head or body)
        idle_timeout=policy.idle_timeout,
        # 3. retries: conditions, backoff, methods (the budget is per destination)
        retry=retry_policy(policy, route.retry if route else None),
        # 4. a body is buffered for re-sending only up to this size
        retry_buffer=limits_buffer,
    )


def _route(rc: RouteConfig, data: RoutePolicy) -> Route[RoutePolicy]:
    m = rc.match
    methods = frozenset(x.upper() for x in (m.methods or ((m.method,) if m.method else ())))
    match = RouteMatch(
        path_prefix=m.path_prefix,
        path_exact=m.path_exact,
        path_regex=m.path_regex,
        methods=methods,
        headers=tuple(
            HeaderMatch(name, exact=h.exact, regex=h.regex, present=h.present)
            for name, h in m.headers.items()
        ),
    )
    fault = None
    if rc.fault is not None:
        f = rc.fault
        fault = FaultSpec(
            delay=f.delay.duration if f.delay else 0.0,
            delay_percent=f.delay.percent if f.delay else 0.0,
            abort_status=f.abort.status if f.abort else 503,
            abort_percent=f.abort.percent if f.abort else 0.0,
            header_faults=f.header_trigger,
        )
    return Route(
        match,
        data,
        name=data.name,
        split=WeightedSplit.of(dict(rc.split)) if rc.split else None,
        mirror=MirrorSpec(rc.mirror.to, rc.mirror.percent) if rc.mirror else None,
        fault=fault,
    )


# --------------------------------------------------------------------------- per destination


def _endpoints(
    config: MeshConfig, name: str, *, inbound: bool, pushed: EndpointSets | None
) -> list[Endpoint]:
    svc = config.services[name]
    if inbound:  # the local app itself
        return [Endpoint(svc.host, svc.port)]
    if pushed is not None:  # the control plane's registry is the truth, even when empty
        return list(pushed.get(name, ()))
    if svc.endpoints:
        return [Endpoint(e.address, e.port, e.subset, e.weight) for e in svc.endpoints]
    # Default: the destination's inbound sidecar on the same host.
    return [Endpoint(svc.host, svc.sidecar.inbound)]


def _cluster(
    config: MeshConfig,
    name: str,
    policy: DestinationPolicy,
    metrics: SidecarMetrics,
    *,
    inbound: bool,
    clock: Clock,
    rng: random.Random,
    pushed: EndpointSets | None = None,
) -> Cluster:
    endpoints = _endpoints(config, name, inbound=inbound, pushed=pushed)
    o = policy.outlier
    outlier = None
    if o.enabled and not inbound:
        outlier = OutlierDetector(
            endpoints,
            consecutive_5xx=o.consecutive_5xx or 1_000_000_000,
            consecutive_gateway_errors=o.consecutive_gateway_errors or 1_000_000_000,
            base_ejection=o.ejection,
            max_ejection=o.max_ejection,
            max_ejected_percent=o.max_ejected,
            interval=o.interval or 10.0,
        )
    balancer = create_balancer(policy.load_balancer, endpoints, rng=rng, ejections=outlier)
    cb = policy.circuit_breaker
    breaker = None
    if cb.enabled and not inbound:
        breaker = CircuitBreaker(
            name,
            window_type=cb.window.type,
            window_size=cb.window.size,
            minimum_calls=cb.minimum_calls,
            failure_rate_threshold=cb.failure_rate,
            slow_call_duration=cb.slow_call.duration if cb.slow_call else None,
            slow_call_rate_threshold=cb.slow_call.rate if cb.slow_call else 100.0,
            wait_in_open=cb.open_for,
            wait_multiplier=cb.open_multiplier,
            max_wait_in_open=max(cb.max_open_for, cb.open_for),
            half_open_calls=cb.half_open_calls,
            automatic_transition=True,  # /clusters and /metrics show HALF_OPEN when due
            listeners=[_BreakerMetrics(metrics, name)],
            clock=clock,
        )
    b = policy.retry.budget
    budget = RetryBudget(ratio=b.ratio, min_per_second=b.min_per_second, ttl=b.ttl, clock=clock)
    bh = policy.bulkhead
    limits = ClusterLimits(
        max_connections=bh.max_connections,
        max_pending=bh.max_pending,
        max_in_flight=bh.max_in_flight,
        max_retries=bh.max_retries,
        idle_timeout=config.limits.idle_timeout,  # pooled connections unused this long close
    )
    cluster = Cluster(
        name if not inbound else f"inbound:{name}",
        endpoints,
        balancer=balancer,
        outlier=outlier,
        breaker=breaker,
        budget=None if inbound else budget,
        limits=limits,
        metrics=metrics,
        clock=clock,
        rng=rng,
        mesh=not inbound,  # its endpoints are sidecars: mTLS when this sidecar has an identity
    )
    return cluster


class _BreakerMetrics:
    """Mirrors a destination's breaker transitions into the sidecar's metrics."""

    def __init__(self, metrics: SidecarMetrics, destination: str) -> None:
        self._metrics = metrics
        self._destination = destination

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState, now: float) -> None:
        m, dest = self._metrics, self._destination
        m.breaker_state.labels(dest, old.value).set(0.0)
        m.breaker_state.labels(dest, new.value).set(1.0)
        m.breaker_transitions.labels(dest, old.value, new.value).inc()

    def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
        return None


def _destination(
    config: MeshConfig,
    name: str,
    metrics: SidecarMetrics,
    *,
    inbound: bool,
    clock: Clock,
    rng: random.Random,
    pushed: EndpointSets | None = None,
) -> Destination:
    policy = config.policy_for(name)
    buffer = config.limits.retry_buffer_bytes
    cluster = _cluster(
        config, name, policy, metrics, inbound=inbound, clock=clock, rng=rng, pushed=pushed
    )
    default = route_policy("default", policy, None, buffer)
    if inbound:
        # Inbound, the caller's sidecar has retried already: one attempt to the app.
        default = RoutePolicy(
            "inbound", policy.timeout, None, policy.idle_timeout, _no_retry(default.retry), buffer
        )
        only = Route(RouteMatch(), default, name="inbound")
        return Destination(name, cluster, RouteTable([]), only)
    routes = []
    for index, rc in enumerate(policy.routes):
        rname = rc.name or f"route{index}"
        routes.append(_route(rc, route_policy(rname, policy, rc, buffer)))
    return Destination(
        name, cluster, RouteTable(routes), Route(RouteMatch(), default, name="default")
    )


def _no_retry(retry: RetryPolicy) -> RetryPolicy:
    return RetryPolicy(1, frozenset(), False, False, retry.backoff, retry.methods)


def build_runtime(
    config: MeshConfig,
    service: str,
    *,
    metrics: SidecarMetrics | None = None,
    clock: Clock = MONOTONIC,
    rng: random.Random | None = None,
    endpoints: EndpointSets | None = None,
) -> Runtime:
    """The runtime of the sidecar of ``service`` (raises KeyError for an unknown service).

    ``endpoints`` are the endpoint sets pushed by the control plane, by
    destination service: when given, they replace the config's (a service
    missing from them has no endpoint: its instances all left the registry).
    """
    if service not in config.services:
        raise KeyError(f"no service {service!r} in mesh {config.mesh!r}")
    rng = rng or random.Random()
    metrics = metrics or SidecarMetrics(service)
    svc = config.services[service]
    destinations = {
        name: _destination(
            config, name, metrics, inbound=False, clock=clock, rng=rng, pushed=endpoints
        )
        for name in config.services
    }
    lim = config.limits
    limits = Limits(
        max_request_line=lim.max_request_line,
        max_headers=lim.max_header_count,
        max_header_bytes=lim.max_header_bytes,
        max_body_size=lim.max_body_bytes or None,
    )
    listeners = {
        "inbound": (svc.host, svc.sidecar.inbound),
        "outbound": ("127.0.0.1", svc.sidecar.outbound),
        "admin": ("127.0.0.1", svc.sidecar.admin),
    }
    # Inbound authorization; skipped altogether (no per-request work) when it allows everything.
    authz = Authorizer.from_config(svc.authorization, strict=svc.mtls == "strict")
    upstream_ports: dict[int, str] = {}
    for dest, port in svc.sidecar.upstreams.items():
        listeners[f"upstream:{dest}"] = ("127.0.0.1", port)
        upstream_ports[port] = dest
    return Runtime(
        config=config,
        service=service,
        destinations=destinations,
        inbound=_destination(config, service, metrics, inbound=True, clock=clock, rng=rng),
        limits=limits if lim.max_request_line else DEFAULT_LIMITS,
        listeners=listeners,
        upstream_ports=upstream_ports,
        metrics=metrics,
        access_log=config.sidecar.access_log,
        rng=rng,
        mtls=svc.mtls,
        authz=None if authz.allows_everything else authz,
    )
