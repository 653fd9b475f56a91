"""A real ``seawall traces`` collector on a loopback port, in a thread, for tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from seawall.telemetry.collector import Collector, CollectorServer
from seawall.telemetry.store import TraceStore
from seawall.telemetry.tail import TailPolicy
from seawall.telemetry.ui_api import ui_routes


class RunningCollector:
    def __init__(self, collector: Collector, port: int) -> None:
        self.collector = collector
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.store = collector.store

    def flush(self) -> None:
        assert self.collector.flush(20), "the collector did not store its queue in time"


@contextmanager
def running_collector(
    tmp_path: Path,
    *,
    tail: TailPolicy | None = None,
    max_body: int = 64 * 1024 * 1024,
    port: int = 0,
    ui: bool = False,
) -> Iterator[RunningCollector]:
    store = TraceStore(tmp_path / "traces.db")
    extra = ui_routes(store) if ui else None
    collector = Collector(store, tail=tail, max_body=max_body, retention_every=3600, extra=extra)
    loop = asyncio.new_event_loop()
    servers: list[CollectorServer] = []
    started = threading.Event()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        server = CollectorServer(collector)  # aiohttp's server is made in its loop
        servers.append(server)
        try:
            await server.start("127.0.0.1", port)
        except BaseException as exc:
            errors.append(exc)
            started.set()
            raise
        started.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10), "the collector did not start"
    if errors:
        raise errors[0]
    try:
        yield RunningCollector(collector, servers[0].port)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
        store.close()
