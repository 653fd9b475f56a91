"""Tests for seawall.policy.fallback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from seawall.policy.errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    SeawallError,
    ThrottledError,
)
from seawall.policy.fallback import Fallback

SEAWALL_ERRORS: list[SeawallError] = [
    CircuitOpenError("b", "open", None, None),
    BulkheadFullError("b", 1, "queue_full"),
    DeadlineExceeded(),
    RateLimitedError("r", 1.0),
    ThrottledError("t", 0.5),
]


def raiser(exc: BaseException) -> Any:
    def fn(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return fn


def async_raiser(exc: BaseException) -> Any:
    async def fn(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        raise exc

    return fn


# --------------------------------------------------------------------------- construction


def test_exactly_one_of_value_and_function() -> None:
    with pytest.raises(ValueError, match="exactly one of value= and function=, got neither"):
        Fallback()
    with pytest.raises(ValueError, match=r"got both \(value=1\)"):
        Fallback(value=1, function=lambda e: 2)
    Fallback(value=None)  # None is a value


@pytest.mark.parametrize(
    "on", [int, (ValueError, "x"), KeyboardInterrupt, (BaseException,), "ValueError", 3, ()]
)
def test_on_validation(on: Any) -> None:
    with pytest.raises(ValueError, match="Fallback: on must"):
        Fallback(value=0, on=on)


def test_function_and_on_result_must_be_callable() -> None:
    with pytest.raises(ValueError, match="function must be callable, got 3"):
        Fallback(function=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_result must be callable"):
        Fallback(value=0, on_result=3)  # type: ignore[arg-type]


def test_not_a_context_manager() -> None:
    assert not hasattr(Fallback, "__enter__")
    assert not hasattr(Fallback, "__aenter__")


# --------------------------------------------------------------------------- sync


@pytest.mark.parametrize("exc", SEAWALL_ERRORS, ids=lambda e: type(e).__name__)
def test_default_handles_every_seawall_refusal(exc: SeawallError) -> None:
    assert Fallback(value="cached").call(raiser(exc)) == "cached"


def test_default_lets_the_dependencys_own_errors_through() -> None:
    with pytest.raises(ValueError, match="bug"):
        Fallback(value="cached").call(raiser(ValueError("bug")))


def test_success_is_returned_unchanged() -> None:
    @Fallback(value=0)
    def add(a: int, b: int) -> int:
        return a + b

    assert add(2, b=3) == 5
    assert add.__name__ == "add"


def test_on_types_tuple_and_predicate() -> None:
    assert Fallback(value=1, on=KeyError).call(raiser(KeyError())) == 1
    assert Fallback(value=1, on=(KeyError, OSError)).call(raiser(ConnectionError())) == 1
    with pytest.raises(IndexError):
        Fallback(value=1, on=(KeyError,)).call(raiser(IndexError()))
    only_404 = Fallback(value=None, on=lambda e: getattr(e, "status", None) == 404)

    class HTTPError(Exception):
        def __init__(self, status: int) -> None:
            self.status = status

    assert only_404.call(raiser(HTTPError(404))) is None
    with pytest.raises(HTTPError):
        only_404.call(raiser(HTTPError(500)))


def test_function_receives_the_exception() -> None:
    seen: list[BaseException] = []
    error = RateLimitedError("r", 2.5)

    def degrade(exc: BaseException) -> str:
        seen.append(exc)
        return "later"

    assert Fallback(function=degrade).call(raiser(error)) == "later"
    assert seen == [error]


def test_on_result_replaces_bad_results() -> None:
    fallback = Fallback(function=lambda r: f"fixed {r}", on_result=lambda r: r < 0)
    fixed: Any = fallback.call(lambda: -1)
    assert fixed == "fixed -1"
    assert fallback.call(lambda: 1) == 1


def test_base_exceptions_always_pass_through() -> None:
    catch_all = Fallback(value="x", on=lambda e: True)
    for exc in (KeyboardInterrupt(), SystemExit(), GeneratorExit(), asyncio.CancelledError()):
        with pytest.raises(type(exc)):
            catch_all.call(raiser(exc))


def test_an_error_in_the_function_propagates_with_context() -> None:
    def broken(exc: BaseException) -> None:
        raise RuntimeError("fallback broke")

    with pytest.raises(RuntimeError, match="fallback broke") as info:
        Fallback(function=broken).call(raiser(DeadlineExceeded()))
    assert isinstance(info.value.__context__, DeadlineExceeded)


def test_async_function_refused_by_the_sync_adapter() -> None:
    async def degrade(exc: BaseException) -> int:
        return 1

    with pytest.raises(TypeError, match="is async"):
        Fallback(function=degrade).wrap_sync(lambda: 1)

    def sneaky(exc: BaseException) -> Any:
        return degrade(exc)  # returns a coroutine without being `async def`

    with pytest.raises(TypeError, match="returned an awaitable"):
        Fallback(function=sneaky).call(raiser(DeadlineExceeded()))


# --------------------------------------------------------------------------- asyncio


def test_async_value_function_and_async_function() -> None:
    async def degrade(exc: BaseException) -> str:
        await asyncio.sleep(0)
        return f"async {type(exc).__name__}"

    async def main() -> None:
        assert await Fallback(value=7).acall(async_raiser(DeadlineExceeded())) == 7
        assert await Fallback(function=lambda e: 8).acall(async_raiser(DeadlineExceeded())) == 8
        assert (
            await Fallback(function=degrade).acall(async_raiser(ThrottledError("t", 0.1)))
            == "async ThrottledError"
        )
        with pytest.raises(ValueError, match="own"):
            await Fallback(value=1).acall(async_raiser(ValueError("own")))

        @Fallback(function=degrade, on_result=lambda r: r is None)
        async def maybe(x: int | None) -> Any:
            return x

        assert await maybe(3) == 3
        assert await maybe(None) == "async NoneType"

    asyncio.run(main())


def test_async_cancellation_passes_through() -> None:
    catch_all = Fallback(value="x", on=lambda e: True)

    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def main() -> None:
        task = asyncio.create_task(catch_all.acall(hangs))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(KeyboardInterrupt):
            await catch_all.acall(async_raiser(KeyboardInterrupt()))

    asyncio.run(main())
