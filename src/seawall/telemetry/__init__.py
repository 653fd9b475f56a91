"""Telemetry: W3C Trace Context and correlation ids, and spans from applications.

The trace context (:mod:`~seawall.telemetry.tracecontext`) is sans-I/O and
uses the standard library only, so the client transports and the sidecar
proxy share it (``docs/telemetry/tracecontext.md``).

Spans from applications use the OpenTelemetry API, an optional dependency
(``pip install seawall[otel]``; ``docs/telemetry/spans.md``): :func:`setup`
configures the SDK to export to the mesh's collector;
:mod:`seawall.telemetry.asgi` and :mod:`seawall.telemetry.wsgi` are the
middleware doing the inbound step of every hop; :mod:`seawall.telemetry.otel`
is the glue. ``import seawall.telemetry`` does not import OpenTelemetry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from .otel import Handle

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
    "setup",
    "trace_scope",
]


def setup(
    service: str,
    *,
    endpoint: str | None = None,
    sample: float = 1.0,
    headers: Mapping[str, str] | None = None,
    install: bool = True,
) -> Handle:
    """Configure the OpenTelemetry SDK to export this process's spans to the mesh's collector.

    A ``TracerProvider`` with ``service.name=service``, parent-based sampling
    (new traces kept with probability ``sample``), and a batch processor over
    the OTLP/HTTP exporter to ``endpoint`` (default: ``$SEAWALL_TRACES_ENDPOINT``,
    else ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, else
    ``http://127.0.0.1:4318/v1/traces``, the mesh's embedded collector). Set as
    OpenTelemetry's global provider unless ``install=False``; a global provider
    already set is never replaced: :class:`~seawall.telemetry.otel.ProviderAlreadySet`
    is raised. Returns a :class:`~seawall.telemetry.otel.Handle` (``shutdown()``,
    ``force_flush()``). See :func:`seawall.telemetry.otel.setup`; this wrapper
    imports OpenTelemetry only when called.
    """
    from .otel import setup as setup_sdk  # noqa: PLC0415 - OpenTelemetry: only when called

    return setup_sdk(service, endpoint=endpoint, sample=sample, headers=headers, install=install)
