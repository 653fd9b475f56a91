"""Config push fan-out: one control plane, N subscribed sidecars, a new version applied.

Starts ``seawall control`` (SQLite store) as its own process, subscribes N
simulated sidecars (each a keep-alive HTTP connection long-polling
``GET /v1/snapshot``, exactly what a sidecar sends), applies a new config
with ``PUT /v1/config`` and measures, for every subscriber, the time from the
apply request leaving to the new version's last byte arriving. Rounds repeat
with a different config each time.

The peer, measured in the same run on the same machine: etcd (Debian's
etcd-server) fanning one ``put`` out to N watchers through its JSON gateway
(each watcher a streaming ``POST /v3/watch`` on its own connection), the
notification mechanism control planes built on etcd use.

Then, on the same control plane, the registry churn of
``control_churn.py``: 5,000 instances register, renew and deregister while
500 subscribers long-poll (registration p99 <= 10 ms, push <= 2 s, other
calls' p99 <= 20 ms, bulk deregistration no dearer per instance than a
registration).

Prints tables, the ratios seawall/etcd, and one JSON line:
``{"subscribers": N, "seawall_max_s": ..., "target_s": 2.0, "target_met": ...,
"churn": {...}, "targets_met": ...}``.

Every loop is bounded in count and in time; all traffic is on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from control_churn import read_response, run_churn

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 2.0

MESH = """\
mesh: bench
services:
{services}
policies:
  svc0: {{timeout: {timeout}ms}}
"""


def mesh(round_no: int, services: int = 20) -> str:
    lines = []
    for i in range(services):
        lines.append(
            f"  svc{i}: {{port: {20000 + i}, sidecar: "
            f"{{inbound: {21000 + i}, outbound: {22000 + i}, admin: {23000 + i}}}}}"
        )
    return MESH.format(services="\n".join(lines), timeout=1000 + round_no)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def subscriber(
    port: int, token: str, etag: str, ready: asyncio.Event, done: list[float], deadline: float
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET /v1/snapshot?known={etag}&wait=30 HTTP/1.1\r\nHost: control\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    try:
        writer.write(request)
        ready.set()
        while time.perf_counter() < deadline:
            left = deadline - time.perf_counter()
            status, _ = await asyncio.wait_for(read_response(reader), left)
            if status == 200:
                done.append(time.perf_counter())
                return
            writer.write(request)  # 304: wait again
    finally:
        writer.close()


async def seawall_round(
    port: int, admin: str, token: str, n: int, round_no: int
) -> list[float]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as c:
        etag = (await c.get("/v1/health")).json()["etag"]
        done: list[float] = []
        deadline = time.perf_counter() + 20
        tasks = [
            asyncio.create_task(subscriber(port, token, etag, asyncio.Event(), done, deadline))
            for _ in range(n)
        ]
        limit = time.perf_counter() + 15
        while (await c.get("/v1/health")).json()["subscribers"] < n:
            if time.perf_counter() > limit:
                raise RuntimeError("subscribers did not all start waiting")
            await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        r = await c.put(
            "/v1/config",
            content=mesh(round_no),
            headers={"authorization": f"Bearer {admin}"},
        )
        r.raise_for_status()
        await asyncio.wait_for(asyncio.gather(*tasks), 25)
    if len(done) != n:
        raise RuntimeError(f"only {len(done)} of {n} subscribers got the new version")
    return [t - t0 for t in done]


# ------------------------------------------------------------------ etcd peer


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def etcd_watcher(
    c: httpx.AsyncClient, url: str, key: str, ready: list[int], done: list[float],
    deadline: float,
) -> None:  # fmt: skip
    body = {"create_request": {"key": _b64(key)}}
    # one watch per connection of the shared client's pool
    async with c.stream("POST", f"{url}/v3/watch", json=body) as r:
        async for line in r.aiter_lines():
            if time.perf_counter() > deadline:
                return
            if not line.strip():
                continue
            msg = json.loads(line).get("result", {})
            if msg.get("created"):
                ready.append(1)
                continue
            if msg.get("events"):
                done.append(time.perf_counter())
                return


async def etcd_round(url: str, n: int, round_no: int) -> list[float]:
    key = f"/bench/config-{round_no}"
    ready: list[int] = []
    done: list[float] = []
    deadline = time.perf_counter() + 20
    # One client for every watcher, a connection each: an httpx client costs an SSL
    # context (tens of ms), and 500 of them would block the loop for seconds.
    shared = httpx.AsyncClient(
        trust_env=False, timeout=None, limits=httpx.Limits(max_connections=n + 10)
    )
    tasks = [
        asyncio.create_task(etcd_watcher(shared, url, key, ready, done, deadline))
        for _ in range(n)
    ]
    limit = time.perf_counter() + 15
    while len(ready) < n:
        if time.perf_counter() > limit:
            raise RuntimeError(f"etcd watchers did not all start: {len(ready)} of {n}")
        await asyncio.sleep(0.05)
    async with httpx.AsyncClient(trust_env=False) as c:
        t0 = time.perf_counter()
        r = await c.post(f"{url}/v3/kv/put", json={"key": _b64(key), "value": _b64(mesh(round_no))})
        r.raise_for_status()
    await asyncio.wait_for(asyncio.gather(*tasks), 25)
    await shared.aclose()
    if len(done) != n:
        raise RuntimeError(f"only {len(done)} of {n} etcd watchers saw the put")
    return [t - t0 for t in done]


def start_etcd(tmp: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("etcd")
    if binary is None:
        return None
    client, peer = free_port(), free_port()
    url = f"http://127.0.0.1:{client}"
    proc = subprocess.Popen(
        [
            binary, "--data-dir", str(tmp / "etcd"), "--name", "bench",
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"bench=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    limit = time.monotonic() + 15
    while time.monotonic() < limit:
        try:
            if httpx.get(f"{url}/health", trust_env=False, timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("etcd did not start")


def start_control(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    state = tmp / "state"
    env = {k: v for k, v in os.environ.items() if k.upper() != "HTTP_PROXY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "seawall", "control", "--state-dir", str(state),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=open("/tmp/control-stderr.log", "w"),
        cwd=ROOT,
        env=env,
    )
    limit = time.monotonic() + 15
    while time.monotonic() < limit:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", trust_env=False).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("seawall control did not start")


Etcd = tuple[subprocess.Popen[bytes], str]  # the process and its client URL


@contextlib.contextmanager
def servers() -> Iterator[tuple[subprocess.Popen[bytes], int, str, Etcd | None]]:
    """(control process, its port, its admin token, (etcd process, URL) or None), stopped after."""
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        control, port = start_control(tmp)
        etcd = start_etcd(tmp)
        try:
            yield control, port, (tmp / "state" / "admin-token").read_text().strip(), etcd
        finally:
            control.send_signal(signal.SIGTERM)
            control.wait(10)
            if etcd is not None:
                etcd[0].kill()
                etcd[0].wait(10)


def summary(name: str, times: list[float]) -> dict[str, float]:
    times = sorted(times)
    return {
        "name": name,  # type: ignore[dict-item]
        "p50": statistics.median(times),
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))],
        "max": times[-1],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--churn-instances", type=int, default=5000, help="0: no churn run")
    args = parser.parse_args()
    n = args.subscribers
    results: dict[str, list[float]] = {"seawall": [], "etcd": []}
    churn: dict[str, object] | None = None
    with servers() as (control, port, admin, etcd):
        httpx.put(
            f"http://127.0.0.1:{port}/v1/config",
            content=mesh(0),
            headers={"authorization": f"Bearer {admin}"},
            trust_env=False,
        ).raise_for_status()
        token = httpx.post(
            f"http://127.0.0.1:{port}/v1/join-tokens",
            json={"service": "svc0"},
            headers={"authorization": f"Bearer {admin}"},
            trust_env=False,
        ).json()["token"]
        for round_no in range(1, args.rounds + 1):  # interleaved: same noise for both
            results["seawall"] += asyncio.run(seawall_round(port, admin, token, n, round_no))
            if etcd is not None:
                results["etcd"] += asyncio.run(etcd_round(etcd[1], n, round_no))
        if args.churn_instances:
            churn = run_churn(
                port, admin, etcd[1] if etcd else None, subscribers=n,
                instances=args.churn_instances, services=10, registrars=8, rate=500.0,
                server_pids=[control.pid] + ([etcd[0].pid] if etcd else []),
            )  # fmt: skip
    print(f"push of a new config version to {n} subscribers, {args.rounds} rounds (seconds)")
    print(f"{'':10} {'p50':>8} {'p99':>8} {'max':>8}")
    rows = {k: summary(k, v) for k, v in results.items() if v}
    for name, row in rows.items():
        print(f"{name:10} {row['p50']:8.3f} {row['p99']:8.3f} {row['max']:8.3f}")
    if "etcd" in rows:
        print(f"ratio seawall/etcd (max): {rows['seawall']['max'] / rows['etcd']['max']:.2f}")
    worst = rows["seawall"]["max"]
    met = worst <= TARGET_S and (churn is None or bool(churn["targets_met"]))
    verdict = "PASS" if worst <= TARGET_S else "FAIL"
    print(f"target: every subscriber within {TARGET_S:g} s: {verdict} ({worst:.3f} s)")
    print(
        json.dumps(
            {
                "subscribers": n,
                "rounds": args.rounds,
                "seawall_p50_s": round(rows["seawall"]["p50"], 4),
                "seawall_max_s": round(worst, 4),
                "etcd_max_s": round(rows["etcd"]["max"], 4) if "etcd" in rows else None,
                "target_s": TARGET_S,
                "target_met": worst <= TARGET_S,
                "churn": churn,
                "targets_met": met,
            }
        )
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
