"""``services.<name>.shedding`` and a route's ``criticality``: the forms, the defaults,
what the sidecar is given, and every error with its path."""

from __future__ import annotations

from typing import Any

import pytest
from test_config_errors import base, broken, errors_of

from seawall.config import parse_mesh
from seawall.proxy.spec import destination_spec


def test_the_defaults_and_what_the_inbound_sidecar_is_given() -> None:
    data = base()
    data["services"]["orders"]["shedding"] = {}
    data["policies"]["orders"]["routes"][0]["criticality"] = "sheddable_plus"
    mesh = parse_mesh(data)
    shedding = mesh.services["orders"].shedding
    assert shedding is not None
    assert shedding.limit == "adaptive"
    assert (shedding.adaptive.initial, shedding.adaptive.min, shedding.adaptive.max) == (
        20.0,
        1.0,
        1000.0,
    )
    assert (shedding.max_waiting, shedding.max_wait) == (50, 0.1)
    inbound = destination_spec(mesh, "orders", inbound=True)
    assert inbound["shedding"]["limit"] is None  # adaptive
    assert inbound["shedding"]["max_wait"] == 0.1
    assert inbound["routes"][0]["criticality"] == "sheddable_plus"
    # the callers' sidecars get the route's default too (they set the header)
    outbound = destination_spec(mesh, "orders")
    assert "shedding" not in outbound
    assert outbound["routes"][0]["criticality"] == "sheddable_plus"
    # off by default
    assert parse_mesh(base()).services["orders"].shedding is None


def test_a_fixed_limit() -> None:
    mesh = parse_mesh(broken("services.orders.shedding", {"limit": 64, "max_waiting": 0}))
    spec = destination_spec(mesh, "orders", inbound=True)["shedding"]
    assert (spec["limit"], spec["max_waiting"]) == (64, 0)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            "services.orders.shedding",
            {"limit": 0},
            "services.orders.shedding.limit: must be from 1 to 1000000 requests, or 'adaptive', "
            "got 0",
        ),
        (
            "services.orders.shedding",
            {"limit": "auto"},
            "services.orders.shedding.limit: must be a number of requests or 'adaptive', "
            "got 'auto'",
        ),
        (
            "services.orders.shedding",
            {"adaptive": {"min": 10, "max": 5}},
            "services.orders.shedding.adaptive: max (5) must be >= min (10), "
            "got {'min': 10, 'max': 5}",
        ),
        (
            "services.orders.shedding",
            {"adaptive": {"tolerance": 0.5}},
            "services.orders.shedding.adaptive.tolerance: must be >= 1, got 0.5",
        ),
        (
            "services.orders.shedding",
            {"max_wait": "-1s"},
            "services.orders.shedding.max_wait: must be >= 0, got '-1s'",
        ),
        (
            "policies.orders.routes.0.criticality",
            "urgent",
            "policies.orders.routes[0].criticality: must be 'critical_plus', 'critical', "
            "'sheddable_plus' or 'sheddable', got 'urgent'",
        ),
    ],
)
def test_an_error_names_its_place(path: str, value: Any, expected: str) -> None:
    assert errors_of(broken(path, value)) == [expected]
