"""Friendly units: durations, percentages, sizes; parsing, ranges and round trips."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.config import ConfigError, format_duration, parse_duration, parse_mesh
from seawall.config.units import parse_percent, parse_size


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("25ms", 0.025),
        ("2s", 2.0),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("30d", 2_592_000.0),
        ("1m30s", 90.0),
        ("1h 30m", 5400.0),
        ("250us", 0.00025),
        (".5s", 0.5),
        ("2", 2.0),
        ("0", 0.0),
        (" 10s ", 10.0),
        ("1.5m", 90.0),
        ("-1s", -1.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_duration_parses(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "bad", ["", "s", "1x", "1 ms ms", "ms1", "1e3s", "fast", "1,5s", True, None, [1], {}, "1s2"]
)
def test_duration_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="must be a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
def test_duration_refuses_non_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration(bad)


def test_duration_too_large_for_a_float() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration("9" * 400 + "d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0s"), (0.025, "25ms"), (0.25, "250ms"), (1.5, "1.5s"), (90.0, "90s"),
     (120.0, "2m"), (7200.0, "2h"), (86400.0, "1d"), (0.0001, "100us"), (1e-9, "0.001us")],
)
def test_duration_formats(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=1e15, allow_nan=False, allow_infinity=False))
def test_duration_round_trips_every_float(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


_EXACT = {"us": Fraction(1, 10**6), "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60),
          "h": Fraction(3600), "d": Fraction(86400)}


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(sorted(_EXACT)))
def test_duration_integer_with_unit_is_exact(number: int, unit: str) -> None:
    # Computed exactly, rounded once: "25ms" is the float nearest 0.025, not 25 * 0.001.
    assert parse_duration(f"{number}{unit}") == float(number * _EXACT[unit])


@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_duration_decimal_with_unit_is_exact(value: Decimal) -> None:
    assert parse_duration(f"{value}ms") == float(Fraction(value) / 1000)
    assert parse_duration(f"{value}") == float(Fraction(value))


@pytest.mark.parametrize(
    ("text", "percent"),
    [("50%", 50.0), ("99.9%", 99.9), ("0%", 0.0), ("100 %", 100.0), (50, 50.0), (0.5, 0.5)],
)
def test_percent_parses(text: object, percent: float) -> None:
    assert parse_percent(text) == percent


@pytest.mark.parametrize("bad", ["50", "%", "half", True, None, "50%%", math.nan])
def test_percent_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="percentage"):
        parse_percent(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("8KiB", 8192), ("10MiB", 10 * 2**20), ("1GiB", 2**30), ("64KB", 64_000),
     ("10MB", 10_000_000), ("512B", 512), ("1.5KiB", 1536), ("8 kib", 8192), (0, 0), (77, 77)],
)
def test_size_parses(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["8", "8K", "1.5B", "lots", 1.5, True, None])
def test_size_refuses(bad: object) -> None:
    with pytest.raises(ValueError, match="size|whole"):
        parse_size(bad)


# -- units inside a config: friendly in, plain numbers out --


def _mesh(**policy: object) -> dict[str, object]:
    return {
        "mesh": "m",
        "services": {"a": {"port": 1, "sidecar": {"inbound": 2, "outbound": 3, "admin": 4}}},
        "policies": {"a": policy},
    }


@pytest.mark.parametrize(
    ("written", "seconds"), [("1500ms", 1.5), ("1.5s", 1.5), (1.5, 1.5), (2, 2.0), ("1m", 60.0)]
)
def test_timeout_spellings(written: object, seconds: float) -> None:
    assert parse_mesh(_mesh(timeout=written)).policy_for("a").timeout == seconds


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (0, "policies.a.timeout: must be > 0, got 0"),
        ("0s", "policies.a.timeout: must be > 0, got '0s'"),
        ("-2s", "policies.a.timeout: must be > 0, got '-2s'"),
        (True, "policies.a.timeout: must be a duration such as '250ms', '2s', '1.5m' or '1h', "
               "or a number of seconds, got True"),
    ],
)
def test_timeout_range(written: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(_mesh(timeout=written))
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("0%", "policies.a.circuit_breaker.failure_rate: must be > 0, got '0%'"),
        (100.5, "policies.a.circuit_breaker.failure_rate: must be <= 100%, got 100.5"),
        ("50", "policies.a.circuit_breaker.failure_rate: must be a percentage such as '50%' or "
               "'99.9%', or a number from 0 to 100, got '50'"),
    ],
)
def test_rate_range(written: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_mesh(_mesh(circuit_breaker={"failure_rate": written}))
    assert str(caught.value) == message
