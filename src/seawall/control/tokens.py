"""Who may write: the admin token and the per-service join tokens.

* The **admin token** guards every write of the API (apply a config, mint a
  join token). It is generated at the first start of ``seawall control``,
  printed once, and kept in ``<state_dir>/admin-token`` (mode 0600), where the
  CLI on the same machine finds it.
* A **join token** lets a sidecar act for one service: register instances of
  it, report its status, and get a certificate whose SPIFFE ID names it. It
  is ``<service>.<mac>``, where ``mac`` is an HMAC-SHA256 of the service name
  under a secret kept in ``<state_dir>/join-secret`` (0600). Nothing per token
  is stored, every replica sharing the state directory accepts the same
  tokens, and rotating the secret revokes them all. Revoking one service's
  token bumps that service's **generation** in the store (shared by every
  replica); tokens are then ``<service>.g<generation>.<mac>``, the MAC
  covering the generation, and older ones are refused.

A **lease handle** is what a registration returns and what renewing,
revoking and reporting take: ``<lease>.<instance id>.<mac>``, the MAC binding
the lease to the service and instance it was granted for. A join token of
another service cannot renew, revoke or report on it, without the control
plane keeping a table of who owns which lease (replicas verify it alike).

Both files are created with an exclusive link, so two replicas starting at
once end up with the same token, never two different ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ADMIN_TOKEN_FILE",
    "JOIN_SECRET_FILE",
    "MAX_LEASE",
    "Tokens",
    "read_or_create_private",
]

ADMIN_TOKEN_FILE = "admin-token"
JOIN_SECRET_FILE = "join-secret"


def read_or_create_private(path: Path, make: bytes) -> tuple[bytes, bool]:
    """The content of ``path``; if it does not exist, create it with ``make`` (mode 0600).

    Returns ``(content, created)``. The file appears whole or not at all (written
    to a temporary file, then hard-linked into place): of two processes racing,
    one creates it and both return its content.
    """
    try:
        return path.read_bytes(), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(make)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes(), False
        return make, True
    finally:
        tmp.unlink(missing_ok=True)


MAX_LEASE = 2**63 - 1  # leases are signed 64-bit integers (etcd's and SQLite's)


def _mac(secret: bytes, message: str) -> str:
    digest = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True, slots=True)
class Tokens:
    """The admin token and the secret behind join tokens."""

    admin: str
    join_secret: bytes
    created: bool = False  # the admin token was made by this start (print it once)

    @classmethod
    def load_or_create(cls, state_dir: Path) -> Tokens:
        """Read both from ``state_dir``, creating them at the first start."""
        admin, created = read_or_create_private(
            state_dir / ADMIN_TOKEN_FILE, secrets.token_urlsafe(32).encode("ascii") + b"\n"
        )
        secret, _ = read_or_create_private(state_dir / JOIN_SECRET_FILE, secrets.token_bytes(32))
        token = admin.decode("ascii", "replace").strip()
        if len(token) < 16:
            raise ValueError(f"{state_dir / ADMIN_TOKEN_FILE}: too short to be an admin token")
        if len(secret) < 16:
            raise ValueError(f"{state_dir / JOIN_SECRET_FILE}: too short to be a join secret")
        return cls(token, secret, created)

    def is_admin(self, token: str | None) -> bool:
        """Whether ``token`` is the admin token (constant-time comparison)."""
        return token is not None and hmac.compare_digest(token.encode(), self.admin.encode())

    def join_token(self, service: str, generation: int = 0) -> str:
        """The join token of ``service`` at ``generation`` (bumped by each revocation)."""
        if generation == 0:  # the form minted before revocations existed
            return f"{service}.{_mac(self.join_secret, 'seawall-join:' + service)}"
        mac = _mac(self.join_secret, f"seawall-join:{service}:{generation}")
        return f"{service}.g{generation}.{mac}"

    def identify(self, token: str | None) -> tuple[str, int] | None:
        """``(service, generation)`` of a join token, or ``None`` if it is not a valid one.

        Whether that generation is still the service's current one is for the
        caller to check (the generations live in the store).
        """
        if not token or "." not in token:
            return None
        head, _, mac = token.rpartition(".")
        service, dot, tag = head.partition(".")
        generation = 0
        if dot:
            if not tag.startswith("g") or not tag[1:].isdigit() or len(tag) > 12:
                return None
            generation = int(tag[1:])
            if generation == 0:
                return None
        if not service or not mac:
            return None
        expected = self.join_token(service, generation).rpartition(".")[2]
        if not hmac.compare_digest(mac.encode(), expected.encode()):
            return None
        return service, generation

    def service_of(self, token: str | None) -> str | None:
        """The service a join token is for, or ``None`` if it is not a valid one."""
        found = self.identify(token)
        return None if found is None else found[0]

    def lease_handle(self, lease: int, service: str, instance: str) -> str:
        """The handle of ``lease``, granted to ``instance`` of ``service``."""
        mac = _mac(self.join_secret, f"seawall-lease:{lease}:{service}:{instance}")
        return f"{lease}.{instance}.{mac}"

    def open_lease_handle(self, handle: str, service: str | None) -> tuple[int, str] | None:
        """``(lease, instance id)`` from a handle; ``None`` if it is malformed or forged.

        ``service`` is the caller's (from its join token); ``None`` for the
        admin, whose handles are checked for shape only.
        """
        lease_text, dot, rest = handle.partition(".")
        instance, dot2, mac = rest.rpartition(".")
        if not dot or not dot2 or not lease_text.isdigit() or len(lease_text) > 19:
            return None
        lease = int(lease_text)
        if lease > MAX_LEASE or not instance:
            return None
        if service is not None:
            expected = _mac(self.join_secret, f"seawall-lease:{lease}:{service}:{instance}")
            if not hmac.compare_digest(mac.encode(), expected.encode()):
                return None
        return lease, instance
