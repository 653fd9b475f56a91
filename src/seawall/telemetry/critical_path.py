"""The critical path of a trace: the stretches of spans that the trace's end waited on.

Jaeger's algorithm (jaeger-ui v1.33, ``TracePage/CriticalPath``), sans-I/O,
over any spans that have an id, a parent, a start and an end:

1. **Prepare the tree.** Only ``CHILD_OF`` edges block a parent: a span that
   merely *follows from* another (a message consumed later) is dropped, with
   everything under it. A child that starts at or after its parent's end, or
   ends at or before its parent's start, did not hold the parent up and is
   dropped with its subtree; a child that overflows its parent is clipped to
   the parent's bounds (its descendants are then checked against the clipped
   child).
2. **Walk back from the end.** Starting at the root, take its child that
   finished last; the parent's stretch from that child's end to the parent's
   own end is on the path. Recurse into that child. A span with no child left
   to take contributes from its own start. Then climb back to the parent,
   which takes its child that finished last *by the start of the child just
   walked*, and so on until the root has no child left.

   One difference from jaeger-ui, on purpose: a child that ends exactly when
   the walked child starts (two calls one after the other) is taken; jaeger-ui
   compares strictly and gives that stretch to the parent, which hides the
   first call of a sequence whose timestamps touch. A child of zero length at
   that very moment is skipped (nothing was waited on, and taking it would
   not move the walk back).

The result lists each stretch once, latest first, so the stretches tile the
part of the root's duration that the critical path covers (the critical path
is every moment of the root, without gaps, when each child either runs or is
waited on). :func:`self_times` sums the stretches per span: the spans the
trace was waiting on, and for how long, which is the "slow hop" question.

Times are any one unit (the store uses microseconds); the functions never
read a clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Section", "TimedSpan", "critical_path", "self_times"]


@dataclass(frozen=True, slots=True)
class TimedSpan:
    """What the algorithm needs of a span.

    Attributes:
        span_id: unique within the trace.
        parent_id: the span it is a child of (``None``: a root).
        start, end: its times, ``start <= end``.
        follows_from: its parent does not wait for it (a ``FOLLOWS_FROM``
            reference, a producer and its consumer): it is never on the path.
    """

    span_id: str
    parent_id: str | None
    start: float
    end: float
    follows_from: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    """A stretch of the critical path: ``span_id`` was what the trace waited on
    from ``start`` to ``end``."""

    span_id: str
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def _tree(spans: Sequence[TimedSpan], root: TimedSpan) -> dict[str, list[TimedSpan]]:
    """The blocking children of each span, clipped to their parents (step 1)."""
    children: dict[str, list[TimedSpan]] = {}
    for span in spans:
        if span.parent_id is not None and not span.follows_from:
            children.setdefault(span.parent_id, []).append(span)
    kept: dict[str, list[TimedSpan]] = {}
    stack = [root]
    while stack:
        parent = stack.pop()
        mine: list[TimedSpan] = []
        for child in children.get(parent.span_id, ()):
            if child.start >= parent.end or child.end <= parent.start:
                continue  # never held the parent up: dropped with its subtree
            clipped = TimedSpan(
                child.span_id,
                child.parent_id,
                max(child.start, parent.start),
                min(child.end, parent.end),
            )
            mine.append(clipped)
            stack.append(clipped)
        kept[parent.span_id] = mine
    return kept


def critical_path(spans: Iterable[TimedSpan], root_id: str | None = None) -> list[Section]:
    """The critical path of the trace that ``spans`` make, latest stretch first.

    ``root_id``: the span to start from; by default the span without a parent
    (the earliest one if there are several; an empty list if there is none).
    Spans are keyed by id; one given twice counts once (the last).
    """
    by_id = {span.span_id: span for span in spans}
    if root_id is None:
        roots = sorted(
            (s for s in by_id.values() if s.parent_id is None or s.parent_id not in by_id),
            key=lambda s: (s.start, s.span_id),
        )
        if not roots:
            return []
        root = roots[0]
    else:
        found = by_id.get(root_id)
        if found is None:
            return []
        root = found
    tree = _tree(list(by_id.values()), root)
    clipped = {root.span_id: root}
    for kids in tree.values():
        for kid in kids:
            clipped[kid.span_id] = kid
    parent_of = {kid.span_id: pid for pid, kids in tree.items() for kid in kids}

    path: list[Section] = []
    # (span, the time before which its children are considered): an explicit
    # stack instead of recursion, so a deep trace cannot exhaust Python's stack
    span: TimedSpan | None = root
    until: float | None = None
    while span is not None:
        end = span.end if until is None else until
        last = _last_finishing(tree.get(span.span_id, ()), until)
        if last is not None:
            if last.end < end:
                path.append(Section(span.span_id, last.end, end))
            span, until = last, None  # walk into the child
            continue
        if span.start < end:
            path.append(Section(span.span_id, span.start, end))
        parent_id = parent_of.get(span.span_id)
        if parent_id is None:
            break
        span, until = clipped[parent_id], span.start  # climb back to the parent
    return path


def _last_finishing(children: Sequence[TimedSpan], before: float | None) -> TimedSpan | None:
    """The child that finished last (before ``before``, when given); on a tie,
    the one that started last."""
    best: TimedSpan | None = None
    for child in children:
        if before is not None and child.end > before:
            continue
        if before is not None and child.end == before and child.start == before:
            continue  # an empty child at the very time: nothing to wait for
        if best is None or (child.end, child.start) > (best.end, best.start):
            best = child
    return best


def self_times(path: Iterable[Section]) -> dict[str, float]:
    """How long the path waited on each span, longest first."""
    totals: dict[str, float] = {}
    for section in path:
        totals[section.span_id] = totals.get(section.span_id, 0.0) + section.duration
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
