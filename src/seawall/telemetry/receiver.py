"""The OTLP/HTTP traces receiver, sans-I/O: one ``POST /v1/traces`` body in, rows out.

What the OTLP specification (opentelemetry-proto, ``docs/specification.md``,
"OTLP/HTTP") asks of a server, and what this does:

- the body is ``application/x-protobuf`` or ``application/json`` (parameters
  such as ``charset`` ignored); another type gets **415**;
- ``Content-Encoding: gzip`` is decompressed (``identity`` or none: as is);
  another encoding gets **415**;
- a body over ``max_body`` bytes, before or after decompression, gets **413**
  (a small gzip bomb does not get past the limit);
- a body that does not decode gets **400** with a ``google.rpc.Status``
  (``code`` 3, INVALID_ARGUMENT) whose message says what is wrong and where,
  in the request's own encoding, and is never retried by a conforming client;
- spans that decode but are invalid (an all-zero or wrong-length id) are
  rejected one by one: the answer is 200 with ``partialSuccess``
  (``rejectedSpans``, ``errorMessage``), and the other spans are kept;
- unknown fields are ignored (protobuf and JSON alike).

The decoding itself is the Rust core's (``seawall._native.otlp_decode``),
which releases the GIL while it works.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

from .. import _native
from .spans import SpanRow

__all__ = [
    "PROTOBUF",
    "JSON",
    "Received",
    "Refused",
    "receive",
    "status_body",
]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

_INVALID_ARGUMENT = 3  # google.rpc.Code
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14


@dataclass(frozen=True, slots=True)
class Received:
    """A body decoded: its spans, and the answer to send (200)."""

    rows: list[SpanRow]
    rejected: int
    message: str
    content_type: str

    def answer(self) -> bytes:
        """The ``ExportTraceServiceResponse``, in the request's encoding."""
        if self.content_type == PROTOBUF:
            if not self.rejected and not self.message:
                return b""
            return bytes(_native.otlp_export_response(self.rejected, self.message))
        if not self.rejected and not self.message:
            return b"{}"
        partial = {"rejectedSpans": str(self.rejected), "errorMessage": self.message}
        return json.dumps({"partialSuccess": partial}).encode()


@dataclass(frozen=True, slots=True)
class Refused:
    """A body not taken: the status, why, and the answer in the request's encoding."""

    status: int
    message: str
    content_type: str

    def answer(self) -> bytes:
        code = {413: _RESOURCE_EXHAUSTED, 503: _UNAVAILABLE}.get(self.status, _INVALID_ARGUMENT)
        return status_body(code, self.message, self.content_type)


def status_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` {code, message}: protobuf (fields 1 and 2) or JSON."""
    if content_type != PROTOBUF:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def media_type(content_type: str | None) -> str | None:
    """``application/json; charset=utf-8`` → ``application/json``; ``None`` if unsupported."""
    if not content_type:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind if kind in (PROTOBUF, JSON) else None


def receive(
    body: bytes,
    *,
    content_type: str | None,
    content_encoding: str | None,
    max_body: int,
) -> Received | Refused:
    """Decode one export request, or say why not."""
    kind = media_type(content_type)
    if kind is None:
        return Refused(
            415,
            f"Content-Type {content_type or '(none)'!s} is not supported: send "
            f"{PROTOBUF} or {JSON}",
            JSON,
        )
    if len(body) > max_body:
        return Refused(413, f"body: larger than {max_body} bytes", kind)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        inflated = _gunzip(body, max_body)
        if isinstance(inflated, str):
            status = 413 if inflated.startswith("body:") else 400
            return Refused(status, inflated, kind)
        body = inflated
    elif encoding != "identity":
        return Refused(
            415, f"Content-Encoding {content_encoding!r} is not supported: gzip or none", kind
        )
    try:
        rows, rejected, message = _native.otlp_decode(body, kind == JSON)
    except ValueError as exc:
        return Refused(400, f"malformed {_name(kind)} ExportTraceServiceRequest: {exc}", kind)
    return Received([SpanRow(*r) for r in rows], rejected, message, kind)


def _name(kind: str) -> str:
    return "JSON" if kind == JSON else "protobuf"


def _gunzip(body: bytes, limit: int) -> bytes | str:
    """The inflated body, or why not (``body: ...`` when it is over ``limit``)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit:
            return f"body: larger than {limit} bytes once decompressed"
        if not inflater.eof:
            return "gzip: the body ends before the compressed stream does"
    except zlib.error as exc:
        return f"gzip: {exc}"
    return out
