"""A sidecar's identity: its key stays home, certificates are checked, installed and persisted.

Certificates come from the real CA (:mod:`seawall.control.ca`); handshakes
are real TLS over socket pairs.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tlsutil
from seawall.control.ca import CertificateAuthority  # noqa: E402
from seawall.proxy.identity import (  # noqa: E402
    Identity,
    IdentityError,
    service_of,
    spiffe_id_of,
)
from tlsutil import forge, make_ca, make_identity, renew, utcnow  # noqa: E402


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return make_ca(tmp_path / "ca")


def handshake(server: Identity, client: Identity) -> tuple[dict, dict, str]:  # type: ignore[type-arg]
    """A TLS handshake of the identities' contexts: (server's peer, client's peer, version)."""
    a, b = socket.socketpair()
    out: dict[str, object] = {}

    def serve() -> None:
        try:
            with server.server_context.wrap_socket(a, server_side=True) as tls:
                out["server_peer"] = tls.getpeercert()
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:  # the client refused us: its side raises too
            out["server_error"] = exc

    thread = threading.Thread(target=serve)
    thread.start()
    with client.client_context.wrap_socket(b) as tls:
        peer = tls.getpeercert()
        version = tls.version()
        tls.sendall(b"x")
    thread.join(5)
    assert peer is not None
    assert version is not None
    return out["server_peer"], peer, version  # type: ignore[return-value]


def test_create_keeps_the_key_private_and_sends_only_a_csr(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    identity = Identity.create(tmp_path / "id", "t.local")
    key_file = tmp_path / "id" / "key.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "id").stat().st_mode & 0o777 == 0o700
    assert not identity.installed
    csr_pem = identity.csr_pem("orders")
    assert b"PRIVATE" not in csr_pem
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in san] == ["spiffe://t.local/service/orders"]
    # the same directory, the same key
    again = Identity.create(tmp_path / "id", "t.local")
    assert again.csr_pem("orders") != csr_pem  # (ECDSA signatures differ) ...
    assert x509.load_pem_x509_csr(again.csr_pem("orders")).public_key() == csr.public_key()


def test_install_then_mutual_tls_with_spiffe_ids(ca: CertificateAuthority, tmp_path: Path) -> None:
    orders = make_identity(ca, tmp_path / "orders", "orders")
    payments = make_identity(ca, tmp_path / "payments", "payments")
    assert orders.spiffe_id == "spiffe://t.local/service/orders"
    assert (orders.service, orders.trust_domain) == ("orders", "t.local")
    server_peer, client_peer, version = handshake(payments, orders)
    assert version == "TLSv1.3"
    assert spiffe_id_of(server_peer) == "spiffe://t.local/service/orders"
    assert spiffe_id_of(client_peer) == "spiffe://t.local/service/payments"
    assert int(client_peer["serialNumber"], 16) == payments.serial
    assert not payments.client_context.check_hostname
    assert payments.server_context.verify_mode == ssl.CERT_REQUIRED
    assert payments.server_context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_lifetime_and_renewal_time(ca: CertificateAuthority, tmp_path: Path) -> None:
    identity = Identity.create(tmp_path / "id", "t.local")
    now = utcnow()
    identity.install(ca.issue(identity.csr_pem("orders"), "orders", ttl=3000, now=now), ca.ca_pem)
    assert identity.not_before == (now - dt.timedelta(minutes=1)).replace(microsecond=0)
    # X.509 times are whole seconds: the end is rounded up, so it lives at least its ttl
    end = now + dt.timedelta(seconds=3000)
    rounded = end.replace(microsecond=0) + dt.timedelta(seconds=1 if end.microsecond else 0)
    assert identity.not_after == rounded
    lifetime = identity.not_after - identity.not_before
    assert identity.renew_at == identity.not_before + lifetime * 2 / 3


def test_rotation_reloads_the_same_contexts(ca: CertificateAuthority, tmp_path: Path) -> None:
    orders = make_identity(ca, tmp_path / "orders", "orders")
    payments = make_identity(ca, tmp_path / "payments", "payments")
    server, client = payments.server_context, payments.client_context
    first = payments.serial
    payments.install(renew(ca, payments), ca.ca_pem)
    assert payments.serial != first
    assert payments.server_context is server
    assert payments.client_context is client
    _, peer, _ = handshake(payments, orders)
    assert int(peer["serialNumber"], 16) == payments.serial
    # persisted: a restart finds the new certificate
    loaded = Identity.load(tmp_path / "payments")
    assert loaded is not None
    assert loaded.serial == payments.serial


def test_a_new_ca_bundle_is_trusted_and_a_dropped_ca_is_forgotten(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    new_ca = make_ca(tmp_path / "new-ca")
    orders = make_identity(ca, tmp_path / "orders", "orders")
    payments = make_identity(ca, tmp_path / "payments", "payments")
    newcomer = make_identity(new_ca, tmp_path / "newcomer", "orders")
    newcomer.install(renew(new_ca, newcomer), ca.ca_pem + new_ca.ca_pem)
    server = payments.server_context
    # rotation of the CA, step 1: trust both
    payments.install(renew(ca, payments), ca.ca_pem + new_ca.ca_pem)
    assert payments.server_context is server
    handshake(payments, newcomer)
    handshake(payments, orders)
    # step 2: certificates from the new CA only, the old one dropped: new contexts
    payments.install(renew(new_ca, payments), new_ca.ca_pem)
    assert payments.server_context is not server
    handshake(payments, newcomer)
    with pytest.raises((ssl.SSLError, OSError)):
        handshake(payments, orders)


def test_install_refuses_what_does_not_fit(ca: CertificateAuthority, tmp_path: Path) -> None:
    other_ca = make_ca(tmp_path / "other-ca")
    identity = Identity.create(tmp_path / "id", "t.local")
    csr = identity.csr_pem("orders")
    public = x509.load_pem_x509_csr(csr).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    good = ca.issue(csr, "orders")
    stranger = Identity.create(tmp_path / "stranger", "t.local")
    hand_made = tmp_path / "ca"  # signed with the CA's key by hand
    cases = [
        (ca.issue(stranger.csr_pem("orders"), "orders"), ca.ca_pem, "for another key"),
        (other_ca.issue(csr, "orders"), ca.ca_pem, "not signed by the given CA"),
        (good, other_ca.ca_pem, "not signed by the given CA"),
        (
            ca.issue(csr, "orders", ttl=60, now=utcnow() - dt.timedelta(hours=1)),
            ca.ca_pem,
            "expired",
        ),
        (
            forge(ca, hand_made, public, uris=["spiffe://t.local/service/payments"]),
            ca.ca_pem,
            "for 'payments', not 'orders'",
        ),
        (
            forge(ca, hand_made, public, uris=["spiffe://x.local/service/orders"]),
            ca.ca_pem,
            "not a service of trust domain 't.local'",
        ),
        (forge(ca, hand_made, public), ca.ca_pem, "names no SPIFFE ID"),
        (b"junk", ca.ca_pem, "not a PEM certificate"),
        (good, good, "not a CA"),
        (good, b"junk", "not PEM certificates"),
    ]
    for cert_pem, ca_pem, message in cases:
        with pytest.raises(IdentityError, match=message):
            identity.install(cert_pem, ca_pem)
        assert not identity.installed
        assert not (tmp_path / "id" / "cert.pem").exists()
    with pytest.raises(IdentityError, match="cannot become 'payments'"):
        identity.csr_pem("payments")
    identity.install(good, ca.ca_pem)
    assert identity.installed


def test_load(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "id"
    assert Identity.load(directory) is None
    identity = Identity.create(directory, "t.local")
    assert Identity.load(directory) is None  # a key, no certificate yet
    identity.install(ca.issue(identity.csr_pem("orders"), "orders"), ca.ca_pem)
    loaded = Identity.load(directory)
    assert loaded is not None
    assert (loaded.service, loaded.trust_domain) == ("orders", "t.local")
    assert loaded.serial == identity.serial
    handshake(loaded, identity)
    # expired on disk: a clear error
    with pytest.raises(IdentityError, match="expired"):
        Identity.load(directory, now=utcnow() + dt.timedelta(days=2))
    # unreadable or corrupt files
    ca_pem = (directory / "ca.pem").read_bytes()
    (directory / "ca.pem").write_bytes(b"junk")
    with pytest.raises(IdentityError, match="not PEM certificates"):
        Identity.load(directory)
    (directory / "ca.pem").unlink()
    with pytest.raises(IdentityError, match="ca.pem: cannot read the CA certificate"):
        Identity.load(directory)
    (directory / "ca.pem").write_bytes(ca_pem)
    (directory / "cert.pem").write_bytes(b"junk")
    with pytest.raises(IdentityError, match="cert.pem: not a PEM certificate"):
        Identity.load(directory)
    (directory / "key.pem").chmod(0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        Identity.load(directory)
    (directory / "key.pem").chmod(0o600)
    (directory / "key.pem").write_bytes(b"junk")
    with pytest.raises(IdentityError, match="key.pem: not an unencrypted PEM private key"):
        Identity.load(directory)


def test_spiffe_helpers() -> None:
    one = {"subjectAltName": (("URI", "spiffe://t.local/service/orders"),)}
    assert spiffe_id_of(one) == "spiffe://t.local/service/orders"
    assert spiffe_id_of({}) is None
    assert spiffe_id_of(None) is None
    assert spiffe_id_of({"subjectAltName": (("URI", "https://x/y"),)}) is None
    two = {"subjectAltName": (("URI", "spiffe://t.local/a"), ("URI", "spiffe://t.local/b"))}
    assert spiffe_id_of(two) is None  # an X509-SVID has exactly one URI SAN
    with_dns = {"subjectAltName": (("DNS", "a"), ("URI", "spiffe://t.local/service/orders"))}
    assert spiffe_id_of(with_dns) == "spiffe://t.local/service/orders"
    assert service_of("spiffe://t.local/service/orders", "t.local") == "orders"
    for bad in (
        "spiffe://t.local/service/Orders",
        "spiffe://t.local/service/a/b",
        "spiffe://t.local/service/",
        "spiffe://t.local/ns/orders",
        "spiffe://t.localx/service/orders",
        "spiffe://x.t.local/service/orders",
        None,
    ):
        assert service_of(bad, "t.local") is None, bad
