"""Pipeline: composition order, sync and asyncio, recommended order, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import pytest

from seawall.policy._policy import Policy
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.clock import FakeClock
from seawall.policy.errors import CircuitOpenError
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry, current_attempt

P = ParamSpec("P")
R = TypeVar("R")


class Recorder(Policy):
    """A policy that logs enter/exit around the call, to observe nesting."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            self.log.append(f"{self.name}>")
            try:
                return fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return wrapped

    def wrap_async(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        async def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
            self.log.append(f"{self.name}>")
            try:
                return await fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")

        return wrapped


def test_first_policy_is_outermost_sync() -> None:
    log: list[str] = []
    pipeline = Pipeline(Recorder("a", log), Recorder("b", log), Recorder("c", log))

    @pipeline
    def work(x: int) -> int:
        log.append("call")
        return x * 2

    assert work(21) == 42
    assert log == ["a>", "b>", "c>", "call", "<c", "<b", "<a"]
    assert work.__name__ == "work"


def test_first_policy_is_outermost_async() -> None:
    log: list[str] = []
    pipeline = Pipeline(Recorder("a", log), Recorder("b", log))

    @pipeline
    async def work(x: int) -> int:
        log.append("call")
        return x + 1

    assert asyncio.run(work(1)) == 2
    assert log == ["a>", "b>", "call", "<b", "<a"]


def test_empty_pipeline_passes_through() -> None:
    pipeline = Pipeline()
    assert pipeline.call(lambda: 5) == 5

    async def five() -> int:
        return 5

    assert asyncio.run(pipeline.acall(five)) == 5


def test_nested_pipelines_compose() -> None:
    log: list[str] = []
    inner = Pipeline(Recorder("b", log))
    outer = Pipeline(Recorder("a", log), inner)
    assert outer.call(lambda: "x") == "x"
    assert log == ["a>", "b>", "<b", "<a"]


def test_recommended_order_and_skips() -> None:
    log: list[str] = []
    fallback, retry, breaker = Recorder("fb", log), Recorder("re", log), Recorder("br", log)
    bulkhead, timeout = Recorder("bh", log), Recorder("to", log)
    pipeline = Pipeline.recommended(
        timeout=timeout, bulkhead=bulkhead, breaker=breaker, retry=retry, fallback=fallback
    )
    assert pipeline.policies == (fallback, retry, breaker, bulkhead, timeout)
    assert Pipeline.recommended(retry=retry, timeout=timeout).policies == (retry, timeout)


def test_rejects_non_policies_with_position() -> None:
    with pytest.raises(ValueError, match=r"policies\[1\] must be a seawall Policy, got 'oops'"):
        Pipeline(Recorder("a", []), "oops")  # type: ignore[arg-type]


def test_retry_sees_each_attempt_through_the_breaker() -> None:
    """Retry outside the breaker: the breaker counts every attempt, the callee sees its number."""
    clock = FakeClock()
    breaker = CircuitBreaker("dep", window_size=4, minimum_calls=4, clock=clock)
    retry = Retry(on=ConnectionError, attempts=3, clock=clock, sleep=clock.sleep)
    seen: list[int] = []

    @Pipeline(retry, breaker)
    def flaky() -> str:
        seen.append(current_attempt())
        if len(seen) < 3:
            raise ConnectionError("refused")
        return "ok"

    assert flaky() == "ok"
    assert seen == [1, 2, 3]
    metrics = breaker.metrics()
    assert (metrics.failed_calls, metrics.successful_calls) == (2, 1)


def test_open_breaker_inside_retry_fails_fast_with_its_error() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("dep", window_size=2, minimum_calls=2, clock=clock)
    calls = 0

    def boom() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            breaker.call(boom)
    retry = Retry(on=ConnectionError, attempts=3, clock=clock, sleep=clock.sleep)
    with pytest.raises(CircuitOpenError) as info:
        Pipeline(retry, breaker).call(boom)
    assert calls == 2  # the open breaker never let the call run
    assert info.value.name == "dep"
