"""Backoff strategies: exact schedules, AWS formulas, bounds (hypothesis), validation."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.policy.backoff import (
    Backoff,
    Constant,
    DecorrelatedJitter,
    Exponential,
    ExponentialEqualJitter,
    ExponentialFullJitter,
    Linear,
    backoff,
)

durations = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
attempts = st.integers(min_value=1, max_value=5000)
seeds = st.integers(min_value=0, max_value=2**32)


@st.composite
def base_and_cap(draw: st.DrawFn, min_base: float = 0.0) -> tuple[float, float]:
    base = draw(st.floats(min_value=min_base, max_value=10.0, allow_nan=False))
    cap = draw(st.floats(min_value=base, max_value=1000.0, allow_nan=False))
    return base, cap


@st.composite
def any_strategy(draw: st.DrawFn) -> Backoff:
    base, cap = draw(base_and_cap(min_base=1e-6))
    kind = draw(st.sampled_from(["constant", "linear", "exp", "full", "equal", "decorrelated"]))
    if kind == "constant":
        return Constant(base)
    if kind == "linear":
        return Linear(base, draw(durations), cap)
    if kind == "exp":
        return Exponential(base, draw(st.floats(min_value=1.0, max_value=10.0)), cap)
    if kind == "full":
        return ExponentialFullJitter(base, cap)
    if kind == "equal":
        return ExponentialEqualJitter(base, cap)
    return DecorrelatedJitter(base, cap)


# -- exact values --


def test_constant_is_constant_and_its_cap_is_itself() -> None:
    c = Constant(0.25)
    assert [c.delay(n, 0.0, random.Random(0)) for n in (1, 2, 50)] == [0.25, 0.25, 0.25]
    assert c.max == 0.25


def test_linear_schedule_and_cap() -> None:
    lin = Linear(base=0.1, step=0.5, max=1.0)
    got = [lin.delay(n, 0.0, random.Random(0)) for n in (1, 2, 3, 4)]
    assert got == pytest.approx([0.1, 0.6, 1.0, 1.0])


def test_exponential_schedule_first_retry_waits_base() -> None:
    exp = Exponential(base=0.05, multiplier=3.0, max=1.0)
    got = [exp.delay(n, 0.0, random.Random(0)) for n in (1, 2, 3, 4)]
    assert got == pytest.approx([0.05, 0.15, 0.45, 1.0])


def test_exponential_huge_attempt_does_not_overflow() -> None:
    assert Exponential(0.1, 2.0, 5.0).delay(10**6, 0.0, random.Random(0)) == 5.0
    assert ExponentialFullJitter(0.1, 5.0).delay(10**6, 0.0, random.Random(1)) <= 5.0


def test_zero_base_stays_zero_past_float_overflow() -> None:
    # 0 * 2.0 ** 1100 is 0, but 2.0 ** 1100 overflows: that must not mean "cap".
    assert Exponential(0.0, 2.0, 5.0).delay(1100, 0.0, random.Random(0)) == 0.0
    assert ExponentialFullJitter(0.0, 5.0).delay(1100, 0.0, random.Random(0)) == 0.0
    assert ExponentialEqualJitter(0.0, 5.0).delay(1100, 0.0, random.Random(0)) == 0.0


def test_full_jitter_matches_aws_formula() -> None:
    s = ExponentialFullJitter(base=0.1, max=10.0)
    for n in range(1, 8):
        expected = random.Random(n).random() * min(10.0, 0.1 * 2 ** (n - 1))
        assert s.delay(n, 0.0, random.Random(n)) == pytest.approx(expected)


def test_equal_jitter_matches_aws_formula() -> None:
    s = ExponentialEqualJitter(base=0.1, max=10.0)
    for n in range(1, 8):
        v = min(10.0, 0.1 * 2 ** (n - 1))
        expected = v / 2 + random.Random(n).random() * (v / 2)
        assert s.delay(n, 0.0, random.Random(n)) == pytest.approx(expected)


def test_decorrelated_matches_aws_formula_and_starts_from_base() -> None:
    s = DecorrelatedJitter(base=0.1, max=10.0)
    # before the first retry, previous (0.0) counts as base: uniform(base, 3 * base)
    expected = 0.1 + random.Random(3).random() * (0.3 - 0.1)
    assert s.delay(1, 0.0, random.Random(3)) == pytest.approx(expected)
    expected = 0.1 + random.Random(4).random() * (6.0 - 0.1)
    assert s.delay(2, 2.0, random.Random(4)) == pytest.approx(expected)


def test_strategies_are_frozen_and_slotted() -> None:
    s = ExponentialFullJitter(0.1, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.base = 2.0  # type: ignore[misc]
    assert not hasattr(s, "__dict__")
    assert isinstance(s, Backoff)


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="backoff: attempt must be an int >= 1, got 0"):
        Exponential(0.1).delay(0, 0.0, random.Random(0))


# -- factory --


@pytest.mark.parametrize(
    ("jitter", "kind"),
    [
        ("none", Exponential),
        ("full", ExponentialFullJitter),
        ("equal", ExponentialEqualJitter),
        ("decorrelated", DecorrelatedJitter),
    ],
)
def test_factory_maps_config_words(jitter: str, kind: type) -> None:
    s = backoff(jitter, base=0.025, max=1.0)
    assert type(s) is kind
    assert s.max == 1.0
    assert s.base == 0.025  # type: ignore[attr-defined]


def test_factory_defaults_are_full_jitter() -> None:
    assert backoff() == ExponentialFullJitter(base=0.05, max=2.0)


def test_factory_rejects_unknown_jitter_naming_it() -> None:
    with pytest.raises(ValueError, match=r"jitter .*'fuzzy'"):
        backoff("fuzzy")


# -- validation --


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Constant(-1.0), "Constant: seconds must be a finite number >= 0, got -1.0"),
        (lambda: Linear(-0.1, 0.1, 1.0), "Linear: base must be a finite number >= 0, got -0.1"),
        (lambda: Linear(0.1, -0.1, 1.0), "Linear: step must be a finite number >= 0, got -0.1"),
        (lambda: Linear(0.5, 0.1, 0.2), r"Linear: max must be >= base \(0.5\), got 0.2"),
        (lambda: Exponential(0.1, 0.5, 1.0), "Exponential: multiplier must be .* >= 1, got 0.5"),
        (lambda: Exponential(2.0, 2.0, 1.0), r"Exponential: max must be >= base \(2.0\), got 1.0"),
        (lambda: Exponential(float("nan")), "Exponential: base must be .*, got nan"),
        (lambda: ExponentialFullJitter(0.1, float("inf")), "max must be .*, got inf"),
        (lambda: ExponentialEqualJitter(-1.0), "ExponentialEqualJitter: base .* got -1.0"),
        (lambda: DecorrelatedJitter(0.0, 1.0), "DecorrelatedJitter: base must be .* > 0, got 0.0"),
        (lambda: backoff("full", base=-1.0), "base must be .* >= 0, got -1.0"),
        (lambda: backoff("none", base=1.0, max=0.5), r"max must be >= base \(1.0\), got 0.5"),
    ],
)
def test_bad_config_names_parameter_and_value(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_non_number_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Exponential: base must be a finite number >= 0, got '1'"):
        Exponential("1")  # type: ignore[arg-type]


# -- properties --


@given(any_strategy(), attempts, durations, seeds)
def test_every_delay_is_within_zero_and_cap(s: Backoff, n: int, previous: float, seed: int) -> None:
    d = s.delay(n, previous, random.Random(seed))
    assert 0.0 <= d <= s.max


@given(base_and_cap(), st.floats(min_value=1.0, max_value=10.0), st.integers(1, 3000))
def test_exponential_is_monotone_until_cap_then_flat(
    bc: tuple[float, float], multiplier: float, n: int
) -> None:
    base, cap = bc
    s = Exponential(base, multiplier, cap)
    rng = random.Random(0)
    a, b = s.delay(n, 0.0, rng), s.delay(n + 1, 0.0, rng)
    assert a <= b
    if a == cap:
        assert b == cap


@given(base_and_cap(), st.floats(min_value=0.0, max_value=10.0), st.integers(1, 3000))
def test_linear_is_monotone(bc: tuple[float, float], step: float, n: int) -> None:
    base, cap = bc
    s = Linear(base, step, cap)
    assert s.delay(n, 0.0, random.Random(0)) <= s.delay(n + 1, 0.0, random.Random(0))


@given(base_and_cap(), st.integers(1, 3000), seeds)
def test_full_jitter_is_below_the_capped_exponential(
    bc: tuple[float, float], n: int, seed: int
) -> None:
    base, cap = bc
    bound = Exponential(base, 2.0, cap).delay(n, 0.0, random.Random(0))
    assert 0.0 <= ExponentialFullJitter(base, cap).delay(n, 0.0, random.Random(seed)) <= bound


@given(base_and_cap(), st.integers(1, 3000), seeds)
def test_equal_jitter_keeps_at_least_half(bc: tuple[float, float], n: int, seed: int) -> None:
    base, cap = bc
    v = Exponential(base, 2.0, cap).delay(n, 0.0, random.Random(0))
    d = ExponentialEqualJitter(base, cap).delay(n, 0.0, random.Random(seed))
    assert v / 2 <= d <= v


@given(base_and_cap(min_base=1e-6), durations, st.integers(1, 50), seeds)
def test_decorrelated_stays_between_base_and_three_times_previous(
    bc: tuple[float, float], previous: float, n: int, seed: int
) -> None:
    base, cap = bc
    d = DecorrelatedJitter(base, cap).delay(n, previous, random.Random(seed))
    assert base <= d <= min(cap, 3 * max(previous, base)) * (1 + 1e-12)


@given(any_strategy(), st.lists(attempts, min_size=1, max_size=20), seeds)
def test_same_seed_same_schedule(s: Backoff, ns: list[int], seed: int) -> None:
    def run() -> list[float]:
        rng, previous, out = random.Random(seed), 0.0, []
        for n in ns:
            previous = s.delay(n, previous, rng)
            out.append(previous)
        return out

    assert run() == run()


def test_jitter_actually_varies() -> None:
    s = ExponentialFullJitter(1.0, 10.0)
    rng = random.Random(7)
    assert len({s.delay(3, 0.0, rng) for _ in range(20)}) == 20
