"""What the control plane pushes and shows, computed from the store's records (sans-I/O).

* :func:`build_snapshot`: the document every sidecar subscribes to: the
  current config version and, per service, the endpoints of its live
  instances. Its ``etag`` changes exactly when the pushed content changes, so
  sidecar reports and lease renewals, which change neither, wake no
  subscriber. The body is serialized once per change and sent as is to every
  subscriber.
* :func:`services_view` and :func:`status_view`: what ``seawall services``
  and ``seawall status`` print (health from the sidecars' ejection reports,
  sidecars that lag behind the current version).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .store import ConfigRecord, Instance, SidecarStatus

__all__ = ["Snapshot", "build_snapshot", "services_view", "status_view"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One version of the pushed document."""

    etag: str
    config_version: int  # 0 when no config was applied yet
    body: bytes  # the JSON document, ready to send


def _endpoint(instance: Instance) -> dict[str, Any]:
    return {
        "id": instance.id,
        "address": instance.address,
        "port": instance.port,
        "subset": instance.subset,
    }


def build_snapshot(
    config: ConfigRecord | None,
    instances: Iterable[Instance],
    document: dict[str, Any] | None = None,
) -> Snapshot:
    """The document for subscribers: config version and document, endpoints by service.

    ``document`` is ``config.document`` already parsed (callers cache it per
    digest); it is parsed here when not given.
    """
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for inst in sorted(instances, key=lambda i: (i.service, i.address, i.port, i.id)):
        endpoints.setdefault(inst.service, []).append(_endpoint(inst))
    content = {
        "config": None
        if config is None
        else {
            "version": config.version,
            "digest": config.digest,
            "document": document if document is not None else json.loads(config.document),
        },
        "endpoints": endpoints,
    }
    identity = json.dumps(
        [config.version if config else 0, config.digest if config else "", endpoints],
        sort_keys=True,
        separators=(",", ":"),
    )
    etag = hashlib.sha256(identity.encode()).hexdigest()[:24]
    body = json.dumps({"etag": etag, **content}, separators=(",", ":")).encode()
    return Snapshot(etag, config.version if config else 0, body)


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
