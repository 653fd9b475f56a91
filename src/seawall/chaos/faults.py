"""Faults: how each action is injected and rolled back, and the ledger that outlives
a crash.

Every fault is written to ``<state-dir>/chaos.json`` *before* it is injected, with
what undoes it (the config to apply again, the pid to continue, the partition to
heal...), and taken out once rolled back. So a ``seawall chaos`` that dies (SIGKILL,
a machine that stops) leaves a record: ``seawall chaos status`` lists what is still
in force, and ``--rollback`` undoes it.

Faults through the config (``fault``, ``policy``, a partition at the sidecar) are
overlays on the config that was in force when the experiment began: applying one,
or rolling one back, applies that config with the overlays still in force; rolling
the last one back applies it unchanged. A config changed by someone else meanwhile
(a newer version than chaos applied) is not overwritten: the rollback says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..config.errors import ConfigError
from ..config.load import parse_mesh
from ..policy.errors import SeawallError
from ..up.cli import alive, read_object
from ..up.cli import read_state as read_up
from .measure import Instances, send
from .mesh import MeshState, UpInstances, fetch_config, instances_of
from .model import (
    Action,
    CertExpiryAction,
    ConfigAction,
    CpuAction,
    FaultAction,
    HangAction,
    HttpAction,
    InstanceAction,
    KillAction,
    KillControlPlaneAction,
    PartitionAction,
    PolicyAction,
)

__all__ = ["FaultError", "Injector", "LEDGER", "leftovers", "roll_back_leftovers"]

LEDGER = "chaos.json"
COMEBACK_TIMEOUT = 30.0
"""How long a rollback waits for a killed process to be back."""


class FaultError(SeawallError, RuntimeError):
    """A fault could not be injected (or rolled back): what and why."""


@dataclass(slots=True)
class Applied:
    """One fault in force."""

    id: int
    kind: str
    describe: str
    undo: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[None] | None = None


def _write_ledger(state_dir: Path, doc: dict[str, Any]) -> None:
    path = state_dir / LEDGER
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)


def read_ledger(state_dir: Path) -> dict[str, Any]:
    return read_object(state_dir / LEDGER)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: mappings key by key, ``routes`` route by name
    (a named route of ``extra`` merged into the one of that name, or added), anything
    else replaced."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        elif key == "routes" and isinstance(value, list) and isinstance(out.get(key), list):
            out[key] = _merge_routes(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_routes(routes: list[Any], extra: list[Any]) -> list[Any]:
    merged = [copy.deepcopy(r) for r in routes]
    names = {r.get("name"): i for i, r in enumerate(merged) if isinstance(r, dict)}
    for route in extra:
        name = route.get("name") if isinstance(route, dict) else None
        if name is not None and name in names:
            merged[names[name]] = _deep_merge(merged[names[name]], route)
        else:
            merged.append(copy.deepcopy(route))
    return merged


def overlay(doc: dict[str, Any], action: Action) -> dict[str, Any]:
    """``doc`` (a mesh config document) with ``action``'s change."""
    doc = copy.deepcopy(doc)
    if isinstance(action, FaultAction):
        fault: dict[str, Any] = {}
        if action.delay is not None:
            fault["delay"] = action.delay.model_dump()
        if action.abort is not None:
            fault["abort"] = action.abort.model_dump()
        policy = doc.setdefault("policies", {}).setdefault(action.service, {})
        routes = [dict(r) for r in policy.get("routes") or []]
        if action.route is not None:
            for r in routes:
                if r.get("name") == action.route:
                    r["fault"] = _deep_merge(r.get("fault") or {}, fault)
        else:
            # every route of the destination, and the requests no route matches
            for r in routes:
                r["fault"] = _deep_merge(r.get("fault") or {}, fault)
            names = {r.get("name") for r in routes}
            name = next(f"chaos-{i}" for i in range(1, 1000) if f"chaos-{i}" not in names)
            routes.append({"name": name, "fault": fault})
        policy["routes"] = routes
    elif isinstance(action, PolicyAction):
        policies = doc.setdefault("policies", {})
        policies[action.service] = _deep_merge(policies.get(action.service) or {}, action.set)
    elif isinstance(action, ConfigAction):
        doc = _deep_merge(doc, action.set)
    elif isinstance(action, PartitionAction):
        a, b = action.between
        for me, other in ((a, b), (b, a)):
            svc = doc.setdefault("services", {}).setdefault(me, {})
            authz = dict(svc.get("authorization") or {})
            refused = list(authz.get("refuse") or [])
            authz["refuse"] = refused if other in refused else [*refused, other]
            svc["authorization"] = authz
    else:  # pragma: no cover - only config faults come here
        raise AssertionError(action)
    return doc


class Injector:
    """Injects the actions of one experiment on ``mesh`` and rolls them back."""

    def __init__(
        self,
        mesh: MeshState,
        http: httpx.AsyncClient,
        *,
        title: str,
        netns: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.mesh = mesh
        self.http = http
        self.netns = netns
        self.log = log
        self.applied: list[Applied] = []
        self._next = 1
        self._base = copy.deepcopy(mesh.document)
        self._base_version = mesh.version
        self._applied_version: int | None = None
        self._sent: dict[str, Any] | None = None
        """The last document PUT (its answer may have been lost: a cancellation)."""
        self._overlays: list[tuple[int, Action]] = []
        self._ledger: dict[str, Any] = {
            "pid": os.getpid(), "title": title, "started_at": time.time(),
            "base_version": mesh.version, "base_config": None, "faults": [],
        }  # fmt: skip

    # -- the ledger ------------------------------------------------------------

    def _save(self) -> None:
        self._ledger["faults"] = [{"id": a.id, "kind": a.kind, "describe": a.describe,
                                   "undo": a.undo} for a in self.applied]  # fmt: skip
        config = any(a.undo.get("config") for a in self.applied)
        self._ledger["base_config"] = self._base if config else None
        self._ledger["applied_version"] = self._applied_version
        if self.applied:
            _write_ledger(self.mesh.state_dir, self._ledger)
        else:
            with contextlib.suppress(FileNotFoundError):
                (self.mesh.state_dir / LEDGER).unlink()

    def _record(self, kind: str, describe: str, undo: dict[str, Any]) -> Applied:
        """A fault about to be injected, written to the ledger first."""
        a = Applied(self._next, kind, describe, undo)
        self._next += 1
        self.applied.append(a)
        self._save()
        return a

    def forget(self, a: Applied) -> None:
        """``a`` is not in force (never injected, or rolled back)."""
        if a in self.applied:
            self.applied.remove(a)
        self._overlays = [(i, act) for i, act in self._overlays if i != a.id]
        self._save()

    # -- the config ------------------------------------------------------------

    async def _put_config(self, doc: dict[str, Any]) -> int:
        """Apply ``doc`` (the config in force must be the one chaos applied last); its
        version, once every sidecar runs it."""
        try:
            parse_mesh(doc)
        except ConfigError as exc:
            raise FaultError(f"the config with this fault does not validate:\n{exc}") from None
        current, current_doc, _ = await fetch_config(self.http, self.mesh.control_url)
        expected = self._applied_version if self._applied_version is not None \
            else self._base_version  # fmt: skip
        if current != expected and not self._is_sent(current_doc):
            raise FaultError(
                f"the config changed under the experiment (version {current}, chaos expected"
                f" {expected}): not overwritten; apply the one you want by hand"
            )
        self._sent = doc
        r = await self.http.put(
            f"{self.mesh.control_url}/v1/config",
            content=json.dumps(doc),
            headers={"content-type": "application/json",
                     "authorization": f"Bearer {self.mesh.admin_token}"},
        )  # fmt: skip
        if r.status_code != 200:
            raise FaultError(
                f"the control plane refused the config: {r.status_code} {r.text[:300]}"
            )
        version = int(r.json()["version"])
        self._applied_version = version
        await self._wait_version(version)
        return version

    def _is_sent(self, doc: dict[str, Any]) -> bool:
        """Whether ``doc`` (the config in force) is the last one chaos sent, whose
        answer it did not see."""
        if self._sent is None:
            return False
        try:
            return parse_mesh(doc) == parse_mesh(self._sent)
        except ConfigError:
            return False

    async def _wait_version(self, version: int, within: float = 10.0) -> None:
        """Until every sidecar reports ``version``; :class:`FaultError` naming those that
        do not within ``within`` (a sidecar that refused it says why in its log)."""
        deadline = time.monotonic() + within
        behind: list[str] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                status = (await self.http.get(f"{self.mesh.control_url}/v1/status")).json()
                sidecars = status["sidecars"]
                behind = [f"{s.get('id')} (on {s.get('config_version')})"
                          for s in sidecars if s.get("config_version") != version]  # fmt: skip
                if not behind:
                    return
            await asyncio.sleep(0.1)
        raise FaultError(
            f"config version {version} applied, but not every sidecar runs it after {within:g}s:"
            f" {', '.join(behind) or 'no status'} (seawall logs SERVICE says why)"
        )

    def _config_doc(self, overlays: list[tuple[int, Action]] | None = None) -> dict[str, Any]:
        """The config before the experiment with ``overlays`` (those in force) on it."""
        doc = self._base
        for _, action in self._overlays if overlays is None else overlays:
            doc = overlay(doc, action)
        return doc

    async def _config_fault(self, action: Action, describe: str) -> Applied:
        a = self._record(action.action, describe, {"config": True})
        self._overlays.append((a.id, action))
        sent = self._sent
        try:
            version = await self._put_config(self._config_doc())
        except BaseException:
            if self._sent is sent:  # refused before the PUT: nothing reached the mesh
                self.forget(a)
            # else it may be in force (a sidecar behind, a cancellation): kept, and
            # rolled back with the others
            raise
        a.describe += f" (config version {version})"
        self._save()
        return a

    # -- inject ------------------------------------------------------------------

    def _pids(self, action: InstanceAction, process: str = "app") -> list[tuple[str, int]]:
        found = []
        for inst in self.mesh.of(action.service, action.instance):
            pid = self.mesh.pid(f"{process}:{inst.name}")
            if pid is None:
                raise FaultError(f"{process}:{inst.name} is not running")
            found.append((inst.name, pid))
        if not found:
            raise FaultError(f"no running instance of {action.service}")
        return found

    async def inject(self, action: Action) -> Applied:
        """Inject ``action``; :class:`FaultError` if it could not be."""
        if isinstance(action, FaultAction):
            what = " and ".join(
                f"{k} {v}" for k, v in (
                    ("delay", f"{action.delay.duration:g}s on {action.delay.percent:g}%"
                     if action.delay else None),
                    ("abort", f"{action.abort.status} on {action.abort.percent:g}%"
                     if action.abort else None),
                ) if v
            )  # fmt: skip
            where = f"{action.service}" + (f" route {action.route}" if action.route else "")
            return await self._config_fault(action, f"fault on calls to {where}: {what}")
        if isinstance(action, PolicyAction):
            keys = ", ".join(sorted(action.set))
            return await self._config_fault(action, f"policies.{action.service}: {keys} replaced")
        if isinstance(action, ConfigAction):
            keys = ", ".join(sorted(_paths(action.set)))
            return await self._config_fault(action, f"config: {keys} replaced")
        if isinstance(action, PartitionAction):
            one, two = action.between
            if self.netns:
                from ..up.netns import partition  # noqa: PLC0415

                a = self._record("partition", f"network partition {one} <-> {two}",
                                 {"netns": [one, two]})  # fmt: skip
                try:  # kept on a failure half way: heal() is idempotent
                    rules = await asyncio.to_thread(partition, self.mesh.state_dir, one, two)
                except ValueError as exc:  # refused before any rule: nothing to heal
                    self.forget(a)
                    raise FaultError(str(exc)) from None
                a.describe += ": " + "; ".join(rules)
                self._save()
                return a
            return await self._config_fault(
                action,
                f"partition {one} <-> {two} at the sidecars (each refuses the other's connections)",
            )
        if isinstance(action, HangAction):
            pids = self._pids(action)
            a = self._record("hang", "app hangs (SIGSTOP): " + ", ".join(n for n, _ in pids),
                             {"continue": [p for _, p in pids]})  # fmt: skip
            for _, pid in pids:
                os.kill(pid, signal.SIGSTOP)
            return a
        if isinstance(action, CpuAction):
            pids = self._pids(action)
            a = self._record("cpu", f"CPU starved {action.percent:g}% of the time: "
                             + ", ".join(n for n, _ in pids),
                             {"continue": [p for _, p in pids]})  # fmt: skip
            a.task = asyncio.get_running_loop().create_task(
                _starve([p for _, p in pids], action.percent / 100, action.period)
            )
            return a
        if isinstance(action, KillAction):
            pids = self._pids(action, action.process)
            a = self._record("kill", f"SIGKILL {action.process} of "
                             + ", ".join(n for n, _ in pids),
                             {"back": [f"{action.process}:{n}" for n, _ in pids],
                              "pids": [p for _, p in pids]})  # fmt: skip
            for _, pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return a
        if isinstance(action, KillControlPlaneAction):
            control = self.mesh.pid("control")
            if control is None:
                raise FaultError("the control plane is not running")
            a = self._record("kill_control_plane", f"SIGKILL the control plane (pid {control})",
                             {"back": ["control"], "pids": [control]})  # fmt: skip
            os.kill(control, signal.SIGKILL)
            return a
        if isinstance(action, CertExpiryAction):
            from ..control.chaos_api import force_cert_expiry  # noqa: PLC0415

            a = self._record("cert_expiry", f"certificates of {action.service} live"
                             f" {action.ttl:g}s" + (", renewal refused" if action.block_renewal
                                                    else ""),
                             {"cert": action.service})  # fmt: skip
            try:
                await force_cert_expiry(
                    self.http,
                    self.mesh.control_url,
                    self.mesh.admin_token,
                    action.service,
                    action.ttl,
                    action.block_renewal,
                )
            except RuntimeError as exc:  # refused (a cancellation keeps it: lifting is safe)
                self.forget(a)
                raise FaultError(str(exc)) from None
            return a
        assert isinstance(action, HttpAction)
        undo = {} if action.undo is None else {"http": action.undo.model_dump(by_alias=True)}
        a = self._record("http", f"{action.method} {action.url or action.service}", undo)
        got = await send(self.http, self.mesh, action, every=True)
        bad = [f"{u}: {s or e}" for u, s, _, e in got if not 200 <= s < 400]
        if bad and len(bad) == len(got):  # none took it: nothing to undo
            self.forget(a)
        if bad:  # some did: kept, so that its undo is sent to them all
            raise FaultError(f"{action.method} " + "; ".join(bad))
        a.describe = f"{action.method} " + ", ".join(u for u, *_ in got)
        self._save()
        return a

    # -- roll back -------------------------------------------------------------

    async def roll_back(self, a: Applied) -> str | None:
        """Undo ``a``; a problem, said, or ``None`` (then ``a`` is forgotten)."""
        problem = None
        try:
            if a.task is not None:
                a.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await a.task
            if a.undo.get("config"):
                remaining = [(i, act) for i, act in self._overlays if i != a.id]
                await self._put_config(self._config_doc(remaining))
            else:
                problem = await undo(a.undo, self.mesh.state_dir, self.mesh.control_url,
                                     self.mesh.admin_token, self.http, self.mesh)  # fmt: skip
        except (FaultError, httpx.HTTPError, OSError, ValueError, RuntimeError) as exc:
            problem = str(exc)
        if problem is None:
            self.forget(a)
        return problem

    async def roll_back_all(self) -> list[str]:
        """Every fault in force, newest first; the problems met (those faults stay in
        the ledger for ``seawall chaos status``)."""
        problems = []
        for a in reversed(list(self.applied)):
            problem = await self.roll_back(a)
            if problem:
                problems.append(f"{a.describe}: {problem}")
        return problems


def _paths(doc: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of ``doc``'s leaves (what a ``config`` action replaces)."""
    out = []
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _paths(value, path + ".")
        else:
            out.append(path)
    return out


async def _starve(pids: list[int], share: float, period: float) -> None:
    try:
        while True:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(period * share)
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            await asyncio.sleep(period * (1 - share))
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def undo(  # noqa: PLR0917 - a ledger entry's and where it applies
    spec: dict[str, Any],
    state_dir: Path,
    control_url: str,
    token: str,
    http: httpx.AsyncClient,
    where: Instances | None = None,
) -> str | None:
    """Undo a ledger entry that is not a config overlay; a problem, or ``None``."""
    for pid in spec.get("continue", []):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)
    if "back" in spec:
        return await _wait_back(state_dir, spec["back"], spec.get("pids", []), http)
    if "netns" in spec:
        from ..up.netns import heal  # noqa: PLC0415

        a, b = spec["netns"]
        await asyncio.to_thread(heal, state_dir, a, b)
    if "cert" in spec:
        from ..control.chaos_api import lift_cert_expiry  # noqa: PLC0415

        await lift_cert_expiry(http, control_url, token, spec["cert"])
    if "http" in spec:
        from .model import Target  # noqa: PLC0415

        target = Target.model_validate(spec["http"])
        if where is None:
            where = UpInstances(instances_of(read_up(state_dir)))
        got = await send(http, where, target, every=True)
        bad = [f"{u}: {s or e}" for u, s, _, e in got if not 200 <= s < 400]
        if bad:
            return "undo request failed: " + "; ".join(bad)
    return None


async def _wait_back(
    state_dir: Path, processes: list[str], old: list[int], http: httpx.AsyncClient
) -> str | None:
    """Until each process runs again under a new pid and answers (bounded)."""
    deadline = time.monotonic() + COMEBACK_TIMEOUT
    waiting = list(processes)
    while waiting and time.monotonic() < deadline:
        up = read_up(state_dir)
        procs = up.get("processes", {})
        for name in list(waiting):
            pid = (procs.get(name) or {}).get("pid")
            if isinstance(pid, int) and pid not in old and await _answers(name, up, http):
                waiting.remove(name)
        if waiting:
            await asyncio.sleep(0.2)
    if waiting:
        return f"not back after {COMEBACK_TIMEOUT:g}s: {', '.join(waiting)}"
    return None


async def _answers(process: str, up: dict[str, Any], http: httpx.AsyncClient) -> bool:
    kind, _, name = process.partition(":")
    if kind == "control":
        url = f"{up.get('control_url')}/v1/health"
    else:
        inst = next((i for i in up.get("instances", []) if i["name"] == name), None)
        if inst is None:
            return False
        address = inst.get("address") or "127.0.0.1"
        if kind == "app":
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(address, int(inst["app_port"])), 1.0
                )
            except (OSError, TimeoutError):
                return False
            writer.close()
            return True
        url = f"http://{address}:{inst['admin']}/ready"
    try:
        return (await http.get(url, timeout=1.0)).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- leftovers


def leftovers(state_dir: Path) -> dict[str, Any]:
    """The ledger of a ``seawall chaos run`` that did not roll everything back: its
    faults, and whether the run is still alive."""
    doc = read_ledger(state_dir)
    if not doc:
        return {}
    doc["running"] = alive(doc.get("pid"))
    return doc


async def roll_back_leftovers(
    state_dir: Path, http: httpx.AsyncClient, control_url: str, token: str
) -> list[str]:
    """Undo what a dead run left: stopped processes continued, partitions healed,
    certificate faults lifted, and the config before the experiment applied again, unless
    the config changed since chaos last applied one. The problems; the faults not undone
    stay in the ledger."""
    doc = read_ledger(state_dir)
    problems = []
    remaining = []
    for fault in doc.get("faults", []):
        spec = fault.get("undo", {})
        if spec.get("config"):
            continue
        try:
            problem = await undo(spec, state_dir, control_url, token, http)
        except (httpx.HTTPError, OSError, ValueError, RuntimeError) as exc:
            problem = str(exc)
        if problem:
            problems.append(f"{fault.get('describe')}: {problem}")
            remaining.append(fault)
    configs = [f for f in doc.get("faults", []) if f.get("undo", {}).get("config")]
    if configs:
        problem = await _restore_config(doc, http, control_url, token)
        if problem:
            problems.append(problem)
            remaining += configs
    if remaining:
        doc["faults"] = remaining
        _write_ledger(state_dir, doc)
    else:
        with contextlib.suppress(FileNotFoundError):
            (state_dir / LEDGER).unlink()
    return problems


async def _restore_config(
    doc: dict[str, Any], http: httpx.AsyncClient, control_url: str, token: str
) -> str | None:
    """Apply the ledger's config before the experiment again; a problem, or ``None``."""
    base = doc.get("base_config")
    if not isinstance(base, dict):
        return "the ledger has no config from before the experiment: apply yours by hand"
    current, _, _ = await fetch_config(http, control_url)
    ours = doc.get("applied_version") or doc.get("base_version")
    if ours is not None and current not in (ours, doc.get("base_version")):
        return (f"the config changed since the experiment (version {current}, chaos applied"
                f" {ours}): not overwritten; apply the one you want by hand")  # fmt: skip
    r = await http.put(
        f"{control_url}/v1/config", content=json.dumps(base),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )  # fmt: skip
    if r.status_code != 200:
        return f"the config before the experiment was refused: {r.text[:300]}"
    return None
