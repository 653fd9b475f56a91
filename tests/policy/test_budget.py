"""RetryBudget: Linkerd's rule over a bucketed sliding window; model-checked and threaded."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from seawall.policy.budget import RetryBudget
from seawall.policy.clock import FakeClock

# -- examples --


def test_reserve_allows_retries_without_traffic() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, ttl=3.0)
    assert budget.available(0.0) == 3.0
    assert [budget.try_withdraw(0.0) for _ in range(4)] == [True, True, True, False]
    assert budget.available(0.0) == 0.0


def test_ratio_of_requests_without_reserve() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10.0)
    for _ in range(4):
        budget.deposit(1.0)
    assert not budget.try_withdraw(1.0)  # 0 + 1 <= 0.8 fails
    budget.deposit(1.0)
    assert budget.try_withdraw(1.0)  # 0 + 1 <= 1.0
    assert not budget.try_withdraw(1.0)  # 1 + 1 <= 1.0 fails
    for _ in range(5):
        budget.deposit(1.0)
    assert budget.try_withdraw(1.0)  # 1 + 1 <= 2.0
    assert not budget.try_withdraw(1.0)
    assert budget.counts(1.0) == (10, 2)


def test_window_slides_bucket_by_bucket() -> None:
    # ttl 10 s in 10 buckets of 1 s: events at t in [k, k+1) leave the window at t = k + 10
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    budget.deposit(0.5)
    budget.deposit(3.2)
    assert budget.try_withdraw(3.3)
    assert budget.counts(9.99) == (2, 1)
    assert budget.counts(10.0) == (1, 1)  # the bucket [0, 1) expired, with its request
    assert budget.available(10.0) == 0.0  # 1 request, 1 retry
    assert not budget.try_withdraw(10.0)
    assert budget.counts(13.0) == (0, 0)
    assert budget.try_withdraw(13.0) is False
    budget.deposit(40.0)  # after a gap longer than the window, everything is fresh
    assert budget.counts(40.0) == (1, 0)
    assert budget.available(40.0) == 1.0


def test_time_going_backwards_counts_in_the_newest_bucket() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    budget.deposit(5.0)
    budget.deposit(4.0)  # a thread that read the clock earlier but took the lock later
    assert budget.counts(14.99) == (2, 0)
    assert budget.counts(15.0) == (0, 0)


def test_methods_without_now_read_the_injected_clock() -> None:
    clock = FakeClock(100.0)
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=1.0, clock=clock)
    budget.deposit()
    assert budget.available() == 1.0
    assert budget.try_withdraw()
    assert budget.counts() == (1, 1)
    clock.advance(1.0)
    assert budget.counts() == (0, 0)


def test_properties_and_repr() -> None:
    budget = RetryBudget(0.5, 2.0, 4.0, buckets=8)
    assert (budget.ratio, budget.min_per_second, budget.ttl, budget.buckets) == (0.5, 2.0, 4.0, 8)
    assert budget.width == 0.5
    assert repr(budget) == "RetryBudget(ratio=0.5, min_per_second=2.0, ttl=4.0, buckets=8)"


def test_defaults_are_linkerds() -> None:
    budget = RetryBudget()
    got = (budget.ratio, budget.min_per_second, budget.ttl, budget.buckets)
    assert got == (0.2, 10.0, 10.0, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 0.0}, r"ratio must be in \(0, 1000\], got 0.0"),
        ({"ratio": 1000.5}, r"ratio must be in \(0, 1000\], got 1000.5"),
        ({"ratio": float("nan")}, r"ratio must be in \(0, 1000\], got nan"),
        ({"ratio": True}, r"ratio must be in \(0, 1000\], got True"),
        ({"min_per_second": -1}, "min_per_second must be a finite number >= 0, got -1"),
        ({"min_per_second": float("inf")}, "min_per_second must be .*, got inf"),
        ({"ttl": 0}, "ttl must be a finite number > 0, got 0"),
        ({"ttl": -3.0}, "ttl must be a finite number > 0, got -3.0"),
        ({"buckets": 0}, "buckets must be an int >= 1, got 0"),
        ({"buckets": 2.5}, "buckets must be an int >= 1, got 2.5"),
    ],
)
def test_bad_config_names_parameter_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="RetryBudget: " + message):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


def test_ratio_upper_bound_is_inclusive() -> None:
    assert RetryBudget(ratio=1000).ratio == 1000.0


# -- model check --


class BudgetVersusHistory(RuleBasedStateMachine):
    """The budget against a model that keeps every event and recounts the window."""

    budget: RetryBudget
    clock: FakeClock

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[float, str]] = []

    @initialize(
        ratio=st.sampled_from([0.05, 0.2, 0.5, 1.0, 3.0]),
        min_per_second=st.sampled_from([0.0, 0.25, 1.0, 10.0]),
        ttl=st.sampled_from([0.5, 1.0, 3.0, 10.0]),
        buckets=st.sampled_from([1, 3, 10]),
        start=st.floats(min_value=0.0, max_value=1e6, allow_nan=False),
    )
    def setup(
        self, ratio: float, min_per_second: float, ttl: float, buckets: int, start: float
    ) -> None:
        self.clock = FakeClock(start)
        self.budget = RetryBudget(ratio, min_per_second, ttl, self.clock, buckets=buckets)

    # the model: same bucket boundaries, brute-force counting
    def _window(self, now: float) -> tuple[int, int]:
        width = self.budget.ttl / self.budget.buckets
        newest = int(now // width)
        for t, _ in self.events:
            newest = max(newest, int(t // width))  # time never moves a bucket back
        oldest_kept = newest - self.budget.buckets + 1
        requests = sum(1 for t, k in self.events if k == "req" and int(t // width) >= oldest_kept)
        retries = sum(1 for t, k in self.events if k == "retry" and int(t // width) >= oldest_kept)
        return requests, retries

    def _limit(self, requests: int) -> float:
        return self.budget.ratio * requests + self.budget.min_per_second * self.budget.ttl

    @rule(dt=st.floats(min_value=0.0, max_value=25.0, allow_nan=False))
    def advance(self, dt: float) -> None:
        self.clock.advance(dt)

    @rule(k=st.integers(min_value=1, max_value=12))
    def advance_whole_buckets(self, k: int) -> None:
        self.clock.advance(k * self.budget.ttl / self.budget.buckets)

    @rule(n=st.integers(min_value=1, max_value=5), explicit_now=st.booleans())
    def deposit(self, n: int, explicit_now: bool) -> None:
        for _ in range(n):
            if explicit_now:
                self.budget.deposit(self.clock())
            else:
                self.budget.deposit()
            self.events.append((self.clock(), "req"))

    @rule(explicit_now=st.booleans())
    def try_withdraw(self, explicit_now: bool) -> None:
        now = self.clock()
        requests, retries = self._window(now)
        expected = retries + 1 <= self._limit(requests) + 1e-9  # the documented tolerance
        got = self.budget.try_withdraw(now) if explicit_now else self.budget.try_withdraw()
        assert got == expected
        if got:
            self.events.append((now, "retry"))

    @precondition(lambda self: hasattr(self, "budget"))
    @invariant()
    def counts_and_available_match_the_model(self) -> None:
        now = self.clock()
        requests, retries = self._window(now)
        assert self.budget.counts(now) == (requests, retries)
        expected = max(0.0, self._limit(requests) - retries)
        assert self.budget.available(now) == pytest.approx(expected)
        assert self.budget.available(now) >= 0.0


BudgetVersusHistory.TestCase.settings = settings(max_examples=150, stateful_step_count=60)
TestBudgetVersusHistory = BudgetVersusHistory.TestCase


# -- threads --


def test_threads_deposit_then_withdraw_exactly_the_allowance() -> None:
    clock = FakeClock(5.0)  # frozen time: nothing expires during the test
    budget = RetryBudget(ratio=0.5, min_per_second=1.0, ttl=10.0, clock=clock)
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)
    granted = [0] * threads

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            budget.deposit()
        barrier.wait()  # every deposit is in before any withdrawal
        for _ in range(per_thread):
            if budget.try_withdraw():
                granted[i] += 1

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    requests = threads * per_thread
    allowance = math.floor(0.5 * requests + 1.0 * 10.0)
    assert sum(granted) == allowance
    assert budget.counts() == (requests, allowance)
    assert budget.available() < 1.0


def test_threads_interleaved_totals_stay_consistent() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, ttl=40.0, clock=clock)  # 4 s buckets
    threads, per_thread = 8, 2000
    granted = [0] * threads

    def work(i: int) -> None:
        for _ in range(per_thread):
            budget.deposit()
            if budget.try_withdraw():
                granted[i] += 1
            clock.advance(0.001)  # 16 s in all: buckets roll over, nothing expires

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    requests, retries = budget.counts()
    assert requests == threads * per_thread
    assert retries == sum(granted)
    assert retries <= 0.2 * requests
    assert retries >= 0.2 * requests - threads  # used up to its limit, give or take a race


def test_float_rounding_does_not_refuse_an_allowed_retry() -> None:
    """0.29 * 100 == 28.999999999999996 in floats; 29 retries are allowed exactly."""
    budget = RetryBudget(ratio=0.29, min_per_second=0.0, ttl=10.0)
    for _ in range(100):
        budget.deposit(0.0)
    assert all(budget.try_withdraw(0.0) for _ in range(29))
    assert not budget.try_withdraw(0.0)
