"""mesh.yaml's day-two sections: ``external:``, ``policies.X.hedge``,
``policies.X.rate_limit`` and ``services.X.rate_limit``; their validation
(every error with its path) and the sidecar spec they become."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from seawall.config import ConfigError, parse_mesh
from seawall.config.diff import diff
from seawall.proxy.spec import sidecar_spec

BASE: dict[str, Any] = {
    "mesh": "shop",
    "services": {
        "orders": {"port": 8002, "sidecar": {"inbound": 18002, "outbound": 15002, "admin": 19002}},
    },
}


def doc(**sections: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(sections)
    return d


def errors(d: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_mesh(d)
    return [(e.path, e.message) for e in info.value.errors]


def test_an_external_service_becomes_a_destination_with_tls_origination() -> None:
    config = parse_mesh(
        doc(
            external={
                "stripe": {"host": "api.stripe.com"},
                "ledger": {"host": "10.0.0.7", "port": 8080, "tls": False},
                "bank": {"host": "bank.internal", "port": 8443, "ca_file": "/etc/bank-ca.pem",
                         "server_name": "api.bank.internal"},
            },
            policies={"stripe": {"timeout": "3s", "retry": {"attempts": 3}}},
        )
    )
    spec = {d["name"]: d for d in sidecar_spec(config, "orders")["destinations"]}
    stripe, ledger, bank = spec["stripe"], spec["ledger"], spec["bank"]
    assert stripe["endpoints"] == [
        {"address": "api.stripe.com", "port": 443, "subset": None, "weight": 1}
    ]
    assert stripe["tls"] == {"server_name": "api.stripe.com", "ca_file": None}
    assert (stripe["mesh"], stripe["external"]) == (False, True)
    assert stripe["authority"] == "api.stripe.com"
    assert (stripe["timeout"], stripe["retry"]["attempts"]) == (3.0, 3)
    assert stripe["breaker"] is not None  # the mesh's default policy: a breaker too
    assert (ledger["tls"], ledger["endpoints"][0]["port"], ledger["authority"]) == (
        None, 8080, "10.0.0.7:8080",
    )  # fmt: skip
    assert bank["tls"] == {"server_name": "api.bank.internal", "ca_file": "/etc/bank-ca.pem"}
    assert bank["authority"] == "bank.internal:8443"


def test_external_names_and_their_errors() -> None:
    found = errors(
        doc(
            external={
                "orders": {"host": "api.example.com"},
                "pay": {"host": "api.example.com", "tls": False, "ca_file": "/x.pem"},
                "bad": {"host": "not a host"},
            },
            policies={"stripe": {}},
        )
    )
    paths = [p for p, _ in found]
    assert "external.orders" in paths
    assert any(p == "external.pay.ca_file" and "needs tls: true" in m for p, m in found)
    assert "external.bad.host" in paths
    assert any(p == "policies.stripe" and "no such service" in m for p, m in found)


def test_hedge_and_rate_limit_use_seawall_policy_names() -> None:
    config = parse_mesh(
        doc(
            services={**BASE["services"], "payments": {
                "port": 8003, "sidecar": {"inbound": 18003, "outbound": 15003, "admin": 19003},
                "rate_limit": {"rate": 50},
            }},
            policies={"payments": {
                "hedge": {"delay": "p95", "max_hedges": 2},
                "rate_limit": {"rate": 100, "burst": 150},
            }},
        )
    )  # fmt: skip
    spec = sidecar_spec(config, "orders")
    payments = next(d for d in spec["destinations"] if d["name"] == "payments")
    assert payments["hedge"] == {"delay": 0.05, "percentile": 95.0, "max_hedges": 2,
                                 "min_samples": 20}  # fmt: skip
    assert payments["rate_limit"] == {"rate": 100.0, "burst": 150.0}
    # the inbound limit is the service's own, per caller, in its own sidecar
    assert spec["inbound"]["rate_limit"] is None
    inbound = sidecar_spec(config, "payments")["inbound"]
    assert inbound["rate_limit"] == {"rate": 50.0, "burst": 50.0}
    assert inbound["hedge"] is None


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({"hedge": {"delay": "p95", "percentile": 90}}, "policies.orders.hedge", "percentile once"),
        ({"hedge": {"max_hedges": 9}}, "policies.orders.hedge.max_hedges", "<= 5"),
        ({"hedge": {"percentile": 100}}, "policies.orders.hedge.percentile", "< 100"),
        ({"rate_limit": {"rate": 0}}, "policies.orders.rate_limit.rate", "> 0"),
        ({"rate_limit": {"burst": 5}}, "policies.orders.rate_limit.rate", "required"),
        ({"rate_limit": {"rate": 5, "burst": 0.5}}, "policies.orders.rate_limit.burst", ">= 1"),
    ],
)
def test_bad_hedges_and_rate_limits_name_their_path(
    section: dict[str, Any], path: str, words: str
) -> None:
    found = errors(doc(policies={"orders": section}))
    assert any(p == path and words in m for p, m in found), found


def test_diff_says_what_a_tls_change_resets() -> None:
    before = parse_mesh(doc(external={"stripe": {"host": "api.stripe.com"}}))
    after = parse_mesh(doc(external={"stripe": {"host": "api.stripe.com", "ca_file": "/ca.pem"}}))
    (change,) = diff(before, after)
    assert change.path == "external.stripe.ca_file"
    assert change.resets == ("stripe: everything (its TLS origination changed)",)
    gone = parse_mesh(doc())
    assert [c.resets for c in diff(before, gone) if c.path == "external.stripe"] == [
        ("stripe: everything (no longer declared)",)
    ]


def test_a_renamed_key_says_its_new_name() -> None:
    found = errors(doc(policies={"orders": {"outlier": {"ejection": "10s", "max_ejected": 20}}}))
    assert found == [
        ("policies.orders.outlier.ejection",
         "unknown key (renamed 'base_ejection': the name seawall.policy uses too)"),
        ("policies.orders.outlier.max_ejected",
         "unknown key (renamed 'max_ejected_percent': the name seawall.policy uses too)"),
    ]  # fmt: skip
