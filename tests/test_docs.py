"""The documentation is executable and current.

* Every ```python block in README.md and docs/ runs: the blocks of one page in
  order, in one fresh interpreter sharing one namespace, like a reader pasting
  them. A block written as an interactive session (``>>>``) is a doctest: its
  printed output must match. Fragments that cannot run alone (they need a
  request object or a remote service) are fenced as ```py and are not run.
* docs/api.md matches what scripts/gen_api_reference.py generates from the
  docstrings, so the reference cannot drift from the code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _pages_with_code() -> list[Path]:
    return [p for p in PAGES if BLOCK.search(p.read_text())]


@pytest.mark.parametrize("page", _pages_with_code(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path) -> None:
    lines = [
        "import doctest, sys",
        "G = {'__name__': '__main__'}",
        "flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE",
        "runner = doctest.DocTestRunner(optionflags=flags)",
    ]
    for n, block in enumerate(BLOCK.findall(page.read_text())):
        if block.lstrip().startswith(">>>"):
            lines.append(
                f"runner.run(doctest.DocTestParser().get_doctest({block!r}, G, 'block{n}', "
                f"{str(page)!r}, 0), clear_globs=False)"
            )
        else:
            lines.append(f"exec(compile({block!r}, {f'{page}:block{n}'!r}, 'exec'), G)")
    lines.append("sys.exit(1 if runner.failures else 0)")
    script = tmp_path / "page.py"
    script.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{page}:\n{done.stdout}\n{done.stderr}"


def test_every_primitive_has_a_page() -> None:
    pages = {p.stem for p in (ROOT / "docs" / "policy").glob("*.md")}
    assert {
        "breaker", "retry", "backoff", "budget", "bulkhead", "deadline",
        "ratelimit", "hedge", "fallback", "throttle", "pipeline",
    } <= pages


def test_api_reference_is_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_api_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
