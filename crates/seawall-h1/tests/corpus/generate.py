"""Generate the conformance corpus: what the Python codec (the contract) does
with each input, for tests/conformance.rs to check the Rust codec against.

Run from the repository root, in the project's venv:

    .venv/bin/python crates/seawall-h1/tests/corpus/generate.py

It writes requests.txt next to this file: one case per line,

    <limits>|<input>|<whole>|<bytewise>|<split>

<whole> is what Python does with the input fed at once, <bytewise> with the
input fed one byte at a time, <split> with the input cut where the n-th
line's SplitMix64 cuts fall (random_split below; "=" when the same as
whole): the status Python gives a request with several faults can depend on
how its bytes arrive. Each is a list of events, "<event> ; <event> ; ...".

<limits> is "-" (the defaults) or "request_line,headers,header_bytes,body,chunk_ext".
Bytes are escaped: printable ASCII other than % | ; , = and space as is,
everything else as %XX, and the empty string as a lone %. The events are
what the Python RequestParser reports, resumed after every request:

    R method target path authority absolute version framing keep_alive expect upgrade headers
    D body                      (consecutive pieces joined)
    E trailers
    X status                    (RemoteProtocolError: status_hint)
    M                           (the input ended in the middle of a request)

authority and upgrade are "-" when absent; framing is E, L<n> or C; headers
and trailers are name=value pairs sorted by name (arrival order kept within a
name), joined by commas.

The inputs (up to 4 KiB each): every case of tests/proxy/test_http1_malformed.py and the valid
streams of tests/proxy/test_http1.py, request-line and field variants, and
seeded random mutations of valid requests (deterministic: the same file
every run).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "proxy"))

import test_http1  # noqa: E402
import test_http1_malformed  # noqa: E402

from seawall.proxy.http1 import Limits, RemoteProtocolError, RequestParser  # noqa: E402

KEEP = frozenset(range(0x21, 0x7F)) - frozenset(b"%|;,= ")


def esc(data: bytes) -> str:
    if not data:
        return "%"
    return "".join(chr(b) if b in KEEP else "%%%02X" % b for b in data)


def fields(pairs: list[tuple[bytes, bytes]]) -> str:
    ordered = sorted(pairs, key=lambda p: p[0])  # stable: arrival order within a name
    return ",".join(esc(n) + "=" + esc(v) for n, v in ordered) or "%"


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.parser: RequestParser | None = None
        self.body = b""

    def on_request(self, head) -> None:  # type: ignore[no-untyped-def]
        if head.scheme is not None or head.get(b"host") is not None:
            authority = esc(head.authority)
        else:
            authority = "-"
        if head.chunked:
            framing = "C"
        elif head.content_length:
            framing = "L%d" % head.content_length
        else:
            framing = "E"
        self.events.append(
            " ".join(
                [
                    "R",
                    esc(head.method),
                    esc(head.target),
                    esc(head.path),
                    authority,
                    "1" if head.scheme is not None else "0",
                    "11" if head.version == b"1.1" else "10",
                    framing,
                    "1" if head.keep_alive else "0",
                    "1" if head.expect_continue else "0",
                    "-" if head.upgrade is None else esc(head.upgrade),
                    fields(head.headers),
                ]
            )
        )
        self.body = b""

    def on_body(self, data: bytes) -> None:
        if self.events[-1].startswith("D "):
            self.body += data
            self.events[-1] = "D " + esc(self.body)
        else:
            self.body = data
            self.events.append("D " + esc(data))

    def on_message_complete(self) -> None:
        assert self.parser is not None
        self.events.append("E " + fields(list(self.parser.trailers)))


def verdict(chunks: list[bytes], limits: Limits) -> str:
    recorder = Recorder()
    parser = RequestParser(recorder, limits)
    recorder.parser = parser
    try:
        for chunk in chunks:
            parser.feed(chunk)
            while parser.paused:
                parser.resume()
    except RemoteProtocolError as exc:
        recorder.events.append("X %d" % exc.status_hint)
    else:
        idle = parser.closed or (parser._state == 0 and not parser._partial)
        if not idle:
            recorder.events.append("M")
    return " ; ".join(recorder.events)


DEFAULT = Limits()
SMALL = [
    Limits(max_request_line=16),
    Limits(max_headers=2),
    Limits(max_header_bytes=64),
    Limits(max_chunk_ext_bytes=3),
    Limits(max_body_size=10),
    Limits(max_request_line=20, max_headers=2, max_header_bytes=60),
    Limits(max_request_line=40, max_headers=4, max_header_bytes=120, max_body_size=8,
           max_chunk_ext_bytes=6),
]


def limits_key(limits: Limits) -> str:
    if limits == DEFAULT:
        return "-"
    body = "-" if limits.max_body_size is None else str(limits.max_body_size)
    return "%d,%d,%d,%s,%d" % (
        limits.max_request_line,
        limits.max_headers,
        limits.max_header_bytes,
        body,
        limits.max_chunk_ext_bytes,
    )


H = b"Host: o\r\n"
SEEDS = [
    b"GET /a?b=c HTTP/1.1\r\nHost: orders\r\nAccept: */*\r\n\r\n",
    b"POST /o HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /u HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b'PUT /f HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n'
    b'4;a="q\\"x" ; b\r\nabcd\r\n0\r\n\r\n',
    b"GET http://Orders.Shop:8002/x/../y?q=%61 HTTP/1.1\r\nHost: orders\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: o\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    b"GET /%7euser/./a/%2f HTTP/1.1\r\nHost: O:080\r\nX-A: 1\r\nx-a: 2 \r\n\r\n",
    b"DELETE /x HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    b"\r\n\r\nPATCH /p HTTP/1.1\r\nHost: o:\r\nContent-Length: 0\r\n\r\nGET /n HTTP/1.1\r\nHost: o\r\n\r\n",
]
TOKENS = [
    b" ", b"\t", b"\r", b"\n", b"\r\n", b",", b";", b":", b"0", b"a", b"A", b"\x00", b"\x7f",
    b"\x80", b"\xff", b"/", b"?", b"#", b"%", b"%2", b"%zz", b"/..", b"/.", b"@", b"[", b"]",
    b"=", b'"', b"\\", b"+", b"-", b"x", b"\x0b", b"\x0c", b"HTTP/1.0", b"HTTP/2.0", b"ffffffff",
    b"10000000000000000", b"http://", b"\r\n\r\n", b"\r\n ",
]
LINES = [
    b"Content-Length: 3", b"Content-Length: +3", b"Content-Length: 0", b"Content-Length: 3, 3",
    b"Content-Length: 12345678901234567890", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: identity", b"Transfer-Encoding: CHUNKED", b"Transfer-Encoding:",
    b"Transfer-Encoding: chunked ,", b"Host: o", b"Host: O:80", b"Host: o:99999", b"Host: o/x",
    b"Host:", b"Host: [::1]", b"Host: [zz]", b"Connection: close", b"Connection: upgrade",
    b"Connection: keep-alive", b"Connection: Keep-Alive, Upgrade", b"Upgrade: h2c",
    b"Upgrade: websocket", b"Expect: 100-continue", b"Expect: 100-Continue", b"Expect: nope",
    b"X-Empty:", b"X-Latin: caf\xe9", b"X-Sp:   v  ", b"Proxy-Connection: x", b"TE: trailers",
]
METHODS = [
    b"GET", b"PUT", b"FROB", b"get", b"Get", b"PRI", b"CONNECT", b"OPTIONS", b"M-SEARCH",
    b"QUERY", b"SOURCE", b"PURGE", b"DESCRIBE", b"SETUP", b"PLAY", b"PLAYX", b"GET_PARAMETER",
    b"FLUSH", b"REDIRECT", b"G(T", b"GETX", b"PROPFIND", b"MKCALENDAR", b"UNLINK", b"SEARCH",
    b"REPORT", b"LINK", b"NOTIFY",
]
TARGETS = [
    b"/", b"*", b"/a/./b/../c", b"/%41%2f%2e%2E/x", b"/a%", b"/a%%41", b"/%2%41", b"http://a",
    b"HTTPS://A:443", b"http://a?x", b"http://a:/p", b"http://a:65536/", b"http://[::1]/",
    b"http://u@a/", b"ftp://a/", b"http:///x", b"a:80", b"index.html", b"/a#b", b"/a?b#c",
    b"/..", b"/.", b"/a/..", b"/a/.", b"/%7E%7e", b"/a?%zz", b"http://a/%zz", b"//x",
    b"/a//b/", b"/a/.hidden/..b",
]


def cases() -> list[tuple[Limits, bytes]]:
    out: list[tuple[Limits, bytes]] = []
    for _, raw, _ in test_http1_malformed.HEAD_CASES + test_http1_malformed.BODY_CASES:
        out.append((DEFAULT, raw))
    for data in test_http1.VALID_STREAMS.values():
        out.append((DEFAULT, data))
    for seed in test_http1_malformed.SEEDS:
        out.append((DEFAULT, seed))
    for method in METHODS:
        for target in (b"/", b"*"):
            out.append((DEFAULT, method + b" " + target + b" HTTP/1.1\r\n" + H + b"\r\n"))
    for target in TARGETS:
        for version in (b"1.1", b"1.0"):
            out.append((DEFAULT, b"GET " + target + b" HTTP/" + version + b"\r\n" + H + b"\r\n"))
            out.append((DEFAULT, b"OPTIONS " + target + b" HTTP/" + version + b"\r\n\r\n"))
    for first in LINES:
        for second in LINES:
            out.append((DEFAULT, b"POST / HTTP/1.1\r\n" + H + first + b"\r\n" + second + b"\r\n\r\n"
                        + b"abc0\r\n\r\n"))
        out.append((DEFAULT, b"POST / HTTP/1.0\r\n" + first + b"\r\n\r\nabc"))
    for b in range(256):
        out.append((DEFAULT, b"GET /a" + bytes([b]) + b"b HTTP/1.1\r\n" + H + b"\r\n"))
        out.append((DEFAULT, b"GET / HTTP/1.1\r\n" + H + b"X-A: a" + bytes([b]) + b"b\r\n\r\n"))
        out.append((DEFAULT, b"GET / HTTP/1.1\r\n" + H + b"X" + bytes([b]) + b"A: v\r\n\r\n"))
    chunked = b"POST / HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n"
    for line in [b"1", b"01", b"0x1", b"1 ", b" 1", b"1;", b"1;a", b"1 ; a = b", b"1;a=\"\"",
                 b"1;a=\"\\\"\"", b"1;a=\"\x7f\"", b"1;a=b;c", b"1;a=", b"1;=b", b"1\t;a",
                 b"1;a\t=\tb", b"1;a=b c", b"1;a=\"b", b"f" * 16, b"1" + b"0" * 16, b"0" * 17 + b"1",
                 b"1;a=\"\\\x01\""]:
        out.append((DEFAULT, chunked + line + b"\r\nx\r\n0\r\n\r\n"))
    for trailer in [b"", b"X: 1\r\n", b"X:1\r\nY: 2 \r\n", b"X : 1\r\n", b" X: 1\r\n", b"X: 1\r\n y\r\n",
                    b"X: \x01\r\n", b"X: caf\xe9\r\n", b":\r\n", b"X\r\n", b"X: 1\n", b"X: a\rb\r\n",
                    b"Content-Length: 5\r\n", b"X:\r\n"]:
        out.append((DEFAULT, chunked + b"0\r\n" + trailer + b"\r\n" + b"GET / HTTP/1.1\r\n" + H + b"\r\n"))
    for limits in SMALL:
        for _, raw, _ in test_http1_malformed.HEAD_CASES[:40] + test_http1_malformed.BODY_CASES[:12]:
            if len(raw) < 2000:
                out.append((limits, raw))
        for seed in SEEDS:
            out.append((limits, seed))
    rng = random.Random(20260514)
    for _ in range(6000):
        seed = rng.choice(SEEDS)
        data = bytearray(seed)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            at = rng.randrange(len(data) + 1)
            kind = rng.randrange(6)
            if kind == 0:
                data[at:at] = rng.choice(TOKENS)
            elif kind == 1:
                del data[at : at + rng.randint(1, 3)]
            elif kind == 2 and at < len(data):
                data[at] = rng.randrange(256)
            elif kind == 3:
                lf = data.find(b"\r\n", at)
                if lf >= 0:
                    data[lf + 2 : lf + 2] = rng.choice(LINES) + b"\r\n"
            elif kind == 4:
                end = min(len(data), at + rng.randint(1, 8))
                data[at:end] = data[at:end].swapcase()
            else:
                lf = data.find(b"\r\n", at)
                nxt = data.find(b"\r\n", lf + 2) if lf >= 0 else -1
                if nxt >= 0:
                    data[nxt + 2 : nxt + 2] = data[lf + 2 : nxt + 2]  # duplicate a line
        limits = DEFAULT if rng.random() < 0.85 else rng.choice(SMALL)
        out.append((limits, bytes(data)))
    seen: set[tuple[str, bytes]] = set()
    unique = []
    for limits, data in out:
        if len(data) > 4096:  # the huge table cases are ported as explicit tests
            continue
        key = (limits_key(limits), data)
        if key not in seen:
            seen.add(key)
            unique.append((limits, data))
    return unique


MASK = (1 << 64) - 1


class SplitMix64:
    """The generator tests/common/mod.rs uses (Rng), bit for bit."""

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        return self.next() % n


def random_split(data: bytes, seed: int) -> list[bytes]:
    """common::random_split: up to 8 cuts, the same for the same seed."""
    rng = SplitMix64(seed)
    cuts = [rng.below(len(data) + 1) for _ in range(rng.below(9))]
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])]


def main() -> None:
    lines = []
    for n, (limits, data) in enumerate(cases()):
        whole = verdict([data], limits)
        bytewise = verdict([data[i : i + 1] for i in range(len(data))], limits)
        split = verdict(random_split(data, n), limits)
        lines.append(
            "%s|%s|%s|%s|%s"
            % (
                limits_key(limits),
                esc(data),
                whole,
                "=" if bytewise == whole else bytewise,
                "=" if split == whole else split,
            )
        )
    target = Path(__file__).with_name("requests.txt")
    target.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} cases -> {target}")


if __name__ == "__main__":
    main()
