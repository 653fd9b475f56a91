"""Who is told of the policies' decisions for the call running in this context.

A client transport records the spans of a call, and a span should say what
the policies decided on the way: a retry and its delay, why a retry gave up, a
hedge started, a probe let through a half-open breaker. A policy knows no span
and imports nothing outside the standard library, so it tells the *observer*
in force in the calling context, if any. The observer is a context variable:
it follows the call into a hedge's threads and tasks, and a transport sets it
around the call it runs (``seawall.client``; ``docs/telemetry/spans.md``).

It is read only where a decision is taken (after a failure, when a hedge
starts, when a breaker that is not closed admits a call), so a healthy call
pays nothing for it, and with no observer set nothing else happens.

Refusals (``CircuitOpenError``, ``BulkheadFullError``, ``RateLimitedError``,
``DeadlineExceeded``) are not reported here: they are exceptions, and the
observer sees each one once, either as the failure a retry is about to retry
(:meth:`PolicyObserver.retrying`) or as the outcome of the call.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .breaker import BreakerState
    from .retry import RetryDetails, StopReason

__all__ = ["OBSERVER", "PolicyObserver"]


class PolicyObserver(Protocol):
    """Told of the decisions the policies take for the call in this context.

    Called on the thread or task that took the decision (a hedge's attempts
    run on their own, in a copy of the caller's context). It must be quick
    and must not raise: it observes, it never changes the call.
    """

    def retrying(self, details: RetryDetails) -> None:
        """A retry decided to try again after ``details.delay`` seconds."""

    def gave_up(self, reason: StopReason, exception: BaseException | None) -> None:
        """A retry gave up, for ``reason``, on a failure it would have retried: ``exception``,
        which it re-raises, or (``None``) a result it returns."""

    def hedging(self, attempt: int) -> None:
        """A hedge is starting attempt number ``attempt`` (2 for the first hedge)."""

    def admitted(self, state: BreakerState) -> None:
        """A breaker that is not closed (``HALF_OPEN``: a probe) admitted the call."""


OBSERVER: ContextVar[PolicyObserver | None] = ContextVar("seawall_policy_observer", default=None)
"""The observer of the call running in this context, or ``None`` (nothing is told)."""
