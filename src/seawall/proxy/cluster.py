"""A cluster: what the sidecar keeps per destination service.

Endpoints and their balancer, outlier detection, the circuit breaker, the
retry budget, the pool limits and the pooled upstream connections. The
forwarder asks it small questions (``admit``, ``pick``, ``acquire``) and
tells it outcomes (``release``, ``record``); no policy decision is made here
that the forwarder cannot read top to bottom.

Pool limits (Envoy's circuit-breaker thresholds, Istio's connection pool):
``max_connections`` open upstream connections, ``max_pending`` requests
waiting for one, ``max_in_flight`` requests being served, and ``max_retries``
retries in flight at once. Going over one answers 503 at once with
``x-seawall-overflow: <limit>``.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from typing import TYPE_CHECKING, Any

from ..policy.breaker import BreakerState, CircuitBreaker
from ..policy.budget import RetryBudget
from ..policy.clock import MONOTONIC, Clock
from .http1 import RESPONSE_LIMITS, Limits
from .metrics import SidecarMetrics
from .upstream.balancer import Balancer
from .upstream.connection import UpstreamConnection, UpstreamError
from .upstream.endpoint import Endpoint
from .upstream.outlier import OutlierDetector

if TYPE_CHECKING:
    from .tls import UpstreamTLS

__all__ = ["Cluster", "ClusterLimits", "Overflow"]


class Overflow(Exception):
    """A pool limit was reached; ``limit`` names it (the ``x-seawall-overflow`` value)."""

    def __init__(self, limit: str) -> None:
        self.limit = limit
        super().__init__(f"pool limit reached: {limit}")


@dataclass(frozen=True, slots=True)
class ClusterLimits:
    """Per-destination pool limits (see the module docstring)."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_in_flight: int = 1024
    max_retries: int = 3
    connect_timeout: float = 1.0
    idle_timeout: float = 60.0


class Cluster:
    """One destination service: endpoints, policies and pooled connections."""

    def __init__(
        self,
        name: str,
        endpoints: list[Endpoint],
        *,
        balancer: Balancer,
        outlier: OutlierDetector | None,
        breaker: CircuitBreaker | None,
        budget: RetryBudget | None,
        limits: ClusterLimits,
        metrics: SidecarMetrics,
        response_limits: Limits = RESPONSE_LIMITS,
        clock: Clock = MONOTONIC,
        rng: random.Random | None = None,
        mesh: bool = False,
    ) -> None:
        self.name = name
        self.mesh = mesh  # endpoints are mesh sidecars (mTLS with an identity), not a local app
        self.endpoints = endpoints
        self.balancer = balancer
        self.outlier = outlier
        self.breaker = breaker
        self.budget = budget
        self.limits = limits
        self.clock = clock
        self.rng = rng or random.Random()
        self._response_limits = response_limits
        self._idle: dict[tuple[str, int], list[UpstreamConnection]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.open_connections = 0
        self.pending = 0
        self.in_flight = 0
        self.retries_in_flight = 0
        self._ejections_seen = 0
        self._m_ejections = metrics.ejections.labels(name)
        self.m_retries = metrics.retries.labels(name)
        self.m_budget_exhausted = metrics.budget_exhausted.labels(name)
        self._m_overflow = {
            limit: metrics.overflow.labels(name, limit)
            for limit in ("connections", "pending", "in_flight", "retries")
        }
        if breaker is not None:
            for state in BreakerState:
                metrics.breaker_state.labels(name, state.value).set(
                    1.0 if state is BreakerState.CLOSED else 0.0
                )

    # -- admission --------------------------------------------------------

    def overflow(self, limit: str) -> Overflow:
        """Count an overflow and return the error to raise."""
        self._m_overflow[limit].inc()
        return Overflow(limit)

    def start_request(self) -> None:
        """A request is about to be served upstream (raises :class:`Overflow`)."""
        if self.in_flight >= self.limits.max_in_flight:
            raise self.overflow("in_flight")
        self.in_flight += 1

    def end_request(self) -> None:
        """The request finished (whatever its outcome)."""
        self.in_flight -= 1

    def pick(self, exclude: frozenset[Endpoint], subset: str | None) -> Endpoint | None:
        """The endpoint for the next attempt (ejected ones skipped; see the balancer)."""
        return self.balancer.pick(self.clock(), exclude, subset)

    def record(self, endpoint: Endpoint, status: int | None, gateway_error: bool) -> None:
        """Feed one attempt's outcome to outlier detection."""
        outlier = self.outlier
        if outlier is None:
            return
        outlier.on_result(endpoint, self.clock(), status, gateway_error)
        ejections = outlier.ejections
        if ejections != self._ejections_seen:
            self._m_ejections.inc(ejections - self._ejections_seen)
            self._ejections_seen = ejections

    def set_endpoints(self, endpoints: list[Endpoint]) -> None:
        """Replace the endpoint set in place (an update pushed by the control plane).

        The breaker, the retry budget and the pool stay as they are; endpoints
        that remain keep their load-balancing stats and outlier state (an
        ejected one stays ejected); idle connections to endpoints that left
        are closed. Synchronous: no request sees half of the change.
        """
        self.endpoints = endpoints
        if self.outlier is not None:
            self.outlier.update(endpoints)
        self.balancer.update(endpoints)
        remaining = {(e.address, e.port) for e in endpoints}
        for key in [k for k in self._idle if k not in remaining]:
            for conn in self._idle.pop(key):
                conn.close()

    # -- connections ------------------------------------------------------

    async def acquire(
        self, endpoint: Endpoint, timeout: float, tls: UpstreamTLS | None = None  # noqa: ASYNC109
    ) -> UpstreamConnection:
        """A connection to ``endpoint``: an idle pooled one, or a new one.

        ``tls``: the sidecar's mTLS settings when it has an identity; a new
        connection to a mesh endpoint then uses TLS and must reach the
        destination's own identity. Raises :class:`Overflow` (pending limit),
        :class:`UpstreamError` (``connect``) or :class:`TimeoutError`.
        """
        key = (endpoint.address, endpoint.port)
        conn = self._take_idle(key)
        if conn is not None:
            return conn
        while self.open_connections >= self.limits.max_connections:
            if self._close_one_idle():
                break
            if self.pending >= self.limits.max_pending:
                raise self.overflow("pending")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            self.pending += 1
            try:
                await asyncio.wait_for(waiter, timeout)
            finally:
                self.pending -= 1
                if not waiter.done():
                    waiter.cancel()
            conn = self._take_idle(key)
            if conn is not None:
                return conn
        return await self._connect(endpoint, key, timeout, tls if self.mesh else None)

    def _take_idle(self, key: tuple[str, int]) -> UpstreamConnection | None:
        """The most recently pooled usable connection for ``key``; stale ones are closed."""
        idle = self._idle.get(key)
        now = self.clock()
        while idle:
            conn = idle.pop()
            if conn.reusable and now - conn.idle_since < self.limits.idle_timeout:
                return conn
            conn.close()
        return None

    async def _connect(
        self,
        endpoint: Endpoint,
        key: tuple[str, int],
        timeout: float,  # noqa: ASYNC109
        tls: UpstreamTLS | None = None,
    ) -> UpstreamConnection:
        """A new connection; with ``tls``, mTLS to a peer that must present the
        destination's SPIFFE ID (else it is a connect failure, like a refused one)."""
        self.open_connections += 1
        loop = asyncio.get_running_loop()
        limits = self._response_limits
        try:
            transport, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: UpstreamConnection(key, self._closed, limits),
                    endpoint.address,
                    endpoint.port,
                    ssl=None if tls is None else tls.context,
                ),
                min(timeout, self.limits.connect_timeout),
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self.open_connections -= 1
            self._wake()
            if tls is not None and isinstance(exc, ssl.SSLError | ConnectionResetError):
                tls.failed(self.name, "handshake")  # a handshake refused, not a connect
            raise UpstreamError("connect", f"{endpoint.address}:{endpoint.port}: {exc}") from None
        if tls is not None:
            problem = tls.check(transport, self.name)
            if problem is not None:
                transport.abort()  # counted out of open_connections by connection_lost
                raise UpstreamError("connect", f"{endpoint.address}:{endpoint.port}: {problem}")
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Give a connection back after its exchange: pooled if reusable, else closed."""
        conn.exchange = None
        if conn.reusable:
            conn.idle_since = self.clock()
            self._idle.setdefault(conn.key, []).append(conn)  # type: ignore[arg-type]
            self._wake()
        else:
            conn.close()

    def _closed(self, conn: UpstreamConnection) -> None:
        if conn.counted:
            conn.counted = False
            self.open_connections -= 1
        idle = self._idle.get(conn.key)  # type: ignore[call-overload]
        if idle is not None and conn in idle:
            idle.remove(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _close_one_idle(self) -> bool:
        for idle in self._idle.values():
            if idle:
                conn = idle.pop(0)
                conn.counted = False  # counted out now: connection_lost comes later
                conn.close()
                self.open_connections -= 1
                return True
        return False

    def close(self) -> None:
        """Close every idle connection (config reload, shutdown)."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
            idle.clear()

    # -- observation ------------------------------------------------------

    def gauges(self) -> tuple[str, int, int, int]:
        """(name, open connections, pending, in flight): read by the metrics at scrape time."""
        return self.name, self.open_connections, self.pending, self.in_flight

    def snapshot(self) -> dict[str, Any]:
        """The state of the cluster, for the admin ``/clusters`` endpoint."""
        now = self.clock()
        outlier = _jsonable(self.outlier.snapshot(now)) if self.outlier is not None else None
        breaker = self.breaker.metrics() if self.breaker is not None else None
        return {
            "name": self.name,
            "endpoints": [
                {
                    "address": ep.address,
                    "port": ep.port,
                    "subset": ep.subset,
                    "ejected": (
                        self.outlier.is_ejected(ep, now) if self.outlier is not None else False
                    ),
                    "idle_connections": len(self._idle.get((ep.address, ep.port), ())),
                }
                for ep in self.endpoints
            ],
            "outlier": outlier,
            "breaker": None
            if breaker is None
            else {
                "state": breaker.state.value,
                "failure_rate": breaker.failure_rate,
                "slow_call_rate": breaker.slow_call_rate,
                "not_permitted_calls": breaker.not_permitted_calls,
                "next_probe_at": breaker.next_probe_at,
            },
            "open_connections": self.open_connections,
            "pending": self.pending,
            "in_flight": self.in_flight,
            "retries_in_flight": self.retries_in_flight,
        }


def _jsonable(value: object) -> object:
    """Dataclass snapshots as plain JSON values (endpoints as ``address:port``)."""
    if isinstance(value, Endpoint):
        return f"{value.address}:{value.port}"
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
