"""A weighted split through a real sidecar: 10,000 keep-alive requests follow the weights,
and the sidecar counts them by subset.

The issue asks for "weighted splits, within ±2% over 10,000 requests". The
unit tests (crates/seawall-proxy/tests/routing.rs) check the draw itself;
this checks it end to end, black-box: one ``httpx.Client`` holding one
keep-alive connection to the sidecar's outbound listener sends 10,000 requests
to a destination whose route splits ``{v1: 90, v2: 10}`` across two subsets,
each served by its own scripted backend, and counts where they landed.

Bounded: the loop gives up (and fails) past ``BUDGET`` seconds, and
pytest-timeout kills the test past ``HARD_LIMIT``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from backends import WAIT, BackendLoop, Ok
from conftest import Mesh

REQUESTS = 10_000
WEIGHTS = {"v1": 90, "v2": 10}
TOLERANCE = 0.02
"""± 2 percentage points of each subset's share."""
BUDGET = 20.0
"""Seconds the 10,000 requests may take."""
HARD_LIMIT = 40


@pytest.mark.timeout(HARD_LIMIT)
def test_split_shares_within_two_points_over_10000_keepalive_requests(
    sidecar_loop: BackendLoop, sidecar_start: Any
) -> None:
    app = sidecar_loop.backend("split-app", Ok(b"app"))
    backends = {
        subset: sidecar_loop.backend(f"split-{subset}", Ok(subset.encode())) for subset in WEIGHTS
    }
    mesh = Mesh(app).destination(
        "split",
        [(backends[subset], subset) for subset in WEIGHTS],
        {"routes": [{"name": "canary", "split": dict(WEIGHTS)}]},
    )
    sidecar = sidecar_start(mesh)

    answered = dict.fromkeys(WEIGHTS, 0)
    client_ports: set[int] = set()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    start = time.monotonic()
    with httpx.Client(proxy=sidecar.proxy, timeout=WAIT, limits=limits) as client:
        # built once and resent: the Python client, not the sidecar, is the bottleneck
        request = client.build_request("GET", "http://split/")
        for i in range(REQUESTS):
            r = client.send(request)
            assert r.status_code == 200, (i, r.status_code, r.text)
            assert r.text in answered, (i, r.text)
            answered[r.text] += 1
            stream = r.extensions["network_stream"]
            client_ports.add(stream.get_extra_info("client_addr")[1])
            if time.monotonic() - start > BUDGET:
                pytest.fail(f"only {i + 1} of {REQUESTS} requests in {BUDGET}s")
    elapsed = time.monotonic() - start
    sidecar.assert_alive()

    # one keep-alive connection carried every request
    assert len(client_ports) == 1, f"{len(client_ports)} client connections"
    # the backends saw exactly what the client was answered
    hits = {subset: backend.hits for subset, backend in backends.items()}
    assert hits == answered
    assert sum(hits.values()) == REQUESTS
    total = sum(WEIGHTS.values())
    for subset, weight in WEIGHTS.items():
        share = hits[subset] / REQUESTS
        assert abs(share - weight / total) <= TOLERANCE, (hits, f"{elapsed:.1f}s")
    assert app.hits == 0
    # the sidecar counted each subset's requests beside the route's (a canary's SLIs)
    for subset in WEIGHTS:
        counted = sidecar.metric(
            "seawall_subset_requests_total",
            destination="split",
            route="canary",
            subset=subset,
            status_class="2xx",
        )
        assert counted == hits[subset], (subset, counted, hits)
        assert (
            sidecar.metric("seawall_subset_request_duration_seconds_count", subset=subset)
            == hits[subset]
        )
