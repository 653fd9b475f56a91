"""What the control plane pushes and shows, computed from the store's records (sans-I/O).

* :class:`Publisher`: the document every sidecar subscribes to: the current
  config version and, per service, the endpoints of its live instances. Its
  ``etag`` depends on the pushed content only (the config version and digest
  and the registry's order-independent content hash), so sidecar reports and
  lease renewals, which change neither, wake no subscriber, and two replicas
  with the same content hand out the same etag.

  Publishing costs O(1) in the number of instances: the etag comes from
  running hashes, and bodies are built lazily, once per etag, when someone
  asks. A subscriber that already has a recent snapshot gets a **delta**
  (``?delta=1``): the config only if it changed, and per service the
  endpoints added or changed and the ids removed since its etag. The full
  body is assembled from per-service fragments cached until their service
  changes, so building it after one registration re-serializes one service.

  **Effective splits.** While a progressive split rolls out
  (:mod:`seawall.control.canary`), the weights the sidecars run are the
  controller's, not the applied document's: :meth:`Publisher.set_splits`
  overrides them in the pushed document (the config's version and digest
  stay the applied ones: mesh.yaml stays the user's intent), and the etag
  changes with them, so the sidecars take the new weights as they take a new
  config. An override names the route's ``split`` and ``progressive`` as the
  document has them, and applies only while they are still those.

  **Renew now.** :meth:`Publisher.set_renewals` pushes, per service, a token
  that changes when the control plane wants that service's sidecars to renew
  their certificate at once (a chaos fault forcing a short lifetime, or
  lifting it: :mod:`seawall.control.cert_faults`). The etag changes with the
  tokens; with none (the usual case) the documents and etags are as without.

* :func:`services_view` and :func:`status_view`: what ``seawall services``
  and ``seawall status`` print (health from the sidecars' ejection reports,
  sidecars that lag behind the current version).

The two documents::

    full:  {"etag", "config": {"version", "digest", "document"} | null,
            "endpoints": {service: [{"id", "address", "port", "subset"}, ...]},
            "renew": {service: token} (only when there are tokens)}
    delta: {"etag", "base": <etag it applies to>, "config": ... (only if changed),
            "changes": {service: {"put": [endpoint, ...], "removed": [id, ...]}},
            "renew": {service: token} (only if changed)}

Endpoint lists in a full document are sorted by (address, port, id).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .store import ConfigRecord, Instance, SidecarStatus
from .store.registry import Registry, endpoint_entry

__all__ = [
    "Publisher",
    "Snapshot",
    "SplitOverride",
    "route_identity",
    "services_view",
    "status_view",
]

HISTORY = 256
"""How many past etags a delta can start from."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published version of the pushed document (its body is built on demand)."""

    etag: str
    config_version: int  # 0 when no config was applied yet
    config_digest: str
    registry_revision: int
    splits: str = ""  # the effective splits' hash ("" when the document's own apply)
    renew: str = ""  # the renewal tokens' hash ("" when there are none)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class SplitOverride:
    """The weights a route's split runs with instead of the document's, while the route's
    ``split`` and ``progressive`` are still what they were (:func:`route_identity`)."""

    destination: str
    route: str
    """The route's name as the sidecars give it (``route<i>`` for an unnamed one)."""
    declared: str
    """:func:`route_identity` of the route the override was made for."""
    weights: dict[str, float]


def route_identity(route: dict[str, Any]) -> str:
    """What a route's rollout is about: its ``split`` and ``progressive`` as the document
    (or ``RouteConfig.model_dump(mode="json")``) has them, canonical."""
    found = {"split": route.get("split"), "progressive": route.get("progressive")}
    return json.dumps(found, sort_keys=True, separators=(",", ":"))


def _sorted_entries(instances: Sequence[Instance] | Any) -> list[dict[str, Any]]:
    ordered = sorted(instances, key=lambda i: (i.address, i.port, i.id))
    return [endpoint_entry(i) for i in ordered]


class Publisher:
    """The current snapshot, its recent history, and the bodies sent to subscribers."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.config: ConfigRecord | None = None
        self._document: dict[str, Any] | None = None
        self._overrides: tuple[SplitOverride, ...] = ()
        self._splits = ""  # the hash of the overrides the pushed document has
        self._config_json = b"null"
        self._renew_json = b""  # the renewal tokens as pushed ("" when none)
        self._renew = ""  # their hash
        self._fragments: dict[str, tuple[int, bytes]] = {}  # service -> (revision, fragment)
        self._history: OrderedDict[str, Snapshot] = OrderedDict()
        self._full: tuple[str, bytes] | None = None
        self._deltas: dict[str, bytes] = {}  # base etag -> delta to the current snapshot
        self.current = self._make()
        self._remember(self.current)

    def set_config(self, config: ConfigRecord | None, document: dict[str, Any] | None) -> None:
        """The config to push from now on (``document`` is ``config.document`` parsed)."""
        old, self.config = self.config, config
        if config is None:
            self._document = None
        elif document is not None:
            self._document = document
        elif self._document is None or old is None or old.digest != config.digest:
            self._document = json.loads(config.document)
        self._render()

    def set_splits(self, overrides: Sequence[SplitOverride]) -> bool:
        """Push these weights instead of the document's (see the module); ``True`` if the
        pushed document changes (then :meth:`publish`)."""
        before = self._splits
        self._overrides = tuple(overrides)
        self._render()
        return self._splits != before

    def set_renewals(self, renewals: Mapping[str, str]) -> bool:
        """Push these renewal tokens (see the module); ``True`` if they changed (then
        :meth:`publish`)."""
        before = self._renew
        if renewals:
            self._renew_json = _dumps(dict(sorted(renewals.items())))
            self._renew = hashlib.sha256(self._renew_json).hexdigest()[:16]
        else:
            self._renew_json, self._renew = b"", ""
        return self._renew != before

    def _render(self) -> None:
        config, document = self.config, self._document
        if config is None or document is None:
            self._config_json, self._splits = b"null", ""
            return
        effective, applied = _with_splits(document, self._overrides)
        self._splits = hashlib.sha256(_dumps(applied)).hexdigest()[:16] if applied else ""
        self._config_json = _dumps(
            {"version": config.version, "digest": config.digest, "document": effective}
        )

    def pending(self) -> bool:
        """Whether the config or the registry changed since the last :meth:`publish`."""
        c = self.config
        return (
            self.registry.revision != self.current.registry_revision
            or (c.version if c else 0) != self.current.config_version
            or (c.digest if c else "") != self.current.config_digest
            or self._splits != self.current.splits
            or self._renew != self.current.renew
        )

    def publish(self) -> bool:
        """Make the present content the current snapshot; ``True`` if its etag changed."""
        snapshot = self._make()
        changed = snapshot.etag != self.current.etag
        self.current = snapshot
        self._remember(snapshot)
        if changed:
            self._deltas.clear()
        return changed

    def full_body(self) -> bytes:
        """The whole current document (built once per etag)."""
        etag = self.current.etag
        if self._full is not None and self._full[0] == etag:
            return self._full[1]
        parts = []
        for service in self.registry.services():
            revision = self.registry.service_revision(service)
            cached = self._fragments.get(service)
            if cached is None or cached[0] != revision:
                entries = _sorted_entries(self.registry.service(service).values())
                cached = (revision, _dumps(service) + b":" + _dumps(entries))
                self._fragments[service] = cached
            parts.append(cached[1])
        for gone in [s for s in self._fragments if not self.registry.count(s)]:
            del self._fragments[gone]
        body = (
            b'{"etag":'
            + _dumps(etag)
            + b',"config":'
            + self._config_json
            + b',"endpoints":{'
            + b",".join(parts)
            + b"}"
            + (b',"renew":' + self._renew_json if self._renew_json else b"")
            + b"}"
        )
        self._full = (etag, body)
        return body

    def delta_body(self, base: str) -> bytes | None:
        """What turns the snapshot ``base`` into the current one; ``None`` if ``base`` is
        unknown or too old (send :meth:`full_body` instead)."""
        cached = self._deltas.get(base)
        if cached is not None:
            return cached
        start = self._history.get(base)
        if start is None or start.etag == self.current.etag:
            return None
        changes = self.registry.changes_since(start.registry_revision)
        if changes is None:
            return None
        now = self.current
        document: dict[str, Any] = {"etag": now.etag, "base": base}
        if (start.config_version, start.config_digest, start.splits) != (
            now.config_version, now.config_digest, now.splits
        ):  # fmt: skip
            document["config"] = json.loads(self._config_json)
        document["changes"] = {
            service: {
                "put": [endpoint_entry(i) for i in c.put],
                "removed": list(c.removed),
            }
            for service, c in sorted(changes.items())
        }
        if start.renew != now.renew:
            document["renew"] = json.loads(self._renew_json or b"{}")
        body = _dumps(document)
        if len(self._deltas) >= HISTORY:
            self._deltas.clear()
        self._deltas[base] = body
        return body

    def _make(self) -> Snapshot:
        c = self.config
        version, digest = (c.version, c.digest) if c else (0, "")
        splits = f"{self._splits}|" if self._splits else ""  # (none: the etag as before)
        renew = f"r{self._renew}|" if self._renew else ""
        identity = f"{version}|{digest}|{splits}{renew}{self.registry.content_hash:032x}"
        etag = hashlib.sha256(identity.encode()).hexdigest()[:24]
        return Snapshot(etag, version, digest, self.registry.revision, self._splits, self._renew)

    def _remember(self, snapshot: Snapshot) -> None:
        self._history[snapshot.etag] = snapshot
        self._history.move_to_end(snapshot.etag)
        while len(self._history) > HISTORY:
            self._history.popitem(last=False)


def _with_splits(
    document: dict[str, Any], overrides: Sequence[SplitOverride]
) -> tuple[dict[str, Any], list[list[Any]]]:
    """``document`` with the overrides that still apply (copies of what they change), and
    those overrides as ``[destination, route, weights]``, sorted."""
    policies = document.get("policies")
    if not overrides or not isinstance(policies, dict):
        return document, []
    changed: dict[str, Any] = {}
    applied: list[list[Any]] = []
    for o in overrides:
        policy = changed.get(o.destination, policies.get(o.destination))
        routes = policy.get("routes") if isinstance(policy, dict) else None
        if not isinstance(routes, list):
            continue
        for index, route in enumerate(routes):
            name = route.get("name") or f"route{index}"
            if name != o.route or route_identity(route) != o.declared:
                continue
            routes = list(routes)
            routes[index] = {**route, "split": dict(o.weights)}
            changed[o.destination] = {**(policy or {}), "routes": routes}
            applied.append([o.destination, o.route, o.weights])
            break
    if not changed:
        return document, []
    return {**document, "policies": {**policies, **changed}}, sorted(applied)


def services_view(
    instances: Sequence[Instance], statuses: Sequence[SidecarStatus]
) -> list[dict[str, Any]]:
    """Every instance with its health as the sidecars see it.

    ``health`` is ``"healthy"`` while its lease is alive and no sidecar's outlier
    detection has ejected it, else ``"ejected"``; ``ejected_by`` lists the
    reporting sidecars that ejected it (an instance whose lease expired is not
    listed at all: it is out of every endpoint set).
    """
    ejected_by: dict[str, list[str]] = {}
    for status in statuses:
        for endpoint in status.ejected:
            ejected_by.setdefault(endpoint, []).append(status.id)
    rows = []
    for inst in instances:
        host = f"[{inst.address}]" if ":" in inst.address else inst.address
        who = sorted(ejected_by.get(f"{host}:{inst.port}", []))
        rows.append(
            {
                **inst.to_dict(),
                "health": "ejected" if who else "healthy",
                "ejected_by": who,
            }
        )
    return rows


def status_view(
    config: ConfigRecord | None,
    statuses: Sequence[SidecarStatus],
    now_wall: float,
    instances: Sequence[Instance] = (),
) -> dict[str, Any]:
    """The current version and every sidecar's, with the ones that lag marked
    (and each one's subset, from its registered instance)."""
    current = config.version if config else 0
    subsets = {inst.id: inst.subset for inst in instances}
    return {
        "config_version": current,
        "digest": config.digest if config else None,
        "applied_at": config.applied_at if config else None,
        "sidecars": [
            {
                **s.to_dict(),
                "subset": subsets.get(s.id),
                "lagging": s.config_version < current,
                "reported_seconds_ago": max(0.0, now_wall - s.reported_at),
            }
            for s in statuses
        ],
    }
