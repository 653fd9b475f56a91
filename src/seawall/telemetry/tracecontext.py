"""W3C Trace Context (Level 2) and correlation ids, sans-I/O and stdlib only.

This module is a codec plus the few mutations the specification allows
(https://www.w3.org/TR/trace-context-2/; what Level 2 changed from Level 1:
the ``random`` flag, a simpler key grammar, repeated tracestate keys kept):

* :class:`TraceParent` parses and formats the ``traceparent`` header and makes
  children (same trace-id, new parent-id). Parsing never raises: an invalid
  value gives ``None``, and the caller restarts the trace.
* :class:`TraceState` parses and formats ``tracestate``: an ordered list of
  at most 32 ``key=value`` members. An invalid header is discarded whole; a
  mutated key moves to the front; truncation removes whole entries.
* :func:`continue_trace` is the inbound step of every hop: continue the
  caller's trace with a child, or start a new one (and then drop tracestate).
* The correlation id (``x-request-id``) and the current trace live in context
  variables, so application code and the client transport can read and
  forward them without passing them around.

The sidecar parses ``traceparent`` on every request, so :meth:`TraceParent.parse`
is a hand parser: one ``bytes.translate`` checks the whole shape (hex digits and
dashes at fixed offsets), dict lookups decode the version and flags, and the
result's slots are filled without re-validation. Measured on CPython 3.11:
about 0.7 us to parse, 1.3 us to parse + :meth:`~TraceParent.child` +
:meth:`~TraceParent.format`; an equivalent compiled regular expression was
slightly slower. For ``tracestate`` it is the other way round: one compiled
regular expression per member measured faster than a hand-written check.

IDs come from :func:`random.Random.getrandbits`. By default that is a private
``random.Random`` seeded from ``os.urandom`` (and reseeded in a forked child,
so pre-fork workers never repeat each other's ids): several times faster than
``os.urandom`` or :mod:`secrets`. Trace ids are not secrets; pass
``rng=random.SystemRandom()`` where unpredictable ids are wanted.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import cast

__all__ = [
    "FLAG_RANDOM",
    "FLAG_SAMPLED",
    "MAX_TRACESTATE_LENGTH",
    "MAX_TRACESTATE_MEMBERS",
    "REQUEST_ID_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "TraceParent",
    "TraceState",
    "continue_trace",
    "current_request_id",
    "current_trace",
    "current_tracestate",
    "new_request_id",
    "request_id_scope",
    "trace_scope",
]

TRACEPARENT = "traceparent"
"""Name of the W3C ``traceparent`` header (lower case, as the spec says to send it)."""

TRACESTATE = "tracestate"
"""Name of the W3C ``tracestate`` header."""

REQUEST_ID_HEADER = "x-request-id"
"""Name of the correlation-id header: created when absent, always forwarded."""

FLAG_SAMPLED = 0x01
"""The ``sampled`` bit of ``trace-flags``."""

FLAG_RANDOM = 0x02
"""The ``random`` bit of ``trace-flags`` (Trace Context Level 2): at least the right-most
7 bytes of the trace-id were drawn at random, so a hop may sample or shard on them.
Set on the traces this process starts, kept on the ones it continues."""

_KNOWN_FLAGS = FLAG_SAMPLED | FLAG_RANDOM

MAX_TRACESTATE_MEMBERS = 32
"""Most list-members a ``tracestate`` may hold; a header with more is invalid."""

MAX_TRACESTATE_LENGTH = 512
"""Length (in characters) that mutated ``tracestate`` values are truncated to.

The spec asks vendors to propagate at least 512 characters; :meth:`TraceState.with_entry`
keeps the result within this bound by removing whole entries.
"""

# --------------------------------------------------------------------------- ids

_RNG = random.Random()  # seeded from os.urandom
_getrandbits = _RNG.getrandbits


def _reseed_after_fork() -> None:
    # A forked worker must not replay its parent's sequence of ids.
    _RNG.seed()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent only on Windows
    os.register_at_fork(after_in_child=_reseed_after_fork)


def _random_bits(rng: random.Random | None, k: int) -> int:
    """``k`` random bits, never all zero (the spec forbids all-zero ids)."""
    getrandbits = _getrandbits if rng is None else rng.getrandbits
    bits = getrandbits(k)
    while not bits:
        bits = getrandbits(k)
    return bits


# ------------------------------------------------------------------ traceparent

# Every valid two-character lowercase hex field, mapped to its value: one dict
# lookup validates and decodes the version and the flags at once.
_BYTE_OF: dict[str, int] = {f"{i:02x}": i for i in range(256)}
_VERSION_OF: dict[str, int] = {k: v for k, v in _BYTE_OF.items() if v != 0xFF}
_HEX2: tuple[str, ...] = tuple(f"{i:02x}" for i in range(256))
_HEX_DIGITS = b"0123456789abcdef"
# bytes.translate table for the shape check: lowercase hex digit -> "x", "-" -> "-",
# anything else -> "!"; a valid version-00 prefix then reads exactly as _SHAPE.
_SHAPE_TABLE = bytes(
    ord("x") if c in _HEX_DIGITS else ord("-") if c == ord("-") else ord("!") for c in range(256)
)
_SHAPE = b"xx-" + b"x" * 32 + b"-" + b"x" * 16 + b"-xx"
_ZERO_TRACE_ID = "0" * 32
_ZERO_PARENT_ID = "0" * 16
_OWS = " \t"


def _is_lower_hex(value: str, length: int) -> bool:
    return (
        len(value) == length and value.isascii() and not value.encode().translate(None, _HEX_DIGITS)
    )


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A ``traceparent`` value: which trace a request belongs to and its parent span.

    Attributes:
        version: the header version (``0`` for this spec; a higher version that
            parsed as version ``00`` keeps its number; ``0xff`` is forbidden).
        trace_id: 32 lowercase hex digits, not all zero; the same on every hop.
        parent_id: 16 lowercase hex digits, not all zero; the caller's span id.
        flags: the ``trace-flags`` byte; bit 0 is :attr:`sampled`.

    Construction validates every field and raises :class:`ValueError` naming the
    field and the value. Use :meth:`parse` for untrusted input (it returns
    ``None`` instead of raising), :meth:`new` to start a trace and :meth:`child`
    to continue one.
    """

    version: int
    trace_id: str
    parent_id: str
    flags: int

    def __post_init__(self) -> None:
        if not isinstance(self.version, int) or not 0 <= self.version <= 0xFE:
            raise ValueError(
                f"version must be an int in 0..254 (0xff is forbidden): {self.version!r}"
            )
        if not isinstance(self.trace_id, str) or not _is_lower_hex(self.trace_id, 32):
            raise ValueError(f"trace_id must be 32 lowercase hex digits: {self.trace_id!r}")
        if self.trace_id == _ZERO_TRACE_ID:
            raise ValueError(f"trace_id must not be all zeros: {self.trace_id!r}")
        if not isinstance(self.parent_id, str) or not _is_lower_hex(self.parent_id, 16):
            raise ValueError(f"parent_id must be 16 lowercase hex digits: {self.parent_id!r}")
        if self.parent_id == _ZERO_PARENT_ID:
            raise ValueError(f"parent_id must not be all zeros: {self.parent_id!r}")
        if not isinstance(self.flags, int) or not 0 <= self.flags <= 0xFF:
            raise ValueError(f"flags must be an int in 0..255: {self.flags!r}")

    @property
    def sampled(self) -> bool:
        """Whether the caller may have recorded trace data (the ``sampled`` flag)."""
        return bool(self.flags & FLAG_SAMPLED)

    def format(self) -> str:
        """The header value: ``{version}-{trace_id}-{parent_id}-{flags}`` in lowercase hex.

        This serializes the four fields as they are. Values made by :meth:`new`
        and :meth:`child` are version ``00``; a parsed higher-version value keeps
        its version but not its unknown extra fields, so a pass-through hop that
        does not mutate the trace should forward the received string instead.
        """
        return f"{_HEX2[self.version]}-{self.trace_id}-{self.parent_id}-{_HEX2[self.flags]}"

    @classmethod
    def parse(cls, value: str) -> TraceParent | None:
        """Parse a ``traceparent`` value; ``None`` if it is invalid (restart the trace).

        Follows the spec's parsing and versioning rules: optional whitespace
        (spaces, tabs) around the value is ignored; every field must be
        lowercase hex of its exact length; an all-zero trace-id or parent-id and
        version ``ff`` are invalid. Version ``00`` must be exactly the four
        fields. A higher version is accepted when its first four fields parse
        as version ``00`` and the flags are followed by the end of the value or
        by a dash; what follows that dash is not looked at.
        """
        if len(value) != 55:
            value = value.strip(_OWS)
            if len(value) != 55:
                # Only a higher version may carry more fields, after a dash.
                if len(value) < 55 or value[55] != "-" or value.startswith("00"):
                    return None
                value = value[:55]
        # One pass checks the shape: every hex digit becomes "x", the dash stays.
        if not value.isascii() or value.encode().translate(_SHAPE_TABLE) != _SHAPE:
            return None
        version = _VERSION_OF.get(value[:2])  # None for the forbidden "ff"
        trace_id = value[3:35]
        parent_id = value[36:52]
        if version is None or trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_PARENT_ID:
            return None
        # Fields validated: fill the slots directly (see _traceparent), inlined here.
        tp: TraceParent = _new_object(TraceParent)
        _set_version(tp, version)
        _set_trace_id(tp, trace_id)
        _set_parent_id(tp, parent_id)
        _set_flags(tp, _BYTE_OF[value[53:]])
        return tp

    @classmethod
    def new(cls, sampled: bool = True, rng: random.Random | None = None) -> TraceParent:
        """Start a trace: a new random trace-id and parent-id, version ``00``, with the
        ``random`` flag set (Level 2: the trace-id was drawn at random).

        Args:
            sampled: the recording decision to announce in the ``sampled`` flag.
            rng: where the random bits come from (default: a private
                ``random.Random`` seeded from ``os.urandom``). Tests pass a seeded
                ``random.Random``; ``random.SystemRandom()`` gives unpredictable ids.
        """
        trace_id = _random_bits(rng, 128).to_bytes(16).hex()
        parent_id = _random_bits(rng, 64).to_bytes(8).hex()
        return _traceparent(0, trace_id, parent_id, FLAG_RANDOM | (FLAG_SAMPLED if sampled else 0))

    @property
    def random_trace_id(self) -> bool:
        """Whether the trace-id is random (the Level 2 ``random`` flag)."""
        return bool(self.flags & FLAG_RANDOM)

    def child(
        self, rng: random.Random | None = None, *, sampled: bool | None = None
    ) -> TraceParent:
        """Continue this trace from a new span: same trace-id, a new parent-id, version ``00``.

        The ``sampled`` flag is kept unless ``sampled`` is given (the spec allows
        changing it only together with the parent-id, which this does); the
        ``random`` flag is kept (the trace-id is the same). The other flag bits
        are reserved and are cleared, as the spec requires of the vendor that
        sets them. The new parent-id is never
        all zeros and never equal to this one.
        """
        getrandbits = _getrandbits if rng is None else rng.getrandbits
        bits = getrandbits(64)
        parent_id = bits.to_bytes(8).hex()
        while not bits or parent_id == self.parent_id:
            bits = getrandbits(64)
            parent_id = bits.to_bytes(8).hex()
        flags = self.flags & _KNOWN_FLAGS
        if sampled is not None:
            flags = (flags & FLAG_RANDOM) | (FLAG_SAMPLED if sampled else 0)
        tp: TraceParent = _new_object(TraceParent)  # _traceparent(), inlined
        _set_version(tp, 0)
        _set_trace_id(tp, self.trace_id)
        _set_parent_id(tp, parent_id)
        _set_flags(tp, flags)
        return tp


# Parsing and child() have already validated their fields: they fill the slots
# directly instead of going through __init__ and __post_init__ (measured at
# about half the cost of the validating constructor on the hot path).
_new_object = object.__new__
_set_version = cast("Callable[[object, int], None]", vars(TraceParent)["version"].__set__)
_set_trace_id = cast("Callable[[object, str], None]", vars(TraceParent)["trace_id"].__set__)
_set_parent_id = cast("Callable[[object, str], None]", vars(TraceParent)["parent_id"].__set__)
_set_flags = cast("Callable[[object, int], None]", vars(TraceParent)["flags"].__set__)


def _traceparent(version: int, trace_id: str, parent_id: str, flags: int) -> TraceParent:
    tp: TraceParent = _new_object(TraceParent)
    _set_version(tp, version)
    _set_trace_id(tp, trace_id)
    _set_parent_id(tp, parent_id)
    _set_flags(tp, flags)
    return tp


# ------------------------------------------------------------------- tracestate

# Level 2 key grammar: key = ( lcalpha / DIGIT ) 0*255( keychar ), where keychar is
# lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@" (Level 1's tenant@system split is gone).
_KEY = r"[a-z0-9][a-z0-9_\-*/@]{0,255}"
# value = 0*255(chr) nblk-chr; chr is printable ASCII except "," and "=".
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER_RE = re.compile(f"({_KEY})=({_VALUE})")
_KEY_RE = re.compile(_KEY)
_VALUE_RE = re.compile(_VALUE)
_LARGE_ENTRY = 128  # entries longer than this are the first to go when truncating


def _entry_length(entry: tuple[str, str]) -> int:
    return len(entry[0]) + 1 + len(entry[1])


def _truncate(
    entries: tuple[tuple[str, str], ...], max_length: int, keep_first: bool
) -> tuple[tuple[str, str], ...]:
    """Remove whole entries until the formatted list fits, per the spec's guidance.

    At most :data:`MAX_TRACESTATE_MEMBERS` are kept (the last ones go). Then,
    while the list is longer than ``max_length``: entries longer than 128
    characters go first, from the end; then entries from the end.
    """
    kept = list(entries[:MAX_TRACESTATE_MEMBERS])
    length = sum(map(_entry_length, kept)) + len(kept) - 1
    first = 1 if keep_first else 0
    while length > max_length and len(kept) > first:
        victim = len(kept) - 1
        for i in range(len(kept) - 1, first - 1, -1):
            if _entry_length(kept[i]) > _LARGE_ENTRY:
                victim = i
                break
        length -= _entry_length(kept.pop(victim)) + 1
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class TraceState:
    """A ``tracestate`` value: vendor entries in order, most recently updated first.

    Attributes:
        entries: ``(key, value)`` pairs, left to right as on the wire. Keys
            follow the spec's Level 2 grammar (a lowercase letter or a digit,
            then up to 255 of ``a-z 0-9 _ - * / @``); a key may appear more than
            once, as received (:meth:`get` reads the first); values are 1 to 256
            printable ASCII characters other than ``,`` and ``=``, not ending in
            a space. At most 32.

    Instances are immutable: :meth:`with_entry` and :meth:`without` return new
    ones and leave the order of untouched entries as it was. Entries this
    process does not know are kept unchanged. Construction validates and
    raises :class:`ValueError` naming the offending entry; :meth:`parse` never
    raises. An empty ``TraceState`` is falsy.
    """

    entries: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.entries, tuple):
            raise ValueError(f"entries must be a tuple of (key, value) pairs: {self.entries!r}")
        if len(self.entries) > MAX_TRACESTATE_MEMBERS:
            raise ValueError(
                f"entries: at most {MAX_TRACESTATE_MEMBERS} members, got {len(self.entries)}"
            )
        for entry in self.entries:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise ValueError(f"entries: each entry must be a (key, value) pair: {entry!r}")
            key, value = entry
            _check_entry(key, value)

    def __len__(self) -> int:
        """Number of entries."""
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """The ``(key, value)`` entries, left to right."""
        return iter(self.entries)

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or ``None``."""
        for k, v in self.entries:
            if k == key:
                return v
        return None

    def format(self) -> str:
        """The header value: ``key=value`` entries joined by ``,`` without whitespace."""
        return ",".join(map("=".join, self.entries))

    @classmethod
    def parse(cls, value: str) -> TraceState | None:
        """Parse a ``tracestate`` value; ``None`` if it is invalid and must be discarded.

        Members are separated by commas; spaces and tabs around a member are
        ignored, and empty members are skipped (they arise when several header
        fields are combined). Invalid, all discarding the whole header: a member
        that is not ``key=value`` with a valid key and value, or more than 32
        members. A key that appears twice is kept, both entries in place (Level
        2 forwards what it received; Level 1 discarded the header). The empty
        string gives an empty ``TraceState``.

        Several ``tracestate`` header fields are one list: join them with ``,``
        in the order received before parsing.
        """
        found: list[tuple[str, str]] = []
        for raw_member in value.split(","):
            member = raw_member.strip(_OWS)
            if not member:
                continue
            match = _MEMBER_RE.fullmatch(member)
            if match is None or len(found) == MAX_TRACESTATE_MEMBERS:
                return None
            key, val = match.groups()
            found.append((key, val))
        return _tracestate(tuple(found))

    def with_entry(
        self, key: str, value: str, *, max_length: int = MAX_TRACESTATE_LENGTH
    ) -> TraceState:
        """Add or update ``key``, moving it to the front (left) as the spec requires.

        Every entry of ``key`` is replaced by the one. The other entries keep
        their order. If the result would have more than 32 entries or format
        longer than ``max_length`` characters, whole entries are removed, never
        the new one: first entries longer than 128 characters, then entries from
        the end (the spec's truncation guidance).

        Raises:
            ValueError: ``key`` or ``value`` does not follow the spec's grammar.
        """
        _check_entry(key, value)
        rest = tuple(entry for entry in self.entries if entry[0] != key)
        return _tracestate(_truncate(((key, value), *rest), max_length, keep_first=True))

    def without(self, key: str) -> TraceState:
        """This state without ``key`` (unchanged if absent).

        The spec allows deleting entries, but a vendor should delete only its own.
        """
        return _tracestate(tuple(entry for entry in self.entries if entry[0] != key))

    def truncated(self, max_length: int = MAX_TRACESTATE_LENGTH) -> TraceState:
        """This state cut to at most ``max_length`` formatted characters by removing whole entries.

        Entries longer than 128 characters are removed first, then entries from
        the end, as the spec recommends.
        """
        if len(self.format()) <= max_length:
            return self
        return _tracestate(_truncate(self.entries, max_length, keep_first=False))


def _check_entry(key: object, value: object) -> None:
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(
            "tracestate key must be a lowercase letter or a digit, then up to 255 of "
            f"a-z 0-9 _ - * / @ (W3C Trace Context Level 2): {key!r}"
        )
    if not isinstance(value, str) or _VALUE_RE.fullmatch(value) is None:
        raise ValueError(
            "tracestate value must be 1-256 printable ASCII characters, without ',' "
            f"or '=', not ending in a space: {value!r}"
        )


_set_entries = cast(
    "Callable[[object, tuple[tuple[str, str], ...]], None]", vars(TraceState)["entries"].__set__
)


def _tracestate(entries: tuple[tuple[str, str], ...]) -> TraceState:
    ts: TraceState = _new_object(TraceState)
    _set_entries(ts, entries)
    return ts


# ------------------------------------------------------------- continue_trace


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # A mapping that is not case-insensitive and has the name in another case.
        for key, candidate in headers.items():
            if len(key) == len(name) and key.lower() == name:
                return candidate
    return value


def continue_trace(
    headers: Mapping[str, str], *, sampled: bool = True, rng: random.Random | None = None
) -> tuple[TraceParent, TraceState | None]:
    """The trace context for work done on behalf of an incoming request.

    If ``headers`` has a valid ``traceparent``, the result is its
    :meth:`~TraceParent.child` and the incoming ``tracestate`` (parsed; ``None``
    when absent, empty or invalid). Otherwise a new trace is started with
    :meth:`TraceParent.new` and any ``tracestate`` is dropped, since the spec
    forbids parsing it without a valid ``traceparent``.

    Header names are matched in any case. Pass a case-insensitive mapping (such
    as ``httpx.Headers``) or one with lower-cased keys for a single lookup; any
    other mapping is scanned when the lower-case name is missing. A header
    received several times must be combined into one value joined with ``,``
    (as ``httpx.Headers`` does): two ``traceparent`` values then fail to parse
    and the trace restarts, and ``tracestate`` fields form one list.

    Args:
        headers: the incoming request's headers.
        sampled: the ``sampled`` flag for a trace started here.
        rng: random source for new ids (see :meth:`TraceParent.new`).

    Returns:
        ``(traceparent, tracestate)`` to use for this hop and to send on
        outgoing calls; send no ``tracestate`` header when it is ``None``.
    """
    raw = _header(headers, TRACEPARENT)
    parent = None if raw is None else TraceParent.parse(raw)
    if parent is None:
        return TraceParent.new(sampled=sampled, rng=rng), None
    raw_state = _header(headers, TRACESTATE)
    state = None if raw_state is None else TraceState.parse(raw_state)
    return parent.child(rng), (state or None)


# ----------------------------------------------------------- correlation ids

_REQUEST_ID: ContextVar[str | None] = ContextVar("seawall_request_id", default=None)
_TRACE: ContextVar[tuple[TraceParent, TraceState | None] | None] = ContextVar(
    "seawall_trace", default=None
)
_UUID_VERSION_MASK = ~(0xF000 << 64)
_UUID_VERSION_4 = 0x4000 << 64
_UUID_VARIANT_MASK = ~(0xC000 << 48)
_UUID_VARIANT_RFC4122 = 0x8000 << 48


def new_request_id(rng: random.Random | None = None) -> str:
    """A new correlation id: a random (version 4) UUID as 32 lowercase hex digits.

    Equivalent to ``uuid.uuid4().hex`` in form, about ten times faster. ``rng``
    is as for :meth:`TraceParent.new`.
    """
    bits = (_getrandbits if rng is None else rng.getrandbits)(128)
    bits = (bits & _UUID_VERSION_MASK) | _UUID_VERSION_4
    bits = (bits & _UUID_VARIANT_MASK) | _UUID_VARIANT_RFC4122
    return bits.to_bytes(16).hex()


def current_request_id() -> str | None:
    """The correlation id of the request being handled in this context, or ``None``."""
    return _REQUEST_ID.get()


@contextmanager
def request_id_scope(value: str | None = None) -> Iterator[str]:
    """Make ``value`` (or a new id when ``None``) the current correlation id inside the block.

    Yields the id in force. Scopes nest; leaving one restores the outer id.
    Typical use on an inbound request::

        with request_id_scope(headers.get(REQUEST_ID_HEADER)):
            ...
    """
    request_id = new_request_id() if value is None else value
    token = _REQUEST_ID.set(request_id)
    try:
        yield request_id
    finally:
        _REQUEST_ID.reset(token)


def current_trace() -> TraceParent | None:
    """The trace context of the work being done in this context, or ``None``.

    Outgoing calls send ``current_trace().child()`` as their ``traceparent``
    (each call is a new span with the current one as parent).
    """
    current = _TRACE.get()
    return None if current is None else current[0]


def current_tracestate() -> TraceState | None:
    """The ``tracestate`` that goes with :func:`current_trace`, or ``None``."""
    current = _TRACE.get()
    return None if current is None else current[1]


@contextmanager
def trace_scope(trace: TraceParent, state: TraceState | None = None) -> Iterator[TraceParent]:
    """Make ``trace`` (and its ``state``) the current trace context inside the block.

    Yields ``trace``. Scopes nest; leaving one restores the outer context.
    Typical use on an inbound request::

        trace, state = continue_trace(request.headers)
        with trace_scope(trace, state):
            ...
    """
    token = _TRACE.set((trace, state))
    try:
        yield trace
    finally:
        _TRACE.reset(token)
