"""Reading mesh.yaml: a safe YAML loader that keeps line numbers and refuses duplicates.

Differences from ``yaml.safe_load``, each one a trap in config files:

* **YAML 1.2 scalars.** PyYAML implements YAML 1.1, where ``on``, ``off``,
  ``yes`` and ``no`` are booleans (so ``retry: {on: [5xx]}`` would have the key
  ``True``), ``1:30`` is the integer 90 and ``010`` is 8. Here only
  ``true``/``false`` are booleans, integers are decimal (or ``0x``/``0o``),
  and dates stay strings.
* **Duplicate keys are errors.** YAML loaders keep the last one silently; a
  second ``orders:`` under ``policies`` would replace the first.
* **Line numbers.** Each mapping key and list item remembers its line, so a
  config error can point at the line it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

__all__ = ["Duplicate", "Parsed", "load_yaml", "yaml_problem"]

_MERGE = "tag:yaml.org,2002:merge"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


@dataclass(frozen=True, slots=True)
class Duplicate:
    container: object
    key: object
    line: int
    first_line: int


@dataclass(slots=True)
class Parsed:
    """The data of a YAML document and where each key and item of it was written."""

    data: Any
    lines: dict[int, dict[object, int]] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    keep: list[object] = field(default_factory=list)  # so the ids in `lines` stay unique

    def line_of(self, loc: tuple[object, ...]) -> int | None:
        """The line of the deepest key or item of ``loc`` that exists in the data."""
        line = None
        node = self.data
        for part in loc:
            known = self.lines.get(id(node))
            if known is None or part not in known:
                break
            line = known[part]
            node = node[part]
        return line


class _Loader(yaml.SafeLoader):
    parsed: Parsed


# YAML 1.2 core schema for booleans, integers and floats; no timestamps.
_REPLACED = (_BOOL, _INT, _FLOAT, _TIMESTAMP)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_int(loader: _Loader, node: Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: _Loader, node: Node) -> float:
    text = str(loader.construct_scalar(node)).lower()  # type: ignore[arg-type]
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


def _construct_mapping(loader: _Loader, node: MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    parsed = loader.parsed
    parsed.keep.append(data)
    # Duplicates among the keys written here; keys merged in with `<<` may be overridden.
    own_first: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            seen = key in own_first
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark,
            ) from None
        if seen:
            parsed.duplicates.append(Duplicate(data, key, line, own_first[key]))
        else:
            own_first[key] = line
    loader.flatten_mapping(node)
    lines: dict[object, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        data[key] = loader.construct_object(value_node)
        lines[key] = key_node.start_mark.line + 1
    parsed.lines[id(data)] = lines


def _construct_sequence(loader: _Loader, node: SequenceNode) -> Iterator[list[Any]]:
    data: list[Any] = []
    yield data
    loader.parsed.keep.append(data)
    data.extend(loader.construct_object(child) for child in node.value)
    lines: dict[object, int] = {i: child.start_mark.line + 1 for i, child in enumerate(node.value)}
    loader.parsed.lines[id(data)] = lines


_Loader.add_constructor(_INT, _construct_int)
_Loader.add_constructor(_FLOAT, _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_yaml(text: str) -> Parsed:
    """Parse one YAML document. Raises :class:`yaml.YAMLError` on a syntax error."""
    loader = _Loader(text)
    loader.parsed = Parsed(None)
    try:
        loader.parsed.data = loader.get_single_data()
    finally:
        loader.dispose()
    return loader.parsed


def yaml_problem(exc: yaml.YAMLError) -> tuple[str, str, int | None]:
    """``(where, message, line)`` for a YAML error: where is ``"line 3, column 7"``."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = ": ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}"
            return where, f"invalid YAML: {problem}", mark.line + 1
        return "", f"invalid YAML: {problem}", None
    return "", f"invalid YAML: {exc}", None
