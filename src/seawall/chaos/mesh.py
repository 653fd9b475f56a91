"""The running mesh an experiment works on: what ``seawall up`` wrote in its state
directory (``up.json``: processes, instances, ports), its control plane (the config in
force, the admin token), and its sidecars' metrics pages, scraped every second.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..config.errors import ConfigError
from ..config.load import parse_mesh
from ..config.model import MeshConfig
from ..policy.errors import SeawallError
from ..slo.scrape import MetricsError, Sample, parse
from ..up.cli import alive
from ..up.cli import read_state as read_up

__all__ = [
    "InstanceInfo",
    "MeshState",
    "NotRunning",
    "Scrape",
    "Scraper",
    "UpInstances",
    "instances_of",
    "open_mesh",
]


class NotRunning(SeawallError, RuntimeError):
    """No ``seawall up`` runs for the state directory (or its control plane is down)."""


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    name: str
    service: str
    app_port: int
    inbound: int
    admin: int
    address: str = "127.0.0.1"
    outbound: int = 0
    netns: str | None = None


def instances_of(up: dict[str, Any]) -> dict[str, InstanceInfo]:
    """The instances ``up.json`` lists, by name."""
    found = {}
    for i in up.get("instances", []):
        found[i["name"]] = InstanceInfo(
            name=i["name"], service=i["service"], app_port=int(i["app_port"]),
            inbound=int(i["inbound"]), admin=int(i["admin"]),
            address=str(i.get("address") or "127.0.0.1"), outbound=int(i.get("outbound", 0)),
            netns=i.get("netns"),
        )  # fmt: skip
    return found


@dataclass(frozen=True, slots=True)
class UpInstances:
    """The instances of a ``seawall up`` (enough to send requests; no control plane)."""

    instances: dict[str, InstanceInfo]

    def of(self, service: str, instance: str | None = None) -> list[InstanceInfo]:
        return [i for i in self.instances.values()
                if i.service == service and (instance is None or i.name == instance)]  # fmt: skip


@dataclass(slots=True)
class MeshState:
    state_dir: Path
    control_url: str
    admin_token: str
    config: MeshConfig
    document: dict[str, Any]
    """The config in force, as the control plane holds it (plain data)."""
    version: int
    instances: dict[str, InstanceInfo]
    collector: str | None
    """``http://host:port`` of the trace collector (its UI), when there is one."""

    def up_doc(self) -> dict[str, Any]:
        """``up.json`` now (pids change as processes are started again)."""
        return read_up(self.state_dir)

    def pid(self, process: str) -> int | None:
        """The pid of ``control``, ``app:orders-2``, ``sidecar:orders-2`` now."""
        proc = self.up_doc().get("processes", {}).get(process) or {}
        pid = proc.get("pid")
        return pid if isinstance(pid, int) and pid > 0 else None

    def of(self, service: str, instance: str | None = None) -> list[InstanceInfo]:
        return [i for i in self.instances.values()
                if i.service == service and (instance is None or i.name == instance)]  # fmt: skip

    def trace_link(self, trace_id: str) -> str | None:
        return None if self.collector is None else f"{self.collector}/ui/#/trace/{trace_id}"


async def fetch_config(
    http: httpx.AsyncClient, control_url: str
) -> tuple[int, dict[str, Any], MeshConfig]:
    """The config in force: its version, its document, and the model."""
    r = await http.get(f"{control_url}/v1/config")
    if r.status_code != 200:
        raise NotRunning(f"the control plane at {control_url} has no config ({r.status_code})")
    doc = r.json()
    config = doc.get("config")
    if isinstance(config, str):
        import yaml  # noqa: PLC0415

        config = yaml.safe_load(config)
    if not isinstance(config, dict):
        raise NotRunning(f"the control plane at {control_url} answered no config document")
    try:
        model = parse_mesh(config)
    except ConfigError as exc:  # pragma: no cover - it validated it when it stored it
        raise NotRunning(f"the config in force does not validate: {exc}") from None
    return int(doc.get("version", 0)), config, model


async def open_mesh(state_dir: Path, http: httpx.AsyncClient) -> MeshState:
    """The mesh ``seawall up`` runs for ``state_dir``; :class:`NotRunning` if none."""
    up = read_up(state_dir)
    if not up or not alive(up.get("pid")):
        raise NotRunning(
            f"no `seawall up` is running for {state_dir} (start one: seawall up -f mesh.yaml"
            f" --state-dir {state_dir} --detach)"
        )
    control_url = str(up.get("control_url"))
    try:
        token = (state_dir / "control" / "admin-token").read_text().strip()
    except OSError as exc:
        raise NotRunning(f"cannot read the control plane's admin token: {exc}") from None
    try:
        version, document, config = await fetch_config(http, control_url)
    except httpx.HTTPError as exc:
        raise NotRunning(f"the control plane at {control_url} does not answer: {exc}") from None
    instances = instances_of(up)
    endpoint = config.tracing.export_endpoint()
    collector = None
    if endpoint:
        url = urlsplit(endpoint)
        if url.scheme == "http" and url.hostname in ("127.0.0.1", "localhost"):
            collector = f"http://127.0.0.1:{url.port or 80}"
    return MeshState(state_dir, control_url, token, config, document, version, instances,
                     collector)  # fmt: skip


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True, slots=True)
class Scrape:
    """Every sidecar's metrics page at one moment: instance -> its samples (an
    instance whose page could not be read is missing)."""

    t: float
    pages: dict[str, list[Sample]]
    texts: dict[str, str] = field(default_factory=dict, repr=False)

    def declares(self, instance: str, name: str) -> bool:
        """Whether the instance's page declares the family of ``name`` (its ``# TYPE``
        line), so that no sample of it means none counted yet, not no such metric."""
        text = self.texts.get(instance, "")
        family = name
        for suffix in ("_total", "_count", "_sum", "_bucket"):
            family = family.removesuffix(suffix)
        return f"# TYPE {name} " in text or f"# TYPE {family} " in text


class Scraper:
    """Scrapes every sidecar of the mesh every ``interval`` (the experiment's clock),
    keeping the scrapes, so a probe reads any window after the fact."""

    def __init__(self, mesh: MeshState, http: httpx.AsyncClient, interval: float = 1.0) -> None:
        self.mesh = mesh
        self.http = http
        self.interval = interval
        self.scrapes: list[Scrape] = []
        self.skipped: list[str] = []

    async def scrape(self) -> Scrape:
        async def one(name: str, admin: int, address: str) -> tuple[str, str | None]:
            try:
                r = await self.http.get(f"http://{address}:{admin}/metrics", timeout=2.0)
            except httpx.HTTPError:
                return name, None
            return name, r.text if r.status_code == 200 else None

        found = await asyncio.gather(*(one(i.name, i.admin, i.address)
                                       for i in self.mesh.instances.values()))  # fmt: skip
        pages: dict[str, list[Sample]] = {}
        texts = {}
        for name, text in found:
            if text is None:
                continue
            try:
                pages[name] = list(parse(text))
            except MetricsError as exc:
                self.skipped.append(f"{name}: malformed /metrics page: {exc}")
                continue
            texts[name] = text
        snap = Scrape(time.monotonic(), pages, texts)
        self.scrapes.append(snap)
        return snap

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            with contextlib.suppress(Exception):
                await self.scrape()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    stop.wait(), max(0.0, self.interval - (time.monotonic() - started))
                )

    def at(self, t: float) -> Scrape | None:
        """The scrape closest to ``t``."""
        if not self.scrapes:
            return None
        return min(self.scrapes, key=lambda s: abs(s.t - t))

    def around(self, t0: float, t1: float) -> list[Scrape]:
        """The last scrape at or before ``t0`` (the baseline), then those up to ``t1``."""
        before = [s for s in self.scrapes if s.t <= t0]
        return before[-1:] + [s for s in self.scrapes if t0 < s.t <= t1]

    def between(self, t0: float, t1: float) -> list[Scrape]:
        """The scrapes taken in ``[t0, t1]`` (a check's own scrape, taken as its window
        ends, a moment after ``t1``, included)."""
        return [s for s in self.scrapes if t0 - 0.05 <= s.t <= t1 + 0.5]
