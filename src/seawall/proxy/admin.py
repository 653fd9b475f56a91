"""The admin listener: ``/ready``, ``/metrics``, ``/config`` and ``/clusters``.

Served by the same HTTP/1.1 codec as the data plane, on its own port (loopback
by default). Answers are small and made in memory; nothing here blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from .http1 import RequestHead, encode_response_head
from .listener import DownstreamConnection, RequestBody
from .runtime import Runtime

__all__ = ["Admin"]

_PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class Admin:
    """Serves the admin endpoints of one sidecar process."""

    def __init__(self, runtime: Callable[[], Runtime], ready: Callable[[], bool]) -> None:
        self._runtime = runtime
        self._ready = ready

    async def serve(self, down: DownstreamConnection, req: RequestHead, body: RequestBody) -> None:
        """Answer one admin request."""
        await body.wait_complete()
        path = req.path.split(b"?", 1)[0]
        rt = self._runtime()
        status, ctype, payload = 200, b"application/json", b""
        if req.method not in (b"GET", b"HEAD"):
            status, ctype, payload = 405, b"text/plain", b"GET only\n"
        elif path == b"/ready":
            ok = self._ready()
            status, ctype = (200 if ok else 503), b"text/plain"
            payload = b"ready\n" if ok else b"starting\n"
        elif path == b"/metrics":
            ctype, payload = _PROMETHEUS, rt.metrics.render()
        elif path == b"/config":
            doc = {
                "service": rt.service,
                "digest": rt.config.digest(),
                "config": json.loads(rt.config.to_json()),
            }
            payload = json.dumps(doc, indent=2).encode()
        elif path == b"/clusters":
            clusters = [d.cluster.snapshot() for d in rt.destinations.values()]
            clusters.append(rt.inbound.cluster.snapshot())
            payload = json.dumps({"clusters": clusters}, indent=2, default=str).encode()
        else:
            status, ctype, payload = 404, b"text/plain", b"not found\n"
        head = encode_response_head(
            status,
            b"",
            [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())],
            keep_alive=req.keep_alive,
        )
        down.write(head if req.method == b"HEAD" else head + payload)
        down.finish(req.keep_alive)
