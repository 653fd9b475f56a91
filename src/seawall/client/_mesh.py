"""``from_mesh``: an httpx client that applies mesh.yaml's policies as a sidecar would.

A sidecar applies, to each request its app sends to a destination service,
the policy mesh.yaml gives that destination. :class:`MeshTransport` applies
the same policy in process, with ``seawall.policy`` primitives built from the
same derivation (:mod:`seawall.config.effective`, which the sidecar's spec
uses too), so that a service can drop its sidecar on the outbound path, or a
client outside the mesh (a job, a test) can call into it, and be treated the
same way.

The request path, top to bottom, as the sidecar's (``forward.rs``):

1. destination: the URL's host is a service name (``http://payments/...``,
   ``payments.svc`` too, any port); another host is egress;
2. route: the first of the destination's ``routes`` the request matches
   (path, method, headers) brings its timeout and retry settings;
3. the pipeline of that route (:meth:`_Mesh.policy`): outbound rate limit,
   the request timeout, the in-flight limit, retries (or hedges) on the
   destination's budget, the breaker;
4. each attempt: a split's subset (drawn once per request), an endpoint
   (round robin by weight among those not ejected by outlier detection, one
   not tried yet by this request if there is one), the attempt's own timeout,
   and the outcome reported to outlier detection.

What a sidecar does and this client does not is listed in
``docs/client/httpx.md``.
"""

from __future__ import annotations

import os
import random
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from seawall.policy._policy import Policy
from seawall.policy.backoff import backoff
from seawall.policy.breaker import CircuitBreaker
from seawall.policy.budget import RetryBudget
from seawall.policy.bulkhead import Bulkhead
from seawall.policy.clock import MONOTONIC, AsyncSleep, Clock, Sleep, async_sleep, sync_sleep
from seawall.policy.deadline import Timeout, current_deadline
from seawall.policy.errors import DeadlineExceeded
from seawall.policy.hedge import Hedge
from seawall.policy.outlier import OutlierDetector
from seawall.policy.pipeline import Pipeline
from seawall.policy.ratelimit import RateLimiter
from seawall.policy.retry import Retry
from seawall.policy.split import WeightedSplit, choose_subset

from .httpx import (
    _IDEMPOTENCY_KEY,
    _OVERLOADED_HEADER,
    IDEMPOTENT_METHODS,
    AsyncSeawallTransport,
    SeawallTransport,
    _aclose,
    _akeep,
    _Call,
    _close,
    _host,
    _keep,
    _reduced_timeouts,
    is_failure_response,
)

if TYPE_CHECKING:
    from seawall.config import MeshConfig

__all__ = ["AsyncMeshTransport", "MeshTransport"]

_EGRESS = "\x00egress"
"""The key of requests to hosts that are not mesh services."""


# --- classification, as the sidecar's (forward.rs) --------------------------------------


def _disconnected(exc: BaseException) -> bool:
    """The server closed the connection before a response head (a reset, not a bad answer)."""
    text = str(exc)
    return "disconnected" in text or "closed connection" in text


def _local_origin(exc: BaseException) -> bool:
    """No response came back because of the endpoint or the way to it: a connect
    failure, a reset, a timeout (outlier detection's local-origin failures)."""
    if isinstance(exc, httpx.PoolTimeout):
        return False  # waiting for a local connection says nothing about the endpoint
    if isinstance(exc, httpx.RemoteProtocolError):
        return _disconnected(exc)
    return isinstance(exc, httpx.ConnectError | httpx.TimeoutException | httpx.NetworkError)


def _retry_on(on_reset: bool, on_connect_failure: bool) -> Callable[[BaseException], bool]:
    """The Retry's ``on=`` for a route: connect failures and resets, as the route says.

    A connect timeout and a per-try timeout are "reset" in the sidecar (the
    connection may have been made); a pool timeout (no local connection free)
    and a malformed response are never retried.
    """

    def retryable(exc: BaseException) -> bool:
        if isinstance(exc, httpx.ConnectError):
            return on_connect_failure
        if isinstance(exc, httpx.PoolTimeout):
            return False
        if isinstance(exc, httpx.TimeoutException | httpx.ReadError | httpx.WriteError):
            return on_reset
        if isinstance(exc, httpx.RemoteProtocolError):
            return on_reset and _disconnected(exc)
        return False

    return retryable


def _retry_on_result(statuses: frozenset[int]) -> Callable[[httpx.Response], bool]:
    """The Retry's ``on_result=``: a status the route retries, unless marked overloaded."""

    def retryable(response: httpx.Response) -> bool:
        return response.status_code in statuses and (
            response.headers.get(_OVERLOADED_HEADER, "").strip() != "1"
        )

    return retryable


def _not_sent(exc: BaseException) -> bool:
    """For the breaker's ``ignore_on``: the deadline passed before the attempt was sent
    (the sidecar checks the deadline before it asks the breaker)."""
    return isinstance(exc, DeadlineExceeded)


# --- endpoints ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Endpoint:
    key: str
    address: str
    port: int
    subset: str | None
    weight: int


class _Endpoints:
    """A destination's endpoints: round robin by weight, outlier detection, subsets.

    Decisions happen under one short lock, never around I/O.
    """

    __slots__ = ("_all", "_clock", "_current", "_lock", "outlier")

    def __init__(
        self, endpoints: Sequence[_Endpoint], outlier: dict[str, Any] | None, clock: Clock
    ) -> None:
        self._all = tuple(endpoints)
        self._clock = clock
        self._lock = threading.Lock()
        self._current = {e.key: 0 for e in self._all}  # smooth weighted round robin
        self.outlier: OutlierDetector[str] | None = None
        """The destination's outlier detector (``None`` when mesh.yaml turns it off)."""
        if outlier is not None:
            # as the sidecar builds its detector from the spec (cluster.rs)
            from seawall.config.effective import outlier_detector_keywords  # noqa: PLC0415

            self.outlier = OutlierDetector(
                [e.key for e in self._all], **outlier_detector_keywords(outlier)
            )

    def pick(self, subset: str | None, tried: Sequence[str]) -> _Endpoint | None:
        """An endpoint of ``subset`` (any when ``None``) not ejected (all of them if
        every one is) and not ``tried`` (unless every candidate was); ``None`` if the
        subset has none."""
        now = self._clock()
        with self._lock:
            group = [e for e in self._all if subset is None or e.subset == subset]
            if self.outlier is not None and group:
                eligible = set(self.outlier.eligible([e.key for e in group], now))
                group = [e for e in group if e.key in eligible] or group
            fresh = [e for e in group if e.key not in tried]
            return self._next(fresh or group)

    def _next(self, candidates: list[_Endpoint]) -> _Endpoint | None:
        # Smooth weighted round robin (nginx's): each pick adds every weight to
        # its endpoint's score and takes the highest, which pays the total back.
        best: _Endpoint | None = None
        for e in candidates:
            self._current[e.key] += e.weight
            if best is None or self._current[e.key] > self._current[best.key]:
                best = e
        if best is not None:
            self._current[best.key] -= sum(e.weight for e in candidates)
        return best

    def report(self, endpoint: _Endpoint, status: int | None, gateway_error: bool) -> None:
        """An attempt's outcome, for outlier detection (``status=None``: no response)."""
        if self.outlier is None:
            return
        now = self._clock()
        with self._lock:
            self.outlier.on_result(endpoint.key, now, status, gateway_error)


# --- one destination ------------------------------------------------------------------


class _WithdrawOnly(RetryBudget):
    """The destination's budget seen by its Hedge: hedges withdraw from it, but the
    request was deposited once already, by the Retry (the sidecar deposits once)."""

    __slots__ = ("_shared",)

    def __init__(self, shared: RetryBudget) -> None:
        super().__init__(shared.ratio, shared.min_per_second, shared.ttl, buckets=shared.buckets)
        self._shared = shared

    def deposit(self, now: float | None = None) -> None:
        """Nothing: the Retry around the hedge deposited the request."""

    def try_withdraw(self, now: float | None = None) -> bool:
        """Withdraw from the shared budget."""
        return self._shared.try_withdraw(now)


@dataclass(frozen=True, slots=True)
class _Origin:
    """How to reach an ``external:`` service: its scheme, the ``Host`` it is called by,
    and with TLS the name its certificate must carry and the roots to check it with."""

    scheme: str
    authority: str
    server_name: str | None
    ca_file: str | None


@dataclass(frozen=True, slots=True)
class _RouteSettings:
    """What differs between a destination's routes (``None``: no route matched)."""

    timeout: float
    retry: dict[str, Any]
    split: WeightedSplit | None


class _Destination:
    """One destination service: its endpoints and the policy objects its routes share
    (breaker, budget, in-flight limit, rate limit, hedge), as the sidecar's cluster."""

    def __init__(
        self,
        name: str,
        endpoints: _Endpoints,
        *,
        settings: dict[str, Any],
        routes: list[_RouteSettings],
        default: _RouteSettings,
        clock: Clock,
        sleep: Sleep,
        asleep: AsyncSleep,
        rng: random.Random,
        origin: _Origin | None = None,
    ) -> None:
        self.name = name
        self.endpoints = endpoints
        self.origin = origin
        """How to reach an ``external:`` service (``None`` for a mesh service)."""
        self.settings = settings
        """The destination's derived settings (see :mod:`seawall.config.effective`)."""
        self.routes = routes
        self.default = default
        self.per_try_timeout: float | None = settings["per_try_timeout"]
        self.connect_timeout: float = settings["connect_timeout"]
        self._clock, self._sleep, self._asleep, self._rng = clock, sleep, asleep, rng
        budget = settings["budget"]
        self.budget: RetryBudget | None = (
            None if budget is None else RetryBudget(**budget, clock=clock)
        )
        """The retry budget every route's retries and hedges draw on."""
        breaker = settings["breaker"]
        self.breaker: CircuitBreaker | None = None
        """The destination's breaker, fed every attempt of every route."""
        if breaker is not None:
            self.breaker = CircuitBreaker(
                name,
                **breaker,
                # as the sidecar's (cluster.rs): OPEN turns HALF_OPEN when due
                automatic_transition=True,
                # every attempt without a response, or with a 5xx, is a failure
                record_on=Exception,
                failure_on_result=is_failure_response,
                ignore_on=_not_sent,
                clock=clock,
            )
        self.bulkhead = Bulkhead(
            settings["max_in_flight"], max_waiting=0, max_wait=0.0, name=name, clock=clock
        )
        """``bulkhead.max_in_flight``: requests in progress, no queue (the sidecar: 503)."""
        limit = settings["rate_limit"]
        self.rate_limiter: RateLimiter | None = (
            None
            if limit is None
            else RateLimiter(limit["rate"], limit["burst"], max_wait=0.0, clock=clock, name=name)
        )
        """The outbound rate limit: over it, refused at once (429 in the sidecar)."""
        hedge = settings["hedge"]
        self.hedge: Hedge | None = None
        if hedge is not None:
            self.hedge = Hedge(
                **hedge,
                budget=None if self.budget is None else _WithdrawOnly(self.budget),
                clock=clock,
                async_sleep=asleep,
                name=name,
            )

    def route(self, index: int | None) -> _RouteSettings:
        return self.default if index is None else self.routes[index]

    def policy(self, index: int | None, hedged: bool) -> Policy:
        """The pipeline of a route (``None``: no route matched), one step per concern,
        in the sidecar's order (``forward.rs``)."""
        route = self.route(index)
        retry = route.retry
        steps: list[Policy] = []
        # 1. the outbound rate limit (the sidecar answers 429 at once)
        if self.rate_limiter is not None:
            steps.append(self.rate_limiter)
        # 2. the route's timeout: the whole request, every retry and backoff included
        steps.append(Timeout(route.timeout, clock=self._clock, name=self.name))
        # 3. the in-flight limit, held by the request across its attempts
        #    (the sidecar counts the request in the budget before it; here the
        #    Retry below deposits, so a request refused here is not counted)
        steps.append(self.bulkhead)
        # 4. retries: the route's conditions and backoff, the destination's budget;
        #    never past the deadline, never a response marked overloaded
        if retry["attempts"] > 1:
            steps.append(
                Retry(
                    on=_retry_on(retry["on_reset"], retry["on_connect_failure"]),
                    on_result=_retry_on_result(frozenset(retry["statuses"])),
                    attempts=retry["attempts"],
                    timeout=None,  # the request's deadline bounds it
                    backoff=backoff(**retry["backoff"]),
                    retry_after=None,  # the sidecar waits its backoff, whatever a hint says
                    budget=self.budget,
                    name=self.name,
                    clock=self._clock,
                    sleep=self._sleep,
                    async_sleep=self._asleep,
                    rng=self._rng,
                )
            )
        # 5. hedges of an idempotent request, each drawing on the budget
        if hedged and self.hedge is not None:
            steps.append(self.hedge)
        # 6. the breaker: each attempt asks it, and feeds it its outcome
        if self.breaker is not None:
            steps.append(self.breaker)
        return Pipeline(*steps)

    def close(self) -> None:
        if self.hedge is not None:
            self.hedge.close(wait=False)  # a losing copy ends on its own


class _Mesh:
    """A caller's view of a mesh: its destinations, and the policy behind each key."""

    def __init__(
        self,
        config: str | os.PathLike[str] | MeshConfig,
        service: str,
        *,
        clock: Clock,
        sleep: Sleep,
        asleep: AsyncSleep,
        rng: random.Random | None,
    ) -> None:
        # The mesh model needs pydantic (the `mesh` extra): imported here, not with httpx.
        from seawall.config import MeshConfig, load_mesh  # noqa: PLC0415
        from seawall.config import effective as fx  # noqa: PLC0415

        mesh = config if isinstance(config, MeshConfig) else load_mesh(os.fspath(config))
        if service not in mesh.services:
            raise ValueError(
                f"from_mesh: service must be one of the mesh's services "
                f"({', '.join(sorted(mesh.services))}), got {service!r}"
            )
        self.config = mesh
        self.service = service
        self.rng = rng if rng is not None else random.Random()
        self.clock = clock
        self.destinations: dict[str, _Destination] = {}
        reached: list[tuple[str, list[_Endpoint], _Origin | None]] = [
            (
                name,
                [
                    _Endpoint(f"{e.address}:{e.port}", e.address, e.port, e.subset, e.weight)
                    for e in fx.direct_endpoints(svc)
                ],
                None,
            )
            for name, svc in mesh.services.items()
        ]
        for name, ext in getattr(mesh, "external", {}).items():
            # as the sidecar: to host:port, over TLS when `tls`, called by the real host
            port = ext.effective_port()
            default_port = 443 if ext.tls else 80
            how = _Origin(
                "https" if ext.tls else "http",
                ext.host if port == default_port else f"{ext.host}:{port}",
                (ext.server_name or ext.host) if ext.tls else None,
                ext.ca_file if ext.tls else None,
            )
            endpoint = _Endpoint(f"{ext.host}:{port}", ext.host, port, None, 1)
            reached.append((name, [endpoint], how))
        for name, endpoints, origin in reached:
            policy = mesh.policy_for(name)
            settings: dict[str, Any] = {
                "timeout": policy.timeout,
                "per_try_timeout": policy.per_try_timeout,
                "connect_timeout": policy.connect_timeout,
                "retry": fx.retry_settings(policy.retry),
                "budget": fx.budget_settings(policy.retry.budget),
                "breaker": fx.breaker_settings(policy.circuit_breaker),
                "outlier": fx.outlier_settings(policy.outlier),
                "max_in_flight": policy.bulkhead.max_in_flight,
                "hedge": fx.hedge_settings(getattr(policy, "hedge", None)),
                "rate_limit": fx.rate_limit_settings(getattr(policy, "rate_limit", None)),
            }
            routes = [
                _RouteSettings(
                    policy.timeout_for(rc),
                    fx.retry_settings(policy.retry_for(rc)),
                    None if rc.split is None else WeightedSplit.of(rc.split),
                )
                for rc in policy.routes
            ]
            default = _RouteSettings(policy.timeout, settings["retry"], None)
            self.destinations[name] = _Destination(
                name,
                _Endpoints(endpoints, settings["outlier"], clock),
                settings=settings,
                routes=routes,
                default=default,
                clock=clock,
                sleep=sleep,
                asleep=asleep,
                rng=self.rng,
                origin=origin,
            )
        self._route_index = fx.route_index
        egress = mesh.egress
        self.egress_mode = egress.mode
        self.egress_connect_timeout = egress.connect_timeout
        self._egress_timeout = egress.timeout
        self._sleep, self._asleep = sleep, asleep

    # -- which policy a request goes through ----------------------------------------

    def destination_of(self, request: httpx.Request) -> _Destination | None:
        """The mesh service a request is addressed to (``payments``, ``payments.svc``)."""
        host = request.url.host
        name = host[:-4] if host.endswith(".svc") else host
        return self.destinations.get(name)

    def key(self, request: httpx.Request) -> str:
        """``destination/route/hedged``: the destination's name, the index of the route
        the request matches (``-`` for none), ``h`` if it may be hedged."""
        dest = self.destination_of(request)
        if dest is None:
            return _EGRESS
        index = self._route_index(
            self.config.policy_for(dest.name),
            request.method,
            request.url.raw_path.decode("ascii"),
            request.headers,
        )
        hedged = request.method in IDEMPOTENT_METHODS and isinstance(
            request.stream, httpx.ByteStream
        )
        return f"{dest.name}/{'-' if index is None else index}/{'h' if hedged else ''}"

    def parse(self, key: str) -> tuple[_Destination, int | None, bool]:
        name, index, hedged = key.split("/")
        return self.destinations[name], None if index == "-" else int(index), hedged == "h"

    def policy(self, key: str) -> Policy:
        """The policy of ``key`` (the transport calls it once per key)."""
        if key == _EGRESS:
            return self._egress_policy()
        dest, index, hedged = self.parse(key)
        return dest.policy(index, hedged)

    def _egress_policy(self) -> Policy:
        # The sidecar's egress policy (seawall.proxy.spec.egress_spec): its timeout,
        # a connect failure retried once, no breaker, budget or outlier detection.
        return Pipeline(
            Timeout(self._egress_timeout, clock=self.clock, name="egress"),
            Retry(
                on=_retry_on(on_reset=False, on_connect_failure=True),
                attempts=2,
                timeout=None,
                backoff=backoff("full", 0.025, 0.25),
                retry_after=None,
                name="egress",
                clock=self.clock,
                sleep=self._sleep,
                async_sleep=self._asleep,
                rng=self.rng,
            ),
        )

    def retryable(self, request: httpx.Request, key: str) -> bool:
        """The sidecar's rule: a method the route's retry allows (the idempotent ones and
        ``retry.methods``) or an ``Idempotency-Key``; a body that can be sent again."""
        if not isinstance(request.stream, httpx.ByteStream):
            return False
        if key == _EGRESS:
            return request.method in IDEMPOTENT_METHODS
        dest, index, _ = self.parse(key)
        retry = dest.route(index).retry
        return request.method in retry["methods"] or _IDEMPOTENCY_KEY in request.headers

    def close(self) -> None:
        for dest in self.destinations.values():
            dest.close()



# --- one request ----------------------------------------------------------------------


class _MeshCall(_Call):
    """A request to a mesh destination: its subset, the endpoints it tried."""

    __slots__ = ("connect_timeout", "dest", "per_try_timeout", "subset", "tried")

    def __init__(
        self,
        request: httpx.Request,
        key: str,
        clock: Clock,
        drain: bool,
        *,
        dest: _Destination | None,
        subset: str | None,
        per_try_timeout: float | None,
        connect_timeout: float,
    ) -> None:
        super().__init__(request, key, clock, drain)
        self.dest = dest
        self.subset = subset
        self.per_try_timeout = per_try_timeout
        self.connect_timeout = connect_timeout
        self.tried: list[str] = []

    def pick(self) -> _Endpoint | None:
        """The endpoint of the attempt starting now (``None`` for egress)."""
        dest = self.dest
        if dest is None:
            return None
        endpoint = dest.endpoints.pick(self.subset, self.tried)
        if endpoint is None:
            raise httpx.ConnectError(f"no endpoint for {dest.name!r}", request=self.request)
        with self._lock:
            self.tried.append(endpoint.key)
        return endpoint

    def attempt_request(self, endpoint: _Endpoint | None = None) -> httpx.Request:
        """The request for the attempt running in this context, to ``endpoint``.

        As the sidecar: ``x-seawall-deadline-ms`` says the time left for the whole
        request; the attempt itself is bounded by ``per_try_timeout`` too, and its
        connection by ``connect_timeout``.
        """
        request = super().attempt_request()  # the mesh's headers, the deadline's timeouts
        deadline = current_deadline()
        left = None if deadline is None else deadline - self._clock()
        per_try = self.per_try_timeout
        if per_try is not None and (left is None or per_try < left):
            left = per_try
        timeout = dict(request.extensions.get("timeout") or {})
        if left is not None:
            timeout = _reduced_timeouts(timeout, left)
        connect = timeout.get("connect")
        timeout["connect"] = (
            self.connect_timeout if connect is None else min(connect, self.connect_timeout)
        )
        url, headers = request.url, request.headers
        extensions = {**request.extensions, "timeout": timeout}
        if endpoint is not None:
            url = url.copy_with(host=endpoint.address, port=endpoint.port)
        origin = None if self.dest is None else self.dest.origin
        if origin is not None:
            # the real host's name goes upstream (virtual hosting, the certificate's name)
            url = url.copy_with(scheme=origin.scheme)
            headers["host"] = origin.authority
            if origin.server_name is not None:
                extensions["sni_hostname"] = origin.server_name
        return httpx.Request(
            request.method, url, headers=headers, stream=request.stream, extensions=extensions
        )

    def report(self, endpoint: _Endpoint | None, outcome: httpx.Response | BaseException) -> None:
        """An attempt's outcome to outlier detection."""
        if endpoint is None or self.dest is None:
            return
        if isinstance(outcome, httpx.Response):
            status = outcome.status_code
            self.dest.endpoints.report(endpoint, status, status in (502, 503, 504))
        elif isinstance(outcome, Exception):
            local = _local_origin(outcome)
            self.dest.endpoints.report(endpoint, None, local)


# --- the transports -------------------------------------------------------------------


class _MeshDispatch:
    """What :class:`MeshTransport` and :class:`AsyncMeshTransport` decide before a
    request's policy runs."""

    _mesh: _Mesh
    _clock: Clock
    _routes: Any

    def _key(self, request: httpx.Request) -> str:
        return self._mesh.key(request)

    def _retryable(self, request: httpx.Request, key: str) -> bool:
        override = request.extensions.get("seawall_retry")
        if override is False:
            return False
        return self._mesh.retryable(request, key)

    def _call(self, request: httpx.Request, key: str, drain: bool) -> _Call:
        mesh = self._mesh
        if key == _EGRESS:
            return _MeshCall(
                request,
                _host(request),
                self._clock,
                drain,
                dest=None,
                subset=None,
                per_try_timeout=None,
                connect_timeout=mesh.egress_connect_timeout,
            )
        dest, index, _ = mesh.parse(key)
        split = dest.route(index).split
        # the split's subset is drawn once per request, before its attempts
        subset = None if split is None else choose_subset(split, mesh.rng)
        return _MeshCall(
            request,
            dest.name,
            self._clock,
            drain,
            dest=dest,
            subset=subset,
            per_try_timeout=dest.per_try_timeout,
            connect_timeout=dest.connect_timeout,
        )

    def _refused(self, request: httpx.Request) -> httpx.Response | None:
        """The sidecar's answer to a host outside the mesh under ``registry_only``."""
        if self._key(request) != _EGRESS or self._mesh.egress_mode != "registry_only":
            return None
        host = request.url.host
        return httpx.Response(
            403,
            headers={"x-seawall-denied": "egress", "content-type": "text/plain"},
            text=(
                f"egress to '{host}' refused: egress.mode is registry_only "
                "(declare the host in the mesh, or set egress.mode: allow_any)\n"
            ),
            request=request,
        )

    def policy_for(self, service: str) -> Policy:
        """The policy of a GET to ``service`` that matches none of its routes (for
        inspection), built if need be."""
        if service not in self._mesh.destinations:
            raise KeyError(f"no service {service!r} in mesh {self._mesh.config.mesh!r}")
        policy: Policy = self._routes.get(f"{service}/-/h").policy
        return policy

    def destination(self, service: str) -> _Destination:
        """The objects a destination's routes share: ``breaker``, ``budget``,
        ``bulkhead``, ``rate_limiter``, ``hedge``, ``endpoints.outlier``."""
        return self._mesh.destinations[service]


def _ca_file(call: _Call) -> str | None:
    assert isinstance(call, _MeshCall)
    origin = None if call.dest is None else call.dest.origin
    return None if origin is None else origin.ca_file


def _check_service(service: object) -> str:
    if not isinstance(service, str) or not service:
        raise ValueError(f"from_mesh: service must be a service name, got {service!r}")
    return service


class MeshTransport(_MeshDispatch, SeawallTransport):
    """A sync httpx transport applying mesh.yaml's policies as ``service``'s sidecar would.

    Args:
        config: a path to mesh.yaml, or a loaded :class:`~seawall.config.MeshConfig`.
        service: the calling service (one of the mesh's).
        transport: the transport that does the I/O. Default ``httpx.HTTPTransport()``.
        clock, sleep, async_sleep, rng: time and randomness, injected for tests.

    See :func:`from_mesh`.
    """

    def __init__(
        self,
        config: str | os.PathLike[str] | MeshConfig,
        *,
        service: str,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = MONOTONIC,
        sleep: Sleep = sync_sleep,
        async_sleep: AsyncSleep = async_sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._mesh = _Mesh(
            config,
            _check_service(service),
            clock=clock,
            sleep=sleep,
            asleep=async_sleep,
            rng=rng,
        )
        self._by_ca: dict[str, httpx.BaseTransport] = {}
        self._ca_lock = threading.Lock()
        super().__init__(transport, policies=self._mesh.policy, clock=clock)

    def __repr__(self) -> str:
        return f"MeshTransport(service={self._mesh.service!r}, mesh={self._mesh.config.mesh!r})"

    def _inner(self, call: _MeshCall) -> httpx.BaseTransport:
        """The transport of an attempt: the given one, or for an ``external:`` service
        with its own ``ca_file``, one that checks certificates against it."""
        ca_file = _ca_file(call)
        if ca_file is None:
            return self._transport
        with self._ca_lock:
            inner = self._by_ca.get(ca_file)
            if inner is None:
                inner = httpx.HTTPTransport(verify=ssl.create_default_context(cafile=ca_file))
                self._by_ca[ca_file] = inner
        return inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its destination's policy; see :func:`from_mesh`."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        return super().handle_request(request)

    def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt: an endpoint, the exchange, the outcome for outlier detection."""
        assert isinstance(call, _MeshCall)
        _close(call.take_earlier())
        endpoint = call.pick()
        try:
            response = self._inner(call).handle_request(call.attempt_request(endpoint))
        except Exception as exc:
            call.report(endpoint, exc)
            raise
        call.report(endpoint, response)
        return _keep(call, response)

    def close(self) -> None:
        """Close the inner transports and the hedges' threads."""
        self._mesh.close()
        for inner in self._by_ca.values():
            inner.close()
        super().close()


class AsyncMeshTransport(_MeshDispatch, AsyncSeawallTransport):
    """The asyncio twin of :class:`MeshTransport` (see :func:`async_from_mesh`)."""

    def __init__(
        self,
        config: str | os.PathLike[str] | MeshConfig,
        *,
        service: str,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = MONOTONIC,
        sleep: Sleep = sync_sleep,
        async_sleep: AsyncSleep = async_sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._mesh = _Mesh(
            config,
            _check_service(service),
            clock=clock,
            sleep=sleep,
            asleep=async_sleep,
            rng=rng,
        )
        self._by_ca: dict[str, httpx.AsyncBaseTransport] = {}
        self._ca_lock = threading.Lock()
        super().__init__(transport, policies=self._mesh.policy, clock=clock)

    def _inner(self, call: _MeshCall) -> httpx.AsyncBaseTransport:
        """The transport of an attempt (see :meth:`MeshTransport._inner`)."""
        ca_file = _ca_file(call)
        if ca_file is None:
            return self._transport
        with self._ca_lock:
            inner = self._by_ca.get(ca_file)
            if inner is None:
                context = ssl.create_default_context(cafile=ca_file)
                inner = httpx.AsyncHTTPTransport(verify=context)
                self._by_ca[ca_file] = inner
        return inner

    def __repr__(self) -> str:
        return (
            f"AsyncMeshTransport(service={self._mesh.service!r}, "
            f"mesh={self._mesh.config.mesh!r})"
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` through its destination's policy; see :func:`async_from_mesh`."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        return await super().handle_async_request(request)

    async def _attempt(self, call: _Call) -> httpx.Response:
        """One attempt: an endpoint, the exchange, the outcome for outlier detection."""
        assert isinstance(call, _MeshCall)
        await _aclose(call.take_earlier())
        endpoint = call.pick()
        try:
            response = await self._inner(call).handle_async_request(
                call.attempt_request(endpoint)
            )
        except Exception as exc:
            call.report(endpoint, exc)
            raise
        call.report(endpoint, response)
        return await _akeep(call, response)

    async def aclose(self) -> None:
        """Close the inner transports and the hedges' threads."""
        self._mesh.close()
        for inner in self._by_ca.values():
            await inner.aclose()
        await super().aclose()
