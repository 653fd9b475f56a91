"""The shop's shared plumbing: an ASGI app behind seawall's middleware, and a mesh client.

Every shop service (``python -m examples.shop.<service> --config mesh.yaml``)
is a :class:`ShopApp`: it reads its own section of ``mesh.yaml``, listens on
``services.<name>.port`` on loopback and calls the other services **only**
through its own sidecar's outbound listener, used as an HTTP proxy
(absolute-form ``POST http://payments/charge``), so the mesh's policies apply
to every call it makes.

A ShopApp is an ASGI 3 application served by uvicorn. Its handlers keep a
small shape of their own, a :class:`Request` in and a :class:`Reply` (JSON)
out; :meth:`ShopApp.__call__` adapts them to ASGI. The business routes run
inside :class:`~seawall.telemetry.asgi.SeawallMiddleware` (the caller's trace
continued, the request id, the deadline, a SERVER span), and the calls go
through :class:`~seawall.client.httpx.AsyncSeawallTransport` with no policy of
its own, since the sidecar applies mesh.yaml's (a CLIENT span per call and per
attempt, whose context the sidecar continues). Each app exports its spans
where its sidecar exports its own (:func:`seawall.telemetry.setup`), so a
checkout is one trace::

    gateway's sidecar SERVER → gateway SERVER → its call CLIENT → attempt CLIENT
      → gateway's sidecar CLIENT → attempt → orders' sidecar SERVER → orders SERVER → ...

When a client goes away, the handler of its request is cancelled: uvicorn
does not cancel an app whose client disconnected, it answers the app's next
``receive()`` with ``http.disconnect``; the adapter waits for that beside the
handler, and cancels it (a hung request does not outlive its caller).

Every app has, besides its business routes (these three are not traced):

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
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import parse_qs

import httpx
import uvicorn

import seawall.telemetry
from seawall.client.httpx import AsyncSeawallTransport
from seawall.config import load_mesh
from seawall.policy import Pipeline, Policy
from seawall.policy.errors import DeadlineExceeded, SeawallError
from seawall.telemetry.asgi import SeawallMiddleware

if TYPE_CHECKING:
    from seawall.telemetry.otel import Handle

__all__ = ["Reply", "Request", "ShopApp", "main", "mesh_verdict"]

MODES = ("ok", "hang", "fail")
HANG_SECONDS = 60.0
"""How long a hung request waits (unless its caller gives up first, which cancels it)."""
CLIENT_TIMEOUT = 10.0
"""The app's own timeout: longer than every mesh timeout, so the sidecar decides."""
MAX_CALLS = 20_000
MAX_BODY = 1024 * 1024
STOP_GRACE = 2.0
"""On SIGTERM, the requests in flight get this long to finish, then are cancelled."""
FLUSH_SECONDS = 1.0
"""On SIGTERM, the spans not yet exported get this long to reach the collector."""
OPERATIONS = frozenset({"/health", "/_control", "/_stats"})
"""The operator's routes: served outside the middleware, so polling them makes no traces."""

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]


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


@dataclass(frozen=True, slots=True)
class _Route:
    """What Starlette puts in ``scope["route"]``: the middleware names the span by its path."""

    path: str


def mesh_verdict(headers: httpx.Headers) -> str | None:
    """Whether the caller's sidecar answered for the callee: circuit open, overflow."""
    if headers.get("x-seawall-circuit") == "open":
        return "circuit open"
    overflow = headers.get("x-seawall-overflow")
    return f"overflow ({overflow})" if overflow else None


def no_policies(host: str) -> Policy:
    """The transport's policy for every host: none.

    The sidecar applies mesh.yaml's policies to every call; a second layer in
    the app would multiply its retries and count the sidecar's own answers
    (circuit open, overflow) as the callee's failures. The transport still
    records the call's spans and sends the trace, request id and deadline.
    """
    return Pipeline()


# --------------------------------------------------------------------------- ASGI adapter


def _request(scope: Scope, body: bytes) -> Request:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return Request(
        scope["method"], scope["path"] or "/", {k: v[-1] for k, v in query.items()}, headers, body
    )


class _TooLarge(Exception):
    """The request's body is over MAX_BODY."""


async def _read_body(receive: Receive) -> bytes | None:
    """The request's body; None when the client went away (:class:`_TooLarge`, too large)."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            raise _TooLarge
        if not message.get("more_body", False):
            return bytes(body)


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (the body was read: nothing else can arrive)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(work: Awaitable[Reply], receive: Receive) -> Reply | None:
    """``work``'s reply; None, with ``work`` cancelled, if the client goes away first."""
    handler = asyncio.ensure_future(work)  # in this context: the request's trace and deadline
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((handler, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this request is cancelled (the server stops): so are both
        handler.cancel()
        gone.cancel()
        raise
    gone.cancel()
    if not handler.done():  # the caller gave up: so does the handler
        handler.cancel()
        await asyncio.wait((handler,))
        return None
    try:
        return handler.result()
    except Exception as exc:  # a bug in a handler: 500, the server keeps going
        return Reply(500, {"error": f"{type(exc).__name__}: {exc}"})


async def _send(send: Send, reply: Reply, *, head_only: bool) -> None:
    body = json.dumps(reply.body).encode() + b"\n"
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
    ]
    headers += [
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head_only else body})


@dataclass(slots=True)
class _CallLog:
    calls: deque[tuple[float, float, int]] = field(
        default_factory=lambda: deque(maxlen=MAX_CALLS)
    )  # (started, seconds, status)


class ShopApp:
    """One shop service: its routes, its mode, and its client to the mesh (an ASGI app)."""

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
        self.tracing = config.tracing
        sample = service.trace_sample
        self.trace_sample = (config.tracing.sample if sample is None else sample) / 100.0
        # Longer than the sidecar keeps an idle connection to its app, so that the app
        # never closes one just as the sidecar sends a request on it.
        self.keep_alive = config.limits.idle_timeout + 5.0
        self.mode = "ok"
        self.routes: dict[tuple[str, str], Handler] = {}
        self.calls: dict[str, _CallLog] = {}
        self._client: httpx.AsyncClient | None = None
        self._spans: Handle | None = None
        self._traced = SeawallMiddleware(self._business)

    # -- routes -----------------------------------------------------------

    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Register a business route (it obeys ``/_control``'s mode)."""

        def register(handler: Handler) -> Handler:
            self.routes[(method, path)] = handler
            return handler

        return register

    async def operate(self, request: Request) -> Reply:
        """``/health``, ``/_control`` and ``/_stats``."""
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
        return Reply(200, {key: list(log.calls) for key, log in self.calls.items()})

    async def dispatch(self, request: Request) -> Reply:
        """A business route, as the mode says."""
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            known = any(p == request.path for _, p in self.routes)
            return Reply(
                405 if known else 404, {"error": f"no route {request.method} {request.path}"}
            )
        if self.mode == "fail":
            return Reply(503, {"error": f"{self.name} is failing (demo)"})
        if self.mode == "hang":
            await asyncio.sleep(HANG_SECONDS)  # cancelled when the caller gives up
            return Reply(504, {"error": f"{self.name} hung (demo)"})
        return await handler(request)

    # -- ASGI -------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI application: the operator's routes as they are, the others traced."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] in OPERATIONS:
                await self._serve(self.operate, scope, receive, send)
            else:
                await self._traced(scope, receive, send)

    async def _business(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Inside the middleware: a business route (named, for the span, when it exists)."""
        if any(path == scope["path"] for _, path in self.routes):
            scope["route"] = _Route(scope["path"])
        await self._serve(self.dispatch, scope, receive, send)

    async def _serve(self, handle: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """One request: read it, run ``handle`` unless the client goes away, answer."""
        head_only = scope["method"] == "HEAD"
        try:
            body = await _read_body(receive)
        except _TooLarge:
            await _send(send, Reply(413, {"error": "body too large"}), head_only=head_only)
            return
        if body is None:
            return
        reply = await _unless_gone(handle(_request(scope, body)), receive)
        if reply is not None:
            await _send(send, reply, head_only=head_only)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- calls to other services, through the sidecar ---------------------

    @property
    def client(self) -> httpx.AsyncClient:
        """httpx through seawall's transport (spans, trace headers), with this service's
        sidecar outbound listener as its HTTP proxy."""
        if self._client is None:
            to_sidecar = httpx.AsyncHTTPTransport(
                proxy=f"http://127.0.0.1:{self.outbound}",
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
                trust_env=False,
            )
            self._client = httpx.AsyncClient(
                transport=AsyncSeawallTransport(to_sidecar, policies=no_policies),
                timeout=CLIENT_TIMEOUT,
                trust_env=False,
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

        A transport error (the sidecar unreachable) is status 0; the deadline
        of the request being served passed before the call was sent, 504.
        """
        key = f"{service} {path}"
        started = time.monotonic()
        try:
            response = await self.client.request(
                method, f"http://{service}{path}", json=payload, headers=headers
            )
        except (httpx.HTTPError, SeawallError) as exc:
            status = 504 if isinstance(exc, DeadlineExceeded) else 0
            body, answer = f"{type(exc).__name__}: {exc}", httpx.Headers()
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

    def start_tracing(self) -> None:
        """Export this app's spans where its sidecar exports its own; never fail the app.

        The endpoint is ``$SEAWALL_TRACES_ENDPOINT``, else mesh.yaml's
        ``tracing.endpoint`` (or its collector's); spans go out in batches
        every ``tracing.interval``, as the sidecar's do. A collector that is
        down costs dropped spans and a warning in the log, never a request.
        """
        if not self.tracing.enabled:
            return
        # The OpenTelemetry SDK's batch delay (ms) is set through its environment;
        # a value already there wins.
        delay = round(self.tracing.interval * 1000)
        os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", str(delay))
        endpoint = os.environ.get("SEAWALL_TRACES_ENDPOINT") or self.tracing.export_endpoint()
        try:
            self._spans = seawall.telemetry.setup(
                self.name, endpoint=endpoint, sample=self.trace_sample
            )
        except (ImportError, RuntimeError) as exc:  # no SDK, or a provider set already
            self._log(f"no spans: {exc}")

    async def _close(self) -> None:
        """At shutdown: close the client, and send the spans still queued (bounded)."""
        if self._client is not None:
            await self._client.aclose()
        if self._spans is not None:
            # In a daemon thread: an exporter retrying a collector that is gone must
            # not hold the process past FLUSH_SECONDS.
            flushing = threading.Thread(target=self._spans.shutdown, daemon=True)
            flushing.start()
            await asyncio.to_thread(flushing.join, FLUSH_SECONDS)

    def _log(self, message: str) -> None:
        sys.stderr.write(f"shop {self.name} [{os.getpid()}]: {message}\n")
        sys.stderr.flush()

    async def serve(self) -> None:
        """Serve until SIGTERM or SIGINT (uvicorn's handling of them)."""
        self.start_tracing()
        config = uvicorn.Config(
            self,
            host=self.host,
            port=self.port,
            lifespan="on",
            log_level="warning",
            access_log=False,
            backlog=1024,
            timeout_keep_alive=int(self.keep_alive),
            timeout_graceful_shutdown=int(STOP_GRACE),
        )
        self._log(f"serving on {self.host}:{self.port}")
        await uvicorn.Server(config).serve()


def _int(text: str | None) -> int | None:
    return None if not text else int(text)


def main(name: str, build: Callable[[ShopApp], None]) -> None:
    """``python -m examples.shop.<name> --config mesh.yaml``: build the app and serve it."""
    # `seawall up` says where in the environment: SEAWALL_MESH_FILE, SEAWALL_APP_PORT...
    env = os.environ
    parser = argparse.ArgumentParser(prog=f"examples.shop.{name}")
    parser.add_argument(
        "--config", default=env.get("SEAWALL_MESH_FILE", "examples/shop/mesh.yaml"),
        help="the mesh.yaml",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=_int(env.get("SEAWALL_APP_PORT")),
        help="listen here instead of the config's port",
    )  # fmt: skip
    parser.add_argument(
        "--outbound-port", type=int, default=_int(env.get("SEAWALL_OUTBOUND_PORT")),
        help="this instance's sidecar outbound port",
    )  # fmt: skip
    parser.add_argument(
        "--version", default=env.get("SEAWALL_SUBSET"),
        help="the subset this instance runs as (e.g. v2)",
    )  # fmt: skip
    args = parser.parse_args()
    app = ShopApp(
        name, args.config, port=args.port, outbound=args.outbound_port, version=args.version
    )
    build(app)
    asyncio.run(app.serve())
