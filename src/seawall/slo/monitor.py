"""The control plane's SLO loop: scrape every registered sidecar, evaluate, keep the result.

:class:`SloMonitor` is the I/O around :class:`~seawall.slo.engine.SloEngine`:
every ``interval`` it fetches each target's admin ``/metrics`` (all at once,
at most ``concurrency`` in flight, each within ``timeout``; OpenMetrics
first, for the exemplars: :data:`~seawall.slo.scrape.ACCEPT`), hands the
pages to the engine with the time of the pass, forgets the targets that left the
registry, and evaluates. A sidecar that does not answer is simply not
observed: the engine counts its silence as missing data, never as good
minutes. A malformed page is skipped, its reason logged and counted.

``targets()`` says whom to scrape (the registry: each instance's address and
admin port); ``slos()`` the current ``slos:`` (a new config is applied at
the next pass, keeping the history of the objectives it leaves unchanged;
``None`` before any config, when the pass does nothing and the store is not
touched);
``alerting()`` where the notices go (:class:`~seawall.slo.webhook.WebhookSender`,
which queues them: delivery never holds a pass).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..config.model import AlertingConfig, SloConfig
from .engine import Evaluation, SloEngine
from .engine import history as spending
from .evaluate import ObjectiveStatus
from .exemplars import BadExemplar
from .history import Saved, SloHistory, definition
from .scrape import ACCEPT
from .webhook import WebhookSender

__all__ = ["SloMonitor", "Target", "status_json"]

log = logging.getLogger("seawall.slo")


@dataclass(frozen=True, slots=True)
class Target:
    """A sidecar to scrape: its instance id, its service, its ``/metrics`` URL."""

    id: str
    service: str
    url: str


class SloMonitor:
    """See the module."""

    def __init__(
        self,
        targets: Callable[[], Sequence[Target]],
        slos: Callable[[], Mapping[str, SloConfig] | None],
        *,
        alerting: Callable[[], AlertingConfig] = AlertingConfig,
        external_url: str = "",
        store: SloHistory | None = None,
        save_every: float = 60.0,
        interval: float = 10.0,
        resolution: float = 60.0,
        timeout: float = 2.0,
        concurrency: int = 64,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._targets = targets
        self._slos = slos
        self._alerting = alerting
        self.webhooks = WebhookSender(alerting(), external_url=external_url)
        self.store = store
        self.save_every = save_every
        self._saved_at = -math.inf
        self.restored: list[str] = []
        """The objectives whose history came back from the store."""
        self._applied: Mapping[str, SloConfig] | None = None
        if not (resolution > 0 and 600 % resolution == 0):
            raise ValueError(f"resolution must divide 600 seconds, got {resolution!r}")
        self.resolution = resolution
        """Seconds a stored bucket spans (the finest a window or a burn rate can tell)."""
        self.engine = SloEngine({}, resolution=resolution, max_gap=1.5 * resolution)
        self.interval = interval
        self.timeout = timeout
        self._limit = asyncio.Semaphore(concurrency)
        self._wall = wall
        self._known: set[str] = set()
        self.last: Evaluation | None = None
        self.evaluated_at: float | None = None
        self.scrape_failures = 0
        self.passes = 0
        self.on_pages: Callable[[Sequence[tuple[Target, str]]], None] | None = None
        """Told each pass's pages (the control plane's canary controller; none when the
        pass scraped nothing)..."""
        self.pages_wanted: Callable[[], bool] = lambda: False
        """... and the sidecars are scraped for it, with no SLO, while this says so."""

    async def run(self) -> None:
        """Pass after pass, until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                while True:
                    started = time.monotonic()
                    try:
                        await self.pass_once(session)
                    except Exception:  # one bad pass must not end the loop
                        log.exception("slo: an evaluation pass failed")
                    await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await self.webhooks.close()
            if self.store is not None:
                self.save_now()  # (cancelled: no await left, so at once)

    def save_now(self) -> int:
        """Write what changed since the last save (bucket rows written; 0 without a store)."""
        if self.store is None or self._applied is None:  # no config yet: keep what is kept
            return 0
        return self.store.save(*self._changes())

    def _changes(self) -> tuple[list[Saved], list[str]]:
        """Every objective's changes since the last save, and the objectives to keep."""
        objectives = self.engine.objectives
        saved = [
            Saved(o.name, definition(o, self.resolution), self.engine.series(o.name).take_changes())
            for o in objectives
        ]
        return saved, [o.name for o in objectives]

    async def pass_once(self, session: aiohttp.ClientSession) -> Evaluation:
        """Scrape every target once, then evaluate."""
        slos = self._slos()
        if slos is None:  # no config yet: nothing to scrape, and the kept history stays
            self.last = self.engine.evaluate(self._wall())
            return self.last
        if slos is not self._applied:
            fresh = self.engine.apply(slos)
            self._applied = slos
            if self.store is not None:  # their history, as the store kept it
                for name in fresh:
                    o = self.engine.objective(name)
                    series = self.engine.series(name)
                    key = definition(o, self.resolution)
                    if await asyncio.to_thread(self.store.load, name, key, series):
                        self.restored.append(name)
                        # its sidecars as they were: forgotten below if they left meanwhile
                        self._known.update(series.sources)
        # no SLO and no one told of the pages: no scrape, nothing would read them
        targets = list(self._targets()) if slos or self.pages_wanted() else []
        now = self._wall()
        pages = await asyncio.gather(*(self._fetch(session, t) for t in targets))
        for target, page in zip(targets, pages, strict=True):
            if page is None:
                continue
            problem = self.engine.scrape(target.id, target.service, page, now)
            if problem is not None:
                log.warning("slo: skipped a metrics page: %s", problem)
        current = {t.id for t in targets}
        for gone in self._known - current:
            self.engine.forget(gone)
        self._known = current
        if self.on_pages is not None:
            self.on_pages([(t, p) for t, p in zip(targets, pages, strict=True) if p is not None])
        self.last = self.engine.evaluate(now)
        self.evaluated_at = now
        self.passes += 1
        alerting = self._alerting()
        if alerting != self.webhooks.config:
            self.webhooks.configure(alerting)
        self.webhooks.send(self.last.notices)  # queued: delivery never holds the pass
        if self.store is not None and time.monotonic() - self._saved_at >= self.save_every:
            self._saved_at = time.monotonic()
            # taken here, on the loop; written in a thread
            await asyncio.to_thread(self.store.save, *self._changes())
        return self.last

    async def _fetch(self, session: aiohttp.ClientSession, target: Target) -> str | None:
        async with self._limit:
            try:
                async with session.get(target.url, headers=_HEADERS) as response:
                    if response.status != 200:
                        raise aiohttp.ClientError(f"answered {response.status}")
                    return await response.text()
            except (TimeoutError, aiohttp.ClientError, UnicodeDecodeError) as exc:
                self.scrape_failures += 1
                log.info("slo: no metrics from %s (%s): %s", target.id, target.url, exc)
                return None

    def history(
        self, name: str, step: float | None = None, since: float | None = None
    ) -> dict[str, Any] | None:
        """How objective ``name``'s budget was spent (``GET /v1/slos/{name}/history``);
        ``None`` for an unknown objective. ``step``, ``since``: see
        :func:`~seawall.slo.engine.history`."""
        try:
            objective = self.engine.objective(name)
        except KeyError:
            return None
        now = self.evaluated_at if self.evaluated_at is not None else self._wall()
        rows = spending(objective, self.engine.series(name), now, step, since)
        return {"name": name, "target": objective.target, "now": now, "rows": rows}

    def report(self) -> dict[str, Any]:
        """The last evaluation as JSON (``GET /v1/slos``)."""
        ev = self.last
        statuses = [] if ev is None else ev.statuses
        return {
            "evaluated_at": self.evaluated_at,
            "passes": self.passes,
            "pages": self.engine.pages,
            "pages_malformed": self.engine.malformed,
            "scrape_failures": self.scrape_failures,
            "webhooks": {
                "delivered": self.webhooks.delivered,
                "retried": self.webhooks.retried,
                "dropped": self.webhooks.dropped,
            },
            "objectives": [status_json(s, self._exemplars(s.name)) for s in statuses],
            "alerts": [
                {
                    "state": a.state,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "active_since": a.active_since,
                }
                for a in self.engine.alerts.active
            ],
        }

    def _exemplars(self, name: str) -> list[BadExemplar]:
        try:
            return self.engine.exemplars(name)
        except KeyError:  # (a config applied since the evaluation)
            return []


_HEADERS = {"Accept": ACCEPT}


def status_json(s: ObjectiveStatus, exemplars: Sequence[BadExemplar] = ()) -> dict[str, Any]:
    """One objective's status as JSON; ``exemplars``: traces of its last bad requests
    (``trace_id``, ``kind`` ``error`` or ``slow``, ``value``, ``at``), newest first."""
    return {
        "name": s.name,
        "service": s.service,
        "target": s.target,
        "period": {"start": s.start, "end": s.end},
        "events": {"total": s.total, "bad": s.bad},
        "coverage": s.coverage,
        "sli": s.sli,
        "budget_remaining": s.budget_remaining,
        "exhaustion_s": s.exhaustion_s,
        "burn": [
            {
                "severity": b.alert.severity,
                "long": b.alert.long,
                "short": b.alert.short,
                "burn_rate": b.alert.burn_rate,
                "long_burn": b.long,
                "short_burn": b.short,
                "long_events": b.long_events,
            }
            for b in s.burn
        ],
        "exemplars": [e.to_json() for e in exemplars],
    }
