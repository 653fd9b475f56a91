"""The Rust core driven from Python with a config model in hand (managed mode, tests).

:class:`CoreSidecar` owns a :class:`seawall._native.Sidecar` and speaks the
config model: :meth:`CoreSidecar.apply` takes a
:class:`~seawall.config.MeshConfig` and the endpoint sets pushed by the control
plane. A push whose config is unchanged updates the endpoint sets in place, so
breakers, budgets, pools and outlier ejections carry on; a new config is
swapped in whole. Certificates rotate into the live listeners with
:meth:`CoreSidecar.set_identity`: new handshakes use the new certificate, open
connections keep theirs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .. import _native
from ..config import MeshConfig
from .control_link import ejected_endpoints
from .linked import identity_pem
from .spec import EndpointSpec, sidecar_spec

__all__ = ["Applied", "CoreSidecar", "Reset", "identity_pem"]


class Reset(NamedTuple):
    """State a new config could not keep."""

    destination: str
    what: str
    """``circuit breaker``, ``breaker window``, ``retry budget``, ``outlier
    ejections``, ``balancer estimates`` or ``everything``."""
    reason: str


class Applied(NamedTuple):
    """What :meth:`CoreSidecar.apply` could not change in place."""

    listeners_moved: bool
    resets: list[Reset]


def _endpoint_json(endpoints: Mapping[str, Sequence[EndpointSpec]]) -> str:
    return json.dumps({name: list(items) for name, items in endpoints.items()})


class CoreSidecar:
    """One sidecar on the Rust core, fed configs and endpoint sets."""

    def __init__(
        self,
        config: MeshConfig,
        service: str,
        *,
        endpoints: Mapping[str, Sequence[EndpointSpec]] | None = None,
        identity: Path | None = None,
        workers: int = 1,
        reuse_port: bool = False,
    ) -> None:
        """Open the listeners of ``service`` and serve. ``identity``: the directory of an
        installed identity (cert.pem, key.pem, ca.pem) for mTLS. Raises ``ValueError``
        for a config the core cannot serve, ``OSError`` for a port it cannot open."""
        self.service = service
        self.config = config
        spec = sidecar_spec(config, service, endpoints=endpoints)
        pem: dict[str, Any] = {}
        if identity is not None:
            cert, key, bundle = identity_pem(identity)
            pem = {"cert": cert, "key": key, "bundle": bundle}
        self.core = _native.Sidecar(
            json.dumps(spec), workers=workers, reuse_port=reuse_port, **pem
        )

    def apply(
        self, config: MeshConfig, endpoints: Mapping[str, Sequence[EndpointSpec]] | None = None
    ) -> Applied:
        """Swap in a new config (and pushed endpoint sets) atomically.

        Each destination keeps its state (breaker, retry budget, ejections,
        balancer estimates, bulkhead, pooled connections) where the change
        allows. Returns whether the listeners changed (they take effect at the
        next restart) and what was reset. Raises ``ValueError`` (nothing
        changes) for a config the core cannot serve, e.g. ``mtls: strict``
        without an identity.
        """
        if endpoints is not None and config.digest() == self.config.digest():
            # Only the registry changed: update the endpoint sets in place.
            self.core.set_endpoints(_endpoint_json(endpoints))
            return Applied(False, [])
        moved, resets = self.core.apply(
            json.dumps(sidecar_spec(config, self.service, endpoints=endpoints))
        )
        self.config = config
        return Applied(moved, [Reset(*r) for r in resets])

    def set_identity(self, directory: Path) -> None:
        """Rotate the certificate from an identity directory into the live listeners."""
        cert, key, bundle = identity_pem(directory)
        self.core.set_identity(cert, key, bundle)

    def close_idle(self) -> None:
        """Close idle pooled upstream connections: the next requests connect anew."""
        self.core.close_idle()

    def clusters(self) -> list[dict[str, Any]]:
        """The clusters' state (the admin ``/clusters`` document's list)."""
        doc: dict[str, Any] = json.loads(self.core.clusters())
        clusters: list[dict[str, Any]] = doc["clusters"]
        return clusters

    def ejected(self) -> list[str]:
        """``address:port`` of every endpoint outlier detection has ejected now."""
        return ejected_endpoints(self.core.clusters())

    def metrics(self) -> str:
        return str(self.core.metrics())

    def ports(self) -> dict[str, int]:
        return dict(self.core.ports())

    async def drain(self, grace: float) -> None:
        """Stop accepting, let in-flight requests finish for up to ``grace`` s, stop."""
        await asyncio.to_thread(self.core.drain, grace)
