"""Tests for seawall.telemetry.tracecontext: W3C Trace Context and correlation ids.

Vectors come from the W3C Trace Context Level 1 recommendation and its test
suite (w3c/trace-context, test/test.py), which the cases below name.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import random
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

import seawall.telemetry as telemetry
from seawall.telemetry import (
    FLAG_RANDOM,
    FLAG_SAMPLED,
    MAX_TRACESTATE_LENGTH,
    MAX_TRACESTATE_MEMBERS,
    REQUEST_ID_HEADER,
    TRACEPARENT,
    TRACESTATE,
    TraceParent,
    TraceState,
    continue_trace,
    current_request_id,
    current_trace,
    current_tracestate,
    new_request_id,
    request_id_scope,
    trace_scope,
    tracecontext,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SPEC_SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-01"
SPEC_NOT_SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"
SUITE_TRACE_ID = "12345678901234567890123456789012"
SUITE_PARENT_ID = "1234567890123456"
SUITE = f"00-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01"
HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


# ------------------------------------------------------------- reference oracle

# A direct transcription of the spec's parsing rules into a regular expression,
# used only to cross-check the hand parser on mutated inputs.
_ORACLE = re.compile(
    r"[ \t]*(?P<version>[0-9a-f]{2})-(?P<trace>[0-9a-f]{32})-(?P<parent>[0-9a-f]{16})"
    r"-(?P<flags>[0-9a-f]{2})(?P<rest>(?:-.*)?)[ \t]*",
    re.DOTALL,
)


def oracle(value: str) -> tuple[int, str, str, int] | None:
    m = _ORACLE.fullmatch(value)
    if m is None:
        return None
    version = m["version"]
    if version == "ff" or (version == "00" and m["rest"]):
        return None
    if m["trace"] == "0" * 32 or m["parent"] == "0" * 16:
        return None
    return int(version, 16), m["trace"], m["parent"], int(m["flags"], 16)


# ------------------------------------------------------------------ traceparent


def test_header_names() -> None:
    assert TRACEPARENT == "traceparent"
    assert TRACESTATE == "tracestate"
    assert REQUEST_ID_HEADER == "x-request-id"


@pytest.mark.parametrize(
    ("value", "flags", "sampled"),
    [(SPEC_SAMPLED, 1, True), (SPEC_NOT_SAMPLED, 0, False)],
    ids=["spec-sampled", "spec-not-sampled"],
)
def test_parse_spec_examples(value: str, flags: int, sampled: bool) -> None:
    tp = TraceParent.parse(value)
    assert tp == TraceParent(0, TRACE_ID, PARENT_ID, flags)
    assert tp.sampled is sampled
    assert tp.format() == value


@pytest.mark.parametrize(
    "value",
    [
        # test_traceparent_ows_handling
        f" {SUITE}",
        f"\t{SUITE}",
        f"{SUITE} ",
        f"{SUITE}\t",
        f"\t {SUITE} \t",
    ],
)
def test_parse_tolerates_ows_around_the_value(value: str) -> None:
    tp = TraceParent.parse(value)
    assert tp is not None
    assert tp.format() == SUITE


@pytest.mark.parametrize("flags", ["02", "09", "80", "ff"])
def test_parse_accepts_any_flags_byte(flags: str) -> None:
    tp = TraceParent.parse(f"00-{TRACE_ID}-{PARENT_ID}-{flags}")
    assert tp is not None
    assert tp.flags == int(flags, 16)
    assert tp.sampled is bool(int(flags, 16) & 1)


@pytest.mark.parametrize(
    ("value", "version"),
    [
        # test_traceparent_version_0xcc: a higher version parses as 00 when it can
        (f"cc-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01", 0xCC),
        (f"cc-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-what-the-future-will-be-like", 0xCC),
        (f"01-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-", 0x01),
        (f"fe-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-XYZ-!!", 0xFE),
        (f" 42-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-x\t", 0x42),
    ],
)
def test_parse_higher_versions(value: str, version: int) -> None:
    tp = TraceParent.parse(value)
    assert tp == TraceParent(version, SUITE_TRACE_ID, SUITE_PARENT_ID, 1)
    child = tp.child()
    assert child.version == 0
    assert child.trace_id == SUITE_TRACE_ID


T, P = SUITE_TRACE_ID, SUITE_PARENT_ID
INVALID_TRACEPARENTS = {
    # W3C test suite, test/test.py (test names abbreviated)
    "v00-trailing-dot": f"00-{T}-{P}-01.",
    "v00-extra-field": f"00-{T}-{P}-01-what-the-future-will-be-like",
    "vcc-extra-not-after-dash": f"cc-{T}-{P}-01.what-the-future-will-be-like",
    "version-ff": f"ff-{T}-{P}-01",
    "version-illegal-1": f".0-{T}-{P}-01",
    "version-illegal-2": f"0.-{T}-{P}-01",
    "version-too-long-3": f"000-{T}-{P}-01",
    "version-too-long-4": f"0000-{T}-{P}-01",
    "version-too-short": f"0-{T}-{P}-01",
    "trace-id-all-zero": f"00-{'0' * 32}-{P}-01",
    "trace-id-illegal-first": f"00-.{T[1:]}-{P}-01",
    "trace-id-illegal-last": f"00-{T[:-1]}.-{P}-01",
    "trace-id-too-long": f"00-{T}3-{P}-01",
    "trace-id-too-short": f"00-{T[:-1]}-{P}-01",
    "parent-id-all-zero": f"00-{T}-{'0' * 16}-01",
    "parent-id-illegal-first": f"00-{T}-.{P[1:]}-01",
    "parent-id-illegal-last": f"00-{T}-{P[:-1]}.-01",
    "parent-id-too-long": f"00-{T}-{P}7-01",
    "parent-id-too-short": f"00-{T}-{P[:-1]}-01",
    "flags-illegal-first": f"00-{T}-{P}-.0",
    "flags-illegal-last": f"00-{T}-{P}-0.",
    "flags-too-long": f"00-{T}-{P}-001",
    "flags-too-short": f"00-{T}-{P}-1",
    "duplicated-header-joined": f"00-{T}-{P}-01, 00-{T}-{P}-01",
    # uppercase is not HEXDIGLC
    "uppercase-version": f"0A-{T}-{P}-01",
    "uppercase-trace-id": f"00-{TRACE_ID.upper()}-{P}-01",
    "uppercase-parent-id": f"00-{T}-{PARENT_ID.upper()}-01",
    "uppercase-flags": f"00-{T}-{P}-0F",
    # other shapes
    "empty": "",
    "whitespace-only": " \t ",
    "wrong-separator": f"00_{T}_{P}_01",
    "space-inside": f"00- {T[1:]}-{P}-01",
    "newline-is-not-ows": f"00-{T}-{P}-01\n",
    "hex-prefix-in-flags": f"00-{T}-{P}0-x1",
    "sign-in-trace-id": f"00-+{T[1:]}-{P}-01",
    "non-ascii-digit": f"00-{T[:-1]}\uff11-{P}-01",
    "lone-surrogate": f"00-{T[:-1]}\udc80-{P}-01",
    "higher-version-too-short": f"cc-{T}-{P[:-1]}-01",
    "higher-version-zero-trace-id": f"cc-{'0' * 32}-{P}-01-ext",
    "dashes-shifted": f"00-{T[:-1]}-0{P}-01",
}


@pytest.mark.parametrize("value", INVALID_TRACEPARENTS.values(), ids=INVALID_TRACEPARENTS.keys())
def test_parse_rejects_invalid(value: str) -> None:
    assert len(INVALID_TRACEPARENTS) >= 15
    assert TraceParent.parse(value) is None
    assert oracle(value) is None


@given(
    version=st.integers(0, 0xFE),
    trace=st.integers(1, 2**128 - 1),
    parent=st.integers(1, 2**64 - 1),
    flags=st.integers(0, 0xFF),
)
def test_format_parse_round_trip(version: int, trace: int, parent: int, flags: int) -> None:
    tp = TraceParent(version, f"{trace:032x}", f"{parent:016x}", flags)
    text = tp.format()
    assert len(text) == 55
    assert TraceParent.parse(text) == tp
    assert TraceParent.parse(f" \t{text}\t ") == tp


@st.composite
def mutated_traceparents(draw: st.DrawFn) -> str:
    version = draw(st.sampled_from(["00", "01", "cc", "fe", "ff", "0A", "0x"]))
    trace = draw(st.sampled_from([TRACE_ID, "0" * 32, TRACE_ID.upper()]))
    parent = draw(st.sampled_from([PARENT_ID, "0" * 16]))
    flags = draw(st.sampled_from(["00", "01", "ff", "FF"]))
    rest = draw(st.sampled_from(["", "-", "-ext", ".ext", "x", " ", "\t", "\n"]))
    text = f"{version}-{trace}-{parent}-{flags}{rest}"
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        ch = draw(st.sampled_from("0123456789abcdefABF- \t.x\u00e9"))
        if op == "insert":
            text = text[:pos] + ch + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + ch + text[pos + 1 :]
    return text


@given(mutated_traceparents())
def test_parse_agrees_with_spec_oracle(value: str) -> None:
    tp = TraceParent.parse(value)
    expected = oracle(value)
    if expected is None:
        assert tp is None
    else:
        assert tp is not None
        assert (tp.version, tp.trace_id, tp.parent_id, tp.flags) == expected


@given(st.text())
def test_parse_never_raises(value: str) -> None:
    tp = TraceParent.parse(value)
    assert tp is None or TraceParent.parse(tp.format()) == tp


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"version": 0xFF}, "version"),
        ({"version": -1}, "version"),
        ({"trace_id": "0" * 32}, "trace_id"),
        ({"trace_id": TRACE_ID.upper()}, "trace_id"),
        ({"trace_id": TRACE_ID[:-1]}, "trace_id"),
        ({"parent_id": "0" * 16}, "parent_id"),
        ({"parent_id": PARENT_ID + "0"}, "parent_id"),
        ({"parent_id": "g" * 16}, "parent_id"),
        ({"flags": 256}, "flags"),
    ],
)
def test_constructor_validates_and_names_the_field(kwargs: dict[str, object], field: str) -> None:
    fields: dict[str, object] = {
        "version": 0,
        "trace_id": TRACE_ID,
        "parent_id": PARENT_ID,
        "flags": 1,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=field):
        TraceParent(**fields)  # type: ignore[arg-type]


def test_traceparent_is_frozen_and_hashable() -> None:
    tp = TraceParent.new()
    with pytest.raises(AttributeError):
        tp.flags = 0  # type: ignore[misc]
    assert {tp, TraceParent.parse(tp.format())} == {tp}


def test_new_starts_a_trace() -> None:
    tp = TraceParent.new()
    assert tp.version == 0
    assert HEX32.fullmatch(tp.trace_id)
    assert HEX16.fullmatch(tp.parent_id)
    assert tp.sampled
    # Level 2: the trace-id was drawn at random, and the flags say so
    assert tp.random_trace_id
    assert tp.flags == FLAG_SAMPLED | FLAG_RANDOM
    assert TraceParent.new(sampled=False).flags == FLAG_RANDOM
    assert len({TraceParent.new().trace_id for _ in range(1000)}) == 1000


def test_new_is_deterministic_with_an_injected_rng() -> None:
    assert TraceParent.new(rng=random.Random(7)) == TraceParent.new(rng=random.Random(7))
    assert TraceParent.new(rng=random.Random(7)) != TraceParent.new(rng=random.Random(8))


class ZerosFirst(random.Random):
    """A real Random that answers 0 to its first ``zeros`` draws."""

    def __init__(self, zeros: int) -> None:
        super().__init__(1)
        self.zeros = zeros

    def getrandbits(self, k: int, /) -> int:
        if self.zeros:
            self.zeros -= 1
            return 0
        return super().getrandbits(k)


def test_ids_are_never_all_zero() -> None:
    tp = TraceParent.new(rng=ZerosFirst(3))
    assert tp.trace_id != "0" * 32
    assert tp.parent_id != "0" * 16
    child = tp.child(ZerosFirst(2))
    assert child.parent_id != "0" * 16


def test_child_keeps_trace_id_and_changes_parent_id() -> None:
    parent = TraceParent.parse(SPEC_SAMPLED)
    assert parent is not None
    children = [parent.child() for _ in range(100)]
    assert {c.trace_id for c in children} == {TRACE_ID}
    assert PARENT_ID not in {c.parent_id for c in children}
    assert len({c.parent_id for c in children}) == 100
    assert all(c.version == 0 and c.flags == 1 for c in children)
    assert parent.child(random.Random(3)) == parent.child(random.Random(3))


def test_child_keeps_the_sampled_and_random_flags_and_clears_reserved_bits() -> None:
    unsampled = TraceParent.parse(SPEC_NOT_SAMPLED)
    assert unsampled is not None
    assert unsampled.child().flags == 0
    reserved = TraceParent(0, TRACE_ID, PARENT_ID, 0x09)
    assert reserved.child().flags == 0x01
    assert TraceParent(0, TRACE_ID, PARENT_ID, 0xFE).child().flags == FLAG_RANDOM
    assert TraceParent(0, TRACE_ID, PARENT_ID, 0xFF).child().flags == 0x03
    # the random flag stays with the trace-id it describes, whatever is sampled
    assert TraceParent(0, TRACE_ID, PARENT_ID, 0x03).child(sampled=False).flags == FLAG_RANDOM


def test_child_can_change_the_sampled_flag() -> None:
    tp = TraceParent(0, TRACE_ID, PARENT_ID, 1)
    assert tp.child(sampled=False).flags == 0
    assert tp.child(sampled=True).flags == 1
    assert TraceParent(0, TRACE_ID, PARENT_ID, 0).child(sampled=True).sampled


def test_child_never_reuses_the_parent_id() -> None:
    # Seeded so that the first draw equals the parent id.
    first = random.Random(5).getrandbits(64).to_bytes(8).hex()
    tp = TraceParent(0, TRACE_ID, first, 1)
    assert tp.child(random.Random(5)).parent_id != first


# ------------------------------------------------------------------- tracestate


def test_tracestate_spec_examples() -> None:
    ts = TraceState.parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
    assert ts is not None
    assert list(ts) == [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
    assert ts.get("congo") == "t61rcWkgMzE"
    assert ts.get("absent") is None
    assert len(ts) == 2
    assert ts.format() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    # The spec's walk-through: Congo re-enters and rewrites its entry at the front.
    again = ts.with_entry("congo", "ucfJifl5GOE")
    assert again.format() == "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7"


@pytest.mark.parametrize(
    "value",
    [
        "foo=1 \t , \t bar=2, \t baz=3",
        "foo=1\t \t,\t \tbar=2,\t \tbaz=3",
        " foo=1,bar=2,baz=3",
        "\tfoo=1,bar=2,baz=3\t",
        ",foo=1,, ,\t,bar=2,baz=3,",
    ],
)
def test_tracestate_ows_and_empty_members(value: str) -> None:
    ts = TraceState.parse(value)
    assert ts is not None
    assert ts.format() == "foo=1,bar=2,baz=3"


@pytest.mark.parametrize("value", ["", " ", "\t", ",", " , \t,"])
def test_tracestate_empty_header_is_an_empty_state(value: str) -> None:
    ts = TraceState.parse(value)
    assert ts == TraceState()
    assert not ts
    assert ts.format() == ""


def test_tracestate_keeps_leading_spaces_of_values() -> None:
    ts = TraceState.parse("foo= bar ,x=y")
    assert ts is not None
    assert ts.get("foo") == " bar"
    assert ts.format() == "foo= bar,x=y"


def test_tracestate_all_allowed_characters() -> None:
    key = "abcdefghijklmnopqrstuvwxyz0123456789_-*/"
    tenant_key = key + "@a-z0-9_-*/"
    value = "".join(
        [
            "".join(map(chr, range(0x20, 0x2B + 1))),
            "".join(map(chr, range(0x2D, 0x3C + 1))),
            "".join(map(chr, range(0x3E, 0x7E + 1))),
        ]
    )
    for k in (key, tenant_key):
        ts = TraceState.parse(f"{k}={value}")
        assert ts is not None
        assert ts.get(k) == value


@pytest.mark.parametrize(
    "value",
    [
        "a" * 256 + "=1",  # simple-key: 1 + 255 characters
        "t" * 241 + "@" + "v" * 14 + "=1",  # tenant-id 241, system-id 14
        "1abc@dt=1",  # tenant-id may start with a digit
        "a=" + "x" * 256,  # value: 256 characters
    ],
)
def test_tracestate_limits_that_are_valid(value: str) -> None:
    assert TraceState.parse(f"foo=1,{value}") is not None


INVALID_TRACESTATES = {
    "space-in-key": "foo =1",
    "uppercase-key": "FOO=1",
    "dot-in-key": "foo.bar=1",
    "empty-tenant-id": "@foo=1,bar=2",
    "equals-in-value": "foo=bar=baz",
    "empty-value": "foo=,bar=3",
    "no-equals": "novalue",
    "empty-key": "=1",
    "key-starts-with-punctuation": "_a=1",
    "simple-key-too-long": "z" * 257 + "=1",
    "key-with-ats-too-long": "a@" * 128 + "a=1",
    "value-too-long": "a=" + "x" * 257,
    "control-character-in-value": "a=1\x01",
    "tab-inside-value": "a=1\t2",
    "del-in-value": "a=1\x7f",
    "non-ascii-value": "a=caf\u00e9",
    "non-ascii-key": "caf\u00e9=1",
    "33-members": ",".join(f"bar{i:02d}={i:02d}" for i in range(1, 34)),
}


@pytest.mark.parametrize("value", INVALID_TRACESTATES.values(), ids=INVALID_TRACESTATES.keys())
def test_tracestate_invalid_header_is_discarded_whole(value: str) -> None:
    assert TraceState.parse(value) is None
    assert TraceState.parse(f"ok=1,{value}") is None


LEVEL_2_KEYS = {
    # Level 1 refused these; Level 2's key grammar takes them
    "ends-with-at": "foo@",
    "two-ats-in-a-row": "foo@@bar",
    "two-ats": "foo@bar@baz",
    "starts-with-digit": "1abc",
    "digit-after-at": "t@1v",
    "242-before-at": "t" * 242 + "@v",
    "15-after-at": "t@" + "v" * 15,
    "256-characters": "a" + "@" * 255,
}


@pytest.mark.parametrize("key", LEVEL_2_KEYS.values(), ids=LEVEL_2_KEYS.keys())
def test_tracestate_level_2_keys(key: str) -> None:
    ts = TraceState.parse(f"ok=1,{key}=2")
    assert ts is not None
    assert ts.get(key) == "2"
    assert ts.with_entry(key, "3").format() == f"{key}=3,ok=1"


def test_tracestate_duplicate_keys_are_kept_and_a_mutation_replaces_them() -> None:
    """Level 2: a key received twice is forwarded as received; this hop's own
    entry replaces every entry of its key, in front."""
    ts = TraceState.parse("foo=1, bar=2,foo=3")
    assert ts is not None
    assert ts.entries == (("foo", "1"), ("bar", "2"), ("foo", "3"))
    assert ts.format() == "foo=1,bar=2,foo=3"
    assert ts.get("foo") == "1"
    assert TraceState((("foo", "1"), ("foo", "2"))).format() == "foo=1,foo=2"
    assert ts.with_entry("foo", "9").format() == "foo=9,bar=2"
    assert ts.without("foo").format() == "bar=2"


def test_tracestate_32_members_is_the_limit() -> None:
    value = ",".join(f"bar{i:02d}={i:02d}" for i in range(1, MAX_TRACESTATE_MEMBERS + 1))
    ts = TraceState.parse(value)
    assert ts is not None
    assert len(ts) == 32
    assert ts.get("bar01") == "01"
    assert ts.format() == value


keys = st.one_of(
    st.from_regex(r"[a-z][a-z0-9_\-*/]{0,20}", fullmatch=True),
    st.from_regex(r"[a-z0-9][a-z0-9_\-*/]{0,10}@[a-z][a-z0-9_\-*/]{0,13}", fullmatch=True),
)
values = st.from_regex(
    r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,30}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", fullmatch=True
)


@given(st.dictionaries(keys, values, max_size=MAX_TRACESTATE_MEMBERS))
def test_tracestate_round_trip(entries: dict[str, str]) -> None:
    ts = TraceState(tuple(entries.items()))
    assert TraceState.parse(ts.format()) == ts
    assert TraceState.parse(", ".join(f"{k}={v}" for k, v in entries.items())) == ts


@given(st.text())
def test_tracestate_parse_never_raises(value: str) -> None:
    ts = TraceState.parse(value)
    assert ts is None or TraceState.parse(ts.format()) == ts


def test_with_entry_puts_new_keys_first_and_keeps_the_rest_in_order() -> None:
    ts = TraceState.parse("a=1,b=2,c=3")
    assert ts is not None
    assert ts.with_entry("seawall", "x").format() == "seawall=x,a=1,b=2,c=3"
    assert ts.with_entry("b", "20").format() == "b=20,a=1,c=3"
    assert ts.with_entry("c", "3").format() == "c=3,a=1,b=2"
    assert ts.format() == "a=1,b=2,c=3"  # immutable
    assert TraceState().with_entry("k@sys", "v").format() == "k@sys=v"


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("Bad", "v", "key"),
        ("", "v", "key"),
        ("a" * 257, "v", "key"),
        ("ok", "", "value"),
        ("ok", "a,b", "value"),
        ("ok", "a=b", "value"),
        ("ok", "trailing ", "value"),
        ("ok", "x" * 257, "value"),
    ],
)
def test_with_entry_rejects_invalid_entries(key: str, value: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TraceState().with_entry(key, value)


def test_with_entry_drops_from_the_end_beyond_32_members() -> None:
    full = TraceState(tuple((f"k{i:02d}", "v") for i in range(32)))
    grown = full.with_entry("new", "v")
    assert len(grown) == 32
    assert [k for k, _ in grown][:2] == ["new", "k00"]
    assert grown.get("k31") is None
    assert grown.get("k30") == "v"
    # Updating an existing key needs no room.
    moved = full.with_entry("k31", "w")
    assert len(moved) == 32
    assert next(iter(moved)) == ("k31", "w")


def test_with_entry_truncates_to_512_characters_large_entries_first() -> None:
    big = "x" * 150  # entry "bigN=" + 150 chars: longer than 128
    entries = (
        ("a", "1" * 60),
        ("big1", big),
        ("b", "2" * 60),
        ("big2", big),
        ("c", "3" * 60),
        ("d", "4" * 60),
    )
    ts = TraceState(entries)
    assert len(ts.format()) > MAX_TRACESTATE_LENGTH
    out = ts.with_entry("seawall", "s" * 50)
    assert len(out.format()) <= MAX_TRACESTATE_LENGTH
    # big2 (the last large entry) goes first; that is enough here.
    assert [k for k, _ in out] == ["seawall", "a", "big1", "b", "c", "d"]
    smaller = ts.with_entry("seawall", "s" * 50, max_length=300)
    # Both large entries go, then entries from the end until it fits.
    assert [k for k, _ in smaller] == ["seawall", "a", "b", "c"]
    assert len(smaller.format()) <= 300


def test_with_entry_keeps_the_new_entry_even_when_it_alone_is_too_long() -> None:
    ts = TraceState((("a", "1"),)).with_entry("k", "v" * 256, max_length=100)
    assert list(ts) == [("k", "v" * 256)]


def test_truncated_and_without() -> None:
    ts = TraceState(tuple((f"k{i}", "v" * 100) for i in range(6)))  # entries of 103
    assert ts.truncated() is not ts
    assert [k for k, _ in ts.truncated()] == ["k0", "k1", "k2", "k3"]
    assert len(ts.truncated(250).format()) <= 250
    small = TraceState((("a", "1"),))
    assert small.truncated() is small
    assert ts.without("k2").get("k2") is None
    assert len(ts.without("k2")) == 5
    assert ts.without("absent") == ts


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ((("A", "1"),), "key"),
        ((("a", "1,2"),), "value"),
        (tuple((f"k{i}", "v") for i in range(33)), "at most 32"),
        ((("a",),), "pair"),
    ],
)
def test_tracestate_constructor_validates(entries: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TraceState(entries)  # type: ignore[arg-type]


# --------------------------------------------------------------- continue_trace


def test_continue_trace_continues_with_a_child() -> None:
    tp, ts = continue_trace({"traceparent": SUITE, "tracestate": "foo=1,bar=2"})
    assert tp.trace_id == SUITE_TRACE_ID
    assert tp.parent_id != SUITE_PARENT_ID
    assert tp.version == 0
    assert tp.sampled
    assert ts is not None
    assert ts.format() == "foo=1,bar=2"


def test_continue_trace_without_tracestate() -> None:
    tp, ts = continue_trace({"traceparent": SUITE})
    assert tp.trace_id == SUITE_TRACE_ID
    assert ts is None


def test_continue_trace_starts_a_trace_when_traceparent_is_missing() -> None:
    tp, ts = continue_trace({"tracestate": "foo=1"})
    assert HEX32.fullmatch(tp.trace_id)
    assert tp.version == 0
    assert tp.sampled
    assert ts is None
    unsampled, _ = continue_trace({}, sampled=False)
    assert not unsampled.sampled


@pytest.mark.parametrize("value", list(INVALID_TRACEPARENTS.values())[:12])
def test_continue_trace_restarts_on_invalid_traceparent_and_drops_tracestate(value: str) -> None:
    tp, ts = continue_trace({"traceparent": value, "tracestate": "foo=1"})
    assert tp.trace_id not in (SUITE_TRACE_ID, "0" * 32)
    assert ts is None


def test_continue_trace_keeps_traceparent_when_tracestate_is_bad_or_empty() -> None:
    for state in ("foo=1,Foo=2", "", " , ", "@a=1"):
        tp, ts = continue_trace({"traceparent": SUITE, "tracestate": state})
        assert tp.trace_id == SUITE_TRACE_ID
        assert ts is None


def test_continue_trace_downgrades_a_higher_version() -> None:
    value = f"cc-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-what-the-future-will-be-like"
    tp, ts = continue_trace({"traceparent": value, "tracestate": "foo=1"})
    assert tp.format().startswith(f"00-{SUITE_TRACE_ID}-")
    assert ts is not None
    assert ts.get("foo") == "1"


@pytest.mark.parametrize("name", ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"])
def test_continue_trace_matches_header_names_in_any_case(name: str) -> None:
    tp, ts = continue_trace({name: SUITE, "TraceState": "foo=1", "other": "x"})
    assert tp.trace_id == SUITE_TRACE_ID
    assert ts is not None
    assert ts.get("foo") == "1"


@pytest.mark.parametrize("name", ["trace-parent", "trace.parent"])
def test_continue_trace_ignores_wrong_header_names(name: str) -> None:
    tp, _ = continue_trace({name: SUITE})
    assert tp.trace_id != SUITE_TRACE_ID


def test_continue_trace_with_httpx_headers() -> None:
    httpx = pytest.importorskip("httpx")
    # Several tracestate fields are one list, in order (test_tracestate_multiple_headers...).
    headers = httpx.Headers(
        [
            ("TraceParent", SUITE),
            ("tracestate", "foo=1,bar=2"),
            ("tracestate", "rojo=1,congo=2"),
            ("TRACESTATE", "baz=3"),
        ]
    )
    tp, ts = continue_trace(headers)
    assert tp.trace_id == SUITE_TRACE_ID
    assert ts is not None
    assert ts.format() == "foo=1,bar=2,rojo=1,congo=2,baz=3"
    # Duplicate keys across fields are forwarded as received (Level 2).
    dup = httpx.Headers([("traceparent", SUITE), ("tracestate", "foo=1"), ("tracestate", "foo=2")])
    kept = continue_trace(dup)[1]
    assert kept is not None
    assert kept.format() == "foo=1,foo=2"
    # Two traceparent fields: the trace restarts (test_traceparent_duplicated).
    two = httpx.Headers([("traceparent", SUITE), ("traceparent", SUITE)])
    tp2, _ = continue_trace(two)
    assert tp2.trace_id != SUITE_TRACE_ID


def test_continue_trace_is_deterministic_with_an_injected_rng() -> None:
    h = {"traceparent": SUITE}
    assert continue_trace(h, rng=random.Random(1)) == continue_trace(h, rng=random.Random(1))
    assert continue_trace({}, rng=random.Random(1)) == continue_trace({}, rng=random.Random(1))


# ---------------------------------------------------------------- correlation


def test_new_request_id_is_a_uuid4_in_hex() -> None:
    rid = new_request_id()
    assert HEX32.fullmatch(rid)
    parsed = uuid.UUID(hex=rid)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122
    assert len({new_request_id() for _ in range(1000)}) == 1000
    assert new_request_id(random.Random(2)) == new_request_id(random.Random(2))


def test_request_id_scope_sets_nests_and_resets() -> None:
    assert current_request_id() is None
    with request_id_scope("outer") as outer:
        assert outer == "outer"
        assert current_request_id() == "outer"
        with request_id_scope() as inner:
            assert HEX32.fullmatch(inner)
            assert current_request_id() == inner
        assert current_request_id() == "outer"
    assert current_request_id() is None


def test_request_id_scope_resets_on_error() -> None:
    with pytest.raises(RuntimeError), request_id_scope("boom"):
        raise RuntimeError
    assert current_request_id() is None


def test_trace_scope_sets_nests_and_resets() -> None:
    assert current_trace() is None
    assert current_tracestate() is None
    tp, ts = continue_trace({"traceparent": SUITE, "tracestate": "foo=1"})
    with trace_scope(tp, ts) as entered:
        assert entered is tp
        assert current_trace() is tp
        assert current_tracestate() is ts
        child = tp.child()
        with trace_scope(child):
            assert current_trace() is child
            assert current_tracestate() is None
        assert current_trace() is tp
        assert current_tracestate() is ts
    assert current_trace() is None
    with pytest.raises(KeyError), trace_scope(tp):
        raise KeyError
    assert current_trace() is None


def test_scopes_are_isolated_between_contexts() -> None:
    def read() -> tuple[str | None, TraceParent | None]:
        return current_request_id(), current_trace()

    tp = TraceParent.new()
    with request_id_scope("mine"), trace_scope(tp):
        assert contextvars.Context().run(read) == (None, None)
        assert contextvars.copy_context().run(read) == ("mine", tp)


def test_scopes_are_isolated_between_asyncio_tasks() -> None:
    async def handle(name: str) -> tuple[str | None, str | None]:
        with request_id_scope(name):
            await asyncio.sleep(0)
            seen = current_request_id()
        return seen, current_request_id()

    async def main() -> list[tuple[str | None, str | None]]:
        return list(await asyncio.gather(handle("a"), handle("b")))

    assert asyncio.run(main()) == [("a", None), ("b", None)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_children_do_not_repeat_the_parents_ids() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(write_end, new_request_id().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child_id = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    assert HEX32.fullmatch(child_id)
    assert child_id != new_request_id()


# ------------------------------------------------------------------ public API


def test_public_api_is_exported_and_documented() -> None:
    # the trace context, and `setup` (the OpenTelemetry SDK's, imported when called)
    assert sorted(telemetry.__all__) == sorted([*tracecontext.__all__, "setup"])
    assert telemetry.setup.__doc__
    for name in tracecontext.__all__:
        obj = getattr(telemetry, name)
        assert obj is getattr(tracecontext, name)
        if callable(obj):
            assert obj.__doc__, name
    for cls in (TraceParent, TraceState):
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and callable(member):
                assert member.__doc__, f"{cls.__name__}.{attr}"
