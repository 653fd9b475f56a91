"""A route's ``progressive:`` split: its defaults, and every error with its path."""

from __future__ import annotations

from typing import Any

import pytest
from test_config_errors import base, errors_of

from seawall.config import ConfigError, load_mesh, parse_mesh


def with_route(**route: Any) -> dict[str, Any]:
    data = base()
    data["policies"]["orders"]["routes"][0].update(route)
    return data


def test_the_defaults_and_the_canary_by_default() -> None:
    mesh = parse_mesh(with_route(split={"v1": 100, "v2": 0}, progressive={}))
    p = mesh.policies["orders"].routes[0].progressive
    assert p is not None
    assert (p.canary, p.steps, p.interval, p.min_events, p.max_burn_ratio) == (
        "v2", (1.0, 5.0, 25.0, 50.0, 100.0), 60.0, 100, 1.0,
    )  # fmt: skip
    given = parse_mesh(
        with_route(progressive={"canary": "v1", "steps": ["10%", 100], "interval": "1s",
                                "max_burn_ratio": 1.5})
    )  # fmt: skip
    p = given.policies["orders"].routes[0].progressive
    assert p is not None
    assert (p.canary, p.steps, p.interval, p.max_burn_ratio) == ("v1", (10.0, 100.0), 1.0, 1.5)
    # the canary chosen by default is written out: the digest is the same either way
    named = parse_mesh(with_route(split={"v1": 100, "v2": 0}, progressive={"canary": "v2"}))
    assert named.digest() == mesh.digest()


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        (
            {"progressive": {"canary": "v3"}},
            "policies.orders.routes[0].progressive.canary: not a subset of the route's split"
            " (v1, v2), got 'v3'",
        ),
        (
            {"split": None, "progressive": {}},
            "policies.orders.routes[0].progressive: needs a split of the destination's subsets:"
            " the canary and a baseline, got {}",
        ),
        (
            {"split": {"v1": 100}, "progressive": {}},
            "policies.orders.routes[0].progressive: needs a baseline beside the canary in the"
            " split (v1)",
        ),
        (
            {"split": {"v1": 50, "v2": 50}, "progressive": {}},
            "policies.orders.routes[0].progressive: name the canary: v1, v2 weigh the same, got {}",
        ),
        (
            {"progressive": {"steps": [5, 1, 100]}},
            "policies.orders.routes[0].progressive.steps: must rise strictly, each above 0,"
            " got [5, 1, 100]",
        ),
        (
            {"progressive": {"steps": [0, 100]}},
            "policies.orders.routes[0].progressive.steps: must rise strictly, each above 0,"
            " got [0, 100]",
        ),
        (
            {"progressive": {"steps": [5, 50]}},
            "policies.orders.routes[0].progressive.steps: must end with 100 (the promotion),"
            " got [5, 50]",
        ),
        (
            {"progressive": {"steps": [100]}},
            "policies.orders.routes[0].progressive.steps: needs a step below 100 to judge,"
            " then 100, got [100]",
        ),
        (
            {"progressive": {"interval": "0s"}},
            "policies.orders.routes[0].progressive.interval: must be > 0, got '0s'",
        ),
        (
            {"progressive": {"min_events": 0}},
            "policies.orders.routes[0].progressive.min_events: must be >= 1, got 0",
        ),
        (
            {"progressive": {"max_burn_ratio": 0}},
            "policies.orders.routes[0].progressive.max_burn_ratio: must be > 0, got 0",
        ),
        (
            {"progressive": {"canary": "v2", "stepz": [1, 100]}},
            "policies.orders.routes[0].progressive.stepz: unknown key (did you mean 'steps'?)",
        ),
    ],
)
def test_a_progressive_error_names_its_place(route: dict[str, Any], expected: str) -> None:
    assert errors_of(with_route(**route)) == [expected]


def test_its_errors_carry_their_line(tmp_path: Any) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(
        "mesh: shop\n"
        "services:\n"
        "  orders:\n"
        "    port: 8002\n"
        "    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}\n"
        "    subsets: {v1: {}, v2: {}}\n"
        "policies:\n"
        "  orders:\n"
        "    routes:\n"
        "      - name: place-order\n"
        "        split: {v1: 100, v2: 0}\n"
        "        progressive:\n"
        "          canary: v3\n"
        "          steps: [5, 50]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_mesh(path)
    assert caught.value.describe().splitlines()[1:] == [
        f"  {path}:13: policies.orders.routes[0].progressive.canary: not a subset of the"
        " route's split (v1, v2), got 'v3'",
        f"  {path}:14: policies.orders.routes[0].progressive.steps: must end with 100 (the"
        " promotion), got [5, 50]",
    ]


def test_a_progressive_destinations_callers_measure_every_latency_threshold() -> None:
    """The canary is judged on the callers' per-subset histograms: a latency SLO measured
    at the server (300ms, not a standard bound) must be an exact bound there too, or its
    judge would never have a count and the rollout would hold forever."""
    from seawall.proxy.spec import destination_spec  # noqa: PLC0415

    data = with_route(split={"v1": 100, "v2": 0}, progressive={})
    data["slos"] = {"orders": {"latency": {"threshold": "300ms", "percent": "95%"}}}
    assert destination_spec(parse_mesh(data), "orders")["latency_bounds"] == [0.3]
    assert destination_spec(parse_mesh(data), "orders", inbound=True)["latency_bounds"] == [0.3]
    plain = with_route(split={"v1": 100, "v2": 0})
    plain["slos"] = data["slos"]
    assert destination_spec(parse_mesh(plain), "orders")["latency_bounds"] == []
