"""Type stubs for the Rust core (crates/seawall-native), as Python code uses it."""

from collections.abc import Sequence
from typing import Any

__version__: str

class Sidecar:
    """A running sidecar core: listeners open, serving on threads of its own."""

    def __init__(
        self,
        spec: str,
        *,
        workers: int = 1,
        reuse_port: bool = False,
        cert: bytes | None = None,
        key: bytes | None = None,
        bundle: bytes | None = None,
        log_format: str | None = None,
    ) -> None: ...
    def ports(self) -> list[tuple[str, int]]: ...
    def apply(self, spec: str) -> tuple[bool, list[tuple[str, str, str]]]: ...
    def set_endpoints(self, endpoints: str) -> None: ...
    def set_identity(self, cert: bytes, key: bytes, bundle: bytes) -> None: ...
    def close_idle(self) -> None: ...
    def metrics(self, openmetrics: bool = False) -> str: ...
    def clusters(self) -> str: ...
    def ready(self) -> bool: ...
    def connections(self) -> int: ...
    def drain(self, grace: float) -> None: ...

def check_spec(spec: str) -> None: ...
def check_regex(pattern: str) -> None: ...
def control_call(
    method: str,
    url: str,
    *,
    headers: list[tuple[str, str]] = ...,
    body: bytes = ...,
    timeout: float = ...,
) -> tuple[int, bytes]: ...

# ---------------------------------------------------------------- OTLP traces (crate seawall-otlp)

_SpanRowTuple = tuple[
    bytes,  # trace_id
    bytes,  # span_id
    bytes,  # parent_span_id
    str,  # service
    str,  # name
    int,  # kind
    int,  # start_ns
    int,  # end_ns
    int,  # status_code
    str,  # status_message
    int,  # flags
    str,  # trace_state
    str,  # attributes
    str,  # events
    str,  # links
    str,  # resource
    str,  # scope
    tuple[str, ...],  # tags
]
"""A span as ``otlp_decode`` gives it: ``seawall.telemetry.spans.SpanRow``'s fields, in order."""

def otlp_decode(body: bytes, json: bool) -> tuple[list[_SpanRowTuple], int, str]:
    """Decode an OTLP ``ExportTraceServiceRequest``: protobuf, or OTLP/JSON when ``json``.

    Returns ``(rows, rejected, message)``: one tuple per valid span, in
    ``SpanRow`` field order (``SpanRow(*row)``); the number of well-formed
    spans skipped as invalid OTLP (ids of the wrong length or all zero); and
    what ``ExportTracePartialSuccess.error_message`` should say of them (how
    many, and where and why the first was refused; empty when none was).
    The GIL is released while decoding.

    Raises ValueError when the body is malformed (bad protobuf or JSON, a
    field of the wrong type, a string that is not UTF-8, an id that is not
    hex): the message says what and where, as
    ``resourceSpans[0].scopeSpans[1].spans[3].name: invalid UTF-8 at byte 812``.
    """

def otlp_export_response(rejected: int, message: str) -> bytes:
    """The ``ExportTraceServiceResponse`` (protobuf) for a request of which
    ``rejected`` spans were refused, ``message`` saying why: empty bytes when
    both are empty (everything was accepted), else a ``partial_success``."""

def otlp_json_to_protobuf(body: bytes) -> bytes:
    """An OTLP/JSON ``ExportTraceServiceRequest``, read into the Rust encoder's
    model and written as protobuf (invalid spans left out; one scope per
    resource spans). For testing the encoder. Raises ValueError as ``otlp_decode``."""

def __getattr__(name: str) -> Any: ...  # the policy twins, used by the conformance tests

class SpanBatch:
    """A batch of SpanRow tuples read once, by trace and by origin (the trace store's pass)."""

    trace_ids: list[bytes]
    origins: list[tuple[str, str, int, str, str]]
    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    def __len__(self) -> int: ...
    def prepare(
        self,
        refs: list[int],
        origins: list[tuple[int, int, int, int, tuple[str, ...]]],
        keys: tuple[int, int, int, int, int, int],
    ) -> tuple[
        list[tuple[Any, ...]],
        list[tuple[int, int, int, int, int, str, int, int, bytes, int]],
        list[int],
        list[tuple[int, bytes]],
    ]: ...
