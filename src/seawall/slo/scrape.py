"""A sidecar's ``/metrics`` page, read for the SLOs: each objective's two counters.

:func:`parse` reads the Prometheus text format (version 0.0.4) the sidecars
write: ``# HELP`` and ``# TYPE`` lines, and samples ``name{label="value",...}
value [timestamp]``, label values with ``\\\\``, ``\\"`` and ``\\n`` escapes. A
malformed line raises :class:`MetricsError` naming its number and what is
wrong: the scraper skips the page, logs why and counts it.

:func:`counters` sums, from one sidecar's samples, what an objective counts
there (see :mod:`seawall.slo.rules` for the same selection as PromQL):

* ``measured_at: server``: the sidecars *of the service*, their inbound
  requests (``direction="inbound"``, ``destination`` the service);
* ``measured_at: callers``: any other sidecar's outbound requests to the
  service (only the ``caller``'s sidecars when the SLO names one);
* the SLO's ``route``, if it has one;
* availability: every request, and those answered 5xx; latency: the
  histogram's count, and those above the ``le`` bucket of the threshold,
  which the sidecar has as an exact bound (``repr`` of the seconds).

Sans-I/O: text in, numbers out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..config.model import SloConfig
from .evaluate import Objective

__all__ = ["MetricsError", "PageIndex", "Sample", "counters", "le_label", "parse"]


class MetricsError(ValueError):
    """A malformed metrics page: the line and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\.")


def _unescape(text: str, line: int) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) not in _ESCAPES:
            raise MetricsError(f"line {line}: unknown escape {m.group(0)!r} in a label value")
        return _ESCAPES[m.group(0)]

    return _ESCAPE.sub(one, text)


def _number(text: str, line: int) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise MetricsError(f"line {line}: {text!r} is not a number") from None


def parse(text: str) -> Iterator[Sample]:
    """The samples of a metrics page, in order; :class:`MetricsError` at the first bad line."""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _NAME.match(line)
        if m is None:
            raise MetricsError(f"line {number}: no metric name in {raw[:80]!r}")
        name, rest = m.group(0), line[m.end() :]
        labels: dict[str, str] = {}
        if rest.startswith("{") and "\\" not in rest:
            # no escape: a quote only ever delimits a value, so split on them (5x faster)
            close = rest.rfind("}")
            if close == -1:
                raise MetricsError(f"line {number}: malformed labels in {raw[:120]!r}")
            inner, rest = rest[1:close].strip().rstrip(","), rest[close + 1 :]
            if inner:
                parts = inner.split('",')
                for i, part in enumerate(parts):
                    key, sep, value = part.partition('="')
                    key = key.strip()
                    last = i == len(parts) - 1
                    if (not sep or not _LABEL_NAME.fullmatch(key) or '"' in value[:-1]
                            or (last and not value.endswith('"'))):  # fmt: skip
                        raise MetricsError(f"line {number}: malformed labels in {raw[:120]!r}")
                    labels[key] = value[:-1] if last else value
        elif rest.startswith("{"):
            at = 1
            if rest[1:].lstrip().startswith("}"):
                at = rest.index("}") + 1
            else:
                while True:
                    lm = _LABEL.match(rest, at)
                    if lm is None:
                        raise MetricsError(f"line {number}: malformed labels in {raw[:120]!r}")
                    labels[lm.group(1)] = _unescape(lm.group(2), number)
                    at = lm.end()
                    if lm.group(3) == "}":
                        break
            rest = rest[at:]
        parts = rest.split()
        if not 1 <= len(parts) <= 2:
            raise MetricsError(f"line {number}: expected a value (and a timestamp) after {name}")
        yield Sample(name, labels, _number(parts[0], number))


def le_label(threshold: float) -> str:
    """A histogram bound as the sidecar writes it in ``le`` (Rust's ``{:?}`` of an f64:
    ``0.3``, ``1.0``; the same as Python's ``repr`` from 1e-4 up, thresholds' range)."""
    return repr(float(threshold))


@dataclass(slots=True)
class _Scope:
    """One (direction, destination, route or every route)'s counters on a page."""

    requests: float = 0.0
    failed: float = 0.0  # answered 5xx
    count: float = 0.0  # the latency histogram's
    within: dict[str, float] = field(default_factory=dict)  # the histogram's buckets, by le
    seen_requests: bool = False
    seen_count: bool = False


class PageIndex:
    """A page's SLO counters, summed once by (direction, destination, route) and by
    (direction, destination) over its routes: each objective is then one lookup."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.scopes: dict[tuple[str, str, str | None], _Scope] = {}
        for s in samples:
            name = s.name
            if name not in _FAMILIES:
                continue
            labels = s.labels
            direction, destination = labels.get("direction"), labels.get("destination")
            if direction is None or destination is None:
                continue
            route = labels.get("route")
            for key in ((direction, destination, route), (direction, destination, None)):
                scope = self.scopes.get(key)
                if scope is None:
                    scope = self.scopes[key] = _Scope()
                if name == "seawall_requests_total":
                    scope.seen_requests = True
                    scope.requests += s.value
                    if labels.get("status_class") == "5xx":
                        scope.failed += s.value
                elif name == "seawall_request_duration_seconds_count":
                    scope.seen_count = True
                    scope.count += s.value
                else:
                    le = labels.get("le", "")
                    scope.within[le] = scope.within.get(le, 0.0) + s.value


_FAMILIES = frozenset(
    {
        "seawall_requests_total",
        "seawall_request_duration_seconds_count",
        "seawall_request_duration_seconds_bucket",
    }
)


def counters(
    objective: Objective, slo: SloConfig, page_service: str, page: PageIndex
) -> tuple[float, float] | None:
    """``(total, bad)`` of ``objective`` on the page of a sidecar of ``page_service``;
    ``None`` when that sidecar does not measure it (or lacks the threshold's bucket)."""
    service = objective.service or objective.slo
    if slo.measured_at == "server":
        if page_service != service:
            return None
        direction = "inbound"
    else:
        if page_service == service or (slo.caller is not None and page_service != slo.caller):
            return None
        direction = "outbound"
    scope = page.scopes.get((direction, service, slo.route))
    if scope is None:
        return None
    if objective.kind == "availability":
        if not scope.seen_requests:
            return None
        return scope.requests, max(0.0, min(scope.failed, scope.requests))
    assert objective.threshold is not None
    within = scope.within.get(le_label(objective.threshold))
    if not scope.seen_count or within is None:
        return None
    return scope.count, max(0.0, min(scope.count - within, scope.count))
