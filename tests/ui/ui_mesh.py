"""A small shop of real sidecars for the UI's browser tests.

``app`` (played by the test, through its sidecar) calls ``orders``; the orders
app calls ``payments`` through its own sidecar, passing the trace on; payments
runs two instances, each behind its own sidecar, and instance ``b`` takes
300 ms on every call. The app's calls to orders are retried once on 5xx, so a
503 queued at the orders app makes a retried call. Every sidecar exports its
spans to one collector over OTLP/HTTP.

::

    test -> app sidecar -> orders sidecar -> orders app -> orders sidecar
        -> payments-a sidecar -> fast app
        -> payments-b sidecar -> slow app (300 ms)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from backends import Backend, BackendLoop, Behaviour, Echo, Ok, free_ports


def _proxy_conftest() -> Any:
    """tests/proxy/conftest.py, for its SidecarProcess (a module of another name: pytest
    owns the name ``conftest``)."""
    name = "seawall_tests_proxy_conftest"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "proxy" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


SidecarProcess = _proxy_conftest().SidecarProcess
"""A ``seawall sidecar`` subprocess (tests/proxy/conftest.py)."""

SLOW_S = 0.3
"""How long payments instance b takes."""

OFF = {"enabled": False}


@dataclass(frozen=True)
class CallPayments(Behaviour):
    """The orders app: calls ``http://payments/pay`` through its sidecar's outbound
    listener with the ``traceparent`` it received (what an instrumented app does),
    then answers 200 (502 if payments failed)."""

    outbound: int

    async def act(self, ctx: Any) -> bool:
        traceparent = ctx.request.header("traceparent")
        head = "GET http://payments/pay HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n"
        if traceparent:
            head += f"traceparent: {traceparent}\r\n"
        status = 502
        with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
            reader, writer = await asyncio.open_connection("127.0.0.1", self.outbound)
            writer.write((head + "\r\n").encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            status = int(answer.split(b" ", 2)[1])
        return await Ok(b"ordered\n", 200 if status == 200 else 502).act(ctx)


class View:
    """What :class:`SidecarProcess` reads of a mesh, for one sidecar."""

    def __init__(self, doc: dict[str, Any], ports: dict[str, int]) -> None:
        self._doc = doc
        self.outbound = ports["outbound"]
        self.inbound = ports["inbound"]
        self.admin = ports["admin"]
        self.upstreams: dict[str, int] = {}

    def yaml(self) -> str:
        return yaml.safe_dump(self._doc, sort_keys=False)


class Shop:
    """The mesh.yaml of each sidecar (see the module docstring)."""

    SIDECARS = ("app", "orders", "payments-a", "payments-b")

    def __init__(self, loop: BackendLoop, collector_url: str) -> None:
        ports = iter(free_ports(len(self.SIDECARS) * 3))
        self.ports = {
            name: {"inbound": next(ports), "outbound": next(ports), "admin": next(ports)}
            for name in self.SIDECARS
        }
        self.app = loop.backend("ui-app", Echo())
        self.orders = loop.backend("ui-orders", CallPayments(self.ports["orders"]["outbound"]))
        self.payments = {
            "payments-a": loop.backend("ui-payments-a", Ok(b"paid\n")),
            "payments-b": loop.backend("ui-payments-b", Ok(b"paid\n", delay=SLOW_S)),
        }
        self.collector_url = collector_url

    def endpoint(self, instance: str) -> str:
        """The address the callers' sidecars use for a payments instance."""
        return f"127.0.0.1:{self.ports[instance]['inbound']}"

    def admin_urls(self) -> dict[str, str]:
        return {
            "app": f"http://127.0.0.1:{self.ports['app']['admin']}",
            "orders": f"http://127.0.0.1:{self.ports['orders']['admin']}",
        }

    def doc(self, sidecar: str) -> dict[str, Any]:
        instance = sidecar if sidecar.startswith("payments") else "payments-a"
        backend: Backend = self.payments[instance]
        return {
            "mesh": "shop",
            "services": {
                "app": {"port": self.app.port, "sidecar": self.ports["app"]},
                "orders": {"port": self.orders.port, "sidecar": self.ports["orders"]},
                "payments": {
                    "port": backend.port,
                    "sidecar": self.ports[instance],
                    "endpoints": [
                        {"address": "127.0.0.1", "port": self.ports[i]["inbound"]}
                        for i in ("payments-a", "payments-b")
                    ],
                },
            },
            "policies": {
                "app": {"circuit_breaker": OFF, "outlier": OFF},
                "orders": {
                    "retry": {"attempts": 2, "on": ["5xx"], "backoff": {"base": "1ms"}},
                    "circuit_breaker": OFF,
                    "outlier": OFF,
                    "routes": [{"name": "checkout", "match": {"path_prefix": "/checkout"}}],
                },
                "payments": {
                    "load_balancer": "round_robin",
                    "timeout": "5s",
                    "retry": {"attempts": 1},
                    "circuit_breaker": {
                        "window": {"type": "count", "size": 100},
                        "minimum_calls": 100,
                        "failure_rate": "90%",
                        "open_for": "60s",
                    },
                    "routes": [{"name": "pay", "match": {"path_prefix": "/pay"}}],
                },
            },
            "tracing": {"endpoint": f"{self.collector_url}/v1/traces", "interval": "50ms"},
        }

    def view(self, sidecar: str) -> View:
        return View(self.doc(sidecar), self.ports[sidecar])


def service_of(sidecar: str) -> str:
    return "payments" if sidecar.startswith("payments") else sidecar


def workdir(base: Path, sidecar: str) -> Path:
    return base / f"sidecar-{sidecar}"
