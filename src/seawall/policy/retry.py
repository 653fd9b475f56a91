"""Retries: run a call again after a retryable failure, within bounds.

:class:`Retry` retries the failures you name (``on=`` is required and
keyword-only: retrying everything turns a bug into load) and is bounded twice,
by attempts and by total time, like stamina. It never sleeps past a deadline:
its own (``timeout`` after the call started) or the one in force in the
context (:func:`seawall.policy.deadline.current_deadline`), whichever is
sooner; when the next delay would reach it, it gives up at once.

Giving up re-raises the last exception itself, with a note
(``exc.add_note``) saying why (one per retry name: an exception object raised
again keeps only the latest); a failure recognized by ``on_result`` gives up
by returning the last result. A shared :class:`~seawall.policy.budget.RetryBudget`
caps retries across call sites.

The decisions live in :class:`RetryState`, a sans-I/O state machine told the
time; :class:`Retry` adds the sync and asyncio adapters (decorator, ``call``,
``acall``) and the context-manager form::

    for attempt in retry.attempts():
        with attempt:
            do_work()

The callee can read its attempt number with :func:`current_attempt`.
"""

from __future__ import annotations

import contextlib
import enum
import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeAlias, TypeVar

from ._observe import OBSERVER
from ._policy import Policy
from ._validate import require_exception_matcher, require_int, require_seconds
from .backoff import Backoff, ExponentialFullJitter
from .budget import RetryBudget
from .clock import MONOTONIC, AsyncSleep, Clock, Sleep, sync_sleep
from .clock import async_sleep as _default_async_sleep
from .deadline import current_deadline

__all__ = [
    "Attempt",
    "Retry",
    "RetryDetails",
    "RetryHook",
    "RetryState",
    "StopReason",
    "current_attempt",
    "retry_after_hint",
]

P = ParamSpec("P")
R = TypeVar("R")

_ATTEMPT: ContextVar[int] = ContextVar("seawall_attempt", default=1)
"""Number of the attempt running in this context (hedge.py sets it too)."""


def current_attempt() -> int:
    """The 1-based number of the attempt running in this context; 1 outside any retry.

    Set by :class:`Retry` (and :class:`~seawall.policy.hedge.Hedge`) around
    each attempt, so the callee can, for example, send ``x-seawall-attempt``.
    """
    return _ATTEMPT.get()


class StopReason(enum.Enum):
    """Why a retry gave up. The value is the text used in the note."""

    ATTEMPTS = "attempts exhausted"
    """The maximum number of attempts was reached."""
    TIMEOUT = "timeout"
    """The next delay would reach the retry's own ``timeout``."""
    DEADLINE = "deadline"
    """The next delay would reach the deadline in force in the context."""
    BUDGET = "retry budget exhausted"
    """The shared :class:`~seawall.policy.budget.RetryBudget` refused the retry."""


@dataclass(frozen=True, slots=True)
class RetryDetails:
    """What an ``on_retry`` hook is told before each sleep."""

    name: str
    """The retry's name."""
    attempt: int
    """Number of the attempt that just failed (the next one is ``attempt + 1``)."""
    delay: float
    """Seconds the retry is about to wait."""
    exception: BaseException | None
    """The failure, when it was an exception."""
    result: object
    """The returned value ``on_result`` rejected (``None`` for an exception)."""
    elapsed: float
    """Seconds since the call started (since the first failure when ``timeout=None``)."""


class RetryHook(Protocol):
    """An ``on_retry`` hook: called with the details before each sleep.

    Runs on the caller's thread (or task), after the delay is decided and
    before the sleep; keep it quick, as its time is not deducted from the
    sleep. What it raises propagates to the caller.
    """

    def __call__(self, details: RetryDetails) -> None:
        """Observe one retry about to happen."""


def retry_after_hint(exc: BaseException) -> float | None:
    """The default hint extractor: ``exc.retry_after`` when it is a number of seconds >= 0.

    seawall's :class:`~seawall.policy.errors.CircuitOpenError` and
    :class:`~seawall.policy.errors.RateLimitedError` carry one.
    """
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < math.inf:
        return float(value)
    return None


OnError: TypeAlias = (
    type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
)
"""What ``Retry(on=...)`` accepts: an exception type, a tuple of them, or a predicate."""

_DEFAULT_BACKOFF = ExponentialFullJitter(base=0.05, max=2.0)


class RetryState:
    """Sans-I/O retry decisions for one call: told the time, answers "wait X" or "stop".

    After each failed attempt, call :meth:`on_failure` with the current time
    (and an optional Retry-After hint); it returns the delay in seconds before
    the next attempt (and counts that attempt), or a :class:`StopReason`.
    Checks, in order: attempts left, the deadline (own ``start + timeout``
    and ``deadline``, the sooner wins; a delay that would reach it stops), and
    finally the budget, which is only asked once everything else said yes.

    >>> from seawall.policy.backoff import Constant
    >>> state = RetryState(attempts=2, backoff=Constant(0.5), rng=random.Random(0), start=0.0)
    >>> state.on_failure(now=1.0), state.attempt
    (0.5, 2)
    >>> state.on_failure(now=2.0)
    <StopReason.ATTEMPTS: 'attempts exhausted'>
    """

    __slots__ = (
        "_attempts",
        "_backoff",
        "_budget",
        "_deadline",
        "_deadline_reason",
        "_outer_deadline",
        "_previous",
        "_rng",
        "_timeout",
        "attempt",
        "start",
    )

    def __init__(
        self,
        *,
        attempts: int,
        backoff: Backoff,
        rng: random.Random,
        start: float | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.attempt = 1
        """Number of the current attempt (1-based)."""
        self.start = start
        """When the call started; ``None`` until the first failure if not given."""
        self._attempts = attempts
        self._backoff = backoff
        self._rng = rng
        self._budget = budget
        self._timeout = timeout
        self._outer_deadline = deadline
        self._previous = 0.0
        self._deadline: float | None = None
        self._deadline_reason = StopReason.DEADLINE
        if start is not None:
            self._set_deadline(start)

    def _set_deadline(self, start: float) -> None:
        own = None if self._timeout is None else start + self._timeout
        outer = self._outer_deadline
        if own is not None and (outer is None or own <= outer):
            self._deadline, self._deadline_reason = own, StopReason.TIMEOUT
        else:
            self._deadline, self._deadline_reason = outer, StopReason.DEADLINE

    @property
    def deadline(self) -> float | None:
        """The absolute time no sleep may reach, or ``None`` (unbounded in time)."""
        return self._deadline

    def on_failure(self, now: float, retry_after: float | None = None) -> float | StopReason:
        """The current attempt failed at ``now``: the delay before the next one, or why to stop.

        ``retry_after`` is a hint from the failure (seconds); the delay is
        ``max(backoff delay, retry_after)``.
        """
        if self.start is None:
            self.start = now
            self._set_deadline(now)
        attempt = self.attempt
        if attempt >= self._attempts:
            return StopReason.ATTEMPTS
        delay = self._backoff.delay(attempt, self._previous, self._rng)
        self._previous = delay
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        deadline = self._deadline
        if deadline is not None and now + delay >= deadline:
            return self._deadline_reason
        if self._budget is not None and not self._budget.try_withdraw():
            return StopReason.BUDGET
        self.attempt = attempt + 1
        return delay


class Retry(Policy):
    """Retry the failures named by ``on``, bounded by attempts and total time.

    Args:
        on: required. An exception type, a tuple of them, or a predicate on the
            exception. Only :class:`Exception` subclasses can be retried: never
            cancellation, ``KeyboardInterrupt`` or ``SystemExit``.
        attempts: total attempts including the first (``>= 1``). Default 3:
            with independent failures of probability p, the call fails with
            p**3, and during a real outage it at most triples the load (use a
            ``budget`` to bound that across callers).
        timeout: seconds from the start of the call after which no retry is
            started and no sleep may end (``> 0``), or ``None``, explicitly,
            for no time bound. Default 10 s: no caller should be held longer by
            retries of one dependency. It does not interrupt a running attempt.
        backoff: the delay strategy. Default: AWS full jitter, base 50 ms,
            cap 2 s (see :func:`seawall.policy.backoff.backoff`).
        on_result: optional predicate on a returned value; ``True`` means
            "this failed, retry" (for example an HTTP 503 response). When the
            retry gives up on such a failure it returns the last result.
        retry_after: extracts a delay hint (seconds) from an exception;
            the delay becomes ``max(backoff, hint)``. Default
            :func:`retry_after_hint` (the ``retry_after`` attribute). ``None``
            ignores hints.
        retry_after_from_result: the same for rejected results (for example
            a parsed ``Retry-After`` header).
        budget: a shared :class:`~seawall.policy.budget.RetryBudget`: each call
            deposits once, each retry withdraws or the retry gives up.
        name: used in notes and :class:`RetryDetails`.
        clock, sleep, async_sleep: time, injected (tests pass a ``FakeClock``).
        rng: random source for jitter (default: a private ``random.Random()``).
        on_retry: a :class:`RetryHook` called before each sleep.

    On giving up, the last exception is re-raised unchanged except for a note,
    e.g. ``seawall retry 'name': gave up after 3 attempts (attempts exhausted)``;
    when the budget refused, the exception also gets the attribute
    ``seawall_retry_budget_exhausted = True``.
    """

    __slots__ = (
        "_async_sleep",
        "_backoff",
        "_budget",
        "_catch",
        "_clock",
        "_on_result",
        "_on_retry",
        "_predicate",
        "_retry_after",
        "_retry_after_from_result",
        "_rng",
        "_sleep",
        "attempts_max",
        "name",
        "timeout",
    )

    def __init__(
        self,
        *,
        on: OnError,
        attempts: int = 3,
        timeout: float | None = 10.0,
        backoff: Backoff = _DEFAULT_BACKOFF,
        on_result: Callable[[Any], bool] | None = None,
        retry_after: Callable[[BaseException], float | None] | None = retry_after_hint,
        retry_after_from_result: Callable[[Any], float | None] | None = None,
        budget: RetryBudget | None = None,
        name: str = "retry",
        clock: Clock = MONOTONIC,
        sleep: Sleep = sync_sleep,
        async_sleep: AsyncSleep = _default_async_sleep,
        rng: random.Random | None = None,
        on_retry: RetryHook | None = None,
    ) -> None:
        types, self._predicate = require_exception_matcher("Retry", "on", on)
        # A predicate is only ever shown Exception instances, never cancellation.
        self._catch = types if self._predicate is None else (Exception,)
        require_int("Retry", "attempts", attempts, minimum=1)
        require_seconds("Retry", "timeout", timeout, allow_none=True)
        if not isinstance(backoff, Backoff):
            raise ValueError(f"Retry: backoff must have delay() and max, got {backoff!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"Retry: name must be a non-empty string, got {name!r}")
        self.attempts_max = attempts
        """Total attempts allowed, including the first."""
        self.timeout = None if timeout is None else float(timeout)
        """Total time bound in seconds, or ``None``."""
        self.name = name
        """The retry's name."""
        self._backoff = backoff
        self._on_result = on_result
        self._retry_after = retry_after
        self._retry_after_from_result = retry_after_from_result
        self._budget = budget
        self._clock = clock
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._rng = rng if rng is not None else random.Random()
        self._on_retry = on_retry

    def __repr__(self) -> str:
        on = self._predicate if self._predicate is not None else self._catch
        return (
            f"Retry(name={self.name!r}, on={on!r}, attempts={self.attempts_max!r}, "
            f"timeout={self.timeout!r}, backoff={self._backoff!r}, budget={self._budget!r})"
        )

    # -- the decisions shared by every adapter (only run after a failure) --

    def _new_state(self, start: float | None) -> RetryState:
        return RetryState(
            attempts=self.attempts_max,
            backoff=self._backoff,
            rng=self._rng,
            start=start,
            timeout=self.timeout,
            deadline=current_deadline(),
            budget=self._budget,
        )

    def _after_exception(self, state: RetryState, exc: BaseException) -> float | None:
        """Decide after a retryable exception: the delay, or ``None`` (note added: re-raise)."""
        now = self._clock()
        hint = None if self._retry_after is None else self._retry_after(exc)
        attempt = state.attempt
        decision = state.on_failure(now, hint)
        if isinstance(decision, StopReason):
            prefix = f"seawall retry {self.name!r}: "
            notes = getattr(exc, "__notes__", None)
            if isinstance(notes, list) and notes:
                # One exception object raised again and again (a shared
                # sentinel) keeps one note from this retry: the latest.
                notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(prefix))]
            exc.add_note(
                f"{prefix}gave up after {attempt} "
                f"attempt{'s' if attempt != 1 else ''} ({decision.value})"
            )
            if decision is StopReason.BUDGET:
                with contextlib.suppress(AttributeError):  # an exception type with __slots__
                    exc.seawall_retry_budget_exhausted = True  # type: ignore[attr-defined]
            observer = OBSERVER.get()
            if observer is not None:
                observer.gave_up(decision, exc)
            return None
        observer = OBSERVER.get()
        if self._on_retry is not None or observer is not None:
            start = state.start if state.start is not None else now
            details = RetryDetails(self.name, attempt, decision, exc, None, now - start)
            if self._on_retry is not None:
                self._on_retry(details)
            if observer is not None:
                observer.retrying(details)
        return decision

    def _after_result(self, state: RetryState, result: object) -> float | None:
        """Decide after a rejected result: the delay, or ``None`` (return the result)."""
        now = self._clock()
        hint = (
            None if self._retry_after_from_result is None else self._retry_after_from_result(result)
        )
        attempt = state.attempt
        decision = state.on_failure(now, hint)
        observer = OBSERVER.get()
        if isinstance(decision, StopReason):
            if observer is not None:
                observer.gave_up(decision, None)
            return None
        if self._on_retry is not None or observer is not None:
            start = state.start if state.start is not None else now
            details = RetryDetails(self.name, attempt, decision, None, result, now - start)
            if self._on_retry is not None:
                self._on_retry(details)
            if observer is not None:
                observer.retrying(details)
        return decision

    def _is_retryable(self, exc: BaseException) -> bool:
        return isinstance(exc, self._catch) and (self._predicate is None or self._predicate(exc))

    # -- adapters --

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` retried under this policy, for synchronous code."""
        # Everything the hot path needs is bound here, once, so a call that
        # succeeds costs a context-variable set/reset, one clock read (only if
        # timed) and a budget deposit (only if there is a budget).
        catch, predicate, check = self._catch, self._predicate, self._on_result
        clock = self._clock if self.timeout is not None else None
        budget, sleep = self._budget, self._sleep
        new_state, after_exception, after_result = (
            self._new_state,
            self._after_exception,
            self._after_result,
        )
        set_attempt, reset_attempt = _ATTEMPT.set, _ATTEMPT.reset

        def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
            start = None if clock is None else clock()
            if budget is not None:
                budget.deposit()
            state: RetryState | None = None
            attempt = 1
            while True:
                token = set_attempt(attempt)
                try:
                    result = fn(*args, **kwargs)
                except catch as exc:
                    if predicate is not None and not predicate(exc):
                        raise
                    if state is None:
                        state = new_state(start)
                    delay = after_exception(state, exc)
                    if delay is None:
                        raise
                else:
                    if check is None or not check(result):
                        return result
                    if state is None:
                        state = new_state(start)
                    delay = after_result(state, result)
                    if delay is None:
                        return result
                finally:
                    reset_attempt(token)
                if delay > 0:
                    sleep(delay)
                attempt += 1

        return retrying

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Return the coroutine function ``fn`` retried under this policy, for asyncio."""
        catch, predicate, check = self._catch, self._predicate, self._on_result
        clock = self._clock if self.timeout is not None else None
        budget, sleep = self._budget, self._async_sleep
        new_state, after_exception, after_result = (
            self._new_state,
            self._after_exception,
            self._after_result,
        )
        set_attempt, reset_attempt = _ATTEMPT.set, _ATTEMPT.reset

        async def retrying(*args: P.args, **kwargs: P.kwargs) -> R:
            start = None if clock is None else clock()
            if budget is not None:
                budget.deposit()
            state: RetryState | None = None
            attempt = 1
            while True:
                token = set_attempt(attempt)
                try:
                    result = await fn(*args, **kwargs)
                except catch as exc:
                    if predicate is not None and not predicate(exc):
                        raise
                    if state is None:
                        state = new_state(start)
                    delay = after_exception(state, exc)
                    if delay is None:
                        raise
                else:
                    if check is None or not check(result):
                        return result
                    if state is None:
                        state = new_state(start)
                    delay = after_result(state, result)
                    if delay is None:
                        return result
                finally:
                    try:  # noqa: SIM105 (hot path: suppress() costs an object and two calls)
                        reset_attempt(token)
                    except ValueError:
                        # Closed (by the garbage collector) from another
                        # context: ours is gone, there is nothing to restore.
                        pass
                if delay > 0:
                    await sleep(delay)
                attempt += 1

        return retrying

    def attempts(self) -> Iterator[Attempt]:
        """Iterate over attempts, for a block of code instead of a function::

            for attempt in retry.attempts():
                with attempt:
                    ...

        ``with attempt`` swallows a retryable exception when another attempt
        will follow (the iterator then sleeps and yields it), and lets it
        propagate, annotated, when the retry gives up. A block that completes
        ends the iteration. ``on_result`` does not apply here (there is no result).
        """
        return _Attempts(self)

    def attempts_async(self) -> AsyncIterator[Attempt]:
        """Like :meth:`attempts`, sleeping with ``async_sleep``::

            async for attempt in retry.attempts_async():
                with attempt:
                    await ...
        """
        return _AsyncAttempts(self)


class Attempt:
    """One attempt of :meth:`Retry.attempts`; use it as a context manager around the work."""

    __slots__ = ("_delay", "_owner", "_token", "number")

    def __init__(self, number: int, owner: _Attempts | _AsyncAttempts) -> None:
        self.number = number
        """1-based number of this attempt."""
        self._owner = owner
        self._token: Token[int] | None = None
        self._delay: float | None = None

    def __repr__(self) -> str:
        return f"<Attempt number={self.number}>"

    def __enter__(self) -> Attempt:
        self._token = _ATTEMPT.set(self.number)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._token is not None:
            _ATTEMPT.reset(self._token)
            self._token = None
        if exc is None:
            return False
        owner = self._owner
        retry = owner.retry
        if not retry._is_retryable(exc):
            return False
        if owner.state is None:
            owner.state = retry._new_state(owner.start)
        self._delay = retry._after_exception(owner.state, exc)
        return self._delay is not None


class _Attempts:
    """The iterator behind :meth:`Retry.attempts`."""

    __slots__ = ("_last", "retry", "start", "state")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.start = None if retry.timeout is None else retry._clock()
        self.state: RetryState | None = None
        self._last: Attempt | None = None
        if retry._budget is not None:
            retry._budget.deposit()

    def __iter__(self) -> _Attempts:
        return self

    def __next__(self) -> Attempt:
        last = self._last
        if last is None:
            number = 1
        else:
            if last._delay is None:
                raise StopIteration
            if last._delay > 0:
                self.retry._sleep(last._delay)
            number = last.number + 1
        self._last = Attempt(number, self)
        return self._last


class _AsyncAttempts:
    """The async iterator behind :meth:`Retry.attempts_async`."""

    __slots__ = ("_last", "retry", "start", "state")

    def __init__(self, retry: Retry) -> None:
        self.retry = retry
        self.start = None if retry.timeout is None else retry._clock()
        self.state: RetryState | None = None
        self._last: Attempt | None = None
        if retry._budget is not None:
            retry._budget.deposit()

    def __aiter__(self) -> _AsyncAttempts:
        return self

    async def __anext__(self) -> Attempt:
        last = self._last
        if last is None:
            number = 1
        else:
            if last._delay is None:
                raise StopAsyncIteration
            if last._delay > 0:
                await self.retry._async_sleep(last._delay)
            number = last.number + 1
        self._last = Attempt(number, self)
        return self._last

