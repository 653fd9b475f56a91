"""seawall.client.requests: a real requests Session against the real, scripted server.

The adapter shares its code with the httpx transports (seawall.client._call);
these tests check what it does through requests: retries, replay safety,
headers, deadlines, the breaker, and connections released. Retries sleep on a
FakeClock.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from scripted_server import ScriptedServer
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from seawall.client.requests import (
    SeawallAdapter,
    default_policies,
    is_failure_response,
    is_retryable_error,
    is_retryable_response,
    retry_after,
)
from seawall.policy._policy import Policy
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.clock import FakeClock
from seawall.policy.deadline import deadline_scope
from seawall.policy.errors import CircuitOpenError, DeadlineExceeded
from seawall.policy.pipeline import Pipeline
from seawall.policy.retry import Retry
from seawall.telemetry.tracecontext import TraceParent, request_id_scope, trace_scope


def quick_retry(clock: FakeClock, attempts: int = 3) -> Retry:
    return Retry(
        on=is_retryable_error,
        on_result=is_retryable_response,
        retry_after_from_result=retry_after,
        attempts=attempts,
        clock=clock,
        sleep=clock.sleep,
    )


def session(policies: Callable[[str], Policy], **kwargs: Any) -> requests.Session:
    s = requests.Session()
    adapter = SeawallAdapter(policies=policies, **kwargs)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


@pytest.fixture
def retrying(client_clock: FakeClock) -> Iterator[requests.Session]:
    with session(lambda host: Pipeline(quick_retry(client_clock))) as s:
        yield s


def response(status: int, **headers: str) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return r


# --- classification ----------------------------------------------------------------------


def test_classification_of_responses() -> None:
    assert is_failure_response(response(500))
    assert not is_failure_response(response(404))
    assert is_retryable_response(response(503))
    assert not is_retryable_response(response(503, x_seawall_overloaded="1"))
    assert not is_retryable_response(response(429))
    assert retry_after(response(503, retry_after="7")) == 7.0
    assert retry_after(response(503, retry_after="soon")) is None
    assert retry_after(response(503)) is None


def test_classification_of_errors() -> None:
    refused = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert is_retryable_error(requests.ConnectionError(MaxRetryError(None, "/", refused)))  # type: ignore[arg-type]
    assert is_retryable_error(requests.exceptions.ConnectTimeout())
    gone = ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))
    assert is_retryable_error(requests.ConnectionError(gone))
    reset = ProtocolError("Connection aborted.", ConnectionResetError("reset"))
    assert not is_retryable_error(requests.ConnectionError(reset))
    assert not is_retryable_error(requests.exceptions.ReadTimeout())
    assert not is_retryable_error(requests.ConnectionError())
    assert not is_retryable_error(ValueError())


def test_default_policies_are_a_retry_around_a_breaker() -> None:
    pipeline = default_policies("orders:8080")
    assert isinstance(pipeline, Pipeline)
    retry, breaker = pipeline.policies
    assert isinstance(retry, Retry)
    assert retry.name == "orders:8080"
    assert retry.attempts_max == 3
    assert isinstance(breaker, CircuitBreaker)
    assert breaker.name == "orders:8080"


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="policies"):
        SeawallAdapter(policies="nope")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retry_non_idempotent"):
        SeawallAdapter(retry_non_idempotent=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="clock"):
        SeawallAdapter(clock=3.0)  # type: ignore[arg-type]


# --- retries -------------------------------------------------------------------------------------


def test_a_503_is_retried_honouring_retry_after(
    client_server: ScriptedServer, client_clock: FakeClock, retrying: requests.Session
) -> None:
    r = retrying.get(client_server.url("/ok/x?fail=2&retry_after=2"), timeout=5)
    assert (r.status_code, r.text) == (200, "ok")
    assert client_clock.sleeps == [2.0, 2.0]
    seen = client_server.seen("/ok/x")
    assert [s.headers["x-seawall-attempt"] for s in seen] == ["1", "2", "3"]
    assert len({s.headers["x-request-id"] for s in seen}) == 1
    parents = [TraceParent.parse(s.headers["traceparent"]) for s in seen]
    assert len({p.trace_id for p in parents if p}) == 1
    assert len({p.parent_id for p in parents if p}) == 3


def test_the_last_failure_is_returned_readable(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    r = retrying.get(client_server.url("/fail"), timeout=5)
    assert (r.status_code, r.text) == (503, "unavailable")
    assert client_server.hits("/fail") == 3


def test_connect_failures_are_retried_then_raised_with_a_note(
    client_closed_port: int, client_clock: FakeClock, retrying: requests.Session
) -> None:
    with pytest.raises(requests.ConnectionError) as caught:
        retrying.get(f"http://127.0.0.1:{client_closed_port}/", timeout=5)
    assert len(client_clock.sleeps) == 2
    assert any("gave up after 3 attempts" in note for note in caught.value.__notes__)


def test_a_connection_closed_without_a_response_is_retried(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    assert retrying.get(client_server.url("/ok/y?fail=1&how=reset"), timeout=5).status_code == 200
    assert client_server.hits("/ok/y") == 2


def test_an_overloaded_503_is_not_retried(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    r = retrying.get(client_server.url("/ok/z?fail=1&overloaded=1"), timeout=5)
    assert r.status_code == 503
    assert client_server.hits("/ok/z") == 1


def test_non_idempotent_requests_are_sent_once_unless_allowed(
    client_server: ScriptedServer, client_clock: FakeClock, retrying: requests.Session
) -> None:
    assert retrying.post(client_server.url("/fail"), data=b"x", timeout=5).status_code == 503
    assert client_server.hits("/fail") == 1
    keyed = retrying.post(
        client_server.url("/ok/k?fail=1"), data=b"x", headers={"Idempotency-Key": "k1"}, timeout=5
    )
    assert keyed.status_code == 200
    assert [s.body for s in client_server.seen("/ok/k")] == [b"x", b"x"]
    with session(lambda host: Pipeline(quick_retry(client_clock)), retry_non_idempotent=True) as s:
        assert s.patch(client_server.url("/ok/p?fail=1"), data=b"y", timeout=5).status_code == 200
    assert client_server.hits("/ok/p") == 2


def test_a_streamed_body_is_never_sent_twice(
    client_server: ScriptedServer, client_clock: FakeClock
) -> None:
    with session(lambda host: Pipeline(quick_retry(client_clock)), retry_non_idempotent=True) as s:
        r = s.put(client_server.url("/fail"), data=iter([b"a", b"b"]), timeout=5)
    assert r.status_code == 503
    assert [x.body for x in client_server.seen("/fail")] == [b"ab"]


# --- headers and deadlines ---------------------------------------------------------------------


def test_the_mesh_headers_follow_the_context(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    parent = TraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parent is not None
    with trace_scope(parent), request_id_scope("rid-7"):
        retrying.get(client_server.url("/echo"), timeout=5)
    seen = client_server.seen("/echo")[0].headers
    sent = TraceParent.parse(seen["traceparent"])
    assert sent is not None
    assert sent.trace_id == parent.trace_id
    assert sent.parent_id != parent.parent_id
    assert seen["x-request-id"] == "rid-7"
    assert seen["x-seawall-attempt"] == "1"
    assert "x-seawall-deadline-ms" not in seen
    assert "tracestate" not in seen


def test_the_deadline_is_sent_and_cuts_the_timeouts(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    with deadline_scope(5.0):
        retrying.get(client_server.url("/ok"), timeout=30)
    assert 4000 < int(client_server.seen("/ok")[0].headers["x-seawall-deadline-ms"]) <= 5000
    start = time.monotonic()
    with deadline_scope(0.3), pytest.raises(requests.exceptions.ReadTimeout):
        retrying.get(client_server.url("/hang"), timeout=30)
    assert time.monotonic() - start < 3.0


def test_an_expired_deadline_sends_nothing(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    with deadline_scope(0.0), pytest.raises(DeadlineExceeded):
        retrying.get(client_server.url("/ok"), timeout=5)
    assert client_server.hits() == 0


# --- the breaker, connections, streaming --------------------------------------------------------


def test_the_breaker_opens_and_refuses(client_server: ScriptedServer) -> None:
    breaker = CircuitBreaker(
        "b", window_size=2, minimum_calls=2, failure_on_result=is_failure_response
    )
    with session(lambda host: breaker) as s:
        s.get(client_server.url("/fail"), timeout=5)
        s.get(client_server.url("/fail"), timeout=5)
        with pytest.raises(CircuitOpenError):
            s.get(client_server.url("/ok"), timeout=5)
    assert client_server.hits("/ok") == 0


def test_policies_are_asked_once_per_host(client_server: ScriptedServer) -> None:
    asked: list[str] = []

    def policies(host: str) -> Policy:
        asked.append(host)
        return Pipeline()

    adapter = SeawallAdapter(policies=policies)
    with requests.Session() as s:
        s.mount("http://", adapter)
        for _ in range(3):
            s.get(client_server.url("/ok"), timeout=5)
        s.get(f"http://localhost:{client_server.port}/ok", timeout=5)
    assert asked == [client_server.host, f"localhost:{client_server.port}"]
    assert adapter.policy_for(client_server.host) is adapter.policy_for(client_server.host)


@pytest.mark.parametrize("how", ["503", "big"])
def test_a_pool_of_one_connection_survives_retries(
    client_server: ScriptedServer, client_clock: FakeClock, how: str
) -> None:
    with session(
        lambda host: Pipeline(quick_retry(client_clock, attempts=4)),
        pool_connections=1,
        pool_maxsize=1,
        pool_block=True,
    ) as s:
        r = s.get(client_server.url(f"/ok/{how}?fail=3&how={how}"), timeout=5)
        assert r.status_code == 200
        assert s.get(client_server.url("/ok"), timeout=5).status_code == 200


def test_a_streamed_response_streams(
    client_server: ScriptedServer, retrying: requests.Session
) -> None:
    r = retrying.get(client_server.url("/stream"), stream=True, timeout=5)
    chunks = r.iter_content(chunk_size=None)
    assert next(chunks) == b"chunk-1\n"
    client_server.stream_gate.set()
    assert b"".join(chunks) == b"chunk-2\n"
    assert client_server.gate_was_set is True
