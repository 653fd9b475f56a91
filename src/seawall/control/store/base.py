"""The :class:`Store` contract and the records it keeps.

Three kinds of state, each with its own rules:

* **config versions**: append-only. :meth:`Store.put_config` stores a
  document under the next version number (1, 2, ...) atomically, or returns
  the current record unchanged when the digest is the same (re-applying a file
  is not a new version).
* **instances**: the registry. Each lives under a lease with a TTL; a lease
  that is not kept alive expires and takes its instance (and its status) with
  it. After a control-plane restart every stored lease gets a full TTL again
  (etcd does the same after a leader change), so a restart never drops a
  healthy instance.
* **sidecar statuses**: what each sidecar reports (the config version it
  runs, the endpoints its outlier detection ejected), under the same lease as
  its instance.

:meth:`Store.changes` wakes the API server after any change, including ones
made by another control-plane replica; the server then re-reads what it
needs. Every method is a coroutine; none holds a lock across an await.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .registry import Registry

__all__ = [
    "ChangeFeed",
    "ConfigRecord",
    "Instance",
    "InstanceConflict",
    "SidecarStatus",
    "Store",
    "StoreError",
]


class StoreError(Exception):
    """The store could not do what was asked (unreachable, corrupt, refused)."""


class InstanceConflict(StoreError):
    """A registration would replace an instance of another service (nothing was written)."""


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """One applied version of the mesh config."""

    version: int  # 1, 2, 3, ... (monotonic across replicas)
    digest: str  # sha256 of the canonical JSON (MeshConfig.digest())
    document: str  # the canonical JSON (MeshConfig.to_json())
    applied_at: float  # wall-clock seconds since the epoch, for display only

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "version": self.version,
            "digest": self.digest,
            "document": self.document,
            "applied_at": self.applied_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            int(data["version"]),
            str(data["digest"]),
            str(data["document"]),
            float(data["applied_at"]),
        )


def _no_metadata() -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service: where its sidecar takes inbound calls."""

    id: str  # unique in the mesh, chosen by the sidecar (service name + random suffix)
    service: str
    address: str
    port: int
    subset: str | None = None
    metadata: dict[str, str] = field(default_factory=_no_metadata)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "id": self.id,
            "service": self.service,
            "address": self.address,
            "port": self.port,
            "subset": self.subset,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """Inverse of :meth:`to_dict`."""
        subset = data.get("subset")
        return cls(
            id=str(data["id"]),
            service=str(data["service"]),
            address=str(data["address"]),
            port=int(data["port"]),
            subset=None if subset is None else str(subset),
            metadata={str(k): str(v) for k, v in dict(data.get("metadata") or {}).items()},
        )


def _no_ejections() -> tuple[str, ...]:
    return ()


@dataclass(frozen=True, slots=True)
class SidecarStatus:
    """What one sidecar last reported (kept under its instance's lease)."""

    id: str  # the instance id of the sidecar's service instance
    service: str
    config_version: int  # 0 before it has any config
    ejected: tuple[str, ...] = field(default_factory=_no_ejections)  # "address:port"
    reported_at: float = 0.0  # wall-clock seconds, for display only
    certificate_serial: str | None = None  # hex serial of the sidecar's current certificate
    certificate_expires: float | None = None  # its not_after, wall-clock seconds
    restart_needed: tuple[str, ...] = ()  # settings of its config that wait for a restart
    # per destination it calls: {"breaker": state or None, "ejected": ["address:port", ...]}
    edges: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {
            "id": self.id,
            "service": self.service,
            "config_version": self.config_version,
            "ejected": list(self.ejected),
            "reported_at": self.reported_at,
            "certificate_serial": self.certificate_serial,
            "certificate_expires": self.certificate_expires,
            "restart_needed": list(self.restart_needed),
            "edges": {k: dict(v) for k, v in self.edges.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SidecarStatus:
        """Inverse of :meth:`to_dict`."""
        return cls(
            id=str(data["id"]),
            service=str(data["service"]),
            config_version=int(data["config_version"]),
            ejected=tuple(str(e) for e in data.get("ejected") or ()),
            reported_at=float(data.get("reported_at") or 0.0),
            certificate_serial=(
                None if data.get("certificate_serial") is None else str(data["certificate_serial"])
            ),
            certificate_expires=(
                None
                if data.get("certificate_expires") is None
                else float(data["certificate_expires"])
            ),
            restart_needed=tuple(str(r) for r in data.get("restart_needed") or ()),
            edges={str(k): dict(v) for k, v in (data.get("edges") or {}).items()},
        )


class Store(abc.ABC):
    """Config versions, the instance registry and sidecar statuses, with change events.

    Every store keeps :attr:`registry`, an in-memory mirror of the live
    instances (see :mod:`~seawall.control.store.registry`), up to date with
    its own writes and with the changes it sees (expiry, other replicas), so
    that readers on the hot path never re-read the whole registry.
    """

    registry: Registry

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect / open files; must be called (and awaited) before anything else."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource; leases are not revoked (instances survive a restart)."""

    # -- config -----------------------------------------------------------

    @abc.abstractmethod
    async def put_config(self, document: str, digest: str) -> ConfigRecord:
        """Store ``document`` as the next version, atomically.

        If the current version already has ``digest``, nothing is written and
        the current record is returned. Two replicas applying at once get two
        distinct versions, never the same number twice.
        """

    @abc.abstractmethod
    async def current_config(self) -> ConfigRecord | None:
        """The newest version, or ``None`` if nothing was ever applied."""

    # -- registry ---------------------------------------------------------

    @abc.abstractmethod
    async def register(self, instance: Instance, ttl: float) -> int:
        """Store ``instance`` under a new lease of ``ttl`` seconds; returns the lease id.

        Registering an id that exists replaces it (its old lease is revoked),
        but only if the existing instance is of the same service: otherwise
        :class:`InstanceConflict` is raised and nothing changes.
        """

    @abc.abstractmethod
    async def keepalive(self, lease: int) -> bool:
        """Renew ``lease`` for its full TTL; ``False`` if it is unknown or has expired."""

    @abc.abstractmethod
    async def deregister(self, lease: int) -> None:
        """Revoke ``lease`` now: its instance and status are removed (unknown: no-op)."""

    @abc.abstractmethod
    async def instances(self) -> list[Instance]:
        """Every instance whose lease is alive, sorted by (service, id)."""

    @abc.abstractmethod
    async def put_status(self, status: SidecarStatus, lease: int) -> bool:
        """Store a sidecar's report under ``lease``; ``False`` if the lease is gone."""

    @abc.abstractmethod
    async def revoke_service(self, service: str) -> tuple[int, int]:
        """Revoke ``service``'s join token and deregister every instance of it, in bulk.

        Bumps the service's join-token generation (tokens minted before stop
        working) and revokes every lease holding one of its instances.
        Returns ``(new generation, instances removed)``.
        """

    @abc.abstractmethod
    async def token_generations(self) -> dict[str, int]:
        """The join-token generation of every service that was ever revoked (others: 0)."""

    async def config_head(self) -> tuple[int, str] | None:
        """``(version, digest)`` of the newest config; stores override it with a cheaper read."""
        record = await self.current_config()
        return None if record is None else (record.version, record.digest)

    @abc.abstractmethod
    async def statuses(self) -> list[SidecarStatus]:
        """Every status whose lease is alive, sorted by (service, id)."""

    # -- change events ----------------------------------------------------

    @abc.abstractmethod
    def changes(self) -> AsyncIterator[None]:
        """Yields once after each change (coalesced: several changes may yield once).

        Changes made through this store object and, for shared backends, by
        other processes (another replica, an expiring lease) are both seen.
        The first item is yielded at once, so a consumer reads the initial
        state in the same loop as the updates.
        """


class ChangeFeed:
    """What a store's :meth:`Store.changes` yields from: coalesced wake-ups, many consumers.

    The store calls :meth:`notify` after each change it makes or sees, and
    :meth:`close` when it closes (every iterator then ends). Each consumer of
    :meth:`follow` wakes once per burst of notifications, never misses one that
    happened while it was busy, and holds no lock.
    """

    def __init__(self) -> None:
        self._count = 0
        self._wakeup = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        """Something changed: wake every consumer."""
        self._count += 1
        wakeup, self._wakeup = self._wakeup, asyncio.Event()
        wakeup.set()

    def close(self) -> None:
        """End every iterator (after it wakes)."""
        self.closed = True
        self.notify()

    async def follow(self) -> AsyncIterator[None]:
        """Yield at once, then after each change (coalesced); end when closed."""
        seen = self._count
        yield None
        while not self.closed:
            while seen == self._count:
                await self._wakeup.wait()
            if self.closed:
                return
            seen = self._count
            yield None
