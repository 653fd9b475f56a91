"""Realistic objectives from data: what a service achieved, and what its dependencies allow.

``seawall slo suggest SERVICE`` answers "how do you calculate realistic SLOs
for critical services?" from the traces the mesh already keeps (the
service graph of ``seawall traces``: calls and errors per service and per
edge, over a lookback):

* **What was achieved**: the service's availability (calls not in error over
  all calls) and latency (p50, p99); for each usual target (99% to 99.99%),
  whether it would have held, and the budget it would have left,
  ``1 - (1 - achieved) / (1 - target)``.
* **What the dependencies allow**: a call that needs every one of its hard,
  serial dependencies succeeds only if each does, so its availability is at
  most the product of theirs: ``ceiling = prod(1 - p_i)``, ``p_i`` the share
  of calls to dependency ``i`` that failed. A target above the ceiling is
  unreachable without fallbacks or retries.
* **What the retries buy**: ``n`` attempts of a call that fails independently
  with ``p`` fail together with ``p ** n``: ``ceiling = prod(1 - p_i ** n_i)``,
  ``n_i`` the attempts ``policies.<dependency>.retry`` allows (1 without
  mesh.yaml). Independence is the optimistic case: failures that come
  together (an outage) are not retried away.

Every callee of the service counts as a hard, serial dependency unless
named ``soft`` (a call with a fallback, or one made in parallel with an
alternative). Sans-I/O: figures in, rows out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["TARGETS", "Dependency", "Suggestion", "TargetRow", "snippet", "suggest"]

TARGETS = (99.0, 99.5, 99.9, 99.95, 99.99)
"""The targets a suggestion weighs, percent."""


@dataclass(frozen=True, slots=True)
class Dependency:
    """A callee of the service: its calls and failed ones, and the attempts a call gets."""

    name: str
    calls: int
    errors: int
    attempts: int = 1

    @property
    def failure(self) -> float:
        return self.errors / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class TargetRow:
    target: float
    held: bool
    """The achieved availability reached it."""
    budget_left: float | None
    """Of the budget the target allows, the share the achieved availability left."""
    reachable: bool
    """Under the dependencies' ceiling, without retries."""
    reachable_with_retries: bool


@dataclass(frozen=True, slots=True)
class Suggestion:
    service: str
    calls: int
    errors: int
    achieved: float | None
    """Percent of the calls not in error; ``None`` without calls."""
    p50_ms: float | None
    p99_ms: float | None
    ceiling: float
    """Percent: the product of the hard dependencies' availabilities."""
    ceiling_with_retries: float
    dependencies: tuple[Dependency, ...]
    rows: tuple[TargetRow, ...]

    @property
    def suggested(self) -> float | None:
        """The strictest target that held and that the dependencies allow with retries."""
        fits = [r.target for r in self.rows if r.held and r.reachable_with_retries]
        return max(fits) if fits else None


def suggest(
    service: str,
    calls: int,
    errors: int,
    dependencies: Iterable[Dependency],
    *,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    soft: Sequence[str] = (),
    targets: Sequence[float] = TARGETS,
) -> Suggestion:
    """The rows of ``seawall slo suggest`` (see the module for each figure)."""
    if calls < 0 or not 0 <= errors <= max(calls, 0):
        raise ValueError(f"need 0 <= errors <= calls, got {errors} of {calls}")
    hard = tuple(d for d in dependencies if d.name not in soft and d.calls > 0)
    for d in hard:
        if d.attempts < 1 or not 0 <= d.errors <= d.calls:
            raise ValueError(f"{d.name}: need attempts >= 1 and 0 <= errors <= calls")
    ceiling = math.prod(1 - d.failure for d in hard)
    with_retries = math.prod(1 - d.failure**d.attempts for d in hard)
    achieved = None if calls == 0 else 100.0 * (1 - errors / calls)
    rows = []
    for target in targets:
        allowed = 1 - target / 100
        left = None if achieved is None else 1 - (1 - achieved / 100) / allowed
        rows.append(
            TargetRow(
                target,
                held=achieved is not None and achieved >= target,
                budget_left=left,
                reachable=ceiling * 100 >= target,
                reachable_with_retries=with_retries * 100 >= target,
            )
        )
    return Suggestion(
        service, calls, errors, achieved, p50_ms, p99_ms, 100 * ceiling, 100 * with_retries,
        hard, tuple(rows),
    )  # fmt: skip


def _threshold(p99_ms: float) -> str:
    """The p99 rounded up to a round threshold (1-2-2.5-5 per decade)."""
    for scale in (1, 10, 100, 1000, 10_000):
        for step in (1, 2, 2.5, 5):
            if step * scale >= p99_ms:
                value = step * scale
                return f"{value:g}ms" if value < 1000 else f"{value / 1000:g}s"
    return "60s"


def snippet(s: Suggestion, route: str | None = None) -> str:
    """A ready ``slos:`` entry for the suggestion (mesh.yaml's syntax)."""
    fields = []
    if route is not None:
        fields.append(f"route: {route}")
    if s.suggested is not None:
        fields.append(f"availability: {s.suggested:g}%")
    if s.p99_ms is not None:
        fields.append(f"latency: {{threshold: {_threshold(s.p99_ms)}, percent: 99%}}")
    if not fields:
        return f"# {s.service}: no data to suggest from\n"
    return f"slos:\n  {s.service}: {{{', '.join(fields)}}}\n"
