"""The embedded store: one SQLite file (``<state_dir>/seawall.db``), the default.

Why SQLite: it ships with Python, survives restarts in one file, and its
transactions make "the next version number" atomic even when two processes
open the same file. The file is in WAL mode, so readers never block the
writer, and every write is one ``BEGIN IMMEDIATE`` transaction: the write lock
is taken before the read that decides what to write, so two writers (another
:class:`SqliteStore` on the same file, in this process or another) queue
instead of both computing the same next version. Calls are short and run on
the event loop thread; a writer in another process can hold the loop for at
most ``busy_timeout`` seconds.

Tables::

    configs    (version INTEGER PRIMARY KEY, digest, document, applied_at)  append-only
    leases     (id INTEGER PRIMARY KEY AUTOINCREMENT, ttl, renewals)
    instances  (id PRIMARY KEY, lease, service, data)   data: Instance.to_dict() as JSON
    statuses   (id PRIMARY KEY, lease, service, data)   data: SidecarStatus.to_dict()
    tokens     (service PRIMARY KEY, generation)        join-token generation (revocations)
    meta       (key PRIMARY KEY, value)                 'generation': bumped by every change

**The registry in memory.** :attr:`SqliteStore.registry` mirrors the
instances (a :class:`~seawall.control.store.registry.Registry`): writes and
expiries through this object update it in O(1) per instance; a change made by
another process on the file (seen by ``poll``) re-reads the instances and
applies only the differences.

**Leases.** Deadlines are not stored: they are monotonic times, meaningless
in another process or after a restart. A :class:`~seawall.control.leases.LeaseTable`
in memory keeps them, told the time by the injected ``clock``; the database
keeps each lease's TTL, so a store opened on an existing file grants every
stored lease a full TTL again (a restart never drops a healthy instance).
AUTOINCREMENT ids are never reused, so a stale lease id can never renew
someone else's lease.

Every :meth:`~SqliteStore.keepalive` bumps the lease's ``renewals`` counter in
the database (one short write; WAL with ``synchronous=NORMAL`` does not fsync
it). That is how another store on the same file learns of the renewal and
restarts its own deadline, and why expiry deletes a lease only if its counter
is still the one this store last saw (``DELETE ... WHERE renewals = ?``): a
store that has not yet noticed a renewal made elsewhere cannot reap a lease
that is in fact alive. Config versions are written with ``synchronous=FULL``,
so a version number handed to sidecars survives a power loss and is never
given to another document.

**Expiry and changes.** :meth:`~SqliteStore.open` starts a reaper task; each
tick (at most ``poll_interval`` apart, sooner when a lease is due) it calls
:meth:`~SqliteStore.reap` and :meth:`~SqliteStore.poll`. ``reap`` removes the
expired leases with their instances and statuses; ``poll`` reads ``PRAGMA
data_version``, which changes only when *another* connection commits, and if
it did, re-reads the leases and the ``generation`` counter: a different
generation wakes :meth:`~SqliteStore.changes` (keepalives do not bump it, so
they wake nobody). Writes through this object wake it at once. Tests drive
time with a fake clock and call ``reap()`` and ``poll()`` themselves.

Reads filter out instances and statuses whose lease this store knows to have
expired, even before the reaper removed them, so what they return never
depends on when the reaper last ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

from ..leases import LeaseTable
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

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the files this module writes."""

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS configs (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    document TEXT NOT NULL,
    applied_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ttl REAL NOT NULL,
    renewals INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    lease INTEGER NOT NULL,
    service TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_lease ON instances (lease);
CREATE TABLE IF NOT EXISTS statuses (
    id TEXT PRIMARY KEY,
    lease INTEGER NOT NULL,
    service TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS statuses_by_lease ON statuses (lease);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_service ON instances (service);
CREATE TABLE IF NOT EXISTS tokens (
    service TEXT PRIMARY KEY,
    generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

_SQLITE_FULL = 13  # "database or disk is full"
_MIN_TICK = 0.01  # the reaper never spins faster than this, whatever the clock says
_CHECKPOINT_INTERVAL = 1.0  # seconds between two WAL checkpoints (in a worker thread)


def _report_to_stderr(error: StoreError) -> None:
    sys.stderr.write(f"seawall control: {error}\n")
    sys.stderr.flush()


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _check_ttl(ttl: float) -> None:
    if not (isinstance(ttl, int | float) and ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"register: ttl must be a finite number of seconds > 0; got {ttl!r}")


class SqliteStore(Store):
    """The :class:`~seawall.control.store.Store` in one SQLite file (see the module docstring).

    ``clock`` (monotonic seconds) times leases; ``wall`` (epoch seconds)
    only stamps :attr:`ConfigRecord.applied_at`. ``poll_interval`` is the
    longest the reaper sleeps, hence how late a change made by another
    process wakes :meth:`changes`. ``busy_timeout`` is how long a write waits
    for another process's transaction. ``on_error`` hears about errors of the
    reaper task, which keeps running (default: one line on stderr).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        poll_interval: float = 0.5,
        busy_timeout: float = 5.0,
        on_error: Callable[[StoreError], object] = _report_to_stderr,
    ) -> None:
        if not (poll_interval > 0 and math.isfinite(poll_interval)):
            raise ValueError(f"SqliteStore: poll_interval must be > 0; got {poll_interval!r}")
        if not (busy_timeout >= 0 and math.isfinite(busy_timeout)):
            raise ValueError(f"SqliteStore: busy_timeout must be >= 0; got {busy_timeout!r}")
        self.path = Path(path)
        self._clock = clock
        self._wall = wall
        self._poll_interval = poll_interval
        self._busy_timeout = busy_timeout
        self._on_error = on_error
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._leases = LeaseTable()
        self._renewals: dict[int, int] = {}  # lease -> its `renewals` as this store last saw it
        self._data_version = 0
        self._stale = False  # a reap failed: re-read the leases at the next poll
        self._db_generation = 0  # meta 'generation' as last seen
        self._feed = ChangeFeed()  # what changes() yields from
        self._reaper: asyncio.Task[None] | None = None
        self._checkpointer: asyncio.Task[None] | None = None
        self.registry = Registry()
        self._generations: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the file and its schema; start the reaper task.

        A file that is not a SQLite database, or was written by a newer
        seawall, or cannot be opened raises :class:`StoreError` naming it.
        """
        if self._conn is not None or self._closed:
            raise RuntimeError("SqliteStore.open: called twice (a store opens once)")
        conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
            if str(mode).lower() != "wal":
                raise StoreError(f"sqlite store {self.path}: cannot use WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=NORMAL")
            # Checkpoints (copying the WAL into the database file, then syncing it) take
            # milliseconds: they run in a worker thread (see _checkpoint_forever), never
            # inside a write on the event loop.
            conn.execute("PRAGMA wal_autocheckpoint=0")
            version = int(conn.execute("PRAGMA user_version").fetchall()[0][0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"sqlite store {self.path}: schema version {version} is newer than this "
                    f"seawall's ({SCHEMA_VERSION}); upgrade seawall"
                )
            if version < SCHEMA_VERSION:
                conn.executescript(_SCHEMA)  # one transaction, idempotent (IF NOT EXISTS)
            self._data_version = int(conn.execute("PRAGMA data_version").fetchall()[0][0])
        except (sqlite3.Error, OSError) as exc:
            if conn is not None:
                conn.close()
            raise StoreError(f"sqlite store {self.path}: cannot open: {exc}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        self._conn = conn
        try:
            self._sync_leases(fresh=True)  # every stored lease: a full TTL from now
            self._sync_registry()
        except BaseException:
            self._conn = None
            conn.close()
            raise
        self._reaper = asyncio.get_running_loop().create_task(
            self._reap_forever(), name=f"seawall-sqlite-reaper:{self.path}"
        )
        self._checkpointer = asyncio.get_running_loop().create_task(
            self._checkpoint_forever(), name=f"seawall-sqlite-checkpoint:{self.path}"
        )

    async def close(self) -> None:
        """Stop the reaper and close the file; leases stay (see :meth:`open`)."""
        self._closed = True
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            reaper.cancel()
            await asyncio.wait([reaper])  # our own cancellation still propagates
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.cancel()
            await asyncio.wait([checkpointer])
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._feed.close()  # ends every changes() iterator

    # -- config -----------------------------------------------------------

    async def put_config(self, document: str, digest: str) -> ConfigRecord:
        """Append ``document`` as the next version unless ``digest`` is the current one."""
        with self._transaction("put_config", durable=True) as conn:
            current = self._current(conn)
            if current is not None and current.digest == digest:
                return current
            record = ConfigRecord(
                (0 if current is None else current.version) + 1, digest, document, self._wall()
            )
            conn.execute(
                "INSERT INTO configs (version, digest, document, applied_at) VALUES (?, ?, ?, ?)",
                (record.version, record.digest, record.document, record.applied_at),
            )
            self._bump(conn)
        self._notify()
        return record

    async def current_config(self) -> ConfigRecord | None:
        """The newest version, or ``None``."""
        with self._reading("current_config") as conn:
            return self._current(conn)

    # -- registry ---------------------------------------------------------

    async def register(self, instance: Instance, ttl: float) -> int:
        """Store ``instance`` under a new lease; an instance with its id loses its lease."""
        _check_ttl(ttl)
        with self._transaction("register") as conn:
            rows = conn.execute(
                "SELECT lease, service FROM instances WHERE id = ?", (instance.id,)
            ).fetchall()
            for _, owner in rows:
                if owner != instance.service:
                    raise InstanceConflict(
                        f"register: instance {instance.id!r} belongs to service {owner!r}, "
                        f"not {instance.service!r}"
                    )
            old = [int(row[0]) for row in rows]
            for stale in old:
                self._delete_lease(conn, stale)
            rows = conn.execute(
                "INSERT INTO leases (ttl) VALUES (?) RETURNING id", (float(ttl),)
            ).fetchall()
            lease = int(rows[0][0])
            conn.execute(
                "INSERT INTO instances (id, lease, service, data) VALUES (?, ?, ?, ?)",
                (instance.id, lease, instance.service, _json(instance.to_dict())),
            )
            self._bump(conn)
        for stale in old:
            self._forget(stale)
            self.registry.remove_lease(stale)
        self.registry.put(instance, lease)
        self._leases.grant(lease, float(ttl), self._clock())
        self._renewals[lease] = 0
        self._notify()
        return lease

    async def keepalive(self, lease: int) -> bool:
        """Renew ``lease`` (and tell other stores on the file); ``False`` if it is gone."""
        now = self._clock()
        if lease in self._leases and not self._leases.alive(lease, now):
            self._reap()  # it is due: take it (unless renewed elsewhere) before answering
        with self._reading("keepalive") as conn:  # one statement: its own transaction
            rows = conn.execute(
                "UPDATE leases SET renewals = renewals + 1 WHERE id = ? RETURNING ttl, renewals",
                (lease,),
            ).fetchall()
        if not rows:
            self._forget(lease)
            return False
        self._leases.grant(lease, float(rows[0][0]), now)
        self._renewals[lease] = int(rows[0][1])
        return True

    async def deregister(self, lease: int) -> None:
        """Remove ``lease`` with its instance and status (unknown lease: no-op)."""
        with self._transaction("deregister") as conn:
            removed = self._delete_lease(conn, lease)
            if removed:
                self._bump(conn)
        self._forget(lease)
        self.registry.remove_lease(lease)
        if removed:
            self._notify()

    async def instances(self) -> list[Instance]:
        """Every instance whose lease is alive, sorted by (service, id)."""
        with self._reading("instances") as conn:
            rows = conn.execute("SELECT lease, data FROM instances").fetchall()
        found = [
            Instance.from_dict(self._decode(data)) for lease, data in rows if self._live(lease)
        ]
        return sorted(found, key=lambda i: (i.service, i.id))

    async def put_status(self, status: SidecarStatus, lease: int) -> bool:
        """Store ``status`` under ``lease``; ``False`` if the lease is gone."""
        if lease in self._leases and not self._leases.alive(lease, self._clock()):
            self._reap()
        with self._transaction("put_status") as conn:
            if not conn.execute("SELECT 1 FROM leases WHERE id = ?", (lease,)).fetchall():
                return False
            conn.execute(
                "INSERT OR REPLACE INTO statuses (id, lease, service, data) VALUES (?, ?, ?, ?)",
                (status.id, lease, status.service, _json(status.to_dict())),
            )
            self._bump(conn)
        self._notify()
        return True

    async def revoke_service(self, service: str) -> tuple[int, int]:
        """Bump ``service``'s join-token generation and remove all its instances at once."""
        with self._transaction("revoke_service") as conn:
            rows = conn.execute(
                "INSERT INTO tokens (service, generation) VALUES (?, 1) "
                "ON CONFLICT (service) DO UPDATE SET generation = generation + 1 "
                "RETURNING generation",
                (service,),
            ).fetchall()
            generation = int(rows[0][0])
            leases = [
                int(row[0])
                for row in conn.execute(
                    "SELECT DISTINCT lease FROM instances WHERE service = ?", (service,)
                ).fetchall()
            ]
            for lease in leases:
                self._delete_lease(conn, lease)
            self._bump(conn)
        removed = 0
        for lease in leases:
            self._forget(lease)
            removed += self.registry.remove_lease(lease)
        self._generations[service] = generation
        self._notify()
        return generation, removed

    async def token_generations(self) -> dict[str, int]:
        """Every service's join-token generation that is not 0."""
        with self._reading("token_generations") as conn:
            rows = conn.execute("SELECT service, generation FROM tokens").fetchall()
        return {str(service): int(generation) for service, generation in rows}

    async def config_head(self) -> tuple[int, str] | None:
        """``(version, digest)`` of the newest config, without its document."""
        with self._reading("config_head") as conn:
            rows = conn.execute(
                "SELECT version, digest FROM configs ORDER BY version DESC LIMIT 1"
            ).fetchall()
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    async def statuses(self) -> list[SidecarStatus]:
        """Every status whose lease is alive, sorted by (service, id)."""
        with self._reading("statuses") as conn:
            rows = conn.execute("SELECT lease, data FROM statuses").fetchall()
        found = [
            SidecarStatus.from_dict(self._decode(data)) for lease, data in rows if self._live(lease)
        ]
        return sorted(found, key=lambda s: (s.service, s.id))

    # -- change events ----------------------------------------------------

    def changes(self) -> AsyncIterator[None]:
        """Yield at once, then after each change (coalesced); ends when the store closes."""
        return self._feed.follow()

    # -- expiry and other processes' changes -------------------------------

    async def reap(self) -> int:
        """Remove every lease expired by ``clock`` with its instance and status; how many.

        The reaper task calls this on its own; tests with a fake clock call it.
        """
        return self._reap()

    async def poll(self) -> bool:
        """Notice commits by other connections to the file; ``True`` if :meth:`changes` woke.

        The reaper task calls this every ``poll_interval``; tests may call it.
        """
        return self._poll()

    # -- internals --------------------------------------------------------

    def _connection(self, what: str) -> sqlite3.Connection:
        if self._conn is None:
            state = "closed" if self._closed else "not opened"
            raise StoreError(f"sqlite store {self.path}: {what}: the store is {state}")
        return self._conn

    def _error(self, what: str, exc: BaseException) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        if code == _SQLITE_FULL or "disk is full" in str(exc):
            return StoreError(
                f"disk full (state dir {self.path.parent}): sqlite store {self.path}: "
                f"{what} failed: {exc}"
            )
        return StoreError(f"sqlite store {self.path}: {what} failed: {exc}")

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """Statements in autocommit mode (each its own transaction), errors mapped."""
        conn = self._connection(what)
        try:
            yield conn
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc

    @contextlib.contextmanager
    def _transaction(self, what: str, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on exit, rolled back on error."""
        conn = self._connection(what)
        try:
            if durable:
                conn.execute("PRAGMA synchronous=FULL")
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(what, exc) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._error(what, exc) from exc
            raise
        finally:
            if durable:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("PRAGMA synchronous=NORMAL")

    def _decode(self, data: str) -> dict[str, Any]:
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise StoreError(f"sqlite store {self.path}: corrupt row: {exc}") from exc
        if not isinstance(value, dict):
            raise StoreError(f"sqlite store {self.path}: corrupt row: {data[:80]!r}")
        return value

    @staticmethod
    def _current(conn: sqlite3.Connection) -> ConfigRecord | None:
        rows = conn.execute(
            "SELECT version, digest, document, applied_at FROM configs "
            "ORDER BY version DESC LIMIT 1"
        ).fetchall()
        if not rows:
            return None
        version, digest, document, applied_at = rows[0]
        return ConfigRecord(int(version), str(digest), str(document), float(applied_at))

    def _bump(self, conn: sqlite3.Connection) -> None:
        """Count a change in the file, for other stores' :meth:`poll` (inside a transaction)."""
        rows = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
        ).fetchall()
        self._db_generation = int(rows[0][0])

    @staticmethod
    def _delete_lease(conn: sqlite3.Connection, lease: int, renewals: int | None = None) -> bool:
        """Delete ``lease`` and what it holds; with ``renewals``, only if still at that count."""
        if renewals is None:
            cursor = conn.execute("DELETE FROM leases WHERE id = ?", (lease,))
        else:
            cursor = conn.execute(
                "DELETE FROM leases WHERE id = ? AND renewals = ?", (lease, renewals)
            )
        if cursor.rowcount == 0:
            return False
        conn.execute("DELETE FROM instances WHERE lease = ?", (lease,))
        conn.execute("DELETE FROM statuses WHERE lease = ?", (lease,))
        return True

    def _forget(self, lease: int) -> None:
        self._leases.revoke(lease)
        self._renewals.pop(lease, None)

    def _live(self, lease: int) -> bool:
        """Alive as far as this store knows (a lease it has not seen yet counts as alive)."""
        return lease not in self._leases or self._leases.alive(lease, self._clock())

    def _notify(self) -> None:
        self._feed.notify()

    def _sync_leases(self, *, fresh: bool = False) -> None:
        """Bring the lease table in line with the file.

        A lease new to this store, or renewed elsewhere since last seen, gets
        a full TTL from now; one gone from the file is forgotten. ``fresh``
        (at open) grants every lease a full TTL.
        """
        with self._reading("reading leases") as conn:
            rows = conn.execute("SELECT id, ttl, renewals FROM leases").fetchall()
        now = self._clock()
        stored: set[int] = set()
        for lease, ttl, renewals in rows:
            stored.add(lease)
            if fresh or lease not in self._leases or self._renewals.get(lease) != renewals:
                self._leases.grant(lease, float(ttl), now)
                self._renewals[lease] = int(renewals)
        for lease in self._leases.leases():
            if lease not in stored:
                self._forget(lease)
        self._stale = False

    def _sync_registry(self) -> None:
        """Re-read every instance into :attr:`registry` (only differences are logged)."""
        with self._reading("reading instances") as conn:
            rows = conn.execute("SELECT lease, data FROM instances").fetchall()
        self.registry.replace_all(
            (Instance.from_dict(self._decode(data)), int(lease))
            for lease, data in rows
            if self._live(lease)
        )

    def _reap(self) -> int:
        expired = self._leases.expire(self._clock())
        if not expired:
            return 0
        removed = 0
        gone: list[int] = []
        try:
            with self._transaction("reaping expired leases") as conn:
                for lease in expired:
                    if self._delete_lease(conn, lease, self._renewals.pop(lease, 0)):
                        removed += 1
                        gone.append(lease)
                if removed:
                    self._bump(conn)
        except StoreError:
            self._stale = True  # the table forgot leases still in the file: re-read them
            raise
        for lease in gone:
            self.registry.remove_lease(lease)
        if removed < len(expired):  # renewed by another store meanwhile: take its word
            self._sync_leases()
        if removed:
            self._notify()
        return removed

    def _poll(self) -> bool:
        with self._reading("polling for changes") as conn:
            version = int(conn.execute("PRAGMA data_version").fetchall()[0][0])
            if version == self._data_version and not self._stale:
                return False
            self._data_version = version
            rows = conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
        self._sync_leases()
        generation = int(rows[0][0]) if rows else 0
        if generation == self._db_generation:
            return False  # only keepalives: nothing a reader would see
        self._db_generation = generation
        self._sync_registry()
        self._notify()
        return True

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file (a worker thread, its own connection).

        PASSIVE: it never waits for, nor blocks, the writer; what a write appends
        meanwhile is copied at the next one.
        """
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            conn.close()

    async def _checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(_CHECKPOINT_INTERVAL)
            try:
                await asyncio.to_thread(self._checkpoint)
            except sqlite3.Error as exc:
                self._on_error(self._error("checkpoint", exc))

    async def _reap_forever(self) -> None:
        while True:
            delay = self._poll_interval
            deadline = self._leases.next_deadline()
            if deadline is not None:
                delay = min(delay, deadline - self._clock())
            await asyncio.sleep(max(delay, _MIN_TICK))
            try:
                self._reap()
                self._poll()
            except StoreError as exc:
                self._on_error(exc)
