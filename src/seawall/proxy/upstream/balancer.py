"""Load balancers: round robin, P2C least request and P2C peak EWMA (the default).

A :class:`Balancer` holds one destination's endpoints and their
:class:`~seawall.proxy.upstream.endpoint.EndpointStats`. The proxy asks it
``pick(now, exclude, subset)`` for each attempt, then reports the attempt with
:meth:`Balancer.on_start` and :meth:`Balancer.on_finish`. It is sans-I/O (told
``now``; randomness from an injected :class:`random.Random`) and not
thread-safe: each worker event loop owns its balancers.

What a pick considers, in order:

1. **The subset.** ``subset=None`` means every endpoint; ``subset="v2"``
   means the endpoints whose :attr:`~seawall.proxy.upstream.endpoint.Endpoint.subset`
   is ``"v2"``. An unknown or empty subset picks nothing (``None``); there is
   no fallback to other subsets (as Envoy's default ``NO_FALLBACK``): the
   route asked for that version.
2. **Ejections.** Endpoints the ejection view (an
   :class:`~seawall.proxy.upstream.outlier.OutlierDetector`) says are ejected
   are skipped. If *every* endpoint of the subset is ejected, the pick uses
   them all anyway (``panic=True``, the default): like Envoy's panic mode, it
   is better to try a suspect endpoint than to fail every request for the
   whole ejection time. The candidate list is cached and recomputed only when
   the view's :meth:`~seawall.proxy.upstream.outlier.OutlierDetector.version`
   changes, so a pick costs no per-endpoint ejection checks.
3. **Exclusions.** ``exclude`` (the endpoints a retried request already
   tried) are avoided when another candidate exists, so a retry goes to a
   different endpoint. If every candidate is excluded, the pick ignores
   ``exclude`` rather than fail: retrying the same healthy endpoint beats
   answering 503. Ejection is the stronger signal: an excluded endpoint that
   is healthy is preferred to one that is ejected.

Then the policy:

* :class:`RoundRobin` — nginx's smooth weighted round robin: every pick adds
  each candidate's weight to its running score, takes the highest score and
  subtracts the total weight from it. Weights 5, 1, 1 give
  ``a a b a c a a``, spread out rather than bunched. With equal weights it is
  a plain rotation, starting at a random endpoint so that many sidecars
  started together do not all hit the same endpoint first (as Envoy does).
* :class:`LeastRequestP2C` — power of two choices: draw two distinct
  candidates at random, take the one with fewer requests in flight
  (per unit of weight). Nearly as good as scanning for the least loaded,
  without the herd that a global minimum attracts.
* :class:`PeakEwmaP2C` (the default) — power of two choices on the peak-EWMA
  cost ``latency * (in_flight + 1) / weight`` (Finagle, Linkerd). It moves
  traffic away from an endpoint as soon as it slows down, and back once it
  recovers (see :mod:`seawall.proxy.upstream.endpoint`).

With P2C, weights scale the cost (Envoy's least-request does the same with
its default ``active_request_bias`` of 1); the two candidates are drawn
uniformly.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable
from typing import Literal, Protocol, TypeAlias

from .endpoint import DEFAULT_DECAY, DEFAULT_RTT, Endpoint, EndpointStats

__all__ = [
    "Balancer",
    "BalancerKind",
    "EjectionView",
    "LeastRequestP2C",
    "PeakEwmaP2C",
    "RoundRobin",
    "create_balancer",
]

_NOTHING: frozenset[Endpoint] = frozenset()


class EjectionView(Protocol):
    """What a balancer needs to know about ejections (an ``OutlierDetector`` is one)."""

    def version(self, now: float) -> int:
        """A number that changes whenever the ejected set changes."""
        ...

    def is_ejected(self, endpoint: Endpoint, now: float) -> bool:
        """Whether ``endpoint`` is ejected at ``now``."""
        ...


class _Entry:
    """One endpoint as the balancer holds it (private)."""

    __slots__ = ("endpoint", "stats", "weight")

    def __init__(self, endpoint: Endpoint, stats: EndpointStats) -> None:
        self.endpoint = endpoint
        self.stats = stats
        self.weight = endpoint.weight


class _Group:
    """The endpoints of one subset (or all of them), with the cached candidates (private)."""

    __slots__ = ("cands", "current", "entries", "equal", "pos", "version")

    def __init__(self, entries: list[_Entry]) -> None:
        self.entries = entries
        self.version = -1  # ejection version ``cands`` was computed for
        self.cands: list[_Entry] = entries
        self.current: list[int] = [0] * len(entries)  # smooth WRR scores, as ``cands``
        self.equal = len({e.weight for e in entries}) <= 1
        self.pos = 0  # rotation index when all weights are equal


class Balancer(ABC):
    """Picks an endpoint of one destination for each request attempt (see the module docs).

    Args:
        endpoints: the initial endpoint set (see :meth:`update`).
        rng: the source of randomness; default a new :class:`random.Random`.
            Tests pass a seeded one.
        ejections: the destination's ejection view (an ``OutlierDetector``),
            or ``None`` for no outlier detection.
        panic: when every endpoint of the subset is ejected, pick among them
            anyway (default) rather than return ``None``.
        default_rtt: latency estimate of a new endpoint, in seconds (> 0).
        decay: time constant of the latency estimate, in seconds (> 0).
    """

    __slots__ = (
        "_decay",
        "_default_rtt",
        "_ejections",
        "_entries",
        "_groups",
        "_random",
        "panic",
    )

    def __init__(
        self,
        endpoints: Iterable[Endpoint] = (),
        *,
        rng: random.Random | None = None,
        ejections: EjectionView | None = None,
        panic: bool = True,
        default_rtt: float = DEFAULT_RTT,
        decay: float = DEFAULT_DECAY,
    ) -> None:
        # Validates default_rtt and decay, naming this class.
        try:
            EndpointStats(default_rtt=default_rtt, decay=decay)
        except ValueError as exc:
            raise ValueError(str(exc).replace("EndpointStats", type(self).__name__)) from None
        self._default_rtt = default_rtt
        self._decay = decay
        self._random = (rng if rng is not None else random.Random()).random
        self._ejections = ejections
        self.panic = bool(panic)
        self._entries: dict[Endpoint, _Entry] = {}
        self._groups: dict[str | None, _Group] = {None: _Group([])}
        self.update(endpoints)

    # ------------------------------------------------------------------ membership

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        """Replace the endpoint set; endpoints that remain keep their stats.

        An endpoint remains if its address and port remain; its weight and
        subset are taken from the new set. Raises :class:`ValueError` on a
        duplicate endpoint.
        """
        old = self._entries
        entries: dict[Endpoint, _Entry] = {}
        for endpoint in endpoints:
            if endpoint in entries:
                raise ValueError(
                    f"{type(self).__name__}: endpoints must be unique, got {endpoint} twice"
                )
            previous = old.get(endpoint)
            stats = (
                previous.stats
                if previous is not None
                else EndpointStats(default_rtt=self._default_rtt, decay=self._decay)
            )
            entries[endpoint] = _Entry(endpoint, stats)
        by_subset: dict[str | None, list[_Entry]] = {None: list(entries.values())}
        for entry in entries.values():
            if entry.endpoint.subset is not None:
                by_subset.setdefault(entry.endpoint.subset, []).append(entry)
        groups = {name: _Group(members) for name, members in by_subset.items()}
        for group in groups.values():
            if group.equal and group.entries:
                group.pos = int(self._random() * len(group.entries))
            if self._ejections is None:
                group.version = 0  # candidates never change until the next update
        self._entries = entries
        self._groups = groups

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The current endpoint set, in update order."""
        return tuple(self._entries)

    @property
    def subsets(self) -> frozenset[str]:
        """The subset names present in the endpoint set."""
        return frozenset(name for name in self._groups if name is not None)

    def stats(self, endpoint: Endpoint) -> EndpointStats | None:
        """The load record of ``endpoint``, or ``None`` if it is not in the set."""
        entry = self._entries.get(endpoint)
        return None if entry is None else entry.stats

    # ------------------------------------------------------------------ the request path

    def pick(
        self,
        now: float,
        exclude: Collection[Endpoint] = _NOTHING,
        subset: str | None = None,
    ) -> Endpoint | None:
        """The endpoint for the next attempt, or ``None`` if the subset has no endpoint.

        Args:
            now: the current monotonic time.
            exclude: endpoints to avoid when another candidate exists
                (those a retried request already tried).
            subset: pick only endpoints of this subset; ``None`` for any.
        """
        group = self._groups.get(subset)
        if group is None:
            return None
        ejections = self._ejections
        if ejections is not None:
            version = ejections.version(now)
            if version != group.version:
                self._refresh(group, ejections, version, now)
        if not group.cands:
            return None
        if exclude:
            entry = self._choose(group, exclude, now)
            if entry is not None:
                return entry.endpoint
        entry = self._choose(group, _NOTHING, now)
        assert entry is not None  # there are candidates and none is excluded
        return entry.endpoint

    def on_start(self, endpoint: Endpoint, now: float) -> None:
        """An attempt was sent to ``endpoint`` at ``now`` (ignored if it left the set)."""
        entry = self._entries.get(endpoint)
        if entry is not None:
            entry.stats.on_start(now)

    def on_finish(self, endpoint: Endpoint, now: float, rtt: float, ok: bool) -> None:
        """An attempt to ``endpoint`` finished at ``now`` after ``rtt`` seconds.

        ``ok`` is false when it failed (error, 5xx, timeout). Ignored if the
        endpoint left the set meanwhile.
        """
        entry = self._entries.get(endpoint)
        if entry is not None:
            entry.stats.on_finish(now, rtt, ok)

    # ------------------------------------------------------------------ internals

    def _refresh(self, group: _Group, ejections: EjectionView, version: int, now: float) -> None:
        is_ejected = ejections.is_ejected
        cands = [e for e in group.entries if not is_ejected(e.endpoint, now)]
        if not cands and self.panic:
            cands = list(group.entries)
        group.cands = cands
        group.current = [0] * len(cands)
        group.equal = len({e.weight for e in cands}) <= 1
        group.version = version

    @abstractmethod
    def _choose(self, group: _Group, exclude: Collection[Endpoint], now: float) -> _Entry | None:
        """Choose among ``group.cands`` minus ``exclude``; ``None`` if all are excluded."""


class RoundRobin(Balancer):
    """Smooth weighted round robin, as nginx (see the module docs)."""

    __slots__ = ()

    def _choose(self, group: _Group, exclude: Collection[Endpoint], now: float) -> _Entry | None:
        cands = group.cands
        n = len(cands)
        if group.equal:
            pos = group.pos
            for k in range(n):
                index = (pos + k) % n
                entry = cands[index]
                if not exclude or entry.endpoint not in exclude:
                    group.pos = index + 1
                    return entry
            return None
        # nginx's ngx_http_upstream_get_peer: excluded peers are skipped
        # and do not take part in this round.
        current = group.current
        total = 0
        best = -1
        best_score = 0
        for index in range(n):
            entry = cands[index]
            if exclude and entry.endpoint in exclude:
                continue
            weight = entry.weight
            score = current[index] + weight
            current[index] = score
            total += weight
            if best < 0 or score > best_score:
                best = index
                best_score = score
        if best < 0:
            return None
        current[best] -= total
        return cands[best]


class _P2C(Balancer):
    """Power of two choices over a cost (private base)."""

    __slots__ = ()

    def _choose(self, group: _Group, exclude: Collection[Endpoint], now: float) -> _Entry | None:
        pool = group.cands
        if exclude:
            pool = [e for e in pool if e.endpoint not in exclude]
        n = len(pool)
        if n <= 1:
            return pool[0] if pool else None
        rand = self._random
        i = int(rand() * n)
        j = int(rand() * (n - 1))
        if j >= i:
            j += 1
        a = pool[i]
        b = pool[j]
        return a if self._prefer(a, b, now) else b

    @abstractmethod
    def _prefer(self, a: _Entry, b: _Entry, now: float) -> bool:
        """Whether ``a`` is at most as loaded as ``b``."""


class LeastRequestP2C(_P2C):
    """Power of two choices on requests in flight per unit of weight."""

    __slots__ = ()

    def _prefer(self, a: _Entry, b: _Entry, now: float) -> bool:
        return (a.stats.in_flight + 1) * b.weight <= (b.stats.in_flight + 1) * a.weight


class PeakEwmaP2C(_P2C):
    """Power of two choices on peak-EWMA cost per unit of weight (the default balancer)."""

    __slots__ = ()

    def _prefer(self, a: _Entry, b: _Entry, now: float) -> bool:
        return a.stats.cost(now) * b.weight <= b.stats.cost(now) * a.weight


BalancerKind: TypeAlias = Literal["round_robin", "least_request", "peak_ewma"]
"""The names of the balancers, as the mesh config spells them."""

_KINDS: dict[str, type[Balancer]] = {
    "round_robin": RoundRobin,
    "least_request": LeastRequestP2C,
    "peak_ewma": PeakEwmaP2C,
}


def create_balancer(
    kind: BalancerKind = "peak_ewma",
    endpoints: Iterable[Endpoint] = (),
    *,
    rng: random.Random | None = None,
    ejections: EjectionView | None = None,
    panic: bool = True,
    default_rtt: float = DEFAULT_RTT,
    decay: float = DEFAULT_DECAY,
) -> Balancer:
    """A new balancer of the given kind (default ``"peak_ewma"``); see :class:`Balancer`."""
    cls = _KINDS.get(kind)
    if cls is None:
        raise ValueError(f"create_balancer: kind must be one of {sorted(_KINDS)}, got {kind!r}")
    return cls(
        endpoints,
        rng=rng,
        ejections=ejections,
        panic=panic,
        default_rtt=default_rtt,
        decay=decay,
    )
