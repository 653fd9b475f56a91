"""CircuitBreaker against a brute-force reference model (Hypothesis state machine).

The model below is written from the documented semantics (the docstrings of
``seawall.policy.breaker``), not from the implementation: it keeps every
recorded outcome in a list with its time and recounts the window from scratch
(the last ``window_size`` outcomes, or those whose bucket is among the last
``window_buckets``), decides thresholds with exact fractions, and grows the
wait by repeated multiplication. Every step then compares the breaker with it:
state, window counts and rates, lifetime counters, the next probe time,
probes in flight, every admission or rejection, and the listener's events.

Times are multiples of 1/4 s, durations and widths dyadic, so float arithmetic
is exact on both sides.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from seawall.policy.breaker import BreakerState, CircuitBreaker
from seawall.policy.clock import FakeClock
from seawall.policy.errors import CircuitOpenError

CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
DISABLED = BreakerState.DISABLED
FORCED_OPEN = BreakerState.FORCED_OPEN
METRICS_ONLY = BreakerState.METRICS_ONLY

MAX_IN_FLIGHT = 6
START = 1000.0


class Boom(Exception):
    """Recorded as a failure (``record_on``)."""


class Ignored(Exception):
    """Ignored (``ignore_on``)."""


class Other(Exception):
    """Outside ``record_on``: counts as a success."""


@dataclass(frozen=True)
class Config:
    window_type: str
    window_size: float
    window_buckets: int
    minimum_calls: int
    failure_rate: int
    slow_call_duration: float | None
    slow_call_rate: int
    open_for: float
    open_multiplier: float
    max_open_for: float
    half_open_calls: int
    max_half_open_time: float | None
    automatic_transition: bool
    failure_on_result: bool

    def kwargs(self) -> dict[str, Any]:
        return {
            "window_type": self.window_type,
            "window_size": self.window_size,
            "window_buckets": self.window_buckets,
            "minimum_calls": self.minimum_calls,
            "failure_rate": self.failure_rate,
            "slow_call_duration": self.slow_call_duration,
            "slow_call_rate": self.slow_call_rate,
            "open_for": self.open_for,
            "open_multiplier": self.open_multiplier,
            "max_open_for": self.max_open_for,
            "half_open_calls": self.half_open_calls,
            "max_half_open_time": self.max_half_open_time,
            "automatic_transition": self.automatic_transition,
            "record_on": Boom,
            "ignore_on": Ignored,
            "failure_on_result": (lambda result: result == 503) if self.failure_on_result else None,
        }


@st.composite
def configs(draw: st.DrawFn, window_type: str) -> Config:
    if window_type == "count":
        buckets = 10
        size: float = draw(st.integers(1, 10))
        # minimum_calls above a count window's size can never be reached; that
        # case has its own test in test_breaker.py.
        minimum = draw(st.integers(1, min(5, int(size))))
    else:
        buckets = draw(st.integers(1, 10))
        size = draw(st.sampled_from([0.5, 1.0, 2.0])) * buckets
        minimum = draw(st.integers(1, 5))
    wait = draw(st.sampled_from([0.5, 1.0, 2.0, 3.0]))
    return Config(
        window_type=window_type,
        window_size=size,
        window_buckets=buckets,
        minimum_calls=minimum,
        failure_rate=draw(st.sampled_from([1, 25, 34, 50, 66, 67, 100])),
        slow_call_duration=draw(st.sampled_from([None, 0.5, 1.0, 2.0])),
        slow_call_rate=draw(st.sampled_from([1, 50, 67, 100])),
        open_for=wait,
        open_multiplier=draw(st.sampled_from([1.0, 1.5, 2.0])),
        max_open_for=wait * draw(st.sampled_from([1, 2, 4])),
        half_open_calls=draw(st.integers(1, 3)),
        max_half_open_time=draw(st.sampled_from([None, 1.0, 2.0, 3.0])),
        automatic_transition=draw(st.booleans()),
        failure_on_result=draw(st.booleans()),
    )


class Model:
    """The documented breaker, computed the slow and obvious way."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = CLOSED
        self.epoch = 0
        self.since = 0.0
        self.next_probe_at: float | None = None
        self.openings = 0
        self.history: list[tuple[float, bool, bool]] = []  # (time, failed, slow)
        self.issued = self.done = self.probe_failures = self.probe_slow = 0
        self.successes = self.failures = self.slow = self.rejected = self.ignored = 0
        self.events: list[tuple[BreakerState, BreakerState]] = []

    # -- the window, recounted from raw history

    def window(self, now: float) -> list[tuple[bool, bool]]:
        config = self.config
        if config.window_type == "count":
            kept = self.history[-int(config.window_size) :]
        else:
            width = config.window_size / config.window_buckets
            current = math.floor(now / width)
            kept = [
                entry
                for entry in self.history
                if math.floor(entry[0] / width) > current - config.window_buckets
            ]
        return [(failed, slow) for _, failed, slow in kept]

    def _over(self, calls: int, failed: int, slow: int) -> bool:
        config = self.config
        return (
            Fraction(100 * failed, calls) >= config.failure_rate
            or Fraction(100 * slow, calls) >= config.slow_call_rate
        )

    # -- transitions

    def _enter(self, new: BreakerState, now: float) -> None:
        self.events.append((self.state, new))
        self.state = new
        self.epoch += 1
        self.since = now
        self.issued = self.done = self.probe_failures = self.probe_slow = 0
        if new in (CLOSED, METRICS_ONLY):
            self.history.clear()
        if new is not OPEN:
            self.next_probe_at = None

    def _open(self, now: float) -> None:
        wait = self.config.open_for
        for _ in range(self.openings):
            wait = min(self.config.max_open_for, wait * self.config.open_multiplier)
        self.openings += 1
        self._enter(OPEN, now)
        self.next_probe_at = now + wait

    def due(self, now: float, *, calling: bool = False) -> None:
        """Apply what time has made due (every observation, call and outcome does this)."""
        if self.state is OPEN:
            assert self.next_probe_at is not None
            if (calling or self.config.automatic_transition) and now >= self.next_probe_at:
                self._enter(HALF_OPEN, now)
        elif self.state is HALF_OPEN:
            limit = self.config.max_half_open_time
            if limit is not None and now - self.since >= limit:
                self._open(now)

    # -- calls

    def admit(self, now: float) -> tuple[bool, int | None, float | None]:
        """(admitted, epoch or None when nothing is recorded, retry_at)."""
        self.due(now, calling=True)
        if self.state in (CLOSED, METRICS_ONLY):
            return True, self.epoch, None
        if self.state is DISABLED:
            return True, None, None
        if self.state is HALF_OPEN and self.issued < self.config.half_open_calls:
            self.issued += 1
            return True, self.epoch, None
        self.rejected += 1
        return False, None, self.next_probe_at if self.state is OPEN else None

    def finish(self, epoch: int | None, kind: str, start: float, now: float) -> None:
        """``kind``: "success", "failure" or "ignore"."""
        if epoch is None:
            return  # admitted while DISABLED: nothing is recorded
        self.due(now)
        if kind == "ignore":
            self.ignored += 1
            if epoch == self.epoch and self.state is HALF_OPEN:
                self.issued -= 1
            return
        failed = kind == "failure"
        limit = self.config.slow_call_duration
        slow = limit is not None and now - start >= limit
        if failed:
            self.failures += 1
        else:
            self.successes += 1
        if slow:
            self.slow += 1
        if epoch != self.epoch:
            return  # admitted by an earlier state
        if self.state in (CLOSED, METRICS_ONLY):
            self.history.append((now, failed, slow))
            if self.state is CLOSED:
                window = self.window(now)
                calls = len(window)
                if calls >= self.config.minimum_calls and self._over(
                    calls, sum(f for f, _ in window), sum(s for _, s in window)
                ):
                    self._open(now)
        elif self.state is HALF_OPEN:
            self.done += 1
            self.probe_failures += failed
            self.probe_slow += slow
            if self.done >= self.config.half_open_calls:
                if self._over(self.done, self.probe_failures, self.probe_slow):
                    self._open(now)
                else:
                    self.openings = 0
                    self._enter(CLOSED, now)

    # -- operator

    def operate(self, op: str, now: float) -> None:
        if op == "open":
            self._open(now)
            return
        if op in ("closed", "reset"):
            self.openings = 0
        new = {
            "closed": CLOSED,
            "reset": CLOSED,
            "forced_open": FORCED_OPEN,
            "disabled": DISABLED,
            "metrics_only": METRICS_ONLY,
        }[op]
        self._enter(new, now)
        if op == "reset":
            self.successes = self.failures = self.slow = self.rejected = self.ignored = 0

    # -- what metrics() should say

    def snapshot(self, now: float) -> dict[str, Any]:
        self.due(now)
        if self.state is HALF_OPEN:
            calls, failed, slow = self.done, self.probe_failures, self.probe_slow
            judged = calls > 0
        else:
            window = self.window(now)
            calls = len(window)
            failed = sum(f for f, _ in window)
            slow = sum(s for _, s in window)
            judged = calls >= self.config.minimum_calls
        return {
            "state": self.state,
            "window_calls": calls,
            "window_failures": failed,
            "window_slow_calls": slow,
            "failure_rate": 100.0 * failed / calls if judged else -1.0,
            "slow_call_rate": 100.0 * slow / calls if judged else -1.0,
            "successful_calls": self.successes,
            "failed_calls": self.failures,
            "slow_calls": self.slow,
            "not_permitted_calls": self.rejected,
            "ignored_calls": self.ignored,
            "consecutive_openings": self.openings,
            "next_probe_at": self.next_probe_at if self.state is OPEN else None,
            "probes_in_flight": self.issued - self.done if self.state is HALF_OPEN else 0,
        }


class _Recorder:
    def __init__(self) -> None:
        self.transitions: list[tuple[BreakerState, BreakerState]] = []

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState, now: float) -> None:
        self.transitions.append((old, new))

    def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
        pass


class BreakerMachine(RuleBasedStateMachine):
    window_type = "count"

    def __init__(self) -> None:
        super().__init__()
        # Not 0: a breaker that used 0.0 instead of reading the clock must show.
        self.clock = FakeClock(START)
        self.recorder = _Recorder()
        self.breaker: CircuitBreaker | None = None
        self.model: Model | None = None
        # (breaker permit, model epoch, start time)
        self.in_flight: list[tuple[int, int | None, float]] = []

    @initialize(data=st.data())
    def setup(self, data: st.DataObject) -> None:
        config = data.draw(configs(self.window_type), label="config")
        self.model = Model(config)
        self.breaker = CircuitBreaker(
            "model", listeners=[self.recorder], clock=self.clock, **config.kwargs()
        )

    @property
    def b(self) -> CircuitBreaker:
        assert self.breaker is not None
        return self.breaker

    @property
    def m(self) -> Model:
        assert self.model is not None
        return self.model

    # ------------------------------------------------------------------ rules

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.0, 5.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def _check_admission(
        self, expected: tuple[bool, int | None, float | None], error: CircuitOpenError | None
    ) -> None:
        admitted, _, retry_at = expected
        if admitted:
            assert error is None, f"breaker rejected ({error}); model admits in {self.m.state}"
            return
        assert error is not None, f"breaker admitted; model rejects in {self.m.state}"
        assert error.state == self.m.state.value
        assert error.retry_at == retry_at
        if retry_at is None:
            assert error.retry_after is None
        else:
            assert error.retry_after == max(0.0, retry_at - self.clock())
            # No call is admitted in OPEN before the wait ends.
            assert self.clock() < retry_at

    @precondition(lambda self: len(self.in_flight) < MAX_IN_FLIGHT)
    @rule()
    def admit(self) -> None:
        now = self.clock()
        before = self.b.metrics()
        expected = self.m.admit(now)
        try:
            permit = self.b.admit(now)
        except CircuitOpenError as error:
            self._check_admission(expected, error)
            return
        self._check_admission(expected, None)
        if before.state is OPEN:
            assert before.next_probe_at is not None
            assert now >= before.next_probe_at
        assert before.state is not FORCED_OPEN
        self.in_flight.append((permit, expected[1], now))

    @precondition(lambda self: self.in_flight)
    @rule(
        data=st.data(),
        kind=st.sampled_from(["success", "failure", "ignore"]),
        seconds=st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0]),
    )
    def finish(self, data: st.DataObject, kind: str, seconds: float) -> None:
        """An in-flight call ends, ``seconds`` after the last step (a slow call)."""
        index = data.draw(st.integers(0, len(self.in_flight) - 1), label="which call")
        permit, epoch, start = self.in_flight.pop(index)
        self.clock.advance(seconds)
        now = self.clock()
        self.m.finish(epoch, kind, start, now)
        if kind == "success":
            self.b.record_success(permit, now, now - start)
        elif kind == "failure":
            self.b.record_failure(permit, now, now - start)
        else:
            self.b.release(permit)

    @rule(
        adapter=st.sampled_from(["decorator", "call", "async", "with"]),
        kind=st.sampled_from(["ok", "fail", "ignore", "other", "503"]),
        seconds=st.sampled_from([0.0, 0.0, 0.5, 1.0, 2.0]),
    )
    def wrapped_call(self, adapter: str, kind: str, seconds: float) -> None:
        """A whole call through an adapter; the fake clock moves inside it."""
        breaker, clock = self.b, self.clock
        start = clock()
        expected = self.m.admit(start)

        def body() -> object:
            clock.advance(seconds)
            if kind == "fail":
                raise Boom
            if kind == "ignore":
                raise Ignored
            if kind == "other":
                raise Other
            return 503 if kind == "503" else "ok"

        async def async_body() -> object:
            return body()

        error: CircuitOpenError | None = None
        try:
            if adapter == "decorator":
                breaker(body)()
            elif adapter == "call":
                breaker.call(body)
            elif adapter == "async":
                asyncio.run(breaker(async_body)())
            else:
                with breaker:
                    body()
        except CircuitOpenError as exc:
            error = exc
        except (Boom, Ignored, Other):
            pass
        self._check_admission(expected, error)
        if error is None:
            if kind == "fail" or (
                kind == "503" and self.m.config.failure_on_result and adapter != "with"
            ):
                outcome = "failure"
            elif kind == "ignore":
                outcome = "ignore"
            else:
                outcome = "success"
            self.m.finish(expected[1], outcome, start, clock())

    @rule(
        op=st.sampled_from(["closed", "open", "forced_open", "disabled", "metrics_only", "reset"])
    )
    def operator(self, op: str) -> None:
        self.m.operate(op, self.clock())
        {
            "closed": self.b.transition_to_closed,
            "open": self.b.transition_to_open,
            "forced_open": self.b.transition_to_forced_open,
            "disabled": self.b.transition_to_disabled,
            "metrics_only": self.b.transition_to_metrics_only,
            "reset": self.b.reset,
        }[op]()

    @rule()
    def read_state(self) -> None:
        now = self.clock()
        self.m.due(now)
        assert self.b.state is self.m.state

    # ------------------------------------------------------------------ invariants

    @invariant()
    def matches_model(self) -> None:
        if self.breaker is None or self.model is None:
            return
        metrics = self.breaker.metrics()
        expected = self.model.snapshot(self.clock())
        actual = {key: getattr(metrics, key) for key in expected}
        assert actual == expected
        assert self.recorder.transitions == self.model.events

    @invariant()
    def half_open_admits_at_most_half_open_calls(self) -> None:
        if self.breaker is None or self.model is None:
            return
        metrics = self.breaker.metrics()
        if metrics.state is HALF_OPEN:
            admitted = metrics.probes_in_flight + metrics.window_calls
            assert admitted <= self.model.config.half_open_calls
            assert metrics.probes_in_flight >= 0


class TimeBreakerMachine(BreakerMachine):
    window_type = "time"


_SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TestCountWindowBreakerModel = BreakerMachine.TestCase
TestCountWindowBreakerModel.settings = _SETTINGS
TestTimeWindowBreakerModel = TimeBreakerMachine.TestCase
TestTimeWindowBreakerModel.settings = _SETTINGS
