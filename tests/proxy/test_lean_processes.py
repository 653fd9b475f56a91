"""The long-running sidecar processes import nothing heavy (the 20 MB idle target).

An idle sidecar's memory is mostly what its Python process imported: the
config model (pydantic), cryptography, httpx or asyncio (which imports
``ssl``) each cost 5-25 MB. The static process (``seawall.proxy.serve``) and
the managed one (``seawall.proxy.linked``) leave them to short-lived
children; this checks that no import creeps back in. The figure itself is
measured by ``make bench-proxy``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = {
    "pydantic", "cryptography", "httpx", "asyncio", "ssl", "yaml", "argparse",
    "subprocess", "dataclasses", "random", "seawall.config", "seawall.policy",
}

PROBE = """
import json, sys
import {module}
loaded = set(sys.modules)
print(json.dumps(sorted(name for name in {heavy} if name in loaded)))
"""


@pytest.mark.parametrize("module", ["seawall.proxy.serve", "seawall.proxy.linked"])
def test_the_long_running_process_imports_nothing_heavy(module: str) -> None:
    code = PROBE.format(module=module, heavy=sorted(HEAVY))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert json.loads(out) == []
