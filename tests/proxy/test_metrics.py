"""The /metrics page is valid Prometheus text: checked with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from seawall.proxy.metrics import SidecarMetrics


def parse(metrics: SidecarMetrics) -> dict[str, list[tuple[dict[str, str], float, str]]]:
    out: dict[str, list[tuple[dict[str, str], float, str]]] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            out.setdefault(family.name, []).append((sample.labels, sample.value, sample.name))
    return out


def test_counters_histograms_and_gauges_round_trip() -> None:
    metrics = SidecarMetrics("app")
    route = metrics.route("outbound", "orders", "checkout")
    route.observe(200, 0.0007)
    route.observe(503, 0.3)
    route.observe(200, 42.0)  # beyond the last bucket: counted in +Inf only
    metrics.retries.labels("orders").inc()
    metrics.retries.labels("orders").inc(2)
    metrics.breaker_state.labels("orders", "open").set(1.0)
    metrics.gauges = lambda: [("orders", 3, 1, 2)]
    page = parse(metrics)
    by_class = {s[0]["status_class"]: s[1] for s in page["seawall_requests"]}
    assert by_class == {"1xx": 0, "2xx": 2, "3xx": 0, "4xx": 0, "5xx": 1}
    buckets = {s[0]["le"]: s[1] for s in page["seawall_request_duration_seconds"]
               if s[2].endswith("_bucket")}
    assert buckets["0.0005"] == 0
    assert buckets["0.001"] == 1
    assert buckets["0.5"] == 2
    assert buckets["10.0"] == 2
    assert buckets["+Inf"] == 3
    count = [s[1] for s in page["seawall_request_duration_seconds"] if s[2].endswith("_count")]
    assert count == [3]
    assert [s[1] for s in page["seawall_retries"]] == [3]
    assert page["seawall_breaker_state"] == [
        ({"destination": "orders", "state": "open"}, 1.0, "seawall_breaker_state")
    ]
    assert [s[1] for s in page["seawall_upstream_connections"]] == [3]
    assert [s[1] for s in page["seawall_pending_requests"]] == [1]
    assert [s[1] for s in page["seawall_in_flight_requests"]] == [2]


def test_label_values_are_escaped() -> None:
    metrics = SidecarMetrics("app")
    awkward = 'a "quoted" \\ back\nslash'
    metrics.route("outbound", "orders", awkward).observe(200, 0.01)
    page = parse(metrics)
    routes = {s[0]["route"] for s in page["seawall_requests"]}
    assert routes == {awkward}
