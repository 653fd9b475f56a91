"""Scripted HTTP/1.1 backends and a raw-socket client, for the sidecar's integration tests.

A :class:`Backend` is a real server on 127.0.0.1 (asyncio streams, on an event
loop running in a background thread owned by a :class:`BackendLoop`). What it
answers is scripted per test: a default :class:`Behaviour`, behaviours per
path prefix, and a queue of one-shot behaviours that take precedence. It
records what it received (:attr:`Backend.seen`: complete requests only, as an
application would see them), how many request heads arrived and how many
connections were opened, so a test can tell whether a request reached it.

Behaviours: :class:`Ok` (a body, a status, extra headers, an optional delay),
:class:`Echo` (the request line, headers and body as JSON), :class:`Hang`
(no answer until released or the connection closes), :class:`Reset` (RST via
``SO_LINGER 0``), :class:`Close` (FIN without answering), :class:`Trickle`
(a body sent slowly), :class:`Chunked` (a chunked body), :class:`Upgrade`
(``101`` then echo bytes).

:class:`RawConn` is a raw-socket client that reads responses, enough of HTTP/1.1
for the protocol edge cases the tests send by hand.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Backend",
    "BackendLoop",
    "Behaviour",
    "Chunked",
    "Close",
    "Echo",
    "Hang",
    "Ok",
    "RawConn",
    "RawResponse",
    "Reset",
    "Seen",
    "Trickle",
    "Upgrade",
    "free_ports",
    "wait_until",
]

WAIT = 5.0
"""Longest any helper here waits for something (seconds)."""


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Poll ``predicate`` every 5 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.005)


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 right now (bound to 0, then released)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


# ---------------------------------------------------------------------------- what arrived


@dataclass(frozen=True)
class Seen:
    """One complete request as the backend received it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]  # names lowercased, in arrival order
    body: bytes
    connection: int  # the backend's number for the connection it came on
    chunked: bool  # it came with Transfer-Encoding: chunked

    def header(self, name: str) -> str | None:
        """The first value of ``name`` (case-insensitive), or None."""
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive)."""
        name = name.lower()
        return [v for n, v in self.headers if n == name]


# ---------------------------------------------------------------------------- behaviours


class _Context:
    """What a behaviour may use to answer: the request, the streams, the backend."""

    def __init__(
        self,
        backend: Backend,
        request: Seen,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.backend = backend
        self.request = request
        self.reader = reader
        self.writer = writer


class Behaviour:
    """How a backend answers one request. ``act`` returns False to close the connection."""

    async def act(self, ctx: _Context) -> bool:
        raise NotImplementedError


def _head(status: int, headers: Iterable[tuple[str, str]], reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{n}: {v}" for n, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class Ok(Behaviour):
    """Answer ``status`` with ``body`` (after ``delay`` seconds); no body for HEAD/1xx/204/304."""

    body: bytes = b"ok"
    status: int = 200
    headers: Sequence[tuple[str, str]] = ()
    delay: float = 0.0

    async def act(self, ctx: _Context) -> bool:
        if self.delay:
            await asyncio.sleep(self.delay)
        headers = [("x-backend", ctx.backend.name), *self.headers]
        if self.status != 204 and not 100 <= self.status < 200:
            headers.append(("content-length", str(len(self.body))))
        bodiless = ctx.request.method == "HEAD" or self.status in (204, 304)
        ctx.writer.write(_head(self.status, headers) + (b"" if bodiless else self.body))
        await ctx.writer.drain()
        return True


def Fail(status: int = 503, headers: Sequence[tuple[str, str]] = ()) -> Ok:  # noqa: N802
    """Answer an error status (a small body)."""
    return Ok(b"failed\n", status, headers)


@dataclass(frozen=True)
class Echo(Behaviour):
    """Answer 200 with JSON: the request line, headers and body (base64) received."""

    async def act(self, ctx: _Context) -> bool:
        req = ctx.request
        doc = {
            "backend": ctx.backend.name,
            "method": req.method,
            "target": req.target,
            "version": req.version,
            "headers": req.headers,
            "chunked": req.chunked,
            "body_b64": base64.b64encode(req.body).decode("ascii"),
        }
        body = json.dumps(doc).encode()
        headers = [
            ("x-backend", ctx.backend.name),
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
        ]
        ctx.writer.write(_head(200, headers) + body)
        await ctx.writer.drain()
        return True


@dataclass(frozen=True)
class Hang(Behaviour):
    """Never answer, until :meth:`Backend.release` (then 200 ``released``) or the peer closes."""

    limit: float = 30.0

    async def act(self, ctx: _Context) -> bool:
        release = asyncio.ensure_future(ctx.backend._released.wait())
        eof = asyncio.ensure_future(ctx.reader.read(1))
        done, pending = await asyncio.wait(
            {release, eof}, timeout=self.limit, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if release in done and eof not in done:
            return await Ok(b"released").act(ctx)
        return False


@dataclass(frozen=True)
class Reset(Behaviour):
    """Abort the connection without answering: an RST (SO_LINGER 0)."""

    async def act(self, ctx: _Context) -> bool:
        sock = ctx.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ctx.writer.transport.abort()
        return False


@dataclass(frozen=True)
class Close(Behaviour):
    """Close the connection without answering (a FIN)."""

    async def act(self, ctx: _Context) -> bool:
        return False


@dataclass(frozen=True)
class Trickle(Behaviour):
    """Answer 200 with a Content-Length body sent ``pieces`` at a time, ``interval`` apart."""

    body: bytes
    pieces: int = 10
    interval: float = 0.02

    async def act(self, ctx: _Context) -> bool:
        headers = [("x-backend", ctx.backend.name), ("content-length", str(len(self.body)))]
        ctx.writer.write(_head(200, headers))
        await ctx.writer.drain()
        step = max(1, -(-len(self.body) // self.pieces))
        for start in range(0, len(self.body), step):
            await asyncio.sleep(self.interval)
            ctx.writer.write(self.body[start : start + step])
            await ctx.writer.drain()
        return True


@dataclass(frozen=True)
class Chunked(Behaviour):
    """Answer 200 with a chunked body made of ``parts`` (each one chunk, in order)."""

    parts: Sequence[bytes]
    headers: Sequence[tuple[str, str]] = ()

    async def act(self, ctx: _Context) -> bool:
        headers = [("x-backend", ctx.backend.name), ("transfer-encoding", "chunked")]
        out = [_head(200, [*headers, *self.headers])]
        for part in self.parts:
            if part:
                out.append(b"%x\r\n%b\r\n" % (len(part), part))
        out.append(b"0\r\n\r\n")
        ctx.writer.write(b"".join(out))
        await ctx.writer.drain()
        return True


@dataclass(frozen=True)
class Upgrade(Behaviour):
    """Switch protocols (101) when asked, then echo every byte until the peer closes."""

    async def act(self, ctx: _Context) -> bool:
        proto = ctx.request.header("upgrade") or "echo"
        ctx.writer.write(_head(101, [("connection", "upgrade"), ("upgrade", proto)]))
        await ctx.writer.drain()
        return await Upgrade.echo(ctx)

    @staticmethod
    async def echo(ctx: _Context) -> bool:
        """Echo every byte until the peer closes."""
        while True:
            data = await ctx.reader.read(65536)
            if not data:
                return False
            ctx.writer.write(data)
            await ctx.writer.drain()


@dataclass(frozen=True)
class SwitchWhenAsked(Behaviour):
    """An app that would accept any upgrade, h2c included: 101 to the first protocol an
    Upgrade field offers (then echo), ``refuse`` instead when set; 200 when none is asked."""

    refuse: int | None = None
    answer_with: str | None = None  # the protocol the 101 names (default: the one offered)

    async def act(self, ctx: _Context) -> bool:
        offered = ctx.request.header("upgrade")
        if offered is None:
            return await Ok(b"plain http/1.1").act(ctx)
        if self.refuse is not None:
            return await Ok(b"no switch", self.refuse).act(ctx)
        proto = self.answer_with or offered.split(",")[0].strip()
        ctx.writer.write(_head(101, [("connection", "upgrade"), ("upgrade", proto)]))
        await ctx.writer.drain()
        return await Upgrade.echo(ctx)


# ---------------------------------------------------------------------------- the server


class _Incomplete(Exception):
    """The peer closed (or sent garbage) before the request was complete."""


class Backend:
    """A scripted HTTP/1.1 server on 127.0.0.1 (see the module docstring)."""

    def __init__(self, loop: BackendLoop, name: str, default: Behaviour) -> None:
        self.name = name
        self.default = default
        self.paths: dict[str, Behaviour] = {}
        self.queue: list[Behaviour] = []
        self.seen: list[Seen] = []
        self.heads = 0  # request heads received (complete requests or not)
        self.partial = 0  # requests cut short (head received, body incomplete)
        self.connections = 0
        self.open_connections = 0
        self._loop = loop
        self._released = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    # -- scripting (from the test thread) --

    def script(
        self,
        default: Behaviour | None = None,
        *,
        paths: dict[str, Behaviour] | None = None,
        queue: Sequence[Behaviour] = (),
    ) -> Backend:
        """Set what the backend answers and forget what it saw."""
        if default is not None:
            self.default = default
        if paths is not None:
            self.paths = dict(paths)
        self.queue = list(queue)
        self.reset()
        return self

    def reset(self) -> None:
        """Forget what was received (counts and requests); un-release hanging requests."""
        self.seen = []
        self.heads = 0
        self.partial = 0
        self.connections = 0
        self._loop.call(self._released.clear)

    def release(self) -> None:
        """Let every :class:`Hang` request answer 200."""
        self._loop.call(self._released.set)

    @property
    def hits(self) -> int:
        """Complete requests received."""
        return len(self.seen)

    def wait_heads(self, n: int, timeout: float = WAIT) -> None:
        wait_until(lambda: self.heads >= n, timeout, f"{n} request heads at {self.name}")

    # -- serving (on the backend loop) --

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, limit=1 << 20, backlog=512
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()

    def _choose(self, path: str) -> Behaviour:
        if self.queue:
            return self.queue.pop(0)
        best = ""
        for prefix in self.paths:
            if path.startswith(prefix) and len(prefix) > len(best):
                best = prefix
        return self.paths[best] if best else self.default

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_connections += 1
        number = self.connections
        self._writers.add(writer)
        try:
            while True:
                try:
                    request = await self._read_request(reader, writer, number)
                except _Incomplete:
                    return
                if request is None:
                    return
                self.seen.append(request)
                ctx = _Context(self, request, reader, writer)
                keep = await self._choose(request.target).act(ctx)
                if not keep or (request.header("connection") or "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self.open_connections -= 1
            self._writers.discard(writer)
            writer.close()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, number: int
    ) -> Seen | None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _Incomplete from None
            return None
        except asyncio.LimitOverrunError:
            raise _Incomplete from None
        self.heads += 1
        lines = raw[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        values = dict(headers)
        chunked = "chunked" in values.get("transfer-encoding", "").lower()
        try:
            if values.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if chunked:
                body = await _read_chunked(reader)
            else:
                body = await reader.readexactly(int(values.get("content-length", "0")))
        except (asyncio.IncompleteReadError, ValueError, ConnectionError):
            self.partial += 1
            raise _Incomplete from None
        return Seen(method, target, version.removeprefix("HTTP/"), headers, body, number, chunked)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailer fields
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ValueError("missing CRLF after chunk")


class BackendLoop:
    """An event loop in a daemon thread, hosting every :class:`Backend` of a test session."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.backends: list[Backend] = []

    def run(self, coro: Any, timeout: float = WAIT) -> Any:
        """Run ``coro`` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(fn)

    def backend(self, name: str, default: Behaviour | None = None) -> Backend:
        """A new backend listening on an ephemeral port of 127.0.0.1."""
        backend = Backend(self, name, default or Echo())

        async def start() -> None:
            backend._released = asyncio.Event()
            await backend._start()

        self.run(start())
        self.backends.append(backend)
        return backend

    def close(self) -> None:
        for backend in self.backends:
            self.run(backend._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)


# ---------------------------------------------------------------------------- raw client


@dataclass
class RawResponse:
    """A response read off a raw socket."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class RawConn:
    """A client connection on a raw socket: send bytes, read responses, every read bounded."""

    def __init__(self, port: int, timeout: float = WAIT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        self.buf = bytearray()
        self._deadline = 0.0

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def abort(self) -> None:
        """Close with an RST (SO_LINGER 0), as a client that crashed or timed out does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def _fill(self) -> bool:
        left = self._deadline - time.monotonic()
        if left <= 0:
            have = bytes(self.buf)[:200]
            raise TimeoutError(f"nothing more within {self.timeout}s; have {have!r}")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buf += data
        return True

    def _until(self, marker: bytes) -> bytes:
        while (i := self.buf.find(marker)) < 0:
            if not self._fill():
                raise EOFError(f"closed before {marker!r}; got {bytes(self.buf)[:200]!r}")
        out = bytes(self.buf[: i + len(marker)])
        del self.buf[: i + len(marker)]
        return out

    def exactly(self, n: int, timeout: float | None = None) -> bytes:
        """``n`` bytes (those already buffered first)."""
        self._deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def head(self, timeout: float | None = None) -> bytes:
        """The next head, raw (an interim 1xx response, say)."""
        self._deadline = time.monotonic() + (timeout or self.timeout)
        return self._until(b"\r\n\r\n")

    def response(self, method: str = "GET", timeout: float | None = None) -> RawResponse:
        """The next final response (1xx skipped, 101 returned), framed as RFC 9112 says."""
        self._deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            head = self._until(b"\r\n\r\n").decode("latin-1")
            lines = head[:-4].split("\r\n")
            _version, status, *reason = lines[0].split(" ", 2)
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers.append((name.strip().lower(), value.strip()))
            resp = RawResponse(int(status), reason[0] if reason else "", headers)
            if resp.status >= 200 or resp.status == 101:
                break
        if method == "HEAD" or resp.status in (101, 204, 304):
            return resp
        if method == "CONNECT" and 200 <= resp.status < 300:
            return resp  # a tunnel follows, not a body (RFC 9110 §9.3.6)
        if resp.header("transfer-encoding"):
            resp.chunked = True
            body = bytearray()
            while True:
                size = int(self._until(b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._until(b"\r\n") != b"\r\n":
                        pass
                    break
                body += self.exactly(size)
                if self.exactly(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
            resp.body = bytes(body)
        elif resp.header("content-length") is not None:
            resp.body = self.exactly(int(resp.header("content-length") or 0))
        else:
            while self._fill():
                pass
            resp.body, self.buf = bytes(self.buf), bytearray()
        return resp

    def closed(self, timeout: float | None = None) -> bool:
        """Whether the peer closes (EOF or reset) within ``timeout``; any bytes are dropped."""
        self._deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._fill():
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    def response_or_close(self, timeout: float | None = None) -> RawResponse | None:
        """The next response, or None if the peer closed (or reset) without one."""
        try:
            return self.response(timeout=timeout)
        except (EOFError, ConnectionError):
            return None


def serve_https(
    handler: type[http.server.BaseHTTPRequestHandler], cert: Path, key: Path
) -> http.server.ThreadingHTTPServer:
    """An HTTPS server on 127.0.0.1 (a free port: ``server_address[1]``) with this
    certificate, serving ``handler`` on a thread of its own until ``shutdown()``:
    what a host outside the mesh looks like to an app."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
