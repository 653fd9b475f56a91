"""Sliding windows of call outcomes, O(1) per recorded call.

The breaker judges failure and slow-call rates over one of these windows:

* :class:`CountWindow` holds the last ``size`` outcomes in a ring. Recording
  overwrites the oldest slot and adjusts three running totals, so the cost does
  not depend on the window size. When the new outcome equals the one it
  replaces (the steady state of a healthy dependency) nothing else changes.
* :class:`TimeWindow` covers the last ``seconds`` in ``buckets`` equal time
  buckets. A bucket that falls out of the window is subtracted from the totals
  when the window next moves; moving is amortised O(1) and bounded by the
  number of buckets.

Outcomes are small ints: bit 0 = a call, bit 1 = failed, bit 2 = slow.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._validate import require_int, require_seconds

__all__ = ["CALL", "CountWindow", "FAILED", "SLOW", "TimeWindow", "WindowTotals"]

CALL = 1
FAILED = 2
SLOW = 4


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """Counts over the window at one moment."""

    calls: int
    failures: int
    slow_calls: int

    @property
    def failure_rate(self) -> float:
        """Failures as a percentage of calls (0.0 when there are no calls)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        """Slow calls as a percentage of calls (0.0 when there are no calls)."""
        return 100.0 * self.slow_calls / self.calls if self.calls else 0.0


class CountWindow:
    """The last ``size`` outcomes. Not thread-safe: the breaker holds its lock around it."""

    __slots__ = ("_pos", "_ring", "_size", "calls", "failures", "slow_calls")

    def __init__(self, size: int) -> None:
        require_int("CountWindow", "size", size, minimum=1)
        self._size = size
        self._ring = [0] * size
        self._pos = 0
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome, evicting the oldest when the window is full."""
        pos = self._pos
        ring = self._ring
        old = ring[pos]
        ring[pos] = outcome
        pos += 1
        self._pos = 0 if pos == self._size else pos
        if old != outcome:
            self.calls += (outcome & 1) - (old & 1)
            self.failures += ((outcome >> 1) & 1) - ((old >> 1) & 1)
            self.slow_calls += (outcome >> 2) - (old >> 2)

    def record_success(self) -> int:
        """Add one plain success (the hot path); return the calls now in the window."""
        pos = self._pos
        ring = self._ring
        old = ring[pos]
        pos += 1
        self._pos = 0 if pos == self._size else pos
        if old != CALL:
            ring[pos - 1] = CALL
            self.calls += 1 - (old & 1)
            self.failures -= (old >> 1) & 1
            self.slow_calls -= old >> 2
        return self.calls

    def totals(self, now: float) -> WindowTotals:
        """The counts over the window."""
        return WindowTotals(self.calls, self.failures, self.slow_calls)

    def clear(self) -> None:
        """Forget every outcome."""
        self._ring = [0] * self._size
        self._pos = 0
        self.calls = self.failures = self.slow_calls = 0


class TimeWindow:
    """Outcomes of the last ``seconds``, in ``buckets`` buckets of equal width.

    Bucket ``k`` covers ``[k * width, (k + 1) * width)`` on the clock's time
    line; the window at time ``now`` is the bucket holding ``now`` and the
    ``buckets - 1`` before it. Not thread-safe: the breaker holds its lock.
    """

    __slots__ = (
        "_b_calls",
        "_b_failures",
        "_b_slow",
        "_head",
        "_n",
        "_width",
        "calls",
        "failures",
        "slow_calls",
    )

    def __init__(self, seconds: float, buckets: int = 10) -> None:
        require_int("TimeWindow", "buckets", buckets, minimum=1)
        require_seconds("TimeWindow", "seconds", seconds, allow_inf=True)
        self._n = buckets
        self._width = seconds / buckets
        self._b_calls = [0] * buckets
        self._b_failures = [0] * buckets
        self._b_slow = [0] * buckets
        self._head: int | None = None  # absolute index of the newest bucket
        self.calls = 0
        self.failures = 0
        self.slow_calls = 0

    @property
    def bucket_width(self) -> float:
        """Seconds covered by one bucket."""
        return self._width

    def _advance(self, now: float) -> int:
        """Move the window to ``now``; return the ring slot of the current bucket."""
        index = int(now // self._width)
        head = self._head
        n = self._n
        if head is None:
            self._head = index
        elif index > head:
            # Expire the buckets between the old head and the new one (at most n).
            for k in range(head + 1, min(index, head + n) + 1):
                slot = k % n
                self.calls -= self._b_calls[slot]
                self.failures -= self._b_failures[slot]
                self.slow_calls -= self._b_slow[slot]
                self._b_calls[slot] = self._b_failures[slot] = self._b_slow[slot] = 0
            self._head = index
        elif index < head:
            # The clock is monotonic, but a caller may report a time it read before
            # another thread advanced the window: count it in the newest bucket.
            index = head
        return index % n

    def record(self, outcome: int, now: float) -> None:
        """Add one outcome at time ``now``."""
        slot = self._advance(now)
        fail = (outcome >> 1) & 1
        slow = outcome >> 2
        self._b_calls[slot] += 1
        self.calls += 1
        if fail:
            self._b_failures[slot] += 1
            self.failures += 1
        if slow:
            self._b_slow[slot] += 1
            self.slow_calls += 1

    def totals(self, now: float) -> WindowTotals:
        """The counts over the window ending at ``now``."""
        self._advance(now)
        return WindowTotals(self.calls, self.failures, self.slow_calls)

    def clear(self) -> None:
        """Forget every outcome."""
        n = self._n
        self._b_calls = [0] * n
        self._b_failures = [0] * n
        self._b_slow = [0] * n
        self._head = None
        self.calls = self.failures = self.slow_calls = 0
