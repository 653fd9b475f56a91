"""The trace store of ``seawall traces``: spans in one embedded SQLite file.

The collector hands decoded :class:`~seawall.telemetry.spans.SpanRow` batches
to :meth:`TraceStore.insert`; the query API (Jaeger's api_v3 and the UI) reads
them back with :meth:`~TraceStore.trace`, :meth:`~TraceStore.search` and the
listing calls; the service graph and span metrics read windows with
:meth:`~TraceStore.spans_between`. A row goes in and comes out exactly as
:class:`SpanRow` describes it. ``docs/telemetry/store.md`` has the design, the
reasons and the figures.

**Schema** (``PRAGMA user_version`` = :data:`SCHEMA_VERSION`)::

    services (id, name UNIQUE)                                   interned names
    ops      (id, service_id, name, kind, last_seen_ns,          one per (service,
              UNIQUE (service_id, name, kind))                   span name, kind)
    sources  (id, resource, scope, tags, last_seen_ns,           a resource and scope,
              UNIQUE (resource, scope))                          and the resource's tags
    traces   (ref AUTOINCREMENT, trace_id, start_ns, end_ns,     the per-trace summary
              duration_ns, span_count, error_count,              search reads
              root_op, root_start_ns, root_span_id,
              root_parentless, services)                         'service_id:spans,...'
    spans    (id, trace_ref, span_id, parent_span_id, op_id, start_ns, end_ns,
              duration_ns, status_code, status_message, flags, trace_state, source_id,
              source_tags, tags, attributes, events, links)
    segments (seq, max_ref, keys, parts)                         the tag index: posting
    tag_postings (seq, tag, part, refs,                          lists, a row per key
                  PRIMARY KEY (seq, tag, part)) WITHOUT ROWID    and batch, in segments;
    open_postings (seq, part, tag, refs,                         the open segment's,
                   PRIMARY KEY (seq, part, tag)) WITHOUT ROWID   in batch order

    indexes  spans (trace_ref, span_id) UNIQUE     a trace's spans; duplicates
             spans (start_ns)                      spans_between (and analytics.py)
             traces (start_ns)                     newest / oldest, time ranges, expiry

A trace is known inside the file by ``ref``, a number given at its first span
and never reused, so span and index rows carry a few bytes, not 16. From a
trace id to its ref is a map in memory (every stored trace's; read at open,
kept by the writer), not an index: an index on random keys would dirty a page
per new trace, the most costly part of an insert after the spans themselves.
A span's
``tags`` are stored as ``"\\nk=v\\nk=v\\n"`` (``instr`` finds one; a tag holding
a newline makes it a JSON array, which starts with ``[``), without its
resource's when they end the tuple exactly (``source_tags`` = 1: they are in
``sources.tags``, derived from the resource by the tags' rule and checked).

**The tag index** is inverted and cut in time segments. Its keys are tag
CRC-32s (signed 32-bit) and the store's own ``_KEY_*`` keys (a service, an
operation, a service and duration bucket, a duration bucket, an error, a
source). Each batch adds, in the open segment, a row per key with the refs
of its traces holding it (little-endian uint32s), and one row of sorted
``crc << 32 | ref`` int64s for the tags only one of its traces holds. The
open segment's rows are in ``open_postings``, in batch order, so every write
lands at the end of its B-tree; when the next segment opens, they move to
``tag_postings`` in (tag, part) order, written once. A lookup is a seek per
closed segment and a scan of the open one's rows, a superset (CRC
collisions, deleted traces): the spans are always checked.

**Writes.** One writer connection, behind a lock (SQLite has one writer
anyway): :meth:`~TraceStore.insert` and the retention run on whichever thread
calls them. A batch is one ``BEGIN IMMEDIATE`` transaction: one pass in Rust
(``_native.SpanBatch``) builds the span rows, each trace's summary of the batch
and its posting lists;
the spans go in with one ``executemany`` (``INSERT OR IGNORE``: a (trace, span
id) already stored is a retried export, counted and skipped); the summaries
are inserted or merged into the stored ones (min start, max end, counts; the
root is the span without a parent, the earliest, then the lower span id, else
the earliest span); after a duplicate, the batch's summaries are recomputed
from the stored spans. WAL, ``synchronous=NORMAL``, 16 KiB pages; checkpoints
run on a thread of their own (:meth:`TraceStore._checkpoint_forever`).

**Reads.** Queries run on reader connections from a small pool, each call in
one read transaction, so the HTTP handler threads never wait for an insert.
``":memory:"`` has one connection for everything, behind the writer's lock.

**Search.** A trace matches when one of its spans matches every span filter
together (service, operation, kind, status, duration, attributes: Jaeger's
semantics) and its start is in the time range. If the index lists fewer than
:data:`CANDIDATE_CAP` refs for some filter, the traces listed for every such
filter are sorted in the query's order and checked in growing chunks until
``limit`` match; else the traces are walked in the query's order, and past
:data:`SCAN_BUDGET` of them, the rarest filter's traces take over. The slow
case left: filters each common but rarely true of one span together.

**Retention.** :meth:`~TraceStore.enforce_retention` (every
:data:`RETENTION_EVERY` spans stored by ``insert``, and from the collector)
deletes the traces that started more than ``max_age`` ago, then, while the
pages in use exceed ``max_bytes``, the oldest stored traces (first stored,
first deleted: a clock-skewed span cannot pin a trace), in chunks, down to
:data:`LOW_WATER` of it. Deleted pages are reused by later inserts; the file
is in ``auto_vacuum=INCREMENTAL`` mode and gives free pages beyond a reserve
back to the file system. If an insert finds the database or disk full, the
oldest traces are dropped and the batch is tried once more; if it fails
again, the batch is dropped. Neither raises: both are counted in
:meth:`~TraceStore.stats` and logged on ``seawall.traces``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import sys
import threading
import time
import types
import zlib
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal

from .. import _native
from .spans import MAX_TAG_VALUE, SpanRow, StatusCode

__all__ = [
    "CANDIDATE_CAP",
    "LOW_WATER",
    "MAX_LIMIT",
    "ORDERS",
    "RETENTION_EVERY",
    "SCAN_BUDGET",
    "SCHEMA_VERSION",
    "SEGMENT_KEYS",
    "RetentionReport",
    "TraceQuery",
    "TraceStore",
    "TraceStoreError",
    "TraceStoreStats",
    "TraceSummary",
]

log = logging.getLogger("seawall.traces")

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the files this module writes."""

Order = Literal["newest", "oldest", "slowest", "fastest", "most_spans", "most_errors"]
ORDERS: tuple[Order, ...] = ("newest", "oldest", "slowest", "fastest", "most_spans", "most_errors")
"""The orders of :attr:`TraceQuery.order`."""

MAX_LIMIT = 10_000
"""The largest :attr:`TraceQuery.limit`."""

CANDIDATE_CAP = 16_384
"""A filter the tag index lists fewer refs for than this drives a search from its list."""

SCAN_BUDGET = 16_384
"""Traces a search walks in its order before it turns to its rarest filter's traces."""

SEGMENT_KEYS = 2048
"""Tag keys in a segment of the tag index before the next segment opens."""

RETENTION_EVERY = 8192
"""``insert`` runs :meth:`TraceStore.enforce_retention` once this many spans came since."""

LOW_WATER = 0.95
"""Eviction for size stops when the pages in use are below this fraction of ``max_bytes``."""

_PAGE_SIZE = 16384
_WRITER_CACHE_KIB = 64 * 1024
_READER_CACHE_KIB = 16 * 1024
_WAL_AUTOCHECKPOINT_BYTES = 256 << 20  # the writer checkpoints itself only if the thread lags
_CHECKPOINT_EVERY_S = 0.25  # the checkpointer thread's cadence
_WAL_RESTART_BYTES = 64 << 20  # WAL size past which the WAL is made to restart
_JOURNAL_SIZE_LIMIT = 64 << 20  # the WAL file is cut back to this after a checkpoint
_MAX_READERS = 8
_READER_WAIT_S = 30.0
_DELETE_CHUNK = 2000  # traces per retention transaction
_IN_CHUNK = 500  # bound parameters per IN (...) list
_CACHE_MAX = 100_000  # entries of each in-memory interning cache
_WARN_EVERY_S = 10.0  # disk-full warnings: at most one per this many seconds (of `clock`)
_ERROR = StatusCode.ERROR
_SQLITE_FULL = 13
_MAX_NS = (1 << 63) - 1
_BIG_ENDIAN = sys.byteorder == "big"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS services (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY,
    service_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    kind INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    UNIQUE (service_id, name, kind)
);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    resource TEXT NOT NULL,
    scope TEXT NOT NULL,
    tags TEXT NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    UNIQUE (resource, scope)
);
CREATE TABLE IF NOT EXISTS traces (
    ref INTEGER PRIMARY KEY AUTOINCREMENT,
    trace_id BLOB NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL,
    error_count INTEGER NOT NULL,
    root_op INTEGER NOT NULL,
    root_start_ns INTEGER NOT NULL,
    root_span_id BLOB NOT NULL,
    root_parentless INTEGER NOT NULL,
    services TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_by_start ON traces (start_ns);
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_ref INTEGER NOT NULL,
    span_id BLOB NOT NULL,
    parent_span_id BLOB NOT NULL,
    op_id INTEGER NOT NULL,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL,
    status_message TEXT NOT NULL,
    flags INTEGER NOT NULL,
    trace_state TEXT NOT NULL,
    source_id INTEGER NOT NULL,
    source_tags INTEGER NOT NULL,
    tags TEXT NOT NULL,
    attributes TEXT NOT NULL,
    events TEXT NOT NULL,
    links TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS spans_by_trace ON spans (trace_ref, span_id);
CREATE INDEX IF NOT EXISTS spans_by_start ON spans (start_ns);
CREATE TABLE IF NOT EXISTS segments (
    seq INTEGER PRIMARY KEY,
    max_ref INTEGER NOT NULL,
    keys INTEGER NOT NULL,
    parts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tag_postings (
    seq INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    part INTEGER NOT NULL,
    refs BLOB NOT NULL,
    PRIMARY KEY (seq, tag, part)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS open_postings (
    seq INTEGER NOT NULL,
    part INTEGER NOT NULL,
    tag INTEGER NOT NULL,
    refs BLOB NOT NULL,
    PRIMARY KEY (seq, part, tag)
) WITHOUT ROWID;
PRAGMA user_version = {SCHEMA_VERSION};
"""

# The columns of a SpanRow, in its order, from spans s joined to its trace t, op o,
# service v and source r.
_SPAN_COLUMNS = (
    "t.trace_id, s.span_id, s.parent_span_id, v.name, o.name, o.kind, s.start_ns, s.end_ns,"
    " s.status_code, s.status_message, s.flags, s.trace_state, s.attributes, s.events,"
    " s.links, r.resource, r.scope, s.tags, iif(s.source_tags, r.tags, '')"
)
_JOIN_TRACE = "JOIN traces t ON t.ref = s.trace_ref"
_SPAN_JOINS = (
    "JOIN ops o ON o.id = s.op_id JOIN services v ON v.id = o.service_id"
    " JOIN sources r ON r.id = s.source_id"
)

# ORDER BY of each order, the ref (the order of storing) breaking ties.
_ORDER_BY: dict[str, str] = {
    "newest": "t.start_ns DESC, t.ref DESC",
    "oldest": "t.start_ns, t.ref",
    "slowest": "t.duration_ns DESC, t.ref DESC",
    "fastest": "t.duration_ns, t.ref",
    "most_spans": "t.span_count DESC, t.ref DESC",
    "most_errors": "t.error_count DESC, t.ref DESC",
}

# A span carries a tag ("\nk=v\n", twice) among its own tags in their newline form, or among
# its source's, or ("k=v") among its own in their JSON form.
_SPAN_HAS_TAG = (
    "(instr(s.tags, ?) > 0"
    " OR (s.source_tags AND instr((SELECT tags FROM sources WHERE id = s.source_id), ?) > 0)"
    " OR (substr(s.tags, 1, 1) = '['"
    " AND EXISTS (SELECT 1 FROM json_each(s.tags) WHERE json_each.value = ?)))"
)

_INSERT_SPAN = (
    "INSERT OR IGNORE INTO spans (trace_ref, span_id, parent_span_id, op_id, start_ns, end_ns,"
    " duration_ns, status_code, status_message, flags, trace_state, source_id, source_tags,"
    " tags, attributes, events, links) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_INSERT_SUMMARY = (
    "INSERT INTO traces (ref, trace_id, start_ns, end_ns, duration_ns, span_count, error_count,"
    " root_op, root_start_ns, root_span_id, root_parentless, services)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)
# A batch's part of a stored trace merged into its summary: (start, end, spans, errors,
# its services, the merged services or NULL to append, ref), and for a new root (op, start,
# span id, parentless).
_MERGE_SUMMARY = """
UPDATE traces SET
    start_ns = min(start_ns, ?1),
    end_ns = max(end_ns, ?2),
    duration_ns = max(0, max(end_ns, ?2) - min(start_ns, ?1)),
    span_count = span_count + ?3,
    error_count = error_count + ?4,
    services = coalesce(?6, services || ',' || ?5)
WHERE ref = ?7
"""
_MERGE_SUMMARY_ROOT = _MERGE_SUMMARY.replace(
    "WHERE",
    ", root_op = ?8, root_start_ns = ?9, root_span_id = ?10, root_parentless = ?11\nWHERE",
)
_SERVICES_COMPACT = 512  # a summary's services longer than this are summed up when merged
_LAST_SEEN_AHEAD_NS = 60 * 10**9
_UPDATE_SUMMARY = (
    "UPDATE traces SET start_ns = ?, end_ns = ?, duration_ns = ?, span_count = ?, error_count = ?,"
    " root_op = ?, root_start_ns = ?, root_span_id = ?, root_parentless = ?, services = ?"
    " WHERE ref = ?"
)
_INSERT_POSTINGS = "INSERT INTO open_postings (seq, tag, part, refs) VALUES (?, ?, ?, ?)"
# The open segment's rows, moved in (tag, part) order once it is closed: appended in batch
# order to open_postings, each batch's rows land together at the end of its B-tree.
# A key range's posting lists: a seek per closed segment, then the open one's few rows.
_POSTINGS_FROM = (
    "FROM segments g CROSS JOIN tag_postings p ON p.seq = g.seq AND p.tag BETWEEN ? AND ?",
    "FROM open_postings p WHERE p.tag BETWEEN ? AND ?",
)
_POSTINGS_SQL = tuple(f"SELECT p.refs {where}" for where in _POSTINGS_FROM)
_POSTINGS_BYTES_SQL = tuple(
    f"SELECT coalesce(sum(length(p.refs)), 0) {where}" for where in _POSTINGS_FROM
)
_CLOSE_SEGMENTS = (
    "INSERT INTO tag_postings (seq, tag, part, refs) SELECT seq, tag, part, refs"
    " FROM open_postings WHERE seq < ?1 ORDER BY seq, tag, part",
    "DELETE FROM open_postings WHERE seq < ?1",
)


class TraceStoreError(Exception):
    """The store cannot do what was asked: closed, not a trace store, or a SQLite failure.

    Like :class:`~seawall.config.errors.ConfigError`, it stands alone:
    :mod:`seawall.telemetry` imports nothing else of seawall.
    """


# ---------------------------------------------------------------------- values


def _check_ns(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_NS:
        raise ValueError(f"{name} must be an integer of nanoseconds >= 0, got {value!r}")


def _check_kind(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
        raise ValueError(f"{name} must be a SpanKind value (0..5), got {value!r}")


def _check_trace_id(name: str, value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != 16:
        shown = f"{len(value)} bytes" if isinstance(value, bytes) else repr(value)
        raise ValueError(f"{name} must be 16 bytes, got {shown}")
    return value


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """A search, Jaeger's: the traces one of whose spans matches every span filter.

    Span filters, all on the same span: ``service``, ``operation`` (the span's
    name), ``span_kind``, ``status`` (``"error"``: status code ERROR; ``"ok"``:
    any other), ``min_duration_ns`` / ``max_duration_ns`` (the span's, both
    inclusive) and ``attributes`` (each ``key=value`` among the span's
    :attr:`~SpanRow.tags`; a value is compared on its first
    :data:`~seawall.telemetry.spans.MAX_TAG_VALUE` characters, as the tags
    keep it). Trace filter: ``start_min_ns <= trace start <= start_max_ns``
    (Unix ns). At most ``limit`` summaries come back, in ``order``; ties go to
    the trace stored later (for ``oldest`` and ``fastest``: earlier).

    Raises :class:`ValueError` naming the field for a bad value.
    """

    service: str | None = None
    operation: str | None = None
    span_kind: int | None = None
    status: Literal["error", "ok"] | None = None
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    start_min_ns: int | None = None
    start_max_ns: int | None = None
    limit: int = 20
    order: Order = "newest"

    def __post_init__(self) -> None:
        for name in ("service", "operation"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"TraceQuery.{name} must be a non-empty string, got {value!r}")
        _check_kind("TraceQuery.span_kind", self.span_kind)
        if self.status not in (None, "error", "ok"):
            raise ValueError(
                f"TraceQuery.status must be 'error', 'ok' or None, got {self.status!r}"
            )
        _check_ns("TraceQuery.min_duration_ns", self.min_duration_ns)
        _check_ns("TraceQuery.max_duration_ns", self.max_duration_ns)
        if (
            self.min_duration_ns is not None
            and self.max_duration_ns is not None
            and self.min_duration_ns > self.max_duration_ns
        ):
            raise ValueError(
                f"TraceQuery.min_duration_ns ({self.min_duration_ns}) must be <= "
                f"max_duration_ns ({self.max_duration_ns})"
            )
        _check_ns("TraceQuery.start_min_ns", self.start_min_ns)
        _check_ns("TraceQuery.start_max_ns", self.start_max_ns)
        if (
            self.start_min_ns is not None
            and self.start_max_ns is not None
            and self.start_min_ns > self.start_max_ns
        ):
            raise ValueError(
                f"TraceQuery.start_min_ns ({self.start_min_ns}) must be <= "
                f"start_max_ns ({self.start_max_ns})"
            )
        if not isinstance(self.attributes, Mapping):
            raise ValueError(
                f"TraceQuery.attributes must be a mapping of str to str, got {self.attributes!r}"
            )
        for key, value in self.attributes.items():
            if not isinstance(key, str) or not key or not isinstance(value, str):
                raise ValueError(
                    "TraceQuery.attributes must map non-empty strings to strings, "
                    f"got {key!r}: {value!r}"
                )
        object.__setattr__(self, "attributes", types.MappingProxyType(dict(self.attributes)))
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"TraceQuery.limit must be between 1 and {MAX_LIMIT}, got {limit!r}")
        if self.order not in ORDERS:
            raise ValueError(
                f"TraceQuery.order must be one of {', '.join(ORDERS)}; got {self.order!r}"
            )


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """One trace, as a search lists it (times in Unix ns).

    ``root_service`` and ``root_name`` are the span without a parent's (the
    earliest one if several), else the earliest span's; ``services`` is every
    service with its number of spans, most spans first, then by name.
    """

    trace_id: bytes
    start_ns: int
    duration_ns: int
    root_service: str
    root_name: str
    span_count: int
    error_count: int
    services: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """What one :meth:`TraceStore.enforce_retention` run deleted."""

    traces_expired: int
    """Traces that started more than ``max_age`` ago."""
    traces_evicted: int
    """The oldest traces, deleted to bring the pages in use under ``max_bytes``."""
    spans_deleted: int
    bytes_before: int
    """Pages in use (``(page_count - freelist_count) * page_size``) before the run."""
    bytes_after: int


@dataclass(frozen=True, slots=True)
class TraceStoreStats:
    """Counters since the store was opened, and the size of the file now."""

    spans_stored: int
    spans_duplicate: int
    """Spans whose (trace id, span id) was already stored: ignored."""
    spans_dropped_full: int
    """Spans of batches dropped because the database or disk stayed full."""
    traces_expired: int
    traces_evicted_size: int
    """Oldest traces deleted for ``max_bytes`` or for a full database or disk."""
    bytes_used: int
    """Pages in use."""
    bytes_file: int
    """Pages in the file, free ones included (not counting the WAL file)."""


# ---------------------------------------------------------------------- helpers


def _tag_key(tag: str) -> int:
    """The CRC-32 of a tag, as a signed 32-bit integer (4 bytes in a SQLite record)."""
    h = zlib.crc32(tag.encode())
    return h - 0x1_0000_0000 if h & 0x8000_0000 else h


def _encode_tags(tags: tuple[str, ...]) -> str:
    if not tags:
        return ""
    text = "\n".join(("", *tags, ""))
    if text.count("\n") == len(tags) + 1:
        return text
    return json.dumps(list(tags), separators=(",", ":"))


def _decode_tags(text: str) -> tuple[str, ...]:
    if not text:
        return ()
    if text[0] == "[":
        return tuple(json.loads(text))
    return tuple(text[1:-1].split("\n"))


def _pack_refs(refs: list[int]) -> bytes:
    packed = array("I", refs)
    if _BIG_ENDIAN:  # the file is little-endian wherever it was written
        packed.byteswap()
    return packed.tobytes()


def _pack_pairs(pairs: list[int]) -> bytes:
    packed = array("q", pairs)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpack_pairs(blob: bytes) -> array[int]:
    pairs = array("q")
    pairs.frombytes(blob)
    if _BIG_ENDIAN:
        pairs.byteswap()
    return pairs


def _unpack_refs(blob: bytes) -> array[int]:
    refs = array("I")
    refs.frombytes(blob)
    if _BIG_ENDIAN:
        refs.byteswap()
    return refs


def _row(r: Sequence[Any]) -> SpanRow:
    """A SpanRow from _SPAN_COLUMNS: the span's own tags, then its source's if it has them."""
    tags = _decode_tags(r[17])
    if r[18]:
        tags += _decode_tags(r[18])
    return SpanRow._make((*r[:17], tags))


def _resource_tags(resource: str) -> tuple[str, ...]:
    """The tags of a resource's attributes, by the rule of :class:`SpanRow`'s ``tags``.

    The decoder derives them; this is only used to store them once per source,
    for the spans whose tags end with exactly these (checked): a resource
    written differently, or a double printed another way, costs room, never
    a tag.
    """
    try:
        attributes = json.loads(resource, parse_float=str, parse_int=str)
    except ValueError:
        return ()
    tags = []
    if isinstance(attributes, list):
        for kv in attributes:
            if not isinstance(kv, dict) or not isinstance(value := kv.get("value"), dict):
                continue
            if isinstance(text := value.get("stringValue"), str):
                text = text[:MAX_TAG_VALUE]
            elif isinstance(flag := value.get("boolValue"), bool):
                text = "true" if flag else "false"
            elif isinstance(text := value.get("intValue", value.get("doubleValue")), str):
                pass
            else:
                continue
            tags.append(f"{kv.get('key')}={text}")
    return tuple(tags)


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _is_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: "database or disk is full" (max_page_count reached, or the disk)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == _SQLITE_FULL or "database or disk is full" in str(exc)


def _encode_services(counts: Mapping[int, int]) -> str:
    return ",".join(map("{}:{}".format, counts, counts.values()))


def _decode_services(text: str) -> dict[int, int]:
    out: dict[int, int] = {}
    if text:
        for part in text.split(","):
            sid, _, n = part.partition(":")  # a service repeats once per batch merged
            out[int(sid)] = out.get(int(sid), 0) + int(n)
    return out


# Posting keys besides tags (whose keys are CRC-32s, within +-2**31): one range each.
_KEY_SERVICE = 1 << 44  # | service id: a span of this service
_KEY_OP = 2 << 44  # | op id: a span of this (service, name, kind)
_KEY_SERVICE_DURATION = 3 << 44  # | service id << 7 | duration.bit_length(): such a span, so long
_KEY_DURATION = 4 << 44  # | duration.bit_length(): a span that long
_KEY_ERROR = 5 << 44  # a span with status ERROR
_KEY_SOURCE = 6 << 44  # | source id: a span whose tags end with its source's (sources.tags)
_KEY_PAIRS = 7 << 44  # the batch's (tag CRC, ref) pairs of tags one trace holds, as int64s
# What SpanBatch.prepare builds an op's keys, an error's, a service's and the pairs' from.
_KEYS = (_KEY_OP, _KEY_SERVICE_DURATION, _KEY_DURATION, _KEY_ERROR, _KEY_SERVICE, _KEY_PAIRS)


@dataclass(frozen=True, slots=True)
class _Op:
    """An interned (service, name, kind): its id and its service's (the writer's cache)."""

    id: int
    service: int


@dataclass(frozen=True, slots=True)
class _Source:
    """An interned (resource, scope), with its resource's tags (the writer's cache)."""

    id: int
    tags: tuple[str, ...]
    key: int

    @classmethod
    def of(cls, source_id: int, tags: tuple[str, ...]) -> _Source:
        return cls(source_id, tags, _KEY_SOURCE | source_id)


class _Summary:
    """A trace's summary while a batch is merged into it (mutable, slotted: the hot path)."""

    __slots__ = (
        "end",
        "errors",
        "root_op",
        "root_parentless",
        "root_span",
        "root_start",
        "services",
        "spans",
        "start",
    )

    def __init__(self) -> None:
        self.start = _MAX_NS
        self.end = -1
        self.spans = 0
        self.errors = 0
        self.root_op = 0
        self.root_start = _MAX_NS
        self.root_span = b"\xff" * 9
        self.root_parentless = 0
        self.services: dict[int, int] = {}

    def add(  # noqa: PLR0917 (positional: the hot path of insert)
        self, start: int, end: int, error: bool, parentless: int, op: int, span: bytes, svc: int
    ) -> None:
        self.start = min(self.start, start)
        self.end = max(self.end, end)
        self.spans += 1
        if error:
            self.errors += 1
        services = self.services
        services[svc] = services.get(svc, 0) + 1
        self._root(parentless, start, span, op)

    def _root(self, parentless: int, start: int, span: bytes, op: int) -> None:
        """Take this span as the root if it sorts first: no parent, then start, then id."""
        if (-parentless, start, span) < (-self.root_parentless, self.root_start, self.root_span):
            self.root_parentless = parentless
            self.root_start = start
            self.root_span = span
            self.root_op = op

    def values(self) -> tuple[int, int, int, int, int, int, int, bytes, int, str]:
        return (
            self.start,
            self.end,
            max(0, self.end - self.start),
            self.spans,
            self.errors,
            self.root_op,
            self.root_start,
            self.root_span,
            self.root_parentless,
            _encode_services(self.services),
        )


@dataclass(slots=True)
class _Plan:
    """A search, resolved against the store: SQL fragments and their parameters."""

    span_where: list[str]  # on spans s: the filters one span must meet together
    span_params: list[Any]
    trace_where: list[str]  # on traces t: the start range
    trace_params: list[Any]
    keys: list[list[tuple[int, int]]]  # per filter, the posting key ranges listing its traces
    _pairs: list[array[int]] | None = None

    def pairs(self, conn: sqlite3.Connection) -> list[array[int]]:
        """The batches' (CRC, ref) pairs (read once per search, when a tag is looked up)."""
        if self._pairs is None:
            self._pairs = [
                _unpack_pairs(blob)
                for sql in _POSTINGS_SQL
                for (blob,) in conn.execute(sql, (_KEY_PAIRS, _KEY_PAIRS))
            ]
        return self._pairs


# ---------------------------------------------------------------------- the store


class TraceStore:
    """Spans in one SQLite file (or ``":memory:"``), with retention; thread-safe.

    ``max_age`` (seconds) and ``max_bytes`` bound what is kept; ``clock`` is
    wall-clock Unix seconds (span times are Unix ns), injected for tests. One
    store per file: the writer's caches assume nobody else writes to it.
    See the module docstring for the schema and the guarantees.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_age: float = 7 * 86400,
        max_bytes: int = 1 << 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (isinstance(max_age, int | float) and max_age > 0 and math.isfinite(max_age)):
            raise ValueError(f"TraceStore: max_age must be > 0 seconds, got {max_age!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"TraceStore: max_bytes must be an integer > 0, got {max_bytes!r}")
        self.path = os.fspath(path)
        self._memory = self.path == ":memory:"
        self._max_age = float(max_age)
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()  # the writer connection: one transaction at a time
        self._closed = False
        self._since_retention = 0  # spans given to insert since retention last ran
        # counters (written under _lock, read under _stats_lock)
        self._stats_lock = threading.Lock()
        self._stored = 0
        self._duplicate = 0
        self._dropped_full = 0
        self._expired = 0
        self._evicted = 0
        self._last_warning = -math.inf
        self._unwarned = 0
        # interning caches in front of the writer's tables (cleared on rollback and GC)
        self._service_ids: dict[str, int] = {}
        self._op_ids: dict[tuple[str, str, int], _Op] = {}
        self._source_ids: dict[tuple[str, str], _Source] = {}
        self._last_seen: dict[tuple[str, int], int] = {}  # ("ops" | "sources", id) -> as stored
        # (service, name, kind, resource, scope) -> both: one lookup per span
        self._origins: dict[tuple[str, str, int, str, str], tuple[_Op, _Source]] = {}
        # reader pool
        self._pool = threading.Condition(threading.Lock())
        self._idle: list[sqlite3.Connection] = []
        self._readers = 0
        self._wal_restart_frames = 0  # set by _open_writer, from the file's page size
        # every stored trace id -> its ref: the writer's (and this process's readers') way
        # from a trace id to a trace, instead of an index on random keys (see the docs)
        self._trace_refs: dict[bytes, int] = {}
        self._trace_refs_ok = False
        self._writer = self._open_writer()
        self._load_trace_refs()
        # checkpoints (copying the WAL into the file, with two fsyncs) run on a thread of their
        # own, off the insert path; see _checkpoint_forever
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if not self._memory:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_forever, name=f"trace-store-checkpoint {self.path}"
            )
            self._checkpointer.daemon = True
            self._checkpointer.start()

    # -- lifecycle -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=5.0, isolation_level=None, check_same_thread=False
        )

    def _open_writer(self) -> sqlite3.Connection:
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise TraceStoreError(f"trace store {self.path}: cannot open: {exc}") from exc
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise TraceStoreError(
                    f"trace store {self.path}: schema version {version} is newer than this "
                    f"seawall's ({SCHEMA_VERSION}); upgrade seawall"
                )
            if version == 0:
                if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                    raise TraceStoreError(f"trace store {self.path}: not a trace store")
                # page size and auto_vacuum only take effect before the first table exists
                conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            if not self._memory:
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                if mode != "wal":
                    raise TraceStoreError(f"trace store {self.path}: cannot use WAL (got {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            self._wal_restart_frames = _WAL_RESTART_BYTES // page_size
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_BYTES // page_size}")
            conn.execute(f"PRAGMA journal_size_limit = {_JOURNAL_SIZE_LIMIT}")
            if version < SCHEMA_VERSION:
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        except sqlite3.Error as exc:
            conn.close()
            raise TraceStoreError(f"trace store {self.path}: cannot open: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _load_trace_refs(self) -> None:
        """The map of trace ids to refs, read again from the file (at open, after a rollback)."""
        try:
            self._trace_refs = dict(self._writer.execute("SELECT trace_id, ref FROM traces"))
        except sqlite3.Error as exc:
            raise TraceStoreError(
                f"trace store {self.path}: cannot read the traces: {exc}"
            ) from exc
        self._trace_refs_ok = True

    def close(self) -> None:
        """Close every connection; later calls raise :class:`TraceStoreError`. Idempotent."""
        self._stop.set()
        if self._checkpointer is not None and self._checkpointer is not threading.current_thread():
            self._checkpointer.join(30)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):  # leave the file whole, the WAL empty
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self._writer.close()
        with self._pool:
            idle, self._idle = self._idle, []
            self._readers -= len(idle)
            self._pool.notify_all()
        for conn in idle:
            conn.close()

    def _checkpoint_forever(self) -> None:
        """Copy the WAL into the file every ``_CHECKPOINT_EVERY_S``, beside the writer.

        A passive checkpoint runs concurrently with inserts, but the WAL only
        restarts from its beginning when a write transaction starts with every
        frame copied; under a steady flow of inserts that never happens by
        itself. So once the WAL holds ``_WAL_RESTART_BYTES``, the last
        few are copied under the writer's lock (milliseconds: a few frames and
        two fsyncs) and the next insert restarts the WAL.
        """
        try:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        except sqlite3.Error as exc:
            log.warning("trace store %s: no checkpoint thread: %s", self.path, exc)
            return
        try:
            while not self._stop.wait(_CHECKPOINT_EVERY_S):
                try:
                    frames = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
                    if frames >= self._wal_restart_frames:
                        # once more unlocked, so that the locked pass copies milliseconds' worth
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        with self._lock:
                            if not self._closed:
                                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # e.g. a full disk; the writer's own is the backstop
                    log.warning("trace store %s: checkpoint failed: %s", self.path, exc)
                    self._stop.wait(10 * _CHECKPOINT_EVERY_S)
        finally:
            conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _closed_error(self) -> TraceStoreError:
        return TraceStoreError(f"trace store {self.path}: the store is closed")

    # -- connections -----------------------------------------------------

    @contextlib.contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        """A connection for one call, in one read transaction (one snapshot); errors mapped."""
        if self._memory:
            with self._lock:
                if self._closed:
                    raise self._closed_error()
                try:
                    yield self._writer
                except sqlite3.Error as exc:
                    raise TraceStoreError(f"trace store {self.path}: {what}: {exc}") from exc
            return
        conn = self._borrow()
        try:
            conn.execute("BEGIN")
            yield conn
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise TraceStoreError(f"trace store {self.path}: {what}: {exc}") from exc
        finally:
            self._give_back(conn)

    def _borrow(self) -> sqlite3.Connection:
        deadline = time.monotonic() + _READER_WAIT_S
        with self._pool:
            while True:
                if self._closed:
                    raise self._closed_error()
                if self._idle:
                    return self._idle.pop()
                if self._readers < _MAX_READERS:
                    self._readers += 1  # the slot is ours; connect outside the lock
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TraceStoreError(
                        f"trace store {self.path}: all {_MAX_READERS} readers busy for "
                        f"{_READER_WAIT_S:g} s"
                    )
                self._pool.wait(left)
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            conn.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
            conn.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as exc:
            with self._pool:
                self._readers -= 1
                self._pool.notify()
            raise TraceStoreError(f"trace store {self.path}: cannot open a reader: {exc}") from exc
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:  # the call failed mid-way
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        with self._pool:
            if not self._closed:
                self._idle.append(conn)
                self._pool.notify()
                return
            self._readers -= 1
        conn.close()

    # -- ingest ----------------------------------------------------------

    def insert(self, rows: Sequence[SpanRow]) -> int:
        """Store a batch in one transaction; the number of spans newly stored.

        The rows are trusted to be what :class:`SpanRow` says (the decoder's
        job). Duplicates of stored spans are skipped (counted). A full
        database or disk never raises: the oldest traces are dropped and the
        batch tried once more, else the batch is dropped (counted, logged).
        Once :data:`RETENTION_EVERY` spans came since it last ran, retention runs.
        """
        if not rows:
            return 0
        with self._lock:
            if self._closed:
                raise self._closed_error()
            stored = self._insert_or_make_room(rows)
            self._since_retention += len(rows)
            if self._since_retention >= RETENTION_EVERY:
                try:
                    self._retention()
                except sqlite3.Error as exc:  # e.g. a disk too full to log the deletion
                    log.warning("trace store %s: retention failed: %s", self.path, exc)
        return stored

    def _insert_or_make_room(self, rows: Sequence[SpanRow]) -> int:
        try:
            return self._insert(rows)
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise TraceStoreError(f"trace store {self.path}: insert: {exc}") from exc
            first = exc
        evicted = 0
        with contextlib.suppress(sqlite3.Error):
            evicted = self._evict_for_room(2 * len(rows))
        try:
            stored = self._insert(rows)
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise TraceStoreError(f"trace store {self.path}: insert: {exc}") from exc
            with self._stats_lock:
                self._dropped_full += len(rows)
            self._warn_full(
                f"trace store {self.path}: database or disk full ({exc}); dropped the oldest "
                f"{evicted} traces, still full: dropped a batch of {len(rows)} spans"
            )
            return 0
        self._warn_full(
            f"trace store {self.path}: database or disk full ({first}); dropped the oldest "
            f"{evicted} traces to store a batch of {len(rows)} spans"
        )
        return stored

    def _warn_full(self, message: str) -> None:
        now = self._clock()
        if now - self._last_warning >= _WARN_EVERY_S:
            more = f" ({self._unwarned} more since the last warning)" if self._unwarned else ""
            log.warning("%s%s", message, more)
            self._last_warning = now
            self._unwarned = 0
        else:
            self._unwarned += 1

    def _forget_interned(self) -> None:
        self._last_seen.clear()
        self._service_ids.clear()
        self._op_ids.clear()
        self._source_ids.clear()
        self._origins.clear()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            self._forget_interned()  # ids made in the rolled-back transaction are gone
            try:  # and so are the traces it added or deleted
                self._load_trace_refs()
            except TraceStoreError:
                self._trace_refs_ok = False  # the next insert tries again, before using it
            raise

    def _insert(self, rows: Sequence[SpanRow]) -> int:
        if not self._trace_refs_ok:
            self._load_trace_refs()
        batch = _native.SpanBatch(rows)  # the rows read once, by trace and by origin
        with self._transaction() as conn:
            # 1. the stored traces among the batch's, and a new ref for each other
            ids: list[bytes] = batch.trace_ids
            trace_refs = self._trace_refs
            refs: dict[bytes, int] = {}
            stored_roots: dict[int, tuple[int, int, bytes]] = {}  # ref -> its root's sort key
            long_services: dict[int, str] = {}  # appended to in many batches: summed up
            known = [ref for ref in map(trace_refs.get, ids) if ref is not None]
            for part in _chunks(known):
                for ref, tid, parentless, root_start, root_span, services_text in conn.execute(
                    "SELECT ref, trace_id, root_parentless, root_start_ns, root_span_id,"
                    f" iif(length(services) > {_SERVICES_COMPACT}, services, NULL) FROM traces"
                    f" WHERE ref IN ({_marks(len(part))})",
                    part,
                ):
                    refs[tid] = ref
                    stored_roots[ref] = (1 - parentless, root_start, root_span)
                    if services_text is not None:
                        long_services[ref] = services_text
            stored_refs = set(stored_roots)
            last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'traces'").fetchone()
            max_ref = last[0] if last else 0
            for tid in ids:
                if tid not in refs:
                    max_ref += 1
                    refs[tid] = trace_refs[tid] = max_ref  # (a rollback reloads the map)

            # 2. the batch's origins, interned; the native pass (the span rows, each trace's
            # summary of the batch, each origin's latest start, the posting lists)
            origins = [
                self._origins.get(origin) or self._intern(conn, *origin) for origin in batch.origins
            ]
            params, summaries, latest, postings = batch.prepare(
                [refs[tid] for tid in ids],
                [(op.id, op.service, src.id, src.key, src.tags) for op, src in origins],
                _KEYS,
            )
            new: list[tuple[Any, ...]] = []  # summaries of new traces
            merged: list[tuple[Any, ...]] = []  # of the batch's part of stored ones
            rerooted: list[tuple[Any, ...]] = []  # the same, with a new root
            for tid, summary in zip(ids, summaries, strict=True):
                ref, first, final, count, errors, counts, op, start, span, parentless = summary
                if ref not in stored_roots:
                    duration = final - first if final > first else 0
                    new.append((ref, tid, first, final, duration, count, errors, op, start, span,
                                parentless, counts))  # fmt: skip
                    continue
                summed = None
                if ref in long_services:
                    services = _decode_services(counts)
                    for svc, n in _decode_services(long_services[ref]).items():
                        services[svc] = services.get(svc, 0) + n
                    summed = _encode_services(services)
                merging = (first, final, count, errors, counts, summed, ref)
                if (1 - parentless, start, span) < stored_roots[ref]:  # a better root
                    rerooted.append((*merging, op, start, span, parentless))
                else:
                    merged.append(merging)
            stored = conn.executemany(_INSERT_SPAN, params).rowcount
            duplicate = len(rows) - stored

            # 3. the summaries: new, or merged into the stored ones (in SQL); after duplicates,
            # recomputed from the stored spans
            if duplicate:
                self._recompute_summaries(conn, refs, stored_refs)
            else:
                for sql, rows_ in (
                    (_INSERT_SUMMARY, new),
                    (_MERGE_SUMMARY, merged),
                    (_MERGE_SUMMARY_ROOT, rerooted),
                ):
                    if rows_:
                        conn.executemany(sql, rows_)

            # 4. the postings, appended to the open segment; when sources and ops were last seen
            self._append_postings(conn, postings, max_ref)
            # (written ahead by _LAST_SEEN_AHEAD_NS, so that most batches write none: a name
            # or source outlives its last span by that much at most)
            written = self._last_seen
            due: dict[tuple[str, int], int] = {}
            for (op_, source), start in zip(origins, latest, strict=True):
                for named in (("ops", op_.id), ("sources", source.id)):
                    if start > written.get(named, -1) and start > due.get(named, -1):
                        due[named] = start
            for (table, row), start in due.items():
                conn.execute(
                    f"UPDATE {table} SET last_seen_ns = ?2 WHERE id = ?1 AND last_seen_ns < ?2",
                    (row, start + _LAST_SEEN_AHEAD_NS),
                )
                written[table, row] = start + _LAST_SEEN_AHEAD_NS
        with self._stats_lock:
            self._stored += stored
            self._duplicate += duplicate
        return stored

    def _append_postings(
        self, conn: sqlite3.Connection, postings: Sequence[tuple[int, bytes]], max_ref: int
    ) -> None:
        """Add the batch's ``(key, packed refs)`` rows to the open segment (the next one if
        it is full), as its next part."""
        segment = conn.execute(
            "SELECT seq, keys, parts FROM segments ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if segment is None or segment[1] >= SEGMENT_KEYS:
            seq, part = (1 if segment is None else segment[0] + 1), 1
            for sql in _CLOSE_SEGMENTS:
                conn.execute(sql, (seq,))
            conn.execute(
                "INSERT INTO segments (seq, max_ref, keys, parts) VALUES (?, 0, 0, 0)", (seq,)
            )
        else:
            seq, part = segment[0], segment[2] + 1
        conn.executemany(_INSERT_POSTINGS, [(seq, key, part, refs) for key, refs in postings])
        conn.execute(
            "UPDATE segments SET max_ref = max(max_ref, ?), keys = keys + ?, parts = ?"
            " WHERE seq = ?",
            (max_ref, len(postings), part, seq),
        )

    def _intern(  # noqa: PLR0917
        self,
        conn: sqlite3.Connection,
        service: str,
        name: str,
        kind: int,
        resource: str,
        scope: str,
    ) -> tuple[_Op, _Source]:
        """The ids of a span's (service, name, kind) and (resource, scope), made if new."""
        op = self._op_ids.get((service, name, kind))
        if op is None:
            op = self._intern_op(conn, service, name, kind)
        source = self._source_ids.get((resource, scope))
        if source is None:
            source = self._intern_source(conn, resource, scope)
        if len(self._origins) > _CACHE_MAX:
            self._origins.clear()
        origin = self._origins[(service, name, kind, resource, scope)] = (op, source)
        return origin

    def _intern_op(self, conn: sqlite3.Connection, service: str, name: str, kind: int) -> _Op:
        svc = self._service_ids.get(service)
        if svc is None:
            conn.execute("INSERT OR IGNORE INTO services (name) VALUES (?)", (service,))
            svc = int(
                conn.execute("SELECT id FROM services WHERE name = ?", (service,)).fetchone()[0]
            )
            if len(self._service_ids) > _CACHE_MAX:
                self._service_ids.clear()
            self._service_ids[service] = svc
        conn.execute(
            "INSERT OR IGNORE INTO ops (service_id, name, kind, last_seen_ns) VALUES (?, ?, ?, -1)",
            (svc, name, kind),
        )
        op_id = int(
            conn.execute(
                "SELECT id FROM ops WHERE service_id = ? AND name = ? AND kind = ?",
                (svc, name, kind),
            ).fetchone()[0]
        )
        if len(self._op_ids) > _CACHE_MAX:
            self._op_ids.clear()
        op = self._op_ids[(service, name, kind)] = _Op(op_id, svc)
        return op

    def _intern_source(self, conn: sqlite3.Connection, resource: str, scope: str) -> _Source:
        tags = _resource_tags(resource)
        text = "\n".join(("", *tags, "")) if tags else ""
        if text.count("\n") != len(tags) + 1:  # a tag holds a newline: not shared
            tags, text = (), ""
        conn.execute(
            "INSERT OR IGNORE INTO sources (resource, scope, tags, last_seen_ns)"
            " VALUES (?, ?, ?, -1)",
            (resource, scope, text),
        )
        src_id, text = conn.execute(
            "SELECT id, tags FROM sources WHERE resource = ? AND scope = ?", (resource, scope)
        ).fetchone()
        if len(self._source_ids) > _CACHE_MAX:
            self._source_ids.clear()
        source = self._source_ids[(resource, scope)] = _Source.of(src_id, _decode_tags(text))
        return source

    @staticmethod
    def _recompute_summaries(
        conn: sqlite3.Connection, refs: Mapping[bytes, int], stored: set[int]
    ) -> None:
        """The summaries of the batch's traces, from their stored spans (after duplicates)."""
        by_ref = {ref: tid for tid, ref in refs.items()}
        summaries: dict[int, _Summary] = {}
        for part in _chunks(list(by_ref)):
            for ref, start, end, status, parent, op, span, svc in conn.execute(
                "SELECT s.trace_ref, s.start_ns, s.end_ns, s.status_code, s.parent_span_id,"
                " s.op_id, s.span_id, o.service_id FROM spans s JOIN ops o ON o.id = s.op_id"
                f" WHERE s.trace_ref IN ({_marks(len(part))})",
                part,
            ):
                summary = summaries.get(ref)
                if summary is None:
                    summary = summaries[ref] = _Summary()
                summary.add(start, end, status == _ERROR, 0 if parent else 1, op, span, svc)
        new = []
        changed = []
        for ref, summary in summaries.items():
            tid = by_ref[ref]
            if ref in stored:
                changed.append((*summary.values(), ref))
            else:
                new.append((ref, tid, *summary.values()))
        conn.executemany(_INSERT_SUMMARY, new)
        conn.executemany(_UPDATE_SUMMARY, changed)

    # -- retention -------------------------------------------------------

    def enforce_retention(self) -> RetentionReport:
        """Delete expired traces, then the oldest while over ``max_bytes``; see the module doc."""
        with self._lock:
            if self._closed:
                raise self._closed_error()
            try:
                return self._retention()
            except sqlite3.Error as exc:
                raise TraceStoreError(f"trace store {self.path}: retention: {exc}") from exc

    def _pages(self) -> tuple[int, int, int]:
        """(page_count, freelist_count, page_size) of the writer's view of the file."""
        conn = self._writer
        return (
            int(conn.execute("PRAGMA page_count").fetchone()[0]),
            int(conn.execute("PRAGMA freelist_count").fetchone()[0]),
            int(conn.execute("PRAGMA page_size").fetchone()[0]),
        )

    def _used_bytes(self) -> int:
        pages, free, size = self._pages()
        return (pages - free) * size

    def _retention(self) -> RetentionReport:
        self._since_retention = 0
        before = self._used_bytes()
        cutoff = int((self._clock() - self._max_age) * 1e9)
        expired = spans = 0
        while True:  # bounded: every round deletes at least one trace, or stops
            refs = [
                r[0]
                for r in self._writer.execute(
                    "SELECT ref FROM traces INDEXED BY traces_by_start WHERE start_ns < ? LIMIT ?",
                    (cutoff, _DELETE_CHUNK),
                )
            ]
            if not refs:
                break
            with self._transaction() as conn:
                spans += self._delete_traces(conn, refs)
            expired += len(refs)
        evicted = 0
        used = self._used_bytes()
        target = int(self._max_bytes * LOW_WATER)
        if used > self._max_bytes:
            while used > target:  # bounded: every round deletes at least one trace, or stops
                count = int(self._writer.execute("SELECT count(*) FROM traces").fetchone()[0])
                if not count:
                    break
                n = max(1, min(_DELETE_CHUNK, math.ceil(count * (used - target) / used)))
                with self._transaction() as conn:
                    refs = [
                        r[0]
                        for r in conn.execute("SELECT ref FROM traces ORDER BY ref LIMIT ?", (n,))
                    ]
                    spans += self._delete_traces(conn, refs)
                evicted += len(refs)
                used = self._used_bytes()
        if expired or evicted:
            with self._transaction() as conn:
                self._collect_garbage(conn)
            self._give_back_free_pages()
        with self._stats_lock:
            self._expired += expired
            self._evicted += evicted
        return RetentionReport(expired, evicted, spans, before, self._used_bytes())

    def _evict_for_room(self, spans: int) -> int:
        """Delete the oldest traces (the disk is full); how many.

        Enough to hold ``spans`` spans, but at most a quarter of the traces
        (at least one): a batch that could never fit costs a batch, not the store.
        """
        count = int(self._writer.execute("SELECT count(*) FROM traces").fetchone()[0])
        most = max(1, count // 4)
        refs: list[int] = []
        total = 0
        oldest = self._writer.execute("SELECT ref, span_count FROM traces ORDER BY ref")
        for ref, n in oldest:
            refs.append(ref)
            total += n
            if total >= spans or len(refs) >= most:
                break
        oldest.close()
        for part in _chunks(refs, _DELETE_CHUNK):
            with self._transaction() as conn:
                self._delete_traces(conn, part)
        if refs:
            with self._transaction() as conn:
                self._collect_garbage(conn)
        with self._stats_lock:
            self._evicted += len(refs)
        return len(refs)

    def _delete_traces(self, conn: sqlite3.Connection, refs: Sequence[int]) -> int:
        """Delete these traces and their spans; the number of spans deleted."""
        spans = 0
        for part in _chunks(refs):
            marks = _marks(len(part))
            for (tid,) in conn.execute(f"SELECT trace_id FROM traces WHERE ref IN ({marks})", part):
                self._trace_refs.pop(tid, None)
            spans += conn.execute(f"DELETE FROM spans WHERE trace_ref IN ({marks})", part).rowcount
            conn.execute(f"DELETE FROM traces WHERE ref IN ({marks})", part)
        return spans

    def _collect_garbage(self, conn: sqlite3.Connection) -> None:
        """Delete the tag segments, names and sources no stored trace uses any more."""
        # A segment names refs up to its max_ref; refs only grow, so below the oldest stored
        # trace's ref a segment names only deleted traces.
        oldest = "(SELECT coalesce(min(ref), 1 << 62) FROM traces)"
        for table in ("tag_postings", "open_postings"):
            conn.execute(
                f"DELETE FROM {table} WHERE seq IN"
                f" (SELECT seq FROM segments WHERE max_ref < {oldest})"
            )
        conn.execute(f"DELETE FROM segments WHERE max_ref < {oldest}")
        # A name or source last seen before the earliest stored trace started is used by no
        # stored span: every stored span starts at or after its trace's start.
        earliest = f"coalesce((SELECT min(start_ns) FROM traces), {_MAX_NS})"
        gone = conn.execute(f"DELETE FROM ops WHERE last_seen_ns < {earliest}").rowcount
        gone += conn.execute(
            "DELETE FROM services WHERE NOT EXISTS"
            " (SELECT 1 FROM ops WHERE ops.service_id = services.id)"
        ).rowcount
        gone += conn.execute(f"DELETE FROM sources WHERE last_seen_ns < {earliest}").rowcount
        if gone:
            self._forget_interned()

    def _give_back_free_pages(self) -> None:
        """Shrink the file when much more of it is free than the next inserts need."""
        pages, free, size = self._pages()
        reserve = max((16 << 20) // size, (pages - free) // 10)
        if free > reserve:
            # executescript steps it to the end; execute() would free a single page
            self._writer.executescript(f"PRAGMA incremental_vacuum({free - reserve});")

    # -- queries ---------------------------------------------------------

    def trace(self, trace_id: bytes) -> list[SpanRow]:
        """The spans of one trace, by start time (then span id); ``[]`` if unknown."""
        _check_trace_id("trace_id", trace_id)
        return self.traces([trace_id]).get(trace_id, [])

    def traces(self, ids: Sequence[bytes]) -> dict[bytes, list[SpanRow]]:
        """The spans of each known trace among ``ids``, by start time; unknown ids are absent."""
        wanted = set(map(partial(_check_trace_id, "ids[]"), ids))
        trace_refs = self._trace_refs  # the writer's map, read as it is now
        refs = sorted({ref for ref in map(trace_refs.get, wanted) if ref is not None})
        out: dict[bytes, list[SpanRow]] = {}
        with self._reading("traces") as conn:
            for part in _chunks(refs):
                for r in conn.execute(
                    f"SELECT {_SPAN_COLUMNS} FROM spans s INDEXED BY spans_by_trace"
                    f" JOIN traces t ON t.ref = s.trace_ref {_SPAN_JOINS}"
                    f" WHERE s.trace_ref IN ({_marks(len(part))})"
                    " ORDER BY s.trace_ref, s.start_ns, s.span_id",
                    part,
                ):
                    if r[0] in wanted:  # (the map may be a moment ahead of this snapshot)
                        out.setdefault(r[0], []).append(_row(r))
        return out

    def services(self) -> list[str]:
        """Every service with stored spans, sorted."""
        with self._reading("services") as conn:
            return [r[0] for r in conn.execute("SELECT name FROM services ORDER BY name")]

    def operations(self, service: str, span_kind: int | None = None) -> list[tuple[str, int]]:
        """The (span name, kind) pairs of a service's spans, sorted; ``[]`` for an unknown one."""
        if not isinstance(service, str):
            raise ValueError(f"service must be a string, got {service!r}")
        _check_kind("span_kind", span_kind)
        sql = (
            "SELECT o.name, o.kind FROM ops o JOIN services v ON v.id = o.service_id"
            " WHERE v.name = ?"
        )
        params: list[Any] = [service]
        if span_kind is not None:
            sql += " AND o.kind = ?"
            params.append(span_kind)
        with self._reading("operations") as conn:
            return [(r[0], r[1]) for r in conn.execute(sql + " ORDER BY o.name, o.kind", params)]

    def span_count(self) -> int:
        with self._reading("span_count") as conn:
            return int(conn.execute("SELECT count(*) FROM spans").fetchone()[0])

    def trace_count(self) -> int:
        with self._reading("trace_count") as conn:
            return int(conn.execute("SELECT count(*) FROM traces").fetchone()[0])

    def stats(self) -> TraceStoreStats:
        """The counters since opening, and the file's size now."""
        with self._reading("stats") as conn:
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        with self._stats_lock:
            return TraceStoreStats(
                spans_stored=self._stored,
                spans_duplicate=self._duplicate,
                spans_dropped_full=self._dropped_full,
                traces_expired=self._expired,
                traces_evicted_size=self._evicted,
                bytes_used=(pages - free) * size,
                bytes_file=pages * size,
            )

    def spans_between(
        self,
        start_ns: int,
        end_ns: int,
        *,
        service: str | None = None,
        kind: int | None = None,
    ) -> Iterator[SpanRow]:
        """The spans with ``start_ns <= start < end_ns``, by start (then storing order),
        optionally of one service and kind.

        Read in pages of 1,000, each in its own snapshot: no read transaction
        is held between pages, so a slow consumer never holds back the WAL; a
        span stored meanwhile appears if it sorts after the last page read.
        """
        _check_ns("start_ns", start_ns)
        _check_ns("end_ns", end_ns)
        if start_ns > end_ns:
            raise ValueError(f"start_ns ({start_ns}) must be <= end_ns ({end_ns})")
        if service is not None and not isinstance(service, str):
            raise ValueError(f"service must be a string or None, got {service!r}")
        _check_kind("kind", kind)
        return self._spans_between(start_ns, end_ns, service, kind)

    def _spans_between(
        self, start_ns: int, end_ns: int, service: str | None, kind: int | None
    ) -> Iterator[SpanRow]:
        where = ""
        extra: list[Any] = []
        if service is not None:
            where += " AND v.name = ?"
            extra.append(service)
        if kind is not None:
            where += " AND o.kind = ?"
            extra.append(kind)
        sql = (
            f"SELECT s.id, {_SPAN_COLUMNS} FROM spans s INDEXED BY spans_by_start"
            f" {_JOIN_TRACE} {_SPAN_JOINS}"
            " WHERE s.start_ns >= ? AND s.start_ns < ? AND (s.start_ns > ? OR s.id > ?)"
            f"{where} ORDER BY s.start_ns, s.id LIMIT 1000"
        )
        last_start, last_id = start_ns, -1  # keyset pagination on (start, id)
        while True:
            with self._reading("spans_between") as conn:
                rows = conn.execute(
                    sql, [last_start, end_ns, last_start, last_id, *extra]
                ).fetchall()
            for r in rows:
                yield _row(r[1:])
            if len(rows) < 1000:
                return
            last_start, last_id = rows[-1][7], rows[-1][0]

    # -- search ----------------------------------------------------------

    def search(self, q: TraceQuery) -> list[TraceSummary]:
        """The summaries of the traces matching ``q``, in its order; see :class:`TraceQuery`."""
        if not isinstance(q, TraceQuery):
            raise ValueError(f"q must be a TraceQuery, got {q!r}")
        with self._reading("search") as conn:
            plan = self._plan(conn, q)
            if plan is None:
                return []
            return self._summaries(conn, self._find(conn, plan, q))

    @staticmethod
    def _plan(conn: sqlite3.Connection, q: TraceQuery) -> _Plan | None:
        """The query as SQL fragments and posting keys; ``None`` if nothing can match."""
        plan = _Plan([], [], [], [], [])
        low, high = q.min_duration_ns, q.max_duration_ns
        # buckets: the duration.bit_length() a span within [low, high] can have
        first = 0 if low is None else low.bit_length()
        last = 64 if high is None else high.bit_length()
        if q.service is not None or q.operation is not None or q.span_kind is not None:
            sql = "SELECT o.id, o.service_id FROM ops o JOIN services v ON v.id = o.service_id"
            where, params = [], []
            for column, value in (
                ("v.name", q.service),
                ("o.name", q.operation),
                ("o.kind", q.span_kind),
            ):
                if value is not None:
                    where.append(f"{column} = ?")
                    params.append(value)
            ops = conn.execute(f"{sql} WHERE {' AND '.join(where)}", params).fetchall()
            if not ops:
                return None
            plan.span_where.append(f"s.op_id IN ({_marks(len(ops))})")
            plan.span_params += [op for op, _ in ops]
            if q.operation is None and q.span_kind is None:
                plan.keys.append([(_KEY_SERVICE | ops[0][1],) * 2])
            else:
                plan.keys.append([(_KEY_OP | op,) * 2 for op, _ in ops])
            if low is not None or high is not None:
                services = sorted({service for _, service in ops})
                plan.keys.append(
                    [(_KEY_SERVICE_DURATION | svc << 7 | first,
                      _KEY_SERVICE_DURATION | svc << 7 | last) for svc in services]
                )  # fmt: skip
        elif low is not None or high is not None:
            plan.keys.append([(_KEY_DURATION | first, _KEY_DURATION | last)])
        if low is not None:
            plan.span_where.append("s.duration_ns >= ?")
            plan.span_params.append(low)
        if high is not None:
            plan.span_where.append("s.duration_ns <= ?")
            plan.span_params.append(high)
        if q.status == "error":
            plan.span_where.append(f"s.status_code = {_ERROR}")
            plan.keys.append([(_KEY_ERROR, _KEY_ERROR)])
        elif q.status == "ok":
            plan.span_where.append(f"s.status_code <> {_ERROR}")
        for key, value in q.attributes.items():
            tag = f"{key}={value[:MAX_TAG_VALUE]}"
            plan.span_where.append(_SPAN_HAS_TAG)
            plan.span_params += [f"\n{tag}\n", f"\n{tag}\n", tag]
            # a span's own tag, or its source's: the sources holding the tag
            sources = conn.execute(
                "SELECT id FROM sources WHERE instr(tags, ?) > 0", (f"\n{tag}\n",)
            ).fetchall()
            plan.keys.append(
                [(_tag_key(tag),) * 2, *((_KEY_SOURCE | src,) * 2 for (src,) in sources)]
            )
        if q.start_min_ns is not None or q.start_max_ns is not None:
            plan.trace_where.append("t.start_ns BETWEEN ? AND ?")
            plan.trace_params += [
                q.start_min_ns or 0,
                _MAX_NS if q.start_max_ns is None else q.start_max_ns,
            ]
        return plan

    @staticmethod
    def _estimate(conn: sqlite3.Connection, plan: _Plan, ranges: list[tuple[int, int]]) -> int:
        """How many refs the tag index lists for these key ranges, duplicates included.

        Up to :data:`CANDIDATE_CAP`: past it, the batches' pairs are not read.
        """
        total = 0
        for lo, hi in ranges:
            for sql in _POSTINGS_BYTES_SQL:
                total += conn.execute(sql, (lo, hi)).fetchone()[0] // 4
        for lo, hi in ranges:
            if lo < _KEY_SERVICE and total < CANDIDATE_CAP:  # tag CRCs: the batches' pairs too
                for pairs in plan.pairs(conn):
                    total += bisect_left(pairs, (hi + 1) << 32) - bisect_left(pairs, lo << 32)
        return total

    @staticmethod
    def _listed(conn: sqlite3.Connection, plan: _Plan, ranges: list[tuple[int, int]]) -> set[int]:
        """The refs the tag index lists for these key ranges: a superset of the matches."""
        refs: set[int] = set()
        for lo, hi in ranges:
            for sql in _POSTINGS_SQL:
                for (blob,) in conn.execute(sql, (lo, hi)):
                    refs.update(_unpack_refs(blob))
            if lo < _KEY_SERVICE:
                for pairs in plan.pairs(conn):
                    first = bisect_left(pairs, lo << 32)
                    refs.update(
                        p & 0xFFFF_FFFF for p in pairs[first : bisect_left(pairs, (hi + 1) << 32)]
                    )
        return refs

    def _find(self, conn: sqlite3.Connection, plan: _Plan, q: TraceQuery) -> list[int]:
        """The refs of the first ``q.limit`` matching traces, in ``q.order``."""
        trace_where = " AND ".join(plan.trace_where) or "1"
        order_by = _ORDER_BY[q.order]
        sizes = [self._estimate(conn, plan, ranges) for ranges in plan.keys]
        # 1. some filter is rare: the traces the index lists for every rare one, sorted
        rare = [
            ranges for ranges, size in zip(plan.keys, sizes, strict=True) if size < CANDIDATE_CAP
        ]
        if rare:
            listed = self._listed(conn, plan, rare[0])
            for ranges in rare[1:]:
                listed &= self._listed(conn, plan, ranges)
            return self._walk_all(conn, plan, q, self._sorted(conn, plan, q, listed))
        # 2. the time range is narrow: its traces, sorted
        if plan.trace_where and q.order not in ("newest", "oldest"):
            in_range = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM traces t INDEXED BY traces_by_start"
                f" WHERE {trace_where} LIMIT {CANDIDATE_CAP})",
                plan.trace_params,
            ).fetchone()[0]
            if in_range < CANDIDATE_CAP:
                stream = conn.execute(
                    f"SELECT t.ref FROM traces t INDEXED BY traces_by_start WHERE {trace_where}"
                    f" ORDER BY {order_by}",
                    plan.trace_params,
                )
                return self._walk_all(conn, plan, q, stream)
        # 3. every filter is common: walk the traces in order, soon meeting `limit` matches
        if q.order in ("newest", "oldest"):
            stream = conn.execute(
                f"SELECT t.ref FROM traces t INDEXED BY traces_by_start WHERE {trace_where}"
                f" ORDER BY {order_by}",
                plan.trace_params,
            )
        else:  # no index for these orders: a sort of every trace, bounded if it can be
            if not plan.span_where:
                bound = f" LIMIT {q.limit}"
            elif plan.keys:  # past SCAN_BUDGET, the rarest filter's traces take over
                bound = f" LIMIT {SCAN_BUDGET}"
            else:
                bound = ""
            stream = conn.execute(
                f"SELECT t.ref FROM traces t WHERE {trace_where} ORDER BY {order_by}{bound}",
                plan.trace_params,
            )
        found = self._walk(conn, plan, q, stream, SCAN_BUDGET if plan.keys else None)
        if found is not None:
            return found
        # 4. too few matches within the budget: the traces listed for the rarest filter
        listed = self._listed(conn, plan, plan.keys[sizes.index(min(sizes))])
        return self._walk_all(conn, plan, q, self._sorted(conn, plan, q, listed))

    @staticmethod
    def _sorted(
        conn: sqlite3.Connection, plan: _Plan, q: TraceQuery, refs: set[int]
    ) -> sqlite3.Cursor:
        """These refs' stored traces in the query's order (CROSS JOIN: looked up by ref)."""
        trace_where = " AND ".join(plan.trace_where) or "1"
        return conn.execute(
            "SELECT t.ref FROM json_each(?) AS c CROSS JOIN traces t ON t.ref = c.value"
            f" WHERE {trace_where} ORDER BY {_ORDER_BY[q.order]}",
            [json.dumps(sorted(refs)), *plan.trace_params],
        )

    def _walk_all(
        self, conn: sqlite3.Connection, plan: _Plan, q: TraceQuery, stream: sqlite3.Cursor
    ) -> list[int]:
        found = self._walk(conn, plan, q, stream, None)
        assert found is not None  # no budget: the walk reads the stream to its end
        return found

    @staticmethod
    def _walk(
        conn: sqlite3.Connection,
        plan: _Plan,
        q: TraceQuery,
        stream: sqlite3.Cursor,
        budget: int | None,
    ) -> list[int] | None:
        """The first ``q.limit`` matches among the stream's refs, checked in growing chunks.

        Each chunk's traces are checked on their spans, every span filter on one
        span. ``None`` if ``budget`` refs were read and fewer matched.
        """
        found: list[int] = []
        read = 0
        size = max(32, 2 * q.limit)
        while len(found) < q.limit:
            if budget is not None and read >= budget:
                stream.close()
                return None
            chunk = [r[0] for r in stream.fetchmany(size)]
            if not chunk:
                break
            read += len(chunk)
            if plan.span_where:
                ok = {
                    r[0]
                    for r in conn.execute(
                        "SELECT DISTINCT s.trace_ref FROM spans s INDEXED BY spans_by_trace"
                        f" WHERE s.trace_ref IN ({_marks(len(chunk))})"
                        f" AND {' AND '.join(plan.span_where)}",
                        [*chunk, *plan.span_params],
                    )
                }
                chunk = [ref for ref in chunk if ref in ok]
            found += chunk
            size = min(2048, size * 2)
        stream.close()
        return found[: q.limit]

    @staticmethod
    def _summaries(conn: sqlite3.Connection, refs: list[int]) -> list[TraceSummary]:
        if not refs:
            return []
        rows = {}
        for part in _chunks(refs):
            for r in conn.execute(
                "SELECT t.ref, t.trace_id, t.start_ns, t.duration_ns, v.name, o.name,"
                " t.span_count, t.error_count, t.services FROM traces t"
                " JOIN ops o ON o.id = t.root_op JOIN services v ON v.id = o.service_id"
                f" WHERE t.ref IN ({_marks(len(part))})",
                part,
            ):
                rows[r[0]] = r
        names: dict[int, str] = dict(conn.execute("SELECT id, name FROM services"))
        out = []
        for ref in refs:
            r = rows[ref]
            services = sorted(
                ((names[sid], n) for sid, n in _decode_services(r[8]).items()),
                key=lambda p: (-p[1], p[0]),
            )
            out.append(TraceSummary(r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(services)))
        return out
