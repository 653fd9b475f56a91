"""Leases: which ids are alive, told the time.

A :class:`LeaseTable` is the bookkeeping of TTL leases with no I/O, no clock
and no ``await``: every method that depends on time takes ``now``, monotonic
seconds read by its caller (the store reads its injected clock). A lease is
alive while ``now < deadline``; :meth:`~LeaseTable.renew` moves the deadline
to ``now + ttl``; :meth:`~LeaseTable.expire` removes and returns the leases
whose deadline has passed, which the store then deletes with what they hold.

The table does not choose lease ids (the store does: SQLite allocates them,
so two processes on one file never hand out the same id) and does not know
what a lease holds (an instance and its sidecar's status, in the store).

Deadlines are kept in a heap with lazy deletion: a renewal pushes a new entry
and leaves the old one, which :meth:`~LeaseTable.expire` skips when it pops it
(its deadline no longer matches the lease's). So finding the expired leases
costs O(expired + stale entries), not a scan of every lease, and the heap
holds at most about one entry per renewal within one TTL.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

__all__ = ["LeaseTable"]


@dataclass(slots=True)
class _Lease:
    ttl: float
    deadline: float


class LeaseTable:
    """TTL leases by id, sans-I/O (see the module docstring).

    >>> table = LeaseTable()
    >>> table.grant(7, ttl=10.0, now=0.0)
    >>> table.alive(7, now=9.9), table.renew(7, now=9.9), table.expire(now=19.8)
    (True, True, [])
    >>> table.expire(now=19.9)
    [7]
    """

    def __init__(self) -> None:
        self._leases: dict[int, _Lease] = {}
        self._heap: list[tuple[float, int]] = []

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease: object) -> bool:
        return lease in self._leases

    def grant(self, lease: int, ttl: float, now: float) -> None:
        """Start (or restart) ``lease`` with ``ttl`` seconds from ``now``.

        Granting an id that is already there replaces its TTL and deadline:
        this is how a restarted store gives every stored lease a full TTL.
        """
        if not (ttl > 0 and math.isfinite(ttl)):
            raise ValueError(f"LeaseTable.grant: ttl must be a finite number > 0; got {ttl!r}")
        deadline = now + ttl
        self._leases[lease] = _Lease(ttl, deadline)
        heapq.heappush(self._heap, (deadline, lease))

    def alive(self, lease: int, now: float) -> bool:
        """Whether ``lease`` is known and its deadline is still ahead of ``now``."""
        entry = self._leases.get(lease)
        return entry is not None and now < entry.deadline

    def renew(self, lease: int, now: float) -> bool:
        """Give ``lease`` its full TTL again from ``now``; ``False`` if unknown or expired.

        An expired lease stays in the table (until :meth:`expire` takes it),
        so that the caller who learns it is dead also removes what it held.
        """
        entry = self._leases.get(lease)
        if entry is None or now >= entry.deadline:
            return False
        entry.deadline = now + entry.ttl
        heapq.heappush(self._heap, (entry.deadline, lease))
        return True

    def revoke(self, lease: int) -> bool:
        """Forget ``lease`` now; ``False`` if it was unknown."""
        return self._leases.pop(lease, None) is not None

    def ttl(self, lease: int) -> float | None:
        """The TTL ``lease`` was granted with, or ``None`` if unknown."""
        entry = self._leases.get(lease)
        return None if entry is None else entry.ttl

    def leases(self) -> list[int]:
        """Every known lease id (alive or not yet expired by :meth:`expire`)."""
        return list(self._leases)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a known lease, or ``None`` if there is none."""
        heap = self._heap
        while heap:
            deadline, lease = heap[0]
            entry = self._leases.get(lease)
            if entry is not None and entry.deadline == deadline:
                return deadline
            heapq.heappop(heap)  # stale: renewed or revoked since it was pushed
        return None

    def expire(self, now: float) -> list[int]:
        """Remove and return every lease whose deadline is at or before ``now``."""
        expired: list[int] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, lease = heapq.heappop(heap)
            entry = self._leases.get(lease)
            if entry is not None and entry.deadline == deadline:
                del self._leases[lease]
                expired.append(lease)
        return expired
