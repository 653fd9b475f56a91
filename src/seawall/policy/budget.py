"""Retry budgets: cap retries at a fraction of the requests, per time window.

A retry policy alone multiplies load exactly when a dependency is struggling:
with 3 attempts, every caller sends up to 3x. A budget, shared by every call
site that talks to the same dependency, bounds that amplification. The rule is
Linkerd's (and Finagle's before it): over the last ``ttl`` seconds, a retry is
allowed while ::

    retries + 1 <= ratio * requests + min_per_second * ttl

``ratio`` is the long-run fraction of extra load retries may add (0.2 = at
most 20 % more), and ``min_per_second * ttl`` is a reserve so that a service
with little traffic can still retry at all.

The window slides in steps: it is a ring of ``buckets`` time buckets, each
``ttl / buckets`` seconds wide, aligned on multiples of that width on the
budget's clock. At time ``now`` the window holds the bucket containing ``now``
and the ``buckets - 1`` before it; older buckets are cleared as time passes,
and running totals make every operation O(1) amortized.

The methods are sans-I/O: each takes ``now``. Called without it, they read the
budget's own clock, which is what :class:`~seawall.policy.retry.Retry` and
:class:`~seawall.policy.hedge.Hedge` do, so one budget shared by policies on
different clocks still sees one consistent time line. A short lock makes the
budget safe to share between threads; nothing else ever runs under it.
"""

from __future__ import annotations

import threading

from ._validate import require_int, require_number, require_seconds
from .clock import MONOTONIC, Clock

__all__ = ["RetryBudget"]

_EPSILON = 1e-9
"""Tolerance of the budget comparison, far below one retry."""

_NEVER = -(2**62)
"""Bucket index before any event: far enough back that the first event clears the ring."""


class RetryBudget:
    """A sliding-window budget of retries, shared by many retry and hedge policies.

    Args:
        ratio: retries allowed per request in the window, in ``(0, 1000]``.
            Default ``0.2``: at most 20 % extra load from retries once the
            reserve is spent (Linkerd's default), enough to ride out a few
            failing instances, not enough to double the load on an overloaded one.
        min_per_second: reserve of retries per second, independent of traffic
            (``>= 0``). Default ``10.0`` (Linkerd's): a quiet service can
            still retry its occasional failure.
        ttl: the window, in seconds (``> 0``). Default ``10.0`` (Linkerd's):
            long enough to smooth bursts, short enough to recover within
            seconds of the failure ending.
        clock: the budget's monotonic clock, read by the methods called
            without ``now``.
        buckets: how many time buckets the window is made of (``>= 1``).
            Default ``10``: the window moves in steps of ``ttl / 10``.

    >>> budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0)
    >>> budget.deposit(0.0); budget.deposit(0.0)
    >>> budget.try_withdraw(0.0), budget.try_withdraw(0.0)
    (True, False)
    """

    __slots__ = (
        "_clock",
        "_k",
        "_lock",
        "_min_per_second",
        "_n",
        "_ratio",
        "_requests",
        "_requests_total",
        "_reserve",
        "_retries",
        "_retries_total",
        "_ttl",
        "_width",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        ttl: float = 10.0,
        clock: Clock = MONOTONIC,
        *,
        buckets: int = 10,
    ) -> None:
        require_number("RetryBudget", "ratio", ratio, gt=0, le=1000)
        require_number("RetryBudget", "min_per_second", min_per_second, ge=0)
        require_seconds("RetryBudget", "ttl", ttl)
        require_int("RetryBudget", "buckets", buckets, minimum=1)
        self._ratio = float(ratio)
        self._min_per_second = float(min_per_second)
        self._reserve = float(min_per_second) * float(ttl)
        self._ttl = float(ttl)
        self._n = buckets
        self._width = self._ttl / buckets
        self._clock = clock
        self._lock = threading.Lock()
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._requests_total = 0
        self._retries_total = 0
        self._k = _NEVER

    @property
    def ratio(self) -> float:
        """Retries allowed per request in the window."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """Reserve of retries per second, independent of traffic."""
        return self._min_per_second

    @property
    def ttl(self) -> float:
        """The window, in seconds."""
        return self._ttl

    @property
    def buckets(self) -> int:
        """Number of time buckets the window is made of."""
        return self._n

    @property
    def width(self) -> float:
        """Width of one bucket, ``ttl / buckets`` seconds."""
        return self._width

    def reconfigure(
        self,
        ratio: float | None = None,
        min_per_second: float | None = None,
        ttl: float | None = None,
        *,
        buckets: int | None = None,
    ) -> None:
        """New settings for this live budget (a new config version); ``None`` keeps one.

        A new ``ratio`` or ``min_per_second`` applies at once to the requests and
        retries in the window, which is kept; a window of another ``ttl`` or
        number of ``buckets`` starts empty. Invalid settings raise ``ValueError``
        and change nothing. The Rust core's budget does the same.

        >>> budget = RetryBudget(ratio=0.1, min_per_second=0.0, ttl=10.0)
        >>> for _ in range(10):
        ...     budget.deposit(0.0)
        >>> budget.try_withdraw(0.0), budget.try_withdraw(0.0)
        (True, False)
        >>> budget.reconfigure(ratio=0.2)
        >>> budget.try_withdraw(0.0)
        True
        """
        fresh = RetryBudget(
            self._ratio if ratio is None else ratio,
            self._min_per_second if min_per_second is None else min_per_second,
            self._ttl if ttl is None else ttl,
            self._clock,
            buckets=self._n if buckets is None else buckets,
        )
        with self._lock:
            same_window = fresh._ttl == self._ttl and fresh._n == self._n
            names: tuple[str, ...] = ("_ratio", "_min_per_second", "_reserve")
            if not same_window:
                names += ("_ttl", "_n", "_width", "_requests", "_retries")
                names += ("_requests_total", "_retries_total", "_k")
            for name in names:
                setattr(self, name, getattr(fresh, name))

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self.ratio!r}, min_per_second={self.min_per_second!r}, "
            f"ttl={self.ttl!r}, buckets={self.buckets!r})"
        )

    def _advance(self, now: float) -> int:
        """Clear the buckets that left the window; return the ring index for ``now``.

        Must be called under the lock. Time that goes backwards (two threads
        reading the clock in one order and taking the lock in the other) is
        counted in the newest bucket.
        """
        k = int(now // self._width)
        current = self._k
        n = self._n
        if k > current:
            if k - current >= n:
                self._requests = [0] * n
                self._retries = [0] * n
                self._requests_total = 0
                self._retries_total = 0
            else:
                requests, retries = self._requests, self._retries
                for j in range(current + 1, k + 1):
                    i = j % n
                    self._requests_total -= requests[i]
                    self._retries_total -= retries[i]
                    requests[i] = 0
                    retries[i] = 0
            self._k = current = k
        return current % n

    def deposit(self, now: float | None = None) -> None:
        """Record that a request was made (once per call, not per attempt)."""
        if now is None:
            now = self._clock()
        with self._lock:
            i = self._advance(now)
            self._requests[i] += 1
            self._requests_total += 1

    def try_withdraw(self, now: float | None = None) -> bool:
        """Ask for one retry: record it and return ``True`` if the budget allows it."""
        if now is None:
            now = self._clock()
        with self._lock:
            i = self._advance(now)
            # _EPSILON absorbs float rounding: 0.29 * 100 is 28.999999999999996.
            limit = self._ratio * self._requests_total + self._reserve + _EPSILON
            if self._retries_total + 1 > limit:
                return False
            self._retries[i] += 1
            self._retries_total += 1
            return True

    def available(self, now: float | None = None) -> float:
        """The balance of the window: ``ratio * requests + reserve - retries``, at least 0.

        A retry is allowed while this is >= 1; the integer part is how many
        retries could go right now.
        """
        if now is None:
            now = self._clock()
        with self._lock:
            self._advance(now)
            balance = self._ratio * self._requests_total + self._reserve - self._retries_total
        return balance if balance > 0 else 0.0

    def counts(self, now: float | None = None) -> tuple[int, int]:
        """``(requests, retries)`` recorded in the window at ``now``, for metrics and tests."""
        if now is None:
            now = self._clock()
        with self._lock:
            self._advance(now)
            return self._requests_total, self._retries_total
