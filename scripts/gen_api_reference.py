"""Write docs/api.md, the API reference, from the public names' docstrings.

``python scripts/gen_api_reference.py`` rewrites the file; ``--check`` exits 1
when the committed file is out of date (the test suite runs that check, so the
reference never drifts from the code).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

MODULES = ["seawall.policy", "seawall.client.httpx", "seawall.telemetry", "seawall.slo"]
OUT = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def _signature(obj: object) -> str:
    try:
        text = str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    # Default values that are objects print their address: keep the page stable.
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _value(obj: object) -> str:
    """A constant's repr, with sets sorted so the page does not change between runs."""
    if isinstance(obj, (set, frozenset)):
        return f"{type(obj).__name__}({sorted(obj, key=repr)!r})"
    return repr(obj)


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or "*(no docstring)*"


def _members(cls: type) -> list[tuple[str, object]]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name not in ("__call__", "__enter__", "__aenter__"):
            continue
        member = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if callable(member) or isinstance(member, property):
            out.append((name, member))
    return out


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `scripts/gen_api_reference.py`; do not edit by hand.",
        "",
    ]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", _doc(module), ""]
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj):
                lines += [f"### class `{name}{_signature(obj)}`", "", _doc(obj), ""]
                for member, value in _members(obj):
                    if isinstance(value, property):
                        lines += [f"- **`{member}`** (property): {_doc(value).splitlines()[0]}"]
                    else:
                        first = _doc(value).splitlines()[0]
                        lines += [f"- **`{member}{_signature(value)}`**: {first}"]
                lines.append("")
            elif callable(obj):
                lines += [f"### `{name}{_signature(obj)}`", "", _doc(obj), ""]
            else:
                lines += [f"### `{name}` = `{_value(obj)}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
