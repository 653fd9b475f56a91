"""The experiment file of ``seawall chaos run``: its schema, validated like mesh.yaml.

An experiment states a **steady-state hypothesis** (probes: the experiment's own
load as its clients see it, a mesh SLO as the sidecars count it, a metric, a ratio
of two metrics, an HTTP check), a **method** (faults injected for a while), the
**rollbacks** beyond each fault's own, and **abort** conditions. It is loaded by
:func:`load_experiment`: every problem is reported at once with its path, value and
line (the loader of mesh.yaml, :func:`seawall.config.load.load_document`), and
:func:`check_against` then refuses any service, instance or route that the running
mesh does not have, before anything is injected. Every key with its default:
``docs/chaos.md``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from annotated_types import Ge, Le, MinLen
from pydantic import Field
from pydantic import model_validator as _model_validator

from ..config._types import (
    Count,
    Duration,
    Flag,
    HeaderName,
    HttpUrl,
    Method,
    Name,
    Number,
    Objective,
    PositiveDuration,
    Rate,
    RouteName,
    Text,
    UrlPath,
    invalid,
)
from ..config.load import load_document
from ..config.model import (
    AbortFault,
    DelayFault,
    DestinationPolicy,
    MeshConfig,
    _Section,
)

__all__ = [
    "Action",
    "Experiment",
    "LoadSpec",
    "Probe",
    "Target",
    "check_against",
    "load_experiment",
]

Phase = Literal["before", "during", "after"]
Status = Annotated[int, Ge(100), Le(599)]
Scale = Annotated[float, Field(gt=0, le=1)]


class FastMode(_Section):
    """``seawall chaos run --fast``: every duration of the file times ``scale``."""

    scale: Scale = 0.25


class Target(_Section):
    """Where a request goes: ``url``, or ``service`` (its instances' inbound sidecar
    ports, in turn; with ``app: true``, the apps' own ports) and ``path``."""

    url: HttpUrl | None = None
    service: Name | None = None
    via: Name | None = None
    """Send ``url`` through this service's sidecar, as its app would call it
    (``http://orders/...`` through the gateway's outbound listener: its routes, splits
    and policies apply)."""
    app: Flag = False
    """To each instance's app directly, not through its sidecar (an app's own control
    endpoint, say)."""
    path: UrlPath = "/"
    method: Method = "GET"
    headers: dict[HeaderName, Text] = Field(default_factory=dict)
    body: Text | None = None
    json_body: Any = Field(default=None, alias="json")
    timeout: PositiveDuration = 5.0

    @_model_validator(mode="after")
    def _one_target(self) -> Target:
        if (self.url is None) == (self.service is None):
            invalid("give url or service (one of them)")
        if self.url is not None and self.app:
            invalid("app: true needs service, not url")
        if self.via is not None and self.url is None:
            invalid("via needs url (http://SERVICE/path, as the app would call it)")
        if self.body is not None and self.json_body is not None:
            invalid("give body or json, not both")
        return self


class LoadSpec(Target):
    """Traffic the experiment sends from its start to its end, and measures: each
    request's status and latency, and its trace id (every request starts a sampled
    trace, so a failing one links to its trace in the UI)."""

    rate: Annotated[float, Field(gt=0, le=5000)]
    """Requests per second, evenly spaced (open model: a slow answer does not slow the
    load down, up to ``concurrency`` in flight; beyond that a request is counted as
    not sent)."""
    concurrency: Count = 32


class LatencyCheck(_Section):
    """``{threshold: 300ms, percent: 95%}``: that share of requests at or under it
    (``100%``: every one)."""

    threshold: PositiveDuration
    percent: Rate


class Probe(_Section):
    """One check of the hypothesis. Exactly one of ``load``, ``slo``, ``service``,
    ``metric``, ``ratio`` and ``http`` says what it measures.

    * ``load``: the experiment's own requests, as its clients saw them (a failed
      request is a 5xx, a refused connection or a timeout);
    * ``slo``: a mesh SLO by name, or ``service`` (and ``route``): its inbound
      requests, counted by the sidecars (``seawall_requests_total`` and the latency
      histogram) over the window; the SLO's own objectives unless given here;
    * ``metric``: a sidecar metric summed over a service's instances;
    * ``ratio``: one metric over another (retry amplification, say);
    * ``http``: one request, its status and how long it took.
    """

    name: Text | None = None
    when: tuple[Phase, ...] = ("before", "during", "after")
    """Which checks it is part of: the steady state before, during and after."""

    load: Name | None = None
    slo: Name | None = None
    service: Name | None = None
    route: RouteName | None = None
    availability: Objective | None = None
    latency: LatencyCheck | None = None
    max_burn_rate: Annotated[float, Field(gt=0, le=10_000)] | None = None
    """The error budget may burn at most this fast: the bad share over (1 - the
    availability objective). Needs ``availability``, which is then the objective the
    burn is measured against, not a bound of its own."""
    max_failed: Annotated[int, Ge(0), Le(1_000_000)] | None = None
    """At most this many bad requests in the window (``0``: not one)."""
    min_requests: Annotated[int, Ge(0), Le(1_000_000)] = 1
    """Fewer requests than this in the window: the probe fails (nothing was measured)."""

    metric: MetricSelector | None = None
    ratio: RatioSpec | None = None
    http: HttpCheck | None = None

    max: Number | None = None
    """For ``metric`` and ``ratio``: the highest value allowed."""
    min: Number | None = None
    """For ``metric`` and ``ratio``: the lowest value allowed."""

    @_model_validator(mode="after")
    def _one_kind(self) -> Probe:
        kinds = [k for k in ("load", "slo", "service", "metric", "ratio", "http")
                 if getattr(self, k) is not None]  # fmt: skip
        if len(kinds) != 1:
            found = ", ".join(kinds) or "none"
            invalid(f"give exactly one of load, slo, service, metric, ratio, http (got {found})")
        kind = kinds[0]
        if not self.when:
            invalid("when: must name before, during or after")
        if kind in ("load", "slo", "service"):
            if (kind != "slo" and self.availability is None and self.latency is None
                    and self.max_failed is None):  # fmt: skip
                invalid(f"{kind}: needs availability, latency or max_failed")
            if self.max is not None or self.min is not None:
                invalid("max and min are for metric and ratio probes")
        else:
            if self.availability is not None or self.latency is not None:
                invalid("availability and latency are for load, slo and service probes")
            if kind in ("metric", "ratio") and self.max is None and self.min is None:
                invalid(f"{kind}: needs max or min")
        if self.route is not None and kind != "service":
            invalid("route is for service probes")
        counted = kind in ("load", "slo", "service")
        if not counted and (self.max_failed is not None or "min_requests" in self.model_fields_set):
            invalid("max_failed and min_requests are for load, slo and service probes")
        if self.max_burn_rate is not None and self.availability is None and kind != "slo":
            invalid("max_burn_rate needs availability")
        return self

    @property
    def kind(self) -> str:
        for k in ("load", "slo", "service", "metric", "ratio", "http"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated")  # pragma: no cover

    def label(self) -> str:
        """The name shown in the report."""
        if self.name:
            return self.name
        what = {
            "load": f"load {self.load}",
            "slo": f"slo {self.slo}",
            "service": f"{self.service}" + (f" route {self.route}" if self.route else ""),
            "metric": f"metric {self.metric.describe() if self.metric else ''}",
            "ratio": "ratio " + (self.ratio.describe() if self.ratio else ""),
            "http": "http " + (self.http.describe() if self.http else ""),
        }[self.kind]
        return what


class MetricSelector(_Section):
    """``{service: orders, name: seawall_retries_total, labels: {destination: payments}}``:
    the sum of the matching samples over every instance of ``service``. A counter is
    taken as its increase over the window (``delta``, on by default for ``_total``,
    ``_count`` and ``_sum``); a gauge is sampled every second and judged at its worst
    (the highest for ``max``, the lowest for ``min``)."""

    service: Name
    name: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    labels: dict[Text, Text] = Field(default_factory=dict)
    delta: Flag | None = None

    @property
    def is_delta(self) -> bool:
        if self.delta is not None:
            return self.delta
        return self.name.endswith(("_total", "_count", "_sum", "_bucket"))

    def describe(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.service}:{self.name}" + (f"{{{labels}}}" if labels else "")


class RatioSpec(_Section):
    """``of`` over ``to``, each a :class:`MetricSelector` (usually two counters)."""

    of: MetricSelector
    to: MetricSelector
    min_to: Annotated[int, Ge(1), Le(100_000_000)] = 1
    """The denominator must grow by at least this much: a share of too few draws is
    noise (2 points of a 10% split is 3 standard deviations at 2,000)."""

    def describe(self) -> str:
        return f"{self.of.describe()} / {self.to.describe()}"


class HttpCheck(Target):
    """One request; it passes when its status is in ``status`` within ``within``."""

    status: Annotated[tuple[Status, ...], MinLen(1)] = (200,)
    within: PositiveDuration = 1.0

    def describe(self) -> str:
        where = self.url or f"{self.service}{self.path}"
        return f"{self.method} {where}"


class SteadyState(_Section):
    """The hypothesis: probes, each judged over a window before, during and after."""

    window: PositiveDuration = 10.0
    """How long the checks before and after measure."""
    recovery: Duration = 5.0
    """After the rollback, not judged: breakers close, restarted processes come back."""
    probes: Annotated[tuple[Probe, ...], MinLen(1)]


# ---------------------------------------------------------------- actions


class _ActionBase(_Section):
    at: Duration = 0.0
    """When it starts, from the method's start."""
    for_: Duration | None = Field(default=None, alias="for")
    """How long it lasts (then it is rolled back); by default until the method ends."""
    name: Text | None = None


class FaultAction(_ActionBase):
    """Delay or abort a share of the requests every caller sends to ``service`` (on
    ``route``, else on all of them): mesh.yaml's fault injection, applied live through
    the control plane, and removed by applying the config it replaced."""

    action: Literal["fault"]
    service: Name
    route: RouteName | None = None
    delay: DelayFault | None = None
    abort: AbortFault | None = None

    @_model_validator(mode="after")
    def _some_fault(self) -> FaultAction:
        if self.delay is None and self.abort is None:
            invalid("fault: needs delay or abort")
        return self


class PolicyAction(_ActionBase):
    """Apply other policies for calls to ``service`` (``set``: keys of
    ``policies.<service>`` in mesh.yaml) for a while, through the control plane."""

    action: Literal["policy"]
    service: Name
    set: dict[str, Any]

    @_model_validator(mode="after")
    def _valid_policy(self) -> PolicyAction:
        if not self.set:
            invalid("set: must not be empty")
        return self


class ConfigAction(_ActionBase):
    """Change any part of the config for a while (``set``: merged into the mesh config
    document: ``services.orders.shedding``, say), through the control plane."""

    action: Literal["config"]
    set: dict[str, Any]

    @_model_validator(mode="after")
    def _valid_change(self) -> ConfigAction:
        if not self.set:
            invalid("set: must not be empty")
        return self


class InstanceAction(_ActionBase):
    """An action on the processes of ``service``: its instance ``instance`` (a name
    ``seawall ps`` shows), else every one of its instances."""

    service: Name
    instance: Name | None = None


class HangAction(InstanceAction):
    """The app stops answering: its process is stopped (SIGSTOP), so connections are
    still accepted by the kernel and never answered; SIGCONT rolls it back."""

    action: Literal["hang"]


class KillAction(InstanceAction):
    """SIGKILL the app (or its sidecar); ``seawall up`` starts it again, with backoff.
    The rollback waits until it is back (its port answers again)."""

    action: Literal["kill"]
    process: Literal["app", "sidecar"] = "app"


class CpuAction(InstanceAction):
    """Starve the app of CPU: it is stopped ``percent`` of every ``period``
    (SIGSTOP, SIGCONT), as a neighbour that takes the core would."""

    action: Literal["cpu"]
    percent: Objective = 90.0
    """The share of the time it is stopped, in (0, 100)."""
    period: PositiveDuration = 0.1


class KillControlPlaneAction(_ActionBase):
    """SIGKILL the control plane; ``seawall up`` starts it again (its state is on disk).
    The sidecars keep serving with the config and endpoints they have."""

    action: Literal["kill_control_plane"]


class PartitionAction(_ActionBase):
    """Cut ``between[0]`` off from ``between[1]``, both ways. At the sidecar (the
    default): each service's sidecar refuses the other's connections
    (``authorization.refuse``, applied live: closed after the mTLS handshake, before
    any request; open ones at once when idle, tunnels cut). With ``seawall
    chaos run --netns`` on a mesh started with ``seawall up --netns``: in the
    network, by routes in each instance's network namespace (connections fail)."""

    action: Literal["partition"]
    between: Annotated[tuple[Name, Name], MinLen(2)]

    @_model_validator(mode="after")
    def _two(self) -> PartitionAction:
        if self.between[0] == self.between[1]:
            invalid("between: two different services")
        return self


class CertExpiryAction(_ActionBase):
    """Certificates of ``service`` live only ``ttl`` from now (its sidecars renew at
    once); with ``block_renewal`` the control plane then refuses to renew them, so
    they expire on the wire and its peers refuse the handshake."""

    action: Literal["cert_expiry"]
    service: Name
    ttl: Annotated[float, Field(ge=1, le=3600)] = 3.0
    block_renewal: Flag = True


class HttpAction(_ActionBase, Target):
    """Send one request (to every instance with ``service``): an app's own switch, say.
    Its rollback is the request in ``undo``, when given."""

    action: Literal["http"]
    undo: Target | None = None


Action = Annotated[
    FaultAction
    | PolicyAction
    | ConfigAction
    | HangAction
    | KillAction
    | CpuAction
    | KillControlPlaneAction
    | PartitionAction
    | CertExpiryAction
    | HttpAction,
    Field(discriminator="action"),
]


class MethodSpec(_Section):
    """The faults: each starts ``at`` into the method and lasts ``for`` (else until
    ``duration`` ends); every one is rolled back when the method ends, when an abort
    condition holds, on Ctrl-C, and when ``seawall chaos`` itself fails."""

    duration: PositiveDuration = 20.0
    settle: Duration = 2.0
    """The method's first seconds, not judged (a breaker needs some calls to open)."""
    actions: Annotated[tuple[Action, ...], MinLen(1)]

    @_model_validator(mode="after")
    def _settle_inside(self) -> MethodSpec:
        if self.settle >= self.duration:
            invalid(f"settle must be < duration ({self.duration:g}s)")
        for action in self.actions:
            if action.at >= self.duration:
                invalid(f"an action's at must be < duration ({self.duration:g}s)")
        return self


class AbortCondition(Probe):
    """A probe checked every second during the method over the last ``window``: when
    it fails, the experiment stops, every fault is rolled back, and the verdict is
    "aborted"."""

    window: PositiveDuration = 5.0
    when: tuple[Phase, ...] = ("during",)


class Experiment(_Section):
    title: Text
    description: Text = ""
    fast: FastMode = FastMode()
    load: dict[Name, LoadSpec] = Field(default_factory=dict)
    steady_state: SteadyState
    method: MethodSpec
    rollbacks: tuple[HttpAction, ...] = ()
    """Requests sent after every fault is rolled back, in order: what chaos cannot
    undo by itself (an app's own switch put back...). A fault through the config needs
    none: the config before the experiment is applied again."""
    abort: tuple[AbortCondition, ...] = ()

    def scaled(self, scale: float) -> Experiment:
        """The same experiment with how long it looks times ``scale`` (``--fast``): the
        steady state's window, the method's duration and settle, each action's ``at``
        and ``for``, each abort condition's window. Not a fault's delay, a timeout, a
        latency threshold, ``recovery`` (the mesh's own time constants: a breaker's open
        spell does not shrink with the experiment) or anything in a request's body."""
        if scale == 1:
            return self

        def times(value: float | None) -> float | None:
            return None if value is None else value * scale

        actions = tuple(
            a.model_copy(update={"at": a.at * scale, "for_": times(a.for_)})
            for a in self.method.actions
        )
        return self.model_copy(update={
            "steady_state": self.steady_state.model_copy(
                update={"window": self.steady_state.window * scale}),
            "method": self.method.model_copy(update={
                "duration": self.method.duration * scale,
                "settle": self.method.settle * scale,
                "actions": actions,
            }),
            "abort": tuple(c.model_copy(update={"window": c.window * scale}) for c in self.abort),
        })  # fmt: skip

    def services(self) -> Iterable[tuple[str, str]]:
        """``(path, service)`` for every service the file names."""
        for name, spec in self.load.items():
            if spec.service:
                yield f"load.{name}.service", spec.service
            if spec.via:
                yield f"load.{name}.via", spec.via
        for i, probe in enumerate(self.steady_state.probes):
            yield from _probe_services(f"steady_state.probes[{i}]", probe)
        for i, cond in enumerate(self.abort):
            yield from _probe_services(f"abort[{i}]", cond)
        for group, actions in (("method.actions", self.method.actions),
                               ("rollbacks", self.rollbacks)):  # fmt: skip
            for i, action in enumerate(actions):
                where = f"{group}[{i}]"
                if isinstance(action, PartitionAction):
                    for j, svc in enumerate(action.between):
                        yield f"{where}.between[{j}]", svc
                elif isinstance(action, HttpAction):
                    if action.service:
                        yield f"{where}.service", action.service
                    if action.undo is not None and action.undo.service:
                        yield f"{where}.undo.service", action.undo.service
                elif not isinstance(action, KillControlPlaneAction | ConfigAction):
                    yield f"{where}.service", action.service


def _probe_services(where: str, probe: Probe) -> Iterable[tuple[str, str]]:
    if probe.service:
        yield f"{where}.service", probe.service
    if probe.metric:
        yield f"{where}.metric.service", probe.metric.service
    if probe.ratio:
        yield f"{where}.ratio.of.service", probe.ratio.of.service
        yield f"{where}.ratio.to.service", probe.ratio.to.service
    if probe.http and probe.http.service:
        yield f"{where}.http.service", probe.http.service
    if probe.http and probe.http.via:
        yield f"{where}.http.via", probe.http.via


def _cross_check(data: Any) -> Iterable[tuple[tuple[Any, ...], str, str | None]]:
    """Loads a probe names must exist in ``load``."""
    if not isinstance(data, Mapping):
        return
    loads = data.get("load") or {}
    names = set(loads) if isinstance(loads, Mapping) else set()
    for section in ("steady_state", "abort"):
        node = data.get(section)
        probes = node.get("probes") if section == "steady_state" and isinstance(node, Mapping) \
            else node  # fmt: skip
        if not isinstance(probes, list):
            continue
        for i, probe in enumerate(probes):
            if (isinstance(probe, Mapping) and isinstance(probe.get("load"), str)
                    and probe["load"] not in names):  # fmt: skip
                loc: tuple[Any, ...] = (
                        (section, "probes", i, "load") if section == "steady_state"
                        else (section, i, "load")
                    )  # fmt: skip
                known = ", ".join(sorted(names)) or "none"
                yield loc, f"no such load (the file's: {known})", repr(probe["load"])


def load_experiment(source: str | bytes | os.PathLike[str]) -> Experiment:
    """An experiment from YAML text or a file; :class:`~seawall.config.ConfigError`
    lists every problem, each with its path."""
    return load_document(source, Experiment, _cross_check, what="experiment")


def check_against(
    experiment: Experiment,
    mesh: MeshConfig,
    instances: Mapping[str, str],
    *,
    document: Mapping[str, Any] | None = None,
    namespaced: frozenset[str] = frozenset(),
) -> list[str]:
    """What the running mesh lacks: ``path: problem`` for each service, instance, route
    or SLO the experiment names that it does not have (``instances``: instance name to
    its service), each change to the config that would not validate on ``document``
    (the config in force), and each ``via`` through a service of ``namespaced`` (in a
    network namespace: its sidecar's outbound listener is its app's alone). Empty: the
    experiment may run."""
    problems = _via_problems(experiment, instances, namespaced)
    if document is not None:
        problems += _overlay_problems(experiment, document)
    known = ", ".join(sorted(mesh.services)) or "none"
    for path, service in experiment.services():
        if service not in mesh.services:
            problems.append(f"{path}: no service {service!r} in the mesh (its services: {known})")
    running = set(instances.values())
    for name, spec in experiment.load.items():
        for key, svc in (("service", spec.service), ("via", spec.via)):
            if svc and svc in mesh.services and svc not in running:
                problems.append(f"load.{name}.{key}: {svc!r} has no running instance")
    for group, actions in (("method.actions", experiment.method.actions),
                           ("rollbacks", experiment.rollbacks)):  # fmt: skip
        for i, action in enumerate(actions):
            where = f"{group}[{i}]"
            if isinstance(action, InstanceAction):
                if action.service in mesh.services and action.service not in running:
                    problems.append(f"{where}.service: {action.service!r} has no running"
                                    " instance (no run: in mesh.yaml?)")  # fmt: skip
                if action.instance is not None and instances.get(action.instance) != action.service:
                    mine = sorted(n for n, s in instances.items() if s == action.service)
                    problems.append(
                        f"{where}.instance: no instance {action.instance!r} of"
                        f" {action.service!r} (its instances: {', '.join(mine)})"
                    )
            if isinstance(action, FaultAction) and action.route is not None:
                policy = mesh.policies.get(action.service, DestinationPolicy())
                routes = [r.name for r in policy.routes if r.name]
                if action.route not in routes:
                    problems.append(f"{where}.route: no route {action.route!r} in"
                                    f" policies.{action.service} (its routes:"
                                    f" {', '.join(routes) or 'none'})")  # fmt: skip
    for where, probe in _all_probes(experiment):
        if probe.slo is not None and probe.slo not in mesh.slos:
            problems.append(f"{where}.slo: no SLO {probe.slo!r} in the mesh (its SLOs:"
                            f" {', '.join(sorted(mesh.slos)) or 'none'})")  # fmt: skip
        elif (
            probe.slo is not None
            and probe.max_burn_rate is not None
            and (probe.availability is None and mesh.slos[probe.slo].availability is None)
        ):
            problems.append(f"{where}.max_burn_rate: SLO {probe.slo!r} has no availability"
                            " objective to burn against: give availability")  # fmt: skip
        if probe.route is not None and probe.service in mesh.services:
            policy = mesh.policies.get(probe.service or "", DestinationPolicy())
            if probe.route not in [r.name for r in policy.routes if r.name]:
                problems.append(f"{where}.route: no route {probe.route!r} in"
                                f" policies.{probe.service}")  # fmt: skip
    return problems


def _via_problems(
    experiment: Experiment, instances: Mapping[str, str], namespaced: frozenset[str]
) -> list[str]:
    problems = []
    running = set(instances.values())
    targets: list[tuple[str, Target]] = [(f"load.{n}", spec) for n, spec in experiment.load.items()]
    targets += [(f"{where}.http", p.http) for where, p in _all_probes(experiment) if p.http]
    for where, target in targets:
        if target.via is None:
            continue
        if target.via not in running:
            problems.append(f"{where}.via: {target.via!r} has no running instance")
        elif target.via in namespaced:
            problems.append(f"{where}.via: {target.via!r} runs in a network namespace"
                            " (seawall up --netns): its sidecar is its app's alone")  # fmt: skip
    return problems


def _overlay_problems(experiment: Experiment, document: Mapping[str, Any]) -> list[str]:
    """Each config change of the method that would not validate, said before anything
    is injected (with the mesh config's own paths)."""
    from ..config.errors import ConfigError  # noqa: PLC0415
    from ..config.load import parse_mesh  # noqa: PLC0415
    from .faults import overlay  # noqa: PLC0415

    problems = []
    for i, action in enumerate(experiment.method.actions):
        if not isinstance(action, FaultAction | PolicyAction | ConfigAction | PartitionAction):
            continue
        try:
            parse_mesh(overlay(dict(document), action))
        except ConfigError as exc:
            problems += [f"method.actions[{i}]: the config with it: {e}" for e in exc.errors]
        except (KeyError, TypeError, AttributeError) as exc:
            problems.append(f"method.actions[{i}]: cannot be applied to the config: {exc}")
    return problems


def _all_probes(experiment: Experiment) -> Iterable[tuple[str, Probe]]:
    for i, probe in enumerate(experiment.steady_state.probes):
        yield f"steady_state.probes[{i}]", probe
    for i, cond in enumerate(experiment.abort):
        yield f"abort[{i}]", cond


Probe.model_rebuild()
