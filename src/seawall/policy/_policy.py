"""The shape every seawall policy shares.

A policy is a sans-I/O state machine plus two thin adapters: one for sync code
(:meth:`Policy.wrap_sync`) and one for asyncio (:meth:`Policy.wrap_async`).
Everything else here (decorator, plain call) is derived from those two, so a
policy only implements the adapters once and the :class:`~seawall.policy.Pipeline`
can compose any policies by composing their adapters.
"""

from __future__ import annotations

import functools
import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, overload

__all__ = ["Policy"]

P = ParamSpec("P")
R = TypeVar("R")


class Policy(ABC):
    """Base class of the composable policies.

    Subclasses implement :meth:`wrap_sync` and :meth:`wrap_async`. Users get:

    * ``@policy`` on a sync or an ``async def`` function (the signature is kept);
    * ``policy.call(fn, *args, **kwargs)`` and ``await policy.acall(fn, ...)``.
    """

    __slots__ = ()

    @abstractmethod
    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` protected by this policy, for synchronous code."""

    @abstractmethod
    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Return the coroutine function ``fn`` protected by this policy, for asyncio."""

    @overload
    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate ``fn``: ``async def`` gets the asyncio adapter, anything else the sync one."""
        if inspect.iscoroutinefunction(fn):
            wrapped: Callable[P, Any] = self.wrap_async(fn)
        else:
            wrapped = self.wrap_sync(fn)
        return functools.wraps(fn)(wrapped)

    def call(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run ``fn(*args, **kwargs)`` once under this policy (sync)."""
        return self.wrap_sync(fn)(*args, **kwargs)

    async def acall(
        self, fn: Callable[P, Awaitable[R]], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """Await ``fn(*args, **kwargs)`` once under this policy (asyncio)."""
        return await self.wrap_async(fn)(*args, **kwargs)
