"""The settings that differ between two config documents (plain JSON data).

Shared by ``seawall diff`` (:mod:`seawall.config.diff`) and the sidecar's
event log, which says what a swapped config changed. It imports nothing, so
the lean long-running sidecar process can use it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MISSING", "changed_settings"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""The value on the side where a setting (or a whole section) does not exist."""


def changed_settings(before: Any, after: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted path, before, after)`` of every setting that differs, in document
    order (the new document's for additions): mappings are walked, and so are lists of
    named mappings (routes, by name: ``policies.orders.routes[checkout].split``) whose
    names keep their order, and lists of as many mappings without names (by place:
    ``routes[0]``); anything else is compared whole; a section only one side has is one
    entry."""
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[tuple[str, Any, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            found += changed_settings(
                before.get(key, MISSING),
                after.get(key, MISSING),
                f"{path}.{key}" if path else str(key),
            )
        return found
    old, new = _named(before), _named(after)
    if old is not None and new is not None:
        kept = [n for n in old if n in new]
        if kept == [n for n in new if n in old]:  # the same order (the first match wins)
            found = []
            for name in [*old, *(n for n in new if n not in old)]:
                found += changed_settings(
                    old.get(name, MISSING), new.get(name, MISSING), f"{path}[{name}]"
                )
            return found
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
        and all(isinstance(x, dict) for x in [*before, *after])
    ):  # mappings without names, as many: each by its place
        found = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            found += changed_settings(b, a, f"{path}[{i}]")
        return found
    return [(path, before, after)]


def _named(value: Any) -> dict[str, Any] | None:
    """A list of mappings each with a ``name`` of its own, by name; else ``None``."""
    if not isinstance(value, list):
        return None
    by_name: dict[str, Any] = {}
    for item in value:
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or name in by_name:
            return None
        by_name[name] = item
    return by_name
