"""The ASGI and WSGI middleware under real servers: Starlette under uvicorn, Flask under werkzeug.

Driven with real clients over loopback; spans read from an SDK provider given
to the middleware (and to seawall's clients) explicitly. The last tests chain
two apps through seawall's clients and check that they make one trace: app
SERVER span -> call CLIENT span -> attempt CLIENT span -> next app's SERVER span.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
import requests
import uvicorn
from flask import Flask, Response, jsonify
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route
from werkzeug.serving import WSGIRequestHandler, make_server

from seawall.client.httpx import AsyncSeawallTransport
from seawall.client.requests import SeawallAdapter
from seawall.policy.deadline import remaining
from seawall.telemetry import current_request_id, current_trace
from seawall.telemetry.asgi import SeawallMiddleware
from seawall.telemetry.wsgi import SeawallWSGIMiddleware

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03"

# --- servers ---------------------------------------------------------------------------------


@contextmanager
def uvicorn_server(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    give_up = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < give_up, "uvicorn did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class _Quiet(WSGIRequestHandler):
    def log(self, *args: Any) -> None:
        pass


@contextmanager
def werkzeug_server(app: Any) -> Iterator[str]:
    """``app`` served by werkzeug's threaded WSGI server on a free loopback port."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


class Recorded:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def wait(self, count: int) -> list[ReadableSpan]:
        """The spans once ``count`` have ended (a server span ends as its response is done)."""
        give_up = time.monotonic() + 5
        while len(self.spans()) < count and time.monotonic() < give_up:
            time.sleep(0.01)
        return self.spans()

    def server(self) -> ReadableSpan:
        (span,) = [s for s in self.wait(1) if s.kind is SpanKind.SERVER]
        return span


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    rec = Recorded()
    yield rec
    rec.provider.shutdown()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def hexid(span_id: int) -> str:
    return f"{span_id:016x}"


def what_the_app_saw() -> dict[str, Any]:
    trace = current_trace()
    return {
        "rid": current_request_id(),
        "trace": None if trace is None else trace.format(),
        "left": remaining(),
    }


# --- the apps ----------------------------------------------------------------------------------


class Starlettes:
    """A Starlette app behind SeawallMiddleware, and what it was asked."""

    def __init__(self, provider: TracerProvider | None, downstream: str | None = None) -> None:
        self.calls: list[str] = []
        self.lifespan: list[str] = []
        self.downstream = downstream
        self.provider = provider

        async def seen(request: Request) -> JSONResponse:
            self.calls.append(request.url.path)
            return JSONResponse(what_the_app_saw())

        async def status(request: Request) -> PlainTextResponse:
            self.calls.append(request.url.path)
            return PlainTextResponse("s", status_code=int(request.path_params["code"]))

        async def boom(request: Request) -> PlainTextResponse:
            self.calls.append(request.url.path)
            raise RuntimeError("boom")

        async def stream(request: Request) -> StreamingResponse:
            async def chunks() -> AsyncIterator[bytes]:
                yield b"first,"
                await asyncio.sleep(0.01)
                yield (current_request_id() or "").encode()

            return StreamingResponse(chunks(), media_type="text/plain")

        async def call(request: Request) -> JSONResponse:
            transport = AsyncSeawallTransport(tracer_provider=self.provider)
            async with httpx.AsyncClient(transport=transport) as client:
                answer = await client.get(f"{self.downstream}/items/7")
            return JSONResponse(answer.json())

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            self.lifespan.append("startup")
            yield
            self.lifespan.append("shutdown")

        self.app = SeawallMiddleware(
            Starlette(
                routes=[
                    Route("/items/{item:int}", seen),
                    Route("/status/{code:int}", status),
                    Route("/boom", boom),
                    Route("/stream", stream),
                    Route("/call", call),
                ],
                lifespan=lifespan,
            ),
            tracer_provider=provider,
        )


class Flasks:
    """A Flask app behind SeawallWSGIMiddleware, and what it was asked."""

    def __init__(self, provider: TracerProvider | None, downstream: str | None = None) -> None:
        self.calls: list[str] = []
        flask = Flask("seawall-test")
        flask.config["PROPAGATE_EXCEPTIONS"] = True  # an exception escapes the app

        @flask.get("/items/<int:item>")
        def seen(item: int) -> Any:
            self.calls.append(f"/items/{item}")
            return jsonify(what_the_app_saw())

        @flask.get("/status/<int:code>")
        def status(code: int) -> Any:
            self.calls.append(f"/status/{code}")
            return "s", code

        @flask.get("/boom")
        def boom() -> Any:
            self.calls.append("/boom")
            raise RuntimeError("boom")

        @flask.get("/stream")
        def stream() -> Response:
            def chunks() -> Iterator[bytes]:
                yield b"first,"
                yield (current_request_id() or "").encode()  # the request's context, still

            return Response(chunks(), mimetype="text/plain")

        @flask.get("/call")
        def call() -> Any:
            with requests.Session() as session:
                session.mount("http://", SeawallAdapter(tracer_provider=provider))
                return jsonify(session.get(f"{downstream}/items/7", timeout=5).json())

        flask.wsgi_app = SeawallWSGIMiddleware(flask.wsgi_app, tracer_provider=provider)  # type: ignore[method-assign]
        self.app = flask


@contextmanager
def served(
    kind: str, provider: TracerProvider | None, downstream: str | None = None
) -> Iterator[tuple[str, Any]]:
    if kind == "asgi":
        s = Starlettes(provider, downstream)
        with uvicorn_server(s.app) as url:
            yield url, s
    else:
        f = Flasks(provider, downstream)
        with werkzeug_server(f.app) as url:
            yield url, f


KINDS = ["asgi", "wsgi"]
ROUTES = {"asgi": "/items/{item:int}", "wsgi": "/items/<int:item>"}

# --- the inbound step ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_the_trace_is_continued_under_a_server_span(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, app):
        r = httpx.get(
            f"{url}/items/7?q=1",
            headers={"traceparent": CALLER, "tracestate": "a=1", "x-request-id": "rid-1"},
        )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "rid-1"
    seen = r.json()
    assert seen["rid"] == "rid-1"
    assert seen["left"] is None
    span = recorded.server()
    context = span.context
    assert span.parent is not None
    assert hexid(span.parent.span_id) == "00f067aa0ba902b7"
    assert seen["trace"] == f"00-{context.trace_id:032x}-{hexid(context.span_id)}-03"
    assert span.name == f"GET {ROUTES[kind]}"
    a = attrs(span)
    assert a["http.route"] == ROUTES[kind]
    assert (a["url.path"], a["url.query"], a["url.scheme"]) == ("/items/7", "q=1", "http")
    assert a["http.response.status_code"] == 200
    assert a["server.address"] == "127.0.0.1"
    assert a["client.address"] == "127.0.0.1"
    assert a["network.protocol.version"] == "1.1"
    assert a["http.response.body.size"] == len(r.content)
    assert span.status.status_code is StatusCode.UNSET
    assert app.calls == ["/items/7"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_request_id_and_trace_when_none_came(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, _):
        r = httpx.get(f"{url}/items/1")
    assert len(r.headers["x-request-id"]) == 32
    assert r.json()["rid"] == r.headers["x-request-id"]
    assert recorded.server().parent is None


@pytest.mark.parametrize("kind", KINDS)
def test_the_deadline_is_in_force_inside(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, _):
        left = httpx.get(f"{url}/items/1", headers={"x-seawall-deadline-ms": "5000"}).json()["left"]
        ignored = httpx.get(f"{url}/items/2", headers={"x-seawall-deadline-ms": "soon"}).json()
    assert 4.0 < left <= 5.0
    assert ignored["left"] is None
    spans = recorded.wait(2)
    assert [e.name for s in spans for e in s.events] == ["seawall.deadline"]


@pytest.mark.parametrize("kind", KINDS)
def test_an_expired_deadline_is_answered_504_without_the_app(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, app):
        r = httpx.get(
            f"{url}/items/1", headers={"x-seawall-deadline-ms": "0", "x-request-id": "r9"}
        )
    assert r.status_code == 504
    assert r.json() == {
        "error": "timeout",
        "destination": None,
        "reason": "deadline already expired",
    }
    assert r.headers["x-request-id"] == "r9"
    assert app.calls == []
    span = recorded.server()
    assert [e.name for e in span.events] == ["seawall.deadline.expired"]
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "504"


@pytest.mark.parametrize("kind", KINDS)
def test_status_codes_set_the_server_span_s_status(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, _):
        assert httpx.get(f"{url}/status/404").status_code == 404
        assert httpx.get(f"{url}/status/503").status_code == 503
    spans = sorted(recorded.wait(2), key=lambda s: attrs(s)["http.response.status_code"])
    assert [s.status.status_code for s in spans] == [StatusCode.UNSET, StatusCode.ERROR]
    assert attrs(spans[1])["error.type"] == "503"


@pytest.mark.parametrize("kind", KINDS)
def test_an_exception_is_recorded_and_answered_500(kind: str, recorded: Recorded) -> None:
    with served(kind, recorded.provider) as (url, app):
        r = httpx.get(f"{url}/boom", headers={"x-request-id": "r5"})
        assert r.status_code == 500
        assert r.headers["x-request-id"] == "r5"
        assert app.calls == ["/boom"]
        span = recorded.server()
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "RuntimeError"
    assert attrs(span)["http.response.status_code"] == 500
    (event,) = [e for e in span.events if e.name == "exception"]
    assert dict(event.attributes or {})["exception.message"] == "boom"


@pytest.mark.parametrize("kind", KINDS)
def test_a_streamed_response_streams_in_the_request_s_context(
    kind: str, recorded: Recorded
) -> None:
    with (
        served(kind, recorded.provider) as (url, _),
        httpx.stream("GET", f"{url}/stream", headers={"x-request-id": "r-s"}) as r,
    ):
        chunks = list(r.iter_bytes())
    assert b"".join(chunks) == b"first,r-s"
    assert attrs(recorded.server())["http.response.body.size"] == len(b"first,r-s")


def test_lifespan_passes_through(recorded: Recorded) -> None:
    app = Starlettes(recorded.provider)
    with uvicorn_server(app.app):
        assert app.lifespan == ["startup"]
    assert app.lifespan == ["startup", "shutdown"]
    assert recorded.spans() == []


@pytest.mark.parametrize("kind", KINDS)
def test_without_an_sdk_the_inbound_step_is_done_all_the_same(kind: str) -> None:
    with served(kind, None) as (url, _):
        seen = httpx.get(
            f"{url}/items/3", headers={"traceparent": CALLER, "x-seawall-deadline-ms": "3000"}
        ).json()
    trace = seen["trace"].split("-")
    assert trace[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert trace[2] != "00f067aa0ba902b7"  # continue_trace's child
    assert 2.0 < seen["left"] <= 3.0


# --- one trace across apps ---------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [("asgi", "wsgi"), ("wsgi", "asgi")])
def test_two_apps_through_seawall_s_clients_make_one_trace(
    first: str, second: str, recorded: Recorded
) -> None:
    with (
        served(second, recorded.provider) as (downstream, b),
        served(first, recorded.provider, downstream) as (url, _),
    ):
        r = httpx.get(f"{url}/call", headers={"traceparent": CALLER, "x-request-id": "rid-x"})
        assert r.status_code == 200, r.text
        spans = recorded.wait(4)
    assert b.calls == ["/items/7"]
    assert r.json()["rid"] == "rid-x"  # the request id went through
    by_id = {s.context.span_id: s for s in spans}
    (leaf,) = [s for s in spans if s.kind is SpanKind.SERVER and attrs(s)["url.path"] == "/items/7"]
    chain = [leaf]
    while chain[-1].parent is not None and chain[-1].parent.span_id in by_id:
        chain.append(by_id[chain[-1].parent.span_id])
    kinds = [(s.kind, "seawall.attempt" in attrs(s)) for s in reversed(chain)]
    assert kinds == [
        (SpanKind.SERVER, False),  # the first app
        (SpanKind.CLIENT, False),  # its call, policies included
        (SpanKind.CLIENT, True),  # the attempt
        (SpanKind.SERVER, False),  # the second app
    ]
    root = chain[-1]
    assert root.parent is not None
    assert hexid(root.parent.span_id) == "00f067aa0ba902b7"
    assert {s.context.trace_id for s in spans} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}
    assert json.loads(r.text)["trace"].split("-")[2] == hexid(leaf.context.span_id)
