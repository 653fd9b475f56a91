"""A sidecar's ``/metrics`` page, read for the SLOs: each objective's two counters.

:func:`parse` reads the Prometheus text format (version 0.0.4) the sidecars
write: ``# HELP`` and ``# TYPE`` lines, and samples ``name{label="value",...}
value [timestamp]``, label values with ``\\\\``, ``\\"`` and ``\\n`` escapes. It
reads OpenMetrics 1.0 too, which the sidecars write when the scrape asks for
it (:data:`ACCEPT`): the same samples, a page ending with ``# EOF``, and a
sample may carry an **exemplar**, ``... 12 # {trace_id="4bf9..."} 1 1733390000.123``
(its labels, its value, and optionally when), the trace of one request it
counted (:attr:`Sample.exemplar`). A malformed line, exemplar included, raises
:class:`MetricsError` naming its number and what is wrong: the scraper skips
the page, logs why and counts it.

:func:`counters` sums, from one sidecar's samples, what an objective counts
there (see :mod:`seawall.slo.rules` for the same selection as PromQL):

* ``measured_at: server``: the sidecars *of the service*, their inbound
  requests (``direction="inbound"``, ``destination`` the service); with a
  ``caller``, the same sidecars' counts of that caller's requests
  (``seawall_caller_requests_total{caller=...}`` and its histogram, the caller
  known from its mTLS certificate);
* ``measured_at: callers``: any other sidecar's outbound requests to the
  service (only the ``caller``'s sidecars when the SLO names one);
* the SLO's ``route``, if it has one;
* availability: every request, and those answered 5xx; latency: the
  histogram's count, and those above the ``le`` bucket of the threshold,
  which the sidecar has as an exact bound (``repr`` of the seconds).

:func:`bad_exemplars` picks, from the same counters, the exemplars of an
objective's bad events (see :mod:`seawall.slo.exemplars`): those of the 5xx
requests, or of the buckets above the latency threshold.

Sans-I/O: text in, numbers out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..config.model import SloConfig
from .evaluate import Objective
from .exemplars import BadExemplar, Kind

__all__ = [
    "ACCEPT",
    "Exemplar",
    "MetricsError",
    "PageIndex",
    "Sample",
    "bad_exemplars",
    "counters",
    "le_label",
    "parse",
]

ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
"""The scrape's ``Accept``: OpenMetrics (with exemplars) first, else Prometheus's text."""


class MetricsError(ValueError):
    """A malformed metrics page: the line and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Exemplar:
    """An OpenMetrics exemplar: ``# {trace_id="..."} value [timestamp]`` after a sample."""

    labels: dict[str, str]
    value: float
    timestamp: float | None = None
    """Unix seconds, if the sidecar wrote one."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float
    exemplar: Exemplar | None = None


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\})')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE = re.compile(r"\\.")
_TRACE_ID = re.compile(r"[0-9a-f]{32}")


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


def _label_set(text: str, line: int, raw: str) -> tuple[dict[str, str], str]:
    """The label set ``text`` starts with (``{...}``, any escapes), and what follows it."""
    labels: dict[str, str] = {}
    at = 1
    if text[1:].lstrip().startswith("}"):
        return labels, text[text.index("}") + 1 :]
    while True:
        lm = _LABEL.match(text, at)
        if lm is None:
            raise MetricsError(f"line {line}: malformed labels in {raw[:120]!r}")
        labels[lm.group(1)] = _unescape(lm.group(2), line)
        at = lm.end()
        if lm.group(3) == "}":
            return labels, text[at:]
        if text[at:].lstrip().startswith("}"):  # a trailing comma, as Prometheus allows
            return labels, text[text.index("}", at) + 1 :]


def _closing_brace(text: str) -> int:
    """Where the label set that ``text`` starts with ends, when no value has an escape:
    the first ``}`` outside quotes (quotes then only ever delimit values); -1 if none."""
    offset = 0
    for i, chunk in enumerate(text.split('"')):
        if not i % 2:
            brace = chunk.find("}")
            if brace != -1:
                return offset + brace
        offset += len(chunk) + 1
    return -1


_FIRST_KEYS: dict[str, str] = {}
"""What comes before a label set's first value (``route=``), checked: its label name."""
_LATER_KEYS: dict[str, str] = {}
"""The same before any other value (``,route=``): a page has a handful of label names."""


def _key(chunk: str, known: dict[str, str]) -> str | None:
    """The label name of ``key=`` (``,key=`` after a value), or ``None``; remembered."""
    key, eq, gap = chunk.partition("=")
    if known is _LATER_KEYS:  # after a value: a comma first
        key = key.lstrip()
        if not key.startswith(","):
            return None
        key = key[1:]
    key = key.strip()
    if not eq or gap.strip() or not _LABEL_NAME.fullmatch(key):
        return None
    if len(known) < 1024:  # (bounded, whatever pages come)
        known[chunk] = key
    return key


def _plain_labels(inner: str) -> dict[str, str] | None:
    """The labels between a set's braces when no value has an escape, or ``None``.

    A quote then only ever delimits a value, so split on them (5x faster than a
    regex): ``key=``, value, ``,key=``, value, ..., and what ends the set.
    """
    chunks = inner.split('"')
    if not len(chunks) % 2:
        return None
    labels: dict[str, str] = {}
    for j in range(0, len(chunks) - 1, 2):
        known = _LATER_KEYS if j else _FIRST_KEYS
        key = known.get(chunks[j]) or _key(chunks[j], known)
        if key is None:
            return None
        labels[key] = chunks[j + 1]
    end = chunks[-1].strip()
    if end and (end != "," or len(chunks) == 1):  # (a trailing comma, as Prometheus's)
        return None
    return labels


def _exemplar(text: str, line: int, raw: str) -> Exemplar:
    """``{labels} value [timestamp]``, what follows a sample's ``#``."""
    text = text.strip()
    if not text.startswith("{"):
        raise MetricsError(f"line {line}: malformed exemplar in {raw[:160]!r}")
    close = text.rfind("}")  # (a value or a timestamp has none)
    found = _plain_labels(text[1:close]) if "\\" not in text and close != -1 else None
    if found is not None:
        labels, rest = found, text[close + 1 :]
    else:
        labels, rest = _label_set(text, line, raw)
    parts = rest.split()
    if not 1 <= len(parts) <= 2:
        raise MetricsError(f"line {line}: expected an exemplar's value (and a timestamp)")
    value = _number(parts[0], line)
    timestamp = _number(parts[1], line) if len(parts) == 2 else None
    return Exemplar(labels, value, timestamp)


def parse(text: str) -> Iterator[Sample]:
    """The samples of a metrics page, in order; :class:`MetricsError` at the first bad line.

    Prometheus's text format or OpenMetrics (exemplars; ``# EOF`` ends the page, and
    only blank lines may follow it).
    """
    lines = enumerate(text.splitlines(), 1)
    for number, raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            if line == "# EOF":
                for after, extra in lines:  # (the same walk, on to the end)
                    if extra.strip():
                        raise MetricsError(f"line {after}: {extra[:80]!r} after # EOF")
                return
            continue
        m = _NAME.match(line)
        if m is None:
            raise MetricsError(f"line {number}: no metric name in {raw[:80]!r}")
        name, rest = m.group(0), line[m.end() :]
        labels: dict[str, str] = {}
        tail = None  # an exemplar's text
        if rest.startswith("{") and "\\" not in rest:
            # no escape: the quick way (_plain_labels), the set ending at its last brace;
            # but an exemplar comes last, ' # {...} value [timestamp]': cut it off first
            # (the careful way when a label value has a '#')
            if "#" not in rest:
                close = rest.rfind("}")
            else:
                cut = rest.rfind(" # {")
                head = rest[:cut]
                # (within a value, the cut would leave an odd number of quotes before it)
                if cut != -1 and "#" not in head and not head.count('"') % 2:
                    rest, tail = head, rest[cut + 3 :]
                    close = rest.rfind("}")
                else:
                    close = _closing_brace(rest)
            plain = _plain_labels(rest[1:close]) if close != -1 else None
            if plain is None:
                raise MetricsError(f"line {number}: malformed labels in {raw[:120]!r}")
            labels, rest = plain, rest[close + 1 :]
        elif rest.startswith("{"):
            labels, rest = _label_set(rest, number, raw)
        if tail is None and "#" in rest:  # (a value or a timestamp has none)
            rest, _, tail = rest.partition("#")
        exemplar = None if tail is None else _exemplar(tail, number, raw)
        parts = rest.split()
        if not 1 <= len(parts) <= 2:
            raise MetricsError(f"line {number}: expected a value (and a timestamp) after {name}")
        yield Sample(name, labels, _number(parts[0], number), exemplar)


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
    errors: list[Exemplar] = field(default_factory=list)  # the 5xx counters' exemplars
    buckets: list[tuple[str, Exemplar]] = field(default_factory=list)  # (le, exemplar)


class PageIndex:
    """A page's SLO counters, summed once by (direction, destination, route) and by
    (direction, destination) over its routes: each objective is then one lookup.
    The exemplars of 5xx counters and of buckets are kept by the same keys."""

    def __init__(self, samples: Iterable[Sample]) -> None:
        self.scopes: dict[tuple[str, str, str | None], _Scope] = {}
        self.exemplars = False
        """Whether any counter of the SLOs' families has an exemplar."""
        for s in samples:
            name = s.name
            if name not in _FAMILIES:
                continue
            labels = s.labels
            if name in _CALLER_FAMILIES:  # inbound, by caller: a scope of its own
                caller = labels.get("caller")
                direction = None if caller is None else _by_caller(caller)
                name = _CALLER_FAMILIES[name]
            else:
                direction = labels.get("direction")
            destination = labels.get("destination")
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
                        if s.exemplar is not None:
                            scope.errors.append(s.exemplar)
                            self.exemplars = True
                elif name == "seawall_request_duration_seconds_count":
                    scope.seen_count = True
                    scope.count += s.value
                else:
                    le = labels.get("le", "")
                    scope.within[le] = scope.within.get(le, 0.0) + s.value
                    if s.exemplar is not None:
                        scope.buckets.append((le, s.exemplar))
                        self.exemplars = True


def _bound(le: str) -> float:
    """A bucket's ``le`` as a number (NaN when it is none: above no threshold)."""
    try:
        return float(le)  # ("+Inf" included)
    except ValueError:
        return math.nan


_CALLER_FAMILIES = {
    "seawall_caller_requests_total": "seawall_requests_total",
    "seawall_caller_request_duration_seconds_count": "seawall_request_duration_seconds_count",
    "seawall_caller_request_duration_seconds_bucket": "seawall_request_duration_seconds_bucket",
}
"""An inbound sidecar's counts by caller, and the route family each one reads as."""

_FAMILIES = frozenset(
    {
        "seawall_requests_total",
        "seawall_request_duration_seconds_count",
        "seawall_request_duration_seconds_bucket",
        *_CALLER_FAMILIES,
    }
)


def _by_caller(caller: str) -> str:
    """The scope key's direction of one caller's inbound requests."""
    return f"inbound from {caller}"


def _scope(
    objective: Objective, slo: SloConfig, page_service: str, page: PageIndex
) -> _Scope | None:
    """What ``objective`` counts on the page of a sidecar of ``page_service``, if any."""
    service = objective.service or objective.slo
    if slo.measured_at == "server":
        if page_service != service:
            return None
        direction = "inbound" if slo.caller is None else _by_caller(slo.caller)
    else:
        if page_service == service or (slo.caller is not None and page_service != slo.caller):
            return None
        direction = "outbound"
    return page.scopes.get((direction, service, slo.route))


def counters(
    objective: Objective, slo: SloConfig, page_service: str, page: PageIndex
) -> tuple[float, float] | None:
    """``(total, bad)`` of ``objective`` on the page of a sidecar of ``page_service``;
    ``None`` when that sidecar does not measure it (or lacks the threshold's bucket)."""
    scope = _scope(objective, slo, page_service, page)
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


def bad_exemplars(
    objective: Objective, slo: SloConfig, page_service: str, page: PageIndex, seen_at: float
) -> list[BadExemplar]:
    """The exemplars of ``objective``'s bad events on the page of a sidecar of
    ``page_service``: the 5xx counters' (availability), or the buckets' above the
    threshold (latency: ``le`` above it, ``+Inf`` included, and a latency above it).
    Those without a trace id (``trace_id``, 32 hex digits, not all zero) are left out;
    one without a timestamp is dated ``seen_at``; one older than the objective's longest
    alert window before ``seen_at`` is left out too (a sidecar keeps an exemplar until a
    newer request replaces it: days later, its trace may be gone)."""
    scope = _scope(objective, slo, page_service, page) if page.exemplars else None
    if scope is None:
        return []
    kind: Kind
    if objective.kind == "availability":
        kind, picked = "error", scope.errors
    else:
        threshold = objective.threshold
        assert threshold is not None
        kind = "slow"
        picked = [e for le, e in scope.buckets if _bound(le) > threshold and e.value > threshold]
    oldest = seen_at - max(a.long for a in objective.alerts.burn)
    found = []
    for e in picked:
        trace_id = e.labels.get("trace_id", "").lower()
        if _TRACE_ID.fullmatch(trace_id) and trace_id != "0" * 32:
            at = e.timestamp if e.timestamp is not None and math.isfinite(e.timestamp) else seen_at
            if at >= oldest:
                found.append(BadExemplar(trace_id, kind, e.value, at))
    return found
