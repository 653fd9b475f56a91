"""Exemplars end to end: real sidecars (the tracing UI's mesh, ``ui_mesh.Shop``), scraped
as the control plane scrapes them, name traces that the collector stored.

The mesh's calls (``test_ui_browser.drive``): half of them reach payments'
instance b, which takes 300 ms; the first and the 40th meet a 503 at the
orders app. A latency objective of payments at 250 ms, measured at its
callers, reads its slow calls' exemplars on the orders sidecar's page; an
availability objective of orders reads the 503's on the orders sidecar's
inbound side. Each names a trace the collector holds, with the span it is
about.
"""

from __future__ import annotations

import time

import httpx
from test_ui_browser import Running, drive, shop

from seawall.config import SloConfig
from seawall.slo.engine import SloEngine
from seawall.slo.scrape import ACCEPT, PageIndex, counters, parse

__all__ = ["shop"]  # the fixture, from the tracing UI's test


def test_a_real_sidecars_exemplars_name_stored_traces_of_bad_requests(shop: Running) -> None:
    configs = {
        "pay": SloConfig.model_validate(
            {"service": "payments", "measured_at": "callers", "caller": "orders",
             "latency": {"threshold": "250ms", "percent": "99%"}}
        ),
        "orders": SloConfig.model_validate({"availability": "99.9%"}),
    }  # fmt: skip
    engine = SloEngine(configs)
    orders = shop.sidecars["orders"]
    url = f"http://127.0.0.1:{orders.admin}/metrics"
    with httpx.Client(trust_env=False, timeout=10) as client:
        assert engine.scrape("orders-1", "orders", client.get(url).text, time.time()) is None
        drive(shop)
        om = client.get(url, headers={"Accept": ACCEPT})
        text = client.get(url)
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert text.headers["Content-Type"].startswith("text/plain")
    # the same counters either way
    om_index, text_index = PageIndex(parse(om.text)), PageIndex(parse(text.text))
    for objective in engine.objectives:
        slo = configs[objective.slo]
        assert counters(objective, slo, "orders", om_index) is not None, objective.name
        assert counters(objective, slo, "orders", om_index) == counters(
            objective, slo, "orders", text_index
        )
    assert om_index.exemplars
    assert not text_index.exemplars

    assert engine.scrape("orders-1", "orders", om.text, time.time()) is None
    slow = engine.exemplars("pay:latency")
    assert slow, "no exemplar of a slow call to payments"
    assert all(e.kind == "slow" and e.value > 0.25 for e in slow)
    failed = engine.exemplars("orders:availability")
    assert [e.kind for e in failed] == ["error"]
    for exemplar, service in ((slow[0], "payments"), (failed[0], "orders")):
        spans = shop.ui.store.trace(bytes.fromhex(exemplar.trace_id))
        assert spans, f"the trace {exemplar.trace_id} of {exemplar} is not stored"
        assert service in {s.service for s in spans}
