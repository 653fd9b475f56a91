"""Seawall's policies applied to real HTTP clients.

* :mod:`seawall.client.httpx` — :class:`~seawall.client.httpx.SeawallTransport`
  and :class:`~seawall.client.httpx.AsyncSeawallTransport`, httpx transports
  that run every request through a per-host pipeline (retry, circuit breaker,
  ...), send the deadline, trace context and correlation id, and release the
  connections of retried responses. Needs the ``httpx`` extra.
  :func:`~seawall.client.httpx.from_mesh` builds an httpx client applying
  mesh.yaml's policies as a sidecar would (the ``mesh`` extra too).
* :mod:`seawall.client.requests` — :class:`~seawall.client.requests.SeawallAdapter`,
  a ``requests`` transport adapter doing the same for a ``requests.Session``
  (the same code: :mod:`seawall.client._call`).

With the OpenTelemetry API installed, every request is a CLIENT span and each
attempt a child CLIENT span (``docs/telemetry/spans.md``); without it, nothing
of that runs.

This package imports no HTTP library itself: import the submodule for the
client you use.
"""

__all__: list[str] = []
