"""Rate limiter: a token bucket, sans-I/O, with sync and asyncio adapters.

The bucket holds at most ``burst`` tokens and gains ``rate`` tokens a second.
A call takes one token (or ``tokens``). When the bucket is short, a caller
may *reserve*: the tokens are taken now (the balance goes negative) and the
caller is told how long to wait before going ahead, so callers are served in
the order they reserved and the long-run rate never exceeds ``rate``. A
reservation whose wait would exceed the caller's limit is refused with no
change of state.

The state machine (:meth:`RateLimiter.reserve`, :meth:`RateLimiter.try_acquire`,
:meth:`RateLimiter.refund`) is told the time; the adapters read the clock,
sleep through the injected sleepers and never wait past the deadline in force
(:func:`~seawall.policy.deadline.current_deadline`). Refusals raise
:class:`~seawall.policy.errors.RateLimitedError` with ``retry_after``.
"""

from __future__ import annotations

import math
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ._policy import Policy
from ._validate import require_number, require_seconds
from .clock import MONOTONIC, AsyncSleep, Clock, Sleep, async_sleep, sync_sleep
from .deadline import current_deadline
from .errors import RateLimitedError

__all__ = ["RateLimiter", "RateLimiterConfig"]

P = ParamSpec("P")
R = TypeVar("R")

# Tolerance on token counts: float refills (elapsed * rate) can land a hair
# below a whole token that is, in exact arithmetic, there.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class RateLimiterConfig:
    """Validated settings of a :class:`RateLimiter`.

    Attributes:
        rate: tokens added per second (finite, > 0).
        burst: bucket capacity, the most calls allowed at once after a quiet
            period (finite, >= 1).
        max_wait: longest a caller waits for a token by default, in seconds
            (>= 0; ``math.inf`` for "only the deadline bounds it").
        name: shown in errors and metrics.
    """

    rate: float
    burst: float
    max_wait: float = 1.0
    name: str = "ratelimit"

    def __post_init__(self) -> None:
        require_number("RateLimiter", "rate", self.rate, gt=0)
        require_number("RateLimiter", "burst", self.burst, ge=1)
        require_seconds("RateLimiter", "max_wait", self.max_wait, allow_zero=True, allow_inf=True)


class RateLimiter(Policy):
    """Allow ``rate`` calls per second on average, ``burst`` at once.

    ``burst`` defaults to ``max(1, rate)``: one second's worth of calls, so a
    client that was idle can catch up for one second and no more. ``max_wait``
    (default 1 s) bounds how long a caller queues for a token; longer waits
    are refused at once with ``RateLimitedError(retry_after=...)``, because a
    caller that would wait that long is better told when to come back.
    Waiting never goes past the deadline in force.

    Usage: :meth:`acquire` / :meth:`acquire_async`; as a decorator or with
    :meth:`call` / :meth:`acall` (one token, then the call); as a context
    manager (``with limiter:`` / ``async with limiter:`` takes one token on
    entry; nothing happens on exit). Thread-safe; one instance may serve
    threads and tasks at once.

    >>> from seawall.policy.clock import FakeClock
    >>> clock = FakeClock()
    >>> limiter = RateLimiter(2.0, burst=2, clock=clock)
    >>> [limiter.reserve(clock()) for _ in range(4)]
    [0.0, 0.0, 0.5, 1.0]
    """

    __slots__ = ("_async_sleep", "_clock", "_lock", "_sleep", "_tokens", "_updated", "config")

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        max_wait: float = 1.0,
        clock: Clock = MONOTONIC,
        sleep: Sleep = sync_sleep,
        async_sleep: AsyncSleep = async_sleep,
        name: str = "ratelimit",
    ) -> None:
        if burst is None:
            # (a rate that is not a number is left for the config to report)
            burst = max(1.0, rate) if isinstance(rate, int | float) else 1.0
        self.config = RateLimiterConfig(rate, burst, max_wait, name)
        """The validated settings."""
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._lock = threading.Lock()
        self._tokens = float(burst)  # the balance; negative when reserved ahead
        self._updated: float | None = None  # time of the last refill

    def __repr__(self) -> str:
        c = self.config
        return f"RateLimiter({c.rate!r}, burst={c.burst!r}, name={c.name!r})"

    # -- the state machine (told the time) --------------------------------------

    def _refill_locked(self, now: float) -> None:
        updated = self._updated
        if updated is None:
            self._updated = now
        elif now > updated:
            self._tokens = min(self.config.burst, self._tokens + (now - updated) * self.config.rate)
            self._updated = now

    def _check_tokens(self, tokens: float) -> None:
        # Every call passes here: compare inline, build the error only on failure.
        burst = self.config.burst
        if (
            isinstance(tokens, bool)
            or not isinstance(tokens, (int, float))
            or not 0 < tokens <= burst
        ):
            require_number("RateLimiter", "tokens", tokens, gt=0, le=burst)

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (negative while reservations are outstanding)."""
        with self._lock:
            self._refill_locked(now)
            return self._tokens

    def reserve(self, now: float, tokens: float = 1, max_wait: float = math.inf) -> float:
        """Take ``tokens`` at ``now``; return how many seconds to wait before using them.

        ``0.0`` means they are available now. If the wait would exceed
        ``max_wait``, nothing changes and ``RateLimitedError`` is raised with the
        wait as ``retry_after``.
        """
        self._check_tokens(tokens)
        # `not >= 0` also rejects NaN, which compares false with every wait.
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not max_wait >= 0
        ):
            require_seconds("RateLimiter", "max_wait", max_wait, allow_zero=True, allow_inf=True)
        rate = self.config.rate
        with self._lock:
            self._refill_locked(now)
            short = tokens - self._tokens
            wait = 0.0 if short <= _EPSILON else short / rate
            if wait > max_wait:
                raise RateLimitedError(self.config.name, wait)
            self._tokens -= tokens
            return wait

    def try_acquire(self, now: float, tokens: float = 1) -> bool:
        """Take ``tokens`` if they are available at ``now``; never reserves ahead."""
        self._check_tokens(tokens)
        with self._lock:
            self._refill_locked(now)
            if tokens - self._tokens > _EPSILON:
                return False
            self._tokens -= tokens
            return True

    def retry_after(self, now: float, tokens: float = 1) -> float:
        """Seconds from ``now`` until ``tokens`` would be available (0 if they are)."""
        self._check_tokens(tokens)
        with self._lock:
            self._refill_locked(now)
            short = tokens - self._tokens
            return 0.0 if short <= _EPSILON else short / self.config.rate

    def refund(self, now: float, tokens: float = 1) -> None:
        """Give back reserved tokens that were not used (the caller gave up waiting)."""
        self._check_tokens(tokens)
        with self._lock:
            self._refill_locked(now)
            self._tokens = min(self.config.burst, self._tokens + tokens)

    # -- adapters ---------------------------------------------------------------

    def _wait_limit(self, now: float, wait: bool, max_wait: float | None) -> float:
        """The longest wait allowed to a caller at ``now``: its limit, cut at the deadline."""
        if not wait:
            return 0.0
        limit = self.config.max_wait if max_wait is None else max_wait
        deadline = current_deadline()
        if deadline is not None and deadline - now < limit:
            limit = max(0.0, deadline - now)
        return limit

    def acquire(
        self, tokens: float = 1, *, wait: bool = True, max_wait: float | None = None
    ) -> None:
        """Take ``tokens``, sleeping (this thread) until they are available.

        ``wait=False`` never sleeps. ``max_wait`` overrides the configured
        limit for this call. Raises ``RateLimitedError`` when the wait needed
        exceeds the limit or the deadline in force.
        """
        now = self._clock()
        delay = self.reserve(now, tokens, self._wait_limit(now, wait, max_wait))
        if delay > 0:
            try:
                self._sleep(delay)
            except BaseException:  # interrupted: the tokens were not used
                self.refund(self._clock(), tokens)
                raise

    async def acquire_async(
        self, tokens: float = 1, *, wait: bool = True, max_wait: float | None = None
    ) -> None:
        """Take ``tokens``, awaiting until they are available (see :meth:`acquire`).

        Cancellation while waiting gives the tokens back and propagates.
        """
        now = self._clock()
        delay = self.reserve(now, tokens, self._wait_limit(now, wait, max_wait))
        if delay > 0:
            try:
                await self._async_sleep(delay)
            except BaseException:  # cancelled: the tokens were not used
                self.refund(self._clock(), tokens)
                raise

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Sync adapter: one token (waiting up to ``max_wait``), then the call."""
        acquire = self.acquire

        def ratelimited_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            acquire()
            return fn(*args, **kwargs)

        return ratelimited_sync

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """asyncio adapter: one token (awaiting up to ``max_wait``), then the call."""
        acquire = self.acquire_async

        async def ratelimited_async(*args: P.args, **kwargs: P.kwargs) -> R:
            await acquire()
            return await fn(*args, **kwargs)

        return ratelimited_async

    def __enter__(self) -> RateLimiter:
        """Take one token (see :meth:`acquire`)."""
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Nothing: a token, once used, is not given back."""

    async def __aenter__(self) -> RateLimiter:
        """Take one token (see :meth:`acquire_async`)."""
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Nothing: a token, once used, is not given back."""
