"""The critical path of a trace (Jaeger's algorithm), on hand-computed traces.

Each case draws its trace (times in ms), and the expected path is worked out
by hand from the rules in ``seawall.telemetry.critical_path``: walk back from
the root's end through the last-finishing child, drop children that do not
overlap their parent, clip the ones that overflow it, ignore follows-from.
"""

from __future__ import annotations

from seawall.telemetry.critical_path import Section, TimedSpan, critical_path, self_times


def span(
    span_id: str, parent: str | None, start: float, end: float, *, follows: bool = False
) -> TimedSpan:
    return TimedSpan(span_id, parent, start, end, follows_from=follows)


def path(spans: list[TimedSpan], root: str | None = None) -> list[tuple[str, float, float]]:
    return [(s.span_id, s.start, s.end) for s in critical_path(spans, root)]


def test_a_sequence_and_a_nested_call() -> None:
    # A |0-------------------------------------------100|
    # B     |10------40|
    # C                     |50--------------90|
    # D                          |60------80|
    trace = [
        span("A", None, 0, 100),
        span("B", "A", 10, 40),
        span("C", "A", 50, 90),
        span("D", "C", 60, 80),
    ]
    assert path(trace) == [
        ("A", 90, 100),  # after C ended, A finished its own work
        ("C", 80, 90),
        ("D", 60, 80),
        ("C", 50, 60),
        ("A", 40, 50),  # between B and C
        ("B", 10, 40),
        ("A", 0, 10),
    ]
    assert self_times(critical_path(trace)) == {"A": 30.0, "B": 30.0, "C": 20.0, "D": 20.0}
    # the stretches tile the root, without gaps or overlaps
    sections = sorted(critical_path(trace), key=lambda s: s.start)
    assert [(a.end == b.start) for a, b in zip(sections, sections[1:], strict=False)] == [True] * 6
    assert sum(s.duration for s in sections) == 100


def test_parallel_children_only_the_one_that_finished_last_is_waited_on() -> None:
    # A |0---------------------------100|
    # B    |10-----------------70|
    # C       |20----------60|          (ran beside B: never waited on)
    trace = [span("A", None, 0, 100), span("B", "A", 10, 70), span("C", "A", 20, 60)]
    assert path(trace) == [("A", 70, 100), ("B", 10, 70), ("A", 0, 10)]


def test_a_child_that_overflows_its_parent_is_clipped_with_its_own_children() -> None:
    # A |0------------50|
    # B            |40---------80|    clipped to 40-50
    # C               |45---70|       clipped to 45-50 (inside the clipped B)
    trace = [span("A", None, 0, 50), span("B", "A", 40, 80), span("C", "B", 45, 70)]
    assert path(trace) == [("C", 45, 50), ("B", 40, 45), ("A", 0, 40)]
    # one that starts before its parent is clipped at the start
    early = [span("A", None, 10, 50), span("B", "A", 0, 20)]
    assert path(early) == [("A", 20, 50), ("B", 10, 20)]


def test_children_outside_their_parent_and_follows_from_are_never_on_the_path() -> None:
    trace = [
        span("A", None, 0, 10),
        span("late", "A", 10, 20),  # starts when A has ended
        span("under-late", "late", 12, 18),  # dropped with it
        span("before", "A", -5, 0),  # ended when A started
        span("consumer", "A", 2, 9, follows=True),  # A does not wait for it
        span("under-consumer", "consumer", 3, 8),
    ]
    assert path(trace) == [("A", 0, 10)]


def test_calls_one_after_the_other_are_all_on_the_path() -> None:
    # B ends exactly when C starts: both are waited on (see the module's note on
    # jaeger-ui's strict comparison); a zero-length span at that moment is not
    trace = [
        span("A", None, 0, 30),
        span("B", "A", 0, 10),
        span("Z", "A", 10, 10),
        span("C", "A", 10, 30),
    ]
    assert path(trace) == [("C", 10, 30), ("B", 0, 10)]


def test_the_root_is_found_and_a_missing_one_gives_nothing() -> None:
    trace = [span("child", "root", 5, 8), span("root", None, 0, 10)]
    assert path(trace) == [("root", 8, 10), ("child", 5, 8), ("root", 0, 5)]
    assert path(trace, root="child") == [("child", 5, 8)]
    assert path(trace, root="nope") == []
    assert path([]) == []
    # a span whose parent is not in the trace (an incomplete trace) is a root
    orphan = [span("x", "gone", 0, 4), span("y", "x", 1, 3)]
    assert critical_path(orphan) == [Section("x", 3, 4), Section("y", 1, 3), Section("x", 0, 1)]


def test_a_deep_trace_needs_no_recursion() -> None:
    depth = 5_000
    trace = [span("s0", None, 0, 2 * depth)]
    trace += [span(f"s{i}", f"s{i - 1}", i, 2 * depth - i) for i in range(1, depth)]
    found = critical_path(trace)
    assert found[0] == Section("s0", 2 * depth - 1, 2 * depth)
    assert len(found) == 2 * depth - 1
    assert sum(s.duration for s in found) == 2 * depth
