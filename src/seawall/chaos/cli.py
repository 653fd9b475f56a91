"""``seawall chaos run | validate | status``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import signal
import sys
from pathlib import Path
from typing import TextIO

import httpx

from ..config.errors import ConfigError
from ..control.chaos_api import cert_faults, lift_cert_expiry
from ..up.netns import NetnsError, heal, partitions
from .faults import leftovers, roll_back_leftovers
from .mesh import MeshState, NotRunning, open_mesh
from .model import Experiment, check_against, load_experiment
from .report import markdown, terminal
from .runner import default_report_paths, run_experiment

__all__ = ["main"]


def main(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    state = Path(args.state_dir)
    if args.chaos_command == "validate":
        return _validate(args.experiment, state, out)
    if args.chaos_command == "status":
        return asyncio.run(_status(state, args.rollback, out))
    return asyncio.run(_run(args, state, out))


def _load(path: str, out: TextIO) -> Experiment | None:
    try:
        return load_experiment(Path(path))
    except ConfigError as exc:
        out.write(exc.describe() + "\n")
        return None


def _validate(paths: list[str], state: Path, out: TextIO) -> int:
    """Each file validated; checked against the mesh too when one runs for ``state``."""

    async def mesh_or_none() -> MeshState | None:
        async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
            try:
                return await open_mesh(state, http)
            except NotRunning:
                return None

    mesh = asyncio.run(mesh_or_none())
    status = 0
    for path in paths:
        exp = _load(path, out)
        if exp is None:
            status = 2
            continue
        problems = [] if mesh is None else _problems(exp, mesh)
        if problems:
            status = 2
            out.write(f"{path}: {len(problems)} problem(s) with the running mesh:\n")
            out.writelines(f"  {p}\n" for p in problems)
            continue
        against = "" if mesh is None else f", and runs on the mesh of {state}"
        out.write(f"{path}: valid ({exp.title}){against}\n")
    return status


def _problems(exp: Experiment, mesh: MeshState) -> list[str]:
    return check_against(
        exp, mesh.config, {i.name: i.service for i in mesh.instances.values()},
        document=mesh.document,
        namespaced=frozenset(i.service for i in mesh.instances.values() if i.netns),
    )  # fmt: skip


async def _run(args: argparse.Namespace, state: Path, out: TextIO) -> int:
    exp = _load(args.experiment, out)
    if exp is None:
        return 2
    if args.fast:
        exp = exp.scaled(exp.fast.scale)
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        try:
            mesh = await open_mesh(state, http)
        except NotRunning as exc:
            out.write(f"seawall chaos: {exc}\n")
            return 2
        problems = _problems(exp, mesh)
        if problems:
            out.write(f"{args.experiment}: refused, nothing injected:\n")
            out.writelines(f"  {p}\n" for p in problems)
            return 2
        lock = _lock(state)
        if lock is None:
            out.write(f"seawall chaos: another run is going on {state} (one at a time)\n")
            return 2
        left = leftovers(state)
        if left.get("faults"):
            out.write("seawall chaos: faults of another run are still in force (seawall chaos"
                      " status --rollback):\n")  # fmt: skip
            out.writelines(f"  {f['describe']}\n" for f in left["faults"])
            return 2

        def say(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        inner = loop.create_task(
            run_experiment(
                exp, mesh, http, file=args.experiment, fast=args.fast, netns=args.netns, say=say
            )
        )
        interrupted = False

        def on_signal() -> None:
            nonlocal interrupted
            if not interrupted:  # once: a second cancellation would cut the rollback short
                interrupted = True
                say("chaos: interrupted: rolling back")
                inner.cancel()
            else:
                say("chaos: still rolling back (SIGKILL would leave the faults in force)")

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        try:
            report = await inner
        except asyncio.CancelledError:
            out.write("seawall chaos: interrupted\n")
            _said_rollback(state, out)
            return 130
        except Exception as exc:  # said, after the rollback ran
            out.write(f"seawall chaos: failed: {type(exc).__name__}: {exc}\n")
            _said_rollback(state, out)
            return 1
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            lock.close()
    out.write("\n" + terminal(report))
    json_path, md_path = default_report_paths(state, Path(args.experiment))
    json_path = Path(args.json) if args.json else json_path
    md_path = Path(args.markdown) if args.markdown else md_path
    for path, text in ((json_path, json.dumps(report.as_json(), indent=1) + "\n"),
                       (md_path, markdown(report))):  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    out.write(f"report: {json_path}, {md_path}\n")
    return report.exit_status


def _lock(state: Path) -> TextIO | None:
    """The run's lock on ``state`` (held while the file is open), or ``None`` when
    another run holds it."""
    state.mkdir(parents=True, exist_ok=True)
    f = (state / "chaos.lock").open("w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def _said_rollback(state: Path, out: TextIO) -> None:
    """Whether every fault was rolled back, as the ledger says, and which were not."""
    faults = leftovers(state).get("faults") or []
    if not faults:
        out.write("every fault was rolled back\n")
        return
    out.write("NOT rolled back (seawall chaos status --rollback):\n")
    out.writelines(f"  {f['describe']}\n" for f in faults)


async def _status(state: Path, rollback: bool, out: TextIO) -> int:
    left = leftovers(state)
    extra: list[str] = []
    certs: list[str] = []
    cuts: list[tuple[str, str]] = []
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        try:
            mesh = await open_mesh(state, http)
        except NotRunning:
            mesh = None
        if mesh is not None:  # what is in force, whatever the ledger says
            with contextlib.suppress(httpx.HTTPError, RuntimeError):
                faults = await cert_faults(http, mesh.control_url, mesh.admin_token)
                certs = [str(f.get("service")) for f in faults]
            with contextlib.suppress(ValueError, OSError, NetnsError):
                cuts = await asyncio.to_thread(partitions, state)
        extra += [f"certificate fault on {c} (control plane)" for c in certs]
        extra += [f"network partition {a} <-> {b} (namespaces)" for a, b in cuts]
        if not left.get("faults") and not extra:
            out.write("no chaos fault in force\n")
            return 0
        if left.get("faults"):
            who = "a run still going" if left.get("running") else "a run that did not finish"
            out.write(f"faults left by {who} ({left.get('title')}, pid {left.get('pid')}):\n")
            out.writelines(f"  {f['describe']}\n" for f in left["faults"])
        out.writelines(f"  {line}\n" for line in extra)
        if not rollback:
            return 1
        if left.get("running"):
            out.write("that run is still going: stop it (Ctrl-C) and it rolls back itself\n")
            return 1
        if mesh is None:
            out.write("no `seawall up` runs for this state directory: nothing to roll back on\n")
            return 1
        problems = await roll_back_leftovers(state, http, mesh.control_url, mesh.admin_token)
        for service in certs:
            try:
                await lift_cert_expiry(http, mesh.control_url, mesh.admin_token, service)
            except RuntimeError as exc:
                problems.append(f"certificate fault on {service}: {exc}")
        for a, b in cuts:
            try:
                await asyncio.to_thread(heal, state, a, b)
            except (ValueError, OSError, NetnsError) as exc:
                problems.append(f"network partition {a} <-> {b}: {exc}")
    for p in problems:
        out.write(f"  not rolled back: {p}\n")
    out.write("rolled back\n" if not problems else "")
    return 1 if problems else 0
