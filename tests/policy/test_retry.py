"""Retry: bounds, hints, deadlines, budget, hooks, attempt numbers, sync and asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy.backoff import Constant, Exponential, ExponentialFullJitter
from seawall.policy.budget import RetryBudget
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import deadline_scope
from seawall.policy.errors import CircuitOpenError, RateLimitedError
from seawall.policy.retry import (
    Retry,
    RetryDetails,
    RetryState,
    StopReason,
    current_attempt,
    retry_after_hint,
)


class Flaky(Exception):
    """A retryable failure; remembers which attempt raised it."""

    def __init__(self, attempt: int = 0) -> None:
        super().__init__(f"flaky #{attempt}")
        self.attempt = attempt


class Fatal(Exception):
    """A failure nobody retries."""


class Script:
    """A callee that plays a script of outcomes (exceptions raised, values returned)."""

    def __init__(self, *outcomes: object, clock: FakeClock | None = None, cost: float = 0.0):
        self.outcomes = list(outcomes)
        self.attempts_seen: list[int] = []
        self.clock = clock
        self.cost = cost

    def __call__(self) -> object:
        self.attempts_seen.append(current_attempt())
        if self.clock is not None:
            self.clock.advance(self.cost)
        outcome = self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, type) and issubclass(outcome, BaseException):
            raise outcome(len(self.attempts_seen))
        return outcome

    async def acall(self) -> object:
        await asyncio.sleep(0)
        return self()


def make(clock: FakeClock, **kwargs: object) -> Retry:
    options: dict[str, object] = {
        "on": Flaky,
        "backoff": Constant(0.1),
        "clock": clock,
        "sleep": clock.sleep,
        "async_sleep": clock.async_sleep,
        "rng": random.Random(0),
    }
    options.update(kwargs)
    return Retry(**options)  # type: ignore[arg-type]


@pytest.fixture
def retry_clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture
def retry_deadline() -> Iterator[Callable[[float], None]]:
    """Publish an absolute context deadline for the rest of the test."""
    with contextlib.ExitStack() as stack:

        def set_deadline(value: float) -> None:
            stack.enter_context(deadline_scope(at=value))

        yield set_deadline


# -- validation --


def test_on_is_required_and_keyword_only() -> None:
    with pytest.raises(TypeError):
        Retry()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Retry(Flaky)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "Retry: attempts must be an int >= 1, got 0"),
        ({"attempts": 2.5}, "Retry: attempts must be an int >= 1, got 2.5"),
        ({"attempts": True}, "Retry: attempts must be an int >= 1, got True"),
        ({"timeout": 0}, "Retry: timeout must be a finite number > 0 or None, got 0"),
        ({"timeout": float("inf")}, "Retry: timeout must be .*, got inf"),
        ({"on": BaseException}, "Retry: on must be Exception subclasses .*BaseException"),
        ({"on": asyncio.CancelledError}, "Retry: on .*CancelledError"),
        ({"on": (Flaky, KeyboardInterrupt)}, "Retry: on .*KeyboardInterrupt"),
        ({"on": ()}, r"Retry: on must be an exception type, a non-empty tuple .*, got \(\)"),
        ({"on": "Flaky"}, "Retry: on must be an exception type, .* got 'Flaky'"),
        ({"backoff": 0.5}, "Retry: backoff must have delay.* got 0.5"),
        ({"name": ""}, "Retry: name must be a non-empty string, got ''"),
    ],
)
def test_bad_config_names_parameter_and_value(kwargs: dict[str, object], message: str) -> None:
    options: dict[str, object] = {"on": Flaky}
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Retry(**options)  # type: ignore[arg-type]


def test_defaults_are_bounded() -> None:
    r = Retry(on=Flaky)
    assert (r.attempts_max, r.timeout, r.name) == (3, 10.0, "retry")
    assert r._backoff == ExponentialFullJitter(base=0.05, max=2.0)
    assert Retry(on=Flaky, timeout=None).timeout is None
    assert "attempts=3" in repr(r)


# -- the success path --


def test_success_returns_at_once_without_sleeping(retry_clock: FakeClock) -> None:
    callee = Script("ok")
    assert make(retry_clock).call(callee) == "ok"
    assert callee.attempts_seen == [1]
    assert retry_clock.sleeps == []


def test_success_reads_the_clock_once_and_not_at_all_without_timeout() -> None:
    reads = []

    def clock() -> float:
        reads.append(1)
        return 0.0

    Retry(on=Flaky, clock=clock).call(lambda: None)
    assert len(reads) == 1
    Retry(on=Flaky, clock=clock, timeout=None).call(lambda: None)
    assert len(reads) == 1


def test_decorator_keeps_the_function_and_passes_arguments(retry_clock: FakeClock) -> None:
    @make(retry_clock)
    def add(a: int, b: int = 0) -> int:
        """Add."""
        return a + b

    assert add(2, b=3) == 5
    assert add.__name__ == "add"
    assert add.__doc__ == "Add."


# -- retrying exceptions --


def test_retries_until_success_with_the_backoff_schedule(retry_clock: FakeClock) -> None:
    callee = Script(Flaky, Flaky, "ok")
    r = make(retry_clock, attempts=5, backoff=Exponential(0.1, 2.0, 10.0))
    assert r.call(callee) == "ok"
    assert callee.attempts_seen == [1, 2, 3]
    assert retry_clock.sleeps == pytest.approx([0.1, 0.2])


def test_gives_up_raising_the_last_exception_itself_with_a_note(retry_clock: FakeClock) -> None:
    callee = Script(Flaky)
    with pytest.raises(Flaky) as info:
        make(retry_clock, name="orders").call(callee)
    assert info.value.attempt == 3  # the last one, not the first, and not wrapped
    assert info.value.__notes__ == [
        "seawall retry 'orders': gave up after 3 attempts (attempts exhausted)"
    ]
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert retry_clock.sleeps == [0.1, 0.1]


def test_a_reraised_exception_object_does_not_accumulate_notes(retry_clock: FakeClock) -> None:
    # A callee that raises one shared exception object (a module-level
    # sentinel, a cached error) gives up many times on the same object.
    shared = Flaky(0)
    outer = make(retry_clock, name="outer", attempts=1)
    inner = make(retry_clock, name="inner", attempts=2)
    for _ in range(3):
        with pytest.raises(Flaky) as info:
            make(retry_clock, name="orders").call(Script(shared))
        assert info.value.__notes__ == [
            "seawall retry 'orders': gave up after 3 attempts (attempts exhausted)"
        ]
    shared.__notes__.clear()
    for _ in range(3):  # nested retries keep one note each
        with pytest.raises(Flaky):
            outer.call(inner.wrap_sync(Script(shared)))
    assert sorted(shared.__notes__) == [
        "seawall retry 'inner': gave up after 2 attempts (attempts exhausted)",
        "seawall retry 'outer': gave up after 1 attempt (attempts exhausted)",
    ]


def test_single_attempt_note_is_singular(retry_clock: FakeClock) -> None:
    with pytest.raises(Flaky) as info:
        make(retry_clock, attempts=1).call(Script(Flaky))
    assert info.value.__notes__ == [
        "seawall retry 'retry': gave up after 1 attempt (attempts exhausted)"
    ]


def test_other_exceptions_propagate_untouched(retry_clock: FakeClock) -> None:
    callee = Script(Fatal("no"))
    with pytest.raises(Fatal) as info:
        make(retry_clock).call(callee)
    assert callee.attempts_seen == [1]
    assert not hasattr(info.value, "__notes__")


def test_on_accepts_a_tuple(retry_clock: FakeClock) -> None:
    callee = Script(Fatal("a"), Flaky, "ok")
    assert make(retry_clock, on=(Flaky, Fatal)).call(callee) == "ok"
    assert callee.attempts_seen == [1, 2, 3]


def test_on_accepts_a_predicate(retry_clock: FakeClock) -> None:
    def transient(exc: BaseException) -> bool:
        return isinstance(exc, OSError) and exc.errno == 111

    callee = Script(OSError(111, "refused"), OSError(2, "missing"))
    with pytest.raises(OSError, match="missing"):
        make(retry_clock, on=transient).call(callee)
    assert callee.attempts_seen == [1, 2]


def test_cancellation_and_interrupts_are_never_retried(retry_clock: FakeClock) -> None:
    for exc in (KeyboardInterrupt(), asyncio.CancelledError(), SystemExit(1)):
        callee = Script(exc)
        with pytest.raises(type(exc)):
            make(retry_clock, on=lambda e: True).call(callee)
        assert callee.attempts_seen == [1]


def test_zero_delay_skips_the_sleep(retry_clock: FakeClock) -> None:
    assert make(retry_clock, backoff=Constant(0.0)).call(Script(Flaky, "ok")) == "ok"
    assert retry_clock.sleeps == []


# -- retrying results --


def test_on_result_retries_and_returns_the_last_result(retry_clock: FakeClock) -> None:
    callee = Script(503, 502, 503)
    r = make(retry_clock, on_result=lambda status: status >= 500)
    assert r.call(callee) == 503
    assert callee.attempts_seen == [1, 2, 3]
    assert make(retry_clock, on_result=lambda s: s >= 500).call(Script(503, 200)) == 200


def test_retry_after_from_result(retry_clock: FakeClock) -> None:
    r = make(
        retry_clock,
        on_result=lambda resp: resp[0] == 503,
        retry_after_from_result=lambda resp: resp[1],
    )
    assert r.call(Script((503, 2.5), (503, None), (200, None))) == (200, None)
    assert retry_clock.sleeps == [2.5, 0.1]


# -- hints --


def test_retry_after_hint_stretches_the_delay(retry_clock: FakeClock) -> None:
    breaker_open = CircuitOpenError("db", "open", retry_at=None, retry_after=1.5)
    limited = RateLimitedError("api", retry_after=0.01)  # shorter than the backoff: ignored
    callee = Script(breaker_open, limited, "ok")
    assert make(retry_clock, on=(CircuitOpenError, RateLimitedError)).call(callee) == "ok"
    assert retry_clock.sleeps == [1.5, 0.1]


def test_retry_after_none_ignores_hints(retry_clock: FakeClock) -> None:
    callee = Script(RateLimitedError("api", retry_after=5.0), "ok")
    make(retry_clock, on=RateLimitedError, retry_after=None).call(callee)
    assert retry_clock.sleeps == [0.1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (2, 2.0), (0, 0.0), (-1.0, None), (None, None), ("3", None), (True, None),
     (float("inf"), None), (float("nan"), None)],
)
def test_retry_after_hint_accepts_only_sane_seconds(value: object, expected: float | None) -> None:
    exc = Flaky()
    exc.retry_after = value  # type: ignore[attr-defined]
    assert retry_after_hint(exc) == expected
    assert retry_after_hint(Flaky()) is None


# -- time bounds --


def test_never_sleeps_past_its_timeout(retry_clock: FakeClock) -> None:
    # each attempt costs 1 s, each delay 1 s, timeout 3.5 s: attempts at 0-1 and 2-3,
    # then a retry would sleep from 3.0 to 4.0 > 3.5: give up at once, at 3.0
    callee = Script(Flaky, clock=retry_clock, cost=1.0)
    r = make(retry_clock, attempts=10, timeout=3.5, backoff=Constant(1.0))
    with pytest.raises(Flaky) as info:
        r.call(callee)
    assert callee.attempts_seen == [1, 2]
    assert retry_clock.sleeps == [1.0]
    assert retry_clock() == 1003.0
    assert info.value.__notes__ == ["seawall retry 'retry': gave up after 2 attempts (timeout)"]


def test_a_sleep_that_would_exactly_reach_the_deadline_is_not_taken(
    retry_clock: FakeClock,
) -> None:
    r = make(retry_clock, attempts=10, timeout=1.0, backoff=Constant(0.5))
    with pytest.raises(Flaky):
        r.call(Script(Flaky))
    assert retry_clock.sleeps == [0.5]  # the second 0.5 would end exactly at the deadline


def test_context_deadline_wins_when_sooner(
    retry_clock: FakeClock, retry_deadline: Callable[[float], None]
) -> None:
    retry_deadline(retry_clock() + 0.25)
    with pytest.raises(Flaky) as info:
        make(retry_clock, attempts=10, timeout=10.0).call(Script(Flaky))
    assert retry_clock.sleeps == [0.1, 0.1]
    assert info.value.__notes__[0].endswith("gave up after 3 attempts (deadline)")


def test_context_deadline_already_passed_stops_even_without_delay(
    retry_clock: FakeClock, retry_deadline: Callable[[float], None]
) -> None:
    retry_deadline(retry_clock() - 1.0)
    callee = Script(Flaky, "ok")
    with pytest.raises(Flaky):
        make(retry_clock, backoff=Constant(0.0), timeout=None).call(callee)
    assert callee.attempts_seen == [1]


def test_timeout_counts_the_first_attempt(retry_clock: FakeClock) -> None:
    callee = Script(Flaky, clock=retry_clock, cost=5.0)
    with pytest.raises(Flaky):
        make(retry_clock, attempts=10, timeout=9.0, backoff=Constant(0.0)).call(callee)
    assert callee.attempts_seen == [1, 2]  # starts at 0 and 5; at 10 the timeout has passed


@given(
    costs=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=12),
    attempts=st.integers(min_value=1, max_value=12),
    timeout=st.floats(min_value=0.01, max_value=20.0),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_property_bounds_hold_for_any_schedule(
    costs: list[float], attempts: int, timeout: float, seed: int
) -> None:
    clock = FakeClock(50.0)
    calls: list[float] = []

    def callee() -> None:
        calls.append(clock())
        clock.advance(costs[(len(calls) - 1) % len(costs)])
        raise Flaky(len(calls))

    r = Retry(
        on=Flaky, attempts=attempts, timeout=timeout, backoff=ExponentialFullJitter(0.2, 3.0),
        clock=clock, sleep=clock.sleep, rng=random.Random(seed),
    )
    with pytest.raises(Flaky) as info:
        r.call(callee)
    assert 1 <= len(calls) <= attempts
    assert info.value.attempt == len(calls)
    for start in calls[1:]:
        assert start < 50.0 + timeout  # no retry starts at or after the deadline
    reason = "attempts exhausted" if len(calls) == attempts else "timeout"
    assert info.value.__notes__ == [
        f"seawall retry 'retry': gave up after {len(calls)} "
        f"attempt{'s' if len(calls) != 1 else ''} ({reason})"
    ]


# -- budget --


def test_budget_deposits_per_call_and_withdraws_per_retry(retry_clock: FakeClock) -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=retry_clock)
    r = make(retry_clock, budget=budget, backoff=Constant(0.0))
    assert r.call(Script("ok")) == "ok"
    assert budget.counts() == (1, 0)
    assert r.call(Script(Flaky, "ok")) == "ok"
    assert budget.counts() == (2, 1)


def test_budget_exhausted_gives_up_with_the_original_failure(retry_clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=retry_clock)
    r = make(retry_clock, budget=budget, name="pay")
    callee = Script(Flaky)
    with pytest.raises(Flaky) as info:
        r.call(callee)  # 1 request: 0.5 retries allowed: none
    assert callee.attempts_seen == [1]
    assert info.value.__notes__ == [
        "seawall retry 'pay': gave up after 1 attempt (retry budget exhausted)"
    ]
    assert info.value.seawall_retry_budget_exhausted is True  # type: ignore[attr-defined]
    assert retry_clock.sleeps == []


def test_budget_exhausted_returns_the_result_for_result_failures(retry_clock: FakeClock) -> None:
    budget = RetryBudget(ratio=0.1, min_per_second=0.0, ttl=10.0, clock=retry_clock)
    r = make(retry_clock, budget=budget, on_result=lambda v: v == 503)
    callee = Script(503, 200)
    assert r.call(callee) == 503
    assert callee.attempts_seen == [1]


def test_budget_is_not_charged_when_attempts_are_exhausted(retry_clock: FakeClock) -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=1.0, ttl=10.0, clock=retry_clock)
    with pytest.raises(Flaky):
        make(retry_clock, budget=budget, attempts=2).call(Script(Flaky))
    assert budget.counts() == (1, 1)  # one retry, none for the refused third attempt


# -- hook and attempt numbers --


def test_on_retry_hook_gets_frozen_details_before_each_sleep(retry_clock: FakeClock) -> None:
    seen: list[tuple[RetryDetails, int]] = []
    boom = Flaky(1)

    def hook(details: RetryDetails) -> None:
        seen.append((details, len(retry_clock.sleeps)))

    callee = Script(boom, 503, "ok", clock=retry_clock, cost=0.5)
    r = make(retry_clock, name="h", on_retry=hook, on_result=lambda v: v == 503)
    assert r.call(callee) == "ok"
    first, second = seen
    assert first == (RetryDetails("h", 1, 0.1, boom, None, 0.5), 0)
    assert second[0] == RetryDetails("h", 2, 0.1, None, 503, pytest.approx(1.1))
    assert second[1] == 1
    with pytest.raises(AttributeError):
        first[0].attempt = 5  # type: ignore[misc]


def test_current_attempt_is_1_outside_and_numbered_inside(retry_clock: FakeClock) -> None:
    assert current_attempt() == 1
    callee = Script(Flaky, Flaky, "ok")
    make(retry_clock).call(callee)
    assert callee.attempts_seen == [1, 2, 3]
    assert current_attempt() == 1
    with pytest.raises(Flaky):
        make(retry_clock).call(Script(Flaky))
    assert current_attempt() == 1


# -- context-manager form --


def test_attempts_iterator_retries_a_block(retry_clock: FakeClock) -> None:
    numbers: list[int] = []
    for attempt in make(retry_clock).attempts():
        with attempt:
            numbers.append(attempt.number)
            assert current_attempt() == attempt.number
            if attempt.number < 3:
                raise Flaky(attempt.number)
    assert numbers == [1, 2, 3]
    assert retry_clock.sleeps == [0.1, 0.1]
    assert current_attempt() == 1


def test_attempts_iterator_gives_up_annotated(retry_clock: FakeClock) -> None:
    numbers: list[int] = []

    def block() -> None:
        for attempt in make(retry_clock, attempts=2).attempts():
            with attempt:
                numbers.append(attempt.number)
                raise Flaky(attempt.number)

    with pytest.raises(Flaky) as info:
        block()
    assert numbers == [1, 2]
    assert info.value.attempt == 2
    assert info.value.__notes__[0].endswith("gave up after 2 attempts (attempts exhausted)")


def test_attempts_iterator_lets_other_errors_through(retry_clock: FakeClock) -> None:
    numbers: list[int] = []

    def block() -> None:
        for attempt in make(retry_clock).attempts():
            with attempt:
                numbers.append(attempt.number)
                raise Fatal

    with pytest.raises(Fatal):
        block()
    assert numbers == [1]


def test_async_attempts_iterator(retry_clock: FakeClock) -> None:
    async def main() -> list[int]:
        numbers: list[int] = []
        async for attempt in make(retry_clock).attempts_async():
            with attempt:
                numbers.append(current_attempt())
                await asyncio.sleep(0)
                if attempt.number == 1:
                    raise Flaky(1)
        return numbers

    assert asyncio.run(main()) == [1, 2]
    assert retry_clock.sleeps == [0.1]
    assert repr(Retry(on=Flaky).attempts().__next__()) == "<Attempt number=1>"


# -- asyncio --


def test_async_retries_until_success(retry_clock: FakeClock) -> None:
    callee = Script(Flaky, 503, "ok")
    r = make(retry_clock, on_result=lambda v: v == 503)

    @r
    async def work() -> object:
        return await callee.acall()

    assert asyncio.run(work()) == "ok"
    assert callee.attempts_seen == [1, 2, 3]
    assert retry_clock.sleeps == [0.1, 0.1]


def test_async_gives_up_with_note(retry_clock: FakeClock) -> None:
    callee = Script(Flaky)
    with pytest.raises(Flaky) as info:
        asyncio.run(make(retry_clock, name="a").acall(callee.acall))
    assert info.value.attempt == 3
    assert info.value.__notes__ == [
        "seawall retry 'a': gave up after 3 attempts (attempts exhausted)"
    ]


def test_async_cancellation_during_the_backoff_propagates() -> None:
    started = []

    async def never(seconds: float) -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        r = Retry(on=Flaky, async_sleep=never, backoff=Constant(1.0))

        async def callee() -> None:
            started.append(current_attempt())
            raise Flaky

        task = asyncio.create_task(r.acall(callee))
        await asyncio.sleep(0.0)
        await asyncio.sleep(0.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert started == [1]


def test_async_close_from_another_context_is_quiet() -> None:
    # The garbage collector closes a pending task's coroutine in whatever
    # context is current then: resetting the attempt number must not fail there.
    closed: list[bool] = []

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append(True)

    async def main() -> None:
        coro = Retry(on=Flaky).wrap_async(hangs)()
        coro.send(None)
        contextvars.copy_context().run(coro.close)  # raised ValueError (token) before
        assert current_attempt() == 1

    asyncio.run(main())
    assert closed == [True]


def test_async_callee_cancellation_is_not_retried(retry_clock: FakeClock) -> None:
    callee = Script(asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(make(retry_clock, on=lambda e: True).acall(callee.acall))
    assert callee.attempts_seen == [1]


def test_async_concurrent_calls_see_their_own_attempt_numbers() -> None:
    async def main() -> list[list[int]]:
        r = Retry(on=Flaky, backoff=Constant(0.0))

        def make_callee(fail_times: int) -> Callable[[], object]:
            seen: list[int] = []

            async def callee() -> list[int]:
                seen.append(current_attempt())
                await asyncio.sleep(0)
                if len(seen) <= fail_times:
                    raise Flaky
                return seen

            return callee

        return list(await asyncio.gather(*(r.acall(make_callee(n)) for n in (0, 1, 2))))

    assert asyncio.run(main()) == [[1], [1, 2], [1, 2, 3]]


# -- the sans-I/O core --


def test_state_checks_attempts_then_deadline_then_budget() -> None:
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0, clock=lambda: 0.0)
    budget.deposit()
    state = RetryState(
        attempts=3, backoff=Constant(1.0), rng=random.Random(0), start=0.0, timeout=5.0,
        budget=budget,
    )
    assert state.deadline == 5.0
    assert state.on_failure(1.0) == 1.0
    assert state.attempt == 2
    assert state.on_failure(3.0) is StopReason.BUDGET  # allowed by time, refused by budget
    assert budget.counts() == (1, 1)


def test_state_deadline_reason_and_lazy_start() -> None:
    state = RetryState(attempts=5, backoff=Constant(2.0), rng=random.Random(0), timeout=3.0)
    assert state.start is None
    assert state.on_failure(10.0) == 2.0  # start taken at the first failure: deadline 13
    assert state.on_failure(11.0) is StopReason.TIMEOUT
    outer = RetryState(
        attempts=5, backoff=Constant(2.0), rng=random.Random(0), start=0.0, timeout=30.0,
        deadline=1.5,
    )
    assert outer.on_failure(0.0) is StopReason.DEADLINE
    hinted = RetryState(attempts=5, backoff=Constant(0.5), rng=random.Random(0), start=0.0)
    assert hinted.on_failure(0.0, retry_after=4.0) == 4.0
    assert hinted.on_failure(0.0, retry_after=0.1) == 0.5


# -- real clock --


def test_real_clock_smoke() -> None:
    callee = Script(Flaky, Flaky, "ok")
    assert Retry(on=Flaky, backoff=Constant(0.002), timeout=1.0).call(callee) == "ok"

    async def main() -> object:
        return await Retry(on=Flaky, backoff=Constant(0.002)).acall(Script(Flaky, "ok").acall)

    assert asyncio.run(main()) == "ok"
