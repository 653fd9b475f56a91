"""The sidecar's side of the control plane: subscribe, persist, register, report, renew.

A :class:`ControlLink` runs beside the listeners of a sidecar started with
``--control``, on threads of the long-running sidecar process
(:mod:`seawall.proxy.linked`). It never sits on the request path: requests
are served from the runtime the sidecar already has, whether the control
plane is up or not (static stability). Its loops:

* **subscribe**: a long-poll of ``GET /v1/snapshot?known=<etag>&wait=30``;
  a new snapshot (config version + endpoint sets) is validated with the same
  schema as a file, applied atomically (no request sees half of it), and
  written to ``<state_dir>/snapshot.json`` (temporary file, fsync, rename), so
  a sidecar that restarts while the control plane is down comes up with its
  last good config and endpoints;
* **lease**: registers this instance (service, subset, address, inbound
  port) under a TTL lease and renews it at a third of the TTL; when the lease
  is gone (control plane restarted on a fresh store, long partition) it
  registers again; after each change it reports the config version it runs,
  the endpoints its outlier detection has ejected, and its certificate;
* **certificate**: renews the certificate at two thirds of its life, or at
  once when a snapshot changes the renewal token of its service (``"renew":
  {service: token}``: the control plane forced a certificate expiry on the
  service or lifted it, :mod:`seawall.control.cert_faults`); the private key
  stays in the state directory, only a CSR travels.

Every failure is retried with exponential backoff and full jitter (0.1 s,
doubling, capped at 5 s), moving to the next control-plane URL each time, so
sidecars fail over between replicas and a restarting control plane is not
stampeded.

This module is imported by the long-running process, so it stays light: no
asyncio (which imports ``ssl``: 10 MB), no HTTP library (each call goes
through the Rust core's client, :func:`seawall._native.control_call`, with the
GIL released), no config model, no ``random`` or ``dataclasses``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from .events import EventLog

__all__ = [
    "Answer",
    "apply_delta",
    "ControlClient",
    "ControlLink",
    "ControlRefused",
    "ControlUnavailable",
    "edge_states",
    "ejected_endpoints",
    "InstanceSpec",
    "LinkStatus",
    "load_snapshot",
    "merge_endpoints",
    "request_certificate",
    "save_snapshot",
]

SNAPSHOT_FILE = "snapshot.json"
POLL_WAIT = 30.0  # seconds the control plane may hold a subscription open
MIN_RENEWAL_INTERVAL = 1.0  # seconds between two certificate requests, at least
RECONNECT_BASE, RECONNECT_MAX = 0.1, 5.0  # full-jitter backoff between failed calls, seconds

Call = Callable[..., tuple[int, bytes]]
"""``control_call(method, url, *, headers, body, timeout) -> (status, body)``."""


def _log(message: str) -> None:
    sys.stderr.write(f"seawall sidecar [{os.getpid()}]: control: {message}\n")
    sys.stderr.flush()


def _uniform(high: float) -> float:
    """A uniform float in [0, high): jitter needs no seeded generator."""
    return high * (int.from_bytes(os.urandom(7), "big") / float(1 << 56))


def _query(params: Mapping[str, str]) -> str:
    """``?k=v&...`` with every byte outside RFC 3986's unreserved set percent-encoded."""
    safe = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")

    def enc(text: str) -> str:
        return "".join(chr(b) if b in safe else f"%{b:02X}" for b in text.encode("utf-8"))

    return "?" + "&".join(f"{enc(k)}={enc(v)}" for k, v in params.items()) if params else ""


def _error_of(raw: bytes, prefix: str = "") -> str:
    """The ``error`` of a JSON refusal, after ``prefix`` (``""`` if there is none)."""
    with contextlib.suppress(ValueError):
        decoded = json.loads(raw)
        if isinstance(decoded, dict) and "error" in decoded:
            return prefix + str(decoded["error"])[:500]
    return ""


class ControlUnavailable(Exception):
    """No control-plane replica answered (or it answered with a server error)."""


class ControlRefused(Exception):
    """The control plane answered with a client error: retrying will not help by itself."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Answer(NamedTuple):
    """A control-plane answer: status and whole body."""

    status: int
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class ControlClient:
    """HTTP calls to the control plane's API, failing over between replica URLs."""

    def __init__(
        self, urls: Sequence[str], token: str, *, timeout: float = 5.0, call: Call | None = None
    ) -> None:
        if not urls:
            raise ValueError("ControlClient: at least one control-plane URL is needed")
        if call is None:
            from .._native import control_call  # noqa: PLC0415 - the extension, loaded once

            call = control_call
        self.urls = [u.rstrip("/") for u in urls]
        self._index = 0
        self._timeout = timeout
        self._call = call
        # Never through a proxy: the sidecar's own HTTP_PROXY is for its app.
        self._headers = [("authorization", f"Bearer {token}")]

    @property
    def url(self) -> str:
        """The replica currently in use."""
        return self.urls[self._index]

    def fail_over(self) -> None:
        """Use the next replica from now on."""
        self._index = (self._index + 1) % len(self.urls)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Answer:
        """One API call; raises :class:`ControlUnavailable` or :class:`ControlRefused`."""
        url = self.url
        headers = self._headers
        data = b""
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers = [*headers, ("content-type", "application/json")]
        try:
            status, raw = self._call(
                method,
                url + path + _query(params or {}),
                headers=headers,
                body=data,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except (OSError, ValueError) as exc:  # TimeoutError is an OSError
            self.fail_over()
            raise ControlUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
        answer = Answer(status, raw)
        if status >= 500:
            self.fail_over()
            raise ControlUnavailable(f"{url}{path}: {status}{_error_of(raw, ': ')}")
        if status >= 400 and status != 404:
            message = _error_of(raw) or answer.text[:200]
            raise ControlRefused(status, f"{method} {path}: {message}")
        return answer

    def json(self, answer: Answer) -> dict[str, Any]:
        """A 2xx answer's JSON object (a malformed one counts as an unavailable replica)."""
        try:
            data = json.loads(answer.body)
        except ValueError as exc:
            self.fail_over()
            raise ControlUnavailable(f"{self.url}: answer is not JSON ({exc})") from None
        if not isinstance(data, dict):
            self.fail_over()
            raise ControlUnavailable(f"{self.url}: answer is not a JSON object")
        return data


PathLike = str | os.PathLike[str]


def save_snapshot(state_dir: PathLike, snapshot: dict[str, Any]) -> None:
    """Write the snapshot whole or not at all (temporary file, fsync, rename)."""
    os.makedirs(state_dir, exist_ok=True)
    path = os.path.join(state_dir, SNAPSHOT_FILE)
    tmp = os.path.join(state_dir, f".{SNAPSHOT_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(snapshot, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_snapshot(state_dir: PathLike) -> dict[str, Any] | None:
    """The last persisted snapshot, or ``None`` (none yet, or unreadable: said on stderr)."""
    path = os.path.join(state_dir, SNAPSHOT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log(f"ignoring unreadable {path}: {exc}")
        return None
    if not isinstance(data, dict) or "etag" not in data:
        _log(f"ignoring {path}: not a snapshot")
        return None
    return data


def _endpoint_order(entry: dict[str, Any]) -> tuple[str, int, str]:
    return (str(entry.get("address")), int(entry.get("port") or 0), str(entry.get("id")))


def apply_delta(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """The snapshot ``delta`` makes of ``base`` (see :mod:`seawall.control.snapshot`).

    Raises ``ValueError`` when the delta is not shaped as one; ``base`` is not
    modified.
    """
    changes = delta.get("changes")
    if not isinstance(changes, dict):
        raise ValueError("'changes' must be an object")
    old = base.get("endpoints") or {}
    if not isinstance(old, dict):
        raise ValueError("the base snapshot's 'endpoints' is not an object")
    endpoints: dict[str, Any] = dict(old)
    for service, change in changes.items():
        put, removed = (change or {}).get("put", []), (change or {}).get("removed", [])
        if not isinstance(put, list) or not isinstance(removed, list):
            raise ValueError(f"changes.{service}: 'put' and 'removed' must be lists")
        by_id = {str(e.get("id")): e for e in endpoints.get(service) or [] if isinstance(e, dict)}
        for gone in removed:
            by_id.pop(str(gone), None)
        for entry in put:
            if not isinstance(entry, dict) or "id" not in entry:
                raise ValueError(f"changes.{service}.put: an endpoint without an id: {entry!r}")
            by_id[str(entry["id"])] = entry
        if by_id:
            endpoints[service] = sorted(by_id.values(), key=_endpoint_order)
        else:
            endpoints.pop(service, None)
    snapshot = {
        "etag": delta["etag"],
        "config": delta["config"] if "config" in delta else base.get("config"),
        "endpoints": endpoints,
    }
    renew = delta["renew"] if "renew" in delta else base.get("renew")
    if renew:
        snapshot["renew"] = renew
    return snapshot


EndpointSets = dict[str, list[dict[str, Any]]]
"""``{service: [{"address", "port", "subset", "weight"}, ...]}``, as the core takes them."""


def merge_endpoints(static: Mapping[str, Sequence[dict[str, Any]]], raw: Any) -> EndpointSets:
    """Each service's endpoints: its static ones (from the config), then the registered ones.

    ``raw`` is a snapshot's ``endpoints`` (``{service: [instance, ...]}``); a
    registered instance at a static address is not added twice. Raises
    ``ValueError`` naming the first malformed entry.
    """
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError("snapshot.endpoints: must be an object")
    sets: EndpointSets = {}
    for name, fixed in static.items():
        merged = [dict(e) for e in fixed]
        seen = {(e["address"], e["port"]) for e in merged}
        for i, item in enumerate(raw.get(name) or []):
            try:
                address, port = str(item["address"]), int(item["port"])
                subset = item.get("subset")
                if subset is not None and not isinstance(subset, str):
                    raise ValueError(f"subset must be a string, got {subset!r}")
                if not 0 < port < 65536:
                    raise ValueError(f"port must be 1..65535, got {port}")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ValueError(f"snapshot.endpoints.{name}[{i}]: {exc}") from None
            if (address, port) not in seen:
                seen.add((address, port))
                merged.append({"address": address, "port": port, "subset": subset, "weight": 1})
        sets[name] = merged
    return sets


def ejected_endpoints(clusters: str) -> list[str]:
    """``address:port`` of every ejected endpoint in the core's ``/clusters`` document."""
    doc = json.loads(clusters)
    return [
        f"{ep['address']}:{ep['port']}"
        for cluster in doc["clusters"]
        for ep in cluster["endpoints"]
        if ep["ejected"]
    ]


def edge_states(clusters: str) -> dict[str, dict[str, Any]]:
    """Per outbound destination of the core's ``/clusters`` document: its breaker's
    state (``None``: no breaker) and its ejected endpoints (``address:port``)."""
    doc = json.loads(clusters)
    edges: dict[str, dict[str, Any]] = {}
    for cluster in doc["clusters"]:
        if cluster["name"].startswith("inbound:"):
            continue
        breaker = cluster.get("breaker")
        edges[cluster["name"]] = {
            "breaker": breaker["state"] if breaker else None,
            "ejected": [f"{ep['address']}:{ep['port']}" for ep in cluster["endpoints"]
                        if ep["ejected"]],
        }  # fmt: skip
    return edges


def request_certificate(client: ControlClient, csr_pem: bytes) -> dict[str, Any]:
    """Send a CSR; the answer has ``certificate`` and ``ca`` (PEM) and ``serial``."""
    answer = client.call("POST", "/v1/certificates", body={"csr": csr_pem.decode("ascii")})
    if answer.status != 200:
        raise ControlRefused(answer.status, answer.text[:200])
    data = client.json(answer)
    if "certificate" not in data or "ca" not in data:
        raise ControlUnavailable(f"{client.url}: certificate answer without PEMs")
    return data


class LinkStatus:
    """What the link knows, for the logs and the tests."""

    __slots__ = (
        "applied",
        "config_version",
        "connected",
        "etag",
        "last_error",
        "lease",
        "reported",
    )

    def __init__(self) -> None:
        self.etag: str | None = None
        self.config_version = 0
        self.lease: str | None = None
        self.connected = False
        self.last_error: str | None = None
        self.applied = 0  # snapshots applied since start
        self.reported: dict[str, Any] = {}


class Reconnect:
    """Backoff with full jitter between failed attempts of one loop; logged sparingly:
    ``control_plane_lost`` at the 1st failure and every 20th, ``control_plane_regained``
    at the success that ends a run of them."""

    def __init__(self, what: str, stop: threading.Event, log: EventLog) -> None:
        self.what = what
        self.stop = stop
        self.log = log
        self.failures = 0

    def failed(self, exc: Exception, status: LinkStatus) -> None:
        """Note a failure, then wait before the next try."""
        self.failures += 1
        status.connected = False
        status.last_error = str(exc)
        if self.failures == 1 or self.failures % 20 == 0:
            self.log.event(
                "control_plane_lost",
                limited=True,
                loop=self.what,
                error=str(exc),
                attempt=self.failures,
                message="serving with the last good config",
            )
        cap = min(RECONNECT_MAX, RECONNECT_BASE * 2.0 ** min(self.failures - 1, 30))
        self.stop.wait(_uniform(cap))

    def succeeded(self, url: str = "") -> bool:
        """Note a success; whether it ended a run of failures (then said, with ``url``)."""
        was, self.failures = self.failures, 0
        if was:
            self.log.event(
                "control_plane_regained", limited=True, loop=self.what, via=url, failures=was
            )
        return was > 0


class InstanceSpec(NamedTuple):
    """What this sidecar registers: its service instance, reachable at its inbound port."""

    id: str
    service: str
    address: str
    port: int
    subset: str | None = None
    metadata: Mapping[str, str] = {}


class ControlLink:
    """Keeps one sidecar in step with the control plane (see the module docstring).

    Its loops (:meth:`subscribe`, :meth:`keep_lease`, :meth:`keep_certificate`)
    each run on a thread of their own until :attr:`stop` is set; every wait
    ends as soon as it is.
    """

    def __init__(
        self,
        client: ControlClient,
        instance: InstanceSpec,
        state_dir: PathLike,
        *,
        apply: Callable[[dict[str, Any]], int],
        ejected: Callable[[], list[str]],
        certificate: Callable[[], tuple[str | None, float | None]] = lambda: (None, None),
        restart_needed: Callable[[], list[str]] = list,
        edges: Callable[[], dict[str, dict[str, Any]]] = dict,
        ttl: float = 10.0,
        stop: threading.Event | None = None,
        log: EventLog | None = None,
    ) -> None:
        """``apply(snapshot)`` validates and swaps in a snapshot, returning its config
        version (raising ``ValueError``, e.g. a ``ConfigError``, to refuse it);
        ``ejected()`` lists ``address:port`` endpoints ejected right now;
        ``certificate()`` gives the current certificate's (serial, not_after);
        ``restart_needed()`` the settings of the running config that wait for a
        restart (listener ports, workers); ``edges()`` each destination's breaker
        state and ejected endpoints (:func:`edge_states`)."""
        self.client = client
        self.instance = instance
        self.state_dir = state_dir
        self._apply = apply
        self._ejected = ejected
        self.certificate = certificate
        self._restart_needed = restart_needed
        self._edges = edges
        self.log = log or EventLog(instance.service)
        self.ttl = ttl
        # A renewal must fail over from a hung replica well within the lease's life.
        self.call_timeout = max(0.5, min(5.0, ttl / 4))
        self.stop = stop or threading.Event()
        self.status = LinkStatus()
        self._reported: dict[str, Any] | None = None
        self._report_now = threading.Event()
        self._lease_lock = threading.Lock()  # held around a lease call: deregister waits for it
        self._known: str | None = None  # the etag last received, applied or refused
        self._latest: dict[str, Any] | None = None  # that snapshot whole (a delta's base)
        self._renewal: str | None = None  # the renewal token of our service last seen
        self._renew_now = threading.Event()  # the control plane asked for a renewal

    # -- snapshots ----------------------------------------------------------

    def _renewal_of(self, snapshot: dict[str, Any]) -> str | None:
        """The snapshot's renewal token for this sidecar's service (``None``: none)."""
        renew = snapshot.get("renew")
        token = renew.get(self.instance.service) if isinstance(renew, dict) else None
        return token if isinstance(token, str) else None

    def note_renewal(self, snapshot: dict[str, Any]) -> bool:
        """Renew the certificate at once if ``snapshot`` changed our service's renewal
        token; whether it did. A snapshot without one (another replica, an older
        control plane) changes nothing."""
        token = self._renewal_of(snapshot)
        if token is None or token == self._renewal:
            return False
        self._renewal = token
        self._renew_now.set()
        return True

    @property
    def renewal_requested(self) -> bool:
        """Whether a renewal the control plane asked for is pending."""
        return self._renew_now.is_set()

    def adopt(self, snapshot: dict[str, Any], *, persist: bool) -> bool:
        """Apply ``snapshot``; persist it if asked and it was accepted. Returns success.
        A changed renewal token asks for a renewal either way."""
        self._known = str(snapshot.get("etag"))  # refused or not: do not fetch it again
        self._latest = snapshot
        self.note_renewal(snapshot)
        try:
            version = self._apply(snapshot)
        except Exception as exc:  # any problem in it: keep the running config
            self.log.message(
                f"snapshot {snapshot.get('etag')} refused, keeping the running config:\n{exc}",
                "config_rejected",
            )
            return False
        self.record(snapshot, version, persist=persist)
        return True

    def record(self, snapshot: dict[str, Any], version: int, *, persist: bool) -> None:
        """Note ``snapshot`` (config ``version``) as the one running; persist it if asked.

        Its renewal token is taken as known: the first snapshot comes with the
        certificate the sidecar started with (a later change renews, :meth:`adopt`)."""
        self._renewal = self._renewal_of(snapshot) or self._renewal
        if persist:
            try:
                save_snapshot(self.state_dir, snapshot)
            except OSError as exc:
                self.log.message(f"could not persist the snapshot: {exc}", "persist_failed")
        self.status.etag = self._known = str(snapshot.get("etag"))
        self._latest = snapshot
        self.status.config_version = version
        self.status.applied += 1
        self._report_now.set()

    def fetch(self, wait: float = 0.0) -> dict[str, Any] | None:
        """One subscription round: the new snapshot, or ``None`` if unchanged.

        With a snapshot in hand, it asks for a delta (``delta=1``) and applies
        it to that snapshot; a delta for another base (a replica that knows a
        different history) is dropped and the whole snapshot fetched instead.
        """
        base = self._latest
        known = self._known or ""
        params = {"known": known, "wait": f"{wait:g}"}
        if base is not None and str(base.get("etag")) == known:
            params["delta"] = "1"
        answer = self.client.call("GET", "/v1/snapshot", params=params, timeout=wait + 5.0)
        if answer.status == 304:
            return None
        if answer.status != 200:
            raise ControlRefused(answer.status, answer.text[:200])
        data = self.client.json(answer)
        if "etag" not in data:
            raise ControlUnavailable(f"{self.client.url}: a snapshot without an etag")
        if "base" in data:
            if base is None or data["base"] != known:
                self._known = self._latest = None  # ask for the whole snapshot next time
                raise ControlUnavailable(f"{self.client.url}: a delta for another snapshot")
            try:
                return apply_delta(base, data)
            except ValueError as exc:
                self._known = self._latest = None
                raise ControlUnavailable(f"{self.client.url}: a malformed delta: {exc}") from None
        return data

    def subscribe(self) -> None:
        """Follow the snapshot until :attr:`stop` is set."""
        retry = Reconnect("subscription", self.stop, self.log)
        while not self.stop.is_set():
            try:
                snapshot = self.fetch(POLL_WAIT)
            except Exception as exc:  # unavailable, refused, or a bug: log, back off, retry
                retry.failed(exc, self.status)
                continue
            retry.succeeded(self.client.url)
            self.status.connected = True
            if snapshot is not None and snapshot.get("config") is not None:
                if self.stop.is_set():
                    return
                self.adopt(snapshot, persist=True)

    # -- lease and reports --------------------------------------------------

    def register(self) -> str:
        """Register this instance; returns the lease."""
        inst = self.instance
        answer = self.client.call(
            "POST",
            "/v1/instances",
            body={
                "id": inst.id,
                "service": inst.service,
                "address": inst.address,
                "port": inst.port,
                "subset": inst.subset,
                "metadata": dict(inst.metadata),
                "ttl": self.ttl,
            },
        )
        if answer.status != 200:
            raise ControlRefused(answer.status, answer.text[:200])
        lease = self.client.json(answer).get("lease")
        if not isinstance(lease, str) or not lease:
            raise ControlUnavailable(f"{self.client.url}: registration answer without a lease")
        self.status.lease = lease
        self._reported = None  # a new lease has no status yet
        return lease

    def _report_body(self) -> dict[str, Any]:
        serial, expires = self.certificate()
        return {
            "id": self.instance.id,
            "service": self.instance.service,
            "config_version": self.status.config_version,
            "ejected": sorted(self._ejected()),
            "certificate_serial": serial,
            "certificate_expires": expires,
            "restart_needed": self._restart_needed(),
            "edges": self._edges(),
        }

    def _renew(self, lease: str) -> bool:
        """Keep the lease alive and report if anything changed; ``False`` if it is gone."""
        timeout = self.call_timeout
        answer = self.client.call("PUT", f"/v1/leases/{lease}", timeout=timeout)
        if answer.status == 404:
            return False
        body = self._report_body()
        if body != self._reported:
            answer = self.client.call(
                "PUT", f"/v1/leases/{lease}/status", body=body, timeout=timeout
            )
            if answer.status == 404:
                return False
            self._reported = body
            self.status.reported = body
        return True

    def _lease_round(self, lease: str | None) -> str | None:
        """Register if needed, then renew and report: the lease, or ``None`` if it was lost."""
        with self._lease_lock:
            if self.stop.is_set():  # stopping: never register again
                return lease
            if lease is None:
                lease = self.register()
            if not self._renew(lease):
                self.log.message("lease expired; registering again", "lease_expired")
                return None
            return lease

    def keep_lease(self) -> None:
        """Register, then renew at a third of the TTL (or at once after a change), until stopped."""
        retry = Reconnect("lease", self.stop, self.log)
        lease: str | None = None
        while not self.stop.is_set():
            self._report_now.clear()  # before the calls: a change during them is not lost
            try:
                lease = self._lease_round(lease)
            except Exception as exc:  # unavailable, refused, or a bug: log, back off, retry
                retry.failed(exc, self.status)
                continue
            if lease is None:
                continue
            retry.succeeded(self.client.url)
            # Sleep a third of the TTL, waking early when there is something to report.
            deadline = time.monotonic() + self.ttl / 3
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self._report_now.wait(min(left, 1.0)):
                    break
                if self._reported is not None and self._report_body() != self._reported:
                    break

    def deregister(self) -> None:
        """Stop the loops' lease calls, then revoke the lease now (a clean shutdown leaves
        every endpoint set at once, not at lease expiry)."""
        self.stop.set()
        with self._lease_lock:  # a registration in flight finishes first
            lease = self.status.lease
        if lease is None:
            return
        with contextlib.suppress(ControlUnavailable, ControlRefused):
            self.client.call("DELETE", f"/v1/leases/{lease}", timeout=2.0)

    # -- certificates -------------------------------------------------------

    def keep_certificate(
        self, renew_at: Callable[[], float | None], renew: Callable[[], str]
    ) -> None:
        """Renew the certificate at two thirds of its life, or at once when the control
        plane asks (:meth:`note_renewal`), until stopped.

        ``renew_at()`` is the wall-clock time to renew the current certificate
        (``None``: there is none); ``renew()`` gets and installs a new one,
        returning its serial. Certificates are wall-clock objects; the wait
        itself is measured on the monotonic clock, in steps of at most a
        second (as the lease loop's), to see :attr:`stop` and a renewal asked for.
        """
        retry = Reconnect("certificate", self.stop, self.log)
        while not self.stop.is_set():
            due = renew_at()
            asked = self._renew_now.is_set()
            if not asked and due is not None and due > time.time():
                self._renew_now.wait(min(due - time.time(), 1.0))
                continue
            self._renew_now.clear()  # before the call: a request during it renews again
            try:
                serial = renew()
            except Exception as exc:  # unavailable, refused, a bad certificate: retry
                if asked:  # the control plane's request still stands
                    self._renew_now.set()
                retry.failed(exc, self.status)
                continue
            retry.succeeded(self.client.url)
            self._report_now.set()
            self.log.event("certificate_rotated", serial=serial)
            # Never renew in a tight loop, even if the new certificate's renewal
            # time has already passed (a very short lifetime, a skewed clock).
            self.stop.wait(MIN_RENEWAL_INTERVAL)

    def start(self, *loops: Callable[[], None]) -> list[threading.Thread]:
        """Run each loop on a daemon thread of its own."""
        threads = [
            threading.Thread(target=loop, name=f"control-{loop.__name__}", daemon=True)
            for loop in loops
        ]
        for thread in threads:
            thread.start()
        return threads
