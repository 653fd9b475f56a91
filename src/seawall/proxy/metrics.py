"""The sidecar's Prometheus metrics.

One :class:`SidecarMetrics` per sidecar process, on its own
:class:`prometheus_client.CollectorRegistry` (never the library's global
default registry), served on the admin port at ``/metrics``.

Label children are cached per (destination, route) so that recording a request
on the hot path is a few attribute lookups and C-level increments, not a label
lookup each time.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["LATENCY_BUCKETS", "RouteMetrics", "SidecarMetrics"]

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds. From 0.5 ms (a loopback hop) to 10 s (beyond any sane request timeout)."""

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


@dataclass(slots=True)
class RouteMetrics:
    """Pre-resolved label children for one (direction, destination, route)."""

    by_class: tuple[Counter, ...]
    latency: Histogram

    def observe(self, status: int, seconds: float) -> None:
        """Count one finished request with its status and latency."""
        index = status // 100 - 1
        self.by_class[index if 0 <= index < 5 else 4].inc()
        self.latency.observe(seconds)


class SidecarMetrics:
    """Every metric a sidecar exports, on a registry of its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "seawall_requests",
            "Requests finished by the sidecar, by direction, destination, route and status class.",
            ["direction", "destination", "route", "status_class"],
            registry=r,
        )
        self.latency = Histogram(
            "seawall_request_duration_seconds",
            "Time from the request head to the last response byte, retries included.",
            ["direction", "destination", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "seawall_retries", "Retries sent upstream.", ["destination"], registry=r
        )
        self.budget_exhausted = Counter(
            "seawall_retry_budget_exhausted",
            "Retries not sent because the retry budget was empty.",
            ["destination"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "seawall_breaker_state",
            "1 for the current state of each destination's circuit breaker, else 0.",
            ["destination", "state"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "seawall_breaker_transitions",
            "Circuit breaker state transitions.",
            ["destination", "from_state", "to_state"],
            registry=r,
        )
        self.ejections = Counter(
            "seawall_outlier_ejections",
            "Endpoints ejected by outlier detection.",
            ["destination"],
            registry=r,
        )
        self.overflow = Counter(
            "seawall_overflow",
            "Requests refused at once because a pool limit was reached.",
            ["destination", "limit"],
            registry=r,
        )
        self.pool_connections = Gauge(
            "seawall_upstream_connections",
            "Open upstream connections (idle and busy).",
            ["destination"],
            registry=r,
        )
        self.pending = Gauge(
            "seawall_pending_requests",
            "Requests waiting for an upstream connection.",
            ["destination"],
            registry=r,
        )
        self.in_flight = Gauge(
            "seawall_in_flight_requests",
            "Requests being served upstream.",
            ["destination"],
            registry=r,
        )
        self._routes: dict[tuple[str, str, str], RouteMetrics] = {}

    def route(self, direction: str, destination: str, route: str) -> RouteMetrics:
        """The cached label children for one route (created on first use)."""
        key = (direction, destination, route)
        found = self._routes.get(key)
        if found is None:
            found = RouteMetrics(
                by_class=tuple(
                    self.requests.labels(direction, destination, route, cls)
                    for cls in _STATUS_CLASSES
                ),
                latency=self.latency.labels(direction, destination, route),
            )
            self._routes[key] = found
        return found

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
