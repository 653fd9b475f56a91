"""Example traces of an objective's bad requests: the exemplars its sidecars keep.

In OpenMetrics mode (the scrape asks for ``application/openmetrics-text``)
a sidecar's samples may carry an exemplar, the trace of one request they
counted: ``seawall_requests_total{...,status_class="5xx"}`` the last sampled
request answered with that class, each ``seawall_request_duration_seconds_bucket``
the last sampled request that fell in that bucket (its latency as the value).
:func:`~seawall.slo.scrape.bad_exemplars` picks, on one page, those of an
objective's *bad* events: 5xx for availability, buckets above the threshold
for latency. :class:`RecentExemplars` keeps the last few of them per
objective, newest first, for ``GET /v1/slos`` and the ``/ui/slos`` page to
link each to its trace.

Only requests whose trace was sampled have exemplars, so an objective can
burn with none to show. Sans-I/O: told the exemplars and the time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_KEEP", "BadExemplar", "RecentExemplars"]

DEFAULT_KEEP = 5
"""Exemplars kept per objective: enough to open a few traces, small in ``GET /v1/slos``."""

Kind = Literal["error", "slow"]


@dataclass(frozen=True, slots=True)
class BadExemplar:
    """A trace of a request that spent an objective's budget.

    Attributes:
        trace_id: 32 lowercase hex digits.
        kind: ``"error"`` (answered 5xx) or ``"slow"`` (above the latency threshold).
        value: the exemplar's value: 1 for a request counted (errors), the request's
            latency in seconds (slow).
        at: Unix seconds: when the sidecar recorded it (the exemplar's timestamp), or
            when a scrape first saw it if the sidecar gave none.
    """

    trace_id: str
    kind: Kind
    value: float
    at: float

    def to_json(self) -> dict[str, Any]:
        return {"trace_id": self.trace_id, "kind": self.kind, "value": self.value, "at": self.at}


class RecentExemplars:
    """The ``size`` newest exemplars of one objective, one per trace, newest first.

    A sidecar shows the same exemplar on every page until a newer request
    replaces it: a trace seen again keeps its first entry (and time), and one
    already pushed out by newer ones stays out (the last ``remember`` traces
    are remembered), so an exemplar without a timestamp of its own never looks
    new again.
    """

    def __init__(self, size: int = DEFAULT_KEEP, *, remember: int = 256) -> None:
        if size < 1:
            raise ValueError(f"RecentExemplars: size must be >= 1, got {size!r}")
        self.size = size
        self.remember = max(remember, size)
        self._items: list[BadExemplar] = []
        self._seen: dict[str, None] = {}  # trace ids, oldest first (a bounded ordered set)

    def add(self, found: Iterable[BadExemplar]) -> None:
        """Take the exemplars of a page (any order); the oldest beyond ``size`` go."""
        fresh = False
        for e in found:
            if e.trace_id in self._seen:
                continue
            self._seen[e.trace_id] = None
            self._items.append(e)
            fresh = True
        if fresh:
            self._items.sort(key=lambda e: e.at, reverse=True)
            del self._items[self.size :]
            for old in list(self._seen)[: max(0, len(self._seen) - self.remember)]:
                del self._seen[old]
            for e in self._items:  # (those kept are always remembered)
                self._seen.setdefault(e.trace_id)

    @property
    def items(self) -> list[BadExemplar]:
        """Newest first."""
        return list(self._items)


def newest(groups: Iterable[Iterable[BadExemplar]], size: int = DEFAULT_KEEP) -> list[BadExemplar]:
    """The ``size`` newest of several objectives' exemplars, one per trace (a journey's)."""
    keeper = RecentExemplars(size)
    for group in groups:
        keeper.add(group)
    return keeper.items
