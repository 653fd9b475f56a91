"""Tests for seawall.proxy.reload: when a watched config file is complete, on a fake clock.

A :class:`FakeFile` plays the file system (in-place writes, renames, deletes,
a coarse mtime); :class:`Watcher` plays the sidecar's poll loop: a stat per
poll, a read only when the debouncer asks, and the bytes it applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.policy.clock import FakeClock
from seawall.proxy.reload import (
    READ,
    WAIT,
    FileSignature,
    Reload,
    ReloadDebouncer,
    Snapshot,
    content_digest,
)

SETTLE = 1.5
POLL = 0.25

# The config: its first 5 lines are a valid mesh on their own, without `policies`.
FULL = b"""\
mesh: shop
services:
  orders: {port: 8002, sidecar: {inbound: 18002, outbound: 15002, admin: 19002}}
  web: {port: 8001, sidecar: {inbound: 18001, outbound: 15001, admin: 19001}}
sidecar: {drain_grace: 5s}
policies:
  orders:
    timeout: 120s
    retry: {attempts: 3}
"""
PARTIAL = b"".join(FULL.splitlines(keepends=True)[:5])
CUT = FULL.split(b"0s\n", 1)[0]  # ... `timeout: 12`
REST_OF_CUT = FULL[len(CUT) :]


@dataclass
class FakeFile:
    """One path: missing, or an inode with content and an mtime (``granularity`` ns)."""

    clock: FakeClock
    data: bytes | None = None
    inode: int = 1
    mtime_ns: int = 0
    granularity: int = 1
    readable: bool = True
    _next_inode: int = 2

    def _touch(self) -> None:
        now_ns = round(self.clock() * 1e9)
        self.mtime_ns = now_ns - now_ns % self.granularity

    def write(self, data: bytes) -> None:
        """Truncate and write in place (same inode)."""
        if self.data is None:
            self.inode = self._new_inode()
        self.data = data
        self._touch()

    def append(self, data: bytes) -> None:
        assert self.data is not None
        self.data += data
        self._touch()

    def rename_over(self, data: bytes) -> None:
        """A complete file renamed over the path: a new inode, at once."""
        self.inode = self._new_inode()
        self.data = data
        self._touch()

    def delete(self) -> None:
        self.data = None

    def touch(self) -> None:
        self._touch()

    def _new_inode(self) -> int:
        self._next_inode += 1
        return self._next_inode

    def stat(self) -> FileSignature | None:
        if self.data is None:
            return None
        return FileSignature(self.inode, len(self.data), self.mtime_ns)

    def read(self) -> tuple[bytes, Snapshot] | None:
        sig = self.stat()
        if sig is None or not self.readable:
            return None
        assert self.data is not None
        return self.data, Snapshot(sig, content_digest(self.data))


@dataclass
class Watcher:
    """The sidecar's poll loop, with the fake clock and file."""

    clock: FakeClock
    file: FakeFile
    debouncer: ReloadDebouncer
    applied: list[tuple[float, bytes, str]] = field(default_factory=list)
    reads: int = 0

    @classmethod
    def start(cls, data: bytes = FULL, settle: float = SETTLE) -> Watcher:
        clock = FakeClock(100.0)
        file = FakeFile(clock)
        file.write(data)
        loaded = file.read()
        assert loaded is not None
        return cls(clock, file, ReloadDebouncer(settle, loaded[1]))

    def poll(self) -> Reload | None:
        now = self.clock()
        if self.debouncer.on_stat(now, self.file.stat()) is not READ:
            return None
        self.reads += 1
        got = self.file.read()
        step = self.debouncer.on_content(now, None if got is None else got[1])
        if isinstance(step, Reload):
            assert got is not None
            assert step.snapshot == got[1]
            self.applied.append((now, got[0], step.reason))
            return step
        assert step is WAIT
        return None

    def run(self, seconds: float) -> None:
        """Poll every 0.25 s for ``seconds``."""
        for _ in range(round(seconds / POLL)):
            self.clock.advance(POLL)
            self.poll()

    def contents(self) -> list[bytes]:
        return [data for _, data, _ in self.applied]


# --------------------------------------------------------------------------- the issue


def test_partial_write_then_a_pause_shorter_than_settle_then_the_rest() -> None:
    w = Watcher.start(b"mesh: old\n")
    w.run(1.0)
    written = w.clock()
    w.file.write(PARTIAL)  # the first 5 lines: a valid config without `policies`
    w.run(1.25)  # the writer pauses (shorter than the settle interval)
    w.file.append(FULL[len(PARTIAL) :])
    w.run(1.0)
    assert w.applied == []  # still waiting: the content changed 1 s ago
    w.run(1.0)
    assert w.contents() == [FULL]  # only the whole file, ever
    (at, _, reason) = w.applied[0]
    assert reason == "settled"
    assert at - (written + 1.25) >= SETTLE
    w.run(5.0)
    assert len(w.applied) == 1


def test_a_write_cut_mid_value_is_never_applied() -> None:
    w = Watcher.start(b"mesh: old\n")
    w.file.write(CUT)  # `timeout: 12`: valid, and wrong
    assert CUT.endswith(b"timeout: 12")
    w.run(1.0)
    w.file.append(REST_OF_CUT)  # `0s`
    w.run(5.0)
    assert w.contents() == [FULL]
    assert b"timeout: 120s" in w.contents()[0]


def test_a_digest_changing_twice_within_the_window_restarts_it() -> None:
    w = Watcher.start(b"a\n")
    w.file.write(b"b\n")
    w.run(POLL)
    first_seen = w.clock()
    w.run(1.0)
    w.file.write(b"c\n")  # changed again, within the window
    w.run(POLL)
    second_seen = w.clock()
    assert w.debouncer.is_settling()
    w.run(first_seen + SETTLE - w.clock())
    assert w.applied == []  # the first window would have ended here
    w.run(second_seen + SETTLE - w.clock())
    assert w.contents() == [b"c\n"]
    assert w.applied[0][0] == pytest.approx(second_seen + SETTLE)


def test_content_still_for_the_settle_interval_is_applied_once() -> None:
    w = Watcher.start(b"a\n")
    w.file.write(b"b\n")
    w.run(POLL)
    seen = w.clock()
    w.run(SETTLE - POLL)
    assert w.applied == []
    w.run(POLL)
    assert w.contents() == [b"b\n"]
    assert w.applied[0][0] == pytest.approx(seen + SETTLE)
    assert w.applied[0][2] == "settled"
    w.run(10.0)
    assert len(w.applied) == 1


def test_a_rename_is_applied_at_once() -> None:
    w = Watcher.start(b"a\n")
    w.run(1.0)
    w.file.rename_over(FULL)
    w.clock.advance(POLL)
    assert w.poll() == Reload(
        Snapshot(FileSignature(w.file.inode, len(FULL), w.file.mtime_ns), content_digest(FULL)),
        "replaced",
    )
    w.run(5.0)
    assert w.contents() == [FULL]


def test_a_rename_over_a_half_written_file_is_applied_at_once() -> None:
    w = Watcher.start(b"a\n")
    w.file.write(PARTIAL)
    w.run(0.5)
    w.file.rename_over(FULL)
    w.run(POLL)
    assert w.applied == [(w.clock(), FULL, "replaced")]
    w.run(5.0)
    assert w.contents() == [FULL]


def test_in_place_edits_after_a_rename_settle_again() -> None:
    w = Watcher.start(b"a\n")
    w.file.rename_over(b"b\n")
    w.run(POLL)
    w.file.write(b"c\n")
    w.run(POLL)
    assert w.contents() == [b"b\n"]
    w.run(SETTLE)
    assert w.contents() == [b"b\n", b"c\n"]
    assert [reason for _, _, reason in w.applied] == ["replaced", "settled"]


# --------------------------------------------------------------------------- nothing to do


def test_an_unchanged_file_is_read_once_to_confirm_and_never_reloaded() -> None:
    w = Watcher.start()
    w.run(60.0)
    assert (w.applied, w.reads) == ([], 1)  # the first poll confirms the start-up read


def test_a_touch_reads_the_file_twice_and_reloads_nothing() -> None:
    w = Watcher.start()
    w.run(1.0)
    w.file.touch()
    w.run(10.0)
    assert (w.applied, w.reads) == ([], 1 + 2)  # the new signature, then its confirmation
    assert not w.debouncer.is_settling()


def test_content_written_back_to_what_runs_is_not_reloaded() -> None:
    w = Watcher.start(b"a\n")
    w.file.write(b"half")
    w.run(0.5)
    w.file.write(b"a\n")
    w.run(10.0)
    assert w.applied == []
    assert not w.debouncer.is_settling()


def test_a_deleted_file_is_not_reloaded() -> None:
    w = Watcher.start()
    w.file.delete()
    w.run(10.0)
    assert w.applied == []


def test_a_file_deleted_then_written_again_settles_even_on_a_new_inode() -> None:
    # Not a rename: the path was empty in between, so the new file may be half-written.
    w = Watcher.start(b"a\n")
    w.file.delete()
    w.run(POLL)
    w.file.write(PARTIAL)
    assert w.file.inode != 1
    w.run(POLL)
    assert w.applied == []
    w.run(0.5)
    w.file.append(FULL[len(PARTIAL) :])
    w.run(SETTLE + POLL)
    assert w.contents() == [FULL]


def test_an_unreadable_file_is_not_reloaded_until_it_can_be_read_and_has_settled() -> None:
    w = Watcher.start(b"a\n")
    w.file.readable = False
    w.file.write(b"b\n")
    w.run(10.0)
    assert w.applied == []
    w.file.readable = True
    w.run(POLL)
    seen = w.clock()
    w.run(SETTLE)
    assert w.contents() == [b"b\n"]
    assert w.applied[0][0] == pytest.approx(seen + SETTLE)
    assert w.applied[0][2] == "settled"


def test_an_explicit_reload_is_not_applied_again() -> None:
    w = Watcher.start(b"a\n")
    w.file.write(b"b\n")
    w.run(POLL)
    got = w.file.read()
    assert got is not None
    w.debouncer.loaded(w.clock(), got[1])  # SIGHUP read and applied it
    assert not w.debouncer.is_settling()
    w.run(10.0)
    assert w.applied == []


# --------------------------------------------------------------------------- edges


def test_a_same_size_write_within_the_mtime_granularity_is_caught_before_applying() -> None:
    w = Watcher.start(b"a\n")
    w.file.granularity = 10**10  # a 10 s timestamp tick: size and mtime say nothing
    w.file.write(b"b\n")
    w.run(POLL)
    seen = w.clock()
    w.run(1.0)
    w.file.write(b"c\n")  # same size, same mtime: invisible to stat
    w.run(SETTLE - 1.0)
    assert w.applied == []  # the last read before applying saw "c": the wait restarts
    restarted = w.clock()
    assert restarted == pytest.approx(seen + SETTLE)
    w.run(SETTLE)
    assert w.contents() == [b"c\n"]
    assert w.applied[0][0] == pytest.approx(restarted + SETTLE)
    assert w.applied[0][2] == "settled"


def test_a_same_size_write_in_the_tick_of_the_read_that_applied_is_caught() -> None:
    w = Watcher.start(b"a\n")
    w.file.granularity = 10**9  # a 1 s timestamp tick
    w.file.rename_over(b"b\n")
    w.run(POLL)
    assert w.contents() == [b"b\n"]
    w.file.write(b"c\n")  # same size, same tick as the read: stat cannot tell
    w.run(SETTLE)  # confirming the read of "b" finds "c", which then settles
    assert w.contents() == [b"b\n"]
    w.run(SETTLE)
    assert w.contents() == [b"b\n", b"c\n"]


def test_an_explicit_reload_of_a_same_tick_write_is_confirmed_too() -> None:
    w = Watcher.start(b"a\n")
    w.file.granularity = 10**9
    w.file.write(b"b\n")
    got = w.file.read()
    assert got is not None
    w.debouncer.loaded(w.clock(), got[1])
    w.file.write(b"c\n")  # same tick, same size
    w.run(2 * SETTLE + POLL)
    assert w.contents() == [b"c\n"]


def test_settle_zero_applies_an_in_place_write_on_the_next_poll() -> None:
    w = Watcher.start(b"a\n", settle=0.0)
    w.file.write(b"b\n")
    w.run(POLL)
    assert w.applied == [(w.clock(), b"b\n", "settled")]


def test_the_settle_interval_can_change() -> None:
    w = Watcher.start(b"a\n")
    w.debouncer.settle = 5
    assert w.debouncer.settle == 5.0
    w.file.write(b"b\n")
    w.run(4.0)
    assert w.applied == []
    w.run(1.5)
    assert w.contents() == [b"b\n"]


@pytest.mark.parametrize("settle", [-0.1, math.nan, math.inf, "1s"])
def test_the_settle_interval_is_validated(settle: object) -> None:
    with pytest.raises(ValueError, match="settle must be a finite number >= 0"):
        ReloadDebouncer(settle)  # type: ignore[arg-type]
    debouncer = ReloadDebouncer(1.0)
    with pytest.raises(ValueError, match="settle"):
        debouncer.settle = settle  # type: ignore[assignment]
    assert debouncer.settle == 1.0


def test_without_a_loaded_snapshot_the_first_file_seen_settles() -> None:
    clock = FakeClock()
    debouncer = ReloadDebouncer(SETTLE)
    sig = FileSignature(7, 2, 0)
    assert debouncer.on_stat(clock(), sig) is READ
    assert debouncer.on_content(clock(), Snapshot(sig, content_digest(b"a\n"))) is WAIT
    clock.advance(SETTLE)
    assert debouncer.on_stat(clock(), sig) is READ
    step = debouncer.on_content(clock(), Snapshot(sig, content_digest(b"a\n")))
    assert isinstance(step, Reload)
    assert step.reason == "settled"


# --------------------------------------------------------------------------- properties

OPS = st.lists(
    st.tuples(
        st.sampled_from(["write", "append", "rename", "delete", "touch", "unreadable"]),
        st.sampled_from([b"x", b"yy", b"z\n"]),
        st.integers(min_value=0, max_value=12),  # polls before the next operation
    ),
    max_size=25,
)


def _play(w: Watcher, op: str, data: bytes) -> None:
    w.file.readable = op != "unreadable"
    if op == "write":
        w.file.write(data)
    elif op == "append" and w.file.data is not None:
        w.file.append(data)
    elif op == "rename":
        w.file.rename_over(data)
    elif op == "delete":
        w.file.delete()
    elif op == "touch" and w.file.data is not None:
        w.file.touch()


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_applied_content_was_still_for_the_settle_interval_or_renamed_in(
    ops: list[tuple[str, bytes, int]],
) -> None:
    """With exact mtimes: every poll of the last ``settle`` seconds before a settled
    reload saw the content applied; a reload without settling is of a new inode (a
    rename, or a delete and create that no poll saw apart), on the poll that sees it;
    and once the file is still, what it holds is what runs."""
    w = Watcher.start(b"start\n")
    polls: list[tuple[float, bytes | None]] = []
    new_inode_at = -math.inf
    last_poll = w.clock()
    for op, data, count in ops:
        w.clock.advance(0.001)  # operations fall between polls
        inode = w.file.inode
        _play(w, op, data)
        if w.file.inode != inode:
            new_inode_at = w.clock()
        for _ in range(count):
            w.clock.advance(POLL)
            previous_poll, last_poll = last_poll, w.clock()
            polls.append((w.clock(), w.file.data))  # unreadable: the content is still there
            if w.poll() is None:
                continue
            at, content, reason = w.applied[-1]
            assert content == w.file.data  # what is applied is what the file holds
            if reason == "settled":
                window = [seen for t, seen in polls if t >= at - SETTLE - 1e-9]
                assert set(window) == {content}, (at, polls)
            else:
                assert new_inode_at > previous_poll
    w.file.readable = True
    w.run(SETTLE + 2 * POLL)
    if w.file.data is not None:
        assert (w.contents() or [b"start\n"])[-1] == w.file.data


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_with_a_coarse_mtime_what_is_applied_is_in_the_file_and_the_last_write_wins(
    ops: list[tuple[str, bytes, int]],
) -> None:
    """A 1 s timestamp tick and operations right after a poll's read: stat misses
    same-size writes, and the confirming reads catch up."""
    w = Watcher.start(b"start\n")
    w.file.granularity = 10**9
    for op, data, count in ops:
        _play(w, op, data)
        for _ in range(count):
            w.clock.advance(POLL)
            if w.poll() is not None:
                assert w.contents()[-1] == w.file.data
    w.file.readable = True
    w.run(2 * SETTLE + 3 * POLL)
    if w.file.data is not None:
        assert (w.contents() or [b"start\n"])[-1] == w.file.data
        assert not w.debouncer.is_settling()
