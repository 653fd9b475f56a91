"""WebhookSender: Alertmanager's JSON to real HTTP receivers on loopback, retried with
backoff, dropped when refused or after max_tries, never blocking the caller."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from aiohttp import web
from loopback import serving

from seawall.config import AlertingConfig
from seawall.slo import Notice
from seawall.slo.webhook import WebhookSender

FIRING = Notice(
    "firing",
    {"alertname": "SLOBurnRate", "slo": "checkout", "objective": "availability",
     "severity": "page", "long": "1h", "short": "5m"},
    {"summary": "checkout burns"},
    1_800_000_000.0,
    None,
)  # fmt: skip


class Receiver:
    """A webhook receiver that answers the statuses it is given, then 200."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[bytes] = []
        self.got = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        status = self.statuses.pop(0) if self.statuses else 200
        if status == 200:
            self.got.set()
        return web.Response(status=status)


def config(*urls: str, **fields: Any) -> AlertingConfig:
    return AlertingConfig.model_validate(
        {"webhooks": list(urls), "backoff": {"base": "10ms", "max": "40ms", "jitter": "none"},
         **fields}
    )  # fmt: skip


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_notice_is_retried_until_delivered_as_the_same_bytes() -> None:
    rx = Receiver([503, 502])
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the backoff's delays, without waiting them
        waits.append(seconds)

    async def main() -> WebhookSender:
        async with serving("POST", "/hook", rx.handle) as url:
            sender = WebhookSender(config(url), sleep=sleep, external_url="http://c/ui/slos")
            assert sender.send([FIRING]) == 1
            await asyncio.wait_for(rx.got.wait(), 10)
            await sender.close()
            return sender

    sender = asyncio.run(main())
    assert len(rx.bodies) == 3  # 503, 502, then 200
    assert rx.bodies[0] == rx.bodies[1] == rx.bodies[2]  # the same notice: deduplicable
    assert waits == [0.01, 0.02]  # seawall.policy's backoff, doubling
    body = json.loads(rx.bodies[0])
    assert body["status"] == "firing"
    assert body["externalURL"] == "http://c/ui/slos"
    assert body["alerts"][0]["labels"]["slo"] == "checkout"
    assert (sender.delivered, sender.retried, sender.dropped) == (1, 2, 0)


def test_a_refusal_is_final_and_a_dead_receiver_is_given_up() -> None:
    seen: list[bytes] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.Response(status=400)

    async def no_wait(seconds: float) -> None:
        return None

    async def main() -> WebhookSender:
        async with serving("POST", "/hook", refuse) as url:
            dead = f"http://127.0.0.1:{closed_port()}/hook"
            sender = WebhookSender(config(url, dead, max_tries=3), sleep=no_wait)
            sender.send([FIRING])
            for _ in range(500):
                if sender.dropped == 2:
                    break
                await asyncio.sleep(0.01)
            await sender.close()
            return sender

    sender = asyncio.run(main())
    assert len(seen) == 1  # 400: not retried
    assert sender.dropped == 2  # the refused one, and the dead receiver's after 3 tries
    assert sender.retried == 2
    assert sender.delivered == 0


def test_send_never_waits_and_a_full_queue_drops_the_oldest() -> None:
    async def forever(seconds: float) -> None:
        await asyncio.sleep(3600)

    async def main() -> WebhookSender:
        dead = f"http://127.0.0.1:{closed_port()}/hook"
        sender = WebhookSender(config(dead, queue=2), sleep=forever)
        for _ in range(5):  # each returns at once
            sender.send([FIRING])
        await asyncio.sleep(0.05)
        await sender.close()
        return sender

    sender = asyncio.run(main())
    assert sender.dropped >= 2  # 5 queued, 2 held at most (one of them in delivery)
    assert WebhookSender(config()).send([FIRING]) == 0  # no webhook: nothing queued
