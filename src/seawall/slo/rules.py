"""Prometheus recording and alerting rules for the SLOs of a mesh (``seawall slo rules``).

The same objectives, windows and alerts as the embedded evaluator, as
Prometheus evaluates them from the sidecars' own metrics, named as Sloth
names them, so dashboards made for Sloth's rules read these:

* ``slo:sli_error:ratio_rate<w>`` for every window an alert uses (and the
  period): the bad share of the requests over ``w``; for timeslices the bad
  share of the ``slice``-long stretches, from ``slo:sli_bad_slice:ratio<slice>``
  recorded once a stretch (the group's ``interval`` is the slice);
* ``slo:sli_total:increase<w>`` for every long window: its requests (the
  alerts' ``min_events``, requests whatever the budgeting);
* ``slo:objective:ratio``, ``slo:error_budget:ratio``,
  ``slo:current_burn_rate:ratio`` (over the shortest short window) and
  ``slo:period_error_budget_remaining:ratio``;
* one ``SLOBurnRate`` alert per ``alerts.burn`` entry, with the labels the
  embedded evaluator gives it (``slo``, ``objective``, ``severity``,
  ``long``, ``short``), and one ``SLODataMissing`` alert.

Every series has the labels ``slo``, ``objective`` (``availability`` or
``latency``) and ``service``. What they are computed from:

* ``measured_at: server``: the service's inbound sidecars,
  ``seawall_requests_total{direction="inbound", destination="<service>"}``
  (and ``route`` when the SLO has one); with a ``caller``, their counts by
  caller, ``seawall_caller_requests_total{destination="<service>",
  caller="<caller>"}`` and ``seawall_caller_request_duration_seconds``;
* ``measured_at: callers``: its callers' outbound sidecars,
  ``direction="outbound", destination="<service>"``; with a ``caller``, only
  the targets labelled ``seawall_service="<caller>"`` by the scrape config
  (see ``docs/slo/README.md``);
* availability: bad is ``status_class="5xx"``; latency: good is the bucket
  ``le="<threshold>"`` of ``seawall_request_duration_seconds``.

A calendar window has no Prometheus form: its period rules use the
calendar's length (``month``: 30d, ``week``: 7d) as a rolling window, and
say so in a ``window`` label. Journeys are the embedded evaluator's only.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..config.model import MeshConfig, SloConfig
from .alerts import span
from .evaluate import Objective, objectives
from .scrape import le_label

__all__ = ["prometheus_rules", "rules_yaml"]


_CALENDAR = {"month": 30 * 86_400.0, "week": 7 * 86_400.0}


def _selector(name: str, slo: SloConfig, service: str, extra: dict[str, str]) -> str:
    by_caller = slo.caller is not None and slo.measured_at == "server"
    labels: dict[str, str] = {}
    if not by_caller:
        labels["direction"] = "inbound" if slo.measured_at == "server" else "outbound"
    labels["destination"] = service
    if slo.route is not None:
        labels["route"] = slo.route
    if by_caller:
        # the server's counts of one caller's requests: a family of their own
        name = name.replace("seawall_", "seawall_caller_", 1)
        labels["caller"] = str(slo.caller)
    elif slo.caller is not None:
        labels["seawall_service"] = slo.caller
    labels.update(extra)
    inside = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inside}}}"


def _error_ratio(o: Objective, slo: SloConfig, service: str, window: str) -> str:
    """The bad share of the requests over ``window`` (PromQL)."""
    if o.kind == "availability":
        total = _selector("seawall_requests_total", slo, service, {})
        bad = _selector("seawall_requests_total", slo, service, {"status_class": "5xx"})
        return f"sum(rate({bad}[{window}])) / sum(rate({total}[{window}]))"
    assert o.threshold is not None
    count = _selector("seawall_request_duration_seconds_count", slo, service, {})
    good = _selector(
        "seawall_request_duration_seconds_bucket", slo, service, {"le": le_label(o.threshold)}
    )
    return f"1 - (sum(rate({good}[{window}])) / sum(rate({count}[{window}])))"


def _total(o: Objective, slo: SloConfig, service: str, window: str) -> str:
    name = "seawall_requests_total" if o.kind == "availability" else (
        "seawall_request_duration_seconds_count"
    )  # fmt: skip
    return f"sum(increase({_selector(name, slo, service, {})}[{window}]))"


def _objective_rules(name: str, slo: SloConfig, o: Objective) -> list[dict[str, Any]]:
    service = slo.service or name
    labels = {"slo": name, "objective": o.kind, "service": service}
    match = f'{{slo="{name}",objective="{o.kind}"}}'
    budget_text = f"{o.budget:.12g}"
    rules: list[dict[str, Any]] = []
    windows = sorted({a.short for a in o.alerts.burn} | {a.long for a in o.alerts.burn})
    period = o.window.rolling or _CALENDAR[o.window.calendar or "month"]
    period_labels = dict(labels)
    if o.window.calendar is not None:
        period_labels["window"] = f"calendar {o.window.calendar} as {span(period)} rolling"
    timeslices = o.budgeting.method == "timeslices"
    slice_span = span(o.budgeting.slice)
    if timeslices:
        # the bad share of each stretch, then the share of bad stretches over a window
        good_when = (o.budgeting.good_when or o.target) / 100.0
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{slice_span}",
                "expr": _error_ratio(o, slo, service, slice_span),
                "labels": labels,
            }
        )
        # each stretch's verdict is recorded once per evaluation (the group's interval is
        # the slice): the windows average recorded samples, not a month-long subquery
        rules.append(
            {
                "record": f"slo:sli_bad_slice:ratio{slice_span}",
                "expr": f"slo:sli_error:ratio_rate{slice_span}{match} > bool {1 - good_when:.12g}",
                "labels": labels,
            }
        )
        bad_slice = f"slo:sli_bad_slice:ratio{slice_span}{match}"
    for seconds in [*windows, period]:
        w = span(seconds)
        if timeslices:
            expr = f"avg_over_time({bad_slice}[{w}])"
        else:
            expr = _error_ratio(o, slo, service, w)
        rules.append(
            {
                "record": f"slo:sli_error:ratio_rate{w}",
                "expr": expr,
                "labels": period_labels if seconds == period else labels,
            }
        )
    for seconds in sorted({a.long for a in o.alerts.burn}):
        w = span(seconds)
        rules.append(
            {
                "record": f"slo:sli_total:increase{w}",
                "expr": _total(o, slo, service, w),
                "labels": labels,
            }
        )
    shortest = span(min(a.short for a in o.alerts.burn))
    rules += [
        {"record": "slo:objective:ratio", "expr": f"{o.target / 100:.12g}", "labels": labels},
        {"record": "slo:error_budget:ratio", "expr": budget_text, "labels": labels},
        {
            "record": "slo:current_burn_rate:ratio",
            "expr": f"slo:sli_error:ratio_rate{shortest}{match} / {budget_text}",
            "labels": labels,
        },
        {
            "record": "slo:period_error_budget_remaining:ratio",
            "expr": f"1 - slo:sli_error:ratio_rate{span(period)}{match} / {budget_text}",
            "labels": period_labels,
        },
    ]
    for a in o.alerts.burn:
        long, short = span(a.long), span(a.short)
        threshold = f"({a.burn_rate:g} * {budget_text})"
        rules.append(
            {
                "alert": "SLOBurnRate",
                "expr": f"(slo:sli_error:ratio_rate{long}{match} >= {threshold})"
                f" and on() (slo:sli_error:ratio_rate{short}{match} >= {threshold})"
                f" and on() (slo:sli_total:increase{long}{match} >= {o.alerts.min_events})",
                "for": span(a.for_) if a.for_ else "0s",
                "labels": {
                    "slo": name,
                    "objective": o.kind,
                    "severity": a.severity,
                    "long": long,
                    "short": short,
                },
                "annotations": {
                    "summary": f"{o.name} burns its error budget at {a.burn_rate:g}x or more"
                    f" over {long} and {short}",
                },
            }
        )
    total_series = _selector(
        "seawall_requests_total" if o.kind == "availability" else (
            "seawall_request_duration_seconds_count"
        ),
        slo, service, {},
    )  # fmt: skip
    rules.append(
        {
            "alert": "SLODataMissing",
            "expr": f"absent({total_series})",
            "for": span(min(a.short for a in o.alerts.burn)),
            "labels": {"slo": name, "objective": o.kind, "severity": "ticket"},
            "annotations": {"summary": f"{o.name}: no sidecar reports its requests"},
        }
    )
    return rules


class _Dumper(yaml.SafeDumper):
    """Plain YAML: every label set written out, no anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def rules_yaml(mesh: MeshConfig) -> str:
    """:func:`prometheus_rules` as the text of a rule file."""
    return yaml.dump(prometheus_rules(mesh), Dumper=_Dumper, sort_keys=False, width=1000)


def prometheus_rules(mesh: MeshConfig) -> dict[str, Any]:
    """The rule file (as data: ``yaml.safe_dump`` it) for every SLO of ``mesh`` (a
    journey has no rules: the embedded evaluator's only)."""
    groups = []
    for name, slo in mesh.slos.items():
        if slo.journey is not None:
            continue
        rules: list[dict[str, Any]] = []
        for o in objectives({name: slo}):
            rules += _objective_rules(name, slo, o)
        group: dict[str, Any] = {"name": f"seawall-slo-{name}"}
        if slo.budgeting.method == "timeslices":
            group["interval"] = span(slo.budgeting.slice)  # a verdict per stretch
        groups.append({**group, "rules": rules})
    return {"groups": groups}
