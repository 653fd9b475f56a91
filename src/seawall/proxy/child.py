"""Short-lived Python children of the long-running sidecar process.

The long-running process keeps its imports few (an idle sidecar stays under
20 MB), so work that needs the config model (pydantic) or ``cryptography``
is done by a child that imports them, answers, and exits: validating a
config file or a pushed snapshot, making a CSR and installing a certificate.

A child reads its input from, and writes its answer to, anonymous memory
files (no pipes to drain, no threads), and its exit status says which of
stdout (the answer) and stderr (the errors) to read.
"""

from __future__ import annotations

import os
import sys

__all__ = ["run_python"]


def _memfile(name: str, data: bytes = b"") -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def run_python(args: list[str], data: bytes) -> tuple[bytes | None, str]:
    """Run ``python ARGS`` with ``data`` on stdin: (stdout, "") on exit 0, else (None, stderr)."""
    argv = [sys.executable, "-P", *args]  # -P: never a module of the working directory
    stdin, stdout, stderr = _memfile("stdin", data), _memfile("stdout"), _memfile("stderr")
    try:
        actions = [(os.POSIX_SPAWN_DUP2, fd, n) for n, fd in enumerate((stdin, stdout, stderr))]
        pid = os.posix_spawn(sys.executable, argv, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            errors = _read_all(stderr).decode("utf-8", "replace").rstrip()
            return None, errors or f"{' '.join(args)}: exit status {status}"
        return _read_all(stdout), ""
    finally:
        for fd in (stdin, stdout, stderr):
            os.close(fd)
