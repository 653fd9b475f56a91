"""What a new mesh config changes: per setting, whether it needs a restart, what state it resets.

``seawall diff -f mesh.yaml`` and ``seawall apply --dry-run`` print this
before anything is applied. The two configs are compared as their canonical
JSON (every default filled in, durations in seconds), so a change of spelling
(``2s`` or ``2000ms``, a default written out) is no change.

What a change resets is what the sidecars' core resets when the new version
arrives (``Cluster::apply`` in ``crates/seawall-proxy``, and
docs/proxy/sidecar.md, "What a new config keeps"): a breaker turned off, a new
breaker window, a new retry-budget ttl or a budget turned off, outlier
detection turned off, another load balancer, a service that leaves the mesh.
Everything else keeps its state. What needs a restart is what a running
process cannot change: the ports its listeners are bound to, its worker
threads, and the command ``seawall up`` runs an app with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .._changes import MISSING, changed_settings
from .model import MeshConfig

__all__ = ["MISSING", "Change", "describe", "diff", "summary"]


@dataclass(frozen=True)
class Change:
    """One setting (or one added or removed section) that differs."""

    path: str
    """Dotted, from the top of mesh.yaml: ``policies.payments.circuit_breaker.failure_rate``."""
    before: Any
    after: Any
    restart: str | None = None
    """Why the change waits for a restart, and of what; ``None``: applied live."""
    resets: tuple[str, ...] = ()
    """The state the change resets, ``<destination>: <what>``, in every caller's sidecar."""

    @property
    def kind(self) -> str:
        """``+`` added, ``-`` removed, ``~`` changed."""
        if self.before is MISSING:
            return "+"
        if self.after is MISSING:
            return "-"
        return "~"

    def to_dict(self) -> dict[str, Any]:
        def value(v: Any) -> Any:
            return None if v is MISSING else v

        return {
            "path": self.path,
            "change": {"+": "added", "-": "removed", "~": "changed"}[self.kind],
            "before": value(self.before),
            "after": value(self.after),
            "restart": self.restart,
            "resets": list(self.resets),
        }


_LISTENER = re.compile(r"services\.([^.]+)\.sidecar\.(inbound|outbound|admin|upstreams)(\..*)?$")
_RUN = re.compile(r"services\.([^.]+)\.run(\..*)?$")
_POLICY = re.compile(r"policies\.([^.]+)(?:\.(.*))?$")
_SERVICE = re.compile(r"services\.([^.]+)$")
_EXTERNAL = re.compile(r"external\.([^.]+)(?:\.(tls|ca_file|server_name))?$")


def _restart(path: str) -> str | None:
    if m := _LISTENER.match(path):
        return f"the sidecar of {m.group(1)}: listener ports are bound when it starts"
    if path == "sidecar.workers":
        return "every sidecar: worker threads start with the process"
    if m := _RUN.match(path):
        return f"the app of {m.group(1)}: `seawall up` restarts that service's instances"
    return None


def _enabled(section: Any) -> bool:
    return isinstance(section, dict) and bool(section.get("enabled", True))


def _resets(path: str, before: Any, after: Any) -> tuple[str, ...]:
    if (m := _SERVICE.match(path)) and after is MISSING:
        return (f"{m.group(1)}: everything (it leaves the mesh)",)
    if m := _EXTERNAL.match(path):
        if m.group(2) is None and after is MISSING:
            return (f"{m.group(1)}: everything (no longer declared)",)
        if m.group(2) is not None:
            return (f"{m.group(1)}: everything (its TLS origination changed)",)
        return ()
    m = _POLICY.match(path)
    if m is None or m.group(2) is None:
        return ()
    name, rest = m.group(1), m.group(2)
    if rest == "load_balancer":
        return (f"{name}: balancer estimates",)
    if rest == "circuit_breaker.enabled" and before is True and after is False:
        return (f"{name}: circuit breaker",)
    if rest == "circuit_breaker" and _enabled(before) and not _enabled(after):
        return (f"{name}: circuit breaker",)
    if rest.startswith("circuit_breaker.window"):
        return (f"{name}: breaker window",)
    if rest == "retry.budget.ttl" or (rest == "retry.budget" and after is None):
        return (f"{name}: retry budget",)
    if rest == "outlier.enabled" and before is True and after is False:
        return (f"{name}: outlier ejections",)
    if rest == "outlier" and _enabled(before) and not _enabled(after):
        return (f"{name}: outlier ejections",)
    return ()


def diff(before: MeshConfig, after: MeshConfig) -> list[Change]:
    """Every setting that differs, in document order (the new document's for additions)."""
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    changes = []
    for path, b, a in changed_settings(old, new):
        resets = _resets(path, b, a)
        destinations = {*new["services"], *new.get("external", {})}
        if (m := _POLICY.match(path)) and m.group(1) not in destinations:
            resets = ()  # a removed service's policy: said once, with the service
        changes.append(Change(path, b, a, _restart(path), resets))
    return changes


def _short(value: Any) -> str:
    """A value as mesh.yaml's JSON form spells it, cut at 60 characters."""
    if value is MISSING:
        return "(none)"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def describe(change: Change) -> str:
    """One line: ``~ path: before -> after``, then what it needs and resets."""
    if change.kind == "+":
        line = f"+ {change.path}: {_short(change.after)}"
    elif change.kind == "-":
        line = f"- {change.path}"
    else:
        line = f"~ {change.path}: {_short(change.before)} -> {_short(change.after)}"
    notes = []
    if change.restart:
        notes.append(f"restart: {change.restart}")
    if change.resets:
        notes.append("resets: " + ", ".join(change.resets))
    return line + ("".join(f"\n    {n}" for n in notes))


def summary(changes: list[Change]) -> str:
    """The closing line: how many changes, restarts and resets."""
    if not changes:
        return "no change"
    restarts = sorted({c.restart for c in changes if c.restart})
    resets = sorted({r for c in changes for r in c.resets})
    def count(n: int, one: str, many: str) -> str:
        return f"{n} {one if n == 1 else many}"

    return "; ".join(
        [
            count(len(changes), "change", "changes"),
            count(len(restarts), "restart needed", "restarts needed")
            if restarts
            else "all applied live",
            count(len(resets), "state reset", "state resets") if resets else "no state reset",
        ]
    )
