"""seawall.policy: resilience policies for sync and asyncio code.

Every primitive is a sans-I/O state machine told the time by an injected
monotonic clock, with thin adapters for sync code and for asyncio. Each one is
usable as a decorator (``@policy``), a plain call (``policy.call(fn, ...)``,
``await policy.acall(fn, ...)``) and, where it makes sense, a context manager.
:class:`Pipeline` composes them in an explicit order.

The recommended order, outermost first: fallback → retry → circuit breaker →
bulkhead → timeout → call (see :mod:`seawall.policy.pipeline` for why).

This package has no dependencies outside the standard library.
"""

from ._policy import Policy
from .backoff import (
    Backoff,
    Constant,
    DecorrelatedJitter,
    Exponential,
    ExponentialEqualJitter,
    ExponentialFullJitter,
    Linear,
)
from .breaker import BreakerListener, BreakerMetrics, BreakerState, CircuitBreaker
from .budget import RetryBudget
from .bulkhead import Bulkhead, BulkheadMetrics, KeyedBulkhead
from .clock import MONOTONIC, AsyncSleep, Clock, FakeClock, Sleep
from .deadline import (
    Timeout,
    current_deadline,
    deadline_scope,
    decode_deadline,
    encode_deadline,
    remaining,
)
from .errors import (
    BulkheadFullError,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitedError,
    SeawallError,
    ThrottledError,
)
from .fallback import Fallback
from .hedge import Hedge
from .pipeline import Pipeline
from .ratelimit import RateLimiter
from .retry import Retry, RetryDetails, RetryHook, StopReason, current_attempt
from .shed import Admission, Criticality, LoadShedder, ShedSettings
from .throttle import AdaptiveThrottle, ThrottleMetrics

__all__ = [
    # composition
    "Pipeline",
    "Policy",
    # primitives
    "AdaptiveThrottle",
    "Bulkhead",
    "CircuitBreaker",
    "Fallback",
    "Hedge",
    "KeyedBulkhead",
    "LoadShedder",
    "RateLimiter",
    "Retry",
    "RetryBudget",
    "ShedSettings",
    "Timeout",
    # backoff strategies
    "Backoff",
    "Constant",
    "DecorrelatedJitter",
    "Exponential",
    "ExponentialEqualJitter",
    "ExponentialFullJitter",
    "Linear",
    # deadlines
    "current_deadline",
    "deadline_scope",
    "decode_deadline",
    "encode_deadline",
    "remaining",
    # observation
    "Admission",
    "BreakerListener",
    "BreakerMetrics",
    "BreakerState",
    "BulkheadMetrics",
    "Criticality",
    "RetryDetails",
    "RetryHook",
    "StopReason",
    "ThrottleMetrics",
    "current_attempt",
    # errors
    "BulkheadFullError",
    "CircuitOpenError",
    "DeadlineExceeded",
    "RateLimitedError",
    "SeawallError",
    "ThrottledError",
    # clocks
    "AsyncSleep",
    "Clock",
    "FakeClock",
    "MONOTONIC",
    "Sleep",
]
