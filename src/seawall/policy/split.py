"""Weighted traffic splits: the Python twin of the sidecar's split (crates/seawall-policy).

A route's ``split: {v1: 90, v2: 10}`` sends each request to one subset with
probability proportional to its weight. The sidecar draws in Rust; this module
is the same algorithm in Python, so that the conformance corpus
(``tests/conformance``) can prove both give the same subset for the same draw.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["WeightedSplit", "choose_subset"]


@dataclass(frozen=True, slots=True)
class WeightedSplit:
    """Traffic split across subsets (versions), proportional to the weights.

    Weights need not add up to 100; a weight of 0 sends nothing to that subset.
    Build one from a mapping with :meth:`of`.

    Attributes:
        weights: ``(subset, weight)`` pairs; names unique and non-empty,
            weights finite and >= 0, at least one > 0.
    """

    weights: tuple[tuple[str, float], ...]
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cumulative: tuple[float, ...] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> WeightedSplit:
        """A split from a ``{subset: weight}`` mapping, e.g. ``{"v1": 90, "v2": 10}``."""
        if not isinstance(weights, Mapping):
            raise ValueError(f"WeightedSplit: weights must be a mapping, got {weights!r}")
        return cls(tuple(weights.items()))

    def __post_init__(self) -> None:
        pairs = self.weights
        if not isinstance(pairs, tuple) or not pairs:
            raise ValueError(f"WeightedSplit: weights must be a non-empty tuple, got {pairs!r}")
        names: list[str] = []
        cumulative: list[float] = []
        total = 0.0
        for pair in pairs:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(
                    f"WeightedSplit: weights must be (subset, weight) pairs, got {pair!r}"
                )
            name, weight = pair
            if not isinstance(name, str) or not name:
                raise ValueError(f"WeightedSplit: subset must be a non-empty str, got {name!r}")
            if name in names:
                raise ValueError(f"WeightedSplit: subsets must be unique, got {name!r} twice")
            if (
                isinstance(weight, bool)
                or not isinstance(weight, int | float)
                or not math.isfinite(weight)
                or weight < 0
            ):
                raise ValueError(
                    f"WeightedSplit: weight of {name!r} must be a finite number >= 0, "
                    f"got {weight!r}"
                )
            total += weight
            names.append(name)
            cumulative.append(total)
        if total <= 0:
            raise ValueError(f"WeightedSplit: at least one weight must be > 0, got {pairs!r}")
        object.__setattr__(self, "_names", tuple(names))
        object.__setattr__(self, "_cumulative", tuple(cumulative))

    @property
    def total(self) -> float:
        """The sum of the weights."""
        return self._cumulative[-1]


def choose_subset(split: WeightedSplit, rng: random.Random) -> str:
    """A subset of ``split``, with probability proportional to its weight (one draw).

    ``random() < 1``, so the point is below the total: some bound is above it,
    and a bound equal to the previous one (a zero weight) is never the first
    above it. A total so small that the product rounds up to it picks the last
    subset with a positive weight (as the Rust twin does).
    """
    cumulative = split._cumulative
    point = rng.random() * cumulative[-1]
    index = 0
    while index < len(cumulative) and point >= cumulative[index]:
        index += 1
    if index < len(cumulative):
        return split._names[index]
    for last in range(len(cumulative) - 1, -1, -1):
        if cumulative[last] > (cumulative[last - 1] if last else 0.0):
            return split._names[last]
    return split._names[-1]
