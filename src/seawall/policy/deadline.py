"""Deadlines carried in a context variable, and the Timeout that enforces them.

Inside a process a deadline is an absolute monotonic time (on the clock the
policies are given); across the network it travels as time remaining, in the
``x-seawall-deadline-ms`` header. Nested scopes take the sooner deadline.

Two operations, named apart (as trio names ``move_on_after`` and
``fail_after`` apart, rather than adding a flag):

* :func:`deadline_scope` only *publishes* a deadline. Nothing happens when it
  passes: the work inside sees it through :func:`current_deadline` and
  :func:`remaining` (seawall's HTTP client turns it into socket timeouts; retry
  and bulkhead never wait past it) and is free to stop early.
* :class:`Timeout` publishes the deadline *and enforces it*: it fails fast when
  the deadline has already passed, cancels asyncio work when it expires, and
  raises :class:`~seawall.policy.errors.DeadlineExceeded` ("fail"). To "move on"
  instead, catch that error where you want to carry on.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ._policy import Policy
from ._validate import require_number, require_seconds
from .clock import MONOTONIC, Clock
from .errors import DeadlineExceeded

__all__ = [
    "HEADER",
    "MAX_HEADER_MS",
    "Timeout",
    "TimeoutConfig",
    "current_deadline",
    "deadline_scope",
    "decode_deadline",
    "encode_deadline",
    "remaining",
]

P = ParamSpec("P")
R = TypeVar("R")

_DEADLINE: ContextVar[float | None] = ContextVar("seawall_deadline", default=None)

HEADER = "x-seawall-deadline-ms"
"""The header that carries the time left for a request, in whole milliseconds."""

MAX_HEADER_MS = 10 * 24 * 3600 * 1000
"""The largest value :func:`decode_deadline` accepts (10 days, in milliseconds)."""

# Float slack when turning seconds into whole milliseconds: absorbs rounding so
# that a decoded header re-encodes to the same digits (at most 1 µs generous).
_MS_SLACK = 1e-3


def current_deadline() -> float | None:
    """The absolute monotonic deadline in force in this context, or ``None``."""
    return _DEADLINE.get()


def remaining(clock: Clock = MONOTONIC) -> float | None:
    """Seconds left before the current deadline (may be negative), or ``None`` if none is set."""
    deadline = _DEADLINE.get()
    if deadline is None:
        return None
    return deadline - clock()


# --- scopes entered with `with` ------------------------------------------------
#
# A scope or a Timeout object may be shared (one Timeout decorating many tasks),
# so what one `with` entry must remember until its exit (the contextvar token,
# the timer) lives in the context, not on the object: a stack of entries in a
# context variable, so each thread and each task has its own.


@dataclass(slots=True)
class _Expiry:
    """The timer callback of one asyncio timeout: cancels the task once."""

    task: asyncio.Task[Any]
    expired: bool = False

    def fire(self) -> None:
        if not self.task.done():
            self.expired = True
            self.task.cancel()


@dataclass(slots=True)
class _Entry:
    owner: object
    token: Token[float | None]
    deadline: float | None
    own: bool
    handle: asyncio.TimerHandle | None = None
    expiry: _Expiry | None = None
    cancelling: int = 0


_ENTERED: ContextVar[tuple[_Entry, ...]] = ContextVar("seawall_deadline_entered", default=())


def _push(entry: _Entry) -> None:
    _ENTERED.set((*_ENTERED.get(), entry))


def _pop(owner: object) -> _Entry:
    stack = _ENTERED.get()
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].owner is owner:
            _ENTERED.set(stack[:i] + stack[i + 1 :])
            return stack[i]
    raise RuntimeError(f"{owner!r} exited without having been entered in this context")


class deadline_scope:
    """Publish a deadline for the work inside a ``with`` (or ``async with``) block.

    The deadline in force inside is ``min(parent, new)``: a nested scope can
    only make it sooner. ``seconds`` is counted from entering the block; ``at``
    is an absolute time on ``clock``; with neither, the parent deadline (if
    any) simply stays in force. ``math.inf`` means "no deadline of my own".

    The scope enforces nothing: when the deadline passes, the block keeps
    running. The work sees the deadline through :func:`current_deadline` /
    :func:`remaining` and stops itself (seawall's HTTP client uses it as its
    socket timeouts). Use :class:`Timeout` to fail when it passes.

    ``with`` returns the deadline in force inside (``None`` when there is none)::

        with deadline_scope(2.0) as deadline:
            call_downstream(timeout=remaining())
    """

    __slots__ = ("_at", "_clock", "_seconds")

    def __init__(
        self, seconds: float | None = None, *, at: float | None = None, clock: Clock = MONOTONIC
    ) -> None:
        if seconds is not None and at is not None:
            raise ValueError(
                f"deadline_scope: give seconds or at, not both (got {seconds!r} and {at!r})"
            )
        if seconds is not None:
            require_seconds("deadline_scope", "seconds", seconds, allow_zero=True, allow_inf=True)
        if at is not None:
            require_number("deadline_scope", "at", at, finite=False)
        self._seconds = seconds
        self._at = at
        self._clock = clock

    def _deadline(self) -> float | None:
        parent = _DEADLINE.get()
        if self._seconds is not None:
            new: float | None = self._clock() + self._seconds
        else:
            new = self._at
        if new is None or new == math.inf:
            return parent
        if parent is None or new < parent:
            return new
        return parent

    def __enter__(self) -> float | None:
        deadline = self._deadline()
        _push(_Entry(self, _DEADLINE.set(deadline), deadline, own=False))
        return deadline

    def __exit__(self, *exc_info: object) -> None:
        _DEADLINE.reset(_pop(self).token)

    async def __aenter__(self) -> float | None:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__()

    def __repr__(self) -> str:
        what = f"seconds={self._seconds!r}" if self._seconds is not None else f"at={self._at!r}"
        return f"deadline_scope({what})"


# --- Timeout -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """Validated settings of a :class:`Timeout`.

    Attributes:
        seconds: the time allowed for each call, from its start (finite, > 0).
        name: shown in errors and metrics.
    """

    seconds: float
    name: str = "timeout"

    def __post_init__(self) -> None:
        require_seconds("Timeout", "seconds", self.seconds)


def _coroutine_function(
    fn: Callable[P, Awaitable[R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """``fn`` (which returns some awaitable) as an ``async def``."""

    async def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return await fn(*args, **kwargs)

    return call


class Timeout(Policy):
    """Bound each call to ``seconds`` (and to any sooner deadline already in force).

    A Timeout publishes the deadline exactly like :func:`deadline_scope`
    (``min(parent, now + seconds)``) and enforces it. It is the "fail"
    operation: when the deadline passes, the caller gets
    :class:`~seawall.policy.errors.DeadlineExceeded` (whose ``timeout`` is
    ``seconds`` when this Timeout's own deadline was the one that passed, and
    ``None`` when it was an inherited one).

    Before the call, in both flavours: if the deadline in force has already
    passed, it raises at once and the call is not made.

    **asyncio** (decorator, :meth:`acall`, ``async with``): when the deadline
    expires, the work is cancelled (``task.cancel()`` from a loop timer) and
    the resulting ``CancelledError`` is turned into ``DeadlineExceeded``, like
    :func:`asyncio.timeout`. A cancellation that comes from outside is never
    swallowed: it propagates as ``CancelledError``. If the work suppresses the
    cancellation and returns a value anyway, that value is returned. As a
    decorator, the timer is armed lazily: the coroutine's first step is run
    directly and a call that completes without suspending never creates a
    timer (that keeps the cost of a fast call to a few hundred nanoseconds).

    **sync** (decorator, :meth:`call`, ``with``): Python cannot safely interrupt
    a running thread, so the sync Timeout does not stop the work. Exactly:
    (1) it fails fast before the call if the deadline has passed; (2) it makes
    the deadline visible to the work through the context variable
    (:func:`remaining`, which seawall's HTTP client uses as its socket
    timeouts); (3) after the call returns, if the deadline has passed, it
    raises ``DeadlineExceeded`` and the late result is discarded. An exception
    raised by the work propagates unchanged, late or not.

    >>> from seawall.policy.clock import FakeClock
    >>> clock = FakeClock()
    >>> @Timeout(2.0, clock=clock)
    ... def slow() -> str:
    ...     clock.advance(3.0)
    ...     return "late"
    >>> slow()
    Traceback (most recent call last):
    ...
    seawall.policy.errors.DeadlineExceeded: timeout 'timeout': deadline of 2.0s exceeded
    """

    __slots__ = ("_clock", "_name", "_seconds", "config")

    def __init__(self, seconds: float, *, clock: Clock = MONOTONIC, name: str = "timeout") -> None:
        self.config = TimeoutConfig(seconds, name)
        """The validated settings."""
        self._seconds = float(seconds)
        self._clock = clock
        self._name = name

    def __repr__(self) -> str:
        return f"Timeout({self._seconds!r}, name={self._name!r})"

    def _exceeded(self, own: bool) -> DeadlineExceeded:
        if own:
            return DeadlineExceeded(
                f"timeout {self._name!r}: deadline of {self._seconds}s exceeded",
                timeout=self._seconds,
            )
        return DeadlineExceeded(f"timeout {self._name!r}: inherited deadline exceeded")

    def _start(self) -> tuple[float, float, bool]:
        """``(now, deadline, own)``: the deadline in force for a call starting now.

        Raises ``DeadlineExceeded`` if it has already passed.
        """
        now = self._clock()
        deadline = now + self._seconds
        parent = _DEADLINE.get()
        if parent is not None and parent < deadline:
            if parent <= now:
                raise self._exceeded(own=False)
            return now, parent, False
        return now, deadline, True

    # -- sync -------------------------------------------------------------------

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Sync adapter: fail fast, publish the deadline, discard a late result."""
        clock = self._clock
        start = self._start
        exceeded = self._exceeded

        def timeout_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            _, deadline, own = start()
            token = _DEADLINE.set(deadline)
            try:
                result = fn(*args, **kwargs)
            finally:
                _DEADLINE.reset(token)
            if clock() >= deadline:
                raise exceeded(own)
            return result

        return timeout_sync

    def __enter__(self) -> float:
        """Fail fast if the deadline has passed, publish it; returns the deadline in force."""
        _, deadline, own = self._start()
        _push(_Entry(self, _DEADLINE.set(deadline), deadline, own))
        return deadline

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Restore the outer deadline; raise ``DeadlineExceeded`` if the block finished late."""
        entry = _pop(self)
        _DEADLINE.reset(entry.token)
        if exc_type is None and entry.deadline is not None and self._clock() >= entry.deadline:
            raise self._exceeded(entry.own)

    # -- asyncio ----------------------------------------------------------------

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """asyncio adapter: cancel the work at the deadline; the timer is armed lazily."""
        clock = self._clock
        seconds = self._seconds
        exceeded = self._exceeded
        get, set_, reset = _DEADLINE.get, _DEADLINE.set, _DEADLINE.reset
        # The hot path drives a coroutine with send(): anything else awaitable
        # is first wrapped in one (decided here, once).
        call = fn if inspect.iscoroutinefunction(fn) else _coroutine_function(fn)

        async def timeout_async(*args: P.args, **kwargs: P.kwargs) -> R:
            # Inlined _start(): this is the hot path.
            now = clock()
            deadline = now + seconds
            own = True
            token = None
            parent = get()
            if parent is not None and parent < deadline:
                if parent <= now:
                    raise exceeded(False)
                deadline = parent  # already published: nothing to set
                own = False
            else:
                token = set_(deadline)
            try:
                coro = call(*args, **kwargs)
                # The first step runs here: a call that completes without
                # suspending never arms a timer.
                try:
                    step = coro.send(None)
                except StopIteration as stop:
                    result: R = stop.value
                    return result
                return await _suspended(
                    coro, step, deadline, clock, exceeded=exceeded, own=own
                )
            finally:
                if token is not None:
                    try:  # noqa: SIM105 (hot path: suppress() costs an object and two calls)
                        reset(token)
                    except ValueError:
                        # Closed (by the garbage collector) from another
                        # context: ours is gone, there is nothing to restore.
                        pass

        return timeout_async

    async def __aenter__(self) -> float:
        """Fail fast if the deadline has passed, publish it and arm the timer."""
        now, deadline, own = self._start()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("Timeout must be used inside an asyncio task")
        expiry = _Expiry(task)
        entry = _Entry(self, _DEADLINE.set(deadline), deadline, own, expiry=expiry)
        entry.cancelling = task.cancelling()
        entry.handle = loop.call_later(deadline - now, expiry.fire)
        _push(entry)
        return deadline

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Disarm the timer; turn the cancellation it caused into ``DeadlineExceeded``."""
        entry = _pop(self)
        _DEADLINE.reset(entry.token)
        assert entry.handle is not None
        assert entry.expiry is not None
        entry.handle.cancel()
        if entry.expiry.expired and (
            entry.expiry.task.uncancel() <= entry.cancelling
            and exc_type is not None
            and issubclass(exc_type, asyncio.CancelledError)
        ):
            raise self._exceeded(entry.own) from exc


@types.coroutine
def _suspended(
    coro: Coroutine[Any, Any, R],
    step: Any,
    deadline: float,
    clock: Clock,
    *,
    exceeded: Callable[[bool], DeadlineExceeded],
    own: bool,
) -> Generator[Any, Any, R]:
    """Drive ``coro`` from its first suspension on, under a timer that cancels the task.

    Forwards the coroutine protocol faithfully: values sent in, exceptions
    thrown in (including ``CancelledError``), and ``close()``.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    if task is None:
        coro.close()
        raise RuntimeError("Timeout must be used inside an asyncio task")
    expiry = _Expiry(task)
    cancelling = task.cancelling()
    handle = loop.call_later(deadline - clock(), expiry.fire)
    try:
        while True:
            try:
                sent = yield step
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as thrown:
                throw: BaseException | None = thrown
            else:
                throw = None
            # Resume the work outside the except block above: run inside it, the
            # work's own later exceptions would get `thrown` as their __context__.
            step = coro.send(sent) if throw is None else coro.throw(throw)
    except StopIteration as stop:
        result: R = stop.value
        return result
    except asyncio.CancelledError as cancelled:
        if expiry.expired:
            expiry.expired = False
            if task.uncancel() <= cancelling:
                raise exceeded(own) from cancelled
        raise
    finally:
        throw = None  # no exception -> traceback -> frame -> exception cycle
        handle.cancel()
        if expiry.expired:
            task.uncancel()


# --- the header ----------------------------------------------------------------


def encode_deadline(clock: Clock = MONOTONIC, deadline: float | None = None) -> str | None:
    """The ``x-seawall-deadline-ms`` value for ``deadline`` (default: the current one).

    Time remaining in whole milliseconds, rounded down (the downstream never
    gets more time than is left), never negative (an expired deadline is
    ``"0"``), capped at :data:`MAX_HEADER_MS`. ``None`` when there is no deadline.
    """
    if deadline is None:
        deadline = _DEADLINE.get()
        if deadline is None:
            return None
    left_ms = (deadline - clock()) * 1000.0
    if left_ms <= 0:
        return "0"
    return str(int(min(MAX_HEADER_MS, left_ms + _MS_SLACK)))  # capped before int(): inf


def decode_deadline(value: str, clock: Clock = MONOTONIC) -> float:
    """The absolute deadline (on ``clock``) that an ``x-seawall-deadline-ms`` value means.

    Accepts ASCII digits only (surrounding spaces and tabs are ignored), at most
    :data:`MAX_HEADER_MS`. Raises ``ValueError`` naming the header and the value
    otherwise (empty, a sign, a fraction, non-digits, absurdly large).
    """
    text = value.strip(" \t")
    if not text:
        raise ValueError(f"{HEADER}: empty value {value!r}")
    if not (text.isascii() and text.isdigit()):
        raise ValueError(
            f"{HEADER}: expected a non-negative integer of milliseconds, got {value!r}"
        )
    if len(text) > len(str(MAX_HEADER_MS)) or int(text) > MAX_HEADER_MS:
        raise ValueError(f"{HEADER}: {value!r} is more than {MAX_HEADER_MS} ms (10 days)")
    return clock() + int(text) / 1000.0
