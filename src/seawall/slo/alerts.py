"""Burn-rate alerts: pending, firing, resolved; and Alertmanager's webhook payload.

Each objective has one alert per ``alerts.burn`` entry (by default the SRE
workbook's four: page at 14.4x over 1h and 5m, or 6x over 6h and 30m; ticket
at 3x over 1d and 2h, or 1x over 3d and 6h), and one for missing data.

* **Burning**: both windows burn at least ``burn_rate``, and the long window
  holds at least ``alerts.min_events`` requests (whatever the budgeting), so a
  quiet night's two failures in three requests do not page.
* **No data**: the objective has had data, and less than half of the
  shortest short window is covered now (its sidecars stopped answering).

An alert whose condition holds becomes *pending*; held for its ``for`` (0 by
default: at once) it is *firing*; when the condition stops, a firing alert
is *resolved* (a pending one goes back to nothing, unnoticed). Each change a
receiver must hear of, firing or resolved, is one :class:`Notice`, once:
re-evaluating an unchanged state yields nothing, and a notice that failed to
send is retried as the same notice (same fingerprint and status), so
Alertmanager and its receivers deduplicate it.

Sans-I/O: :meth:`AlertTracker.update` is told the statuses and the time; the
webhook sender (I/O, retries) is elsewhere.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from .evaluate import MIN_COVERAGE, ObjectiveStatus

__all__ = ["Alert", "AlertTracker", "Notice", "webhook_payload"]

State = Literal["pending", "firing"]


@dataclass(slots=True)
class Alert:
    """One alert that is pending or firing."""

    labels: dict[str, str]
    annotations: dict[str, str]
    state: State
    active_since: float
    """When its condition began to hold (``startsAt`` once it fires)."""
    fired_at: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True, slots=True)
class Notice:
    """A change a receiver hears of: ``firing`` (with when it began) or ``resolved``."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = field(hash=False)
    annotations: dict[str, str] = field(hash=False)
    starts_at: float
    ends_at: float | None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


def fingerprint(labels: dict[str, str]) -> str:
    """A stable id of an alert: a hash of its sorted labels (16 hex digits)."""
    text = "\xff".join(f"{k}\xfe{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Condition:
    """An alert's identity and text, whether it holds now, and its ``for``."""

    labels: dict[str, str]
    annotations: dict[str, str]
    holds: bool
    hold_for: float = 0.0

    @property
    def key(self) -> str:
        return fingerprint(self.labels)


def _burn_alerts(status: ObjectiveStatus, min_events: int) -> Iterable[_Condition]:
    """Each burn-rate alert of ``status``."""
    slo, _, kind = status.name.partition(":")
    for b in status.burn:
        a = b.alert
        holds = (
            b.long is not None
            and b.short is not None
            and b.long >= a.burn_rate
            and b.short >= a.burn_rate
            and b.long_events >= min_events
        )
        labels = {
            "alertname": "SLOBurnRate",
            "slo": slo,
            "objective": kind or "journey",
            "severity": a.severity,
            "long": span(a.long),
            "short": span(a.short),
        }
        if status.service:  # as Prometheus's rules have it, from the recorded series
            labels["service"] = status.service
        left = status.budget_remaining
        text = {
            "summary": f"{status.name} burns its error budget at {_x(b.long)} over"
            f" {labels['long']} and {_x(b.short)} over {labels['short']}"
            f" (alert at {a.burn_rate:g}x)",
            "budget_remaining": "" if left is None else f"{left:.4f}",
        }
        yield _Condition(labels, text, holds, a.for_)


def _x(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.2f}x"


def span(seconds: float) -> str:
    """A duration as Prometheus writes one: ``5m``, ``1h``, ``3d``, ``90s``, ``1500ms``."""
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


class AlertTracker:
    """The alerts of every objective, from one evaluation to the next."""

    def __init__(self) -> None:
        self._active: dict[str, Alert] = {}
        self._had_data: set[str] = set()

    @property
    def active(self) -> list[Alert]:
        """The pending and firing alerts, by fingerprint."""
        return [self._active[k] for k in sorted(self._active)]

    def update(self, statuses: Sequence[tuple[ObjectiveStatus, int]], now: float) -> list[Notice]:
        """Judge every alert of these ``(status, min_events)`` at ``now``: the notices to
        send (alerts that fired, alerts resolved)."""
        notices: list[Notice] = []
        seen: set[str] = set()
        for status, min_events in statuses:
            for condition in (*_burn_alerts(status, min_events), self._no_data(status)):
                seen.add(condition.key)
                notices.extend(self._step(condition, now))
        for key in [k for k in self._active if k not in seen]:  # its objective is gone
            alert = self._active[key]
            notices.extend(self._step(_Condition(alert.labels, alert.annotations, False), now))
        return notices

    def _no_data(self, status: ObjectiveStatus) -> _Condition:
        slo, _, kind = status.name.partition(":")
        if status.total > 0:
            self._had_data.add(status.name)
        holds = status.name in self._had_data and status.recent_coverage < MIN_COVERAGE
        labels = {
            "alertname": "SLODataMissing",
            "slo": slo,
            "objective": kind or "journey",
            "severity": "ticket",
        }
        text = {
            "summary": f"{status.name}: {status.recent_coverage:.0%} of the last minutes is"
            " covered by data; its sidecars stopped answering the control plane's scrapes"
        }
        return _Condition(labels, text, holds)

    def _step(self, condition: _Condition, now: float) -> list[Notice]:
        key = condition.key
        alert = self._active.get(key)
        if condition.holds:
            if alert is None:
                alert = Alert(condition.labels, condition.annotations, "pending", now)
                self._active[key] = alert
            alert.annotations = condition.annotations
            if alert.state == "pending" and now - alert.active_since >= condition.hold_for:
                alert.state, alert.fired_at = "firing", now
                return [Notice("firing", alert.labels, alert.annotations, alert.active_since, None)]
            return []
        if alert is None:
            return []
        del self._active[key]
        if alert.state == "firing":
            return [Notice("resolved", alert.labels, alert.annotations, alert.active_since, now)]
        return []


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended" endsAt


def webhook_payload(
    notices: Sequence[Notice], *, receiver: str = "seawall", external_url: str = ""
) -> dict[str, Any]:
    """Alertmanager's webhook JSON (version 4) for a group of notices of one alertname.

    ``groupKey`` names the group; ``status`` is ``firing`` if any notice is.
    """
    if not notices:
        raise ValueError("a webhook payload needs at least one notice")
    names = {n.labels.get("alertname", "") for n in notices}
    if len(names) != 1:
        raise ValueError(f"one alertname per payload, got {sorted(names)}")
    common = dict(notices[0].labels)
    for n in notices[1:]:
        common = {k: v for k, v in common.items() if n.labels.get(k) == v}
    common_annotations = dict(notices[0].annotations)
    for n in notices[1:]:
        common_annotations = {
            k: v for k, v in common_annotations.items() if n.annotations.get(k) == v
        }
    group_labels = {"alertname": names.pop()}
    return {
        "version": "4",
        "groupKey": '{}:{alertname="' + group_labels["alertname"] + '"}',
        "truncatedAlerts": 0,
        "status": "firing" if any(n.status == "firing" for n in notices) else "resolved",
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common,
        "commonAnnotations": common_annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": n.status,
                "labels": n.labels,
                "annotations": n.annotations,
                "startsAt": _rfc3339(n.starts_at),
                "endsAt": _ZERO_TIME if n.ends_at is None else _rfc3339(n.ends_at),
                "generatorURL": external_url,
                "fingerprint": n.fingerprint,
            }
            for n in notices
        ],
    }
