"""mTLS identities by name: SPIFFE IDs, and the check that a sidecar can serve its ``mtls`` mode.

The handshakes themselves run in the Rust core (crates/seawall-tls): TLS 1.3,
a client certificate from the mesh CA, the SPIFFE ID checked both ways, and
strict or permissive on one port. What stays in Python is naming (the SPIFFE
ID of a service, and the service of a SPIFFE ID) for the control plane and
the identity files, and :func:`check_identity`, which refuses to start a
sidecar that cannot honour its config before any port is opened.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import MeshConfig

if TYPE_CHECKING:
    from .identity import Identity

__all__ = [
    "REFUSALS",
    "MTLSError",
    "check_identity",
    "service_of",
    "spiffe_id",
    "spiffe_id_of",
]

REFUSALS = ("plaintext", "handshake", "identity", "caller")
"""The reasons an inbound connection is refused (the ``reason`` label); ``caller``:
a service the callee refuses (``authorization.refuse``)."""

_TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record: a ClientHello follows
_ACCEPT_BATCH = 64  # connections accepted per wake-up, so one busy listener cannot starve the loop
_ACCEPT_PAUSE = 1.0  # seconds without accepting after running out of file descriptors (as asyncio)


# --------------------------------------------------------------------------- SPIFFE IDs

_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a service name: a DNS label


def spiffe_id(trust_domain: str, service: str) -> str:
    """The SPIFFE ID of ``service``: ``spiffe://<trust_domain>/service/<service>``."""
    return f"spiffe://{trust_domain}/service/{service}"


def spiffe_id_of(peercert: Mapping[str, Any] | None) -> str | None:
    """The SPIFFE ID in a certificate as :meth:`ssl.SSLObject.getpeercert` returns it.

    ``None`` unless the certificate has exactly one URI subject alternative
    name and it is a ``spiffe://`` URI (an X509-SVID has exactly one).

    >>> spiffe_id_of({"subjectAltName": (("URI", "spiffe://shop.local/service/orders"),)})
    'spiffe://shop.local/service/orders'
    >>> spiffe_id_of({"subjectAltName": (("DNS", "orders"),)}) is None
    True
    """
    if not peercert:
        return None
    uris = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    if len(uris) != 1 or not isinstance(uris[0], str) or not uris[0].startswith("spiffe://"):
        return None
    return uris[0]


def service_of(spiffe: str | None, trust_domain: str) -> str | None:
    """The service named by ``spiffe://<trust_domain>/service/<name>``, else ``None``.

    >>> service_of("spiffe://shop.local/service/orders", "shop.local")
    'orders'
    >>> service_of("spiffe://other.local/service/orders", "shop.local") is None
    True
    """
    if spiffe is None:
        return None
    prefix = f"spiffe://{trust_domain}/service/"
    if not spiffe.startswith(prefix):
        return None
    name = spiffe[len(prefix):]
    return name if _SERVICE.fullmatch(name) is not None else None


class MTLSError(ValueError):
    """The sidecar cannot serve its service's ``mtls`` mode with the identity it has."""


def check_identity(config: MeshConfig, service: str, identity: Identity | None) -> None:
    """Refuse to start a sidecar that cannot honour the config's mTLS settings.

    ``mtls: strict`` and ``authorization.refuse`` need an identity; an identity needs a
    certificate for ``service`` in the mesh's trust domain. Raises :class:`MTLSError`.
    """
    mode = config.services[service].mtls
    refused = config.services[service].authorization.refuse
    if identity is None:
        if mode == "strict":
            raise MTLSError(
                f"service {service!r} has mtls: strict, but this sidecar has no identity "
                "(no certificate to serve TLS with): give it one, or use mtls: permissive"
            )
        if refused:
            raise MTLSError(
                f"service {service!r} has authorization.refuse: [{', '.join(refused)}], but "
                "this sidecar has no identity: without mTLS no caller is named, so none "
                "can be refused; give it one, or drop refuse"
            )
        return
    if not identity.installed:
        raise MTLSError("the sidecar's identity has no certificate installed yet")
    if identity.trust_domain != config.trust_domain:
        raise MTLSError(
            f"the identity is in trust domain {identity.trust_domain!r}, the mesh's is "
            f"{config.trust_domain!r}"
        )
    if identity.service != service:
        raise MTLSError(f"the identity is for service {identity.service!r}, not {service!r}")
