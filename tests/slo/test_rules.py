"""`seawall slo rules`: promtool checks the rules, promtool's unit tests run them on
synthetic series, and the embedded evaluator agrees with Prometheus on those series."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from seawall.config import parse_mesh
from seawall.config.model import MeshConfig
from seawall.slo import AlertTracker, EventSeries, evaluate, objectives
from seawall.slo.rules import rules_yaml

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus) is installed by `make test`"
)
SIDECAR = {"inbound": 18001, "outbound": 15001, "admin": 19001}


def mesh(slos: dict[str, Any]) -> MeshConfig:
    return parse_mesh(
        {
            "mesh": "shop",
            "services": {
                "gateway": {"port": 8001, "sidecar": SIDECAR},
                "orders": {
                    "port": 8002,
                    "sidecar": {"inbound": 18002, "outbound": 15002, "admin": 19002},
                },
            },
            "policies": {"orders": {"routes": [{"name": "checkout",
                                                "match": {"path_prefix": "/checkout"}}]}},
            "slos": slos,
        }
    )  # fmt: skip


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


EVERY_KIND = {
    "gateway": {"availability": "99.9%", "latency": {"threshold": "300ms", "percent": "99%"}},
    "checkout": {"service": "orders", "route": "checkout", "availability": "99.5%",
                 "window": {"calendar": "month", "timezone": "Europe/Paris"}},
    "orders-from-gateway": {"service": "orders", "caller": "gateway", "measured_at": "callers",
                            "availability": "99%", "budgeting": {"method": "timeslices",
                                                                 "good_when": "95%"},
                            "alerts": {"burn": [{"severity": "page", "long": "1h",
                                                 "short": "5m", "burn_rate": 14.4,
                                                 "for": "2m"}], "min_events": 10}},
    "journey": {"journey": {"of": ["gateway", "checkout"]}},
}  # fmt: skip


@needs_promtool
def test_promtool_checks_the_rules_of_every_kind(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(mesh(EVERY_KIND)))
    checked = promtool("check", "rules", rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    groups = yaml.safe_load(rules.read_text())["groups"]
    assert [g["name"] for g in groups] == [
        "seawall-slo-gateway", "seawall-slo-checkout", "seawall-slo-orders-from-gateway",
    ]  # fmt: skip
    records = {r.get("record") for g in groups for r in g["rules"]}
    assert {"slo:sli_error:ratio_rate5m", "slo:sli_error:ratio_rate30d",
            "slo:sli_error:ratio_rate3d", "slo:objective:ratio", "slo:error_budget:ratio",
            "slo:current_burn_rate:ratio",
            "slo:period_error_budget_remaining:ratio"} <= records  # fmt: skip
    checkout = {r.get("record"): r for r in groups[1]["rules"]}
    assert 'route="checkout"' in checkout["slo:sli_error:ratio_rate1h"]["expr"]
    assert checkout["slo:sli_error:ratio_rate30d"]["labels"]["window"] == (
        "calendar month as 30d rolling"
    )
    gateway = groups[0]["rules"]
    latency = next(r for r in gateway if r.get("record") == "slo:sli_error:ratio_rate5m"
                   and r["labels"]["objective"] == "latency")  # fmt: skip
    assert 'le="0.3"' in latency["expr"]
    callers = groups[2]["rules"][0]
    assert 'direction="outbound"' in callers["expr"]
    assert 'seawall_service="gateway"' in callers["expr"]


def test_a_caller_at_the_server_reads_the_servers_counts_by_caller() -> None:
    slos = {"orders": {"caller": "gateway", "availability": "99%",
                       "latency": {"threshold": "300ms", "percent": "95%"}}}  # fmt: skip
    rules = yaml.safe_load(rules_yaml(mesh(slos)))["groups"][0]["rules"]
    ratio = [r for r in rules if r.get("record") == "slo:sli_error:ratio_rate5m"]
    availability, latency = sorted(ratio, key=lambda r: str(r["labels"]["objective"]))
    assert 'seawall_caller_requests_total{destination="orders",caller="gateway"' in (
        availability["expr"]
    )
    assert "direction" not in availability["expr"]
    assert 'seawall_caller_request_duration_seconds_bucket{destination="orders",' in (
        latency["expr"]
    )


def test_the_cli_writes_the_rules_and_reports_a_bad_file(tmp_path: Path) -> None:
    out = tmp_path / "rules.yaml"
    ok = subprocess.run(
        [sys.executable, "-m", "seawall", "slo", "rules", "-f",
         str(ROOT / "examples/shop/mesh.yaml"), "-o", str(out)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(out.read_text())["groups"][0]["name"] == "seawall-slo-checkout"
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh: shop\nservices: {a: {port: 1, sidecar: {inbound: 2, outbound: 3,"
                   " admin: 4}}}\nslos: {a: {availability: 100%}}\n")  # fmt: skip
    failed = subprocess.run(
        [sys.executable, "-m", "seawall", "slo", "rules", "-f", str(bad)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "slos.a.availability: must be < 100%" in failed.stderr


# ---------------------------------------------------------------- synthetic series


def minutes(*parts: tuple[int, float, float]) -> list[tuple[float, float]]:
    """Per-minute (requests, bad share) for ``(minutes, requests, share)`` parts."""
    return [(n, share) for count, n, share in parts for _ in range(count)]


def counters(shape: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """The 2xx and 5xx counters, sample 0 first, one sample a minute."""
    ok, bad = [0.0], [0.0]
    for n, share in shape:
        ok.append(ok[-1] + n * (1 - share))
        bad.append(bad[-1] + n * share)
    return ok, bad


def series_text(ok: list[float], bad: list[float], labels: str) -> list[dict[str, str]]:
    def values(v: list[float]) -> str:
        return " ".join(f"{x:g}" for x in v)

    return [
        {"series": f"seawall_requests_total{{{labels},status_class=\"2xx\"}}",
         "values": values(ok)},
        {"series": f"seawall_requests_total{{{labels},status_class=\"5xx\"}}",
         "values": values(bad)},
    ]  # fmt: skip


def embedded_firing(config: MeshConfig, name: str, ok: list[float], bad: list[float],
                    at: list[int]) -> dict[int, list[dict[str, str]]]:  # fmt: skip
    """The embedded evaluator's firing SLOBurnRate alerts at each minute of ``at``."""
    (objective,) = objectives({name: config.slos[name]})
    min_events = config.slos[name].alerts.min_events
    series = EventSeries(resolution=60)
    tracker = AlertTracker()
    firing: dict[int, list[dict[str, str]]] = {}
    for minute, (good, failed) in enumerate(zip(ok, bad, strict=True)):
        now = minute * 60.0
        series.observe("sidecar", now, good + failed, failed)
        status = evaluate(objective, series, now)
        tracker.update([(status, min_events)], now)
        if minute in at:
            firing[minute] = sorted(
                (a.labels for a in tracker.active
                 if a.state == "firing" and a.labels["alertname"] == "SLOBurnRate"),
                key=lambda labels: (labels["long"], labels["short"]),
            )  # fmt: skip
    return firing


@needs_promtool
def test_the_embedded_evaluator_and_prometheus_agree(tmp_path: Path) -> None:
    config = mesh({"gateway": {"availability": "99%"}})
    # a clean day, a full outage, a recovery, a slow leak of 7% errors, the end of it
    shape = minutes((1440, 100, 0.0), (20, 100, 1.0), (60, 100, 0.0), (360, 100, 0.07),
                    (240, 100, 0.0))  # fmt: skip
    ok, bad = counters(shape)
    at = list(range(1440, len(ok), 10))
    firing = embedded_firing(config, "gateway", ok, bad, at)
    # the stories are there: the outage pages on the 1h window, the leak on the 6h one
    assert any(labels["long"] == "1h" for alerts in firing.values() for labels in alerts)
    assert any(labels["long"] == "6h" for alerts in firing.values() for labels in alerts)
    assert any(not alerts for alerts in firing.values())
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(config))
    summaries = {  # the rules' own annotations, by (long, short)
        (r["labels"]["long"], r["labels"]["short"]): r["annotations"]
        for g in yaml.safe_load(rules.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "SLOBurnRate"
    }

    def expected(alert: dict[str, str]) -> dict[str, Any]:
        labels = {k: v for k, v in alert.items() if k != "alertname"}
        return {"exp_labels": labels,
                "exp_annotations": summaries[alert["long"], alert["short"]]}  # fmt: skip

    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series_text(
                    ok, bad, 'direction="inbound",destination="gateway",route="inbound"'
                ),
                "alert_rule_test": [
                    {
                        "eval_time": f"{minute}m",
                        "alertname": "SLOBurnRate",
                        "exp_alerts": [expected(a) for a in alerts],
                    }
                    for minute, alerts in firing.items()
                ],
            }
        ],
    }
    unit = tmp_path / "test.yaml"
    unit.write_text(yaml.safe_dump(tests, sort_keys=False, width=100_000))
    ran = promtool("test", "rules", unit)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]


@needs_promtool
@pytest.mark.parametrize("kind", ["availability", "latency", "timeslices"])
def test_promtool_unit_tests_of_each_kind(tmp_path: Path, kind: str) -> None:
    """Hand-computed: 100 requests a minute; from minute 60 every one is bad. The 1h/5m
    page fires when 14.4% of the last hour is bad (occurrences: minute 69, 9 bad minutes
    of 60 being 15%, 8 being 13.3%), and not before."""
    slo: dict[str, Any] = {"availability": "99%"}
    if kind == "latency":
        slo = {"latency": {"threshold": "300ms", "percent": "99%"}}
    if kind == "timeslices":
        slo = {"availability": "99%", "budgeting": "timeslices"}
    config = mesh({"gateway": slo})
    rules = tmp_path / "rules.yaml"
    rules.write_text(rules_yaml(config))
    labels = 'direction="inbound",destination="gateway",route="inbound"'
    clean, outage = 1440, 30
    if kind == "latency":
        # the histogram: every request counted, those within 300ms in le="0.3"
        count = [100.0 * m for m in range(clean + outage + 1)]
        fast = [100.0 * min(m, clean) for m in range(clean + outage + 1)]
        series = [
            {"series": f'seawall_request_duration_seconds_count{{{labels}}}',
             "values": " ".join(f"{x:g}" for x in count)},
            {"series": f'seawall_request_duration_seconds_bucket{{{labels},le="0.3"}}',
             "values": " ".join(f"{x:g}" for x in fast)},
        ]  # fmt: skip
    else:
        ok, bad = counters(minutes((clean, 100, 0.0), (outage, 100, 1.0)))
        series = series_text(ok, bad, labels)
    objective = "latency" if kind == "latency" else "availability"
    page = {"slo": "gateway", "objective": objective, "service": "gateway",
            "severity": "page", "long": "1h", "short": "5m"}  # fmt: skip
    summary = {"summary": f"gateway:{objective} burns its error budget at 14.4x or more over"
               " 1h and 5m"}  # fmt: skip
    # occurrences: 9 bad minutes in the hour's 60 pass 14.4%; timeslices: the same count of
    # bad one-minute stretches (a stretch at 100% bad is bad against 99%)
    fires = clean + 9
    tests = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": f"{fires - 1}m", "alertname": "SLOBurnRate", "exp_alerts": []},
                    {"eval_time": f"{fires}m", "alertname": "SLOBurnRate",
                     "exp_alerts": [{"exp_labels": page, "exp_annotations": summary}]},
                ],
                "promql_expr_test": [
                    {"expr": 'slo:error_budget:ratio{slo="gateway"}', "eval_time": "0m",
                     "exp_samples": [{"labels": "slo:error_budget:ratio{objective=\""
                                      + page["objective"] + "\",service=\"gateway\","
                                      "slo=\"gateway\"}", "value": 0.01}]},
                ],
            }
        ],
    }  # fmt: skip
    unit = tmp_path / "test.yaml"
    unit.write_text(yaml.safe_dump(tests, sort_keys=False, width=100_000))
    ran = promtool("test", "rules", unit)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-4000:]
