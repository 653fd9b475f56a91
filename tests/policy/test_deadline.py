"""Tests for seawall.policy.deadline: scopes, Timeout (sync and asyncio), the header."""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
import types
from collections.abc import Generator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy.clock import FakeClock
from seawall.policy.deadline import (
    HEADER,
    MAX_HEADER_MS,
    Timeout,
    current_deadline,
    deadline_scope,
    decode_deadline,
    encode_deadline,
    remaining,
)
from seawall.policy.errors import DeadlineExceeded, SeawallError

# --------------------------------------------------------------------------- scopes


def test_no_deadline_by_default() -> None:
    assert current_deadline() is None
    assert remaining() is None


def test_scope_sets_and_restores() -> None:
    clock = FakeClock(100.0)
    with deadline_scope(2.0, clock=clock) as deadline:
        assert deadline == 102.0
        assert current_deadline() == 102.0
        clock.advance(0.5)
        assert remaining(clock) == 1.5
    assert current_deadline() is None


def test_nested_scopes_take_the_sooner_deadline() -> None:
    clock = FakeClock(0.0)
    with deadline_scope(5.0, clock=clock):
        with deadline_scope(10.0, clock=clock) as inner:
            assert inner == 5.0  # a later inner deadline does not extend the outer one
        with deadline_scope(1.0, clock=clock) as inner:
            assert inner == 1.0
            with deadline_scope(at=3.0, clock=clock):
                assert current_deadline() == 1.0
            assert current_deadline() == 1.0
        assert current_deadline() == 5.0
    assert current_deadline() is None


def test_scope_without_a_deadline_keeps_the_parent() -> None:
    clock = FakeClock()
    with deadline_scope() as deadline:
        assert deadline is None
    with deadline_scope(4.0, clock=clock):
        with deadline_scope() as deadline:
            assert deadline == 4.0
        with deadline_scope(math.inf, clock=clock) as deadline:
            assert deadline == 4.0
    with deadline_scope(at=math.inf) as deadline:
        assert deadline is None


def test_scope_enforces_nothing() -> None:
    clock = FakeClock()
    ran_to_the_end = False
    with deadline_scope(1.0, clock=clock):
        clock.advance(5.0)
        assert remaining(clock) == -4.0
        ran_to_the_end = True
    assert ran_to_the_end


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seconds": -1.0}, "deadline_scope: seconds must be a number >= 0, got -1.0"),
        ({"seconds": math.nan}, "deadline_scope: seconds must be a number >= 0, got nan"),
        ({"seconds": "1"}, "deadline_scope: seconds must be a number >= 0, got '1'"),
        ({"seconds": 1.0, "at": 2.0}, "give seconds or at, not both"),
        ({"at": math.nan}, "deadline_scope: at must be a number, got nan"),
    ],
)
def test_scope_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        deadline_scope(**kwargs)


def test_a_shared_scope_object_in_concurrent_tasks() -> None:
    clock = FakeClock()
    scope = deadline_scope(1.0, clock=clock)
    seen: list[float | None] = []

    async def task(advance: float) -> None:
        clock.advance(advance)
        async with scope:
            await asyncio.sleep(0)
            seen.append(current_deadline())
            await asyncio.sleep(0)
        seen.append(current_deadline())

    async def main() -> None:
        await asyncio.gather(task(0.0), task(10.0))

    asyncio.run(main())
    assert seen == [1.0, 11.0, None, None]


def test_exit_without_enter_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="without having been entered"):
        deadline_scope(1.0).__exit__(None, None, None)


# --------------------------------------------------------------------------- Timeout config


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0"), (-1.5, "-1.5"), (math.inf, "inf"), (math.nan, "nan"), (True, "True")],
)
def test_timeout_validation(seconds: Any, shown: str) -> None:
    with pytest.raises(ValueError, match=rf"Timeout: seconds must be .*, got {shown}"):
        Timeout(seconds)


def test_timeout_config_and_repr() -> None:
    timeout = Timeout(2, name="orders")
    assert timeout.config.seconds == 2
    assert timeout.config.name == "orders"
    assert repr(timeout) == "Timeout(2.0, name='orders')"


# --------------------------------------------------------------------------- Timeout sync


def test_sync_fast_call_sees_the_deadline() -> None:
    clock = FakeClock(10.0)
    timeout = Timeout(2.0, clock=clock)
    seen: list[float | None] = []

    @timeout
    def work(x: int) -> int:
        seen.append(current_deadline())
        return x * 2

    assert work(21) == 42
    assert seen == [12.0]
    assert current_deadline() is None


def test_sync_late_result_is_discarded() -> None:
    clock = FakeClock()
    timeout = Timeout(2.0, clock=clock, name="t")

    def slow() -> str:
        clock.advance(2.0)
        return "late"

    with pytest.raises(DeadlineExceeded) as info:
        timeout.call(slow)
    assert info.value.timeout == 2.0
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, SeawallError)
    assert "'t'" in str(info.value)
    assert current_deadline() is None


def test_sync_expired_parent_fails_before_the_call() -> None:
    clock = FakeClock(5.0)
    calls = 0

    def work() -> None:
        nonlocal calls
        calls += 1

    with deadline_scope(at=5.0, clock=clock), pytest.raises(DeadlineExceeded) as info:
        Timeout(1.0, clock=clock).call(work)
    assert calls == 0
    assert info.value.timeout is None  # the inherited deadline, not this Timeout's


def test_sync_inherited_sooner_deadline_applies() -> None:
    clock = FakeClock()
    seen: list[float | None] = []

    def work() -> None:
        seen.append(current_deadline())
        clock.advance(1.0)

    with deadline_scope(1.0, clock=clock), pytest.raises(DeadlineExceeded) as info:
        Timeout(30.0, clock=clock).call(work)
    assert seen == [1.0]
    assert info.value.timeout is None


def test_sync_exception_propagates_unchanged_even_when_late() -> None:
    clock = FakeClock()

    def boom() -> None:
        clock.advance(10.0)
        raise KeyError("x")

    with pytest.raises(KeyError):
        Timeout(1.0, clock=clock).call(boom)
    assert current_deadline() is None


def test_sync_context_manager() -> None:
    clock = FakeClock()
    timeout = Timeout(1.0, clock=clock)
    with timeout as deadline:
        assert deadline == 1.0
        assert current_deadline() == 1.0
    assert current_deadline() is None
    with pytest.raises(DeadlineExceeded), timeout:
        clock.advance(1.5)
    assert current_deadline() is None

    def late_and_broken() -> None:
        with timeout:
            clock.advance(5.0)
            _ = 1 / 0

    with pytest.raises(ZeroDivisionError):
        late_and_broken()


# --------------------------------------------------------------------------- Timeout asyncio


class _CountTimers:
    """Records the timers the running loop creates (call_later / call_at)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handles: list[asyncio.TimerHandle] = []
        original = loop.call_later

        def call_later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
            handle = original(delay, callback, *args, **kwargs)
            self.handles.append(handle)
            return handle

        setattr(loop, "call_later", call_later)  # a test double


def test_async_fast_path_arms_no_timer() -> None:
    async def fast(x: int) -> int:
        assert current_deadline() is not None
        return x + 1

    async def main() -> None:
        timers = _CountTimers(asyncio.get_running_loop())
        wrapped = Timeout(5.0).wrap_async(fast)
        assert [await wrapped(i) for i in range(3)] == [1, 2, 3]
        assert timers.handles == []

    asyncio.run(main())


def test_async_suspending_call_arms_one_timer_and_disarms_it() -> None:
    async def slow() -> str:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return "done"

    async def main() -> None:
        timers = _CountTimers(asyncio.get_running_loop())
        assert await Timeout(5.0).acall(slow) == "done"
        assert len(timers.handles) == 1
        assert timers.handles[0].cancelled()
        assert current_deadline() is None

    asyncio.run(main())


def test_async_expiry_cancels_the_work_and_raises() -> None:
    clock = FakeClock()
    log: list[str] = []

    async def hangs() -> None:
        clock.advance(3.0)  # the deadline passes before the first suspension
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            log.append("cleaned up")

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        with pytest.raises(DeadlineExceeded) as info:
            await Timeout(2.0, clock=clock, name="hang").acall(hangs)
        assert info.value.timeout == 2.0
        assert isinstance(info.value.__cause__, asyncio.CancelledError)
        assert task.cancelling() == 0  # our cancel request was withdrawn
        await asyncio.sleep(0)  # and nothing is pending: the task goes on
        assert current_deadline() is None

    asyncio.run(main())
    assert log == ["cancelled", "cleaned up"]


def test_async_outer_cancellation_propagates() -> None:
    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(Timeout(60.0).acall(hangs))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()

    asyncio.run(main())


def test_async_expiry_and_outer_cancellation_together_stay_a_cancellation() -> None:
    clock = FakeClock()

    async def hangs() -> None:
        clock.advance(10.0)
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(Timeout(1.0, clock=clock).acall(hangs))
        for _ in range(5):  # first step: timer armed, already due; then it fires
            await asyncio.sleep(0)
            if task.cancelling():
                break
        assert task.cancelling() == 1  # cancelled once, by the timer
        task.cancel()  # and once more, from outside
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_async_work_that_swallows_the_cancellation_keeps_its_result() -> None:
    clock = FakeClock()

    async def stubborn() -> str:
        clock.advance(10.0)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        assert await Timeout(1.0, clock=clock).acall(stubborn) == "swallowed"
        assert task.cancelling() == 0

    asyncio.run(main())


def test_async_expired_parent_fails_before_creating_the_coroutine() -> None:
    clock = FakeClock(3.0)
    calls = 0

    async def work() -> None:
        nonlocal calls
        calls += 1

    async def main() -> None:
        with deadline_scope(at=2.0, clock=clock):
            with pytest.raises(DeadlineExceeded) as info:
                await Timeout(1.0, clock=clock).acall(work)
            assert info.value.timeout is None

    asyncio.run(main())
    assert calls == 0


def test_async_inherited_deadline_is_kept_and_enforced() -> None:
    clock = FakeClock()
    seen: list[float | None] = []

    async def work() -> None:
        seen.append(current_deadline())
        clock.advance(1.0)
        await asyncio.sleep(3600)

    async def main() -> None:
        async with deadline_scope(0.5, clock=clock):
            with pytest.raises(DeadlineExceeded) as info:
                await Timeout(10.0, clock=clock).acall(work)
            assert info.value.timeout is None
            assert current_deadline() == 0.5

    asyncio.run(main())
    assert seen == [0.5]


def test_async_exceptions_pass_through_unchanged() -> None:
    async def boom() -> None:
        await asyncio.sleep(0)
        raise LookupError("nope")

    async def boom_at_once() -> None:
        raise LookupError("at once")

    async def main() -> None:
        with pytest.raises(LookupError, match="nope"):
            await Timeout(5.0).acall(boom)
        with pytest.raises(LookupError, match="at once"):
            await Timeout(5.0).acall(boom_at_once)
        assert current_deadline() is None

    asyncio.run(main())


def test_async_accepts_any_awaitable() -> None:
    def returns_a_future() -> asyncio.Future[int]:
        future = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(future.set_result, 7)
        return future

    async def main() -> None:
        assert await Timeout(5.0).wrap_async(returns_a_future)() == 7

    asyncio.run(main())


@types.coroutine
def _raw(value: Any) -> Generator[Any, Any, Any]:
    received = yield value
    return received


def test_async_forwards_the_coroutine_protocol() -> None:
    log: list[Any] = []

    async def inner() -> int:
        log.append(await _raw("first"))
        try:
            await _raw("second")
        except ValueError as exc:
            log.append(str(exc))
        got = await _raw("third")
        return int(got) * 2

    async def main() -> None:
        # Drive the wrapped coroutine by hand, inside a task (the timer needs one).
        coro = Timeout(60.0).wrap_async(inner)()
        assert coro.send(None) == "first"
        assert coro.send(42) == "second"
        assert coro.throw(ValueError("thrown in")) == "third"
        with pytest.raises(StopIteration) as info:
            coro.send(5)
        assert info.value.value == 10

    asyncio.run(main())
    assert log == [42, "thrown in"]


def test_async_close_closes_the_work_and_disarms_the_timer() -> None:
    log: list[str] = []

    async def inner() -> None:
        try:
            await _raw("suspended")
        finally:
            log.append("closed")

    async def main() -> None:
        timers = _CountTimers(asyncio.get_running_loop())
        coro = Timeout(60.0).wrap_async(inner)()
        assert coro.send(None) == "suspended"
        coro.close()
        assert timers.handles[0].cancelled()
        assert current_deadline() is None

    asyncio.run(main())
    assert log == ["closed"]


def test_async_context_manager() -> None:
    clock = FakeClock()
    timeout = Timeout(1.0, clock=clock)

    async def expires() -> None:
        # The block's timer is armed on entry, in real time: keep it tiny.
        async with Timeout(0.002):
            await asyncio.sleep(3600)

    async def main() -> None:
        async with timeout as deadline:
            assert deadline == 1.0
            assert current_deadline() == 1.0
            await asyncio.sleep(0)
        assert current_deadline() is None
        with pytest.raises(DeadlineExceeded):
            await expires()
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        assert current_deadline() is None

    asyncio.run(main())


def test_async_context_manager_outer_cancellation_propagates() -> None:
    async def body() -> None:
        async with Timeout(60.0):
            await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(body())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_async_shared_timeout_in_concurrent_tasks() -> None:
    clock = FakeClock()
    timeout = Timeout(5.0, clock=clock)
    seen: dict[str, float | None] = {}

    async def task(name: str, start: float) -> None:
        await asyncio.sleep(0)
        async with timeout:
            seen[name] = current_deadline()
            await asyncio.sleep(0)
            assert current_deadline() == seen[name]

    async def main() -> None:
        t1 = asyncio.create_task(task("a", 0.0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        clock.advance(1.0)
        t2 = asyncio.create_task(task("b", 1.0))
        await asyncio.gather(t1, t2)

    asyncio.run(main())
    assert seen == {"a": 5.0, "b": 6.0}


def test_real_clock_smoke() -> None:
    """The one real-time check: a hung call is cut at about its timeout."""

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def main() -> float:
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            await Timeout(0.02).acall(hangs)
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert 0.015 <= elapsed < 0.5


# --------------------------------------------------------------------------- header


def test_header_name() -> None:
    assert HEADER == "x-seawall-deadline-ms"


def test_encode() -> None:
    clock = FakeClock(100.0)
    assert encode_deadline(clock) is None
    assert encode_deadline(clock, deadline=100.25) == "250"
    assert encode_deadline(clock, deadline=100.0004) == "0"  # rounded down
    assert encode_deadline(clock, deadline=99.0) == "0"  # expired: never negative
    with deadline_scope(1.5, clock=clock):
        assert encode_deadline(clock) == "1500"
    assert encode_deadline(clock, deadline=1e12) == str(MAX_HEADER_MS)
    assert encode_deadline(clock, deadline=math.inf) == str(MAX_HEADER_MS)  # no OverflowError


def test_decode() -> None:
    clock = FakeClock(10.0)
    assert decode_deadline("250", clock) == 10.25
    assert decode_deadline(" 0\t", clock) == 10.0
    assert decode_deadline(str(MAX_HEADER_MS), clock) == 10.0 + MAX_HEADER_MS / 1000


@pytest.mark.parametrize(
    "value",
    ["", "  ", "-5", "+5", "1.5", "1e3", "abc", "12a", "\uff11\uff12", "\u00b2", "0x10",
     str(MAX_HEADER_MS + 1), "9" * 5000],
)
def test_decode_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError, match=HEADER):
        decode_deadline(value, FakeClock())


@given(
    now=st.floats(min_value=0.0, max_value=1e7),
    ms=st.integers(min_value=0, max_value=MAX_HEADER_MS),
)
def test_header_round_trip_digits(now: float, ms: int) -> None:
    clock = FakeClock(now)
    assert encode_deadline(clock, deadline=decode_deadline(str(ms), clock)) == str(ms)


@given(
    now=st.floats(min_value=0.0, max_value=1e7),
    left=st.floats(min_value=0.0, max_value=MAX_HEADER_MS / 1000),
)
def test_header_round_trip_deadline(now: float, left: float) -> None:
    clock = FakeClock(now)
    deadline = now + left
    value = encode_deadline(clock, deadline=deadline)
    assert value is not None
    decoded = decode_deadline(value, clock)
    # Never more time than was left (bar 1 µs of rounding slack), at most 1 ms less.
    assert deadline - 0.001 - 1e-6 <= decoded <= deadline + 1e-6


# --------------------------------------------------------------------------- protocol edge cases


def test_async_thrown_exception_does_not_become_the_context_of_a_later_one() -> None:
    # An exception thrown in and handled by the work must not show up as the
    # __context__ ("During handling of ...") of one the work raises afterwards:
    # the wrapper must not throw into the work from inside its own except block.
    async def inner() -> None:
        try:
            await _raw("suspended")
        except ValueError:
            pass
        raise KeyError("later")

    async def main() -> list[BaseException | None]:
        contexts: list[BaseException | None] = []
        for coro in (inner(), Timeout(60.0).wrap_async(inner)()):
            assert coro.send(None) == "suspended"
            with pytest.raises(KeyError) as info:
                coro.throw(ValueError("handled"))
            contexts.append(info.value.__context__)
        return contexts

    assert asyncio.run(main()) == [None, None]


def test_async_close_from_another_context_is_quiet() -> None:
    # The garbage collector closes a pending task's coroutine in whatever
    # context is current then: restoring the deadline must not fail there.
    log: list[str] = []

    async def inner() -> None:
        try:
            await _raw("suspended")
        finally:
            log.append("closed")

    async def main() -> None:
        timers = _CountTimers(asyncio.get_running_loop())
        coro = Timeout(60.0).wrap_async(inner)()
        assert coro.send(None) == "suspended"
        contextvars.copy_context().run(coro.close)  # raised ValueError (token) before
        assert timers.handles[0].cancelled()

    asyncio.run(main())
    assert log == ["closed"]


@pytest.mark.parametrize("ending", ["returns", "raises", "expires", "swallows", "cancelled"])
def test_async_every_exit_disarms_the_timer_and_balances_cancel_requests(ending: str) -> None:
    clock = FakeClock()

    async def work() -> str:
        if ending in ("expires", "swallows"):
            clock.advance(10.0)  # past the deadline before the timer is armed: it fires at once
        await asyncio.sleep(0)  # armed here
        if ending == "returns":
            return "ok"
        if ending == "raises":
            raise LookupError("boom")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if ending == "swallows":
                return "swallowed"
            raise
        return "slept"

    async def runner() -> str:
        return await Timeout(1.0, clock=clock).acall(work)

    async def main() -> None:
        timers = _CountTimers(asyncio.get_running_loop())
        task = asyncio.create_task(runner())
        await asyncio.sleep(0)
        if ending == "cancelled":
            task.cancel()
        outcome: object
        try:
            outcome = await task
        except BaseException as exc:  # noqa: BLE001 - the outcome is the point
            outcome = type(exc)
        expected = {
            "returns": "ok",
            "raises": LookupError,
            "expires": DeadlineExceeded,
            "swallows": "swallowed",
            "cancelled": asyncio.CancelledError,
        }[ending]
        assert outcome == expected
        assert timers.handles[0].cancelled()  # ours, armed first (then asyncio.sleep's)
        assert task.cancelling() == (1 if ending == "cancelled" else 0)

    asyncio.run(main())
