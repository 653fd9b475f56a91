"""The request path: one request from a client to an upstream and back.

:meth:`Forwarder.serve` is the whole pipeline, read top to bottom, one step
per concern (DESIGN.md, "A request through the mesh"):

1. destination (fixed by the listener, or from the Host / absolute URI);
   inbound, the caller's identity (from its certificate, on an mTLS
   connection) and the service's authorization rules: a denied request is
   answered 403 without calling the app;
2. route (path, method, headers), which brings its policy;
3. correlation: ``x-request-id`` kept or created, ``traceparent`` continued;
4. deadline: the incoming ``x-seawall-deadline-ms`` or the route timeout,
   whichever is sooner; already expired inbound → 504 without calling the app;
5. fault injection;
6. traffic split (subset) and mirror copy (fire and forget);
7. attempts: breaker → pool limits → balancer → pooled connection → exchange,
   retried on the route's conditions, with backoff and the retry budget,
   never past the deadline, never for an ``x-seawall-overloaded`` response;
8. the response streams back; outcomes feed the breaker, outlier detection,
   the balancer and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..policy.clock import MONOTONIC, Clock
from ..policy.deadline import HEADER as DEADLINE_HEADER
from ..policy.deadline import decode_deadline
from ..policy.errors import CircuitOpenError
from ..telemetry.tracecontext import TraceParent, TraceState, new_request_id
from .cluster import Cluster, Overflow
from .http1 import (
    LAST_CHUNK,
    LocalProtocolError,
    RequestHead,
    ResponseHead,
    encode_chunk,
    encode_request_head,
    encode_response_head,
    error_response,
)
from .listener import DownstreamConnection, RequestBody
from .routing import Decider, Route, shadow_host
from .runtime import Destination, RoutePolicy, Runtime
from .tls import UpstreamTLS
from .upstream.connection import Exchange, UpstreamConnection, UpstreamError
from .upstream.endpoint import Endpoint

if TYPE_CHECKING:
    from .authz import Authorizer
    from .identity import Identity

__all__ = ["Forwarder"]

_OVERLOADED = (b"x-seawall-overloaded", b"1")
_DEADLINE = DEADLINE_HEADER.encode()
_PEER = b"x-seawall-peer"  # the caller's SPIFFE ID, set inbound from its certificate only
_MESH_HEADERS = frozenset(
    {
        _PEER,  # never forwarded as received: a client cannot claim an identity
        b"x-request-id",
        b"traceparent",
        b"tracestate",
        _DEADLINE,
        b"x-seawall-attempt",
        b"x-seawall-fault-delay-ms",
        b"x-seawall-fault-abort",
    }
)


class _Final(Exception):
    """A local answer to send instead of an upstream response."""

    def __init__(self, status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...] = ()):
        self.status = status
        self.detail = detail
        self.extra = extra


def _local_response(
    status: int, detail: str, extra: tuple[tuple[bytes, bytes], ...], keep_alive: bool
) -> bytes:
    body = detail.encode("utf-8", "replace") + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    return encode_response_head(status, b"", headers, keep_alive=keep_alive) + body


@dataclass(slots=True)
class _Call:
    """One request being served: what every step of the pipeline reads."""

    rt: Runtime
    down: DownstreamConnection
    req: RequestHead
    body: RequestBody
    dest: Destination
    route: Route[RoutePolicy]
    policy: RoutePolicy
    extra: list[tuple[bytes, bytes]]  # the mesh headers (request id, trace context)
    deadline: float
    subset: str | None
    payload: bytes | None = b""  # the buffered body, or None when it streams
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # end-to-end fields


class Forwarder:
    """Serves requests with the current :class:`Runtime` (swapped whole on reload)."""

    def __init__(
        self, runtime: Runtime, *, clock: Clock = MONOTONIC, identity: Identity | None = None
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.decider = Decider(runtime.rng)
        self._mirrors: set[asyncio.Task[None]] = set()
        #: mTLS to other sidecars when this one has an identity (None: plaintext, as ever)
        self.upstream_tls: UpstreamTLS | None = None
        if identity is not None:
            self.upstream_tls = UpstreamTLS(identity, runtime.metrics)

    # ------------------------------------------------------------------ the pipeline

    async def serve(self, down: DownstreamConnection, req: RequestHead, body: RequestBody) -> None:
        """Serve one request on ``down``; always ends with ``down.finish``."""
        rt = self.runtime  # this request keeps the config it started with
        start = self.clock()
        keep_alive = req.keep_alive
        status = 0
        dest_name = "-"
        route_name = "-"
        try:
            # 1. destination; inbound, the caller's identity and authorization
            dest = self._destination(rt, down, req)
            dest_name = dest.name
            if rt.authz is not None and down.inbound:
                self._authorize(rt, rt.authz, down, req)
            # 2. route
            route = dest.routes.match(req.method, req.path, req.headers) or dest.default_route
            policy = route.data
            route_name = policy.name
            # 3. correlation and 4. deadline
            extra, deadline = self._mesh_headers(req, policy, start, inbound=down.inbound)
            if down.peer_id is not None:  # inbound over mTLS: tell the app who calls
                extra.append((_PEER, down.peer_id))
            # 5. fault injection
            if route.fault is not None:
                fault = self.decider.fault(route.fault, req.headers)
                if fault is not None:
                    if fault.delay:
                        await asyncio.sleep(min(fault.delay, max(0.0, deadline - start)))
                    if fault.abort_status is not None:
                        raise _Final(
                            fault.abort_status, "fault injected", ((b"x-seawall-fault", b"abort"),)
                        )
            # 6. split and mirror
            subset = self.decider.choose_subset(route.split) if route.split else None
            # 7-8. attempts, response
            call = _Call(rt, down, req, body, dest, route, policy, extra, deadline, subset)
            status, keep_alive = await self._attempts(call)
        except _Final as final:
            status = final.status
            keep_alive = keep_alive and body.complete and not down.response_started
            if not down.response_started:
                down.write(_local_response(final.status, final.detail, final.extra, keep_alive))
            else:
                keep_alive = False
        except asyncio.CancelledError:
            status = 499  # the client went away
            keep_alive = False
            raise
        except ConnectionResetError:
            status = 499  # the client closed in the middle of its request body
            keep_alive = False
        except LocalProtocolError as exc:
            status = 502
            keep_alive = False
            if not down.response_started:
                down.write(error_response(502, exc.reason))
        except Exception as exc:  # a bug: answer and close rather than leave the client hanging
            status = 500
            keep_alive = False
            sys.stderr.write(f"seawall sidecar: internal error serving {req.path!r}: {exc!r}\n")
            if not down.response_started:
                down.write(error_response(500, "internal error in the sidecar"))
        finally:
            elapsed = self.clock() - start
            if status:
                rt.metrics.route(
                    "inbound" if down.inbound else "outbound", dest_name, route_name
                ).observe(status, elapsed)
            if rt.access_log:
                _access_log(req, status, elapsed, dest_name, route_name)
            if status != 499:
                down.finish(keep_alive)

    # ------------------------------------------------------------------ steps

    def _destination(
        self, rt: Runtime, down: DownstreamConnection, req: RequestHead
    ) -> Destination:
        if down.inbound:
            return rt.inbound
        name = down.destination
        if name is None:
            host = req.host.decode("ascii", "replace")
            name = host.rsplit(".", 1)[0] if host.endswith(".svc") else host
        dest = rt.destinations.get(name)
        if dest is None:
            raise _Final(502 if name else 400, f"unknown destination {name!r}")
        return dest

    def _authorize(
        self, rt: Runtime, authz: Authorizer, down: DownstreamConnection, req: RequestHead
    ) -> None:
        """Raise a 403 unless the service's rules let the caller make this request."""
        caller = down.peer_service
        decision = authz.decide(caller, req.method, req.path)
        if not decision.allowed:
            rt.metrics.denied.labels(caller or "unauthenticated", decision.rule).inc()
            who = repr(caller) if caller is not None else "unauthenticated caller"
            raise _Final(
                403,
                f"access denied: {who} may not call {rt.service!r} here",
                ((b"x-seawall-denied", decision.rule.encode()),),
            )

    def _mesh_headers(
        self, req: RequestHead, policy: RoutePolicy, now: float, *, inbound: bool
    ) -> tuple[list[tuple[bytes, bytes]], float]:
        deadline = now + policy.timeout
        request_id: bytes | None = None
        parent: TraceParent | None = None
        state: bytes | None = None
        for name, value in req.headers:
            if name == b"x-request-id":
                request_id = value
            elif name == b"traceparent":
                parent = TraceParent.parse(value.decode("latin-1"))
            elif name == b"tracestate":
                state = value if state is None else state + b"," + value
            elif name == _DEADLINE:
                with contextlib.suppress(ValueError):  # a malformed deadline is ignored
                    deadline = min(deadline, decode_deadline(value.decode("latin-1"), self.clock))
        if inbound and deadline <= now:
            raise _Final(504, "deadline already expired", ())
        if not request_id:
            request_id = new_request_id().encode()
        if parent is None:
            trace = TraceParent.new()
            state = None  # a new trace drops the old tracestate (W3C)
        else:
            trace = parent.child()
        extra = [(b"x-request-id", request_id), (b"traceparent", trace.format().encode())]
        if state is not None:
            parsed = TraceState.parse(state.decode("latin-1"))
            forwarded = parsed.format() if parsed is not None else ""
            if forwarded:
                extra.append((b"tracestate", forwarded.encode()))
        return extra, deadline

    async def _attempts(self, call: _Call) -> tuple[int, bool]:
        rt, down, req, body = call.rt, call.down, call.req, call.body
        route, policy, deadline = call.route, call.policy, call.deadline
        cluster = call.dest.cluster
        retry = policy.retry
        last_error = "no attempt made"
        may_retry = retry.may_retry(req.method) or (
            retry.attempts > 1 and req.get(b"idempotency-key") is not None
        )
        # The body: buffered (so it can be re-sent or mirrored) when small enough.
        payload: bytes | None = b""
        if req.has_body:
            if req.expect_continue and not down.response_started:
                down.write_interim(b"HTTP/1.1 100 Continue\r\n\r\n")
            wants_copy = may_retry or route.mirror is not None
            payload = await body.read_all(policy.retry_buffer) if wants_copy else None
            if payload is None:
                may_retry = False
        call.payload = payload
        mirror = route.mirror
        if mirror is not None and payload is not None and self.decider.should_mirror(
            mirror.percent
        ):
            self._mirror(rt, req, payload, mirror.destination, call.extra)
        call.headers = [(n, v) for n, v in req.headers if n not in _MESH_HEADERS]
        budget = cluster.budget
        if budget is not None:
            budget.deposit()
        attempt = 0
        tried: set[Endpoint] = set()
        try:
            cluster.start_request()
        except Overflow as exc:
            raise _Final(503, str(exc), _overflow_headers(exc.limit)) from None
        try:
            while True:
                attempt += 1
                now = self.clock()
                if now >= deadline:
                    raise _Final(504, "request timeout", ())
                # breaker: answer 503 at once while open, with no upstream attempt
                breaker = cluster.breaker
                permit = -1
                if breaker is not None:
                    try:
                        permit = breaker.admit(now)
                    except CircuitOpenError:
                        raise _Final(
                            503, f"circuit open for {cluster.name}",
                            ((b"x-seawall-circuit", b"open"), _OVERLOADED),
                        ) from None
                endpoint = cluster.pick(frozenset(tried), call.subset)
                if endpoint is None:
                    if breaker is not None:
                        breaker.release(permit)
                    raise _Final(503, f"no endpoint for {cluster.name}", ())
                tried.add(endpoint)
                try_deadline = deadline
                if policy.per_try_timeout is not None:
                    try_deadline = min(deadline, now + policy.per_try_timeout)
                if policy.idle_timeout is not None:  # silence until the head counts as idle
                    try_deadline = min(try_deadline, now + policy.idle_timeout)
                try:
                    can_retry = may_retry and attempt < retry.attempts
                    outcome = await self._try(call, attempt, try_deadline, endpoint, can_retry)
                except BaseException:
                    if breaker is not None:
                        breaker.release(permit)  # no outcome (overflow, cancellation): free a probe
                    raise
                kind, status, head, conn = outcome
                elapsed = self.clock() - now
                failed = kind != "ok" or status >= 500
                gateway = kind in ("connect", "reset", "timeout") or status in (502, 503, 504)
                cluster.record(endpoint, status if kind == "ok" else None, gateway)
                if breaker is not None:
                    if failed:
                        breaker.record_failure(permit, self.clock(), elapsed)
                    else:
                        breaker.record_success(permit, self.clock(), elapsed)
                if kind == "ok":
                    assert head is not None
                    assert conn is not None
                    return await self._respond(call, head, conn)
                # Retry, or give up: nothing was forwarded yet.
                last_error = kind if kind != "status" else f"status {status}"
                give_up = not (
                    may_retry
                    and attempt < retry.attempts
                    and (
                        (kind == "status" and status in retry.statuses)
                        # no response at all (reset, or the per-try timeout) as Envoy's 5xx/reset
                        or (kind in ("reset", "timeout") and retry.on_reset)
                        or (kind == "connect" and retry.on_connect_failure)
                    )
                )
                delay = 0.0
                if not give_up and cluster.retries_in_flight >= cluster.limits.max_retries:
                    cluster.overflow("retries")
                    give_up = True
                if not give_up and budget is not None and not budget.try_withdraw():
                    cluster.m_budget_exhausted.inc()
                    give_up = True
                if not give_up:
                    delay = retry.backoff.delay(attempt, 0.0, rt.rng)
                    give_up = self.clock() + delay >= deadline
                if give_up:
                    if kind == "status":  # the upstream's own answer, as it is
                        assert head is not None
                        assert conn is not None
                        return await self._respond(call, head, conn)
                    if kind == "timeout":
                        raise _Final(504, "upstream timeout", ())
                    raise _Final(503 if kind == "connect" else 502, f"upstream {last_error}", ())
                if conn is not None:
                    self._discard(conn, cluster)
                cluster.m_retries.inc()
                cluster.retries_in_flight += 1
                try:
                    if delay > 0:
                        await asyncio.sleep(delay)
                finally:
                    cluster.retries_in_flight -= 1
        finally:
            cluster.end_request()

    async def _try(
        self, call: _Call, attempt: int, try_deadline: float, endpoint: Endpoint, can_retry: bool
    ) -> tuple[str, int, ResponseHead | None, UpstreamConnection | None]:
        """One attempt. Returns (kind, status, head, connection).

        kind: ``ok`` (a response head to forward), ``status`` (a retryable
        status, not forwarded yet), ``connect``, ``reset``, ``timeout``.
        """
        down, req, body, payload = call.down, call.req, call.body, call.payload
        cluster, deadline = call.dest.cluster, call.deadline
        loop = asyncio.get_running_loop()
        timeout = try_deadline - self.clock()
        try:
            conn = await cluster.acquire(endpoint, timeout, self.upstream_tls)
        except Overflow as exc:
            raise _Final(503, str(exc), _overflow_headers(exc.limit)) from None
        except UpstreamError:
            return "connect", 0, None, None
        except TimeoutError:
            return "timeout", 0, None, None
        remaining_ms = max(0, int((deadline - self.clock()) * 1000))
        mesh = [*call.extra, (_DEADLINE, str(remaining_ms).encode())]
        if attempt > 1:
            mesh.append((b"x-seawall-attempt", str(attempt).encode()))
        exchange = conn.begin(loop, req.method, upgrade=req.upgrade is not None)
        stream_body = req.has_body and payload is None
        chunked_up = stream_body and req.chunked
        head = encode_request_head(
            req.method,
            req.path,
            call.headers,
            host=req.authority if req.scheme is not None else None,
            chunked=chunked_up,
            upgrade=req.upgrade,
            forwarded_for=down.peer,
            extra=mesh,
            # a buffered body (chunked by the client too) is sent with its length
            content_length=len(payload) if payload is not None and req.has_body else None,
        )
        if payload:
            conn.write(head + payload)
        elif stream_body:
            conn.write(head)
            if chunked_up:
                body.stream_to(
                    lambda d: conn.write(encode_chunk(d)), lambda: conn.write(LAST_CHUNK)
                )
            else:
                body.stream_to(conn.write, lambda: None)
        else:
            conn.write(head)
        balancer = cluster.balancer
        started = self.clock()
        balancer.on_start(endpoint, started)
        timer = loop.call_at(
            loop.time() + max(0.0, try_deadline - started), _expire, exchange.head
        )
        try:
            response = await exchange.head
        except UpstreamError as exc:
            balancer.on_finish(endpoint, self.clock(), self.clock() - started, False)
            conn.close()
            kind = "reset" if exc.kind in ("reset", "connect") else "protocol"
            return kind, 0, None, None
        except TimeoutError:
            balancer.on_finish(endpoint, self.clock(), self.clock() - started, False)
            conn.close()
            return "timeout", 0, None, None
        except BaseException:  # cancelled (the client left): the exchange is abandoned
            balancer.on_finish(endpoint, self.clock(), self.clock() - started, False)
            conn.close()
            raise
        finally:
            timer.cancel()
        balancer.on_finish(endpoint, self.clock(), self.clock() - started, response.status < 500)
        if response.status >= 500 and can_retry and response.get(b"x-seawall-overloaded") is None:
            return "status", response.status, response, conn
        return "ok", response.status, response, conn

    async def _respond(
        self, call: _Call, head: ResponseHead, conn: UpstreamConnection
    ) -> tuple[int, bool]:
        """Stream the upstream response to the client."""
        down, req = call.down, call.req
        exchange = conn.exchange
        assert exchange is not None
        keep_alive = req.keep_alive
        if head.status == 101 and req.upgrade is not None:
            return await self._tunnel(down, head, conn, exchange.upgrade_data or b"")
        chunk = head.has_body and not head.chunked and head.content_length is None
        response_head = encode_response_head(
            head.status,
            head.reason,
            head.headers,
            chunked=(head.chunked or chunk) and req.method != b"HEAD",
            keep_alive=keep_alive,
        )
        whole = exchange.take_complete_body() if head.content_length is not None else None
        if whole is not None:  # the common small response: one write, no streaming
            down.write(response_head + whole)
            return head.status, self._done_with(call, conn, keep_alive)
        down.write(response_head)
        if not head.has_body or req.method == b"HEAD":
            exchange.discard()
        elif head.chunked or chunk:
            down.streaming_from = conn.transport
            exchange.attach(lambda d: down.write(encode_chunk(d)), lambda: down.write(LAST_CHUNK))
        else:
            down.streaming_from = conn.transport
            exchange.attach(down.write, _nothing)
        idle = call.policy.idle_timeout
        watchdog = None if idle is None else _IdleWatch(exchange, conn, idle)
        try:
            await exchange.done
        except asyncio.CancelledError:
            conn.close()
            raise
        except UpstreamError:
            conn.close()
            return head.status, False  # cut mid-body: the client sees a short body and a close
        finally:
            down.streaming_from = None
            if watchdog is not None:
                watchdog.cancel()
        return head.status, self._done_with(call, conn, keep_alive)

    def _done_with(self, call: _Call, conn: UpstreamConnection, keep_alive: bool) -> bool:
        """The response is sent: pool the upstream connection; may the client's be reused?

        An upstream may answer before the whole request body arrived (an early
        error). The rest of that body must not reach a pooled connection, nor be
        read as the client's next request: both connections close instead.
        """
        if call.body.complete:
            call.dest.cluster.release(conn)
            return keep_alive
        call.body.stream_to(_drop, _nothing)
        conn.close()
        return False

    async def _tunnel(
        self, down: DownstreamConnection, head: ResponseHead, conn: UpstreamConnection, early: bytes
    ) -> tuple[int, bool]:
        """A 101 Switching Protocols: splice the two connections until either closes."""
        down.write(
            encode_response_head(
                101, head.reason, head.headers, upgrade=head.upgrade or b"websocket"
            )
        )
        client_bytes = down.parser.switch_protocols()
        if early:
            down.write(early)
        up_transport = conn.transport
        down_transport = down.transport
        assert up_transport is not None
        assert down_transport is not None
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        tunnel_up = _Tunnel(down_transport, closed)
        tunnel_down = _Tunnel(up_transport, closed)
        up_transport.set_protocol(tunnel_up)
        down_transport.set_protocol(tunnel_down)
        if client_bytes:
            up_transport.write(client_bytes)
        try:
            await closed
        finally:
            up_transport.close()
            down_transport.close()
        return 101, False

    def _discard(self, conn: UpstreamConnection, cluster: Cluster) -> None:
        """Drop a response that will not be forwarded; pool the connection if it can be."""
        exchange = conn.exchange
        if exchange is None:
            conn.close()
            return
        if exchange.complete:
            exchange.discard()
            cluster.release(conn)
        else:
            conn.close()  # reading a long error body costs more than a new connection

    def _mirror(
        self,
        rt: Runtime,
        req: RequestHead,
        payload: bytes,
        destination: str,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        """Send a copy to ``destination`` with a ``-shadow`` Host; the result is ignored."""
        dest = rt.destinations.get(destination)
        if dest is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._shadow(dest, req, payload, extra)
        )
        self._mirrors.add(task)
        task.add_done_callback(self._mirrors.discard)

    async def _shadow(
        self, dest: Destination, req: RequestHead, payload: bytes, extra: list[tuple[bytes, bytes]]
    ) -> None:
        cluster = dest.cluster
        endpoint = cluster.pick(frozenset(), None)
        if endpoint is None:
            return
        try:
            conn = await cluster.acquire(endpoint, 1.0, self.upstream_tls)
        except Exception:
            return
        loop = asyncio.get_running_loop()
        exchange = conn.begin(loop, req.method)
        headers = [(n, v) for n, v in req.headers if n not in _MESH_HEADERS and n != b"host"]
        conn.write(
            encode_request_head(
                req.method, req.path, headers, host=shadow_host(req.authority), extra=extra
            )
            + payload
        )
        exchange.discard()
        try:
            await asyncio.wait_for(exchange.head, 5.0)
            await asyncio.wait_for(exchange.done, 5.0)
        except Exception:
            conn.close()
            return
        cluster.release(conn)


class _IdleWatch:
    """Closes an upstream that stays silent for ``idle`` seconds while streaming a body."""

    def __init__(self, exchange: Exchange, conn: UpstreamConnection, idle: float) -> None:
        self.exchange = exchange
        self.conn = conn
        self.idle = idle
        self.seen = exchange.progress
        self.handle = asyncio.get_running_loop().call_later(idle, self.check)

    def check(self) -> None:
        if self.exchange.progress != self.seen:
            self.seen = self.exchange.progress
            self.handle = asyncio.get_running_loop().call_later(self.idle, self.check)
        else:
            self.exchange.fail(UpstreamError("cut", f"no data for {self.idle}s (idle timeout)"))
            self.conn.close()

    def cancel(self) -> None:
        self.handle.cancel()


class _Tunnel(asyncio.Protocol):
    """One direction of an upgraded connection: bytes read here are written there."""

    def __init__(self, other: asyncio.Transport, closed: asyncio.Future[None]) -> None:
        self.other = other
        self.closed = closed

    def data_received(self, data: bytes) -> None:
        self.other.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _overflow_headers(limit: str) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"x-seawall-overflow", limit.encode()), _OVERLOADED)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


def _drop(data: bytes) -> None:
    return None


def _nothing() -> None:
    return None


def _access_log(req: RequestHead, status: int, elapsed: float, dest: str, route: str) -> None:
    record = {
        "time": time.time(),
        "method": req.method.decode("latin-1"),
        "path": req.path.decode("latin-1"),
        "status": status,
        "duration_ms": round(elapsed * 1000, 3),
        "destination": dest,
        "route": route,
        "request_id": (req.get(b"x-request-id") or b"").decode("latin-1"),
    }
    sys.stdout.write(json.dumps(record) + "\n")

