"""Mutual TLS on the sidecar's wire: the inbound listener, and the check of an upstream's identity.

Inbound, a sidecar with an identity serves its port with a :class:`MeshListener`
instead of ``loop.create_server``. It accepts connections itself and peeks at
each one's first byte (``MSG_PEEK``, nothing is consumed): ``0x16`` starts a
TLS handshake record, anything else is plaintext. Then, by the service's
``mtls`` mode (read from the current runtime, so a reload applies to new
connections):

* TLS → ``loop.connect_accepted_socket(..., ssl=identity.server_context)``:
  TLS 1.3, a client certificate from the mesh CA required. A failed handshake
  (no certificate, another CA, an expired certificate) is refused. After it,
  the certificate's SPIFFE ID must be ``spiffe://<trust domain>/service/<a
  service of the mesh>``, or the connection is closed before a byte of it is
  read; otherwise the connection remembers the caller
  (:attr:`DownstreamConnection.peer_service`) for authorization.
* plaintext → served as before with ``permissive``; closed at once with ``strict``.

Every refusal is counted in ``seawall_inbound_tls_refused_total{reason}``
(``plaintext``, ``handshake``, ``identity``). This works on uvloop and on
asyncio alike, since both take an accepted socket.

Outbound, :class:`UpstreamTLS` is what a :class:`~seawall.proxy.cluster.Cluster`
needs to open mTLS connections to other sidecars: the client context, and the
check that the server presented the destination's own SPIFFE ID. A mismatch
is a connect failure, retried and counted like one.

A sidecar without an identity uses none of this (and never imports
:mod:`cryptography`, which :mod:`seawall.proxy.identity` needs): its listeners
and connections stay exactly as they were. The SPIFFE ID helpers live here,
not in the identity module, for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import re
import socket
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..config import MeshConfig
from .listener import DownstreamConnection
from .metrics import SidecarMetrics
from .runtime import Runtime

if TYPE_CHECKING:
    from .identity import Identity

__all__ = [
    "REFUSALS",
    "MTLSError",
    "MeshListener",
    "UpstreamTLS",
    "check_identity",
    "service_of",
    "spiffe_id",
    "spiffe_id_of",
]

REFUSALS = ("plaintext", "handshake", "identity")
"""The reasons an inbound connection is refused (the ``reason`` label)."""

_TLS_HANDSHAKE = 0x16  # the content type of a TLS handshake record: a ClientHello follows
_ACCEPT_BATCH = 64  # connections accepted per wake-up, so one busy listener cannot starve the loop
_ACCEPT_PAUSE = 1.0  # seconds without accepting after running out of file descriptors (as asyncio)


# --------------------------------------------------------------------------- SPIFFE IDs

_SERVICE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a service name: a DNS label


def spiffe_id(trust_domain: str, service: str) -> str:
    """The SPIFFE ID of ``service``: ``spiffe://<trust_domain>/service/<service>``."""
    return f"spiffe://{trust_domain}/service/{service}"


def spiffe_id_of(peercert: Mapping[str, Any] | None) -> str | None:
    """The SPIFFE ID in a certificate as :meth:`ssl.SSLObject.getpeercert` returns it.

    ``None`` unless the certificate has exactly one URI subject alternative
    name and it is a ``spiffe://`` URI (an X509-SVID has exactly one).

    >>> spiffe_id_of({"subjectAltName": (("URI", "spiffe://shop.local/service/orders"),)})
    'spiffe://shop.local/service/orders'
    >>> spiffe_id_of({"subjectAltName": (("DNS", "orders"),)}) is None
    True
    """
    if not peercert:
        return None
    uris = [value for kind, value in peercert.get("subjectAltName", ()) if kind == "URI"]
    if len(uris) != 1 or not isinstance(uris[0], str) or not uris[0].startswith("spiffe://"):
        return None
    return uris[0]


def service_of(spiffe: str | None, trust_domain: str) -> str | None:
    """The service named by ``spiffe://<trust_domain>/service/<name>``, else ``None``.

    >>> service_of("spiffe://shop.local/service/orders", "shop.local")
    'orders'
    >>> service_of("spiffe://other.local/service/orders", "shop.local") is None
    True
    """
    if spiffe is None:
        return None
    prefix = f"spiffe://{trust_domain}/service/"
    if not spiffe.startswith(prefix):
        return None
    name = spiffe[len(prefix):]
    return name if _SERVICE.fullmatch(name) is not None else None


class MTLSError(ValueError):
    """The sidecar cannot serve its service's ``mtls`` mode with the identity it has."""


def check_identity(config: MeshConfig, service: str, identity: Identity | None) -> None:
    """Refuse to start a sidecar that cannot honour the config's mTLS settings.

    ``mtls: strict`` needs an identity; an identity needs a certificate for
    ``service`` in the mesh's trust domain. Raises :class:`MTLSError`.
    """
    mode = config.services[service].mtls
    if identity is None:
        if mode == "strict":
            raise MTLSError(
                f"service {service!r} has mtls: strict, but this sidecar has no identity "
                "(no certificate to serve TLS with): give it one, or use mtls: permissive"
            )
        return
    if not identity.installed:
        raise MTLSError("the sidecar's identity has no certificate installed yet")
    if identity.trust_domain != config.trust_domain:
        raise MTLSError(
            f"the identity is in trust domain {identity.trust_domain!r}, the mesh's is "
            f"{config.trust_domain!r}"
        )
    if identity.service != service:
        raise MTLSError(f"the identity is for service {identity.service!r}, not {service!r}")


# --------------------------------------------------------------------------- outbound


class UpstreamTLS:
    """The client side of mTLS for a cluster: context, peer check, failure counts."""

    __slots__ = ("_identity", "_metrics")

    def __init__(self, identity: Identity, metrics: SidecarMetrics) -> None:
        self._identity = identity
        self._metrics = metrics

    @property
    def context(self) -> ssl.SSLContext:
        """The identity's client context (read per connection: a CA change may replace it)."""
        return self._identity.client_context

    def check(self, transport: asyncio.BaseTransport, destination: str) -> str | None:
        """``None`` if the server is ``destination``'s sidecar, else what is wrong (counted)."""
        expected = spiffe_id(self._identity.trust_domain, destination)
        found = spiffe_id_of(transport.get_extra_info("peercert"))
        if found == expected:
            return None
        self.failed(destination, "identity")
        return f"the server is {found or 'not a SPIFFE identity'}, expected {expected}"

    def failed(self, destination: str, reason: str) -> None:
        """Count a failed connection to ``destination`` (``handshake`` or ``identity``)."""
        self._metrics.upstream_tls_failures.labels(destination, reason).inc()


# --------------------------------------------------------------------------- inbound


class MeshListener(asyncio.AbstractServer):
    """The inbound listener of a sidecar with an identity (see the module docstring)."""

    def __init__(
        self,
        sockets: list[socket.socket],
        factory: Callable[[], DownstreamConnection],
        *,
        identity: Identity,
        runtime: Callable[[], Runtime],
        metrics: SidecarMetrics,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sockets = sockets
        self._factory = factory
        self._identity = identity
        self._runtime = runtime
        self._refused = {reason: metrics.tls_refused.labels(reason) for reason in REFUSALS}
        self._mtls = metrics.inbound_connections.labels("mtls")
        self._plaintext = metrics.inbound_connections.labels("plaintext")
        self._sniffing: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # connections being handed to protocols
        self._serving = False
        self._closed = asyncio.Event()

    @classmethod
    async def open(
        cls,
        factory: Callable[[], DownstreamConnection],
        host: str,
        port: int,
        *,
        identity: Identity,
        runtime: Callable[[], Runtime],
        metrics: SidecarMetrics,
        reuse_port: bool = False,
        backlog: int = 1024,
    ) -> MeshListener:
        """Bind ``host:port`` (every address it resolves to) and start accepting."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        sockets: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except OSError as exc:
            for sock in sockets:
                sock.close()
            raise OSError(exc.errno, f"error while attempting to bind on {host}:{port}: "
                          f"{exc.strerror}") from None
        listener = cls(sockets, factory, identity=identity, runtime=runtime, metrics=metrics)
        listener._start()
        return listener

    # -- asyncio.AbstractServer -------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._sockets)

    def close(self) -> None:
        """Stop accepting; close the connections not yet handed to a protocol."""
        if not self._sockets:
            return
        self._serving = False
        for sock in self._sockets:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets = []
        for fd, (sock, timer) in list(self._sniffing.items()):
            timer.cancel()
            with contextlib.suppress(Exception):
                self._loop.remove_reader(fd)
            sock.close()
        self._sniffing.clear()
        for task in list(self._tasks):
            task.cancel()
        self._closed.set()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the listener accepts on."""
        return self._loop

    def is_serving(self) -> bool:
        """Whether it is accepting connections."""
        return self._serving

    async def start_serving(self) -> None:
        """Accepting starts when the listener is opened: nothing to do."""
        return None

    async def serve_forever(self) -> None:
        """Wait until the listener is closed."""
        await self._closed.wait()

    async def wait_closed(self) -> None:
        """Wait until the listener is closed."""
        await self._closed.wait()

    # -- accepting --------------------------------------------------------

    def _start(self) -> None:
        self._serving = True
        for sock in self._sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _ = listening.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a while (as asyncio does).
                    _log(f"accept failed ({exc}): pausing the inbound listener for a second")
                    self._loop.remove_reader(listening.fileno())
                    self._loop.call_later(_ACCEPT_PAUSE, self._resume, listening)
                else:
                    _log(f"accept failed: {exc}")
                return
            sock.setblocking(False)
            self._sniff(sock)

    def _resume(self, listening: socket.socket) -> None:
        if self._serving and listening.fileno() != -1:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def _sniff(self, sock: socket.socket) -> None:
        """Decide TLS or plaintext from the first byte, waiting for it if needed."""
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            fd = sock.fileno()
            timeout = self._runtime().config.limits.header_timeout
            timer = self._loop.call_later(timeout, self._give_up, fd)
            self._sniffing[fd] = (sock, timer)
            self._loop.add_reader(fd, self._readable, fd)
            return
        except OSError:
            sock.close()
            return
        self._dispatch(sock, first)

    def _readable(self, fd: int) -> None:
        entry = self._sniffing.pop(fd, None)
        self._loop.remove_reader(fd)
        if entry is None:
            return
        sock, timer = entry
        timer.cancel()
        try:
            first = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):  # a spurious wake-up: wait again
            self._sniff(sock)
            return
        except OSError:
            sock.close()
            return
        self._dispatch(sock, first)

    def _give_up(self, fd: int) -> None:
        """Nothing arrived within the header timeout (a port scan, a stuck client)."""
        entry = self._sniffing.pop(fd, None)
        if entry is not None:
            self._loop.remove_reader(fd)
            entry[0].close()

    def _dispatch(self, sock: socket.socket, first: bytes) -> None:
        if not first:  # closed before sending anything
            sock.close()
            return
        if first[0] == _TLS_HANDSHAKE:
            self._spawn(self._serve_tls(sock))
        elif self._runtime().mtls == "strict":
            self._refused["plaintext"].inc()
            sock.close()
        else:
            self._plaintext.inc()
            self._spawn(self._serve_plain(sock))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve_plain(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # the client left already: the loop closed it
            await self._loop.connect_accepted_socket(self._factory, sock)

    async def _serve_tls(self, sock: socket.socket) -> None:
        made: list[DownstreamConnection] = []

        def factory() -> DownstreamConnection:
            conn = self._factory()
            conn.accept_peer = self._accept_peer
            made.append(conn)
            return conn

        timeout = self._runtime().config.limits.header_timeout
        try:
            await self._loop.connect_accepted_socket(
                factory, sock, ssl=self._identity.server_context, ssl_handshake_timeout=timeout
            )
        except asyncio.CancelledError:
            self._forget(made)
            raise
        except Exception:  # whatever broke the handshake, the client is refused
            # No client certificate, another CA, an expired certificate, a timeout,
            # or the client gave up. The loop owns the socket now and closes it.
            self._refused["handshake"].inc()
            self._forget(made)

    @staticmethod
    def _forget(made: list[DownstreamConnection]) -> None:
        # A handshake that failed never calls connection_made nor connection_lost:
        # tell the protocol, so the sidecar stops tracking it.
        for conn in made:
            if conn.transport is None and not conn.closed:
                conn.connection_lost(None)

    def _accept_peer(self, conn: DownstreamConnection) -> bool:
        """After the handshake: is the peer a service of the mesh? (called in connection_made)."""
        transport = conn.transport
        assert transport is not None
        found = spiffe_id_of(transport.get_extra_info("peercert"))
        service = service_of(found, self._identity.trust_domain)
        if service is None or service not in self._runtime().config.services:
            self._refused["identity"].inc()
            return False
        assert found is not None
        conn.peer_service = service
        conn.peer_id = found.encode("ascii", "replace")
        self._mtls.inc()
        return True


def _log(message: str) -> None:
    sys.stderr.write(f"seawall sidecar: {message}\n")
    sys.stderr.flush()
