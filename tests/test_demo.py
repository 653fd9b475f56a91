"""`make demo` runs end to end, on real sockets, and tells the story it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_timeline() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    # 1. The breaker opens, fails fast, probes, and closes once the server recovers.
    assert "CLOSED → OPEN" in out
    assert re.search(r"\d+ calls were rejected at once while OPEN", out)
    assert "OPEN → HALF_OPEN" in out
    tail = out[out.index("payments recovered") :]
    assert "HALF_OPEN → CLOSED" in tail
    # 2. Retries spread out with jitter, then the budget stops them.
    delays = [float(d) for d in re.findall(r"retrying in\s+([\d.]+) ms", out)]
    assert len(set(delays)) > 3
    assert "budget spent, no retry" in out
    cost = int(re.search(r"The outage cost (\d+) requests instead of 100", out).group(1))  # type: ignore[union-attr]
    assert 20 <= cost < 50
    # 3. The per-downstream bulkhead keeps login fast and whole while search hangs.
    shared = re.search(r"one shared pool of 4\s*: login (\d+) ok / (\d+) rejected", out)
    keyed = re.search(r"a pool per downstream\s*: login (\d+) ok / (\d+) rejected", out)
    assert shared
    assert keyed
    assert int(shared.group(2)) > 0
    assert (int(keyed.group(1)), int(keyed.group(2))) == (40, 0)
    finished = float(re.search(r"demo finished in ([\d.]+) s", out).group(1))  # type: ignore[union-attr]
    assert finished < 60
