"""The UI of ``seawall traces``: its files under ``/ui/``, its JSON under ``/api/seawall/``.

The pages (``seawall/telemetry/ui/``: plain HTML, CSS and JavaScript
modules, no build step, nothing fetched from elsewhere) read Jaeger's
``/api/`` where it has what they need (services, operations) and these
routes for the rest. Like :mod:`~seawall.telemetry.traces_api`, this module
is sans-I/O apart from the store and one injected ``fetch``: a path and its
query parameters in, an :class:`~seawall.telemetry.traces_api.Answer` out.
:func:`ui_routes` builds the callable that :class:`~seawall.telemetry.collector.Collector`
takes as ``extra`` (the routes the query API does not know).

===============================================  ======================================
``GET /``, ``/ui``                               302 to ``/ui/``
``GET /ui/``, ``/ui/{file}``                     the pages: only the files shipped in
                                                 the package's ``ui/`` folder, read once
``GET /api/seawall/search``                      trace summaries, in one of the store's
                                                 six orders
``GET /api/seawall/traces/{id}``                 a trace for the timeline, with its
                                                 critical path
``GET /api/seawall/traces/{id}/stats``           count, total, avg, max, self time per
                                                 service and per operation
``GET /api/seawall/graph``                       the service graph: RED per edge, drift,
                                                 each edge's breaker and outlier state
``GET /api/seawall/drift``                       the edges whose p99 drifted
``GET /api/seawall/heatmap``                     a route's latency heatmap, p50/p90/p99
``GET /api/seawall/compare``                     a selection of spans against the rest,
                                                 attribute by attribute (BubbleUp)
``GET /api/seawall/diff/{a}/{b}``                two traces: spans added, missing, slower
``GET /api/seawall/routes``                      the routes each service is called on
``GET /api/seawall/slos``                        the control plane's SLOs (see
                                                 :mod:`~seawall.telemetry.ui_slos`)
``GET /api/seawall/slos/{name}/history``         how an objective's budget was spent
===============================================  ======================================

Every parameter is checked: a bad one is 400 with a message naming it,
``{"error": {"code": 400, "param": "limit", "message": "..."}}``; an unknown
trace is 404 in the same shape. Times are Unix microseconds (``start``,
``end``, as Jaeger's ``/api/traces``) or a ``lookback`` (a Go duration back
from now); durations are Go durations (``300ms``).

**How it scales.** The server never sends raw spans where a page plots
many: a search sends summaries (one per trace), a heatmap sends its cells
(time columns by latency rows) and three percentile lines, a comparison sends
the top values of each attribute. A trace is sent whole, in a compact form
(service names once, times in microseconds from the trace's start), and the
timeline draws only the rows in view.

**Breaker and outlier state.** The sidecars' admin ``/clusters`` pages say,
per destination, the breaker's state and the endpoints ejected. The
collector does not learn admin addresses from spans, so they are
configuration (:class:`UiConfig`, built from mesh.yaml by
:meth:`UiConfig.from_mesh`); a page that cannot be read in
``admin_timeout`` makes its edges' state ``"unknown"``.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import analytics, jaeger
from .critical_path import TimedSpan, critical_path, self_times
from .otlpjson import attribute_value
from .spans import SpanKind, SpanRow, StatusCode
from .store import MAX_LIMIT, ORDERS, TraceQuery, TraceStore
from .traces_api import Answer
from .ui_slos import ControlError, SloSource

if TYPE_CHECKING:
    from ..config.model import MeshConfig

__all__ = ["ParameterError", "UiAPI", "UiConfig", "edge_state", "trace_view", "ui_routes"]

ParameterError = jaeger.ParameterError
"""A bad query parameter: 400, naming it (the same class as Jaeger's routes raise)."""

Fetch = Callable[[str, float], bytes]
"""``fetch(url, timeout)``: the body of a 200 answer; raises ``OSError`` otherwise."""

_JSON = "application/json"
_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
_SECURITY = {
    # Everything comes from this server: no CDN, no inline script.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_KIND_NAMES = {
    SpanKind.UNSPECIFIED: "unspecified",
    SpanKind.INTERNAL: "internal",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "producer",
    SpanKind.CONSUMER: "consumer",
}
DEFAULT_SEARCH_LIMIT = 100
DEFAULT_LOOKBACK_US = 3600 * 1_000_000
"""The window of the graph, heatmap and comparison when none is given: the last hour."""
MAX_VIEW_SPANS = 2_000_000
"""Spans one graph or heatmap reads at most (then its answer says ``truncated``)."""
MAX_COMPARE_SPANS = 25_000
"""Spans of each side a comparison holds at most: beyond, a uniform sample (``sampled``)."""
ROUTE_SCAN_SPANS = 50_000
"""CLIENT spans ``/api/seawall/routes`` reads at most to list the routes in use."""
_HOP_MARGIN_NS = 60 * 1_000_000_000
"""How long before a latency view's window its calls' hop spans are read."""
_ADMIN_CACHE_S = 2.0
"""Seconds an admin page read is reused (a graph refreshed often reads each once)."""
_MAX_US = ((1 << 63) - 1) // 1000
"""The latest time the store can hold, in microseconds."""


# ---------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class UiConfig:
    """What the UI routes need besides the store.

    Attributes:
        admin_urls: each service's sidecar admin base URL
            (``{"orders": "http://127.0.0.1:19002"}``): its ``/clusters``
            gives the breaker and outlier state of the service's outgoing
            edges.
        admin_timeout: seconds to wait for one admin page (0 < t <= 10).
        control_url: the control plane's base URL (``http://127.0.0.1:7600``), whose
            ``/v1/slos`` the SLO page shows; ``None``: the page says there is none.
        control_timeout: seconds to wait for the control plane (0 < t <= 30).
    """

    admin_urls: Mapping[str, str] = field(default_factory=dict)
    admin_timeout: float = 0.5
    control_url: str | None = None
    control_timeout: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.admin_urls, Mapping):
            raise ValueError(f"UiConfig.admin_urls must be a mapping, got {self.admin_urls!r}")
        for service, url in self.admin_urls.items():
            if not isinstance(service, str) or not service:
                raise ValueError(
                    f"UiConfig.admin_urls: a service name must be a string, got {service!r}"
                )
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"UiConfig.admin_urls[{service!r}] must be an http(s) URL, got {url!r}"
                )
        urls = {s: u.rstrip("/") for s, u in self.admin_urls.items()}
        object.__setattr__(self, "admin_urls", MappingProxyType(urls))
        timeout = self.admin_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 10
        ):
            raise ValueError(f"UiConfig.admin_timeout must be in (0, 10] seconds, got {timeout!r}")
        control = self.control_url
        if control is not None:
            if not isinstance(control, str) or not control.startswith(("http://", "https://")):
                raise ValueError(f"UiConfig.control_url must be an http(s) URL, got {control!r}")
            object.__setattr__(self, "control_url", control.rstrip("/"))
        timeout = self.control_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout <= 30
        ):
            raise ValueError(
                f"UiConfig.control_timeout must be in (0, 30] seconds, got {timeout!r}"
            )

    @classmethod
    def from_mesh(
        cls, mesh: MeshConfig, *, admin_timeout: float = 0.5, control_url: str | None = None
    ) -> UiConfig:
        """The admin URL of every service's sidecar in ``mesh`` (the admin listener is on
        loopback: reachable when ``seawall traces`` runs on the sidecars' host)."""
        urls = {
            name: f"http://127.0.0.1:{svc.sidecar.admin}" for name, svc in mesh.services.items()
        }
        return cls(admin_urls=urls, admin_timeout=admin_timeout, control_url=control_url)


def _http_get(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": _JSON})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        if answer.status != 200:
            raise OSError(f"{url}: HTTP {answer.status}")
        return bytes(answer.read(4 << 20))


# ---------------------------------------------------------------------- answers


def _json(status: int, body: Any) -> Answer:
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return Answer(status, data, {"Content-Type": _JSON, "Cache-Control": "no-store"})


def _error(status: int, message: str, param: str | None = None) -> Answer:
    error: dict[str, Any] = {"code": status, "message": message}
    if param is not None:
        error["param"] = param
    return _json(status, {"error": error})


class _NotFound(Exception):
    pass


# ---------------------------------------------------------------------- parameters


class _Params:
    """Query parameters read by name; every problem is a :class:`ParameterError` naming it.

    A parameter's first value counts; an empty one is as good as absent.
    """

    def __init__(self, params: Mapping[str, Sequence[str]]) -> None:
        self._p = params

    def text(self, name: str) -> str:
        values = self._p.get(name)
        return values[0] if values else ""

    def all(self, name: str) -> Sequence[str]:
        return [v for v in self._p.get(name, ()) if v]

    def integer(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        text = self.text(name)
        if not text:
            return default
        try:
            value = int(text, 10)
        except ValueError:
            raise ParameterError(name, f"parameter '{name}': {text!r} is not an integer") from None
        if not low <= value <= high:
            raise ParameterError(
                name, f"parameter '{name}': {value} is out of range ({low} to {high})"
            )
        return value

    def duration_ns(self, name: str) -> int | None:
        text = self.text(name)
        if not text:
            return None
        try:
            value = jaeger.parse_go_duration_ns(text)
        except ValueError as exc:
            raise ParameterError(name, f"parameter '{name}': {exc}") from None
        if value < 0:
            raise ParameterError(name, f"parameter '{name}' must not be negative, got {text!r}")
        return value

    def choice(self, name: str, choices: Sequence[str], default: str | None) -> str | None:
        text = self.text(name)
        if not text:
            return default
        if text not in choices:
            raise ParameterError(
                name, f"parameter '{name}': {text!r} is not one of {', '.join(choices)}"
            )
        return text

    def window_us(
        self, now_us: int, default_lookback_us: int | None
    ) -> tuple[int | None, int | None]:
        """``start``/``end`` (Unix µs), or ``end`` minus ``lookback``; ``(None, None)`` for none."""
        end = self.integer("end", 0, _MAX_US)
        start = self.integer("start", 0, _MAX_US)
        lookback = self.duration_ns("lookback")
        if start is not None and lookback is not None:
            raise ParameterError("lookback", "give 'start' or 'lookback', not both")
        if lookback is not None and lookback == 0:
            raise ParameterError("lookback", "parameter 'lookback' must be more than 0")
        if start is None:
            back = lookback // 1000 if lookback is not None else default_lookback_us
            if back is not None:
                start = max(0, (end if end is not None else now_us) - back)
                end = end if end is not None else now_us
        if start is not None and end is not None and start > end:
            raise ParameterError("start", f"parameter 'start' ({start}) is after 'end' ({end})")
        return start, end

    def window_of(self, now_us: int, default_lookback_us: int) -> tuple[int, int]:
        """:meth:`window_us` for routes that always have a window (by default the last
        ``default_lookback_us``)."""
        start, end = self.window_us(now_us, default_lookback_us)
        return (0 if start is None else start), (now_us if end is None else end)

    def attributes(self) -> dict[str, str]:
        """``tag=key:value`` (repeated, split at the first colon), as Jaeger's ``/api/traces``."""
        found: dict[str, str] = {}
        for tag in self.all("tag"):
            key, colon, value = tag.partition(":")
            if not colon or not key:
                raise ParameterError("tag", f"parameter 'tag': expecting key:value, got {tag!r}")
            found[key] = value
        return found


def _trace_id(text: str, param: str) -> bytes:
    trace_id = jaeger.parse_trace_id(text, param=param)
    if not any(trace_id):
        raise ParameterError(param, f"parameter '{param}': the trace id must not be all zero")
    return trace_id


# ---------------------------------------------------------------------- static files


@dataclass(frozen=True, slots=True)
class _File:
    body: bytes
    content_type: str


def _load_files() -> dict[str, _File]:
    """Every file of the package's ``ui/`` folder, by name: the only paths ever served."""
    folder = resources.files(__package__).joinpath("ui")
    files: dict[str, _File] = {}
    for entry in folder.iterdir():
        name = entry.name
        suffix = name[name.rfind(".") :] if "." in name else ""
        if entry.is_file() and suffix in _CONTENT_TYPES and not name.startswith("."):
            files[name] = _File(entry.read_bytes(), _CONTENT_TYPES[suffix])
    return files


_PAGES = {"": "index.html", "slos": "slos.html"}
"""The pages served at a path of their own: ``/ui/`` and ``/ui/slos``."""


# ---------------------------------------------------------------------- the routes


class UiAPI:
    """The UI's routes over one :class:`~seawall.telemetry.store.TraceStore`.

    Call it as ``extra``: ``api(path, params)`` is an :class:`Answer`, or
    ``None`` for a path that is not the UI's. ``wall`` is Unix seconds (the
    default windows end now), ``monotonic`` times the admin pages' cache,
    ``fetch`` reads an admin page (``urllib`` by default; tests pass their own).
    ``rollups``, when the collector keeps one up to date (fed from its
    ``on_stored``), answers the graph and drift from memory; without it they are
    computed from the store. ``max_spans`` bounds the spans a graph or heatmap
    reads, ``max_compare_spans`` those of each side a comparison holds (beyond: a sample).
    ``slos`` reads the control plane's SLOs for ``/ui/slos`` (by default from
    ``config.control_url``; tests pass their own).
    """

    def __init__(
        self,
        store: TraceStore,
        config: UiConfig | None = None,
        *,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        fetch: Fetch = _http_get,
        files: Mapping[str, tuple[bytes, str]] | None = None,
        rollups: analytics.Rollups | None = None,
        slos: SloSource | None = None,
        max_spans: int = MAX_VIEW_SPANS,
        max_compare_spans: int = MAX_COMPARE_SPANS,
    ) -> None:
        self.store = store
        self.rollups = rollups
        self.max_spans = max_spans
        self.max_compare_spans = max_compare_spans
        self.config = config if config is not None else UiConfig()
        self._wall = wall
        self._monotonic = monotonic
        self._fetch = fetch
        self._files = (
            _load_files()
            if files is None
            else {name: _File(body, kind) for name, (body, kind) in files.items()}
        )
        self._admin_lock = threading.Lock()
        self._admin_cache: dict[str, tuple[float, Any]] = {}
        self.slos = (
            slos
            if slos is not None
            else SloSource(self.config.control_url, timeout=self.config.control_timeout)
        )

    def __call__(self, path: str, params: Mapping[str, Sequence[str]]) -> Answer | None:
        if path in ("/", "/ui"):
            return Answer(302, b"", {"Location": "/ui/", "Content-Length": "0"})
        if path.startswith("/ui/"):
            return self._static(path[len("/ui/") :])
        if path == "/api/seawall" or path.startswith("/api/seawall/"):
            parts = path.split("/")[3:]
            try:
                return self._route(parts, _Params(params))
            except ParameterError as exc:
                return _error(400, str(exc), exc.param)
            except _NotFound as exc:
                return _error(404, str(exc))
            except ControlError as exc:
                return _error(exc.status, str(exc), exc.param)
        return None

    # -- static --------------------------------------------------------------

    def _static(self, name: str) -> Answer:
        found = self._files.get(_PAGES.get(name, name))
        if found is None:  # only the names read at start: "..", "%2e", "/" never match
            return Answer(404, b"not found\n", {"Content-Type": "text/plain; charset=utf-8"})
        return Answer(
            200,
            found.body,
            {"Content-Type": found.content_type, "Cache-Control": "no-cache", **_SECURITY},
        )

    # -- JSON ------------------------------------------------------------------

    def _route(self, parts: list[str], p: _Params) -> Answer:
        if parts == ["search"]:
            return _json(200, self.search(p))
        if len(parts) == 2 and parts[0] == "traces":
            return _json(200, self.trace(_trace_id(parts[1], "traceID")))
        if len(parts) == 3 and parts[0] == "traces" and parts[2] == "stats":
            return _json(200, self.statistics(_trace_id(parts[1], "traceID")))
        if parts == ["graph"]:
            return _json(200, self.graph(p))
        if parts == ["drift"]:
            return _json(200, self.drift(p))
        if parts == ["heatmap"]:
            return _json(200, self.heatmap(p))
        if parts == ["compare"]:
            return _json(200, self.compare(p))
        if len(parts) == 3 and parts[0] == "diff":
            return _json(200, self.diff(_trace_id(parts[1], "a"), _trace_id(parts[2], "b")))
        if parts == ["routes"]:
            return _json(200, self.routes(p))
        if parts == ["slos"]:
            return _json(200, self.slos.report())
        if len(parts) == 3 and parts[0] == "slos" and parts[2] == "history" and parts[1]:
            found = self.slos.history(parts[1], p.text("step") or None, p.text("since") or None)
            return _json(200, found)
        raise _NotFound(f"no route /api/seawall/{'/'.join(parts)}")

    def _now_us(self) -> int:
        return int(self._wall() * 1_000_000)

    def search(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/search``: the summaries the search page plots and lists."""
        attributes = p.attributes()
        route = p.text("route")
        if route:
            attributes["seawall.route"] = route
        start_us, end_us = p.window_us(self._now_us(), None)
        min_ns = p.duration_ns("minDuration")
        max_ns = p.duration_ns("maxDuration")
        if min_ns is not None and max_ns is not None and max_ns < min_ns:
            raise ParameterError("maxDuration", "parameter 'maxDuration' is below 'minDuration'")
        status = p.choice("status", ("error", "ok"), None)
        kind_name = p.choice(
            "spanKind", [k for k in _KIND_NAMES.values() if k != "unspecified"], None
        )
        kind = next((k for k, n in _KIND_NAMES.items() if n == kind_name), None)
        query = TraceQuery(
            service=p.text("service") or None,
            operation=p.text("operation") or None,
            span_kind=kind,
            status=status,  # type: ignore[arg-type]
            min_duration_ns=min_ns,
            max_duration_ns=max_ns,
            attributes=attributes,
            start_min_ns=None if start_us is None else start_us * 1000,
            start_max_ns=None if end_us is None else end_us * 1000,
            limit=p.integer("limit", 1, MAX_LIMIT, DEFAULT_SEARCH_LIMIT) or DEFAULT_SEARCH_LIMIT,
            order=p.choice("order", ORDERS, "newest"),  # type: ignore[arg-type]
        )
        summaries = self.store.search(query)
        return {
            "order": query.order,
            "limit": query.limit,
            "traces": [
                {
                    "traceID": s.trace_id.hex(),
                    "start": s.start_ns / 1000,
                    "duration": s.duration_ns / 1000,
                    "rootService": s.root_service,
                    "rootName": s.root_name,
                    "spans": s.span_count,
                    "errors": s.error_count,
                    "services": [[name, n] for name, n in s.services],
                }
                for s in summaries
            ],
        }

    def trace(self, trace_id: bytes) -> dict[str, Any]:
        """``/api/seawall/traces/{id}``: see :func:`trace_view`."""
        rows = self.store.trace(trace_id)
        if not rows:
            raise _NotFound(f"trace {trace_id.hex()} not found")
        return trace_view(rows)

    def statistics(self, trace_id: bytes) -> dict[str, Any]:
        """``/api/seawall/traces/{id}/stats``: :func:`analytics.trace_statistics`, split
        into ``services`` and ``operations`` (durations in ms)."""
        rows = self.store.trace(trace_id)
        if not rows:
            raise _NotFound(f"trace {trace_id.hex()} not found")
        stats = [s.to_json() for s in analytics.trace_statistics(rows)]
        return {
            "traceID": trace_id.hex(),
            "services": [s for s in stats if s["group"] == "service"],
            "operations": [s for s in stats if s["group"] == "operation"],
        }

    def diff(self, a: bytes, b: bytes) -> dict[str, Any]:
        """``/api/seawall/diff/{a}/{b}``: :func:`analytics.trace_diff`, with each trace's
        summary; a trace not found is 404 naming it."""
        found = self.store.traces([a, b])
        for name, trace_id in (("a", a), ("b", b)):
            if not found.get(trace_id):
                raise _NotFound(f"trace {name} ({trace_id.hex()}) not found")
        nodes = analytics.trace_diff(found[a], found[b])
        return {
            "a": _summary(found[a]),
            "b": _summary(found[b]),
            "nodes": [n.to_json() for n in nodes],
        }

    def graph(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/graph``: nodes and edges (RED per edge) of the window, each edge
        with its drift (:meth:`drift`'s parameters) and its breaker and outlier state."""
        start_us, end_us = p.window_of(self._now_us(), DEFAULT_LOOKBACK_US)
        start_ns, end_ns = start_us * 1000, end_us * 1000
        if self.rollups is not None:
            found = self.rollups.graph(start_ns, end_ns)
        else:
            found = analytics.graph(self.store, start_ns, end_ns, max_spans=self.max_spans)
        drifts = {(d.caller, d.callee): d for d in self._drifts(p)}
        pages = self.admin_pages({e.caller for e in found.edges})
        doc = found.to_json()
        doc["start"], doc["end"] = start_us, end_us
        for edge, out in zip(found.edges, doc["edges"], strict=True):
            d = drifts.get((edge.caller, edge.callee))
            out["drift"] = _drift_json(d) if d is not None else None
            out.update(edge_state(pages.get(edge.caller), edge.callee))
        doc["admin"] = {s: page is not None for s, page in pages.items()}
        return doc

    def drift(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/drift``: every edge's p99 now (``current``, 10m) against the
        ``baseline`` (24h) before it, largest ratio first; ``flagged`` past ``threshold``
        (1.5) with ``minCalls`` (20) calls in each window."""
        drifts = self._drifts(p)
        return {"edges": [_drift_json(d) for d in drifts]}

    def _drifts(self, p: _Params) -> list[analytics.Drift]:
        current = p.duration_ns("current")
        baseline = p.duration_ns("baseline")
        for name, value in (("current", current), ("baseline", baseline)):
            if value is not None and value < 1_000_000_000:
                raise ParameterError(name, f"parameter '{name}' must be at least 1s")
        threshold_text = p.text("threshold")
        threshold = analytics.DEFAULT_THRESHOLD
        if threshold_text:
            try:
                threshold = float(threshold_text)
            except ValueError:
                threshold = math.nan
            if not (math.isfinite(threshold) and threshold > 1):
                raise ParameterError(
                    "threshold",
                    f"parameter 'threshold' must be a number > 1, got {threshold_text!r}",
                )
        min_calls = p.integer("minCalls", 1, 1_000_000, analytics.DEFAULT_MIN_CALLS)
        source: TraceStore | analytics.Rollups = (
            self.rollups if self.rollups is not None else self.store
        )
        return analytics.drift(
            source,
            self._now_us() * 1000,
            current=(current or analytics.DEFAULT_CURRENT_S * 10**9) // 10**9,
            baseline=(baseline or analytics.DEFAULT_BASELINE_S * 10**9) // 10**9,
            min_calls=min_calls or analytics.DEFAULT_MIN_CALLS,
            threshold=threshold,
        )

    def routes(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/routes``: every service, each with the routes its callers' hops
        named (``seawall.destination`` and ``seawall.route`` of the CLIENT spans of the
        window, ``lookback`` 1h by default, at most :data:`ROUTE_SCAN_SPANS` read)."""
        start_us, end_us = p.window_of(self._now_us(), DEFAULT_LOOKBACK_US)
        found: dict[str, set[str]] = {name: set() for name in self.store.services()}
        rows = self.store.spans_between(start_us * 1000, end_us * 1000, kind=SpanKind.CLIENT)
        for row in _Counted(rows, ROUTE_SCAN_SPANS):
            destination = route = None
            for tag in row.tags:
                if tag.startswith("seawall.destination="):
                    destination = tag[len("seawall.destination=") :]
                elif tag.startswith("seawall.route="):
                    route = tag[len("seawall.route=") :]
            if destination and route:
                found.setdefault(destination, set()).add(route)
        return {"services": {name: sorted(found[name]) for name in sorted(found)}}

    def _population(self, p: _Params) -> tuple[dict[str, str | None], Iterator[SpanRow], int, int]:
        """The spans a latency view is about, in start order, and its window (Unix ns).

        ``service`` with ``route`` (or no route: every route): the calls *to* that
        service through the mesh, one per attempt (each attempt reached one
        endpoint), each with its hop's attributes and events (destination, route,
        subset, the policy decisions) and ``seawall.caller`` (the calling service).
        ``service`` with ``operation``: that service's own spans of that name.
        """
        service = p.text("service")
        if not service:
            raise ParameterError("service", "parameter 'service' is required")
        route = p.text("route")
        operation = p.text("operation")
        if route and operation:
            raise ParameterError("operation", "give 'route' or 'operation', not both")
        start_us, end_us = p.window_of(self._now_us(), DEFAULT_LOOKBACK_US)
        start_ns, end_ns = start_us * 1000, end_us * 1000
        if end_ns <= start_ns:
            raise ParameterError("end", "the window is empty: 'end' must be after 'start'")
        if operation:
            what: dict[str, str | None] = {"service": service, "operation": operation}
            rows: Iterator[SpanRow] = (
                r
                for r in self.store.spans_between(start_ns, end_ns, service=service)
                if r.name == operation
            )
        else:
            what = {"service": service, "route": route or None}
            read = self.store.spans_between(
                max(0, start_ns - _HOP_MARGIN_NS), end_ns, kind=SpanKind.CLIENT
            )
            rows = (r for r in _calls_to(read, service, route) if r.start_ns >= start_ns)
        return what, rows, start_ns, end_ns

    def heatmap(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/heatmap``: :func:`analytics.heatmap` of a latency view's spans
        (see :meth:`_population`), ``timeBuckets`` by ``latencyBuckets`` cells."""
        time_buckets = p.integer("timeBuckets", 1, 2000, 120) or 120
        latency_buckets = p.integer("latencyBuckets", 1, 400, 50) or 50
        what, rows, start_ns, end_ns = self._population(p)
        counted = _Counted(rows, self.max_spans)
        found = analytics.heatmap(
            counted,
            time_buckets=time_buckets,
            latency_buckets=latency_buckets,
            start_ns=start_ns,
            end_ns=end_ns,
        )
        doc = found.to_json()
        doc.update(what)
        doc["truncated"] = counted.truncated
        return doc

    def compare(self, p: _Params) -> dict[str, Any]:
        """``/api/seawall/compare``: BubbleUp (:func:`analytics.compare`) of the spans of a
        region of the heatmap against the rest of the view's spans.

        The region: ``selStart``/``selEnd`` (Unix µs, default the whole window) and
        ``selMinDuration``/``selMaxDuration`` (Go durations); the rest of the
        parameters are :meth:`heatmap`'s. Each side is compared whole up to
        ``max_compare_spans`` spans, and as a uniform sample of that many beyond
        (``sampled``): the shares of values, which is what BubbleUp ranks on,
        barely move, and a comparison of a million spans stays interactive.
        """
        sel_start = p.integer("selStart", 0, _MAX_US)
        sel_end = p.integer("selEnd", 0, _MAX_US)
        sel_min = p.duration_ns("selMinDuration")
        sel_max = p.duration_ns("selMaxDuration")
        if sel_start is not None and sel_end is not None and sel_end <= sel_start:
            raise ParameterError("selEnd", "parameter 'selEnd' must be after 'selStart'")
        if sel_min is not None and sel_max is not None and sel_max < sel_min:
            raise ParameterError("selMaxDuration", "'selMaxDuration' is below 'selMinDuration'")
        top = p.integer("top", 1, 100, 20) or 20
        what, rows, start_ns, end_ns = self._population(p)
        region = (
            start_ns if sel_start is None else sel_start * 1000,
            end_ns if sel_end is None else sel_end * 1000,
            0 if sel_min is None else sel_min,
            (1 << 63) - 1 if sel_max is None else sel_max,
        )
        selected = _Sample(self.max_compare_spans)
        rest = _Sample(self.max_compare_spans)
        chunk: list[SpanRow] = []
        for row in _Counted(rows, self.max_spans):
            chunk.append(row)
            if len(chunk) >= 4096:
                _split(chunk, region, selected, rest)
                chunk = []
        _split(chunk, region, selected, rest)
        ranked = analytics.compare(selected.items, rest.items, top=top)
        doc: dict[str, Any] = dict(what)
        doc.update(
            selected=selected.seen,
            baseline=rest.seen,
            sampled=selected.seen > len(selected.items) or rest.seen > len(rest.items),
            attributes=[a.to_json() for a in ranked],
        )
        return doc

    # -- the sidecars' admin pages ------------------------------------------------

    def admin_pages(self, services: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Each service's sidecar ``/clusters``, by destination; ``None``: not known.

        Pages are read at once (a thread each, ``admin_timeout`` each), outside
        any lock, and reused for a couple of seconds.
        """
        now = self._monotonic()
        out: dict[str, dict[str, Any] | None] = {}
        stale: list[str] = []
        with self._admin_lock:
            for service in sorted(set(services)):
                hit = self._admin_cache.get(service)
                if hit is not None and now - hit[0] < _ADMIN_CACHE_S:
                    out[service] = hit[1]
                elif service in self.config.admin_urls:
                    stale.append(service)
                else:
                    out[service] = None
        if stale:
            with ThreadPoolExecutor(max_workers=min(8, len(stale))) as pool:
                pages = dict(zip(stale, pool.map(self._read_clusters, stale), strict=True))
            with self._admin_lock:
                for service, page in pages.items():
                    self._admin_cache[service] = (now, page)
            out.update(pages)
        return out

    def _read_clusters(self, service: str) -> dict[str, Any] | None:
        url = self.config.admin_urls[service] + "/clusters"
        try:
            doc = json.loads(self._fetch(url, self.config.admin_timeout))
        except (OSError, ValueError, http.client.HTTPException):  # unreachable, slow, garbled
            return None
        clusters = doc.get("clusters") if isinstance(doc, dict) else None
        if not isinstance(clusters, list):
            return None
        return {
            c["name"]: c for c in clusters if isinstance(c, dict) and isinstance(c.get("name"), str)
        }


def edge_state(page: Mapping[str, Any] | None, destination: str) -> dict[str, Any]:
    """The breaker and outlier state of the edge to ``destination``, from its caller's
    ``/clusters`` page (``None``: unknown).

    ``breaker``: ``closed``, ``open``, ``half_open``, ``forced_open``, ``off``
    (no breaker configured) or ``unknown``; ``outlier``: ``ok``, ``ejecting``
    (some endpoint is ejected: ``ejected`` lists them), ``off`` or ``unknown``.
    """
    cluster = page.get(destination) if page is not None else None
    if not isinstance(cluster, Mapping):
        return {"breaker": "unknown", "outlier": "unknown", "ejected": []}
    breaker = cluster.get("breaker")
    state = breaker.get("state") if isinstance(breaker, Mapping) else None
    endpoints = [e for e in cluster.get("endpoints") or () if isinstance(e, Mapping)]
    ejected = [f"{e.get('address')}:{e.get('port')}" for e in endpoints if e.get("ejected")]
    outlier = "off" if cluster.get("outlier") is None else ("ejecting" if ejected else "ok")
    return {
        "breaker": state if isinstance(state, str) else "off",
        "outlier": outlier,
        "ejected": ejected,
    }


def ui_routes(
    store: TraceStore,
    config: UiConfig | None = None,
    *,
    rollups: analytics.Rollups | None = None,
) -> Callable[[str, Mapping[str, list[str]]], Answer | None]:
    """The ``extra`` routes of :class:`~seawall.telemetry.collector.Collector`: the UI.

    ``Collector(store, ..., extra=ui_routes(store, UiConfig.from_mesh(mesh)))``.
    """
    return UiAPI(store, config, rollups=rollups)


class _Sample:
    """A uniform sample of at most ``size`` items (reservoir sampling, seeded: the same
    spans give the same sample), and how many were offered."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._random = random.Random(0)
        self.items: list[SpanRow] = []
        self.seen = 0

    def add(self, item: SpanRow) -> None:
        self.seen += 1
        if len(self.items) < self._size:
            self.items.append(item)
            return
        at = self._random.randrange(self.seen)
        if at < self._size:
            self.items[at] = item


def _split(
    chunk: list[SpanRow], region: tuple[int, int, int, int], selected: _Sample, rest: _Sample
) -> None:
    inside, outside = analytics.select(chunk, *region)
    for row in inside:
        selected.add(row)
    for row in outside:
        rest.add(row)


class _Counted:
    """An iterator that stops after ``limit`` items and says whether it had to."""

    def __init__(self, items: Iterator[SpanRow], limit: int) -> None:
        self._items = items
        self._left = limit
        self.truncated = False

    def __iter__(self) -> Iterator[SpanRow]:
        for item in self._items:
            if self._left <= 0:
                self.truncated = True
                return
            self._left -= 1
            yield item


def _calls_to(rows: Iterable[SpanRow], destination: str, route: str) -> Iterator[SpanRow]:
    """The attempts of the calls to ``destination`` (on ``route``; ``""``: any) among
    CLIENT ``rows`` in start order, each merged with its hop (see ``_population``)."""
    dest_tag = f"seawall.destination={destination}"
    route_tag = f"seawall.route={route}" if route else None
    hops: dict[tuple[bytes, bytes], SpanRow] = {}
    for row in rows:
        tags = row.tags
        attempt = any(t.startswith("seawall.attempt=") for t in tags)
        if not attempt:
            if dest_tag in tags and (route_tag is None or route_tag in tags):
                hops[(row.trace_id, row.span_id)] = row
            continue
        hop = hops.get((row.trace_id, row.parent_span_id))
        if hop is not None:
            yield _with_hop(row, hop)


def _with_hop(attempt: SpanRow, hop: SpanRow) -> SpanRow:
    own = json.loads(attempt.attributes) if attempt.attributes not in ("", "[]") else []
    keys = {kv.get("key") for kv in own}
    merged = own + [kv for kv in json.loads(hop.attributes or "[]") if kv.get("key") not in keys]
    if "seawall.caller" not in keys | {kv.get("key") for kv in merged}:
        merged.append({"key": "seawall.caller", "value": {"stringValue": attempt.service}})
    events = json.loads(hop.events or "[]") + json.loads(attempt.events or "[]")
    return attempt._replace(
        attributes=json.dumps(merged, separators=(",", ":")),
        events=json.dumps(events, separators=(",", ":")),
    )


def _summary(rows: Sequence[SpanRow]) -> dict[str, Any]:
    """A trace's header: its root, start, duration, spans, errors."""
    ids = {r.span_id for r in rows}
    roots = [r for r in rows if not r.parent_span_id or r.parent_span_id not in ids] or list(rows)
    root = min(roots, key=lambda r: (r.start_ns, r.span_id))
    start = min(r.start_ns for r in rows)
    return {
        "traceID": rows[0].trace_id.hex(),
        "rootService": root.service,
        "rootName": root.name,
        "start": start / 1000,
        "duration": (max(r.end_ns for r in rows) - start) / 1000,
        "spans": len(rows),
        "errors": sum(r.status_code == StatusCode.ERROR for r in rows),
    }


def _drift_json(d: analytics.Drift) -> dict[str, Any]:
    doc = d.to_json()
    if doc["ratio"] is not None and not math.isfinite(doc["ratio"]):
        doc["ratio"] = None  # a baseline of 0 ms: no ratio JSON can carry
    return doc


# ---------------------------------------------------------------------- a trace, for the timeline


def _values(key_values_json: str) -> list[list[Any]]:
    """OTLP ``KeyValue`` JSON as ``[[key, value], ...]``, values made displayable."""
    out: list[list[Any]] = []
    for kv in json.loads(key_values_json) if key_values_json not in ("", "[]") else ():
        try:
            value = attribute_value(kv.get("value") or {})
        except ValueError:
            value = kv.get("value")
        out.append([kv.get("key", ""), _displayable(value)])
    return out


def _displayable(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_displayable(v) for v in value]
    if isinstance(value, dict):
        return {k: _displayable(v) for k, v in value.items()}
    return value


def _follows_from(row: SpanRow, parent: SpanRow | None) -> bool:
    """The parent does not wait for this span: a consumer of a producer's message, or a
    link to the parent that says so (``opentracing.ref_type`` other than ``child_of``)."""
    if parent is None:
        return False
    if row.kind == SpanKind.CONSUMER and parent.kind == SpanKind.PRODUCER:
        return True
    if row.links in ("", "[]"):
        return False
    for link in json.loads(row.links):
        if (
            link.get("spanId", "").lower() == parent.span_id.hex()
            and link.get("traceId", "").lower() == row.trace_id.hex()
        ):
            for kv in link.get("attributes") or ():
                if kv.get("key") == "opentracing.ref_type":
                    return (kv.get("value") or {}).get("stringValue") != "child_of"
            return True
    return False


def trace_view(rows: Sequence[SpanRow]) -> dict[str, Any]:
    """One trace as the timeline draws it.

    ``services`` once, each span's ``service`` an index into it; times in
    microseconds from the trace's start (``start``, Unix µs); ``criticalPath``
    the stretches (latest first) as ``[span index, start, end]``, and
    ``onPath`` each span on it with its time there, longest first.
    Resources are per service (``resources``), not per span.
    """
    t0 = min(r.start_ns for r in rows)
    t1 = max(r.end_ns for r in rows)
    services: dict[str, int] = {}
    resources_: dict[str, list[list[Any]]] = {}
    by_id = {r.span_id: r for r in rows}
    index = {r.span_id: i for i, r in enumerate(rows)}
    spans: list[dict[str, Any]] = []
    timed: list[TimedSpan] = []
    for r in rows:
        s = services.setdefault(r.service, len(services))
        if r.service not in resources_:
            resources_[r.service] = _values(r.resource)
        parent = by_id.get(r.parent_span_id) if r.parent_span_id else None
        start = (r.start_ns - t0) / 1000
        end = (max(r.end_ns, r.start_ns) - t0) / 1000
        span: dict[str, Any] = {
            "id": r.span_id.hex(),
            "parent": r.parent_span_id.hex() if any(r.parent_span_id) else "",
            "service": s,
            "name": r.name,
            "kind": _KIND_NAMES.get(r.kind, "unspecified"),
            "start": start,
            "duration": end - start,
            "error": r.status_code == StatusCode.ERROR,
        }
        if r.status_message:
            span["status"] = r.status_message
        span["attributes"] = _values(r.attributes)
        if r.events not in ("", "[]"):
            span["events"] = [
                {
                    "time": (int(e.get("timeUnixNano", 0)) - t0) / 1000,
                    "name": e.get("name", ""),
                    "attributes": _values(json.dumps(e.get("attributes") or [])),
                }
                for e in json.loads(r.events)
            ]
        if r.links not in ("", "[]"):
            span["links"] = [
                {
                    "traceID": link.get("traceId", ""),
                    "spanID": link.get("spanId", ""),
                    "attributes": _values(json.dumps(link.get("attributes") or [])),
                }
                for link in json.loads(r.links)
            ]
        scope = json.loads(r.scope) if r.scope not in ("", "{}") else {}
        if scope.get("name"):
            span["scope"] = scope["name"]
        spans.append(span)
        timed.append(
            TimedSpan(
                r.span_id.hex(),
                r.parent_span_id.hex() if parent is not None else None,
                start,
                end,
                follows_from=_follows_from(r, parent),
            )
        )
    path = critical_path(timed)
    return {
        "traceID": rows[0].trace_id.hex(),
        "start": t0 / 1000,
        "duration": (t1 - t0) / 1000,
        "services": list(services),
        "resources": [resources_[name] for name in services],
        "spans": spans,
        "criticalPath": [[index[bytes.fromhex(c.span_id)], c.start, c.end] for c in path],
        "onPath": [
            [index[bytes.fromhex(span_id)], time_] for span_id, time_ in self_times(path).items()
        ],
    }
