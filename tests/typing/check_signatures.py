"""Static typing checks, run by mypy in `make test` (not by pytest).

Decorating with a policy or a pipeline keeps the wrapped signature: a wrong
argument is a type error, and the return type is preserved. The lines marked
``type: ignore[...]`` must stay errors: mypy's ``warn_unused_ignores`` (on in
strict mode) fails the check if one of them stops being an error.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from seawall.policy import Bulkhead, CircuitBreaker, Pipeline, Retry, Timeout

breaker = CircuitBreaker("typing")
pipeline = Pipeline(Retry(on=OSError), breaker, Bulkhead(max_in_flight=2), Timeout(1.0))


@breaker
def add(x: int, y: int = 1) -> int:
    return x + y


@pipeline
async def fetch(url: str, *, retries: int = 0) -> bytes:
    return url.encode() * (retries + 1)


assert_type(add(1), int)
assert_type(add(1, y=2), int)
_coro = fetch("u")
_ = assert_type(_coro, Coroutine[Any, Any, bytes])
_coro.close()
assert_type(breaker.call(add, 1, 2), int)
assert_type(pipeline.call(add, 1), int)

add("one")  # type: ignore[arg-type]
add(1, z=2)  # type: ignore[call-arg]
_bad = fetch("u", retries="x")  # type: ignore[arg-type]
# Names renamed to mesh.yaml's (issue 14) are type errors, not just runtime ones.
CircuitBreaker(wait_in_open=5.0)  # type: ignore[call-arg]
Bulkhead(max_concurrent=2)  # type: ignore[call-arg]
