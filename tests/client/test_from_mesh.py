"""from_mesh: a client applying mesh.yaml's policies, against real servers on loopback.

The mesh has a caller, ``gateway``, and a destination, ``payments``, whose app
is a :class:`ScriptedServer` (its ``host:port``, or several of them as its
``endpoints``). Retries sleep on a FakeClock; the timeout tests wait for real,
a fraction of a second.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from scripted_server import ScriptedServer

from seawall.client.httpx import (
    AsyncMeshTransport,
    MeshTransport,
    async_from_mesh,
    from_mesh,
)
from seawall.config import MeshConfig, parse_mesh
from seawall.policy.breaker import BreakerState, CircuitBreaker
from seawall.policy.bulkhead import Bulkhead
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import Timeout
from seawall.policy.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
)
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry

URL = "http://payments/pay"


def mesh_for(
    *servers: ScriptedServer, policies: dict[str, Any] | None = None, **extra: Any
) -> MeshConfig:
    """``gateway`` calls ``payments``: the app of one server, or the servers as endpoints."""
    payments: dict[str, Any] = {
        "port": servers[0].port,
        "sidecar": {"inbound": 61011, "outbound": 61012, "admin": 61013},
    }
    if len(servers) > 1:
        payments["endpoints"] = [{"address": "127.0.0.1", "port": s.port} for s in servers]
    return parse_mesh(
        {
            "mesh": "test",
            "services": {
                "gateway": {
                    "port": 61000,
                    "sidecar": {"inbound": 61001, "outbound": 61002, "admin": 61003},
                },
                "payments": payments,
            },
            "policies": {"payments": policies or {}},
            **extra,
        }
    )


def client_for(mesh: MeshConfig, clock: FakeClock) -> httpx.Client:
    """A from_mesh client whose retries sleep on ``clock``."""
    transport = MeshTransport(
        mesh,
        service="gateway",
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
        rng=random.Random(0),
    )
    return httpx.Client(transport=transport, timeout=None)


RETRY_503 = {"retry": {"attempts": 3, "on": ["gateway-error"]}}


# --- the pipeline ------------------------------------------------------------------------


def test_the_pipeline_follows_mesh_yaml(client_server: ScriptedServer) -> None:
    mesh = mesh_for(
        client_server,
        policies={
            "timeout": "2s",
            "retry": {"attempts": 3},
            "circuit_breaker": {"failure_rate": "25%", "open_for": "7s", "minimum_calls": 4},
            "bulkhead": {"max_in_flight": 5},
        },
    )
    with from_mesh(mesh, service="gateway") as http:
        transport = http._transport
        assert isinstance(transport, MeshTransport)
        pipeline = transport.policy_for("payments")
    assert isinstance(pipeline, Pipeline)
    timeout, bulkhead, retry, breaker = pipeline.policies
    assert isinstance(timeout, Timeout)
    assert timeout.config.seconds == 2.0
    assert isinstance(bulkhead, Bulkhead)
    assert bulkhead.config.max_in_flight == 5
    assert isinstance(retry, Retry)
    assert retry.attempts_max == 3
    assert isinstance(breaker, CircuitBreaker)
    settings = breaker.settings
    assert (settings["failure_rate"], settings["open_for"], settings["minimum_calls"]) == (
        25.0,
        7.0,
        4,
    )
    assert settings["automatic_transition"] is True  # as the sidecar's


def test_service_must_be_the_meshs(client_server: ScriptedServer) -> None:
    with pytest.raises(ValueError, match="service must be one of the mesh's services"):
        from_mesh(mesh_for(client_server), service="nobody")


def test_from_a_file(client_server: ScriptedServer, tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(
        f"""
mesh: test
services:
  gateway: {{port: 61000, sidecar: {{inbound: 61001, outbound: 61002, admin: 61003}}}}
  payments:
    port: {client_server.port}
    sidecar: {{inbound: 61011, outbound: 61012, admin: 61013}}
"""
    )
    with from_mesh(path, service="gateway") as http:
        assert http.get("http://payments/ok").text == "ok"
        assert http.get("http://payments.svc:1234/ok").text == "ok"  # as the sidecar reads it
    seen = client_server.seen("/ok")
    assert [s.headers["host"] for s in seen] == ["payments", "payments.svc:1234"]


# --- retries ------------------------------------------------------------------------------


def test_retries_what_mesh_yaml_says(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client_for(mesh_for(client_server, policies=RETRY_503), client_clock) as http:
        response = http.get("http://payments/ok?fail=2")
    assert response.status_code == 200
    seen = client_server.seen("/ok")
    assert [s.headers["x-seawall-attempt"] for s in seen] == ["1", "2", "3"]
    # full jitter from 25 ms, doubling, capped at 1 s (mesh.yaml's defaults)
    assert len(client_clock.sleeps) == 2
    assert 0 <= client_clock.sleeps[0] <= 0.025
    assert 0 <= client_clock.sleeps[1] <= 0.05
    assert len({s.headers["x-request-id"] for s in seen}) == 1


def test_gives_up_after_the_attempts_and_returns_the_last_answer(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client_for(mesh_for(client_server, policies=RETRY_503), client_clock) as http:
        response = http.get("http://payments/fail")
    assert response.status_code == 503
    assert client_server.hits("/fail") == 3


def test_only_the_conditions_of_mesh_yaml_are_retried(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    # the default, [connect-failure, reset]: a 503 is the app's answer, not retried
    with client_for(mesh_for(client_server), client_clock) as http:
        assert http.get("http://payments/ok?fail=1").status_code == 503
        assert http.get("http://payments/ok/x?fail=1&how=reset").text == "ok"  # retried
    assert client_server.hits("/ok") == 1
    assert client_server.hits("/ok/x") == 2


def test_overloaded_answers_are_never_retried(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client_for(mesh_for(client_server, policies=RETRY_503), client_clock) as http:
        assert http.get("http://payments/ok?fail=1&overloaded=1").status_code == 503
    assert client_server.hits("/ok") == 1


def test_post_is_retried_only_when_mesh_yaml_allows_it(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client_for(mesh_for(client_server, policies=RETRY_503), client_clock) as http:
        assert http.post("http://payments/ok/a?fail=1", content=b"x").status_code == 503
        headers = {"idempotency-key": "k1"}
        response = http.post("http://payments/ok/b?fail=1", content=b"x", headers=headers)
        assert response.text == "ok"
    assert (client_server.hits("/ok/a"), client_server.hits("/ok/b")) == (1, 2)
    allowed = {"retry": {"attempts": 3, "on": ["gateway-error"], "methods": ["POST"]}}
    with client_for(mesh_for(client_server, policies=allowed), client_clock) as http:
        assert http.post("http://payments/ok/c?fail=1", content=b"x").text == "ok"
    assert client_server.hits("/ok/c") == 2


def test_a_route_changes_the_retry(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    policies = {
        **RETRY_503,
        "routes": [{"match": {"path_prefix": "/ok/once"}, "retry": {"attempts": 1}}],
    }
    with client_for(mesh_for(client_server, policies=policies), client_clock) as http:
        assert http.get("http://payments/ok/once?fail=1").status_code == 503
        assert http.get("http://payments/ok/twice?fail=1").text == "ok"
    assert (client_server.hits("/ok/once"), client_server.hits("/ok/twice")) == (1, 2)


def test_the_retry_budget_stops_retries(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    policies = {
        "retry": {
            "attempts": 3,
            "on": ["gateway-error"],
            "budget": {"ratio": 0.5, "min_per_second": 0, "ttl": "10s"},
        }
    }
    with client_for(mesh_for(client_server, policies=policies), client_clock) as http:
        for _ in range(4):
            http.get("http://payments/fail")
    # 4 requests, ratio 0.5: 2 retries in all, not 8
    assert client_server.hits("/fail") == 6


def test_each_retry_goes_to_another_endpoint(client_clock: FakeClock) -> None:
    servers = [ScriptedServer(), ScriptedServer()]
    for server in servers:
        server.start()
    try:
        mesh = mesh_for(*servers, policies=RETRY_503)
        with client_for(mesh, client_clock) as http:
            assert http.get("http://payments/ok?fail=1").text == "ok"
        # the first attempt failed on one endpoint, the retry went to the other,
        # which failed too (its own first request); the third attempt passed
        assert [s.hits("/ok") for s in servers] in ([1, 2], [2, 1])
        assert [s.seen("/ok")[0].headers["x-seawall-attempt"] for s in servers] == ["1", "2"]
    finally:
        for server in servers:
            server.close()


# --- the breaker ------------------------------------------------------------------------


BREAKER = {
    "circuit_breaker": {
        "window": {"type": "count", "size": 4},
        "minimum_calls": 4,
        "failure_rate": "50%",
        "open_for": "5s",
        "half_open_calls": 1,
    }
}


def test_the_breaker_opens_as_mesh_yaml_says(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client_for(mesh_for(client_server, policies=BREAKER), client_clock) as http:
        transport = http._transport
        assert isinstance(transport, MeshTransport)
        breaker = transport.destination("payments").breaker
        assert breaker is not None
        assert http.get("http://payments/ok").status_code == 200
        assert http.get("http://payments/ok").status_code == 200
        assert http.get("http://payments/fail").status_code == 503
        assert breaker.state is BreakerState.CLOSED  # 1 of 3: not judged yet
        assert http.get("http://payments/fail").status_code == 503  # 2 of 4: 50%
        assert breaker.state is BreakerState.OPEN
        with pytest.raises(CircuitOpenError) as info:
            http.get("http://payments/ok")
        assert info.value.retry_after == pytest.approx(5.0)
        assert client_server.hits() == 4  # rejected without reaching the server
        client_clock.advance(5.0)
        assert breaker.state is BreakerState.HALF_OPEN  # automatic, as the sidecar's
        assert http.get("http://payments/ok").status_code == 200  # the probe
        assert breaker.state is BreakerState.CLOSED


def test_one_breaker_per_destination_across_routes_and_methods(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    policies = {**BREAKER, "routes": [{"match": {"path_prefix": "/fail"}, "timeout": "1s"}]}
    with client_for(mesh_for(client_server, policies=policies), client_clock) as http:
        for _ in range(2):
            http.get("http://payments/ok")
        http.post("http://payments/fail", content=b"x")
        http.get("http://payments/fail")
        with pytest.raises(CircuitOpenError):
            http.get("http://payments/ok")


# --- timeouts ------------------------------------------------------------------------------


def test_the_timeout_bounds_the_request(client_server: ScriptedServer) -> None:
    mesh = mesh_for(client_server, policies={"timeout": "300ms"})
    with from_mesh(mesh, service="gateway") as http:
        started = time.monotonic()
        with pytest.raises((httpx.TimeoutException, DeadlineExceeded)):
            http.get("http://payments/hang")
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 2.0
    assert int(client_server.seen("/hang")[0].headers["x-seawall-deadline-ms"]) <= 300


def test_per_try_timeout_then_a_retry_within_the_timeout(client_server: ScriptedServer) -> None:
    policies = {"timeout": "3s", "per_try_timeout": "200ms", "retry": {"attempts": 2}}
    with from_mesh(mesh_for(client_server, policies=policies), service="gateway") as http:
        started = time.monotonic()
        response = http.get("http://payments/ok?fail=1&how=hang")
        elapsed = time.monotonic() - started
    assert response.text == "ok"  # the first attempt timed out after 200 ms, the retry answered
    assert 0.15 <= elapsed < 2.0
    first, second = client_server.seen("/ok")
    # x-seawall-deadline-ms is the whole request's time left, as the sidecar sends it
    left = [int(s.headers["x-seawall-deadline-ms"]) for s in (first, second)]
    assert 2500 < left[0] <= 3000
    assert left[1] < left[0]


def test_a_slow_request_is_hedged(client_server: ScriptedServer) -> None:
    policies = {"timeout": "3s", "hedge": {"delay": "50ms"}}
    with from_mesh(mesh_for(client_server, policies=policies), service="gateway") as http:
        started = time.monotonic()
        response = http.get("http://payments/ok?fail=1&how=hang")
        elapsed = time.monotonic() - started
        # a POST is never hedged
        assert http.post("http://payments/ok/post", content=b"x").text == "ok"
    assert response.text == "ok"  # the copy sent after 50 ms answered
    assert elapsed < 2.0
    assert [s.headers["x-seawall-attempt"] for s in client_server.seen("/ok")] == ["1", "2"]
    assert client_server.hits("/ok/post") == 1


# --- limits ----------------------------------------------------------------------------------


def test_the_rate_limit_refuses_at_once(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    policies = {"rate_limit": {"rate": 1, "burst": 2}}
    with client_for(mesh_for(client_server, policies=policies), client_clock) as http:
        http.get("http://payments/ok")
        http.get("http://payments/ok")
        with pytest.raises(RateLimitedError) as info:
            http.get("http://payments/ok")
        assert info.value.retry_after == pytest.approx(1.0)
        client_clock.advance(1.0)
        assert http.get("http://payments/ok").text == "ok"
    assert client_server.hits("/ok") == 3


def test_max_in_flight_refuses_at_once(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    policies = {"bulkhead": {"max_in_flight": 1}}
    with client_for(mesh_for(client_server, policies=policies), client_clock) as http:
        transport = http._transport
        assert isinstance(transport, MeshTransport)
        bulkhead = transport.destination("payments").bulkhead
        with bulkhead, pytest.raises(BulkheadFullError):  # a request in progress
            http.get("http://payments/ok")
        assert http.get("http://payments/ok").text == "ok"


# --- hosts outside the mesh ------------------------------------------------------------------


def test_egress_goes_to_the_host_or_is_refused(client_server: ScriptedServer) -> None:
    with from_mesh(mesh_for(client_server), service="gateway") as http:
        assert http.get(client_server.url("/ok")).text == "ok"
    refused = mesh_for(client_server, egress={"mode": "registry_only"})
    with from_mesh(refused, service="gateway") as http:
        response = http.get(client_server.url("/ok"))
    assert response.status_code == 403
    assert response.headers["x-seawall-denied"] == "egress"
    assert client_server.hits("/ok") == 1


def test_an_external_service_by_its_mesh_name(client_server: ScriptedServer) -> None:
    # `external:` (here without TLS): called as http://billing/..., sent to host:port
    # with the real host as Host, under the name's own policy, as the sidecar does
    external = {"billing": {"host": "127.0.0.1", "port": client_server.port, "tls": False}}
    with from_mesh(mesh_for(client_server, external=external), service="gateway") as http:
        assert http.get("http://billing/ok").text == "ok"
        transport = http._transport
        assert isinstance(transport, MeshTransport)
        assert transport.destination("billing").breaker is not None
    assert client_server.seen("/ok")[0].headers["host"] == f"127.0.0.1:{client_server.port}"


# --- outlier detection -------------------------------------------------------------------


def test_a_failing_endpoint_is_ejected(client_clock: FakeClock) -> None:
    servers = [ScriptedServer(), ScriptedServer()]
    for server in servers:
        server.start()
    try:
        policies = {
            "outlier": {"consecutive_5xx": None, "consecutive_gateway_errors": 2},
            "circuit_breaker": {"enabled": False},
        }
        with client_for(mesh_for(*servers, policies=policies), client_clock) as http:
            # round robin (first, second, first): the first endpoint answers two 503s
            # in a row and is ejected (30 s); the second's two 503s are detected too,
            # but at most 50% of the endpoints may be out: it stays
            answers = [http.get("http://payments/p?fail=2").status_code for _ in range(4)]
            assert answers == [503, 503, 503, 503]
            assert [s.hits("/p") for s in servers] == [2, 2]
            for _ in range(4):
                assert http.get("http://payments/ok").text == "ok"
        assert [s.hits("/ok") for s in servers] == [0, 4]
    finally:
        for server in servers:
            server.close()


# --- asyncio ----------------------------------------------------------------------------


def test_async_client_retries_and_opens_the_breaker(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    mesh = mesh_for(client_server, policies={**RETRY_503, **BREAKER})

    async def main() -> None:
        transport = AsyncMeshTransport(
            mesh,
            service="gateway",
            clock=client_clock,
            sleep=client_clock.sleep,
            async_sleep=client_clock.async_sleep,
            rng=random.Random(0),
        )
        async with httpx.AsyncClient(transport=transport, timeout=None) as http:
            # two 503s retried, then 200: the breaker saw 2 failures of 3 calls
            assert (await http.get("http://payments/ok?fail=2")).text == "ok"
            # a 4th call fails: 3 of 4, open; the retry of it is refused by the
            # breaker, and that is not retried (the sidecar answers 503 at once)
            with pytest.raises(CircuitOpenError):
                await http.get("http://payments/fail")
            with pytest.raises(CircuitOpenError):
                await http.get("http://payments/ok")

    asyncio.run(main())
    assert (client_server.hits("/ok"), client_server.hits("/fail")) == (3, 1)


def test_async_from_mesh_honours_the_timeout(client_server: ScriptedServer) -> None:
    mesh = mesh_for(client_server, policies={"timeout": "200ms"})

    async def main() -> float:
        async with async_from_mesh(mesh, service="gateway") as http:
            started = time.monotonic()
            with pytest.raises((httpx.TimeoutException, DeadlineExceeded)):
                await http.get("http://payments/hang")
            return time.monotonic() - started

    assert 0.15 <= asyncio.run(main()) < 2.0
