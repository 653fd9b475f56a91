"""What a destination's policy means, derived once: for the sidecar and for clients.

mesh.yaml says what callers apply to the requests they send to a service;
two things apply it: the sidecar (``seawall.proxy.spec`` turns it into the
Rust core's spec) and an in-process client
(``seawall.client.httpx.from_mesh``). Everything that needs judgement (a
route's retry merged with its destination's, retry conditions turned into
status sets, the methods that may be retried, defaults filled in) is done
here, once, so that the two cannot read the same file differently.

Every function returns plain, JSON-able values whose keys are the keywords of
the ``seawall.policy`` primitive they configure (one vocabulary, issue 14):
``breaker_settings(cb)`` is ``CircuitBreaker(**breaker_settings(cb))`` minus
what only a runtime knows (its clock, name, how it classifies outcomes).
Durations are seconds, percentages 0..100.

This module imports nothing of seawall but the model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .model import (
    BackoffConfig,
    BudgetConfig,
    CircuitBreakerConfig,
    DestinationPolicy,
    EndpointConfig,
    OutlierConfig,
    RetryConfig,
    RouteConfig,
    ServiceConfig,
)

if TYPE_CHECKING:
    from .model import HedgeConfig, RateLimitConfig

__all__ = [
    "GATEWAY_STATUSES",
    "IDEMPOTENT",
    "backoff_settings",
    "breaker_settings",
    "budget_settings",
    "direct_endpoints",
    "hedge_settings",
    "outlier_detector_keywords",
    "outlier_settings",
    "rate_limit_settings",
    "retry_settings",
    "route_index",
]

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE")
"""RFC 9110's idempotent methods: always retryable."""

GATEWAY_STATUSES = (502, 503, 504)
"""What ``on: [gateway-error]`` retries."""


def backoff_settings(conf: BackoffConfig) -> dict[str, Any]:
    """``seawall.policy.backoff.backoff(jitter, base, max)``'s arguments."""
    return {"jitter": conf.jitter, "base": conf.base, "max": conf.max}


def retry_settings(retry: RetryConfig, *, single: bool = False) -> dict[str, Any]:
    """A route's effective retry policy, its conditions as sets a runtime tests directly.

    ``attempts`` (the first included); ``statuses``, the response codes retried;
    ``on_reset``, whether a connection that failed after it was made (reset,
    timeout) is retried; ``on_connect_failure``, whether one that could not be
    made is; ``backoff`` (:func:`backoff_settings`); ``methods``, the methods
    that may be retried at all (the idempotent ones and ``retry.methods``).
    ``single``: one attempt, nothing retried (a sidecar's inbound side).
    """
    statuses: set[int] = set()
    for cond in retry.on:
        if cond == "5xx":
            statuses.update(range(500, 600))
        elif cond == "gateway-error":
            statuses.update(GATEWAY_STATUSES)
        elif isinstance(cond, int):
            statuses.add(cond)
    broad = "gateway-error" in retry.on or "5xx" in retry.on
    methods = sorted({*IDEMPOTENT, *(m.upper() for m in retry.methods)})
    return {
        "attempts": 1 if single else retry.attempts,
        "statuses": [] if single else sorted(statuses),
        # the connection failed after it was made, before a response head
        "on_reset": not single and ("reset" in retry.on or broad),
        # no connection could be made
        "on_connect_failure": not single and ("connect-failure" in retry.on or broad),
        "backoff": backoff_settings(retry.backoff),
        "methods": methods,
    }


def budget_settings(budget: BudgetConfig) -> dict[str, Any]:
    """``seawall.policy.RetryBudget(ratio, min_per_second, ttl)``'s arguments."""
    return {"ratio": budget.ratio, "min_per_second": budget.min_per_second, "ttl": budget.ttl}


def breaker_settings(cb: CircuitBreakerConfig) -> dict[str, Any] | None:
    """``seawall.policy.CircuitBreaker``'s keywords (the nested ``window`` and
    ``slow_call`` flattened), or ``None`` when the breaker is off.

    Left to the runtime: ``window_buckets`` of a time window (10, the
    default), ``max_half_open_time`` (none) and ``automatic_transition`` (the
    sidecar turns it on, so that its admin pages show HALF_OPEN when due).
    """
    if not cb.enabled:
        return None
    return {
        "window_type": cb.window.type,
        "window_size": cb.window.size,
        "minimum_calls": cb.minimum_calls,
        "failure_rate": cb.failure_rate,
        "slow_call_duration": cb.slow_call.duration if cb.slow_call else None,
        "slow_call_rate": cb.slow_call.rate if cb.slow_call else 100.0,
        "open_for": cb.open_for,
        "open_multiplier": cb.open_multiplier,
        "max_open_for": max(cb.max_open_for, cb.open_for),
        "half_open_calls": cb.half_open_calls,
    }


def outlier_settings(o: OutlierConfig) -> dict[str, Any] | None:
    """Outlier detection as mesh.yaml names it, defaults filled in, or ``None`` when off.

    A rule turned off is ``None`` (``seawall.policy.OutlierDetector`` says 0);
    ``interval`` is 10 s when unset. The detector's keywords: ``ejection`` is
    its ``base_ejection``, ``max_ejected`` its ``max_ejected_percent``, and a
    runtime adds ``always_eject_one=True``.
    """
    if not o.enabled:
        return None
    return {
        "consecutive_5xx": o.consecutive_5xx,
        "consecutive_gateway_errors": o.consecutive_gateway_errors,
        "consecutive_local_origin_failures": o.consecutive_local_origin_failures,
        "interval": o.interval or 10.0,
        "ejection": o.base_ejection,
        "max_ejection": o.max_ejection,
        "max_ejected": o.max_ejected_percent,
    }


def outlier_detector_keywords(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``seawall.policy.OutlierDetector``'s keywords (its Rust twin's too) for
    :func:`outlier_settings`, as the sidecar builds its detector (cluster.rs):
    a rule turned off is 0, and one endpoint may always be ejected."""
    return {
        "consecutive_5xx": settings["consecutive_5xx"] or 0,
        "consecutive_gateway_errors": settings["consecutive_gateway_errors"] or 0,
        "consecutive_local_origin_failures": settings["consecutive_local_origin_failures"],
        "base_ejection": settings["ejection"],
        "max_ejection": settings["max_ejection"],
        "max_ejected_percent": settings["max_ejected"],
        "always_eject_one": True,
        "interval": settings["interval"],
    }


def hedge_settings(hedge: HedgeConfig | None) -> dict[str, Any] | None:
    """``seawall.policy.Hedge``'s keywords (``delay``, ``percentile``, ``max_hedges``,
    ``min_samples``), or ``None`` when the destination is not hedged (``hedge`` unset)."""
    if hedge is None:
        return None
    return {
        "delay": hedge.delay,
        "percentile": hedge.percentile,
        "max_hedges": hedge.max_hedges,
        "min_samples": hedge.min_samples,
    }


def rate_limit_settings(limit: RateLimitConfig | None) -> dict[str, Any] | None:
    """A rate limit (a destination's outbound one, a service's inbound one),
    ``seawall.policy.RateLimiter(rate, burst)``'s arguments with the burst
    filled in, or ``None`` when there is none."""
    if limit is None:
        return None
    burst = limit.burst if limit.burst is not None else max(1.0, float(limit.rate))
    return {"rate": float(limit.rate), "burst": float(burst)}


def direct_endpoints(service: ServiceConfig) -> tuple[EndpointConfig, ...]:
    """Where a client with no sidecar sends a service's requests: its ``endpoints``,
    or the app itself at ``host:port`` (not its inbound sidecar, as a sidecar would)."""
    if service.endpoints:
        return service.endpoints
    return (EndpointConfig(address=service.host, port=service.port),)


def _header_value(headers: Mapping[str, str] | Any, name: str) -> str | None:
    """A header's values joined with ``,`` (a header sent several times), or ``None``."""
    get_list = getattr(headers, "get_list", None)
    if get_list is not None:  # httpx.Headers
        values = list(get_list(name))
        return ",".join(values) if values else None
    value = headers.get(name)
    return None if value is None else str(value)


def route_index(
    policy: DestinationPolicy, method: str, target: str, headers: Mapping[str, str] | Any
) -> int | None:
    """The index of the first of ``policy.routes`` that a request matches, or ``None``.

    The sidecar's rules (Envoy's): ``path_prefix`` on the raw target (path and
    query; ``/api`` also matches ``/apix``), ``path_exact`` and ``path_regex``
    on the path without its query (not normalised, case-sensitive; a regex must
    match the whole path); one of the methods; every header condition, a header
    sent several times matched on its values joined with ``,``.
    """
    path = target.split("?", 1)[0]
    for index, route in enumerate(policy.routes):
        if _matches(route, method, target, path, headers):
            return index
    return None


def _matches(route: RouteConfig, method: str, target: str, path: str, headers: Any) -> bool:
    m = route.match
    if m.path_prefix is not None and not target.startswith(m.path_prefix):
        return False
    if m.path_exact is not None and path != m.path_exact:
        return False
    if m.path_regex is not None and re.fullmatch(m.path_regex, path) is None:
        return False
    allowed = m.allowed_methods()
    if allowed is not None and method.upper() not in {x.upper() for x in allowed}:
        return False
    for name, cond in m.headers.items():
        value = _header_value(headers, name)
        if cond.present is not None:
            holds = cond.present == (value is not None)
        elif value is None:
            holds = False
        elif cond.exact is not None:
            holds = value == cond.exact
        else:
            holds = cond.regex is not None and re.fullmatch(cond.regex, value) is not None
        if not holds:
            return False
    return True
