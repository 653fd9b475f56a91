"""CardNet: a stand-in for the card network that payments charges cards on.

It is not a shop service and has no sidecar: it is a host outside the mesh,
an HTTPS API with a certificate of its own, which the mesh knows as the
external service ``cardnet`` (``external:`` in mesh.yaml). Payments calls
``POST http://cardnet/charges`` in plain HTTP through its sidecar, and the
sidecar originates the TLS, checks CardNet's certificate against
``external.cardnet.ca_file`` and the host's name, and applies
``policies.cardnet`` (timeout, retries, breaker).

:func:`write_certificates` makes a throwaway CA and a certificate it signs
for ``localhost`` (and 127.0.0.1), with the ``cryptography`` package; the CA's
key is never written, so nothing else can be signed by it. Then
``python -m examples.shop.cardnet --port 9443 --cert C --key K`` serves, on
loopback:

* ``POST /charges``: 200 ``{"id": "ch_1", "status": "authorized", ...}``;
* ``GET /health`` and ``/_control?mode=ok|hang|fail`` as a shop app has them
  (``fail``: 503 at once; ``hang``: no answer until the mode changes or the
  caller gives up);
* ``GET /_stats``: what it served so far, every request having come over TLS:
  requests by status, TLS version, SNI name and ``Host``, and the handshakes
  that failed (``/health``, ``/_control`` and ``/_stats`` are not counted).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import ssl
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from weakref import WeakKeyDictionary

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certificates", "serve", "write_certificates"]

MODES = ("ok", "hang", "fail")
HANG_SECONDS = 60.0
"""How long a hung request waits at most (it answers at once when the mode changes)."""
IDLE_SECONDS = 60.0
"""A connection with no request for this long is closed."""
MAX_BODY = 64 * 1024
CERT_DAYS = 1  # throwaway: a day is more than any demo run


# --------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class Certificates:
    ca: Path  # the CA to trust (PEM): the mesh's ``external.cardnet.ca_file``
    cert: Path  # CardNet's certificate (PEM)
    key: Path  # and its key (PEM, mode 0600)


def write_certificates(directory: Path, host: str = "localhost") -> Certificates:
    """A throwaway CA, and a server certificate it signs for ``host`` and 127.0.0.1."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)  # certificate validity is wall-clock time by nature
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CardNet demo CA (throwaway)")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(host)]
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out = Certificates(
        directory / "ca.pem", directory / "cardnet.pem", directory / "cardnet-key.pem"
    )
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(out.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return out


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


# --------------------------------------------------------------------------- the server


@dataclass
class _State:
    """The mode, and what was served; shared by the handler threads under one lock."""

    mode: str = "ok"
    changed: threading.Condition = field(default_factory=threading.Condition)
    charges: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    tls: Counter[str] = field(default_factory=Counter)
    sni: Counter[str] = field(default_factory=Counter)
    hosts: Counter[str] = field(default_factory=Counter)
    handshake_failures: int = 0
    names: WeakKeyDictionary[Any, str] = field(default_factory=WeakKeyDictionary)

    def on_sni(self, sock: Any, name: str | None, context: ssl.SSLContext) -> None:
        with self.changed:
            self.names[sock] = name or "-"  # the name the client asked for (SNI)

    def set_mode(self, mode: str) -> None:
        with self.changed:
            self.mode = mode
            self.changed.notify_all()  # a hung request answers now

    def wait_while_hung(self) -> None:
        with self.changed:
            self.changed.wait_for(lambda: self.mode != "hang", timeout=HANG_SECONDS)

    def stats(self) -> dict[str, Any]:
        with self.changed:
            return {
                "requests": sum(self.statuses.values()),
                "charges": self.charges,
                "statuses": dict(self.statuses),
                "tls": dict(self.tls),
                "sni": dict(self.sni),
                "hosts": dict(self.hosts),
                "handshake_failures": self.handshake_failures,
                "mode": self.mode,
            }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake runs here, in the connection's own thread, not in accept().
        try:
            request.settimeout(IDLE_SECONDS)
            request.do_handshake()
        except (ssl.SSLError, OSError):
            with self.state.changed:
                self.state.handshake_failures += 1
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-request: nothing to report


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = IDLE_SECONDS

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > MAX_BODY:
                    raise ValueError("body too large")
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length)

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        state = self.server.state
        try:
            body = self._body()
        except ValueError as exc:
            self.close_connection = True
            self._reply(400, {"error": str(exc)})
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/health":
            self._reply(200, {"service": "cardnet", "ok": True, "mode": state.mode})
            return
        if url.path == "/_control":
            mode = query.get("mode")
            if mode is not None:
                if mode not in MODES:
                    self._reply(400, {"error": f"mode must be one of {', '.join(MODES)}"})
                    return
                state.set_mode(mode)
            self._reply(200, {"service": "cardnet", "mode": state.mode})
            return
        if url.path == "/_stats":
            self._reply(200, state.stats())
            return
        status, answer = self._api(url.path, body)
        with state.changed:
            state.statuses[str(status)] += 1
            state.tls[str(self.request.version())] += 1
            state.sni[state.names.get(self.request, "-")] += 1
            state.hosts[self.headers.get("host", "-")] += 1
        self._reply(status, answer)

    def _api(self, path: str, body: bytes) -> tuple[int, Any]:
        state = self.server.state
        if state.mode == "hang":
            state.wait_while_hung()  # the caller's timeout ends it first, as a rule
        if state.mode != "ok":
            return 503, {"error": "cardnet is unavailable (demo)"}
        if (self.command, path) != ("POST", "/charges"):
            return 404, {"error": f"no route {self.command} {path}"}
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": "the body is not JSON"}
        with state.changed:
            state.charges += 1
            number = state.charges
        return 200, {
            "id": f"ch_{number}",
            "status": "authorized",
            "amount": doc.get("amount"),
            "reference": doc.get("reference"),
            "idempotency_key": self.headers.get("idempotency-key"),
        }


def serve(port: int, cert: Path, key: Path, host: str = "127.0.0.1") -> None:
    """Serve CardNet over TLS on ``host:port`` until SIGTERM or SIGINT."""
    state = _State()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.sni_callback = state.on_sni
    server = _Server((host, port), _Handler)
    server.state = state
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    sys.stderr.write(f"cardnet [{os.getpid()}]: serving HTTPS on {host}:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    finally:
        state.set_mode("ok")  # hung requests answer, and their threads end
        server.server_close()


def certificates_in(directory: Path, host: str = "localhost") -> Certificates:
    """The certificates in ``directory``, made there (:func:`write_certificates`) when
    missing or within an hour of expiry: a stand-in started again (``seawall up``
    restarts a process that exits) keeps the CA its callers already trust."""
    out = Certificates(
        directory / "ca.pem", directory / "cardnet.pem", directory / "cardnet-key.pem"
    )
    try:
        cert = x509.load_pem_x509_certificate(out.cert.read_bytes())
        fresh = cert.not_valid_after_utc - datetime.now(UTC) > timedelta(hours=1)
        if fresh and out.ca.exists() and out.key.exists():
            return out
    except (OSError, ValueError):
        pass
    return write_certificates(directory, host)


def main() -> None:
    parser = argparse.ArgumentParser(prog="examples.shop.cardnet", description=__doc__)
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--cert", type=Path, help="certificate (PEM)")
    parser.add_argument("--key", type=Path, help="its key (PEM)")
    parser.add_argument(
        "--certs-dir",
        type=Path,
        help="instead of --cert and --key: the certificates there, made when missing"
        " (the CA in ca.pem: the mesh's external.cardnet.ca_file)",
    )
    args = parser.parse_args()
    if args.certs_dir is not None:
        made = certificates_in(args.certs_dir)
        args.cert, args.key = made.cert, made.key
    elif args.cert is None or args.key is None:
        parser.error("give --cert and --key, or --certs-dir")
    serve(args.port, args.cert, args.key, args.host)


if __name__ == "__main__":
    main()
