"""The long-running managed sidecar process: the Rust core and the control link.

``seawall sidecar --control URL`` (:mod:`seawall.proxy.managed`) gets the
first config, endpoints and certificate, then replaces itself with this
process, handing over what it prepared in an anonymous memory file. Like the
static sidecar's process (:mod:`seawall.proxy.serve`), it imports nothing
heavy: the core serves on threads of its own, the control link's loops
(:class:`~seawall.proxy.control_link.ControlLink`) run on three threads, and
the main thread waits for signals and trims the allocator.

* A pushed snapshot that changes only endpoint sets is merged here and the
  sets are replaced in place: breakers, budgets, pools and ejections carry on.
* A snapshot with a new config is validated by a short-lived child
  (``python -m seawall.proxy.managed snapshot``) and swapped in whole; an
  invalid one is refused, said on stderr, and the running config kept.
* A certificate renewal is done by a child (``... certificate``): the key
  stays in the identity directory, the child makes the CSR and checks the
  answer; the new certificate then rotates into the live listeners.
* SIGTERM or SIGINT: revoke the lease (out of every endpoint set at once),
  then drain for ``sidecar.drain_grace``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from .child import run_python
from .control_link import (
    ControlClient,
    ControlLink,
    InstanceSpec,
    edge_states,
    ejected_endpoints,
    merge_endpoints,
)
from .events import EventLog
from .memory import Trimmer
from .serve import change_summary, log, log_restart, restart_needed, run_until_stopped

__all__ = ["Managed", "identity_pem", "main"]


def identity_pem(directory: str | os.PathLike[str]) -> tuple[bytes, bytes, bytes]:
    """(certificate, key, CA bundle) as an installed identity wrote them."""

    def read(name: str) -> bytes:
        with open(os.path.join(directory, name), "rb") as f:
            return f.read()

    return read("cert.pem"), read("key.pem"), read("ca.pem")


class Managed:
    """The core of one managed sidecar, and what its control link calls back."""

    def __init__(self, handoff: dict[str, Any], events: EventLog) -> None:
        from .. import _native  # noqa: PLC0415 - the extension module, loaded once here

        self.handoff = handoff
        self.events = events
        self.service: str = handoff["service"]
        self.config: Any = handoff["config"]  # the running snapshot's config part
        self.static: dict[str, list[dict[str, Any]]] = handoff["static"]
        self.version: int = handoff["version"]
        self.trust_domain: str = handoff["trust_domain"]
        self.identity: str = handoff["identity"]
        self.cert: dict[str, Any] = handoff["certificate"]
        spec = handoff["spec"]
        spec["config_version"] = self.version
        self.started = spec
        self.spec_config: dict[str, Any] = spec["config"]
        self.restart: list[str] = []
        self.drain_grace = float(spec["drain_grace"])
        first = handoff.get("snapshot") or {}
        try:
            self.sets = merge_endpoints(self.static, first.get("endpoints"))
        except ValueError:
            self.sets = {name: list(items) for name, items in self.static.items()}
        cert, key, bundle = identity_pem(self.identity)
        self.core = _native.Sidecar(
            json.dumps(spec),
            workers=int(handoff["workers"]),
            cert=cert,
            key=key,
            bundle=bundle,
            log_format=events.format,
        )

    def _child(self, kind: str, request: dict[str, Any]) -> dict[str, Any]:
        payload = {"service": self.service, "options": self.handoff["options"], **request}
        out, errors = run_python(
            ["-m", "seawall.proxy.managed", kind], json.dumps(payload).encode("utf-8")
        )
        if out is None:
            raise ValueError(errors)
        answer: dict[str, Any] = json.loads(out)
        return answer

    def apply(self, snapshot: dict[str, Any]) -> int:
        """Swap in a snapshot; its config version. ``ValueError``: refused, nothing changed."""
        config = snapshot.get("config")
        if config == self.config:  # only the registry changed: update the sets in place
            sets = merge_endpoints(self.static, snapshot.get("endpoints"))
            self.core.set_endpoints(json.dumps(sets))
            self._note_instances(sets)
            return self.version
        answer = self._child("snapshot", {"snapshot": snapshot})
        spec = answer["spec"]
        spec["config_version"] = answer["version"]
        spec["restart_needed"] = restart = restart_needed(self.started, spec)
        before = self.spec_config
        applied = self.core.apply(json.dumps(spec))
        log_restart(self.events, restart)
        self.events.event(
            "config_applied",
            version=answer["version"],
            state_resets=len(applied[1]),
            **change_summary(before, spec["config"]),
        )
        self.spec_config = spec["config"]
        self.restart = restart
        self.config, self.static, self.version = config, answer["static"], answer["version"]
        self.trust_domain = answer["trust_domain"]
        self.drain_grace = float(answer["spec"]["drain_grace"])
        self._note_instances(merge_endpoints(self.static, snapshot.get("endpoints")))
        return self.version

    def _note_instances(self, sets: dict[str, list[dict[str, Any]]]) -> None:
        """An ``instance_joined`` or ``instance_left`` event per endpoint that came or
        went since the last snapshot (rate-limited per service)."""
        for service in sorted(self.sets.keys() | sets.keys()):
            old = {(e["address"], e["port"]): e for e in self.sets.get(service, [])}
            new = {(e["address"], e["port"]): e for e in sets.get(service, [])}
            for event, keys, side in (
                ("instance_joined", new.keys() - old.keys(), new),
                ("instance_left", old.keys() - new.keys(), old),
            ):
                for address, port in sorted(keys):
                    self.events.event(
                        event,
                        service,
                        limited=True,
                        endpoint=f"{address}:{port}",
                        subset=side[(address, port)].get("subset"),
                    )
        self.sets = sets

    def renew(self) -> str:
        """A new certificate, rotated into the live listeners; its serial."""
        self.cert = self._child(
            "certificate", {"identity": self.identity, "trust_domain": self.trust_domain}
        )
        self.core.set_identity(*identity_pem(self.identity))
        return str(self.cert["serial"])

    def renew_at(self) -> float:
        return float(self.cert["renew_at"])

    def certificate(self) -> tuple[str | None, float | None]:
        return str(self.cert["serial"]), float(self.cert["not_after"])

    def ejected(self) -> list[str]:
        return ejected_endpoints(self.core.clusters())

    def restart_needed(self) -> list[str]:
        return self.restart

    def edges(self) -> dict[str, dict[str, Any]]:
        return edge_states(self.core.clusters())


USAGE = "usage: python -m seawall.proxy.linked --handoff-fd FD (run by `seawall sidecar`)"


def main(argv: list[str] | None = None) -> int:
    """Serve the managed sidecar that :func:`seawall.proxy.managed.run_linked` prepared."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "--handoff-fd" or not args[1].isdigit():
        sys.stderr.write(USAGE + "\n")
        return 2
    trimmer = Trimmer()  # before the core allocates anything
    with os.fdopen(int(args[1]), "rb") as file:
        handoff: dict[str, Any] = json.loads(file.read())
    options = handoff["options"]
    try:
        events = EventLog(handoff["service"], options.get("log_format", "text"))
        managed = Managed(handoff, events)
    except (OSError, ValueError) as exc:
        log(str(exc))
        return 2
    link = ControlLink(
        ControlClient(options["urls"], options["token"]),
        InstanceSpec(**handoff["instance"]),
        options["state_dir"],
        apply=managed.apply,
        ejected=managed.ejected,
        certificate=managed.certificate,
        restart_needed=managed.restart_needed,
        edges=managed.edges,
        ttl=float(options["lease_ttl"]),
        log=events,
    )
    if handoff["snapshot"] is not None:
        link.record(handoff["snapshot"], managed.version, persist=True)
    ports = ", ".join(f"{name}={port}" for name, port in managed.core.ports())
    events.message(f"serving {managed.service} on the Rust core: {ports}", "serving")

    def certificates() -> None:
        link.keep_certificate(managed.renew_at, managed.renew)

    link.start(link.subscribe, link.keep_lease, certificates)

    def on_hup(now: float) -> None:
        events.message(
            "SIGHUP ignored: a managed sidecar takes its config from the control plane", "signal"
        )

    run_until_stopped(trimmer.tick, on_hup)
    events.message("draining", "draining")
    link.deregister()  # out of every endpoint set now, not at lease expiry
    managed.core.drain(managed.drain_grace)
    events.message(f"stopped after {time.time() - float(handoff['started']):.0f}s", "stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
