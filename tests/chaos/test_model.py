"""The experiment file: validated like mesh.yaml, every error with its path; checked
against the running mesh before anything is injected; ``--fast`` scaling."""

from __future__ import annotations

from pathlib import Path

import pytest

from seawall.chaos.faults import overlay
from seawall.chaos.model import (
    FaultAction,
    PartitionAction,
    PolicyAction,
    check_against,
    load_experiment,
)
from seawall.config import ConfigError, load_mesh, parse_mesh

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"

GOOD = """
title: t
load:
  c: {service: gateway, path: /checkout, method: POST, json: {a: 1}, rate: 10}
steady_state:
  window: 10s
  probes:
    - {load: c, availability: 99%, latency: {threshold: 300ms, percent: 95%}}
method:
  duration: 20s
  actions:
    - {action: fault, service: payments, route: charge, abort: {status: 503, percent: 50%}}
    - {action: hang, service: email, at: 5s, for: 3s}
"""


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_experiment(text)
    return [str(e) for e in info.value.errors]


def test_a_valid_experiment_loads() -> None:
    exp = load_experiment(GOOD)
    assert exp.title == "t"
    assert exp.method.actions[1].at == 5.0
    assert exp.method.actions[1].for_ == 3.0
    assert exp.steady_state.probes[0].latency is not None
    assert exp.steady_state.probes[0].latency.threshold == 0.3


def test_every_error_with_its_path_and_line() -> None:
    text = """
title: t
load:
  c: {service: gateway, rate: 0}
steady_state:
  probes:
    - {load: nope, availability: 99%}
    - {metric: {service: orders, name: seawall_retries_total}}
    - {load: c}
method:
  duration: 10s
  settle: 20s
  actions:
    - {action: bogus}
    - {action: partition, between: [a, a]}
    - {service: x}
    - {action: hang, servce: x}
"""
    with pytest.raises(ConfigError) as info:
        load_experiment(text)
    got = [str(e) for e in info.value.errors]
    assert got == [
        "load.c.rate: must be > 0, got 0",
        "steady_state.probes[0].load: no such load (the file's: c), got 'nope'",
        "steady_state.probes[1]: metric: needs max or min, got {'metric': {'service': 'orders',"
        " 'name': 'seawall_retries...",
        "steady_state.probes[2]: load: needs availability, latency or max_failed,"
        " got {'load': 'c'}",
        "method.actions[0]: action: must be one of 'fault', 'policy', 'config', 'hang', 'kill',"
        " 'cpu', 'kill_control_plane', 'partition', 'cert_expiry', 'http', got 'bogus'",
        "method.actions[1]: between: two different services, got {'action': 'partition',"
        " 'between': ['a', 'a']}",
        "method.actions[2]: needs action, got {'service': 'x'}",
        "method.actions[3].servce: unknown key",
        "method.actions[3].service: required",
    ]
    # settle >= duration is said once the actions are valid
    fixed = text.split("  actions:", 1)[0] + "  actions:\n    - {action: hang, service: x}\n"
    assert "method: settle must be < duration (10s)" in "\n".join(errors(fixed))
    lines = {e.path: e.line for e in info.value.errors}
    assert lines["load.c.rate"] == 4
    assert lines["method.actions[3].servce"] == 17


def test_empty_and_non_mapping_files_are_refused() -> None:
    assert errors("title: t\n") == [
        "steady_state: required",
        "method: required",
    ]
    assert "must be a mapping" in errors("[1, 2]\n")[0]
    assert errors("{}\n")[0].startswith("title: required")


def test_probe_kinds_are_exclusive() -> None:
    bad = GOOD.replace("{load: c, availability: 99%,", "{load: c, slo: login, availability: 99%,")
    assert any("give exactly one of load, slo, service, metric, ratio, http (got load, slo)" in e
               for e in errors(bad))  # fmt: skip


def test_unknown_services_instances_routes_and_slos_are_refused_before_anything() -> None:
    mesh = load_mesh(SHOP / "mesh.yaml")
    exp = load_experiment(GOOD.replace("service: email", "service: emial")
                          .replace("route: charge", "route: refund")
                          + "    - {action: kill, service: orders, instance: orders-9}\n"
                          + "    - {action: partition, between: [orders, cardnet2]}\n")  # fmt: skip
    instances = {"gateway": "gateway", "orders": "orders", "orders-v2": "orders",
                 "payments": "payments", "email": "email", "login": "login"}  # fmt: skip
    problems = check_against(exp, mesh, instances)
    assert problems == [
        "method.actions[1].service: no service 'emial' in the mesh (its services: email,"
        " gateway, login, orders, payments)",
        "method.actions[3].between[1]: no service 'cardnet2' in the mesh (its services: email,"
        " gateway, login, orders, payments)",
        "method.actions[0].route: no route 'refund' in policies.payments (its routes: charge)",
        "method.actions[2].instance: no instance 'orders-9' of 'orders' (its instances: orders,"
        " orders-v2)",
    ]
    assert check_against(load_experiment(GOOD), mesh, instances) == []


def test_fast_scales_how_long_things_last_not_thresholds_or_delays() -> None:
    exp = load_experiment(GOOD.replace("abort: {status: 503, percent: 50%}",
                                       "delay: {duration: 2s, percent: 50%}"))  # fmt: skip
    fast = exp.scaled(0.25)
    assert fast.steady_state.window == 2.5
    assert fast.method.duration == 5.0
    assert fast.method.actions[1].at == 1.25
    assert fast.method.actions[1].for_ == 0.75
    assert isinstance(fast.method.actions[0], FaultAction)
    assert fast.method.actions[0].delay is not None
    assert fast.method.actions[0].delay.duration == 2.0
    probe = fast.steady_state.probes[0]
    assert probe.latency is not None
    assert probe.latency.threshold == 0.3


def test_config_overlays_are_valid_meshes_and_leave_the_base_alone() -> None:
    mesh = load_mesh(SHOP / "mesh.yaml")
    base = mesh.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    before = repr(base)
    fault = FaultAction.model_validate(
        {"action": "fault", "service": "orders", "abort": {"status": 503, "percent": 100}}
    )
    doc = overlay(base, fault)
    cfg = parse_mesh(doc)
    routes = cfg.policies["orders"].routes
    assert [r.name for r in routes] == ["place-order", "order-status", "chaos-1"]
    assert all(r.fault is not None and r.fault.abort is not None for r in routes)
    assert routes[2].split is None
    assert routes[0].split == {"v1": 100.0, "v2": 0.0}
    part = PartitionAction.model_validate({"action": "partition", "between": ["orders", "email"]})
    cut = overlay(doc, part)
    cfg = parse_mesh(cut)
    assert cfg.services["email"].authorization.refuse == ("orders",)
    assert cfg.services["orders"].authorization.refuse == ("email",)
    assert cfg.services["orders"].authorization.rules == mesh.services["orders"].authorization.rules
    # twice over is the same cut (a refusal already there is not listed again)
    assert parse_mesh(overlay(cut, part)).services["email"].authorization.refuse == ("orders",)
    budget = {"ratio": 1000, "min_per_second": 1000000}
    naive = PolicyAction.model_validate(
        {"action": "policy", "service": "payments",
         "set": {"retry": {"attempts": 5, "budget": budget}}})  # fmt: skip
    retry = parse_mesh(overlay(base, naive)).policies["payments"].retry
    assert (retry.attempts, retry.budget.ratio) == (5, 1000)
    assert retry.backoff.base == 0.02  # the rest of the policy is kept
    mirror = PolicyAction.model_validate(
        {"action": "policy", "service": "orders", "set": {"routes": [
            {"name": "place-order", "mirror": {"to": "orders", "subset": "v2"}},
            {"name": "new", "match": {"path_prefix": "/x"}, "timeout": "1s"}]}})  # fmt: skip
    routes = parse_mesh(overlay(base, mirror)).policies["orders"].routes
    assert [r.name for r in routes] == ["place-order", "order-status", "new"]  # by name
    assert routes[0].mirror is not None
    assert routes[0].split == {"v1": 100.0, "v2": 0.0}  # the rest of the route kept
    assert routes[1].mirror is not None  # order-status untouched
    assert routes[1].timeout == 0.5
    wrong = PolicyAction.model_validate({"action": "policy", "service": "payments",
                                         "set": {"retry": {"attempts": 0}}})  # fmt: skip
    with pytest.raises(ConfigError, match="policies.payments.retry.attempts: must be >= 1"):
        parse_mesh(overlay(base, wrong))
    assert repr(base) == before


def test_the_shipped_experiments_are_valid_and_name_the_shop() -> None:
    mesh = load_mesh(SHOP / "mesh.yaml")
    instances = {"gateway": "gateway", "orders": "orders", "orders-v2": "orders",
                 "payments": "payments", "email": "email", "login": "login"}  # fmt: skip
    files = sorted((SHOP / "experiments").glob("*.yaml"))
    assert files
    for path in files:
        exp = load_experiment(path)
        assert check_against(exp, mesh, instances) == [], path


def test_counts_are_for_counting_probes_and_a_ratio_needs_its_draws() -> None:
    bad = GOOD.replace(
        "    - {load: c, availability: 99%, latency: {threshold: 300ms, percent: 95%}}",
        "    - {metric: {service: orders, name: x_total}, max: 1, max_failed: 0}\n"
        "    - {ratio: {of: {service: a, name: x_total}, to: {service: a, name: y_total},"
        " min_to: 0}, max: 1}",
    )
    assert errors(bad) == [
        "steady_state.probes[0]: max_failed and min_requests are for load, slo and service"
        " probes, got {'metric': {'service': 'orders', 'name': 'x_total'}, 'max...",
        "steady_state.probes[1].ratio.min_to: must be >= 1, got 0",
    ]


def test_a_tag_that_is_also_a_key_is_not_in_the_path() -> None:
    text = GOOD.replace("abort: {status: 503, percent: 50%}}", "fault: {abort: 1}}")
    assert "method.actions[0].fault: unknown key" in errors(text)
