"""The ``seawall control`` process: a store, a CA, the tokens and the API on one listener.

:class:`ControlServer` opens the store (SQLite in the state directory by
default, or etcd), loads or creates the admin token, the join secret and the
CA, reads the current state, then serves the API (:mod:`seawall.control.api`)
on aiohttp's web server (:mod:`seawall.control.http_server`), and refreshes its
view after every change the store reports, its own and other replicas'. On
SIGTERM it stops accepting, answers the long-polls, lets requests in flight
finish, then closes the store.

The state directory holds::

    seawall.db      the SQLite store (when the store is SQLite)
    admin-token     the admin token, 0600, never printed (the CLI reads it)
    join-secret     the key behind join tokens, 0600
    ca.pem          the mesh CA certificate (unless --ca-cert is given)
    ca-key.pem      its private key, 0600 (unless --ca-key is given)
    control-url     where the last started server listens (read by the CLI)
    canaries.json   the progressive splits' rollouts (seawall.control.rollouts)

Several replicas share one mesh by sharing the etcd store and the state
directory's secrets (copy ``admin-token``, ``join-secret`` and the CA files,
or give the CA with ``--ca-cert``/``--ca-key``).

Chaos faults (a forced certificate expiry, :mod:`seawall.control.cert_faults`)
are kept in the memory of the replica they were forced on, not in the store: a
restart lifts them, and other replicas do not apply them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..config.model import AlertingConfig
from ..config.names import ADMIN_PORT_LABEL
from ..slo.history import SloHistory
from ..slo.monitor import SloMonitor, Target
from ..telemetry.store import TraceStoreError
from .api import ControlAPI
from .ca import CertificateAuthority
from .http_server import HttpServer
from .rollouts import CanaryController
from .store import Store, StoreError
from .tokens import Tokens

__all__ = ["DEFAULT_CERT_TTL", "ControlServer", "run"]

DEFAULT_CERT_TTL = 24 * 3600.0  # short-lived: a stolen key is useful for a day at most


def _log(message: str) -> None:
    sys.stderr.write(f"seawall control [{os.getpid()}]: {message}\n")
    sys.stderr.flush()


class ControlServer:
    """One control-plane replica."""

    def __init__(
        self,
        store: Store,
        state_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 7600,
        ca_cert: Path | None = None,
        ca_key: Path | None = None,
        cert_ttl: float = DEFAULT_CERT_TTL,
        slo_interval: float = 10.0,
        slo_resolution: float = 60.0,
    ) -> None:
        self.store = store
        self.slo_interval = slo_interval
        self.slo_resolution = slo_resolution
        self.slo: SloMonitor | None = None
        self.canaries: CanaryController | None = None
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.cert_ttl = cert_ttl
        self._ca_files = (ca_cert, ca_key)
        self._cas: dict[str, CertificateAuthority] = {}
        self.tokens: Tokens | None = None
        self.api: ControlAPI | None = None
        self._http: HttpServer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _ca(self, trust_domain: str) -> CertificateAuthority:
        ca = self._cas.get(trust_domain)
        if ca is None:
            cert, key = self._ca_files
            ca = CertificateAuthority.load_or_create(
                self.state_dir, trust_domain, cert_file=cert, key_file=key
            )
            self._cas[trust_domain] = ca
        return ca

    async def _issue(
        self, csr: bytes, service: str, trust_domain: str, ttl: float | None = None, /
    ) -> dict[str, Any]:
        """Sign ``csr`` for ``service``, for ``ttl`` seconds (a chaos fault's) or, by
        default, ``--cert-ttl`` (never longer)."""
        from cryptography import x509  # noqa: PLC0415 - only when a certificate is asked for

        ca = self._ca(trust_domain)
        lifetime = self.cert_ttl if ttl is None else min(ttl, self.cert_ttl)
        pem = ca.issue(csr, service, ttl=lifetime)
        cert = x509.load_pem_x509_certificate(pem)
        return {
            "certificate": pem.decode("ascii"),
            "ca": ca.ca_pem.decode("ascii"),
            "spiffe_id": ca.spiffe_id(service),
            "serial": format(cert.serial_number, "x"),
            "not_after": cert.not_valid_after_utc.timestamp(),
        }

    def _ca_pem(self) -> bytes:
        api = self.api
        domain = api.mesh.trust_domain if api is not None and api.mesh is not None else None
        return self._ca(domain or "seawall.local").ca_pem

    async def start(self) -> None:
        """Open the store, load secrets and CA, read the state, start serving."""
        if not self.state_dir.exists():  # a directory given to us keeps its mode
            self.state_dir.mkdir(parents=True, mode=0o700)
        self.tokens = Tokens.load_or_create(self.state_dir)
        await self.store.open()
        api = ControlAPI(self.store, self.tokens, self._issue, self._ca_pem)
        self.api = api
        canaries = CanaryController(api.set_splits, state_file=self.state_dir / "canaries.json")
        self.canaries = canaries
        # the rollouts' weights go out with the first snapshot: a restart never sends the
        # sidecars back to the document's weights
        api.publisher.set_splits(canaries.saved_overrides())
        await api.refresh()
        # The CA exists from the first start (created now if it does not).
        self._ca_pem()
        self._http = HttpServer(api)
        await self._http.start(self.host, self.port)
        self.port = self._http.port
        self.slo = SloMonitor(
            lambda: slo_targets(api),
            lambda: api.mesh.slos if api.mesh else None,
            alerting=lambda: api.mesh.alerting if api.mesh else AlertingConfig(),
            external_url=f"{self.url}/v1/slos",
            interval=self.slo_interval,
            resolution=self.slo_resolution,
            store=SloHistory(self.state_dir / "slo.db"),
        )
        api.slo_report = self.slo.report
        api.rollouts_view = canaries.view
        self.slo.on_pages = lambda pages: canaries.pages(api.mesh, pages)
        self.slo.pages_wanted = lambda: canaries.wanted(api.mesh)
        api.slo_history_of = self.slo.history
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(api.follow()), loop.create_task(self.slo.run())]
        (self.state_dir / "control-url").write_text(f"{self.url}\n")

    @property
    def url(self) -> str:
        """Where the API is served."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop serving (long-polls answered, requests in flight finished), then close the
        store (leases are left to expire or be renewed)."""
        if self._http is not None:
            await self._http.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.slo is not None and self.slo.store is not None:
            self.slo.store.close()  # (the monitor saved what changed as it stopped)
        if self.canaries is not None:
            await asyncio.to_thread(self.canaries.close)  # its last state written
        await self.store.close()


def slo_targets(api: ControlAPI) -> list[Target]:
    """Every registered sidecar's ``/metrics``: its address, and its admin port as it
    registered it (else its service's in the config)."""
    mesh = api.mesh
    targets = []
    for instance in api.registry.instances():
        port = instance.metadata.get(ADMIN_PORT_LABEL)
        if port is None and mesh is not None and instance.service in mesh.services:
            port = str(mesh.services[instance.service].sidecar.admin)
        if port is None or not port.isdigit():
            continue
        host = f"[{instance.address}]" if ":" in instance.address else instance.address
        targets.append(Target(instance.id, instance.service, f"http://{host}:{port}/metrics"))
    return targets


def open_store(kind: str, state_dir: Path, etcd: str | None, prefix: str) -> Store:
    """The store named on the command line."""
    if kind == "sqlite":
        from .store.sqlite import SqliteStore  # noqa: PLC0415

        return SqliteStore(state_dir / "seawall.db")
    if kind == "etcd":
        from .store.etcd import EtcdStore  # noqa: PLC0415

        if not etcd:
            raise ValueError("--store etcd needs --etcd http://HOST:PORT[,http://HOST:PORT...]")
        return EtcdStore([u.strip() for u in etcd.split(",") if u.strip()], prefix=prefix)
    raise ValueError(f"--store must be sqlite or etcd, got {kind!r}")


async def _serve(server: ControlServer, traces: tuple[str, int] | None = None) -> int:
    await server.start()
    collector = None
    if traces is not None:
        # `seawall traces` beside the control plane, in its event loop: the sidecars'
        # spans, the query APIs and the UI, with the store in the state directory
        from ..telemetry.collector import Collector, CollectorServer  # noqa: PLC0415
        from ..telemetry.store import TraceStore  # noqa: PLC0415
        from ..telemetry.ui_api import UiConfig, ui_routes  # noqa: PLC0415

        store = TraceStore(server.state_dir / "traces.db")
        # the UI reads the breaker and outlier state from the applied mesh's sidecars
        mesh = server.api.mesh if server.api is not None else None
        ui = UiConfig(control_url=server.url)  # the SLO page reads this control plane's
        if mesh is not None:
            ui = UiConfig.from_mesh(mesh, control_url=server.url)
        collector = CollectorServer(Collector(store, extra=ui_routes(store, ui)))
        await collector.start(*traces)
        _log(f"traces: serving http://{traces[0]}:{collector.port} (OTLP /v1/traces, /api/, /ui/)")
    # What start-up made (modules, the config model, the CA) lives as long as the process:
    # keep it out of every later collection, so that a full collection costs what the
    # registry and the connections hold, not the imports (tens of ms on a small machine).
    gc.collect()
    gc.freeze()
    # What a request makes (aiohttp's request, writer and response, a task, the answer) is
    # freed when it is answered. A young-generation collection every 700 allocations (the
    # default) finds thousands of such objects alive and promotes them, and the older
    # generations' collections then take 5-30 ms with 500 subscribers' connections. Every
    # 10,000, they are gone by then: in make bench-control's churn, time in collections
    # fell from ~450 to ~80 ms per run and the registration p99 from ~20 to ~3-8 ms.
    gc.set_threshold(10_000, 10, 10)
    tokens = server.tokens
    assert tokens is not None
    if tokens.created:
        # Never printed: logs are collected and kept, a secret in them leaks. The
        # CLI reads the file (seawall apply --state-dir DIR, or $SEAWALL_TOKEN).
        _log(f"admin token created in {server.state_dir / 'admin-token'} (0600; not shown)")
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _log(f"serving {server.url} (state {server.state_dir}, since {started})")
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    _log("stopping")
    await server.stop()
    if collector is not None:
        await collector.stop()
        collector.collector.store.close()
    return 0


def run(
    state_dir: str,
    listen: str,
    *,
    store: str = "sqlite",
    etcd: str | None = None,
    etcd_prefix: str = "/seawall/",
    ca_cert: str | None = None,
    ca_key: str | None = None,
    cert_ttl: float = DEFAULT_CERT_TTL,
    traces: str | None = None,
    slo_interval: float = 10.0,
    slo_resolution: float = 60.0,
) -> int:
    """Run a control-plane replica until SIGTERM; returns the exit status.

    ``traces`` (``HOST:PORT``): also serve ``seawall traces`` there.
    """
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        sys.stderr.write(f"--listen: must be HOST:PORT, got {listen!r}\n")
        return 2
    traces_at: tuple[str, int] | None = None
    if traces is not None:
        t_host, _, t_port = traces.rpartition(":")
        if not t_port.isdigit() or not 0 <= int(t_port) <= 65535:
            sys.stderr.write(f"--traces: must be HOST:PORT, got {traces!r}\n")
            return 2
        traces_at = (t_host.strip("[]") or "127.0.0.1", int(t_port))
    if (ca_cert is None) != (ca_key is None):
        sys.stderr.write("--ca-cert and --ca-key go together\n")
        return 2
    path = Path(state_dir)
    try:
        backend = open_store(store, path, etcd, etcd_prefix)
        server = ControlServer(
            backend,
            path,
            host=host,
            port=int(port_text),
            ca_cert=Path(ca_cert) if ca_cert else None,
            ca_key=Path(ca_key) if ca_key else None,
            cert_ttl=cert_ttl,
            slo_interval=slo_interval,
            slo_resolution=slo_resolution,
        )
        with contextlib.suppress(ImportError):
            import uvloop  # noqa: PLC0415

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return asyncio.run(_serve(server, traces_at))
    except (ValueError, OSError, StoreError, TraceStoreError) as exc:
        sys.stderr.write(f"seawall control: {exc}\n")
        return 2
