"""Telemetry: W3C Trace Context and correlation ids (later: metrics, SLO math).

Everything here is sans-I/O and uses the standard library only, so the httpx
client integration and the sidecar proxy share it. See
``docs/telemetry/tracecontext.md`` for the semantics.
"""

from .tracecontext import (
    FLAG_RANDOM,
    FLAG_SAMPLED,
    MAX_TRACESTATE_LENGTH,
    MAX_TRACESTATE_MEMBERS,
    REQUEST_ID_HEADER,
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    TraceState,
    continue_trace,
    current_request_id,
    current_trace,
    current_tracestate,
    new_request_id,
    request_id_scope,
    trace_scope,
)

__all__ = [
    "FLAG_RANDOM",
    "FLAG_SAMPLED",
    "MAX_TRACESTATE_LENGTH",
    "MAX_TRACESTATE_MEMBERS",
    "REQUEST_ID_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "TraceParent",
    "TraceState",
    "continue_trace",
    "current_request_id",
    "current_trace",
    "current_tracestate",
    "new_request_id",
    "request_id_scope",
    "trace_scope",
]
