"""Checks for policy settings, shared by every policy (private).

Rules, the same for every parameter of every policy:

* Validation runs at construction. Never call these on a hot path: where a
  per-call argument must be checked, compare inline and call a helper only on
  the failure branch, to raise the standard error.
* Every failure is a ``ValueError`` reading ``<Owner>: <param> must be
  <rule>, got <value!r>``: the owner (class or function), the parameter and
  the offending value, so a bad line of config is found at once.
* A number is an ``int`` or ``float`` that is not a ``bool`` (``True`` is not
  1 second) and not NaN. Unless said otherwise it must be finite.
* A keyword renamed to share mesh.yaml's vocabulary (issue 14) is refused with
  a ``TypeError`` naming its new name (:func:`renamed_keywords`), never
  silently accepted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, ParamSpec, TypeGuard, TypeVar, cast

ExceptionTypes = tuple[type[BaseException], ...]

P = ParamSpec("P")
R = TypeVar("R")


def _fail(owner: str, name: str, rule: str, value: object) -> NoReturn:
    raise ValueError(f"{owner}: {name} must be {rule}, got {value!r}")


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def require_int(
    owner: str, name: str, value: object, *, minimum: int, allow_none: bool = False
) -> None:
    """An ``int`` (not a ``bool``, not a float, even ``2.0``) ``>= minimum``."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(owner, name, f"an int >= {minimum}" + (" or None" if allow_none else ""), value)


def require_number(
    owner: str,
    name: str,
    value: object,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    finite: bool = True,
    allow_none: bool = False,
) -> None:
    """A number (not NaN) within the bounds given: ``gt``/``ge`` below, ``lt``/``le`` above.

    The rule reads ``in (0, 100]`` with a bound on each side, else ``a finite
    number >= 1`` (``a number >= 0`` when ``finite=False`` lets infinities in).
    """
    if value is None and allow_none:
        return
    if (
        _is_number(value)
        and not math.isnan(value)
        and (not finite or -math.inf < value < math.inf)
        and (gt is None or value > gt)
        and (ge is None or value >= ge)
        and (lt is None or value < lt)
        and (le is None or value <= le)
    ):
        return
    low = gt if gt is not None else ge
    high = lt if lt is not None else le
    if low is not None and high is not None:
        rule = f"in {'(' if gt is not None else '['}{low}, {high}{')' if lt is not None else ']'}"
    else:
        rule = "a finite number" if finite else "a number"
        if low is not None:
            rule += f" {'>' if gt is not None else '>='} {low}"
        if high is not None:
            rule += f" {'<' if lt is not None else '<='} {high}"
    _fail(owner, name, rule + (" or None" if allow_none else ""), value)


def require_seconds(
    owner: str,
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    allow_inf: bool = False,
    allow_none: bool = False,
) -> None:
    """A duration in seconds: ``> 0`` (``>= 0`` with ``allow_zero``), finite unless
    ``allow_inf`` (where ``math.inf`` means "no limit of its own")."""
    require_number(
        owner,
        name,
        value,
        gt=None if allow_zero else 0,
        ge=0 if allow_zero else None,
        finite=not allow_inf,
        allow_none=allow_none,
    )


def require_at_least(owner: str, name: str, value: float, other: str, bound: float) -> None:
    """``value >= bound``, where ``bound`` is the (validated) parameter ``other``."""
    if value < bound:
        _fail(owner, name, f">= {other} ({bound!r})", value)


def require_exception_matcher(
    owner: str, name: str, value: object, *, base: type[BaseException] = Exception
) -> tuple[ExceptionTypes, Callable[[Any], bool] | None]:
    """Split "an exception type, a non-empty tuple of them, or a predicate" into
    ``(types, None)`` or ``((), predicate)``; every type must subclass ``base``.

    ``base`` is :class:`Exception` unless the owner has a reason to see
    cancellation and ``KeyboardInterrupt`` too.
    """
    if isinstance(value, type):
        types: tuple[object, ...] = (value,)
    elif isinstance(value, tuple) and value:
        types = value
    elif callable(value):
        return (), value
    else:
        _fail(owner, name, "an exception type, a non-empty tuple of them or a predicate", value)
    for kind in types:
        if not (isinstance(kind, type) and issubclass(kind, base)):
            _fail(owner, name, f"{base.__name__} subclasses or a predicate", kind)
    return cast(ExceptionTypes, types), None


def reject_renamed(owner: str, renames: Mapping[str, str], given: Iterable[str]) -> None:
    """Raise ``TypeError`` if one of the keywords ``given`` was renamed (``old -> new``)."""
    for name in given:
        new = renames.get(name)
        if new is not None:
            raise TypeError(f"{owner}: {name!r} is now {new!r} (one vocabulary with mesh.yaml)")


def renamed_keywords(
    owner: str, renames: Mapping[str, str]
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an ``__init__`` so that a renamed keyword gets a ``TypeError`` naming the
    new one, instead of Python's bare "unexpected keyword argument".

    The signature that type checkers and ``inspect.signature`` see is the
    function's own, so an old keyword is a type error too.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def checked(*args: P.args, **kwargs: P.kwargs) -> R:
            reject_renamed(owner, renames, kwargs)
            return fn(*args, **kwargs)

        return checked

    return decorate
