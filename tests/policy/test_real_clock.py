"""A small smoke set on the real monotonic clock and real sleeps.

Everything else runs on a FakeClock; these make sure the default clock and
sleeps are wired correctly. Durations are tens of milliseconds; assertions are
about order and outcome, never about how fast the machine is.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from seawall.policy import (
    BreakerState,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    Constant,
    DeadlineExceeded,
    RateLimiter,
    Retry,
    Timeout,
)


def test_breaker_opens_and_recovers_on_the_real_clock() -> None:
    breaker = CircuitBreaker("real", window_size=2, minimum_calls=2, open_for=0.05,
                             half_open_calls=1)

    def fail() -> None:
        raise ConnectionError

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(fail)
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: None)
    assert info.value.retry_after is not None
    assert 0 < info.value.retry_after <= 0.05
    time.sleep(0.06)
    assert breaker.call(lambda: "probe") == "probe"
    assert breaker.state is BreakerState.CLOSED


def test_retry_really_sleeps_between_attempts() -> None:
    stamps: list[float] = []

    @Retry(on=ConnectionError, attempts=3, backoff=Constant(0.02))
    def flaky() -> str:
        stamps.append(time.monotonic())
        if len(stamps) < 3:
            raise ConnectionError
        return "ok"

    assert flaky() == "ok"
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(gap >= 0.02 for gap in gaps)


def test_async_timeout_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await Timeout(0.03).acall(slow)
        assert cancelled.is_set()

    asyncio.run(main())


def test_bulkhead_with_real_threads() -> None:
    bulkhead = Bulkhead(max_in_flight=1, max_waiting=0)
    inside = threading.Event()
    release = threading.Event()

    def hold() -> None:
        inside.set()
        release.wait(2)

    worker = threading.Thread(target=bulkhead.call, args=(hold,))
    worker.start()
    assert inside.wait(2)
    with pytest.raises(BulkheadFullError):
        bulkhead.call(lambda: None)
    release.set()
    worker.join(2)
    assert bulkhead.call(lambda: "free") == "free"


def test_rate_limiter_waits_for_a_token() -> None:
    limiter = RateLimiter(rate=50.0, burst=1)
    start = time.monotonic()
    limiter.acquire()
    limiter.acquire()  # the second token arrives 20 ms later
    assert time.monotonic() - start >= 0.015
