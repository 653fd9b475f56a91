"""The control plane's canary controller: every progressive split of the applied mesh,
rolled out by its :class:`~seawall.control.canary.Rollout`.

:class:`CanaryController` is the I/O around the state machines. At every pass of
the SLO monitor (``--slo-interval``) it is told the sidecars' metrics pages
(:meth:`CanaryController.pages`); it then

1. follows the applied mesh (:meth:`reconcile`): a rollout per route with a
   ``progressive`` split; one whose route's ``split`` and ``progressive`` are
   unchanged carries on, a changed one begins anew, a removed one goes (its
   route runs the document's weights again);
2. hands each rollout the per-subset counters of every caller's page
   (:func:`~seawall.control.canary.subset_counts`), forgetting the sidecars
   that left;
3. ticks each rollout with the clock (monotonic, injected) and records each
   decision with the wall time, the figures and the reason;
4. when weights changed, publishes them (``publish``: the API's
   :meth:`~seawall.control.api.ControlAPI.set_splits`, which pushes them to
   the sidecars as a new snapshot of the same config version), and writes the
   state file.

**What survives a restart.** ``canaries.json`` in the state directory (written
atomically at each decision) holds each rollout's route, phase, step and
decisions: at start the controller's weights are pushed with the first snapshot,
so a restart never sends the sidecars back to the document's weights; the step
in force begins again (its counts, like the sidecars' baselines, are lost).
With several replicas each runs its own controller from its own state
directory: run progressive rollouts under one replica.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.model import MeshConfig, RouteConfig
from ..slo.monitor import Target
from .canary import Decision, Judge, Rollout, RolloutKey, judges_for, route_name, subset_counts
from .snapshot import SplitOverride, route_identity

__all__ = ["MAX_DECISIONS", "CanaryController"]

log = logging.getLogger("seawall.control.canary")

MAX_DECISIONS = 100
"""Decisions kept per rollout (the oldest go first; a hold is said once a step)."""


@dataclass(slots=True)
class _Tracked:
    rollout: Rollout
    declared: str  # route_identity of the route it rolls out
    decisions: list[dict[str, Any]] = field(default_factory=list)
    step_started_wall: float | None = None


class CanaryController:
    """See the module. ``publish(overrides)`` pushes the effective splits."""

    def __init__(
        self,
        publish: Callable[[list[SplitOverride]], None],
        *,
        state_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._publish = publish
        self.state_file = state_file
        self._clock = clock
        self._wall = wall
        self._tracked: dict[RolloutKey, _Tracked] = {}
        self._saved: dict[RolloutKey, dict[str, Any]] = {}  # from the state file
        self._mesh: MeshConfig | None = None
        self._sources: set[str] = set()
        self._pushed: list[SplitOverride] = []
        # the state file is written off the event loop, one write after another
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canaries")
        self._written: Future[None] | None = None
        if state_file is not None:
            self._saved = _load(state_file)
        self._pushed = self.saved_overrides()  # what the server pushes from its start

    # -- the applied mesh ----------------------------------------------------------

    def saved_overrides(self) -> list[SplitOverride]:
        """The weights of the rollouts the state file holds (pushed from the first
        snapshot on, for the routes still as they were)."""
        out = []
        for key, saved in sorted(self._saved.items()):
            weights = saved.get("weights")
            if isinstance(weights, dict):
                found = {str(k): float(v) for k, v in weights.items()}
                out.append(SplitOverride(key.destination, key.route, str(saved["declared"]), found))
        return out

    def reconcile(self, mesh: MeshConfig | None) -> bool:
        """Follow ``mesh``'s progressive splits; ``True`` if the set of rollouts changed."""
        if mesh is None or mesh is self._mesh:
            return False
        now = self._clock()
        found: dict[RolloutKey, _Tracked] = {}
        for destination, policy in mesh.policies.items():
            for index, route in enumerate(policy.routes):
                if route.progressive is None or route.split is None:
                    continue
                key = RolloutKey(destination, route_name(route, index))
                try:
                    declared = route_identity(route.model_dump(mode="json"))
                    judges = judges_for(mesh, key)
                    old = self._tracked.get(key)
                    if old is not None and old.declared == declared:
                        old.rollout.judges = judges
                        found[key] = old
                        continue
                    found[key] = self._begin(key, route, declared, judges, now)
                except (ValueError, TypeError, KeyError) as exc:  # one route, not the others
                    log.error("canary %s: cannot roll out: %s", key, exc)
        self._mesh = mesh  # followed (a route that failed is retried with the next mesh)
        changed = found.keys() != self._tracked.keys() or any(
            found[k] is not self._tracked[k] for k in found
        )
        self._tracked = found
        self._saved = {}
        if changed:
            self._push()
        return changed

    def _begin(
        self, key: RolloutKey, route: RouteConfig, declared: str, judges: tuple[Judge, ...],
        now: float,
    ) -> _Tracked:  # fmt: skip
        assert route.progressive is not None
        assert route.split is not None
        progressive, split = route.progressive, route.split
        rollout = Rollout(key, progressive, split, judges)
        tracked = _Tracked(rollout, declared)
        saved = self._saved.get(key)
        if saved is not None and saved.get("declared") == declared:
            try:
                rollout.restore(saved["phase"], int(saved["step"]), now)
                tracked.decisions = list(saved.get("decisions") or [])[-MAX_DECISIONS:]
                tracked.step_started_wall = self._wall()
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("canary %s: saved state not usable, starting again: %s", key, exc)
                tracked = _Tracked(Rollout(key, progressive, split, judges), declared)
        return tracked

    def wanted(self, mesh: MeshConfig | None) -> bool:
        """Whether the sidecars' pages are needed: a rollout runs, or ``mesh`` has a
        progressive split."""
        if any(t.rollout.phase in ("pending", "progressing") for t in self._tracked.values()):
            return True
        if mesh is None or mesh is self._mesh:
            return False
        return any(r.progressive is not None for p in mesh.policies.values() for r in p.routes)

    # -- each pass -----------------------------------------------------------------

    def pages(self, mesh: MeshConfig | None, pages: Sequence[tuple[Target, str]]) -> None:
        """One pass: the sidecars' pages in, decisions made, weights pushed. Never raises
        (a bug is logged: the SLO monitor's pass carries on)."""
        try:
            self._pass(mesh, pages)
        except Exception:
            log.exception("canary: a pass failed")

    def _pass(self, mesh: MeshConfig | None, pages: Sequence[tuple[Target, str]]) -> None:
        self.reconcile(mesh)
        if not self._tracked:
            self._sources = set()
            return
        current = {t.id for t, _ in pages}
        for tracked in self._tracked.values():
            rollout = tracked.rollout
            for gone in self._sources - current:
                rollout.forget(gone)
            if rollout.phase in ("promoted", "rolled_back"):
                continue
            for target, page in pages:
                counts = subset_counts(page, target.service, rollout.key, rollout.judges)
                if counts:
                    rollout.observe(target.id, counts)
        self._sources = current
        self.tick()

    def tick(self) -> list[Decision]:
        """Tick every rollout; push the weights and save if any decided something."""
        now = self._clock()
        made = []
        for tracked in self._tracked.values():
            decision = tracked.rollout.tick(now)
            if decision is None:
                continue
            made.append(decision)
            wall = self._wall()
            if decision.action != "hold":  # a new step, or the end
                tracked.step_started_wall = wall
            record = {"at": wall, **decision.to_json()}
            tracked.decisions = [*tracked.decisions, record][-MAX_DECISIONS:]
            level = logging.WARNING if decision.action == "rollback" else logging.INFO
            log.log(level, "canary %s: %s: %s", tracked.rollout.key, decision.action,
                    decision.reason)  # fmt: skip
        if made:
            self._push()
        return made

    def _push(self) -> None:
        overrides = self.overrides()
        if overrides != self._pushed:
            self._pushed = overrides
            self._publish(overrides)
        self.save()

    def overrides(self) -> list[SplitOverride]:
        """The effective splits of the rollouts that started."""
        return [
            SplitOverride(key.destination, key.route, t.declared, t.rollout.weights())
            for key, t in sorted(self._tracked.items())
            if t.rollout.weight is not None
        ]

    # -- what is shown and kept ----------------------------------------------------

    def view(self) -> list[dict[str, Any]]:
        """Every rollout for ``GET /v1/status``: its route, settings, phase, weights, the
        step in force's figures so far, and its decisions (oldest first)."""
        out = []
        for key, t in sorted(self._tracked.items()):
            r = t.rollout
            p = r.progressive
            out.append(
                {
                    "destination": key.destination,
                    "route": key.route,
                    "canary": r.canary,
                    "baseline": sorted(s for s in r.split if s != r.canary),
                    "steps": list(p.steps),
                    "interval": p.interval,
                    "min_events": p.min_events,
                    "max_burn_ratio": p.max_burn_ratio,
                    "judges": [j.name for j in r.judges],
                    "phase": r.phase,
                    "step": r.step,
                    "weight": r.weight,
                    "weights": r.weights(),
                    "step_started_at": t.step_started_wall,
                    "current": (
                        [c.to_json() for c in r.comparisons()] if r.phase == "progressing" else []
                    ),
                    "decisions": t.decisions,
                }
            )
        return out

    def save(self) -> None:
        """Write the state file (temporary file, fsync, rename) in the writer's thread,
        after any write before it; a failure is logged."""
        if self.state_file is None:
            return
        doc = {
            "version": 1,
            "rollouts": [
                {
                    "destination": key.destination,
                    "route": key.route,
                    "declared": t.declared,
                    "phase": t.rollout.phase,
                    "step": t.rollout.step,
                    "weights": t.rollout.weights() if t.rollout.weight is not None else None,
                    "decisions": t.decisions,
                }
                for key, t in sorted(self._tracked.items())
            ],
        }
        self._written = self._writer.submit(_write, self.state_file, doc)

    def flush(self) -> None:
        """Wait for the state file's last write (at stop, and for tests)."""
        if self._written is not None:
            self._written.result()

    def close(self) -> None:
        """Finish the writes, and the writer's thread."""
        self._writer.shutdown(wait=True)


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("canary: could not save %s: %s", path, exc)


def _load(path: Path) -> dict[RolloutKey, dict[str, Any]]:
    """The saved rollouts by route; nothing if the file is missing or unreadable, and
    without any rollout that is not whole (each dropped one is logged with why)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rollouts = doc["rollouts"]
        if not isinstance(rollouts, list):
            raise TypeError("rollouts is not a list")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("canary: ignored the state file %s: %s", path, exc)
        return {}
    kept = {}
    for i, r in enumerate(rollouts):
        why = _unusable(r)
        if why is not None:
            log.warning("canary: ignored rollouts[%d] of %s: %s", i, path, why)
            continue
        kept[RolloutKey(r["destination"], r["route"])] = r
    return kept


def _unusable(r: object) -> str | None:
    """Why a saved rollout cannot be used (``None``: it can)."""
    if not isinstance(r, dict):
        return "not an object"
    for name in ("destination", "route", "declared"):
        if not isinstance(r.get(name), str):
            return f"{name} is not a string"
    if r.get("phase") not in ("progressing", "promoted", "rolled_back"):
        return f"phase {r.get('phase')!r} is not progressing, promoted or rolled_back"
    if isinstance(r.get("step"), bool) or not isinstance(r.get("step"), int):
        return "step is not an integer"
    weights = r.get("weights")
    if weights is None:
        return None
    if not isinstance(weights, dict) or not weights:
        return "weights is not a mapping of subsets"
    values = list(weights.values())
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in values
    ):
        return "a weight is not a finite number >= 0"
    if abs(sum(values) - 100.0) > 1e-6:
        return f"the weights sum to {sum(values):g}, not 100"
    return None
