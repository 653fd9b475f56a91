"""The long-running sidecar process (static mode): the Rust core, signals, reloads.

``seawall sidecar --config mesh.yaml --service NAME`` validates the config,
builds the core's spec (:mod:`seawall.proxy.spec`) and then replaces itself
with this process, which imports nothing heavy: no config model, no YAML, no
pydantic. It starts the Rust core (:class:`seawall._native.Sidecar`), which
serves on threads of its own, and keeps the main thread for:

* **reloads**, on SIGHUP (at once, whatever the file holds) and when the
  config file changes, once the change is complete
  (:class:`~seawall.proxy.reload.ReloadDebouncer`: a file renamed over the
  path at once, a file written in place once it has been still for
  ``sidecar.reload_settle``; polled every 0.25 s). The bytes read are
  validated by a short-lived child (``python -m seawall.proxy.spec``): a
  valid config is swapped into the core whole, an invalid one is reported
  with every error and the old one kept; in-flight requests finish on the
  config they started with;
* **drain**, on SIGTERM or SIGINT: stop accepting, let in-flight requests
  finish for up to ``sidecar.drain_grace`` seconds, then exit.

Keeping the config model out of this process is what lets an idle sidecar
stay near 15 MB: the model alone costs about 25 MB of Python heap.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from .._changes import changed_settings
from .child import run_python
from .events import EventLog
from .memory import Trimmer
from .reload import READ, FileSignature, Reload, ReloadDebouncer, Snapshot, content_digest

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import FrameType

# Imports are few on purpose (no argparse, subprocess, pathlib, hashlib): each
# costs an idle sidecar 0.4-4 MB, and this process stays up for months.

__all__ = [
    "POLL_INTERVAL",
    "StaticSidecar",
    "change_summary",
    "log",
    "log_restart",
    "main",
    "restart_needed",
    "run_until_stopped",
]

POLL_INTERVAL = 0.25
"""Seconds between two stats of the config file: a rename is applied within this."""


def log(message: str) -> None:
    """One line on stderr before the sidecar's event log exists (bad arguments)."""
    sys.stderr.write(f"seawall sidecar [{os.getpid()}]: {message}\n")
    sys.stderr.flush()


def _address(listener: Any) -> str:
    return "none" if listener is None else f"{listener[0]}:{listener[1]}"


def restart_needed(started: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    """The settings of ``spec`` that a sidecar started with ``started`` cannot take
    without a restart: its listeners' addresses and its worker threads."""
    found = []
    before, after = started["listeners"], spec["listeners"]
    for name in ("inbound", "outbound", "admin"):
        if before[name] != after[name]:
            found.append(f"listeners.{name}: {_address(before[name])} -> {_address(after[name])}")
    old, new = before["upstreams"], after["upstreams"]
    for name in sorted(old.keys() | new.keys()):
        if old.get(name) != new.get(name):
            found.append(
                f"listeners.upstreams.{name}: {_address(old.get(name))} -> "
                f"{_address(new.get(name))}"
            )
    workers = (s["config"]["sidecar"]["workers"] for s in (started, spec))
    if (w := tuple(workers))[0] != w[1]:
        found.append(f"workers: {w[0]} -> {w[1]}")
    return found


def change_summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What a new config changed, for its event: how many settings, and the first
    20 of their paths (``policies.orders.timeout``)."""
    paths = [path for path, _, _ in changed_settings(before, after)]
    return {"changes": len(paths), "changed": paths[:20]}


def log_restart(events: EventLog, restart: list[str]) -> None:
    """Say which settings of a new config wait for a restart (the core says
    what state the swap reset, as ``state_reset`` events)."""
    if restart:
        events.event("restart_needed", settings=restart)


def _read(path: str) -> tuple[bytes, Snapshot]:
    """The file's bytes and a snapshot of them (the signature from the same open file)."""
    with open(path, "rb") as file:
        stat = os.fstat(file.fileno())
        data = file.read()
    return data, Snapshot(FileSignature.of(stat), content_digest(data))


def compile_spec(data: bytes, service: str, name: str) -> tuple[dict[str, Any] | None, str]:
    """Validate config bytes in a child process: (spec, "") or (None, the errors)."""
    args = ["-m", "seawall.proxy.spec", "--stdin", "--name", name, "--service", service]
    out, errors = run_python(args, data)
    return (None, errors) if out is None else (json.loads(out), "")


class StaticSidecar:
    """The core of one sidecar, and its config file."""

    def __init__(
        self,
        path: str,
        service: str,
        spec: dict[str, Any],
        *,
        workers: int = 1,
        events: EventLog | None = None,
    ) -> None:
        from .. import _native  # noqa: PLC0415 - the extension module, loaded once here

        self.path = path
        self.service = service
        self.events = events or EventLog(service)
        spec["config_version"] = 1  # the configs this sidecar has run, counted
        self.spec = spec
        self.started = spec
        self.core = _native.Sidecar(
            json.dumps(spec), workers=workers, log_format=self.events.format
        )
        loaded: Snapshot | None = None
        try:
            loaded = _read(path)[1]
        except OSError:
            loaded = None
        self.debouncer = ReloadDebouncer(self._settle(spec), loaded)

    @staticmethod
    def _settle(spec: dict[str, Any]) -> float:
        return float(spec["config"]["sidecar"]["reload_settle"])

    def reload(self, now: float) -> bool:
        """Re-read the config file now, whatever it holds (SIGHUP)."""
        try:
            data, snapshot = _read(self.path)
        except OSError as exc:
            self.events.message(
                f"config reload failed ({exc.strerror}), keeping the running config",
                "config_rejected",
            )
            return False
        self.debouncer.loaded(now, snapshot)
        return self._reload_from(data)

    def check_file(self, now: float) -> bool | None:
        """One poll of the config file: reload it if a change is complete."""
        debouncer = self.debouncer
        try:
            signature: FileSignature | None = FileSignature.of(os.stat(self.path))
        except OSError:
            signature = None
        if debouncer.on_stat(now, signature) is not READ:
            return None
        try:
            data, snapshot = _read(self.path)
        except OSError:
            debouncer.on_content(now, None)
            return None
        step = debouncer.on_content(now, snapshot)
        if not isinstance(step, Reload):
            return None
        how = "replaced" if step.reason == "replaced" else f"still for {debouncer.settle:g}s"
        self.events.message(f"config file changed ({how}), reloading", "config_changed")
        return self._reload_from(data)

    def _reload_from(self, data: bytes) -> bool:
        spec, errors = compile_spec(data, self.service, self.path)
        if spec is None:
            self.events.message(
                f"config reload rejected, keeping the running config:\n{errors}",
                "config_rejected",
            )
            return False
        if spec["digest"] == self.spec["digest"]:
            return True
        spec["config_version"] = self.spec["config_version"] + 1
        spec["restart_needed"] = restart_needed(self.started, spec)
        try:
            applied = self.core.apply(json.dumps(spec))
        except ValueError as exc:  # e.g. `mtls: strict` and no identity
            self.events.message(
                f"config reload rejected, keeping the running config: {exc}", "config_rejected"
            )
            return False
        log_restart(self.events, spec["restart_needed"])
        previous, self.spec = self.spec, spec
        self.debouncer.settle = self._settle(spec)
        self.events.event(
            "config_reloaded",
            message=f"config reloaded: version {spec['config_version']} "
            f"(digest {spec['digest'][:12]}, {len(applied[1])} state resets)",
            **change_summary(previous["config"], spec["config"]),
        )
        return True

    def drain(self) -> None:
        """Stop accepting, let in-flight requests finish, stop."""
        self.core.drain(float(self.spec["drain_grace"]))


def run_until_stopped(tick: Callable[[float], object], hup: Callable[[float], object]) -> None:
    """Poll every :data:`POLL_INTERVAL`: ``tick(now)``, and ``hup(now)`` on SIGHUP;
    return on SIGTERM or SIGINT."""
    events: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        events.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    while True:
        time.sleep(POLL_INTERVAL)  # a signal cuts the sleep short
        while events:
            if events.pop(0) != signal.SIGHUP:
                return
            hup(time.monotonic())
        tick(time.monotonic())


def serve(sidecar: StaticSidecar, trimmer: Trimmer) -> int:
    """Serve until SIGTERM or SIGINT; reload on SIGHUP and on file changes."""
    ports = ", ".join(f"{name}={port}" for name, port in sidecar.core.ports())
    sidecar.events.message(f"serving {sidecar.service} on the Rust core: {ports}", "serving")

    def tick(now: float) -> None:
        sidecar.check_file(now)
        trimmer.tick(now)

    run_until_stopped(tick, sidecar.reload)
    sidecar.events.message("draining", "draining")
    sidecar.drain()
    return 0


USAGE = (
    "usage: python -m seawall.proxy.serve --config PATH --service NAME "
    "--workers N --spec-fd FD [--log-format text|json] (run by `seawall sidecar`)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a sidecar whose spec the parent validated (read from ``--spec-fd``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    options = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or not {"--config", "--service", "--spec-fd"} <= options.keys():
        sys.stderr.write(USAGE + "\n")
        return 2
    try:
        spec_fd, workers = int(options["--spec-fd"]), int(options.get("--workers", "1"))
    except ValueError:
        sys.stderr.write(USAGE + "\n")
        return 2
    trimmer = Trimmer()  # before the core allocates anything
    with os.fdopen(spec_fd, "rb") as file:
        spec = json.loads(file.read())
    try:
        events = EventLog(options["--service"], options.get("--log-format", "text"))
        sidecar = StaticSidecar(
            options["--config"], options["--service"], spec, workers=workers, events=events
        )
    except (OSError, ValueError) as exc:
        log(str(exc))
        return 2
    return serve(sidecar, trimmer)


if __name__ == "__main__":
    raise SystemExit(main())
