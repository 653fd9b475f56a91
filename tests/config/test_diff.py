"""``seawall.config.diff``: what a new config changes, what waits for a restart, what it resets.

The resets predicted here are the ones the core makes (``Cluster::apply``;
tests/proxy/test_sidecar_state_kept.py shows them on a running sidecar).
"""

from __future__ import annotations

from typing import Any

from seawall.config import parse_mesh
from seawall.config.diff import MISSING, describe, diff, summary


def mesh(**policies: Any) -> dict[str, Any]:
    return {
        "mesh": "shop",
        "services": {
            "orders": {"port": 8002, "sidecar": {"inbound": 18002, "outbound": 15002,
                                                 "admin": 19002}},
            "payments": {"port": 8003, "sidecar": {"inbound": 18003, "outbound": 15003,
                                                   "admin": 19003}},
        },
        "policies": policies,
    }


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    return [(c.path, c.resets) for c in diff(parse_mesh(before), parse_mesh(after))]


def test_a_change_of_spelling_is_no_change() -> None:
    a = mesh(orders={"timeout": "2s", "retry": {"attempts": 3}})
    b = mesh(orders={"timeout": "2000ms", "retry": {"attempts": 3}})
    assert diff(parse_mesh(a), parse_mesh(b)) == []
    assert summary([]) == "no change"


def test_thresholds_reset_nothing_and_a_new_window_resets_the_window() -> None:
    base = {"window": {"type": "count", "size": 10}, "failure_rate": "50%"}
    a = mesh(orders={"circuit_breaker": base})
    b = mesh(orders={"circuit_breaker": base | {"failure_rate": "60%", "open_for": "30s"}})
    assert changes(a, b) == [
        ("policies.orders.circuit_breaker.failure_rate", ()),
        ("policies.orders.circuit_breaker.open_for", ()),
    ]
    c = mesh(orders={"circuit_breaker": base | {"window": {"type": "time", "size": "10s"}}})
    assert changes(a, c) == [
        ("policies.orders.circuit_breaker.window.type", ("orders: breaker window",)),
    ]


def test_budget_outlier_and_balancer_resets() -> None:
    a = mesh(payments={"retry": {"budget": {"ttl": "10s", "ratio": 0.2}}})
    b = mesh(payments={"retry": {"budget": {"ttl": "5s", "ratio": 0.3}}})
    assert changes(a, b) == [
        ("policies.payments.retry.budget.ratio", ()),
        ("policies.payments.retry.budget.ttl", ("payments: retry budget",)),
    ]
    off = mesh(payments={"outlier": {"enabled": False}, "load_balancer": "round_robin"})
    assert changes(mesh(), off) == [
        ("policies.payments.outlier.enabled", ("payments: outlier ejections",)),
        ("policies.payments.load_balancer", ("payments: balancer estimates",)),
    ]
    # turning a policy on resets nothing: there was nothing to keep
    assert changes(off, mesh()) == [
        ("policies.payments.outlier.enabled", ()),
        ("policies.payments.load_balancer", ("payments: balancer estimates",)),
    ]


def test_a_service_that_leaves_is_said_once_and_ports_wait_for_a_restart() -> None:
    a = mesh()
    b = mesh()
    del b["services"]["payments"]
    b["services"]["orders"]["sidecar"]["admin"] = 19012
    b["sidecar"] = {"workers": 4}
    found = diff(parse_mesh(a), parse_mesh(b))
    assert [(c.kind, c.path) for c in found] == [
        ("~", "services.orders.sidecar.admin"),
        ("-", "services.payments"),
        ("-", "policies.payments"),
        ("~", "sidecar.workers"),
    ]
    assert found[1].resets == ("payments: everything (it leaves the mesh)",)
    assert found[2].resets == ()  # said once, with the service
    assert found[1].after is MISSING
    assert [c.restart is not None for c in found] == [True, False, False, True]
    assert describe(found[0]).splitlines() == [
        "~ services.orders.sidecar.admin: 19002 -> 19012",
        "    restart: the sidecar of orders: listener ports are bound when it starts",
    ]
    assert summary(found) == "4 changes; 2 restarts needed; 1 state reset"
    assert found[1].to_dict() == {
        "path": "services.payments",
        "change": "removed",
        "before": found[1].before,
        "after": None,
        "restart": None,
        "resets": ["payments: everything (it leaves the mesh)"],
    }
