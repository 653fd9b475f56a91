"""seawall.proxy.upstream: a destination's endpoints, load balancing and outlier detection.

Everything here is sans-I/O: told the time (``now``, monotonic seconds) and
given its randomness (a :class:`random.Random`), so the proxy can run it per
request and tests can run it on a fake clock. None of it is thread-safe: each
worker event loop owns its balancers and detectors.

* :class:`Endpoint` / :class:`EndpointStats` — an instance of a destination,
  and its in-flight count and peak-EWMA latency.
* :class:`Balancer` — ``pick(now, exclude, subset)``: :class:`RoundRobin`,
  :class:`LeastRequestP2C`, :class:`PeakEwmaP2C` (the default).
* :class:`OutlierDetector` — ejects endpoints after consecutive 5xx or gateway
  errors, for a growing time, within a maximum ejected percentage.
"""

from .balancer import (
    Balancer,
    BalancerKind,
    EjectionView,
    LeastRequestP2C,
    PeakEwmaP2C,
    RoundRobin,
    create_balancer,
)
from .endpoint import DEFAULT_DECAY, DEFAULT_RTT, Endpoint, EndpointStats
from .outlier import (
    EjectionReason,
    EndpointOutlierState,
    OutlierConfig,
    OutlierDetector,
    OutlierSnapshot,
)

__all__ = [
    # endpoints
    "DEFAULT_DECAY",
    "DEFAULT_RTT",
    "Endpoint",
    "EndpointStats",
    # balancing
    "Balancer",
    "BalancerKind",
    "EjectionView",
    "LeastRequestP2C",
    "PeakEwmaP2C",
    "RoundRobin",
    "create_balancer",
    # outlier detection
    "EjectionReason",
    "EndpointOutlierState",
    "OutlierConfig",
    "OutlierDetector",
    "OutlierSnapshot",
]
