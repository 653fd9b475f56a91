#!/usr/bin/env python3
"""Write the seed corpus of the fuzz targets: fuzz/seeds/<target>/<name>.

Run from anywhere (standard library only): ``python3 fuzz/seeds/generate.py``.
It rewrites every seed; the output is checked in, so the fuzzers start from
the same corpus everywhere. The seeds come from the tests:

* request_head: requests from the codec's conformance corpus
  (crates/seawall-h1/tests/corpus/requests.txt, the Python codec's verdicts),
  and requests carrying what the mesh acts on (its own fields, hop-by-hop
  fields, upgrades, absolute-form targets, the routes and rules of
  fuzz/data/request-spec.json);
* trace_context: the traceparent and tracestate cases shared with the Python
  tests (crates/seawall-trace/tests/cases.json), one traceparent line then
  tracestate lines;
* spec_json: fuzz/data/request-spec.json and the shop's gateway spec
  (crates/seawall-proxy/tests/data/spec-gateway.json) with variations of
  each section;
* response_head: response heads from the codec's tests and the sidecar's
  upstream-framing tests (tests/proxy/test_sidecar_upstream_framing.py);
* otlp_decode: OTLP trace exports as protobuf (written here by a small
  protobuf writer, field numbers as in opentelemetry-proto) and as JSON, from
  the codec's tests (crates/seawall-otlp/tests/codec.rs): every value type,
  events, links, partial success, unknown fields, fields out of order.
"""

from __future__ import annotations

import copy
import json
import shutil
import struct
from pathlib import Path
from urllib.parse import unquote_to_bytes

FUZZ = Path(__file__).resolve().parent.parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"


def write(target: str, seeds: dict[str, bytes]) -> None:
    out = SEEDS / target
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name, data in seeds.items():
        (out / name).write_bytes(data)
    print(f"{target}: {len(seeds)} seeds")


# ---------------------------------------------------------------- request_head


def conformance_requests() -> dict[str, bytes]:
    """A spread of the codec's conformance inputs: accepted and refused, one per shape."""
    picked: dict[str, bytes] = {}
    seen: set[str] = set()
    lines = (ROOT / "crates/seawall-h1/tests/corpus/requests.txt").read_text().splitlines()
    for line in lines:
        limits, raw, verdict, *_ = line.split("|")
        if limits != "-":
            continue
        data = unquote_to_bytes(raw) if raw != "%" else b""
        # one seed per verdict and first line shape
        first = data.split(b"\r\n", 1)[0][:12]
        key = f"{verdict[:5]}|{first!r}"
        if key in seen:
            continue
        seen.add(key)
        kind = "ok" if verdict.startswith("R") else "refused"
        picked[f"conformance-{kind}-{len(picked):02d}"] = data
        if len(picked) == 30:
            break
    return picked


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

MESH_REQUESTS = {
    "get-orders-by-host": request("GET /orders/12?x=1 HTTP/1.1\nHost: orders:8002\nAccept: */*\n"),
    "mesh-fields": request(
        "GET /orders/7 HTTP/1.1\nHost: orders\n"
        f"traceparent: {TP}\ntracestate: rojo=00f067aa0ba902b7,congo=t61rcWkgMzE\n"
        "x-request-id: abc-123\nx-seawall-deadline-ms: 250\nx-seawall-attempt: 3\n"
        "x-seawall-peer: spiffe://fuzz.local/ns/default/sa/admin\n"
    ),
    "two-traceparents": request(
        f"GET / HTTP/1.1\nHost: orders\ntraceparent: {TP}\ntraceparent: {TP}\ntracestate: a=1\n"
    ),
    "deadline-odd": request(
        "GET / HTTP/1.1\nHost: orders\nx-seawall-deadline-ms:  0 \nx-seawall-deadline-ms: 999999999\n"
    ),
    "hop-by-hop": request(
        "GET /public/x HTTP/1.1\nHost: orders\nConnection: keep-alive, x-secret, Content-Length, Host\n"
        "Keep-Alive: timeout=5\nTE: trailers\nTrailer: x-t\nProxy-Authorization: Basic eA==\n"
        "x-secret: 1\nx-kept: 2\nX-Kept: 3\n"
    ),
    "forwarded-for": request(
        "GET / HTTP/1.1\nHost: payments\nX-Forwarded-For: 10.0.0.1\nx-forwarded-for: 10.0.0.2, 10.0.0.3\nVia: 1.1 edge\n"
    ),
    "upgrade-websocket": request(
        "GET /chat HTTP/1.1\nHost: orders\nConnection: Upgrade\nUpgrade: websocket\nSec-WebSocket-Version: 13\n"
    ),
    "upgrade-h2c": request(
        "GET /chat HTTP/1.1\nHost: orders\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c, websocket\n"
        "HTTP2-Settings: AAMAAABkAAQAAP__\n"
    ),
    "upgrade-refused": request("GET /orders/flat HTTP/1.1\nHost: orders\nConnection: upgrade\nUpgrade: echo/3\n"),
    "absolute-form": request(
        "GET http://Payments.svc:080/refunds/../charge?q=%61 HTTP/1.1\nHost: elsewhere\n"
    ),
    "http10-keep-alive": request("GET /health HTTP/1.0\nConnection: keep-alive\n"),
    "http10-no-host": request("GET /health HTTP/1.0\n"),
    "post-length": request(
        "POST /charge HTTP/1.1\nHost: payments\nAuthorization: Bearer abc.def\nContent-Length: 5\n"
        "Idempotency-Key: k1\n",
        b"hello",
    ),
    "post-chunked-expect": request(
        "POST /orders HTTP/1.1\nHost: orders\nTransfer-Encoding: chunked\nExpect: 100-continue\n",
        b"5\r\nhello\r\n0\r\n\r\n",
    ),
    "put-empty": request("PUT /orders/1 HTTP/1.1\nHost: orders\n"),
    "patch-empty": request("PATCH /orders/1 HTTP/1.1\nHost: orders\n"),
    "inbound-items-canary": request("GET /orders/12/items HTTP/1.1\nHost: orders\nx-canary: 1\n"),
    "inbound-admin-dotdot": request("GET /orders/x/..%2Fadmin HTTP/1.1\nHost: orders\n"),
    "fault-headers": request(
        "GET /fault HTTP/1.1\nHost: orders\nx-seawall-fault-delay-ms: 5\nx-seawall-fault-abort: 418\n"
    ),
    "options-asterisk": request("OPTIONS * HTTP/1.1\nHost: [::1]:8080\n"),
    "refunds-debug": request("DELETE /refunds/9 HTTP/1.1\nHost: payments\nx-debug: on\n"),
    "any-regex": request("GET /any/THING HTTP/1.1\nHost: payments\n"),
    "dot-segments": request("GET /%7euser/./a/%2f/../b//c HTTP/1.1\nHost: O:080\nX-A: 1\nx-a: 2 \n"),
    "webdav-method": request("PROPFIND /orders/1 HTTP/1.1\nHost: orders\nDepth: 1\n"),
    "empty-lines-first": b"\r\n\r\n" + request("GET /orders HTTP/1.1\nHost: orders\n"),
}


# --------------------------------------------------------------- trace_context


def trace_seeds() -> dict[str, bytes]:
    cases = json.loads((ROOT / "crates/seawall-trace/tests/cases.json").read_text())
    parents = [c["input"] for c in cases["traceparent"]]
    states = [c["input"] for c in cases["tracestate"]]
    seeds: dict[str, bytes] = {}

    def text(value: str | list[str]) -> list[str]:
        return value if isinstance(value, list) else [value]

    for i in range(0, len(parents), 3):
        state = states[(i * 7) % len(states)]
        lines = [parents[i], *text(state)]
        seeds[f"cases-{i:02d}"] = "\n".join(lines).encode()
    for case in cases["continue_trace"][:10]:
        parent = next((v for k, v in case["headers"] if k == "traceparent"), "")
        rest = [v for k, v in case["headers"] if k == "tracestate"]
        seeds[f"continue-{case['name']}"] = "\n".join([parent, *rest]).encode()
    seeds["long-state"] = "\n".join(
        [parents[0], ",".join(f"k{i}=v{i:0100d}" for i in range(12))]
    ).encode()
    seeds["higher-version"] = (
        b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever\nz=1\n"
    )
    return seeds


# ------------------------------------------------------------------- spec_json


def spec_seeds() -> dict[str, bytes]:
    fuzz_spec = json.loads((FUZZ / "data/request-spec.json").read_text())
    gateway = json.loads(
        (ROOT / "crates/seawall-proxy/tests/data/spec-gateway.json").read_text()
    )
    gateway["config"] = {}  # (served as it is by /config: never read)
    seeds = {"request-spec": fuzz_spec, "gateway": gateway}

    def variant(name: str, base: dict, edit) -> None:
        doc = copy.deepcopy(base)
        edit(doc)
        seeds[name] = doc

    def time_breaker(d: dict) -> None:
        d["destinations"][0]["breaker"] = dict(
            gateway["destinations"][1]["breaker"], window_size=0.5, slow_call_duration=0.1
        )

    def everything(d: dict) -> None:
        dest = d["destinations"][1]
        dest["budget"] = {"ratio": 0.5, "min_per_second": 1.0, "ttl": 0.25}
        dest["outlier"] = dict(gateway["destinations"][0]["outlier"])
        dest["load_balancer"] = "peak_ewma"
        dest["idle_timeout"] = 30.0
        dest["retry"]["backoff"] = {"jitter": "decorrelated", "base": 0.001, "max": 3.0}

    def strict_authz(d: dict) -> None:
        d["mtls"] = "strict"
        d["authorization"]["require_peer"] = True
        d["authorization"]["default_allow"] = True

    def regexes(d: dict) -> None:
        routes = d["destinations"][1]["routes"]
        for i, pattern in enumerate(
            [r"/a/(b|c)+/[^/]*", r"(?i)/x/\d{1,3}", r"/\w+\.json", r"/(?:v1|v2)/.*\z"]
        ):
            r = copy.deepcopy(routes[0])
            r["name"] = f"re{i}"
            r["match"] = {
                "path_prefix": None,
                "path_exact": None,
                "path_regex": pattern,
                "methods": [],
                "headers": [
                    {"name": "x-v", "exact": None, "regex": r"[0-9a-f]{2,}", "present": None}
                ],
            }
            routes.append(r)

    def endpoints(d: dict) -> None:
        d["destinations"][0]["endpoints"] = [
            {"address": "::1", "port": 1, "subset": None, "weight": 7},
            {"address": "example.internal", "port": 65535, "subset": "v1", "weight": 1},
        ]
        d["destinations"][0]["load_balancer"] = "least_request"

    variant("time-breaker", fuzz_spec, time_breaker)
    variant("every-policy", fuzz_spec, everything)
    variant("strict-authz", fuzz_spec, strict_authz)
    variant("regexes", fuzz_spec, regexes)
    variant("endpoints", fuzz_spec, endpoints)
    variant("no-authz", gateway, lambda d: d.update(authorization=None))
    variant("zero-durations", fuzz_spec, lambda d: d["limits"].update(idle_timeout=0, header_timeout=0))
    variant("max-durations", fuzz_spec, lambda d: d.update(drain_grace=31536000))
    out = {name: json.dumps(doc, separators=(",", ":")).encode() for name, doc in seeds.items()}
    # not JSON: edits to request-spec.json, three bytes each (fuzz/src/spec_json.rs)
    out["edits-a"] = bytes(range(0, 96))
    out["edits-b"] = bytes((i * 37 + 11) % 256 for i in range(120))
    out["edits-c"] = bytes((i * 101 + 7) % 256 for i in range(30))
    return out


# --------------------------------------------------------------- response_head


def response(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


RESPONSES = {
    "length": response("HTTP/1.1 200 OK\ncontent-length: 5\ncontent-type: text/plain\n", b"hello"),
    "chunked": response("HTTP/1.1 200 OK\ntransfer-encoding: chunked\n", b"5\r\nhello\r\n0\r\n\r\n"),
    "gzip-chunked": response("HTTP/1.1 200 OK\ntransfer-encoding: gzip, chunked\n"),
    "chunked-then-gzip": response("HTTP/1.1 200 OK\ntransfer-encoding: chunked, gzip\n"),
    "te-and-length": response("HTTP/1.1 200 OK\ncontent-length: 3\ntransfer-encoding: chunked\n"),
    "until-close": response("HTTP/1.1 200 OK\nx-a: 1\n", b"body until close"),
    "http10-keep-alive": response("HTTP/1.0 200 OK\nconnection: keep-alive\ncontent-length: 0\n"),
    "http10-close": response("HTTP/1.0 200 OK\n", b"x"),
    "close": response("HTTP/1.1 503 Service Unavailable\nconnection: close\ncontent-length: 0\n"),
    "no-content-with-length": response("HTTP/1.1 204 No Content\ncontent-length: 0\n"),
    "no-content": response("HTTP/1.1 204 No Content\nx-a: 1\n"),
    "not-modified-length": response("HTTP/1.1 304 Not Modified\ncontent-length: 9\netag: \"x\"\n"),
    "switching": response("HTTP/1.1 101 Switching Protocols\nupgrade: websocket\nconnection: upgrade\n"),
    "continue": response("HTTP/1.1 100 Continue\n"),
    "early-hints": response("HTTP/1.1 103 Early Hints\nlink: </a.css>; rel=preload\n"),
    "connection-listed": response(
        "HTTP/1.1 200 OK\nConnection: x-internal, Keep-Alive, content-length\nKeep-Alive: timeout=5\n"
        "x-internal: secret\ncontent-length: 2\n",
        b"ok",
    ),
    "proxy-and-trailer": response(
        "HTTP/1.1 200 OK\nproxy-authenticate: Basic\ntrailer: x-t\nte: trailers\nupgrade: h2c\n"
        "content-length: 0\n"
    ),
    "via-and-mesh": response(
        "HTTP/1.1 503 Service Unavailable\nvia: 1.1 seawall\nx-seawall-overloaded: 1\ncontent-length: 0\n"
    ),
    "same-length-twice": response("HTTP/1.1 200 OK\ncontent-length: 3\ncontent-length: 3\n", b"abc"),
    "length-list": response("HTTP/1.1 200 OK\ncontent-length: 3, 3\n", b"abc"),
    "two-lengths": response("HTTP/1.1 200 OK\ncontent-length: 3\ncontent-length: 4\n"),
    "negative-length": response("HTTP/1.1 200 OK\ncontent-length: -1\n"),
    "obs-fold": response("HTTP/1.1 200 OK\nx: a\n b\n"),
    "reason-with-tab": response("HTTP/1.1 299 Odd\tReason \nx: y\ncontent-length: 0\n"),
    "no-reason": response("HTTP/1.1 200 \ncontent-length: 0\n"),
    "status-999": response("HTTP/1.1 999 Whatever\ncontent-length: 0\n"),
    "lf-only": b"HTTP/1.1 200 OK\ncontent-length: 0\n\n",
    "many-fields": response(
        "HTTP/1.1 200 OK\n" + "".join(f"x-f{i}: {i}\n" for i in range(40)) + "content-length: 0\n"
    ),
    "set-cookies": response(
        "HTTP/1.1 302 Found\nlocation: /x\nset-cookie: a=1\nset-cookie: b=2\ncontent-length: 0\n"
    ),
}


# ----------------------------------------------------------------- otlp_decode
# Field numbers: opentelemetry-proto's trace_service.proto, trace.proto,
# common.proto, resource.proto (as crates/seawall-otlp/src/encode.rs has them).


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def pb_len(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def pb_varint(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def pb_fixed64(field: int, n: int) -> bytes:
    return _varint(field << 3 | 1) + struct.pack("<Q", n)


def pb_fixed32(field: int, n: int) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<I", n)


def pb_kv(key: str, value: bytes) -> bytes:
    """A KeyValue; ``value`` is the AnyValue message's bytes."""
    return pb_len(1, key.encode()) + pb_len(2, value)


def any_str(s: str) -> bytes:
    return pb_len(1, s.encode())


def any_double(x: float) -> bytes:
    return _varint(4 << 3 | 1) + struct.pack("<d", x)


EVERY_VALUE = b"".join(
    pb_len(9, kv)
    for kv in (
        pb_kv("http.request.method", any_str("GET")),
        pb_kv("ok", pb_varint(2, 1)),
        pb_kv("http.response.status_code", pb_varint(3, 503)),
        pb_kv("negative", pb_varint(3, -5)),
        pb_kv("ratio", any_double(0.25)),
        pb_kv("nan", any_double(float("nan"))),
        pb_kv("blob", pb_len(7, b"\x00\x01\xff")),
        pb_kv(
            "list", pb_len(5, pb_len(1, any_str("a")) + pb_len(1, pb_varint(3, 1)) + pb_len(1, b""))
        ),
        pb_kv("map", pb_len(6, pb_len(1, pb_kv("inner", any_str("x"))))),
        pb_kv("nothing", b""),
    )
)

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
SPAN = bytes.fromhex("00f067aa0ba902b7")
CHILD = bytes.fromhex("0102030405060708")


def pb_span(trace: bytes, span: bytes, *rest: bytes) -> bytes:
    return pb_len(1, trace) + pb_len(2, span) + b"".join(rest)


def pb_request(*resource_spans: tuple[list[bytes], list[bytes]]) -> bytes:
    """One ResourceSpans per (resource attributes, spans), one scope each."""
    out = b""
    for attributes, spans in resource_spans:
        resource = b"".join(pb_len(1, a) for a in attributes)
        scope = pb_len(1, b"seawall-sidecar") + pb_len(2, b"0.1.0")
        scope_spans = pb_len(1, scope) + b"".join(pb_len(2, s) for s in spans)
        out += pb_len(1, pb_len(1, resource) + pb_len(2, scope_spans))
    return out


SERVICE = [pb_kv("service.name", any_str("orders")), pb_kv("host.name", any_str("h1"))]
ROOT = pb_span(
    TRACE,
    SPAN,
    pb_len(3, b"vendor=a"),
    pb_len(5, b"GET /orders"),
    pb_varint(6, 2),
    pb_fixed64(7, 1_700_000_000_000_000_000),
    pb_fixed64(8, 1_700_000_000_250_000_000),
    EVERY_VALUE,
    pb_len(11, pb_fixed64(1, 1_700_000_000_100_000_000) + pb_len(2, b"retry")),
    pb_len(13, pb_len(1, b"\xab" * 16) + pb_len(2, b"\xcd" * 8) + pb_fixed32(6, 1)),
    pb_len(15, pb_len(2, b"upstream timed out") + pb_varint(3, 2)),
    pb_fixed32(16, 0x301),
)
CHILD_SPAN = pb_span(TRACE, CHILD, pb_len(4, SPAN), pb_len(5, b"SELECT"), pb_varint(6, 3))


def _json_span(trace: str, span: str, **fields: object) -> dict[str, object]:
    return {"traceId": trace, "spanId": span, **fields}


def _json_request(spans: list[dict[str, object]], service: str = "orders") -> bytes:
    body = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [
                    {"scope": {"name": "seawall-sidecar", "version": "0.1.0"}, "spans": spans}
                ],
            }
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode()


JSON_ATTRIBUTES = [
    {"key": "http.request.method", "value": {"stringValue": "GET"}},
    {"key": "ok", "value": {"boolValue": True}},
    {"key": "code", "value": {"intValue": "503"}},
    {"key": "n", "value": {"intValue": 7}},
    {"key": "ratio", "value": {"doubleValue": 0.25}},
    {"key": "nan", "value": {"doubleValue": "NaN"}},
    {"key": "blob", "value": {"bytesValue": "AAH/"}},
    {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {}]}}},
    {
        "key": "map",
        "value": {"kvlistValue": {"values": [{"key": "k", "value": {"boolValue": False}}]}},
    },
    {"key": "nothing", "value": {}},
]


def otlp_seeds() -> dict[str, bytes]:
    unknown = pb_varint(99, 7) + pb_fixed64(98, 1) + pb_len(97, b"zz") + pb_fixed32(96, 5)
    backwards = pb_fixed32(16, 1) + pb_len(5, b"late") + pb_len(2, CHILD) + pb_len(1, TRACE)
    partial = [
        pb_span(TRACE[:15], SPAN),
        pb_span(bytes(16), SPAN),
        pb_span(TRACE, bytes(8)),
        pb_span(TRACE, SPAN, pb_len(4, b"\x01\x02")),
        pb_span(TRACE, SPAN, pb_len(13, pb_len(1, TRACE) + pb_len(2, SPAN[:7]))),
        ROOT,
    ]
    nested = any_str("leaf")
    for _ in range(5):
        nested = pb_len(5, pb_len(1, nested))
    typical = _json_span(
        TRACE.hex(),
        SPAN.hex(),
        name="GET /orders",
        kind=2,
        flags=769,
        traceState="vendor=a",
        startTimeUnixNano="1700000000000000000",
        endTimeUnixNano="1700000000250000000",
        attributes=JSON_ATTRIBUTES,
        events=[{"timeUnixNano": "1700000000100000000", "name": "retry", "attributes": []}],
        links=[{"traceId": "ab" * 16, "spanId": "cd" * 8, "traceState": "k=v", "flags": 1}],
        status={"code": 2, "message": "upstream timed out"},
    )
    snake = {
        "trace_id": TRACE.hex().upper(),
        "span_id": CHILD.hex(),
        "parent_span_id": SPAN.hex(),
        "kind": "SPAN_KIND_CLIENT",
        "start_time_unix_nano": 1700000000000000000,
        "status": {"code": "STATUS_CODE_OK"},
        "attributes": [{"key": "n", "value": {"int_value": "-1"}}],
    }
    return {
        "pb-typical": pb_request((SERVICE, [ROOT, CHILD_SPAN])),
        "pb-two-resources": pb_request((SERVICE, [ROOT]), ([], [CHILD_SPAN])),
        "pb-unknown-fields": unknown + pb_request(([SERVICE[0] + unknown], [CHILD_SPAN + unknown])),
        "pb-backwards": pb_request(([], [backwards])),
        "pb-partial": pb_request((SERVICE, partial)),
        "pb-nested": pb_request(([pb_kv("deep", nested)], [CHILD_SPAN])),
        "pb-empty": b"",
        "json-typical": _json_request(
            [typical, _json_span(TRACE.hex(), CHILD.hex(), parentSpanId=SPAN.hex())]
        ),
        "json-snake-case": _json_request([snake], service="payments"),
        "json-partial": _json_request(
            [_json_span(TRACE.hex()[:30], SPAN.hex()), _json_span("00" * 16, SPAN.hex()), typical]
        ),
        "json-empty": b"{}",
    }


def main() -> None:
    write("request_head", {**conformance_requests(), **MESH_REQUESTS})
    write("trace_context", trace_seeds())
    write("spec_json", spec_seeds())
    write("response_head", RESPONSES)
    write("otlp_decode", otlp_seeds())


if __name__ == "__main__":
    main()
