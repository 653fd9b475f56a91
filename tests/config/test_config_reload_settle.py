"""``sidecar.reload_settle``: how long a config file written in place must stay still."""

from __future__ import annotations

import json
from typing import Any

import pytest

from seawall.config import ConfigError, load_mesh, parse_mesh


def mesh(**sidecar: object) -> dict[str, Any]:
    return {
        "mesh": "m",
        "services": {"a": {"port": 1, "sidecar": {"inbound": 2, "outbound": 3, "admin": 4}}},
        "sidecar": sidecar,
    }


def test_the_default_is_a_second_and_a_half() -> None:
    assert parse_mesh(mesh()).sidecar.reload_settle == 1.5


@pytest.mark.parametrize(
    ("value", "seconds"), [("2s", 2.0), ("250ms", 0.25), (0, 0.0), (3, 3.0), ("1m", 60.0)]
)
def test_durations_and_bare_seconds_are_accepted(value: object, seconds: float) -> None:
    assert parse_mesh(mesh(reload_settle=value)).sidecar.reload_settle == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1s", "sidecar.reload_settle: must be >= 0, got '-1s'"),
        ("61s", "sidecar.reload_settle: must be <= 1m, got '61s'"),
        (True, "sidecar.reload_settle: must be a duration such as"),
        ("soon", "sidecar.reload_settle: must be a duration such as"),
    ],
)
def test_invalid_values_name_the_field_and_the_value(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(mesh(reload_settle=value))
    (line,) = str(caught.value).splitlines()
    assert line.startswith(message)


def test_it_is_in_the_canonical_json_and_the_digest() -> None:
    default = parse_mesh(mesh())
    assert json.loads(default.to_json())["sidecar"]["reload_settle"] == 1.5
    assert parse_mesh(mesh(reload_settle="1500ms")).digest() == default.digest()
    assert parse_mesh(mesh(reload_settle="3s")).digest() != default.digest()
    assert parse_mesh(json.loads(default.to_json())) == default


def test_yaml() -> None:
    text = (
        "mesh: m\n"
        "services: {a: {port: 1, sidecar: {inbound: 2, outbound: 3, admin: 4}}}\n"
        "sidecar: {reload_settle: 500ms}\n"
    )
    assert load_mesh(text).sidecar.reload_settle == 0.5
