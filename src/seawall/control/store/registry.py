"""The live instances in memory: what the API pushes, kept up to date change by change.

A :class:`Registry` is a store's mirror of its instances (sans-I/O: no
clock, no ``await``). The store applies each change it makes or sees
(:meth:`~Registry.put`, :meth:`~Registry.remove_lease`,
:meth:`~Registry.replace_all` after reading everything anew), and the control
plane's API reads from it without touching the store. Every operation costs
O(1) in the number of instances, except :meth:`~Registry.replace_all` (a
resynchronisation, O(N)) and the reads that return whole services.

It keeps what pushing incrementally needs:

* :attr:`~Registry.revision`, bumped by every change that alters what
  subscribers see (a re-registration of the same endpoint is not a change);
* :attr:`~Registry.content_hash`, an order-independent hash of every
  endpoint (the sum of per-endpoint hashes modulo 2**128), updated in O(1), so
  the snapshot's etag depends on the content only: two replicas with the same
  instances compute the same etag;
* a bounded change log, from which :meth:`~Registry.changes_since` says which
  instances changed after a given revision (``None`` when that revision is
  older than the log: the caller then sends everything);
* per-service counts (for quotas) and per-service revisions (to cache each
  service's serialized endpoint list until it changes).
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .base import Instance

__all__ = ["Registry", "ServiceChanges", "endpoint_entry"]

_MASK = (1 << 128) - 1


def endpoint_entry(instance: Instance) -> dict[str, Any]:
    """What subscribers get for one instance (its endpoint in the snapshot)."""
    return {
        "id": instance.id,
        "address": instance.address,
        "port": instance.port,
        "subset": instance.subset,
    }


def _entry_hash(instance: Instance) -> int:
    text = json.dumps(endpoint_entry(instance), sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(f"{instance.service}\0{text}".encode()).digest()[:16])


@dataclass(frozen=True, slots=True)
class _Entry:
    lease: int
    instance: Instance
    hash: int  # of the endpoint as pushed (metadata is not pushed)


@dataclass(frozen=True, slots=True)
class ServiceChanges:
    """What changed in one service after some revision: endpoints now there, ids gone."""

    put: tuple[Instance, ...]
    removed: tuple[str, ...]


class Registry:
    """Instances by id and by service, with a content hash and a change log."""

    def __init__(self, *, log_size: int = 100_000) -> None:
        if log_size < 1:
            raise ValueError(f"Registry: log_size must be >= 1, got {log_size!r}")
        self._log_size = log_size
        self._entries: dict[str, _Entry] = {}
        self._by_service: dict[str, dict[str, Instance]] = {}
        self._by_lease: dict[int, set[str]] = {}
        self._service_revision: dict[str, int] = {}
        self.revision = 0
        self.content_hash = 0
        # The change log: revisions (ascending) and what each touched.
        self._log_revisions: list[int] = []
        self._log_changes: list[tuple[str, str]] = []  # (service, instance id)
        self._log_floor = 0  # changes_since(r) needs r >= this

    # -- reads ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._entries

    def get(self, instance_id: str) -> Instance | None:
        """The instance with this id, or ``None``."""
        entry = self._entries.get(instance_id)
        return None if entry is None else entry.instance

    def lease_of(self, instance_id: str) -> int | None:
        """The lease the instance lives under, or ``None``."""
        entry = self._entries.get(instance_id)
        return None if entry is None else entry.lease

    def count(self, service: str) -> int:
        """How many instances ``service`` has."""
        return len(self._by_service.get(service, ()))

    def services(self) -> list[str]:
        """Services with at least one instance, sorted."""
        return sorted(self._by_service)

    def service(self, name: str) -> Mapping[str, Instance]:
        """The instances of ``name`` by id (a read-only view; empty if none)."""
        return self._by_service.get(name, {})

    def service_revision(self, name: str) -> int:
        """The revision of the last change to ``name`` (0: never changed)."""
        return self._service_revision.get(name, 0)

    def instances(self) -> list[Instance]:
        """Every instance, sorted by (service, id)."""
        return sorted(
            (e.instance for e in self._entries.values()), key=lambda i: (i.service, i.id)
        )

    def changes_since(self, revision: int) -> dict[str, ServiceChanges] | None:
        """What changed after ``revision``, by service; ``None`` if the log no longer covers it.

        An instance changed and then removed is reported removed; one added and
        then removed is reported removed too (removing what a subscriber never
        had is harmless). The result reflects the current content exactly.
        """
        if revision < self._log_floor or revision > self.revision:
            return None
        start = bisect.bisect_right(self._log_revisions, revision)
        touched: dict[str, set[str]] = {}
        for service, iid in self._log_changes[start:]:
            touched.setdefault(service, set()).add(iid)
        result: dict[str, ServiceChanges] = {}
        for service, ids in touched.items():
            present = self._by_service.get(service, {})
            put = tuple(present[i] for i in sorted(ids) if i in present)
            removed = tuple(sorted(i for i in ids if i not in present))
            result[service] = ServiceChanges(put, removed)
        return result

    # -- changes ------------------------------------------------------------

    def put(self, instance: Instance, lease: int) -> bool:
        """Add or replace ``instance`` under ``lease``; ``True`` if what is pushed changed."""
        new_hash = _entry_hash(instance)
        old = self._entries.get(instance.id)
        if old is not None:
            if old.lease != lease:
                self._unindex_lease(old.lease, instance.id)
            if old.instance.service != instance.service:
                self._drop(old)
                old = None
        self._entries[instance.id] = _Entry(lease, instance, new_hash)
        self._by_lease.setdefault(lease, set()).add(instance.id)
        self._by_service.setdefault(instance.service, {})[instance.id] = instance
        if old is not None and old.hash == new_hash:
            return False  # the same endpoint again (a restart, new metadata): nothing to push
        if old is not None:
            self.content_hash = (self.content_hash - old.hash) & _MASK
        self.content_hash = (self.content_hash + new_hash) & _MASK
        self._logged(instance.service, instance.id)
        return True

    def remove(self, instance_id: str) -> bool:
        """Remove the instance with this id; ``True`` if there was one."""
        entry = self._entries.get(instance_id)
        if entry is None:
            return False
        self._unindex_lease(entry.lease, instance_id)
        self._drop(entry)
        return True

    def remove_lease(self, lease: int) -> int:
        """Remove every instance under ``lease``; how many."""
        ids = self._by_lease.pop(lease, None)
        if not ids:
            return 0
        for iid in ids:
            entry = self._entries.get(iid)
            if entry is not None:
                self._drop(entry)
        return len(ids)

    def ids_of_lease(self, lease: int) -> list[str]:
        """The instances under ``lease``."""
        return sorted(self._by_lease.get(lease, ()))

    def leases_of(self, service: str) -> set[int]:
        """The leases that hold instances of ``service``."""
        return {self._entries[i].lease for i in self._by_service.get(service, {})}

    def replace_all(self, entries: Iterable[tuple[Instance, int]]) -> int:
        """Make the registry hold exactly ``entries`` (instance, lease); how many changed.

        Used after reading the whole registry anew (another process wrote the
        file, a watch was re-established): only the differences are logged.
        """
        wanted = {inst.id: (inst, lease) for inst, lease in entries}
        changed = 0
        for iid in [i for i in self._entries if i not in wanted]:
            changed += self.remove(iid)
        for inst, lease in wanted.values():
            changed += self.put(inst, lease)
        return changed

    # -- internals ----------------------------------------------------------

    def _unindex_lease(self, lease: int, instance_id: str) -> None:
        ids = self._by_lease.get(lease)
        if ids is not None:
            ids.discard(instance_id)
            if not ids:
                del self._by_lease[lease]

    def _drop(self, entry: _Entry) -> None:
        iid, service = entry.instance.id, entry.instance.service
        del self._entries[iid]
        members = self._by_service.get(service)
        if members is not None:
            members.pop(iid, None)
            if not members:
                del self._by_service[service]
        self.content_hash = (self.content_hash - entry.hash) & _MASK
        self._logged(service, iid)

    def _logged(self, service: str, instance_id: str) -> None:
        self.revision += 1
        self._service_revision[service] = self.revision
        self._log_revisions.append(self.revision)
        self._log_changes.append((service, instance_id))
        if len(self._log_revisions) > 2 * self._log_size:
            cut = len(self._log_revisions) - self._log_size
            self._log_floor = self._log_revisions[cut - 1]
            del self._log_revisions[:cut]
            del self._log_changes[:cut]
