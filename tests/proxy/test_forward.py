"""The forwarder in process: a failure inside the pipeline still answers the client."""

from __future__ import annotations

import asyncio
from typing import Any

from seawall.config import parse_mesh
from seawall.proxy.forward import Forwarder
from seawall.proxy.http1 import DEFAULT_LIMITS
from seawall.proxy.listener import ConnectionTimeouts, DownstreamConnection
from seawall.proxy.runtime import build_runtime

MESH = {
    "mesh": "t",
    "services": {
        "app": {"port": 18900, "sidecar": {"inbound": 18901, "outbound": 18902, "admin": 18903}},
        "svc": {"port": 18910, "sidecar": {"inbound": 18911, "outbound": 18912, "admin": 18913}},
    },
}


class Transport:
    """Collects what the connection writes; nothing goes on the network."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def test_an_internal_error_answers_500_and_closes() -> None:
    async def main() -> Transport:
        forwarder = Forwarder(build_runtime(parse_mesh(MESH), "app"))

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug")

        forwarder._mesh_headers = broken  # type: ignore[method-assign]
        conn = DownstreamConnection(forwarder.serve, DEFAULT_LIMITS, ConnectionTimeouts())
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(b"GET http://svc/x HTTP/1.1\r\nHost: svc\r\n\r\n")
        assert conn.task is not None
        await conn.task
        return transport

    transport = asyncio.run(main())
    assert transport.written.startswith(b"HTTP/1.1 500 ")
    assert b"connection: close" in transport.written
    assert transport.closed
