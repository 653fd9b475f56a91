"""Outlier detection: eject endpoints that keep failing, for a growing time (Envoy's rules).

One :class:`OutlierDetector` per destination service, keyed by any hashable
value that names an endpoint (the proxy uses its ``Endpoint`` objects, the
Rust sidecar ``u64`` ids). The proxy reports the outcome of every attempt with
:meth:`OutlierDetector.on_result`; balancers ask
:meth:`OutlierDetector.is_ejected` (through :meth:`OutlierDetector.version`,
so they only recompute their candidates when the ejected set changes). It is
sans-I/O (told ``now``), needs no timer, and is not thread-safe (one per
worker event loop). ``seawall-policy``'s ``outlier.rs`` is its Rust twin; the
conformance corpus (``tests/conformance``) runs both.

**Reporting.** ``on_result(endpoint, now, status, gateway_error=False)``:

* a response: ``status=<code>`` (502, 503 and 504 are gateway errors by
  their code);
* a *local-origin* failure, where no response was received (a connect
  failure, a reset, a per-try timeout): ``status=None, gateway_error=True``;
* no response and not the endpoint's fault (the caller gave up, the request
  was cancelled): ``status=None``, ignored.

**Counting, default mode** (``consecutive_local_origin_failures=None``;
Envoy's ``split_external_local_origin_errors: false``, in which errors the
proxy observes itself count as 5xx). Per endpoint, two counters:
``consecutive_5xx`` counts every 5xx response *and* every gateway error;
``consecutive_gateway_errors`` counts 502, 503 and 504 responses and the
local-origin failures. A 5xx that is not a gateway error resets the gateway
counter. Any other response (1xx-4xx) resets both.

**Counting, local-origin mode** (``consecutive_local_origin_failures=N``;
Envoy's ``split_external_local_origin_errors: true``). Local-origin failures
go to a third counter of their own, which detects at ``N``, and leave the
5xx and gateway counters untouched: those two see only the endpoint's own
responses, as above (a 503 it answered still counts as a 5xx and a gateway
error, as in Envoy). Any response resets the local-origin counter, since the
endpoint was reachable. To ignore the endpoint's own answers altogether (an
app that rightly answers 503 while one of its dependencies is down should
stay in service), set ``consecutive_5xx=0`` and
``consecutive_gateway_errors=0`` too: then only connect failures, resets and
timeouts eject.

**Tripping.** When a counter reaches its threshold (default 5 each; 0
disables the 5xx or gateway rule) the endpoint is *detected*, the gateway
rule checked before the 5xx rule. Every counter restarts from zero, whether
or not the endpoint is then ejected.

**Ejection time.** A detected endpoint is ejected for
``min(base_ejection * k, max_ejection)`` seconds, where ``k`` counts its
recent ejections: it grows by one at each ejection and, as in Envoy, shrinks
by one for every ``interval`` the endpoint then stays in service. So an
endpoint that keeps failing is ejected for 30 s, 60 s, 90 s... up to 300 s,
and one that fails once a day is ejected for 30 s each time.

**Maximum ejected.** An endpoint is ejected only if the ejected endpoints, it
included, are at most ``max_ejected_percent`` of the endpoints:
``100 * (ejected + 1) <= max_ejected_percent * total``. With
``always_eject_one`` (the default), one endpoint may be ejected when none is,
whatever the percentage: Envoy's documented rule ("defaults to 10% but will
eject at least one host regardless of the value"), which newer Envoy keeps
behind its ``always_eject_one_host`` flag. Without it, 10% of fewer than ten
endpoints would never allow an ejection. ``max_ejected_percent=0`` disables
ejection altogether. A detection that may not eject counts as an overflow.

**Return.** An ejected endpoint returns when its ejection time is over. The
check is lazy and exact: the first :meth:`~OutlierDetector.is_ejected`,
:meth:`~OutlierDetector.eligible`, :meth:`~OutlierDetector.version`,
:meth:`~OutlierDetector.on_result` or :meth:`~OutlierDetector.snapshot` call
at or after that time returns it (Envoy checks on a 10 s timer). Results that
arrive while it is ejected (requests sent before the ejection) are ignored,
and its counters start from zero when it returns.

**Membership.** :meth:`~OutlierDetector.update` sets the endpoint set in
place. Endpoints that remain keep their state (an ejection survives another
instance joining or leaving); a removed endpoint's state is dropped, and one
that comes back starts afresh. Results for unknown endpoints are ignored.

Differences from Envoy: no success-rate or failure-percentage detection, no
``enforcing_*`` percentages (detection always enforces; note that Envoy's
``enforcing_consecutive_gateway_failure`` defaults to 0, so stock Envoy only
logs gateway-error detections), no ejection jitter, and no panic threshold
here: the balancer falls back to ejected endpoints only when none is left.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable, Iterable
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

from ._validate import require_seconds

__all__ = [
    "CONSECUTIVE_5XX",
    "CONSECUTIVE_GATEWAY_ERROR",
    "CONSECUTIVE_LOCAL_ORIGIN_FAILURE",
    "EjectionReason",
    "EndpointOutlierState",
    "OutlierConfig",
    "OutlierDetector",
    "OutlierSnapshot",
]

K = TypeVar("K", bound=Hashable)

EjectionReason: TypeAlias = Literal[
    "consecutive_5xx", "consecutive_gateway_error", "consecutive_local_origin_failure"
]
"""Why an endpoint was detected: ``"consecutive_5xx"``, ``"consecutive_gateway_error"``
or (local-origin mode only) ``"consecutive_local_origin_failure"``."""

CONSECUTIVE_5XX: Final = "consecutive_5xx"
CONSECUTIVE_GATEWAY_ERROR: Final = "consecutive_gateway_error"
CONSECUTIVE_LOCAL_ORIGIN_FAILURE: Final = "consecutive_local_origin_failure"
_GATEWAY_STATUSES = frozenset((502, 503, 504))
_INF = math.inf


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    """Validated settings of an :class:`OutlierDetector` (defaults are Envoy's).

    Attributes:
        consecutive_5xx: consecutive 5xx (gateway errors included) that trip
            detection; 0 disables the rule. Default 5.
        consecutive_gateway_errors: consecutive gateway errors (502/503/504,
            and in the default mode connect failures, resets, timeouts) that
            trip detection; 0 disables the rule. Default 5.
        base_ejection: seconds of the first ejection (> 0). Default 30 s.
        max_ejection: cap on the growing ejection time, seconds (>=
            ``base_ejection``). Default 300 s, or ``base_ejection`` if larger.
        max_ejected_percent: at most this percentage of the endpoints is
            ejected at once (0..100; 0 disables ejection). Default 10.
        always_eject_one: allow one ejection when none is in force even if the
            percentage forbids it. Default true.
        interval: an endpoint's ejection multiplier shrinks by one per
            ``interval`` seconds in service (> 0). Default 10 s.
        consecutive_local_origin_failures: ``None`` (default) for the default
            mode, where local-origin failures (connect failures, resets,
            timeouts: no response) count as gateway errors; an int >= 1 for
            the local-origin mode, where they are counted apart and trip
            detection at this many in a row, and the 5xx and gateway rules see
            only the endpoint's responses (see the module docs). Keyword-only.
    """

    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejected_percent: float = 10.0
    always_eject_one: bool = True
    interval: float = 10.0
    _: KW_ONLY
    consecutive_local_origin_failures: int | None = None

    def __post_init__(self) -> None:
        for name in ("consecutive_5xx", "consecutive_gateway_errors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"OutlierDetector: {name} must be an int >= 0, got {value!r}")
        local = self.consecutive_local_origin_failures
        if local is not None and (
            isinstance(local, bool) or not isinstance(local, int) or local < 1
        ):
            raise ValueError(
                "OutlierDetector: consecutive_local_origin_failures must be an int >= 1 "
                f"or None, got {local!r}"
            )
        for name in ("base_ejection", "max_ejection", "interval"):
            require_seconds("OutlierDetector", name, getattr(self, name))
        if self.max_ejection < self.base_ejection:
            raise ValueError(
                "OutlierDetector: max_ejection must be >= base_ejection "
                f"({self.base_ejection!r}), got {self.max_ejection!r}"
            )
        pct = self.max_ejected_percent
        if (
            isinstance(pct, bool)
            or not isinstance(pct, int | float)
            or not 0 <= pct <= 100  # also rejects nan
        ):
            raise ValueError(f"OutlierDetector: max_ejected_percent must be in 0..100, got {pct!r}")
        if not isinstance(self.always_eject_one, bool):
            raise ValueError(
                f"OutlierDetector: always_eject_one must be a bool, got {self.always_eject_one!r}"
            )


@dataclass(frozen=True, slots=True)
class EndpointOutlierState(Generic[K]):
    """One endpoint's outlier state, for the admin ``/clusters`` page.

    Attributes:
        endpoint: the endpoint (its key).
        ejected: whether it is ejected now.
        ejected_until: monotonic time its ejection ends (``None`` if not ejected).
        ejection_remaining: seconds until then (0.0 if not ejected).
        times_ejected: ejections since it joined the set.
        multiplier: the ``k`` of its last or current ejection time
            (``base_ejection * k``), before any shrinking still to apply.
        consecutive_5xx: the current consecutive 5xx count.
        consecutive_gateway_errors: the current consecutive gateway-error count.
        consecutive_local_origin_failures: the current consecutive local-origin
            failure count (always 0 in the default mode).
    """

    endpoint: K
    ejected: bool
    ejected_until: float | None
    ejection_remaining: float
    times_ejected: int
    multiplier: int
    consecutive_5xx: int
    consecutive_gateway_errors: int
    consecutive_local_origin_failures: int


@dataclass(frozen=True, slots=True)
class OutlierSnapshot(Generic[K]):
    """A detector's state and counters, for ``/clusters`` and metrics.

    Attributes:
        endpoints: one :class:`EndpointOutlierState` per endpoint, in set order.
        ejected: endpoints ejected now (a gauge).
        ejections: ejections so far (a counter).
        ejections_by_reason: ejections so far per :data:`EjectionReason`
            (``"consecutive_local_origin_failure"`` only in the local-origin mode).
        detections: detections so far (ejected or not), per reason.
        overflows: detections that did not eject because of ``max_ejected_percent``.
    """

    endpoints: tuple[EndpointOutlierState[K], ...]
    ejected: int
    ejections: int
    ejections_by_reason: dict[EjectionReason, int]
    detections: dict[EjectionReason, int]
    overflows: int


class _Host:
    """Per-endpoint counters (mutable; private)."""

    __slots__ = ("c5xx", "cgw", "clo", "multiplier", "returned_at", "times_ejected", "until")

    def __init__(self) -> None:
        self.c5xx = 0
        self.cgw = 0
        self.clo = 0
        self.multiplier = 0
        self.times_ejected = 0
        self.until: float | None = None  # set while ejected
        self.returned_at: float | None = None  # last return to service


class OutlierDetector(Generic[K]):
    """Passive health checking of one destination's endpoints (see the module docs).

    Args:
        endpoints: the initial endpoint set (see :meth:`update`): hashable keys.
        consecutive_5xx, consecutive_gateway_errors, base_ejection,
        max_ejection, max_ejected_percent, always_eject_one, interval,
        consecutive_local_origin_failures:
            see :class:`OutlierConfig`. ``max_ejection=None`` means
            ``max(300, base_ejection)``, as in Envoy.

    Attributes:
        config: the validated :class:`OutlierConfig`.
        ejections: ejections so far (a counter for metrics).
    """

    __slots__ = (
        "_by_reason",
        "_cap",
        "_detections",
        "_ejected",
        "_hosts",
        "_next_return",
        "_overflows",
        "_version",
        "config",
        "ejections",
    )

    def __init__(
        self,
        endpoints: Iterable[K] = (),
        *,
        consecutive_5xx: int = 5,
        consecutive_gateway_errors: int = 5,
        base_ejection: float = 30.0,
        max_ejection: float | None = None,
        max_ejected_percent: float = 10.0,
        always_eject_one: bool = True,
        interval: float = 10.0,
        consecutive_local_origin_failures: int | None = None,
    ) -> None:
        if max_ejection is None:
            require_seconds("OutlierDetector", "base_ejection", base_ejection)
            max_ejection = max(300.0, float(base_ejection))
        self.config = OutlierConfig(
            consecutive_5xx=consecutive_5xx,
            consecutive_gateway_errors=consecutive_gateway_errors,
            base_ejection=base_ejection,
            max_ejection=max_ejection,
            max_ejected_percent=max_ejected_percent,
            always_eject_one=always_eject_one,
            interval=interval,
            consecutive_local_origin_failures=consecutive_local_origin_failures,
        )
        # The multiplier stops growing once base * k covers max_ejection.
        self._cap = max(1, math.ceil(self.config.max_ejection / self.config.base_ejection))
        self._hosts: dict[K, _Host] = {}
        self._ejected: set[K] = set()
        self._next_return = _INF  # earliest end of an ejection in force
        self._version = 0
        self.ejections = 0
        self._overflows = 0
        self._by_reason: dict[EjectionReason, int] = {
            CONSECUTIVE_5XX: 0,
            CONSECUTIVE_GATEWAY_ERROR: 0,
        }
        if consecutive_local_origin_failures is not None:
            self._by_reason[CONSECUTIVE_LOCAL_ORIGIN_FAILURE] = 0
        self._detections: dict[EjectionReason, int] = dict(self._by_reason)
        self.update(endpoints)

    # ------------------------------------------------------------------ new settings

    def reconfigure(self, **settings: Any) -> None:
        """New settings for this live detector (a new config version), as the
        constructor's keywords; the ones left out keep their value.

        Every endpoint keeps its state: its consecutive counts, its ejection
        (which ends when it was set to), its multiplier; the counters carry
        over. The new thresholds judge the next response, and the new durations
        apply from the next ejection. Turning ``consecutive_local_origin_failures``
        off drops its per-reason counts. Invalid settings raise ``ValueError``
        and change nothing. The Rust core's detector does the same.
        """
        current = dataclasses.asdict(self.config)
        unknown = sorted(set(settings) - set(current))
        if unknown:
            raise ValueError(f"OutlierDetector: cannot reconfigure {unknown[0]!r}")
        config = OutlierConfig(**{**current, **settings})
        self.config = config
        self._cap = max(1, math.ceil(config.max_ejection / config.base_ejection))
        for counts in (self._by_reason, self._detections):
            if config.consecutive_local_origin_failures is None:
                counts.pop(CONSECUTIVE_LOCAL_ORIGIN_FAILURE, None)
            else:
                counts.setdefault(CONSECUTIVE_LOCAL_ORIGIN_FAILURE, 0)

    # ------------------------------------------------------------------ membership

    def update(self, endpoints: Iterable[K]) -> None:
        """Set the endpoint set: keep the state of endpoints that remain, drop the others."""
        old = self._hosts
        hosts: dict[K, _Host] = {}
        for endpoint in endpoints:
            hosts[endpoint] = old.get(endpoint) or _Host()
        self._hosts = hosts
        self._ejected = {e for e in self._ejected if e in hosts}
        self._next_return = min(
            (h.until for e in self._ejected if (h := hosts[e]).until is not None), default=_INF
        )
        self._version += 1

    # ------------------------------------------------------------------ queries

    def version(self, now: float) -> int:
        """A number that changes whenever the ejected set changes (returns applied up to ``now``).

        Balancers cache their candidate lists under it: equal versions mean
        the same ejected set.
        """
        if now >= self._next_return:
            self._return_due(now)
        return self._version

    def is_ejected(self, endpoint: K, now: float) -> bool:
        """Whether ``endpoint`` is ejected at ``now``."""
        if now >= self._next_return:
            self._return_due(now)
        return endpoint in self._ejected

    def eligible(self, endpoints: Iterable[K], now: float) -> list[K]:
        """The endpoints of ``endpoints`` that are not ejected at ``now``, in order."""
        if now >= self._next_return:
            self._return_due(now)
        ejected = self._ejected
        if not ejected:
            return list(endpoints)
        return [e for e in endpoints if e not in ejected]

    def ejected_count(self, now: float) -> int:
        """Endpoints ejected at ``now`` (a gauge for metrics)."""
        if now >= self._next_return:
            self._return_due(now)
        return len(self._ejected)

    # ------------------------------------------------------------------ outcomes

    def on_result(
        self, endpoint: K, now: float, status: int | None, gateway_error: bool = False
    ) -> bool:
        """Record an attempt's outcome; return true if it ejected ``endpoint``.

        Args:
            endpoint: the endpoint that served (or failed to serve) the request.
            now: when the outcome was known.
            status: the response status, or ``None`` when no response was received.
            gateway_error: with ``status=None``, true for a local-origin failure
                (a connect failure, a reset or a timeout of the request) and
                false for an outcome that says nothing about the endpoint (the
                request was cancelled). 502, 503 and 504 statuses count as
                gateway errors by themselves.
        """
        if now >= self._next_return:
            self._return_due(now)
        host = self._hosts.get(endpoint)
        if host is None or host.until is not None:
            return False  # unknown, or ejected: ignored (module docs)
        config = self.config
        if status is None:
            if not gateway_error:
                return False  # no information
            limit = config.consecutive_local_origin_failures
            if limit is not None:
                # Local-origin mode: a counter of its own; the others untouched.
                host.clo += 1
                if host.clo >= limit:
                    return self._detected(endpoint, host, now, CONSECUTIVE_LOCAL_ORIGIN_FAILURE)
                return False
        elif status < 500 or status > 599:
            host.c5xx = 0
            host.cgw = 0
            host.clo = 0
            return False
        else:
            host.clo = 0  # it answered: it is reachable
            if status in _GATEWAY_STATUSES:
                gateway_error = True
        if gateway_error:
            host.cgw += 1
        else:
            host.cgw = 0
        host.c5xx += 1
        limit = config.consecutive_gateway_errors
        if limit and host.cgw >= limit:
            return self._detected(endpoint, host, now, CONSECUTIVE_GATEWAY_ERROR)
        limit = config.consecutive_5xx
        if limit and host.c5xx >= limit:
            return self._detected(endpoint, host, now, CONSECUTIVE_5XX)
        return False

    def _detected(self, endpoint: K, host: _Host, now: float, reason: EjectionReason) -> bool:
        self._detections[reason] += 1
        host.c5xx = 0
        host.cgw = 0
        host.clo = 0
        config = self.config
        total = len(self._hosts)
        ejected = len(self._ejected)
        pct = config.max_ejected_percent
        allowed = pct > 0 and (
            100 * (ejected + 1) <= pct * total or (config.always_eject_one and ejected == 0)
        )
        if not allowed:
            self._overflows += 1
            return False
        # Shrink the multiplier for the time spent in service since the last return.
        if host.returned_at is not None and host.multiplier:
            steps = int((now - host.returned_at) // config.interval)
            host.multiplier = max(0, host.multiplier - steps)
        host.multiplier = min(host.multiplier + 1, self._cap)
        until = now + min(config.base_ejection * host.multiplier, config.max_ejection)
        host.until = until
        host.times_ejected += 1
        self._ejected.add(endpoint)
        self._next_return = min(self._next_return, until)
        self.ejections += 1
        self._by_reason[reason] += 1
        self._version += 1
        return True

    def _return_due(self, now: float) -> None:
        """Return every endpoint whose ejection is over at ``now``."""
        hosts = self._hosts
        next_return = _INF
        back = []
        for endpoint in self._ejected:
            host = hosts[endpoint]
            until = host.until
            assert until is not None
            if until <= now:
                back.append(endpoint)
            elif until < next_return:
                next_return = until
        for endpoint in back:
            host = hosts[endpoint]
            host.returned_at = host.until  # it was back then, whenever we noticed
            host.until = None
            host.c5xx = 0
            host.cgw = 0
            host.clo = 0
            self._ejected.discard(endpoint)
        self._next_return = next_return
        if back:
            self._version += 1

    # ------------------------------------------------------------------ observation

    def snapshot(self, now: float) -> OutlierSnapshot[K]:
        """The state of every endpoint and the counters, at ``now``."""
        if now >= self._next_return:
            self._return_due(now)
        states = tuple(
            EndpointOutlierState(
                endpoint=endpoint,
                ejected=host.until is not None,
                ejected_until=host.until,
                ejection_remaining=0.0 if host.until is None else host.until - now,
                times_ejected=host.times_ejected,
                multiplier=host.multiplier,
                consecutive_5xx=host.c5xx,
                consecutive_gateway_errors=host.cgw,
                consecutive_local_origin_failures=host.clo,
            )
            for endpoint, host in self._hosts.items()
        )
        return OutlierSnapshot(
            endpoints=states,
            ejected=len(self._ejected),
            ejections=self.ejections,
            ejections_by_reason=dict(self._by_reason),
            detections=dict(self._detections),
            overflows=self._overflows,
        )
