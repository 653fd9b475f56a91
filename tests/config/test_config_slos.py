"""``slos:`` in mesh.yaml: the forms each field takes, their defaults, and every error
with its path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_config_errors import base, broken, errors_of

from seawall.config import DEFAULT_BURN_ALERTS, SloConfig, parse_mesh


def mesh_with(slos: dict[str, Any]) -> dict[str, Any]:
    data = base()
    data["policies"]["orders"]["routes"][0]["name"] = "checkout"
    data["slos"] = slos
    return data


def test_the_short_forms_and_the_defaults() -> None:
    mesh = parse_mesh(
        mesh_with(
            {
                "orders": {"availability": "99.5%"},
                "checkout": {
                    "service": "orders",
                    "route": "checkout",
                    "caller": "payments",
                    "measured_at": "callers",
                    "latency": {"threshold": "300ms", "percent": "95%"},
                    "window": "month",
                    "budgeting": "timeslices",
                },
                "paris": {
                    "service": "payments",
                    "availability": 99.9,
                    "window": {"calendar": "week", "timezone": "Europe/Paris"},
                    "alerts": {
                        "burn": [
                            {
                                "severity": "page",
                                "long": "1h",
                                "short": "5m",
                                "burn_rate": 14.4,
                                "for": "2m",
                            },
                        ],
                        "min_events": 0,
                    },
                },
                "journey": {"journey": {"of": {"orders": 2, "checkout": 1}, "combine": "weighted"}},
            }
        )
    )
    orders, checkout, paris, journey = (mesh.slos[n] for n in ("orders", "checkout", "paris",
                                                                 "journey"))  # fmt: skip
    assert orders.service is None  # the SLO's own name
    assert orders.window.rolling == 30 * 86_400
    assert orders.window.calendar is None
    assert orders.budgeting.method == "occurrences"
    assert orders.alerts.burn == DEFAULT_BURN_ALERTS
    assert [(a.severity, a.long, a.short, a.burn_rate) for a in DEFAULT_BURN_ALERTS] == [
        ("page", 3600, 300, 14.4),
        ("page", 21600, 1800, 6),
        ("ticket", 86400, 7200, 3),
        ("ticket", 259200, 21600, 1),
    ]
    assert orders.alerts.min_events == 100
    assert checkout.latency is not None
    assert checkout.latency.threshold == 0.3
    assert (checkout.route, checkout.caller, checkout.measured_at) == (
        "checkout", "payments", "callers",
    )  # fmt: skip
    assert checkout.window.calendar == "month"
    assert checkout.window.timezone == "UTC"
    assert checkout.budgeting.method == "timeslices"
    assert checkout.budgeting.slice == 60
    assert paris.window.timezone == "Europe/Paris"
    assert paris.alerts.burn[0].for_ == 120
    assert paris.alerts.min_events == 0
    assert journey.journey is not None
    assert journey.journey.of == {"orders": 2, "checkout": 1}
    # the canonical JSON reads back to the same config (for_ as "for")
    dumped = json.loads(mesh.to_json())
    assert dumped["slos"]["paris"]["alerts"]["burn"][0]["for"] == 120
    assert parse_mesh(dumped) == mesh


def test_a_journey_listed_by_name_weighs_each_slo_the_same() -> None:
    mesh = parse_mesh(
        mesh_with(
            {
                "orders": {"availability": "99%"},
                "payments": {"availability": "99%"},
                "both": {"journey": {"of": ["orders", "payments"]}},
            }
        )
    )
    both = mesh.slos["both"].journey
    assert both is not None
    assert both.of == {"orders": 1, "payments": 1}
    assert both.combine == "worst"


def test_the_design_documents_form_still_reads() -> None:
    slo = SloConfig.model_validate(
        {"availability": "99.9%", "latency": {"threshold": "300ms", "percent": "99%"},
         "window": "30d"}
    )  # fmt: skip
    assert slo.window.rolling == 30 * 86_400


@pytest.mark.parametrize(
    ("slos", "expected"),
    [
        (
            {"orders": {"availability": "99%", "route": "nope"}},
            "slos.orders.route: no route 'nope' of 'orders' (routes: checkout)",
        ),
        (
            {"orders": {"availability": "99%", "caller": "paymnts"}},
            "slos.orders.caller: no such service (did you mean 'payments'?)",
        ),
        (
            {"checkout": {"service": "shop", "availability": "99%"}},
            "slos.checkout.service: no such service (services: orders, payments)",
        ),
        (
            {"checkout": {"availability": "99%"}},
            "slos.checkout: no such service (services: orders, payments)",
        ),
        (
            {
                "orders": {
                    "availability": "99%",
                    "window": {"calendar": "month", "timezone": "Mars/Olympus"},
                }
            },
            "slos.orders.window.timezone: not a timezone of the IANA database (Europe/Paris,"
            " UTC...), got 'Mars/Olympus'",
        ),  # fmt: skip
        (
            {
                "orders": {
                    "availability": "99%",
                    "window": {"rolling": "30d", "timezone": "Europe/Paris"},
                }
            },
            "slos.orders.window: a timezone is for a calendar window, got {'rolling': '30d',"
            " 'timezone': 'Europe/Paris'}",
        ),  # fmt: skip
        (
            {"orders": {"availability": "99%", "window": "10m"}},
            "slos.orders.window: must be from 1h to 366d, got '10m'",
        ),
        (
            {"orders": {"availability": "99%", "window": {"calendar": "year"}}},
            "slos.orders.window.calendar: must be 'week' or 'month', got 'year'",
        ),
        (
            {"orders": {"availability": "99%", "budgeting": {"slice": "5m"}}},
            "slos.orders.budgeting: slice and good_when are for timeslices, got {'slice': '5m'}",
        ),
        (
            {
                "orders": {
                    "availability": "99%",
                    "budgeting": {"method": "timeslices", "slice": "1s"},
                }
            },
            "slos.orders.budgeting: slice must be from 10s to 1h, got 1s",
        ),  # fmt: skip
        (
            {
                "orders": {
                    "availability": "99%",
                    "alerts": {
                        "burn": [
                            {"severity": "page", "long": "5m", "short": "1h", "burn_rate": 14.4}
                        ]
                    },
                }
            },
            "slos.orders.alerts.burn[0]: short must be shorter than long, got 3600s >= 300s",
        ),  # fmt: skip
        (
            {"orders": {"availability": "99%", "alerts": {"burn": []}}},
            "slos.orders.alerts.burn: must not be empty: leave it out for the four default"
            " alerts, got []",
        ),
        (
            {"orders": {"availability": "99%"}, "j": {"journey": {"of": ["orders", "nope"]}}},
            "slos.j.journey.of.nope: no such SLO (SLOs: j, orders)",
        ),
        (
            {"orders": {"availability": "99%"}, "j": {"journey": {"of": ["orders"]}}},
            "slos.j.journey.of: must have at least 2 items, got ['orders']",
        ),
        (
            {
                "orders": {"availability": "99%"},
                "payments": {"availability": "99%"},
                "j": {"journey": {"of": ["orders", "payments"]}},
                "k": {"journey": {"of": {"j": 1, "orders": 2}}},
            },
            "slos.k.journey.of.j: a journey is made of SLOs, not of journeys",
        ),  # fmt: skip
        (
            {"orders": {"latency": {"threshold": "0ms", "percent": "95%"}}},
            "slos.orders.latency.threshold: must be > 0, got '0ms'",
        ),
        (
            {"orders": {"availability": "0%"}},
            "slos.orders.availability: must be > 0, got '0%'",
        ),
        (
            {"orders": {"availability": "99%", "measured_at": "client"}},
            "slos.orders.measured_at: must be 'server' or 'callers', got 'client'",
        ),
    ],
)
def test_an_slo_error_names_its_place(slos: dict[str, Any], expected: str) -> None:
    assert errors_of(mesh_with(slos)) == [expected]


def test_every_error_of_a_journey_is_reported_at_once() -> None:
    slos = {"orders": {"availability": "99%"},
            "j": {"journey": {"of": ["orders", "orders2"]}, "availability": "99%"}}  # fmt: skip
    assert errors_of(broken("slos", slos)) == [
        "slos.j: a journey's objectives are its SLOs': drop availability, got {'journey':"
        " {'of': ['orders', 'orders2']}, 'availability'...",
        "slos.j.journey.of.orders2: no such SLO (did you mean 'orders'?)",
    ]
