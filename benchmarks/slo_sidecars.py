"""Serve ``N`` simulated sidecars' ``/metrics`` pages on loopback, for ``make bench-slo``.

``python benchmarks/slo_sidecars.py N`` listens on N free loopback ports (one
aiohttp site each, one process), prints ``port`` lines then ``ready``, and
serves until stdin closes. Each page is what a sidecar of a 10-service mesh
writes: requests by status class and the latency histogram (14 standard
bounds and one SLO threshold) for its inbound side and 10 destinations of 3
routes, and the other families, ~70 KB; the counters grow between scrapes.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

BOUNDS = ["0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.3",
          "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf"]  # fmt: skip


def page(index: int, tick: int) -> str:
    lines = ["# TYPE seawall_requests_total counter"]
    histogram = ["# TYPE seawall_request_duration_seconds histogram"]
    routes = [("inbound", f"svc{index % 10}", "inbound")] + [
        ("outbound", f"svc{d}", r) for d in range(10) for r in ("default", "read", "write")
    ]
    for direction, dest, route in routes:
        labels = f'direction="{direction}",destination="{dest}",route="{route}"'
        n = 1000 * tick + index
        for cls, share in (("1xx", 0), ("2xx", 0.99), ("3xx", 0), ("4xx", 0.005), ("5xx", 0.005)):
            lines.append(f'seawall_requests_total{{{labels},status_class="{cls}"}} {n * share!r}')
        for k, bound in enumerate(BOUNDS):
            count = n * min(1.0, (k + 1) / 12)
            histogram.append(
                f'seawall_request_duration_seconds_bucket{{{labels},le="{bound}"}} {count!r}'
            )
        histogram.append(f"seawall_request_duration_seconds_sum{{{labels}}} {n * 0.02!r}")
        histogram.append(f"seawall_request_duration_seconds_count{{{labels}}} {float(n)!r}")
    other = [f'seawall_breaker_state{{destination="svc{d}",state="closed"}} 1.0' for d in range(10)]
    return "\n".join(lines + histogram + other) + "\n"


async def main(count: int) -> None:
    ticks = [0] * count

    def handler(index: int):  # type: ignore[no-untyped-def]
        async def metrics(request: web.Request) -> web.Response:
            ticks[index] += 1
            return web.Response(text=page(index, ticks[index]))

        return metrics

    runners = []
    for i in range(count):
        app = web.Application()
        app.router.add_get("/metrics", handler(i))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for runner in runners:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
