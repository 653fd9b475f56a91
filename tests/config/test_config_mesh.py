"""The shop example, the model's helpers, JSON and digest, layering, and fuzzing the entry point."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.config import (
    ConfigError,
    DestinationPolicy,
    EndpointConfig,
    MeshConfig,
    load_mesh,
    parse_mesh,
)

ROOT = Path(__file__).resolve().parents[2]
SHOP = Path(__file__).parent / "fixtures" / "shop.yaml"  # a frozen copy of the example
EXAMPLE = ROOT / "examples" / "shop" / "mesh.yaml"
SIDECAR = {"inbound": 2, "outbound": 3, "admin": 4}


@pytest.fixture(scope="module")
def shop() -> MeshConfig:
    return load_mesh(SHOP)


# -- the shop example --


def test_shop_loads(shop: MeshConfig) -> None:
    assert shop.mesh == "shop"
    assert shop.trust_domain == "shop.local"
    assert list(shop.services) == ["gateway", "orders", "payments", "email", "login"]


def test_shop_ports_are_loopback_and_distinct(shop: MeshConfig) -> None:
    ports = []
    for service in shop.services.values():
        assert service.host == "127.0.0.1"
        sidecar = service.sidecar
        ports += [service.port, sidecar.inbound, sidecar.outbound, sidecar.admin]
    assert len(ports) == len(set(ports)) == 20


def test_shop_every_service_runs_and_has_endpoints(shop: MeshConfig) -> None:
    for name, service in shop.services.items():
        assert service.run is not None
        assert service.run.command == ("python", "-m", f"examples.shop.{name}")
        # the short form: a command line, once, where mesh.yaml is
        assert (service.run.instances, service.run.cwd, service.run.env) == (1, None, {})
        (endpoint,) = service.effective_endpoints()
        assert (endpoint.address, endpoint.port) == ("127.0.0.1", service.sidecar.inbound)


def test_shop_policies(shop: MeshConfig) -> None:
    orders = shop.policy_for("orders")
    assert orders.timeout == 2.0
    assert orders.retry.on == ("gateway-error", "reset", "connect-failure")
    assert orders.retry.backoff.base == 0.025
    assert orders.circuit_breaker.window.type == "time"
    assert orders.circuit_breaker.window.size == 10.0
    assert orders.circuit_breaker.slow_call is not None
    assert orders.circuit_breaker.slow_call.rate == 80.0
    checkout, status = orders.routes
    assert checkout.match.allowed_methods() == frozenset({"POST"})
    assert checkout.split == {"v1": 100.0, "v2": 0.0}
    assert status.mirror is not None
    assert status.mirror.percent == 10.0
    assert shop.policy_for("payments").circuit_breaker.window.size == 20
    assert shop.policy_for("email").bulkhead.max_pending == 0
    assert shop.policy_for("login").retry.backoff.jitter == "decorrelated"
    assert shop.limits.max_body_bytes == 1024 * 1024
    assert shop.slos["gateway"].window.rolling == 30 * 86400


def test_route_overrides(shop: MeshConfig) -> None:
    orders = shop.policy_for("orders")
    checkout, status = orders.routes
    retry = orders.retry_for(checkout)
    assert retry.attempts == 1  # set by the route
    assert (retry.on, retry.backoff) == (orders.retry.on, orders.retry.backoff)  # inherited
    assert orders.retry_for(status) is orders.retry
    assert orders.retry_for(None) is orders.retry
    assert orders.timeout_for(status) == 0.5
    assert orders.timeout_for(checkout) == orders.timeout_for(None) == 2.0


def test_policy_for_defaults_and_unknown(shop: MeshConfig) -> None:
    assert shop.policy_for("gateway") == DestinationPolicy()
    with pytest.raises(KeyError, match="no service 'nope'"):
        shop.policy_for("nope")


def test_defaults() -> None:
    policy = DestinationPolicy()
    assert (policy.timeout, policy.per_try_timeout) == (15.0, None)
    assert (policy.retry.attempts, policy.retry.on) == (2, ("connect-failure", "reset"))
    assert (policy.retry.budget.ratio, policy.retry.budget.min_per_second) == (0.2, 10.0)
    assert policy.circuit_breaker.window.size == 100
    assert policy.load_balancer == "peak_ewma"
    assert policy.bulkhead.max_connections == 1024
    assert policy.outlier.max_ejected_percent == 50.0
    mesh = parse_mesh(
        {"mesh": "m", "services": {"a": {"port": 1, "sidecar": SIDECAR}}}
    )
    assert mesh.trust_domain == "m.local"
    assert (mesh.limits.max_request_line, mesh.limits.max_header_count) == (8192, 100)
    assert (mesh.limits.max_header_bytes, mesh.limits.max_body_bytes) == (65536, 10 * 2**20)
    assert (mesh.limits.retry_buffer_bytes, mesh.limits.header_timeout) == (65536, 10.0)
    assert (mesh.limits.body_timeout, mesh.limits.idle_timeout) == (30.0, 60.0)
    sidecar = mesh.sidecar
    assert (sidecar.workers, sidecar.access_log, sidecar.drain_grace) == (1, False, 20.0)
    (endpoint,) = mesh.services["a"].effective_endpoints()
    assert endpoint == EndpointConfig(address="127.0.0.1", port=2)


def test_time_window_default_size() -> None:
    text = SHOP.read_text().replace("window: {type: time, size: 10s}", "window: {type: time}")
    assert load_mesh(text).policy_for("orders").circuit_breaker.window.size == 10.0


def test_header_names_are_lower_cased(shop: MeshConfig) -> None:
    headers = shop.policy_for("login").routes[0].match.headers
    assert list(headers) == ["authorization"]
    assert headers["authorization"].regex == "Bearer [A-Za-z0-9._-]+"
    text = SHOP.read_text().replace("authorization:", "Authorization:")
    assert load_mesh(text).policy_for("login").routes[0].match.headers == headers


# -- JSON and digest --


def test_to_json_round_trips(shop: MeshConfig) -> None:
    text = shop.to_json()
    assert json.loads(text)["policies"]["orders"]["timeout"] == 2.0
    assert parse_mesh(json.loads(text)) == shop
    assert shop.to_json() == text  # stable


def test_digest_ignores_spelling(shop: MeshConfig) -> None:
    respelled = (
        SHOP.read_text()
        .replace("timeout: 2s ", "timeout: 2000ms ")
        .replace("failure_rate: 50%", "failure_rate: 50")
        .replace("max_body_bytes: 1MiB", "max_body_bytes: 1048576")
    )
    other = load_mesh(respelled)
    assert other == shop
    assert other.digest() == shop.digest()
    reordered = dict(reversed(list(yaml.safe_load(shop.to_json()).items())))
    assert parse_mesh(reordered).digest() == shop.digest()
    assert re.fullmatch("[0-9a-f]{64}", shop.digest())


def test_digest_sees_changes(shop: MeshConfig) -> None:
    changed = load_mesh(SHOP.read_text().replace("timeout: 2s ", "timeout: 3s "))
    assert changed.digest() != shop.digest()


def test_parse_accepts_any_mapping_and_tuples() -> None:
    data = MappingProxyType(
        {
            "mesh": "m",
            "services": MappingProxyType(
                {"a": {"port": 1, "sidecar": {"inbound": 2, "outbound": 3, "admin": 4},
                       "endpoints": ({"address": "::1", "port": 2},)}}
            ),
        }
    )
    assert parse_mesh(data).services["a"].endpoints[0].address == "::1"


# -- layering --


def test_config_imports_nothing_else_of_seawall() -> None:
    code = (
        "import sys, seawall.config\n"
        "print(sorted(m for m in sys.modules if m.startswith('seawall.')"
        " and not m.startswith('seawall.config')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# -- fuzzing the entry point: any input gives a config or a ConfigError, nothing else --

_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["0s", "1ms", "5xx", "50%", "101%", "8KiB", "/x", "(", "v1", "orders", "GET"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for key, child in node.items():
            out += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            out += _paths(child, (*prefix, i))
    return out


_SHOP_DATA = yaml.safe_load(SHOP.read_text().replace(" on:", " 'on':"))
_SHOP_PATHS = [p for p in _paths(_SHOP_DATA) if p]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(_SHOP_PATHS), _JUNK, st.booleans()), min_size=1, max_size=4)
)
def test_mutated_config_is_valid_or_a_config_error(mutations: list[tuple[Any, Any, bool]]) -> None:
    data = copy.deepcopy(_SHOP_DATA)
    for path, junk, as_key in mutations:
        node = data
        for part in path[:-1]:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(node, dict) and as_key and path[-1] in node:
                node[str(junk)] = node.pop(path[-1])
            elif isinstance(node, dict) or (
                isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node)
            ):
                node[path[-1]] = junk
    try:
        mesh = parse_mesh(data)
    except ConfigError as error:
        issues = error.errors
    else:
        # Whatever is accepted survives the trip through /config's JSON.
        assert parse_mesh(json.loads(mesh.to_json())) == mesh
        return
    assert issues
    for issue in issues:
        assert issue.message
        assert "\n" not in str(issue)
        assert "pydantic" not in issue.message
        assert "http" not in issue.message


def test_the_shop_example_loads() -> None:
    """The example the demo runs stays valid (the detailed checks use the frozen copy)."""
    example = load_mesh(EXAMPLE)
    assert set(example.services) == {"gateway", "orders", "payments", "email", "login"}
