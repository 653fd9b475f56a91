"""What an experiment measures: its own load (every request's status, latency and
trace id), and its probes, each judged over a window of the experiment's clock from
the load's records and the sidecars' scrapes (:class:`~seawall.chaos.mesh.Scraper`).

Judging is sans-I/O: :func:`judge` is handed the records and the scrapes of a window
and returns a :class:`Result`; only ``http`` probes send a request of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..config.model import LatencyObjective, SloConfig
from ..slo.evaluate import objectives
from ..slo.scrape import PageIndex, Sample, counters, le_label
from .mesh import MeshState, Scrape, Scraper
from .model import HttpCheck, LoadSpec, MetricSelector, Probe, Target

__all__ = ["Load", "Record", "Result", "judge", "policy_events", "send"]


@dataclass(frozen=True, slots=True)
class Record:
    """One request of a load: when it started (the experiment's clock), how long it
    took, its status (0: no answer: refused, reset, timed out), its trace id."""

    t: float
    latency: float
    status: int
    trace_id: str
    error: str = ""

    @property
    def bad(self) -> bool:
        return self.status == 0 or self.status >= 500


def proxy_of(mesh: MeshState, target: Target) -> str | None:
    """The outbound listener of ``target.via`` (its first instance), or ``None``."""
    if target.via is None:
        return None
    found = mesh.of(target.via)
    if not found:
        raise ValueError(f"no running instance of {target.via}")
    # its 127.0.0.1 is the instance's own: in a namespace, only the app reaches it
    return f"http://127.0.0.1:{found[0].outbound}"


def _urls(mesh: MeshState, target: Target) -> list[str]:
    if target.url is not None:
        return [target.url]
    found = mesh.of(target.service or "")
    return [f"http://{i.address}:{i.app_port if target.app else i.inbound}{target.path}"
            for i in found]  # fmt: skip


async def send(
    http: httpx.AsyncClient, mesh: MeshState, target: Target, *, every: bool = False
) -> list[tuple[str, int, float, str]]:
    """One request to ``target`` (to each of its instances with ``every``):
    ``(url, status, seconds, error)`` for each (status 0: no answer)."""
    urls = _urls(mesh, target)
    if not every:
        urls = urls[:1]
    out = []
    proxy = proxy_of(mesh, target)
    own = None if proxy is None else httpx.AsyncClient(trust_env=False, proxy=proxy)
    client = http if own is None else own
    for url in urls:
        started = time.monotonic()
        try:
            r = await client.request(
                target.method, url, headers=target.headers, timeout=target.timeout,
                content=target.body, json=target.json_body,
            )  # fmt: skip
            out.append((url, r.status_code, time.monotonic() - started, ""))
        except httpx.HTTPError as exc:
            out.append((url, 0, time.monotonic() - started, f"{type(exc).__name__}: {exc}"))
    if own is not None:
        await own.aclose()
    return out


class Load:
    """Requests at ``spec.rate`` per second, evenly spaced, at most ``spec.concurrency``
    in flight (a request due beyond that is counted as not sent, and as bad), each
    starting a sampled trace of its own (``traceparent``)."""

    def __init__(self, name: str, spec: LoadSpec, mesh: MeshState, http: httpx.AsyncClient):
        self.name = name
        self.spec = spec
        proxy = proxy_of(mesh, spec)
        self.own = None if proxy is None else httpx.AsyncClient(trust_env=False, proxy=proxy)
        self.http = http if self.own is None else self.own
        self.urls = _urls(mesh, spec)
        self.records: list[Record] = []
        self.in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, url: str, t: float) -> None:
        trace_id = os.urandom(16).hex()
        headers = dict(self.spec.headers)
        headers["traceparent"] = f"00-{trace_id}-{os.urandom(8).hex()}-01"
        try:
            r = await self.http.request(
                self.spec.method, url, headers=headers, timeout=self.spec.timeout,
                content=self.spec.body, json=self.spec.json_body,
            )  # fmt: skip
            status, error = r.status_code, ""
        except httpx.HTTPError as exc:
            status, error = 0, f"{type(exc).__name__}: {exc}"[:200]
        finally:
            self.in_flight -= 1
        self.records.append(Record(t, time.monotonic() - t, status, trace_id, error))

    async def run(self, stop: asyncio.Event) -> None:
        gap = 1.0 / self.spec.rate
        start = time.monotonic()
        n = 0
        try:
            while not stop.is_set():
                due = start + n * gap
                now = time.monotonic()
                if due > now:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), due - now)
                    continue
                url = self.urls[n % len(self.urls)]
                n += 1
                if self.in_flight >= self.spec.concurrency:
                    self.records.append(Record(now, 0.0, 0, "", "not sent: concurrency full"))
                    continue
                self.in_flight += 1
                task = asyncio.get_running_loop().create_task(self._one(url, now))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.spec.timeout + 1)
            if self.own is not None:
                await self.own.aclose()

    def between(self, t0: float, t1: float) -> list[Record]:
        return [r for r in self.records if t0 <= r.t < t1]


# ---------------------------------------------------------------- judging


@dataclass(slots=True)
class Result:
    """A probe's verdict over a window: what it expected, what was measured."""

    probe: str
    passed: bool
    expected: str
    measured: dict[str, Any] = field(default_factory=dict)
    reason: str = ""
    traces: list[str] = field(default_factory=list)
    """Links (or ids) of failing requests' traces."""

    def as_json(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "passed": self.passed,
            "expected": self.expected,
            "measured": self.measured,
            "reason": self.reason,
            "traces": self.traces,
        }


def _pct(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") + "%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile of ``values`` (``p`` in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _judge_slo_numbers(  # noqa: PLR0917 - the numbers of one judgement
    probe: Probe,
    total: float,
    bad: float,
    within: float | None,
    availability: float | None,
    latency_pct: float | None,
    threshold: float | None,
) -> tuple[bool, list[str], dict[str, Any], list[str]]:
    """Availability, latency share and burn rate against the objectives."""
    failures = []
    expected = []
    measured: dict[str, Any] = {"requests": int(total), "failed": int(bad)}
    if total < max(probe.min_requests, 1):
        failures.append(f"{int(total)} request(s) in the window, fewer than {probe.min_requests}")
    if probe.max_failed is not None:
        expected.append(f"at most {probe.max_failed} failed")
        if bad > probe.max_failed:
            failures.append(f"{int(bad)} failed > {probe.max_failed}")
    if availability is not None:
        # with max_burn_rate, the availability is the objective the burn is measured
        # against, not a bound of its own
        if probe.max_burn_rate is None:
            expected.append(f"availability >= {_pct(availability)}")
        if total > 0:
            got = 100.0 * (total - bad) / total
            measured["availability"] = round(got, 4)
            if got < availability and probe.max_burn_rate is None:
                failures.append(f"availability {_pct(got)} < {_pct(availability)}")
            if probe.max_burn_rate is not None:
                burn = (bad / total) / (1 - availability / 100)
                measured["burn_rate"] = round(burn, 3)
                expected.append(f"burn rate <= {probe.max_burn_rate:g}x")
                if burn > probe.max_burn_rate:
                    failures.append(f"budget burning {burn:.1f}x > {probe.max_burn_rate:g}x")
    if latency_pct is not None and threshold is not None:
        expected.append(f"{_pct(latency_pct)} within {_ms(threshold)}")
        if within is None:
            failures.append(f"no latency bucket at {_ms(threshold)} to count with")
        elif total > 0:
            share = 100.0 * within / total
            measured[f"within_{_ms(threshold).replace(' ', '')}"] = round(share, 4)
            if share < latency_pct:
                failures.append(f"{_pct(share)} within {_ms(threshold)} < {_pct(latency_pct)}")
    return not failures, expected, measured, failures


def judge_load(probe: Probe, records: Sequence[Record], mesh: MeshState) -> Result:
    threshold = probe.latency.threshold if probe.latency else None
    total = len(records)
    bad = sum(1 for r in records if r.bad)
    within = None
    if threshold is not None:  # answered in time, whatever the answer (failing fast counts)
        within = sum(1 for r in records if r.status and r.latency <= threshold)
    ok, expected, measured, failures = _judge_slo_numbers(
        probe, total, bad, within,
        probe.availability, probe.latency.percent if probe.latency else None, threshold,
    )  # fmt: skip
    answered = [r.latency for r in records if r.status]
    if answered:
        for p in (50, 95, 99):
            measured[f"p{p}_ms"] = round(percentile(answered, p) * 1000, 1)
        measured["max_ms"] = round(max(answered) * 1000, 1)
    statuses: dict[str, int] = {}
    for r in records:
        key = str(r.status) if r.status else (r.error.split(":")[0] or "no answer")
        statuses[key] = statuses.get(key, 0) + 1
    measured["statuses"] = dict(sorted(statuses.items()))
    failing = [r.trace_id for r in records if r.trace_id and (r.bad or (
        threshold is not None and r.latency > threshold))]  # fmt: skip
    traces = [mesh.trace_link(t) or t for t in failing[-5:]]
    return Result(probe.label(), ok, "; ".join(expected), measured, "; ".join(failures), traces)


def _slo_of(probe: Probe, mesh: MeshState) -> tuple[str, SloConfig]:
    """The SLO a ``slo`` or ``service`` probe judges: the mesh's, with the probe's
    objectives instead when it gives them."""
    if probe.slo is not None:
        base = mesh.config.slos[probe.slo]
        changes: dict[str, Any] = {}
        if probe.availability is not None:
            changes["availability"] = probe.availability
        if probe.latency is not None:
            changes["latency"] = _as_objective(probe)
        return probe.slo, base.model_copy(update=changes)
    slo = SloConfig.model_validate({
        "service": probe.service, "route": probe.route, "availability": probe.availability,
        "latency": _as_objective(probe),
    })  # fmt: skip
    return "probe", slo


def _as_objective(probe: Probe) -> LatencyObjective | None:
    """The probe's latency check as an SLO's objective, to count with (an SLO's percent
    is below 100: the probe's own percent is what it is judged on)."""
    if probe.latency is None:
        return None
    return LatencyObjective(threshold=probe.latency.threshold,
                            percent=min(probe.latency.percent, 99.999))  # fmt: skip


def _counts(
    name: str, slo: SloConfig, mesh: MeshState, scrape: Scrape
) -> dict[str, tuple[float, float] | None]:
    """Per objective kind: ``(total, bad)`` summed over the sidecars that measure it."""
    out: dict[str, tuple[float, float] | None] = {}
    for objective in objectives({name: slo}):
        total = bad = 0.0
        seen = False
        for inst, samples in scrape.pages.items():
            info = mesh.instances.get(inst)
            if info is None:
                continue
            got = counters(objective, slo, info.service, PageIndex(samples))
            if got is not None:
                seen = True
                total += got[0]
                bad += got[1]
        out[objective.kind] = (total, bad) if seen else None
    return out


def _delta(a: tuple[float, float] | None, b: tuple[float, float] | None) -> tuple[float, float]:
    """The increase from ``a`` to ``b`` (a counter that went down restarted: ``b``)."""
    if b is None:
        return 0.0, 0.0
    if a is None or b[0] < a[0]:
        return b
    return b[0] - a[0], max(0.0, b[1] - a[1])


def judge_slo(probe: Probe, mesh: MeshState, first: Scrape, last: Scrape) -> Result:
    name, slo = _slo_of(probe, mesh)
    before, after = _counts(name, slo, mesh, first), _counts(name, slo, mesh, last)
    avail = _delta(before.get("availability"), after.get("availability"))
    latency = _delta(before.get("latency"), after.get("latency"))
    total, bad = avail if "availability" in after else latency
    within = None
    if slo.latency is not None:
        within = None if after.get("latency") is None else latency[0] - latency[1]
        if slo.availability is None:
            total, bad = latency[0], 0.0
    percent = slo.latency.percent if slo.latency else None
    if probe.latency is not None:
        percent = probe.latency.percent
    ok, expected, measured, failures = _judge_slo_numbers(
        probe, total, bad, within, slo.availability, percent,
        slo.latency.threshold if slo.latency else None,
    )  # fmt: skip
    if slo.latency is not None and after.get("latency") is None:
        measured["note"] = (f"no sidecar of {slo.service or name} has a bucket at"
                            f" le={le_label(slo.latency.threshold)}")  # fmt: skip
    return Result(probe.label(), ok, "; ".join(expected), measured, "; ".join(failures))


def metric_value(sel: MetricSelector, mesh: MeshState, scrape: Scrape) -> float | None:
    """The sum of the matching samples over ``sel.service``'s instances (``None``: no
    page of the service could be read)."""
    total = 0.0
    seen = False
    for inst, samples in scrape.pages.items():
        info = mesh.instances.get(inst)
        if info is None or info.service != sel.service:
            continue
        seen = True
        total += sum(s.value for s in _matching(samples, sel))
    return total if seen else None


def _matching(samples: Iterable[Sample], sel: MetricSelector) -> Iterable[Sample]:
    for s in samples:
        if s.name == sel.name and all(s.labels.get(k) == v for k, v in sel.labels.items()):
            yield s


def _metric_over(
    sel: MetricSelector, mesh: MeshState, scrapes: Sequence[Scrape], worst: str
) -> float | None:
    values = [v for s in scrapes if (v := metric_value(sel, mesh, s)) is not None]
    if not values:
        return None
    if sel.is_delta:
        first, last = values[0], values[-1]
        return last if last < first else last - first
    return max(values) if worst == "max" else min(values)


def _bounds(probe: Probe) -> tuple[str, str]:
    parts = []
    if probe.min is not None:
        parts.append(f">= {probe.min:g}")
    if probe.max is not None:
        parts.append(f"<= {probe.max:g}")
    return " and ".join(parts), "max" if probe.max is not None else "min"


def _within_bounds(probe: Probe, value: float) -> bool:
    return (probe.max is None or value <= probe.max) and (probe.min is None or value >= probe.min)


def judge_metric(probe: Probe, mesh: MeshState, scrapes: Sequence[Scrape]) -> Result:
    expected, worst = _bounds(probe)
    if probe.metric is not None:
        sel = probe.metric
        value = _metric_over(sel, mesh, scrapes, worst)
        what = "increase" if sel.is_delta else f"{worst} seen"
        if value is None:
            return Result(probe.label(), False, expected, {}, f"no page of {sel.service} was read")
        ok = _within_bounds(probe, value)
        reason = "" if ok else f"{what} {value:g} not {expected}"
        return Result(probe.label(), ok, expected, {what: value}, reason)
    assert probe.ratio is not None
    of = _metric_over(probe.ratio.of, mesh, scrapes, worst)
    to = _metric_over(probe.ratio.to, mesh, scrapes, worst)
    measured: dict[str, Any] = {"of": of, "to": to}
    if of is None or to is None or to <= 0:
        return Result(
            probe.label(),
            False,
            expected,
            measured,
            "nothing to divide by (no page read, or the denominator did not grow)",
        )
    ratio = of / to
    measured["ratio"] = round(ratio, 4)
    ok = _within_bounds(probe, ratio)
    return Result(
        probe.label(), ok, expected, measured, "" if ok else f"{ratio:.3f} not {expected}"
    )


async def judge_http(
    probe: Probe, check: HttpCheck, mesh: MeshState, http: httpx.AsyncClient
) -> Result:
    expected = f"status in {list(check.status)} within {_ms(check.within)}"
    got = await send(http, mesh, check)
    if not got:
        return Result(probe.label(), False, expected, {}, f"no instance of {check.service}")
    url, status, seconds, error = got[0]
    measured = {"status": status, "ms": round(seconds * 1000, 1), "url": url}
    failures = []
    if status not in check.status:
        failures.append(f"status {status or error}")
    if seconds > check.within:
        failures.append(f"took {_ms(seconds)}")
    return Result(probe.label(), not failures, expected, measured, "; ".join(failures))


async def judge(
    probe: Probe,
    t0: float,
    t1: float,
    *,
    mesh: MeshState,
    loads: dict[str, Load],
    scraper: Scraper,
    http: httpx.AsyncClient,
) -> Result:
    """``probe`` over ``[t0, t1)`` of the experiment's clock."""
    kind = probe.kind
    if kind == "load":
        return judge_load(probe, loads[probe.load or ""].between(t0, t1), mesh)
    if kind == "http":
        assert probe.http is not None
        return await judge_http(probe, probe.http, mesh, http)
    scrapes = scraper.between(t0, t1)
    if len(scrapes) < 2:
        return Result(
            probe.label(), False, "", {}, "fewer than two scrapes of the sidecars in the window"
        )
    if kind in ("slo", "service"):
        return judge_slo(probe, mesh, scrapes[0], scrapes[-1])
    return judge_metric(probe, mesh, scrapes)


# ---------------------------------------------------------------- policy events

_EVENTS = {
    "breakers opened": ("seawall_breaker_transitions_total", {"to_state": "open"}),
    "retries sent": ("seawall_retries_total", {}),
    "retries refused by the budget": ("seawall_retry_budget_exhausted_total", {}),
    "overflow (bulkhead full)": ("seawall_overflow_total", {}),
    "shed": ("seawall_shed_total", {}),
    "outlier ejections": ("seawall_outlier_ejections_total", {}),
    "rate limited": ("seawall_rate_limited_total", {}),
    "denied by authorization": ("seawall_inbound_denied_total", {}),
    "upstream TLS failures": ("seawall_upstream_tls_failures_total", {}),
    "hedges": ("seawall_hedges_total", {}),
}


def policy_events(scrapes: Sequence[Scrape], mesh: MeshState) -> dict[str, dict[str, float]]:
    """What the policies did in the window, from the first to the last scrape: per
    event, per ``instance -> destination`` (or instance), the increase."""
    if len(scrapes) < 2:
        return {}
    first, last = scrapes[0], scrapes[-1]
    out: dict[str, dict[str, float]] = {}
    for event, (name, labels) in _EVENTS.items():
        for inst, samples in last.pages.items():
            before = _by_series(first.pages.get(inst, []), name, labels)
            for key, value in _by_series(samples, name, labels).items():
                was = before.get(key, 0.0)
                grew = value if value < was else value - was
                if grew > 0:
                    where = f"{inst} -> {key}" if key else inst
                    out.setdefault(event, {})[where] = out.get(event, {}).get(where, 0.0) + grew
    return out


def _by_series(samples: Iterable[Sample], name: str, labels: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name != name or any(s.labels.get(k) != v for k, v in labels.items()):
            continue
        key = s.labels.get("destination") or s.labels.get("criticality") or ""
        out[key] = out.get(key, 0.0) + s.value
    return out
