"""What the sidecar measures for SLOs: a latency threshold is an exact histogram bound on
the side that measures it, and the inbound side counts per route of the service's policy."""

from __future__ import annotations

from typing import Any

import httpx
from backends import Echo, Ok
from conftest import BackendLoop, Mesh


def test_slo_thresholds_are_exact_bounds_and_inbound_counts_per_route(
    sidecar_loop: BackendLoop, sidecar_start: Any
) -> None:
    app = sidecar_loop.backend("app", Echo())
    orders = sidecar_loop.backend("orders", Echo())
    orders.script(Echo(), paths={"/fine": Ok(b"ok")})
    mesh = Mesh(app).destination("orders", [orders])
    mesh.doc["policies"]["app"] = {
        "routes": [{"name": "checkout", "match": {"path_prefix": "/checkout"}}]
    }
    mesh.doc["slos"] = {
        "app": {"route": "checkout", "latency": {"threshold": "230ms", "percent": "99%"}},
        "orders": {"measured_at": "callers", "availability": "99%",
                   "latency": {"threshold": "70ms", "percent": "95%"}},
        "orders-at-home": {"service": "orders", "latency": {"threshold": "900ms",
                                                            "percent": "95%"}},
    }  # fmt: skip
    sidecar = sidecar_start(mesh)
    with httpx.Client(timeout=5) as plain:
        assert plain.get(f"http://127.0.0.1:{sidecar.inbound}/checkout/1").status_code == 200
        assert plain.get(f"http://127.0.0.1:{sidecar.inbound}/other").status_code == 200
    with httpx.Client(proxy=sidecar.proxy, timeout=5) as client:
        assert client.get("http://orders/fine").status_code == 200

    def bounds(**labels: str) -> set[str]:
        return {
            s.labels["le"]
            for family in sidecar.metrics()
            for s in family.samples
            if s.name == "seawall_request_duration_seconds_bucket"
            and all(s.labels.get(k) == v for k, v in labels.items())
        }

    inbound = bounds(direction="inbound", destination="app", route="checkout")
    assert "0.23" in inbound  # the app's own SLO, measured at its server side
    assert {"0.25", "0.5", "+Inf"} <= inbound  # beside the standard bounds
    outbound = bounds(direction="outbound", destination="orders")
    assert "0.07" in outbound  # orders' SLO measured at its callers: here
    assert "0.9" not in outbound  # measured at orders' own inbound, not here
    count: dict[str, Any] = {"direction": "inbound", "destination": "app"}
    assert sidecar.metric("seawall_request_duration_seconds_count", route="checkout",
                          **count) == 1  # fmt: skip
    assert sidecar.metric("seawall_request_duration_seconds_count", route="inbound",
                          **count) == 1  # fmt: skip
    # the request under 230ms is in the exact bucket
    assert sidecar.metric("seawall_request_duration_seconds_bucket", route="checkout",
                          le="0.23", **count) == 1  # fmt: skip
