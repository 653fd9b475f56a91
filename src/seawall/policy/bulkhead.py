"""Bulkhead: a bound on the calls in flight to one dependency, with a bounded FIFO queue.

A call takes a slot if one is free. Otherwise it queues, first in first out,
if fewer than ``max_waiting`` calls are already queued, for at most
``max_wait`` seconds and never past the deadline in force
(:func:`~seawall.policy.deadline.current_deadline`). Otherwise it is rejected
with :class:`~seawall.policy.errors.BulkheadFullError` (``reason`` is
``"queue_full"`` or ``"wait_timeout"``).

How it works (the rules every method below keeps):

* Free slots are tokens in a :class:`collections.deque`, whose ``pop`` and
  ``append`` are atomic. The fast path (no one queued, a token free) pops one
  token without taking a lock, creating a future or awaiting anything.
* Everything about the queue happens under one short lock: enqueueing,
  handing tokens to waiters in FIFO order (:meth:`Bulkhead._grant_locked`),
  giving up. A waiter's ``state`` changes only under that lock, so exactly one
  party decides what happens to a handed-over slot.
* Releasing appends the token *then* looks at the queue; enqueueing adds the
  waiter *then* hands out free tokens. Whatever the interleaving, a free token
  and a queued waiter never stay apart (no lost wake-up).
* Waking happens after the lock is released: ``Event.set`` for a thread,
  ``future.set_result`` for a task (through ``loop.call_soon_threadsafe`` when
  released from another thread).
* A waiter that gives up (timeout, cancellation, ``KeyboardInterrupt``) after
  it was handed a slot passes the slot on. A slot is always released when the
  call ends, however it ends.
* :meth:`Bulkhead.reconfigure` changes the limits of a live bulkhead. Calls in
  flight and queued carry over. A lower limit takes free tokens away, and owes
  the ones it cannot take (``_debt``): each release then pays one back instead
  of freeing a slot, so a slot is free again only once the calls in flight are
  under the new limit. A higher limit pays the debt first, then adds tokens
  and hands them to queued calls.

The state machine is the same as the Rust core's (``seawall-policy``'s
``bulkhead.rs``), which the sidecar uses for a destination's
``bulkhead.max_in_flight`` in mesh.yaml (with no queue); the differential
tests in ``tests/conformance`` drive both with the same events. The limit has
mesh.yaml's name, ``max_in_flight`` (it was ``max_concurrent``: that keyword
raises a ``TypeError`` naming the new one).
"""

from __future__ import annotations

import asyncio
import math
import threading
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from ._policy import Policy
from ._validate import renamed_keywords, require_int, require_seconds
from .clock import MONOTONIC, Clock
from .deadline import current_deadline
from .errors import BulkheadFullError

__all__ = ["Bulkhead", "BulkheadConfig", "BulkheadMetrics", "KeyedBulkhead"]

P = ParamSpec("P")
R = TypeVar("R")

RENAMED = {"max_concurrent": "max_in_flight"}
"""Keywords renamed to mesh.yaml's (issue 14): old name -> new name."""

# A waiter's life (changes only under the bulkhead's lock):
#   WAITING --grant--> GRANTED --the waiter sees it--> CLAIMED
#   WAITING --timeout / cancel / interrupt--> ABANDONED
#   GRANTED --waiter cancelled, or its loop closed--> CLAIMED / ABANDONED, slot released
_WAITING = 0
_GRANTED = 1
_CLAIMED = 2
_ABANDONED = 3


@dataclass(frozen=True, slots=True)
class BulkheadConfig:
    """Validated settings of a :class:`Bulkhead` (and of each bulkhead of a :class:`KeyedBulkhead`).

    Attributes:
        max_in_flight: calls allowed in flight at once (>= 1).
        max_waiting: calls allowed to queue for a slot (>= 0; 0 rejects at once when full).
        max_wait: longest time a queued call waits, in seconds (>= 0; ``math.inf``
            to be bounded only by the deadline in force).
        name: shown in errors and metrics.
    """

    max_in_flight: int
    max_waiting: int = 0
    max_wait: float = 1.0
    name: str = "bulkhead"

    def __post_init__(self) -> None:
        require_int("Bulkhead", "max_in_flight", self.max_in_flight, minimum=1)
        require_int("Bulkhead", "max_waiting", self.max_waiting, minimum=0)
        require_seconds("Bulkhead", "max_wait", self.max_wait, allow_zero=True, allow_inf=True)


@dataclass(frozen=True, slots=True)
class BulkheadMetrics:
    """A snapshot of a bulkhead's state and counters.

    Attributes:
        name: the bulkhead's name.
        max_in_flight: its limit.
        in_flight: slots taken (calls running, or handed a slot and about to run).
        waiting: calls queued for a slot.
        rejected_queue_full: calls rejected because the queue was full.
        rejected_wait_timeout: calls rejected after waiting too long (or past the deadline).
    """

    name: str
    max_in_flight: int
    in_flight: int
    waiting: int
    rejected_queue_full: int
    rejected_wait_timeout: int

    @property
    def rejected(self) -> int:
        """All rejections."""
        return self.rejected_queue_full + self.rejected_wait_timeout


class _Waiter:
    """One queued call: a thread (``event``) or a task (``loop`` and ``future``)."""

    __slots__ = ("event", "future", "loop", "state", "thread")

    def __init__(
        self,
        event: threading.Event | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.state = _WAITING
        self.event = event
        self.loop = loop
        self.future = future
        self.thread = threading.get_ident()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead(Policy):
    """Limit the calls in flight to ``max_in_flight``; queue up to ``max_waiting`` more.

    One instance may be shared by threads and asyncio tasks (of one or several
    loops) at once. Use it as a decorator, with :meth:`call` / :meth:`acall`,
    or as a context manager (``with bulkhead:`` / ``async with bulkhead:``)
    that holds a slot for the block.

    Defaults: ``max_waiting=0`` rejects at once when all slots are taken (the
    bulkhead's job is to shed, not to buffer; a queue only adds latency to an
    overloaded dependency), and ``max_wait=1.0`` bounds a queued call when a
    queue is configured. A queued call never waits past the current deadline.

    >>> bulkhead = Bulkhead(2)
    >>> with bulkhead, bulkhead:
    ...     bulkhead.try_acquire()
    False
    >>> bulkhead.metrics().in_flight
    0
    """

    __slots__ = (
        "_clock",
        "_debt",
        "_free",
        "_lock",
        "_rejected_queue_full",
        "_rejected_wait_timeout",
        "_waiters",
        "config",
    )

    @renamed_keywords("Bulkhead", RENAMED)
    def __init__(
        self,
        max_in_flight: int,
        *,
        max_waiting: int = 0,
        max_wait: float = 1.0,
        name: str = "bulkhead",
        clock: Clock = MONOTONIC,
    ) -> None:
        self.config = BulkheadConfig(max_in_flight, max_waiting, max_wait, name)
        """The validated settings."""
        self._clock = clock
        self._lock = threading.Lock()
        self._free: deque[None] = deque([None] * max_in_flight)
        self._debt = 0  # slots over a lowered limit, still to be absorbed by releases
        self._waiters: deque[_Waiter] = deque()
        self._rejected_queue_full = 0
        self._rejected_wait_timeout = 0

    @classmethod
    def from_config(cls, config: BulkheadConfig, *, clock: Clock = MONOTONIC) -> Bulkhead:
        """A bulkhead with these (already validated) settings."""
        return cls(
            config.max_in_flight,
            max_waiting=config.max_waiting,
            max_wait=config.max_wait,
            name=config.name,
            clock=clock,
        )

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Bulkhead({c.max_in_flight}, max_waiting={c.max_waiting}, "
            f"max_wait={c.max_wait!r}, name={c.name!r})"
        )

    # -- the state machine ------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is queued (never waits); pair with ``release``."""
        if self._waiters:
            return False
        try:
            self._free.pop()
        except IndexError:
            return False
        return True

    def release(self) -> None:
        """Give a slot back: to the first queued call if any, else to the free pool."""
        if self._debt and self._pay_debt():
            return
        self._free.append(None)
        if self._waiters:
            self._dispatch()

    def _pay_debt(self) -> bool:
        """A slot released over a lowered limit: absorbed (``True``) instead of freed."""
        with self._lock:
            if self._debt:
                self._debt -= 1
                return True
        return False

    @renamed_keywords("Bulkhead", RENAMED)
    def reconfigure(
        self,
        max_in_flight: int | None = None,
        *,
        max_waiting: int | None = None,
        max_wait: float | None = None,
    ) -> None:
        """New limits for this live bulkhead; ``None`` keeps a setting as it is.

        The calls in flight and queued carry over. Under a lower
        ``max_in_flight`` the calls over it finish normally, and a slot is free
        again only once the calls in flight are under the new limit; a higher
        one hands the new slots to queued calls at once. A queued call keeps the
        wait it was given. Invalid settings raise ``ValueError`` and change
        nothing.

        >>> bulkhead = Bulkhead(3)
        >>> for _ in range(3):
        ...     bulkhead.acquire()
        >>> bulkhead.reconfigure(1)
        >>> bulkhead.release(); bulkhead.release()
        >>> bulkhead.try_acquire()  # 1 in flight: the new limit
        False
        """
        c = self.config
        new = BulkheadConfig(
            c.max_in_flight if max_in_flight is None else max_in_flight,
            c.max_waiting if max_waiting is None else max_waiting,
            c.max_wait if max_wait is None else max_wait,
            c.name,
        )
        with self._lock:
            change = new.max_in_flight - c.max_in_flight
            for _ in range(-change):  # fewer slots: take free ones away, owe the rest
                try:
                    self._free.pop()
                except IndexError:
                    self._debt += 1
            for _ in range(change):  # more: pay what is owed, then free new ones
                if self._debt:
                    self._debt -= 1
                else:
                    self._free.append(None)
            self.config = new
            woken = self._grant_locked()
        for waiter in woken:
            self._wake(waiter)

    def metrics(self) -> BulkheadMetrics:
        """A snapshot of the in-flight and waiting calls and the rejection counters."""
        with self._lock:
            c = self.config
            return BulkheadMetrics(
                c.name,
                c.max_in_flight,
                c.max_in_flight - len(self._free) + self._debt,
                len(self._waiters),
                self._rejected_queue_full,
                self._rejected_wait_timeout,
            )

    def _full(self, reason: str) -> BulkheadFullError:
        return BulkheadFullError(self.config.name, self.config.max_in_flight, reason)

    def _budget(self, now: float) -> float:
        """How long a call arriving at ``now`` may wait: ``max_wait``, cut at the deadline."""
        budget = self.config.max_wait
        deadline = current_deadline()
        if deadline is not None and deadline - now < budget:
            budget = deadline - now
        return budget

    def _enqueue_locked(self, waiter: _Waiter, budget: float) -> list[_Waiter] | None:
        """Under the lock: take a slot (``None``), queue ``waiter`` (who to wake), or raise."""
        if not self._waiters:
            try:
                self._free.pop()
            except IndexError:
                pass
            else:
                return None
        if len(self._waiters) >= self.config.max_waiting:
            self._rejected_queue_full += 1
            raise self._full("queue_full")
        if budget <= 0:
            self._rejected_wait_timeout += 1
            raise self._full("wait_timeout")
        self._waiters.append(waiter)
        return self._grant_locked()

    def _grant_locked(self) -> list[_Waiter]:
        """Under the lock: hand free slots to queued calls, in FIFO order."""
        woken: list[_Waiter] = []
        waiters, free = self._waiters, self._free
        while waiters:
            try:
                free.pop()
            except IndexError:
                break
            waiter = waiters.popleft()
            waiter.state = _GRANTED
            woken.append(waiter)
        return woken

    def _dispatch(self) -> None:
        with self._lock:
            woken = self._grant_locked()
        for waiter in woken:
            self._wake(waiter)

    def _wake(self, waiter: _Waiter) -> None:
        """Tell a waiter it has a slot (outside the lock)."""
        if waiter.event is not None:
            waiter.event.set()
            return
        assert waiter.loop is not None
        assert waiter.future is not None
        try:
            if threading.get_ident() == waiter.thread:
                _resolve(waiter.future)
            else:
                waiter.loop.call_soon_threadsafe(_resolve, waiter.future)
        except RuntimeError:  # its loop is closed: nobody will ever use the slot
            if self._settle(waiter, timed_out=False):
                self.release()

    def _settle(self, waiter: _Waiter, *, timed_out: bool) -> bool:
        """The waiter stops waiting: ``True`` if it holds a slot (now its to use or release)."""
        with self._lock:
            if waiter.state == _GRANTED:
                waiter.state = _CLAIMED
                return True
            if waiter.state == _WAITING:
                self._waiters.remove(waiter)
                waiter.state = _ABANDONED
                if timed_out:
                    self._rejected_wait_timeout += 1
            return False

    # -- sync adapter -----------------------------------------------------------

    def acquire(self) -> None:
        """Take a slot, queueing (blocking this thread) if allowed; pair with :meth:`release`.

        Raises ``BulkheadFullError`` when the queue is full or the wait times out.
        """
        if not self.try_acquire():
            self._acquire_slow()

    def _acquire_slow(self) -> None:
        clock = self._clock
        now = clock()
        budget = self._budget(now)
        waiter = _Waiter(event=threading.Event())
        with self._lock:
            woken = self._enqueue_locked(waiter, budget)
        if woken is None:
            return
        for other in woken:
            self._wake(other)
        expires = now + budget
        event = waiter.event
        assert event is not None
        try:
            while not event.is_set():
                left = expires - clock()
                if left <= 0:
                    break
                event.wait(min(left, threading.TIMEOUT_MAX))
        except BaseException:  # KeyboardInterrupt while blocked: pass the slot on
            if self._settle(waiter, timed_out=False):
                self.release()
            raise
        if not self._settle(waiter, timed_out=True):
            raise self._full("wait_timeout")

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Sync adapter: hold a slot for the duration of the call."""
        acquire, release = self.acquire, self.release

        def bulkhead_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            acquire()
            try:
                return fn(*args, **kwargs)
            finally:
                release()

        return bulkhead_sync

    def __enter__(self) -> Bulkhead:
        """Take a slot for the block (see :meth:`acquire`)."""
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Release the slot."""
        self.release()

    # -- asyncio adapter --------------------------------------------------------

    async def acquire_async(self) -> None:
        """Take a slot, queueing (awaiting) if allowed; pair with :meth:`release`.

        Raises ``BulkheadFullError`` when the queue is full or the wait times
        out. Cancellation-safe: a task cancelled while queued leaves the queue,
        and passes the slot on if it had just been handed one.
        """
        if not self.try_acquire():
            await self._acquire_slow_async()

    async def _acquire_slow_async(self) -> None:
        now = self._clock()
        budget = self._budget(now)
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop=loop, future=loop.create_future())
        with self._lock:
            woken = self._enqueue_locked(waiter, budget)
        if woken is None:
            return
        for other in woken:
            self._wake(other)
        future = waiter.future
        assert future is not None
        # The timer only wakes the waiter; whether it got a slot is decided
        # under the lock by _settle (a slot granted meanwhile is kept).
        timer = None if math.isinf(budget) else loop.call_later(budget, _resolve, future)
        try:
            await future
        except BaseException:  # cancelled: leave the queue or pass the slot on
            if self._settle(waiter, timed_out=False):
                self.release()
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not self._settle(waiter, timed_out=True):
            raise self._full("wait_timeout")

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """asyncio adapter: hold a slot while the call runs; no await when a slot is free."""
        waiters, free = self._waiters, self._free
        take, give = free.pop, free.append
        acquire_slow, dispatch = self._acquire_slow_async, self._dispatch

        async def bulkhead_async(*args: P.args, **kwargs: P.kwargs) -> R:
            # Inlined try_acquire(): this is the hot path.
            queued = True
            if not waiters:
                try:
                    take()
                    queued = False
                except IndexError:
                    pass
            if queued:
                await acquire_slow()
            try:
                return await fn(*args, **kwargs)
            finally:
                # Inlined release() (the slow path under a lowered limit).
                if self._debt:
                    self.release()
                else:
                    give(None)
                    if waiters:
                        dispatch()

        return bulkhead_async

    async def __aenter__(self) -> Bulkhead:
        """Take a slot for the block (see :meth:`acquire_async`)."""
        await self.acquire_async()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        """Release the slot."""
        self.release()


class KeyedBulkhead:
    """One isolated :class:`Bulkhead` per key (typically per downstream service).

    A hung downstream fills its own bulkhead only; calls to the others are not
    affected. Bulkheads are created on first use with the same settings, named
    ``"{name}[{key}]"``, and kept in this instance (there is no global
    registry). Keys should come from a bounded set (service names, not request
    data): each key keeps its bulkhead for the life of this object.

    >>> pools = KeyedBulkhead(10, max_waiting=5)
    >>> pools["payments"].config.name
    'bulkhead[payments]'
    >>> pools["payments"] is pools.for_key("payments")
    True
    """

    __slots__ = ("_by_key", "_clock", "_lock", "config")

    @renamed_keywords("KeyedBulkhead", RENAMED)
    def __init__(
        self,
        max_in_flight: int,
        *,
        max_waiting: int = 0,
        max_wait: float = 1.0,
        name: str = "bulkhead",
        clock: Clock = MONOTONIC,
    ) -> None:
        self.config = BulkheadConfig(max_in_flight, max_waiting, max_wait, name)
        """The validated settings each key's bulkhead gets (its name gains ``[key]``)."""
        self._clock = clock
        self._lock = threading.Lock()
        self._by_key: dict[str, Bulkhead] = {}

    def for_key(self, key: str) -> Bulkhead:
        """The bulkhead of ``key``, created on first use."""
        bulkhead = self._by_key.get(key)
        if bulkhead is None:
            with self._lock:
                bulkhead = self._by_key.get(key)
                if bulkhead is None:
                    c = self.config
                    bulkhead = Bulkhead(
                        c.max_in_flight,
                        max_waiting=c.max_waiting,
                        max_wait=c.max_wait,
                        name=f"{c.name}[{key}]",
                        clock=self._clock,
                    )
                    self._by_key[key] = bulkhead
        return bulkhead

    def __getitem__(self, key: str) -> Bulkhead:
        """Same as :meth:`for_key`."""
        return self.for_key(key)

    def __contains__(self, key: object) -> bool:
        """Whether ``key``'s bulkhead has been created."""
        return key in self._by_key

    def __len__(self) -> int:
        """How many keys have a bulkhead."""
        return len(self._by_key)

    def metrics(self) -> dict[str, BulkheadMetrics]:
        """A snapshot of every key's bulkhead."""
        with self._lock:
            items = list(self._by_key.items())
        return {key: bulkhead.metrics() for key, bulkhead in items}

    def __repr__(self) -> str:
        return f"KeyedBulkhead({self.config!r}, keys={sorted(self._by_key)!r})"
