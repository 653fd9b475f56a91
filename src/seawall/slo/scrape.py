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
from dataclasses import dataclass

from ..config.model import SloConfig
from .evaluate import Objective

__all__ = ["MetricsError", "Sample", "counters", "le_label", "parse"]


class MetricsError(ValueError):
    """A malformed metrics page: the line and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
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
        if rest.startswith("{"):
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


def counters(
    objective: Objective, slo: SloConfig, page_service: str, samples: Iterable[Sample]
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
    want = {"direction": direction, "destination": service}
    if slo.route is not None:
        want["route"] = slo.route
    total = bad = 0.0
    found = bucket_found = False
    le = None if objective.threshold is None else le_label(objective.threshold)
    for s in samples:
        if not all(s.labels.get(k) == v for k, v in want.items()):
            continue
        if objective.kind == "availability":
            if s.name == "seawall_requests_total":
                found = True
                total += s.value
                if s.labels.get("status_class") == "5xx":
                    bad += s.value
        elif s.name == "seawall_request_duration_seconds_count":
            found = True
            total += s.value
            bad += s.value
        elif s.name == "seawall_request_duration_seconds_bucket" and s.labels.get("le") == le:
            bucket_found = True
            bad -= s.value  # bad = count - within the threshold
    if not found or (objective.kind == "latency" and not bucket_found):
        return None
    return total, max(0.0, min(bad, total))
