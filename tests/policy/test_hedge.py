"""Hedge: first success wins, losers cancelled (asyncio) or abandoned (sync), budget, percentile."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable
from typing import Any

import pytest

from seawall.policy.budget import RetryBudget
from seawall.policy.clock import FakeClock
from seawall.policy.hedge import Hedge
from seawall.policy.retry import current_attempt


class Boom(Exception):
    """A failed attempt."""

    def __init__(self, attempt: int) -> None:
        super().__init__(f"attempt {attempt} failed")
        self.attempt = attempt


class Timer:
    """An injected ``async_sleep`` the test fires by hand, one sleep at a time."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self._waiting: list[asyncio.Event] = []

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        event = asyncio.Event()
        self._waiting.append(event)
        await event.wait()

    def fire(self) -> None:
        self._waiting.pop(0).set()


class Attempts:
    """Async callee: attempt n runs ``behaviours[n]`` and the test watches what happened."""

    def __init__(self, **behaviours: Callable[[], Any]) -> None:
        self.behaviours = behaviours
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.release = {n: asyncio.Event() for n in (1, 2, 3, 4)}

    async def __call__(self) -> Any:
        n = current_attempt()
        self.started.append(n)
        try:
            return await self.behaviours[f"a{n}"]()
        except asyncio.CancelledError:
            self.cancelled.append(n)
            raise


async def until(predicate: Callable[[], bool]) -> None:
    """Let the loop run until ``predicate()`` holds (bounded, no real waiting)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def forever() -> Any:
    await asyncio.Event().wait()


def value(v: Any) -> Callable[[], Any]:
    async def run() -> Any:
        await asyncio.sleep(0)
        return v

    return run


def fail(n: int) -> Callable[[], Any]:
    async def run() -> Any:
        await asyncio.sleep(0)
        raise Boom(n)

    return run


def after(event_of: Callable[[], asyncio.Event], then: Callable[[], Any]) -> Callable[[], Any]:
    async def run() -> Any:
        await event_of().wait()
        return await then()

    return run


class WatchedBudget(RetryBudget):
    """A budget that signals each refused withdrawal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = threading.Event()

    def try_withdraw(self, now: float | None = None) -> bool:
        allowed = super().try_withdraw(now)
        if not allowed:
            self.refused.set()
        return allowed


def no_other_tasks() -> bool:
    return asyncio.all_tasks() == {asyncio.current_task()}


# -- validation --


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -0.1}, "Hedge: delay must be a finite number >= 0, got -0.1"),
        ({"delay": float("nan")}, "Hedge: delay must be a finite number >= 0, got nan"),
        ({"percentile": 0}, r"Hedge: percentile must be in \(0, 100\) or None, got 0"),
        ({"percentile": 100.0}, r"Hedge: percentile must be in \(0, 100\) or None, got 100.0"),
        ({"max_hedges": 0}, "Hedge: max_hedges must be an int >= 1, got 0"),
        ({"min_samples": 0}, "Hedge: min_samples must be an int >= 1, got 0"),
        ({"samples": 5}, r"Hedge: samples must be >= min_samples \(20\), got 5"),
        ({"max_workers": 0}, "Hedge: max_workers must be an int >= 1 or None, got 0"),
        ({"name": ""}, "Hedge: name must be a non-empty string, got ''"),
    ],
)
def test_bad_config_names_parameter_and_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Hedge(**kwargs)  # type: ignore[arg-type]


def test_defaults() -> None:
    h = Hedge()
    assert (h.delay, h.percentile, h.max_hedges, h.min_samples, h.samples) == (
        0.05, None, 1, 20, 100,
    )
    assert h.hedge_delay() == 0.05
    assert "max_hedges=1" in repr(h)


# -- asyncio --


def test_fast_first_attempt_wins_without_a_hedge() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=value("one"))
        assert await Hedge(async_sleep=timer.sleep).acall(callee) == "one"
        assert callee.started == [1]
        assert timer.delays == [0.05]  # the timer was armed, then cancelled
        assert no_other_tasks()

    asyncio.run(main())


def test_slow_first_attempt_loses_to_the_hedge_and_is_cancelled() -> None:
    clock = FakeClock()

    async def main() -> None:
        callee = Attempts(a1=forever, a2=value("two"))
        h = Hedge(delay=0.2, clock=clock, async_sleep=clock.async_sleep)
        assert await h.acall(callee) == "two"
        assert callee.started == [1, 2]
        assert callee.cancelled == [1]
        assert clock.sleeps[0] == 0.2
        assert no_other_tasks()

    asyncio.run(main())


def test_first_attempt_can_still_win_after_the_hedge_started() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=after(lambda: callee.release[1], value("one")), a2=forever)
        call = asyncio.create_task(Hedge(async_sleep=timer.sleep).acall(callee))
        await until(lambda: callee.started == [1] and len(timer.delays) == 1)
        timer.fire()
        await until(lambda: callee.started == [1, 2])
        callee.release[1].set()
        assert await call == "one"
        assert callee.cancelled == [2]
        assert no_other_tasks()

    asyncio.run(main())


def test_a_failure_does_not_hedge_early_and_alone_is_raised() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=fail(1))
        with pytest.raises(Boom) as info:
            await Hedge(async_sleep=timer.sleep).acall(callee)
        assert info.value.attempt == 1
        assert callee.started == [1]
        assert no_other_tasks()

    asyncio.run(main())


def test_first_fails_after_the_hedge_started_and_the_hedge_wins() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=after(lambda: callee.release[1], fail(1)), a2=forever)
        callee.behaviours["a2"] = after(lambda: callee.release[2], value("two"))
        call = asyncio.create_task(Hedge(async_sleep=timer.sleep).acall(callee))
        await until(lambda: len(timer.delays) == 1)
        timer.fire()
        await until(lambda: callee.started == [1, 2])
        callee.release[1].set()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not call.done()  # attempt 1 failed, attempt 2 still in flight
        callee.release[2].set()
        assert await call == "two"
        assert callee.cancelled == []

    asyncio.run(main())


def test_all_failing_raises_the_last_failure() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=after(lambda: callee.release[1], fail(1)), a2=forever)
        callee.behaviours["a2"] = after(lambda: callee.release[2], fail(2))
        call = asyncio.create_task(Hedge(async_sleep=timer.sleep).acall(callee))
        await until(lambda: len(timer.delays) == 1)
        timer.fire()
        await until(lambda: callee.started == [1, 2])
        callee.release[2].set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert not call.done()  # attempt 2 failed, attempt 1 still in flight
        callee.release[1].set()  # attempt 1 fails last
        with pytest.raises(Boom) as info:
            await call
        assert info.value.attempt == 1
        assert no_other_tasks()

    asyncio.run(main())


def test_max_hedges_bounds_the_extra_attempts() -> None:
    clock = FakeClock()

    async def main() -> None:
        callee = Attempts(a1=forever, a2=forever, a3=value("three"))
        h = Hedge(delay=0.1, max_hedges=2, clock=clock, async_sleep=clock.async_sleep)
        assert await h.acall(callee) == "three"
        assert callee.started == [1, 2, 3]
        assert sorted(callee.cancelled) == [1, 2]
        assert clock.sleeps == [0.1, 0.1]
        assert no_other_tasks()

    asyncio.run(main())


def test_budget_refusal_means_no_hedge() -> None:
    clock = FakeClock()

    async def main() -> None:
        budget = WatchedBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
        callee = Attempts(a1=after(lambda: callee.release[1], value("one")))
        h = Hedge(delay=0.1, budget=budget, clock=clock, async_sleep=clock.async_sleep)
        call = asyncio.create_task(h.acall(callee))
        await until(budget.refused.is_set)  # the timer fired, the budget (0.5 retries) said no
        for _ in range(5):
            await asyncio.sleep(0)
        assert callee.started == [1]
        assert clock.sleeps == [0.1]
        callee.release[1].set()
        assert await call == "one"
        assert budget.counts() == (1, 0)

    asyncio.run(main())


def test_budget_is_charged_per_hedge_and_credited_per_call() -> None:
    clock = FakeClock()

    async def main() -> None:
        budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=clock)
        h = Hedge(delay=0.1, budget=budget, clock=clock, async_sleep=clock.async_sleep)
        assert await h.acall(Attempts(a1=forever, a2=value("two"))) == "two"
        assert budget.counts() == (1, 1)

    asyncio.run(main())


def test_outer_cancellation_cancels_every_attempt() -> None:
    async def main() -> None:
        timer = Timer()
        callee = Attempts(a1=forever, a2=forever)
        call = asyncio.create_task(Hedge(async_sleep=timer.sleep).acall(callee))
        await until(lambda: len(timer.delays) == 1)
        timer.fire()
        await until(lambda: callee.started == [1, 2])
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert sorted(callee.cancelled) == [1, 2]
        assert no_other_tasks()

    asyncio.run(main())


def test_outer_timeout_cancels_attempts() -> None:
    async def main() -> None:
        callee = Attempts(a1=forever, a2=forever)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await Hedge(delay=0.0).acall(callee)
        assert sorted(callee.cancelled) == [1, 2]
        assert no_other_tasks()

    asyncio.run(main())


def test_a_second_cancellation_during_cleanup_still_awaits_every_attempt() -> None:
    # Cancelled twice (a TaskGroup aborting, then a timeout): the hedge must
    # still wait for its attempts to finish before propagating, or they outlive it.
    async def slow_to_die() -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            for _ in range(5):  # cleanup that takes a few loop turns
                await asyncio.sleep(0)
            raise

    async def main() -> None:
        callee = Attempts(a1=slow_to_die, a2=slow_to_die)
        call = asyncio.create_task(Hedge(delay=0.0).acall(callee))
        await until(lambda: callee.started == [1, 2])
        call.cancel()
        await asyncio.sleep(0)  # the hedge is now awaiting its attempts' cleanup
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert sorted(callee.cancelled) == [1, 2]
        assert no_other_tasks()

    asyncio.run(main())


def test_losers_exceptions_are_retrieved_not_logged() -> None:
    clock = FakeClock()
    unhandled: list[dict[str, Any]] = []

    async def stubborn() -> Any:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise Boom(1) from None  # a loser that turns its cancellation into an error

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: unhandled.append(ctx))
        h = Hedge(delay=0.1, clock=clock, async_sleep=clock.async_sleep)
        assert await h.acall(Attempts(a1=stubborn, a2=value("two"))) == "two"
        gc.collect()

    asyncio.run(main())
    gc.collect()
    assert unhandled == []


def test_percentile_delay_follows_winning_latencies() -> None:
    clock = FakeClock()

    async def main() -> None:
        h = Hedge(
            delay=1.0, percentile=50.0, min_samples=3, samples=4, clock=clock,
            async_sleep=clock.async_sleep,
        )

        def taking(seconds: float) -> Callable[[], Any]:
            async def run() -> Any:
                clock.advance(seconds)
                return seconds

            return run

        for latency in (0.3, 0.1):
            await h.acall(Attempts(a1=taking(latency)))
        assert h.hedge_delay() == 1.0  # 2 samples < min_samples: the fixed delay
        await h.acall(Attempts(a1=taking(0.2)))
        assert h.hedge_delay() == pytest.approx(0.2)  # median of 0.1, 0.2, 0.3
        await h.acall(Attempts(a1=taking(0.25)))
        await h.acall(Attempts(a1=taking(0.9)))  # ring of 4: 0.3 drops out
        assert h.hedge_delay() == pytest.approx(0.2)  # nearest-rank median of .1 .2 .25 .9
        clock.sleeps.clear()
        await h.acall(Attempts(a1=forever, a2=value("x")))
        assert clock.sleeps[0] == pytest.approx(0.2)

    asyncio.run(main())


def test_percentile_nearest_rank() -> None:
    h = Hedge(percentile=95.0, min_samples=20, samples=100)
    for i in range(1, 101):
        h.record_latency(i / 1000)
    assert h.hedge_delay() == pytest.approx(0.095)
    # p / 100 * n is 7.000000000000001 in floats: the rank must still be 7.
    p7 = Hedge(percentile=7.0, min_samples=1, samples=100)
    for i in range(1, 101):
        p7.record_latency(float(i))
    assert p7.hedge_delay() == 7.0
    fixed = Hedge(delay=0.3)
    fixed.record_latency(5.0)
    assert fixed.hedge_delay() == 0.3


def test_each_attempt_sees_its_number_and_the_callers_context_is_untouched() -> None:
    async def main() -> None:
        seen: list[int] = []

        async def callee() -> int:
            n = current_attempt()
            seen.append(n)
            if n == 1:
                await asyncio.Event().wait()
            return n

        h = Hedge(delay=0.0)
        assert await h.acall(callee) == 2
        assert seen == [1, 2]
        assert current_attempt() == 1

    asyncio.run(main())


# -- sync --


def test_sync_fast_first_attempt() -> None:
    with Hedge(delay=5.0) as h:
        assert h._executor is None  # created lazily
        assert h.call(current_attempt) == 1
        assert h._executor is not None
    assert h._executor is None  # closed


def test_sync_hedge_wins_and_the_loser_is_abandoned() -> None:
    release = threading.Event()
    seen: list[int] = []
    loser_done = threading.Event()

    def callee() -> str:
        n = current_attempt()
        seen.append(n)
        if n == 1:
            release.wait(5.0)
            loser_done.set()
            return "one"
        return "two"

    with Hedge(delay=0.0) as h:
        assert h.call(callee) == "two"
        assert not loser_done.is_set()  # still running in its thread: cannot be interrupted
        release.set()
        assert loser_done.wait(5.0)
    assert sorted(seen) == [1, 2]


def test_sync_all_failing_raises_a_failure() -> None:
    gate = threading.Event()
    seen: list[int] = []

    def callee() -> None:
        n = current_attempt()
        seen.append(n)
        if n == 1:
            gate.wait(5.0)  # keeps attempt 1 in flight until the hedge has failed
        else:
            gate.set()
        raise Boom(n)

    # which failure is "last" is a race between two threads here (the asyncio
    # test pins the order); what matters is that the call waits for both
    with Hedge(delay=0.0) as h, pytest.raises(Boom) as info:
        h.call(callee)
    assert sorted(seen) == [1, 2]
    assert gate.is_set()
    assert info.value.attempt in (1, 2)


def test_sync_budget_refusal_means_no_hedge() -> None:
    clock = FakeClock()
    budget = WatchedBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    seen: list[int] = []

    def callee() -> int:
        seen.append(current_attempt())
        assert budget.refused.wait(5.0)  # the 0-delay timer fired and the budget said no
        return current_attempt()

    with Hedge(delay=0.0, budget=budget, clock=clock) as h:
        assert h.call(callee) == 1
    assert seen == [1]
    assert budget.counts() == (1, 0)


def test_sync_real_timer_smoke() -> None:
    release = threading.Event()

    def callee() -> int:
        if current_attempt() == 1:
            release.wait(2.0)
        return current_attempt()

    with Hedge(delay=0.01) as h:
        assert h.call(callee) == 2
        release.set()


def test_async_real_timer_smoke() -> None:
    async def callee() -> int:
        if current_attempt() == 1:
            await asyncio.sleep(2.0)
        return current_attempt()

    assert asyncio.run(Hedge(delay=0.01).acall(callee)) == 2


def test_closing_a_suspended_hedged_call_cancels_its_attempts_quietly() -> None:
    """close() (garbage collection of an abandoned call) must not await: it cancels."""
    async def main() -> None:
        async def work() -> None:
            await asyncio.Event().wait()

        coro = Hedge(delay=10.0).wrap_async(work)()
        coro.send(None)  # runs up to its first suspension: the attempt task exists
        await asyncio.sleep(0)
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others
        coro.close()  # raised RuntimeError("coroutine ignored GeneratorExit") before
        await asyncio.sleep(0)
        assert all(t.cancelled() for t in others)

    asyncio.run(main())
