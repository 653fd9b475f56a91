"""Tests for seawall.policy.ratelimit: token math on a fake clock, adapters, threads."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy.clock import FakeClock
from seawall.policy.deadline import deadline_scope
from seawall.policy.errors import RateLimitedError
from seawall.policy.ratelimit import RateLimiter, RateLimiterConfig


def limiter(
    rate: float, burst: float | None = None, **kwargs: Any
) -> tuple[RateLimiter, FakeClock]:
    clock = FakeClock()
    return (
        RateLimiter(
            rate, burst, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep, **kwargs
        ),
        clock,
    )


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0,), {}, "RateLimiter: rate must be a finite number > 0, got 0"),
        ((-1.0,), {}, "rate must be a finite number > 0, got -1.0"),
        ((math.inf,), {}, "rate must be a finite number > 0, got inf"),
        ((math.nan,), {}, "rate must be a finite number > 0, got nan"),
        (("5",), {}, "rate must be a finite number > 0, got '5'"),
        ((5, 0.5), {}, "RateLimiter: burst must be a finite number >= 1, got 0.5"),
        ((5, math.inf), {}, "burst must be a finite number >= 1, got inf"),
        ((5,), {"max_wait": -1}, "RateLimiter: max_wait must be a number >= 0, got -1"),
    ],
)
def test_config_validation(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimiter(*args, **kwargs)


def test_default_burst_is_one_second_of_rate_at_least_one() -> None:
    assert RateLimiter(10).config.burst == 10
    assert RateLimiter(0.5).config.burst == 1
    assert RateLimiter(3, 7).config == RateLimiterConfig(3, 7, 1.0, "ratelimit")


def test_tokens_must_fit_the_bucket() -> None:
    rl, clock = limiter(1.0, 2)
    with pytest.raises(ValueError, match=r"RateLimiter: tokens must be in \(0, 2\], got 3"):
        rl.reserve(clock(), 3)
    with pytest.raises(ValueError, match="got 0"):
        rl.try_acquire(clock(), 0)


@pytest.mark.parametrize("max_wait", [math.nan, -1.0, -math.inf, "1"])
def test_per_call_max_wait_is_validated(max_wait: Any) -> None:
    # NaN compared false with every wait, so any wait was accepted; a negative
    # limit refused even a token that was there.
    rl, clock = limiter(1.0, 1)
    assert rl.reserve(clock(), max_wait=0.0) == 0.0
    message = rf"RateLimiter: max_wait must be a number >= 0, got {max_wait!r}"
    with pytest.raises(ValueError, match=message):
        rl.reserve(clock(), max_wait=max_wait)
    with pytest.raises(ValueError, match=message):
        rl.acquire(max_wait=max_wait)
    with pytest.raises(ValueError, match=message):
        asyncio.run(rl.acquire_async(max_wait=max_wait))
    assert rl.available(clock()) == 0.0  # nothing was reserved
    assert clock.sleeps == []


# --------------------------------------------------------------------------- token math


def test_burst_then_steady_rate() -> None:
    rl, _ = limiter(2.0, 3)
    assert [rl.try_acquire(0.0) for _ in range(4)] == [True, True, True, False]
    assert rl.try_acquire(0.25) is False  # half a token
    assert rl.try_acquire(0.5) is True
    assert rl.try_acquire(0.5) is False
    assert [rl.try_acquire(1.0), rl.try_acquire(1.0)] == [True, False]
    assert rl.available(1.0) == 0.0
    # a long quiet period refills to the burst, not beyond
    assert rl.available(100.0) == 3.0
    assert [rl.try_acquire(100.0) for _ in range(4)] == [True, True, True, False]


def test_reserve_queues_callers_in_order() -> None:
    rl, _ = limiter(4.0, 2)
    assert [rl.reserve(0.0) for _ in range(5)] == [0.0, 0.0, 0.25, 0.5, 0.75]
    assert rl.available(0.0) == -3.0
    assert rl.available(0.5) == -1.0
    assert rl.reserve(0.5, 2) == 0.75


def test_reserve_refuses_without_changing_state() -> None:
    rl, _ = limiter(2.0, 1, name="api")
    assert rl.reserve(0.0) == 0.0
    with pytest.raises(RateLimitedError) as info:
        rl.reserve(0.0, max_wait=0.25)
    assert info.value.retry_after == 0.5
    assert info.value.name == "api"
    assert rl.available(0.0) == 0.0  # unchanged
    assert rl.reserve(0.0, max_wait=0.5) == 0.5


def test_multi_token_and_retry_after() -> None:
    rl, _ = limiter(10.0, 5)
    assert rl.try_acquire(0.0, 4)
    assert rl.retry_after(0.0, 3) == pytest.approx(0.2)
    assert not rl.try_acquire(0.0, 3)
    assert rl.retry_after(0.2, 3) == 0.0
    assert rl.try_acquire(0.2, 3)


def test_refund_gives_tokens_back_up_to_the_burst() -> None:
    rl, _ = limiter(1.0, 2)
    assert rl.reserve(0.0, 2) == 0.0
    assert rl.reserve(0.0) == 1.0
    rl.refund(0.0)
    assert rl.available(0.0) == 0.0
    rl.refund(0.0, 2)
    rl.refund(0.0, 2)
    assert rl.available(0.0) == 2.0


def test_time_going_backwards_is_ignored() -> None:
    rl, _ = limiter(1.0, 1)
    assert rl.try_acquire(10.0)
    assert not rl.try_acquire(9.0)
    assert rl.available(10.5) == 0.5


@given(
    rate=st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0]),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=2.0), st.integers(min_value=1, max_value=3)),
        max_size=60,
    ),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    rl, _ = limiter(rate, burst)
    now = 0.0
    granted = 0
    for dt, tokens in steps:
        now += dt
        if tokens <= burst and rl.try_acquire(now, tokens):
            granted += tokens
        assert rl.available(now) <= burst
        assert granted <= burst + rate * now + 1e-6


# --------------------------------------------------------------------------- adapters


def test_sync_acquire_sleeps_the_reserved_time() -> None:
    rl, clock = limiter(2.0, 1)
    for _ in range(3):
        rl.acquire()
    assert clock.sleeps == [0.5, 0.5]
    assert clock() == 1.0


def test_sync_acquire_without_waiting_or_too_long() -> None:
    rl, clock = limiter(2.0, 1, max_wait=0.4)
    rl.acquire()
    with pytest.raises(RateLimitedError) as info:
        rl.acquire(wait=False)
    assert info.value.retry_after == 0.5
    with pytest.raises(RateLimitedError):
        rl.acquire()  # 0.5 s needed, 0.4 s allowed by the config
    rl.acquire(max_wait=0.5)  # allowed for this call
    assert clock.sleeps == [0.5]


def test_waiting_never_exceeds_the_deadline() -> None:
    rl, clock = limiter(1.0, 1, max_wait=10.0)
    rl.acquire()
    with deadline_scope(0.5, clock=clock), pytest.raises(RateLimitedError) as info:
        rl.acquire()
    assert info.value.retry_after == 1.0
    assert clock.sleeps == []
    with deadline_scope(at=-5.0, clock=clock), pytest.raises(RateLimitedError):
        rl.acquire()  # deadline passed: only an immediate token would do
    with deadline_scope(1.0, clock=clock):
        rl.acquire()
    assert clock.sleeps == [1.0]


def test_sync_interrupted_wait_refunds() -> None:
    clock = FakeClock()

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    rl = RateLimiter(1.0, 1, clock=clock, sleep=interrupted)
    rl.acquire()
    with pytest.raises(KeyboardInterrupt):
        rl.acquire()
    assert rl.available(clock()) == 0.0


def test_decorators_and_context_managers() -> None:
    rl, clock = limiter(1.0, 2)

    @rl
    def sync_fn(x: int) -> int:
        return x + 1

    @rl
    async def async_fn(x: int) -> int:
        return x * 2

    assert sync_fn(1) == 2
    with rl:
        pass
    assert rl.available(clock()) == 0.0
    assert clock.sleeps == []

    async def main() -> int:
        async with rl:
            pass
        return await async_fn(4)

    assert asyncio.run(main()) == 8
    assert clock.sleeps == [1.0, 1.0]


def test_async_acquire_sleeps_and_refuses() -> None:
    rl, clock = limiter(4.0, 1, max_wait=0.3)

    async def main() -> None:
        await rl.acquire_async()
        await rl.acquire_async()
        with pytest.raises(RateLimitedError):
            await rl.acquire_async(wait=False)
        with pytest.raises(RateLimitedError):
            await rl.acquire_async(max_wait=0.1)

    asyncio.run(main())
    assert clock.sleeps == [0.25]


def test_async_cancelled_wait_refunds_the_tokens() -> None:
    clock = FakeClock()
    started = threading.Event()

    async def blocking_sleep(seconds: float) -> None:
        started.set()
        await asyncio.sleep(3600)

    rl = RateLimiter(1.0, 1, clock=clock, async_sleep=blocking_sleep, max_wait=5.0)

    async def main() -> None:
        await rl.acquire_async()
        task = asyncio.create_task(rl.acquire_async())
        await asyncio.sleep(0)
        assert started.is_set()
        assert rl.available(clock()) == -1.0
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rl.available(clock()) == 0.0

    asyncio.run(main())


def test_threads_share_the_bucket_exactly() -> None:
    clock = FakeClock()
    rl = RateLimiter(1.0, 50, clock=clock)
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def body() -> None:
        barrier.wait()
        got = [rl.try_acquire(clock()) for _ in range(20)]
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=body) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 50
