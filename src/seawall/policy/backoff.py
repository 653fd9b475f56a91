"""Backoff strategies: how long to wait before each retry.

Every strategy is a frozen, slotted dataclass with a cap (:attr:`max`) and one
method, ``delay(attempt, previous, rng) -> float``:

* ``attempt`` is the number of the retry, 1 for the first retry;
* ``previous`` is the delay this strategy returned for the previous retry
  (``0.0`` before the first one); only :class:`DecorrelatedJitter` uses it;
* ``rng`` is the random source, injected so tests are deterministic.

Every delay is in ``[0, max]``. The exponential strategies grow as
``base * multiplier ** (attempt - 1)``, so the first retry waits about ``base``.
The jittered ones follow the AWS Architecture Blog post "Exponential Backoff
And Jitter" (Marc Brooker, 2015): jitter spreads the retries of many clients
that failed together, so they do not come back in synchronized waves.

:func:`backoff` builds the exponential family from the three words a config
file uses (``jitter``, ``base``, ``max``).

Strategies hold no state: one instance is shared by every call of a policy.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "Exponential",
    "ExponentialEqualJitter",
    "ExponentialFullJitter",
    "Linear",
    "backoff",
]


@runtime_checkable
class Backoff(Protocol):
    """What a retry needs from a backoff strategy."""

    @property
    def max(self) -> float:
        """The cap: no delay is ever longer than this, in seconds."""
        ...

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ...


def _check_duration(owner: str, name: str, value: float) -> None:
    """Reject negative, NaN and infinite durations, naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")


def _check_cap(owner: str, base: float, cap: float) -> None:
    _check_duration(owner, "max", cap)
    if cap < base:
        raise ValueError(f"{owner}: max must be >= base ({base!r}), got {cap!r}")


def _check_attempt(attempt: int) -> None:
    if attempt < 1:
        raise ValueError(f"backoff: attempt must be >= 1, got {attempt!r}")


def _check_multiplier(owner: str, multiplier: float) -> None:
    if (
        isinstance(multiplier, bool)
        or not isinstance(multiplier, (int, float))
        or not math.isfinite(multiplier)
        or multiplier < 1
    ):
        raise ValueError(f"{owner}: multiplier must be a finite number >= 1, got {multiplier!r}")


def _exponential(base: float, multiplier: float, cap: float, attempt: int) -> float:
    """``min(cap, base * multiplier ** (attempt - 1))`` without overflowing."""
    try:
        value = base * multiplier ** (attempt - 1)
    except OverflowError:
        return cap if base > 0 else 0.0  # 0 * a huge growth is still 0
    return cap if value > cap else value


@dataclass(frozen=True, slots=True)
class Constant:
    """The same delay before every retry.

    >>> Constant(0.1).delay(3, 0.1, random.Random(0))
    0.1
    """

    seconds: float
    """The delay, in seconds (also the cap)."""

    def __post_init__(self) -> None:
        _check_duration("Constant", "seconds", self.seconds)

    @property
    def max(self) -> float:
        """The cap, which is the constant delay itself."""
        return self.seconds

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Return :attr:`seconds`, whatever the attempt."""
        _check_attempt(attempt)
        return self.seconds


@dataclass(frozen=True, slots=True)
class Linear:
    """``min(max, base + step * (attempt - 1))``: a delay growing by ``step`` each retry.

    >>> Linear(0.1, 0.2, 1.0).delay(3, 0.0, random.Random(0))
    0.5
    """

    base: float
    """Delay before the first retry, seconds."""
    step: float
    """Added for each further retry, seconds."""
    max: float
    """Cap, seconds."""

    def __post_init__(self) -> None:
        _check_duration("Linear", "base", self.base)
        _check_duration("Linear", "step", self.step)
        _check_cap("Linear", self.base, self.max)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """The linear delay for retry ``attempt``, capped."""
        _check_attempt(attempt)
        value = self.base + self.step * (attempt - 1)
        return self.max if value > self.max else value


@dataclass(frozen=True, slots=True)
class Exponential:
    """``min(max, base * multiplier ** (attempt - 1))``, no jitter.

    Deterministic, so many clients that failed together retry together: prefer
    a jittered strategy unless there is a single client.

    >>> [Exponential(0.1, 2.0, 1.0).delay(n, 0.0, random.Random(0)) for n in (1, 2, 3, 4, 5)]
    [0.1, 0.2, 0.4, 0.8, 1.0]
    """

    base: float
    """Delay before the first retry, seconds."""
    multiplier: float = 2.0
    """Growth factor per retry (>= 1)."""
    max: float = 2.0
    """Cap, seconds."""

    def __post_init__(self) -> None:
        _check_duration("Exponential", "base", self.base)
        _check_multiplier("Exponential", self.multiplier)
        _check_cap("Exponential", self.base, self.max)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """The exponential delay for retry ``attempt``, capped."""
        _check_attempt(attempt)
        return _exponential(self.base, self.multiplier, self.max, attempt)


@dataclass(frozen=True, slots=True)
class ExponentialFullJitter:
    """AWS "Full Jitter": ``uniform(0, min(max, base * 2 ** (attempt - 1)))``.

    The least total work of the AWS variants for many competing clients; the
    price is that a delay can be arbitrarily close to zero.
    """

    base: float
    """Upper bound of the first retry's delay, seconds."""
    max: float = 2.0
    """Cap, seconds."""

    def __post_init__(self) -> None:
        _check_duration("ExponentialFullJitter", "base", self.base)
        _check_cap("ExponentialFullJitter", self.base, self.max)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """A uniform draw between 0 and the capped exponential delay."""
        _check_attempt(attempt)
        return rng.random() * _exponential(self.base, 2.0, self.max, attempt)


@dataclass(frozen=True, slots=True)
class ExponentialEqualJitter:
    """AWS "Equal Jitter": ``v / 2 + uniform(0, v / 2)``.

    ``v = min(max, base * 2 ** (attempt - 1))``, the capped exponential delay.

    Keeps at least half of the exponential delay, so a retry never comes
    back immediately.
    """

    base: float
    """The first retry waits between ``base / 2`` and ``base`` seconds."""
    max: float = 2.0
    """Cap, seconds."""

    def __post_init__(self) -> None:
        _check_duration("ExponentialEqualJitter", "base", self.base)
        _check_cap("ExponentialEqualJitter", self.base, self.max)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """Half the capped exponential delay plus a uniform draw over the other half."""
        _check_attempt(attempt)
        half = _exponential(self.base, 2.0, self.max, attempt) / 2
        return half + rng.random() * half


@dataclass(frozen=True, slots=True)
class DecorrelatedJitter:
    """AWS "Decorrelated Jitter": ``min(max, uniform(base, previous * 3))``.

    Each delay is drawn from the previous one (``previous`` below ``base``,
    as before the first retry, counts as ``base``), so the sequence grows
    about threefold per retry on average but is not tied to the attempt number.
    ``base`` must be > 0, or every delay would be 0.
    """

    base: float
    """Lower bound of every delay, seconds (> 0)."""
    max: float = 2.0
    """Cap, seconds."""

    def __post_init__(self) -> None:
        _check_duration("DecorrelatedJitter", "base", self.base)
        if self.base <= 0:
            raise ValueError(f"DecorrelatedJitter: base must be > 0, got {self.base!r}")
        _check_cap("DecorrelatedJitter", self.base, self.max)

    def delay(self, attempt: int, previous: float, rng: random.Random) -> float:
        """A uniform draw between ``base`` and three times the previous delay, capped."""
        _check_attempt(attempt)
        base = self.base
        upper = 3 * (previous if previous > base else base)
        value = base + rng.random() * (upper - base)
        return self.max if value > self.max else value


_JITTERS = ("none", "full", "equal", "decorrelated")


def backoff(jitter: str = "full", base: float = 0.05, max: float = 2.0) -> Backoff:
    """Build an exponential backoff (doubling per retry) from config words.

    ``jitter`` is ``"none"`` (:class:`Exponential`), ``"full"``
    (:class:`ExponentialFullJitter`, the default), ``"equal"``
    (:class:`ExponentialEqualJitter`) or ``"decorrelated"``
    (:class:`DecorrelatedJitter`). This is what ``retry.backoff`` in
    ``mesh.yaml`` maps to: ``{base: 25ms, max: 1s, jitter: full}``.

    Defaults: ``base=0.05`` (50 ms: long enough for a dropped connection or a
    leader election blip to clear, short enough that a user-facing request
    barely notices) and ``max=2.0`` (beyond 2 s a caller is usually better
    served by failing and letting its own caller decide).

    >>> backoff("equal", base=0.1, max=1.0)
    ExponentialEqualJitter(base=0.1, max=1.0)
    """
    if jitter == "none":
        return Exponential(base, 2.0, max)
    if jitter == "full":
        return ExponentialFullJitter(base, max)
    if jitter == "equal":
        return ExponentialEqualJitter(base, max)
    if jitter == "decorrelated":
        return DecorrelatedJitter(base, max)
    raise ValueError(f"backoff: jitter must be one of {', '.join(_JITTERS)}; got {jitter!r}")
