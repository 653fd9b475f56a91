"""The shop's shared plumbing: a tiny asyncio HTTP/1.1 JSON server and a mesh client.

Every shop service (``python -m examples.shop.<service> --config mesh.yaml``)
is a :class:`ShopApp`: it reads its own section of ``mesh.yaml``, listens on
``services.<name>.port`` on loopback and calls the other services **only**
through its own sidecar's outbound listener, used as an HTTP proxy
(absolute-form ``POST http://payments/charge``), so the mesh's policies apply
to every call it makes.

The server speaks just enough HTTP/1.1 for the mesh: keep-alive, pipelined
requests answered in order, ``Content-Length`` and chunked request bodies,
JSON responses with ``Content-Length``. When a client closes its connection,
the handler of its request is cancelled (a hung request does not outlive its
caller).

Every app has, besides its business routes:

* ``GET /health``: 200 while the process serves (whatever its mode);
* ``/_control?mode=ok|hang|fail``: how its business routes behave from now on
  (``hang``: never answer until the caller gives up; ``fail``: 503 at once);
* ``GET /_stats``: the calls this app made to other services, grouped by
  ``service path``: for each, when it started (``time.monotonic()``, the
  system-wide clock, comparable between processes), its latency and status,
  so the demo can report what each hop saw through its sidecar, phase by phase
  (the most recent ``MAX_CALLS`` calls of each kind are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from seawall.config import load_mesh

__all__ = ["Reply", "Request", "ShopApp", "main", "mesh_verdict"]

MODES = ("ok", "hang", "fail")
HANG_SECONDS = 60.0
"""How long a hung request waits (unless its caller gives up first, which cancels it)."""
CLIENT_TIMEOUT = 10.0
"""The app's own timeout: longer than every mesh timeout, so the sidecar decides."""
MAX_CALLS = 20_000
MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    402: "Payment Required",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Reply]]


def mesh_verdict(headers: httpx.Headers) -> str | None:
    """Whether the caller's sidecar answered for the callee: circuit open, overflow."""
    if headers.get("x-seawall-circuit") == "open":
        return "circuit open"
    overflow = headers.get("x-seawall-overflow")
    return f"overflow ({overflow})" if overflow else None


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _parse_head(raw: bytes) -> tuple[str, str, dict[str, str], bool]:
    """Request line and headers → (method, target, headers, keep_alive)."""
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise _BadRequest(400, "undecodable head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(400, "bad header line")
        key = name.lower()
        value = value.strip()
        if key in headers:
            if key == "content-length" and headers[key] != value:
                raise _BadRequest(400, "conflicting content-length")
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    conn = headers.get("connection", "").lower()
    keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
    return method, target, headers, keep_alive


def _parse_chunked(buf: bytes | bytearray, start: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``start``: (body, end offset), None if incomplete."""
    pos = start
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequest(400, "bad chunk size") from None
        if size < 0 or len(out) + size > MAX_BODY:
            raise _BadRequest(413, "body too large")
        pos = eol + 2
        if size == 0:
            # trailers, then an empty line
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return bytes(out), eol + 2
                pos = eol + 2
        if len(buf) < pos + size + 2:
            return None
        out += buf[pos : pos + size]
        if buf[pos + size : pos + size + 2] != b"\r\n":
            raise _BadRequest(400, "bad chunk end")
        pos += size + 2


def _encode(reply: Reply, keep_alive: bool, head_only: bool) -> bytes:
    body = json.dumps(reply.body).encode() + b"\n"
    lines = [
        f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Unknown')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in reply.headers.items()]
    if not keep_alive:
        lines.append("connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


class _Connection(asyncio.Protocol):
    """One client connection: parse requests one at a time, answer in order."""

    def __init__(self, app: ShopApp) -> None:
        self.app = app
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.app.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is None:
            self._next()

    def eof_received(self) -> bool:
        # A half-closed client still gets the answer it waits for, then the close.
        self.eof = True
        return self.task is not None  # False: nothing to answer, close now

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.app.connections.discard(self)
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the caller gave up: so does the handler

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, status: int, reason: str) -> None:
        assert self.transport is not None
        self.transport.write(_encode(Reply(status, {"error": reason}), False, False))
        self.transport.close()
        self.buf.clear()

    def _next(self) -> None:
        """Start serving the next complete request in the buffer, if there is one."""
        if self.closed:
            return
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self._fail(431, "head too large")
            return
        try:
            method, target, headers, keep_alive = _parse_head(bytes(buf[:end]))
            start = end + 4
            if "chunked" in headers.get("transfer-encoding", "").lower():
                if "content-length" in headers:
                    raise _BadRequest(400, "both content-length and transfer-encoding")
                decoded = _parse_chunked(buf, start)
                if decoded is None:
                    return
                body, stop = decoded
            else:
                length_text = headers.get("content-length", "0")
                if not length_text.isdigit():
                    raise _BadRequest(400, "bad content-length")
                length = int(length_text)
                if length > MAX_BODY:
                    raise _BadRequest(413, "body too large")
                if len(buf) < start + length:
                    return
                body, stop = bytes(buf[start : start + length]), start + length
        except _BadRequest as exc:
            self._fail(exc.status, str(exc))
            return
        del buf[:stop]
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        request = Request(method, url.path or "/", query, headers, body)
        self.task = asyncio.get_running_loop().create_task(self._serve(request, keep_alive))

    async def _serve(self, request: Request, keep_alive: bool) -> None:
        try:
            reply = await self.app.dispatch(request)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # a bug in a handler: 500, the server keeps going
            reply = Reply(500, {"error": f"{type(exc).__name__}: {exc}"})
        if self.closed or self.transport is None:
            return
        self.transport.write(_encode(reply, keep_alive, request.method == "HEAD"))
        self.task = None
        if not keep_alive:
            self.transport.close()
            return
        self._next()
        if self.task is None and self.eof:
            self.transport.close()


@dataclass(slots=True)
class _CallLog:
    calls: deque[tuple[float, float, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_CALLS)
    )  # (started, seconds, status)


class ShopApp:
    """One shop service: its routes, its mode, and its client to the mesh."""

    def __init__(
        self,
        name: str,
        config_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        outbound: int | None = None,
        version: str | None = None,
    ) -> None:
        config = load_mesh(Path(config_path))
        service = config.services[name]
        self.name = name
        self.host = service.host
        self.port = port or service.port  # a second instance (a canary) has its own ports
        self.outbound = outbound or service.sidecar.outbound
        self.version = version  # the subset this instance runs as, e.g. "v2"
        self.mode = "ok"
        self.routes: dict[tuple[str, str], Handler] = {}
        self.connections: set[_Connection] = set()
        self.calls: dict[str, _CallLog] = {}
        self._client: httpx.AsyncClient | None = None

    # -- routes -----------------------------------------------------------

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Register a business route (it obeys ``/_control``'s mode)."""

        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = handler
            return handler

        return register

    async def dispatch(self, request: Request) -> Reply:
        path = request.path
        if path == "/health":
            return Reply(
                200, {"service": self.name, "ok": True, "mode": self.mode, "version": self.version}
            )
        if path == "/_control":
            mode = request.query.get("mode")
            if mode is not None:
                if mode not in MODES:
                    return Reply(400, {"error": f"mode must be one of {', '.join(MODES)}"})
                self.mode = mode
            return Reply(200, {"service": self.name, "mode": self.mode})
        if path == "/_stats":
            return Reply(200, {key: list(log.calls) for key, log in self.calls.items()})
        handler = self.routes.get((request.method, path))
        if handler is None:
            known = any(p == path for _, p in self.routes)
            return Reply(405 if known else 404, {"error": f"no route {request.method} {path}"})
        if self.mode == "fail":
            return Reply(503, {"error": f"{self.name} is failing (demo)"})
        if self.mode == "hang":
            await asyncio.sleep(HANG_SECONDS)  # cancelled when the caller gives up
            return Reply(504, {"error": f"{self.name} hung (demo)"})
        return await handler(request)

    # -- calls to other services, through the sidecar ---------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """httpx, with this service's sidecar outbound listener as its HTTP proxy."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                proxy=f"http://127.0.0.1:{self.outbound}",
                timeout=CLIENT_TIMEOUT,
                trust_env=False,
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
            )
        return self._client

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, httpx.Headers]:
        """Call ``service`` through the mesh: (status, JSON body or text, headers).

        A transport error (the sidecar unreachable) is status 0.
        """
        key = f"{service} {path}"
        started = time.monotonic()
        try:
            response = await self.client.request(
                method, f"http://{service}{path}", json=payload, headers=headers
            )
        except httpx.HTTPError as exc:
            status, body, answer = 0, f"{type(exc).__name__}: {exc}", httpx.Headers()
        else:
            status, answer = response.status_code, response.headers
            try:
                body = response.json()
            except ValueError:
                body = response.text.strip()
        log = self.calls.setdefault(key, _CallLog())
        log.calls.append((started, time.monotonic() - started, status))
        return status, body, answer

    # -- running ----------------------------------------------------------

    async def serve(self) -> None:
        """Serve until SIGTERM or SIGINT."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, backlog=1024
        )
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sys.stderr.write(f"shop {self.name} [{os.getpid()}]: serving on {self.host}:{self.port}\n")
        sys.stderr.flush()
        try:
            await stop.wait()
        finally:
            server.close()
            for conn in list(self.connections):
                conn.close()
            if self._client is not None:
                await self._client.aclose()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)


def main(name: str, build: Callable[[ShopApp], None]) -> None:
    """``python -m examples.shop.<name> --config mesh.yaml``: build the app and serve it."""
    parser = argparse.ArgumentParser(prog=f"examples.shop.{name}")
    parser.add_argument("--config", default="examples/shop/mesh.yaml", help="the mesh.yaml")
    parser.add_argument("--port", type=int, help="listen here instead of the config's port")
    parser.add_argument("--outbound-port", type=int, help="this instance's sidecar outbound port")
    parser.add_argument("--version", help="the subset this instance runs as (e.g. v2)")
    args = parser.parse_args()
    app = ShopApp(
        name, args.config, port=args.port, outbound=args.outbound_port, version=args.version
    )
    build(app)
    asyncio.run(app.serve())
