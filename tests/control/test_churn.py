"""Issue 8, part 2: registry churn, quotas, revocation, and subscribers that stay exact.

The bounded form of the benchmark's churn (``make bench-control`` has the
figures): instances register, renew and deregister while subscribers
long-poll with deltas; every subscriber must end with exactly the registry the
control plane holds. Correctness only: nothing here is timed.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from control_server import InProcessControl, applied

from seawall.proxy.control_link import apply_delta

SERVICES = [f"svc{n}" for n in range(5)]


def mesh(max_instances: int = 1000) -> str:
    lines = ["mesh: churn", "services:"]
    for n, name in enumerate(SERVICES):
        lines.append(
            f"  {name}: {{port: {20000 + n}, max_instances: {max_instances}, "
            f"sidecar: {{inbound: {21000 + n}, outbound: {22000 + n}, admin: {23000 + n}}}}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    with applied(tmp_path / "state", mesh()) as server:
        yield server


class Subscriber:
    """A sidecar's subscription, as the control link does it: long-poll, deltas applied."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.snapshot: dict[str, Any] | None = None
        self.deltas = 0
        self.fulls = 0

    async def poll(self, wait: float) -> None:
        params = {"known": self.snapshot["etag"] if self.snapshot else "", "wait": str(wait)}
        if self.snapshot is not None:
            params["delta"] = "1"
        r = await self.client.get("/v1/snapshot", params=params, timeout=wait + 10)
        if r.status_code == 304:
            return
        assert r.status_code == 200, r.text
        data = r.json()
        if "base" in data:
            assert self.snapshot is not None
            assert data["base"] == self.snapshot["etag"]
            self.snapshot = apply_delta(self.snapshot, data)
            self.deltas += 1
        else:
            self.snapshot = data
            self.fulls += 1

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll(0.5)


def test_churn_keeps_every_subscriber_exact(control: InProcessControl) -> None:
    rng = random.Random(8)
    tokens = {s: control.join(s)["authorization"] for s in SERVICES}

    async def run() -> tuple[list[Subscriber], dict[str, Any], dict[str, str]]:
        limits = httpx.Limits(max_connections=200)
        async with httpx.AsyncClient(
            base_url=control.url, trust_env=False, limits=limits,
            headers={"authorization": tokens["svc0"]},
        ) as sub_client, httpx.AsyncClient(
            base_url=control.url, trust_env=False, limits=limits
        ) as client:  # fmt: skip
            subscribers = [Subscriber(sub_client) for _ in range(10)]
            for s in subscribers:
                await s.poll(0)
            stop = asyncio.Event()
            following = [asyncio.create_task(s.follow(stop)) for s in subscribers]
            leases: dict[str, str] = {}

            async def register(n: int) -> None:
                service = SERVICES[n % len(SERVICES)]
                body = {
                    "id": f"{service}.i{n}", "service": service, "address": "127.0.0.1",
                    "port": 30000 + n, "ttl": 60,
                }  # fmt: skip
                r = await client.post(
                    "/v1/instances", json=body, headers={"authorization": tokens[service]}
                )
                assert r.status_code == 200, r.text
                leases[body["id"]] = r.json()["lease"]

            async def call(method: str, iid: str) -> None:
                service = iid.partition(".")[0]
                r = await client.request(
                    method, f"/v1/leases/{leases[iid]}", headers={"authorization": tokens[service]}
                )
                assert r.status_code in (200, 204), r.text

            for start in range(0, 600, 50):  # register 600 instances, 50 in flight
                await asyncio.gather(*(register(n) for n in range(start, start + 50)))
            for _ in range(3):  # then renew, deregister and register again, mixed
                ids = rng.sample(sorted(leases), 100)
                await asyncio.gather(*(call("PUT", i) for i in ids[:50]))
                await asyncio.gather(*(call("DELETE", i) for i in ids[50:]))
                for gone in ids[50:]:
                    del leases[gone]
                base = 2000 + 100 * _
                await asyncio.gather(*(register(n) for n in range(base, base + 50)))
            # let every subscriber catch up with the last batch
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*following)
            answer = await client.get("/v1/snapshot", headers={"authorization": tokens["svc0"]})
            full = answer.json()
            return subscribers, full, leases

    subscribers, full, leases = asyncio.run(run())
    expected = {s: sorted(i for i in leases if i.startswith(s + ".")) for s in SERVICES}
    assert {s: sorted(e["id"] for e in full["endpoints"].get(s, [])) for s in SERVICES} == expected
    for sub in subscribers:
        assert sub.snapshot == full
        assert sub.deltas > 0
    # deltas, not whole snapshots, after the first one
    assert sum(s.fulls for s in subscribers) == len(subscribers)


def test_the_per_service_quota_is_a_429_that_says_what_to_do(control: InProcessControl) -> None:
    with control.client(**control.admin) as c:
        assert c.put("/v1/config", content=mesh(max_instances=3)).status_code == 200
    with control.client(**control.join("svc1")) as c:
        for n in range(3):
            body = {"id": f"svc1.{n}", "service": "svc1", "address": "127.0.0.1", "port": 1000 + n}
            assert c.post("/v1/instances", json=body).status_code == 200
        body = {"id": "svc1.x", "service": "svc1", "address": "127.0.0.1", "port": 1100}
        r = c.post("/v1/instances", json=body)
        assert r.status_code == 429
        assert r.json()["error"] == (
            "service 'svc1' has 3 instances registered, its quota "
            "(services.svc1.max_instances = 3): deregister some, or raise the quota in mesh.yaml"
        )
        # re-registering one's own instance is not a new one
        body = {"id": "svc1.0", "service": "svc1", "address": "127.0.0.1", "port": 1200}
        assert c.post("/v1/instances", json=body).status_code == 200
    with control.client(**control.join("svc2")) as c:  # other services have their own quota
        body = {"id": "svc2.0", "service": "svc2", "address": "127.0.0.1", "port": 1300}
        assert c.post("/v1/instances", json=body).status_code == 200


def test_revoking_a_token_deregisters_its_service_at_once(control: InProcessControl) -> None:
    old = control.join("svc3")
    leases = []
    with control.client(**old) as c:
        for n in range(200):
            body = {"id": f"svc3.{n}", "service": "svc3", "address": "127.0.0.1", "port": 2000 + n}
            leases.append(c.post("/v1/instances", json=body).json()["lease"])
    with control.client(**control.join("svc4")) as c:
        body = {"id": "svc4.0", "service": "svc4", "address": "127.0.0.1", "port": 3000}
        assert c.post("/v1/instances", json=body).status_code == 200
    with control.client(**control.admin) as c:
        r = c.post("/v1/join-tokens/svc3/revoke")
        assert r.status_code == 200, r.text
        answer = r.json()
        assert (answer["generation"], answer["deregistered"]) == (1, 200)
        snapshot = c.get("/v1/snapshot").json()
        assert "svc3" not in snapshot["endpoints"]
        assert [e["id"] for e in snapshot["endpoints"]["svc4"]] == ["svc4.0"]
        # minting again gives the new generation's token
        minted = c.post("/v1/join-tokens", json={"service": "svc3"}).json()["token"]
        assert minted == answer["token"]
        assert c.post("/v1/join-tokens/SVC3/revoke").status_code == 422
    with control.client(**old) as c:
        r = c.put(f"/v1/leases/{leases[0]}")
        assert r.status_code == 401
        assert "revoked" in r.json()["error"]
        body = {"id": "svc3.0", "service": "svc3", "address": "127.0.0.1", "port": 2000}
        assert c.post("/v1/instances", json=body).status_code == 401
    with control.client(authorization=f"Bearer {answer['token']}") as c:
        body = {"id": "svc3.0", "service": "svc3", "address": "127.0.0.1", "port": 2000}
        assert c.post("/v1/instances", json=body).status_code == 200


def test_a_subscriber_with_an_unknown_etag_gets_the_whole_snapshot(
    control: InProcessControl,
) -> None:
    with control.client(**control.join("svc0")) as c:
        r = c.get("/v1/snapshot", params={"known": "not-an-etag", "delta": "1"})
        assert r.status_code == 200
        data = r.json()
        assert "base" not in data
        assert data["config"]["version"] == 1
        assert json.loads(r.content)["endpoints"] == {}


def test_a_plain_read_sees_every_change_made_before_it(control: InProcessControl) -> None:
    """A read without a wait returns what is pending as of the next batch: changes that
    are still waiting for their batch are not missed (the read waits for it)."""
    with control.client(**control.join("svc0")) as c:
        for n in range(30):
            body = {"id": f"svc0.b{n}", "service": "svc0", "address": "127.0.0.1", "port": 5000 + n}
            assert c.post("/v1/instances", json=body).status_code == 200
            seen = c.get("/v1/snapshot").json()["endpoints"]["svc0"]
            assert len(seen) == n + 1
