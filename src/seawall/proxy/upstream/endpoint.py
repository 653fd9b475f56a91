"""Endpoints of a destination service, and the per-endpoint load statistics.

An :class:`Endpoint` is one instance of a destination service: an address and
port (its identity), plus the subset (version) it belongs to, its load
balancing weight and free-form metadata. Two endpoints with the same address
and port are the same endpoint, whatever their weight, subset or metadata, so
a registry update that only changes the weight keeps the endpoint's history.

:class:`EndpointStats` is the mutable load record the balancers read: requests
in flight and a peak-EWMA latency estimate (Finagle's and Linkerd's
``PeakEwma``). It is sans-I/O like everything in ``seawall.proxy.upstream``:
the caller tells it the time. It is not thread-safe: one sidecar worker runs
one event loop, and each worker owns its balancers.

Peak EWMA, the rules:

* **Peak.** A response slower than the estimate replaces it at once, so a
  latency spike moves traffic away on the next pick, not after many samples.
* **EWMA.** A response faster than the estimate pulls it toward the sample
  with weight ``1 - exp(-elapsed / decay)``, where ``elapsed`` is the time
  since the estimate last changed: the estimate forgets at a rate set by time
  (``decay``, default 10 s), not by request count, so a busy and a quiet
  endpoint age alike.
* **Decay while idle.** Reading the estimate (:meth:`EndpointStats.latency`,
  at each pick) decays it toward zero by the same rule, as Finagle and
  Linkerd do. An endpoint that was penalised and then left alone becomes
  attractive again, gets a request, and so is measured again: that is how
  traffic returns to an endpoint that recovered.
* **New endpoints** start at ``default_rtt`` (30 ms, Linkerd's default) rather
  than zero. With zero they would look infinitely fast and receive every
  request until their first responses came back.
* **Failures never make an endpoint look faster.** A failed request faster
  than the estimate leaves the estimate alone: an endpoint that fails fast
  would otherwise attract traffic (the "black hole" effect). Persistent
  failures are the outlier detector's job.
* The **cost** of an endpoint is ``latency * (in_flight + 1)``: the expected
  wait if one more request is sent now.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ...policy._validate import require_number

__all__ = ["DEFAULT_DECAY", "DEFAULT_RTT", "Endpoint", "EndpointStats"]

DEFAULT_RTT = 0.030
"""Latency estimate (seconds) of an endpoint with no responses yet: Linkerd's 30 ms."""

DEFAULT_DECAY = 10.0
"""Time constant (seconds) of the peak-EWMA decay: Finagle's and Linkerd's 10 s."""


def _empty_metadata() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a destination service.

    Identity (equality and hash) is ``(address, port)`` only.

    Attributes:
        address: host name or IP address (an IPv6 address without brackets).
        port: TCP port, 1..65535.
        subset: the subset (version) the instance belongs to, e.g. ``"v2"``;
            ``None`` when it belongs to none.
        weight: load balancing weight, an int >= 1 (default 1).
        metadata: free-form labels (zone, pod name...), kept read-only.
    """

    address: str
    port: int
    subset: str | None = field(default=None, compare=False)
    weight: int = field(default=1, compare=False)
    metadata: Mapping[str, str] = field(default_factory=_empty_metadata, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ValueError(f"Endpoint: address must be a non-empty str, got {self.address!r}")
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"Endpoint: port must be an int in 1..65535, got {port!r}")
        if self.subset is not None and (not isinstance(self.subset, str) or not self.subset):
            raise ValueError(
                f"Endpoint: subset must be a non-empty str or None, got {self.subset!r}"
            )
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise ValueError(f"Endpoint: weight must be an int >= 1, got {weight!r}")
        if not isinstance(self.metadata, Mapping):
            raise ValueError(f"Endpoint: metadata must be a mapping, got {self.metadata!r}")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        # Endpoints are dict keys on the request path (stats, exclusions,
        # ejections): hash once.
        object.__setattr__(self, "_hash", hash((self.address, self.port)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[Endpoint], tuple[object, ...]]:
        # Rebuild through __init__: the cached hash is only valid in this
        # process (str hashes are salted per process), and a mappingproxy
        # cannot be pickled.
        return (
            type(self),
            (self.address, self.port, self.subset, self.weight, dict(self.metadata)),
        )

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


class EndpointStats:
    """Mutable load record of one endpoint: in-flight count and peak-EWMA latency.

    Call :meth:`on_start` when a request is sent to the endpoint and
    :meth:`on_finish` when it completes, however it completes (response,
    error, timeout, cancellation), or the in-flight count leaks. Not
    thread-safe (one per worker event loop).

    Args:
        default_rtt: initial latency estimate in seconds (> 0), see the module docs.
        decay: time constant of the EWMA in seconds (> 0).

    Attributes:
        in_flight: requests sent and not finished.
        requests: requests finished.
        failures: requests finished with ``ok=False``.
    """

    __slots__ = ("_decay", "_estimate", "_stamp", "failures", "in_flight", "requests")

    def __init__(self, *, default_rtt: float = DEFAULT_RTT, decay: float = DEFAULT_DECAY) -> None:
        require_number("EndpointStats", "default_rtt", default_rtt, gt=0)
        require_number("EndpointStats", "decay", decay, gt=0)
        self._decay = float(decay)
        self._estimate = float(default_rtt)
        self._stamp: float | None = None  # when the estimate last changed
        self.in_flight = 0
        self.requests = 0
        self.failures = 0

    def on_start(self, now: float) -> None:
        """A request was sent to the endpoint at ``now``."""
        self.in_flight += 1
        if self._stamp is None:
            self._stamp = now  # the estimate's age counts from first use

    def on_finish(self, now: float, rtt: float, ok: bool) -> None:
        """A request finished at ``now`` after ``rtt`` seconds; ``ok`` is false on failure."""
        if self.in_flight > 0:
            self.in_flight -= 1
        self.requests += 1
        if not ok:
            self.failures += 1
        estimate = self._estimate
        if rtt > estimate:
            self._estimate = rtt  # peak: the worst recent latency wins at once
        elif not ok:
            return  # a fast failure is not a latency sample (see the module docs)
        else:
            stamp = self._stamp
            if stamp is not None and now > stamp:
                decay = math.exp((stamp - now) / self._decay)
                self._estimate = estimate * decay + rtt * (1.0 - decay)
            # At the same instant (or before any reading), no time has passed
            # that would justify forgetting the estimate.
        self._stamp = now

    def latency(self, now: float) -> float:
        """The latency estimate in seconds at ``now``, decayed toward zero while idle."""
        stamp = self._stamp
        if stamp is None:
            self._stamp = now
        elif now > stamp:
            self._estimate *= math.exp((stamp - now) / self._decay)
            self._stamp = now
        return self._estimate

    def cost(self, now: float) -> float:
        """Peak-EWMA cost at ``now``: ``latency(now) * (in_flight + 1)``."""
        return self.latency(now) * (self.in_flight + 1)

    def __repr__(self) -> str:
        return (
            f"EndpointStats(in_flight={self.in_flight}, latency={self._estimate:.6f}, "
            f"requests={self.requests}, failures={self.failures})"
        )

