"""A real, scripted HTTP/1.1 server on 127.0.0.1 for the client tests.

It misbehaves on demand, driven by the request's path and query:

* the first path segment picks what a *successful* request gets:
  ``/ok`` (200 ``ok``), ``/echo`` (200, the received headers as JSON),
  ``/fail`` (always 503), ``/reset`` (always closes without answering),
  ``/hang`` (waits until the test ends, at most 5 s), ``/stream`` (a chunked
  body in two parts, the second sent only once the test sets ``stream_gate``);
* ``?fail=N`` makes the first N requests to that exact path fail, ``how=503``
  (default), ``how=reset``, ``how=hang`` (like ``/hang``) or ``how=big``
  (a 503 with a 200 000-byte body);
  ``retry_after=V`` adds ``Retry-After: V`` and ``overloaded=1`` adds
  ``x-seawall-overloaded: 1`` to those failures.

Every request is recorded (method, path, lower-cased headers, body) before it
is answered, so tests can count hits and inspect what was sent.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BIG_BODY_SIZE = 200_000


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    scripted: ScriptedServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients closing mid-response (a discarded big 503) are expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length", "0") or "0")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reset(self) -> None:
        self.close_connection = True  # no answer at all: the server just closes

    def _handle(self) -> None:
        scripted = self.server.scripted
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = self._read_body()
        number = scripted.record(Seen(self.command, url.path, headers, body))
        kind = url.path.split("/")[1]
        if number <= int(query.get("fail", "0")):
            how = query.get("how", "503")
            if how == "reset":
                self._reset()
                return
            if how == "hang":
                scripted.stop.wait(5.0)
                self._send(200, b"late")
                return
            extra: dict[str, str] = {}
            if "retry_after" in query:
                extra["retry-after"] = query["retry_after"]
            if query.get("overloaded") == "1":
                extra["x-seawall-overloaded"] = "1"
            payload = b"x" * BIG_BODY_SIZE if how == "big" else b"unavailable"
            self._send(503, payload, extra)
            return
        if kind == "ok":
            self._send(200, b"ok")
        elif kind == "echo":
            self._send(200, json.dumps(headers).encode(), {"content-type": "application/json"})
        elif kind == "fail":
            self._send(503, b"unavailable")
        elif kind == "reset":
            self._reset()
        elif kind == "hang":
            scripted.stop.wait(5.0)
            self._send(200, b"late")
        elif kind == "stream":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._chunk(b"chunk-1\n")
            scripted.gate_was_set = scripted.stream_gate.wait(5.0)
            self._chunk(b"chunk-2\n")
            self._chunk(b"")
        else:
            self._send(404, b"no such behaviour")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle


class ScriptedServer:
    """The server the tests talk to, and what it saw."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self.stop = threading.Event()
        self.stream_gate = threading.Event()
        self.gate_was_set: bool | None = None
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.scripted = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self.stream_gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def record(self, seen: Seen) -> int:
        """Record a request; its 1-based number among the requests to the same path."""
        with self._lock:
            self.requests.append(seen)
            self._counts[seen.path] = self._counts.get(seen.path, 0) + 1
            return self._counts[seen.path]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def hits(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def seen(self, path: str) -> list[Seen]:
        with self._lock:
            return [r for r in self.requests if r.path == path]
