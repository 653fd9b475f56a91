"""The shared settings checks: what each accepts, what it rejects, and the one message format."""

from __future__ import annotations

import asyncio
import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy._validate import (
    require_at_least,
    require_exception_matcher,
    require_int,
    require_number,
    require_seconds,
)

NOT_NUMBERS = [True, False, "1", b"1", None, [1], 1j]


def raises(rule: str, value: object) -> Any:
    """``pytest.raises`` for the exact message ``Owner: param must be <rule>, got <value!r>``."""
    message = f"Owner: param must be {rule}, got {value!r}"
    return pytest.raises(ValueError, match=f"^{re.escape(message)}$")


# -- require_int --


@pytest.mark.parametrize("value", [1, 2, 10**30])
def test_int_accepts_ints_from_the_minimum(value: int) -> None:
    require_int("Owner", "param", value, minimum=1)


@pytest.mark.parametrize("value", [0, -1, 2.0, 1.5, math.nan, math.inf, *NOT_NUMBERS])
def test_int_rejects_the_rest(value: object) -> None:
    with raises("an int >= 1", value):
        require_int("Owner", "param", value, minimum=1)


def test_int_minimum_zero_and_none() -> None:
    require_int("Owner", "param", 0, minimum=0)
    require_int("Owner", "param", None, minimum=1, allow_none=True)
    with raises("an int >= 0", -1):
        require_int("Owner", "param", -1, minimum=0)
    with raises("an int >= 1 or None", 0):
        require_int("Owner", "param", 0, minimum=1, allow_none=True)


# -- require_seconds --


@pytest.mark.parametrize(
    ("options", "rule", "accepted", "rejected"),
    [
        ({}, "a finite number > 0", [1e-9, 1, 2.5], [0, 0.0, -1, math.inf, -math.inf]),
        (
            {"allow_zero": True},
            "a finite number >= 0",
            [0, 0.0, -0.0, 2.5],
            [-1e-9, -1, math.inf, -math.inf],
        ),
        (
            {"allow_zero": True, "allow_inf": True},
            "a number >= 0",
            [0, 2.5, math.inf],
            [-1, -math.inf],
        ),
        ({"allow_none": True}, "a finite number > 0 or None", [None, 1], [0, math.inf]),
    ],
)
def test_seconds_rules(
    options: dict[str, bool], rule: str, accepted: list[object], rejected: list[object]
) -> None:
    for value in accepted:
        require_seconds("Owner", "param", value, **options)
    for value in [*rejected, math.nan, *(v for v in NOT_NUMBERS if v is not None)]:
        with raises(rule, value):
            require_seconds("Owner", "param", value, **options)


def test_seconds_none_is_rejected_unless_allowed() -> None:
    with raises("a finite number >= 0", None):
        require_seconds("Owner", "param", None, allow_zero=True)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_seconds_accepts_exactly_the_finite_positive_floats(value: float) -> None:
    if 0 < value < math.inf:
        require_seconds("Owner", "param", value)
    else:
        with raises("a finite number > 0", value):
            require_seconds("Owner", "param", value)


# -- require_number --


@pytest.mark.parametrize(
    ("bounds", "rule", "accepted", "rejected"),
    [
        ({"ge": 1}, "a finite number >= 1", [1, 1.0, 1e300], [0.999, 0, math.inf, -math.inf]),
        ({"gt": 0}, "a finite number > 0", [1e-300, 5], [0, -0.0, -1, math.inf]),
        ({"gt": 0, "le": 100}, "in (0, 100]", [0.001, 100, 100.0], [0, 100.5, -1, math.inf]),
        ({"gt": 0, "lt": 100}, "in (0, 100)", [50], [0, 100, 100.0]),
        ({"ge": 0, "lt": 1}, "in [0, 1)", [0, 0.0, 0.999], [1, 1.0, -0.1]),
        ({"finite": False}, "a number", [-math.inf, -1, 0, math.inf], []),
        ({"ge": 0, "finite": False}, "a number >= 0", [0, math.inf], [-1, -math.inf]),
        ({}, "a finite number", [-1e300, 0, 1e300], [math.inf, -math.inf]),
    ],
)
def test_number_rules(
    bounds: dict[str, Any], rule: str, accepted: list[object], rejected: list[object]
) -> None:
    for value in accepted:
        require_number("Owner", "param", value, **bounds)
    for value in [*rejected, math.nan, *NOT_NUMBERS]:
        with raises(rule, value):
            require_number("Owner", "param", value, **bounds)


def test_number_allow_none() -> None:
    require_number("Owner", "param", None, gt=0, lt=100, allow_none=True)
    with raises("in (0, 100) or None", 100):
        require_number("Owner", "param", 100, gt=0, lt=100, allow_none=True)


# -- require_at_least --


def test_at_least_names_the_other_parameter() -> None:
    require_at_least("Owner", "param", 2.0, "base", 2.0)
    with raises(">= base (0.5)", 0.2):
        require_at_least("Owner", "param", 0.2, "base", 0.5)


# -- require_exception_matcher --


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError)


def test_matcher_splits_types_and_predicates() -> None:
    assert require_exception_matcher("Owner", "param", OSError) == ((OSError,), None)
    both = (OSError, ValueError)
    assert require_exception_matcher("Owner", "param", both) == (both, None)
    assert require_exception_matcher("Owner", "param", is_timeout) == ((), is_timeout)


@pytest.mark.parametrize("value", [(), "OSError", 3, None])
def test_matcher_rejects_what_is_neither_types_nor_a_predicate(value: object) -> None:
    with raises("an exception type, a non-empty tuple of them or a predicate", value):
        require_exception_matcher("Owner", "param", value)


@pytest.mark.parametrize(
    ("value", "culprit"),
    [
        (BaseException, BaseException),
        (KeyboardInterrupt, KeyboardInterrupt),
        (asyncio.CancelledError, asyncio.CancelledError),
        ((OSError, SystemExit), SystemExit),
        ((OSError, "x"), "x"),
        (int, int),
    ],
)
def test_matcher_names_the_type_that_is_not_an_exception(value: object, culprit: object) -> None:
    with raises("Exception subclasses or a predicate", culprit):
        require_exception_matcher("Owner", "param", value)


def test_matcher_base_can_let_cancellation_in() -> None:
    matched = require_exception_matcher("Owner", "param", KeyboardInterrupt, base=BaseException)
    assert matched == ((KeyboardInterrupt,), None)
    with raises("BaseException subclasses or a predicate", int):
        require_exception_matcher("Owner", "param", (OSError, int), base=BaseException)
