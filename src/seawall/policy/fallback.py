"""Fallback: a degraded answer instead of an error (or instead of a bad result).

Placed outermost in a pipeline, a fallback sees the final outcome of
everything below it: an open breaker, a full bulkhead, a passed deadline, a
rate limit or a throttle (all :class:`~seawall.policy.errors.SeawallError`,
the default ``on=``), or whatever exceptions and results you choose, and
answers with a fixed ``value`` or with ``function(exception_or_result)``.

It only ever handles :class:`Exception`: ``KeyboardInterrupt``,
``SystemExit``, ``GeneratorExit`` and ``asyncio.CancelledError`` always pass
through.

It is not a context manager: a ``with`` block can swallow an exception but
cannot hand a value back to the code after it, so a fallback "for a block"
would only be a silent ``except``. Use it as a decorator or with
:meth:`~seawall.policy.Policy.call` / :meth:`~seawall.policy.Policy.acall`.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeAlias, TypeVar

from ._policy import Policy
from ._validate import require_exception_matcher
from .errors import SeawallError

__all__ = ["Fallback", "FallbackOn"]

P = ParamSpec("P")
R = TypeVar("R")

FallbackOn: TypeAlias = (
    type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool]
)
"""What a :class:`Fallback` handles: exception types, or a predicate on the exception."""


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING


def _never(result: object) -> bool:
    return False


class Fallback(Policy):
    """Answer with ``value`` or ``function(...)`` when the call fails in a chosen way.

    Exactly one of ``value`` and ``function`` is required (``value=None`` is a
    valid value). ``function`` receives the exception, or the result when
    ``on_result`` matched it; its return value becomes the call's. With the
    asyncio adapter, ``function`` may be ``async``.

    ``on`` (default ``(SeawallError,)``: ``CircuitOpenError``,
    ``BulkheadFullError``, ``DeadlineExceeded``, ``RateLimitedError``,
    ``ThrottledError``) is an exception type, a tuple of them, or a predicate
    ``on(exc) -> bool``. The default handles the protections saying no, not the
    dependency's own errors: falling back on every error hides bugs.
    ``on_result(result) -> bool`` also replaces bad results (``None`` by
    default: results are returned as they are).

    An exception raised by ``function`` propagates (with the original one as
    its context).

    >>> from seawall.policy.errors import CircuitOpenError
    >>> @Fallback(value=[])
    ... def recommendations() -> list[str]:
    ...     raise CircuitOpenError("recs", "open", None, None)
    >>> recommendations()
    []
    """

    __slots__ = ("_function", "_matches", "_on_result", "_value")

    def __init__(
        self,
        *,
        value: Any = _MISSING,
        function: Callable[[Any], Any] | None = None,
        on: FallbackOn = (SeawallError,),
        on_result: Callable[[Any], bool] | None = None,
    ) -> None:
        if (value is _MISSING) == (function is None):
            raise ValueError(
                "Fallback: give exactly one of value= and function=, got "
                + ("neither" if function is None else f"both (value={value!r})")
            )
        if function is not None and not callable(function):
            raise ValueError(f"Fallback: function must be callable, got {function!r}")
        if on_result is not None and not callable(on_result):
            raise ValueError(f"Fallback: on_result must be callable, got {on_result!r}")
        self._value = value
        self._function = function
        self._matches = _matcher(on)
        self._on_result = on_result

    def __repr__(self) -> str:
        if self._function is None:
            return f"Fallback(value={self._value!r})"
        return f"Fallback(function={self._function!r})"

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Sync adapter. ``function`` must be synchronous here (``TypeError`` otherwise)."""
        if self._function is not None and inspect.iscoroutinefunction(self._function):
            raise TypeError(
                f"Fallback: function {self._function!r} is async; "
                "it can only protect async callables"
            )
        matches = self._matches
        on_result = self._on_result or _never
        replace = self._replace_sync

        def fallback_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not matches(exc):
                    raise
                replaced: R = replace(exc)
                return replaced
            if on_result(result):
                replaced = replace(result)
                return replaced
            return result

        return fallback_sync

    def _replace_sync(self, failed: object) -> Any:
        if self._function is None:
            return self._value
        answer = self._function(failed)
        if inspect.isawaitable(answer):
            if inspect.iscoroutine(answer):
                answer.close()
            raise TypeError(
                f"Fallback: function {self._function!r} returned an awaitable; "
                "it can only protect async callables"
            )
        return answer

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """asyncio adapter. ``function`` may be sync or async."""
        matches = self._matches
        on_result = self._on_result or _never
        replace = self._replace_async

        async def fallback_async(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                if not matches(exc):
                    raise
                replaced: R = await replace(exc)
                return replaced
            if on_result(result):
                replaced = await replace(result)
                return replaced
            return result

        return fallback_async

    async def _replace_async(self, failed: object) -> Any:
        if self._function is None:
            return self._value
        answer = self._function(failed)
        if inspect.isawaitable(answer):
            answer = await answer
        return answer


def _matcher(on: FallbackOn) -> Callable[[Exception], bool]:
    """A predicate for ``on``, validated."""
    types, predicate = require_exception_matcher("Fallback", "on", on)
    if predicate is not None:
        return predicate

    def matches(exc: Exception) -> bool:
        return isinstance(exc, types)

    return matches
