"""The seawall error family.

Every error a policy raises derives from :class:`SeawallError`, so callers can
catch "the protection said no" in one clause and still tell the reasons apart.
Foreign exceptions raised by the protected call are never wrapped: the caller
sees exactly what the callee raised (retry and budget add notes, not layers).
"""

from __future__ import annotations

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "DeadlineExceeded",
    "RateLimitedError",
    "SeawallError",
    "ThrottledError",
]


class SeawallError(Exception):
    """Base class of every error raised by a seawall policy."""


class CircuitOpenError(SeawallError):
    """The circuit breaker rejected the call without running it.

    Attributes:
        name: the breaker's name.
        state: the state that rejected the call (``"open"``, ``"half_open"``
            when all probes are taken, or ``"forced_open"``).
        retry_at: monotonic time (on the breaker's clock) at which the breaker
            next admits a probe, or ``None`` when that is not known (forced open).
        retry_after: seconds from the rejection until ``retry_at`` (``None`` if unknown).
    """

    def __init__(
        self, name: str, state: str, retry_at: float | None, retry_after: float | None
    ) -> None:
        self.name = name
        self.state = state
        self.retry_at = retry_at
        self.retry_after = retry_after
        when = "" if retry_after is None else f"; next probe in {retry_after:.3f}s"
        super().__init__(f"circuit breaker {name!r} is {state}{when}")


class BulkheadFullError(SeawallError):
    """The bulkhead had no free slot and its wait queue was full or timed out.

    Attributes:
        name: the bulkhead's (or keyed pool's) name.
        max_in_flight: the limit of calls in flight that was reached.
        reason: ``"queue_full"`` or ``"wait_timeout"``.
    """

    def __init__(self, name: str, max_in_flight: int, reason: str) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.reason = reason
        super().__init__(
            f"bulkhead {name!r} is full ({max_in_flight} calls in flight; {reason})"
        )


class DeadlineExceeded(SeawallError, TimeoutError):
    """The deadline for the work passed before the work finished.

    Derives from :class:`TimeoutError` too, so code that already handles
    timeouts handles this one.

    Attributes:
        timeout: the timeout in seconds that was set, when one was (``None`` when
            the deadline was inherited from an outer scope or a header).
    """

    def __init__(self, message: str = "deadline exceeded", timeout: float | None = None) -> None:
        self.timeout = timeout
        super().__init__(message)


class RateLimitedError(SeawallError):
    """The rate limiter had no token and waiting for one was not allowed or too long.

    Attributes:
        name: the limiter's name.
        retry_after: seconds until a token will be available.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(f"rate limiter {name!r}: no token; next in {retry_after:.3f}s")


class ThrottledError(SeawallError):
    """Adaptive client-side throttling rejected the request locally.

    Attributes:
        name: the throttle's name.
        probability: the rejection probability in force when the request was rejected.
    """

    def __init__(self, name: str, probability: float) -> None:
        self.name = name
        self.probability = probability
        super().__init__(
            f"throttle {name!r} rejected the request locally (p={probability:.3f})"
        )
