"""Sliding windows: the O(1) running totals against a recomputation from raw history.

The references here keep every recorded outcome in a plain list and recount
from scratch on every query, straight from the semantics in the module
docstring of ``seawall.policy.window``. Times are multiples of 1/4 and bucket
widths are 1/2, 1 or 2 seconds, so every ``now // width`` is exact and the
reference and the window cannot disagree through float rounding.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.policy.window import CALL, FAILED, SLOW, CountWindow, TimeWindow, WindowTotals

OUTCOMES = [CALL, CALL | FAILED, CALL | SLOW, CALL | FAILED | SLOW]
outcomes = st.sampled_from(OUTCOMES)


def _count(history: list[int]) -> tuple[int, int, int]:
    return (
        len(history),
        sum(1 for o in history if o & FAILED),
        sum(1 for o in history if o & SLOW),
    )


def _as_tuple(totals: WindowTotals) -> tuple[int, int, int]:
    return (totals.calls, totals.failures, totals.slow_calls)


# --------------------------------------------------------------------------- WindowTotals


def test_totals_rates_are_percentages_and_zero_without_calls() -> None:
    assert WindowTotals(0, 0, 0).failure_rate == 0.0
    assert WindowTotals(0, 0, 0).slow_call_rate == 0.0
    totals = WindowTotals(4, 1, 3)
    assert totals.failure_rate == 25.0
    assert totals.slow_call_rate == 75.0


def test_totals_are_frozen() -> None:
    totals = WindowTotals(1, 0, 0)
    with pytest.raises(AttributeError):
        totals.calls = 2  # type: ignore[misc]


# --------------------------------------------------------------------------- CountWindow


def test_count_window_starts_empty() -> None:
    window = CountWindow(3)
    assert _as_tuple(window.totals(0.0)) == (0, 0, 0)


def test_count_window_evicts_the_oldest_outcome() -> None:
    window = CountWindow(3)
    for outcome in (CALL | FAILED, CALL, CALL | SLOW):
        window.record(outcome, 0.0)
    assert _as_tuple(window.totals(0.0)) == (3, 1, 1)
    window.record(CALL, 0.0)  # evicts the failure
    assert _as_tuple(window.totals(0.0)) == (3, 0, 1)
    window.record(CALL, 0.0)  # evicts a plain success: nothing changes
    assert _as_tuple(window.totals(0.0)) == (3, 0, 1)
    window.record(CALL | FAILED | SLOW, 0.0)  # evicts the slow call
    assert _as_tuple(window.totals(0.0)) == (3, 1, 1)


def test_count_window_of_one_holds_only_the_last_outcome() -> None:
    window = CountWindow(1)
    window.record(CALL | FAILED | SLOW, 0.0)
    assert _as_tuple(window.totals(0.0)) == (1, 1, 1)
    assert window.record_success() == 1
    assert _as_tuple(window.totals(0.0)) == (1, 0, 0)
    window.record(CALL | FAILED, 0.0)
    assert _as_tuple(window.totals(0.0)) == (1, 1, 0)


def test_count_window_record_success_returns_calls_in_window() -> None:
    window = CountWindow(3)
    assert [window.record_success() for _ in range(5)] == [1, 2, 3, 3, 3]


def test_count_window_ignores_time() -> None:
    window = CountWindow(2)
    window.record(CALL | FAILED, 0.0)
    window.record(CALL, 1e9)
    assert _as_tuple(window.totals(1e12)) == (2, 1, 0)


def test_count_window_clear_forgets_everything_and_restarts() -> None:
    window = CountWindow(3)
    for outcome in (CALL | FAILED, CALL | SLOW, CALL | FAILED | SLOW, CALL):
        window.record(outcome, 0.0)
    window.clear()
    assert _as_tuple(window.totals(0.0)) == (0, 0, 0)
    # After clear the ring is empty again: three records fill it, the fourth evicts.
    window.record(CALL | FAILED, 0.0)
    window.record(CALL, 0.0)
    window.record(CALL, 0.0)
    assert _as_tuple(window.totals(0.0)) == (3, 1, 0)
    window.record(CALL, 0.0)
    assert _as_tuple(window.totals(0.0)) == (3, 0, 0)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 12),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("record"), outcomes),
            st.tuples(st.just("success"), st.just(CALL)),
            st.tuples(st.just("clear"), st.just(0)),
        ),
        max_size=80,
    ),
)
def test_count_window_matches_recount_of_last_size_outcomes(
    size: int, ops: list[tuple[str, int]]
) -> None:
    window = CountWindow(size)
    history: list[int] = []
    for op, outcome in ops:
        if op == "record":
            window.record(outcome, 0.0)
            history.append(outcome)
        elif op == "success":
            history.append(CALL)
            assert window.record_success() == min(len(history), size)
        else:
            window.clear()
            history.clear()
        expected = _count(history[-size:])
        assert _as_tuple(window.totals(0.0)) == expected
        assert (window.calls, window.failures, window.slow_calls) == expected


# --------------------------------------------------------------------------- TimeWindow


def test_time_window_bucket_width() -> None:
    assert TimeWindow(10.0, 5).bucket_width == 2.0
    assert TimeWindow(3.0).bucket_width == pytest.approx(0.3)


def test_time_window_expires_a_bucket_exactly_at_its_boundary() -> None:
    # Buckets of 2 s; the window at ``now`` is now's bucket and the 4 before it.
    window = TimeWindow(10.0, 5)
    window.record(CALL | FAILED, 0.0)  # bucket 0
    window.record(CALL | SLOW, 1.75)  # bucket 0
    window.record(CALL, 2.0)  # bucket 1
    assert _as_tuple(window.totals(9.75)) == (3, 1, 1)  # bucket 4: buckets 0..4
    assert _as_tuple(window.totals(10.0)) == (1, 0, 0)  # bucket 5: bucket 0 is gone
    assert _as_tuple(window.totals(11.75)) == (1, 0, 0)
    assert _as_tuple(window.totals(12.0)) == (0, 0, 0)  # bucket 6: bucket 1 is gone


def test_time_window_jump_of_more_than_the_window_expires_everything() -> None:
    window = TimeWindow(4.0, 4)
    for t in (0.0, 1.0, 2.0, 3.0):
        window.record(CALL | FAILED, t)
    assert _as_tuple(window.totals(3.5)) == (4, 4, 0)
    assert _as_tuple(window.totals(1000.0)) == (0, 0, 0)
    window.record(CALL, 1000.25)
    assert _as_tuple(window.totals(1000.5)) == (1, 0, 0)


def test_time_window_jump_of_exactly_the_window_reuses_every_slot() -> None:
    window = TimeWindow(4.0, 4)
    for t in (0.0, 1.0, 2.0, 3.0):
        window.record(CALL | FAILED, t)
    # From bucket 3 to bucket 7: buckets 4..7 replace 0..3 in the ring.
    window.record(CALL, 7.0)
    assert _as_tuple(window.totals(7.0)) == (1, 0, 0)
    # Bucket 4..6 slots were emptied, not left holding bucket 0..2's counts.
    assert _as_tuple(window.totals(10.0)) == (1, 0, 0)
    assert _as_tuple(window.totals(11.0)) == (0, 0, 0)


def test_time_window_partial_jump_keeps_the_recent_buckets() -> None:
    window = TimeWindow(4.0, 4)
    window.record(CALL | FAILED, 0.5)  # bucket 0
    window.record(CALL | SLOW, 2.5)  # bucket 2
    assert _as_tuple(window.totals(4.0)) == (1, 0, 1)  # bucket 4: 1..4
    assert _as_tuple(window.totals(5.5)) == (1, 0, 1)
    assert _as_tuple(window.totals(6.0)) == (0, 0, 0)


def test_time_window_single_bucket() -> None:
    window = TimeWindow(1.0, 1)
    window.record(CALL | FAILED, 0.0)
    window.record(CALL, 0.75)
    assert _as_tuple(window.totals(0.75)) == (2, 1, 0)
    assert _as_tuple(window.totals(1.0)) == (0, 0, 0)


def test_time_window_late_report_counts_in_the_newest_bucket() -> None:
    window = TimeWindow(4.0, 4)
    window.record(CALL, 10.0)  # head moves to bucket 10
    window.record(CALL | FAILED, 2.0)  # read before the head moved: counted in bucket 10
    assert _as_tuple(window.totals(10.0)) == (2, 1, 0)
    assert _as_tuple(window.totals(13.0)) == (2, 1, 0)
    assert _as_tuple(window.totals(14.0)) == (0, 0, 0)


def test_time_window_clear_forgets_everything_and_restarts() -> None:
    window = TimeWindow(4.0, 4)
    window.record(CALL | FAILED, 0.0)
    window.record(CALL | SLOW, 3.0)
    window.clear()
    assert (window.calls, window.failures, window.slow_calls) == (0, 0, 0)
    # The head is forgotten too: an earlier time after a clear is not clamped to it.
    window.record(CALL | FAILED, 1.0)
    assert _as_tuple(window.totals(1.0)) == (1, 1, 0)
    assert _as_tuple(window.totals(4.75)) == (1, 1, 0)
    assert _as_tuple(window.totals(5.0)) == (0, 0, 0)
    window.clear()
    assert _as_tuple(window.totals(3.0)) == (0, 0, 0)


class _TimeReference:
    """Raw history of (effective bucket, outcome); recounted on every query."""

    def __init__(self, width: float, buckets: int) -> None:
        self.width = width
        self.buckets = buckets
        self.events: list[tuple[int, int]] = []
        self.head: int | None = None

    def _move(self, now: float) -> int:
        index = math.floor(now / self.width)
        self.head = index if self.head is None else max(self.head, index)
        return self.head

    def record(self, outcome: int, now: float) -> None:
        self.events.append((self._move(now), outcome))

    def totals(self, now: float) -> tuple[int, int, int]:
        head = self._move(now)
        return _count([o for b, o in self.events if b > head - self.buckets])

    def clear(self) -> None:
        self.events.clear()
        self.head = None


@settings(max_examples=300, deadline=None)
@given(
    width=st.sampled_from([0.5, 1.0, 2.0]),
    buckets=st.integers(1, 10),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["record", "record", "record", "totals", "clear"]),
            st.integers(0, 12),  # clock step, in quarters of a second
            st.sampled_from([0, 0, 0, 1, 4, 40]),  # lag of the reported time, in quarters
            outcomes,
        ),
        max_size=80,
    ),
)
def test_time_window_matches_recount_of_raw_history(
    width: float, buckets: int, ops: list[tuple[str, int, int, int]]
) -> None:
    window = TimeWindow(width * buckets, buckets)
    assert window.bucket_width == width
    reference = _TimeReference(width, buckets)
    clock = 0.0
    for op, step, lag, outcome in ops:
        clock += step / 4
        t = max(0.0, clock - lag / 4)
        if op == "record":
            window.record(outcome, t)
            reference.record(outcome, t)
        elif op == "clear":
            window.clear()
            reference.clear()
        else:
            assert _as_tuple(window.totals(t)) == reference.totals(t)
        # The running totals always equal a recount at the newest time seen.
        assert _as_tuple(window.totals(clock)) == reference.totals(clock)


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("size", [0, -1, 1.5, 2.0, True, "3", None])
def test_count_window_rejects_bad_size(size: object) -> None:
    with pytest.raises(ValueError, match=r"size") as info:
        CountWindow(size)  # type: ignore[arg-type]
    assert repr(size) in str(info.value)


@pytest.mark.parametrize("seconds", [0, 0.0, -1.0, float("nan")])
def test_time_window_rejects_bad_seconds(seconds: float) -> None:
    with pytest.raises(ValueError, match=r"seconds") as info:
        TimeWindow(seconds, 4)
    assert repr(seconds) in str(info.value)


@pytest.mark.parametrize("buckets", [0, -2, 2.0, True, None])
def test_time_window_rejects_bad_buckets(buckets: object) -> None:
    with pytest.raises(ValueError, match=r"buckets") as info:
        TimeWindow(4.0, buckets)  # type: ignore[arg-type]
    assert repr(buckets) in str(info.value)
