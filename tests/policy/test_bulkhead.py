"""Tests for seawall.policy.bulkhead: limits, FIFO queue, timeouts, cancellation, threads."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import threading
import time
from typing import Any

import pytest

from seawall.policy.bulkhead import Bulkhead, BulkheadConfig, KeyedBulkhead
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import deadline_scope
from seawall.policy.errors import BulkheadFullError

# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_in_flight": 0}, "Bulkhead: max_in_flight must be an int >= 1, got 0"),
        ({"max_in_flight": 2.5}, "Bulkhead: max_in_flight must be an int >= 1, got 2.5"),
        ({"max_in_flight": True}, "Bulkhead: max_in_flight must be an int >= 1, got True"),
        ({"max_in_flight": 1, "max_waiting": -1}, "max_waiting must be an int >= 0, got -1"),
        ({"max_in_flight": 1, "max_wait": -0.1}, "max_wait must be a number >= 0, got -0.1"),
        ({"max_in_flight": 1, "max_wait": math.nan}, "max_wait must be a number >= 0, got nan"),
    ],
)
def test_config_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Bulkhead(**kwargs)
    with pytest.raises(ValueError, match=message):
        KeyedBulkhead(**kwargs)


def test_max_concurrent_is_now_max_in_flight() -> None:
    # One vocabulary with mesh.yaml (issue 14): bulkhead.max_in_flight.
    with pytest.raises(TypeError, match=r"^Bulkhead: 'max_concurrent' is now 'max_in_flight' "):
        Bulkhead(max_concurrent=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"^KeyedBulkhead: 'max_concurrent' is now 'max_in_flight'"):
        KeyedBulkhead(max_concurrent=2)  # type: ignore[call-arg]
    bulkhead = Bulkhead(max_in_flight=2)
    with pytest.raises(TypeError, match="'max_concurrent' is now 'max_in_flight'"):
        bulkhead.reconfigure(max_concurrent=3)  # type: ignore[call-arg]
    assert bulkhead.metrics().max_in_flight == 2
    full = Bulkhead(1, name="full")
    with full, pytest.raises(BulkheadFullError) as info:
        full.call(lambda: None)
    assert str(info.value) == "bulkhead 'full' is full (1 calls in flight; queue_full)"


def test_defaults() -> None:
    bulkhead = Bulkhead(3)
    assert bulkhead.config == BulkheadConfig(3, 0, 1.0, "bulkhead")
    assert Bulkhead.from_config(bulkhead.config).config == bulkhead.config
    assert "Bulkhead(3" in repr(bulkhead)


# --------------------------------------------------------------------------- the state machine


def test_try_acquire_and_release() -> None:
    bulkhead = Bulkhead(2, name="db")
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    m = bulkhead.metrics()
    assert (m.name, m.max_in_flight, m.in_flight, m.waiting) == ("db", 2, 2, 0)
    bulkhead.release()
    assert bulkhead.metrics().in_flight == 1
    assert bulkhead.try_acquire()
    bulkhead.release()
    bulkhead.release()
    assert bulkhead.metrics().in_flight == 0


def test_full_without_queue_rejects_at_once() -> None:
    bulkhead = Bulkhead(1, name="db")
    with bulkhead:
        with pytest.raises(BulkheadFullError) as info:
            bulkhead.call(lambda: None)
        assert (info.value.name, info.value.max_in_flight, info.value.reason) == (
            "db",
            1,
            "queue_full",
        )
    m = bulkhead.metrics()
    assert (m.in_flight, m.rejected_queue_full, m.rejected_wait_timeout, m.rejected) == (0, 1, 0, 1)


def test_slot_released_when_the_call_raises() -> None:
    bulkhead = Bulkhead(1)

    def boom() -> None:
        raise KeyError

    for _ in range(3):
        with pytest.raises(KeyError):
            bulkhead.call(boom)
    assert bulkhead.metrics().in_flight == 0


def test_no_wait_past_an_expired_deadline() -> None:
    clock = FakeClock(10.0)
    bulkhead = Bulkhead(1, max_waiting=5, max_wait=60.0, clock=clock)
    assert bulkhead.try_acquire()
    with deadline_scope(at=10.0, clock=clock):
        with pytest.raises(BulkheadFullError) as info:
            bulkhead.acquire()
        assert info.value.reason == "wait_timeout"

        async def main() -> None:
            with pytest.raises(BulkheadFullError, match="wait_timeout"):
                await bulkhead.acquire_async()

        asyncio.run(main())
    m = bulkhead.metrics()
    assert (m.waiting, m.rejected_wait_timeout, m.rejected_queue_full) == (0, 2, 0)


# --------------------------------------------------------------------------- threads


def _wait_until(predicate: Any, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.0005)


def test_threads_never_exceed_the_limit() -> None:
    limit = 3
    bulkhead = Bulkhead(limit, max_waiting=100, max_wait=math.inf)
    lock = threading.Lock()
    current = peak = 0
    first_wave = threading.Barrier(limit, timeout=2.0)  # the first `limit` calls overlap
    entered = itertools.count()

    @bulkhead
    def work() -> None:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)
        if next(entered) < limit:
            first_wave.wait()
        time.sleep(0.0005)
        with lock:
            current -= 1

    threads = [threading.Thread(target=lambda: [work() for _ in range(5)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == limit
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting, m.rejected) == (0, 0, 0)


def test_threads_are_served_in_fifo_order() -> None:
    bulkhead = Bulkhead(1, max_waiting=10, max_wait=math.inf)
    order: list[int] = []
    assert bulkhead.try_acquire()

    def waiter(i: int) -> None:
        with bulkhead:
            order.append(i)

    threads = []
    for i in range(5):
        thread = threading.Thread(target=waiter, args=(i,))
        thread.start()
        threads.append(thread)
        _wait_until(lambda i=i: bulkhead.metrics().waiting == i + 1)
    bulkhead.release()
    for thread in threads:
        thread.join()
    assert order == [0, 1, 2, 3, 4]


def test_thread_queue_full_and_wait_timeout() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=0.03)
    assert bulkhead.try_acquire()
    errors: list[BulkheadFullError] = []

    def waiter() -> None:
        try:
            bulkhead.acquire()
        except BulkheadFullError as exc:
            errors.append(exc)

    thread = threading.Thread(target=waiter)
    start = time.monotonic()
    thread.start()
    _wait_until(lambda: bulkhead.metrics().waiting == 1)
    with pytest.raises(BulkheadFullError, match="queue_full"):
        bulkhead.acquire()
    thread.join()
    assert time.monotonic() - start >= 0.025
    assert [e.reason for e in errors] == ["wait_timeout"]
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting, m.rejected_queue_full, m.rejected_wait_timeout) == (1, 0, 1, 1)
    bulkhead.release()


# --------------------------------------------------------------------------- asyncio


def test_async_tasks_never_exceed_the_limit() -> None:
    limit = 4
    bulkhead = Bulkhead(limit, max_waiting=1000, max_wait=math.inf)
    current = peak = 0

    @bulkhead
    async def work() -> int:
        nonlocal current, peak
        current += 1
        peak = max(peak, current)
        for _ in range(3):
            await asyncio.sleep(0)
        current -= 1
        return 1

    async def main() -> int:
        return sum(await asyncio.gather(*(work() for _ in range(50))))

    assert asyncio.run(main()) == 50
    assert peak == limit
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting, m.rejected) == (0, 0, 0)


def test_async_fast_path_creates_no_future() -> None:
    bulkhead = Bulkhead(2)

    async def noop() -> str:
        return "ok"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        created = 0
        original = loop.create_future

        def create_future() -> asyncio.Future[Any]:
            nonlocal created
            created += 1
            return original()

        loop.create_future = create_future  # type: ignore[method-assign]
        wrapped = bulkhead.wrap_async(noop)
        assert [await wrapped() for _ in range(3)] == ["ok"] * 3
        async with bulkhead:
            pass
        assert created == 0

    asyncio.run(main())


def test_async_fifo_order() -> None:
    bulkhead = Bulkhead(1, max_waiting=10, max_wait=math.inf)
    order: list[int] = []

    async def waiter(i: int) -> None:
        async with bulkhead:
            order.append(i)
            await asyncio.sleep(0)

    async def main() -> None:
        assert bulkhead.try_acquire()
        tasks = []
        for i in range(5):
            tasks.append(asyncio.create_task(waiter(i)))
            await asyncio.sleep(0)
        assert bulkhead.metrics().waiting == 5
        bulkhead.release()
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert order == [0, 1, 2, 3, 4]


def test_async_newcomer_does_not_jump_the_queue() -> None:
    bulkhead = Bulkhead(1, max_waiting=10, max_wait=math.inf)
    order: list[str] = []

    async def waiter(name: str) -> None:
        async with bulkhead:
            order.append(name)

    async def main() -> None:
        assert bulkhead.try_acquire()
        first = asyncio.create_task(waiter("queued"))
        await asyncio.sleep(0)
        bulkhead.release()  # handed to "queued", which has not run yet
        assert not bulkhead.try_acquire()
        await asyncio.gather(first, waiter("newcomer"))

    asyncio.run(main())
    assert order == ["queued", "newcomer"]


def test_async_wait_timeout_real_clock() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=0.02)

    async def main() -> None:
        assert bulkhead.try_acquire()
        start = time.monotonic()
        with pytest.raises(BulkheadFullError) as info:
            await bulkhead.acquire_async()
        assert info.value.reason == "wait_timeout"
        assert time.monotonic() - start >= 0.015
        m = bulkhead.metrics()
        assert (m.in_flight, m.waiting, m.rejected_wait_timeout) == (1, 0, 1)

    asyncio.run(main())


def test_async_wait_is_cut_at_the_deadline() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=30.0)

    async def main() -> None:
        assert bulkhead.try_acquire()
        start = time.monotonic()
        async with deadline_scope(0.02):
            with pytest.raises(BulkheadFullError, match="wait_timeout"):
                await bulkhead.acquire_async()
        assert time.monotonic() - start < 1.0

    asyncio.run(main())


def test_async_queue_full() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=math.inf)

    async def main() -> None:
        assert bulkhead.try_acquire()
        queued = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        with pytest.raises(BulkheadFullError, match="queue_full"):
            await bulkhead.acquire_async()
        bulkhead.release()
        await queued
        assert bulkhead.metrics().in_flight == 1
        bulkhead.release()

    asyncio.run(main())


def test_async_cancelled_waiter_leaves_the_queue() -> None:
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=math.inf)

    async def main() -> None:
        assert bulkhead.try_acquire()
        doomed = asyncio.create_task(bulkhead.acquire_async())
        survivor = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        assert bulkhead.metrics().waiting == 2
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert bulkhead.metrics().waiting == 1
        bulkhead.release()
        await survivor
        m = bulkhead.metrics()
        assert (m.in_flight, m.waiting, m.rejected) == (1, 0, 0)

    asyncio.run(main())


def test_async_waiter_cancelled_just_after_being_handed_a_slot_passes_it_on() -> None:
    bulkhead = Bulkhead(1, max_waiting=2, max_wait=math.inf)

    async def main() -> None:
        assert bulkhead.try_acquire()
        first = asyncio.create_task(bulkhead.acquire_async())
        second = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        bulkhead.release()  # the slot is handed to `first`...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 1.0)  # the slot went on to `second`
        m = bulkhead.metrics()
        assert (m.in_flight, m.waiting) == (1, 0)
        bulkhead.release()
        assert bulkhead.metrics().in_flight == 0

    asyncio.run(main())


def test_async_slot_released_when_the_call_is_cancelled_or_raises() -> None:
    bulkhead = Bulkhead(1)

    @bulkhead
    async def hangs() -> None:
        await asyncio.sleep(3600)

    @bulkhead
    async def boom() -> None:
        raise KeyError

    async def main() -> None:
        task = asyncio.create_task(hangs())
        await asyncio.sleep(0)
        assert bulkhead.metrics().in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bulkhead.metrics().in_flight == 0
        with pytest.raises(KeyError):
            await boom()
        assert bulkhead.metrics().in_flight == 0

    asyncio.run(main())


def test_async_waiter_woken_by_a_thread() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=math.inf)
    assert bulkhead.try_acquire()  # held by "a thread"

    async def main() -> None:
        waiter = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        assert bulkhead.metrics().waiting == 1
        releaser = threading.Thread(target=bulkhead.release)
        releaser.start()
        await asyncio.wait_for(waiter, 2.0)  # woken via call_soon_threadsafe
        releaser.join()
        assert bulkhead.metrics().in_flight == 1
        bulkhead.release()

    asyncio.run(main())


def test_threads_and_tasks_share_one_limit() -> None:
    limit = 2
    bulkhead = Bulkhead(limit, max_waiting=100, max_wait=math.inf)
    lock = threading.Lock()
    current = peak = 0

    def enter() -> None:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)

    def leave() -> None:
        nonlocal current
        with lock:
            current -= 1

    @bulkhead
    def sync_work() -> None:
        enter()
        time.sleep(0.0005)
        leave()

    @bulkhead
    async def async_work() -> None:
        enter()
        await asyncio.sleep(0.0005)
        leave()

    def thread_body() -> None:
        for _ in range(10):
            sync_work()

    async def main() -> None:
        await asyncio.gather(*(async_work() for _ in range(20)))

    threads = [threading.Thread(target=thread_body) for _ in range(3)]
    for thread in threads:
        thread.start()
    asyncio.run(main())
    for thread in threads:
        thread.join()
    assert 1 <= peak <= limit
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting, m.rejected) == (0, 0, 0)


# --------------------------------------------------------------------------- keyed


def test_keyed_creates_one_bulkhead_per_key() -> None:
    pools = KeyedBulkhead(2, max_waiting=1, name="out")
    assert len(pools) == 0
    payments = pools["payments"]
    assert pools.for_key("payments") is payments
    assert "payments" in pools
    assert "email" not in pools
    assert payments.config == BulkheadConfig(2, 1, 1.0, "out[payments]")
    assert pools["email"] is not payments
    assert set(pools.metrics()) == {"payments", "email"}
    assert "payments" in repr(pools)


def test_keyed_a_hung_key_does_not_block_another() -> None:
    pools = KeyedBulkhead(2, max_waiting=0)

    async def main() -> None:
        gate = asyncio.Event()

        async def hung() -> None:
            async with pools["slow"]:
                await gate.wait()

        async def quick() -> str:
            async with pools["fast"]:
                return "ok"

        stuck = [asyncio.create_task(hung()) for _ in range(2)]
        await asyncio.sleep(0)
        assert pools.metrics()["slow"].in_flight == 2
        with pytest.raises(BulkheadFullError) as info:
            async with pools["slow"]:
                pass
        assert info.value.name == "bulkhead[slow]"
        assert await asyncio.wait_for(asyncio.gather(*(quick() for _ in range(10))), 1.0) == [
            "ok"
        ] * 10
        gate.set()
        await asyncio.gather(*stuck)
        assert pools.metrics()["slow"].in_flight == 0

    asyncio.run(main())


def test_keyed_concurrent_creation_yields_one_bulkhead() -> None:
    pools = KeyedBulkhead(1)
    seen: list[Bulkhead] = []
    barrier = threading.Barrier(8)

    def get() -> None:
        barrier.wait()
        seen.append(pools["k"])

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(b) for b in seen}) == 1


def test_slot_granted_to_a_waiter_of_a_closed_loop_is_not_lost() -> None:
    bulkhead = Bulkhead(1, max_waiting=1, max_wait=math.inf)
    assert bulkhead.try_acquire()
    loop = asyncio.new_event_loop()
    task = loop.create_task(bulkhead.acquire_async())
    loop.run_until_complete(asyncio.sleep(0))  # the task queues and suspends
    assert bulkhead.metrics().waiting == 1
    loop.close()  # ...and will never run again
    bulkhead.release()  # granted to it; waking it fails; the slot comes back
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting) == (0, 0)
    assert bulkhead.try_acquire()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # it is abandoned on purpose


# --------------------------------------------------------------------------- stress


@pytest.mark.parametrize("seed", range(20))
def test_stress_random_cancellations_never_leak_a_slot(seed: int) -> None:
    """Many tasks (and, for odd seeds, threads), random cancellations and deadlines.

    Whatever happens, the limit holds, and at the end no slot is taken and no
    one is queued.
    """
    rng = random.Random(seed)
    limit = rng.randint(1, 4)
    bulkhead = Bulkhead(
        limit,
        max_waiting=rng.randint(0, 30),
        max_wait=rng.choice([0.0, 0.001, 0.01, math.inf]),
    )
    lock = threading.Lock()
    current = peak = 0

    def enter() -> None:
        nonlocal current, peak
        with lock:
            current += 1
            peak = max(peak, current)

    def leave() -> None:
        nonlocal current
        with lock:
            current -= 1

    @bulkhead
    async def async_work(seconds: float) -> None:
        enter()
        try:
            await asyncio.sleep(seconds)
        finally:
            leave()

    @bulkhead
    def sync_work(seconds: float) -> None:
        enter()
        try:
            time.sleep(seconds)
        finally:
            leave()

    stop = threading.Event()

    def thread_body(thread_rng: random.Random) -> None:
        while not stop.is_set():
            with contextlib.suppress(BulkheadFullError), deadline_scope(
                thread_rng.random() * 0.005 if thread_rng.random() < 0.3 else None
            ):
                sync_work(thread_rng.random() * 0.001)

    threads = [
        threading.Thread(target=thread_body, args=(random.Random(seed * 10 + i),))
        for i in range(2 if seed % 2 else 0)
    ]
    for thread in threads:
        thread.start()

    async def one() -> None:
        with deadline_scope(rng.random() * 0.005 if rng.random() < 0.3 else None):
            await async_work(rng.random() * 0.002)

    async def main() -> None:
        tasks: list[asyncio.Task[None]] = []
        for _ in range(300):
            tasks.append(asyncio.create_task(one()))
            if rng.random() < 0.5:
                await asyncio.sleep(0 if rng.random() < 0.7 else 0.0005)
            if rng.random() < 0.3:
                rng.choice(tasks).cancel()  # queued, just granted, running or done
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    m = bulkhead.metrics()
    assert (m.in_flight, m.waiting, current) == (0, 0, 0)
    assert 1 <= peak <= limit
