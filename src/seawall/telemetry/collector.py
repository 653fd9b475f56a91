"""``seawall traces``: the embedded collector, store and query server.

Spans come in over OTLP/HTTP (``POST /v1/traces``), are decoded by the Rust
core, go through tail sampling when it is on, and are written to the SQLite
store by one writer thread, in batches that merge many export requests. The
HTTP side never waits for the disk: an accepted request's spans go into a
bounded queue (:data:`QUEUE_SPANS` spans by default), and a request that
finds the queue full is answered 503 with ``Retry-After`` (OTLP clients
retry it), so a slow disk slows the exporters down instead of losing what
they already sent.

Everything the collector answers is decided in
:mod:`seawall.telemetry.traces_api`; this module is the aiohttp server in
front of it (the control plane's pattern: aiohttp's low-level server, no
router), the writer thread, and the collector's own metrics.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web

from .receiver import JSON, Refused, media_type
from .spans import SpanRow
from .store import TraceStore
from .tail import TailPolicy, TailSampler
from .traces_api import Answer, TracesAPI

__all__ = ["QUEUE_SPANS", "Collector", "CollectorServer"]

QUEUE_SPANS = 262_144
"""Spans accepted but not yet stored; past it exports get 503 and are retried."""
_WRITE_BATCH = 8192
"""The most spans one store transaction takes."""
_TICK = 0.25
"""Seconds between two looks at tail-sampling decisions and retention when idle."""
RETENTION_EVERY = 60.0
"""Seconds between two retention runs."""

_log = logging.getLogger("seawall.traces")


@dataclass
class _Counters:
    stored: int = 0
    write_errors: int = 0
    refused_full: int = 0


class Collector:
    """The store, fed by a writer thread, and the API over it.

    ``monotonic`` drives tail sampling's decision wait; the store has its
    own wall clock for retention. Call :meth:`start` before exporting and
    :meth:`close` at the end (it stores what is queued, decides what waits).
    """

    def __init__(
        self,
        store: TraceStore,
        *,
        tail: TailPolicy | None = None,
        max_body: int = 64 * 1024 * 1024,
        queue_spans: int = QUEUE_SPANS,
        monotonic: Callable[[], float] = time.monotonic,
        retention_every: float = RETENTION_EVERY,
        extra: Callable[[str, Mapping[str, list[str]]], Answer | None] | None = None,
        on_stored: Callable[[list[SpanRow]], None] | None = None,
    ) -> None:
        self.store = store
        self.sampler = TailSampler(tail) if tail is not None else None
        self._monotonic = monotonic
        self._retention_every = retention_every
        self._queue: queue.Queue[list[SpanRow] | None] = queue.Queue()
        self._queued = 0
        self._limit = queue_spans
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._counters = _Counters()
        self._on_stored = on_stored
        self._thread: threading.Thread | None = None
        self.api = TracesAPI(
            store, ingest=self.ingest, max_body=max_body, metrics=self.metrics_text, extra=extra
        )

    # ------------------------------------------------------------ ingest

    def ingest(self, rows: list[SpanRow]) -> bool:
        """Queue one export request's spans; ``False`` when the queue is full."""
        with self._lock:
            if self._queued and self._queued + len(rows) > self._limit:
                self._counters.refused_full += 1
                return False
            self._queued += len(rows)
        self._queue.put(rows)
        return True

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="seawall-traces-writer")
            self._thread.daemon = True
            self._thread.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every span queued so far is stored (or decided); for tests and demos."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._queued:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        """Store what is queued, decide every waiting trace, stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        last_retention = self._monotonic()
        stopping = False
        while not stopping:
            batch: list[SpanRow] = []
            taken = 0
            try:
                first = self._queue.get(timeout=_TICK)
            except queue.Empty:
                first = []
            if first is None:
                stopping = True
            else:
                batch.extend(first)
                taken += len(first)
                while len(batch) < _WRITE_BATCH:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.extend(more)
                    taken += len(more)
            now = self._monotonic()
            keep = self._sample(batch, now, final=stopping)
            self._write(keep)
            if taken:
                with self._idle:
                    self._queued -= taken
                    self._idle.notify_all()
            if now - last_retention >= self._retention_every:
                last_retention = now
                self._retain()

    def _sample(self, rows: list[SpanRow], now: float, *, final: bool) -> list[SpanRow]:
        sampler = self.sampler
        if sampler is None:
            return rows
        keep, forced = sampler.offer(rows, now)
        decisions = forced + (sampler.flush() if final else sampler.due(now))
        for d in decisions:
            if d.kept:
                keep.extend(d.rows)
        return keep

    def _write(self, rows: list[SpanRow]) -> None:
        for start in range(0, len(rows), _WRITE_BATCH):
            chunk = rows[start : start + _WRITE_BATCH]
            try:
                self._counters.stored += self.store.insert(chunk)
            except Exception:  # a store error must not kill the writer
                self._counters.write_errors += 1
                _log.exception("trace store: a batch of %d spans was not stored", len(chunk))
                continue
            if self._on_stored is not None:
                try:
                    self._on_stored(chunk)
                except Exception:
                    _log.exception("trace store: a listener of stored spans failed")

    def _retain(self) -> None:
        try:
            report = self.store.enforce_retention()
        except Exception:
            _log.exception("trace store: retention failed")
            return
        if report.traces_expired or report.traces_evicted:
            _log.info(
                "trace store: %d traces expired, %d evicted for size (%d spans)",
                report.traces_expired,
                report.traces_evicted,
                report.spans_deleted,
            )

    # ----------------------------------------------------------- metrics

    def metrics_text(self) -> str:
        """The collector's metrics, in the Prometheus text format."""
        s = self.store.stats()
        c = self._counters
        api = self.api
        lines: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        metric(
            "seawall_traces_spans_received_total",
            "counter",
            "Spans accepted over OTLP.",
            [("", api.received)],
        )
        metric(
            "seawall_traces_spans_rejected_total",
            "counter",
            "Spans refused one by one (partial success: an invalid id).",
            [("", api.rejected)],
        )
        metric(
            "seawall_traces_requests_refused_total",
            "counter",
            "Export requests refused whole (malformed, too large, or the queue full).",
            [("", api.refused)],
        )
        metric(
            "seawall_traces_spans_stored_total",
            "counter",
            "Spans written to the store.",
            [("", s.spans_stored)],
        )
        metric(
            "seawall_traces_spans_dropped_total",
            "counter",
            "Spans not stored: duplicates of stored ones, or dropped for a full disk.",
            [
                ('{reason="duplicate"}', s.spans_duplicate),
                ('{reason="disk_full"}', s.spans_dropped_full),
            ],
        )
        metric(
            "seawall_traces_traces_deleted_total",
            "counter",
            "Traces deleted by retention: older than max_age, or the oldest for max_size.",
            [('{reason="age"}', s.traces_expired), ('{reason="size"}', s.traces_evicted_size)],
        )
        metric(
            "seawall_traces_store_bytes",
            "gauge",
            "Bytes of the store in use.",
            [("", s.bytes_used)],
        )
        metric(
            "seawall_traces_queue_spans",
            "gauge",
            "Spans accepted and not yet stored.",
            [("", self._queued)],
        )
        metric(
            "seawall_traces_write_errors_total",
            "counter",
            "Batches the store failed to write (logged).",
            [("", c.write_errors)],
        )
        if self.sampler is not None:
            metric(
                "seawall_traces_tail_decisions_total",
                "counter",
                "Traces decided by tail sampling.",
                [
                    ('{decision="kept"}', self.sampler.kept),
                    ('{decision="dropped"}', self.sampler.dropped),
                ],
            )
            metric(
                "seawall_traces_tail_waiting",
                "gauge",
                "Traces waiting for their tail-sampling decision.",
                [("", self.sampler.waiting)],
            )
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ HTTP

_BODY_TIMEOUT = 30.0
_IDLE_TIMEOUT = 120.0


class CollectorServer:
    """The collector's API on one TCP listener (aiohttp's low-level server)."""

    def __init__(self, collector: Collector, *, shutdown_grace: float = 5.0) -> None:
        self.collector = collector
        server = web.Server(
            self._handle,
            handler_cancellation=True,
            access_log=None,
            keepalive_timeout=_IDLE_TIMEOUT,
            auto_decompress=False,  # gzip is the receiver's, with its size limit
        )
        self._runner = web.ServerRunner(server, shutdown_timeout=shutdown_grace)
        self.port = 0
        # Exports are decoded on threads of their own: a slow query (a day's graph)
        # never makes an exporter wait, which would fill the sidecars' queues.
        self._ingest = ThreadPoolExecutor(2, thread_name_prefix="seawall-traces-ingest")
        self._queries = ThreadPoolExecutor(4, thread_name_prefix="seawall-traces-query")

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` (0: a free port; :attr:`port` says which)."""
        self.collector.start()
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, backlog=1024)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        await self._runner.cleanup()
        self._queries.shutdown(wait=False, cancel_futures=True)
        self._ingest.shutdown(wait=True)
        await asyncio.to_thread(self.collector.close)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        answer = await self._answer(request)
        return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))

    async def _answer(self, request: web.BaseRequest) -> Answer:
        api = self.collector.api
        path = request.path
        if path == "/v1/traces":
            if request.method != "POST":
                return Answer(405, b'{"error":"POST only"}', {"Allow": "POST"})
            limit = api.max_body
            length = request.content_length
            kind = request.headers.get("Content-Type")
            if length is not None and length > limit:  # refused before any of it is read
                return _too_large(limit, kind)
            try:
                async with asyncio.timeout(_BODY_TIMEOUT):
                    body = await _read_body(request, limit)
            except TimeoutError:
                return Answer(408, b'{"error":"body: not received in time"}', {})
            if body is None:
                return _too_large(limit, kind)
            encoding = request.headers.get("Content-Encoding")
            export = functools.partial(
                api.export, body, content_type=kind, content_encoding=encoding
            )
            return await asyncio.get_running_loop().run_in_executor(self._ingest, export)
        if request.method not in ("GET", "HEAD"):
            return Answer(405, b'{"error":"GET only"}', {"Allow": "GET"})
        params = urllib.parse.parse_qs(request.query_string, keep_blank_values=True)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._queries, api.get, path, params)


def _too_large(limit: int, content_type: str | None) -> Answer:
    refused = Refused(413, f"body: larger than {limit} bytes", media_type(content_type) or JSON)
    return Answer(413, refused.answer(), {"Content-Type": refused.content_type})


async def _read_body(request: web.BaseRequest, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------ seawall traces


def tail_policy(config: object) -> TailPolicy | None:
    """The tail-sampling rules of a ``tracing.collector.tail_sampling`` section."""
    from ..config.model import TailSamplingConfig  # noqa: PLC0415 - config is optional here

    if not isinstance(config, TailSamplingConfig):
        return None
    return TailPolicy(
        decision_wait=config.decision_wait,
        errors=config.errors,
        latency_default=config.latency.default,
        latency_routes=dict(config.latency.routes),
        policy_events=config.policy_events,
        probability=config.probability / 100,
        max_traces=config.max_traces,
    )


async def serve(
    collector: Collector, host: str, port: int, *, stop: asyncio.Event | None = None
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM when it is not given)."""
    server = CollectorServer(collector)
    await server.start(host, port)
    _log.info(
        "seawall traces: listening on http://%s:%d (OTLP /v1/traces, /api/, /ui/)",
        host,
        server.port,
    )
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def default_control(env: Mapping[str, str] = os.environ) -> str | None:
    """The control plane ``seawall traces`` reads the SLOs from when not told: as the
    other commands find it, ``$SEAWALL_CONTROL`` (the first of several replicas), else the
    ``control-url`` file a control plane writes in its state directory
    (``$SEAWALL_STATE_DIR``, else ``.seawall``); ``None`` when neither says."""
    url = env.get("SEAWALL_CONTROL", "").split(",")[0].strip()
    if url:
        return url
    state = env.get("SEAWALL_STATE_DIR") or ".seawall"
    try:
        with open(os.path.join(state, "control-url"), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def run(
    config_path: str | None,
    *,
    listen: str | None = None,
    store_path: str | None = None,
    control: str | None = None,
) -> int:
    """``seawall traces``: the collector of ``config_path``'s ``tracing.collector`` section
    (or the defaults), with ``listen`` and ``store_path`` overriding it; ``control``: the
    control plane's URL, whose SLOs the UI's ``/ui/slos`` page shows."""
    from ..config import CollectorConfig, ConfigError, MeshConfig, load_mesh  # noqa: PLC0415
    from .ui_api import UiConfig, ui_routes  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = CollectorConfig()
    base = "."
    mesh: MeshConfig | None = None
    if config_path:
        try:
            mesh = load_mesh(config_path)
            settings = mesh.tracing.collector
        except (ConfigError, OSError) as exc:
            print(f"seawall traces: {exc}", file=sys.stderr)
            return 2
        base = os.path.dirname(os.path.abspath(config_path))
    host, port = settings.host, settings.port
    if listen:
        h, _, p = listen.rpartition(":")
        if not p.isdigit():
            print(f"seawall traces: --listen {listen!r}: must be HOST:PORT", file=sys.stderr)
            return 2
        host, port = h.strip("[]") or "127.0.0.1", int(p)
    if control is None:
        control = default_control()
    if control is not None and not control.startswith(("http://", "https://")):
        print(f"seawall traces: --control {control!r}: must be an http(s) URL", file=sys.stderr)
        return 2
    if mesh is not None:
        ui = UiConfig.from_mesh(mesh, control_url=control)
    else:
        ui = UiConfig(control_url=control)
    path = store_path or os.path.join(base, settings.store)
    store = TraceStore(
        path, max_age=settings.retention.max_age, max_bytes=settings.retention.max_size
    )
    collector = Collector(
        store,
        tail=tail_policy(settings.tail_sampling),
        max_body=settings.max_body,
        extra=ui_routes(store, ui),
    )
    try:
        asyncio.run(serve(collector, host, port))
    finally:
        store.close()
    return 0
