"""Sidecar.apply with pushed endpoint sets: registry changes update in place, configs rebuild."""

from __future__ import annotations

import asyncio

import pytest

from seawall.config import load_mesh
from seawall.proxy.sidecar import Sidecar
from seawall.proxy.upstream.endpoint import Endpoint

MESH = """\
mesh: t
services:
  api: {port: 8001, sidecar: {inbound: 18001, outbound: 15001, admin: 19001}}
  backend:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
    subsets: {v1: {}, v2: {}}
policies:
  backend:
    circuit_breaker: {minimum_calls: 5}
    outlier: {consecutive_5xx: 2, ejection: 30s, max_ejected: 100%}
"""

A = Endpoint("127.0.0.1", 18002, "v1")
B = Endpoint("127.0.0.1", 18012, "v2")
C = Endpoint("127.0.0.1", 18022, "v2")


def test_a_registry_change_keeps_breakers_budgets_and_ejections() -> None:
    async def scenario() -> None:
        config = load_mesh(MESH)
        sidecar = Sidecar(None, "api", config=config, endpoints={"backend": [A, B]})
        runtime = sidecar.runtime
        cluster = runtime.destinations["backend"].cluster
        breaker, budget, outlier = cluster.breaker, cluster.budget, cluster.outlier
        assert outlier is not None
        for _ in range(2):  # two 5xx in a row: B is ejected
            cluster.record(B, 503, True)
        assert outlier.is_ejected(B, cluster.clock())
        # an instance joins (C); the config is the same
        sidecar.apply(config, {"backend": [A, B, C]})
        assert sidecar.runtime is runtime  # nothing rebuilt
        assert cluster.endpoints == [A, B, C]
        assert cluster.breaker is breaker
        assert cluster.budget is budget
        assert outlier.is_ejected(B, cluster.clock())  # still ejected
        picks = {cluster.pick(frozenset(), "v2") for _ in range(50)}
        assert picks == {C}  # the new one is used; the ejected one is not
        # B's lease expires: it leaves the set
        sidecar.apply(config, {"backend": [A, C]})
        assert cluster.endpoints == [A, C]
        # every instance gone: no endpoint at all (not a default one)
        sidecar.apply(config, {})
        assert cluster.endpoints == []
        assert cluster.pick(frozenset(), None) is None

    asyncio.run(scenario())


def test_a_config_change_builds_a_new_runtime() -> None:
    async def scenario() -> None:
        config = load_mesh(MESH)
        sidecar = Sidecar(None, "api", config=config, endpoints={"backend": [A]})
        before = sidecar.runtime
        changed = load_mesh(MESH.replace("minimum_calls: 5", "minimum_calls: 7"))
        sidecar.apply(changed, {"backend": [A, B]})
        assert sidecar.runtime is not before
        assert sidecar.forwarder.runtime is sidecar.runtime
        assert sidecar.runtime.destinations["backend"].cluster.endpoints == [A, B]
        before.close()

    asyncio.run(scenario())


def test_a_sidecar_needs_a_config() -> None:
    with pytest.raises(ValueError, match="config_path or config"):
        Sidecar(None, "api")
