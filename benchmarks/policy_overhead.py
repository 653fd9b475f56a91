"""Per-call overhead of seawall's policies against the Python peers, in one run.

Workloads, each sync and async, around a no-op function:

* ``ok``     — every call succeeds;
* ``fail10`` — 10% of the calls fail. For breakers the failure is raised to the
  caller (the failure rate stays under every peer's threshold, so all breakers
  stay closed); for retries the failing call fails once and succeeds on the
  retry, with a zero backoff for every library.

Every variant is timed ``--rounds`` times, the variants interleaved round by
round so that a noisy neighbour hurts all of them alike; the best round counts.
The last line printed is one JSON object (see ``make bench-policy``).

Breaker peers: pybreaker, circuitbreaker, aiobreaker, purgatory.
Retry peers: tenacity, stamina, backoff.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

SyncFn = Callable[[], Any]
AsyncFn = Callable[[], Awaitable[Any]]


class Boom(Exception):
    """The failure the workloads raise."""


# --------------------------------------------------------------------------- workloads


def sync_ok() -> int:
    return 1


async def async_ok() -> int:
    return 1


def make_sync_fail10() -> SyncFn:
    """Every 10th call raises (breaker workload)."""
    n = 0

    def fn() -> int:
        nonlocal n
        n += 1
        if n % 10 == 0:
            raise Boom
        return 1

    return fn


def make_async_fail10() -> AsyncFn:
    n = 0

    async def fn() -> int:
        nonlocal n
        n += 1
        if n % 10 == 0:
            raise Boom
        return 1

    return fn


def make_sync_flaky10() -> SyncFn:
    """Every 10th logical call fails once, then succeeds on the retry (retry workload)."""
    n = 0
    failed = False

    def fn() -> int:
        nonlocal n, failed
        if failed:
            failed = False
            return 1
        n += 1
        if n % 10 == 0:
            failed = True
            raise Boom
        return 1

    return fn


def make_async_flaky10() -> AsyncFn:
    sync = make_sync_flaky10()

    async def fn() -> int:
        return sync()

    return fn


# --------------------------------------------------------------------------- timing


def time_sync(fn: SyncFn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        try:
            fn()
        except Boom:
            pass
    return (time.perf_counter() - start) / n * 1e6


def time_async(fn: AsyncFn, n: int) -> float:
    async def run() -> float:
        start = time.perf_counter()
        for _ in range(n):
            try:
                await fn()
            except Boom:
                pass
        return (time.perf_counter() - start) / n * 1e6

    return asyncio.run(run())


# --------------------------------------------------------------------------- subjects
# Each factory takes the undecorated workload and returns the protected one; a
# new protector per variant, so no state leaks between workloads.


def seawall_breakers() -> dict[str, Callable[[Any], Any]]:
    from seawall.policy import CircuitBreaker

    return {"seawall": lambda fn: CircuitBreaker("bench")(fn)}


def peer_breakers_sync() -> dict[str, Callable[[Any], Any]]:
    import aiobreaker
    import circuitbreaker
    import purgatory
    import pybreaker

    def purg(fn: SyncFn) -> SyncFn:
        return purgatory.SyncCircuitBreakerFactory(default_threshold=5)("bench")(fn)

    return {
        "pybreaker": lambda fn: pybreaker.CircuitBreaker(fail_max=5)(fn),
        "circuitbreaker": lambda fn: circuitbreaker.CircuitBreaker(failure_threshold=5)(fn),
        "aiobreaker": lambda fn: aiobreaker.CircuitBreaker(fail_max=5)(fn),
        "purgatory": purg,
    }


def peer_breakers_async() -> dict[str, Callable[[Any], Any]]:
    import aiobreaker
    import circuitbreaker
    import purgatory

    def purg(fn: AsyncFn) -> AsyncFn:
        factory = purgatory.AsyncCircuitBreakerFactory(default_threshold=5)
        return factory("bench")(fn)

    # pybreaker's call_async needs tornado's coroutines; it has no asyncio path.
    return {
        "circuitbreaker": lambda fn: circuitbreaker.CircuitBreaker(failure_threshold=5)(fn),
        "aiobreaker": lambda fn: aiobreaker.CircuitBreaker(fail_max=5)(fn),
        "purgatory": purg,
    }


def seawall_retries() -> dict[str, Callable[[Any], Any]]:
    from seawall.policy import Constant, Retry

    return {"seawall": lambda fn: Retry(on=Boom, attempts=3, backoff=Constant(0.0))(fn)}


def peer_retries() -> dict[str, Callable[[Any], Any]]:
    import backoff
    import stamina
    import tenacity

    return {
        "tenacity": lambda fn: tenacity.retry(
            retry=tenacity.retry_if_exception_type(Boom),
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_none(),
            reraise=True,
        )(fn),
        "stamina": lambda fn: stamina.retry(
            on=Boom, attempts=3, wait_initial=0.0, wait_max=0.0, wait_jitter=0.0
        )(fn),
        "backoff": lambda fn: backoff.on_exception(
            backoff.constant, Boom, max_tries=3, interval=0, jitter=None
        )(fn),
    }


def seawall_pipeline() -> Callable[[AsyncFn], AsyncFn]:
    from seawall.policy import Bulkhead, CircuitBreaker, Constant, Pipeline, Retry, Timeout

    def build(fn: AsyncFn) -> AsyncFn:
        pipeline = Pipeline(
            Retry(on=Boom, attempts=3, backoff=Constant(0.0)),
            CircuitBreaker("bench"),
            Bulkhead(max_in_flight=64),
            Timeout(1.0),
        )
        return pipeline(fn)

    return build


# --------------------------------------------------------------------------- run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round (default 20000)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per variant (default 7)")
    args = parser.parse_args()
    n, rounds = args.calls, args.rounds

    # (primitive, mode, workload, library) -> (factory of the protected fn, timer, workload maker)
    variants: dict[tuple[str, str, str, str], tuple[Callable[[], Any], Callable[..., float]]] = {}
    sync_workloads: dict[str, Callable[[], SyncFn]] = {
        "ok": lambda: sync_ok,
        "fail10": make_sync_fail10,
    }
    async_workloads: dict[str, Callable[[], AsyncFn]] = {
        "ok": lambda: async_ok,
        "fail10": make_async_fail10,
    }
    retry_sync_workloads: dict[str, Callable[[], SyncFn]] = {
        "ok": lambda: sync_ok,
        "fail10": make_sync_flaky10,
    }
    retry_async_workloads: dict[str, Callable[[], AsyncFn]] = {
        "ok": lambda: async_ok,
        "fail10": make_async_flaky10,
    }

    def add(key: tuple[str, str, str, str], protect: Callable[[Any], Any], make: Callable[[], Any],
            timer: Callable[..., float]) -> None:
        variants[key] = (lambda: protect(make()), timer)

    breakers_sync = {**seawall_breakers(), **peer_breakers_sync()}
    breakers_async = {**seawall_breakers(), **peer_breakers_async()}
    retries = {**seawall_retries(), **peer_retries()}
    for wl, make in sync_workloads.items():
        for lib, protect in breakers_sync.items():
            add(("breaker", "sync", wl, lib), protect, make, time_sync)
    for wl, amake in async_workloads.items():
        for lib, protect in breakers_async.items():
            add(("breaker", "async", wl, lib), protect, amake, time_async)
    for wl, make in retry_sync_workloads.items():
        for lib, protect in retries.items():
            add(("retry", "sync", wl, lib), protect, make, time_sync)
    for wl, amake in retry_async_workloads.items():
        for lib, protect in retries.items():
            add(("retry", "async", wl, lib), protect, amake, time_async)
        add(("pipeline", "async", wl, "seawall"), seawall_pipeline(), amake, time_async)
    for wl, make in sync_workloads.items():
        add(("baseline", "sync", wl, "bare"), lambda fn: fn, make, time_sync)
    for wl, amake in async_workloads.items():
        add(("baseline", "async", wl, "bare"), lambda fn: fn, amake, time_async)

    # Sanity: every protected workload runs and returns 1 on a plain success.
    best: dict[tuple[str, str, str, str], float] = {}
    for r in range(rounds):
        for key, (build, timer) in variants.items():
            fn = build()
            us = timer(fn, n if r else max(1000, n // 10))  # round 0 is a warm-up
            if r:
                best[key] = min(best.get(key, float("inf")), us)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)

    print(f"\nper-call time in µs (best of {rounds - 1} rounds of {n} calls; lower is better)\n")
    header = f"{'primitive':<10}{'mode':<7}{'workload':<9}{'library':<16}"
    print(f"{header}{'µs/call':>9}{'vs seawall':>12}")
    for key in sorted(best):
        prim, mode, wl, lib = key
        ours = best.get((prim, mode, wl, "seawall"))
        ratio = f"{best[key] / ours:10.2f}x" if ours and lib != "seawall" else ""
        print(f"{prim:<10}{mode:<7}{wl:<9}{lib:<16}{best[key]:>9.3f}{ratio:>12}")

    # Targets: seawall <= the fastest peer for each primitive, mode and workload.
    print("\ntargets")
    ok = True
    for prim in ("breaker", "retry"):
        for mode in ("sync", "async"):
            for wl in ("ok", "fail10"):
                ours = best[(prim, mode, wl, "seawall")]
                peers = {k[3]: v for k, v in best.items()
                         if k[:3] == (prim, mode, wl) and k[3] != "seawall"}
                fastest = min(peers, key=lambda lib: peers[lib])
                passed = ours <= peers[fastest]
                ok &= passed
                print(f"  {prim} {mode} {wl}: seawall {ours:.3f} µs vs fastest peer "
                      f"{fastest} {peers[fastest]:.3f} µs -> "
                      f"{'PASS' if passed else 'FAIL'} ({peers[fastest] / ours:.2f}x)")
    pipe = best[("pipeline", "async", "ok", "seawall")]
    ok &= pipe <= 3.0
    print(f"  pipeline async ok (retry+breaker+bulkhead+timeout): {pipe:.3f} µs <= 3 µs -> "
          f"{'PASS' if pipe <= 3.0 else 'FAIL'}")

    def us(prim: str, mode: str, lib: str, wl: str = "ok") -> float | None:
        value = best.get((prim, mode, wl, lib))
        return None if value is None else round(value, 3)

    result: dict[str, Any] = {
        "seawall": {
            "breaker_sync_us": us("breaker", "sync", "seawall"),
            "breaker_async_us": us("breaker", "async", "seawall"),
            "retry_sync_us": us("retry", "sync", "seawall"),
            "retry_async_us": us("retry", "async", "seawall"),
            "pipeline_async_us": us("pipeline", "async", "seawall"),
            "breaker_sync_fail10_us": us("breaker", "sync", "seawall", "fail10"),
            "breaker_async_fail10_us": us("breaker", "async", "seawall", "fail10"),
            "retry_sync_fail10_us": us("retry", "sync", "seawall", "fail10"),
            "retry_async_fail10_us": us("retry", "async", "seawall", "fail10"),
            "pipeline_async_fail10_us": us("pipeline", "async", "seawall", "fail10"),
        },
        "peers": {},
        "baseline": {
            "bare_sync_us": us("baseline", "sync", "bare"),
            "bare_async_us": us("baseline", "async", "bare"),
        },
        "targets_met": ok,
    }
    for lib in sorted({k[3] for k in best} - {"seawall", "bare"}):
        prim = "breaker" if any(k[0] == "breaker" and k[3] == lib for k in best) else "retry"
        result["peers"][lib] = {
            f"{prim}_{mode}{'' if wl == 'ok' else '_' + wl}_us": us(prim, mode, lib, wl)
            for mode in ("sync", "async")
            for wl in ("ok", "fail10")
        }
    print(json.dumps(result, separators=(", ", ": ")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
