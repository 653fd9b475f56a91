"""What the UI's browser tests share (the fixtures are in conftest.py): a real
Chromium driven by Selenium, a real ``seawall traces`` collector serving the
UI, and a mesh of real sidecars.

Debian's ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` package are needed;
``scripts/install_browser.sh`` installs the two packages (``make test`` runs
it). Without them these tests fail, as the etcd tests do without etcd.

Screenshots go under each test's ``tmp_path``; with ``SEAWALL_UPDATE_SCREENSHOTS=1``
they are also copied to ``docs/telemetry/img/``, for the UI's page in the docs.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from seawall.telemetry.collector import Collector, CollectorServer
from seawall.telemetry.store import TraceStore
from seawall.telemetry.ui_api import UiAPI, UiConfig

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "proxy"))  # backends.py: scripted HTTP backends

CHROMIUM = os.environ.get("SEAWALL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SEAWALL_CHROMEDRIVER", "/usr/bin/chromedriver")
DOCS_IMG = ROOT / "docs" / "telemetry" / "img"
WIDTH, HEIGHT = 1440, 1000


# ---------------------------------------------------------------- the collector


class RunningUI:
    """A collector with the UI, on a loopback port, in a thread."""

    def __init__(self, collector: Collector, api: UiAPI, port: int) -> None:
        self.collector = collector
        self.store = collector.store
        self.api = api
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def flush(self) -> None:
        assert self.collector.flush(20), "the collector did not store its queue in time"


@contextmanager
def running_ui(path: Path, config: UiConfig | None = None) -> Iterator[RunningUI]:
    """``seawall traces`` with the UI's routes (``extra``), as ``run()`` wires it."""
    store = TraceStore(path)
    api = UiAPI(store, config)
    collector = Collector(store, extra=api, retention_every=3600)
    loop = asyncio.new_event_loop()
    servers: list[CollectorServer] = []
    started = threading.Event()
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def main() -> None:
        server = CollectorServer(collector)
        servers.append(server)
        try:
            await server.start("127.0.0.1", 0)
        except BaseException as exc:
            errors.append(exc)
            raise
        finally:
            started.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert started.wait(10), "the collector did not start"
    if errors:
        raise errors[0]
    try:
        yield RunningUI(collector, api, servers[0].port)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(20)
        loop.close()
        store.close()


# ---------------------------------------------------------------- the browser


class Browser:
    """One headless Chromium; pages are opened by URL and awaited by their state."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str, page: str, timeout: float = 30) -> None:
        """Load ``url`` and wait for the page to say it is ready (or fail with why)."""
        self.go(url)
        self.wait_ready(page, timeout)

    def go(self, url: str) -> None:
        """Load ``url``, the last page's state forgotten first (a new hash on the same
        document is no reload: the old state would otherwise still be there)."""
        self.driver.execute_script("document.documentElement.dataset.state = 'navigating'")
        self.driver.get(url)

    def wait_ready(self, page: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        state: Any = None
        while time.monotonic() < deadline:
            state = self.driver.execute_script(
                "const d = document.documentElement.dataset; return [d.page, d.state]"
            )
            if state == [page, "ready"]:
                self.assert_no_errors()
                return
            if state and state[1] == "error":
                text = self.driver.find_element("css selector", "#view").text
                raise AssertionError(f"the {page} page failed: {text}")
            time.sleep(0.05)
        raise AssertionError(f"the {page} page was not ready in {timeout}s (state {state})")

    def wait_error(self, page: str, timeout: float = 30) -> str:
        """Wait for the page to show an error; its text. The console's errors (the failed
        request) are read and dropped."""
        self.wait_for(
            lambda: (
                self.driver.execute_script(
                    "const d = document.documentElement.dataset; return [d.page, d.state]"
                )
                == [page, "error"]
            ),
            f"the {page} page's error",
            timeout,
        )
        self.driver.get_log("browser")
        return str(self.css("#view .error").text)

    def assert_no_errors(self) -> None:
        """No JavaScript error and no failed load in the console."""
        severe = [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe

    def timings(self, name: str) -> dict[str, float]:
        found = self.driver.execute_script("return (window.seawall || {}).timings")
        assert found, "no timings"
        assert name in found, f"no timing {name!r}: {found}"
        return dict(found[name])

    def css(self, selector: str) -> Any:
        return self.driver.find_element("css selector", selector)

    def all(self, selector: str) -> list[Any]:
        return list(self.driver.find_elements("css selector", selector))

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 20) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                found = predicate()
            except Exception:  # a stale element while the page redraws
                found = None
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")
