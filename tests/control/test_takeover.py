"""Issue 8, part 1: one service's join token can never act on another service's instances.

Found by an adversarial pass: with services ``front`` and ``front-api``,
front's token registered ids ``front-api-<n>`` and evicted front-api's real
instance (21% of calls to front-api failed). Instance ids are now
``<service>.<suffix>`` (no service name has a dot), and every cross-service
action with a join token is a 403 that leaves the victim's endpoints as they
were. The pairs below are prefix-named on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from control_server import InProcessControl, applied
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tlsutil
from tlsutil import csr_for  # noqa: E402

MESH = """\
mesh: shop
services:
  front: {port: 8001, sidecar: {inbound: 18001, outbound: 15001, admin: 19001}}
  front-api: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
  pay: {port: 8003, sidecar: {inbound: 18003, outbound: 15003, admin: 19003}}
  pay-gw: {port: 8004, sidecar: {inbound: 18004, outbound: 15004, admin: 19004}}
"""
PAIRS = [("front", "front-api"), ("front-api", "front"), ("pay", "pay-gw"), ("pay-gw", "pay")]


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    with applied(tmp_path / "state", MESH) as server:
        yield server


def _register(c: httpx.Client, iid: str, service: str, port: int) -> httpx.Response:
    body = {"id": iid, "service": service, "address": "127.0.0.1", "port": port, "ttl": 30}
    return c.post("/v1/instances", json=body)


def _endpoints(control: InProcessControl, service: str) -> list[dict[str, object]]:
    with control.client(**control.admin) as c:
        found: list[dict[str, object]] = c.get("/v1/snapshot").json()["endpoints"].get(service, [])
        return found


@pytest.mark.parametrize(("attacker", "victim"), PAIRS)
def test_every_cross_service_action_is_refused(
    control: InProcessControl, attacker: str, victim: str
) -> None:
    with control.client(**control.join(victim)) as v:
        r = _register(v, f"{victim}.real", victim, 18500)
        assert r.status_code == 200, r.text
        lease = r.json()["lease"]
    before = _endpoints(control, victim)
    assert [e["id"] for e in before] == [f"{victim}.real"]

    with control.client(**control.join(attacker)) as a:
        # register: as the victim service, and as itself with the victim's id (a replace)
        for iid, service in (
            (f"{victim}.real", victim),
            (f"{victim}.real", attacker),
            (f"{victim}.x1", victim),
            (f"{victim}.x1", attacker),
            (f"{attacker}.x2", victim),
        ):
            r = _register(a, iid, service, 18999)
            assert r.status_code == 403, (iid, service, r.text)
            assert "join token of" in r.json()["error"]
        # the old takeover shape: "<victim>-<n>" is no instance id at all
        r = _register(a, f"{victim}-1", attacker, 18999)
        assert r.status_code in (403, 422), r.text
        # renew, revoke, report on the victim's lease
        assert a.put(f"/v1/leases/{lease}").status_code == 403
        assert a.delete(f"/v1/leases/{lease}").status_code == 403
        report = {"id": f"{victim}.real", "config_version": 1, "ejected": []}
        assert a.put(f"/v1/leases/{lease}/status", json=report).status_code == 403
        # a certificate naming the victim (in the CSR, or in the body)
        key = ec.generate_private_key(ec.SECP256R1())
        csr = csr_for(key, f"spiffe://shop.local/service/{victim}").decode()
        r = a.post("/v1/certificates", json={"csr": csr})
        assert r.status_code == 403, r.text
        assert victim in r.json()["error"]
        r = a.post("/v1/certificates", json={"csr": csr_for(key).decode(), "service": victim})
        assert r.status_code == 403, r.text
        # its own certificate is still fine, and names only itself
        r = a.post("/v1/certificates", json={"csr": csr_for(key).decode()})
        assert r.status_code == 200, r.text
        assert r.json()["spiffe_id"] == f"spiffe://shop.local/service/{attacker}"

    assert _endpoints(control, victim) == before
    with control.client(**control.join(victim)) as v:
        assert v.put(f"/v1/leases/{lease}").status_code == 200  # the victim's lease is intact


def test_the_takeover_loop_leaves_the_victim_alone(control: InProcessControl) -> None:
    """The adversarial loop itself: 300 registrations of front-api ids with front's token."""
    with control.client(**control.join("front-api")) as v:
        lease = _register(v, "front-api.7f3a", "front-api", 18002).json()["lease"]
    before = _endpoints(control, "front-api")
    refused = 0
    with control.client(**control.join("front")) as a:
        for n in range(300):
            iid = "front-api.7f3a" if n % 3 == 0 else f"front-api.{n}"
            r = _register(a, iid, "front" if n % 2 else "front-api", 18900)
            refused += r.status_code == 403
    assert refused == 300
    assert _endpoints(control, "front-api") == before
    assert _endpoints(control, "front") == []
    with control.client(**control.join("front-api")) as v:
        assert v.put(f"/v1/leases/{lease}").status_code == 200


def test_reregistering_ones_own_id_after_a_restart_still_works(control: InProcessControl) -> None:
    with control.client(**control.join("pay")) as c:
        first = _register(c, "pay.a1", "pay", 18003).json()["lease"]
        again = _register(c, "pay.a1", "pay", 18013)  # restarted on another port
        assert again.status_code == 200
        assert c.put(f"/v1/leases/{first}").status_code == 404  # the old lease went with it
    assert [(e["id"], e["port"]) for e in _endpoints(control, "pay")] == [("pay.a1", 18013)]


@pytest.mark.parametrize("name", ["PAY", "pay.x", "pay_gw", "-pay", "pay-", "", "a" * 64])
def test_invalid_service_names_get_no_token_and_no_registration(
    control: InProcessControl, name: str
) -> None:
    with control.client(**control.admin) as c:
        r = c.post("/v1/join-tokens", json={"service": name})
        assert r.status_code == 422, r.text
        assert "DNS label" in r.json()["error"]
        r = _register(c, f"{name}.1", name, 18000)
        assert r.status_code == 422, r.text
        assert "body.service: must be a service name, a DNS label" in r.json()["error"]
    # a token someone minted by hand for such a name registers nothing either
    forged = control.tokens.join_token(name) if name else "x"
    with control.client(authorization=f"Bearer {forged}") as c:
        assert _register(c, f"{name}.1", name, 18000).status_code in (401, 403, 422)


def test_instance_id_shapes_are_checked(control: InProcessControl) -> None:
    with control.client(**control.join("front")) as c:
        for bad in ("front", "front.", "front.a/b", "front.-a", "Front.a", "front." + "a" * 65):
            r = _register(c, bad, "front", 18001)
            assert r.status_code in (403, 422), (bad, r.text)
            assert "body.id" in r.json()["error"]
