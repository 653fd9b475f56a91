"""The mesh CA: created once, reloaded the same, issuing SPIFFE leaves that openssl accepts.

The chain and the SAN are checked with the ``openssl`` command line, not with
the library that made them.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tlsutil
from seawall.control.ca import CAError, CertificateAuthority  # noqa: E402
from tlsutil import csr_for, utcnow  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TD = "shop.local"


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ca(ca_dir: Path) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(ca_dir, TD)


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, timeout=10, check=False
    )


def leaf(ca: CertificateAuthority, tmp: Path, service: str = "orders", **kw: object) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp / f"{service}.pem"
    path.write_bytes(ca.issue(csr_for(key), service, **kw))  # type: ignore[arg-type]
    return path


# --------------------------------------------------------------------------- creation


def test_creates_a_root_with_a_private_key_file(ca: CertificateAuthority, ca_dir: Path) -> None:
    assert (ca_dir / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert ca.ca_pem == (ca_dir / "ca.pem").read_bytes()
    text = openssl("x509", "-in", ca_dir / "ca.pem", "-text", "-noout").stdout
    assert "CA:TRUE" in text
    assert "Certificate Sign, CRL Sign" in text
    assert "ASN1 OID: prime256v1" in text
    cert = ca.certificate
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=3600)
    assert not [p for p in ca_dir.iterdir() if p.name.endswith(".tmp")]


def test_reloading_gives_the_same_ca(ca: CertificateAuthority, ca_dir: Path) -> None:
    again = CertificateAuthority.load_or_create(ca_dir, TD)
    assert again.ca_pem == ca.ca_pem
    # ... and what it issues chains to the first one's certificate
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(again.issue(csr_for(key), "orders"))
    cert.verify_directly_issued_by(ca.certificate)


def test_concurrent_creation_ends_with_one_ca(tmp_path: Path) -> None:
    state = tmp_path / "state"
    code = (
        "import sys, pathlib\n"
        "from seawall.control.ca import CertificateAuthority\n"
        f"ca = CertificateAuthority.load_or_create(pathlib.Path({str(state)!r}), {TD!r})\n"
        "sys.stdout.write(ca.ca_pem.decode())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=30)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outputs)) == 1
    assert outputs[0] == (state / "ca.pem").read_bytes()
    assert sorted(p.name for p in state.iterdir()) == [".ca.lock", "ca-key.pem", "ca.pem"]


def test_a_key_left_without_its_certificate_is_completed(ca_dir: Path) -> None:
    ca_dir.mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )  # fmt: skip
    (ca_dir / "ca-key.pem").write_bytes(pem)
    ca = CertificateAuthority.load_or_create(ca_dir, TD)
    public = ca.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()


# --------------------------------------------------------------------------- bad files


def test_a_certificate_without_its_key_is_an_error(ca: CertificateAuthority, ca_dir: Path) -> None:
    (ca_dir / "ca-key.pem").unlink()
    with pytest.raises(CAError, match="ca-key.pem does not"):
        CertificateAuthority.load_or_create(ca_dir, TD)


def test_given_files_are_loaded(ca: CertificateAuthority, ca_dir: Path, tmp_path: Path) -> None:
    loaded = CertificateAuthority.load_or_create(
        tmp_path / "unused", TD, cert_file=ca_dir / "ca.pem", key_file=ca_dir / "ca-key.pem"
    )
    assert loaded.ca_pem == ca.ca_pem
    assert not (tmp_path / "unused").exists()


def _bad(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bad_files_are_clear_errors(ca: CertificateAuthority, ca_dir: Path, tmp_path: Path) -> None:
    cert, key = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    other = CertificateAuthority.load_or_create(tmp_path / "other", TD)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_pem = ca.issue(csr_for(leaf_key), "orders")
    encrypted = leaf_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )  # fmt: skip
    cases = [
        (tmp_path / "missing.pem", key, "missing.pem: cannot read the CA certificate"),
        (_bad(tmp_path, "junk.pem", b"junk"), key, "junk.pem: not a PEM certificate"),
        (_bad(tmp_path, "leaf.pem", leaf_pem), key, "leaf.pem: not a CA certificate"),
        (tmp_path / "other" / "ca.pem", key, "ca-key.pem: the key does not match"),
        (cert, _bad(tmp_path, "nokey.pem", b"junk"), "nokey.pem: not a PEM private key"),
        (cert, _bad(tmp_path, "enc.pem", encrypted), "enc.pem: the CA key is encrypted"),
        (cert, tmp_path / "absent-key.pem", "absent-key.pem: cannot read the CA key"),
    ]
    for cert_file, key_file, message in cases:
        with pytest.raises(CAError, match=message):
            CertificateAuthority.load_or_create(
                tmp_path, TD, cert_file=cert_file, key_file=key_file
            )
    with pytest.raises(CAError, match="invalid trust domain 'Shop'"):
        CertificateAuthority.load_or_create(tmp_path / "td", "Shop")
    assert not (tmp_path / "td").exists()
    with pytest.raises(CAError, match="both cert_file and key_file"):
        CertificateAuthority.load_or_create(tmp_path, TD, cert_file=cert)
    assert other.ca_pem != ca.ca_pem


# --------------------------------------------------------------------------- issuing


def test_leaf_chains_to_the_root_and_names_only_the_spiffe_id(
    ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    path = leaf(ca, tmp_path)
    verified = openssl("verify", "-CAfile", ca_dir / "ca.pem", path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip().endswith(": OK")
    text = openssl("x509", "-in", path, "-text", "-noout").stdout
    san = text.split("X509v3 Subject Alternative Name: critical", 1)[1].splitlines()[1].strip()
    assert san == f"URI:spiffe://{TD}/service/orders"
    assert "CA:FALSE" in text
    assert "Digital Signature" in text
    assert "Key Encipherment" not in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    # the only SAN, by the library too
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [n.value for n in names] == [f"spiffe://{TD}/service/orders"]
    assert ca.spiffe_id("orders") == f"spiffe://{TD}/service/orders"


def test_validity_is_now_minus_skew_to_now_plus_ttl(ca: CertificateAuthority) -> None:
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(ca.issue(csr_for(key), "orders", ttl=600, now=now))
    assert cert.not_valid_before_utc == now - dt.timedelta(minutes=1)
    assert cert.not_valid_after_utc == now + dt.timedelta(seconds=600)
    serials = {
        x509.load_pem_x509_certificate(ca.issue(csr_for(key), "orders")).serial_number
        for _ in range(5)
    }
    assert len(serials) == 5


def test_expired_leaf_fails_openssl_verify(
    ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    path = leaf(ca, tmp_path, ttl=60, now=utcnow() - dt.timedelta(hours=1))
    verified = openssl("verify", "-CAfile", ca_dir / "ca.pem", path)
    assert verified.returncode != 0
    assert "expired" in verified.stdout + verified.stderr


def test_rsa_leaf_gets_key_encipherment(ca: CertificateAuthority, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        key, hashes.SHA256()
    )
    pem = ca.issue(csr.public_bytes(serialization.Encoding.PEM), "orders")
    usage = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.value.digital_signature
    assert usage.value.key_encipherment


def test_one_root_serves_whichever_trust_domain_the_mesh_names(
    ca: CertificateAuthority, ca_dir: Path, tmp_path: Path
) -> None:
    """The control plane creates the root before any config names a trust domain."""
    other = CertificateAuthority.load_or_create(ca_dir, "other.local")
    assert other.ca_pem == ca.ca_pem
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "other.pem"
    path.write_bytes(other.issue(csr_for(key), "orders"))
    assert openssl("verify", "-CAfile", ca_dir / "ca.pem", path).returncode == 0
    assert "URI:spiffe://other.local/service/orders" in openssl(
        "x509", "-in", path, "-text", "-noout"
    ).stdout


def test_tampered_csr_is_refused(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(csr_for(key, f"spiffe://{TD}/service/orders"))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    at = der.index(b"orders")
    der[at : at + 6] = b"admins"  # same length: still parses, the signature no longer holds
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CAError, match="signature does not verify"):
        ca.issue(tampered, "admins")
    with pytest.raises(CAError, match="not a PEM certificate signing request"):
        ca.issue(b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                 "orders")


def test_a_csr_asking_for_another_name_is_refused(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    for uri in (f"spiffe://{TD}/service/payments", "spiffe://other.local/service/orders"):
        with pytest.raises(ValueError, match="may only have spiffe://shop.local/service/orders"):
            ca.issue(csr_for(key, uri), "orders")
    dns = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("orders")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CAError, match="DNSName 'orders'"):
        ca.issue(dns, "orders")
    # the exact SPIFFE ID, or no SAN at all, is fine
    ca.issue(csr_for(key, f"spiffe://{TD}/service/orders"), "orders")
    ca.issue(csr_for(key), "orders")


def test_bad_requests_are_refused(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak_csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(
        weak, hashes.SHA256()
    )
    with pytest.raises(CAError, match="too weak"):
        ca.issue(weak_csr.public_bytes(serialization.Encoding.PEM), "orders")
    with pytest.raises(CAError, match="invalid service name 'Orders'"):
        ca.issue(csr_for(key), "Orders")
    with pytest.raises(CAError, match="ttl must be > 0"):
        ca.issue(csr_for(key), "orders", ttl=0)


def test_leaf_lifetime_stops_at_the_ca_expiry(ca_dir: Path) -> None:
    start = utcnow() - dt.timedelta(days=3649)
    ca = CertificateAuthority.load_or_create(ca_dir, TD, now=start)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = x509.load_pem_x509_certificate(ca.issue(csr_for(key), "orders", ttl=30 * 86400))
    assert cert.not_valid_after_utc == ca.certificate.not_valid_after_utc
