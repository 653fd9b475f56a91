"""The sidecar's Prometheus metrics.

One :class:`SidecarMetrics` per sidecar process, on its own
:class:`prometheus_client.CollectorRegistry` (never the library's global
default registry), served on the admin port at ``/metrics``.

The hot path pays almost nothing: a finished request is two integer
increments and a bucket search on a :class:`RouteMetrics` (plain Python
numbers: one event loop per process, so no locks are needed), and the gauges
(connections, pending and in-flight requests) are not updated per request at
all — a collector reads them from the live clusters when Prometheus scrapes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "ClusterGauges", "RouteMetrics", "SidecarMetrics"]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Seconds. From 0.5 ms (a loopback hop) to 10 s (beyond any sane request timeout)."""

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

ClusterGauges = tuple[str, int, int, int]
"""(destination, open upstream connections, pending requests, in-flight requests)."""


class RouteMetrics:
    """Request counts by status class and a latency histogram for one route."""

    __slots__ = ("buckets", "by_class", "count", "labels", "total")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels  # direction, destination, route
        self.by_class = [0, 0, 0, 0, 0]
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, status: int, seconds: float) -> None:
        """Count one finished request with its status and latency."""
        index = status // 100 - 1
        self.by_class[index if 0 <= index < 5 else 4] += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds


class _Collector(Collector):
    """Exports the route metrics and the live cluster gauges at scrape time."""

    def __init__(self, owner: SidecarMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        routes = list(self.owner.routes.values())
        labels = ["direction", "destination", "route"]
        requests = CounterMetricFamily(
            "seawall_requests",
            "Requests finished by the sidecar, by direction, destination, route and status class.",
            labels=[*labels, "status_class"],
        )
        latency = HistogramMetricFamily(
            "seawall_request_duration_seconds",
            "Time from the request head to the last response byte, retries included.",
            labels=labels,
        )
        for route in routes:
            for cls, value in zip(_STATUS_CLASSES, route.by_class, strict=True):
                requests.add_metric([*route.labels, cls], value)
            cumulative, running = [], 0
            for bound, value in zip((*LATENCY_BUCKETS, float("inf")), route.buckets, strict=True):
                running += value
                cumulative.append((_bound(bound), running))
            latency.add_metric(list(route.labels), cumulative, route.total)
        yield requests
        yield latency
        connections = GaugeMetricFamily(
            "seawall_upstream_connections",
            "Open upstream connections (idle and busy).",
            labels=["destination"],
        )
        pending = GaugeMetricFamily(
            "seawall_pending_requests",
            "Requests waiting for an upstream connection.",
            labels=["destination"],
        )
        in_flight = GaugeMetricFamily(
            "seawall_in_flight_requests", "Requests being served upstream.", labels=["destination"]
        )
        for name, conns, waiting, active in self.owner.gauges():
            connections.add_metric([name], conns)
            pending.add_metric([name], waiting)
            in_flight.add_metric([name], active)
        yield connections
        yield pending
        yield in_flight


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


def _no_gauges() -> Iterable[ClusterGauges]:
    return ()


class SidecarMetrics:
    """Every metric a sidecar exports, on a registry of its own."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry(auto_describe=True)
        self.routes: dict[tuple[str, str, str], RouteMetrics] = {}
        #: Where the gauges come from; the sidecar points it at its current runtime.
        self.gauges: Callable[[], Iterable[ClusterGauges]] = _no_gauges
        r = self.registry
        r.register(_Collector(self))
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

    def route(self, direction: str, destination: str, route: str) -> RouteMetrics:
        """The metrics of one route (created on first use, kept across reloads)."""
        key = (direction, destination, route)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = RouteMetrics(key)
        return found

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
