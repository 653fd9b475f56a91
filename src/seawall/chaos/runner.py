"""``seawall chaos run``: the flow of one experiment.

1. The file is validated (every error with its path), then checked against the
   running mesh: a service, instance, route or SLO it does not have is refused
   before anything is injected.
2. The loads start, and the sidecars are scraped every second, until the end.
3. **Before**: the hypothesis over ``steady_state.window``. Not steady: nothing is
   injected.
4. **Method**: each action at its ``at``, rolled back after its ``for``; the abort
   conditions every second over their trailing window.
5. **During**: the hypothesis over the method, after ``settle``.
6. **Rollback**: every fault in force, newest first, then ``rollbacks:``. Always: at
   the method's end, on an abort, on Ctrl-C or SIGTERM, and when chaos itself fails.
7. **After**: ``recovery``, then the hypothesis again.

The verdict: ``held`` (exit 0) only when every check held; else ``failed``,
``aborted``, ``not steady`` (before), or ``error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .faults import Applied, FaultError, Injector
from .measure import Load, Result, judge, policy_events
from .mesh import MeshState, Scraper
from .model import Action, Experiment, Phase

__all__ = ["PhaseReport", "Report", "run_experiment"]


@dataclass(slots=True)
class PhaseReport:
    phase: str
    start: float
    end: float
    results: list[Result] = field(default_factory=list)
    events: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return all(r.passed for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "seconds": [round(self.start, 2), round(self.end, 2)],
                "held": self.held, "checks": [r.as_json() for r in self.results],
                "policy_events": self.events}  # fmt: skip


@dataclass(slots=True)
class Report:
    title: str
    file: str
    fast: bool
    started_at: float
    verdict: str = "error"
    phases: list[PhaseReport] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    aborted: str | None = None
    problems: list[str] = field(default_factory=list)
    loads: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def exit_status(self) -> int:
        return 0 if self.verdict == "held" else 1

    def as_json(self) -> dict[str, Any]:
        return {"title": self.title, "file": self.file, "fast": self.fast,
                "started_at": self.started_at, "seconds": round(self.seconds, 2),
                "verdict": self.verdict, "aborted": self.aborted, "problems": self.problems,
                "actions": self.actions, "loads": self.loads,
                "phases": [p.as_json() for p in self.phases]}  # fmt: skip


class _Run:
    def __init__(  # noqa: PLR0917 - one caller, below
        self, exp: Experiment, mesh: MeshState, http: httpx.AsyncClient, report: Report,
        netns: bool, say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.exp = exp
        self.mesh = mesh
        self.http = http
        self.report = report
        self.say = say
        self.t0 = time.monotonic()
        self.stop = asyncio.Event()
        self.loads = {name: Load(name, spec, mesh, http) for name, spec in exp.load.items()}
        self.scraper = Scraper(mesh, http)
        self.injector = Injector(mesh, http, title=exp.title, netns=netns, log=say)
        self.tasks: list[asyncio.Task[None]] = []

    def rel(self, t: float) -> float:
        return t - self.t0

    async def check(self, phase: Phase, start: float, end: float) -> PhaseReport:
        """The hypothesis's probes of ``phase`` over ``[start, end)``."""
        wait = end - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self.scraper.scrape()
        # the requests sent in the window are judged once answered (or timed out)
        await asyncio.gather(*(load.settle(end) for load in self.loads.values()))
        pr = PhaseReport(phase, self.rel(start), self.rel(end))
        for probe in self.exp.steady_state.probes:
            if phase in probe.when:
                pr.results.append(await judge(probe, start, end, mesh=self.mesh,
                                              loads=self.loads, scraper=self.scraper,
                                              http=self.http))  # fmt: skip
        pr.events = policy_events(self.scraper.between(start, end), self.mesh)
        self.report.phases.append(pr)
        mark = "held" if pr.held else "FAILED"
        self.say(f"chaos: {phase}: {mark}")
        for r in pr.results:
            self.say(f"  {'ok  ' if r.passed else 'FAIL'} {r.probe}: {_short(r)}")
        return pr

    def _scrape_at(self, t: float) -> None:
        """A scrape at ``t``, where a window starts: the baseline of its counters."""

        async def at() -> None:
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            with contextlib.suppress(Exception):
                await self.scraper.scrape()

        self.tasks.append(asyncio.get_running_loop().create_task(at()))

    async def _inject(self, index: int, action: Action) -> tuple[dict[str, Any], Applied | None]:
        entry: dict[str, Any] = {"action": action.action, "name": action.name,
                                 "at": round(self.rel(time.monotonic()), 2)}  # fmt: skip
        self.report.actions.append(entry)
        try:
            applied: Applied = await self.injector.inject(action)
        except (FaultError, OSError, ValueError, httpx.HTTPError) as exc:
            entry["error"] = str(exc)
            self.report.problems.append(f"method.actions[{index}]: not injected: {exc}")
            self.say(f"chaos: method.actions[{index}] not injected: {exc}")
            return entry, None
        entry["describe"] = applied.describe
        self.say(f"chaos: injected: {applied.describe}")
        return entry, applied

    async def _hold(self, entry: dict[str, Any], applied: Applied, until: float) -> None:
        """Roll ``applied`` back at ``until`` (its ``for`` is over)."""
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        if applied in self.injector.applied:
            problem = await self.injector.roll_back(applied)
            entry["rolled_back"] = round(self.rel(time.monotonic()), 2)
            if problem:
                entry["rollback_problem"] = problem
                self.report.problems.append(f"rollback of {applied.describe}: {problem}")
            self.say(f"chaos: rolled back: {applied.describe}")

    async def _later(self, index: int, action: Action, method_start: float, end: float) -> None:
        """An action with an ``at``: injected then, held for its ``for``."""
        at = method_start + action.at
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        entry, applied = await self._inject(index, action)
        if applied is not None and action.for_ is not None:
            await self._hold(entry, applied, min(at + action.for_, end))

    async def _watch_aborts(self, start: float, end: float) -> str | None:
        """Each abort condition every second over its trailing window; the first that
        fails, said; ``None`` when the method ended with none failing."""
        while time.monotonic() < end:
            await asyncio.sleep(min(1.0, max(0.0, end - time.monotonic())))
            now = time.monotonic()
            for cond in self.exp.abort:
                if now - start < cond.window:
                    continue
                r = await judge(cond, now - cond.window, now, mesh=self.mesh, loads=self.loads,
                                scraper=self.scraper, http=self.http, sliding=True)  # fmt: skip
                if not r.passed and r.measured:
                    return f"{r.probe}: {r.reason}"
        return None

    async def run(self) -> None:
        exp = self.exp
        ss = exp.steady_state
        for load in self.loads.values():
            self.tasks.append(asyncio.get_running_loop().create_task(load.run(self.stop)))
        self.tasks.append(asyncio.get_running_loop().create_task(self.scraper.run(self.stop)))
        try:
            before = await self.check("before", self.t0, self.t0 + ss.window)
            if not before.held:
                self.report.verdict = "not steady"
                self.say("chaos: the steady state does not hold before: nothing injected")
                return
            # the method's clock starts once its first faults (at 0) are in
            first = [(i, a, *await self._inject(i, a))
                     for i, a in enumerate(exp.method.actions) if a.at == 0]  # fmt: skip
            method_start = time.monotonic()
            end = method_start + exp.method.duration
            self._scrape_at(method_start + exp.method.settle)
            loop = asyncio.get_running_loop()
            actions = [loop.create_task(self._later(i, a, method_start, end))
                       for i, a in enumerate(exp.method.actions) if a.at > 0]  # fmt: skip
            actions += [loop.create_task(self._hold(entry, applied, method_start + a.for_))
                        for _, a, entry, applied in first
                        if applied is not None and a.for_ is not None]  # fmt: skip
            try:
                aborted = await self._watch_aborts(method_start, end)
                if aborted is not None:
                    self.report.aborted = aborted
                    self.say(f"chaos: ABORT: {aborted}")
                else:
                    during = await self.check("during", method_start + exp.method.settle, end)
                    del during
            finally:
                for task in actions:
                    task.cancel()
                for task in actions:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await self.roll_back()
            if any("after" in p.when for p in ss.probes):
                after_start = time.monotonic() + ss.recovery
                self._scrape_at(after_start)
                await asyncio.sleep(ss.recovery)
                await self.check("after", after_start, after_start + ss.window)
            else:
                self.say("chaos: after: no probe checks it (rolled back, not judged)")
            if self.report.aborted:
                self.report.verdict = "aborted"
            elif self.report.problems:
                self.report.verdict = "error"
            else:
                held = all(p.held for p in self.report.phases)
                self.report.verdict = "held" if held else "failed"
        finally:
            try:
                await self.roll_back()
            finally:
                self.stop.set()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 10.0)
            for name, load in self.loads.items():
                bad = sum(1 for r in load.records if r.bad)
                self.report.loads[name] = {"sent": len(load.records), "failed": bad,
                                           "url": load.urls[0] if load.urls else None}  # fmt: skip
            self.report.problems += self.scraper.skipped[:5]

    async def roll_back(self) -> None:
        if self.injector.applied:
            self.say(f"chaos: rolling back {len(self.injector.applied)} fault(s)")
        for problem in await self.injector.roll_back_all():
            self.report.problems.append(f"rollback: {problem}")
            self.say(f"chaos: ROLLBACK PROBLEM: {problem}")
        rollbacks, self.exp = self.exp.rollbacks, self.exp.model_copy(update={"rollbacks": ()})
        for i, action in enumerate(rollbacks):
            try:
                applied = await self.injector.inject(action)
                self.injector.forget(applied)  # a rollback step is not a fault in force
            except Exception as exc:  # each one tried, whatever the others did
                self.report.problems.append(f"rollbacks[{i}]: {exc}")


def _short(r: Result) -> str:
    keys = ("availability", "burn_rate", "p99_ms", "ratio", "increase", "max seen",
            "min seen", "status", "ms")  # fmt: skip
    shown = [f"{k}={r.measured[k]}" for k in keys if k in r.measured]
    shown += [f"{k}={v}" for k, v in r.measured.items() if k.startswith("within_")]
    text = ", ".join(shown)
    if r.reason:
        text += f" ({r.reason})"
    return text or r.expected


async def run_experiment(
    exp: Experiment, mesh: MeshState, http: httpx.AsyncClient, *, file: str, fast: bool,
    netns: bool = False, say: Callable[[str], None] = print,
) -> Report:  # fmt: skip
    """Run ``exp`` on ``mesh``; every fault is rolled back before this returns (or
    raises), whatever happens (a cancellation included)."""
    report = Report(exp.title, file, fast, time.time())
    run = _Run(exp, mesh, http, report, netns, say)
    started = time.monotonic()
    try:
        await run.run()
    finally:
        report.seconds = time.monotonic() - started
    return report


def default_report_paths(state_dir: Path, experiment: Path) -> tuple[Path, Path]:
    """Where the JSON and Markdown reports go unless told: the state directory's
    ``chaos/<experiment>.json`` and ``.md``."""
    base = state_dir / "chaos" / experiment.stem
    return base.with_suffix(".json"), base.with_suffix(".md")
