"""The sidecar process: listeners, config reloads, workers and graceful shutdown.

``seawall sidecar --config mesh.yaml --service NAME`` runs :func:`run`. It
opens the listeners of the service's sidecar (inbound, outbound, one per
``sidecar.upstreams`` destination, admin), serves with a :class:`Forwarder`,
and:

* reloads on SIGHUP (at once, whatever the file holds) and when the config
  file changes, once the change is complete (see :mod:`seawall.proxy.reload`:
  a file renamed over the path at once, a file written in place once it has
  been still for ``sidecar.reload_settle``; polled every 0.25 s): a valid new
  config is swapped in whole; an invalid one is reported with every error and
  the old one kept; in-flight requests finish on the config they started with;
* on SIGTERM (or SIGINT) stops accepting, lets in-flight requests finish for
  up to ``sidecar.drain_grace`` seconds, then closes everything;
* with ``--workers N`` (or ``sidecar.workers``) forks N processes that share
  the ports with SO_REUSEPORT; each serves its own admin endpoint on the
  shared admin port (a scrape reaches one worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ConfigError, ConfigIssue, MeshConfig, load_mesh
from .admin import Admin
from .forward import Forwarder
from .listener import ConnectionTimeouts, DownstreamConnection
from .metrics import SidecarMetrics
from .reload import READ, FileSignature, Reload, ReloadDebouncer, Snapshot, content_digest
from .runtime import EndpointSets, Runtime, build_runtime
from .tls import MeshListener, check_identity

if TYPE_CHECKING:
    from .identity import Identity

__all__ = ["POLL_INTERVAL", "Sidecar", "install_uvloop", "run"]

POLL_INTERVAL = 0.25
"""Seconds between two stats of the config file: a rename is applied within this."""


def _log(message: str) -> None:
    sys.stderr.write(f"seawall sidecar [{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class Sidecar:
    """One sidecar process serving one service of a mesh."""

    def __init__(
        self,
        config_path: Path | None,
        service: str,
        *,
        reuse_port: bool = False,
        identity: Identity | None = None,
        config: MeshConfig | None = None,
        endpoints: EndpointSets | None = None,
    ) -> None:
        """Serve ``service`` with the config in ``config_path`` (watched for changes), or
        with ``config`` and the pushed ``endpoints`` (a sidecar managed by the control
        plane: ``config_path`` is ``None`` and new configs arrive through :meth:`apply`)."""
        self.config_path = config_path
        self.service = service
        self.reuse_port = reuse_port
        loaded: Snapshot | None = None
        if config is None:
            if config_path is None:
                raise ValueError("Sidecar: give config_path or config")
            config, loaded = _load_file(config_path)
        elif config_path is not None:
            with contextlib.suppress(OSError):
                loaded = _read_file(config_path)[1]
        # mTLS: an identity (key + certificate) serves it; `mtls: strict` cannot do without.
        check_identity(config, service, identity)
        self.identity = identity
        self.metrics = SidecarMetrics(service)
        self.runtime: Runtime = build_runtime(
            config, service, metrics=self.metrics, endpoints=endpoints
        )
        self.metrics.gauges = lambda: [
            *(d.cluster.gauges() for d in self.runtime.destinations.values()),
            self.runtime.inbound.cluster.gauges(),
        ]
        self.forwarder = Forwarder(self.runtime, identity=identity)
        self.admin = Admin(lambda: self.runtime, lambda: self.ready)
        self.ready = False
        self.connections: set[DownstreamConnection] = set()
        self._servers: list[asyncio.AbstractServer] = []
        # Decides when a change to the config file is complete (None: no file to watch).
        self._debouncer: ReloadDebouncer | None = None
        if config_path is not None:
            self._debouncer = ReloadDebouncer(config.sidecar.reload_settle, loaded)
        self._stopping: asyncio.Event | None = None

    # -- config -----------------------------------------------------------

    def apply(self, config: MeshConfig, endpoints: EndpointSets | None = None) -> None:
        """Swap in a new config (and pushed endpoint sets) atomically.

        The new runtime is built whole before the swap; a request keeps the
        runtime it started with. Raises ``ValueError`` (nothing changes) when
        the config cannot be served, e.g. ``mtls: strict`` without an identity.
        """
        check_identity(config, self.service, self.identity)
        old = self.runtime
        if endpoints is not None and config.digest() == old.config.digest():
            # Only the registry changed: update the endpoint sets in place, so that
            # breakers, budgets, pools and outlier ejections carry on undisturbed.
            for name, dest in old.destinations.items():
                dest.cluster.set_endpoints(list(endpoints.get(name, ())))
            return
        runtime = build_runtime(config, self.service, metrics=self.metrics, endpoints=endpoints)
        if runtime.listeners != old.listeners:
            _log("listener ports changed: they take effect at the next restart")
        self.runtime = runtime
        self.forwarder.runtime = runtime
        asyncio.get_running_loop().call_later(60.0, old.close)

    def reload(self) -> bool:
        """Re-read the config file now, whatever it holds (SIGHUP); keep the old
        config if the new one is invalid."""
        if self.config_path is None:
            return False
        try:
            data, snapshot = _read_file(self.config_path)
        except OSError as exc:
            _log(f"config reload failed ({exc}), keeping the running config")
            return False
        if self._debouncer is not None:  # the watcher need not apply it again
            self._debouncer.loaded(asyncio.get_running_loop().time(), snapshot)
        return self._reload_from(data)

    def check_config_file(self, now: float) -> bool | None:
        """One poll of the config file at ``now`` (monotonic seconds): reload it if a
        change is complete. Returns what :meth:`reload` would, or ``None`` when the
        file was not reloaded."""
        if self.config_path is None or self._debouncer is None:
            return None
        debouncer = self._debouncer
        try:
            signature: FileSignature | None = FileSignature.of(self.config_path.stat())
        except OSError:
            signature = None
        if debouncer.on_stat(now, signature) is not READ:
            return None
        try:
            data, snapshot = _read_file(self.config_path)
        except OSError:
            debouncer.on_content(now, None)
            return None
        step = debouncer.on_content(now, snapshot)
        if not isinstance(step, Reload):
            return None
        how = "replaced" if step.reason == "replaced" else f"still for {debouncer.settle:g}s"
        _log(f"config file changed ({how}), reloading")
        return self._reload_from(data)

    def _reload_from(self, data: bytes) -> bool:
        try:
            config = load_mesh(data)
        except ConfigError as exc:
            _log(f"config reload rejected, keeping the running config:\n{exc}")
            return False
        if config.digest() == self.runtime.config.digest():
            return True
        try:
            self.apply(config)
        except ValueError as exc:  # e.g. `mtls: strict` and no identity
            _log(f"config reload rejected, keeping the running config: {exc}")
            return False
        if self._debouncer is not None:
            self._debouncer.settle = config.sidecar.reload_settle
        _log(f"config reloaded (digest {config.digest()[:12]})")
        return True

    # -- serving ----------------------------------------------------------

    def _factory(
        self, *, destination: str | None = None, inbound: bool = False, admin: bool = False
    ) -> DownstreamConnection:
        lim = self.runtime.config.limits
        timeouts = ConnectionTimeouts(lim.header_timeout, lim.body_timeout, lim.idle_timeout)
        conn = DownstreamConnection(
            self.admin.serve if admin else self.forwarder.serve,
            self.runtime.limits,
            timeouts,
            destination=destination,
            inbound=inbound,
            on_close=self.connections.discard,
        )
        self.connections.add(conn)
        return conn

    async def start(self) -> None:
        """Open every listener."""
        loop = asyncio.get_running_loop()
        rt = self.runtime
        for name, (host, port) in rt.listeners.items():
            if name == "admin":
                factory = lambda: self._factory(admin=True)  # noqa: E731
            elif name == "inbound":
                factory = lambda: self._factory(inbound=True)  # noqa: E731
            elif name.startswith("upstream:"):
                dest = name.split(":", 1)[1]
                factory = lambda dest=dest: self._factory(destination=dest)  # type: ignore[misc]  # noqa: E731
            else:
                factory = self._factory
            server: asyncio.AbstractServer
            if name == "inbound" and self.identity is not None:
                # mTLS (and plaintext too, if permissive) on one port: see seawall.proxy.tls
                server = await MeshListener.open(
                    factory,
                    host,
                    port,
                    identity=self.identity,
                    runtime=lambda: self.runtime,
                    metrics=self.metrics,
                    reuse_port=self.reuse_port,
                )
            else:
                server = await loop.create_server(
                    factory, host, port, reuse_port=self.reuse_port or None, backlog=1024
                )
            self._servers.append(server)
        _release_startup_memory()
        self.ready = True
        ports = ", ".join(f"{n}={p[1]}" for n, p in rt.listeners.items())
        _log(f"serving {self.service}: {ports}")

    async def sweep(self) -> None:
        """Enforce every connection's slowloris timeouts, a few times per shortest timeout."""
        loop = asyncio.get_running_loop()
        while True:
            lim = self.runtime.config.limits
            tick = min(0.5, lim.header_timeout / 4, lim.body_timeout / 4, lim.idle_timeout / 4)
            await asyncio.sleep(tick)
            now = loop.time()
            for conn in list(self.connections):
                conn.check(now)

    async def watch(self, interval: float = POLL_INTERVAL) -> None:
        """Reload the config file when a change to it is complete (polled every ``interval`` s).

        The I/O half of :class:`~seawall.proxy.reload.ReloadDebouncer`: a stat per
        poll, a read only when the debouncer asks for one.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            self.check_config_file(loop.time())

    async def drain(self, grace: float) -> None:
        """Stop accepting, wait up to ``grace`` s for in-flight requests, close the rest."""
        self.ready = False
        for server in self._servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + grace
        while any(c.task is not None for c in self.connections):
            if asyncio.get_running_loop().time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.close()
        self.runtime.close()


def _read_file(path: Path) -> tuple[bytes, Snapshot]:
    """The file's bytes and a snapshot of them (the signature from the same open file)."""
    with path.open("rb") as file:
        stat = os.fstat(file.fileno())
        data = file.read()
    return data, Snapshot(FileSignature.of(stat), content_digest(data))


def _load_file(path: Path) -> tuple[MeshConfig, Snapshot]:
    """Load the config file, and a snapshot of the bytes the config came from."""
    name = os.fspath(path)
    try:
        data, snapshot = _read_file(path)
    except OSError as exc:
        raise ConfigError([ConfigIssue(name, f"cannot read: {exc.strerror}")], name) from None
    try:
        return load_mesh(data), snapshot
    except ConfigError as exc:
        raise ConfigError(exc.errors, name) from None


async def _serve(config_path: Path, service: str, reuse_port: bool) -> int:
    sidecar = Sidecar(config_path, service, reuse_port=reuse_port)
    await sidecar.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, sidecar.reload)
    watcher = loop.create_task(sidecar.watch())
    sweeper = loop.create_task(sidecar.sweep())
    await stop.wait()
    watcher.cancel()
    sweeper.cancel()
    _log("draining")
    await sidecar.drain(sidecar.runtime.config.sidecar.drain_grace)
    return 0


def _exec_native(path: Path, service: str, config: MeshConfig, workers: int) -> int:
    """Replace this process with the lean one that serves on the Rust core.

    The spec built from the config validated here is handed over in an
    anonymous memory file, so it is validated once; the new process never
    imports the config model (see :mod:`seawall.proxy.serve`).
    """
    import json  # noqa: PLC0415

    from .spec import sidecar_spec  # noqa: PLC0415

    spec = json.dumps(sidecar_spec(config, service), separators=(",", ":")).encode()
    fd = os.memfd_create("seawall-spec", 0)  # no MFD_CLOEXEC: the new process reads it
    os.write(fd, spec)
    os.lseek(fd, 0, os.SEEK_SET)
    sys.stderr.flush()
    sys.stdout.flush()
    argv = [
        sys.executable, "-m", "seawall.proxy.serve", "--config", os.fspath(path),
        "--service", service, "--workers", str(workers), "--spec-fd", str(fd),
    ]
    os.execv(sys.executable, argv)


def _release_startup_memory() -> None:
    """Collect start-up garbage (config parsing, validation) and give freed heap back to the OS.

    An idle sidecar is mostly what start-up left behind; glibc keeps freed
    memory in its arenas unless asked to trim them.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # noqa: PLC0415 - start-up only

        ctypes.CDLL(None).malloc_trim(0)


def install_uvloop() -> None:
    """Use uvloop's event loop when it is installed (it is, with the ``mesh`` extra)."""
    with contextlib.suppress(ImportError):
        import uvloop  # noqa: PLC0415 - optional at import time, required in practice

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM if the supervising process dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes  # noqa: PLC0415 - only workers need it

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run(config_path: str, service: str, workers: int | None = None) -> int:
    """Run the sidecar of ``service`` until SIGTERM; returns the exit status."""
    path = Path(config_path)
    try:
        config = load_mesh(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    if service not in config.services:
        known = ", ".join(config.services)
        sys.stderr.write(f"{path}: no service {service!r} (services: {known})\n")
        return 2
    try:
        check_identity(config, service, None)
    except ValueError as exc:
        sys.stderr.write(f"{path}: {exc}\n")
        return 2
    count = workers or config.sidecar.workers
    if os.environ.get("SEAWALL_DATA_PLANE", "rust") == "rust":
        return _exec_native(path, service, config, count)
    install_uvloop()
    if count <= 1:
        return asyncio.run(_serve(path, service, reuse_port=False))
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            _die_with_parent()
            code = asyncio.run(_serve(path, service, reuse_port=True))
            os._exit(code)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status
