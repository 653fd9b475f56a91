"""``seawall up``: the whole mesh of one mesh.yaml, started, watched and stopped.

In order: the control plane (its state directory under ``--state-dir``: its CA and
its store are reused by the next ``up``; the trace collector beside it when
``tracing.endpoint`` is on this machine), ``seawall apply`` of the file, a join
token per service, then each instance's sidecar and app (:mod:`seawall.up.plan`),
until every sidecar answers ``/ready`` and every app takes connections. Then it
prints the status table, and keeps things running: a process that exits is
started again (:mod:`seawall.up.processes`), and a change to mesh.yaml is applied
live through the control plane, while a changed ``run:`` restarts that service's
instances (only theirs). ``stop`` (Ctrl-C, SIGTERM, ``seawall down``) stops
everything in the reverse order, and the exit checks that no process is left.

``state-dir/up.json`` says what runs (``seawall ps`` reads it); ``state-dir/logs``
holds each process's output (``seawall logs``).

``--netns`` (:mod:`seawall.up.netns`): each instance runs in a network namespace of
its own, on an address of its own; the control plane and the collector listen on the
gateway address every namespace routes to. What an earlier ``up`` of the state
directory left is removed first; ``stop`` removes every namespace, even after a
failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from ..config import ConfigError, MeshConfig, load_mesh
from ..proxy.managed import INSTANCE_ID_FILE
from . import netns
from .plan import Instance, ProcessSpec, external_specs, instances, process_specs
from .processes import Supervisor, listening

__all__ = ["UpOptions", "run_up", "status_rows"]


@dataclass(frozen=True, slots=True)
class UpOptions:
    mesh_file: Path
    state_dir: Path
    control_port: int = 7600
    colour: bool = False
    status_interval: float = 30.0
    """Seconds between two status tables (0: only the one when all is ready)."""
    grace: float = 10.0
    """How long each process may drain on SIGTERM before SIGKILL."""
    ready_timeout: float = 60.0
    watch_interval: float = 1.0
    """How often mesh.yaml is looked at for a change."""
    slo_interval: float | None = None
    """The control plane's ``--slo-interval`` (its default when ``None``)."""
    slo_resolution: float | None = None
    """The control plane's ``--slo-resolution`` (its default when ``None``)."""
    netns: bool = False
    """Each instance in a network namespace of its own (:mod:`seawall.up.netns`)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Up:
    def __init__(self, options: UpOptions, out: TextIO) -> None:
        self.o = options
        self.out = out
        self.state = options.state_dir
        self.control_url = f"http://127.0.0.1:{options.control_port}"
        self.sup = Supervisor(self.state / "logs", out, colour=options.colour)
        self.http = httpx.AsyncClient(trust_env=False, timeout=5.0)
        self.config: MeshConfig | None = None
        self.instances: dict[str, Instance] = {}
        self.tokens: dict[str, str] = {}
        self._seen: tuple[float, int] | None = None
        self._pids: dict[str, int | None] = {}
        self._rates: dict[str, tuple[float, float, float]] = {}
        self._base = options.mesh_file.resolve().parent
        self.net: netns.Network | None = None
        self.traces_endpoint: str | None = None
        """Where sidecars and apps send spans when not where mesh.yaml says (--netns)."""

    def say(self, line: str) -> None:
        self.sup.say("up", line)

    # -- start -------------------------------------------------------------------

    async def start(self) -> bool:
        try:
            self.config = load_mesh(self.o.mesh_file)
        except ConfigError as exc:
            self.out.write(exc.describe() + "\nnothing started\n")
            return False
        except OSError as exc:
            self.out.write(f"seawall up: cannot read {self.o.mesh_file}: {exc.strerror}\n")
            return False
        self._seen = self._stamp()
        self.state.mkdir(parents=True, exist_ok=True)
        host = await self.open_network()
        self.control_url = f"http://{host}:{self.o.control_port}"
        control_dir = self.state / "control"
        argv = [sys.executable, "-P", "-m", "seawall", "control", "--state-dir", str(control_dir),
                "--listen", f"{host}:{self.o.control_port}"]  # fmt: skip
        traces = collector_address(self.config, host)
        if traces is not None:
            argv += ["--traces", traces]
            if self.net is not None:  # mesh.yaml's 127.0.0.1 is each namespace's own
                path = urlsplit(self.config.tracing.export_endpoint()).path
                self.traces_endpoint = f"http://{traces}{path}"
        if self.o.slo_interval is not None:
            argv += ["--slo-interval", f"{self.o.slo_interval:g}s"]
        if self.o.slo_resolution is not None:
            argv += ["--slo-resolution", f"{self.o.slo_resolution:g}s"]
        control = ProcessSpec("control", "control", tuple(argv), self._base,
                              ready=f"{self.control_url}/v1/health")  # fmt: skip
        await self.sup.start(control)
        await self.wait_ready([control])
        self.say(f"control plane up at {self.control_url} (state in {control_dir})"
                 + (f"; traces at http://{traces}" if traces else ""))  # fmt: skip
        if not await self.apply():
            return False
        stand_ins = external_specs(self.config, self._base)
        for spec in stand_ins:
            await self.sup.start(spec)
        await self.wait_ready(stand_ins)
        found = instances(self.config, free_port)
        await self.start_instances(found)
        await self.wait_endpoints()
        self.write_state()
        self.say(f"ready: {len(found)} instance(s) of {len({i.service for i in found})}"
                 f" service(s), {len(self.sup.children)} processes")  # fmt: skip
        await self.print_status()
        return True

    async def open_network(self) -> str:
        """With ``--netns``, the namespaces' network (what an earlier ``up`` left of it
        removed first): the gateway address; else ``127.0.0.1``. Without ``--netns``, the
        namespaces a crashed ``up --netns`` of this state directory left are removed."""
        if not self.o.netns:
            if _stale_network(self.state):
                with contextlib.suppress(netns.NetnsError):
                    for gone in await asyncio.to_thread(netns.cleanup, self.state):
                        self.say(f"removed the stale {gone}")
            return "127.0.0.1"
        reason = await asyncio.to_thread(netns.netns_available)
        if reason is not None:
            raise netns.NetnsError(f"--netns: {reason}")
        net, stale = await asyncio.to_thread(netns.Network.open, self.state)
        self.net = net
        for gone in stale:
            self.say(f"removed the stale {gone}")
        layout = net.layout
        self.say(f"network namespaces {layout.prefix}N on {layout.subnet}; the control plane"
                 f" at {layout.gateway} (on lo)")  # fmt: skip
        return str(layout.gateway)

    async def apply(self) -> bool:
        token = (self.state / "control" / "admin-token").read_text().strip()
        r = await self.http.put(
            f"{self.control_url}/v1/config",
            content=self.o.mesh_file.read_bytes(),
            headers={"content-type": "application/yaml", "authorization": f"Bearer {token}"},
        )
        if r.status_code != 200:
            self.say(f"apply refused: {r.status_code} {r.text.strip()[:500]}")
            return False
        doc = r.json()
        what = "applied" if doc.get("changed") else "unchanged"
        self.say(f"{what} {self.o.mesh_file} as version {doc['version']}")
        return True

    async def token(self, service: str) -> str:
        if service not in self.tokens:
            admin = (self.state / "control" / "admin-token").read_text().strip()
            r = await self.http.post(
                f"{self.control_url}/v1/join-tokens",
                json={"service": service},
                headers={"authorization": f"Bearer {admin}"},
            )
            r.raise_for_status()
            self.tokens[service] = str(r.json()["token"])
        return self.tokens[service]

    async def start_instances(self, found: Sequence[Instance]) -> None:
        specs: list[ProcessSpec] = []
        for planned in found:
            inst = planned
            if self.net is not None:
                slot = await asyncio.to_thread(self.net.add, inst.name)
                inst = dataclasses.replace(inst, netns=slot.name, address=str(slot.address))
            sidecar, app = process_specs(
                inst,
                control_url=self.control_url,
                state_dir=self.state,
                base_dir=self._base,
                mesh_file=self.o.mesh_file.resolve(),
                traces_endpoint=self.traces_endpoint,
            )
            token = await self.token(inst.service)
            sidecar = dataclasses.replace(sidecar, env={"SEAWALL_JOIN_TOKEN": token})
            for spec in (sidecar, app):
                await self.sup.start(spec)
                specs.append(spec)
            self.instances[inst.name] = inst
            self.say(
                f"{inst.name}: app :{inst.app_port}, sidecar in :{inst.inbound}"
                f" out :{inst.outbound} admin :{inst.admin}"
                + (f", subset {inst.subset}" if inst.subset else "")
                + (f", in {inst.netns} at {inst.address}" if inst.netns else "")
            )
        await self.wait_ready(specs)

    async def wait_endpoints(self) -> None:
        """Until every sidecar knows exactly the running instances of every service (the
        control plane pushed them): before that, a first call could find none, or one
        that has stopped."""
        want: dict[str, set[int]] = {}
        for inst in self.instances.values():
            want.setdefault(inst.service, set()).add(inst.inbound)
        deadline = time.monotonic() + self.o.ready_timeout
        missing = ["no answer yet"]
        while missing:
            missing = []
            for inst in self.instances.values():
                try:
                    r = await self.http.get(f"http://{inst.address}:{inst.admin}/clusters")
                    known = {
                        c["name"]: {e["port"] for e in c.get("endpoints") or []}
                        for c in r.json()["clusters"]
                    }
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    missing.append(f"{inst.name}'s sidecar")
                    continue
                missing += [f"{inst.name} → {s}" for s, ports in want.items()
                            if known.get(s) != ports]  # fmt: skip
            if not missing:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"endpoints not known after {self.o.ready_timeout:g}s: "
                                   + ", ".join(missing[:5]))  # fmt: skip
            await asyncio.sleep(0.1)

    async def wait_ready(self, specs: Sequence[ProcessSpec]) -> None:
        deadline = time.monotonic() + self.o.ready_timeout
        waiting = [s for s in specs if s.ready is not None]
        while waiting:
            waiting = [s for s in waiting if not await self._ready(s)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(s.name for s in waiting)
                raise RuntimeError(f"not ready after {self.o.ready_timeout:g}s: {names}")
            await asyncio.sleep(0.1)

    async def _ready(self, spec: ProcessSpec) -> bool:
        assert spec.ready is not None
        if spec.ready.startswith("tcp://") and spec.netns is not None:
            # its 127.0.0.1 is the namespace's: a socket listening there, read from outside
            child = self.sup.children.get(spec.name)
            pid = None if child is None else child.pid
            return pid is not None and listening(pid, int(spec.ready.rsplit(":", 1)[1]))
        if spec.ready.startswith("tcp://"):
            host, port = spec.ready[len("tcp://") :].rsplit(":", 1)
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
            except (OSError, TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return True
        try:
            r = await self.http.get(spec.ready, timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    # -- running ----------------------------------------------------------------

    def _stamp(self) -> tuple[float, int] | None:
        try:
            st = self.o.mesh_file.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    async def follow(self, stop: asyncio.Event) -> None:
        """Until ``stop``: mesh.yaml's changes applied, the status table now and then."""
        next_status = time.monotonic() + self.o.status_interval
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.o.watch_interval)
            if stop.is_set():
                return
            stamp = self._stamp()
            if stamp is not None and stamp != self._seen:
                self._seen = stamp
                await self.reload()
            pids = {name: c.pid for name, c in self.sup.children.items()}
            if pids != self._pids:  # a process started again: ps shows its new pid
                self.write_state()
            if self.o.status_interval > 0 and time.monotonic() >= next_status:
                next_status = time.monotonic() + self.o.status_interval
                await self.print_status()

    async def reload(self) -> None:
        """mesh.yaml changed: applied live; the services whose ``run:`` changed (or that
        came or went) have their instances started again."""
        try:
            new = load_mesh(self.o.mesh_file)
        except (ConfigError, OSError) as exc:
            text = exc.describe() if isinstance(exc, ConfigError) else str(exc)
            self.say(f"{self.o.mesh_file} changed but is not valid; still running the last:")
            for line in text.splitlines():
                self.say(f"  {line}")
            return
        old = self.config
        assert old is not None
        if not await self.apply():
            return
        self.config = new
        changed = sorted(
            name
            for name in {*old.services, *new.services}
            if (_run_of(old, name), _ports_of(old, name))
            != (_run_of(new, name), _ports_of(new, name))
        )
        for service in changed:
            await self.restart_service(service, new)
        self.write_state()

    async def restart_service(self, service: str, config: MeshConfig) -> None:
        gone = [i for i in self.instances.values() if i.service == service]
        for inst in reversed(gone):
            await self.sup.stop(f"app:{inst.name}", self.o.grace)
            await self.sup.stop(f"sidecar:{inst.name}", self.o.grace)
            del self.instances[inst.name]
            if self.net is not None:
                await asyncio.to_thread(self.net.remove, inst.name)
        if service not in config.services or config.services[service].run is None:
            self.say(f"{service}: stopped (no longer run)")
            return
        only = config.model_copy(update={"services": {service: config.services[service]}})
        self.say(f"{service}: its run changed: starting its instances again")
        await self.start_instances(instances(only, free_port))
        await self.wait_endpoints()

    # -- status -----------------------------------------------------------------

    async def print_status(self) -> None:
        rows = await status_rows(self.http, self.control_url, self.state,
                                 self.instances.values(), self._rates)  # fmt: skip
        self.sup.say("up", "status:")
        for line in _table(rows):
            self.sup.say("up", "  " + line)

    def write_state(self) -> None:
        self._pids = {name: c.pid for name, c in self.sup.children.items()}
        doc = {
            "pid": os.getpid(),
            "mesh_file": str(self.o.mesh_file.resolve()),
            "control_url": self.control_url,
            "group": self.sup.group,
            "network": self._network(),
            "instances": [
                dataclasses.asdict(i) | {"run": i.run.model_dump(mode="json")}
                for i in self.instances.values()
            ],
            "processes": {
                name: {"pid": c.pid, "restarts": c.restarts, "kind": c.spec.kind}
                for name, c in self.sup.children.items()
            },
        }
        tmp = self.state / "up.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(self.state / "up.json")

    def _network(self) -> dict[str, str] | None:
        """What up.json says of the namespaces' network (``None``: no --netns)."""
        if self.net is None:
            return None
        layout = self.net.layout
        return {"prefix": layout.prefix, "subnet": str(layout.subnet),
                "gateway": str(layout.gateway)}  # fmt: skip

    async def close(self) -> list[int | str]:
        """Stop everything; what is left (pids, and namespaces or links by name)."""
        self.say("stopping: every process in the reverse order of its start")
        try:
            await self.sup.stop_all(self.o.grace)
            await self.http.aclose()
        finally:  # the namespaces go even when the stop failed
            net_left: list[str] = []
            if self.net is not None:
                try:
                    net_left = await asyncio.to_thread(self.net.close)
                except netns.NetnsError as exc:
                    net_left = [str(exc)]
        left = self.sup.leftovers()
        with contextlib.suppress(OSError):
            (self.state / "up.json").unlink()
        if left:
            self.say(f"STILL RUNNING after the stop: {left}")
        if net_left:
            self.say(f"STILL THERE after the stop: {', '.join(net_left)}")
        if not left and not net_left:
            self.say("stopped; no process is left"
                     + ("; every network namespace removed" if self.net else ""))  # fmt: skip
        return [*left, *net_left]


def _run_of(config: MeshConfig, service: str) -> Any:
    """What runs of ``service``: its ``run`` and its subsets' (to compare)."""
    svc = config.services.get(service)
    if svc is None:
        return None
    runs = {"": svc.run} | {name: sub.run for name, sub in svc.subsets.items()}
    return {k: r.model_dump(mode="json") for k, r in runs.items() if r is not None}


def _ports_of(config: MeshConfig, service: str) -> Any:
    svc = config.services.get(service)
    return None if svc is None else (svc.port, svc.sidecar.model_dump(mode="json"))


def collector_address(config: MeshConfig, host: str = "127.0.0.1") -> str | None:
    """``host:port`` where ``seawall up`` runs the collector, beside the control plane,
    when ``tracing.endpoint`` is one on this machine, else ``None``: on ``host``, at the
    endpoint's port (``host`` is the gateway with ``--netns``)."""
    endpoint = config.tracing.export_endpoint()
    if not endpoint:
        return None
    url = urlsplit(endpoint)
    if url.scheme != "http" or url.hostname not in ("127.0.0.1", "localhost"):
        return None
    return f"{host}:{url.port or 80}"


def _stale_network(state: Path) -> bool:
    """Whether the ``up.json`` an ``up`` left in ``state`` (it crashed) says --netns."""
    try:
        doc = json.loads((state / "up.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and bool(doc.get("network"))


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


async def status_rows(
    http: httpx.AsyncClient,
    control_url: str,
    state: Path,
    found: Any,
    seen: dict[str, tuple[float, float, float]] | None = None,
) -> list[list[str]]:
    """A row per instance: its ports, its sidecar's config version and certificate
    expiry (from the control plane), its requests and 5xx answers so far, and the
    breakers it holds open (from its sidecar's admin port). ``seen``: the counts of the
    last call (instance -> (time, requests, 5xx)), updated: the requests and errors per
    second since then (``-`` on the first call)."""
    by_id: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        status = (await http.get(f"{control_url}/v1/status")).json()
        by_id = {s["id"]: s for s in status["sidecars"]}
    found = list(found)
    addresses = any(inst.netns for inst in found)  # else every one is 127.0.0.1
    rows = [["INSTANCE", *(["ADDRESS"] if addresses else []), "APP", "SIDECAR", "VERSION",
             "CERT EXPIRES", "REQ/S", "5XX/S", "REQUESTS", "5XX", "BREAKERS OPEN"]]  # fmt: skip
    for inst in found:
        try:
            iid = (state / "sidecars" / inst.name / INSTANCE_ID_FILE).read_text().strip()
        except OSError:
            iid = ""
        s = by_id.get(iid, {})
        requests = errors = rate = error_rate = "-"
        opened = "-"
        with contextlib.suppress(httpx.HTTPError, ValueError):
            page = (await http.get(f"http://{inst.address}:{inst.admin}/metrics")).text
            total, bad = _inbound_counts(page)
            requests, errors = f"{total:.0f}", f"{bad:.0f}"
            now = time.monotonic()
            if seen is not None:
                last = seen.get(inst.name)
                if last is not None and now > last[0] and total >= last[1]:
                    rate = f"{(total - last[1]) / (now - last[0]):.1f}"
                    error_rate = f"{max(0.0, bad - last[2]) / (now - last[0]):.1f}"
                seen[inst.name] = (now, total, bad)
            doc = (await http.get(f"http://{inst.address}:{inst.admin}/clusters")).json()
            opened = ", ".join(
                c["name"] for c in doc.get("clusters", [])
                if (c.get("breaker") or {}).get("state") not in (None, "closed")
            ) or "none"  # fmt: skip
        expires = s.get("certificate_expires")
        rows.append([
            inst.name,
            *([inst.address] if addresses else []),
            f":{inst.app_port}",
            f":{inst.inbound}",
            str(s.get("config_version", "-")),
            "-" if not expires else _until(float(expires)),
            rate,
            error_rate,
            requests,
            errors,
            opened,
        ])  # fmt: skip
    return rows


def _until(epoch: float) -> str:
    left = epoch - time.time()
    if left < 0:
        return "EXPIRED"
    if left >= 3600:
        return f"in {left / 3600:.1f}h"
    return f"in {left / 60:.0f}m"


def _inbound_counts(page: str) -> tuple[float, float]:
    """The sidecar's inbound requests and its 5xx answers, from its metrics page."""
    from ..slo.scrape import parse  # noqa: PLC0415

    total = bad = 0.0
    for s in parse(page):
        if s.name == "seawall_requests_total" and s.labels.get("direction") == "inbound":
            total += s.value
            if s.labels.get("status_class") == "5xx":
                bad += s.value
    return total, bad


async def run_up(options: UpOptions, out: TextIO, stop: asyncio.Event) -> int:
    """Bring the mesh up, keep it up until ``stop``, bring it down; the exit status (0
    when everything started and stopped cleanly)."""
    up = Up(options, out)
    status = 0
    try:
        if await up.start():
            await up.follow(stop)
        else:
            status = 1
    except (RuntimeError, httpx.HTTPError, OSError) as exc:  # NetnsError too
        up.say(f"failed: {exc}")
        status = 1
    finally:
        left = await up.close()
    return 1 if left else status
