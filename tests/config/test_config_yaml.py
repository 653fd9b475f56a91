"""Reading YAML: sources, syntax errors with lines, duplicates, YAML 1.2 scalars, hostile input."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seawall.config import ConfigError, ConfigIssue, load_mesh

GOOD = """\
mesh: shop
services:
  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
"""


def error_of(source: str | bytes | Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_mesh(source)
    return caught.value


# -- where the YAML comes from --


def test_text_path_str_and_bytes(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(GOOD)
    from_text = load_mesh(GOOD)
    assert load_mesh(path) == from_text
    assert load_mesh(str(path)) == from_text
    assert load_mesh(GOOD.encode()) == from_text


def test_one_line_flow_mapping_is_text() -> None:
    text = "{mesh: m, services: {a: {port: 1, sidecar: {inbound: 2, outbound: 3, admin: 4}}}}"
    assert load_mesh(text).mesh == "m"


def test_missing_file() -> None:
    error = error_of("no/such/mesh.yaml")
    assert str(error) == "no/such/mesh.yaml: cannot read: No such file or directory"
    assert error.source == "no/such/mesh.yaml"


def test_file_errors_carry_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text(GOOD.replace("8002", "0"))
    error = error_of(path)
    assert error.source == str(path)
    assert error.errors == [ConfigIssue("services.orders.port", "must be >= 1", "0", 3)]


def test_not_utf8() -> None:
    assert str(error_of(b"mesh: \xff\n")).startswith("(top level): not UTF-8 text")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\n# nothing\n", "(top level): empty config: expected a mapping with mesh and services"),
        ("- a\n- b\n", "(top level): must be a mapping, got ['a', 'b']"),
        ("just words\n", "(top level): must be a mapping, got 'just words'"),
    ],
)
def test_document_not_a_mapping(text: str, expected: str) -> None:
    assert str(error_of(text)) == expected


# -- syntax errors: line and column --


@pytest.mark.parametrize(
    ("text", "expected", "line"),
    [
        (
            "mesh: shop\nservices:\n  orders: {port: 1\n  x: [\n",
            "line 4, column 4: invalid YAML: while parsing a flow mapping: "
            "expected ',' or '}', but got ':'",
            4,
        ),
        (
            "mesh: shop\nservices:\n  orders:\n    port: 1\n   bad: 2\n",
            "line 5, column 4: invalid YAML: while parsing a block mapping: "
            "expected <block end>, but found '<block mapping start>'",
            5,
        ),
        ("mesh: 'open\n", "line 2, column 1: invalid YAML: while scanning a quoted scalar: "
         "found unexpected end of stream", 2),
        ("mesh: a\n\tservices: {}\n", "line 2, column 1: invalid YAML: while scanning for the next "
         "token: found character '\\t' that cannot start any token", 2),
        ("mesh: a\n---\nmesh: b\n", "line 2, column 1: invalid YAML: expected a single document "
         "in the stream: but found another document", 2),
        (
            "mesh: !!python/object:os.system x\n",
            "line 1, column 7: invalid YAML: could not determine "
            "a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'",
            1,
        ),
        ("? [a]\n: 1\n", "line 1, column 3: invalid YAML: while constructing a mapping: "
         "found an unhashable key", 1),
    ],
)
def test_syntax_error_has_line_and_column(text: str, expected: str, line: int) -> None:
    error = error_of(text)
    assert str(error) == expected
    assert [issue.line for issue in error.errors] == [line]


# -- duplicate keys --


def test_duplicate_keys_are_errors_with_both_lines() -> None:
    text = GOOD + (
        "  orders: {port: 8003, sidecar: {inbound: 18003, outbound: 15003, admin: 19003}}\n"
        "policies:\n"
        "  orders: {timeout: 1s, timeout: 2s}\n"
    )
    error = error_of(text)
    assert str(error).splitlines() == [
        "services.orders: duplicate key (first on line 3)",
        "policies.orders.timeout: duplicate key (first on line 6)",
    ]
    assert [issue.line for issue in error.errors] == [4, 6]


def test_merge_keys_may_be_overridden() -> None:
    text = GOOD + (
        "policies:\n"
        "  orders:\n"
        "    <<: {timeout: 1s, per_try_timeout: 500ms}\n"
        "    timeout: 2s\n"
    )
    policy = load_mesh(text).policy_for("orders")
    assert (policy.timeout, policy.per_try_timeout) == (2.0, 0.5)


def test_anchors_share_a_policy() -> None:
    text = (
        "mesh: shop\n"
        "services:\n"
        "  a: {port: 1, sidecar: {inbound: 2, outbound: 3, admin: 4}}\n"
        "  b: {port: 5, sidecar: {inbound: 6, outbound: 7, admin: 8}}\n"
        "policies:\n"
        "  a: &fast {timeout: 300ms, retry: {attempts: 1}}\n"
        "  b: *fast\n"
    )
    mesh = load_mesh(text)
    assert mesh.policy_for("a") == mesh.policy_for("b")
    assert mesh.policy_for("b").timeout == 0.3


def test_error_inside_an_anchor_is_reported_where_used() -> None:
    text = GOOD + "policies:\n  orders: &p {timeout: 0s}\n"
    assert str(error_of(text)) == "policies.orders.timeout: must be > 0, got '0s'"


# -- YAML 1.2 scalars --


def test_on_is_a_key_not_true() -> None:
    text = GOOD + "policies:\n  orders: {retry: {on: [5xx, 503]}}\n"
    assert load_mesh(text).policy_for("orders").retry.on == ("5xx", 503)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("yes", "sidecar.access_log: must be true or false, got 'yes'"),
        ("off", "sidecar.access_log: must be true or false, got 'off'"),
        ("1", "sidecar.access_log: must be true or false, got 1"),
    ],
)
def test_only_true_and_false_are_booleans(written: str, expected: str) -> None:
    assert str(error_of(GOOD + f"sidecar: {{access_log: {written}}}\n")) == expected


@pytest.mark.parametrize(("written", "value"), [("true", True), ("False", False), ("TRUE", True)])
def test_booleans(written: str, value: bool) -> None:
    assert load_mesh(GOOD + f"sidecar: {{access_log: {written}}}\n").sidecar.access_log is value


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("1:30", None), ("010", 10.0), ("0x10", 16.0), ("0o10", 8.0), ("1e1", 10.0), ("1_0", None)],
)
def test_numbers_are_yaml_1_2(written: str, seconds: float | None) -> None:
    text = GOOD + f"policies:\n  orders: {{timeout: {written}}}\n"
    if seconds is None:
        error = error_of(text)
        assert str(error).startswith("policies.orders.timeout: must be a duration")
        assert str(error).endswith(f"got '{written}'")
    else:
        assert load_mesh(text).policy_for("orders").timeout == seconds


def test_dates_stay_strings() -> None:
    text = GOOD.replace("orders: {", "orders: {subsets: {v1: {labels: {since: 2024-01-01}}}, ")
    assert load_mesh(text).services["orders"].subsets["v1"].labels == {"since": "2024-01-01"}


def test_infinity_is_refused() -> None:
    text = GOOD + "policies:\n  orders: {timeout: .inf}\n"
    assert str(error_of(text)) == "policies.orders.timeout: must be a finite duration, got inf"


# -- hostile input --


def test_recursive_alias() -> None:
    assert str(error_of("mesh: &a\n  x: *a\n")) == (
        "(top level): refers to itself (a recursive YAML alias)"
    )


def test_alias_bomb() -> None:
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    error = error_of("\n".join(lines) + "\n")
    assert str(error) == "(top level): too large: over 100000 values once aliases are expanded"


def test_deep_nesting() -> None:
    assert str(error_of("mesh: " + "[" * 100 + "]" * 100 + "\n")) == (
        "(top level): nested more than 64 levels deep"
    )
    assert str(error_of("mesh: " + "[" * 20000 + "]" * 20000 + "\n")) == (
        "(top level): invalid YAML: nested too deeply"
    )


# -- fuzz: damaged YAML gives a config or a ConfigError, each problem on one line --

_SHOP = (Path(__file__).resolve().parents[2] / "examples" / "shop" / "mesh.yaml").read_text()
_PIECES = st.sampled_from(
    [*"{}[]:,-&*!|>'\"%@`#\n\t ?<=~^.0123456789abxyz", "on", "yes", "<<", "!!str", "&a", "*a",
     "null", "1:30", ".inf", "orders", "5xx", "10%", "1s"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(_SHOP)), st.integers(0, 40), st.lists(_PIECES, max_size=12))
def test_damaged_yaml(position: int, cut: int, inserted: list[str]) -> None:
    text = _SHOP[:position] + "".join(inserted) + _SHOP[position + cut :]
    try:
        load_mesh(text)
    except ConfigError as error:
        issues = error.errors
    else:
        return
    assert issues
    assert all("\n" not in str(issue) for issue in issues)
