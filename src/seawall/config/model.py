"""The mesh model: what mesh.yaml says, as frozen, validated objects.

Every section is a frozen pydantic model that forbids unknown keys, so a typo
is an error naming its path rather than a silently ignored setting. Values are
normalised on the way in: durations become float seconds, percentages floats
in ``[0, 100]``, sizes int bytes, header names lower case.

Checks that involve one section live on its model (``max >= base``); checks
that involve several sections (a route naming a subset of another service,
ports used twice) live in :mod:`seawall.config.checks`, and only
:func:`~seawall.config.parse_mesh` runs both. Build configs with
:func:`~seawall.config.load_mesh` or :func:`~seawall.config.parse_mesh`, not
with ``MeshConfig.model_validate``, which skips the cross-section checks.

Every default is explained in ``docs/config/mesh-yaml.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from annotated_types import Ge, Le, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)
from pydantic import model_validator as _model_validator

from ._types import (
    ByteSize,
    ByteSizeOrZero,
    Command,
    Count,
    CountOrZero,
    Duration,
    Flag,
    HeaderName,
    Host,
    HttpUrl,
    Method,
    Name,
    Number,
    Objective,
    Percent,
    Port,
    PositiveDuration,
    Rate,
    Regex,
    RetryCondition,
    RouteKey,
    RouteName,
    Text,
    TrustDomain,
    UpgradeProtocol,
    UrlPath,
    _command,
    invalid,
    is_name,
    seconds,
)
from .units import format_duration, parse_duration

__all__ = [
    "AbortFault",
    "AuthorizationConfig",
    "AuthorizationRule",
    "BackoffConfig",
    "BudgetConfig",
    "BulkheadConfig",
    "CircuitBreakerConfig",
    "DelayFault",
    "DestinationPolicy",
    "EndpointConfig",
    "ExternalService",
    "FaultConfig",
    "HedgeConfig",
    "HeaderMatch",
    "LatencyObjective",
    "LimitsConfig",
    "MatchConfig",
    "MeshConfig",
    "MirrorConfig",
    "OutlierConfig",
    "ProgressiveConfig",
    "RateLimitConfig",
    "RetryConfig",
    "RouteConfig",
    "RouteRetry",
    "ServiceConfig",
    "SidecarOptions",
    "SidecarPorts",
    "AlertingConfig",
    "BurnAlert",
    "DEFAULT_BURN_ALERTS",
    "JourneyConfig",
    "SloAlerts",
    "SloBudgeting",
    "SloConfig",
    "SloWindow",
    "SlowCallConfig",
    "SubsetConfig",
    "WindowConfig",
]

KIB = 1024
MIB = 1024 * KIB


class _Section(BaseModel):
    """Base of every section: frozen, unknown keys refused, empty means defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @_model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        # ``retry:`` with nothing after it is YAML null: read it as "all defaults",
        # and ``subsets:`` (or any key whose default is empty) as empty.
        if data is None:
            return {}
        if isinstance(data, dict) and None in data.values():
            fields = cls.model_fields
            return {
                key: value
                for key, value in data.items()
                if not (value is None and key in fields and fields[key].default in ({}, ()))
            }
        return data


def _earlier(info: ValidationInfo, name: str) -> Any:
    """The already-validated value of an earlier field (its default if not given), or
    None if it failed. A later field compared with it sets ``validate_default=True``,
    or a given ``open_for: 90s`` would pass against the default ``max_open_for: 60s``."""
    return info.data.get(name)


def _show(seconds: float) -> str:
    return format_duration(seconds)


# ---------------------------------------------------------------- services


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _run_shorthand(value: object) -> object:
    """``run: python -m app`` (or a list of arguments) is ``run: {command: ...}``; its
    errors are said at ``run`` itself."""
    if isinstance(value, str | list | tuple):
        return {"command": _command(value)}
    return value


def _env_names(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if _ENV_NAME.fullmatch(name) is None:
            invalid(f"{name!r} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
    return env


class RunConfig(_Section):
    """What ``seawall up`` starts for a service: its app, once per instance, each beside
    its own sidecar. The app is told where to listen and how to reach the mesh by its
    environment: ``SEAWALL_SERVICE``, ``SEAWALL_INSTANCE``, ``SEAWALL_APP_PORT`` (its
    port), ``SEAWALL_SUBSET``, and ``HTTP_PROXY`` (its sidecar's outbound listener)."""

    command: Command
    """A command line (split like a shell does, without a shell) or a list of arguments;
    a first word ``python`` (or ``python3``) is the Python ``seawall up`` runs on."""
    cwd: Text | None = None
    """Where it runs: relative to mesh.yaml's directory (default: that directory)."""
    env: Annotated[dict[str, Text], AfterValidator(_env_names)] = {}
    """Added to the environment ``seawall up`` was started with."""
    instances: Annotated[int, Strict(), Ge(1), Le(64)] = 1
    """How many run: the first on the ports of this file, the others on ports
    ``seawall up`` allocates."""
    subset: Name | None = None
    """The subset its instances register in (``--subset``), if any."""


class SubsetConfig(_Section):
    """A named group of a service's endpoints (a version, a canary)."""

    labels: dict[Text, Text] = {}
    """Labels selecting the subset's instances (used by the control plane's registry)."""
    run: Annotated[RunConfig, BeforeValidator(_run_shorthand)] | None = None
    """What ``seawall up`` starts for this subset (its instances register in it, on ports
    ``seawall up`` allocates): a canary's build beside the service's own ``run``."""


class EndpointConfig(_Section):
    """One address where a service is reached (normally an instance's inbound sidecar)."""

    address: Host
    port: Port
    subset: Name | None = None
    """The subset this endpoint belongs to, if any (must be one of the service's subsets)."""
    weight: Annotated[int, Strict(), Ge(1), Le(10_000)] = 1
    """Relative weight for load balancing among endpoints of equal health."""


class SidecarPorts(_Section):
    """The ports of a service's sidecar."""

    inbound: Port
    """Receives calls from other sidecars; forwards them to the app (on ``host``)."""
    outbound: Port
    """The app's HTTP proxy (``HTTP_PROXY=http://127.0.0.1:<outbound>``)."""
    admin: Port
    """``/ready``, ``/metrics``, ``/config``, ``/clusters``."""
    upstreams: dict[Name, Port] = {}
    """Optional local port per destination, for clients that cannot use a proxy."""


def _caller(value: object) -> str:
    if value == "*" or is_name(value):
        return str(value)
    invalid("must be a service name or '*' (any authenticated caller)")


def _refused(value: object) -> str:
    if is_name(value):
        return str(value)
    if value == "*":
        invalid("must name services: refusing '*' would cut the service off from the whole mesh")
    invalid("must be a service name")


def _rule_path(value: object) -> str:
    if not isinstance(value, str):
        invalid("must be a string")
    if not value.startswith("/"):
        invalid("must start with '/'")
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        invalid("must not contain spaces or control characters")
    if "?" in value or "#" in value:
        invalid("must be a path only: the query is not matched")
    if "*" in value[:-1]:
        invalid("'*' may only end a path (a prefix, as in '/refunds/*')")
    return value


Caller = Annotated[str, BeforeValidator(_caller)]
Refused = Annotated[str, BeforeValidator(_refused)]
RulePath = Annotated[str, BeforeValidator(_rule_path)]


class AuthorizationRule(_Section):
    """One rule of a service's inbound authorization: who may (or may not) call what.

    Every condition given must hold for the rule to match; an omitted one
    matches anything. ``from`` is spelled ``from_`` in Python (a keyword).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    action: Literal["allow", "deny"]
    from_: tuple[Caller, ...] | None = Field(default=None, alias="from")
    """Calling services (their certificates' SPIFFE IDs); ``"*"``: any authenticated
    caller; omitted: anyone, unauthenticated (plaintext) callers included."""
    methods: tuple[Method, ...] | None = None
    """Request methods; omitted: any."""
    paths: tuple[RulePath, ...] | None = None
    """Exact paths, or prefixes ending in ``*`` (``/refunds/*``); omitted: any path."""

    @field_validator("from_", "methods", "paths")
    @classmethod
    def _not_empty(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        # An empty list would match nothing: surely not what was meant (omit the key for "any").
        if values is not None and not values:
            invalid("must not be empty (omit the key to match any)")
        return values

    @field_validator("from_")
    @classmethod
    def _star_alone(cls, callers: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if callers is not None and "*" in callers and len(callers) > 1:
            invalid("'*' already means any authenticated caller: list it alone")
        return callers


class AuthorizationConfig(_Section):
    """Who may call a service, checked by its own sidecar on every inbound request.

    Deny rules are checked first, then allow rules, then ``default``.
    """

    default: Literal["allow", "deny"] = "allow"
    """What happens to a request no rule matches."""
    rules: tuple[AuthorizationRule, ...] = ()
    refuse: tuple[Refused, ...] = ()
    """Services whose connections are refused outright: closed right after the mTLS
    handshake, before any request is read, so their calls fail as connection
    failures (a network partition, as the caller sees it). Connections open before
    the refusal close at once when idle, after the response under way otherwise;
    their tunnels are cut. Unlike a deny rule (a 403 per request) it needs the
    caller's certificate: a plaintext caller names no service."""


Criticality = Literal["critical_plus", "critical", "sheddable_plus", "sheddable"]
"""How much a request matters when its service is overloaded, most critical first."""


def _shed_limit(value: object) -> int | str:
    """A number of requests (an int, 1 to 1,000,000) or ``adaptive``."""
    if value == "adaptive":
        return "adaptive"
    if isinstance(value, bool) or not isinstance(value, int):
        invalid("must be a number of requests or 'adaptive'")
    if not 1 <= value <= 1_000_000:
        invalid("must be from 1 to 1000000 requests, or 'adaptive'")
    return value


class AdaptiveLimit(_Section):
    """The adaptive concurrency limit, a gradient (Netflix concurrency-limits'
    ``Gradient2``): it grows while the app's latency stays within ``tolerance`` times
    its long-term average, and shrinks as the app slows down."""

    initial: Annotated[Number, Field(ge=1, le=100_000)] = 20.0
    """The limit before anything was measured."""
    min: Annotated[Number, Field(ge=1, le=100_000)] = 1.0
    max: Annotated[Number, Field(ge=1, le=100_000)] = 1000.0
    smoothing: Annotated[Number, Field(gt=0, le=1)] = 0.2
    """How much of each step's new limit is taken: small is steady, 1 is jumpy."""
    tolerance: Annotated[Number, Field(ge=1, le=100)] = 1.5
    """Latency up to this many times the long-term average is no sign of overload."""
    long_window: Annotated[int, Strict(), Ge(1), Le(1_000_000)] = 600
    """Requests the long-term average spans."""

    @_model_validator(mode="after")
    def _ordered(self) -> AdaptiveLimit:
        if self.max < self.min:
            invalid(f"max ({self.max:g}) must be >= min ({self.min:g})")
        if not self.min <= self.initial <= self.max:
            invalid(f"initial ({self.initial:g}) must be within [min, max]")
        return self


class SheddingConfig(_Section):
    """The concurrency limit a service's inbound sidecar keeps in front of its app. At
    the limit requests queue, most critical first; when the queue is full the least
    critical are shed with 503 and ``x-seawall-overloaded: 1`` (no hop retries them)."""

    limit: Annotated[int | str, BeforeValidator(_shed_limit)] = "adaptive"
    """Requests in flight at the app at once: a number, or ``adaptive``."""
    adaptive: AdaptiveLimit = AdaptiveLimit()
    """The gradient's settings, when ``limit`` is ``adaptive``."""
    max_waiting: CountOrZero = 50
    """Requests queued for a slot; 0 sheds at once at the limit (then criticality
    only chooses among arrivals, not waiters)."""
    max_wait: Duration = 0.1
    """Longest a request waits in the queue (never past its deadline)."""


class ServiceConfig(_Section):
    """A service in the mesh: where its app listens and where its sidecar does."""

    port: Port
    """Where the app itself listens."""
    host: Host = "127.0.0.1"
    sidecar: SidecarPorts
    subsets: dict[Name, SubsetConfig] = {}
    endpoints: tuple[EndpointConfig, ...] = ()
    """Static endpoints; when empty, the one endpoint is ``host:sidecar.inbound``."""
    run: Annotated[RunConfig, BeforeValidator(_run_shorthand)] | None = None
    """What ``seawall up`` starts: a command line, or ``{command, cwd, env, instances,
    subset}``."""
    mtls: Literal["strict", "permissive"] = "permissive"
    """How its sidecar's inbound listener takes connections: ``strict``, mutual TLS only;
    ``permissive``, mutual TLS and plaintext on the same port (for migrating a mesh)."""
    authorization: AuthorizationConfig = AuthorizationConfig()
    """Which callers may call it; by default everyone may."""
    max_instances: Count = 1000
    """How many instances may register under a control plane at once (more get 429): a
    leaked or stolen join token cannot flood the registry and every sidecar's endpoints."""
    rate_limit: RateLimitConfig | None = None
    """Inbound: requests per second its sidecar lets in from each caller (a bucket per
    caller identity, one shared by callers without one); beyond it 429 with ``retry-after``."""
    shedding: SheddingConfig | None = None
    """Inbound: a concurrency limit in front of its app that sheds the least critical
    requests first (``x-seawall-criticality``); off by default."""
    trace_sample: Percent | None = None
    """Head sampling of the traces its sidecar starts (requests that arrive with no
    ``traceparent``); ``tracing.sample`` when unset. A continued trace keeps its caller's
    decision."""

    def effective_endpoints(self) -> tuple[EndpointConfig, ...]:
        """The endpoints callers use: the static ones, or this service's inbound sidecar."""
        if self.endpoints:
            return self.endpoints
        return (EndpointConfig(address=self.host, port=self.sidecar.inbound),)


# ---------------------------------------------------------------- external services


class ExternalService(_Section):
    """A host outside the mesh that apps call by a name of the mesh (Istio's
    ServiceEntry, simpler): ``http://stripe/...`` through the sidecar goes to
    ``host:port``, over TLS the sidecar originates when ``tls`` is on, under
    ``policies.<name>`` like any destination."""

    host: Host
    """The real host: a DNS name (resolved at each new connection) or an address."""
    port: Port | None = None
    """Default 443 with ``tls``, else 80."""
    tls: Flag = True
    """The sidecar speaks TLS to the host and checks its certificate (the app speaks
    plain HTTP to its sidecar)."""
    ca_file: Text | None = None
    """A PEM bundle to check the host's certificate against instead of the system's
    roots (a private CA). The system's: ``SSL_CERT_FILE`` if set, else the OS bundle."""
    server_name: Host | None = None
    """The name the certificate must carry (and the SNI sent); default ``host``."""
    run: Annotated[RunConfig, BeforeValidator(_run_shorthand)] | None = None
    """A local stand-in for the host that ``seawall up`` starts before the services
    (a test double: the shop's CardNet), with no sidecar; one instance, no subset."""

    @field_validator("run")
    @classmethod
    def _one_stand_in(cls, run: RunConfig | None) -> RunConfig | None:
        if run is not None and (run.instances != 1 or run.subset is not None):
            invalid("a stand-in runs once: no instances or subset")
        return run

    @field_validator("ca_file")
    @classmethod
    def _ca_needs_tls(cls, ca_file: str | None, info: ValidationInfo) -> str | None:
        if ca_file is not None and _earlier(info, "tls") is False:
            invalid("ca_file needs tls: true")
        return ca_file

    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return 443 if self.tls else 80


# ---------------------------------------------------------------- rate limits and hedging


class RateLimitConfig(_Section):
    """A token bucket: ``rate`` tokens per second, at most ``burst`` saved up; a request
    takes one. Over the limit a request is refused at once: 429 with ``retry-after``,
    ``x-seawall-ratelimit`` and ``x-seawall-overloaded: 1`` (callers and their sidecars
    do not retry it).
    The same names as :class:`seawall.policy.RateLimiter`."""

    rate: Annotated[Number, Field(gt=0, le=1_000_000)]
    """Requests per second, sustained."""
    burst: Annotated[Number, Field(ge=1, le=10_000_000)] | None = None
    """Requests that may come at once after a quiet spell; default ``max(1, rate)``."""


class HedgeConfig(_Section):
    """Send another copy of a slow idempotent request; the first answer wins and the
    others are cancelled. Every copy after the first draws on the retry budget. The
    same names as :class:`seawall.policy.Hedge`."""

    delay: PositiveDuration = 0.05
    """Wait this long for an answer before sending a copy (and between copies)."""
    percentile: Annotated[Number, Field(gt=0, lt=100)] | None = None
    """Instead of ``delay``: wait the destination's latency at this percentile of its
    recent requests (``delay`` until ``min_samples`` requests were measured)."""
    max_hedges: Annotated[int, Strict(), Ge(1), Le(5)] = 1
    """Copies sent beyond the first, at most."""
    min_samples: Annotated[int, Strict(), Ge(1), Le(10_000)] = 20
    """Measured requests before ``percentile`` is used."""

    @_model_validator(mode="before")
    @classmethod
    def _percentile_shorthand(cls, data: Any) -> Any:
        # ``delay: p95`` is short for ``percentile: 95`` (with the default delay until
        # enough requests were measured)
        if isinstance(data, dict) and isinstance(data.get("delay"), str):
            text = data["delay"].strip()
            if text[:1] in ("p", "P") and text[1:].replace(".", "", 1).isdigit():
                if "percentile" in data:
                    invalid("give the percentile once: delay: pNN or percentile: NN")
                data = {k: v for k, v in data.items() if k != "delay"}
                data["percentile"] = float(text[1:])
        return data


# ---------------------------------------------------------------- retries


class BackoffConfig(_Section):
    """Exponential backoff between retries (doubling), capped, with jitter."""

    jitter: Literal["none", "full", "equal", "decorrelated"] = "full"
    base: Duration = 0.025
    max: Annotated[Duration, Field(validate_default=True)] = 1.0

    @field_validator("base")
    @classmethod
    def _base_positive_for_decorrelated(cls, base: float, info: ValidationInfo) -> float:
        if _earlier(info, "jitter") == "decorrelated" and base <= 0:
            invalid("must be > 0 with decorrelated jitter")
        return base

    @field_validator("max")
    @classmethod
    def _max_at_least_base(cls, cap: float, info: ValidationInfo) -> float:
        base = _earlier(info, "base")
        if base is not None and cap < base:
            invalid(f"must be >= base ({_show(base)})")
        return cap


class BudgetConfig(_Section):
    """Retry budget (Finagle/Linkerd): retries allowed as a share of recent requests."""

    ratio: Annotated[Number, Field(gt=0, le=1000)] = 0.2
    """Retries per request over the last ``ttl`` (0.2: at most 20% extra load)."""
    min_per_second: Annotated[Number, Field(ge=0, le=1_000_000)] = 10.0
    """Retries always allowed per second, so low-traffic callers can still retry."""
    ttl: PositiveDuration = 10.0
    """How long a request or a retry counts towards the budget."""


class RetryConfig(_Section):
    """How a destination's failed requests are retried."""

    attempts: Annotated[int, Strict(), Ge(1), Le(10)] = 2
    """Total attempts, the first included (1 means never retry)."""
    on: tuple[RetryCondition, ...] = ("connect-failure", "reset")
    """What is retried: ``5xx``, ``gateway-error`` (502, 503, 504), ``reset``,
    ``connect-failure`` or a status code."""
    backoff: BackoffConfig = BackoffConfig()
    budget: BudgetConfig = BudgetConfig()
    methods: tuple[Method, ...] = ()
    """Non-idempotent methods that may be retried too (idempotent ones always may)."""


class RouteRetry(_Section):
    """A route's changes to its destination's retry policy; unset keys are inherited.

    The budget is not here: it is shared by every route of a destination.
    """

    attempts: Annotated[int, Strict(), Ge(1), Le(10)] | None = None
    on: tuple[RetryCondition, ...] | None = None
    backoff: BackoffConfig | None = None
    methods: tuple[Method, ...] | None = None


# ---------------------------------------------------------------- circuit breaker


class WindowConfig(_Section):
    """The breaker's sliding window: the last ``size`` calls, or the last ``size`` seconds."""

    type: Literal["count", "time"] = "count"
    size: int | float = 100
    """Calls (an integer) for a count window; a duration for a time window (default 10s)."""

    @_model_validator(mode="before")
    @classmethod
    def _default_size(cls, data: Any) -> Any:
        if isinstance(data, dict) and "size" not in data:
            return {**data, "size": 10.0 if data.get("type") == "time" else 100}
        return data

    @field_validator("size", mode="before")
    @classmethod
    def _size_for_type(cls, size: object, info: ValidationInfo) -> int | float:
        kind = _earlier(info, "type")
        if kind == "count":
            if isinstance(size, bool) or not isinstance(size, int):
                invalid("must be a whole number of calls for a count window")
            if not 1 <= size <= 1_000_000:
                invalid("must be from 1 to 1000000 calls")
            return size
        if kind == "time":
            try:
                seconds = parse_duration(size)
            except ValueError as exc:
                invalid(str(exc))
            if not 0 < seconds <= 86_400:
                invalid("must be > 0 and <= 1d for a time window")
            return seconds
        return 1  # the type is invalid and reported; do not pile a second error on


class SlowCallConfig(_Section):
    """Calls slower than ``duration`` count as slow; too many slow calls open the breaker."""

    duration: PositiveDuration
    rate: Rate = 100.0


class CircuitBreakerConfig(_Section):
    """A circuit breaker per destination (``seawall.policy.CircuitBreaker``)."""

    enabled: Flag = True
    window: WindowConfig = WindowConfig()
    failure_rate: Rate = 50.0
    slow_call: SlowCallConfig | None = None
    minimum_calls: Count = 20
    open_for: PositiveDuration = 5.0
    max_open_for: Annotated[PositiveDuration, Field(validate_default=True)] = 60.0
    open_multiplier: Annotated[Number, Field(ge=1, le=100)] = 1.0
    half_open_calls: Annotated[int, Strict(), Ge(1), Le(1000)] = 3

    @field_validator("max_open_for")
    @classmethod
    def _max_at_least_open_for(cls, cap: float, info: ValidationInfo) -> float:
        open_for = _earlier(info, "open_for")
        if open_for is not None and cap < open_for:
            invalid(f"must be >= open_for ({_show(open_for)})")
        return cap


# ---------------------------------------------------------------- pool, outliers


class BulkheadConfig(_Section):
    """Connection-pool and concurrency limits per destination."""

    max_connections: Count = 1024
    max_pending: CountOrZero = 1024
    """Requests waiting for a connection; 0 means overflow answers at once."""
    max_in_flight: Count = 1024
    max_retries: CountOrZero = 3
    """Retries in progress at once, across all requests to the destination."""


class OutlierConfig(_Section):
    """Passive health checking: eject endpoints that keep failing, for a while."""

    enabled: Flag = True
    consecutive_5xx: Count | None = 5
    """5xx responses in a row that eject; ``None`` turns the rule off."""
    consecutive_gateway_errors: Count | None = 5
    """502/503/504 responses in a row (and, unless ``consecutive_local_origin_failures``
    is set, connect failures, resets and timeouts) that eject; ``None`` turns it off."""
    consecutive_local_origin_failures: Count | None = None
    """Set it to count failures of local origin apart (Envoy's
    ``split_external_local_origin_errors``): connect failures, resets and timeouts,
    where no response came back, eject at this many in a row, and the two rules
    above count only the endpoint's own responses. ``None`` (default): those
    failures count as gateway errors. With ``consecutive_5xx`` and
    ``consecutive_gateway_errors`` set to ``None``, an app's own 503s never eject."""
    interval: PositiveDuration | None = None
    """How fast an endpoint's ejection multiplier decays: by one per ``interval`` it
    stays in service (default 10 s, as ``seawall.policy.OutlierDetector``)."""
    base_ejection: PositiveDuration = 30.0
    """The first ejection's time, multiplied by the number of times the endpoint was
    ejected (less the decay); the same name as ``seawall.policy.OutlierDetector``'s."""
    max_ejection: Annotated[PositiveDuration, Field(validate_default=True)] = 300.0
    max_ejected_percent: Percent = 50.0
    """At most this share of the destination's endpoints is ejected at once."""

    @field_validator("max_ejection")
    @classmethod
    def _max_at_least_base(cls, cap: float, info: ValidationInfo) -> float:
        base = _earlier(info, "base_ejection")
        if base is not None and cap < base:
            invalid(f"must be >= base_ejection ({_show(base)})")
        return cap


# ---------------------------------------------------------------- routes


class HeaderMatch(_Section):
    """How one request header must look: exactly a value, a regex, or present/absent.

    In YAML a plain string means ``exact``: ``{x-user: alice}``.
    """

    exact: Text | None = None
    regex: Regex | None = None
    """A Python regex the whole value must match (``re.fullmatch``)."""
    present: Flag | None = None
    """``true``: the header must be there; ``false``: it must not."""

    @_model_validator(mode="before")
    @classmethod
    def _string_is_exact(cls, data: Any) -> Any:
        return {"exact": data} if isinstance(data, str) else data

    @_model_validator(mode="after")
    def _exactly_one(self) -> HeaderMatch:
        if [self.exact, self.regex, self.present].count(None) != 2:
            invalid("set exactly one of exact, regex, present")
        return self


class MatchConfig(_Section):
    """What a route matches; every condition given must hold. Empty matches everything."""

    path_prefix: UrlPath | None = None
    path_exact: UrlPath | None = None
    path_regex: Regex | None = None
    """A Python regex the whole path must match (``re.fullmatch``), query excluded."""
    method: Method | None = None
    methods: Annotated[tuple[Method, ...], MinLen(1)] | None = None
    headers: dict[HeaderName, HeaderMatch] = {}
    """Header names are matched case-insensitively (stored in lower case)."""

    @_model_validator(mode="after")
    def _one_of_each(self) -> MatchConfig:
        if [self.path_prefix, self.path_exact, self.path_regex].count(None) < 2:
            invalid("set only one of path_prefix, path_exact, path_regex")
        if self.method is not None and self.methods is not None:
            invalid("set only one of method, methods")
        return self

    def allowed_methods(self) -> frozenset[str] | None:
        """The methods this route matches, or ``None`` for any method."""
        if self.method is not None:
            return frozenset((self.method,))
        return None if self.methods is None else frozenset(self.methods)


class MirrorConfig(_Section):
    """Copy requests to another destination, fire-and-forget (request shadowing)."""

    to: Name
    subset: Name | None = None
    percent: Percent = 100.0


class DelayFault(_Section):
    duration: PositiveDuration
    percent: Percent


class AbortFault(_Section):
    status: Annotated[int, Strict(), Ge(400), Le(599)]
    percent: Percent


class FaultConfig(_Section):
    """Injected faults: a delay, an abort, or faults requested by headers (for tests)."""

    delay: DelayFault | None = None
    abort: AbortFault | None = None
    header_trigger: Flag = False
    """Let ``x-seawall-fault-*`` request headers ask for a fault. For tests only."""

    @_model_validator(mode="after")
    def _does_something(self) -> FaultConfig:
        if self.delay is None and self.abort is None and not self.header_trigger:
            invalid("set delay, abort or header_trigger")
        return self


class ProgressiveConfig(_Section):
    """A canary judged by its budget: the control plane raises the ``canary`` subset's
    weight through ``steps`` (percent, rising to 100, the promotion), at most one step
    an ``interval``, while the canary burns budget no faster than the rest of the split
    (``max_burn_ratio`` times the baseline's bad share, with a tolerance for small
    counts), judged once each side has ``min_events`` requests in the step; it rolls
    back to 0 at once when the canary burns faster. ``seawall.control.canary``."""

    canary: Name | None = None
    """The subset being rolled out; by default the split's lightest subset."""
    steps: tuple[Percent, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
    interval: PositiveDuration = 60.0
    """The shortest a step lasts before it is judged and the next one taken."""
    min_events: Count = 100
    """Requests each side (canary, baseline) needs in a step before it is judged."""
    max_burn_ratio: Annotated[Number, Field(gt=0, le=100)] = 1.0
    """The canary may burn this many times as fast as the baseline (1: no faster)."""

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if len(steps) < 2:
            invalid("needs a step below 100 to judge, then 100")
        if steps[0] <= 0 or any(steps[i + 1] <= steps[i] for i in range(len(steps) - 1)):
            invalid("must rise strictly, each above 0")
        if steps[-1] != 100:
            invalid("must end with 100 (the promotion)")
        return steps


class RouteConfig(_Section):
    """A route of a destination: a match and what differs for the requests it matches."""

    name: RouteName | None = None
    """Shown in metrics and logs; unique within the destination."""
    match: MatchConfig = MatchConfig()
    timeout: PositiveDuration | None = None
    """Overrides the destination's request timeout."""
    retry: RouteRetry | None = None
    split: Annotated[dict[Name, Percent], MinLen(1)] | None = None
    """Share of requests per subset of the destination, in percent; sums to 100."""
    progressive: ProgressiveConfig | None = None
    """Roll the split's canary out step by step (the control plane's weights, not
    ``split``'s, while it runs)."""
    mirror: MirrorConfig | None = None
    fault: FaultConfig | None = None
    upgrades: tuple[UpgradeProtocol, ...] | None = None
    """Overrides the destination's ``upgrades`` for the requests this route matches."""
    criticality: Criticality | None = None
    """For its requests that carry no ``x-seawall-criticality``: set by the caller's
    sidecar, and read by the service's own (its shedding); ``critical`` when unset."""

    @field_validator("split")
    @classmethod
    def _weights_sum_to_100(cls, split: dict[str, float] | None) -> dict[str, float] | None:
        if split is not None:
            total = sum(split.values())
            if abs(total - 100) > 1e-6:
                invalid("weights must sum to 100", got=f"{total:g}")
        return split

    @field_validator("progressive")
    @classmethod
    def _needs_a_split(
        cls, progressive: ProgressiveConfig | None, info: ValidationInfo
    ) -> ProgressiveConfig | None:
        if progressive is None:
            return None
        split = _earlier(info, "split")
        if split is None:
            if "split" not in info.data:  # the split is wrong: reported there
                return progressive
            invalid("needs a split of the destination's subsets: the canary and a baseline")
        if progressive.canary is None:
            lightest = min(split.values())
            named = [name for name, weight in split.items() if weight == lightest]
            if len(named) != 1:
                invalid(f"name the canary: {', '.join(named)} weigh the same")
            return progressive.model_copy(update={"canary": named[0]})
        return progressive


# ---------------------------------------------------------------- policy per destination


class DestinationPolicy(_Section):
    """Everything a caller's sidecar applies to the requests it sends to one service."""

    timeout: PositiveDuration = 15.0
    """The whole request, every retry and backoff included."""
    per_try_timeout: PositiveDuration | None = None
    """Each attempt; ``None``: an attempt may use what is left of ``timeout``."""
    idle_timeout: PositiveDuration | None = None
    """Longest silence (no bytes either way) on a request in flight; ``None``: off."""
    upgrades: tuple[UpgradeProtocol, ...] = ("websocket",)
    """Protocols a request may switch the connection to (``Upgrade``), tunnelled once the
    app answers 101: WebSocket by default; any other is refused with 400; ``[]`` turns
    upgrades off. h2c is never allowed (it is dropped from every request)."""
    tunnel_idle_timeout: PositiveDuration = 300.0
    """Longest a tunnel (a connection switched by a 101) may carry no byte either way
    before the sidecar closes both sides. A tunnel also holds one of ``max_in_flight``
    for as long as it is open."""
    connect_timeout: PositiveDuration = 1.0
    """Longest a new upstream connection may take (TCP, then the mTLS handshake); never
    past the attempt's own deadline. A connection not made in time is a connect failure."""
    retry: RetryConfig = RetryConfig()
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    bulkhead: BulkheadConfig = BulkheadConfig()
    outlier: OutlierConfig = OutlierConfig()
    load_balancer: Literal["round_robin", "least_request", "peak_ewma"] = "peak_ewma"
    hedge: HedgeConfig | None = None
    """Off by default: hedging sends more requests to a destination that may be slow
    because it is overloaded. Only idempotent requests are hedged."""
    rate_limit: RateLimitConfig | None = None
    """Outbound: requests per second this caller's sidecar sends to the destination;
    beyond it 429 at once (the request is not sent)."""
    routes: tuple[RouteConfig, ...] = ()
    """Checked in order; the first match wins; requests no route matches use the defaults."""

    @field_validator("per_try_timeout")
    @classmethod
    def _per_try_within_timeout(cls, per_try: float | None, info: ValidationInfo) -> float | None:
        timeout = _earlier(info, "timeout")
        if per_try is not None and timeout is not None and per_try > timeout:
            invalid(f"must be <= timeout ({_show(timeout)})")
        return per_try

    def retry_for(self, route: RouteConfig | None) -> RetryConfig:
        """The retry policy for requests matched by ``route`` (``None``: no route matched)."""
        if route is None or route.retry is None:
            return self.retry
        changes = {
            key: getattr(route.retry, key)
            for key in route.retry.model_fields_set
            if getattr(route.retry, key) is not None
        }
        return self.retry.model_copy(update=changes) if changes else self.retry

    def timeout_for(self, route: RouteConfig | None) -> float:
        """The request timeout for requests matched by ``route`` (``None``: no route matched)."""
        if route is None or route.timeout is None:
            return self.timeout
        return route.timeout


DEFAULT_POLICY = DestinationPolicy()


# ---------------------------------------------------------------- sidecar process


class LimitsConfig(_Section):
    """Limits every sidecar listener enforces on the requests it reads."""

    max_request_line: ByteSize = 8 * KIB
    max_header_count: Count = 100
    max_header_bytes: ByteSize = 64 * KIB
    max_body_bytes: ByteSizeOrZero = 10 * MIB
    """Beyond it 413; 0 turns the limit off."""
    retry_buffer_bytes: ByteSizeOrZero = 64 * KIB
    """A request body is kept for a retry or a mirror only up to this size."""
    header_timeout: PositiveDuration = 10.0
    body_timeout: PositiveDuration = 30.0
    idle_timeout: PositiveDuration = 60.0
    """How long a kept-alive client connection may sit idle between requests."""


class SidecarOptions(_Section):
    """How every sidecar process runs."""

    workers: Annotated[int, Strict(), Ge(1), Le(256)] = 1
    access_log: Flag = False
    """A JSON line per request on standard output."""
    drain_grace: Duration = 20.0
    """On SIGTERM, how long in-flight requests may take to finish."""
    reload_settle: Annotated[float, BeforeValidator(seconds(ge=0, le=60))] = 1.5
    """How long a config file written in place must stay unchanged before it is reloaded."""


class EgressConfig(_Section):
    """Calls through a sidecar's outbound proxy to hosts that are not mesh services."""

    mode: Literal["allow_any", "registry_only"] = "allow_any"
    """``allow_any``: such a call goes to its host, resolved by DNS (Istio's
    ``ALLOW_ANY``). ``registry_only``: refused with 403."""
    timeout: PositiveDuration = 30.0
    """The whole external request, as a mesh destination's ``timeout``."""
    connect_timeout: PositiveDuration = 5.0
    """TCP connect to an external host (DNS included)."""
    tunnel_idle_timeout: PositiveDuration = 300.0
    """A CONNECT tunnel carrying no byte either way this long is closed."""
    max_tunnels: Count = 1024
    """CONNECT tunnels open at once per sidecar; beyond it 503."""
    metric_hosts: Annotated[int, Strict(), Ge(0), Le(1000)] = 50
    """External hosts that get their own metric labels (the first ones seen);
    the rest are counted as ``other``, so a crawler cannot blow up /metrics."""


# ---------------------------------------------------------------- tracing


class TailLatency(_Section):
    """Keep every trace with a span of a route slower than its threshold."""

    default: PositiveDuration | None = 1.0
    """The threshold of every route not listed (``null``: only the listed ones)."""
    routes: dict[RouteKey, PositiveDuration] = {}
    """By ``service/route`` (a sidecar span's ``seawall.route``) or ``service`` alone."""


class TailSamplingConfig(_Section):
    """What the collector keeps, decided per trace once ``decision_wait`` passed with
    no new span (the OpenTelemetry Collector's ``tail_sampling`` processor)."""

    decision_wait: PositiveDuration = 5.0
    errors: Flag = True
    """Keep every trace with a span whose status is an error."""
    latency: TailLatency = TailLatency()
    policy_events: Flag = True
    """Keep every trace with a policy event (breaker, overflow, shed, retry, fault, ...)."""
    probability: Percent = 10.0
    """The share of the other traces kept (decided on the trace id, as head sampling)."""
    max_traces: Count = 50_000
    """Traces waiting for their decision; beyond it the oldest is decided at once."""


class RetentionConfig(_Section):
    max_age: PositiveDuration = 7 * 86_400.0
    max_size: ByteSize = 1024 * MIB
    """The store never grows past it: the oldest traces go first."""


class CollectorConfig(_Section):
    """The embedded collector and trace store (``seawall traces``)."""

    host: Host = "127.0.0.1"
    port: Port = 4318
    """OTLP/HTTP (``/v1/traces``), the query APIs and the UI (``/ui/``)."""
    store: Text = "seawall-traces.db"
    """The SQLite file, relative to mesh.yaml's directory."""
    retention: RetentionConfig = RetentionConfig()
    max_body: ByteSize = 64 * MIB
    """The largest OTLP body accepted (413 beyond it)."""
    tail_sampling: TailSamplingConfig | None = None
    """Off by default: every span received is stored."""


class TracingConfig(_Section):
    """Spans from every sidecar hop, exported over OTLP/HTTP (protobuf)."""

    enabled: Flag = True
    endpoint: HttpUrl | None = None
    """Where the sidecars export: any OTLP/HTTP traces endpoint (an OpenTelemetry
    Collector, Jaeger, Tempo); by default the embedded collector's ``/v1/traces``."""
    sample: Percent = 100.0
    """Head sampling of the traces a sidecar starts (``services.X.trace_sample`` overrides)."""
    queue: Count = 8192
    """Spans waiting for export per sidecar; beyond it new spans are dropped and counted."""
    batch: Annotated[int, Strict(), Ge(1), Le(8192)] = 512
    interval: PositiveDuration = 1.0
    """The longest a span waits for its batch to fill."""
    collector: CollectorConfig = CollectorConfig()

    def export_endpoint(self) -> str:
        """The URL the sidecars post to."""
        if self.endpoint is not None:
            return self.endpoint
        host = self.collector.host
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.collector.port}/v1/traces"


# ---------------------------------------------------------------- SLOs


class LatencyObjective(_Section):
    """``percent`` of the requests answer within ``threshold``; the threshold becomes an
    exact histogram bound in the sidecars that measure it."""

    threshold: PositiveDuration
    percent: Objective


class SloWindow(_Section):
    """The period a budget covers: ``rolling`` (the last 30d, moving) or ``calendar``
    (this week or month, from its start in ``timezone``). Written ``30d``, ``week`` or
    ``month`` for short."""

    rolling: PositiveDuration | None = None
    calendar: Literal["week", "month"] | None = None
    timezone: str = "UTC"

    @_model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        if isinstance(data, str) and data in ("week", "month"):
            return {"calendar": data}
        if isinstance(data, (str, int, float)) and not isinstance(data, bool):
            cls._rolling_range(seconds(gt=0)(data))  # reported at the window, as written
            return {"rolling": data}
        return data

    @field_validator("rolling")
    @classmethod
    def _rolling_range(cls, rolling: float | None) -> float | None:
        if rolling is not None and not 3_600 <= rolling <= 366 * 86_400:
            invalid("must be from 1h to 366d")
        return rolling

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            invalid("not a timezone of the IANA database (Europe/Paris, UTC...)")
        return zone

    @_model_validator(mode="after")
    def _one_kind(self) -> SloWindow:
        if (self.rolling is None) == (self.calendar is None):
            invalid("set rolling or calendar, one of them")
        if self.rolling is not None and self.timezone != "UTC":
            invalid("a timezone is for a calendar window")
        return self


class SloBudgeting(_Section):
    """How the budget counts: ``occurrences`` (bad requests over all requests) or
    ``timeslices`` (bad ``slice``-long stretches over all of them; a stretch is good
    when its SLI reaches ``good_when``, by default the objective itself)."""

    method: Literal["occurrences", "timeslices"] = "occurrences"
    slice: PositiveDuration = 60.0
    good_when: Objective | None = None

    @_model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        return {"method": data} if isinstance(data, str) else data

    @_model_validator(mode="after")
    def _slice_for_timeslices(self) -> SloBudgeting:
        if self.method == "occurrences" and (self.slice != 60.0 or self.good_when is not None):
            invalid("slice and good_when are for timeslices")
        if not 10.0 <= self.slice <= 3_600.0:
            invalid("slice must be from 10s to 1h", got=f"{self.slice:g}s")
        return self


class BurnAlert(_Section):
    """Alert when the budget burns ``burn_rate`` times faster than the rate that spends
    it in exactly one window, over both ``long`` and ``short`` (the short one resets the
    alert soon after the burning stops), for ``for`` (Prometheus's ``for:``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", serialize_by_alias=True)

    severity: Literal["page", "ticket"]
    long: PositiveDuration
    short: PositiveDuration
    burn_rate: Annotated[Number, Field(gt=0, le=1000)]
    for_: Duration = Field(default=0.0, alias="for")

    @_model_validator(mode="after")
    def _short_is_shorter(self) -> BurnAlert:
        if self.short >= self.long:
            invalid("short must be shorter than long", got=f"{self.short:g}s >= {self.long:g}s")
        return self


DEFAULT_BURN_ALERTS: tuple[BurnAlert, ...] = tuple(
    BurnAlert.model_validate({"severity": sev, "long": lo, "short": sh, "burn_rate": rate})
    for sev, lo, sh, rate in (
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6),
        ("ticket", "1d", "2h", 3),
        ("ticket", "3d", "6h", 1),
    )
)
"""The SRE workbook's multi-window, multi-burn-rate alerts (Sloth's four)."""


class SloAlerts(_Section):
    """The burn-rate alerts of an SLO, and the traffic below which none fires."""

    burn: tuple[BurnAlert, ...] = DEFAULT_BURN_ALERTS
    min_events: CountOrZero = 100
    """Requests the long window must hold for its alert to fire (whatever the
    budgeting): a quiet night's two failures out of three requests are not a page."""

    @field_validator("burn")
    @classmethod
    def _some(cls, burn: tuple[BurnAlert, ...]) -> tuple[BurnAlert, ...]:
        if not burn:
            invalid("must not be empty: leave it out for the four default alerts")
        return burn


class JourneyConfig(_Section):
    """A composite objective over other SLOs of the mesh (``of``: names, or names with
    weights): ``worst`` takes the worst of their budgets and burn rates, ``weighted``
    their weighted mean."""

    of: Annotated[dict[Name, Annotated[Number, Field(gt=0)]], MinLen(2)]
    combine: Literal["worst", "weighted"] = "worst"

    @field_validator("of", mode="before")
    @classmethod
    def _list_is_equal_weights(cls, of: Any) -> Any:
        if isinstance(of, (list, tuple)):
            if len(set(map(str, of))) != len(of):
                invalid("names an SLO twice")
            return dict.fromkeys(of, 1)
        return of


class SloConfig(_Section):
    """An objective of one service (or a route of it, or the calls of one caller), or a
    journey over several. The error-budget maths live in :mod:`seawall.slo`."""

    service: Name | None = None
    """The service measured; by default the SLO's own name."""
    route: RouteName | None = None
    """A route of the service's policy (``policies.<service>.routes[].name``); all by default."""
    caller: Name | None = None
    """Only the requests of this calling service."""
    measured_at: Literal["server", "callers"] = "server"
    """``server``: the service's inbound sidecar; ``callers``: its callers' outbound
    sidecars (what the service looks like from them, the network included)."""
    availability: Objective | None = None
    latency: LatencyObjective | None = None
    journey: JourneyConfig | None = None
    window: SloWindow = SloWindow(rolling=30 * 86_400.0)
    budgeting: SloBudgeting = SloBudgeting()
    alerts: SloAlerts = SloAlerts()

    @_model_validator(mode="after")
    def _has_objective(self) -> SloConfig:
        if self.journey is not None:
            scoped = [
                name
                for name in ("service", "route", "caller", "availability", "latency")
                if getattr(self, name) is not None
            ]
            if scoped or self.measured_at != "server":
                invalid(
                    "a journey's objectives are its SLOs': "
                    f"drop {', '.join(scoped) or 'measured_at'}"
                )
        elif self.availability is None and self.latency is None:
            invalid("set availability, latency or both (or a journey)")
        return self


class AlertingConfig(_Section):
    """Where the SLOs' alerts go: webhooks that take Alertmanager's JSON (Alertmanager
    itself, or any receiver of it), each notice retried with backoff until delivered."""

    webhooks: tuple[HttpUrl, ...] = ()
    timeout: PositiveDuration = 5.0
    """One delivery attempt, connection included."""
    max_tries: Annotated[int, Strict(), Ge(1), Le(100)] = 8
    """Attempts per notice (about four minutes with the default backoff), then it is
    dropped, logged and counted: a receiver down for hours gets the current state from
    the next change, not a backlog."""
    backoff: BackoffConfig = BackoffConfig(base=1.0, max=60.0)
    queue: Count = 1000
    """Notices waiting per webhook; past it the oldest is dropped (counted)."""


# ---------------------------------------------------------------- the mesh


class MeshConfig(_Section):
    """A whole mesh: its services, the policies callers apply to them, and limits."""

    mesh: Name
    trust_domain: TrustDomain
    """SPIFFE trust domain of the mesh's certificates; defaults to ``<mesh>.local``."""
    services: Annotated[dict[Name, ServiceConfig], MinLen(1)]
    policies: dict[Name, DestinationPolicy] = {}
    """Keyed by destination service; every service has one (the defaults if none was given)."""
    limits: LimitsConfig = LimitsConfig()
    sidecar: SidecarOptions = SidecarOptions()
    egress: EgressConfig = EgressConfig()
    external: dict[Name, ExternalService] = {}
    """Hosts outside the mesh called by a name of their own, with a policy."""
    slos: dict[Name, SloConfig] = {}
    tracing: TracingConfig = TracingConfig()
    alerting: AlertingConfig = AlertingConfig()

    @_model_validator(mode="before")
    @classmethod
    def _fill_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "trust_domain" not in data:
            mesh = data.get("mesh")
            # An invalid mesh name is reported there; do not report it twice.
            data["trust_domain"] = f"{mesh}.local" if is_name(mesh) else "invalid.local"
        services, policies = data.get("services"), data.get("policies") or {}
        external = data.get("external") or {}
        if isinstance(services, dict) and isinstance(policies, dict):
            # Every destination gets its effective policy, so that /config shows it and a
            # default written out or left out makes the same config (and digest).
            names = [*services, *(external if isinstance(external, dict) else ())]
            missing = [name for name in names if is_name(name) and name not in policies]
            data["policies"] = {**policies, **{name: {} for name in missing}}
        return data

    def policy_for(self, service: str) -> DestinationPolicy:
        """The policy for calls to ``service``: as configured, or the defaults.

        Raises :class:`KeyError` if the mesh has no such service.
        """
        if service not in self.services and service not in self.external:
            raise KeyError(f"no service {service!r} in mesh {self.mesh!r}")
        return self.policies.get(service, DEFAULT_POLICY)

    def to_json(self) -> str:
        """The config as JSON, keys sorted, every default filled in (the admin ``/config``).

        Durations are seconds, percentages numbers, sizes bytes; feeding the
        result back to :func:`~seawall.config.parse_mesh` gives an equal config.
        """
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, indent=2)

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON: equal configs, equal digests.

        Canonical: sorted keys, no whitespace, ASCII only. Two files that differ
        only in spelling (``2s`` or ``2000ms``, a default written out or left
        out, key order) have the same digest.
        """
        canonical = json.dumps(
            self.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
        return hashlib.sha256(canonical.encode("ascii")).hexdigest()
