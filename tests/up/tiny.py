"""The small mesh of ``seawall up``'s and ``seawall chaos``'s tests: services a and b of
``tests/up/app.py`` on free ports (a calls b through the mesh: ``GET /call/b``)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from seawall.up.processes import processes_in_groups

APP = Path(__file__).with_name("app.py")

PORTS = 10
"""What :func:`mesh_yaml` takes: a's app and sidecar (4), b's (4), the control plane,
the collector."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (bound to 0, then released)."""
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def mesh_yaml(p: list[int], *, b_run: str = "", a_extra: str = "", b_extra: str = "",
              policies: str = "  b: {timeout: 2s}", extra: str = "") -> str:  # fmt: skip
    """The mesh.yaml on ports ``p`` (:data:`PORTS` of them): ``b_run`` replaces b's
    ``run`` (default: the app, one instance); ``*_extra`` are more keys of a service
    (indented lines), ``policies`` the policies section's lines, ``extra`` more
    top-level sections."""
    run = b_run or f"{sys.executable} {APP}"
    return f"""mesh: tiny
services:
  a:
    port: {p[0]}
    sidecar: {{inbound: {p[1]}, outbound: {p[2]}, admin: {p[3]}}}
    run: {sys.executable} {APP}
{a_extra}  b:
    port: {p[4]}
    sidecar: {{inbound: {p[5]}, outbound: {p[6]}, admin: {p[7]}}}
    run: {run}
{b_extra}policies:
{policies}
{extra}tracing: {{endpoint: http://127.0.0.1:{p[9]}/v1/traces, interval: 0.2s}}
"""


def kill_what_is_left(up_doc: dict[str, Any]) -> list[int]:
    """SIGKILL every process left in the group of an ``up.json`` (a failed test: nothing
    may outlive it); their pids."""
    group = up_doc.get("group")
    left = processes_in_groups({group}) if isinstance(group, int) else []
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left
