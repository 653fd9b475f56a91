"""Alert notices to webhooks, in Alertmanager's JSON, retried, never in the evaluation's way.

:class:`WebhookSender` takes each evaluation's notices (:meth:`send`: grouped
by alert name, one payload a group, see
:func:`~seawall.slo.alerts.webhook_payload`) and delivers them to every
webhook of ``alerting.webhooks``, each in its own task and queue, so a slow
or dead receiver delays only itself:

* a payload is POSTed until a 2xx answer, at most ``max_tries`` times, the
  delays from ``alerting.backoff`` (``seawall.policy``'s backoff, the same as
  the sidecars' retries); a 4xx other than 408 and 429 is final (the
  receiver refuses it: retrying will not change that);
* a retried payload is the same bytes, so Alertmanager (and any receiver that
  keys on ``fingerprint`` and ``status``) deduplicates it;
* :meth:`send` never waits: a queue holds at most ``queue`` payloads per
  webhook, the oldest dropped past it; every drop is logged and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

from ..config.model import AlertingConfig
from ..policy.backoff import backoff
from .alerts import Notice, webhook_payload

__all__ = ["WebhookSender"]

log = logging.getLogger("seawall.slo")


@dataclass(slots=True)
class _Hook:
    url: str
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class WebhookSender:
    """See the module."""

    def __init__(
        self,
        config: AlertingConfig,
        *,
        external_url: str = "",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.external_url = external_url
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._hooks: dict[str, _Hook] = {}
        self._session: aiohttp.ClientSession | None = None
        self.delivered = 0
        self.retried = 0
        self.dropped = 0

    def configure(self, config: AlertingConfig) -> None:
        """A new ``alerting:``: webhooks gone stop (their queues dropped), new ones start."""
        self.config = config
        for url in [u for u in self._hooks if u not in config.webhooks]:
            hook = self._hooks.pop(url)
            if hook.task is not None:
                hook.task.cancel()
            self.dropped += len(hook.queue)

    def send(self, notices: Sequence[Notice]) -> int:
        """Queue these notices for every webhook; the payloads queued (never waits)."""
        if not notices or not self.config.webhooks:
            return 0
        groups: dict[str, list[Notice]] = {}
        for notice in notices:
            groups.setdefault(notice.labels.get("alertname", ""), []).append(notice)
        bodies = [
            json.dumps(webhook_payload(group, external_url=self.external_url)).encode()
            for group in groups.values()
        ]
        for url in self.config.webhooks:
            hook = self._hook(url)
            for body in bodies:
                if len(hook.queue) >= self.config.queue:
                    hook.queue.popleft()
                    self.dropped += 1
                    log.warning("slo: webhook %s is %d notices behind: dropped the oldest",
                                url, self.config.queue)  # fmt: skip
                hook.queue.append(body)
            hook.wake.set()
        return len(bodies) * len(self.config.webhooks)

    def _hook(self, url: str) -> _Hook:
        hook = self._hooks.get(url)
        if hook is None:
            hook = self._hooks[url] = _Hook(url)
            hook.task = asyncio.get_running_loop().create_task(self._deliver(hook))
        return hook

    async def _deliver(self, hook: _Hook) -> None:
        while True:
            if not hook.queue:
                hook.wake.clear()
                await hook.wake.wait()
                continue
            body = hook.queue[0]
            await self._post_until_done(hook.url, body)
            if hook.queue and hook.queue[0] is body:
                hook.queue.popleft()

    async def _post_until_done(self, url: str, body: bytes) -> None:
        strategy = backoff(
            self.config.backoff.jitter, self.config.backoff.base, self.config.backoff.max
        )
        previous = 0.0
        for attempt in range(1, self.config.max_tries + 1):
            status, why = await self._post(url, body)
            if status is not None and 200 <= status < 300:
                self.delivered += 1
                return
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                self.dropped += 1
                log.warning("slo: webhook %s refused a notice (%d): dropped", url, status)
                return
            if attempt == self.config.max_tries:
                break
            self.retried += 1
            previous = strategy.delay(attempt, previous, self._rng)
            log.info("slo: webhook %s: %s; again in %.1fs", url, why, previous)
            await self._sleep(previous)
        self.dropped += 1
        log.warning("slo: webhook %s: gave up after %d tries", url, self.config.max_tries)

    async def _post(self, url: str, body: bytes) -> tuple[int | None, str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.config.timeout)
        try:
            async with self._session.post(
                url, data=body, headers={"content-type": "application/json"}, timeout=timeout
            ) as response:
                await response.read()
                return response.status, f"answered {response.status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            return None, f"{type(exc).__name__}: {exc}"

    async def close(self) -> None:
        """Stop delivering (what is queued is dropped) and close the connections."""
        for hook in self._hooks.values():
            if hook.task is not None:
                hook.task.cancel()
        for hook in self._hooks.values():
            if hook.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await hook.task
        self._hooks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
