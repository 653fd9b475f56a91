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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from ..config.model import LatencyObjective, SloConfig
from ..slo.evaluate import objectives
from ..slo.scrape import PageIndex, Sample, counters, le_label
from .mesh import InstanceInfo, MeshState, Scrape, Scraper
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


class Instances(Protocol):
    """Where a service's instances are (a :class:`MeshState`, or ``up.json``'s)."""

    def of(self, service: str, instance: str | None = None) -> list[InstanceInfo]: ...


def proxy_of(mesh: Instances, target: Target) -> str | None:
    """The outbound listener of ``target.via`` (its first instance), or ``None``."""
    if target.via is None:
        return None
    found = mesh.of(target.via)
    if not found or not found[0].outbound or found[0].netns is not None:
        # (in a namespace, its outbound listener is the namespace's 127.0.0.1: its app's)
        raise ValueError(f"no instance of {target.via} whose sidecar this machine can call")
    return f"http://127.0.0.1:{found[0].outbound}"


def _urls(mesh: Instances, target: Target) -> list[str]:
    if target.url is not None:
        return [target.url]
    found = mesh.of(target.service or "")
    return [f"http://{i.address}:{i.app_port if target.app else i.inbound}{target.path}"
            for i in found]  # fmt: skip


async def send(
    http: httpx.AsyncClient, mesh: Instances, target: Target, *, every: bool = False
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
    try:
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
    finally:
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
        self.pending: dict[int, float] = {}
        """Requests sent and not yet answered: their start times, by number."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._started: dict[asyncio.Task[None], float] = {}

    async def _one(self, url: str, t: float, n: int) -> None:
        self.pending[n] = t
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
            self.pending.pop(n, None)
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
                task = asyncio.get_running_loop().create_task(self._one(url, now, n))
                self._tasks.add(task)
                self._started[task] = now
                task.add_done_callback(self._tasks.discard)
                task.add_done_callback(self._started.pop)
        finally:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=self.spec.timeout + 1)
            if self.own is not None:
                await self.own.aclose()

    async def settle(self, t1: float) -> None:
        """Until every request sent before ``t1`` has its answer (or its timeout)."""
        waiting = [task for task, t in self._started.items() if t < t1]
        if waiting:
            await asyncio.wait(waiting, timeout=max(0.0, t1 + self.spec.timeout + 1.0
                                                    - time.monotonic()))  # fmt: skip

    def between(self, t0: float, t1: float, *, now: float | None = None) -> list[Record]:
        """The requests sent in ``[t0, t1)``; with ``now``, those still unanswered too,
        as slow as they are so far (status 0 once past their timeout)."""
        found = [r for r in self.records if t0 <= r.t < t1]
        if now is not None:
            for t in self.pending.values():
                if t0 <= t < t1:
                    late = now - t >= self.spec.timeout
                    found.append(Record(t, now - t, 0 if late else 1, "", "no answer yet"))
        return found


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
    if total < probe.min_requests:
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
        if r.error == "no answer yet":
            key = "pending"
        else:
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


SeriesOf = Callable[[str, Scrape], dict[str, float] | None]
"""An instance and a scrape -> its values by series key (``None``: it has no such
series, nor declares their family)."""


def increase(scrapes: Sequence[Scrape], values: SeriesOf) -> tuple[dict[str, float], bool]:
    """What counters grew by over ``scrapes``, per series key, summed over instances:
    each instance's increases between its consecutive pages (a drop is a restart,
    counted from 0; a series that appears, from 0), so a page missing at one end loses
    an interval, never counts a lifetime. Also whether any instance had the series."""
    out: dict[str, float] = {}
    seen = False
    last: dict[str, dict[str, float]] = {}
    for scrape in scrapes:
        for inst in scrape.pages:
            now = values(inst, scrape)
            if now is None:
                continue
            seen = True
            before = last.get(inst)
            if before is not None:
                for key, value in now.items():
                    was = before.get(key)
                    grew = value if was is None or value < was else value - was
                    out[key] = out.get(key, 0.0) + grew
            else:
                for key in now:
                    out.setdefault(key, 0.0)
            last[inst] = now
    return out, seen


def _slo_series(name: str, slo: SloConfig, mesh: MeshState, kind: str) -> SeriesOf:
    """An instance's ``total`` and ``bad`` of ``slo``'s ``kind`` objective."""
    objective = next(o for o in objectives({name: slo}) if o.kind == kind)

    def values(inst: str, scrape: Scrape) -> dict[str, float] | None:
        info = mesh.instances.get(inst)
        if info is None:
            return None
        got = counters(objective, slo, info.service, PageIndex(scrape.pages[inst]))
        return None if got is None else {"total": got[0], "bad": got[1]}

    return values


def judge_slo(probe: Probe, mesh: MeshState, scrapes: Sequence[Scrape]) -> Result:
    name, slo = _slo_of(probe, mesh)
    counts: dict[str, tuple[float, float] | None] = {}
    for kind, objective in (("availability", slo.availability), ("latency", slo.latency)):
        if objective is None:
            continue
        grew, seen = increase(scrapes, _slo_series(name, slo, mesh, kind))
        counts[kind] = (grew.get("total", 0.0), grew.get("bad", 0.0)) if seen else None
    avail, latency = counts.get("availability"), counts.get("latency")
    total, bad = avail or latency or (0.0, 0.0)
    within = None
    if latency is not None:
        within = latency[0] - latency[1]
        if avail is None:
            total, bad = latency[0], 0.0
    percent = slo.latency.percent if slo.latency else None
    if probe.latency is not None:
        percent = probe.latency.percent
    ok, expected, measured, failures = _judge_slo_numbers(
        probe, total, bad, within, slo.availability, percent,
        slo.latency.threshold if slo.latency else None,
    )  # fmt: skip
    service = slo.service or name
    if slo.latency is not None and latency is None:
        measured["note"] = (f"no sidecar of {service} has a bucket at"
                            f" le={le_label(slo.latency.threshold)}")  # fmt: skip
    if slo.availability is not None and avail is None:
        ok = False
        failures.append(f"no sidecar of {service} counted its requests")
    return Result(probe.label(), ok, "; ".join(expected), measured, "; ".join(failures))


def _metric_series(sel: MetricSelector, mesh: MeshState) -> SeriesOf:
    """An instance of ``sel.service``'s matching series, by their labels."""

    def values(inst: str, scrape: Scrape) -> dict[str, float] | None:
        info = mesh.instances.get(inst)
        if info is None or info.service != sel.service:
            return None
        found = {
            ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())): s.value
            for s in scrape.pages[inst]
            if s.name == sel.name and all(s.labels.get(k) == v for k, v in sel.labels.items())
        }
        # none counted yet (a labelled series appears at its first count), when the
        # page declares the family; a name no page declares is a mistake, said
        return found if found or scrape.declares(inst, sel.name) else None

    return values


def metric_over(
    sel: MetricSelector, mesh: MeshState, scrapes: Sequence[Scrape]
) -> tuple[float, float] | None:
    """``sel`` over the window, as ``(lowest, highest)``: a counter's increase (both the
    same), or a gauge's sum over the instances at each scrape, at its lowest and its
    highest. ``None``: no instance of the service has such a series."""
    series = _metric_series(sel, mesh)
    if sel.is_delta:
        grew, seen = increase(scrapes, series)
        if not seen:
            return None
        total = sum(grew.values())
        return total, total
    sums: list[float] = []
    for scrape in scrapes:
        pages = [series(inst, scrape) for inst in scrape.pages]
        found = [page for page in pages if page is not None]
        if found:
            sums.append(sum(v for page in found for v in page.values()))
    return (min(sums), max(sums)) if sums else None


def _bounds(probe: Probe) -> str:
    parts = []
    if probe.min is not None:
        parts.append(f">= {probe.min:g}")
    if probe.max is not None:
        parts.append(f"<= {probe.max:g}")
    return " and ".join(parts)


def judge_metric(probe: Probe, mesh: MeshState, scrapes: Sequence[Scrape]) -> Result:
    expected = _bounds(probe)
    if probe.metric is not None:
        sel = probe.metric
        got = metric_over(sel, mesh, scrapes)
        if got is None:
            why = f"no page of {sel.service} declares {sel.name} (a typo?)"
            return Result(probe.label(), False, expected, {}, why)
        low, high = got
        failures = []
        if probe.max is not None and high > probe.max:
            failures.append(f"{high:g} > {probe.max:g}")
        if probe.min is not None and low < probe.min:
            failures.append(f"{low:g} < {probe.min:g}")
        measured: dict[str, Any] = {"increase": high} if sel.is_delta else \
            {"min seen": low, "max seen": high}  # fmt: skip
        return Result(probe.label(), not failures, expected, measured, "; ".join(failures))
    assert probe.ratio is not None
    ratio_spec = probe.ratio
    of, to = metric_over(ratio_spec.of, mesh, scrapes), metric_over(ratio_spec.to, mesh, scrapes)
    measured = {"of": None if of is None else of[1], "to": None if to is None else to[1]}
    if of is None or to is None:
        missing = ratio_spec.of if of is None else ratio_spec.to
        why = f"no page of {missing.service} declares {missing.name} (a typo?)"
        return Result(probe.label(), False, expected, measured, why)
    if to[1] < ratio_spec.min_to or to[1] <= 0:
        why = f"the denominator grew by {to[1]:g}, fewer than {ratio_spec.min_to}"
        return Result(probe.label(), False, expected, measured, why)
    ratio = of[1] / to[1]
    measured["ratio"] = round(ratio, 4)
    ok = (probe.max is None or ratio <= probe.max) and (probe.min is None or ratio >= probe.min)
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
    sliding: bool = False,
) -> Result:
    """``probe`` over ``[t0, t1)`` of the experiment's clock. ``sliding``: a window that
    ends now (an abort condition's): requests not yet answered count as slow as they are
    so far, and the counters' baseline is the last scrape before ``t0``."""
    kind = probe.kind
    if kind == "load":
        now = time.monotonic() if sliding else None
        return judge_load(probe, loads[probe.load or ""].between(t0, t1, now=now), mesh)
    if kind == "http":
        assert probe.http is not None
        return await judge_http(probe, probe.http, mesh, http)
    scrapes = scraper.around(t0, t1) if sliding else scraper.between(t0, t1)
    if len(scrapes) < 2:
        return Result(
            probe.label(), False, "", {}, "fewer than two scrapes of the sidecars in the window"
        )
    if kind in ("slo", "service"):
        return judge_slo(probe, mesh, scrapes)
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
    "connections refused (partition)": ("seawall_inbound_tls_refused_total", {"reason": "caller"}),
    "upstream TLS failures": ("seawall_upstream_tls_failures_total", {}),
    "hedges": ("seawall_hedges_total", {}),
}


def policy_events(scrapes: Sequence[Scrape], mesh: MeshState) -> dict[str, dict[str, float]]:
    """What the policies did in the window: per event, per ``instance -> destination``
    (or instance), the counters' :func:`increase` over the window's scrapes."""
    out: dict[str, dict[str, float]] = {}
    for event, (name, labels) in _EVENTS.items():

        def values(inst: str, scrape: Scrape, name: str = name,
                   labels: dict[str, str] = labels) -> dict[str, float]:  # fmt: skip
            found = _by_series(scrape.pages[inst], name, labels)
            return {f"{inst} -> {key}" if key else inst: v for key, v in found.items()}

        grew, _ = increase(scrapes, values)
        seen = {where: v for where, v in grew.items() if v > 0}
        if seen:
            out[event] = seen
    return out


def _by_series(samples: Iterable[Sample], name: str, labels: dict[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in samples:
        if s.name != name or any(s.labels.get(k) != v for k, v in labels.items()):
            continue
        key = s.labels.get("destination") or s.labels.get("criticality") or ""
        out[key] = out.get(key, 0.0) + s.value
    return out
