"""The shared store: etcd v3, for several control-plane replicas serving one mesh.

**Why the JSON gateway.** etcd serves its v3 gRPC API as HTTP/JSON too (the
gRPC gateway, ``/v3/...``; etcd 3.4 also answers under ``/v3beta/``; this
module uses ``/v3/``, served by 3.4 and later). Keys and values travel base64
encoded and int64s as strings; that is all a client has to know, so
:mod:`httpx` (already a dependency of seawall's client and tests) is the whole
client. The alternatives were worse: python-etcd3 is unmaintained and breaks
with current protobuf releases; etcd3gw speaks this same gateway but pulls in
futurist and more; a gRPC client would bring protobuf and grpcio for a
dozen calls.

**Keys**, all under ``prefix`` (default ``/seawall/``; give each mesh its
own, e.g. ``/seawall/<mesh>/``, when meshes share an etcd)::

    <prefix>config/current               {"version": N, "digest": ...}
    <prefix>config/versions/<N, 10 digits>  ConfigRecord.to_dict()  (never overwritten)
    <prefix>instances/<id>               Instance.to_dict()       under the instance's lease
    <prefix>status/<id>                  SidecarStatus.to_dict()  under the same lease

**Versions across replicas.** :meth:`EtcdStore.put_config` reads
``config/current`` and writes ``config/current`` and ``config/versions/<N+1>``
in one transaction that succeeds only if ``config/current`` still has the
``mod_revision`` it read (and ``versions/<N+1>`` does not exist). A replica
that loses the race gets the new ``config/current`` back from the same
transaction and tries again with the next number, or returns the winner's
record if it applied the same digest. So two replicas never hand out one
version twice and no apply is lost. The newest version is read with one
range over ``config/versions/`` sorted by key, descending, limit 1 (the
zero-padded numbers sort as numbers).

**Leases are etcd's.** An instance and its status are put with the lease
granted at :meth:`~EtcdStore.register` (TTLs are whole seconds, rounded up;
etcd also raises TTLs below its minimum, about 2 s with default timings), so
etcd deletes them when the lease expires, and gives every lease a fresh TTL
after a leader change or restart, as the :class:`Store` contract asks.

**Changes** come from one watch on the whole prefix (a streaming POST to
``/v3/watch``, one JSON result per line), opened by :meth:`~EtcdStore.open`
before it returns, so no change after ``open()`` is missed. Every batch of
events wakes :meth:`~EtcdStore.changes`; writes through this object arrive
the same way as other replicas' and expiring leases'. A broken stream is
reopened (on the next endpoint) after an equal-jitter backoff
(:class:`~seawall.policy.backoff.ExponentialEqualJitter`, 0.1 s doubling to
2 s), and the new watch wakes ``changes()`` once, since anything may have
changed meanwhile. The stream has no read timeout: etcd sends nothing while
nothing changes, so a silently dead peer (no RST, no FIN) is only noticed by
the next unary call failing over.

**Endpoints.** Calls go to one endpoint until a connection to it fails, then
to the next. Only connection failures (nothing was sent) move on to another
endpoint; any other failure is a :class:`StoreError` naming the endpoint and
the operation. TLS and authentication are not supported yet.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx

from ...policy.backoff import ExponentialEqualJitter
from .base import (
    ChangeFeed,
    ConfigRecord,
    Instance,
    InstanceConflict,
    SidecarStatus,
    Store,
    StoreError,
)
from .registry import Registry

__all__ = ["EtcdStore"]

_NOT_FOUND = 5  # gRPC status NOT_FOUND: etcd's "requested lease not found"
_MAX_TXN_ATTEMPTS = 1000  # each failed attempt means another replica's apply won
_VERSION_DIGITS = 10
_WATCH_BACKOFF = ExponentialEqualJitter(0.1, 2.0)


def _report_to_stderr(error: StoreError) -> None:
    sys.stderr.write(f"seawall control: {error}\n")
    sys.stderr.flush()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _range_end(prefix: bytes) -> bytes:
    """The smallest key after every key starting with ``prefix`` (etcd's prefix range end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # every key
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _revision(answer: dict[str, Any]) -> int:
    """The store revision in an etcd answer's header (0 if absent)."""
    header = answer.get("header")
    return int(header.get("revision", 0)) if isinstance(header, dict) else 0


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Refused(StoreError):
    """etcd answered with an error; ``code`` is its gRPC status code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class EtcdStore(Store):
    """The :class:`~seawall.control.store.Store` in etcd v3 (see the module docstring).

    ``endpoints`` are client URLs of one etcd cluster (``http://host:2379``).
    ``timeout`` bounds each call, and :meth:`open`'s wait for the watch.
    ``wall`` (epoch seconds) only stamps :attr:`ConfigRecord.applied_at`.
    ``on_error`` hears about failures of the background watch, which keeps
    reconnecting (default: one line on stderr); ``rng`` draws its backoff.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = "/seawall/",
        timeout: float = 5.0,
        wall: Callable[[], float] = time.time,
        on_error: Callable[[StoreError], object] = _report_to_stderr,
        rng: random.Random | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            raise ValueError(f"EtcdStore: endpoints must be a list of URLs; got {endpoints!r}")
        urls = [str(url).rstrip("/") for url in endpoints]
        if not urls:
            raise ValueError("EtcdStore: endpoints must name at least one etcd URL; got []")
        for url in urls:
            scheme, _, host = url.partition("://")
            if scheme not in ("http", "https") or not host:
                raise ValueError(f"EtcdStore: endpoints must be http(s)://host:port; got {url!r}")
        if not prefix.endswith("/"):
            raise ValueError(f"EtcdStore: prefix must end with '/'; got {prefix!r}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ValueError(f"EtcdStore: timeout must be > 0 seconds; got {timeout!r}")
        self.endpoints = urls
        self.prefix = prefix
        self._timeout = timeout
        self._wall = wall
        self._on_error = on_error
        self._rng = rng if rng is not None else random.Random()
        self._endpoint = 0  # index of the endpoint calls go to
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None
        self._watching = asyncio.Event()  # set once the first watch is established
        self._watch_error: StoreError | None = None
        self._watch_attempt = 0  # failures since the last watch was established
        self._feed = ChangeFeed()  # what changes() yields from
        self.registry = Registry()
        self._revisions: dict[str, int] = {}  # instance id -> etcd revision last applied

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        """Check that etcd answers, and establish the watch behind :meth:`changes`."""
        if self._client is not None or self._closed:
            raise RuntimeError("EtcdStore.open: called twice (a store opens once)")
        # trust_env=False: etcd is reached directly, never through an HTTP(S)_PROXY from the env
        self._client = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        try:
            await self._call("open", "/v3/kv/range", {"key": self._key("config/current")})
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_forever(), name=f"seawall-etcd-watch:{self.prefix}"
            )
            try:
                async with asyncio.timeout(self._timeout):
                    await self._watching.wait()
            except TimeoutError:
                reason = "" if self._watch_error is None else f": {self._watch_error}"
                raise StoreError(
                    f"etcd {', '.join(self.endpoints)}: open: no watch on {self.prefix!r} "
                    f"within {self._timeout:g}s{reason}"
                ) from None
        except BaseException:
            await self._shutdown()
            raise

    async def close(self) -> None:
        """Stop the watch and close connections; leases are left to etcd."""
        self._closed = True
        await self._shutdown()
        self._feed.close()  # ends every changes() iterator

    # -- config -----------------------------------------------------------

    async def put_config(self, document: str, digest: str) -> ConfigRecord:
        """Store ``document`` as the next version, in a compare-and-swap transaction."""
        current_key = self._key("config/current")
        response = await self._call("put_config", "/v3/kv/range", {"key": current_key})
        kvs: list[dict[str, Any]] = response.get("kvs") or []
        for _ in range(_MAX_TXN_ATTEMPTS):
            pointer = self._value("put_config", kvs[0]) if kvs else None
            seen = int(kvs[0].get("mod_revision", 0)) if kvs else 0
            if pointer is not None and pointer.get("digest") == digest:
                return await self._version("put_config", int(pointer["version"]))
            version = (0 if pointer is None else int(pointer["version"])) + 1
            record = ConfigRecord(version, digest, document, self._wall())
            version_key = self._version_key(version)
            pointer_value = self._json({"version": version, "digest": digest})
            record_value = self._json(record.to_dict())
            response = await self._call(
                "put_config",
                "/v3/kv/txn",
                {
                    "compare": [
                        {
                            "key": current_key,
                            "target": "MOD",
                            "result": "EQUAL",
                            "mod_revision": str(seen),
                        },
                        {
                            "key": version_key,
                            "target": "CREATE",
                            "result": "EQUAL",
                            "create_revision": "0",
                        },
                    ],
                    "success": [
                        {"request_put": {"key": current_key, "value": pointer_value}},
                        {"request_put": {"key": version_key, "value": record_value}},
                    ],
                    "failure": [{"request_range": {"key": current_key}}],
                },
            )
            if response.get("succeeded"):
                return record
            ranged = (response.get("responses") or [{}])[0].get("response_range") or {}
            kvs = ranged.get("kvs") or []
            if (int(kvs[0].get("mod_revision", 0)) if kvs else 0) == seen:
                raise StoreError(
                    f"etcd {self._url()}: put_config: {self.prefix}config/versions/"
                    f"{version:0{_VERSION_DIGITS}d} exists but config/current says "
                    f"{version - 1}: the store is inconsistent"
                )
        raise StoreError(
            f"etcd {self._url()}: put_config: lost the race {_MAX_TXN_ATTEMPTS} times in a row"
        )

    async def current_config(self) -> ConfigRecord | None:
        """The newest version, or ``None``."""
        start = (self.prefix + "config/versions/").encode()
        response = await self._call(
            "current_config",
            "/v3/kv/range",
            {
                "key": _b64(start),
                "range_end": _b64(_range_end(start)),
                "sort_order": "DESCEND",
                "sort_target": "KEY",
                "limit": "1",
            },
        )
        kvs = response.get("kvs") or []
        if not kvs:
            return None
        return self._record("current_config", kvs[0])

    # -- registry ---------------------------------------------------------

    async def register(self, instance: Instance, ttl: float) -> int:
        """Put ``instance`` under a new lease of ``ceil(ttl)`` s; revoke the lease it had."""
        if not (isinstance(ttl, int | float) and ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"register: ttl must be a finite number of seconds > 0; got {ttl!r}")
        key = self._key(f"instances/{instance.id}")
        existing = await self._call("register", "/v3/kv/range", {"key": key})
        kvs = existing.get("kvs") or []
        for kv in kvs:
            owner = self._value("register", kv).get("service")
            if owner != instance.service:
                raise InstanceConflict(
                    f"register: instance {instance.id!r} belongs to service {owner!r}, "
                    f"not {instance.service!r}"
                )
        old = {int(kv.get("lease", 0)) for kv in kvs} - {0}
        granted = await self._call("register", "/v3/lease/grant", {"TTL": str(math.ceil(ttl))})
        lease = int(granted.get("ID", 0))
        if lease <= 0:
            raise StoreError(f"etcd {self._url()}: register: lease grant returned no ID")
        try:
            put = await self._call(
                "register",
                "/v3/kv/put",
                {"key": key, "value": self._json(instance.to_dict()), "lease": str(lease)},
            )
        except BaseException:
            await self._revoke(lease, "register")  # best effort: it would expire anyway
            raise
        self._mirror_put(instance, lease, _revision(put))
        for stale in old - {lease}:  # the instance key has moved to the new lease already
            await self._revoke(stale, "register")
        return lease

    async def keepalive(self, lease: int) -> bool:
        """Renew ``lease`` (``/v3/lease/keepalive``); ``False`` if etcd no longer has it."""
        if lease <= 0:
            return False
        message = await self._call("keepalive", "/v3/lease/keepalive", {"ID": str(lease)})
        result = message.get("result") or {}
        return int(result.get("TTL", 0)) > 0  # TTL 0 (omitted in JSON): expired or unknown

    async def deregister(self, lease: int) -> None:
        """Revoke ``lease``: etcd deletes the instance and status put under it."""
        if lease > 0:
            await self._revoke(lease, "deregister")

    async def revoke_service(self, service: str) -> tuple[int, int]:
        """Bump ``service``'s token generation (compare-and-swap), then revoke its leases."""
        key = self._key(f"tokens/{service}")
        generation = 0
        for _ in range(_MAX_TXN_ATTEMPTS):
            current = await self._call("revoke_service", "/v3/kv/range", {"key": key})
            kvs = current.get("kvs") or []
            seen = int(kvs[0].get("mod_revision", 0)) if kvs else 0
            before = self._value("revoke_service", kvs[0]).get("generation", 0) if kvs else 0
            generation = int(before) + 1
            record = {"generation": generation}
            answer = await self._call(
                "revoke_service",
                "/v3/kv/txn",
                {
                    "compare": [
                        {"key": key, "target": "MOD", "result": "EQUAL", "mod_revision": str(seen)}
                    ],
                    "success": [{"request_put": {"key": key, "value": self._json(record)}}],
                },
            )
            if answer.get("succeeded"):
                break
        else:
            raise StoreError(f"etcd {self._url()}: revoke_service: lost the race repeatedly")
        # Read the registry from etcd, not the mirror: another replica's registration made
        # a moment ago may not have reached this one's watch yet.
        owned: dict[int, int] = {}
        for kv in await self._range_prefix("revoke_service", "instances/"):
            if self._value("revoke_service", kv).get("service") == service:
                lease = int(kv.get("lease", 0))
                owned[lease] = owned.get(lease, 0) + 1
        leases = sorted(owned)
        removed = sum(owned.values())
        for start in range(0, len(leases), 64):  # revocations in flight, 64 at a time
            batch = leases[start : start + 64]
            await asyncio.gather(*(self._revoke(lease, "revoke_service") for lease in batch))
        return generation, removed

    async def token_generations(self) -> dict[str, int]:
        """Every revoked service's join-token generation."""
        found = {}
        for kv in await self._range_prefix("token_generations", "tokens/"):
            name = base64.b64decode(kv.get("key", "")).decode(errors="replace")
            found[name.rpartition("/")[2]] = int(self._value("token_generations", kv)["generation"])
        return found

    async def config_head(self) -> tuple[int, str] | None:
        """``(version, digest)`` from ``config/current``, without reading the document."""
        key = self._key("config/current")
        response = await self._call("config_head", "/v3/kv/range", {"key": key})
        kvs = response.get("kvs") or []
        if not kvs:
            return None
        pointer = self._value("config_head", kvs[0])
        return int(pointer["version"]), str(pointer["digest"])

    async def instances(self) -> list[Instance]:
        """Every instance whose lease is alive, sorted by (service, id)."""
        found = [
            Instance.from_dict(self._value("instances", kv))
            for kv in await self._range_prefix("instances", "instances/")
        ]
        return sorted(found, key=lambda i: (i.service, i.id))

    async def put_status(self, status: SidecarStatus, lease: int) -> bool:
        """Put ``status`` under ``lease``; ``False`` if etcd no longer has the lease."""
        if lease <= 0:
            return False
        try:
            await self._call(
                "put_status",
                "/v3/kv/put",
                {
                    "key": self._key(f"status/{status.id}"),
                    "value": self._json(status.to_dict()),
                    "lease": str(lease),
                },
            )
        except _Refused as exc:
            if exc.code == _NOT_FOUND:
                return False
            raise
        return True

    async def statuses(self) -> list[SidecarStatus]:
        """Every status whose lease is alive, sorted by (service, id)."""
        found = [
            SidecarStatus.from_dict(self._value("statuses", kv))
            for kv in await self._range_prefix("statuses", "status/")
        ]
        return sorted(found, key=lambda s: (s.service, s.id))

    # -- change events ----------------------------------------------------

    def changes(self) -> AsyncIterator[None]:
        """Yield at once, then after each batch of watch events; ends when the store closes."""
        return self._feed.follow()

    # -- internals: requests ------------------------------------------------

    def _url(self) -> str:
        return self.endpoints[self._endpoint]

    def _key(self, name: str) -> str:
        return _b64((self.prefix + name).encode())

    def _version_key(self, version: int) -> str:
        return self._key(f"config/versions/{version:0{_VERSION_DIGITS}d}")

    @staticmethod
    def _json(data: dict[str, Any]) -> str:
        return _b64(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())

    def _value(self, what: str, kv: dict[str, Any]) -> dict[str, Any]:
        """The JSON object stored in ``kv`` (an etcd KeyValue as JSON)."""
        try:
            value = json.loads(base64.b64decode(kv.get("value", "")))
        except ValueError as exc:
            key = base64.b64decode(kv.get("key", "")).decode(errors="replace")
            raise StoreError(f"etcd {self._url()}: {what}: bad value at {key!r}: {exc}") from exc
        if not isinstance(value, dict):
            key = base64.b64decode(kv.get("key", "")).decode(errors="replace")
            raise StoreError(f"etcd {self._url()}: {what}: bad value at {key!r}: not an object")
        return value

    def _record(self, what: str, kv: dict[str, Any]) -> ConfigRecord:
        try:
            return ConfigRecord.from_dict(self._value(what, kv))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"etcd {self._url()}: {what}: bad config record: {exc!r}") from exc

    async def _version(self, what: str, version: int) -> ConfigRecord:
        response = await self._call(what, "/v3/kv/range", {"key": self._version_key(version)})
        kvs = response.get("kvs") or []
        if not kvs:
            raise StoreError(
                f"etcd {self._url()}: {what}: config/current names version {version}, "
                "which is missing: the store is inconsistent"
            )
        return self._record(what, kvs[0])

    async def _range_prefix(self, what: str, name: str) -> list[dict[str, Any]]:
        start = (self.prefix + name).encode()
        response = await self._call(
            what, "/v3/kv/range", {"key": _b64(start), "range_end": _b64(_range_end(start))}
        )
        kvs: list[dict[str, Any]] = response.get("kvs") or []
        return kvs

    async def _revoke(self, lease: int, what: str) -> None:
        try:
            answer = await self._call(what, "/v3/lease/revoke", {"ID": str(lease)})
        except _Refused as exc:
            if exc.code != _NOT_FOUND:  # already expired or revoked: done
                raise
            answer = {}
        revision = _revision(answer)
        for iid in self.registry.ids_of_lease(lease):
            self._revisions[iid] = max(self._revisions.get(iid, 0), revision)
        self.registry.remove_lease(lease)

    # -- internals: the mirror ------------------------------------------------

    def _mirror_put(self, instance: Instance, lease: int, revision: int) -> None:
        if revision and revision <= self._revisions.get(instance.id, 0):
            return  # the watch already applied something newer
        self._revisions[instance.id] = revision
        self.registry.put(instance, lease)

    def _mirror_event(self, event: dict[str, Any]) -> None:
        """Apply one watch event to :attr:`registry` (events older than what it has are skipped)."""
        kv = event.get("kv") or {}
        name = base64.b64decode(kv.get("key", "")).decode(errors="replace")
        head = self.prefix + "instances/"
        if not name.startswith(head):
            return
        iid = name[len(head) :]
        revision = int(kv.get("mod_revision", 0))
        if revision <= self._revisions.get(iid, 0):
            return
        self._revisions[iid] = revision
        if event.get("type") == "DELETE":
            self.registry.remove(iid)
        else:
            instance = Instance.from_dict(self._value("watch", kv))
            self.registry.put(instance, int(kv.get("lease", 0)))

    async def _resync(self) -> int:
        """Read every instance anew into :attr:`registry`; the revision the read saw."""
        start = (self.prefix + "instances/").encode()
        response = await self._call(
            "resync", "/v3/kv/range", {"key": _b64(start), "range_end": _b64(_range_end(start))}
        )
        revision = _revision(response)
        entries = []
        for kv in response.get("kvs") or []:
            instance = Instance.from_dict(self._value("resync", kv))
            entries.append((instance, int(kv.get("lease", 0))))
        self._revisions = {inst.id: revision for inst, _ in entries}
        self.registry.replace_all(entries)
        return revision

    async def _call(self, what: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path``, moving to the next endpoint when one cannot be reached."""
        client = self._client
        if client is None:
            state = "closed" if self._closed else "not opened"
            raise StoreError(f"etcd {self._url()}: {what}: the store is {state}")
        failures: list[str] = []
        count = len(self.endpoints)
        for step in range(count):
            index = (self._endpoint + step) % count
            url = self.endpoints[index]
            try:
                response = await client.post(url + path, json=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failures.append(f"{url}: {_describe(exc)}")
                continue
            except httpx.HTTPError as exc:
                raise StoreError(f"etcd {url}: {what} ({path}) failed: {_describe(exc)}") from exc
            self._endpoint = index
            return self._decode(what, url, path, response)
        raise StoreError(f"etcd: {what} failed, no endpoint reachable: {'; '.join(failures)}")

    @staticmethod
    def _decode(what: str, url: str, path: str, response: httpx.Response) -> dict[str, Any]:
        try:
            # a streaming RPC (keepalive) answers one JSON object per line: take the first
            data = json.loads(response.text.strip().split("\n", 1)[0] or "{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise StoreError(
                f"etcd {url}: {what} ({path}) failed: HTTP {response.status_code}, "
                f"not a JSON object: {response.text[:200]!r}"
            )
        error = data.get("error")
        if response.status_code != 200 or error:
            details = error if isinstance(error, dict) else data
            message = details.get("message") or error or f"HTTP {response.status_code}"
            code = details.get("code", details.get("grpc_code", -1))
            raise _Refused(
                f"etcd {url}: {what} ({path}) failed: {message}",
                int(code) if isinstance(code, int | str) and str(code).isdigit() else -1,
            )
        return data

    # -- internals: the watch ----------------------------------------------

    def _notify(self) -> None:
        self._feed.notify()

    async def _shutdown(self) -> None:
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            await asyncio.wait([watcher])  # our own cancellation still propagates
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _watch_forever(self) -> None:
        """Keep one watch on the prefix open; wake :meth:`changes` on every event batch."""
        start = self.prefix.encode()
        request = {"create_request": {"key": _b64(start), "range_end": _b64(_range_end(start))}}
        delay = 0.0
        while True:
            url = self._url()
            try:
                await self._watch_once(url, request)
                raise StoreError(f"etcd {url}: watch ended")
            except (httpx.HTTPError, StoreError, ValueError) as exc:
                error = (
                    exc
                    if isinstance(exc, StoreError)
                    else StoreError(f"etcd {url}: watch failed: {_describe(exc)}")
                )
            self._watch_error = error
            if self._watching.is_set():
                self._on_error(error)
            if self._url() == url:
                self._endpoint = (self._endpoint + 1) % len(self.endpoints)
            self._watch_attempt += 1
            delay = _WATCH_BACKOFF.delay(self._watch_attempt, delay, self._rng)
            await asyncio.sleep(delay)

    async def _watch_once(self, url: str, request: dict[str, Any]) -> None:
        client = self._client
        if client is None:
            raise StoreError(f"etcd {url}: watch: the store is closed")
        # List, then watch from just after what the list saw: no change is missed or doubled.
        revision = await self._resync()
        create = {**request["create_request"], "start_revision": str(revision + 1)}
        request = {"create_request": create}
        timeout = httpx.Timeout(self._timeout, read=None)  # idle until something changes
        async with client.stream("POST", url + "/v3/watch", json=request, timeout=timeout) as r:
            if r.status_code != 200:
                await r.aread()
                raise StoreError(f"etcd {url}: watch failed: HTTP {r.status_code}: {r.text[:200]}")
            async for line in r.aiter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise StoreError(f"etcd {url}: watch: not a JSON object: {line[:200]!r}")
                if message.get("error"):
                    raise StoreError(f"etcd {url}: watch failed: {message['error']}")
                result = message.get("result") or {}
                if not isinstance(result, dict):
                    raise StoreError(f"etcd {url}: watch: not a watch result: {line[:200]!r}")
                if result.get("canceled"):
                    reason = result.get("cancel_reason") or "no reason given"
                    raise StoreError(f"etcd {url}: watch canceled: {reason}")
                if result.get("created"):
                    self._watch_attempt = 0
                    if self._watching.is_set():
                        self._notify()  # reconnected: anything may have changed meanwhile
                    self._watching.set()
                elif result.get("events"):
                    for event in result["events"]:
                        if isinstance(event, dict):
                            self._mirror_event(event)
                    self._notify()
