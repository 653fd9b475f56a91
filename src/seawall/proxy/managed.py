"""A sidecar managed by the control plane: ``seawall sidecar --control URL``.

:func:`run_linked` gets a config, endpoints and a certificate from the
control plane, then replaces itself with the long-running process
(:mod:`seawall.proxy.linked`), which serves on the Rust core and keeps a
:class:`~seawall.proxy.control_link.ControlLink` beside it:

1. **Config.** It asks the control plane for the current snapshot. If no
   replica answers, it uses the snapshot it persisted last time in its state
   directory (static stability: a sidecar restarting during a control-plane
   outage comes up with its last good config and endpoints), else the
   ``--config`` file as a bootstrap, else it waits, retrying with backoff.
2. **Identity.** Its private key is created once in ``<state_dir>/identity``
   and never leaves it. A valid persisted certificate is used as is; otherwise
   it sends a CSR with its join token and installs the answer before opening
   any listener (it cannot serve mTLS without one). Renewal runs in the
   background at two thirds of the certificate's life; new connections use
   the new certificate, open ones keep theirs.
3. **Serving.** The long-running process opens the listeners; the link's
   loops (subscribe, lease, renew) run beside them on threads. A new snapshot
   is applied atomically, its endpoint sets replacing the config's static ones.

Why two processes' worth of code: the config model (pydantic) and
``cryptography`` cost a Python process 40 MB or more, which an idle sidecar
cannot carry (the target is 20 MB in all). So this module, which imports
them, runs once at start; after that, a pushed snapshot whose config changed
is validated by a short-lived child (``python -m seawall.proxy.managed
snapshot``), and a renewal's CSR is made and its certificate checked by
another (``... certificate``). A push that changes only endpoint sets needs
no child: it is merged in the long-running process.

The instance registered is ``<address>:<inbound port>``, with ``--subset``;
``--app-port`` and the ``--*-port`` options let several instances of one
service (a canary beside the stable version) run on one host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, MeshConfig, load_mesh, parse_mesh
from ..config.names import ADMIN_PORT_LABEL, instance_service, new_instance_id
from ..policy.backoff import backoff
from .control_link import (
    ControlClient,
    ControlLink,
    ControlRefused,
    ControlUnavailable,
    EndpointSets,
    InstanceSpec,
    load_snapshot,
    merge_endpoints,
    request_certificate,
)
from .identity import Identity, IdentityError
from .spec import sidecar_spec

INSTANCE_ID_FILE = "instance-id"

__all__ = ["LinkOptions", "config_from_snapshot", "instance_id", "run_linked", "static_sets"]

_WAIT = backoff("full", base=0.2, max=5.0)


def _log(message: str) -> None:
    sys.stderr.write(f"seawall sidecar [{os.getpid()}]: {message}\n")
    sys.stderr.flush()


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """How a sidecar reaches the control plane and what instance it is."""

    urls: list[str]
    token: str
    state_dir: str
    subset: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)  # registered with the instance
    address: str | None = None  # default: the service's `host` in the config
    app_port: int | None = None  # defaults: the service's ports in the config
    inbound_port: int | None = None
    outbound_port: int | None = None
    admin_port: int | None = None
    lease_ttl: float = 10.0
    log_format: str = "text"  # the long-running process's event log: text or json
    listen: str | None = None  # inbound and admin bind here (default: `host`, 127.0.0.1)
    traces_endpoint: str | None = None  # spans go here (default: tracing's endpoint)


def with_instance_ports(config: MeshConfig, service: str, options: LinkOptions) -> MeshConfig:
    """``config`` with this instance's own ports for ``service`` (when the options give any)."""
    svc = config.services[service]
    ports = {
        key: value
        for key, value in (
            ("inbound", options.inbound_port),
            ("outbound", options.outbound_port),
            ("admin", options.admin_port),
        )
        if value is not None
    }
    if not ports and options.app_port is None:
        return config
    update: dict[str, Any] = {"sidecar": svc.sidecar.model_copy(update=ports)}
    if options.app_port is not None:
        update["port"] = options.app_port
    services = {**config.services, service: svc.model_copy(update=update)}
    return config.model_copy(update={"services": services})


def instance_spec(
    config: MeshConfig,
    service: str,
    options: LinkOptions,
    endpoints: EndpointSets | None = None,
) -> dict[str, Any]:
    """The core's spec of this instance: the service's, with ``--listen-address`` and
    ``--traces-endpoint`` when given (``seawall up --netns``: an instance in a network
    namespace of its own serves on that namespace's address, and reaches the collector
    outside it)."""
    spec = sidecar_spec(config, service, endpoints=endpoints)
    if options.listen is not None:
        for name in ("inbound", "admin"):
            spec["listeners"][name][0] = options.listen
    if options.traces_endpoint is not None and spec["tracing"] is not None:
        spec["tracing"]["endpoint"] = options.traces_endpoint
    return spec


def config_from_snapshot(
    snapshot: dict[str, Any], service: str, options: LinkOptions
) -> tuple[MeshConfig, EndpointSets, int]:
    """Validate a pushed snapshot: (config, endpoint sets, config version).

    Raises :class:`ValueError` (a :class:`~seawall.config.ConfigError` for the
    config itself) when anything in it is invalid; nothing is applied then.
    """
    pushed = snapshot.get("config")
    if not isinstance(pushed, dict) or not isinstance(pushed.get("document"), dict):
        raise ValueError("snapshot: no config document")
    config = parse_mesh(pushed["document"])
    if service not in config.services:
        raise ValueError(f"snapshot: the mesh no longer has service {service!r}")
    sets = merge_endpoints(static_sets(config), snapshot.get("endpoints"))
    return with_instance_ports(config, service, options), sets, int(pushed.get("version") or 0)


def static_sets(config: MeshConfig) -> EndpointSets:
    """Each service's endpoints as the config lists them (registered ones come on top)."""
    return {
        name: [
            {"address": e.address, "port": e.port, "subset": e.subset, "weight": e.weight}
            for e in svc.endpoints
        ]
        for name, svc in config.services.items()
    }


def instance_id(state_dir: Path, service: str) -> str:
    """This instance's id, kept across restarts (a restart replaces its registration)."""
    path = state_dir / INSTANCE_ID_FILE
    with contextlib.suppress(OSError):
        saved = path.read_text(encoding="ascii").strip()
        if instance_service(saved) == service:
            return saved  # an id of the older form ("<service>-<hex>") is replaced
    new = new_instance_id(service)
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n", encoding="ascii")
    return new


def _first_snapshot(
    link: ControlLink, state: Path, bootstrap: str | None, rng: random.Random
) -> dict[str, Any] | MeshConfig:
    """The control plane's snapshot, else the persisted one, else the bootstrap file."""
    failures, delay = 0, 0.0
    while True:
        try:
            snapshot = link.fetch(0.0)
            if snapshot is not None and snapshot.get("config") is not None:
                return snapshot
            why = "the control plane has no config yet (seawall apply -f mesh.yaml)"
        except (ControlUnavailable, ControlRefused) as exc:
            why = f"the control plane is unreachable ({exc})"
        persisted = load_snapshot(state)
        if persisted is not None:
            _log(f"starting with the persisted snapshot: {why}")
            return persisted
        if bootstrap is not None:
            _log(f"starting with {bootstrap}: {why}")
            return load_mesh(Path(bootstrap))
        if failures == 0:
            _log(f"{why}; waiting")
        failures += 1
        delay = _WAIT.delay(min(failures, 30), delay, rng)
        time.sleep(delay)


def _persisted(directory: Path) -> Identity | None:
    """The identity a previous run installed, or ``None`` (none, or unusable: said why)."""
    try:
        return Identity.load(directory)
    except IdentityError as exc:
        _log(f"persisted certificate not usable ({exc}); asking for a new one")
        return None


def _certificate(
    client: ControlClient,
    directory: Path,
    service: str,
    trust_domain: str,
    persisted: Identity | None,
) -> Identity:
    """One CSR sent, its certificate checked and installed (the persisted key kept if it
    is usable for ``trust_domain``)."""
    identity = persisted
    if identity is None or identity.trust_domain != trust_domain:
        identity = Identity.create(directory, trust_domain)
    answer = request_certificate(client, identity.csr_pem(service))
    identity.install(str(answer["certificate"]).encode(), str(answer["ca"]).encode())
    return identity


def _identity(
    client: ControlClient, directory: Path, service: str, trust_domain: str, rng: random.Random
) -> Identity:
    """A persisted valid identity, or a new certificate from the control plane (retried)."""
    identity = _persisted(directory)
    if (
        identity is not None
        and identity.service == service
        and identity.trust_domain == trust_domain
    ):
        return identity
    failures, delay = 0, 0.0
    while True:
        try:
            return _certificate(client, directory, service, trust_domain, identity)
        except (ControlUnavailable, ControlRefused, IdentityError) as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                _log(f"no certificate yet ({exc}); retrying")
            delay = _WAIT.delay(min(failures, 30), delay, rng)
            time.sleep(delay)


def _certificate_facts(identity: Identity) -> dict[str, Any]:
    return {
        "serial": format(identity.serial, "x"),
        "not_after": identity.not_after.timestamp(),
        "renew_at": identity.renew_at.timestamp(),
    }


def _prepare(
    service: str, options: LinkOptions, bootstrap: str | None, workers: int | None
) -> dict[str, Any] | int:
    """Everything the long-running process starts from (see :mod:`seawall.proxy.linked`),
    or an exit status."""
    rng = random.Random()
    state = Path(options.state_dir)
    client = ControlClient(options.urls, options.token)
    link = ControlLink(
        client,
        InstanceSpec("pending", service, "127.0.0.1", 1),
        state,
        apply=lambda snapshot: 0,
        ejected=list,
        ttl=options.lease_ttl,
    )
    first = _first_snapshot(link, state, bootstrap, rng)
    if isinstance(first, MeshConfig):
        config, endpoints, version = with_instance_ports(first, service, options), None, 0
    else:
        try:
            config, endpoints, version = config_from_snapshot(first, service, options)
        except ValueError as exc:
            sys.stderr.write(f"seawall sidecar: the snapshot is not usable: {exc}\n")
            return 2
    if service not in config.services:
        sys.stderr.write(f"seawall sidecar: no service {service!r} in mesh {config.mesh!r}\n")
        return 2
    svc = config.services[service]
    # the admin port, for the control plane's SLO scrapes (the config's may not be ours)
    metadata = {**options.metadata, ADMIN_PORT_LABEL: str(svc.sidecar.admin)}
    instance = InstanceSpec(
        instance_id(state, service),
        service,
        options.address or svc.host,
        svc.sidecar.inbound,
        options.subset,
        metadata,
    )
    identity = _identity(client, state / "identity", service, config.trust_domain, rng)
    try:
        spec = instance_spec(config, service, options, endpoints)
    except ValueError as exc:
        sys.stderr.write(f"seawall sidecar: {exc}\n")
        return 2
    return {
        "service": service,
        "options": dataclasses.asdict(options),
        "workers": workers or config.sidecar.workers,
        "instance": instance._asdict(),
        "spec": spec,
        "static": static_sets(config),
        "config": None if isinstance(first, MeshConfig) else first.get("config"),
        "snapshot": None if isinstance(first, MeshConfig) else first,
        "version": version,
        "trust_domain": config.trust_domain,
        "identity": str(identity.directory),
        "certificate": _certificate_facts(identity),
        "started": time.time(),
    }


def run_linked(
    service: str, options: LinkOptions, *, bootstrap: str | None = None, workers: int | None = None
) -> int:
    """Run a sidecar managed by the control plane: prepare, then become the long-running
    process (:mod:`seawall.proxy.linked`). Returns an exit status only if it cannot start."""
    if bootstrap is not None:
        try:
            load_mesh(Path(bootstrap))
        except ConfigError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
    state = Path(options.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    # One sidecar per state directory: two would share an instance id and
    # evict each other's registration at every renewal. The lock's file stays
    # open (inherited) in the long-running process, and the lock with it.
    lock = os.open(state / "lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        sys.stderr.write(
            f"seawall sidecar: {state} is in use by another sidecar; "
            "give each instance its own --state-dir\n"
        )
        return 2
    prepared = _prepare(service, options, bootstrap, workers)
    if isinstance(prepared, int):
        return prepared
    os.set_inheritable(lock, True)
    fd = os.memfd_create("seawall-handoff", 0)  # inherited by the process exec'd below
    os.write(fd, json.dumps(prepared).encode("utf-8"))
    os.lseek(fd, 0, os.SEEK_SET)
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-P", "-m", "seawall.proxy.linked", "--handoff-fd", str(fd)]
    os.execv(sys.executable, argv)


# ------------------------------------------------------------------ children


def _child_snapshot(request: dict[str, Any]) -> dict[str, Any]:
    """Validate a pushed snapshot: the core's spec, static endpoint sets and version."""
    options = LinkOptions(**request["options"])
    config, endpoints, version = config_from_snapshot(
        request["snapshot"], request["service"], options
    )
    return {
        "spec": instance_spec(config, request["service"], options, endpoints),
        "static": static_sets(config),
        "version": version,
        "trust_domain": config.trust_domain,
    }


def _child_certificate(request: dict[str, Any]) -> dict[str, Any]:
    """A renewal: a CSR from the kept key, the new certificate checked and installed."""
    options = LinkOptions(**request["options"])
    client = ControlClient(options.urls, options.token)
    directory = Path(request["identity"])
    identity = _certificate(
        client, directory, request["service"], request["trust_domain"], _persisted(directory)
    )
    return _certificate_facts(identity)


CHILDREN = {"snapshot": _child_snapshot, "certificate": _child_certificate}


def main(argv: list[str] | None = None) -> int:
    """``python -m seawall.proxy.managed snapshot|certificate``: a request (JSON) on
    stdin, the answer (JSON) on stdout, exit 0; or the errors on stderr, exit 1."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in CHILDREN:
        sys.stderr.write("usage: python -m seawall.proxy.managed snapshot|certificate\n")
        return 2
    try:
        answer = CHILDREN[args[0]](json.loads(sys.stdin.buffer.read()))
    except (ValueError, KeyError, TypeError, ControlUnavailable, ControlRefused) as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    sys.stdout.write(json.dumps(answer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
