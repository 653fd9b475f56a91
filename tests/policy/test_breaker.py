"""CircuitBreaker: transitions, classification, adapters, listeners, configuration, threads.

Every test runs on a :class:`FakeClock`; a "slow" call is one whose wrapped
function advances the fake clock. Nothing here sleeps for real: threads are
synchronised with events, barriers and conditions (with timeouts, so a
deadlock fails the test instead of hanging it).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import threading
from collections.abc import Callable
from typing import Any

import pytest

from seawall.policy.breaker import BreakerMetrics, BreakerState, CircuitBreaker
from seawall.policy.clock import FakeClock
from seawall.policy.errors import CircuitOpenError, SeawallError

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
DISABLED = BreakerState.DISABLED
FORCED_OPEN = BreakerState.FORCED_OPEN
METRICS_ONLY = BreakerState.METRICS_ONLY

TIMEOUT = 10.0  # real seconds a thread may wait for another before the test fails


class Boom(Exception):
    """The dependency failed."""


class Ignored(Exception):
    """An exception configured as ignored."""


class Other(Exception):
    """An exception outside ``record_on`` (the caller erred, the dependency answered)."""


class Recorder:
    """A listener that keeps every event."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, BreakerState, BreakerState, float]] = []
        self.rejections: list[tuple[str, BreakerState, float]] = []

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState, now: float) -> None:
        self.changes.append((name, old, new, now))

    def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
        self.rejections.append((name, state, now))

    @property
    def transitions(self) -> list[tuple[BreakerState, BreakerState]]:
        return [(old, new) for _, old, new, _ in self.changes]


def make(clock: FakeClock, **overrides: Any) -> CircuitBreaker:
    """A small breaker: opens on the 4th call of a window of 4 at >= 50% failures."""
    config: dict[str, Any] = {
        "window_size": 4,
        "minimum_calls": 4,
        "failure_rate": 50.0,
        "open_for": 10.0,
        "half_open_calls": 2,
        "ignore_on": Ignored,
        "clock": clock,
    }
    name = overrides.pop("name", "svc")
    config.update(overrides)
    return CircuitBreaker(name, **config)


def attempt(
    breaker: CircuitBreaker,
    kind: str = "ok",
    *,
    clock: FakeClock | None = None,
    duration: float = 0.0,
    result: object = "ok",
) -> str:
    """One call through the breaker's decorator; returns what happened to it.

    ``kind`` is "ok", "fail" (Boom), "ignore" (Ignored) or "other" (Other);
    ``duration`` advances the fake clock inside the call.
    """
    ran = []

    @breaker
    def fn() -> object:
        ran.append(True)
        if duration:
            assert clock is not None
            clock.advance(duration)
        if kind == "fail":
            raise Boom("down")
        if kind == "ignore":
            raise Ignored
        if kind == "other":
            raise Other
        return result

    try:
        value = fn()
    except CircuitOpenError:
        assert not ran, "a rejected call must not run"
        return "rejected"
    except Boom:
        return "failed"
    except Ignored:
        return "ignored"
    except Other:
        return "other"
    assert value is result
    return "ok"


def trip(breaker: CircuitBreaker, calls: int = 4) -> None:
    for _ in range(calls):
        assert attempt(breaker, "fail") == "failed"
    assert breaker.state is OPEN


def in_thread(fn: Callable[[], object]) -> object:
    """Run ``fn`` in a thread; fail (instead of hanging) if it does not finish."""
    out: list[object] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "deadlock: the call did not finish"
    if errors:
        raise errors[0]
    return out[0]


# =========================================================================== CLOSED -> OPEN


def test_new_breaker_is_closed_with_empty_metrics() -> None:
    clock = FakeClock(100.0)
    breaker = make(clock, name="payments")
    assert breaker.state is CLOSED
    assert breaker.metrics() == BreakerMetrics(
        name="payments",
        state=CLOSED,
        window_calls=0,
        window_failures=0,
        window_slow_calls=0,
        failure_rate=-1.0,
        slow_call_rate=-1.0,
        successful_calls=0,
        failed_calls=0,
        slow_calls=0,
        not_permitted_calls=0,
        ignored_calls=0,
        consecutive_openings=0,
        next_probe_at=None,
        probes_in_flight=0,
    )
    assert "payments" in repr(breaker)


def test_does_not_open_before_minimum_calls_even_at_100_percent() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10, minimum_calls=5)
    for _ in range(4):
        assert attempt(breaker, "fail") == "failed"
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.window_failures) == (4, 4)
    assert metrics.failure_rate == -1.0  # not judged yet
    # The 5th call reaches the minimum: 4 of 5 failed (80%) -> open, even on a success.
    assert attempt(breaker) == "ok"
    assert breaker.state is OPEN


def test_opens_exactly_at_the_threshold() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_rate=50.0)
    for kind in ("ok", "ok", "fail"):
        attempt(breaker, kind)
    assert breaker.state is CLOSED
    attempt(breaker, "fail")  # 2 of 4 = 50%: at the threshold
    assert breaker.state is OPEN


def test_stays_closed_just_below_the_threshold() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=3, minimum_calls=3, failure_rate=67.0)
    for kind in ("ok", "fail", "fail"):  # 66.67% < 67%
        attempt(breaker, kind)
    assert breaker.state is CLOSED
    assert breaker.metrics().failure_rate == pytest.approx(200 / 3)
    attempt(breaker, "fail")  # the success slides out: 3 of 3
    assert breaker.state is OPEN


def test_count_window_slides_failures_out() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_rate=75.0)
    for kind in ("fail", "fail", "ok", "ok", "fail", "ok", "fail", "ok"):
        attempt(breaker, kind)
        assert breaker.state is CLOSED
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.window_failures) == (4, 2)
    assert metrics.failure_rate == 50.0
    attempt(breaker, "fail")  # window: ok fail ok fail -> 50%
    assert breaker.state is CLOSED
    attempt(breaker, "fail")  # window: fail ok fail fail -> 75%
    assert breaker.state is OPEN


def test_threshold_of_100_needs_every_call_to_fail() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_rate=100)
    for kind in ("fail", "fail", "fail", "ok", "fail", "fail", "fail"):
        attempt(breaker, kind)
    assert breaker.state is CLOSED
    attempt(breaker, "fail")
    assert breaker.state is OPEN


def test_minimum_calls_larger_than_count_window_is_capped_or_rejected() -> None:
    # The default minimum_calls is 20. With a count window of 10 the window can
    # never hold 20 calls, so the breaker can never open: a silent no-op breaker.
    # resilience4j caps minimumNumberOfCalls at the window size; rejecting the
    # configuration would be fine too. Accept either, not silence.
    clock = FakeClock()
    try:
        breaker = CircuitBreaker(window_size=10, clock=clock)
    except ValueError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert "minimum_calls" in message
        return
    for _ in range(30):
        attempt(breaker, "fail")
    assert breaker.state is OPEN


# =========================================================================== slow calls


def test_slow_call_rate_opens_the_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock, slow_call_duration=1.0, slow_call_rate=50.0)
    assert attempt(breaker, clock=clock, duration=0.999) == "ok"  # just under: fast
    assert attempt(breaker, clock=clock, duration=0.25) == "ok"
    assert attempt(breaker, clock=clock, duration=1.0) == "ok"  # exactly the duration: slow
    assert breaker.state is CLOSED
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.window_slow_calls, metrics.slow_calls) == (3, 1, 1)
    assert attempt(breaker, clock=clock, duration=7.0) == "ok"
    metrics = breaker.metrics()
    assert metrics.state is OPEN
    assert metrics.failed_calls == 0
    assert (metrics.successful_calls, metrics.slow_calls) == (4, 2)


def test_slow_failures_count_as_failed_and_slow() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10, slow_call_duration=2.0, slow_call_rate=100)
    attempt(breaker, "fail", clock=clock, duration=3.0)
    attempt(breaker, "ok", clock=clock, duration=3.0)
    metrics = breaker.metrics()
    assert (metrics.failed_calls, metrics.successful_calls, metrics.slow_calls) == (1, 1, 2)
    assert (metrics.window_failures, metrics.window_slow_calls) == (1, 2)


def test_slow_call_detection_is_off_by_default() -> None:
    clock = FakeClock()
    breaker = make(clock)
    for _ in range(8):
        attempt(breaker, clock=clock, duration=1000.0)
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert metrics.slow_calls == metrics.window_slow_calls == 0
    assert metrics.slow_call_rate == 0.0


def test_slow_probes_reopen_the_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock, slow_call_duration=1.0, slow_call_rate=50.0)
    trip(breaker)
    clock.advance(10.0)
    assert attempt(breaker, clock=clock, duration=1.5) == "ok"
    assert breaker.state is HALF_OPEN
    assert attempt(breaker, clock=clock, duration=0.5) == "ok"  # 1 of 2 slow = 50%
    assert breaker.state is OPEN


# =========================================================================== OPEN


def test_open_rejects_with_circuit_open_error() -> None:
    clock = FakeClock(50.0)
    recorder = Recorder()
    breaker = make(clock, name="inventory", listeners=[recorder])
    trip(breaker)  # opened at t=50: next probe at 60
    clock.advance(3.5)
    ran = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: ran.append(1))
    assert not ran
    error = info.value
    assert isinstance(error, SeawallError)
    assert error.name == "inventory"
    assert error.state == "open"
    assert error.retry_at == 60.0
    assert error.retry_after == pytest.approx(6.5)
    assert "inventory" in str(error)
    assert recorder.rejections == [("inventory", OPEN, 53.5)]
    metrics = breaker.metrics()
    assert metrics.not_permitted_calls == 1
    assert metrics.next_probe_at == 60.0
    assert metrics.consecutive_openings == 1


def test_open_rejects_until_the_wait_is_over_then_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, open_for=10.0)
    trip(breaker)
    clock.advance(9.75)
    assert attempt(breaker) == "rejected"
    assert breaker.state is OPEN  # no automatic transition: still open after reading
    clock.advance(0.25)  # exactly at retry_at
    assert breaker.state is OPEN  # the wait is over but no call came yet
    seen = []

    @breaker
    def probe() -> str:
        seen.append(breaker.metrics().state)
        return "ok"

    assert probe() == "ok"
    assert seen == [HALF_OPEN]
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert (metrics.window_calls, metrics.probes_in_flight) == (1, 0)


def test_async_call_is_rejected_too() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    ran = []

    @breaker
    async def fn() -> str:
        ran.append(1)
        return "ok"

    async def main() -> None:
        with pytest.raises(CircuitOpenError) as info:
            await fn()
        assert info.value.state == "open"

    asyncio.run(main())
    assert not ran


# =========================================================================== HALF_OPEN


def test_half_open_admits_exactly_half_open_calls_probes() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, half_open_calls=3, listeners=[recorder])
    trip(breaker)
    clock.advance(10.0)
    permits = [breaker.admit(clock()) for _ in range(3)]
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert metrics.probes_in_flight == 3
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit(clock())
    assert info.value.state == "half_open"
    assert info.value.retry_at is None
    assert info.value.retry_after is None
    assert recorder.rejections[-1][1] is HALF_OPEN
    assert attempt(breaker) == "rejected"
    assert breaker.metrics().not_permitted_calls == 2
    for permit in permits:
        breaker.record_success(permit, clock())
    assert breaker.state is CLOSED


def test_probes_all_succeeding_close_the_breaker_with_a_fresh_window() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, listeners=[recorder])
    trip(breaker)
    clock.advance(10.0)
    assert attempt(breaker) == "ok"
    assert breaker.state is HALF_OPEN
    assert attempt(breaker) == "ok"
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert metrics.window_calls == 0
    assert metrics.consecutive_openings == 0
    assert recorder.transitions == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]
    # The old failures are gone: three more failures do not reopen it.
    for _ in range(3):
        attempt(breaker, "fail")
    assert breaker.state is CLOSED


def test_probe_failure_rate_at_threshold_reopens() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=2)
    trip(breaker)
    clock.advance(10.0)
    attempt(breaker, "fail")
    assert breaker.state is HALF_OPEN  # waits for every probe
    attempt(breaker, "ok")  # 1 of 2 = 50%
    metrics = breaker.metrics()
    assert metrics.state is OPEN
    assert metrics.next_probe_at == 20.0
    assert metrics.consecutive_openings == 2


def test_probe_failure_rate_below_threshold_closes() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=3)
    trip(breaker)
    clock.advance(10.0)
    for kind in ("fail", "ok", "ok"):  # 33% < 50%
        attempt(breaker, kind)
    assert breaker.state is CLOSED


def test_half_open_metrics_are_over_the_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=3)
    trip(breaker)
    clock.advance(10.0)
    permit = breaker.admit(clock())
    attempt(breaker, "fail")
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert (metrics.window_calls, metrics.window_failures) == (1, 1)
    assert metrics.failure_rate == 100.0
    assert metrics.probes_in_flight == 1
    assert metrics.next_probe_at is None
    breaker.record_success(permit, clock())
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.failure_rate, metrics.probes_in_flight) == (2, 50.0, 0)


# =========================================================================== growing wait


def test_wait_grows_with_consecutive_openings_up_to_the_cap() -> None:
    clock = FakeClock()
    breaker = make(
        clock, open_for=1.0, open_multiplier=2.0, max_open_for=5.0, half_open_calls=1
    )
    trip(breaker)
    waits = []
    for _ in range(5):
        metrics = breaker.metrics()
        waits.append(metrics.next_probe_at - clock())
        clock.advance(metrics.next_probe_at - clock())
        attempt(breaker, "fail")
        assert breaker.state is OPEN
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert breaker.metrics().consecutive_openings == 6
    # A successful close resets the count: the next opening waits the base time.
    clock.advance(5.0)
    attempt(breaker)
    assert breaker.metrics().consecutive_openings == 0
    trip(breaker)
    assert breaker.metrics().next_probe_at == clock() + 1.0


def test_fixed_wait_by_default() -> None:
    clock = FakeClock()
    breaker = make(clock, open_for=3.0, half_open_calls=1)
    trip(breaker)
    for _ in range(4):
        assert breaker.metrics().next_probe_at == clock() + 3.0
        clock.advance(3.0)
        attempt(breaker, "fail")


def test_a_long_outage_does_not_overflow_the_growing_wait() -> None:
    # wait * multiplier ** openings overflows a float after ~1024 openings with
    # multiplier 2: at the capped 60 s that is a 17-hour outage. The breaker
    # must keep waiting max_open_for, not raise OverflowError from a call.
    clock = FakeClock()
    breaker = CircuitBreaker(
        minimum_calls=1,
        window_size=1,
        half_open_calls=1,
        open_for=1.0,
        open_multiplier=2.0,
        max_open_for=60.0,
        clock=clock,
    )
    breaker.record_failure(breaker.admit(clock()), clock())
    for _ in range(1100):
        clock.advance(breaker.metrics().next_probe_at - clock())
        permit = breaker.admit(clock())
        breaker.record_failure(permit, clock())  # raised OverflowError at opening 1025
    metrics = breaker.metrics()
    assert metrics.state is OPEN
    assert metrics.next_probe_at - clock() == 60.0
    assert metrics.consecutive_openings == 1101


# =========================================================================== automatic transition


def test_automatic_transition_on_state_read() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, automatic_transition=True, listeners=[recorder])
    trip(breaker)
    clock.advance(9.5)
    assert breaker.state is OPEN
    clock.advance(0.5)
    assert breaker.state is HALF_OPEN
    assert recorder.changes[-1] == ("svc", OPEN, HALF_OPEN, 10.0)


def test_automatic_transition_on_metrics() -> None:
    clock = FakeClock()
    breaker = make(clock, automatic_transition=True)
    trip(breaker)
    clock.advance(12.0)
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert metrics.next_probe_at is None


def test_no_automatic_transition_by_default() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    clock.advance(100.0)
    assert breaker.state is OPEN
    assert breaker.metrics().state is OPEN


# =========================================================================== max_half_open_time


def test_max_half_open_time_reopens_on_observation() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, max_half_open_time=5.0, half_open_calls=2, listeners=[recorder])
    trip(breaker)
    clock.advance(10.0)
    stuck = breaker.admit(clock())  # a probe that never reports in time
    clock.advance(4.75)
    assert breaker.state is HALF_OPEN
    clock.advance(0.25)
    assert breaker.state is OPEN
    assert recorder.transitions[-1] == (HALF_OPEN, OPEN)
    metrics = breaker.metrics()
    assert metrics.consecutive_openings == 2
    assert metrics.next_probe_at == 25.0
    # The probe reporting late belongs to the old half-open state: it is ignored.
    breaker.record_success(stuck, clock())
    assert breaker.state is OPEN
    assert breaker.metrics().successful_calls == 1


def test_max_half_open_time_reopens_on_admission() -> None:
    clock = FakeClock()
    breaker = make(clock, max_half_open_time=5.0, half_open_calls=2)
    trip(breaker)
    clock.advance(10.0)
    breaker.admit(clock())
    clock.advance(6.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.admit(clock())
    assert info.value.state == "open"
    assert info.value.retry_at == 26.0


def test_last_probe_finishing_after_max_half_open_time_does_not_close() -> None:
    # A half-open state "that has not finished its probes in time opens again".
    # The only probe takes 6 s against a 1 s limit: when it reports, the state
    # should already be OPEN. Today it depends on whether something observed
    # the breaker during the probe: unobserved, the late probe closes it.
    def run(observe: bool) -> BreakerState:
        clock = FakeClock()
        breaker = make(clock, half_open_calls=1, max_half_open_time=1.0)
        trip(breaker)
        clock.advance(10.0)

        @breaker
        def slow_probe() -> str:
            clock.advance(6.0)
            if observe:
                breaker.metrics()
            return "ok"

        slow_probe()
        return breaker.state

    assert run(observe=True) is OPEN
    assert run(observe=False) is OPEN


# =========================================================================== operator states


def test_disabled_admits_everything_and_records_nothing() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, listeners=[recorder])
    trip(breaker)
    breaker.transition_to_disabled()
    before = breaker.metrics()
    for _ in range(20):
        assert attempt(breaker, "fail") == "failed"
    attempt(breaker, "ignore")
    clock.advance(1000.0)
    after = breaker.metrics()
    assert after.state is DISABLED
    assert after.failed_calls == before.failed_calls
    assert after.ignored_calls == before.ignored_calls
    assert after.next_probe_at is None
    assert recorder.transitions[-1] == (OPEN, DISABLED)


def test_forced_open_rejects_everything_without_retry_time() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, automatic_transition=True, listeners=[recorder])
    breaker.transition_to_forced_open()
    clock.advance(1e6)
    assert breaker.state is FORCED_OPEN
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(lambda: "ok")
    assert (info.value.state, info.value.retry_at, info.value.retry_after) == (
        "forced_open",
        None,
        None,
    )
    assert attempt(breaker) == "rejected"
    assert recorder.rejections == [("svc", FORCED_OPEN, 1e6)] * 2
    metrics = breaker.metrics()
    assert metrics.not_permitted_calls == 2
    assert metrics.next_probe_at is None


def test_metrics_only_records_but_never_changes_state() -> None:
    clock = FakeClock()
    breaker = make(clock)
    breaker.transition_to_metrics_only()
    for _ in range(10):
        assert attempt(breaker, "fail") == "failed"
    attempt(breaker, clock=clock, duration=1.0)
    metrics = breaker.metrics()
    assert metrics.state is METRICS_ONLY
    assert (metrics.window_calls, metrics.window_failures) == (4, 3)
    assert metrics.failure_rate == 75.0
    assert (metrics.failed_calls, metrics.successful_calls) == (10, 1)


def test_transition_to_closed_clears_window_and_openings() -> None:
    clock = FakeClock()
    breaker = make(clock, open_multiplier=2.0)
    trip(breaker)
    breaker.transition_to_closed()
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert metrics.window_calls == 0
    assert metrics.consecutive_openings == 0
    assert metrics.failed_calls == 4  # lifetime counters survive
    assert attempt(breaker) == "ok"


def test_transition_to_open_opens_now() -> None:
    clock = FakeClock(7.0)
    breaker = make(clock)
    breaker.transition_to_open()
    metrics = breaker.metrics()
    assert metrics.state is OPEN
    assert metrics.next_probe_at == 17.0
    assert attempt(breaker) == "rejected"


def test_reset_returns_to_a_fresh_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock, open_multiplier=2.0)
    trip(breaker)
    attempt(breaker)
    breaker.reset()
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.consecutive_openings) == (0, 0)
    assert (metrics.failed_calls, metrics.not_permitted_calls, metrics.successful_calls) == (
        0,
        0,
        0,
    )


def test_operator_transitions_notify_listeners() -> None:
    clock = FakeClock()
    recorder = Recorder()
    breaker = make(clock, listeners=[recorder])
    breaker.transition_to_forced_open()
    breaker.transition_to_disabled()
    breaker.transition_to_metrics_only()
    breaker.transition_to_open()
    breaker.transition_to_closed()
    assert recorder.transitions == [
        (CLOSED, FORCED_OPEN),
        (FORCED_OPEN, DISABLED),
        (DISABLED, METRICS_ONLY),
        (METRICS_ONLY, OPEN),
        (OPEN, CLOSED),
    ]


# =========================================================================== classification


def test_exceptions_outside_record_on_count_as_success() -> None:
    clock = FakeClock()
    breaker = make(clock, record_on=Boom)
    for _ in range(8):
        assert attempt(breaker, "other") == "other"
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.successful_calls, metrics.failed_calls) == (8, 0)
    assert metrics.failure_rate == 0.0


def test_record_on_tuple_matches_subclasses() -> None:
    clock = FakeClock()
    breaker = make(clock, record_on=(OSError, Boom), window_size=2, minimum_calls=2)

    @breaker
    def refused() -> None:
        raise ConnectionRefusedError

    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            refused()
    assert breaker.state is OPEN


def test_record_on_predicate() -> None:
    clock = FakeClock()

    def server_error(exc: BaseException) -> bool:
        return isinstance(exc, Boom) and exc.args[0] >= 500

    breaker = make(
        clock, record_on=server_error, window_size=2, minimum_calls=2, failure_rate=100
    )

    def raise_status(status: int) -> None:
        raise Boom(status)

    for status in (404, 400, 500):
        with pytest.raises(Boom):
            breaker.call(raise_status, status)
    metrics = breaker.metrics()
    assert (metrics.successful_calls, metrics.failed_calls) == (2, 1)
    assert metrics.state is CLOSED  # window: 400 (success), 500 (failure) = 50%
    with pytest.raises(Boom):
        breaker.call(raise_status, 503)
    assert breaker.state is OPEN


def test_ignored_exceptions_count_as_neither() -> None:
    clock = FakeClock()
    breaker = make(clock, ignore_on=Ignored)
    for _ in range(3):
        attempt(breaker, "fail")
    for _ in range(10):
        assert attempt(breaker, "ignore") == "ignored"
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.ignored_calls, metrics.failed_calls) == (3, 10, 3)


def test_ignore_on_predicate_wins_over_record_on() -> None:
    clock = FakeClock()
    breaker = make(clock, record_on=Exception, ignore_on=lambda exc: "ignore me" in str(exc))
    for _ in range(6):
        with pytest.raises(Boom):
            breaker.call(functools.partial(_raise, Boom("ignore me")))
    metrics = breaker.metrics()
    assert (metrics.ignored_calls, metrics.failed_calls, metrics.window_calls) == (6, 0, 0)


def _raise(exc: BaseException) -> None:
    raise exc


def test_ignored_exception_frees_a_probe_slot() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)
    assert attempt(breaker, "ignore") == "ignored"
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert (metrics.probes_in_flight, metrics.window_calls) == (0, 0)
    assert attempt(breaker) == "ok"  # the slot is free again
    assert breaker.state is CLOSED


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_base_exceptions_are_always_ignored_and_propagate(exc_type: type) -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1, record_on=BaseException)
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(exc_type):
        breaker(functools.partial(_raise, exc_type()))()
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert metrics.probes_in_flight == 0
    assert metrics.ignored_calls == 1
    assert attempt(breaker) == "ok"
    assert breaker.state is CLOSED


def test_the_callers_exception_is_not_wrapped() -> None:
    clock = FakeClock()
    breaker = make(clock)
    error = Boom("exact")
    with pytest.raises(Boom) as info:
        breaker.call(_raise, error)
    assert info.value is error


# =========================================================================== failure_on_result


def _is_503(result: object) -> bool:
    return result == 503


def test_failure_on_result_through_the_decorator() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_on_result=_is_503, window_size=2, minimum_calls=2)

    @breaker
    def status(code: int) -> int:
        return code

    assert status(200) == 200
    assert status(503) == 503  # still returned to the caller
    metrics = breaker.metrics()
    assert (metrics.successful_calls, metrics.failed_calls) == (1, 1)
    assert metrics.state is OPEN


def test_failure_on_result_through_call() -> None:
    # ``breaker.call(fn)`` returns fn's result like the decorator does, so the
    # result predicate must apply to it as well.
    clock = FakeClock()
    breaker = make(clock, failure_on_result=_is_503, window_size=2, minimum_calls=2)
    assert breaker.call(lambda: 503) == 503
    assert breaker.call(lambda: 503) == 503
    metrics = breaker.metrics()
    assert metrics.failed_calls == 2
    assert metrics.state is OPEN


def test_failure_on_result_through_acall() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_on_result=_is_503, window_size=2, minimum_calls=2)

    async def status(code: int) -> int:
        return code

    async def main() -> None:
        assert await breaker.acall(status, 503) == 503
        assert await breaker.acall(status, code=503) == 503

    asyncio.run(main())
    assert breaker.metrics().failed_calls == 2
    assert breaker.state is OPEN


def test_result_classified_opening_uses_the_current_time() -> None:
    # With failure_on_result on a count window (and no slow-call detection) the
    # result path records outcomes at time 0.0 instead of reading the clock: the
    # breaker opens "at 0", next_probe_at = open_for is long past on a real
    # monotonic clock, and the very next call is let through as a probe.
    clock = FakeClock(1000.0)
    recorder = Recorder()
    breaker = make(
        clock,
        failure_on_result=_is_503,
        window_size=2,
        minimum_calls=2,
        open_for=10.0,
        listeners=[recorder],
    )
    assert attempt(breaker, result=503) == "ok"
    assert attempt(breaker, result=503) == "ok"
    metrics = breaker.metrics()
    assert metrics.state is OPEN
    assert recorder.changes == [("svc", CLOSED, OPEN, 1000.0)]
    assert metrics.next_probe_at == 1010.0
    assert attempt(breaker) == "rejected"


def test_failure_on_result_applies_to_probes() -> None:
    clock = FakeClock()
    breaker = make(clock, failure_on_result=_is_503, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)
    assert attempt(breaker, result=503) == "ok"
    assert breaker.state is OPEN


# =========================================================================== listeners


def test_listeners_see_a_full_cycle_with_times() -> None:
    clock = FakeClock()
    first, second = Recorder(), Recorder()
    breaker = make(clock, name="db", half_open_calls=1, listeners=[first, second])
    trip(breaker)
    clock.advance(10.0)
    attempt(breaker, "fail")
    clock.advance(10.0)
    attempt(breaker)
    expected = [
        ("db", CLOSED, OPEN, 0.0),
        ("db", OPEN, HALF_OPEN, 10.0),
        ("db", HALF_OPEN, OPEN, 10.0),
        ("db", OPEN, HALF_OPEN, 20.0),
        ("db", HALF_OPEN, CLOSED, 20.0),
    ]
    assert first.changes == expected
    assert second.changes == expected
    assert first.rejections == []


class _Reentrant:
    """A listener that reads the breaker from inside every callback."""

    def __init__(self) -> None:
        self.breaker: CircuitBreaker | None = None
        self.seen: list[tuple[str, BreakerState]] = []

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState, now: float) -> None:
        assert self.breaker is not None
        self.seen.append(("change", self.breaker.metrics().state))
        self.seen.append(("state", self.breaker.state))

    def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
        assert self.breaker is not None
        self.seen.append(("rejected", self.breaker.metrics().state))


def test_listeners_are_called_outside_the_lock() -> None:
    clock = FakeClock()
    listener = _Reentrant()
    breaker = make(clock, half_open_calls=1, listeners=[listener])
    listener.breaker = breaker

    def scenario() -> list[tuple[str, BreakerState]]:
        trip(breaker)  # state change from the record path
        assert attempt(breaker) == "rejected"  # rejection
        clock.advance(10.0)
        assert attempt(breaker) == "ok"  # OPEN -> HALF_OPEN in admit, -> CLOSED in record
        breaker.transition_to_forced_open()  # operator path
        assert attempt(breaker) == "rejected"
        return listener.seen

    seen = in_thread(scenario)
    assert seen == [
        ("change", OPEN),
        ("state", OPEN),
        ("rejected", OPEN),
        ("change", HALF_OPEN),
        ("state", HALF_OPEN),
        ("change", CLOSED),
        ("state", CLOSED),
        ("change", FORCED_OPEN),
        ("state", FORCED_OPEN),
        ("rejected", FORCED_OPEN),
    ]


def test_listener_reading_state_during_automatic_transition_does_not_deadlock() -> None:
    clock = FakeClock()
    listener = _Reentrant()
    breaker = make(clock, automatic_transition=True, max_half_open_time=1.0, listeners=[listener])
    listener.breaker = breaker
    trip(breaker)
    clock.advance(10.0)
    assert in_thread(lambda: breaker.state) is HALF_OPEN  # poll() path
    clock.advance(1.0)
    assert in_thread(lambda: breaker.metrics().state) is OPEN  # half-open timeout path


def test_a_failing_listener_does_not_leak_a_probe_slot() -> None:
    # Listener errors propagate to the caller (documented). But when the
    # OPEN -> HALF_OPEN event raises inside admit(), the probe permit has
    # already been issued and is never handed back: with half_open_calls=1
    # the breaker then rejects every call forever.
    clock = FakeClock()

    class Flaky:
        failed = False

        def on_state_change(
            self, name: str, old: BreakerState, new: BreakerState, now: float
        ) -> None:
            if new is HALF_OPEN and not self.failed:
                self.failed = True
                raise RuntimeError("listener bug")

        def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
            pass

    breaker = make(clock, half_open_calls=1, listeners=[Flaky()])
    trip(breaker)
    clock.advance(10.0)
    with pytest.raises(RuntimeError, match="listener bug"):
        breaker.call(lambda: "ok")
    assert breaker.metrics().probes_in_flight == 0
    assert attempt(breaker) == "ok"
    assert breaker.state is CLOSED


# =========================================================================== metrics


def test_metrics_snapshot_fields_through_a_cycle() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        name="m",
        window_size=5,
        minimum_calls=3,
        slow_call_duration=1.0,
        half_open_calls=2,
        record_on=Boom,
    )
    attempt(breaker)
    attempt(breaker, "ignore")
    attempt(breaker, "other", clock=clock, duration=2.0)
    metrics = breaker.metrics()
    assert (metrics.window_calls, metrics.window_failures, metrics.window_slow_calls) == (2, 0, 1)
    assert (metrics.failure_rate, metrics.slow_call_rate) == (-1.0, -1.0)
    attempt(breaker, "fail")
    metrics = breaker.metrics()
    assert metrics.failure_rate == pytest.approx(100 / 3)
    assert metrics.slow_call_rate == pytest.approx(100 / 3)
    attempt(breaker, "fail")  # 2 of 4 = 50% -> open at t=2
    metrics = breaker.metrics()
    assert metrics == BreakerMetrics(
        name="m",
        state=OPEN,
        window_calls=4,
        window_failures=2,
        window_slow_calls=1,
        failure_rate=50.0,
        slow_call_rate=25.0,
        successful_calls=2,
        failed_calls=2,
        slow_calls=1,
        not_permitted_calls=0,
        ignored_calls=1,
        consecutive_openings=1,
        next_probe_at=12.0,
        probes_in_flight=0,
    )
    attempt(breaker)
    clock.advance(10.0)
    permit = breaker.admit(clock())
    metrics = breaker.metrics()
    assert (metrics.state, metrics.probes_in_flight, metrics.window_calls) == (HALF_OPEN, 1, 0)
    assert (metrics.failure_rate, metrics.not_permitted_calls) == (-1.0, 1)
    breaker.release(permit)
    assert breaker.metrics().ignored_calls == 2
    with pytest.raises(AttributeError):
        metrics.state = CLOSED  # type: ignore[misc]


# =========================================================================== stale outcomes


def test_call_admitted_before_opening_does_not_count_as_probe_sans_io() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    early = breaker.admit(clock())  # admitted while CLOSED
    trip(breaker)
    clock.advance(10.0)
    probe = breaker.admit(clock())
    breaker.record_success(early, clock())
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN
    assert (metrics.window_calls, metrics.probes_in_flight) == (0, 1)
    assert metrics.successful_calls == 1  # still a lifetime success
    breaker.release(early)  # a stale release frees no probe slot either
    assert breaker.metrics().probes_in_flight == 1
    with pytest.raises(CircuitOpenError):
        breaker.admit(clock())
    breaker.record_failure(probe, clock())
    assert breaker.state is OPEN


def test_slow_call_admitted_in_closed_finishing_in_half_open_is_not_a_probe() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1, open_for=1.0)

    async def main() -> None:
        release_early = asyncio.Event()
        release_probe = asyncio.Event()

        @breaker
        async def early() -> str:
            await release_early.wait()
            return "late"

        @breaker
        async def probe() -> str:
            await release_probe.wait()
            return "probe"

        early_task = asyncio.create_task(early())
        await asyncio.sleep(0)  # admitted while CLOSED
        trip(breaker)
        clock.advance(1.0)
        probe_task = asyncio.create_task(probe())
        await asyncio.sleep(0)
        assert breaker.metrics().probes_in_flight == 1
        release_early.set()
        assert await early_task == "late"
        metrics = breaker.metrics()
        assert metrics.state is HALF_OPEN
        assert (metrics.window_calls, metrics.probes_in_flight) == (0, 1)
        release_probe.set()
        assert await probe_task == "probe"
        assert breaker.state is CLOSED

    asyncio.run(main())
    assert breaker.metrics().successful_calls == 2


def test_stale_outcome_does_not_reopen_a_closed_breaker() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1, window_size=1, minimum_calls=1)
    early = breaker.admit(clock())
    breaker.record_failure(breaker.admit(clock()), clock())  # opens
    clock.advance(10.0)
    breaker.record_success(breaker.admit(clock()), clock())  # probe closes
    breaker.record_failure(early, clock())  # from the first CLOSED epoch
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.failed_calls) == (0, 2)


class _RacyBreaker(CircuitBreaker):
    """Runs ``self.interleave()`` (once) right after the next read of ``_state``.

    This replays a thread switch at that exact point, deterministically.
    """

    @property
    def _state(self) -> BreakerState:
        value = _STATE_SLOT.__get__(self, CircuitBreaker)
        hook = self.__dict__.pop("interleave", None)
        if hook is not None:
            hook()
        return value

    @_state.setter
    def _state(self, value: BreakerState) -> None:
        _STATE_SLOT.__set__(self, value)


_STATE_SLOT = CircuitBreaker.__dict__["_state"]


def test_admit_fast_path_race_cannot_mint_a_probe_permit() -> None:
    # admit() reads the state, sees CLOSED, and only then reads the epoch. If
    # another thread opens the breaker and takes the only probe slot in
    # between, the CLOSED caller walks away with the HALF_OPEN epoch: its
    # outcome is counted as a probe and closes the breaker while the real
    # probe is still in flight. (The sync adapter reads the epoch first.)
    clock = FakeClock()
    breaker = _RacyBreaker(
        "race", window_size=1, minimum_calls=1, half_open_calls=1, open_for=1.0, clock=clock
    )
    probes = []

    def other_threads() -> None:
        breaker.record_failure(breaker.admit(clock()), clock())  # opens
        clock.advance(1.0)
        probes.append(breaker.admit(clock()))  # takes the only probe slot

    breaker.interleave = other_threads
    racer = breaker.admit(clock())
    assert breaker.metrics().state is HALF_OPEN
    breaker.record_success(racer, clock())
    metrics = breaker.metrics()
    assert metrics.state is HALF_OPEN, "a call admitted in CLOSED closed the half-open breaker"
    assert metrics.probes_in_flight == 1


# =========================================================================== time window


def test_time_window_judges_only_recent_calls() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        window_type="time",
        window_size=10.0,
        window_buckets=5,
        minimum_calls=2,
        failure_rate=60.0,
    )
    attempt(breaker)
    attempt(breaker)
    clock.advance(10.0)  # both successes expire (bucket 0 leaves the window)
    attempt(breaker, "fail")
    metrics = breaker.metrics()
    assert metrics.state is CLOSED
    assert (metrics.window_calls, metrics.failure_rate) == (1, -1.0)
    clock.advance(0.5)
    attempt(breaker, "fail")  # 2 of 2: a count window of 4 would say 50%
    assert breaker.state is OPEN


def test_time_window_metrics_expire_without_calls() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=4.0, window_buckets=4, minimum_calls=5)
    attempt(breaker, "fail")
    clock.advance(1.0)
    attempt(breaker)
    clock.advance(2.75)
    assert breaker.metrics().window_calls == 2
    clock.advance(0.25)  # t=4: bucket 0 expires
    assert (breaker.metrics().window_calls, breaker.metrics().window_failures) == (1, 0)
    clock.advance(1.0)
    assert breaker.metrics().window_calls == 0


def test_time_window_success_does_not_hide_an_expiry_driven_rise() -> None:
    clock = FakeClock()
    breaker = make(clock, window_type="time", window_size=2.0, window_buckets=2, minimum_calls=2)
    attempt(breaker)
    attempt(breaker)
    clock.advance(1.0)
    attempt(breaker, "fail")  # 1 of 3
    assert breaker.state is CLOSED
    clock.advance(1.0)  # the two successes expire: 1 of 1, under the minimum
    attempt(breaker)  # 1 of 2 = 50% with a success as the trigger
    assert breaker.state is OPEN


def test_time_window_slow_calls() -> None:
    clock = FakeClock()
    breaker = make(
        clock,
        window_type="time",
        window_size=10.0,
        minimum_calls=2,
        slow_call_duration=0.5,
        slow_call_rate=100.0,
    )
    attempt(breaker, clock=clock, duration=0.5)
    attempt(breaker, clock=clock, duration=0.5)
    assert breaker.state is OPEN


# =========================================================================== with-blocks


def test_with_block_records_success_failure_and_ignore() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10)
    with breaker as entered:
        assert entered is breaker
    with pytest.raises(Boom), breaker:
        raise Boom
    with pytest.raises(Ignored), breaker:
        raise Ignored
    metrics = breaker.metrics()
    assert (metrics.successful_calls, metrics.failed_calls, metrics.ignored_calls) == (1, 1, 1)


def test_with_block_is_rejected_before_it_runs() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)
    ran = []
    with pytest.raises(CircuitOpenError):
        with breaker:
            ran.append(1)
    assert not ran


def test_nested_with_blocks_keep_their_own_start_times() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10, slow_call_duration=1.0)

    def inner() -> None:
        with breaker:
            clock.advance(0.5)  # inner: 0.5 s, fast
            raise Boom

    with breaker:
        clock.advance(1.0)
        with pytest.raises(Boom):
            inner()
    # outer: 1.5 s, slow
    metrics = breaker.metrics()
    assert (metrics.failed_calls, metrics.successful_calls, metrics.slow_calls) == (1, 1, 1)


def test_nested_with_blocks_take_two_probe_slots() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=2)
    trip(breaker)
    clock.advance(10.0)
    with breaker:
        with breaker:
            assert breaker.metrics().probes_in_flight == 2
            with pytest.raises(CircuitOpenError), breaker:
                pass
    assert breaker.state is CLOSED


def test_async_with_nested_and_concurrent_tasks() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10, slow_call_duration=1.0)

    async def main() -> None:
        a_in, b_in, a_go, b_go = (asyncio.Event() for _ in range(4))

        async def task_a() -> None:
            async with breaker:
                a_in.set()
                await a_go.wait()  # B enters at t=5 while A is inside

        async def task_b() -> None:
            async with breaker:
                async with breaker:
                    b_in.set()
                    await b_go.wait()

        ta = asyncio.create_task(task_a())
        await a_in.wait()
        clock.advance(5.0)
        tb = asyncio.create_task(task_b())
        await b_in.wait()
        clock.advance(0.5)
        a_go.set()
        await ta  # A: 5.5 s, slow. If the tasks shared one stack A would pop B's start.
        assert breaker.metrics().slow_calls == 1
        b_go.set()
        await tb  # B (both levels): 0.5 s, fast
        metrics = breaker.metrics()
        assert (metrics.successful_calls, metrics.slow_calls) == (3, 1)

        with pytest.raises(Boom):
            async with breaker:
                raise Boom
        assert breaker.metrics().failed_calls == 1

    asyncio.run(main())


def test_async_with_is_rejected_when_open() -> None:
    clock = FakeClock()
    breaker = make(clock)
    trip(breaker)

    async def main() -> None:
        with pytest.raises(CircuitOpenError):
            async with breaker:
                raise AssertionError("must not run")

    asyncio.run(main())


# =========================================================================== decorator, call, acall


def test_sync_decorator_keeps_metadata_and_returns_values() -> None:
    breaker = make(FakeClock())

    def lookup(key: str, *, default: int = 0) -> int:
        """Find a key."""
        return len(key) + default

    guarded = breaker(lookup)
    assert guarded.__name__ == "lookup"
    assert guarded.__doc__ == "Find a key."
    assert guarded.__wrapped__ is lookup  # type: ignore[attr-defined]
    assert inspect.signature(guarded) == inspect.signature(lookup)
    assert not inspect.iscoroutinefunction(guarded)
    assert guarded("abc", default=2) == 5


def test_async_decorator_keeps_metadata_and_returns_values() -> None:
    breaker = make(FakeClock())

    async def fetch(url: str, retries: int = 1) -> str:
        """Fetch a URL."""
        return f"{url}:{retries}"

    guarded = breaker(fetch)
    assert guarded.__name__ == "fetch"
    assert guarded.__doc__ == "Fetch a URL."
    assert inspect.signature(guarded) == inspect.signature(fetch)
    assert inspect.iscoroutinefunction(guarded)
    assert asyncio.run(guarded("u", retries=2)) == "u:2"
    assert breaker.metrics().successful_calls == 1


def test_call_and_acall_pass_arguments_and_record() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=10)

    def add(a: int, b: int = 0) -> int:
        return a + b

    async def aadd(a: int, b: int = 0) -> int:
        return a + b

    async def afail() -> None:
        raise Boom

    assert breaker.call(add, 1, b=2) == 3
    assert asyncio.run(breaker.acall(aadd, 4, b=5)) == 9
    with pytest.raises(Boom):
        asyncio.run(breaker.acall(afail))
    metrics = breaker.metrics()
    assert (metrics.successful_calls, metrics.failed_calls) == (2, 1)


def test_async_slow_call_via_fake_sleep() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=2, minimum_calls=2, slow_call_duration=1.0)

    @breaker
    async def slow() -> str:
        await clock.async_sleep(1.5)
        return "ok"

    async def main() -> None:
        await slow()
        await slow()

    asyncio.run(main())
    assert breaker.metrics().slow_calls == 2
    assert breaker.state is OPEN
    assert clock.sleeps == [1.5, 1.5]


# =========================================================================== cancellation


def test_cancelled_probe_frees_its_slot_and_cancellation_propagates() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)

    async def main() -> None:
        inside = asyncio.Event()

        @breaker
        async def hang() -> None:
            inside.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(hang())
        await inside.wait()
        assert breaker.metrics().probes_in_flight == 1
        with pytest.raises(CircuitOpenError):
            await breaker.acall(hang)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        metrics = breaker.metrics()
        assert metrics.state is HALF_OPEN
        assert (metrics.probes_in_flight, metrics.ignored_calls, metrics.failed_calls) == (
            0,
            1,
            4,
        )

        async def ok() -> str:
            return "ok"

        assert await breaker.acall(ok) == "ok"  # the freed slot takes a new probe
        assert breaker.state is CLOSED

    asyncio.run(main())


def test_cancellation_in_closed_is_not_a_failure() -> None:
    clock = FakeClock()
    breaker = make(clock, window_size=1, minimum_calls=1)

    async def main() -> None:
        inside = asyncio.Event()

        async def hang() -> None:
            inside.set()
            await asyncio.Event().wait()

        task = asyncio.create_task(breaker.acall(hang))
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    metrics = breaker.metrics()
    assert (metrics.state, metrics.failed_calls, metrics.ignored_calls) == (CLOSED, 0, 1)


def test_timeout_cancelling_an_async_with_block_releases_the_probe() -> None:
    clock = FakeClock()
    breaker = make(clock, half_open_calls=1)
    trip(breaker)
    clock.advance(10.0)

    async def main() -> None:
        async def guarded() -> None:
            async with breaker:
                await asyncio.Event().wait()

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(guarded(), timeout=0.01)
        assert breaker.metrics().probes_in_flight == 0

    asyncio.run(main())
    assert attempt(breaker) == "ok"
    assert breaker.state is CLOSED


# =========================================================================== configuration


BAD_CONFIG = [
    ({"window_type": "foo"}, "window_type", "'foo'"),
    ({"window_size": 0}, "window_size", "0"),
    ({"window_size": 2.5}, "window_size", "2.5"),
    ({"window_type": "time", "window_size": -5.0}, "window_size", "-5.0"),
    ({"window_type": "time", "window_size": 0}, "window_size", "0"),
    ({"window_type": "time", "window_buckets": 0}, "window_buckets", "0"),
    ({"minimum_calls": 0}, "minimum_calls", "0"),
    ({"minimum_calls": -3}, "minimum_calls", "-3"),
    ({"minimum_calls": 2.0}, "minimum_calls", "2.0"),
    ({"failure_rate": 0}, "failure_rate", "0"),
    ({"failure_rate": -10.0}, "failure_rate", "-10.0"),
    ({"failure_rate": 100.5}, "failure_rate", "100.5"),
    ({"failure_rate": float("nan")}, "failure_rate", "nan"),
    ({"slow_call_rate": 0.0}, "slow_call_rate", "0.0"),
    ({"slow_call_rate": 101}, "slow_call_rate", "101"),
    ({"slow_call_duration": -1.0}, "slow_call_duration", "-1.0"),
    ({"slow_call_duration": 0}, "slow_call_duration", "0"),
    ({"open_for": -1.0}, "open_for", "-1.0"),
    ({"open_for": 0}, "open_for", "0"),
    ({"open_for": float("nan")}, "open_for", "nan"),
    ({"open_for": 5.0, "max_open_for": 1.0}, "max_open_for", "1.0"),
    ({"max_open_for": -60.0}, "max_open_for", "-60.0"),
    ({"open_multiplier": 0.5}, "open_multiplier", "0.5"),
    ({"open_multiplier": 0}, "open_multiplier", "0"),
    ({"open_multiplier": float("nan")}, "open_multiplier", "nan"),
    ({"half_open_calls": 0}, "half_open_calls", "0"),
    ({"half_open_calls": -1}, "half_open_calls", "-1"),
    ({"max_half_open_time": -1.0}, "max_half_open_time", "-1.0"),
    ({"max_half_open_time": 0}, "max_half_open_time", "0"),
    ({"record_on": (Boom, "x")}, "record_on", "'x'"),
    ({"record_on": 42}, "record_on", "42"),
    ({"ignore_on": "Boom"}, "ignore_on", "'Boom'"),
    ({"ignore_on": int}, "ignore_on", "int"),
    ({"failure_on_result": 503}, "failure_on_result", "503"),
]


@pytest.mark.parametrize(
    ("kwargs", "param", "value"), BAD_CONFIG, ids=[f"{p}={v}" for _, p, v in BAD_CONFIG]
)
def test_bad_configuration_names_parameter_and_value(
    kwargs: dict[str, Any], param: str, value: str
) -> None:
    with pytest.raises(ValueError) as info:
        CircuitBreaker(**kwargs)
    message = str(info.value)
    assert param in message
    assert value in message


RENAMED = [
    ("failure_rate_threshold", "failure_rate"),
    ("slow_call_rate_threshold", "slow_call_rate"),
    ("wait_in_open", "open_for"),
    ("wait_multiplier", "open_multiplier"),
    ("max_wait_in_open", "max_open_for"),
]


@pytest.mark.parametrize(("old", "new"), RENAMED)
def test_old_keywords_name_their_mesh_yaml_names(old: str, new: str) -> None:
    # One vocabulary with mesh.yaml (issue 14): an old name is neither accepted
    # nor a bare "unexpected keyword", in the constructor as in reconfigure.
    message = f"CircuitBreaker: '{old}' is now '{new}' (one vocabulary with mesh.yaml)"
    with pytest.raises(TypeError) as info:
        CircuitBreaker(**{old: 2.0})
    assert str(info.value) == message
    breaker = CircuitBreaker(open_for=1.0)
    with pytest.raises(TypeError) as info:
        breaker.reconfigure(**{old: 2.0})
    assert str(info.value) == message
    breaker.reconfigure(**{"max_open_for": 60.0, new: 2.0})  # the new name is taken
    assert new in inspect.signature(CircuitBreaker).parameters


def test_an_unknown_keyword_is_still_a_plain_type_error() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'wait'"):
        CircuitBreaker(wait=1.0)  # type: ignore[call-arg]


def test_boundary_configurations_are_accepted() -> None:
    CircuitBreaker(
        window_size=1,
        minimum_calls=1,
        failure_rate=100,
        slow_call_rate=0.001,
        open_for=1.0,
        max_open_for=1.0,
        open_multiplier=1,
        half_open_calls=1,
        slow_call_duration=0.001,
        max_half_open_time=0.001,
    )
    CircuitBreaker(window_type="time", window_size=0.5, window_buckets=1, minimum_calls=1)


def test_defaults() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    assert breaker.name == "breaker"
    assert breaker.automatic_transition is False
    # 19 failures: under the default minimum of 20; the 20th opens (50% threshold).
    for _ in range(19):
        attempt(breaker, "fail")
    assert breaker.state is CLOSED
    attempt(breaker, "fail")
    assert breaker.metrics().next_probe_at == 5.0  # default open_for
    clock.advance(5.0)
    permits = [breaker.admit(clock()) for _ in range(3)]  # default half_open_calls
    with pytest.raises(CircuitOpenError):
        breaker.admit(clock())
    for permit in permits:
        breaker.record_success(permit, clock())
    assert breaker.state is CLOSED


# =========================================================================== threads


def test_no_lock_is_held_around_the_call() -> None:
    breaker = make(FakeClock())
    inside = threading.Event()
    release = threading.Event()

    @breaker
    def blocking() -> str:
        inside.set()
        assert release.wait(TIMEOUT)
        return "done"

    thread = threading.Thread(target=blocking, daemon=True)
    thread.start()
    assert inside.wait(TIMEOUT)
    # Another caller (and an observer) get through while the first call is in flight.
    assert in_thread(lambda: breaker.call(lambda: "second")) == "second"
    assert in_thread(lambda: breaker.metrics().successful_calls) == 1
    release.set()
    thread.join(TIMEOUT)
    assert breaker.metrics().successful_calls == 2


@pytest.mark.parametrize("window_type", ["count", "time"])
def test_lifetime_counters_are_exact_under_threads(window_type: str) -> None:
    threads, calls_per_thread = 8, 2000
    clock = FakeClock()
    recorder = Recorder()
    breaker = CircuitBreaker(
        "stress",
        window_type=window_type,  # type: ignore[arg-type]
        window_size=20 if window_type == "count" else 0.5,
        window_buckets=2,
        minimum_calls=10,
        failure_rate=50.0,
        open_for=1.0,
        half_open_calls=3,
        record_on=Boom,
        ignore_on=Ignored,
        listeners=[recorder],
        clock=clock,
    )

    @breaker
    def work(kind: str) -> str:
        if kind == "fail":
            raise Boom
        if kind == "ignore":
            raise Ignored
        if kind == "other":
            raise Other
        return kind

    barrier = threading.Barrier(threads)
    tallies: list[dict[str, int]] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        tally = dict.fromkeys(("ok", "fail", "ignore", "other", "rejected"), 0)
        barrier.wait(TIMEOUT)
        for i in range(calls_per_thread):
            # Alternate healthy and failing phases so the breaker cycles through states.
            weights = [85, 5, 5, 5] if (i // 250) % 2 == 0 else [10, 80, 5, 5]
            kind = rng.choices(["ok", "fail", "ignore", "other"], weights)[0]
            try:
                work(kind)
            except CircuitOpenError:
                kind = "rejected"
            except (Boom, Ignored, Other):
                pass
            tally[kind] += 1
            if i % 50 == 49:
                clock.advance(0.25)
        tallies.append(tally)

    pool = [threading.Thread(target=worker, args=(seed,), daemon=True) for seed in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    assert not any(thread.is_alive() for thread in pool)
    assert len(tallies) == threads
    total = {key: sum(t[key] for t in tallies) for key in tallies[0]}
    assert sum(total.values()) == threads * calls_per_thread
    metrics = breaker.metrics()
    assert metrics.successful_calls == total["ok"] + total["other"]
    assert metrics.failed_calls == total["fail"]
    assert metrics.ignored_calls == total["ignore"]
    assert metrics.not_permitted_calls == total["rejected"]
    assert metrics.slow_calls == 0
    assert metrics.probes_in_flight == 0
    # The run exercised the state machine, not just the CLOSED fast path.
    transitions = set(recorder.transitions)
    assert (CLOSED, OPEN) in transitions
    assert (OPEN, HALF_OPEN) in transitions
    assert total["rejected"] > 0


def test_half_open_never_runs_more_than_half_open_calls_concurrently() -> None:
    threads, half_open_calls = 8, 3
    clock = FakeClock()
    breaker = CircuitBreaker(
        window_size=2,
        minimum_calls=2,
        half_open_calls=half_open_calls,
        open_for=1.0,
        record_on=Boom,
        clock=clock,
    )
    lock = threading.Lock()
    changed = threading.Condition(lock)
    running = 0
    max_running = 0
    entered = 0
    outcomes: list[str] = []

    def probe_body(gate: threading.Event, fail: bool) -> str:
        nonlocal running, max_running, entered
        with changed:
            running += 1
            entered += 1
            max_running = max(max_running, running)
            changed.notify_all()
        assert gate.wait(TIMEOUT)
        with changed:
            running -= 1
        if fail:
            raise Boom
        return "ok"

    guarded = breaker(probe_body)

    for cycle in range(6):
        fail_probes = cycle % 2 == 0
        if breaker.state is CLOSED:
            for _ in range(2):
                with pytest.raises(Boom):
                    breaker.call(_raise, Boom())
        assert breaker.state is OPEN
        clock.advance(breaker.metrics().next_probe_at - clock())
        gate = threading.Event()
        barrier = threading.Barrier(threads)
        with changed:
            entered = 0
            outcomes.clear()

        def caller(gate: threading.Event = gate, fail: bool = fail_probes) -> None:
            barrier.wait(TIMEOUT)
            try:
                result = guarded(gate, fail)
            except CircuitOpenError as exc:
                result = exc.state
            except Boom:
                result = "failed"
            with changed:
                outcomes.append(result)
                changed.notify_all()

        pool = [threading.Thread(target=caller, daemon=True) for _ in range(threads)]
        for thread in pool:
            thread.start()
        with changed:
            assert changed.wait_for(lambda: entered + len(outcomes) == threads, timeout=TIMEOUT), (
                "callers did not all get an answer"
            )
            assert entered == half_open_calls
            assert outcomes == ["half_open"] * (threads - half_open_calls)
        metrics = breaker.metrics()
        assert (metrics.state, metrics.probes_in_flight) == (HALF_OPEN, half_open_calls)
        gate.set()
        for thread in pool:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in pool)
        assert breaker.state is (OPEN if fail_probes else CLOSED)

    assert max_running == half_open_calls
