"""``make demo``: seawall's policies on real HTTP calls, against a server that misbehaves.

The demo starts a local HTTP server (:mod:`examples.flaky_server`) on
127.0.0.1, calls it with httpx through seawall policies and prints a timeline:

1. a circuit breaker opening on failures, failing fast, probing in half-open,
   opening again, then closing when the server recovers;
2. retries spreading out with jittered exponential backoff, then stopping when
   the shared retry budget is spent during an outage;
3. a bulkhead keeping calls to a healthy service fast while another one hangs,
   next to a single shared pool that lets the hung service starve it.

It ends by itself in well under a minute.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from examples.flaky_server import FlakyServer
from seawall.policy import (
    BreakerState,
    Bulkhead,
    BulkheadFullError,
    CircuitBreaker,
    CircuitOpenError,
    DeadlineExceeded,
    ExponentialFullJitter,
    KeyedBulkhead,
    Retry,
    RetryBudget,
    RetryDetails,
    Timeout,
)

T0 = time.monotonic()


def say(message: str) -> None:
    """Print one timeline line, stamped with the seconds since the demo started."""
    print(f"[{time.monotonic() - T0:6.2f}s] {message}", flush=True)


def failed(response: httpx.Response) -> bool:
    """5xx answers are failures of the dependency."""
    return response.status_code >= 500


# --------------------------------------------------------------------------- act 1


class BreakerTimeline:
    """A breaker listener that narrates transitions and counts fast rejections."""

    def __init__(self) -> None:
        self.rejected = 0

    def on_state_change(self, name: str, old: BreakerState, new: BreakerState, now: float) -> None:
        if self.rejected:
            say(f"  … {self.rejected} calls were rejected at once while OPEN (nothing sent)")
            self.rejected = 0
        notes = {
            BreakerState.OPEN: "failing fast",
            BreakerState.HALF_OPEN: "admitting 2 probe calls",
            BreakerState.CLOSED: "traffic flows again",
        }
        say(f"breaker {name!r}: {old.value.upper()} → {new.value.upper()} ({notes.get(new, '')})")

    def on_rejected(self, name: str, state: BreakerState, now: float) -> None:
        self.rejected += 1


async def act_breaker(server: FlakyServer, http: httpx.AsyncClient) -> None:
    print("\n== 1. Circuit breaker: payments fails for 2.5 s, then recovers ==")
    timeline = BreakerTimeline()
    breaker = CircuitBreaker(
        "payments",
        window_size=10,
        minimum_calls=5,
        failure_rate=50,
        open_for=1.0,
        half_open_calls=2,
        failure_on_result=failed,
        listeners=[timeline],
    )

    @breaker
    async def pay() -> httpx.Response:
        return await http.get("/payments")

    start = time.monotonic()
    fast, slow = [], []
    server.set("/payments", "ok")
    say("payments healthy; calling it every 40 ms")
    phase = "ok"
    while (elapsed := time.monotonic() - start) < 5.5:
        if phase == "ok" and 0.8 <= elapsed < 3.3:
            phase = "fail"
            server.set("/payments", "fail")
            say("payments starts answering 503")
        elif phase == "fail" and elapsed >= 3.3:
            phase = "recovered"
            server.set("/payments", "ok")
            say("payments recovered")
        t = time.perf_counter()
        try:
            await pay()
            slow.append(time.perf_counter() - t)
        except CircuitOpenError:
            fast.append(time.perf_counter() - t)
        await asyncio.sleep(0.04)
    m = breaker.metrics()
    say(
        f"payments: {m.successful_calls} ok, {m.failed_calls} failed, "
        f"{m.not_permitted_calls} rejected; a rejection took "
        f"{statistics.median(fast) * 1e3:.3f} ms vs {statistics.median(slow) * 1e3:.2f} ms "
        f"for a real call (median)"
    )


# --------------------------------------------------------------------------- act 2


async def act_retry(server: FlakyServer, http: httpx.AsyncClient) -> None:
    print("\n== 2. Retries: jittered backoff, then a retry budget during an outage ==")

    def narrate(details: RetryDetails) -> None:
        what = details.result.status_code if details.result is not None else details.exception
        say(f"  attempt {details.attempt} got {what}; retrying in {details.delay * 1e3:5.1f} ms")

    def inventory_retry(budget: RetryBudget | None) -> Retry:
        return Retry(
            on=httpx.TransportError,
            on_result=failed,
            attempts=5,
            backoff=ExponentialFullJitter(base=0.05, max=1.0),
            budget=budget,
            rng=random.Random(42),
            on_retry=narrate,
            name="inventory",
        )

    async def call(retry: Retry) -> tuple[httpx.Response, int]:
        before = server.hits.get("/inventory", 0)
        response = await retry.acall(http.get, "/inventory")
        return response, server.hits["/inventory"] - before

    server.set("/inventory", "flaky:0.6")
    say("inventory fails 60% of requests; each retry waits a random 0..min(1 s, 50 ms·2^n)")
    retry = inventory_retry(budget=None)
    for i in range(1, 5):
        response, used = await call(retry)
        say(f"call {i}: {response.status_code} after {used} attempt(s)")

    server.set("/inventory", "fail")
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, ttl=3.0)
    say("inventory is down. The same retry now shares a budget: retries may add 20% of")
    say("the requests plus 1 per second (3 s window). 20 calls, each wanting 4 retries:")
    retry = inventory_retry(budget)
    before = server.hits["/inventory"]
    refused = 0
    for i in range(1, 21):
        response, used = await call(retry)
        if used > 1:
            say(f"call {i}: {response.status_code} after {used} attempts")
        else:
            refused += 1
            if refused == 1:
                say(f"call {i}: {response.status_code} after 1 attempt: budget spent, no retry")
    sent = server.hits["/inventory"] - before
    say(f"{refused} of 20 calls got no retry at all; after the 3-retry floor, one call in five")
    say(f"may retry once (the 20% ratio). The outage cost {sent} requests instead of 100.")


# --------------------------------------------------------------------------- act 3


async def timed_calls(
    call: Callable[[], Awaitable[Any]], count: int, pause: float
) -> tuple[list[float], int]:
    """Run ``call`` ``count`` times; return the latencies of successes and the rejections."""
    latencies: list[float] = []
    rejected = 0
    for _ in range(count):
        t = time.perf_counter()
        try:
            await call()
            latencies.append(time.perf_counter() - t)
        except (BulkheadFullError, DeadlineExceeded):
            rejected += 1
        await asyncio.sleep(pause)
    return latencies, rejected


def p(values: list[float], q: float) -> str:
    if not values:
        return "   n/a"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3:6.2f}"


async def act_bulkhead(server: FlakyServer, http: httpx.AsyncClient) -> None:
    print("\n== 3. Bulkheads: search hangs for 2 s; login must stay fast ==")
    server.set("/search", "hang:2")
    server.set("/login", "ok")

    async def scenario(label: str, for_search: Bulkhead, for_login: Bulkhead) -> None:
        timeout = Timeout(1.0)

        @for_search
        @timeout
        async def search() -> httpx.Response:
            return await http.get("/search")

        @for_login
        async def login() -> httpx.Response:
            return await http.get("/login")

        searches = [asyncio.create_task(timed_calls(search, 3, 0.05)) for _ in range(8)]
        await asyncio.sleep(0.05)
        login_lat, login_rejected = await timed_calls(login, 40, 0.02)
        results = await asyncio.gather(*searches)
        search_done = sum(len(r[0]) for r in results)
        search_rejected = sum(r[1] for r in results)
        say(
            f"{label}: login {len(login_lat)} ok / {login_rejected} rejected, "
            f"p50 {p(login_lat, 0.5)} ms p99 {p(login_lat, 0.99)} ms; "
            f"search {search_done} ok / {search_rejected} rejected or timed out"
        )

    shared = Bulkhead(max_in_flight=4, name="shared")
    await scenario("one shared pool of 4  ", shared, shared)
    keyed = KeyedBulkhead(max_in_flight=4)
    await scenario("a pool per downstream ", keyed["search"], keyed["login"])
    say("with a pool per downstream, the hung search only fills its own slots")


async def main() -> None:
    server = FlakyServer()
    await server.start()
    say(f"flaky server listening on {server.url}")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as http:
            await act_breaker(server, http)
            await act_retry(server, http)
            await act_bulkhead(server, http)
    finally:
        await server.stop()
    print(f"\ndemo finished in {time.monotonic() - T0:.1f} s")


if __name__ == "__main__":
    asyncio.run(main())
