"""An experiment's report as text for the terminal and as Markdown (the JSON is
:meth:`~seawall.chaos.runner.Report.as_json`)."""

from __future__ import annotations

from typing import Any

from .runner import Report

__all__ = ["markdown", "terminal"]


def _measured(m: dict[str, Any]) -> str:
    parts = []
    for key, value in m.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}: {v}" for k, v in value.items())
            parts.append(f"{key} ({inner})")
        else:
            parts.append(f"{key} {value}")
    return "; ".join(parts)


def _events(events: dict[str, dict[str, float]]) -> list[str]:
    return [f"{event}: " + ", ".join(f"{where} {n:g}" for where, n in sorted(by.items()))
            for event, by in events.items()]  # fmt: skip


def terminal(report: Report) -> str:
    lines = [f"{report.title}: {report.verdict.upper()} ({report.seconds:.0f}s"
             + (", fast" if report.fast else "") + ")"]  # fmt: skip
    if report.aborted:
        lines.append(f"  aborted: {report.aborted}")
    for a in report.actions:
        what = a.get("describe") or a.get("error") or a["action"]
        lines.append(f"  action at {a['at']:g}s: {what}")
    for phase in report.phases:
        lines.append(f"  {phase.phase} ({phase.start:.0f}-{phase.end:.0f}s):"
                     f" {'held' if phase.held else 'FAILED'}")  # fmt: skip
        for r in phase.results:
            lines.append(f"    {'ok  ' if r.passed else 'FAIL'} {r.probe}: {_measured(r.measured)}")
            if not r.passed:
                lines.append(f"         expected {r.expected}: {r.reason}")
                for t in r.traces[:3]:
                    lines.append(f"         trace {t}")
        for line in _events(phase.events):
            lines.append(f"    policy: {line}")
    for problem in report.problems:
        lines.append(f"  problem: {problem}")
    return "\n".join(lines) + "\n"


def markdown(report: Report) -> str:
    out = [f"# {report.title}", "",
           f"**Verdict: {report.verdict}** in {report.seconds:.0f} s"
           + (" (fast mode)" if report.fast else "") + f"; `{report.file}`.", ""]  # fmt: skip
    if report.aborted:
        out += [f"Aborted: {report.aborted}", ""]
    if report.actions:
        out += ["## Method", "", "| at | action | what | rolled back |", "|---|---|---|---|"]
        for a in report.actions:
            what = (a.get("describe") or a.get("error") or "").replace("|", "\\|")
            back = a.get("rolled_back", "at the end")
            out.append(f"| {a['at']:g} s | {a['action']} | {what} | {back} |")
        out.append("")
    for phase in report.phases:
        out += [f"## {phase.phase.capitalize()}: {'held' if phase.held else 'failed'}", "",
                f"Window {phase.start:.1f}-{phase.end:.1f} s.", "",
                "| check | verdict | expected | measured |", "|---|---|---|---|"]  # fmt: skip
        for r in phase.results:
            verdict = "held" if r.passed else f"**failed**: {r.reason}"
            out.append(f"| {r.probe} | {verdict} | {r.expected} |"
                       f" {_measured(r.measured).replace('|', '/')} |")  # fmt: skip
        traces = [t for r in phase.results if not r.passed for t in r.traces[:3]]
        if traces:
            out += ["", "Failing requests' traces:", ""] + [f"- <{t}>" for t in traces]
        events = _events(phase.events)
        if events:
            out += ["", "Policy events:", ""] + [f"- {e}" for e in events]
        out.append("")
    if report.loads:
        out += ["## Loads", ""]
        for name, load in report.loads.items():
            out.append(
                f"- {name}: {load['sent']} requests to {load['url']}, {load['failed']} failed"
            )
        out.append("")
    if report.problems:
        out += ["## Problems", ""] + [f"- {p}" for p in report.problems] + [""]
    return "\n".join(out)
