"""Seawall's policies applied to real HTTP clients.

* :mod:`seawall.client.httpx` — :class:`~seawall.client.httpx.SeawallTransport`
  and :class:`~seawall.client.httpx.AsyncSeawallTransport`, httpx transports
  that run every request through a per-host pipeline (retry, circuit breaker,
  ...), send the deadline, trace context and correlation id, and release the
  connections of retried responses. Needs the ``httpx`` extra.
  :func:`~seawall.client.httpx.from_mesh` builds an httpx client applying
  mesh.yaml's policies as a sidecar would (the ``mesh`` extra too).

This package imports no HTTP library itself: import the submodule for the
client you use.
"""

__all__: list[str] = []
