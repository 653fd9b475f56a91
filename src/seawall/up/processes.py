"""The processes ``seawall up`` runs: one process group, logs interleaved, restarts.

Every child joins one process group, held by a small idle process started first
(the *holder*): the terminal's Ctrl-C reaches ``seawall up`` alone, which stops the
children in the reverse order of their start, and then kills whatever is left in the
group, grandchildren included. :meth:`Supervisor.leftovers` says whether anything
outlived it.

A child with a network namespace (``seawall up --netns``) is started as ``ip netns
exec NETNS ARGV...``: ``ip`` enters the namespace and execs the program, which keeps
its pid and its process group.

Each child's output (stdout and stderr together) is read line by line, written to
``logs/<name>.log`` in the state directory and to ``seawall up``'s own output,
prefixed by the child's name (coloured on a terminal).

A child that exits when nobody asked it to is started again after a pause that
doubles with each quick exit (0.5 s, 1 s, 2 s... at most 30 s), and starts again
from 0.5 s once it has stayed up 30 s (:class:`Restarts`, sans-I/O).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from .plan import ProcessSpec

__all__ = ["Child", "Restarts", "Supervisor", "listening", "processes_in_groups"]

_COLOURS = (36, 32, 33, 35, 34, 91, 92, 93, 94, 95, 96)


@dataclass
class Restarts:
    """When to start a child again after it exited (sans-I/O)."""

    base: float = 0.5
    cap: float = 30.0
    healthy_after: float = 30.0
    quick_exits: int = 0

    def delay(self, started: float, exited: float) -> float:
        """The pause before the next start of a child that ran from ``started`` to
        ``exited`` (monotonic seconds)."""
        if exited - started >= self.healthy_after:
            self.quick_exits = 0
        delay = min(self.cap, self.base * 2.0**self.quick_exits)
        self.quick_exits += 1
        return delay


@dataclass
class Child:
    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    restarts: int = 0
    wanted: bool = True
    """False once asked to stop: its exit is not a crash."""
    policy: Restarts = field(default_factory=Restarts)
    watcher: asyncio.Task[None] | None = None
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Supervisor:
    """Starts, restarts and stops the children of one ``seawall up``."""

    def __init__(
        self,
        log_dir: Path,
        out: TextIO = sys.stdout,
        *,
        colour: bool = False,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.out = out
        self.colour = colour
        self.children: dict[str, Child] = {}
        self._order: list[str] = []
        self._holder: asyncio.subprocess.Process | None = None
        self._on_event = on_event or (lambda line: self.say("up", line))
        self._width = 12

    @property
    def group(self) -> int | None:
        """The process group every child is in."""
        return None if self._holder is None else self._holder.pid

    # -- output ------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        prefix = name.ljust(self._width)
        if self.colour:
            code = _COLOURS[sum(name.encode()) % len(_COLOURS)]
            prefix = f"\033[{code}m{prefix}\033[0m"
        self.out.write(f"{prefix} | {line}\n")
        self.out.flush()

    async def _pump(self, child: Child, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        path = self.log_dir / f"{child.spec.name.replace(':', '-')}.log"
        with path.open("ab") as log:
            while True:
                line = await process.stdout.readline()
                if not line:
                    break
                log.write(line)
                log.flush()
                self.say(child.spec.name, line.decode(errors="replace").rstrip("\n"))

    # -- starting ------------------------------------------------------------------

    async def _hold(self) -> int:
        if self._holder is None:
            self._holder = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); signal.pause()",
                stdin=asyncio.subprocess.DEVNULL,
                process_group=0,
            )
        return self._holder.pid

    async def start(self, spec: ProcessSpec) -> Child:
        """Start ``spec`` (in the group), and keep it running until :meth:`stop`."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._width = max(self._width, len(spec.name))
        if spec.name in self.children:
            raise ValueError(f"{spec.name} runs already: stop it first")
        child = Child(spec)
        self.children[spec.name] = child
        self._order.append(spec.name)
        await self._spawn(child)
        child.watcher = asyncio.get_running_loop().create_task(self._watch(child))
        return child

    async def _spawn(self, child: Child) -> None:
        spec = child.spec
        group = await self._hold()
        env = {**os.environ, **spec.env}
        argv = spec.argv if spec.netns is None else ("ip", "netns", "exec", spec.netns, *spec.argv)
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            process_group=group,
        )
        child.process = process
        child.started = time.monotonic()

    async def _watch(self, child: Child) -> None:
        while True:
            process = child.process
            assert process is not None
            pump = asyncio.get_running_loop().create_task(self._pump(child, process))
            code = await process.wait()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, 2.0)
            child.last_exit = code
            if not child.wanted:
                return
            delay = child.policy.delay(child.started, time.monotonic())
            child.restarts += 1
            self._on_event(
                f"{child.spec.name} exited with {code}; starting it again in {delay:g}s"
                f" (restart {child.restarts})"
            )
            await asyncio.sleep(delay)
            if not child.wanted:
                return
            try:
                await self._spawn(child)
            except OSError as exc:
                self._on_event(f"{child.spec.name} could not start: {exc}")
                child.process = None
                return

    # -- stopping ------------------------------------------------------------------

    async def stop(self, name: str, grace: float = 10.0) -> int | None:
        """SIGTERM one child, SIGKILL after ``grace``; its exit status."""
        child = self.children.get(name)
        if child is None:
            return None
        child.wanted = False
        process = child.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if child.watcher is not None:
            child.watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await child.watcher
        self.children.pop(name, None)
        if name in self._order:
            self._order.remove(name)
        return None if process is None else process.returncode

    async def stop_all(self, grace: float = 10.0) -> None:
        """Every child in the reverse order of its start; then the whole group."""
        for name in reversed(list(self._order)):
            await self.stop(name, grace)
        group = self.group
        if group is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
            if self._holder is not None:
                await self._holder.wait()

    def leftovers(self) -> list[int]:
        """Live processes still in the group (none, after :meth:`stop_all`)."""
        group = self.group
        return [] if group is None else processes_in_groups({group})


def processes_in_groups(groups: Collection[int]) -> list[int]:
    """The live (not zombie) processes whose process group is one of ``groups`` (Linux
    /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) in groups:
            found.append(int(entry.name))
    return sorted(found)


def listening(pid: int, port: int) -> bool:
    """Whether a TCP socket listens on ``port`` in the network namespace of process
    ``pid`` (Linux ``/proc/PID/net/tcp``, ``tcp6``): the readiness of an app in a
    namespace of its own, whose ``127.0.0.1`` nothing outside reaches."""
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # local address "HEXIP:HEXPORT", state "0A": LISTEN
            if len(fields) > 3 and fields[3] == "0A" and fields[1].endswith(f":{port:04X}"):
                return True
    return False
