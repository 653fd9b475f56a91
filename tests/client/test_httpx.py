"""seawall.client.httpx: real httpx clients against a real, scripted server on loopback.

Retries sleep on a FakeClock (no real waiting); only the deadline-vs-hang test
waits, for a fraction of a second.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scripted_server import BIG_BODY_SIZE, ScriptedServer

from seawall.client.httpx import (
    CONNECT_ERRORS,
    IDEMPOTENT_METHODS,
    AsyncSeawallTransport,
    SeawallTransport,
    default_policies,
    is_failure_response,
    is_retryable_error,
    is_retryable_response,
    retry_after,
)
from seawall.policy._policy import Policy
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import Timeout, deadline_scope
from seawall.policy.errors import CircuitOpenError, DeadlineExceeded
from seawall.policy.hedge import Hedge
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry
from seawall.telemetry.tracecontext import (
    TraceParent,
    TraceState,
    request_id_scope,
    trace_scope,
)

# --- helpers ------------------------------------------------------------------------


def quick_retry(clock: FakeClock, attempts: int = 3) -> Retry:
    """The default classification, sleeping on the fake clock."""
    return Retry(
        on=is_retryable_error,
        on_result=is_retryable_response,
        retry_after_from_result=retry_after,
        attempts=attempts,
        clock=clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
    )


def small_breaker(name: str, clock: Callable[[], float] | None = None) -> CircuitBreaker:
    """Opens after 4 calls with at least half of them failed (on a fake clock unless given)."""
    return CircuitBreaker(
        name,
        window_size=4,
        minimum_calls=4,
        failure_on_result=is_failure_response,
        record_on=httpx.TransportError,
        clock=clock if clock is not None else FakeClock(start=1000.0),
    )


def retrying(clock: FakeClock) -> Callable[[str], Policy]:
    return lambda host: Pipeline(quick_retry(clock))


def client(policies: Callable[[str], Policy], **kwargs: object) -> httpx.Client:
    limits = kwargs.pop("limits", None)
    inner = httpx.HTTPTransport(limits=limits) if limits is not None else None  # type: ignore[arg-type]
    transport = SeawallTransport(inner, policies=policies, **kwargs)  # type: ignore[arg-type]
    return httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, pool=1.0))


def aclient(policies: Callable[[str], Policy], **kwargs: object) -> httpx.AsyncClient:
    limits = kwargs.pop("limits", None)
    inner = httpx.AsyncHTTPTransport(limits=limits) if limits is not None else None  # type: ignore[arg-type]
    transport = AsyncSeawallTransport(inner, policies=policies, **kwargs)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0, pool=1.0))


class Recording(httpx.BaseTransport):
    """An inner transport that remembers the requests it was asked to send."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.sent: list[httpx.Request] = []
        self.responses: list[httpx.Response] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = self.inner.handle_request(request)
        self.responses.append(response)
        return response

    def close(self) -> None:
        self.inner.close()


# --- classification helpers ------------------------------------------------------------


def response(status: int = 503, **headers: str | bytes) -> httpx.Response:
    pairs = [
        (k.replace("_", "-").encode(), v if isinstance(v, bytes) else v.encode())
        for k, v in headers.items()
    ]
    return httpx.Response(status, headers=pairs)


def test_failure_and_retryable_responses() -> None:
    assert is_failure_response(response(500))
    assert is_failure_response(response(503))
    assert not is_failure_response(response(499))
    assert not is_failure_response(response(200))
    assert is_retryable_response(response(503))
    assert not is_retryable_response(response(503, x_seawall_overloaded="1"))
    assert not is_retryable_response(response(429))


def test_retryable_errors() -> None:
    request = httpx.Request("GET", "http://x")
    assert CONNECT_ERRORS == (httpx.ConnectError, httpx.ConnectTimeout)
    assert is_retryable_error(httpx.ConnectError("refused", request=request))
    assert is_retryable_error(httpx.ConnectTimeout("slow", request=request))
    assert is_retryable_error(
        httpx.RemoteProtocolError("Server disconnected without sending a response.")
    )
    assert not is_retryable_error(httpx.RemoteProtocolError("peer closed connection mid-body"))
    assert not is_retryable_error(httpx.ReadTimeout("slow", request=request))
    assert not is_retryable_error(httpx.PoolTimeout("busy", request=request))
    assert not is_retryable_error(ValueError("bug"))
    assert {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"} == IDEMPOTENT_METHODS


def test_retry_after_delta_seconds() -> None:
    assert retry_after(response(200)) is None
    assert retry_after(response(retry_after="7")) == 7.0
    assert retry_after(response(retry_after=" 0 ")) == 0.0
    assert retry_after(response(retry_after="9" * 400)) == 10 * 24 * 3600.0  # capped


@pytest.mark.parametrize(
    "value", ["", "soon", "-1", "1.5", "+3", "\u0663".encode(), "Mon, 99 Foo 2024"]
)
def test_retry_after_malformed_is_none(value: str | bytes) -> None:
    assert retry_after(response(retry_after=value)) is None


def test_retry_after_http_date_uses_the_wall_clock() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    seconds = retry_after(response(retry_after=future))
    assert seconds is not None
    assert 28.0 <= seconds <= 30.0
    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    assert retry_after(response(retry_after=past)) == 0.0


@given(st.text(max_size=40))
def test_retry_after_never_raises(value: str) -> None:
    try:
        headers = httpx.Headers({"retry-after": value})
    except (UnicodeEncodeError, ValueError):
        return
    result = retry_after(httpx.Response(503, headers=headers))
    assert result is None or 0.0 <= result <= 10 * 24 * 3600.0


def test_default_policies_shape() -> None:
    policy = default_policies("orders:8080")
    assert isinstance(policy, Pipeline)
    retry, breaker = policy.policies
    assert isinstance(retry, Retry)
    assert retry.name == "orders:8080"
    assert retry.attempts_max == 3
    assert isinstance(breaker, CircuitBreaker)


# --- retries -------------------------------------------------------------------------------


def test_503_retried_then_success(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/ok?fail=2"))
    assert r.status_code == 200
    assert r.text == "ok"
    assert client_server.hits("/ok") == 3
    assert len(client_clock.sleeps) == 2


def test_default_policies_retry_503(client_server: ScriptedServer) -> None:
    with httpx.Client(transport=SeawallTransport()) as http:
        r = http.get(client_server.url("/ok?fail=1"))
    assert r.status_code == 200
    assert client_server.hits("/ok") == 2


def test_gives_up_returning_the_last_503(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/fail"))
    assert r.status_code == 503
    assert r.text == "unavailable"
    assert client_server.hits() == 3


def test_retry_after_is_honoured(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/ok?fail=1&retry_after=7"))
    assert r.status_code == 200
    assert client_clock.sleeps == [7.0]


def test_retry_after_beyond_the_retry_timeout_gives_up(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/ok?fail=1&retry_after=3600"))
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3600"
    assert client_server.hits() == 1
    assert client_clock.sleeps == []


def test_overloaded_503_is_not_retried(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/ok?fail=1&overloaded=1"))
    assert r.status_code == 503
    assert client_server.hits() == 1


def test_connect_failure_retried_then_raised(
    client_closed_port: int, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http, pytest.raises(httpx.ConnectError) as info:
        http.get(f"http://127.0.0.1:{client_closed_port}/ok")
    assert len(client_clock.sleeps) == 2
    assert any("gave up after 3 attempts" in note for note in info.value.__notes__)


def test_disconnect_without_response_is_retried_for_get(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        r = http.get(client_server.url("/ok?fail=1&how=reset"))
    assert r.status_code == 200
    assert client_server.hits() == 2


# --- non-idempotent requests ------------------------------------------------------------


def test_post_not_retried_by_default(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        r = http.post(client_server.url("/fail"), content=b"order")
    assert r.status_code == 503
    assert client_server.hits() == 1
    assert client_server.requests[0].body == b"order"


def test_post_reset_not_retried(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    with client(retrying(client_clock)) as http, pytest.raises(httpx.RemoteProtocolError):
        http.post(client_server.url("/reset"), content=b"order")
    assert client_server.hits() == 1


@pytest.mark.parametrize(
    ("kwargs", "transport_kwargs"),
    [
        ({"extensions": {"seawall_retry": True}}, {}),
        ({"headers": {"Idempotency-Key": "k-1"}}, {}),
        ({}, {"retry_non_idempotent": True}),
    ],
    ids=["extension", "idempotency-key", "transport-option"],
)
def test_post_retried_when_allowed(
    client_server: ScriptedServer,
    client_clock: FakeClock,
    kwargs: dict[str, object],
    transport_kwargs: dict[str, object],
) -> None:
    with client(retrying(client_clock), **transport_kwargs) as http:
        r = http.post(client_server.url("/ok?fail=2"), content=b"order", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 200
    assert [s.body for s in client_server.requests] == [b"order"] * 3


def test_patch_not_retried_and_get_opt_out(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        assert http.patch(client_server.url("/fail"), content=b"x").status_code == 503
        assert client_server.hits() == 1
        r = http.get(client_server.url("/fail"), extensions={"seawall_retry": False})
        assert r.status_code == 503
        assert client_server.hits() == 2


def test_one_shot_body_never_retried(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    def body() -> Iterator[bytes]:
        yield b"par"
        yield b"ts"

    with client(retrying(client_clock), retry_non_idempotent=True) as http:
        r = http.put(client_server.url("/fail"), content=body(), extensions={"seawall_retry": True})
    assert r.status_code == 503
    assert client_server.hits() == 1
    assert client_server.requests[0].body == b"parts"


def test_bad_retry_extension_is_rejected(client_server: ScriptedServer) -> None:
    with client(default_policies) as http, pytest.raises(ValueError, match="seawall_retry"):
        http.get(client_server.url("/ok"), extensions={"seawall_retry": "yes"})
    assert client_server.hits() == 0


# --- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_and_rejects_without_reaching_the_server(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    breaker = small_breaker("backend")
    with client(lambda host: Pipeline(breaker)) as http:
        for _ in range(4):
            assert http.get(client_server.url("/fail")).status_code == 503
        with pytest.raises(CircuitOpenError) as info:
            http.get(client_server.url("/fail"))
    assert client_server.hits() == 4
    assert info.value.name == "backend"


def test_breaker_opened_by_5xx_rejects_on_a_real_clock(client_server: ScriptedServer) -> None:
    breaker = small_breaker("backend", clock=time.monotonic)
    with client(lambda host: Pipeline(breaker)) as http:
        for _ in range(4):
            http.get(client_server.url("/fail"))
        with pytest.raises(CircuitOpenError):
            http.get(client_server.url("/fail"))


def test_post_counts_in_the_same_breaker(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    breaker = small_breaker("backend")
    with client(lambda host: Pipeline(quick_retry(client_clock), breaker)) as http:
        for _ in range(4):
            assert http.post(client_server.url("/fail"), content=b"x").status_code == 503
        assert client_server.hits() == 4  # not retried
        with pytest.raises(CircuitOpenError):
            http.get(client_server.url("/ok"))
    assert client_server.hits() == 4


def test_open_breaker_rejection_is_not_retried_by_the_default_classification(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    breaker = small_breaker("backend")
    breaker.transition_to_forced_open()
    with client(lambda host: Pipeline(quick_retry(client_clock), breaker)) as http:
        with pytest.raises(CircuitOpenError):
            http.get(client_server.url("/ok"))
    assert client_server.hits() == 0
    assert client_clock.sleeps == []


def test_policies_built_once_per_host(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    other = ScriptedServer()
    other.start()
    built: list[str] = []

    def policies(host: str) -> Policy:
        built.append(host)
        return Pipeline(quick_retry(client_clock))

    try:
        transport = SeawallTransport(policies=policies)
        with httpx.Client(transport=transport) as http:
            threads = [
                threading.Thread(target=http.get, args=(client_server.url("/ok"),))
                for _ in range(8)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            http.get(other.url("/ok"))
            http.get(client_server.url("/ok"))
        assert sorted(built) == sorted([client_server.host, other.host])
        assert transport.policy_for(client_server.host) is transport.policy_for(client_server.host)
    finally:
        other.close()


def test_invalid_options_and_factory_results() -> None:
    with pytest.raises(ValueError, match="policies"):
        SeawallTransport(policies="retry")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_non_idempotent"):
        SeawallTransport(retry_non_idempotent="no")  # type: ignore[arg-type]
    transport = SeawallTransport(policies=lambda host: "nope")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="must return a seawall Policy"):
        transport.policy_for("a:1")


# --- deadlines ----------------------------------------------------------------------------


def test_deadline_header_and_timeouts_reduced(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    inner = Recording()
    transport = SeawallTransport(inner, policies=lambda host: Pipeline(), clock=client_clock)
    with httpx.Client(transport=transport, timeout=httpx.Timeout(5.0, read=1.0)) as http:
        with deadline_scope(2.5, clock=client_clock):
            http.get(client_server.url("/ok"))
        http.get(client_server.url("/ok"))
    first, second = client_server.requests
    assert first.headers["x-seawall-deadline-ms"] == "2500"
    assert inner.sent[0].extensions["timeout"] == {
        "connect": 2.5,
        "read": 1.0,
        "write": 2.5,
        "pool": 2.5,
    }
    assert "x-seawall-deadline-ms" not in second.headers
    assert inner.sent[1].extensions["timeout"] == {
        "connect": 5.0,
        "read": 1.0,
        "write": 5.0,
        "pool": 5.0,
    }


def test_deadline_header_follows_each_attempt(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock), clock=client_clock) as http:
        with deadline_scope(9.0, clock=client_clock):
            http.get(client_server.url("/ok?fail=1&retry_after=2"))
    values = [s.headers["x-seawall-deadline-ms"] for s in client_server.requests]
    assert values == ["9000", "7000"]


def test_timeout_policy_inside_the_pipeline_sets_the_header(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    policies = lambda host: Pipeline(Timeout(1.5, clock=client_clock))  # noqa: E731
    with client(policies, clock=client_clock) as http:
        http.get(client_server.url("/ok"))
    assert client_server.requests[0].headers["x-seawall-deadline-ms"] == "1500"


def test_expired_deadline_is_not_sent(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(default_policies, clock=client_clock) as http:
        with deadline_scope(0.0, clock=client_clock), pytest.raises(DeadlineExceeded):
            http.get(client_server.url("/ok"))
    assert client_server.hits() == 0


def test_deadline_bounds_the_socket_wait(client_server: ScriptedServer) -> None:
    with client(lambda host: Pipeline()) as http:
        start = time.monotonic()
        with deadline_scope(0.3), pytest.raises(httpx.ReadTimeout):
            http.get(client_server.url("/hang"))
        assert time.monotonic() - start < 2.0


def test_deadline_without_a_client_timeout(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    inner = Recording()
    with SeawallTransport(inner, policies=lambda host: Pipeline(), clock=client_clock) as t:
        with deadline_scope(3.0, clock=client_clock):
            r = t.handle_request(httpx.Request("GET", client_server.url("/ok")))
            r.read()
    assert inner.sent[0].extensions["timeout"] == dict.fromkeys(
        ("connect", "read", "write", "pool"), 3.0
    )


# --- trace context, correlation id, attempt number ----------------------------------------


def test_traceparent_is_a_child_of_the_context_trace(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    parent = TraceParent.new()
    state = TraceState.parse("vendor=1,other=x")
    with client(retrying(client_clock)) as http, trace_scope(parent, state):
        r = http.get(client_server.url("/echo"))
    echoed = json.loads(r.text)
    sent = TraceParent.parse(echoed["traceparent"])
    assert sent is not None
    assert sent.trace_id == parent.trace_id
    assert sent.parent_id != parent.parent_id
    assert echoed["tracestate"] == "vendor=1,other=x"


def test_new_trace_when_none_shared_by_attempts(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        http.get(client_server.url("/ok?fail=2"))
    parsed = [TraceParent.parse(s.headers["traceparent"]) for s in client_server.requests]
    assert all(p is not None for p in parsed)
    assert len({p.trace_id for p in parsed if p}) == 1
    assert len({p.parent_id for p in parsed if p}) == 3
    assert "tracestate" not in client_server.requests[0].headers


def test_callers_traceparent_is_continued_and_invalid_one_replaced(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    given_tp = TraceParent.new()
    with client(retrying(client_clock)) as http:
        request = http.build_request(
            "GET",
            client_server.url("/ok"),
            headers={"traceparent": given_tp.format(), "tracestate": "mine=1"},
        )
        http.send(request)
        http.get(
            client_server.url("/echo"),
            headers={"traceparent": "garbage", "tracestate": "mine=1"},
        )
    continued = TraceParent.parse(client_server.requests[0].headers["traceparent"])
    assert continued is not None
    assert continued.trace_id == given_tp.trace_id
    assert continued.parent_id != given_tp.parent_id
    assert client_server.requests[0].headers["tracestate"] == "mine=1"
    assert request.headers["traceparent"] == given_tp.format()  # caller's request untouched
    assert "x-seawall-attempt" not in request.headers
    replaced = client_server.requests[1].headers
    assert TraceParent.parse(replaced["traceparent"]) is not None
    assert "tracestate" not in replaced


def test_request_id_forwarded_created_and_caller_wins(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with client(retrying(client_clock)) as http:
        with request_id_scope("rid-context"):
            http.get(client_server.url("/a/ok"))
            http.get(client_server.url("/a/ok"), headers={"x-request-id": "rid-caller"})
        http.get(client_server.url("/ok?fail=1"))
    ids = [s.headers["x-request-id"] for s in client_server.requests]
    assert ids[:2] == ["rid-context", "rid-caller"]
    assert ids[2] == ids[3]
    assert len(ids[2]) == 32
    assert int(ids[2], 16) >= 0


def test_attempt_header_increments(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    with client(retrying(client_clock)) as http:
        http.get(client_server.url("/ok?fail=2"))
    assert [s.headers["x-seawall-attempt"] for s in client_server.requests] == ["1", "2", "3"]


# --- responses: released, intact, streaming ------------------------------------------------


@pytest.mark.parametrize("how", ["503", "big"])
def test_retried_responses_release_their_connection(
    client_server: ScriptedServer, client_clock: FakeClock, how: str
) -> None:
    limits = httpx.Limits(max_connections=1)
    with client(retrying(client_clock), limits=limits) as http:
        for i in range(15):
            r = http.get(client_server.url(f"/ok/{i}?fail=2&how={how}"))
            assert r.status_code == 200
    assert client_server.hits() == 45


def test_failure_connection_released_before_the_retry_sleeps(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    during_sleep: list[int] = []

    def sleep(seconds: float) -> None:
        # The pool has one connection: this only works if the 503's was released.
        r = http.get(client_server.url("/ok/side"), timeout=httpx.Timeout(5.0, pool=0.2))
        during_sleep.append(r.status_code)

    retry = Retry(
        on=is_retryable_error, on_result=is_retryable_response, clock=client_clock, sleep=sleep
    )
    with client(lambda host: retry, limits=httpx.Limits(max_connections=1)) as http:
        assert http.get(client_server.url("/ok?fail=2")).status_code == 200
    assert during_sleep == [200, 200]


def test_final_failure_is_intact_and_the_pool_still_works(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    limits = httpx.Limits(max_connections=1)
    with client(retrying(client_clock), limits=limits) as http:
        for path in ("/ok/a?fail=9&how=big", "/ok/b?fail=9"):
            r = http.get(client_server.url(path))
            assert r.status_code == 503
        assert http.get(client_server.url("/ok/c?fail=9&how=big")).content == (b"x" * BIG_BODY_SIZE)
        with http.stream("GET", client_server.url("/ok/d?fail=9&how=big")) as streamed:
            assert b"".join(streamed.iter_bytes()) == b"x" * BIG_BODY_SIZE
        assert http.get(client_server.url("/ok")).text == "ok"
    assert client_server.hits() == 13


def test_streaming_response_streams(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    with client(retrying(client_clock)) as http:
        with http.stream("GET", client_server.url("/stream?fail=1")) as r:
            chunks = r.iter_bytes()
            assert next(chunks) == b"chunk-1\n"  # before the server sent the rest
            client_server.stream_gate.set()
            assert b"".join(chunks) == b"chunk-2\n"
    assert client_server.gate_was_set is True
    assert client_server.hits() == 2


# --- asyncio ---------------------------------------------------------------------------------


def test_async_retries_and_headers(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    async def main() -> httpx.Response:
        async with aclient(retrying(client_clock)) as http:
            return await http.get(client_server.url("/ok?fail=2&retry_after=1"))

    r = asyncio.run(main())
    assert r.status_code == 200
    assert client_clock.sleeps == [1.0, 1.0]
    assert [s.headers["x-seawall-attempt"] for s in client_server.requests] == ["1", "2", "3"]


def test_async_post_not_retried_unless_allowed(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    async def main() -> None:
        async with aclient(retrying(client_clock)) as http:
            assert (await http.post(client_server.url("/fail"), content=b"x")).status_code == 503
            assert client_server.hits() == 1
            r = await http.post(
                client_server.url("/ok?fail=1"),
                content=b"x",
                headers={"Idempotency-Key": "abc"},
            )
            assert r.status_code == 200
            assert client_server.hits() == 3

    asyncio.run(main())


def test_async_connect_failure(client_closed_port: int, client_clock: FakeClock) -> None:
    async def main() -> None:
        async with aclient(retrying(client_clock)) as http:
            await http.get(f"http://127.0.0.1:{client_closed_port}/")

    with pytest.raises(httpx.ConnectError):
        asyncio.run(main())
    assert len(client_clock.sleeps) == 2


def test_async_breaker_and_deadline(client_server: ScriptedServer, client_clock: FakeClock) -> None:
    breaker = small_breaker("backend")

    async def main() -> None:
        async with aclient(lambda host: Pipeline(breaker), clock=client_clock) as http:
            for _ in range(4):
                await http.get(client_server.url("/fail"))
            with pytest.raises(CircuitOpenError):
                await http.get(client_server.url("/fail"))
            async with deadline_scope(0.0, clock=client_clock):
                with pytest.raises(DeadlineExceeded):
                    await http.get(client_server.url("/ok"))

    asyncio.run(main())
    assert client_server.hits() == 4


def test_async_trace_and_deadline_headers(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    parent = TraceParent.new()

    async def main() -> None:
        async with aclient(retrying(client_clock), clock=client_clock) as http:
            with trace_scope(parent), request_id_scope("rid-async"):
                async with deadline_scope(4.0, clock=client_clock):
                    await http.get(client_server.url("/ok"))

    asyncio.run(main())
    headers = client_server.requests[0].headers
    sent = TraceParent.parse(headers["traceparent"])
    assert sent is not None
    assert sent.trace_id == parent.trace_id
    assert headers["x-request-id"] == "rid-async"
    assert headers["x-seawall-deadline-ms"] == "4000"


def test_async_pool_of_one_and_streaming(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    async def main() -> None:
        limits = httpx.Limits(max_connections=1)
        async with aclient(retrying(client_clock), limits=limits) as http:
            for i in range(10):
                how = "big" if i % 2 else "503"
                r = await http.get(client_server.url(f"/ok/{i}?fail=2&how={how}"))
                assert r.status_code == 200
            r = await http.get(client_server.url("/ok/x?fail=9&how=big"))
            assert len(r.content) == BIG_BODY_SIZE
            async with http.stream("GET", client_server.url("/stream?fail=1")) as streamed:
                chunks: AsyncIterator[bytes] = streamed.aiter_bytes()
                assert await chunks.__anext__() == b"chunk-1\n"
                client_server.stream_gate.set()
                assert b"".join([c async for c in chunks]) == b"chunk-2\n"

    asyncio.run(main())
    assert client_server.gate_was_set is True


def test_async_hedge_for_get_but_not_for_post(client_server: ScriptedServer) -> None:
    hedge = Hedge(delay=0.02)

    async def main() -> None:
        async with aclient(lambda host: Pipeline(hedge)) as http:
            r = await http.get(client_server.url("/ok?fail=1&how=hang"))
            assert r.text == "ok"
            attempts = sorted(s.headers["x-seawall-attempt"] for s in client_server.requests)
            assert attempts == ["1", "2"]
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    client_server.url("/ok/post?fail=1&how=hang"),
                    content=b"x",
                    timeout=httpx.Timeout(5.0, read=0.2),
                )
            assert client_server.hits("/ok/post") == 1

    asyncio.run(main())


def test_sync_hedge_loser_is_closed_when_it_answers_late(client_server: ScriptedServer) -> None:
    hedge = Hedge(delay=0.02)
    inner = Recording()
    transport = SeawallTransport(inner, policies=lambda host: Pipeline(hedge))
    with httpx.Client(transport=transport) as http:
        r = http.get(client_server.url("/ok?fail=1&how=hang"))
        assert r.text == "ok"
        client_server.stop.set()  # the first attempt now gets its late answer...
        hedge.close(wait=True)  # ...in the hedge's pool thread, after the call returned
    losers = [resp for resp in inner.responses if resp is not r]
    assert len(losers) == 1
    assert losers[0].is_closed
