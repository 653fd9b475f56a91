"""The control plane's HTTP JSON API: routes, their handlers, and the OpenAPI document.

Every route is declared once in :data:`ROUTES` (method, path, who may call
it, summary, body schema, answers); the router and ``GET /v1/openapi.json``
are both built from that list, so the document cannot drift from the server.

Who may call what:

* reads (config, status, services, the CA certificate, the OpenAPI document)
  need no token: they reveal nothing secret and are served on loopback by
  default;
* writes of the mesh's shape (apply a config, mint a join token) need the
  **admin token**;
* what a sidecar does (subscribe, register, renew its lease, report, get a
  certificate) needs the **join token** of its service (the admin token also
  works, for tools and tests);
* chaos faults (force a certificate expiry, lift it, list them) need the
  **admin token**: they are an operator's experiment on the mesh
  (:mod:`seawall.control.cert_faults`).

Tokens travel as ``Authorization: Bearer <token>``. Every refusal is a JSON
object ``{"error": "..."}`` saying what was wrong; an invalid config is a 422
listing every problem with its path, and nothing is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

from ..config import (
    INSTANCE_ID_RULE,
    NAME_RULE,
    ConfigError,
    MeshConfig,
    instance_service,
    is_name,
    load_mesh,
)
from ..config.report import issue_to_dict
from ..config.units import parse_duration
from .ca import ForeignNameError, csr_key_id
from .cert_faults import MAX_TTL as MAX_FAULT_TTL
from .cert_faults import MIN_TTL as MIN_FAULT_TTL
from .cert_faults import CertFault, CertFaults, RenewalBlockedError
from .snapshot import Publisher, Snapshot, SplitOverride, services_view, status_view
from .store import ConfigRecord, Instance, InstanceConflict, SidecarStatus, Store, StoreError
from .tokens import Tokens

__all__ = ["ROUTES", "Answer", "ApiError", "ControlAPI", "Issuer", "openapi_document"]

MAX_BODY = 4 * 1024 * 1024  # a mesh config of thousands of services fits
MAX_WAIT = 60.0  # longest long-poll; sidecars ask for 30 s
DEFAULT_TTL = 10.0  # instance lease, seconds; sidecars renew at a third of it
MAX_TTL = 300.0
BATCH_INTERVAL = 0.1
"""Registry changes reach subscribers in batches at most this often (seconds)..."""
FANOUT_COST = 0.001
"""... and, with many subscribers, at most every ``subscribers * FANOUT_COST`` seconds
(up to a second): a batch costs every subscriber an answer and a new request, so the
interval grows with them and the fan-out never takes more than a share of the loop."""
WAKE_CHUNK = 8
WAKE_SPACING = 0.001
"""Subscribers are woken ``WAKE_CHUNK`` at a time, ``WAKE_SPACING`` seconds apart (500 in
about 60 ms): a fan-out is spread out, and other calls are served between chunks instead
of queueing behind hundreds of answers."""
_INSTANCE_ID_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_BREAKER_STATES = {"closed", "open", "half_open", "disabled", "forced_open", "metrics_only"}


def _edge_problems(edges: Any) -> list[str]:
    """What is wrong with a report's ``edges`` (empty: nothing)."""
    if not isinstance(edges, dict) or len(edges) > 10_000:
        return ["body.edges: must be an object of at most 10000 destinations"]
    problems = []
    for name, edge in edges.items():
        at = f"body.edges.{name}"
        if not isinstance(edge, dict):
            problems.append(f"{at}: must be an object, got {repr(edge)[:200]}")
            continue
        breaker, ejected = edge.get("breaker"), edge.get("ejected", [])
        if breaker is not None and breaker not in _BREAKER_STATES:
            got = repr(breaker)[:200]
            problems.append(f"{at}.breaker: must be a breaker state or null, got {got}")
        if not isinstance(ejected, list) or not all(isinstance(e, str) for e in ejected):
            got = repr(ejected)[:200]
            problems.append(f"{at}.ejected: must be a list of 'address:port', got {got}")
    return problems[:20]


class ApiError(Exception):
    """A request the API refuses: its status and what was wrong."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


class Issuer(Protocol):
    """Signs a CSR: (CSR PEM, service, trust domain, lifetime in seconds or ``None`` for
    the normal one) -> the issued certificate's JSON answer."""

    def __call__(
        self, csr: bytes, service: str, trust_domain: str, ttl: float | None = None, /
    ) -> Awaitable[dict[str, Any]]: ...


_JSON = {"Content-Type": "application/json", "Cache-Control": "no-store"}
_PEM = {"Content-Type": "application/x-pem-file", "Cache-Control": "no-store"}
_UNAUTHORIZED = {**_JSON, "WWW-Authenticate": 'Bearer realm="seawall"'}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the API answers one request with: the HTTP server sends it as it is."""

    status: int
    body: bytes  # empty for 204 and 304
    headers: dict[str, str]  # Content-Type, Cache-Control (and WWW-Authenticate on a 401)


@dataclass(slots=True)
class Call:
    """One parsed API request, as handlers see it."""

    method: str
    path: str
    params: dict[str, str]  # from the path template
    query: dict[str, str]
    body: bytes
    token: str | None
    caller: str  # "admin", "join:<service>" or "anonymous"
    revoked: str | None = None  # a join token of this service, since revoked

    def json(self) -> dict[str, Any]:
        """The body as a JSON object (400 if it is not one)."""
        try:
            data = json.loads(self.body or b"null", parse_constant=_no_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"body: not valid JSON ({exc})") from None
        except RecursionError:
            raise ApiError(400, "body: JSON nested too deeply") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"body: must be a JSON object, got {type(data).__name__}")
        return data

    @property
    def service(self) -> str | None:
        """The service of the join token used, or ``None`` (admin or anonymous)."""
        return self.caller[5:] if self.caller.startswith("join:") else None


@dataclass(frozen=True, slots=True)
class Route:
    """One API operation: the single source of the router and the OpenAPI document."""

    method: str
    path: str  # with {param} placeholders
    auth: str  # "none" | "admin" | "join" (join token of a service, or admin)
    handler: str  # name of the ControlAPI method
    summary: str
    body: dict[str, Any] | None = None  # JSON schema of the request body
    answers: dict[int, str] = field(default_factory=dict)
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)

    def pattern(self) -> re.Pattern[str]:
        """The path as a regular expression with named groups."""
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


_INSTANCE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "service", "address", "port"],
    "properties": {
        "id": {"type": "string", "pattern": _INSTANCE_ID_PATTERN},
        "service": {"type": "string"},
        "address": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "subset": {"type": ["string", "null"]},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "ttl": {"type": "number", "minimum": 1, "maximum": MAX_TTL, "default": DEFAULT_TTL},
    },
    "additionalProperties": False,
}

_FAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "ttl"],
    "properties": {
        "service": {"type": "string", "description": "a service of the applied config"},
        "ttl": {
            "type": "number",
            "minimum": MIN_FAULT_TTL,
            "maximum": MAX_FAULT_TTL,
            "description": "lifetime of the certificates issued under the fault, seconds",
        },
        "block_renewal": {
            "type": "boolean",
            "default": False,
            "description": "refuse each sidecar's CSRs after its one short-lived certificate",
        },
    },
    "additionalProperties": False,
}

ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/openapi.json", "none", "openapi", "This document.", answers={200: "OpenAPI"}),
    Route(
        "GET",
        "/v1/health",
        "none",
        "health",
        "Liveness of this replica: config version, etag, subscriptions waiting.",
        answers={200: "{ok, config_version, etag, subscribers}"},
    ),
    Route(
        "PUT",
        "/v1/config",
        "admin",
        "apply",
        "Validate and store a mesh config (YAML or JSON text) as the next version.",
        body={"type": "string", "description": "mesh.yaml text"},
        answers={
            200: "stored (or unchanged: same digest); {version, digest, changed}",
            422: "invalid: {error, errors: [{path, message, value, line}]}; nothing stored",
        },
    ),
    Route(
        "GET",
        "/v1/config",
        "none",
        "get_config",
        "The current config version, digest and document.",
        answers={200: "{version, digest, applied_at, config}", 404: "nothing applied yet"},
    ),
    Route(
        "GET",
        "/v1/snapshot",
        "join",
        "subscribe",
        "What sidecars subscribe to: config and endpoint sets (long-poll).",
        query=(
            ("known", "string", "etag the caller has; the answer waits until it changes"),
            ("wait", "number", f"seconds to wait for a change (at most {MAX_WAIT:g})"),
        ),
        answers={
            200: "{etag, config, endpoints, renew: {service: token} once a chaos fault was "
            "forced: a sidecar renews its certificate at once when its service's changes}",
            304: "no change within `wait`",
        },
    ),
    Route(
        "POST",
        "/v1/instances",
        "join",
        "register",
        "Register an instance of the token's service under a TTL lease.",
        body=_INSTANCE_SCHEMA,
        answers={200: "{lease, ttl}", 403: "token of another service", 422: "invalid"},
    ),
    Route(
        "PUT",
        "/v1/leases/{lease}",
        "join",
        "keepalive",
        "Renew a lease for its full TTL.",
        answers={200: "{lease}", 404: "unknown or expired: register again"},
    ),
    Route(
        "DELETE",
        "/v1/leases/{lease}",
        "join",
        "deregister",
        "Revoke a lease: its instance leaves every endpoint set now.",
        answers={204: "revoked"},
    ),
    Route(
        "PUT",
        "/v1/leases/{lease}/status",
        "join",
        "report",
        "A sidecar's report: the config version it runs, the endpoints it ejected.",
        body={
            "type": "object",
            "required": ["id", "config_version"],
            "properties": {
                "id": {"type": "string"},
                "config_version": {"type": "integer", "minimum": 0},
                "ejected": {"type": "array", "items": {"type": "string"}},
                "certificate_serial": {"type": ["string", "null"]},
                "certificate_expires": {"type": ["number", "null"]},
                "restart_needed": {"type": "array", "items": {"type": "string"}},
                "edges": {
                    "type": "object",
                    "description": "per destination: {breaker: state or null, ejected: [...]}",
                },
            },
        },
        answers={200: "stored", 404: "lease gone: register again"},
    ),
    Route(
        "GET",
        "/v1/services",
        "none",
        "services",
        "Every registered instance with its health.",
        answers={200: "{instances: [...]}"},
    ),
    Route(
        "GET",
        "/v1/status",
        "none",
        "status",
        "The current config version and every sidecar's, laggards marked; every progressive "
        "split's rollout: its phase, weights, the step's figures and its decisions.",
        answers={200: "{config_version, digest, sidecars: [...], rollouts: [...]}"},
    ),
    Route(
        "GET",
        "/v1/slos",
        "none",
        "slos",
        "Every SLO's last evaluation (SLI, budget left, burn rates, time to exhaustion) and "
        "the alerts pending or firing, from the sidecars' metrics this replica scrapes.",
        answers={200: "{evaluated_at, objectives: [...], alerts: [...], pages, ...}"},
    ),
    Route(
        "GET",
        "/v1/slos/{name}/history",
        "none",
        "slo_history",
        "How an objective's budget was spent over its period: per step (query `step`, a "
        "duration; by default a day, or an hour for a period of two days or less), its "
        "requests, bad ones, burn rate and the budget left at its end; query `since` (Unix "
        "seconds): only the rows from then on.",
        answers={200: "{name, target, now, rows: [...]}", 400: "bad step", 404: "no such"},
    ),
    Route(
        "POST",
        "/v1/certificates",
        "join",
        "certificate",
        "Sign a sidecar's CSR: a short-lived certificate for the token's service.",
        body={
            "type": "object",
            "required": ["csr"],
            "properties": {"csr": {"type": "string", "description": "PEM"}},
        },
        answers={
            200: "{certificate, ca, spiffe_id, serial, not_after}",
            422: "bad CSR",
            503: "a chaos fault blocks this sidecar's renewals (POST /v1/chaos/certificates)",
        },
    ),
    Route("GET", "/v1/ca", "none", "ca", "The mesh CA certificate (PEM).", answers={200: "PEM"}),
    Route(
        "POST",
        "/v1/join-tokens",
        "admin",
        "join_token",
        "Mint the join token of a service.",
        body={
            "type": "object",
            "required": ["service"],
            "properties": {"service": {"type": "string"}},
        },
        answers={200: "{service, token, generation}", 422: "not a service name"},
    ),
    Route(
        "POST",
        "/v1/join-tokens/{service}/revoke",
        "admin",
        "revoke",
        "Revoke the service's join token: every instance of it is deregistered at once, "
        "and only the new token (returned) works from now on.",
        answers={200: "{service, generation, deregistered, token}"},
    ),
    Route(
        "POST",
        "/v1/chaos/certificates",
        "admin",
        "force_cert_expiry",
        "Chaos: force a certificate expiry on a service. From now on its certificates live "
        "`ttl` seconds and its sidecars renew at once; with `block_renewal`, each sidecar "
        "gets that one short-lived certificate and its later CSRs are refused (503), so the "
        "certificate expires on the wire. Kept in this replica's memory: a restart lifts it.",
        body=_FAULT_SCHEMA,
        answers={
            200: "the fault as stored: {service, ttl, block_renewal, since}",
            404: "no such service in the applied config",
            409: "no config applied yet",
            422: "invalid body (names the field)",
        },
    ),
    Route(
        "GET",
        "/v1/chaos/certificates",
        "admin",
        "list_cert_faults",
        "Chaos: the forced certificate expiries in force on this replica.",
        answers={200: "{faults: [{service, ttl, block_renewal, since}, ...]}"},
    ),
    Route(
        "DELETE",
        "/v1/chaos/certificates/{service}",
        "admin",
        "lift_cert_expiry",
        "Chaos: lift a forced certificate expiry: the normal lifetime again, signing allowed "
        "again, and the service's sidecars renew at once. Idempotent.",
        answers={200: "{service, lifted: the fault lifted, or null if none was in force}"},
    ),
)


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "operationId": r.handler,
            "summary": r.summary,
            "responses": {str(code): {"description": text} for code, text in r.answers.items()},
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", r.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
            for n, t, d in r.query
        ]
        if params:
            op["parameters"] = params
        if r.body is not None:
            ctype = "application/yaml" if r.body.get("type") == "string" else "application/json"
            op["requestBody"] = {"required": True, "content": {ctype: {"schema": r.body}}}
        if r.auth != "none":
            op["security"] = [{"bearer": []}]
            op["responses"].setdefault("401", {"description": "no or wrong token"})
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "seawall control plane", "version": "1"},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


class ControlAPI:
    """The API's state and handlers; :class:`~seawall.control.http_server.HttpServer`
    serves them (:meth:`answer` is the whole interface, with no HTTP library in it)."""

    def __init__(
        self,
        store: Store,
        tokens: Tokens,
        issuer: Issuer,
        ca_pem: Callable[[], bytes],
        *,
        wall: Callable[[], float] = time.time,
        batch_interval: float = BATCH_INTERVAL,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self._issuer = issuer
        self._ca_pem = ca_pem
        self._wall = wall
        self._routes = [(r, r.pattern()) for r in ROUTES]
        self._openapi = json.dumps(openapi_document(), indent=2).encode()
        self.config: ConfigRecord | None = None
        self.mesh: MeshConfig | None = None
        self.registry = store.registry
        self.publisher = Publisher(store.registry)
        self.generations: dict[str, int] = {}  # join-token generation per revoked service
        self.batch_interval = batch_interval
        self._waiters: set[asyncio.Future[None]] = set()
        self._readers: list[asyncio.Future[None]] = []  # plain reads waiting for a publish
        self._identities: dict[str, tuple[str, int]] = {}  # join tokens already verified
        self._refreshing = asyncio.Lock()
        self._last_publish = -math.inf
        self._publish_timer: asyncio.TimerHandle | None = None
        self.subscribers = 0  # long-polls waiting right now
        self.publishes = 0  # snapshots published (etag changes) since start
        self.closing = False  # stopping: long-polls answer at once
        self.slo_report: Callable[[], dict[str, Any]] | None = None  # the SLO monitor's
        self.slo_history_of: (
            Callable[[str, float | None, float | None], dict[str, Any] | None] | None
        ) = None
        self.rollouts_view: Callable[[], list[dict[str, Any]]] | None = None  # the canaries'
        self.cert_faults = CertFaults()  # chaos: forced certificate expiries (in memory)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot subscribers are being sent."""
        return self.publisher.current

    # -- state --------------------------------------------------------------

    async def refresh(self) -> None:
        """Catch up with the store: the config, token generations, and the registry's changes.

        The config is read whole only when its version or digest changed, and
        a config older than the one already pushed is never pushed again (a
        slow read racing a newer one). Registry changes are already in the
        store's in-memory registry; they are published in batches (see
        :meth:`registry_changed`). Refreshes run one at a time.
        """
        async with self._refreshing:
            head = await self.store.config_head()
            old = self.config
            if head is not None and (old is None or head != (old.version, old.digest)):
                config = await self.store.current_config()
                if config is not None and (old is None or config.version >= old.version):
                    if old is None or config.digest != old.digest:
                        self.mesh = MeshConfig.model_validate_json(config.document)
                        self.publisher.set_config(config, json.loads(config.document))
                    else:
                        self.publisher.set_config(config, None)
                    self.config = config
            self.generations = await self.store.token_generations()
            if self.publisher.pending():
                config_changed = self.config is not old
                self.registry_changed(now=config_changed)

    def registry_changed(self, *, now: bool = False) -> None:
        """Publish what changed: at once if ``now`` or the last publish is older than the
        batching interval, else when that interval is over (one publish per batch)."""
        loop = asyncio.get_running_loop()
        interval = max(self.batch_interval, min(1.0, self.subscribers * FANOUT_COST))
        due = self._last_publish + interval
        if now or loop.time() >= due:
            self._publish()
        elif self._publish_timer is None:
            self._publish_timer = loop.call_at(due, self._publish)

    def _publish(self) -> None:
        if self._publish_timer is not None:
            self._publish_timer.cancel()
            self._publish_timer = None
        self._last_publish = asyncio.get_running_loop().time()
        changed = self.publisher.publish()
        readers, self._readers = self._readers, []
        for reader in readers:
            if not reader.done():
                reader.set_result(None)
        if changed:
            self.publishes += 1
            waiters, self._waiters = self._waiters, set()
            self._wake(list(waiters))

    def _wake(self, waiters: list[asyncio.Future[None]]) -> None:
        """Wake ``waiters`` a chunk at a time, spaced out (calls are served in between)."""
        for waiter in waiters[:WAKE_CHUNK]:
            if not waiter.done():
                waiter.set_result(None)
        if len(waiters) > WAKE_CHUNK:
            asyncio.get_running_loop().call_later(WAKE_SPACING, self._wake, waiters[WAKE_CHUNK:])

    def set_splits(self, overrides: Sequence[SplitOverride]) -> None:
        """Push these effective splits (the canary controller's weights) at once, as a
        new snapshot of the same config version (:meth:`Publisher.set_splits`)."""
        if self.publisher.set_splits(overrides):
            self.registry_changed(now=True)

    def close(self) -> None:
        """The server is stopping: answer every long-poll now (what is pending is published
        first), and from now on answer long-polls without waiting."""
        self.closing = True
        self._publish()
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def follow(self) -> None:
        """Refresh after every change the store reports (runs for the server's life).

        A failing store (etcd unreachable for a moment) is retried with backoff:
        this loop must outlive every blip, or the replica would stop seeing
        other replicas' applies and expiring leases.
        """
        failures = 0
        while True:
            try:
                async for _ in self.store.changes():
                    await self.refresh()
                    failures = 0
                return  # the store was closed
            except Exception as exc:  # logged, then retried
                failures += 1
                delay = min(5.0, 0.1 * 2**failures)
                sys.stderr.write(f"seawall control: refresh failed ({exc}); retry in {delay:g}s\n")
                await asyncio.sleep(delay)

    # -- HTTP ---------------------------------------------------------------

    async def answer(
        self, method: str, target: str, authorization: Iterable[str], body: bytes
    ) -> Answer:
        """Answer one request: ``target`` as sent (path and query), ``authorization`` the
        request's Authorization values, ``body`` whole. Never raises: a refusal is an
        :class:`ApiError`'s JSON, a store failure a 503, a bug a 500 (logged)."""
        path, _, raw_query = target.partition("?")
        try:
            call = self._call(method, path, raw_query, authorization, body)
            status, result = await self._dispatch(call)
        except ApiError as exc:
            return self.refuse(exc.status, exc.message, **exc.extra)
        except StoreError as exc:  # nothing was changed: the caller may try again later
            sys.stderr.write(f"seawall control: {method} {path}: store unavailable: {exc}\n")
            return self.refuse(503, f"store unavailable: {exc}")
        except Exception as exc:  # a bug must answer, not leave the caller waiting
            message = f"internal error: {type(exc).__name__}: {exc}"
            sys.stderr.write(f"seawall control: {method} {path}: {message}\n")
            return self.refuse(500, message)
        if status in (204, 304) or result is None:
            return Answer(status, b"", _JSON)
        if isinstance(result, bytes):
            return Answer(status, result, _PEM if path == "/v1/ca" else _JSON)
        return Answer(status, json.dumps(result).encode(), _JSON)

    @staticmethod
    def refuse(status: int, message: str, **extra: Any) -> Answer:
        """The answer to a refused request: ``{"error": message, **extra}``."""
        body = json.dumps({"error": message, **extra}).encode()
        return Answer(status, body, _UNAUTHORIZED if status == 401 else _JSON)

    def _call(
        self, method: str, path: str, raw_query: str, authorization: Iterable[str], data: bytes
    ) -> Call:
        token = None
        for value in authorization:
            scheme, _, cred = value.partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                token = cred.strip()
        revoked = None
        if self.tokens.is_admin(token):
            caller = "admin"
        else:
            found = self._identities.get(token) if token else None
            if found is None:
                found = self.tokens.identify(token)
                if found is not None and token is not None:
                    if len(self._identities) >= 4096:
                        self._identities.clear()
                    self._identities[token] = found
            caller = "anonymous"
            if found is not None:
                service, generation = found
                if generation == self.generations.get(service, 0):
                    caller = f"join:{service}"
                else:
                    revoked = service
        query = {k: v[-1] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
        return Call(method, path, {}, query, data, token, caller, revoked)

    async def _dispatch(self, call: Call) -> tuple[int, Any]:
        allowed = []
        for route, pattern in self._routes:
            match = pattern.match(call.path)
            if match is None:
                continue
            allowed.append(route.method)
            head_of_get = route.method == "GET" and call.method == "HEAD"
            if route.method != call.method and not head_of_get:
                continue
            self._authorize(route, call)
            call.params = match.groupdict()
            handler: Callable[[Call], Awaitable[tuple[int, Any]]] = getattr(self, route.handler)
            return await handler(call)
        if allowed:
            raise ApiError(405, f"{call.method} {call.path}: use {' or '.join(allowed)}")
        raise ApiError(404, f"no such API path: {call.path} (see /v1/openapi.json)")

    @staticmethod
    def _authorize(route: Route, call: Call) -> None:
        if route.auth == "none" or call.caller == "admin":
            return
        if call.token is None:
            raise ApiError(401, "this operation needs a token: Authorization: Bearer <token>")
        if route.auth == "admin":
            raise ApiError(401 if call.caller == "anonymous" else 403, "needs the admin token")
        if call.revoked is not None:
            raise ApiError(
                401,
                f"this join token of {call.revoked!r} was revoked: mint a new one "
                f"(seawall certs token {call.revoked})",
            )
        if call.caller == "anonymous":
            raise ApiError(401, "token not recognised (neither the admin token nor a join token)")

    # -- handlers -----------------------------------------------------------

    async def openapi(self, call: Call) -> tuple[int, Any]:
        """GET /v1/openapi.json"""
        return 200, self._openapi

    async def health(self, call: Call) -> tuple[int, Any]:
        """GET /v1/health"""
        return 200, {
            "ok": True,
            "config_version": self.snapshot.config_version,
            "etag": self.snapshot.etag,
            "subscribers": self.subscribers,
            "instances": len(self.registry),
            "publishes": self.publishes,
        }

    async def apply(self, call: Call) -> tuple[int, Any]:
        """PUT /v1/config"""
        if not call.body.strip():
            raise ApiError(422, "body: empty; send the mesh.yaml text", errors=[])
        try:
            mesh = load_mesh(call.body)
        except ConfigError as exc:
            issues = [issue_to_dict(i) for i in exc.errors]
            raise ApiError(
                422, f"invalid config: {len(issues)} error(s); nothing applied", errors=issues
            ) from None
        before = self.config.version if self.config else 0
        record = await self.store.put_config(mesh.to_json(), mesh.digest())
        await self.refresh()
        return 200, {
            "version": record.version,
            "digest": record.digest,
            "changed": record.version != before,
        }

    async def get_config(self, call: Call) -> tuple[int, Any]:
        """GET /v1/config"""
        if self.config is None:
            raise ApiError(404, "no config applied yet: seawall apply -f mesh.yaml")
        c = self.config
        return 200, {
            "version": c.version,
            "digest": c.digest,
            "applied_at": c.applied_at,
            "config": json.loads(c.document),
        }

    async def subscribe(self, call: Call) -> tuple[int, Any]:
        """GET /v1/snapshot (long-poll; ``delta=1``: changes since ``known`` when possible)."""
        known = call.query.get("known", "")
        try:
            wait = min(MAX_WAIT, max(0.0, float(call.query.get("wait", "0"))))
        except ValueError:
            got = call.query["wait"]
            raise ApiError(400, f"query wait: must be a number of seconds, got {got!r}") from None
        if wait == 0 and self.publisher.pending():
            # A plain read gets what is pending as of the next publish (at most one batch
            # interval away), without forcing one: reads cannot defeat the batching.
            self.registry_changed()
            if self.publisher.pending():
                reader = asyncio.get_running_loop().create_future()
                self._readers.append(reader)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(2.0):
                        await reader
        if known == self.snapshot.etag and wait > 0 and not self.closing:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            self.subscribers += 1
            try:
                async with asyncio.timeout(wait):
                    await waiter
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(waiter)
                self.subscribers -= 1
        if known == self.snapshot.etag:
            return 304, None
        if known and call.query.get("delta") in ("1", "true"):
            delta = self.publisher.delta_body(known)
            if delta is not None:
                return 200, delta
        return 200, self.publisher.full_body()

    async def register(self, call: Call) -> tuple[int, Any]:
        """POST /v1/instances"""
        data = call.json()
        problems: list[str] = []
        unknown = sorted(set(data) - set(_INSTANCE_SCHEMA["properties"]))
        problems += [f"body.{key}: unknown field" for key in unknown]
        iid, service, address = data.get("id"), data.get("service"), data.get("address")
        port, subset, ttl = data.get("port"), data.get("subset"), data.get("ttl", DEFAULT_TTL)
        metadata = data.get("metadata") or {}
        if instance_service(iid) is None:
            problems.append(f"body.id: must be {INSTANCE_ID_RULE}, got {iid!r}")
        if not is_name(service):
            problems.append(f"body.service: must be a service name, {NAME_RULE}; got {service!r}")
        if not isinstance(address, str) or not address or len(address) > 255 or " " in address:
            problems.append(f"body.address: must be a host or IP address, got {address!r}")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            problems.append(f"body.port: must be an integer in 1..65535, got {port!r}")
        if subset is not None and not isinstance(subset, str):
            problems.append(f"body.subset: must be a string or null, got {subset!r}")
        if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 1 <= ttl <= MAX_TTL:
            problems.append(f"body.ttl: must be seconds in 1..{MAX_TTL:g}, got {ttl!r}")
        if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            problems.append(f"body.metadata: must map strings to strings, got {metadata!r}")
        if problems:
            raise ApiError(422, "; ".join(problems), errors=problems)
        assert isinstance(service, str)
        assert isinstance(iid, str)
        assert isinstance(address, str)
        assert isinstance(port, int)
        owner = instance_service(iid)
        if call.service is not None and call.service != service:
            raise ApiError(403, f"a join token of {call.service!r} cannot register {service!r}")
        if call.service is not None and owner != call.service:
            raise ApiError(
                403,
                f"body.id: {iid!r} is an instance of {owner!r}; a join token of "
                f"{call.service!r} registers ids {call.service + '.<suffix>'!r} only",
            )
        if owner != service:
            expected = service + ".<suffix>"
            raise ApiError(
                422, f"body.id: an instance of {service!r} must be {expected!r}, got {iid!r}"
            )
        mesh = self.mesh
        if mesh is None:
            raise ApiError(409, "no config applied yet: seawall apply -f mesh.yaml")
        if service not in mesh.services:
            raise ApiError(422, f"body.service: no service {service!r} in mesh {mesh.mesh!r}")
        subsets = mesh.services[service].subsets
        if subset is not None and subset not in subsets:
            known = ", ".join(subsets) or "none"
            raise ApiError(
                422, f"body.subset: {service!r} has no subset {subset!r} (subsets: {known})"
            )
        quota = mesh.services[service].max_instances
        if iid not in self.registry and self.registry.count(service) >= quota:
            raise ApiError(
                429,
                f"service {service!r} has {self.registry.count(service)} instances registered, "
                f"its quota (services.{service}.max_instances = {quota}): deregister some, "
                "or raise the quota in mesh.yaml",
            )
        instance = Instance(iid, service, address, port, subset, dict(metadata))
        try:
            lease = await self.store.register(instance, float(ttl))
        except InstanceConflict as exc:
            raise ApiError(409, f"body.id: {exc}") from None
        self.registry_changed()
        return 200, {"lease": self.tokens.lease_handle(lease, service, iid), "ttl": float(ttl)}

    def _lease(self, call: Call) -> tuple[int, str]:
        """(lease, instance id) from the path's lease handle, checked against the token."""
        handle = call.params["lease"]
        opened = self.tokens.open_lease_handle(handle, call.service)
        if opened is None:
            if self.tokens.open_lease_handle(handle, None) is None:
                raise ApiError(400, f"path: not a lease handle: {handle[:80]!r}")
            raise ApiError(403, f"this lease was not granted to {call.service!r}")
        return opened

    async def keepalive(self, call: Call) -> tuple[int, Any]:
        """PUT /v1/leases/{lease}"""
        lease, _ = self._lease(call)
        if not await self.store.keepalive(lease):
            raise ApiError(404, f"lease {lease} is unknown or expired: register again")
        return 200, {"lease": call.params["lease"]}

    async def deregister(self, call: Call) -> tuple[int, Any]:
        """DELETE /v1/leases/{lease}"""
        lease, _ = self._lease(call)
        await self.store.deregister(lease)
        self.registry_changed()
        return 204, None

    async def report(self, call: Call) -> tuple[int, Any]:
        """PUT /v1/leases/{lease}/status"""
        lease, owner = self._lease(call)
        data = call.json()
        iid, version = data.get("id", owner), data.get("config_version")
        ejected = data.get("ejected") or []
        serial, expires = data.get("certificate_serial"), data.get("certificate_expires")
        restart = data.get("restart_needed") or []
        edges = data.get("edges") or {}
        problems = []
        if iid != owner:
            problems.append(f"body.id: this lease belongs to {owner!r}, got {iid!r}")
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**63:
            problems.append(f"body.config_version: must be an integer >= 0, got {version!r}")
        if not isinstance(ejected, list) or not all(isinstance(e, str) for e in ejected):
            problems.append(f"body.ejected: must be a list of 'address:port', got {ejected!r}")
        if serial is not None and not isinstance(serial, str):
            problems.append(f"body.certificate_serial: must be a string, got {serial!r}")
        if expires is not None and (
            not isinstance(expires, (int, float)) or not 0 < expires < 1e11
        ):
            problems.append(f"body.certificate_expires: must be epoch seconds, got {expires!r}")
        if isinstance(ejected, list) and len(ejected) > 10_000:
            problems.append("body.ejected: more than 10000 endpoints")
        if (
            not isinstance(restart, list)
            or len(restart) > 100
            or not all(isinstance(r, str) and len(r) <= 512 for r in restart)
        ):
            problems.append(
                "body.restart_needed: must be a list of at most 100 strings "
                f"(512 characters each), got {str(restart)[:200]!r}"
            )
        problems += _edge_problems(edges)
        if problems:
            raise ApiError(422, "; ".join(problems), errors=problems)
        assert isinstance(version, int)
        service = call.service or str(data.get("service") or "")
        status = SidecarStatus(
            owner,
            service,
            version,
            tuple(ejected),
            self._wall(),
            serial,
            None if expires is None else float(expires),
            tuple(restart),
            edges,
        )
        if not await self.store.put_status(status, lease):
            raise ApiError(404, f"lease {lease} is unknown or expired: register again")
        return 200, {"stored": True}

    async def services(self, call: Call) -> tuple[int, Any]:
        """GET /v1/services"""
        statuses = await self.store.statuses()
        return 200, {"instances": services_view(self.registry.instances(), statuses)}

    async def status(self, call: Call) -> tuple[int, Any]:
        """GET /v1/status"""
        statuses = await self.store.statuses()
        view = status_view(self.config, statuses, self._wall(), self.registry.instances())
        view["rollouts"] = self.rollouts_view() if self.rollouts_view is not None else []
        return 200, view

    async def slos(self, call: Call) -> tuple[int, Any]:
        """GET /v1/slos"""
        if self.slo_report is None:
            return 200, {"evaluated_at": None, "objectives": [], "alerts": []}
        return 200, self.slo_report()

    async def slo_history(self, call: Call) -> tuple[int, Any]:
        """GET /v1/slos/{name}/history"""
        name = call.params["name"]
        step = None
        if "step" in call.query:
            try:
                step = parse_duration(call.query["step"])
            except ValueError as exc:
                raise ApiError(400, f"query.step: {exc}") from None
            if not 60 <= step <= 31 * 86_400:
                raise ApiError(
                    400, f"query.step: must be from 1m to 31d, got {call.query['step']!r}"
                )
        since = None
        if "since" in call.query:
            try:
                since = float(call.query["since"])
            except ValueError:
                since = math.nan
            if not math.isfinite(since):
                raise ApiError(400, f"query.since: Unix seconds, got {call.query['since']!r}")
        found = None if self.slo_history_of is None else self.slo_history_of(name, step, since)
        if found is None:
            raise ApiError(404, f"no objective {name!r} (seawall slo lists them)")
        return 200, found

    async def certificate(self, call: Call) -> tuple[int, Any]:
        """POST /v1/certificates"""
        data = call.json()
        csr = data.get("csr")
        if not isinstance(csr, str) or "BEGIN CERTIFICATE REQUEST" not in csr:
            raise ApiError(422, "body.csr: must be a PEM certificate signing request")
        named = data.get("service")
        if call.service is not None and named is not None and named != call.service:
            raise ApiError(
                403, f"a join token of {call.service!r} cannot ask for a certificate of {named!r}"
            )
        service = call.service or named
        if not isinstance(service, str) or not service:
            raise ApiError(422, "body.service: the admin token must name the service")
        mesh = self.mesh
        if mesh is None:
            raise ApiError(409, "no config applied yet: seawall apply -f mesh.yaml")
        if service not in mesh.services:
            raise ApiError(403, f"no service {service!r} in mesh {mesh.mesh!r}")
        pem, key = csr.encode(), ""
        try:
            if self.cert_faults.get(service) is not None:
                key = csr_key_id(pem)  # the faults count certificates per sidecar key
            ttl = self.cert_faults.admit(service, key)
        except RenewalBlockedError as exc:
            raise ApiError(503, str(exc)) from None
        except ValueError as exc:
            raise ApiError(422, f"body.csr: {exc}") from None
        signed = False
        try:
            answer = await self._issuer(pem, service, mesh.trust_domain, ttl)
            signed = True
        except ForeignNameError as exc:
            raise ApiError(403, f"body.csr: {exc}") from None
        except ValueError as exc:
            raise ApiError(422, f"body.csr: {exc}") from None
        finally:
            if not signed:  # the key may ask again under a fault that blocks renewals
                self.cert_faults.release(service, key)
        return 200, answer

    async def ca(self, call: Call) -> tuple[int, Any]:
        """GET /v1/ca"""
        return 200, self._ca_pem()

    async def join_token(self, call: Call) -> tuple[int, Any]:
        """POST /v1/join-tokens"""
        service = call.json().get("service")
        if not is_name(service):
            raise ApiError(
                422, f"body.service: must be a service name, {NAME_RULE}; got {service!r}"
            )
        assert isinstance(service, str)
        generation = self.generations.get(service, 0)
        return 200, {
            "service": service,
            "token": self.tokens.join_token(service, generation),
            "generation": generation,
        }

    async def revoke(self, call: Call) -> tuple[int, Any]:
        """POST /v1/join-tokens/{service}/revoke"""
        service = call.params["service"]
        if not is_name(service):
            raise ApiError(422, f"path: must be a service name, {NAME_RULE}; got {service!r}")
        generation, removed = await self.store.revoke_service(service)
        self.generations[service] = generation
        self.registry_changed(now=True)
        return 200, {
            "service": service,
            "generation": generation,
            "deregistered": removed,
            "token": self.tokens.join_token(service, generation),
        }

    # -- chaos --------------------------------------------------------------

    def _renewals_changed(self) -> None:
        """Push the faults' renewal tokens: the sidecars they name renew at once."""
        if self.publisher.set_renewals(self.cert_faults.renewals):
            self.registry_changed(now=True)

    async def force_cert_expiry(self, call: Call) -> tuple[int, Any]:
        """POST /v1/chaos/certificates"""
        data = call.json()
        problems = [
            f"body.{key}: unknown field"
            for key in sorted(set(data) - set(_FAULT_SCHEMA["properties"]))
        ]
        service, ttl = data.get("service"), data.get("ttl")
        block = data.get("block_renewal", False)
        if not is_name(service):
            problems.append(f"body.service: must be a service name, {NAME_RULE}; got {service!r}")
        if (
            not isinstance(ttl, (int, float))
            or isinstance(ttl, bool)
            or not math.isfinite(ttl)
            or not MIN_FAULT_TTL <= ttl <= MAX_FAULT_TTL
        ):
            problems.append(
                f"body.ttl: must be seconds in {MIN_FAULT_TTL:g}..{MAX_FAULT_TTL:g}, got {ttl!r}"
            )
        if not isinstance(block, bool):
            problems.append(f"body.block_renewal: must be true or false, got {block!r}")
        if problems:
            raise ApiError(422, "; ".join(problems), errors=problems)
        assert isinstance(service, str)
        assert isinstance(ttl, (int, float))
        mesh = self.mesh
        if mesh is None:
            raise ApiError(409, "no config applied yet: seawall apply -f mesh.yaml")
        if service not in mesh.services:
            known = ", ".join(sorted(mesh.services)) or "none"
            raise ApiError(
                404, f"body.service: no service {service!r} in mesh {mesh.mesh!r} ({known})"
            )
        fault = CertFault(service, float(ttl), block, self._wall())
        self.cert_faults.force(fault)
        self._renewals_changed()
        sys.stderr.write(
            f"seawall control: chaos: forced certificate expiry on {service!r} "
            f"(ttl {fault.ttl:g}s, block_renewal {str(block).lower()})\n"
        )
        return 200, fault.to_dict()

    async def list_cert_faults(self, call: Call) -> tuple[int, Any]:
        """GET /v1/chaos/certificates"""
        return 200, {"faults": [f.to_dict() for f in self.cert_faults.faults()]}

    async def lift_cert_expiry(self, call: Call) -> tuple[int, Any]:
        """DELETE /v1/chaos/certificates/{service}"""
        service = call.params["service"]
        if not is_name(service):
            raise ApiError(422, f"path: must be a service name, {NAME_RULE}; got {service!r}")
        fault = self.cert_faults.lift(service)
        if fault is not None:
            self._renewals_changed()
            sys.stderr.write(
                f"seawall control: chaos: lifted the certificate expiry on {service!r}\n"
            )
        return 200, {"service": service, "lifted": None if fault is None else fault.to_dict()}
