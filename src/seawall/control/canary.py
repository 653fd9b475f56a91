"""Budget-aware canaries: one progressive split's rollout, a state machine told the time
and the counts.

A route of mesh.yaml may declare its split progressive::

    split: {v1: 100, v2: 0}
    progressive: {canary: v2, steps: [1, 5, 25, 50, 100], interval: 1m, min_events: 100}

:class:`Rollout` decides, step by step, the canary's weight. It is told the
callers' outbound sidecars' per-subset counters (:meth:`Rollout.observe`:
each sidecar's running totals, as scraped; :func:`subset_counts` reads them
from a metrics page) and the time (:meth:`Rollout.tick`), and answers with a
:class:`Decision`:

=========  ==============================================================
start      the first tick: the canary takes the first step's weight
hold       the step's ``interval`` is over but a side (canary or baseline)
           has fewer than ``min_events`` requests in it: wait (said once a
           step)
advance    the step is over, each side has its events, and the canary burns
           no faster than the baseline on every judge: the next step
promote    the same, and the next step is 100: the canary takes everything
rollback   on any tick, each side with its events, the canary burns faster
           on some judge: its weight goes to 0 at once, and stays there
=========  ==============================================================

``promote`` and ``rollback`` are final: a new rollout begins only when the
route's ``split`` or ``progressive`` changes in an applied config.

**What is judged.** Each :class:`Judge` is an objective of the destination's
SLOs that applies to the route (an SLO of the destination, of this route or of
all its routes; of the SLO's ``caller`` only, when it names one), or, when the
destination has none, its plain 5xx share. Availability: bad = answered 5xx;
latency: bad = slower than the SLO's threshold (an exact histogram bound in
the sidecars). The **baseline** is every other subset of the split, together.

**The rule** (:func:`compare`), for a judge, over the step's requests so far:
each side needs ``min_events``. Both sides are samples, so the test weighs
both sides' chance: if the canary's bad share were exactly ``max_burn_ratio``
times the baseline's, each of the ``k = bad_c + bad_b`` bad requests would be
the canary's with the chance ``pi = r n_c / (r n_c + n_b)`` (``r`` the ratio,
``n`` the requests of each side), so the canary's share of them follows
``Binomial(k, pi)``. The canary burns faster when having ``bad_c`` or more of
them is that unlikely: ``P(X >= bad_c) < alpha`` (an exact binomial tail; a
normal one past 2,000 bad requests). The rollout looks on every tick, so a
look inside a step uses :data:`INTERIM_ALPHA` (1 in 1,000) and the look that
ends a step :data:`FINAL_ALPHA` (1 in 100): a canary no worse than its
baseline is rolled back by chance in a few rollouts of a hundred (simulated:
1.7% at 100 requests a second, 3% at 1,000, 1% errors on both sides), while
one that fails outright is rolled back after a handful of its requests. With one
objective for both sides, comparing burn rates is comparing bad shares; the
burn rates (``bad share / (1 - objective)``) are reported, and so is the most
bad requests the canary could have had without being rolled back.

**Counters.** A sidecar's first sample is a baseline; a counter that went
down was reset (a restart) and counts from zero again; a step counts only
what happened after it began. Sans-I/O: no clock, socket or file here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..config.model import MeshConfig, ProgressiveConfig, RouteConfig
from ..slo.evaluate import objectives
from ..slo.scrape import MetricsError, le_label, parse

__all__ = [
    "FINAL_ALPHA",
    "INTERIM_ALPHA",
    "Action",
    "Comparison",
    "Decision",
    "Judge",
    "Rollout",
    "RolloutKey",
    "Tally",
    "compare",
    "judges_for",
    "route_name",
    "subset_counts",
    "upper_tail",
]

Action = Literal["start", "hold", "advance", "promote", "rollback"]
Phase = Literal["pending", "progressing", "promoted", "rolled_back"]
Verdict = Literal["ok", "worse", "too_few"]

INTERIM_ALPHA = 0.001
"""A look inside a step rolls back when the canary's bad requests are this unlikely."""
FINAL_ALPHA = 0.01
"""The look that ends a step (before advancing) rolls back when they are this unlikely."""
_EXACT_UP_TO = 2000
"""Bad requests up to which the binomial tail is summed exactly (then a normal one)."""
"""How many standard deviations of its expected bad count the canary may exceed."""


@dataclass(frozen=True, slots=True, order=True)
class RolloutKey:
    """Which route's split: the destination and the route's name (``route<i>`` when it
    has none, as the sidecars name it in their metrics)."""

    destination: str
    route: str

    def __str__(self) -> str:
        return f"{self.destination}/{self.route}"


def route_name(route: RouteConfig, index: int) -> str:
    """The name the sidecars give a route in metrics (``seawall.proxy.spec``'s rule)."""
    return route.name or f"route{index}"


@dataclass(frozen=True, slots=True)
class Judge:
    """What one comparison counts: an objective of the destination's SLOs (``name``
    ``slo:kind``, its ``target`` percent, a latency ``threshold`` in seconds, the
    ``caller`` it is restricted to), or its plain 5xx share (``name`` ``"5xx"``)."""

    name: str
    kind: Literal["availability", "latency"] = "availability"
    target: float | None = None
    threshold: float | None = None
    caller: str | None = None


PLAIN_5XX = Judge("5xx")


@dataclass(frozen=True, slots=True)
class Tally:
    """Requests and bad ones."""

    total: float = 0.0
    bad: float = 0.0

    @property
    def ratio(self) -> float | None:
        """The bad share; ``None`` without requests."""
        return self.bad / self.total if self.total > 0 else None

    def plus(self, other: Tally) -> Tally:
        return Tally(self.total + other.total, self.bad + other.bad)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One judge's canary against its baseline over a step so far."""

    judge: str
    canary: Tally
    baseline: Tally
    allowed_bad: float | None
    """The canary's bad requests allowed (``None``: too few events to say)."""
    verdict: Verdict
    canary_burn: float | None = None
    """Bad share over the budget ``1 - target`` (``None`` without an objective or events)."""
    baseline_burn: float | None = None

    def describe(self) -> str:
        """One line: the figures behind the verdict."""

        def side(t: Tally, burn: float | None) -> str:
            share = "-" if t.ratio is None else f"{100 * t.ratio:.2f}%"
            rate = "" if burn is None else f", burn {burn:.1f}x"
            return f"{t.bad:.0f} bad of {t.total:.0f} ({share}{rate})"

        text = (
            f"{self.judge}: canary {side(self.canary, self.canary_burn)}, "
            f"baseline {side(self.baseline, self.baseline_burn)}"
        )
        if self.allowed_bad is not None:
            text += f"; canary allowed {self.allowed_bad:.0f} bad"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "verdict": self.verdict,
            "canary": {"total": self.canary.total, "bad": self.canary.bad,
                       "ratio": self.canary.ratio, "burn": self.canary_burn},
            "baseline": {"total": self.baseline.total, "bad": self.baseline.bad,
                         "ratio": self.baseline.ratio, "burn": self.baseline_burn},
            "allowed_bad": self.allowed_bad,
        }  # fmt: skip


def upper_tail(k: int, pi: float, b: int) -> float:
    """``P(X >= b)`` for ``X ~ Binomial(k, pi)``: summed exactly (in logs) up to
    :data:`_EXACT_UP_TO` trials, past it the normal approximation with a continuity
    correction."""
    if b <= 0 or pi >= 1.0:
        return 1.0
    if b > k or pi <= 0.0:
        return 0.0
    if k > _EXACT_UP_TO:
        sd = math.sqrt(k * pi * (1.0 - pi))
        return 0.5 * math.erfc((b - 0.5 - k * pi) / (sd * math.sqrt(2.0)))
    log_p, log_q, log_k = math.log(pi), math.log1p(-pi), math.lgamma(k + 1)
    terms = [
        log_k - math.lgamma(i + 1) - math.lgamma(k - i + 1) + i * log_p + (k - i) * log_q
        for i in range(b, k + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * math.fsum(math.exp(t - top) for t in terms))


def compare(
    judge: Judge,
    canary: Tally,
    baseline: Tally,
    *,
    min_events: int,
    max_burn_ratio: float,
    alpha: float = FINAL_ALPHA,
) -> Comparison:
    """The module's rule for one judge, at the chance ``alpha`` (its figures are in the
    result: ``allowed_bad`` is the most bad requests the canary could have had, beside
    the baseline's, without burning faster)."""

    def burn(t: Tally) -> float | None:
        if judge.target is None or t.ratio is None:
            return None
        return t.ratio / (1.0 - judge.target / 100.0)

    burns = {"canary_burn": burn(canary), "baseline_burn": burn(baseline)}
    if canary.total < min_events or baseline.total < min_events:
        return Comparison(judge.name, canary, baseline, None, "too_few", **burns)
    weighed = max_burn_ratio * canary.total
    pi = weighed / (weighed + baseline.total)
    bad_b = round(baseline.bad)

    def unlikely(bad_c: int) -> bool:
        return upper_tail(bad_c + bad_b, pi, bad_c) < alpha

    # the most the canary may have: the tail falls as its bad requests grow (bisection)
    low, high = 0, round(canary.total) + 1
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if unlikely(middle) else (middle, high)
    verdict: Verdict = "worse" if unlikely(round(canary.bad)) else "ok"
    return Comparison(judge.name, canary, baseline, float(low), verdict, **burns)


@dataclass(frozen=True, slots=True)
class Decision:
    """What a tick decided: the action, the step and weight in force after it, why, and
    the comparisons it rests on."""

    at: float
    """The rollout's clock (monotonic seconds)."""
    action: Action
    step: int
    """Index in ``steps`` of the step in force (-1 before the start and after a rollback)."""
    weight: float
    """The canary's weight after the decision, percent."""
    reason: str
    comparisons: tuple[Comparison, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "step": self.step,
            "weight": self.weight,
            "reason": self.reason,
            "comparisons": [c.to_json() for c in self.comparisons],
        }


def judges_for(mesh: MeshConfig, key: RolloutKey) -> tuple[Judge, ...]:
    """What the rollout of ``key`` is judged on: the destination's SLO objectives that
    apply to its route, else its plain 5xx share."""
    slos = {
        name: slo
        for name, slo in mesh.slos.items()
        if slo.journey is None
        and (slo.service or name) == key.destination
        and slo.route in (None, key.route)
    }
    found = tuple(
        Judge(o.name, o.kind, o.target, o.threshold, slos[o.slo].caller) for o in objectives(slos)
    )
    return found or (PLAIN_5XX,)


_SUBSET_FAMILIES = (
    "seawall_subset_requests_total",
    "seawall_subset_request_duration_seconds_bucket",
    "seawall_subset_request_duration_seconds_count",
)


def subset_counts(
    page: str, page_service: str, key: RolloutKey, judges: Iterable[Judge]
) -> dict[tuple[str, str], Tally]:
    """A caller's running totals per (judge, subset) for the route of ``key``, from its
    sidecar's metrics page (``page_service``: the sidecar's service). Empty when the
    page has none, or is malformed (the SLO monitor logs and counts those)."""
    lines = "\n".join(line for line in page.splitlines() if line.startswith(_SUBSET_FAMILIES))
    requests: dict[str, Tally] = {}  # by subset
    count: dict[str, float] = {}
    within: dict[tuple[str, str], float] = {}  # (subset, le) -> requests at most le
    try:
        for s in parse(lines):
            labels = s.labels
            if labels.get("destination") != key.destination or labels.get("route") != key.route:
                continue
            if labels.get("direction", "outbound") != "outbound":
                continue
            subset = labels.get("subset")
            if not subset:
                continue
            if s.name == "seawall_subset_requests_total":
                bad = s.value if labels.get("status_class") == "5xx" else 0.0
                requests[subset] = requests.get(subset, Tally()).plus(Tally(s.value, bad))
            elif s.name.endswith("_count"):
                count[subset] = count.get(subset, 0.0) + s.value
            else:
                at = (subset, labels.get("le", ""))
                within[at] = within.get(at, 0.0) + s.value
    except MetricsError:
        return {}
    out: dict[tuple[str, str], Tally] = {}
    for judge in judges:
        if judge.caller is not None and judge.caller != page_service:
            continue
        if judge.kind == "availability":
            for subset, tally in requests.items():
                out[judge.name, subset] = Tally(tally.total, min(tally.bad, tally.total))
            continue
        assert judge.threshold is not None
        le = le_label(judge.threshold)
        for subset, total in count.items():
            fast = within.get((subset, le))
            if fast is not None:  # a sidecar without the threshold's bound does not say
                out[judge.name, subset] = Tally(total, max(0.0, total - fast))
    return out


@dataclass(slots=True)
class _Step:
    """The step in force: when it began, what it counted, whether a hold was said."""

    started: float
    counted: dict[tuple[str, str], Tally] = field(default_factory=dict)  # (judge, side)
    held: bool = False


class Rollout:
    """One progressive split (see the module): fed counts and ticks, it decides."""

    def __init__(
        self,
        key: RolloutKey,
        progressive: ProgressiveConfig,
        split: Mapping[str, float],
        judges: Sequence[Judge] = (PLAIN_5XX,),
    ) -> None:
        if progressive.canary is None or progressive.canary not in split or len(split) < 2:
            raise ValueError(f"{key}: the canary must be a subset of the split, beside another")
        self.key = key
        self.progressive = progressive
        self.canary: str = progressive.canary
        self.split = dict(split)
        self.judges = tuple(judges)
        self.phase: Phase = "pending"
        self.step = -1
        self._step: _Step | None = None
        self._last: dict[tuple[str, str, str], Tally] = {}  # (source, judge, subset)

    # -- what the sidecars get ---------------------------------------------------

    @property
    def weight(self) -> float | None:
        """The canary's weight the rollout sets; ``None`` before it starts (the split's
        own weights apply then)."""
        if self.phase == "pending":
            return None
        if self.phase == "rolled_back":
            return 0.0
        return self.progressive.steps[self.step]

    def weights(self) -> dict[str, float]:
        """The split the sidecars should run: the canary at :attr:`weight`, the rest
        shared in proportion to their weights in ``split`` (equally if all are 0), summing
        to exactly 100."""
        weight = self.weight
        if weight is None:
            return dict(self.split)
        return with_canary(self.split, self.canary, weight)

    # -- counts ---------------------------------------------------------------------

    def observe(self, source: str, counts: Mapping[tuple[str, str], Tally]) -> None:
        """A sidecar's running totals per (judge, subset), as :func:`subset_counts` reads
        them: what grew since its last sample counts for the step in force."""
        step = self._step
        for (judge, subset), now in counts.items():
            side = "canary" if subset == self.canary else "baseline"
            if subset not in self.split:
                continue
            before = self._last.get((source, judge, subset))
            self._last[source, judge, subset] = now
            if before is None or step is None:
                continue  # a first sample is a baseline
            grew = now.total - before.total
            if grew < 0 or now.bad < before.bad:  # reset: counting again from zero
                delta = now
            else:
                delta = Tally(grew, max(0.0, now.bad - before.bad))
            at = (judge, side)
            step.counted[at] = step.counted.get(at, Tally()).plus(delta)

    def forget(self, source: str) -> None:
        """A sidecar that left: its next sample, if it comes back, is a baseline."""
        for at in [at for at in self._last if at[0] == source]:
            del self._last[at]

    def comparisons(self, alpha: float = INTERIM_ALPHA) -> tuple[Comparison, ...]:
        """Every judge's comparison over the step in force so far, at ``alpha``."""
        step = self._step
        counted = step.counted if step is not None else {}
        p = self.progressive
        return tuple(
            compare(
                j,
                counted.get((j.name, "canary"), Tally()),
                counted.get((j.name, "baseline"), Tally()),
                min_events=p.min_events,
                max_burn_ratio=p.max_burn_ratio,
                alpha=alpha,
            )
            for j in self.judges
        )

    # -- decisions ------------------------------------------------------------------

    def tick(self, now: float) -> Decision | None:
        """Decide at ``now`` (monotonic seconds); ``None``: nothing to say."""
        steps = self.progressive.steps
        if self.phase in ("promoted", "rolled_back"):
            return None
        if self.phase == "pending":
            self.phase = "progressing"
            return self._enter(now, 0, "start", f"{self.canary} begins at {steps[0]:g}%")
        step = self._step
        assert step is not None
        # inside the step, a strict look; at its end, the step's own
        ended = now - step.started >= self.progressive.interval
        found = self.comparisons(FINAL_ALPHA if ended else INTERIM_ALPHA)
        worse = [c for c in found if c.verdict == "worse"]
        if worse:
            self.phase = "rolled_back"
            self.step = -1
            self._step = None
            why = "; ".join(c.describe() for c in worse)
            reason = f"{self.canary} burns faster than the baseline: {why}"
            return Decision(now, "rollback", -1, 0.0, reason, found)
        if not ended:
            return None
        few = [c for c in found if c.verdict == "too_few"]
        if few:
            if step.held:
                return None
            step.held = True
            need = self.progressive.min_events
            why = "; ".join(c.describe() for c in few)
            reason = f"too few events to judge (each side needs {need}): {why}"
            return Decision(now, "hold", self.step, steps[self.step], reason, found)
        why = "; ".join(c.describe() for c in found)
        nxt = self.step + 1
        if steps[nxt] >= 100:
            self.phase = "promoted"
            return self._enter(now, nxt, "promote", f"{self.canary} takes 100%: {why}", found)
        reason = f"{self.canary} to {steps[nxt]:g}%: {why}"
        return self._enter(now, nxt, "advance", reason, found)

    def _enter(
        self, now: float, index: int, action: Action, reason: str,
        found: tuple[Comparison, ...] = (),
    ) -> Decision:  # fmt: skip
        self.step = index
        self._step = _Step(now) if self.phase == "progressing" else None
        steps = self.progressive.steps
        where = f" (step {index + 1} of {len(steps)})" if action in ("start", "advance") else ""
        return Decision(now, action, index, steps[index], reason + where, found)

    def restore(self, phase: Phase, step: int, now: float) -> None:
        """Carry on from a saved state (a control-plane restart): the step in force begins
        again at ``now``, its counts lost with the sidecars' baselines."""
        steps = self.progressive.steps
        if phase == "progressing" and not 0 <= step < len(steps) - 1:
            raise ValueError(f"{self.key}: no step {step} of {len(steps)} to carry on")
        self.phase = phase
        self.step = step if phase in ("progressing", "promoted") else -1
        if phase == "promoted":
            self.step = len(steps) - 1
        self._step = _Step(now) if phase == "progressing" else None


def with_canary(split: Mapping[str, float], canary: str, weight: float) -> dict[str, float]:
    """``split`` with ``canary`` at ``weight`` and the other subsets sharing the rest in
    proportion to their weights there (equally if all are 0); the sum is exactly 100."""
    others = [name for name in split if name != canary]
    rest = 100.0 - weight
    declared = sum(split[name] for name in others)
    out: dict[str, float] = {}
    for name in others:
        share = split[name] / declared if declared > 0 else 1.0 / len(others)
        out[name] = rest * share
    out[canary] = weight
    if others:  # rounding: the last baseline subset takes what is left
        last = others[-1]
        out[last] = max(0.0, 100.0 - sum(v for k, v in out.items() if k != last))
    return {name: out[name] for name in split}
