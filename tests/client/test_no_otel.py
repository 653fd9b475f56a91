"""Without OpenTelemetry installed, the clients, the policies and the middleware work as before.

Run in a subprocess whose ``sys.meta_path`` refuses every ``opentelemetry``
module, as if the ``otel`` extra were not installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKER = """
import sys

class NoOpenTelemetry:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoOpenTelemetry())
"""

SCRIPT = """
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import requests

import seawall.policy
import seawall.telemetry
from seawall.client.httpx import SeawallTransport
from seawall.client.requests import SeawallAdapter
from seawall.policy import CircuitBreaker, Pipeline, Retry
from seawall.telemetry import TraceParent, current_request_id, otel, trace_scope
from seawall.telemetry.asgi import SeawallMiddleware
from seawall.telemetry.wsgi import SeawallWSGIMiddleware

assert otel.AVAILABLE is False and otel.tracer() is None

seen = []

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        seen.append(dict(self.headers))
        self.send_response(503 if len(seen) == 1 else 200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
url = f"http://127.0.0.1:{server.server_address[1]}/"
parent = TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")

transport = SeawallTransport()
assert transport._tracing is None
with trace_scope(parent), httpx.Client(transport=transport) as client:
    assert client.get(url).status_code == 200        # retried once
with requests.Session() as session:
    session.mount("http://", SeawallAdapter())
    assert session.get(url, timeout=5).status_code == 200
assert [h["x-seawall-attempt"] for h in seen] == ["1", "2", "1"]
assert seen[0]["traceparent"].split("-")[1] == parent.trace_id
assert seen[0]["traceparent"] != seen[1]["traceparent"]
server.shutdown()

# the policies on their own
assert Pipeline(Retry(on=OSError), CircuitBreaker("x")).call(lambda: 7) == 7

# the middleware: no span, the inbound step all the same
def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [current_request_id().encode()]

headers = []
body = SeawallWSGIMiddleware(app)(
    {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_X_REQUEST_ID": "rid-1",
     "wsgi.url_scheme": "http"},
    lambda status, h, exc_info=None: headers.extend(h),
)
assert b"".join(body) == b"rid-1" and ("x-request-id", "rid-1") in headers
body.close()
assert SeawallMiddleware(app)._tracer is None

try:
    seawall.telemetry.setup("svc")
except ImportError as exc:
    assert "seawall[otel]" in str(exc)
else:
    raise AssertionError("setup without OpenTelemetry")
assert not [m for m in sys.modules if m.startswith("opentelemetry")]
print("ok")
"""


def test_everything_works_without_opentelemetry() -> None:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCKER) + "\n" + textwrap.dedent(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_importing_the_clients_does_not_import_opentelemetry() -> None:
    script = (
        "import sys, seawall.client.httpx, seawall.client.requests, seawall.policy, "
        "seawall.telemetry\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
