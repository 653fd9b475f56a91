"""A small HTTP/1.1 server on loopback whose endpoints misbehave on command.

Used by the demo (and handy for experiments): each path has a *behaviour*
that the demo switches while it runs:

* ``ok``         — 200 at once;
* ``fail``       — 503 at once;
* ``flaky:P``    — 503 with probability P (seeded, so runs repeat), else 200;
* ``hang:S``     — answer 200 only after S seconds;
* ``retry-after:S`` — 503 with a ``Retry-After: S`` header.

Keep-alive is supported; bodies of requests are ignored (the demo only GETs).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

__all__ = ["FlakyServer"]


@dataclass
class FlakyServer:
    """An asyncio HTTP server on 127.0.0.1 with switchable per-path behaviours."""

    seed: int = 7
    behaviours: dict[str, str] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _server: asyncio.Server | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def set(self, path: str, behaviour: str) -> None:
        """Switch ``path`` to ``behaviour`` (see the module docstring)."""
        self.behaviours[path] = behaviour

    async def start(self) -> None:
        """Listen on an ephemeral loopback port (``self.port``)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every open connection."""
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self._server.wait_closed()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:40123``."""
        return f"http://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
                parts = request_line.split(" ")
                if len(parts) != 3:
                    await self._send(writer, 400, b"bad request line\n")
                    return
                path = parts[1].split("?", 1)[0]
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                self.hits[path] = self.hits.get(path, 0) + 1
                status, body, extra = await self._behave(path)
                await self._send(writer, status, body, extra)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # stop() cancels handlers still hanging; the handler task ends here,
            # so asyncio's stream callback has no cancelled task to report.
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            self._writers.discard(writer)
            writer.close()

    async def _behave(self, path: str) -> tuple[int, bytes, dict[str, str]]:
        behaviour = self.behaviours.get(path, "ok")
        kind, _, arg = behaviour.partition(":")
        if kind == "ok":
            return 200, b"ok\n", {}
        if kind == "fail":
            return 503, b"unavailable\n", {}
        if kind == "flaky":
            if self._rng.random() < float(arg):
                return 503, b"unavailable\n", {}
            return 200, b"ok\n", {}
        if kind == "hang":
            await asyncio.sleep(float(arg))
            return 200, b"ok, finally\n", {}
        if kind == "retry-after":
            return 503, b"busy\n", {"Retry-After": arg}
        return 500, f"unknown behaviour {behaviour!r}\n".encode(), {}

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        reason = {200: "OK", 400: "Bad Request", 500: "Internal Server Error"}.get(
            status, "Service Unavailable"
        )
        headers = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        headers += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
