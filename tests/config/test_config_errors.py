"""Config errors: exact path and message of each kind, all at once, never a partial config."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from seawall.config import ConfigError, ConfigIssue, MeshConfig, load_mesh, parse_mesh

_DELETE = object()


def base() -> dict[str, Any]:
    """A small valid mesh; each test breaks one thing in it."""
    return {
        "mesh": "shop",
        "services": {
            "orders": {
                "port": 8002,
                "sidecar": {"inbound": 18002, "outbound": 15002, "admin": 19002},
                "subsets": {"v1": {}, "v2": {"labels": {"version": "v2"}}},
                "endpoints": [{"address": "127.0.0.1", "port": 18002, "subset": "v1"}],
            },
            "payments": {
                "port": 8003,
                "sidecar": {"inbound": 18003, "outbound": 15003, "admin": 19003},
            },
        },
        "policies": {
            "orders": {
                "timeout": "2s",
                "retry": {"attempts": 3, "backoff": {"base": "25ms", "max": "1s"}},
                "circuit_breaker": {"window": {"type": "time", "size": "10s"}},
                "routes": [
                    {
                        "match": {"path_prefix": "/checkout", "method": "POST"},
                        "split": {"v1": 90, "v2": 10},
                        "mirror": {"to": "payments", "percent": "10%"},
                    }
                ],
            }
        },
    }


def broken(path: str, value: object) -> dict[str, Any]:
    """base() with the value at a dotted path (list indices as numbers) replaced or deleted."""
    data = base()
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(data)
    error = caught.value
    assert str(error) == "\n".join(str(issue) for issue in error.errors)
    return str(error).splitlines()


def test_base_is_valid() -> None:
    assert isinstance(parse_mesh(base()), MeshConfig)


# -- one error each: the exact line --

CASES = [
    # required keys, types, strict numbers
    ("mesh", _DELETE, "mesh: required"),
    ("services", {}, "services: must not be empty, got {}"),
    ("services.orders.port", _DELETE, "services.orders.port: required"),
    ("services.orders.port", 0, "services.orders.port: must be >= 1, got 0"),
    ("services.orders.port", 65536, "services.orders.port: must be <= 65535, got 65536"),
    ("services.orders.port", "8002", "services.orders.port: must be an integer, got '8002'"),
    ("services.orders.port", 8002.0, "services.orders.port: must be an integer, got 8002.0"),
    ("services.orders.port", True, "services.orders.port: must be an integer, got True"),
    ("services.orders.sidecar", [1], "services.orders.sidecar: must be a mapping, got [1]"),
    (
        "services.orders.endpoints",
        {"a": 1},
        "services.orders.endpoints: must be a list, got {'a': 1}",
    ),
    (
        "services.orders.host",
        "not a host",
        "services.orders.host: must be an IP address or a host name, got 'not a host'",
    ),
    (
        "services.orders.run",
        "python 'unclosed",
        'services.orders.run: invalid command line: No closing quotation, got "python \'unclosed"',
    ),
    ("services.orders.run", [], "services.orders.run: must not be empty, got []"),
    (
        "mesh",
        "Shop",
        "mesh: must be a name of lower-case letters, digits and '-', at most 63 characters, "
        "got 'Shop'",
    ),
    (
        "trust_domain",
        "Shop Local",
        "trust_domain: must be a trust domain of lower-case letters, digits, '.', '-' and '_', "
        "got 'Shop Local'",
    ),
    # unknown keys
    ("services.orders.prot", 1, "services.orders.prot: unknown key (did you mean 'port'?)"),
    (
        "policies.orders.retry.attempt",
        1,
        "policies.orders.retry.attempt: unknown key (did you mean 'attempts'?)",
    ),
    ("policies.orders.zzz", 1, "policies.orders.zzz: unknown key"),
    (
        "policies.orders.upgrades",
        ["websocket", "h2c"],
        "policies.orders.upgrades[1]: h2c is never tunnelled (it would carry requests past the"
        " sidecar unparsed), got 'h2c'",
    ),
    (
        "policies.orders.upgrades",
        ["web socket"],
        "policies.orders.upgrades[0]: must be a protocol name such as 'websocket' (a token,"
        " optionally '/version'), got 'web socket'",
    ),
    ("policis", {}, "policis: unknown key (did you mean 'policies'?)"),
    # timeouts
    (
        "policies.orders.timeout",
        "fast",
        "policies.orders.timeout: must be a duration such as '250ms', '2s', '1.5m' or '1h', or "
        "a number of seconds, got 'fast'",
    ),
    (
        "policies.orders.per_try_timeout",
        "3s",
        "policies.orders.per_try_timeout: must be <= timeout (2s), got '3s'",
    ),
    ("policies.orders.idle_timeout", 0, "policies.orders.idle_timeout: must be > 0, got 0"),
    # retry
    ("policies.orders.retry.attempts", 0, "policies.orders.retry.attempts: must be >= 1, got 0"),
    ("policies.orders.retry.attempts", 11, "policies.orders.retry.attempts: must be <= 10, got 11"),
    (
        "policies.orders.retry.on",
        ["5xx", "timeout"],
        "policies.orders.retry.on[1]: must be '5xx', 'gateway-error', 'reset', "
        "'connect-failure' or a status code from 400 to 599, got 'timeout'",
    ),
    (
        "policies.orders.retry.on",
        [200],
        "policies.orders.retry.on[0]: must be '5xx', 'gateway-error', 'reset', "
        "'connect-failure' or a status code from 400 to 599, got 200",
    ),
    ("policies.orders.retry.on", "5xx", "policies.orders.retry.on: must be a list, got '5xx'"),
    (
        "policies.orders.retry.methods",
        ["post"],
        "policies.orders.retry.methods[0]: must be an HTTP method in upper case, such as 'GET' "
        "or 'POST', got 'post'",
    ),
    (
        "policies.orders.retry.backoff.max",
        "10ms",
        "policies.orders.retry.backoff.max: must be >= base (25ms), got '10ms'",
    ),
    (
        "policies.orders.retry.backoff.jitter",
        "some",
        "policies.orders.retry.backoff.jitter: must be 'none', 'full', 'equal' or "
        "'decorrelated', got 'some'",
    ),
    (
        "policies.orders.retry.backoff",
        {"jitter": "decorrelated", "base": 0},
        'policies.orders.retry.backoff.base: must be > 0 with decorrelated jitter, got 0',
    ),
    (
        "policies.orders.retry.budget",
        {"ratio": 0},
        'policies.orders.retry.budget.ratio: must be > 0, got 0',
    ),
    (
        "policies.orders.retry.budget",
        {"ratio": 1001},
        'policies.orders.retry.budget.ratio: must be <= 1000, got 1001',
    ),
    (
        "policies.orders.retry.budget",
        {"ratio": float("nan")},
        'policies.orders.retry.budget.ratio: must be a finite number, got nan',
    ),
    (
        "policies.orders.retry.budget",
        {"min_per_second": -1},
        'policies.orders.retry.budget.min_per_second: must be >= 0, got -1',
    ),
    (
        "policies.orders.retry.budget",
        {"ttl": "0s"},
        "policies.orders.retry.budget.ttl: must be > 0, got '0s'",
    ),
    # circuit breaker
    (
        "policies.orders.circuit_breaker",
        {"failure_rate": "0%"},
        "policies.orders.circuit_breaker.failure_rate: must be > 0, got '0%'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"failure_rate": "101%"},
        "policies.orders.circuit_breaker.failure_rate: must be <= 100%, got '101%'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"minimum_calls": 0},
        'policies.orders.circuit_breaker.minimum_calls: must be >= 1, got 0',
    ),
    (
        "policies.orders.circuit_breaker",
        {"half_open_calls": 0},
        'policies.orders.circuit_breaker.half_open_calls: must be >= 1, got 0',
    ),
    (
        "policies.orders.circuit_breaker",
        {"open_multiplier": 0.5},
        'policies.orders.circuit_breaker.open_multiplier: must be >= 1, got 0.5',
    ),
    (
        "policies.orders.circuit_breaker",
        {"open_for": "10s", "max_open_for": "5s"},
        "policies.orders.circuit_breaker.max_open_for: must be >= open_for (10s), got '5s'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"slow_call": {"rate": "50%"}},
        'policies.orders.circuit_breaker.slow_call.duration: required',
    ),
    (
        "policies.orders.circuit_breaker",
        {"slow_call": {"duration": "1s", "rate": 0}},
        'policies.orders.circuit_breaker.slow_call.rate: must be > 0, got 0',
    ),
    (
        "policies.orders.circuit_breaker",
        {"window": {"type": "count", "size": "10s"}},
        'policies.orders.circuit_breaker.window.size: must be a whole number of calls for a '
        "count window, got '10s'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"window": {"type": "count", "size": 0}},
        'policies.orders.circuit_breaker.window.size: must be from 1 to 1000000 calls, got 0',
    ),
    (
        "policies.orders.circuit_breaker",
        {"window": {"type": "time", "size": "0s"}},
        'policies.orders.circuit_breaker.window.size: must be > 0 and <= 1d for a time window, '
        "got '0s'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"window": {"type": "sliding"}},
        "policies.orders.circuit_breaker.window.type: must be 'count' or 'time', got 'sliding'",
    ),
    (
        "policies.orders.circuit_breaker",
        {"enabled": "no"},
        "policies.orders.circuit_breaker.enabled: must be true or false, got 'no'",
    ),
    # bulkhead, outlier, load balancer
    (
        "policies.orders.bulkhead",
        {"max_connections": 0},
        'policies.orders.bulkhead.max_connections: must be >= 1, got 0',
    ),
    (
        "policies.orders.bulkhead",
        {"max_pending": -1},
        'policies.orders.bulkhead.max_pending: must be >= 0, got -1',
    ),
    (
        "policies.orders.outlier",
        {"max_ejected_percent": "120%"},
        "policies.orders.outlier.max_ejected_percent: must be <= 100%, got '120%'",
    ),
    (
        "policies.orders.outlier",
        {"base_ejection": "1m", "max_ejection": "30s"},
        "policies.orders.outlier.max_ejection: must be >= base_ejection (1m), got '30s'",
    ),
    (
        "policies.orders.outlier",
        {"consecutive_5xx": 0},
        'policies.orders.outlier.consecutive_5xx: must be >= 1, got 0',
    ),
    (
        "policies.orders.load_balancer",
        "random",
        "policies.orders.load_balancer: must be 'round_robin', 'least_request' or 'peak_ewma', "
        "got 'random'",
    ),
    # routes
    (
        "policies.orders.routes.0.match",
        {"path_prefix": "checkout"},
        "policies.orders.routes[0].match.path_prefix: must start with '/', got 'checkout'",
    ),
    (
        "policies.orders.routes.0.match",
        {"path_regex": "/a["},
        'policies.orders.routes[0].match.path_regex: invalid regular expression: unterminated '
        "character set at position 2, got '/a['",
    ),
    (
        "policies.orders.routes.0.match",
        {"path_prefix": "/a", "path_exact": "/a"},
        'policies.orders.routes[0].match: set only one of path_prefix, path_exact, path_regex, '
        "got {'path_prefix': '/a', 'path_exact': '/a'}",
    ),
    (
        "policies.orders.routes.0.match",
        {"method": "GET", "methods": ["GET"]},
        "policies.orders.routes[0].match: set only one of method, methods, got {'method': "
        "'GET', 'methods': ['GET']}",
    ),
    (
        "policies.orders.routes.0.match",
        {"methods": []},
        'policies.orders.routes[0].match.methods: must not be empty, got []',
    ),
    (
        "policies.orders.routes.0.match",
        {"headers": {"bad header": "x"}},
        "policies.orders.routes[0].match.headers['bad header']: must be an HTTP header name",
    ),
    (
        "policies.orders.routes.0.match",
        {"headers": {"x-a": {"regex": "(", "present": True}}},
        'policies.orders.routes[0].match.headers.x-a.regex: invalid regular expression: '
        "missing ), unterminated subpattern at position 0, got '('",
    ),
    (
        "policies.orders.routes.0.match",
        {"headers": {"x-a": {"exact": "1", "present": True}}},
        'policies.orders.routes[0].match.headers.x-a: set exactly one of exact, regex, '
        "present, got {'exact': '1', 'present': True}",
    ),
    (
        "policies.orders.routes.0.match",
        {"headers": {"x-a": 5}},
        'policies.orders.routes[0].match.headers.x-a: must be a mapping, got 5',
    ),
    (
        "policies.orders.routes.0.split",
        {"v1": 90, "v2": 5},
        'policies.orders.routes[0].split: weights must sum to 100, got 95',
    ),
    (
        "policies.orders.routes.0.split",
        {},
        'policies.orders.routes[0].split: must not be empty, got {}',
    ),
    (
        "policies.orders.routes.0.split",
        {"v1": 100, "v3": 0},
        "policies.orders.routes[0].split.v3: no subset 'v3' in service 'orders' (subsets: v1, v2)",
    ),
    (
        "policies.orders.routes.0.mirror",
        {"to": "paymnts"},
        "policies.orders.routes[0].mirror.to: no such service (did you mean 'payments'?), got "
        "'paymnts'",
    ),
    (
        "policies.orders.routes.0.mirror",
        {"to": "orders", "subset": "v9"},
        "policies.orders.routes[0].mirror.subset: no subset 'v9' in service 'orders' (subsets: "
        'v1, v2)',
    ),
    (
        "policies.orders.routes.0.mirror",
        {"percent": 10},
        'policies.orders.routes[0].mirror.to: required',
    ),
    (
        "policies.orders.routes.0.fault",
        {},
        'policies.orders.routes[0].fault: set delay, abort or header_trigger, got {}',
    ),
    (
        "policies.orders.routes.0.fault",
        {"abort": {"percent": 5, "status": 200}},
        'policies.orders.routes[0].fault.abort.status: must be >= 400, got 200',
    ),
    (
        "policies.orders.routes.0.fault",
        {"delay": {"percent": 5}},
        'policies.orders.routes[0].fault.delay.duration: required',
    ),
    (
        "policies.orders.routes.0.timeout",
        "0ms",
        "policies.orders.routes[0].timeout: must be > 0, got '0ms'",
    ),
    (
        "policies.orders.routes.0.retry",
        {"attempts": 0},
        'policies.orders.routes[0].retry.attempts: must be >= 1, got 0',
    ),
    (
        "policies.orders.routes.0.retry",
        {"budget": {"ratio": 1}},
        'policies.orders.routes[0].retry.budget: unknown key',
    ),
    (
        "policies.orders.routes.0.name",
        "bad name",
        "policies.orders.routes[0].name: must be 1 to 128 letters, digits, '_', '.', ':' or "
        "'-', got 'bad name'",
    ),
    # cross-section
    ("policies.ordrs", {}, "policies.ordrs: no such service (did you mean 'orders'?)"),
    ("policies.gateway", {}, "policies.gateway: no such service (services: orders, payments)"),
    (
        "services.orders.endpoints.0.subset",
        "v7",
        "services.orders.endpoints[0].subset: no subset 'v7' in service 'orders' (subsets: v1, v2)",
    ),
    (
        "services.payments.sidecar.admin",
        19002,
        'services.payments.sidecar.admin: port already used by services.orders.sidecar.admin, '
        'got 19002',
    ),
    (
        "services.payments.port",
        18002,
        'services.payments.port: port already used by services.orders.sidecar.inbound, got 18002',
    ),
    (
        "services.orders.sidecar.outbound",
        8002,
        'services.orders.sidecar.outbound: port already used by services.orders.port, got 8002',
    ),
    (
        "services.payments.sidecar.upstreams",
        {"orders": 15002},
        'services.payments.sidecar.upstreams.orders: port already used by '
        'services.orders.sidecar.outbound, got 15002',
    ),
    (
        "services.payments.sidecar.upstreams",
        {"email": 16000},
        'services.payments.sidecar.upstreams.email: no such service (services: orders, payments)',
    ),
    (
        "services.orders.endpoints",
        [{"address": "10.0.0.1", "port": 80}, {"address": "10.0.0.1", "port": 80}],
        'services.orders.endpoints[1]: duplicate endpoint (also endpoints[0])',
    ),
    # limits, sidecar, SLOs
    (
        "limits",
        {"max_body_bytes": "10 parsecs"},
        "limits.max_body_bytes: must be a size in bytes such as 65536, '64KiB', '10MiB' or "
        "'1GB', got '10 parsecs'",
    ),
    ("limits", {"max_request_line": 0}, "limits.max_request_line: must be >= 1, got 0"),
    ("limits", {"header_timeout": "0s"}, "limits.header_timeout: must be > 0, got '0s'"),
    ("sidecar", {"workers": 0}, "sidecar.workers: must be >= 1, got 0"),
    ("sidecar", {"access_log": "yes"}, "sidecar.access_log: must be true or false, got 'yes'"),
    ("sidecar", {"drain_grace": "-1s"}, "sidecar.drain_grace: must be >= 0, got '-1s'"),
    (
        "slos",
        {"orders": {"availability": "100%"}},
        "slos.orders.availability: must be < 100%, got '100%'",
    ),
    (
        "slos",
        {"orders": {"window": "30d"}},
        "slos.orders: set availability, latency or both (or a journey), got {'window': '30d'}",
    ),
    (
        "slos",
        {"orders": {"availability": "99%", "window": "10m"}},
        "slos.orders.window: must be from 1h to 366d, got '10m'",
    ),
    (
        "slos",
        {"gateway": {"availability": "99.9%"}},
        'slos.gateway: no such service (services: orders, payments)',
    ),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    CASES,
    ids=[f"{i}-{case[2].split(':')[0]}" for i, case in enumerate(CASES)],
)
def test_one_error(path: str, value: object, expected: str) -> None:
    assert errors_of(broken(path, value)) == [expected]


def test_split_weight_out_of_range_and_sum_both_reported() -> None:
    # The range error stops the sum check for that split; the rest is still checked.
    lines = errors_of(broken("policies.orders.routes.0.split", {"v1": "110%", "v2": "-10%"}))
    assert lines == [
        "policies.orders.routes[0].split.v1: must be <= 100%, got '110%'",
        "policies.orders.routes[0].split.v2: must be >= 0, got '-10%'",
    ]


def test_issue_fields() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(broken("policies.orders.retry.attempts", 0))
    assert caught.value.errors == [
        ConfigIssue("policies.orders.retry.attempts", "must be >= 1", "0", None)
    ]
    assert isinstance(caught.value, ValueError)


# -- many errors at once, in document order, schema and cross-section together --


BAD = """\
mesh: shop
services:
  orders:
    port: 8002
    sidecar: {inbound: 18002, outbound: 15002, admin: 19002}
    subsets: {v1: {}, v2: {}}
  payments:
    port: 8003
    sidecar: {inbound: 18002, outbound: 15003, admin: 19003}
policies:
  orders:
    timeout: 2s
    retry:
      attempts: 0
      on: [gateway-error, 200]
      backoff: {base: 1s, max: 100ms, jiter: full}
    circuit_breaker: {failure_rate: 150%, minimum_calls: 0}
    routes:
      - match: {path_regex: '/a[', method: post}
        split: {v1: 90, v3: 5}
        mirror: {to: orders-shadow}
  ordrs:
    timeout: fast
"""

BAD_REPORT = """\
services.payments.sidecar.inbound: port already used by services.orders.sidecar.inbound, got 18002
policies.orders.retry.attempts: must be >= 1, got 0
policies.orders.retry.on[1]: must be '5xx', 'gateway-error', 'reset', 'connect-failure' or a status code from 400 to 599, got 200
policies.orders.retry.backoff.max: must be >= base (1s), got '100ms'
policies.orders.retry.backoff.jiter: unknown key (did you mean 'jitter'?)
policies.orders.circuit_breaker.failure_rate: must be <= 100%, got '150%'
policies.orders.circuit_breaker.minimum_calls: must be >= 1, got 0
policies.orders.routes[0].match.path_regex: invalid regular expression: unterminated character set at position 2, got '/a['
policies.orders.routes[0].match.method: must be an HTTP method in upper case, such as 'GET' or 'POST', got 'post'
policies.orders.routes[0].split: weights must sum to 100, got 95
policies.orders.routes[0].split.v3: no subset 'v3' in service 'orders' (subsets: v1, v2)
policies.orders.routes[0].mirror.to: no such service (did you mean 'orders'?), got 'orders-shadow'
policies.ordrs: no such service (did you mean 'orders'?)
policies.ordrs.timeout: must be a duration such as '250ms', '2s', '1.5m' or '1h', or a number of seconds, got 'fast'"""  # noqa: E501


def test_every_error_at_once_in_document_order() -> None:
    with pytest.raises(ConfigError) as caught:
        load_mesh(BAD)
    assert str(caught.value) == BAD_REPORT
    lines = [issue.line for issue in caught.value.errors]
    assert lines == [9, 14, 15, 16, 16, 17, 17, 19, 19, 20, 20, 21, 22, 23]


def test_describe_names_file_and_lines(tmp_path: Any) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as caught:
        load_mesh(path)
    report = caught.value.describe().splitlines()
    assert report[0] == f"{path}: 14 errors"
    assert report[2] == f"  {path}:14: policies.orders.retry.attempts: must be >= 1, got 0"
    assert caught.value.source == str(path)


def test_schema_errors_do_not_hide_cross_section_errors() -> None:
    data = broken("policies.orders.retry.attempts", 0)
    data["policies"]["nobody"] = {"timeout": "1s"}
    data["services"]["payments"]["sidecar"]["admin"] = 19002
    assert errors_of(data) == [
        "services.payments.sidecar.admin: port already used by services.orders.sidecar.admin,"
        " got 19002",
        "policies.orders.retry.attempts: must be >= 1, got 0",
        "policies.nobody: no such service (services: orders, payments)",
    ]


def test_missing_keys_all_reported() -> None:
    data = base()
    data["services"]["payments"] = {"sidecar": {"inbound": 1}}
    assert errors_of(data) == [
        "services.payments.sidecar.outbound: required",
        "services.payments.sidecar.admin: required",
        "services.payments.port: required",
    ]


def test_invalid_key_names() -> None:
    data = base()
    data["services"]["Bad_Name"] = data["services"].pop("payments")
    data["policies"]["orders"]["routes"][0]["mirror"]["to"] = "orders"
    assert errors_of(data) == [
        "services.Bad_Name: must be a name of lower-case letters, digits and '-',"
        " at most 63 characters"
    ]


def test_long_values_are_shortened() -> None:
    lines = errors_of(broken("policies.orders.timeout", "x" * 500))
    assert lines[0].endswith(", got '" + "x" * 56 + "...")


# -- never a partial config --


def test_invalid_config_returns_nothing_even_when_only_cross_checks_fail() -> None:
    # The schema alone accepts this; the cross-section check must still refuse it whole.
    data = broken("policies.orders.routes.0.split", {"v1": 50, "v9": 50})
    assert MeshConfig.model_validate(copy.deepcopy(data))  # schema-valid
    result = None
    with pytest.raises(ConfigError):
        result = parse_mesh(data)
    assert result is None


def test_input_is_not_modified() -> None:
    data = base()
    before = copy.deepcopy(data)
    parse_mesh(data)
    with pytest.raises(ConfigError):
        parse_mesh(broken("policies.orders.retry.attempts", 0))
    assert data == before


def test_config_is_frozen() -> None:
    mesh = parse_mesh(base())
    with pytest.raises(ValueError, match="frozen"):
        mesh.mesh = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        mesh.policy_for("orders").retry.attempts = 9  # type: ignore[misc]
