"""Bounded memory under backpressure, measured over real sockets (issue 9).

In the Rust core every direction streams with backpressure: a request body
moves from the client through a two-slot channel, each piece written upstream
before the next is taken (``crates/seawall-proxy/src/server.rs``, ``body.rs``,
``client.rs``); a response body is read from the upstream one read at a time,
each written to the client before the next is read. The only body buffering
is ``limits.retry_buffer_bytes``, and only when a retry or a mirror may need
the body. These tests hold the sidecar
to that by measuring its resident memory:

* 1 GiB streamed to an app that reads nothing for 15 s, then reads slowly:
  RSS stays within 10 MiB of idle;
* 100 concurrent 10 MiB uploads to a slow app: RSS stays within the bound
  below, streamed (POST, not retried) and retry-buffered (PUT on a route that
  retries, so the first ``retry_buffer_bytes`` are read before the attempt);
* a client that never reads a 1 GiB response: RSS stays flat;
* after each of these bursts, RSS returns to within 10 MiB of idle.

"10 MB" in the issue is read as 10 MiB. ``limits.max_body_bytes`` is 1 GiB
(the field has no maximum; a body of exactly the limit is allowed).

**Measuring.** RSS is ``VmRSS`` from ``/proc/<pid>/status`` of the sidecar
process (``seawall sidecar`` execs into the core: it is the pid the fixture
started) and of any child of it, sampled every 100 ms from before the
transfer starts until it has ended (:class:`slow_apps.RssSampler`). Idle is
the RSS once a small request has gone through each destination the test uses
(first-use allocations are not growth), when two samples agree.

The test's own sockets get 64 KiB kernel buffers (Linux doubles it):
``SO_SNDBUF`` on the uploading clients, ``SO_RCVBUF`` on the apps and on the
client that never reads, set before ``connect``/``listen`` so that the window
is small from the start. The kernel then holds little of a stalled transfer,
and what fills is the sidecar. Kernel socket buffers, the sidecar's own
included, are not in ``VmRSS``, so they are not in the bound either; each test
checks instead that the stall stopped the sender short (a sidecar that
buffered would not have stopped it).

**The bound** for N uploads in flight at once: every sample at most
``idle + SLACK + N × per request``, from the core's constants and the limits.

====================================================================  =========
per streamed request                                                    160 KiB
  the body in flight: the channel, STREAM_DEPTH (2) × READ_SIZE
  (16 KiB), and the read being filled, READ_SIZE                         48 KiB
  the piece being written upstream, and its chunked copy
  (2 × READ_SIZE)                                                        32 KiB
  the connections' buffers: downstream read and write buffers
  (2 × READ_SIZE), the upstream read buffer (READ_SIZE in
  crates/seawall-proxy/src/client.rs, 16 KiB)                            48 KiB
  the rest of a request in flight (task, futures, headers, timers)       32 KiB
per retry-buffered request: the above, plus retry_buffer_bytes (1 MiB
here) and the one READ_SIZE the buffer may overflow by                 1200 KiB
SLACK, once for the process (allocator, runtime)                        10 MiB
====================================================================  =========

100 streamed uploads: idle + 10 MiB + 100 × 160 KiB = idle + 25.6 MiB;
100 retry-buffered ones: idle + 10 MiB + 100 × 1200 KiB = idle + 127.2 MiB.
(A bodyless request in flight measures about 40 KiB in all: the last two
streamed lines allow twice that.)

Run with ``-s`` to see each test's figures; they are in every failure message.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from backends import Backend, BackendLoop, Echo, RawConn, wait_until
from conftest import Mesh, SidecarProcess
from slow_apps import DeafClient, Firehose, RssSampler, SlowReader, Upload, process_rss

Start = Callable[[Mesh], SidecarProcess]

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30

# The core's constants the bound is made of.
READ_SIZE = 16 * KIB  # crates/seawall-proxy/src/server.rs
STREAM_DEPTH = 2  # crates/seawall-proxy/src/body.rs
UPSTREAM_READ = 16 * KIB  # READ_SIZE in crates/seawall-proxy/src/client.rs
RETRY_BUFFER = 1 * MIB  # limits.retry_buffer_bytes, here

# the channel's pieces and the read being filled; the piece being written upstream (and
# its chunked copy)
BODY_IN_FLIGHT = (STREAM_DEPTH + 1) * READ_SIZE + 2 * READ_SIZE
CONNECTION_BUFFERS = 2 * READ_SIZE + UPSTREAM_READ  # downstream read/write, upstream read
REQUEST_REST = 32 * KIB  # a request's task, futures, headers, timers
PER_STREAM = BODY_IN_FLIGHT + CONNECTION_BUFFERS + REQUEST_REST  # 160 KiB
PER_BUFFERED = PER_STREAM + RETRY_BUFFER + READ_SIZE  # 1200 KiB
SLACK = 10 * MIB
"""Once per process (allocator, runtime); also how far from idle RSS may stay after a burst."""

SMALL_BUFFER = 64 * KIB
"""SO_SNDBUF / SO_RCVBUF of the test's own sockets."""
KERNEL_SHARE = 64 * MIB
"""Most of one stalled transfer the kernel may hold: the sidecar's socket buffers can
autotune up to tcp_rmem + tcp_wmem (32 + 4 MiB here); a buffering sidecar takes it all."""
STALL = 15.0
"""How long the app of the 1 GiB upload reads nothing (the scenario)."""
SLOW_RATE = 128 * MIB
"""Bytes per second that app reads at once the stall is over: 1 GiB in 8 s."""
UPLOADS = 100
UPLOAD_SIZE = 10 * MIB
UPLOAD_RATE = 4 * MIB
"""Bytes per second per connection the app of the 100 uploads reads at once released
(400 MiB/s in all: less than the sidecar moves, so the app is what limits)."""
ROUTE = {"timeout": "60s"}


@dataclass
class Figures:
    """What one burst did to the sidecar's RSS (bytes)."""

    name: str
    idle: int
    bound: int
    peak: int = 0
    after: int = 0

    def __str__(self) -> str:
        def mib(n: int, sign: str = "") -> str:
            return f"{n / MIB:{sign}.1f} MiB"

        return (
            f"{self.name}: idle {mib(self.idle)}, peak {mib(self.peak)} "
            f"({mib(self.peak - self.idle, '+')}, bound {mib(self.bound - self.idle, '+')}), "
            f"after {mib(self.after)} ({mib(self.after - self.idle, '+')})"
        )

    def check(self, problems: list[str]) -> None:
        """Print the figures; fail with every problem found, and with them."""
        print(self)
        if self.peak > self.bound:
            problems.append(f"peak over the bound by {(self.peak - self.bound) / MIB:.1f} MiB")
        if self.after > self.idle + SLACK:
            problems.append(
                f"RSS did not return to within {SLACK // MIB} MiB of idle after the burst"
            )
        assert not problems, f"{self}\n" + "\n".join(problems)


@pytest.fixture
def app(sidecar_loop: BackendLoop) -> Backend:
    """The service beside the sidecar (not called here: every test goes outbound)."""
    return sidecar_loop.backend("app", Echo())


def mesh_for(app: Backend, **destinations: tuple[int, dict[str, object]]) -> Mesh:
    """A mesh whose destinations (each with a local port) are ``name=(app port, policy)``."""
    mesh = Mesh(
        app,
        limits={"max_body_bytes": "1GiB", "retry_buffer_bytes": f"{RETRY_BUFFER // KIB}KiB"},
    )
    for name, (port, policy) in destinations.items():
        mesh.destination(name, [port], ROUTE | policy, upstream_port=True)
    return mesh


def exchange(port: int, method: str, body: bytes = b"") -> tuple[int, bytes]:
    """One small request on a connection of its own: (status, body)."""
    with RawConn(port) as conn:
        head = f"{method} /warm HTTP/1.1\r\nHost: app\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.send(head.encode() + body)
        response = conn.response()
        return response.status, response.body


def settled_rss(pid: int, timeout: float = 5.0) -> int:
    """The RSS once two samples 100 ms apart agree (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    last = process_rss(pid)
    while True:
        time.sleep(0.1)
        rss = process_rss(pid)
        if rss == last or time.monotonic() >= deadline:
            return rss
        last = rss


def rss_after(pid: int, limit: int, timeout: float = 5.0) -> int:
    """The RSS once settled at most ``limit`` (two samples agree), or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = process_rss(pid)
    while True:
        time.sleep(0.1)
        rss = process_rss(pid)
        if (rss == last and rss <= limit) or time.monotonic() >= deadline:
            return rss
        last = rss


def wait_stalled(progress: Callable[[], int], what: str, timeout: float) -> int:
    """Wait until ``progress()`` has not moved for 1 s; return where it stopped."""
    quiet = 1.0
    deadline = time.monotonic() + timeout
    last, since = progress(), time.monotonic()
    while True:
        time.sleep(0.05)
        now, value = time.monotonic(), progress()
        if value != last:
            last, since = value, now
        elif now - since >= quiet:
            return value
        if now >= deadline:
            raise AssertionError(f"{what} still moving after {timeout}s ({value} bytes)")


# ---------------------------------------------------------------------------- request bodies


def test_1gib_to_an_app_that_reads_nothing_for_15s_then_slowly(
    sidecar_start: Start, app: Backend
) -> None:
    with contextlib.closing(SlowReader(stall=0.0, rate=SLOW_RATE, rcvbuf=SMALL_BUFFER)) as reader:
        sidecar = sidecar_start(mesh_for(app, stream=(reader.port, {})))
        port = sidecar.upstream("stream")
        assert exchange(port, "POST", b"x" * 1024) == (200, b"1024")
        idle = settled_rss(sidecar.pid)
        figures = Figures("1 GiB upload", idle, idle + SLACK)
        problems: list[str] = []
        reader.stall = STALL
        warm = reader.reading
        with RssSampler(sidecar.pid) as rss:
            upload = Upload(port, GIB, sndbuf=SMALL_BUFFER)
            try:
                stopped = wait_stalled(lambda: upload.sent, "the upload", timeout=STALL - 3)
                assert reader.reading == warm, "the app's stall ended before the upload stopped"
                stall_peak = rss.peak
                wait_until(upload.done.is_set, STALL + GIB / SLOW_RATE + 20, "the upload's answer")
            finally:
                upload.close()
        figures.peak = rss.peak
        figures.after = rss_after(sidecar.pid, idle + SLACK)
        print(
            f"stalled after {stopped / MIB:.1f} MiB of 1024 (RSS peak in the stall "
            f"{stall_peak / MIB:.1f} MiB)"
        )
        sidecar.assert_alive()
        assert (upload.error, upload.status, upload.answer) == (None, 200, str(GIB).encode())
        if stopped >= KERNEL_SHARE:
            problems.append(f"the client was not stopped: {stopped / MIB:.0f} MiB taken")
        figures.check(problems)


@pytest.mark.parametrize(
    ("method", "policy", "per_request"),
    [
        ("POST", {}, PER_STREAM),
        ("PUT", {"retry": {"attempts": 2, "on": ["reset"]}}, PER_BUFFERED),
    ],
    ids=["streamed", "retry-buffered"],
)
def test_100_concurrent_10mib_uploads_to_a_slow_app(
    sidecar_start: Start,
    app: Backend,
    method: str,
    policy: dict[str, object],
    per_request: int,
) -> None:
    with contextlib.closing(SlowReader(stall=0.0, rate=UPLOAD_RATE, rcvbuf=SMALL_BUFFER)) as reader:
        sidecar = sidecar_start(mesh_for(app, uploads=(reader.port, policy)))
        port = sidecar.upstream("uploads")
        assert exchange(port, method, b"x" * 1024) == (200, b"1024")
        idle = settled_rss(sidecar.pid)
        figures = Figures(
            f"{UPLOADS} x {UPLOAD_SIZE // MIB} MiB {method}",
            idle,
            idle + SLACK + UPLOADS * per_request,
        )
        problems: list[str] = []
        reader.stall = 30.0  # at most: released once every upload has stopped
        with RssSampler(sidecar.pid) as rss:
            uploads: list[Upload] = []
            try:
                for _ in range(UPLOADS):
                    uploads.append(Upload(port, UPLOAD_SIZE, method=method, sndbuf=SMALL_BUFFER))
                wait_until(lambda: reader.accepted > UPLOADS, 20, "every upload at the app")
                stopped = wait_stalled(
                    lambda: sum(u.sent for u in uploads), "the uploads", timeout=20
                )
                stall_peak = rss.peak
                most = max(u.sent for u in uploads)
                taken = sum(u.sent == UPLOAD_SIZE for u in uploads)
                reader.release()
                wait_until(
                    lambda: all(u.done.is_set() for u in uploads),
                    UPLOAD_SIZE / UPLOAD_RATE + 30,
                    "every upload's answer",
                )
            finally:
                for upload in uploads:
                    upload.close()
        figures.peak = rss.peak
        figures.after = rss_after(sidecar.pid, idle + SLACK)
        print(
            f"stalled after {stopped / MIB:.0f} MiB of {UPLOADS * UPLOAD_SIZE // MIB} "
            f"(one at most {most / MIB:.1f} MiB; RSS peak in the stall {stall_peak / MIB:.1f} MiB)"
        )
        sidecar.assert_alive()
        answers = {(u.error, u.status, u.answer) for u in uploads}
        assert answers == {(None, 200, str(UPLOAD_SIZE).encode())}
        # The kernel's share of one connection may be up to the whole of an upload (see
        # KERNEL_SHARE), so a few may finish sending; most must have been stopped.
        if taken > UPLOADS // 10:
            problems.append(f"the uploads were not stopped: {taken} were taken whole")
        figures.check(problems)


# ---------------------------------------------------------------------------- response bodies


def test_a_client_that_never_reads_a_1gib_response(sidecar_start: Start, app: Backend) -> None:
    with contextlib.closing(Firehose(1024, sndbuf=SMALL_BUFFER)) as firehose:
        sidecar = sidecar_start(mesh_for(app, firehose=(firehose.port, {})))
        port = sidecar.upstream("firehose")
        assert exchange(port, "GET") == (200, bytes(1024))
        idle = settled_rss(sidecar.pid)
        figures = Figures("1 GiB response, never read", idle, idle + SLACK)
        problems: list[str] = []
        firehose.size = GIB
        with RssSampler(sidecar.pid) as rss:
            client = DeafClient(port, rcvbuf=SMALL_BUFFER)
            try:
                stopped = wait_stalled(lambda: firehose.sent, "the app's answer", timeout=20)
                # The client goes on not reading: RSS must not move for 2 s more.
                held_from = time.monotonic()
                wait_until(
                    lambda: sum(t >= held_from for t, _ in rss.samples) >= 20, 5, "2 s of samples"
                )
                held = [r for t, r in rss.samples if t >= held_from]
                still = firehose.sent
            finally:
                client.close()
            # The client is gone: the sidecar drops the upstream connection too.
            wait_until(lambda: firehose.finished >= 2, 5, "the app's connection to be closed")
        figures.peak = rss.peak
        figures.after = rss_after(sidecar.pid, idle + SLACK)
        print(
            f"the app stopped after {stopped / MIB:.1f} MiB of 1024; RSS while held "
            f"{min(held) / MIB:.1f}..{max(held) / MIB:.1f} MiB"
        )
        sidecar.assert_alive()
        if stopped >= KERNEL_SHARE:
            problems.append(f"the app was not stopped: {stopped / MIB:.0f} MiB taken")
        if still != stopped:
            problems.append(f"the app sent {still - stopped} bytes more while the client held")
        if max(held) - held[0] > MIB:
            problems.append(f"RSS grew by {(max(held) - held[0]) / MIB:.1f} MiB while held")
        figures.check(problems)
