"""Pipeline: several policies around one call, in an explicit order.

``Pipeline(a, b, c)`` runs a call as ``a(b(c(call)))``: the first policy is
the outermost. Each policy contributes its own sync or asyncio adapter, so a
pipeline costs the sum of its parts and nothing more; it is itself a
:class:`~seawall.policy.Policy` and can be nested or used as a decorator.

The recommended order, and why (:meth:`Pipeline.recommended` builds it):

1. **Fallback** outermost: it sees the final outcome of everything below,
   including ``CircuitOpenError`` and ``BulkheadFullError``, and turns it into a
   degraded answer.
2. **Retry** next: each attempt goes through the breaker, the bulkhead and the
   timeout again, so a retry is refused at once by an open breaker (the error's
   ``retry_after`` tells the retry when a probe is possible) and every attempt
   gets a fresh per-try timeout. Retries never run past the deadline.
3. **Circuit breaker**: it counts each attempt, not each logical call, which is
   what the dependency experienced; when open, it rejects before a bulkhead
   slot or a timer is spent.
4. **Bulkhead**: limits the calls actually in flight to the dependency. A
   rejection here is raised through the breaker; add ``BulkheadFullError`` to
   the breaker's ``ignore_on`` if local saturation should not open it.
5. **Timeout** innermost: it bounds the call itself (the per-try timeout), so
   time spent queueing in the bulkhead is not charged to the attempt and the
   breaker sees a timed-out attempt as a failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from ._policy import Policy

__all__ = ["Pipeline"]

P = ParamSpec("P")
R = TypeVar("R")


class Pipeline(Policy):
    """Compose policies; the first one given is the outermost.

    >>> from seawall.policy import CircuitBreaker, Pipeline, Retry
    >>> pipeline = Pipeline(Retry(on=ConnectionError), CircuitBreaker("db"))
    >>> @pipeline
    ... def ping() -> str:
    ...     return "pong"
    >>> ping()
    'pong'
    """

    __slots__ = ("policies",)

    def __init__(self, *policies: Policy) -> None:
        for index, policy in enumerate(policies):
            if not isinstance(policy, Policy):
                raise ValueError(
                    f"Pipeline: policies[{index}] must be a seawall Policy, got {policy!r}"
                )
        self.policies: tuple[Policy, ...] = policies

    @classmethod
    def recommended(
        cls,
        *,
        fallback: Policy | None = None,
        retry: Policy | None = None,
        breaker: Policy | None = None,
        bulkhead: Policy | None = None,
        timeout: Policy | None = None,
    ) -> Pipeline:
        """Build fallback → retry → breaker → bulkhead → timeout, skipping the ``None`` ones."""
        return cls(
            *(p for p in (fallback, retry, breaker, bulkhead, timeout) if p is not None)
        )

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """``fn`` wrapped by every policy's sync adapter, innermost first."""
        for policy in reversed(self.policies):
            fn = policy.wrap_sync(fn)
        return fn

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        """``fn`` wrapped by every policy's asyncio adapter, innermost first."""
        if not self.policies:
            inner = fn

            async def passthrough(*args: P.args, **kwargs: P.kwargs) -> R:
                return await inner(*args, **kwargs)

            return passthrough
        wrapped = self.policies[-1].wrap_async(fn)
        for policy in reversed(self.policies[:-1]):
            wrapped = policy.wrap_async(wrapped)
        return wrapped

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(repr(p) for p in self.policies)})"
