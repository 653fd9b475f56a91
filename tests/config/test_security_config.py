"""``mtls`` and ``authorization`` per service: defaults, the model, every error with its path."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from seawall.config import ConfigError, load_mesh, parse_mesh


def mesh(payments: dict[str, Any]) -> dict[str, Any]:
    return {
        "mesh": "shop",
        "services": {
            "orders": {
                "port": 8002,
                "sidecar": {"inbound": 18002, "outbound": 15002, "admin": 19002},
            },
            "payments": {
                "port": 8003,
                "sidecar": {"inbound": 18003, "outbound": 15003, "admin": 19003},
                **payments,
            },
        },
    }


def errors(payments: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(mesh(payments))
    # (the suggestion after "unknown key" is not part of what is checked here)
    return [re.sub(r"unknown key \(did you mean .*\)", "unknown key", str(issue))
            for issue in caught.value.errors]


def test_defaults_are_permissive_and_allow_all() -> None:
    svc = parse_mesh(mesh({})).services["payments"]
    assert svc.mtls == "permissive"
    assert svc.authorization.default == "allow"
    assert svc.authorization.rules == ()


def test_the_documented_example_loads_and_round_trips() -> None:
    config = load_mesh(
        """
mesh: shop
services:
  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
  payments:
    port: 8003
    sidecar: {inbound: 18003, outbound: 15003, admin: 19003}
    mtls: strict
    authorization:
      default: deny
      rules:
        - action: allow
          from: [orders]
          methods: [POST]
          paths: [/charge, /refunds/*]
        - {action: deny, from: ['*'], paths: [/admin/*]}
"""
    )
    svc = config.services["payments"]
    assert svc.mtls == "strict"
    first, second = svc.authorization.rules
    assert (first.action, first.from_, first.methods) == ("allow", ("orders",), ("POST",))
    assert first.paths == ("/charge", "/refunds/*")
    assert (second.action, second.from_, second.methods) == ("deny", ("*",), None)
    doc = json.loads(config.to_json())
    assert doc["services"]["payments"]["authorization"]["rules"][0]["from"] == ["orders"]
    assert parse_mesh(doc) == config
    assert parse_mesh(doc).digest() == config.digest()


def test_every_error_with_its_path_and_value() -> None:
    found = errors(
        {
            "mtls": "strikt",
            "authorization": {
                "default": "deni",
                "rules": [
                    {
                        "action": "allow",
                        "from": ["ordrs", "Bad", 3],
                        "methods": ["post"],
                        "paths": ["charge", "/a*b", "/x?y", "/ok/*"],
                    },
                    {"action": "maybe", "from": []},
                    {"from": ["orders"], "paths": [], "methods": []},
                    {"action": "deny", "from": ["orders", "*"]},
                    {"action": "allow", "form": ["orders"]},  # a typo of "from"
                ],
                "extra": 1,
            },
        }
    )
    rules = "services.payments.authorization.rules"
    assert found == [
        "services.payments.mtls: must be 'strict' or 'permissive', got 'strikt'",
        "services.payments.authorization.default: must be 'allow' or 'deny', got 'deni'",
        f"{rules}[0].from[0]: no such service (did you mean 'orders'?), got 'ordrs'",
        f"{rules}[0].from[1]: must be a service name or '*' (any authenticated caller), got 'Bad'",
        f"{rules}[0].from[2]: must be a service name or '*' (any authenticated caller), got 3",
        f"{rules}[0].methods[0]: must be an HTTP method in upper case, such as 'GET' or 'POST', "
        "got 'post'",
        f"{rules}[0].paths[0]: must start with '/', got 'charge'",
        f"{rules}[0].paths[1]: '*' may only end a path (a prefix, as in '/refunds/*'), got '/a*b'",
        f"{rules}[0].paths[2]: must be a path only: the query is not matched, got '/x?y'",
        f"{rules}[1].action: must be 'allow' or 'deny', got 'maybe'",
        f"{rules}[1].from: must not be empty (omit the key to match any), got []",
        f"{rules}[2].paths: must not be empty (omit the key to match any), got []",
        f"{rules}[2].methods: must not be empty (omit the key to match any), got []",
        f"{rules}[2].action: required",
        f"{rules}[3].from: '*' already means any authenticated caller: list it alone, "
        "got ['orders', '*']",
        f"{rules}[4].form: unknown key",
        "services.payments.authorization.extra: unknown key",
    ]


def test_from_names_a_service_of_the_mesh() -> None:
    rules = [{"action": "allow", "from": ["orders", "email"]}]
    assert errors({"authorization": {"rules": rules}}) == [
        "services.payments.authorization.rules[0].from[1]: no such service "
        "(services: orders, payments), got 'email'"
    ]
    # a service may name itself, and "*" alone is fine
    ok = {"authorization": {"rules": [{"action": "allow", "from": ["payments"]},
                                      {"action": "deny", "from": ["*"]}]}}  # fmt: skip
    assert parse_mesh(mesh(ok)).services["payments"].authorization.rules[1].from_ == ("*",)


def test_refuse_names_services_of_the_mesh() -> None:
    found = errors({"authorization": {"refuse": ["ordrs", "*", 3, "orders", "Orders"]}})
    refuse = "services.payments.authorization.refuse"
    assert found == [
        f"{refuse}[0]: no such service (did you mean 'orders'?), got 'ordrs'",
        f"{refuse}[1]: must name services: refusing '*' would cut the service off from the "
        "whole mesh, got '*'",
        f"{refuse}[2]: must be a service name, got 3",
        f"{refuse}[4]: must be a service name, got 'Orders'",
    ]
    assert errors({"authorization": {"refuse": ["payments"]}}) == [
        f"{refuse}[0]: a service cannot refuse itself, got 'payments'"
    ]
    svc = parse_mesh(mesh({"authorization": {"refuse": ["orders"]}})).services["payments"]
    assert svc.authorization.refuse == ("orders",)
    assert svc.authorization.default == "allow"


def test_empty_sections_mean_defaults() -> None:
    svc = load_mesh(
        "mesh: shop\n"
        "services:\n"
        "  a:\n"
        "    port: 1\n"
        "    sidecar: {inbound: 2, outbound: 3, admin: 4}\n"
        "    authorization:\n"
    ).services["a"]
    assert svc.authorization.default == "allow"
    assert svc.authorization.rules == ()
