"""Slow peers on raw sockets, and an RSS sampler, for the sidecar's backpressure tests.

Apps (servers on 127.0.0.1, a thread per connection, blocking sockets):

* :class:`SlowReader` accepts a connection and reads nothing of it (not even
  the head) until ``stall`` seconds have passed or :meth:`SlowReader.release`
  is called, then reads the request at most ``rate`` bytes per second, and
  answers 200 with the number of body bytes it read.
* :class:`Firehose` reads a request head, then answers 200 with a body of
  ``size`` bytes, sent as fast as the connection takes them.

Clients:

* :class:`Upload` sends one request with a body of ``size`` bytes, as fast as
  the connection takes it, then reads the answer (in a thread of its own).
* :class:`DeafClient` sends a request and never reads a byte of the answer.

Every socket of these peers may be given a small ``SO_RCVBUF`` / ``SO_SNDBUF``
so that the kernel holds little of a stalled transfer, and the sidecar's own
buffers are what fill (a buffer set before ``listen``/``connect`` also caps
the window the connection advertises). Every wait is bounded: sockets carry a
timeout, loops count bytes, and :meth:`close` ends every thread.

:class:`RssSampler` reads ``VmRSS`` from ``/proc/<pid>/status`` for a process
and its descendants every 100 ms in a thread of its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

__all__ = [
    "DeafClient",
    "Firehose",
    "RssSampler",
    "SlowReader",
    "Upload",
    "process_rss",
]

MIB = 1 << 20
LIMIT = 60.0
"""Longest any socket operation here may block (seconds): nothing hangs forever."""

_ZEROS = memoryview(bytes(MIB))
"""What every body is made of, sent slice by slice (no copy per transfer)."""
_PIECE = 256 * 1024
"""The most a :class:`SlowReader` asks of one ``recv``."""


def _set_buffers(sock: socket.socket, rcvbuf: int | None, sndbuf: int | None) -> None:
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """A request or response head (up to the blank line), and the bytes read after it."""
    buf = bytearray()
    while (end := buf.find(b"\r\n\r\n")) < 0:
        data = sock.recv(65536)
        if not data:
            raise EOFError(f"closed in the head after {len(buf)} bytes")
        buf += data
        if len(buf) > 65536:
            raise ValueError("head too large")
    return bytes(buf[: end + 4]), bytes(buf[end + 4 :])


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


class _Server:
    """A listening socket on 127.0.0.1 whose connections are each served in a thread."""

    def __init__(self, rcvbuf: int | None, sndbuf: int | None) -> None:
        self._listener = socket.socket()
        _set_buffers(self._listener, rcvbuf, sndbuf)  # inherited by accepted sockets
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(512)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.closing = threading.Event()
        self.accepted = 0
        self.errors: list[BaseException] = []
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self.closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(LIMIT)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            self.serve(conn)
        except OSError:
            pass  # the sidecar closed or reset the connection: what the test checks
        except Exception as exc:  # noqa: BLE001 - reported to the test, not lost in a thread
            self.errors.append(exc)
        finally:
            conn.close()

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.closing.set()
        self._listener.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(LIMIT)


class SlowReader(_Server):
    """Reads nothing for :attr:`stall` seconds after accepting, then at most ``rate`` bytes/s.

    Nothing at all: not even the request head, until the stall is over or
    :meth:`release` is called. Then it reads the request (``Content-Length``
    framing) and answers 200 with the number of body bytes it read, as text.
    """

    def __init__(self, *, stall: float, rate: float, rcvbuf: int | None = None) -> None:
        self.stall = stall
        """Seconds each connection is left unread; read when the connection is accepted."""
        self.rate = rate
        self._released = threading.Event()
        self.received = 0  # body bytes, every connection
        self.reading = 0  # connections whose stall is over
        self.answered = 0
        super().__init__(rcvbuf, None)

    def release(self) -> None:
        """End every stall now (and skip those of connections still to come)."""
        self._released.set()

    def close(self) -> None:
        self.closing.set()
        self._released.set()
        super().close()

    def serve(self, conn: socket.socket) -> None:
        # The scenario: the app has accepted, and reads nothing for a while.
        self._released.wait(self.stall)
        if self.closing.is_set():
            return
        self.reading += 1
        head, early = _read_head(conn)
        left = _content_length(head) - len(early)
        got = len(early)
        self.received += got
        view = memoryview(bytearray(_PIECE))
        start = time.monotonic()
        while left > 0 and not self.closing.is_set():
            n = conn.recv_into(view[: min(_PIECE, left)])
            if n == 0:
                raise EOFError(f"closed in the body, {left} bytes short")
            left -= n
            got += n
            self.received += n
            ahead = got / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # the scenario: an app that reads slowly
        body = str(got).encode()
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%b"
            % (len(body), body)
        )
        self.answered += 1


class Firehose(_Server):
    """Answers a request with ``size`` bytes, as fast as the connection takes them, and closes."""

    def __init__(self, size: int, *, sndbuf: int | None = None) -> None:
        self.size = size
        """The body's size; read when a request arrives."""
        self.sent = 0  # body bytes, every connection
        self.finished = 0  # connections ended (completed, closed or reset by the peer)
        super().__init__(None, sndbuf)

    def serve(self, conn: socket.socket) -> None:
        try:
            _read_head(conn)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            conn.sendall(head % self.size)
            left = self.size
            while left > 0 and not self.closing.is_set():
                n = conn.send(_ZEROS[: min(MIB, left)])
                left -= n
                self.sent += n
        finally:
            self.finished += 1


class Upload:
    """A request with a ``size``-byte body, sent as fast as it goes, and its answer, in a thread."""

    def __init__(
        self,
        port: int,
        size: int,
        *,
        method: str = "POST",
        path: str = "/upload",
        sndbuf: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        _set_buffers(self.sock, None, sndbuf)
        self.sock.settimeout(LIMIT)
        self.sock.connect(("127.0.0.1", port))
        self.head = (
            f"{method} {path} HTTP/1.1\r\nHost: app\r\nContent-Length: {size}\r\n\r\n"
        ).encode()
        self.size = size
        self.sent = 0
        self.status: int | None = None
        self.answer = b""
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sock.sendall(self.head)
            left = self.size
            while left > 0:
                n = self.sock.send(_ZEROS[: min(MIB, left)])
                left -= n
                self.sent += n
            head, body = _read_head(self.sock)
            self.status = _status(head)
            want = _content_length(head)
            while len(body) < want:
                data = self.sock.recv(65536)
                if not data:
                    break
                body += data
            self.answer = body
        except (OSError, EOFError, ValueError) as exc:
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(LIMIT)


class DeafClient:
    """Sends ``GET path`` and never reads the answer (its receive buffer: ``rcvbuf``)."""

    def __init__(self, port: int, path: str = "/", *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        _set_buffers(self.sock, rcvbuf, None)
        self.sock.settimeout(LIMIT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: app\r\n\r\n".encode())

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------- memory


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                for child in (task / "children").read_text().split():
                    found.append(int(child))
                    todo.append(int(child))
    return found


def _vm_rss(pid: int) -> int:
    """VmRSS of one process in bytes (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024  # reported in kB
    return 0


def process_rss(pid: int) -> int:
    """Resident memory of ``pid`` and every descendant of it, in bytes."""
    return _vm_rss(pid) + sum(_vm_rss(child) for child in _descendants(pid))


class RssSampler:
    """Samples :func:`process_rss` of ``pid`` every ``interval`` seconds while open."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (monotonic time, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(LIMIT)

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), process_rss(self.pid)))
            if self._stop.wait(self.interval):
                return

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def peak_since(self, start: float) -> int:
        return max((rss for t, rss in self.samples if t >= start), default=0)

    def low_since(self, start: float) -> int:
        return min((rss for t, rss in self.samples if t >= start), default=0)
