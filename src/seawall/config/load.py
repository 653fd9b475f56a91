"""Where config enters: :func:`load_mesh` (YAML text or a file) and :func:`parse_mesh` (data).

Both return a complete, validated :class:`~seawall.config.MeshConfig` or raise
:class:`~seawall.config.ConfigError` listing every problem; nothing in
between. The sidecar (on start and on reload) and the control plane (when a
config is pushed) go through here and nowhere else.

Order of work: parse the YAML (a syntax error stops here, with its line);
check the shape is sane (no recursion, no alias bomb); validate with the
schema and run the cross-section checks, both always, so that every problem
is reported in one go; sort the problems in document order.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ._types import ERROR_TYPE
from ._yaml import Parsed, load_yaml, yaml_problem
from .checks import cross_check
from .errors import ConfigError, ConfigIssue
from .model import MeshConfig

__all__ = ["load_document", "load_mesh", "parse_mesh"]

MAX_VALUES = 100_000
"""Values a config may hold once YAML aliases are expanded (a real mesh has a few thousand)."""
MAX_DEPTH = 64
"""Nesting a config may have (the model itself nests about 8 deep)."""


def load_mesh(source: str | bytes | os.PathLike[str]) -> MeshConfig:
    """Load a mesh config from YAML text or a YAML file.

    ``source`` is a file path when it is an :class:`os.PathLike`, or a ``str``
    with no newline that does not start with ``{``; otherwise it is the YAML
    text itself (``bytes`` are decoded as UTF-8).

    Raises :class:`ConfigError` for every problem: an unreadable file, invalid
    YAML (with its line and column), or an invalid config (every error, each
    with its path).
    """
    parsed, name = _read(source)
    return _parse(parsed, name)


M = typing.TypeVar("M", bound=BaseModel)
Check = typing.Callable[[Any], typing.Iterable[tuple[tuple[Any, ...], str, str | None]]]
"""Checks across sections, on the plain data: ``(path, message, got)`` for each problem."""


def load_document(
    source: str | bytes | os.PathLike[str],
    model: type[M],
    check: Check | None = None,
    *,
    what: str = "document",
) -> M:
    """Load another YAML document of seawall's (a chaos experiment...) the way
    :func:`load_mesh` loads mesh.yaml: the same YAML limits, every problem reported at
    once with its path, value and line, in document order; ``check`` adds problems
    found across sections."""
    parsed, name = _read(source)
    return _parse(parsed, name, model, check, what)


def _read(source: str | bytes | os.PathLike[str]) -> tuple[Parsed, str | None]:
    name: str | None = None
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError([ConfigIssue("", f"not UTF-8 text: {exc}")]) from None
    elif isinstance(source, str) and ("\n" in source or source.lstrip().startswith("{")):
        text = source
    else:
        name = os.fspath(source)
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([ConfigIssue(name, f"cannot read: {exc.strerror}")], name) from None
        except UnicodeDecodeError as exc:
            raise ConfigError([ConfigIssue(name, f"not UTF-8 text: {exc}")], name) from None
    try:
        parsed = load_yaml(text)
    except yaml.YAMLError as exc:
        where, message, line = yaml_problem(exc)
        raise ConfigError([ConfigIssue(where, message, line=line)], name) from None
    except RecursionError:
        raise ConfigError([ConfigIssue("", "invalid YAML: nested too deeply")], name) from None
    return parsed, name


def parse_mesh(data: Mapping[str, Any]) -> MeshConfig:
    """Validate mesh config data (from YAML, JSON, or the control plane).

    ``data`` is what a YAML or JSON parser returns: mappings, lists, strings,
    numbers, booleans and ``None``. Raises :class:`ConfigError` listing every
    problem, in document order.
    """
    return _parse(Parsed(data), None)


# ---------------------------------------------------------------- the one path in


@typing.overload
def _parse(parsed: Parsed, source: str | None) -> MeshConfig: ...
@typing.overload
def _parse(
    parsed: Parsed, source: str | None, model: type[M], check: Check | None, what: str
) -> M: ...
def _parse(
    parsed: Parsed,
    source: str | None,
    model: type[BaseModel] = MeshConfig,
    check: Check | None = cross_check,
    what: str = "config",
) -> BaseModel:
    raw = parsed.data
    if raw is None:
        expected = (
            "mesh and services"
            if model is MeshConfig
            else ", ".join(name for name, info in model.model_fields.items() if info.is_required())
        )
        empty = ConfigIssue("", f"empty {what}: expected a mapping with {expected}")
        raise ConfigError([empty], source)
    if not isinstance(raw, Mapping):
        raise ConfigError([ConfigIssue("", "must be a mapping", _show(raw))], source)
    shape = _shape_problem(raw)
    if shape is not None:
        raise ConfigError([ConfigIssue("", shape)], source)
    data = _plain(raw)

    found: list[tuple[tuple[Any, ...], ConfigIssue]] = []
    for dup in parsed.duplicates:
        loc = (*_find(raw, dup.container), dup.key)
        message = f"duplicate key (first on line {dup.first_line})"
        found.append((loc, ConfigIssue(_format(raw, loc), message, line=dup.line)))
    result: BaseModel | None = None
    try:
        result = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        inner = [e["loc"] for e in errors]
        for error in errors:
            if error["type"] == "too_short" and any(
                len(other) > len(error["loc"]) and other[: len(error["loc"])] == error["loc"]
                for other in inner
            ):
                continue  # its items' own errors say more (an invalid item is dropped)
            loc = _clean_loc(error["loc"], raw)
            found.append((loc, _issue(error, loc, raw, parsed, model)))
    for loc, message, got in check(data) if check is not None else ():
        found.append((loc, ConfigIssue(_format(raw, loc), message, got, parsed.line_of(loc))))

    if found or result is None:
        found.sort(key=lambda item: _position(raw, item[0]))
        raise ConfigError(_unique(issue for _, issue in found), source)
    return result


def _unique(issues: typing.Iterable[ConfigIssue]) -> list[ConfigIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out


def _shape_problem(raw: object) -> str | None:
    """Refuse recursive data, alias bombs and absurd nesting before anything walks it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: object, depth: int) -> int:
        if not isinstance(node, Mapping | list | tuple):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        if id(node) in active:
            raise _Refused("refers to itself (a recursive YAML alias)")
        if depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
        active.add(id(node))
        children = node.values() if isinstance(node, Mapping) else node
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise _Refused(f"too large: over {MAX_VALUES} values once aliases are expanded")
        active.discard(id(node))
        sizes[id(node)] = total
        return total

    try:
        size(raw, 0)
    except _Refused as exc:
        return str(exc)
    return None


class _Refused(Exception):
    pass


def _plain(value: object) -> Any:
    """Plain dicts and lists all the way down (any Mapping or tuple accepted)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _find(root: object, target: object) -> tuple[Any, ...]:
    """The loc of the container ``target`` (by identity) inside ``root``."""
    stack: list[tuple[object, tuple[Any, ...]]] = [(root, ())]
    while stack:
        node, loc = stack.pop()
        if node is target:
            return loc
        if isinstance(node, Mapping):
            stack.extend((child, (*loc, key)) for key, child in node.items())
        elif isinstance(node, list):
            stack.extend((child, (*loc, i)) for i, child in enumerate(node))
    return ()


# ---------------------------------------------------------------- locations


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _clean_loc(loc: tuple[int | str, ...], raw: object = None) -> tuple[Any, ...]:
    # pydantic marks a dict key's own error with a trailing "[key]", and puts the tag of
    # a discriminated union's member in the path (``actions[3].partition``): not a key.
    parts = list(loc[:-1]) if loc and loc[-1] == "[key]" else list(loc)
    out: list[Any] = []
    node = raw
    tag_skipped = False
    for part in parts:
        if not tag_skipped and _is_tag(node, part):
            tag_skipped = True  # once per level: {action: fault, fault: ...} has both
            continue
        tag_skipped = False
        out.append(part)
        node = _child(node, part)
    return tuple(out)


def _is_tag(node: object, part: object) -> bool:
    """Whether ``part`` of a path at ``node`` is a tagged union's tag (the value of the
    node's ``action``, say), not one of its keys."""
    if not isinstance(node, Mapping) or not isinstance(part, str):
        return False
    return part in node.values() and (part not in node or node.get("action") == part)


def _format(raw: object, loc: tuple[Any, ...]) -> str:
    """``("policies", "orders", "routes", 0, "split")`` → ``policies.orders.routes[0].split``."""
    out = ""
    node = raw
    for part in loc:
        if isinstance(node, list | tuple) and isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
        node = _child(node, part)
    return out


def _child(node: object, part: object) -> object:
    if isinstance(node, Mapping):
        try:
            return node.get(part)
        except TypeError:
            return None
    if isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
        return node[part]
    return None


def _lookup(raw: object, loc: tuple[Any, ...]) -> tuple[bool, object]:
    node = raw
    for part in loc:
        if isinstance(node, Mapping):
            try:
                if part not in node:
                    return False, None
            except TypeError:
                return False, None
            node = node[part]
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return False, None
    return True, node


def _position(raw: object, loc: tuple[Any, ...]) -> tuple[int, ...]:
    """Where ``loc`` is in the document: key and item indices (missing keys sort last)."""
    out = []
    node = raw
    for part in loc:
        if isinstance(node, Mapping):
            keys = list(node)
            out.append(keys.index(part) if part in keys else len(keys))
        elif isinstance(node, list | tuple) and isinstance(part, int):
            out.append(part)
        else:
            out.append(0)
        node = _child(node, part)
    return tuple(out)


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- pydantic errors


_TEXT = {
    "missing": "required",
    "extra_forbidden": "unknown key",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "iterable_type": "must be a list",
    "set_type": "must be a list",
}
_NO_VALUE = frozenset(("missing", "extra_forbidden"))


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    if kind == ERROR_TYPE:
        return str(ctx["message"])
    if kind in _TEXT:
        return _TEXT[kind]
    if kind == "union_tag_invalid":
        return f"{ctx['discriminator'].strip(chr(39))}: must be one of {ctx['expected_tags']}"
    if kind == "union_tag_not_found":
        return f"needs {ctx['discriminator'].strip(chr(39))}"
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op, key = {
            "greater_than_equal": (">=", "ge"),
            "greater_than": (">", "gt"),
            "less_than_equal": ("<=", "le"),
            "less_than": ("<", "lt"),
        }[kind]
        return f"must be {op} {_number(ctx[key])}"
    if kind == "too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least == 1 else f"must have at least {least} items"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items"
    text = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        text = text.removeprefix(prefix)
    return text[:1].lower() + text[1:]


def _issue(
    error: ErrorDetails,
    loc: tuple[Any, ...],
    raw: object,
    parsed: Parsed,
    model: type[BaseModel] = MeshConfig,
) -> ConfigIssue:
    kind = error["type"]
    path = _format(raw, loc)
    message = _message(error)
    if kind == "extra_forbidden" and loc:
        message += _did_you_mean(loc, model)
    got: str | None
    ctx = error.get("ctx") or {}
    if kind in _NO_VALUE:
        got = None
    elif kind == "union_tag_invalid":
        got = repr(ctx.get("tag"))
    elif "got" in ctx:
        got = str(ctx["got"])
    elif error["loc"] and error["loc"][-1] == "[key]":
        got = None  # the path already shows the key
    else:
        found, value = _lookup(raw, loc)
        # Not in the data: a default that a value written elsewhere conflicts with.
        got = _show(value) if found else f"{_show(error.get('input'))} (the default)"
    return ConfigIssue(path, message, got, parsed.line_of(loc))


# Keys renamed so that mesh.yaml and seawall.policy say the same thing (issue 14):
# (section, old key) -> new key.
_RENAMED = {
    ("outlier", "ejection"): "base_ejection",
    ("outlier", "max_ejected"): "max_ejected_percent",
}


def _did_you_mean(loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    if len(loc) >= 2 and (new := _RENAMED.get((str(loc[-2]), str(loc[-1])))):
        return f" (renamed {new!r}: the name seawall.policy uses too)"
    fields = _fields_at(loc[:-1], model)
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1) if fields else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(loc: tuple[Any, ...], model: type[BaseModel]) -> list[str]:
    """The keys ``model`` accepts at ``loc`` (for "did you mean")."""
    kind: Any = model
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            info = kind.model_fields.get(part)
            if info is None:
                return []
            kind = info.annotation
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        elif typing.get_origin(kind) is tuple:
            kind = typing.get_args(kind)[0]
        else:
            return []
    kind = _unwrap(kind)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return list(kind.model_fields)
    return []


def _unwrap(kind: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
            continue
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
            if len(options) == 1:
                kind = options[0]
                continue
        return kind
