"""``seawall up``, ``down``, ``ps`` and ``logs``: compose's verbs for a mesh.yaml.

``seawall up [-f mesh.yaml]`` runs in the foreground until Ctrl-C or SIGTERM;
``--detach`` starts it in the background (its own output in ``state-dir/up.log``)
and returns once everything is ready. ``seawall down`` stops a detached (or any)
``up`` of the state directory and waits until it has stopped everything;
``seawall ps`` shows its instances; ``seawall logs SERVICE`` prints the logs of a
service's apps and sidecars (``-f`` follows them). An ``up --netns`` that did not
stop cleanly (killed) leaves network namespaces: ``down`` removes them, as does the
next ``up`` of the state directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from . import netns
from .runner import UpOptions, run_up, status_rows

__all__ = ["alive", "down", "logs", "ps", "read_object", "read_state", "up"]

UP_LOG = "up.log"
STATE = "up.json"


def up(options: UpOptions, *, detach: bool = False, out: TextIO = sys.stdout) -> int:
    """``seawall up``: the exit status (0: started, ran and stopped cleanly)."""
    if detach:
        return _detach(options, out)
    if (options.state_dir / STATE).exists() and alive(read_state(options.state_dir).get("pid")):
        out.write(f"seawall up: already running for {options.state_dir} (seawall down stops it)\n")
        return 1

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        return await run_up(options, out, stop)

    return asyncio.run(main())


def _detach(options: UpOptions, out: TextIO) -> int:
    state = options.state_dir
    state.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "seawall", "up", "-f", str(options.mesh_file),
            "--state-dir", str(state), "--control-port", str(options.control_port),
            "--status-interval", str(options.status_interval)]  # fmt: skip
    if options.netns:
        argv.append("--netns")
    for flag, value in (("--slo-interval", options.slo_interval),
                        ("--slo-resolution", options.slo_resolution)):  # fmt: skip
        if value is not None:
            argv += [flag, f"{value:g}s"]
    with (state / UP_LOG).open("ab") as log:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + options.ready_timeout + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out.write(f"seawall up: exited with {process.returncode}; its log:\n")
            out.write(_tail(state / UP_LOG, 30))
            return 1
        if read_state(state).get("pid") == process.pid:
            out.write(f"seawall up: running in the background (pid {process.pid});"
                      f" seawall ps, seawall logs SERVICE, seawall down\n")  # fmt: skip
            return 0
        time.sleep(0.2)
    out.write("seawall up: not ready in time; stopping it\n")
    process.terminate()
    return 1


def down(state_dir: Path, *, timeout: float = 60.0, out: TextIO = sys.stdout) -> int:
    """``seawall down``: SIGTERM the ``up`` of ``state_dir``; wait until it has stopped."""
    doc = read_state(state_dir)
    pid = doc.get("pid")
    if not alive(pid):
        out.write(f"seawall down: nothing runs for {state_dir}\n")
        if doc.get("network"):  # an `up --netns` that was killed: its namespaces stay
            try:
                for gone in netns.cleanup(state_dir):
                    out.write(f"seawall down: removed the stale {gone}\n")
            except netns.NetnsError as exc:
                out.write(f"seawall down: cannot remove its network namespaces: {exc}\n")
                return 1
        return 0
    assert isinstance(pid, int)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        out.write(f"seawall down: pid {pid} still runs after {timeout:g}s\n")
        return 1
    out.write(f"seawall down: stopped (pid {pid})\n")
    return 0


def ps(
    state_dir: Path,
    *,
    as_json: bool = False,
    watch: float | None = None,
    out: TextIO = sys.stdout,
    frames: int | None = None,
) -> int:
    """``seawall ps``: what the ``up`` of ``state_dir`` runs, each instance's state.
    ``watch``: a live table, drawn again every ``watch`` seconds (in place on a
    terminal) with the requests and errors per second, until Ctrl-C (or ``frames``
    tables) or until the ``up`` stops."""
    doc = read_state(state_dir)
    if not alive(doc.get("pid")):
        out.write(f"seawall ps: nothing runs for {state_dir}\n")
        return 1
    if as_json:
        out.write(json.dumps(doc, indent=1) + "\n")
        return 0
    if watch is None:
        _ps_table(state_dir, doc, out, None)
        return 0
    seen: dict[str, tuple[float, float, float]] = {}
    live = out.isatty()
    drawn = 0
    try:
        while frames is None or drawn < frames:
            doc = read_state(state_dir)
            if not alive(doc.get("pid")):
                out.write(f"seawall ps: the up of {state_dir} stopped\n")
                return 0
            if live:
                out.write("\033[H\033[2J")  # home, clear: the table drawn again in place
            _ps_table(state_dir, doc, out, seen)
            out.flush()
            drawn += 1
            if frames is None or drawn < frames:
                time.sleep(watch)
    except KeyboardInterrupt:
        pass
    return 0


def _ps_table(
    state_dir: Path,
    doc: dict[str, Any],
    out: TextIO,
    seen: dict[str, tuple[float, float, float]] | None,
) -> None:
    class _Inst:
        def __init__(self, d: dict[str, Any]) -> None:
            self.name, self.app_port = d["name"], d["app_port"]
            self.inbound, self.admin = d["inbound"], d["admin"]
            self.netns, self.address = d.get("netns"), d.get("address", "127.0.0.1")

    async def rows() -> list[list[str]]:
        async with httpx.AsyncClient(trust_env=False, timeout=3.0) as http:
            found = [_Inst(d) for d in doc.get("instances", [])]
            return await status_rows(http, str(doc["control_url"]), state_dir, found, seen)

    table = asyncio.run(rows())
    processes = doc.get("processes", {})
    table[0] += ["PIDS (APP/SIDECAR)", "RESTARTS"]
    for row in table[1:]:
        app, car = processes.get(f"app:{row[0]}", {}), processes.get(f"sidecar:{row[0]}", {})
        row += [f"{app.get('pid', '-')}/{car.get('pid', '-')}",
                str(app.get("restarts", 0) + car.get("restarts", 0))]  # fmt: skip
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    out.write(f"seawall up pid {doc['pid']}, control plane {doc['control_url']}\n")
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def logs(state_dir: Path, service: str, *, follow: bool = False, out: TextIO = sys.stdout) -> int:
    """``seawall logs SERVICE``: its apps' and sidecars' logs (``control`` for the
    control plane's), each line prefixed by its process; ``follow``: until Ctrl-C."""
    folder = state_dir / "logs"
    if service == "control":
        paths = [folder / "control.log"]
    else:
        # its instances as `up` runs them (else the first, named after the service)
        names = [str(i["name"]) for i in read_state(state_dir).get("instances", [])
                 if i.get("service") == service] or [service]  # fmt: skip
        paths = [folder / f"{kind}-{name}.log" for name in names for kind in ("sidecar", "app")]
        paths.append(folder / f"external-{service}.log")  # an external host's stand-in
    paths = [p for p in paths if p.exists()]
    if not paths:
        out.write(f"seawall logs: no log of {service!r} in {folder}\n")
        return 1
    offsets = dict.fromkeys(paths, 0)
    try:
        while True:
            for path in paths:
                with path.open("rb") as f:
                    f.seek(offsets[path])
                    data = f.read()
                    offsets[path] = f.tell()
                for line in data.decode(errors="replace").splitlines():
                    out.write(f"{path.stem.replace('-', ':', 1)} | {line}\n")
            out.flush()
            if not follow:
                return 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        return 0


def read_state(state_dir: Path) -> dict[str, Any]:
    """``up.json`` of the ``seawall up`` of ``state_dir`` (``{}``: none, or unreadable)."""
    return read_object(state_dir / STATE)


def read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (``{}``: no file, not JSON, or not an object)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def alive(pid: object) -> bool:
    """Whether ``pid`` is a running process (a zombie is not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    return True


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "".join(f"  {line}\n" for line in text.splitlines()[-lines:])
