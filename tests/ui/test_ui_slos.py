"""The SLO page (/ui/slos) in a real browser, from a real control plane.

The control plane scrapes two sidecars' pages (``ui_slos.MetricsPage``:
OpenMetrics with exemplars) with three and a half hours of history behind
them, the last 25 minutes an outage of the gateway (see ``ui_slos.py``); a
real ``seawall traces`` reads its SLOs for the page, and holds the traces
the exemplars name. The page shows each objective with its budget over time,
the burn of each alert window, the firing alert, and links from the burning
objective to the traces of its failed and slow requests, which open in the
trace view. A control plane that is down, or none at all, is an error on
the page that says so.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from ui_browser import ROOT, Browser, RunningUI, running_ui
from ui_slos import (
    Exemplars,
    MetricsPage,
    mesh_doc,
    metrics_pages,
    seed_history,
    slos,
)
from ui_synthetic import Ids, span

from seawall.telemetry.ui_api import UiConfig

sys.path.insert(0, str(ROOT / "tests" / "control"))  # control_server.py: a control plane
from control_server import InProcessControl  # noqa: E402

ERROR_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SLOW_TRACE = "0af7651916cd43dd8448eb211c80319c"
FAST_TRACE = "00000000000000000000000000f0a57c"


@dataclass
class Running:
    control: InProcessControl
    ui: RunningUI
    pages: list[MetricsPage]


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Running]:
    state = tmp_path / "control"
    state.mkdir(mode=0o700)
    t = time.time()
    counts = seed_history(state, slos(tmp_path), t)
    gateway = Exemplars(
        error=(ERROR_TRACE, t - 40),
        slow=(SLOW_TRACE, t - 70, 0.734),
        fast=(FAST_TRACE, t - 5, 0.02),
    )
    pages = [
        MetricsPage("gateway", counts.gateway, gateway),
        MetricsPage("auth", counts.auth, Exemplars(fast=(FAST_TRACE, t - 5, 0.02))),
    ]
    with metrics_pages(pages):
        control = InProcessControl(state, slo_interval=0.5)
        try:
            with control.client(**control.admin) as c:
                answer = c.put("/v1/config", content=yaml.safe_dump(mesh_doc()))
                assert answer.status_code == 200, answer.text
            for page in pages:
                with control.client(**control.join(page.service)) as c:
                    answer = c.post("/v1/instances", json={
                        "id": f"{page.service}.1", "service": page.service,
                        "address": "127.0.0.1", "port": 1, "ttl": 300,
                        "metadata": {"seawall.admin": str(page.port)},
                    })  # fmt: skip
                    assert answer.status_code == 200, answer.text
            with running_ui(tmp_path / "traces.db", UiConfig(control_url=control.url)) as ui:
                plant_traces(ui, t)
                yield Running(control, ui, pages)
        finally:
            control.close()


def plant_traces(ui: RunningUI, t: float) -> None:
    """The traces the exemplars name: a 503 at the gateway, a 734 ms checkout."""
    ids = Ids(11)
    rows = []
    for trace_hex, start, ms, error in ((ERROR_TRACE, t - 40, 12, True),
                                        (SLOW_TRACE, t - 70, 734, False)):  # fmt: skip
        trace = bytes.fromhex(trace_hex)
        root, child = ids.span(), ids.span()
        t0 = int(start * 1e9)
        status = {"http.response.status_code": 503 if error else 200}
        rows.append(span(trace, root, b"", "gateway", "POST /checkout", t0, t0 + ms * 1_000_000,
                         error=error, attributes=status))  # fmt: skip
        rows.append(span(trace, child, root, "payments", "POST /pay", t0 + 1_000_000,
                         t0 + (ms - 1) * 1_000_000, error=error))  # fmt: skip
    ui.store.insert(rows)


def objectives(running: Running) -> dict[str, dict[str, object]]:
    with httpx.Client(trust_env=False, timeout=10) as c:
        doc = c.get(f"{running.ui.url}/api/seawall/slos").json()
    return {o["name"]: o for o in doc["objectives"]}


def test_the_slo_page_shows_budgets_burns_alerts_and_traces_of_bad_requests(
    shop: Running, browser: Browser, screenshot: Callable[..., Path]
) -> None:
    def ready() -> bool:
        found = objectives(shop)
        return bool(found) and all(o["exemplars"] for n, o in found.items() if "checkout" in n)

    deadline = time.monotonic() + 20
    while not ready():
        assert time.monotonic() < deadline, "the control plane never served the exemplars"
        time.sleep(0.2)
    assert all("application/openmetrics-text" in a for p in shop.pages for a in p.accepts)

    browser.open(f"{shop.ui.url}/ui/slos", "slos")
    cards = {c.get_attribute("data-name"): c for c in browser.all(".slo-card")}
    assert sorted(cards) == ["checkout:availability", "checkout:latency", "login:availability"]

    # checkout's availability burns: its budget graph goes below zero, the page alert fires
    checkout = cards["checkout:availability"]
    assert "burning" in checkout.get_attribute("class")
    graph = checkout.find_element("css selector", "svg.budget")
    assert int(graph.get_attribute("data-points")) > 20  # the seeded hours, a point a step
    assert float(graph.get_attribute("data-last")) < 0  # 30% failing for 25 min at 99.5%
    page_alert = checkout.find_element(
        "css selector", 'table.burn tr[data-long="1h"][data-short="5m"]'
    )
    assert "firing" in page_alert.get_attribute("class")
    long_burn = page_alert.find_element("css selector", 'td[data-burn="long"]')
    short_burn = page_alert.find_element("css selector", 'td[data-burn="short"]')
    assert "over" in long_burn.get_attribute("class")
    assert float(long_burn.text.rstrip("×")) >= 14.4
    assert float(short_burn.text.rstrip("×")) >= 14.4
    alerts = browser.all('#slo-alerts tr.alert[data-objective="checkout:availability"]')
    fired = {(a.get_attribute("data-long"), a.get_attribute("data-short")) for a in alerts
             if a.get_attribute("data-state") == "firing"}  # fmt: skip
    assert ("1h", "5m") in fired

    # login is untouched: full budget, no alert, no example
    login = cards["login:availability"]
    assert "burning" not in login.get_attribute("class")
    assert login.find_element("css selector", '[data-fact="budget left"]').text == "100.0%"
    assert float(login.find_element("css selector", "svg.budget").get_attribute("data-last")) == 1
    assert not login.find_elements("css selector", "a.exemplar")

    # the examples: the 5xx for availability, the slow one (not the fast one) for latency
    links = checkout.find_elements("css selector", "a.exemplar")
    assert [a.get_attribute("data-trace-id") for a in links] == [ERROR_TRACE]
    latency = cards["checkout:latency"]
    slow = latency.find_elements("css selector", "a.exemplar")
    assert [a.get_attribute("data-trace-id") for a in slow] == [SLOW_TRACE]
    assert "734ms" in latency.find_element("css selector", ".exemplars").text
    screenshot("slos")
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", latency)
    screenshot("slos-latency", docs=False)

    # a link opens the trace view on that trace
    summary_link = browser.css('#slo-summary tr[data-name="checkout:availability"] a.exemplar')
    assert summary_link.get_attribute("data-trace-id") == ERROR_TRACE
    browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", links[0])
    links[0].click()
    browser.wait_ready("trace")
    assert browser.driver.current_url.endswith(f"/ui/#/trace/{ERROR_TRACE}")
    assert "gateway" in browser.css("#timeline").text


def test_no_control_plane_or_a_dead_one_is_said_on_the_page(
    browser: Browser, tmp_path: Path
) -> None:
    with running_ui(tmp_path / "none.db") as ui:
        browser.go(f"{ui.url}/ui/slos")
        text = browser.wait_error("slos")
        assert "503" in text
        assert "--control" in text
    dead = "http://127.0.0.1:9"  # discard: nothing listens
    with running_ui(tmp_path / "dead.db", UiConfig(control_url=dead, control_timeout=1)) as ui:
        browser.go(f"{ui.url}/ui/slos")
        text = browser.wait_error("slos")
        assert "502" in text
        assert f"the control plane at {dead} did not answer" in text
        # the other pages link to it
        browser.open(f"{ui.url}/ui/#/graph", "graph")
        assert browser.css('nav a[data-nav="slos"]').get_attribute("href") == f"{ui.url}/ui/slos"
