"""Tests for seawall.policy.throttle: SRE-book client-side throttling."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy.clock import FakeClock
from seawall.policy.errors import CircuitOpenError, DeadlineExceeded, ThrottledError
from seawall.policy.throttle import AdaptiveThrottle, ThrottleConfig, default_rejected_on

ALWAYS_ALLOW = 0.999999  # a draw above any probability reached in these tests


def record(throttle: AdaptiveThrottle, now: float, *, accepted: int, rejected: int) -> None:
    """Attempt and record ``accepted + rejected`` requests at ``now`` (all allowed)."""
    for i in range(accepted + rejected):
        assert throttle.allow(now, ALWAYS_ALLOW)
        if i < accepted:
            throttle.on_accepted(now)
        else:
            throttle.on_rejected(now)


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0.5}, "AdaptiveThrottle: k must be a finite number >= 1, got 0.5"),
        ({"k": math.inf}, "k must be a finite number >= 1, got inf"),
        ({"k": math.nan}, "k must be .*got nan"),
        ({"window": 0}, "AdaptiveThrottle: window must be a finite number > 0, got 0"),
        ({"window": -1.0}, "window must be .*got -1.0"),
        ({"buckets": 0}, "AdaptiveThrottle: buckets must be an int >= 1, got 0"),
        ({"buckets": 2.0}, "buckets must be an int >= 1, got 2.0"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveThrottle(**kwargs)


def test_defaults() -> None:
    throttle = AdaptiveThrottle()
    assert throttle.config == ThrottleConfig(2.0, 120.0, 24, "throttle")
    AdaptiveThrottle(k=1)  # the most aggressive setting is valid


# --------------------------------------------------------------------------- the formula


def test_no_rejection_while_the_backend_accepts() -> None:
    throttle = AdaptiveThrottle()
    assert throttle.rejection_probability(0.0) == 0.0
    record(throttle, 0.0, accepted=100, rejected=0)
    assert throttle.rejection_probability(0.0) == 0.0
    assert throttle.allow(0.0, 0.0)


def test_exact_probability() -> None:
    throttle = AdaptiveThrottle(k=2.0)
    record(throttle, 1.0, accepted=3, rejected=7)
    # requests = 10, accepts = 3: (10 - 2*3) / (10 + 1)
    assert throttle.rejection_probability(1.0) == (10 - 6) / 11
    m = throttle.metrics(1.0)
    assert (m.requests, m.accepts, m.backend_rejects) == (10, 3, 7)
    assert m.probability == 4 / 11


def test_k_one_is_more_aggressive() -> None:
    aggressive, lenient = AdaptiveThrottle(k=1.0), AdaptiveThrottle(k=3.0)
    for throttle in (aggressive, lenient):
        record(throttle, 0.0, accepted=5, rejected=15)
    assert aggressive.rejection_probability(0.0) == (20 - 5) / 21
    assert lenient.rejection_probability(0.0) == (20 - 15) / 21


def test_local_rejections_count_as_requests() -> None:
    throttle = AdaptiveThrottle(k=2.0)
    record(throttle, 0.0, accepted=0, rejected=4)
    p = throttle.rejection_probability(0.0)
    assert p == 4 / 5
    assert not throttle.allow(0.0, p - 0.01)  # rejected locally (u < p)...
    assert throttle.rejection_probability(0.0) == 5 / 6  # ...and counted as a request
    assert throttle.allow(0.0, 5 / 6)  # u == p is allowed
    assert throttle.metrics(0.0).requests == 6


def test_u_must_be_a_unit_draw() -> None:
    throttle = AdaptiveThrottle()
    for u in (-0.1, 1.0, math.nan):
        with pytest.raises(ValueError, match="u must be in"):
            throttle.allow(0.0, u)


# --------------------------------------------------------------------------- the window


def test_window_expiry_by_bucket() -> None:
    throttle = AdaptiveThrottle(window=10.0, buckets=5)  # 2 s buckets
    record(throttle, 0.0, accepted=0, rejected=4)  # bucket [0, 2)
    record(throttle, 4.5, accepted=0, rejected=2)  # bucket [4, 6)
    assert throttle.metrics(9.99).requests == 6
    assert throttle.metrics(10.0).requests == 2  # the [0, 2) bucket has left the window
    assert throttle.rejection_probability(10.0) == 2 / 3
    assert throttle.metrics(13.99).requests == 2
    assert throttle.metrics(14.0).requests == 0
    assert throttle.rejection_probability(14.0) == 0.0


def test_window_cleared_after_a_long_silence() -> None:
    throttle = AdaptiveThrottle(window=10.0, buckets=5)
    record(throttle, 0.0, accepted=1, rejected=9)
    assert throttle.rejection_probability(1000.0) == 0.0
    record(throttle, 1000.0, accepted=0, rejected=1)
    assert throttle.metrics(1000.0).requests == 1


def test_late_timestamps_count_in_the_newest_bucket() -> None:
    throttle = AdaptiveThrottle(window=10.0, buckets=5)
    record(throttle, 5.0, accepted=0, rejected=1)
    record(throttle, 3.0, accepted=0, rejected=1)  # another thread read the clock earlier
    assert throttle.metrics(5.0).requests == 2
    assert throttle.metrics(14.0).requests == 0


@given(
    k=st.floats(min_value=1.0, max_value=10.0),
    ops=st.lists(
        st.tuples(
            st.sampled_from(["allow", "accept", "reject"]),
            st.floats(min_value=0.0, max_value=30.0),
            st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
        ),
        max_size=200,
    ),
)
def test_probability_always_in_unit_interval(
    k: float, ops: list[tuple[str, float, float]]
) -> None:
    throttle = AdaptiveThrottle(k=k, window=60.0, buckets=6)
    now = 0.0
    for op, dt, u in ops:
        now += dt
        if op == "allow":
            throttle.allow(now, u)
        elif op == "accept":
            throttle.on_accepted(now)
        else:
            throttle.on_rejected(now)
        p = throttle.rejection_probability(now)
        assert 0.0 <= p < 1.0
        m = throttle.metrics(now)
        assert m.requests == sum(throttle._ring_requests)
        assert m.accepts == sum(throttle._ring_accepts)


# --------------------------------------------------------------------------- adapters


def test_default_rejected_on() -> None:
    assert default_rejected_on(ConnectionRefusedError())
    assert default_rejected_on(TimeoutError())
    assert default_rejected_on(DeadlineExceeded())
    assert default_rejected_on(CircuitOpenError("b", "open", None, None))
    assert not default_rejected_on(KeyError())


def _throttle(draws: list[float], **kwargs: Any) -> tuple[AdaptiveThrottle, FakeClock]:
    clock = FakeClock()
    it = iter(draws)
    return AdaptiveThrottle(clock=clock, rng=lambda: next(it), name="api", **kwargs), clock


def test_sync_adapter_records_outcomes_and_rejects_locally() -> None:
    throttle, _ = _throttle([0.9] * 5 + [0.1])
    calls = 0

    @throttle
    def backend(fail: BaseException | None) -> str:
        nonlocal calls
        calls += 1
        if fail is not None:
            raise fail
        return "ok"

    assert backend(None) == "ok"
    with pytest.raises(KeyError):
        backend(KeyError())  # an answer: accepted
    for _ in range(3):
        with pytest.raises(ConnectionError):
            backend(ConnectionError())  # overload: rejected
    m = throttle.metrics()
    assert (m.requests, m.accepts, m.backend_rejects) == (5, 2, 3)
    assert m.probability == pytest.approx((5 - 4) / 6)
    with pytest.raises(ThrottledError) as info:
        backend(None)  # draw 0.1 < 1/6
    assert info.value.name == "api"
    assert info.value.probability == pytest.approx(1 / 6)
    assert calls == 5
    assert throttle.metrics().requests == 6


def test_custom_rejected_on() -> None:
    throttle, _ = _throttle([0.9] * 2, rejected_on=lambda e: isinstance(e, KeyError))
    def fail(exc: Exception) -> None:
        raise exc

    for exc in (KeyError(), ConnectionError()):
        with pytest.raises(type(exc)):
            throttle.call(fail, exc)
    m = throttle.metrics()
    assert (m.accepts, m.backend_rejects) == (1, 1)


def test_async_adapter_and_cancellation_records_nothing() -> None:
    throttle, _ = _throttle([0.9] * 4)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def fails() -> None:
        raise TimeoutError

    async def ok() -> int:
        return 1

    async def main() -> None:
        assert await throttle.acall(ok) == 1
        with pytest.raises(TimeoutError):
            await throttle.acall(fails)
        task = asyncio.create_task(throttle.acall(hangs))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    m = throttle.metrics()
    assert (m.requests, m.accepts, m.backend_rejects) == (3, 1, 1)


def test_context_managers() -> None:
    throttle, _ = _throttle([0.9] * 3 + [0.0])
    with throttle:
        pass
    with pytest.raises(ConnectionError), throttle:
        raise ConnectionError

    async def main() -> None:
        with pytest.raises(TimeoutError):
            async with throttle:
                raise TimeoutError

    asyncio.run(main())
    m = throttle.metrics()
    assert (m.requests, m.accepts, m.backend_rejects) == (3, 1, 2)
    assert m.probability == (3 - 2) / 4
    with pytest.raises(ThrottledError), throttle:
        pytest.fail("a locally rejected block must not run")
