"""The admin listener: /ready, /metrics (Prometheus text), /config and /clusters."""

from __future__ import annotations

import httpx
from backends import Echo, Fail, Ok
from conftest import MainMesh


def test_ready(sidecar_main: MainMesh) -> None:
    r = sidecar_main.sidecar.admin_get("/ready")
    assert r.status_code == 200
    assert r.text.strip() == "ready"


def test_unknown_admin_path_is_404(sidecar_main: MainMesh) -> None:
    assert sidecar_main.sidecar.admin_get("/nope").status_code == 404


def test_metrics_parse_and_count_requests_by_status_class(sidecar_main: MainMesh) -> None:
    sidecar = sidecar_main.sidecar
    sidecar_main.b["counted"].script(Echo(), paths={"/ok": Ok(b"fine"), "/bad": Fail(500)})
    labels = {"direction": "outbound", "destination": "counted"}

    def counts() -> tuple[float, float, float]:
        return (
            sidecar.metric("seawall_requests_total", status_class="2xx", **labels),
            sidecar.metric("seawall_requests_total", status_class="5xx", **labels),
            sidecar.metric("seawall_request_duration_seconds_count", **labels),
        )

    before = counts()
    with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
        statuses = [
            client.get(f"http://counted{p}").status_code for p in ["/ok"] * 3 + ["/bad"] * 2
        ]
    assert statuses == [200, 200, 200, 500, 500]
    after = counts()
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 2, 5]

    families = {family.name: family for family in sidecar.metrics()}
    assert families["seawall_requests"].type == "counter"
    assert families["seawall_request_duration_seconds"].type == "histogram"
    for name in (
        "seawall_retries",
        "seawall_breaker_state",
        "seawall_outlier_ejections",
        "seawall_upstream_connections",
        "seawall_pending_requests",
    ):
        assert name in families, name


def test_config_is_the_effective_config_as_json(sidecar_main: MainMesh) -> None:
    r = sidecar_main.sidecar.admin_get("/config")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert doc["service"] == "app"
    assert len(doc["digest"]) == 64
    config = doc["config"]
    assert config["services"]["plain"]["endpoints"][0]["port"] == sidecar_main.b["plain"].port
    assert config["policies"]["hangs"]["timeout"] == 0.4
    assert config["policies"]["bulkhead"]["bulkhead"]["max_in_flight"] == 1
    # defaults are filled in
    assert config["policies"]["plain"]["load_balancer"] == "peak_ewma"


def test_clusters_show_endpoints_and_their_state(sidecar_main: MainMesh) -> None:
    r = sidecar_main.sidecar.admin_get("/clusters")
    assert r.status_code == 200
    clusters = {c["name"]: c for c in r.json()["clusters"]}
    assert {"plain", "split", "breaker", "outlier", "inbound:app"} <= set(clusters)
    split = clusters["split"]
    assert {(ep["port"], ep["subset"]) for ep in split["endpoints"]} == {
        (sidecar_main.b["v1"].port, "v1"),
        (sidecar_main.b["v2"].port, "v2"),
    }
    assert clusters["breaker"]["breaker"]["state"] in {"closed", "open", "half_open"}
    assert clusters["plain"]["breaker"] is None  # turned off for plain
    for key in ("open_connections", "pending", "in_flight", "retries_in_flight"):
        assert isinstance(clusters["plain"][key], int)
