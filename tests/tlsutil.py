"""Certificates and mTLS clients for the tests of the CA, identities and the sidecar's mTLS.

Everything here is real: a :class:`~seawall.control.ca.CertificateAuthority`
in a temporary directory, identities it issues, and, for the refusal tests,
certificates it would never issue (another CA, expired, a foreign SAN) signed
with its key by hand. :class:`ClientCert` is a set of PEM files a test client
(``openssl s_client``, httpx, a raw ``ssl`` socket) presents.

:class:`SidecarThread` runs in-process sidecars on a uvloop event loop in a
background thread, the way the sidecar process itself runs them, so that a test
can hand one an :class:`~seawall.proxy.identity.Identity` and install a new
certificate into it while it serves (no CLI flag, no control plane).

Test modules import this file with ``tests/`` put on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from seawall.config import load_mesh
from seawall.control.ca import CertificateAuthority
from seawall.proxy.core import CoreSidecar
from seawall.proxy.identity import Identity

T = TypeVar("T")

UTC = dt.UTC


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


def make_ca(directory: Path, trust_domain: str = "t.local") -> CertificateAuthority:
    return CertificateAuthority.load_or_create(directory, trust_domain)


def make_identity(ca: CertificateAuthority, directory: Path, service: str) -> Identity:
    """A sidecar identity with a fresh certificate for ``service`` from ``ca``."""
    identity = Identity.create(directory, ca.trust_domain)
    identity.install(ca.issue(identity.csr_pem(service), service), ca.ca_pem)
    return identity


def renew(ca: CertificateAuthority, identity: Identity) -> bytes:
    """A new certificate for ``identity`` (same key), not installed yet."""
    return ca.issue(identity.csr_pem(identity.service), identity.service)


def ca_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The CA's private key, read from its state directory (to forge certificates)."""
    key = serialization.load_pem_private_key((ca_dir / "ca-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def forge(
    ca: CertificateAuthority,
    ca_dir: Path,
    public_key: ec.EllipticCurvePublicKey,
    *,
    uris: Sequence[str] = (),
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> bytes:
    """A leaf signed with the CA's key with any URI SANs (none: no SAN extension at all)."""
    now = utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "forged")]))
        .issuer_name(ca.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=1))
        .not_valid_after(not_after or now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    cert = builder.sign(ca_key(ca_dir), hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- clients


@dataclass
class ClientCert:
    """PEM files a test client presents: ``cert`` and ``key`` may be absent (no client cert)."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def context(self) -> ssl.SSLContext:
        """A TLS 1.3 client context trusting ``ca``, with this certificate (if any)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.check_hostname = False  # sidecars have SPIFFE IDs, not host names
        ctx.load_verify_locations(cafile=str(self.ca))
        if self.cert is not None and self.key is not None:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def client_from_identity(identity: Identity) -> ClientCert:
    d = identity.directory
    return ClientCert(ca=d / "ca.pem", cert=d / "cert.pem", key=d / "key.pem")


def client_files(directory: Path, key: ec.EllipticCurvePrivateKey, cert_pem: bytes,
                 ca_pem: bytes) -> ClientCert:
    """Write a key, a certificate (any: expired, forged...) and a CA for a client."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "cert.pem").write_bytes(cert_pem)
    (directory / "ca.pem").write_bytes(ca_pem)
    return ClientCert(directory / "ca.pem", directory / "cert.pem", directory / "key.pem")


def csr_for(key: ec.EllipticCurvePrivateKey, uri: str | None = None) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if uri is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def s_client(port: int, client: ClientCert, request: bytes, timeout: float = 10.0) -> str:
    """``openssl s_client`` to 127.0.0.1:port with ``request`` on stdin; stdout + stderr."""
    argv = [
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_3",
        "-CAfile", str(client.ca), "-ign_eof", "-verify_return_error",
    ]  # fmt: skip
    if client.cert is not None and client.key is not None:
        argv += ["-cert", str(client.cert), "-key", str(client.key)]
    done = subprocess.run(
        argv, input=request, capture_output=True, timeout=timeout, check=False
    )
    return done.stdout.decode("latin-1") + "\n" + done.stderr.decode("latin-1")


def tls_request(
    port: int, client: ClientCert, request: bytes, timeout: float = 5.0
) -> tuple[dict[str, Any], bytes]:
    """A raw mTLS connection: (the server's certificate as ``getpeercert`` gives it, the answer).

    The request should say ``Connection: close``; the answer is everything
    read until the server closes.
    """
    ctx = client.context()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, ctx.wrap_socket(
        raw
    ) as tls:
        cert = tls.getpeercert()
        tls.sendall(request)
        chunks = []
        while True:
            data = tls.recv(65536)
            if not data:
                break
            chunks.append(data)
    assert cert is not None
    return cert, b"".join(chunks)


def serial_of(peercert: dict[str, Any]) -> int:
    return int(peercert["serialNumber"], 16)


# --------------------------------------------------------------------------- sidecars


class SidecarThread:
    """In-process sidecars on the Rust core, plus an event loop thread for test coroutines."""

    def __init__(self, *, use_uvloop: bool = True) -> None:
        self.loop = uvloop.new_event_loop() if use_uvloop else asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sidecars: list[CoreSidecar] = []

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn(*args)``."""
        return fn(*args)

    def start(self, config: Path, service: str, identity: Identity | None) -> CoreSidecar:
        """Start a sidecar core, as ``seawall sidecar`` would (mTLS when given an identity)."""
        directory = identity.directory if identity is not None else None
        sidecar = CoreSidecar(load_mesh(config), service, identity=directory)
        self.sidecars.append(sidecar)
        return sidecar

    @staticmethod
    def rotate(sidecar: CoreSidecar, identity: Identity, cert_pem: bytes, ca_pem: bytes) -> None:
        """Install a renewed certificate and rotate it into the live listeners."""
        identity.install(cert_pem, ca_pem)
        sidecar.set_identity(identity.directory)

    def close(self) -> None:
        try:
            for sidecar in self.sidecars:
                sidecar.core.drain(0.2)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()
