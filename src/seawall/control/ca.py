"""The mesh's certificate authority: one self-signed root that issues sidecar identities.

Each sidecar generates its own key and sends a certificate signing request
(CSR); the CA answers with a short-lived leaf certificate whose only subject
alternative name is the service's SPIFFE ID,
``spiffe://<trust domain>/service/<name>``. The CA never sees a sidecar's
private key.

The root is created on the control plane's first start under its state
directory (``ca.pem`` and ``ca-key.pem``, the key ``0600``) and loaded on every
later start, or it is given as a pair of files (an organisation's own
intermediate, say). Creation is safe when two control-plane processes start at
once: an exclusive ``flock`` elects one creator, files are written to a
temporary name and *linked* into place (never replacing an existing file), and
the other process loads what the first one wrote.

The root is not tied to a trust domain (no name constraint, no SPIFFE ID of
its own): the control plane may create it before any mesh config names one,
and ``trust_domain`` only decides the SPIFFE IDs it issues. Sidecars accept
only peers whose SPIFFE ID is a service of their own trust domain.

>>> import tempfile, pathlib
>>> from cryptography import x509
>>> from cryptography.hazmat.primitives import hashes
>>> from cryptography.hazmat.primitives.asymmetric import ec
>>> from cryptography.hazmat.primitives.serialization import Encoding
>>> ca = CertificateAuthority.load_or_create(pathlib.Path(tempfile.mkdtemp()), "shop.local")
>>> key = ec.generate_private_key(ec.SECP256R1())
>>> csr = x509.CertificateSigningRequestBuilder(x509.Name([])).sign(key, hashes.SHA256())
>>> leaf = x509.load_pem_x509_certificate(ca.issue(csr.public_bytes(Encoding.PEM), "orders"))
>>> leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
<SubjectAlternativeName(<GeneralNames([<UniformResourceIdentifier(value='spiffe://shop.local/service/orders')>])>)>
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..proxy.identity import as_utc

__all__ = ["CAError", "CertificateAuthority", "ForeignNameError", "csr_key_id"]

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CA_VALIDITY = dt.timedelta(days=3650)
"""Ten years: the root is long-lived, the leaves it signs are not (24 h by default)."""
CLOCK_SKEW = dt.timedelta(minutes=1)
"""Certificates start this much before "now": a peer whose clock is a little behind accepts them."""
MAX_TTL = 366 * 86_400.0
"""The longest leaf lifetime :meth:`CertificateAuthority.issue` grants (seconds)."""

_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")

SigningKey: TypeAlias = (
    ec.EllipticCurvePrivateKey
    | rsa.RSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
"""The kinds of CA key that can sign certificates here."""


class CAError(ValueError):
    """The CA cannot be loaded or created, or refuses a signing request; the message says why."""


class ForeignNameError(CAError):
    """A signing request asks for a name its service may not have (another service's)."""


def _hash_for(key: SigningKey) -> hashes.SHA256 | None:
    """Ed25519 and Ed448 sign the message itself; EC and RSA sign its SHA-256 digest."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return None
    return hashes.SHA256()


class CertificateAuthority:
    """The mesh's root of trust: signs each sidecar's CSR with the service's SPIFFE ID.

    Build it with :meth:`load_or_create`. ``issue`` is synchronous and pure
    CPU (about a millisecond for P-256).
    """

    def __init__(self, certificate: x509.Certificate, key: SigningKey, trust_domain: str) -> None:
        if _TRUST_DOMAIN.fullmatch(trust_domain) is None:
            raise CAError(
                f"invalid trust domain {trust_domain!r}: "
                "lower-case letters, digits, '.', '-' and '_'"
            )
        self._cert = certificate
        self._key = key
        self._trust_domain = trust_domain
        self._ca_pem = certificate.public_bytes(serialization.Encoding.PEM)
        try:
            ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            self._aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())

    # ------------------------------------------------------------------ loading

    @classmethod
    def load_or_create(
        cls,
        state_dir: Path,
        trust_domain: str,
        *,
        cert_file: Path | None = None,
        key_file: Path | None = None,
        now: dt.datetime | None = None,
    ) -> CertificateAuthority:
        """The CA: from ``cert_file`` and ``key_file`` when given, else from ``state_dir``.

        In ``state_dir``, ``ca.pem`` and ``ca-key.pem`` are loaded, or created
        (EC P-256, valid 10 years) when neither exists. Raises :class:`CAError`
        naming the file when a file cannot be read, is not a CA certificate, or
        does not match its key; or when only one of the two files exists.
        """
        if _TRUST_DOMAIN.fullmatch(trust_domain) is None:
            raise CAError(
                f"invalid trust domain {trust_domain!r}: "
                "lower-case letters, digits, '.', '-' and '_'"
            )
        if (cert_file is None) != (key_file is None):
            raise CAError("give both cert_file and key_file, or neither")
        if cert_file is not None and key_file is not None:
            return cls._load(Path(cert_file), Path(key_file), trust_domain)
        state_dir = Path(state_dir)
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise CAError(f"{state_dir}: cannot create the state directory: {exc}") from None
        cert_path, key_path = state_dir / CA_CERT, state_dir / CA_KEY
        with _exclusive(state_dir / ".ca.lock"):
            if cert_path.exists():
                if not key_path.exists():
                    raise CAError(
                        f"{cert_path} exists but {key_path} does not: restore the key, "
                        "or remove both files to create a new CA (every sidecar then "
                        "needs a new certificate)"
                    )
                return cls._load(cert_path, key_path, trust_domain)
            if key_path.exists():  # a creator stopped between the two files: finish its work
                key = _read_key(key_path)
            else:
                key = ec.generate_private_key(ec.SECP256R1())
                _write_new(key_path, _key_pem(key), 0o600)
                key = _read_key(key_path)  # another writer without the lock may have won
            cert = _self_signed(key, as_utc(now))
            _write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
            return cls._load(cert_path, key_path, trust_domain)

    @classmethod
    def _load(cls, cert_path: Path, key_path: Path, trust_domain: str) -> CertificateAuthority:
        try:
            cert_pem = cert_path.read_bytes()
        except OSError as exc:
            raise CAError(f"{cert_path}: cannot read the CA certificate: {exc.strerror}") from None
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise CAError(f"{cert_path}: not a PEM certificate") from None
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CAError(f"{cert_path}: not a CA certificate (basic constraints CA:TRUE missing)")
        with contextlib.suppress(x509.ExtensionNotFound):
            usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
            if not usage.key_cert_sign:
                raise CAError(f"{cert_path}: the certificate may not sign certificates (key usage)")
        key = _read_key(key_path)
        if _public_der(key.public_key()) != _public_der(cert.public_key()):
            raise CAError(f"{key_path}: the key does not match the CA certificate {cert_path}")
        return cls(cert, key, trust_domain)

    # ------------------------------------------------------------------ what it is

    @property
    def trust_domain(self) -> str:
        """The SPIFFE trust domain (``shop.local``)."""
        return self._trust_domain

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate."""
        return self._cert

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate in PEM: what every sidecar trusts."""
        return self._ca_pem

    def spiffe_id(self, service: str) -> str:
        """``spiffe://<trust domain>/service/<service>``; :class:`CAError` for an invalid name."""
        if not isinstance(service, str) or _SERVICE.fullmatch(service) is None:
            raise CAError(
                f"invalid service name {service!r}: lower-case letters, digits and '-', "
                "at most 63 characters"
            )
        return f"spiffe://{self._trust_domain}/service/{service}"

    # ------------------------------------------------------------------ issuing

    def issue(
        self,
        csr_pem: bytes,
        service: str,
        *,
        ttl: float = 24 * 3600.0,
        now: dt.datetime | None = None,
    ) -> bytes:
        """A leaf certificate (PEM) for the key in ``csr_pem``, as ``service``.

        The certificate's only subject alternative name is the service's SPIFFE
        ID; it is valid from ``now`` minus one minute (clock skew) to ``now +
        ttl`` (never beyond the CA's own expiry), for both TLS server and
        client authentication. Raises :class:`CAError` (a ``ValueError``) when
        the CSR is not valid PEM, its signature does not verify, it asks for
        any other name, or its key is too weak.
        """
        expected = self.spiffe_id(service)
        if not 0 < ttl <= MAX_TTL:
            raise CAError(f"ttl must be > 0 and <= {MAX_TTL:g} seconds, got {ttl!r}")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except (ValueError, TypeError):
            raise CAError("not a PEM certificate signing request") from None
        try:
            signed = csr.is_signature_valid
        except (InvalidSignature, UnsupportedAlgorithm, ValueError):
            signed = False
        if not signed:
            raise CAError("the signing request's signature does not verify")
        try:
            requested = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            pass
        except ValueError as exc:
            raise CAError(f"the signing request has invalid extensions: {exc}") from None
        else:
            names = list(requested.value)
            if names != [x509.UniformResourceIdentifier(expected)]:
                shown = ", ".join(_show_name(n) for n in names) or "no names"
                raise ForeignNameError(
                    f"the signing request asks for {shown}; service {service!r} "
                    f"may only have {expected}"
                )
        try:
            public_key = csr.public_key()
        except (ValueError, UnsupportedAlgorithm):
            raise CAError("the signing request's public key is not supported") from None
        _check_leaf_key(public_key)
        start = as_utc(now)
        # X.509 times are whole seconds: the end is rounded up, so that a certificate
        # lives at least `ttl` (a second lost to truncation matters to a 2 s one).
        end = start + dt.timedelta(seconds=ttl)
        if end.microsecond:
            end = end.replace(microsecond=0) + dt.timedelta(seconds=1)
        not_after = min(end, self._cert.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self._cert.subject)
            .public_key(public_key)
            .serial_number(_serial())
            # Backdated for clock skew, but by at most a tenth of a short lifetime:
            # else its two-thirds renewal point would already be past at issue.
            .not_valid_before(start - min(CLOCK_SKEW, dt.timedelta(seconds=ttl / 10)))
            .not_valid_after(not_after)
            # An empty subject needs a critical SAN (RFC 5280, section 4.2.1.6).
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(expected)]),
                critical=True,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(self._aki, critical=False)
            .sign(self._key, _hash_for(self._key))
        )
        return cert.public_bytes(serialization.Encoding.PEM)


# --------------------------------------------------------------------------- helpers


def csr_key_id(csr_pem: bytes) -> str:
    """The SHA-256 (hex) of the public key a CSR asks a certificate for: which sidecar
    asks, as its key never leaves it. Raises :class:`CAError` if ``csr_pem`` is not a
    PEM CSR with a public key."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
        der = _public_der(csr.public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise CAError("not a PEM certificate signing request") from None
    return hashlib.sha256(der).hexdigest()


def _serial() -> int:
    # 159 random bits: positive, at most 20 octets (RFC 5280), unpredictable.
    return secrets.randbits(159) | 1


def _show_name(name: x509.GeneralName) -> str:
    return f"{type(name).__name__} {name.value!r}"


def _check_leaf_key(key: object) -> None:
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.key_size < 256:
            raise CAError(f"EC key on {key.curve.name} is too weak: P-256 or larger")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CAError(f"RSA key of {key.key_size} bits is too weak: 2048 bits or more")
    elif not isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise CAError(f"unsupported key type {type(key).__name__}: use EC P-256")


def _public_der(key: object) -> bytes:
    assert hasattr(key, "public_bytes")
    der: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _key_pem(key: SigningKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _read_key(path: Path) -> SigningKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CAError(f"{path}: cannot read the CA key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CAError(f"{path}: the CA key is encrypted; give an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CAError(f"{path}: not a PEM private key") from None
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | rsa.RSAPrivateKey
        | ed25519.Ed25519PrivateKey
        | ed448.Ed448PrivateKey,
    ):
        raise CAError(f"{path}: unsupported key type {type(key).__name__}")
    return key


def _self_signed(key: SigningKey, now: dt.datetime) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "seawall"),
            x509.NameAttribute(NameOID.COMMON_NAME, "seawall mesh CA"),
        ]
    )
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, _hash_for(key))
    )


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released when the process dies, too)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CAError(f"{path}: cannot open the CA lock file: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` atomically without ever replacing it: a temporary file, then a hard link.

    If ``path`` appeared meanwhile (another creator won), the existing file is kept.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)  # whatever the umask
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise CAError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
