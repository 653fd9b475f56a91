"""The sidecar's identity: its own key, the certificate the mesh CA issued for it, its TLS contexts.

A sidecar proves who it is with an X.509 certificate whose only subject
alternative name is a SPIFFE ID, ``spiffe://<trust domain>/service/<name>``.
The private key is generated here, stored ``0600`` in the sidecar's identity
directory and never leaves it: the control plane only ever sees a certificate
signing request (:meth:`Identity.csr_pem`) and answers with a certificate,
which :meth:`Identity.install` checks and loads.

The two :class:`ssl.SSLContext` objects (server, for the inbound listener;
client, for connections to other sidecars) live as long as the identity.
Installing a renewed certificate loads it into those same contexts: every new
handshake presents the new certificate, connections already open keep theirs,
and nothing is dropped. Both contexts are TLS 1.3 only, require a peer
certificate, and trust only the mesh's CA; hostnames are not checked, because
peers are identified by the SPIFFE ID in their certificate instead.

This module imports :mod:`cryptography` (about 7 MB of memory): the sidecar
imports it only when it runs with an identity. The SPIFFE ID helpers
(:func:`spiffe_id_of`, :func:`service_of`) are defined in
:mod:`seawall.proxy.tls`, which needs them without that cost, and re-exported here.

Files in the identity directory: ``key.pem`` (``0600``), ``cert.pem`` and
``ca.pem``; each is replaced atomically (written to a temporary file, then
renamed), so a crash leaves the previous version.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .tls import service_of, spiffe_id, spiffe_id_of

__all__ = [
    "Identity",
    "as_utc",
    "IdentityError",
    "service_of",
    "spiffe_id",
    "spiffe_id_of",
]

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
CA_FILE = "ca.pem"
ALPN = ["http/1.1"]

_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a service name: a DNS label
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")


class IdentityError(ValueError):
    """A key, certificate or CA cannot be used as this sidecar's identity; the message says why."""


# --------------------------------------------------------------------------- the identity


class Identity:
    """This sidecar's key, its current certificate and the TLS contexts that use them.

    Build it with :meth:`create` (a key, no certificate yet) or :meth:`load`
    (what a previous run installed). Until :meth:`install` succeeds it has no
    certificate (:attr:`installed` is false) and cannot serve TLS.
    """

    def __init__(self, directory: Path, key: ec.EllipticCurvePrivateKey, trust_domain: str) -> None:
        if _TRUST_DOMAIN.fullmatch(trust_domain) is None:
            raise IdentityError(f"invalid trust domain {trust_domain!r}")
        self.directory = Path(directory)
        self._key = key
        self._trust_domain = trust_domain
        self._service: str | None = None
        self._cert: x509.Certificate | None = None
        self._ca_fingerprints: frozenset[bytes] = frozenset()
        self._server = _server_context()
        self._client = _client_context()

    # ------------------------------------------------------------------ construction

    @classmethod
    def create(cls, directory: Path, trust_domain: str) -> Identity:
        """An identity whose key is in ``directory``: the key already there, or a new one.

        A new key is EC P-256, written ``0600`` atomically. The directory is
        created (``0700``) if needed. Raises :class:`IdentityError` when the
        directory or an existing key cannot be used.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise IdentityError(f"{directory}: cannot create: {exc.strerror}") from None
        key_path = directory / KEY_FILE
        if not key_path.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            _write_atomic(key_path, pem, 0o600, replace=False)
        return cls(directory, _read_key(key_path), trust_domain)

    @classmethod
    def load(cls, directory: Path, *, now: dt.datetime | None = None) -> Identity | None:
        """The identity a previous run installed in ``directory``, ready to serve.

        ``None`` when there is nothing to load (no key or no certificate yet).
        Raises :class:`IdentityError` when a file is unreadable or invalid, the
        certificate does not match the key or the CA, or has expired.
        """
        directory = Path(directory)
        key_path, cert_path, ca_path = (directory / n for n in (KEY_FILE, CERT_FILE, CA_FILE))
        if not key_path.exists() or not cert_path.exists():
            return None
        key = _read_key(key_path)
        cert_pem = _read(cert_path, "certificate")
        ca_pem = _read(ca_path, "CA certificate")
        cert = _parse_cert(cert_pem, cert_path)
        found = spiffe_of_cert(cert)
        if found is None or not found.startswith("spiffe://") or "/service/" not in found:
            raise IdentityError(f"{cert_path}: no SPIFFE ID of a service in the certificate")
        trust_domain = found[len("spiffe://"):].split("/", 1)[0]
        identity = cls(directory, key, trust_domain)
        identity._service = service_of(found, trust_domain)
        try:
            identity.install(cert_pem, ca_pem, now=now)
        except IdentityError as exc:
            raise IdentityError(f"{directory}: {exc}") from None
        return identity

    # ------------------------------------------------------------------ what it is

    @property
    def trust_domain(self) -> str:
        """The SPIFFE trust domain (``shop.local``)."""
        return self._trust_domain

    @property
    def installed(self) -> bool:
        """Whether a certificate is installed (the contexts can serve)."""
        return self._cert is not None

    @property
    def certificate(self) -> x509.Certificate:
        """The installed certificate (raises :class:`IdentityError` before :meth:`install`)."""
        if self._cert is None:
            raise IdentityError("no certificate installed yet")
        return self._cert

    @property
    def service(self) -> str:
        """The service this identity names (:class:`IdentityError` before a CSR or install)."""
        if self._service is None:
            raise IdentityError("no service yet: call csr_pem(service) or install a certificate")
        return self._service

    @property
    def spiffe_id(self) -> str:
        """``spiffe://<trust domain>/service/<service>``."""
        return spiffe_id(self._trust_domain, self.service)

    @property
    def serial(self) -> int:
        """The serial number of the installed certificate."""
        return self.certificate.serial_number

    @property
    def not_before(self) -> dt.datetime:
        """When the installed certificate becomes valid (UTC)."""
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> dt.datetime:
        """When the installed certificate expires (UTC)."""
        return self.certificate.not_valid_after_utc

    @property
    def renew_at(self) -> dt.datetime:
        """When to ask for a new certificate: two thirds into the current one's lifetime."""
        start, end = self.not_before, self.not_after
        return start + (end - start) * 2 / 3

    @property
    def server_context(self) -> ssl.SSLContext:
        """For the inbound listener: TLS 1.3, a client certificate from the mesh CA required."""
        return self._server

    @property
    def client_context(self) -> ssl.SSLContext:
        """For connections to other sidecars: TLS 1.3, this certificate, the mesh CA only."""
        return self._client

    # ------------------------------------------------------------------ certificates

    def csr_pem(self, service: str) -> bytes:
        """A certificate signing request (PEM) for ``service``, signed with this identity's key.

        It asks for one name, the service's SPIFFE ID; the private key stays here.
        """
        if not isinstance(service, str) or _SERVICE.fullmatch(service) is None:
            raise IdentityError(f"invalid service name {service!r}")
        if self._service is not None and service != self._service:
            raise IdentityError(
                f"this identity is {self._service!r}; a sidecar cannot become {service!r}"
            )
        self._service = service
        san = x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(spiffe_id(self._trust_domain, service))]
        )
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(san, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        return csr.public_bytes(serialization.Encoding.PEM)

    def install(self, cert_pem: bytes, ca_pem: bytes, *, now: dt.datetime | None = None) -> None:
        """Check ``cert_pem`` against the key and ``ca_pem``, save both, and start using them.

        The certificate must be for this identity's key, signed by one of the
        CA certificates in ``ca_pem`` (a bundle is allowed, e.g. during a CA
        rotation), not expired, and name this identity's SPIFFE ID. Then
        ``cert.pem`` and ``ca.pem`` are replaced atomically and the chain is
        loaded into the same server and client contexts: new handshakes use
        the new certificate, open connections keep theirs.

        A CA bundle that adds certificates is loaded into the same contexts
        too. One that drops a CA the contexts trusted cannot be (OpenSSL never
        forgets a trusted certificate), so fresh contexts are built instead;
        callers read :attr:`server_context` and :attr:`client_context` for
        each new connection, which then uses them.

        Raises :class:`IdentityError` and changes nothing when a check fails.
        """
        when = as_utc(now)
        cert = _parse_cert(cert_pem, None)
        cas = _parse_cas(ca_pem)
        mine = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        theirs = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if mine != theirs:
            raise IdentityError("the certificate is for another key than this identity's")
        if not any(_issued_by(cert, ca) for ca in cas):
            raise IdentityError("the certificate is not signed by the given CA")
        if cert.not_valid_after_utc <= when:
            expired = cert.not_valid_after_utc
            raise IdentityError(f"the certificate expired at {expired:%Y-%m-%dT%H:%M:%SZ}")
        found = spiffe_of_cert(cert)
        service = service_of(found, self._trust_domain)
        if service is None:
            raise IdentityError(
                f"the certificate names {found or 'no SPIFFE ID'}, not a service of trust "
                f"domain {self._trust_domain!r}"
            )
        if self._service is not None and service != self._service:
            raise IdentityError(f"the certificate is for {service!r}, not {self._service!r}")
        ca_bundle = b"".join(ca.public_bytes(serialization.Encoding.PEM) for ca in cas)
        fingerprints = frozenset(ca.fingerprint(hashes.SHA256()) for ca in cas)
        cert_path, ca_path, key_path = (
            self.directory / n for n in (CERT_FILE, CA_FILE, KEY_FILE)
        )
        _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write_atomic(ca_path, ca_bundle, 0o644)
        if fingerprints >= self._ca_fingerprints:
            server, client = self._server, self._client  # the same contexts: nothing dropped
        else:  # a CA was dropped, and contexts only ever add trust: start from new ones
            server, client = _server_context(), _client_context()
        try:
            for context in (server, client):
                if fingerprints != self._ca_fingerprints:
                    context.load_verify_locations(cadata=ca_bundle.decode("ascii"))
                context.load_cert_chain(cert_path, key_path)
        except (ssl.SSLError, OSError) as exc:
            raise IdentityError(f"TLS cannot use the certificate: {exc}") from None
        self._server, self._client = server, client
        self._cert = cert
        self._service = service
        self._ca_fingerprints = fingerprints

    def __repr__(self) -> str:
        name = self._service or "?"
        cert = self._cert
        state = f"serial {cert.serial_number:x}" if cert is not None else "no certificate"
        return f"<Identity {spiffe_id(self._trust_domain, name)} ({state})>"


# --------------------------------------------------------------------------- helpers


def spiffe_of_cert(cert: x509.Certificate) -> str | None:
    """The SPIFFE ID of a parsed certificate: its one ``spiffe://`` URI SAN, else ``None``."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1 or not uris[0].startswith("spiffe://"):
        return None
    return uris[0]


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0  # no session resumption: every connection shows its certificate
    ctx.set_alpn_protocols(ALPN)
    return ctx


def _client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # the peer's SPIFFE ID is checked instead
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(ALPN)
    return ctx


def as_utc(now: dt.datetime | None) -> dt.datetime:
    """``now`` as an aware UTC-based time (naive means UTC); the current time if ``None``.

    Certificates are wall-clock objects: validity is the one place seawall
    reads the wall clock, and the tests pass ``now`` to move it.
    """
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo is not None else now.replace(tzinfo=dt.UTC)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read(path, "private key")
    with contextlib.suppress(OSError):
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise IdentityError(
                f"{path}: the private key is readable by others (mode {mode:04o}): chmod 600 it"
            )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError):
        raise IdentityError(f"{path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise IdentityError(f"{path}: not an EC private key")
    return key


def _parse_cert(pem: bytes, path: Path | None) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except (TypeError, ValueError):
        where = f"{path}: " if path is not None else ""
        raise IdentityError(f"{where}not a PEM certificate") from None


def _parse_cas(pem: bytes) -> list[x509.Certificate]:
    try:
        cas = x509.load_pem_x509_certificates(pem)
    except (TypeError, ValueError):
        raise IdentityError("the CA is not PEM certificates") from None
    for ca in cas:
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise IdentityError(f"the CA bundle holds a certificate that is not a CA: {ca.subject}")
    return cas


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):  # a bad signature, another issuer name
        return False
    return True


def _write_atomic(path: Path, data: bytes, mode: int, *, replace: bool = True) -> None:
    """Write ``path`` through a temporary file: renamed over it, or linked (``replace=False``)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
