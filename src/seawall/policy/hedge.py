"""Hedged requests: when an attempt is slow, start another; the first success wins.

"The Tail at Scale" (Dean and Barroso, 2013): most slow responses are slow
for reasons unrelated to the request (a GC pause, a noisy neighbour, a queue),
so a second copy sent after a short wait usually answers long before the
first. :class:`Hedge` starts attempt 1 at once, and each further attempt
(up to ``max_hedges`` of them) when the previous one has been running for the
hedge delay without an answer. The first attempt to *succeed* wins; the
others are cancelled (asyncio) or abandoned (sync) and their results discarded.

Hedging is for latency, not for failures: an attempt that fails does not
start a hedge early, and when every started attempt has failed the call raises
the last failure. Put a :class:`~seawall.policy.retry.Retry` around the hedge
to retry failures.

The hedge delay is fixed (``delay``) or, with ``percentile``, that percentile
of the latencies of recent winning attempts (nearest rank over a ring of the
last ``samples`` of them; ``delay`` until ``min_samples`` were seen). Hedging
at the p95 adds about 5 % load and cuts the tail beyond it.

Every hedge (not the first attempt) withdraws from the shared
:class:`~seawall.policy.budget.RetryBudget` when one is given, and is not
started if the budget refuses; every call deposits once. Hedging duplicates
work, so only hedge idempotent calls.

**asyncio** (the main mode): each attempt is a task; the timer between
hedges is the injected ``async_sleep``, so tests drive it. The winner's
result is returned after the losers were cancelled *and* their cancellation
awaited: no task outlives the call. Cancelling the call cancels every attempt.

**sync**: attempts run in the threads of a
:class:`~concurrent.futures.ThreadPoolExecutor` owned by the hedge, created on
the first sync call and shut down by :meth:`Hedge.close`; the caller's thread
only waits. Python threads cannot be interrupted, so a losing attempt keeps
running to its end, in its pool thread, after the call returned; its result or
exception is discarded. Attempts that had not started yet when the call
returned are never run. Losers occupy pool threads: size ``max_workers`` for
``concurrent calls * (1 + max_hedges)``. The hedge timer is the real timeout of
the wait for the attempts.

Each attempt sees its number (1 for the first, 2 for the first hedge, ...)
through :func:`seawall.policy.retry.current_attempt`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import math
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from ._observe import OBSERVER
from ._policy import Policy
from ._validate import require_at_least, require_int, require_number, require_seconds
from .budget import RetryBudget
from .clock import MONOTONIC, AsyncSleep, Clock
from .clock import async_sleep as _default_async_sleep
from .retry import _ATTEMPT

__all__ = ["Hedge"]

P = ParamSpec("P")
R = TypeVar("R")


class Hedge(Policy):
    """Start extra attempts when the first is slow; return the first success.

    Args:
        delay: seconds an attempt runs without an answer before the next one
            starts (``>= 0``). Default 50 ms: above a healthy in-datacenter
            p95 for most RPCs, so few calls are hedged, yet small next to the
            multi-hundred-millisecond stalls hedging exists to hide. Also the
            fallback while ``percentile`` has too few samples.
        percentile: if set (in ``(0, 100)``, e.g. ``95.0``), the hedge delay is
            this percentile of recent winning latencies instead of ``delay``.
        max_hedges: extra attempts at most, in flight with the first
            (``>= 1``). Default 1: one hedge captures most of the gain; each
            more adds load for a smaller cut in the tail.
        budget: a shared :class:`~seawall.policy.budget.RetryBudget`; each call
            deposits, each hedge withdraws or is not started.
        min_samples: winning latencies needed before ``percentile`` is used
            (``>= 1``). Default 20: with fewer, a p95 is just the maximum.
        samples: size of the ring of recent latencies (``>= min_samples``).
            Default 100: recent enough to follow a change within a hundred calls.
        max_workers: threads of the sync mode's pool (``None``: the
            :class:`~concurrent.futures.ThreadPoolExecutor` default).
        clock: monotonic clock for latencies (and the sync timer's bookkeeping).
        async_sleep: the asyncio timer between hedges (tests inject a fake).
        name: names the pool threads.
    """

    __slots__ = (
        "_async_sleep",
        "_budget",
        "_clock",
        "_cursor",
        "_dirty",
        "_executor",
        "_lock",
        "_max_workers",
        "_ring",
        "_value",
        "delay",
        "max_hedges",
        "min_samples",
        "name",
        "percentile",
        "samples",
    )

    def __init__(
        self,
        *,
        delay: float = 0.05,
        percentile: float | None = None,
        max_hedges: int = 1,
        budget: RetryBudget | None = None,
        min_samples: int = 20,
        samples: int = 100,
        max_workers: int | None = None,
        clock: Clock = MONOTONIC,
        async_sleep: AsyncSleep = _default_async_sleep,
        name: str = "hedge",
    ) -> None:
        require_seconds("Hedge", "delay", delay, allow_zero=True)
        require_number("Hedge", "percentile", percentile, gt=0, lt=100, allow_none=True)
        require_int("Hedge", "max_hedges", max_hedges, minimum=1)
        require_int("Hedge", "min_samples", min_samples, minimum=1)
        require_int("Hedge", "samples", samples, minimum=1)
        require_at_least("Hedge", "samples", samples, "min_samples", min_samples)
        require_int("Hedge", "max_workers", max_workers, minimum=1, allow_none=True)
        if not isinstance(name, str) or not name:
            raise ValueError(f"Hedge: name must be a non-empty string, got {name!r}")
        self.delay = float(delay)
        """The fixed hedge delay (and fallback), seconds."""
        self.percentile = None if percentile is None else float(percentile)
        """The latency percentile used as hedge delay, or ``None``."""
        self.max_hedges = max_hedges
        """Extra attempts at most per call."""
        self.min_samples = min_samples
        """Samples needed before the percentile is used."""
        self.samples = samples
        """Size of the latency ring."""
        self.name = name
        """The hedge's name."""
        self._budget = budget
        self._clock = clock
        self._async_sleep = async_sleep
        self._max_workers = max_workers
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._ring: list[float] = []
        self._cursor = 0
        self._dirty = False
        self._value = self.delay

    def __repr__(self) -> str:
        return (
            f"Hedge(name={self.name!r}, delay={self.delay!r}, percentile={self.percentile!r}, "
            f"max_hedges={self.max_hedges!r}, budget={self._budget!r})"
        )

    # -- the latency model (sans-I/O: told the latencies) --

    def record_latency(self, seconds: float) -> None:
        """Add the latency of a winning attempt to the ring (the adapters call this)."""
        if self.percentile is None:
            return
        with self._lock:
            ring = self._ring
            if len(ring) < self.samples:
                ring.append(seconds)
            else:
                ring[self._cursor] = seconds
                self._cursor = (self._cursor + 1) % self.samples
            self._dirty = True

    def hedge_delay(self) -> float:
        """The delay before the next hedge now: ``delay``, or the latency percentile.

        Nearest rank: the ``ceil(p / 100 * n)``-th smallest of the ``n``
        samples in the ring, once ``n >= min_samples``.
        """
        if self.percentile is None:
            return self.delay
        with self._lock:
            if self._dirty:
                n = len(self._ring)
                if n >= self.min_samples:
                    # p * n / 100, not p / 100 * n: 0.07 * 100 is 7.000000000000001.
                    rank = max(1, math.ceil(self.percentile * n / 100))
                    self._value = sorted(self._ring)[rank - 1]
                self._dirty = False
            return self._value

    # -- asyncio --

    def wrap_async(
        self, fn: Callable[P, Awaitable[R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        """Return the coroutine function ``fn`` hedged: attempts are tasks, losers cancelled."""
        budget, clock, sleep = self._budget, self._clock, self._async_sleep
        max_hedges, record = self.max_hedges, self.record_latency

        async def hedged(*args: P.args, **kwargs: P.kwargs) -> R:
            if budget is not None:
                budget.deposit()
            delay = self.hedge_delay()
            loop = asyncio.get_running_loop()

            async def attempt(number: int) -> tuple[R, float]:
                _ATTEMPT.set(number)  # the task runs in its own copy of the context
                started = clock()
                result = await fn(*args, **kwargs)
                return result, clock() - started

            async def timer() -> None:
                await sleep(delay)

            running: dict[asyncio.Task[tuple[R, float]], int] = {
                loop.create_task(attempt(1)): 1
            }
            started = 1
            timer_task: asyncio.Task[None] | None = None
            last_error: BaseException | None = None
            closing = False
            try:
                while True:
                    if timer_task is None and started <= max_hedges:
                        timer_task = loop.create_task(timer())
                    waiting: set[asyncio.Future[Any]] = set(running)
                    if timer_task is not None:
                        waiting.add(timer_task)
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    finished = sorted((t for t in running if t in done), key=running.__getitem__)
                    for task in finished:
                        del running[task]
                        if task.cancelled():  # cancelled by someone else: a failure
                            last_error = asyncio.CancelledError()
                            continue
                        error = task.exception()
                        if error is None:
                            result, latency = task.result()
                            record(latency)
                            return result
                        last_error = error
                    if not running:
                        assert last_error is not None
                        raise last_error
                    if timer_task is not None and timer_task in done:
                        fired, timer_task = timer_task, None
                        fired.result()  # a failing sleep is a bug worth seeing
                        if budget is None or budget.try_withdraw():
                            started += 1
                            observer = OBSERVER.get()
                            if observer is not None:
                                observer.hedging(started)
                            running[loop.create_task(attempt(started))] = started
                        else:
                            started = max_hedges + 1  # refused: no more hedges for this call
            except GeneratorExit:
                closing = True  # closed, not cancelled: no awaiting allowed below
                raise
            finally:
                leftovers: list[asyncio.Future[Any]] = list(running)
                if timer_task is not None:
                    leftovers.append(timer_task)
                if closing:
                    for leftover in leftovers:
                        leftover.cancel()
                elif leftovers:
                    for leftover in leftovers:
                        leftover.cancel()
                    cancelled: asyncio.CancelledError | None = None
                    while True:
                        try:
                            await asyncio.wait(leftovers)
                            break
                        except asyncio.CancelledError as exc:
                            # Cancelled again while cleaning up: the attempts
                            # must still not outlive the call (as TaskGroup does).
                            cancelled = exc
                    for leftover in leftovers:
                        if not leftover.cancelled():
                            leftover.exception()  # mark retrieved; losers' outcomes are discarded
                    if cancelled is not None:
                        try:
                            raise cancelled
                        finally:
                            cancelled = None  # no exception <-> frame cycle

        return hedged

    # -- sync --

    def wrap_sync(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Return ``fn`` hedged: attempts run in the hedge's thread pool, losers abandoned."""
        budget, clock = self._budget, self._clock
        max_hedges, record = self.max_hedges, self.record_latency

        def attempt(number: int, *args: P.args, **kwargs: P.kwargs) -> tuple[R, float]:
            _ATTEMPT.set(number)  # runs inside a copied context (see submit below)
            started = clock()
            result = fn(*args, **kwargs)
            return result, clock() - started

        def hedged(*args: P.args, **kwargs: P.kwargs) -> R:
            if budget is not None:
                budget.deposit()
            delay = self.hedge_delay()
            executor = self._get_executor()

            def submit(number: int) -> concurrent.futures.Future[tuple[R, float]]:
                context = contextvars.copy_context()  # one per attempt: one thread per context

                def run() -> tuple[R, float]:
                    return context.run(attempt, number, *args, **kwargs)

                return executor.submit(run)

            running = {submit(1): 1}
            started = 1
            next_hedge_at = clock() + delay
            last_error: BaseException | None = None
            try:
                while True:
                    timeout = None
                    if started <= max_hedges:
                        timeout = max(0.0, next_hedge_at - clock())
                    done, _ = concurrent.futures.wait(
                        running, timeout=timeout, return_when=concurrent.futures.FIRST_COMPLETED
                    )
                    for future in sorted(done, key=running.__getitem__):
                        del running[future]
                        error = future.exception()
                        if error is None:
                            result, latency = future.result()
                            record(latency)
                            return result
                        last_error = error
                    if not running:
                        assert last_error is not None
                        raise last_error
                    if started <= max_hedges and (not done or clock() >= next_hedge_at):
                        if budget is None or budget.try_withdraw():
                            started += 1
                            observer = OBSERVER.get()
                            if observer is not None:
                                observer.hedging(started)
                            running[submit(started)] = started
                            next_hedge_at = clock() + delay
                        else:
                            started = max_hedges + 1
            finally:
                for future in running:
                    future.cancel()  # only stops attempts that have not started

        return hedged

    def _get_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                executor = self._executor
                if executor is None:
                    executor = self._executor = concurrent.futures.ThreadPoolExecutor(
                        max_workers=self._max_workers, thread_name_prefix=f"seawall-{self.name}"
                    )
        return executor

    def close(self, wait: bool = True) -> None:
        """Shut the sync mode's thread pool down (waiting for running attempts if ``wait``).

        Do not close while sync calls are in flight. A later sync call starts
        a new pool. The asyncio mode has nothing to close.
        """
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=wait)

    def __enter__(self) -> Hedge:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

