"""The ``seawall`` command line run as users run it: ``python -m seawall`` in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def seawall(
    *args: str, stdin: bytes | None = None, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``seawall ARGS`` with only seawall's sources on the path (and ``env`` added)."""
    done = subprocess.run(
        [sys.executable, "-m", "seawall", *args],
        check=False,
        capture_output=True,
        input=stdin,
        cwd=cwd,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), **(env or {})},
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
    )
