"""A span as the trace store keeps it: one flat row, decoded from OTLP.

The collector decodes OTLP/HTTP bodies (protobuf or JSON) in the Rust core
(``seawall._native.otlp_decode``) straight into :class:`SpanRow` tuples, so
the store inserts them as they come. The nested parts (attributes, events,
links, the resource, the scope) stay in OTLP's own JSON encoding, so that
the api_v3 answer is a concatenation and no type is lost (an ``int`` stays
an ``intValue`` string, bytes stay base64): see ``docs/telemetry/store.md``.

The encoding of each JSON column, exactly (compact, no spaces):

- ``attributes``, ``resource``: a list of OTLP ``KeyValue``:
  ``[{"key":"http.request.method","value":{"stringValue":"GET"}}]``; the
  value is one of ``stringValue``, ``boolValue``, ``intValue`` (a decimal
  *string*), ``doubleValue`` (a number), ``bytesValue`` (base64),
  ``arrayValue`` ``{"values":[AnyValue...]}`` or ``kvlistValue``
  ``{"values":[KeyValue...]}``; an empty AnyValue is ``{}``.
- ``events``: ``[{"timeUnixNano":"1700000000000000000","name":"retry","attributes":[...]}]``
  (``attributes`` always present, possibly ``[]``).
- ``links``: ``[{"traceId":"<32 hex>","spanId":"<16 hex>","traceState":"","attributes":[...]}]``.
- ``scope``: ``{"name":"seawall-sidecar","version":"0.1.0"}``.

``tags`` are what the attribute index holds: ``key=value`` for each scalar
attribute of the span and of its resource (strings, booleans, integers and
doubles as the OTLP JSON writes them, booleans as ``true``/``false``), the
value cut to :data:`MAX_TAG_VALUE` characters.
"""

from __future__ import annotations

from typing import NamedTuple

MAX_TAG_VALUE = 256
"""Characters of an attribute's value kept in the index (the span keeps all of it)."""

UNKNOWN_SERVICE = "unknown_service"
"""The service of a span whose resource has no ``service.name`` (the OTel SDK's default)."""


class SpanKind:
    """OTLP's ``Span.SpanKind`` values."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


class StatusCode:
    """OTLP's ``Status.StatusCode`` values."""

    UNSET = 0
    OK = 1
    ERROR = 2


class SpanRow(NamedTuple):
    """One span, flat, in the order the store's ``spans`` table takes it."""

    trace_id: bytes
    """16 bytes, never all zero."""
    span_id: bytes
    """8 bytes, never all zero."""
    parent_span_id: bytes
    """8 bytes, or ``b""`` for a root span."""
    service: str
    """The resource's ``service.name``, or :data:`UNKNOWN_SERVICE`."""
    name: str
    kind: int
    """A :class:`SpanKind` value."""
    start_ns: int
    """Unix nanoseconds."""
    end_ns: int
    status_code: int
    """A :class:`StatusCode` value."""
    status_message: str
    flags: int
    """The W3C trace flags (OTLP ``Span.flags`` & 0xff)."""
    trace_state: str
    attributes: str
    events: str
    links: str
    resource: str
    scope: str
    tags: tuple[str, ...]

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)
