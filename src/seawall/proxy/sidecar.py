"""``seawall sidecar --config mesh.yaml --service NAME``: validate, then serve on the Rust core.

:func:`run` loads and validates the config in this process (every error at
once, with its path), checks that the service exists and that its ``mtls``
mode can be served, and builds the core's spec (:mod:`seawall.proxy.spec`).
It then replaces itself with the lean long-running process,
:mod:`seawall.proxy.serve`, which starts the Rust core and keeps signals
(SIGHUP reload, SIGTERM drain) and the config file watch. The spec travels in
an anonymous memory file, so the config is validated once.

``--workers N`` (or ``sidecar.workers``) runs N core threads in that one
process: one pool, breaker and retry budget per destination, not N of each,
and one process's memory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..config import ConfigError, MeshConfig, load_mesh
from .spec import sidecar_spec
from .tls import check_identity

__all__ = ["run"]


def run(
    config_path: str, service: str, workers: int | None = None, *, log_format: str = "text"
) -> int:
    """Run the sidecar of ``service``; returns the exit status (2: the config is unusable)."""
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
    return _exec_serve(path, service, config, workers or config.sidecar.workers, log_format)


def _exec_serve(
    path: Path, service: str, config: MeshConfig, workers: int, log_format: str
) -> int:
    """Replace this process with :mod:`seawall.proxy.serve`, handing it the spec."""
    spec = json.dumps(sidecar_spec(config, service), separators=(",", ":")).encode()
    fd = os.memfd_create("seawall-spec", 0)  # no MFD_CLOEXEC: the new process reads it
    os.write(fd, spec)
    os.lseek(fd, 0, os.SEEK_SET)
    sys.stderr.flush()
    sys.stdout.flush()
    argv = [
        sys.executable, "-P", "-m", "seawall.proxy.serve", "--config", os.fspath(path),
        "--service", service, "--workers", str(workers), "--spec-fd", str(fd),
        "--log-format", log_format,
    ]
    os.execv(sys.executable, argv)

