"""``seawall chaos run | validate | status``."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import TextIO

import httpx

from ..config.errors import ConfigError
from .faults import leftovers, roll_back_leftovers
from .mesh import NotRunning, open_mesh
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
    status = 0
    for path in paths:
        exp = _load(path, out)
        if exp is None:
            status = 2
            continue
        out.write(f"{path}: valid ({exp.title})\n")
    return status


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
        problems = check_against(exp, mesh.config, {i.name: i.service
                                                    for i in mesh.instances.values()})  # fmt: skip
        if problems:
            out.write(f"{args.experiment}: refused, nothing injected:\n")
            out.writelines(f"  {p}\n" for p in problems)
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
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, inner.cancel)
        try:
            report = await inner
        except asyncio.CancelledError:
            out.write("seawall chaos: interrupted; every fault was rolled back\n")
            return 130
        except Exception as exc:  # said, after the rollback ran
            left = leftovers(state).get("faults") or []
            out.write(f"seawall chaos: failed: {type(exc).__name__}: {exc}\n")
            out.write("every fault was rolled back\n" if not left else
                      "NOT rolled back (seawall chaos status --rollback):\n"
                      + "".join(f"  {f['describe']}\n" for f in left))  # fmt: skip
            return 1
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
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


async def _status(state: Path, rollback: bool, out: TextIO) -> int:
    left = leftovers(state)
    extra: list[str] = []
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
        try:
            mesh = await open_mesh(state, http)
        except NotRunning:
            mesh = None
        if mesh is not None:
            try:
                from ..control.chaos_api import cert_faults  # noqa: PLC0415

                for f in await cert_faults(http, mesh.control_url, mesh.admin_token):
                    extra.append(f"certificate fault on {f.get('service')} (control plane)")
            except (httpx.HTTPError, RuntimeError, ImportError):
                pass
            try:
                from ..up.netns import partitions  # noqa: PLC0415

                for a, b in await asyncio.to_thread(partitions, state):
                    extra.append(f"network partition {a} <-> {b} (namespaces)")
            except (ImportError, ValueError, OSError):
                pass
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
    for p in problems:
        out.write(f"  not rolled back: {p}\n")
    out.write("rolled back\n" if not problems else "")
    return 1 if problems else 0
