"""Adaptive client-side throttling (Google SRE book, "Handling Overload").

Each client remembers, over a sliding window (two minutes by default):

* ``requests``: every request the application attempted, including the ones
  this throttle rejected locally;
* ``accepts``: the requests the backend accepted.

A new request is rejected locally with probability::

    max(0, (requests - k * accepts) / (requests + 1))

While the backend accepts everything, ``requests <= k * accepts`` and nothing
is rejected. When it starts rejecting (overload), the client sheds its own
excess locally, before spending the backend's capacity on requests that
would be refused anyway; ``k`` sets how much excess is still let through
(``k = 2``: up to twice the accepted rate; ``k = 1`` is the most aggressive).
Locally rejected requests still count in ``requests``, so the rejection
probability keeps growing while the backend keeps refusing, and falls back
as accepts return.

The state machine (:meth:`AdaptiveThrottle.allow`,
:meth:`~AdaptiveThrottle.on_accepted`, :meth:`~AdaptiveThrottle.on_rejected`,
:meth:`~AdaptiveThrottle.rejection_probability`) is told the time and the
random draw. The window is a ring of ``buckets`` time buckets with running
totals, so every operation is O(1) amortised: an event is forgotten between
``window - window / buckets`` and ``window`` seconds after it was recorded.
"""

from __future__ import annotations

import random
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ._policy import Policy
from ._validate import require_int, require_number, require_seconds
from .clock import MONOTONIC, Clock
from .errors import SeawallError, ThrottledError

__all__ = ["AdaptiveThrottle", "ThrottleConfig", "ThrottleMetrics", "default_rejected_on"]

P = ParamSpec("P")
R = TypeVar("R")


def default_rejected_on(exc: Exception) -> bool:
    """The default test for "the backend rejected this request (it is overloaded)".

    True for seawall's own refusals and overload signals
    (:class:`~seawall.policy.errors.SeawallError`: an open breaker, a full
    bulkhead, a passed deadline, ...), for timeouts (:class:`TimeoutError`) and
    for connection failures (:class:`ConnectionError`): in each case the backend
    did not accept the request. Any other exception is an answer from a backend
    that accepted the request (a 404 is not overload).
    """
    return isinstance(exc, SeawallError | TimeoutError | ConnectionError)


@dataclass(frozen=True, slots=True)
class ThrottleConfig:
    """Validated settings of an :class:`AdaptiveThrottle`.

    Attributes:
        k: accepts multiplier (finite, >= 1; 1 is the most aggressive).
        window: seconds of history (finite, > 0).
        buckets: time buckets the window is divided into (int >= 1).
        name: shown in errors and metrics.
    """

    k: float = 2.0
    window: float = 120.0
    buckets: int = 24
    name: str = "throttle"

    def __post_init__(self) -> None:
        require_number("AdaptiveThrottle", "k", self.k, ge=1)
        require_seconds("AdaptiveThrottle", "window", self.window)
        require_int("AdaptiveThrottle", "buckets", self.buckets, minimum=1)


@dataclass(frozen=True, slots=True)
class ThrottleMetrics:
    """A snapshot of a throttle's window.

    Attributes:
        name: the throttle's name.
        requests: requests attempted in the window (including local rejections).
        accepts: requests the backend accepted in the window.
        backend_rejects: requests the backend rejected in the window.
        probability: the local rejection probability now.
    """

    name: str
    requests: int
    accepts: int
    backend_rejects: int
    probability: float


class AdaptiveThrottle(Policy):
    """Reject requests locally, at random, when the backend has been rejecting them.

    Defaults follow the SRE book: ``k=2.0`` (let through up to twice what the
    backend accepts; lower is more aggressive), a ``window`` of 120 s of
    history, in ``buckets=24`` steps of 5 s (the window slides in 5 s steps;
    finer costs a little more memory, coarser forgets in bigger jumps).

    ``rejected_on(exc)`` tells a backend rejection from other failures
    (default :func:`default_rejected_on`). A call that returns, or raises
    anything else, counts as accepted. A call interrupted by a
    ``BaseException`` that is not an ``Exception`` (cancellation,
    ``KeyboardInterrupt``) records no outcome. Locally rejected calls raise
    :class:`~seawall.policy.errors.ThrottledError` without running.

    Usage: as a decorator, with :meth:`call` / :meth:`acall`, or as a context
    manager (``with throttle:`` / ``async with throttle:`` decides on entry
    and records the outcome from the block's exception on exit).
    ``rng`` is a zero-argument callable returning uniform floats in [0, 1).

    >>> throttle = AdaptiveThrottle(k=2.0)
    >>> for _ in range(10):
    ...     throttle.on_rejected(0.0) if throttle.allow(0.0, 0.99) else None
    >>> round(throttle.rejection_probability(0.0), 3)
    0.909
    """

    __slots__ = (
        "_accepts",
        "_clock",
        "_epoch",
        "_lock",
        "_rejected_on",
        "_rejects",
        "_requests",
        "_ring_accepts",
        "_ring_rejects",
        "_ring_requests",
        "_rng",
        "_width",
        "config",
    )

    def __init__(
        self,
        *,
        k: float = 2.0,
        window: float = 120.0,
        buckets: int = 24,
        rejected_on: Callable[[Exception], bool] = default_rejected_on,
        clock: Clock = MONOTONIC,
        rng: Callable[[], float] = random.random,
        name: str = "throttle",
    ) -> None:
        self.config = ThrottleConfig(k, window, buckets, name)
        """The validated settings."""
        self._rejected_on = rejected_on
        self._clock = clock
        self._rng = rng
        self._lock = threading.Lock()
        self._width = window / buckets
        self._ring_requests = [0] * buckets
        self._ring_accepts = [0] * buckets
        self._ring_rejects = [0] * buckets
        self._requests = 0
        self._accepts = 0
        self._rejects = 0
        self._epoch: int | None = None  # index of the newest bucket (now // width)

    def __repr__(self) -> str:
        c = self.config
        return f"AdaptiveThrottle(k={c.k!r}, window={c.window!r}, name={c.name!r})"

    # -- the state machine (told the time) --------------------------------------

    def _advance_locked(self, now: float) -> int:
        """Slide the window to ``now``; return the ring slot of the current bucket."""
        buckets = self.config.buckets
        epoch = int(now // self._width)
        newest = self._epoch
        if newest is None or epoch - newest >= buckets:
            if newest is not None:
                self._clear_locked()
            self._epoch = epoch
        elif epoch > newest:
            req, acc, rej = self._ring_requests, self._ring_accepts, self._ring_rejects
            for passed in range(newest + 1, epoch + 1):
                slot = passed % buckets
                self._requests -= req[slot]
                self._accepts -= acc[slot]
                self._rejects -= rej[slot]
                req[slot] = acc[slot] = rej[slot] = 0
            self._epoch = epoch
        # A `now` older than the newest bucket (threads racing on the clock)
        # counts in the newest bucket.
        assert self._epoch is not None
        return self._epoch % buckets

    def _clear_locked(self) -> None:
        buckets = self.config.buckets
        self._ring_requests = [0] * buckets
        self._ring_accepts = [0] * buckets
        self._ring_rejects = [0] * buckets
        self._requests = self._accepts = self._rejects = 0

    def _probability_locked(self) -> float:
        requests = self._requests
        return max(0.0, (requests - self.config.k * self._accepts) / (requests + 1))

    def rejection_probability(self, now: float) -> float:
        """``max(0, (requests - k * accepts) / (requests + 1))`` over the window at ``now``.

        Always in ``[0, 1)``.
        """
        with self._lock:
            self._advance_locked(now)
            return self._probability_locked()

    def _decide(self, now: float, u: float) -> float | None:
        """Count a request at ``now``; ``None`` if allowed, else the rejecting probability."""
        if not 0.0 <= u < 1.0:  # every call passes here: the helper only builds the error
            require_number("AdaptiveThrottle", "u", u, ge=0, lt=1)
        with self._lock:
            slot = self._advance_locked(now)
            probability = self._probability_locked()
            self._ring_requests[slot] += 1
            self._requests += 1
        return probability if u < probability else None

    def allow(self, now: float, u: float) -> bool:
        """Count a request attempted at ``now`` and decide it: ``False`` rejects it locally.

        ``u`` is a uniform random number in ``[0, 1)``; the request is rejected
        when ``u`` is below the rejection probability.
        """
        return self._decide(now, u) is None

    def on_accepted(self, now: float) -> None:
        """The backend accepted a request (it answered, whatever the answer)."""
        with self._lock:
            slot = self._advance_locked(now)
            self._ring_accepts[slot] += 1
            self._accepts += 1

    def on_rejected(self, now: float) -> None:
        """The backend rejected a request (overloaded, unreachable, timed out)."""
        with self._lock:
            slot = self._advance_locked(now)
            self._ring_rejects[slot] += 1
            self._rejects += 1

    def metrics(self, now: float | None = None) -> ThrottleMetrics:
        """A snapshot of the window at ``now`` (default: the clock's now)."""
        if now is None:
            now = self._clock()
        with self._lock:
            self._advance_locked(now)
            return ThrottleMetrics(
                self.config.name,
                self._requests,
                self._accepts,
                self._rejects,
                self._probability_locked(),
            )

    # -- adapters ---------------------------------------------------------------

    def _enter(self) -> None:
        probability = self._decide(self._clock(), self._rng())
        if probability is not None:
            raise ThrottledError(self.config.name, probability)

    def _record(self, exc: BaseException | None) -> None:
        if exc is None:
            self.on_accepted(self._clock())
        elif isinstance(exc, Exception):
            if self._rejected_on(exc):
                self.on_rejected(self._clock())
            else:
                self.on_accepted(self._clock())

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Sync adapter: decide, call, record the outcome."""
        enter, record = self._enter, self._record

        def throttled_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            enter()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                record(exc)
                raise
            record(None)
            return result

        return throttled_sync

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """asyncio adapter: decide, await the call, record the outcome."""
        enter, record = self._enter, self._record

        async def throttled_async(*args: P.args, **kwargs: P.kwargs) -> R:
            enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                record(exc)
                raise
            record(None)
            return result

        return throttled_async

    def __enter__(self) -> AdaptiveThrottle:
        """Decide: raise ``ThrottledError`` to reject the block locally."""
        self._enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Record the block's outcome from its exception (never suppresses it)."""
        self._record(exc)

    async def __aenter__(self) -> AdaptiveThrottle:
        """Decide: raise ``ThrottledError`` to reject the block locally."""
        self._enter()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Record the block's outcome from its exception (never suppresses it)."""
        self._record(exc)
