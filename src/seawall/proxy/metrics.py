"""The sidecar's Prometheus metrics, written in the text exposition format.

One :class:`SidecarMetrics` per sidecar process (no global registry), served on
the admin port at ``/metrics``. The exposition (format 0.0.4) is written here
rather than with prometheus-client: importing that library costs an idle
sidecar ~5 MB, and the format is small. The test suite parses every page with
prometheus-client's own parser, so the output stays what Prometheus reads.

The hot path pays almost nothing: a finished request is two integer
increments and a bucket search on a :class:`RouteMetrics` (plain Python
numbers: one event loop per process, no locks), and the gauges (connections,
pending and in-flight requests) are not updated per request at all: they are
read from the live clusters when Prometheus scrapes.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable

__all__ = [
    "LATENCY_BUCKETS",
    "ClusterGauges",
    "Family",
    "RouteMetrics",
    "SidecarMetrics",
]

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
"""Seconds. From 0.5 ms (a loopback hop) to 10 s (beyond any sane request timeout)."""

_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")

ClusterGauges = tuple[str, int, int, int]
"""(destination, open upstream connections, pending requests, in-flight requests)."""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value))


class _Child:
    """One labelled value of a :class:`Family`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (a counter only goes up)."""
        self.value += amount

    def set(self, value: float) -> None:
        """Set the value (gauges)."""
        self.value = value


class Family:
    """A counter or gauge with labels: ``family.labels("orders").inc()``."""

    def __init__(self, name: str, kind: str, help_text: str, labels: tuple[str, ...]) -> None:
        self.name = name
        self.kind = kind
        self.help = help_text
        self.label_names = labels
        self.children: dict[tuple[str, ...], _Child] = {}

    def labels(self, *values: str) -> _Child:
        """The child for these label values (created at zero on first use)."""
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.label_names):
                raise ValueError(
                    f"{self.name}: expected labels {self.label_names}, got {values!r}"
                )
            child = self.children[values] = _Child()
        return child

    def render(self, out: list[str]) -> None:
        """Append this family's lines in the text format."""
        sample = f"{self.name}_total" if self.kind == "counter" else self.name
        out.append(f"# HELP {sample} {self.help}")
        out.append(f"# TYPE {sample} {self.kind}")
        for values, child in self.children.items():
            out.append(f"{sample}{_labels(self.label_names, values)} {_number(child.value)}")


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


def _no_gauges() -> Iterable[ClusterGauges]:
    return ()


_ROUTE_LABELS = ("direction", "destination", "route")


class SidecarMetrics:
    """Every metric a sidecar exports."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.routes: dict[tuple[str, str, str], RouteMetrics] = {}
        #: Where the gauges come from; the sidecar points it at its current runtime.
        self.gauges: Callable[[], Iterable[ClusterGauges]] = _no_gauges
        self.retries = Family(
            "seawall_retries", "counter", "Retries sent upstream.", ("destination",)
        )
        self.budget_exhausted = Family(
            "seawall_retry_budget_exhausted",
            "counter",
            "Retries not sent because the retry budget was empty.",
            ("destination",),
        )
        self.breaker_state = Family(
            "seawall_breaker_state",
            "gauge",
            "1 for the current state of each destination's circuit breaker, else 0.",
            ("destination", "state"),
        )
        self.breaker_transitions = Family(
            "seawall_breaker_transitions",
            "counter",
            "Circuit breaker state transitions.",
            ("destination", "from_state", "to_state"),
        )
        self.ejections = Family(
            "seawall_outlier_ejections",
            "counter",
            "Endpoints ejected by outlier detection.",
            ("destination",),
        )
        self.overflow = Family(
            "seawall_overflow",
            "counter",
            "Requests refused at once because a pool limit was reached.",
            ("destination", "limit"),
        )
        self.tls_refused = Family(
            "seawall_inbound_tls_refused",
            "counter",
            "Inbound connections refused before any request: plaintext where mTLS is strict, "
            "a failed TLS handshake, or a certificate naming no service of the mesh.",
            ("reason",),
        )
        self.inbound_connections = Family(
            "seawall_inbound_connections",
            "counter",
            "Inbound connections served by a sidecar with an identity, by transport "
            "(mtls or plaintext): before a service goes strict, plaintext should stay at zero.",
            ("transport",),
        )
        self.denied = Family(
            "seawall_inbound_denied",
            "counter",
            "Inbound requests answered 403 by the service's authorization, by caller "
            "(unauthenticated when plaintext) and the rule that denied them.",
            ("caller", "rule"),
        )
        self.upstream_tls_failures = Family(
            "seawall_upstream_tls_failures",
            "counter",
            "Connections to other sidecars that failed mTLS: the handshake, or a certificate "
            "that is not the destination's.",
            ("destination", "reason"),
        )
        self._families = (
            self.retries,
            self.budget_exhausted,
            self.breaker_state,
            self.breaker_transitions,
            self.ejections,
            self.overflow,
            self.tls_refused,
            self.inbound_connections,
            self.denied,
            self.upstream_tls_failures,
        )

    def route(self, direction: str, destination: str, route: str) -> RouteMetrics:
        """The metrics of one route (created on first use, kept across reloads)."""
        key = (direction, destination, route)
        found = self.routes.get(key)
        if found is None:
            found = self.routes[key] = RouteMetrics(key)
        return found

    def render(self) -> bytes:
        """The whole page, in the Prometheus text format (version 0.0.4)."""
        out: list[str] = []
        self._render_routes(out)
        self._render_gauges(out)
        for family in self._families:
            family.render(out)
        return ("\n".join(out) + "\n").encode("utf-8")

    def _render_routes(self, out: list[str]) -> None:
        routes = list(self.routes.values())
        out.append(
            "# HELP seawall_requests_total Requests finished by the sidecar, by direction, "
            "destination, route and status class."
        )
        out.append("# TYPE seawall_requests_total counter")
        for route in routes:
            for cls, value in zip(_STATUS_CLASSES, route.by_class, strict=True):
                labels = _labels(_ROUTE_LABELS, route.labels, f'status_class="{cls}"')
                out.append(f"seawall_requests_total{labels} {_number(value)}")
        name = "seawall_request_duration_seconds"
        out.append(
            f"# HELP {name} Time from the request head to the last response byte, "
            "retries included."
        )
        out.append(f"# TYPE {name} histogram")
        for route in routes:
            running = 0
            bounds = (*LATENCY_BUCKETS, float("inf"))
            for bound, value in zip(bounds, route.buckets, strict=True):
                running += value
                labels = _labels(_ROUTE_LABELS, route.labels, f'le="{_number(bound)}"')
                out.append(f"{name}_bucket{labels} {_number(running)}")
            labels = _labels(_ROUTE_LABELS, route.labels)
            out.append(f"{name}_sum{labels} {_number(route.total)}")
            out.append(f"{name}_count{labels} {_number(route.count)}")

    def _render_gauges(self, out: list[str]) -> None:
        rows = list(self.gauges())
        columns = (
            ("seawall_upstream_connections", "Open upstream connections (idle and busy).",
             [row[1] for row in rows]),
            ("seawall_pending_requests", "Requests waiting for an upstream connection.",
             [row[2] for row in rows]),
            ("seawall_in_flight_requests", "Requests being served upstream.",
             [row[3] for row in rows]),
        )
        for name, help_text, values in columns:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} gauge")
            for row, value in zip(rows, values, strict=True):
                out.append(f"{name}{_labels(('destination',), (row[0],))} {_number(value)}")
