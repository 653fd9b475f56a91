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

import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._validate import require_at_least, require_int, require_number, require_seconds

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


def _check_attempt(attempt: int) -> None:
    if attempt < 1:  # every delay() passes here: the helper only builds the error
        require_int("backoff", "attempt", attempt, minimum=1)


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
        require_seconds("Constant", "seconds", self.seconds, allow_zero=True)

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
        require_seconds("Linear", "base", self.base, allow_zero=True)
        require_seconds("Linear", "step", self.step, allow_zero=True)
        require_seconds("Linear", "max", self.max, allow_zero=True)
        require_at_least("Linear", "max", self.max, "base", self.base)

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
        require_seconds("Exponential", "base", self.base, allow_zero=True)
        require_number("Exponential", "multiplier", self.multiplier, ge=1)
        require_seconds("Exponential", "max", self.max, allow_zero=True)
        require_at_least("Exponential", "max", self.max, "base", self.base)

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
        require_seconds("ExponentialFullJitter", "base", self.base, allow_zero=True)
        require_seconds("ExponentialFullJitter", "max", self.max, allow_zero=True)
        require_at_least("ExponentialFullJitter", "max", self.max, "base", self.base)

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
        require_seconds("ExponentialEqualJitter", "base", self.base, allow_zero=True)
        require_seconds("ExponentialEqualJitter", "max", self.max, allow_zero=True)
        require_at_least("ExponentialEqualJitter", "max", self.max, "base", self.base)

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
        require_seconds("DecorrelatedJitter", "base", self.base)
        require_seconds("DecorrelatedJitter", "max", self.max, allow_zero=True)
        require_at_least("DecorrelatedJitter", "max", self.max, "base", self.base)

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
