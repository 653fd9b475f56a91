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
    order (the new document's for additions): mappings are walked, anything else
    compared whole; a section only one side has is one entry."""
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
    return [(path, before, after)]
