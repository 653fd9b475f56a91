"""Forced certificate expiry, the control plane's chaos fault: its parts, its API, end to end.

* sans-I/O: :class:`CertFaults` (lifetimes, one certificate per key when
  renewals are blocked, renewal tokens that never repeat), the publisher's
  ``renew`` tokens in full and delta snapshots, and the sidecar's
  :class:`ControlLink` renewing at once when its service's token changes;
* the API over real sockets (an in-process replica): admin token, body
  validation, unknown services, listing, lifting (idempotent), CSRs signed
  short, refused while blocked, signed normally again once lifted, and the
  client helpers of :mod:`seawall.control.chaos_api`;
* end to end: a real control plane, two real sidecars (``api`` calls
  ``backend``, strict mTLS) and a scripted upstream. A forced 2 s lifetime
  keeps the callee renewing while requests succeed; with renewals blocked its
  certificate expires on the wire and the caller's sidecar answers 503; lifted,
  the callee renews and requests succeed again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from backends import BackendLoop, Ok
from control_server import ControlProcess, InProcessControl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from managed import ManagedSidecar, allocate, mesh_doc

from seawall.control.cert_faults import CertFault, CertFaults, RenewalBlockedError
from seawall.control.chaos_api import cert_faults, force_cert_expiry, lift_cert_expiry
from seawall.control.snapshot import Publisher
from seawall.control.store import Instance
from seawall.control.store.registry import Registry
from seawall.proxy.control_link import ControlClient, ControlLink, InstanceSpec, apply_delta

MESH = """\
mesh: shop
trust_domain: shop.local
services:
  orders:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
  payments:
    port: 8003
    sidecar: {inbound: 18003, outbound: 15003, admin: 19003}
"""


# ------------------------------------------------------------------ sans-I/O


def test_a_fault_sets_the_lifetime_and_blocks_a_key_after_its_one_certificate() -> None:
    faults = CertFaults(nonce="n")
    assert faults.admit("orders", "k1") is None  # no fault: the normal lifetime
    faults.force(CertFault("orders", 3, block_renewal=False, since=100.0))
    assert faults.admit("orders", "k1") == 3.0
    assert faults.admit("orders", "k1") == 3.0  # not blocked: every renewal is short
    assert faults.admit("payments", "k1") is None  # another service is untouched
    faults.force(CertFault("orders", 2, block_renewal=True, since=101.0))
    assert faults.admit("orders", "k1") == 2.0  # its one certificate under the new fault
    with pytest.raises(RenewalBlockedError, match="'orders' is blocked by a chaos fault"):
        faults.admit("orders", "k1")
    assert faults.admit("orders", "k2") == 2.0  # another sidecar gets its one
    faults.release("orders", "k2")  # ... whose signing failed: it may ask again
    assert faults.admit("orders", "k2") == 2.0
    assert [f.to_dict() for f in faults.faults()] == [
        {"service": "orders", "ttl": 2.0, "block_renewal": True, "since": 101.0}
    ]
    assert faults.lift("orders") is not None
    assert faults.admit("orders", "k1") is None  # signed normally again
    assert faults.lift("orders") is None  # idempotent
    assert faults.faults() == []


def test_every_force_and_lift_changes_the_renewal_token_and_tokens_never_repeat() -> None:
    faults = CertFaults(nonce="a")
    assert faults.renewals == {}
    seen = []
    faults.force(CertFault("orders", 3, False, 0.0))
    seen.append(faults.renewals["orders"])
    faults.force(CertFault("orders", 3, True, 0.0))
    seen.append(faults.renewals["orders"])
    faults.lift("orders")
    seen.append(faults.renewals["orders"])
    faults.lift("orders")  # nothing was in force: no renewal asked
    assert faults.renewals["orders"] == seen[-1]
    assert len(set(seen)) == 3
    assert set(faults.renewals) == {"orders"}
    # a restarted control plane (a new nonce) never hands out a token seen before
    again = CertFaults()
    again.force(CertFault("orders", 3, False, 0.0))
    assert again.renewals["orders"] not in seen


@pytest.mark.parametrize(
    ("field", "value"),
    [("ttl", 0.5), ("ttl", 86_401), ("ttl", True), ("ttl", float("nan")), ("block_renewal", 1)],
)
def test_a_fault_names_the_field_it_refuses(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"service": "orders", "ttl": 3, "block_renewal": False}
    fields[field] = value
    with pytest.raises(ValueError, match=f"^{field}: "):
        CertFault(since=0.0, **fields)


def test_renewal_tokens_travel_in_full_and_delta_snapshots() -> None:
    registry = Registry()
    publisher = Publisher(registry)
    registry.put(Instance("orders.1", "orders", "127.0.0.1", 18002), 1)
    publisher.publish()
    plain = json.loads(publisher.full_body())
    assert "renew" not in plain  # no token: the documents as they always were
    before = publisher.current.etag
    assert publisher.set_renewals({"orders": "x.1"})
    assert publisher.pending()
    assert publisher.publish()  # a new etag: long-polls wake
    full = json.loads(publisher.full_body())
    assert full["renew"] == {"orders": "x.1"}
    delta = publisher.delta_body(before)
    assert delta is not None
    assert apply_delta(plain, json.loads(delta)) == full
    # a registry change alone: the delta has no renew, the sidecar keeps its tokens
    mid = publisher.current.etag
    registry.put(Instance("orders.2", "orders", "127.0.0.1", 18012), 2)
    publisher.publish()
    delta = publisher.delta_body(mid)
    assert delta is not None
    assert "renew" not in json.loads(delta)
    assert apply_delta(full, json.loads(delta)) == json.loads(publisher.full_body())
    assert not publisher.set_renewals({"orders": "x.1"})  # unchanged: nothing to publish


def _link(service: str = "orders") -> ControlLink:
    def no_call(*args: Any, **kwargs: Any) -> tuple[int, bytes]:
        raise OSError("no control plane in this test")

    client = ControlClient(["http://127.0.0.1:9"], "t", call=no_call)
    return ControlLink(
        client,
        InstanceSpec(f"{service}.1", service, "127.0.0.1", 18002),
        "/nonexistent",
        apply=lambda snapshot: 1,
        ejected=list,
    )


def test_the_sidecar_renews_at_once_when_its_services_token_changes() -> None:
    link = _link()
    snap: dict[str, Any] = {"etag": "e1", "config": {}, "endpoints": {}}
    link.record({**snap, "renew": {"orders": "a.1"}}, 1, persist=False)  # started with it
    assert not link.renewal_requested
    assert not link.note_renewal({**snap, "renew": {"orders": "a.1", "payments": "a.2"}})
    assert not link.note_renewal(snap)  # no token (another replica): nothing asked
    assert not link.renewal_requested
    assert link.note_renewal({**snap, "renew": {"orders": "a.3"}})
    assert link.renewal_requested

    # the certificate loop: a certificate good for an hour, renewed at once when asked
    link = _link()
    renewed = threading.Event()
    serials = iter(["s1", "s2"])

    def renew() -> str:
        renewed.set()
        return next(serials)

    thread = threading.Thread(
        target=link.keep_certificate, args=(lambda: time.time() + 3600, renew), daemon=True
    )
    thread.start()
    try:
        assert not renewed.wait(0.3)
        asked = time.monotonic()
        link.note_renewal({"etag": "e2", "renew": {"orders": "b.1"}})
        assert renewed.wait(5), "the renewal the control plane asked for did not happen"
        assert time.monotonic() - asked < 1.5
        assert not link.renewal_requested
    finally:
        link.stop.set()
        thread.join(5)
    assert not thread.is_alive()


# ------------------------------------------------------------------ the API


@pytest.fixture
def control(tmp_path: Path) -> Iterator[InProcessControl]:
    server = InProcessControl(tmp_path / "state")
    with server.client(**server.admin) as c:
        assert c.put("/v1/config", content=MESH).status_code == 200
    yield server
    server.close()


def _csr(key: ec.EllipticCurvePrivateKey, service: str) -> str:
    san = x509.SubjectAlternativeName(
        [x509.UniformResourceIdentifier(f"spiffe://shop.local/service/{service}")]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(san, critical=True)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_the_chaos_routes_need_the_admin_token(control: InProcessControl) -> None:
    calls = [
        ("POST", "/v1/chaos/certificates", {"service": "orders", "ttl": 3}),
        ("GET", "/v1/chaos/certificates", None),
        ("DELETE", "/v1/chaos/certificates/orders", None),
    ]
    for method, path, body in calls:
        with control.client() as c:
            r = c.request(method, path, json=body)
            assert r.status_code == 401, (method, r.text)
            assert "token" in r.json()["error"]
        with control.client(**control.join("orders")) as c:
            r = c.request(method, path, json=body)
            assert r.status_code == 403, (method, r.text)
            assert "admin" in r.json()["error"]
    with control.client(**control.admin) as c:
        assert c.get("/v1/chaos/certificates").json() == {"faults": []}


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"ttl": 3}, 422, "body.service: must be a service name"),
        ({"service": "orders"}, 422, "body.ttl: must be seconds in 1..86400, got None"),
        ({"service": "orders", "ttl": 0.5}, 422, "body.ttl: must be seconds in 1..86400"),
        ({"service": "orders", "ttl": "3"}, 422, "body.ttl: must be seconds in 1..86400"),
        ({"service": "orders", "ttl": True}, 422, "body.ttl"),
        ({"service": "orders", "ttl": 3, "block_renewal": "yes"}, 422, "body.block_renewal"),
        ({"service": "orders", "ttl": 3, "lifetime": 3}, 422, "body.lifetime: unknown field"),
        ({"service": "Orders!", "ttl": 3}, 422, "body.service: must be a service name"),
        ({"service": "nope", "ttl": 3}, 404, "no service 'nope' in mesh 'shop'"),
        ([1, 2], 400, "body: must be a JSON object"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(
    control: InProcessControl, body: Any, status: int, says: str
) -> None:
    with control.client(**control.admin) as c:
        r = c.post("/v1/chaos/certificates", json=body)
        assert r.status_code == status, r.text
        assert says in r.json()["error"]
        assert c.get("/v1/chaos/certificates").json() == {"faults": []}  # nothing stored


def test_force_list_lift_and_what_the_ca_signs(control: InProcessControl) -> None:
    join = control.join("orders")
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def sign(k: ec.EllipticCurvePrivateKey) -> httpx.Response:
        with control.client(**join) as c:
            return c.post("/v1/certificates", json={"csr": _csr(k, "orders")})

    def lifetime(r: httpx.Response) -> float:
        assert r.status_code == 200, r.text
        return float(r.json()["not_after"]) - time.time()

    assert lifetime(sign(key)) > 23 * 3600  # --cert-ttl: a day
    with control.client(**join) as c:
        etag = c.get("/v1/snapshot").json()["etag"]
    with control.client(**control.admin) as c:
        r = c.post("/v1/chaos/certificates", json={"service": "orders", "ttl": 3})
        assert r.status_code == 200, r.text
        fault = r.json()
        assert fault == {
            "service": "orders",
            "ttl": 3.0,
            "block_renewal": False,
            "since": pytest.approx(time.time(), abs=5),
        }
        r = c.post("/v1/chaos/certificates", json={"service": "payments", "ttl": 5.5})
        assert r.status_code == 200, r.text
        listed = c.get("/v1/chaos/certificates").json()["faults"]
        assert [(f["service"], f["ttl"]) for f in listed] == [("orders", 3.0), ("payments", 5.5)]
    # the sidecars of orders are told to renew: the snapshot's etag and token changed
    with control.client(**join) as c:
        snapshot = c.get("/v1/snapshot", params={"known": etag, "wait": "5"}).json()
    assert snapshot["etag"] != etag
    token = snapshot["renew"]["orders"]
    # short-lived, and not blocked: every renewal is short too
    assert 2.0 <= lifetime(sign(key)) <= 4.0
    assert 2.0 <= lifetime(sign(key)) <= 4.0
    # blocked: one short certificate per sidecar key, then 503 saying why
    with control.client(**control.admin) as c:
        r = c.post(
            "/v1/chaos/certificates", json={"service": "orders", "ttl": 3, "block_renewal": True}
        )
        assert r.json()["block_renewal"] is True
    assert 2.0 <= lifetime(sign(key)) <= 4.0
    refused = sign(key)
    assert refused.status_code == 503
    assert "blocked by a chaos fault" in refused.json()["error"]
    assert "DELETE /v1/chaos/certificates/orders" in refused.json()["error"]
    assert 2.0 <= lifetime(sign(other)) <= 4.0  # another sidecar of orders gets its one
    assert sign(other).status_code == 503
    # a bad CSR is still a bad CSR (422), and does not use up a key's certificate
    with control.client(**join) as c:
        bad = c.post("/v1/certificates", json={"csr": "-----BEGIN CERTIFICATE REQUEST-----x"})
        assert bad.status_code == 422
    # lifted: the normal lifetime, signing allowed, and a new token; idempotent
    with control.client(**control.admin) as c:
        r = c.delete("/v1/chaos/certificates/orders")
        assert r.status_code == 200
        assert r.json()["lifted"]["block_renewal"] is True
        again = c.delete("/v1/chaos/certificates/orders")
        assert again.status_code == 200
        assert again.json() == {"service": "orders", "lifted": None}
        assert c.delete("/v1/chaos/certificates/Not_A_Name").status_code == 422
        listed = c.get("/v1/chaos/certificates").json()["faults"]
        assert [f["service"] for f in listed] == ["payments"]
    assert lifetime(sign(key)) > 23 * 3600
    with control.client(**join) as c:
        assert c.get("/v1/snapshot").json()["renew"]["orders"] not in (token, None)


@pytest.mark.anyio
async def test_the_client_helpers(control: InProcessControl) -> None:
    token = control.tokens.admin
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        fault = await force_cert_expiry(http, control.url, token, "orders", 3, True)
        assert fault["service"] == "orders"
        assert fault["block_renewal"] is True
        assert await cert_faults(http, control.url, token) == [fault]
        await lift_cert_expiry(http, control.url, token, "orders")
        await lift_cert_expiry(http, control.url, token, "orders")  # idempotent
        assert await cert_faults(http, control.url, token) == []
        with pytest.raises(RuntimeError, match="404: body.service: no service 'nope'"):
            await force_cert_expiry(http, control.url, token, "nope", 3, False)
        with pytest.raises(RuntimeError, match="422: body.ttl"):
            await force_cert_expiry(http, control.url, token, "orders", 0, False)
        with pytest.raises(RuntimeError, match="401: needs the admin token"):
            await cert_faults(http, control.url, "wrong")
        with pytest.raises(RuntimeError, match="ConnectError"):
            await cert_faults(http, "http://127.0.0.1:9", token)


# ------------------------------------------------------------------ end to end


def _bounded(predicate: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``predicate`` every ``every`` s until it returns something truthy (returned);
    fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class TwoSidecars:
    """A real control plane; ``api`` -> ``backend`` (strict mTLS), each behind a real
    sidecar started with ``--control``; the backend a scripted upstream."""

    def __init__(self, tmp: Path) -> None:
        self.ports = allocate()
        self.loop = BackendLoop()
        self.upstream = self.loop.backend("b1", Ok(b"v1"))
        # no outlier ejection: the one callee must come back as soon as it can; idle
        # pooled connections live 1 s, so a handshake happens soon after a pause
        self.doc = mesh_doc(self.ports, self.upstream.port, outlier={"enabled": False})
        self.doc["limits"]["idle_timeout"] = "1s"
        self.control = ControlProcess(tmp / "control")
        self.admin = {"authorization": f"Bearer {self.control.admin_token}"}
        self.http = httpx.Client(base_url=self.control.url, trust_env=False, timeout=10)
        r = self.http.put("/v1/config", content=yaml.safe_dump(self.doc), headers=self.admin)
        assert r.status_code == 200, r.text
        p = self.ports
        self.callee = ManagedSidecar(
            "backend", self.control.url, self.token("backend"), tmp / "b1", p["b_admin"],
            ["--subset", "v1"],
        )  # fmt: skip
        self.caller = ManagedSidecar(
            "api", self.control.url, self.token("api"), tmp / "api", p["api_admin"]
        )
        for s in (self.callee, self.caller):
            s.start(wait=False)
        for s in (self.callee, self.caller):
            s.wait_ready()
        _bounded(lambda: self.caller.endpoints("backend"), 10, "the callee registered")

    def token(self, service: str) -> str:
        r = self.http.post("/v1/join-tokens", json={"service": service}, headers=self.admin)
        return str(r.json()["token"])

    def callee_status(self) -> dict[str, Any] | None:
        rows = self.http.get("/v1/status").json()["sidecars"]
        found = [s for s in rows if s["service"] == "backend" and s["certificate_serial"]]
        return found[0] if found else None

    def chaos(self, method: str, path: str = "", **body: Any) -> httpx.Response:
        r = self.http.request(
            method, f"/v1/chaos/certificates{path}", json=body or None, headers=self.admin
        )
        assert r.status_code == 200, r.text
        return r

    def call(self) -> httpx.Response:
        """One request caller -> callee, on a new downstream connection."""
        return httpx.get(
            f"http://127.0.0.1:{self.ports['api_up']}/work", trust_env=False, timeout=5
        )

    def close(self) -> None:
        for s in (self.caller, self.callee):
            s.send()
        for s in (self.caller, self.callee):
            s.wait_stopped()
        self.http.close()
        self.control.stop()
        self.loop.close()


def test_forced_expiry_end_to_end(tmp_path: Path) -> None:
    m = TwoSidecars(tmp_path)
    try:
        _end_to_end(m)
    except BaseException:
        print("--- callee\n" + m.callee.text()[-4000:])
        print("--- caller\n" + m.caller.text()[-4000:])
        print("--- control\n" + m.control.log.read_text(errors="replace")[-4000:])
        raise
    finally:
        m.close()


def _new_serial(m: TwoSidecars, old: set[str]) -> dict[str, Any] | None:
    status = m.callee_status()
    return status if status is not None and status["certificate_serial"] not in old else None


def _end_to_end(m: TwoSidecars) -> None:
    first = _bounded(m.callee_status, 10, "the callee's first report")
    assert first["certificate_expires"] > time.time() + 3600
    assert m.call().status_code == 200
    seen = {first["certificate_serial"]}

    # 1. a 2 s lifetime, renewals allowed: renewed at once, then again and again,
    #    while requests (on the pooled connection) keep succeeding
    forced = time.monotonic()
    m.chaos("POST", service="backend", ttl=2, block_renewal=False)
    short = _bounded(lambda: _new_serial(m, seen), 6, "a renewal at once")
    assert time.monotonic() - forced < 6
    assert 0 < short["certificate_expires"] - time.time() <= 3.2  # 2 s, X.509 whole seconds
    seen.add(short["certificate_serial"])
    statuses = []
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:  # ~6 s of requests, ~10 a second
        statuses.append(m.call().status_code)
        status = m.callee_status()
        if status is not None and status["certificate_serial"] not in seen:
            seen.add(status["certificate_serial"])
            assert status["certificate_expires"] - time.time() <= 3.2
        time.sleep(0.1)
    assert statuses.count(200) == len(statuses), statuses
    assert len(seen) >= 4, f"the callee kept renewing: {len(seen) - 2} more in 6 s"
    time.sleep(1.3)  # the pooled connection idles out: a new handshake, a short certificate
    assert m.call().status_code == 200

    # 2. renewals blocked: the one short certificate, then no more; once it expired and
    #    the pooled connection idled out, the caller's handshake fails: 503
    m.chaos("POST", service="backend", ttl=2, block_renewal=True)
    _bounded(lambda: _new_serial(m, seen), 6, "the one certificate under the block")
    _bounded(lambda: "blocked by a chaos fault" in m.callee.text(), 6, "a renewal refused")
    last = m.callee_status()
    assert last is not None
    seen.add(last["certificate_serial"])
    expires = float(last["certificate_expires"])
    assert expires - time.time() <= 3.2
    time.sleep(max(0.0, expires - time.time()) + 1.5)  # expired, and idle for > 1 s
    refused = m.call()
    # the caller's sidecar refused the callee's certificate: a connect failure, 503
    assert refused.status_code == 503, refused.text
    assert "TLS handshake failed" in refused.text
    assert "certificate expired" in refused.text
    still = m.callee_status()  # no renewal since: each was refused
    assert still is not None
    assert still["certificate_serial"] == last["certificate_serial"]
    assert "blocked by a chaos fault" in m.callee.text()
    listed = m.chaos("GET").json()["faults"]
    assert [(f["service"], f["ttl"], f["block_renewal"]) for f in listed] == [
        ("backend", 2.0, True)
    ]

    # 3. lifted: the callee renews for the normal lifetime, requests succeed again
    lifted = time.monotonic()
    m.chaos("DELETE", "/backend")
    _bounded(lambda: m.call().status_code == 200, 12, "requests succeed again", every=0.3)
    took = time.monotonic() - lifted
    restored = _bounded(lambda: _new_serial(m, seen), 5, "the normal certificate")
    assert restored["certificate_expires"] > time.time() + 3600
    assert m.chaos("GET").json() == {"faults": []}
    print(f"requests succeeded again {took:.1f}s after the fault was lifted")
