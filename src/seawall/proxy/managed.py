"""A sidecar managed by the control plane: ``seawall sidecar --control URL``.

:func:`run_linked` starts the Rust core (:class:`~seawall.proxy.core.CoreSidecar`)
with a config, endpoints and certificate that come from the control plane
through a :class:`~seawall.proxy.control_link.ControlLink`:

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
3. **Serving.** Listeners open; the link's loops (subscribe, lease, renew)
   run beside them. A new snapshot is applied atomically, its endpoint sets
   replacing the config's static ones.

The instance registered is ``<address>:<inbound port>``, with ``--subset``;
``--app-port`` and the ``--*-port`` options let several instances of one
service (a canary beside the stable version) run on one host.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, MeshConfig, load_mesh, parse_mesh
from ..policy.backoff import backoff
from .control_link import (
    ControlClient,
    ControlLink,
    ControlRefused,
    ControlUnavailable,
    InstanceSpec,
    instance_id,
    load_snapshot,
)
from .core import CoreSidecar
from .identity import Identity, IdentityError
from .memory import Trimmer
from .sidecar import install_uvloop
from .spec import EndpointSpec

EndpointSets = dict[str, list[EndpointSpec]]
"""Endpoints by destination service, as the control plane pushes them."""

__all__ = ["LinkOptions", "config_from_snapshot", "run_linked"]

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
    raw = snapshot.get("endpoints") or {}
    if not isinstance(raw, dict):
        raise ValueError("snapshot.endpoints: must be an object")
    sets: EndpointSets = {}
    for name, svc in config.services.items():
        static: list[EndpointSpec] = [
            {"address": e.address, "port": e.port, "subset": e.subset, "weight": e.weight}
            for e in svc.endpoints
        ]
        seen = {(e["address"], e["port"]) for e in static}
        registered: list[EndpointSpec] = []
        for i, item in enumerate(raw.get(name) or []):
            try:
                address, port = str(item["address"]), int(item["port"])
                subset = item.get("subset")
                if subset is not None and not isinstance(subset, str):
                    raise ValueError(f"subset must be a string, got {subset!r}")
                if not 0 < port < 65536:
                    raise ValueError(f"port must be 1..65535, got {port}")
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"snapshot.endpoints.{name}[{i}]: {exc}") from None
            if (address, port) not in seen:
                seen.add((address, port))
                registered.append({"address": address, "port": port, "subset": subset, "weight": 1})
        sets[name] = static + registered
    return with_instance_ports(config, service, options), sets, int(pushed.get("version") or 0)


async def _first_snapshot(
    link: ControlLink, state: Path, bootstrap: str | None
) -> dict[str, Any] | MeshConfig:
    """The control plane's snapshot, else the persisted one, else the bootstrap file."""
    failures, delay = 0, 0.0
    while True:
        try:
            snapshot = await link.fetch(0.0)
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
        delay = _WAIT.delay(min(failures, 30), delay, link.rng)
        await asyncio.sleep(delay)


async def _identity(
    link: ControlLink, directory: Path, service: str, trust_domain: str
) -> Identity:
    """A persisted valid identity, or a new certificate from the control plane."""
    try:
        identity = Identity.load(directory)
    except IdentityError as exc:
        _log(f"persisted certificate not usable ({exc}); asking for a new one")
        identity = None
    if (
        identity is not None
        and identity.service == service
        and identity.trust_domain == trust_domain
    ):
        return identity
    identity = Identity.create(directory, trust_domain)
    failures, delay = 0, 0.0
    while True:
        try:
            answer = await link.request_certificate(identity.csr_pem(service))
            identity.install(answer["certificate"].encode(), answer["ca"].encode())
            return identity
        except (ControlUnavailable, ControlRefused, IdentityError) as exc:
            failures += 1
            if failures == 1 or failures % 20 == 0:
                _log(f"no certificate yet ({exc}); retrying")
            delay = _WAIT.delay(min(failures, 30), delay, link.rng)
            await asyncio.sleep(delay)


async def _trim(trimmer: Trimmer) -> None:
    """Give memory freed by the core back to the OS, once a second."""
    while True:
        await asyncio.sleep(trimmer.every)
        trimmer.tick(time.monotonic())


async def serve_linked(
    service: str, options: LinkOptions, bootstrap: str | None, workers: int | None = None
) -> int:
    """Run the managed sidecar until SIGTERM (see the module docstring)."""
    client = ControlClient(options.urls, options.token)
    try:
        return await _serve_linked(client, service, options, bootstrap, workers)
    finally:
        await client.aclose()


async def _serve_linked(
    client: ControlClient,
    service: str,
    options: LinkOptions,
    bootstrap: str | None,
    workers: int | None,
) -> int:
    state = Path(options.state_dir)
    holder: dict[str, CoreSidecar] = {}
    trimmer = Trimmer()  # before the core allocates anything

    def apply(snapshot: dict[str, Any]) -> int:
        config, endpoints, version = config_from_snapshot(snapshot, service, options)
        sidecar = holder.get("sidecar")
        if sidecar is not None:
            sidecar.apply(config, endpoints)
        return version

    link = ControlLink(
        client,
        InstanceSpec("pending", service, "127.0.0.1", 1),
        state,
        apply=apply,
        ejected=lambda: holder["sidecar"].ejected() if "sidecar" in holder else [],
        ttl=options.lease_ttl,
    )
    first = await _first_snapshot(link, state, bootstrap)
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
    link.instance = InstanceSpec(
        instance_id(state, service),
        service,
        options.address or svc.host,
        svc.sidecar.inbound,
        options.subset,
        dict(options.metadata),
    )
    identity = await _identity(link, state / "identity", service, config.trust_domain)
    link.certificate = lambda: (format(identity.serial, "x"), identity.not_after.timestamp())
    try:
        sidecar = CoreSidecar(
            config,
            service,
            endpoints=endpoints,
            identity=identity.directory,
            workers=workers or config.sidecar.workers,
        )
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"seawall sidecar: {exc}\n")
        return 2
    holder["sidecar"] = sidecar
    if isinstance(first, dict):
        link.record(first, version, persist=True)
    ports = ", ".join(f"{name}={port}" for name, port in sidecar.ports().items())
    _log(f"serving {service} on the Rust core: {ports}")

    def install(cert_pem: bytes, ca_pem: bytes) -> None:
        identity.install(cert_pem, ca_pem)  # checked and written to the identity directory
        sidecar.set_identity(identity.directory)  # new handshakes use it; open ones carry on
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    tasks = [
        loop.create_task(link.subscribe()),
        loop.create_task(link.keep_lease()),
        loop.create_task(
            link.keep_certificate(
                lambda: identity.csr_pem(service),
                install,
                lambda: identity.renew_at.timestamp(),  # noqa: PLW0108 - read at each call
            )
        ),
        loop.create_task(_trim(trimmer)),
    ]
    await stop.wait()
    _log("draining")
    for task in tasks:  # first: a renewal in flight must not register us again
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    await link.deregister()  # out of every endpoint set now, not at lease expiry
    await sidecar.drain(sidecar.config.sidecar.drain_grace)
    return 0


def run_linked(
    service: str, options: LinkOptions, *, bootstrap: str | None = None, workers: int | None = None
) -> int:
    """Run a sidecar managed by the control plane; returns the exit status."""
    if bootstrap is not None:
        try:
            load_mesh(Path(bootstrap))
        except ConfigError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
    state = Path(options.state_dir)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    # One sidecar per state directory: two would share an instance id and
    # evict each other's registration at every renewal.
    with open(state / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            sys.stderr.write(
                f"seawall sidecar: {state} is in use by another sidecar; "
                "give each instance its own --state-dir\n"
            )
            return 2
        install_uvloop()
        started = time.monotonic()
        code = asyncio.run(serve_linked(service, options, bootstrap, workers))
        _log(f"stopped after {time.monotonic() - started:.0f}s")
        return code
