"""The sidecar's side of the control plane: subscribe, persist, register, report, renew.

A :class:`ControlLink` runs beside the listeners of a sidecar started with
``--control``. It never sits on the request path: requests are served from
the runtime the sidecar already has, whether the control plane is up or not
(static stability). Its loops:

* **subscribe**: a long-poll of ``GET /v1/snapshot?known=<etag>&wait=30``;
  a new snapshot (config version + endpoint sets) is validated with the same
  schema as a file, applied atomically through the sidecar's ``apply`` (no
  request sees half of it), and written to ``<state_dir>/snapshot.json``
  (temporary file, fsync, rename), so a sidecar that restarts while the
  control plane is down comes up with its last good config and endpoints;
* **lease**: registers this instance (service, subset, address, inbound
  port) under a TTL lease and renews it at a third of the TTL; when the lease
  is gone (control plane restarted on a fresh store, long partition) it
  registers again; after each change it reports the config version it runs,
  the endpoints its outlier detection has ejected, and its certificate;
* **certificate** (with an identity): asks for a certificate at start when
  it has none valid, then renews at two thirds of its life; the private key
  stays in the state directory, only a CSR travels.

Every failure is retried with exponential backoff and full jitter (0.1 s,
doubling, capped at 5 s), moving to the next control-plane URL each time, so
sidecars fail over between replicas and a restarting control plane is not
stampeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.names import instance_service, new_instance_id
from ..policy.backoff import backoff

if TYPE_CHECKING:
    import httpx

__all__ = [
    "apply_delta",
    "ControlClient",
    "ControlLink",
    "ControlUnavailable",
    "InstanceSpec",
    "LinkStatus",
    "load_snapshot",
    "save_snapshot",
]

SNAPSHOT_FILE = "snapshot.json"
INSTANCE_ID_FILE = "instance-id"
POLL_WAIT = 30.0  # seconds the control plane may hold a subscription open
MIN_RENEWAL_INTERVAL = 1.0  # seconds between two certificate requests, at least
_RECONNECT = backoff("full", base=0.1, max=5.0)


def _log(message: str) -> None:
    sys.stderr.write(f"seawall sidecar [{os.getpid()}]: control: {message}\n")
    sys.stderr.flush()


class ControlUnavailable(Exception):
    """No control-plane replica answered (or it answered with a server error)."""


class ControlRefused(Exception):
    """The control plane answered with a client error: retrying will not help by itself."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class ControlClient:
    """HTTP calls to the control plane's API, failing over between replica URLs."""

    def __init__(self, urls: Sequence[str], token: str, *, timeout: float = 5.0) -> None:
        import httpx  # noqa: PLC0415 - only sidecars with --control pay for it

        if not urls:
            raise ValueError("ControlClient: at least one control-plane URL is needed")
        self.urls = [u.rstrip("/") for u in urls]
        self._index = 0
        self._timeout = timeout
        # trust_env=False: the sidecar's own HTTP_PROXY (set for its app) must not apply.
        self._http = httpx.AsyncClient(
            timeout=timeout,
            trust_env=False,
            headers={"authorization": f"Bearer {token}"},
        )
        self._httpx = httpx

    @property
    def url(self) -> str:
        """The replica currently in use."""
        return self.urls[self._index]

    def fail_over(self) -> None:
        """Use the next replica from now on."""
        self._index = (self._index + 1) % len(self.urls)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a long-poll needs its own
    ) -> httpx.Response:
        """One API call; raises :class:`ControlUnavailable` or :class:`ControlRefused`."""
        url = self.url
        try:
            response = await self._http.request(
                method,
                url + path,
                json=body,
                params=params,
                timeout=timeout if timeout is not None else self._timeout,
            )
        except self._httpx.HTTPError as exc:
            self.fail_over()
            raise ControlUnavailable(f"{url}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 500:
            self.fail_over()
            raise ControlUnavailable(f"{url}{path}: {response.status_code}")
        if response.status_code >= 400 and response.status_code != 404:
            message = response.text[:200]
            with contextlib.suppress(ValueError):
                data = response.json()
                if isinstance(data, dict) and "error" in data:
                    message = str(data["error"])[:500]
            raise ControlRefused(response.status_code, f"{method} {path}: {message}")
        return response

    def json(self, response: httpx.Response) -> dict[str, Any]:
        """A 2xx answer's JSON object (a malformed one counts as an unavailable replica)."""
        try:
            data = response.json()
        except ValueError as exc:
            self.fail_over()
            raise ControlUnavailable(f"{self.url}: answer is not JSON ({exc})") from None
        if not isinstance(data, dict):
            self.fail_over()
            raise ControlUnavailable(f"{self.url}: answer is not a JSON object")
        return data

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()


def save_snapshot(state_dir: Path, snapshot: dict[str, Any]) -> None:
    """Write the snapshot whole or not at all (temporary file, fsync, rename)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SNAPSHOT_FILE
    tmp = path.with_name(f".{SNAPSHOT_FILE}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(snapshot, f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_snapshot(state_dir: Path) -> dict[str, Any] | None:
    """The last persisted snapshot, or ``None`` (none yet, or unreadable: said on stderr)."""
    path = state_dir / SNAPSHOT_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _log(f"ignoring unreadable {path}: {exc}")
        return None
    if not isinstance(data, dict) or "etag" not in data:
        _log(f"ignoring {path}: not a snapshot")
        return None
    return data


def instance_id(state_dir: Path, service: str) -> str:
    """This instance's id, kept across restarts (a restart replaces its registration)."""
    path = state_dir / INSTANCE_ID_FILE
    with contextlib.suppress(OSError):
        saved = path.read_text(encoding="ascii").strip()
        if instance_service(saved) == service:
            return saved  # an id of the older form ("<service>-<hex>") is replaced
    new = new_instance_id(service)
    state_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n", encoding="ascii")
    return new


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
    return {
        "etag": delta["etag"],
        "config": delta["config"] if "config" in delta else base.get("config"),
        "endpoints": endpoints,
    }


class Reconnect:
    """Backoff with full jitter between failed attempts of one loop; logged sparingly."""

    def __init__(self, what: str, rng: random.Random) -> None:
        self.what = what
        self.rng = rng
        self.failures = 0
        self._delay = 0.0

    async def failed(self, exc: Exception, status: LinkStatus) -> None:
        """Note a failure (the 1st and every 20th are logged), then wait before the next try."""
        self.failures += 1
        status.connected = False
        status.last_error = str(exc)
        if self.failures == 1 or self.failures % 20 == 0:
            _log(f"{self.what}: {exc} (attempt {self.failures}; serving with the last good config)")
        self._delay = _RECONNECT.delay(min(self.failures, 30), self._delay, self.rng)
        await asyncio.sleep(self._delay)

    def succeeded(self) -> bool:
        """Note a success; whether it ended a run of failures."""
        was, self.failures, self._delay = self.failures, 0, 0.0
        return was > 0


def _no_metadata() -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class InstanceSpec:
    """What this sidecar registers: its service instance, reachable at its inbound port."""

    id: str
    service: str
    address: str
    port: int
    subset: str | None = None
    metadata: dict[str, str] = field(default_factory=_no_metadata)


@dataclass(slots=True)
class LinkStatus:
    """What the link knows, for the admin endpoint and the tests."""

    etag: str | None = None
    config_version: int = 0
    lease: str | None = None
    connected: bool = False
    last_error: str | None = None
    applied: int = 0  # snapshots applied since start
    reported: dict[str, Any] = field(default_factory=dict)


class ControlLink:
    """Keeps one sidecar in step with the control plane (see the module docstring)."""

    def __init__(
        self,
        client: ControlClient,
        instance: InstanceSpec,
        state_dir: Path,
        *,
        apply: Callable[[dict[str, Any]], int],
        ejected: Callable[[], list[str]],
        certificate: Callable[[], tuple[str | None, float | None]] = lambda: (None, None),
        ttl: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        """``apply(snapshot)`` validates and swaps in a snapshot, returning its config
        version (raising ``ValueError``, e.g. a ``ConfigError``, to refuse it);
        ``ejected()`` lists ``address:port`` endpoints ejected right now;
        ``certificate()`` gives the current certificate's (serial, not_after)."""
        self.client = client
        self.instance = instance
        self.state_dir = state_dir
        self._apply = apply
        self._ejected = ejected
        self.certificate = certificate
        self.ttl = ttl
        # A renewal must fail over from a hung replica well within the lease's life.
        self._call_timeout = max(0.5, min(5.0, ttl / 4))
        self.rng = rng or random.Random()
        self.status = LinkStatus()
        self._reported: dict[str, Any] | None = None
        self._report_now = asyncio.Event()
        self._known: str | None = None  # the etag last received, applied or refused
        self._latest: dict[str, Any] | None = None  # that snapshot whole (a delta's base)

    # -- snapshots ----------------------------------------------------------

    def adopt(self, snapshot: dict[str, Any], *, persist: bool) -> bool:
        """Apply ``snapshot``; persist it if asked and it was accepted. Returns success."""
        self._known = str(snapshot.get("etag"))  # refused or not: do not fetch it again
        self._latest = snapshot
        try:
            version = self._apply(snapshot)
        except Exception as exc:  # any problem in it: keep the running config
            _log(f"snapshot {snapshot.get('etag')} refused, keeping the running config:\n{exc}")
            return False
        self.record(snapshot, version, persist=persist)
        return True

    def record(self, snapshot: dict[str, Any], version: int, *, persist: bool) -> None:
        """Note ``snapshot`` (config ``version``) as the one running; persist it if asked."""
        self.status.etag = self._known = str(snapshot.get("etag"))
        self._latest = snapshot
        self.status.config_version = version
        self.status.applied += 1
        if persist:
            try:
                save_snapshot(self.state_dir, snapshot)
            except OSError as exc:
                _log(f"could not persist the snapshot: {exc}")
        self._report_now.set()

    async def fetch(self, wait: float = 0.0) -> dict[str, Any] | None:
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
        response = await self.client.call("GET", "/v1/snapshot", params=params, timeout=wait + 5.0)
        if response.status_code == 304:
            return None
        if response.status_code != 200:
            raise ControlRefused(response.status_code, response.text[:200])
        data = self.client.json(response)
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

    async def subscribe(self) -> None:
        """Follow the snapshot forever (run as a task)."""
        retry = Reconnect("subscription", self.rng)
        while True:
            try:
                snapshot = await self.fetch(POLL_WAIT)
            except Exception as exc:  # unavailable, refused, or a bug: log, back off, retry
                await retry.failed(exc, self.status)
                continue
            if retry.succeeded():
                _log(f"subscribed again via {self.client.url}")
            self.status.connected = True
            if snapshot is not None and snapshot.get("config") is not None:
                self.adopt(snapshot, persist=True)

    # -- lease and reports --------------------------------------------------

    async def register(self) -> str:
        """Register this instance; returns the lease."""
        inst = self.instance
        response = await self.client.call(
            "POST",
            "/v1/instances",
            body={
                "id": inst.id,
                "service": inst.service,
                "address": inst.address,
                "port": inst.port,
                "subset": inst.subset,
                "metadata": inst.metadata,
                "ttl": self.ttl,
            },
        )
        if response.status_code != 200:
            raise ControlRefused(response.status_code, response.text[:200])
        lease = self.client.json(response).get("lease")
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
        }

    async def _renew(self, lease: str) -> bool:
        """Keep the lease alive and report if anything changed; ``False`` if it is gone."""
        timeout = self._call_timeout
        response = await self.client.call("PUT", f"/v1/leases/{lease}", timeout=timeout)
        if response.status_code == 404:
            return False
        body = self._report_body()
        if body != self._reported:
            response = await self.client.call(
                "PUT", f"/v1/leases/{lease}/status", body=body, timeout=timeout
            )
            if response.status_code == 404:
                return False
            self._reported = body
            self.status.reported = body
        return True

    async def keep_lease(self) -> None:
        """Register, then renew at a third of the TTL (or at once after a change); forever."""
        retry = Reconnect("lease", self.rng)
        lease: str | None = None
        loop = asyncio.get_running_loop()
        while True:
            self._report_now.clear()  # before the calls: a change during them is not lost
            try:
                if lease is None:
                    lease = await self.register()
                if not await self._renew(lease):
                    _log("lease expired; registering again")
                    lease = None
                    continue
            except Exception as exc:  # unavailable, refused, or a bug: log, back off, retry
                await retry.failed(exc, self.status)
                continue
            retry.succeeded()
            # Sleep a third of the TTL, waking early when there is something to report.
            deadline = loop.time() + self.ttl / 3
            while not self._report_now.is_set():
                left = deadline - loop.time()
                if left <= 0:
                    break
                # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a
                # cancellation that lands as the event is set, and the sidecar would
                # go on renewing its lease after SIGTERM.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, 1.0)):
                        await self._report_now.wait()
                if self._reported is not None and self._report_body() != self._reported:
                    break

    async def deregister(self) -> None:
        """Revoke the lease now (a clean shutdown leaves every endpoint set at once)."""
        lease = self.status.lease
        if lease is None:
            return
        with contextlib.suppress(ControlUnavailable, ControlRefused):
            await self.client.call("DELETE", f"/v1/leases/{lease}", timeout=2.0)

    # -- certificates -------------------------------------------------------

    async def request_certificate(self, csr_pem: bytes) -> dict[str, Any]:
        """Send a CSR; the answer has ``certificate`` and ``ca`` (PEM) and ``not_after``."""
        response = await self.client.call(
            "POST", "/v1/certificates", body={"csr": csr_pem.decode("ascii")}
        )
        if response.status_code != 200:
            raise ControlRefused(response.status_code, response.text[:200])
        data = self.client.json(response)
        if "certificate" not in data or "ca" not in data:
            raise ControlUnavailable(f"{self.client.url}: certificate answer without PEMs")
        return data

    async def keep_certificate(
        self,
        csr: Callable[[], bytes],
        install: Callable[[bytes, bytes], None],
        renew_at: Callable[[], float | None],
    ) -> None:
        """Get a certificate when there is none, then renew at two thirds of its life.

        ``renew_at()`` is the wall-clock time to renew the current certificate
        (``None``: there is none). Certificates are wall-clock objects; the wait
        itself is measured on the monotonic clock.
        """
        retry = Reconnect("certificate", self.rng)
        while True:
            due = renew_at()
            if due is not None and due > time.time():
                await asyncio.sleep(min(due - time.time(), 3600.0))
                continue
            try:
                data = await self.request_certificate(csr())
                install(str(data["certificate"]).encode("ascii"), str(data["ca"]).encode("ascii"))
            except Exception as exc:  # unavailable, refused, a bad certificate: retry
                await retry.failed(exc, self.status)
                continue
            retry.succeeded()
            self._report_now.set()
            _log(f"certificate installed (serial {data.get('serial')})")
            # Never renew in a tight loop, even if the new certificate's renewal
            # time has already passed (a very short lifetime, a skewed clock).
            await asyncio.sleep(MIN_RENEWAL_INTERVAL)
