"""When to reload a watched config file: only once it is complete.

A file written in place (``open(O_TRUNC)``, then ``write`` in pieces) can be
seen half-written: the first lines of a mesh.yaml are often a valid config on
their own (no ``policies`` yet: default timeouts, no retries), and a value cut
short can be valid too (``timeout: 12`` of ``120s``). :class:`ReloadDebouncer`
decides, poll by poll, whether what the file holds now may be applied. It does
no I/O and reads no clock: the watcher stats the file, reads it when asked,
and tells the debouncer the time (monotonic seconds), the stat signature and
the content digest.

The rules, in order:

1. A file that is missing or unreadable is never applied; the running config
   stays. When it comes back it is a new file, written who knows how: rule 4.
2. Content equal to the content last applied (or last handed to an explicit
   reload, e.g. SIGHUP) is not applied again: a ``touch`` does nothing.
3. A file replaced by a rename (a new inode at the path, where a file was
   seen on the previous poll) is complete the moment it appears: the
   atomic-save pattern (write a temporary file in the same directory, then
   ``rename`` it over the config). It is applied at once.
4. Otherwise the file is being written in place, and it is applied only when
   its content has stayed the same for ``settle`` seconds. Every change of
   content restarts the wait: a digest that changes twice within the window
   means the writer is still at it.

The stat signature (inode, size, mtime in ns) is what makes polling cheap:
the watcher reads and hashes the file only when the signature changed, plus
two checks for writes that leave it as it was (same size, and within the
file system's timestamp granularity of the previous write): the content is
read once more before a settled reload (a change restarts the wait), and a
read that saw a new signature is confirmed by one more read ``settle``
seconds later. Both assume the timestamp granularity is finer than
``settle`` (it is nanoseconds to a few milliseconds on Linux file systems).
"""

from __future__ import annotations

import enum
import math
import os
from typing import Literal, NamedTuple

try:  # the builtin module: hashlib would load OpenSSL (about 4 MB) into an idle sidecar
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - a Python built without it
    from hashlib import blake2b

__all__ = [
    "READ",
    "WAIT",
    "FileSignature",
    "Reload",
    "ReloadDebouncer",
    "Snapshot",
    "Step",
    "content_digest",
]


class FileSignature(NamedTuple):
    """What ``stat`` says of the file: a change of any field may be a change of content."""

    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileSignature:
        """The signature of a ``stat`` / ``fstat`` result."""
        return cls(stat.st_ino, stat.st_size, stat.st_mtime_ns)


class Snapshot(NamedTuple):
    """One reading of the file: its signature and the digest of the bytes read."""

    signature: FileSignature
    digest: str


def content_digest(data: bytes) -> str:
    """The digest the debouncer compares contents by (BLAKE2b, 32 bytes, hex)."""
    return blake2b(data, digest_size=32).hexdigest()


class Step(enum.Enum):
    """What the watcher does next, after a stat."""

    WAIT = "wait"
    """Nothing to do until the next poll."""
    READ = "read"
    """Read the file, and tell :meth:`ReloadDebouncer.on_content` what it holds."""


WAIT = Step.WAIT
READ = Step.READ


class Reload(NamedTuple):
    """Apply the content just read (the bytes whose digest is ``snapshot.digest``)."""

    snapshot: Snapshot
    reason: Literal["replaced", "settled"]
    """``replaced``: renamed over the path; ``settled``: unchanged for the settle interval."""


class ReloadDebouncer:
    """Decides when a watched config file is complete enough to reload (see the module).

    Per poll: :meth:`on_stat` with the file's signature (``None`` when it is
    missing or unreadable); if it answers :data:`READ`, read the file and call
    :meth:`on_content` with what was read, which answers :data:`WAIT` or a
    :class:`Reload` of exactly that content. Call :meth:`loaded` when the file
    was read and applied otherwise (SIGHUP), so that it is not applied twice.
    """

    def __init__(self, settle: float, loaded: Snapshot | None = None) -> None:
        """``settle``: seconds an in-place write must stay unchanged before it is applied;
        ``loaded``: the content the running config came from, if read from this file."""
        self._settle = _check_settle(settle)
        self._applied: str | None = None if loaded is None else loaded.digest
        self._seen: Snapshot | None = loaded
        # When the content now seen (which differs from the applied one) was first seen;
        # None when nothing waits to be applied.
        self._since: float | None = None
        # When to read again a file whose signature was new at the last read (a write in
        # the same timestamp tick as that read would not change it); None: no such read.
        # The read the running config came from is confirmed at the first poll.
        self._confirm_at: float | None = None if loaded is None else -math.inf

    @property
    def settle(self) -> float:
        """Seconds an in-place write must stay unchanged before it is applied."""
        return self._settle

    @settle.setter
    def settle(self, value: float) -> None:
        self._settle = _check_settle(value)

    def is_settling(self) -> bool:
        """Whether new content was seen and waits for the file to be still."""
        return self._since is not None

    def on_stat(self, now: float, signature: FileSignature | None) -> Step:
        """A poll: the file's signature, or ``None`` when it is missing or unreadable."""
        if signature is None:
            # Rule 1; a file that reappears is not a rename of this one.
            self._seen = None
            self._since = None
            self._confirm_at = None
            return WAIT
        if self._seen is None or signature != self._seen.signature:
            return READ
        if self._since is not None and now - self._since >= self._settle:
            return READ  # settled: check the content one last time before applying it
        if self._confirm_at is not None and now >= self._confirm_at:
            return READ
        return WAIT

    def on_content(self, now: float, snapshot: Snapshot | None) -> Step | Reload:
        """What was read (``None``: the read failed); :data:`WAIT` or :class:`Reload` it."""
        if snapshot is None:
            return self.on_stat(now, None)
        previous = self._seen
        self._seen = snapshot
        if previous is None or snapshot.signature != previous.signature:
            self._confirm_at = now + self._settle
        elif self._confirm_at is not None and now >= self._confirm_at:
            self._confirm_at = None  # confirmed: the signature stayed, with its tick long past
        if snapshot.digest == self._applied:  # rule 2
            self._since = None
            return WAIT
        if previous is not None and snapshot.signature.inode != previous.signature.inode:
            return self._reload(snapshot, "replaced")  # rule 3
        if previous is None or snapshot.digest != previous.digest or self._since is None:
            self._since = now  # rule 4: new content, (re)start the wait
        if now - self._since >= self._settle:
            return self._reload(snapshot, "settled")
        return WAIT

    def loaded(self, now: float, snapshot: Snapshot) -> None:
        """The file was read at ``now`` and applied (or rejected) outside the debouncer
        (SIGHUP): take its content as applied."""
        if self._seen is None or snapshot.signature != self._seen.signature:
            self._confirm_at = now + self._settle
        self._applied = snapshot.digest
        self._seen = snapshot
        self._since = None

    def _reload(self, snapshot: Snapshot, reason: Literal["replaced", "settled"]) -> Reload:
        self._applied = snapshot.digest
        self._since = None
        return Reload(snapshot, reason)


def _check_settle(value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"ReloadDebouncer: settle must be a finite number >= 0, got {value!r}")
    return float(value)
