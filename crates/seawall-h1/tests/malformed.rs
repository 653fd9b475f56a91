//! Malformed and hostile requests: every refusal and its status.
//!
//! A port of tests/proxy/test_http1_malformed.py. Each case is fed whole,
//! one byte at a time (997-byte pieces past 20 000 bytes), at 64 sets of
//! pseudo-random cut points, and behind a valid pipelined request, and must
//! be refused with the expected status and:
//!
//! * head cases: never produce a request at all;
//! * body cases: produce the request head (bodies stream), but never its end.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{bytewise, feedings, random_split, refuse, run, split_at, whole, Event};
use seawall_h1::Limits;

const H: &[u8] = b"Host: a\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn post(fields: &[&[u8]], body: &[u8]) -> Vec<u8> {
    post_version(fields, body, b"1.1")
}

fn post_version(fields: &[&[u8]], body: &[u8], version: &[u8]) -> Vec<u8> {
    let mut out = cat(&[b"POST / HTTP/", version, b"\r\n", H]);
    for f in fields {
        out.extend_from_slice(f);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn get_with(lines: &[&[u8]]) -> Vec<u8> {
    let mut out = b"GET / HTTP/1.1\r\n".to_vec();
    for l in lines {
        out.extend_from_slice(l);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn line(request_line: &[u8]) -> Vec<u8> {
    cat(&[request_line, b"\r\n", H, b"\r\n"])
}

const HOST: &[u8] = b"Host: a";

fn tls_client_hello() -> Vec<u8> {
    let mut out = vec![
        0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03,
    ];
    out.extend([0x5a; 32]);
    out.push(0x20);
    out.extend([0x11; 32]);
    out.extend([
        0x00, 0x08, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2f, 0x01, 0x00,
    ]);
    out
}

fn head_cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let x_lines: Vec<Vec<u8>> = (0..100).map(|i| format!("X-{i}: v").into_bytes()).collect();
    let mut too_many: Vec<&[u8]> = vec![HOST];
    too_many.extend(x_lines.iter().map(Vec::as_slice));
    let big = cat(&[b"X-Big: ", &vec![b'v'; 64 * 1024]]);
    vec![
        // ---- request smuggling: Content-Length and Transfer-Encoding
        (
            "cl-and-te",
            post(
                &[b"Content-Length: 5", b"Transfer-Encoding: chunked"],
                b"0\r\n\r\nX",
            ),
            400,
        ),
        (
            "te-and-cl",
            post(
                &[b"Transfer-Encoding: chunked", b"Content-Length: 5"],
                b"0\r\n\r\nX",
            ),
            400,
        ),
        (
            "duplicate-cl-equal",
            post(&[b"Content-Length: 3", b"Content-Length: 3"], b"abc"),
            400,
        ),
        (
            "duplicate-cl-different",
            post(&[b"Content-Length: 3", b"Content-Length: 4"], b"abcd"),
            400,
        ),
        ("cl-list", post(&[b"Content-Length: 3, 3"], b"abc"), 400),
        ("cl-plus-sign", post(&[b"Content-Length: +3"], b"abc"), 400),
        ("cl-negative", post(&[b"Content-Length: -1"], b""), 400),
        (
            "cl-inner-space",
            post(&[b"Content-Length: 1 2"], b"abc"),
            400,
        ),
        ("cl-hex", post(&[b"Content-Length: 0x10"], b""), 400),
        ("cl-underscore", post(&[b"Content-Length: 1_0"], b""), 400),
        ("cl-empty", post(&[b"Content-Length:"], b""), 400),
        (
            "cl-overflow",
            post(&[b"Content-Length: 99999999999999999999999999"], b""),
            400,
        ),
        (
            "cl-non-ascii-digit",
            post(&[b"Content-Length: \xd9\xa5"], b""),
            400,
        ),
        (
            "cl-space-before-colon",
            post(&[b"Content-Length : 3"], b"abc"),
            400,
        ),
        (
            "te-chunked-then-identity",
            post(&[b"Transfer-Encoding: chunked, identity"], b""),
            400,
        ),
        (
            "te-gzip-then-chunked",
            post(&[b"Transfer-Encoding: gzip, chunked"], b""),
            501,
        ),
        (
            "te-two-lines-gzip-chunked",
            post(
                &[b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"],
                b"",
            ),
            501,
        ),
        (
            "te-xchunked",
            post(&[b"Transfer-Encoding: xchunked"], b""),
            400,
        ),
        (
            "te-trailing-garbage",
            post(&[b"Transfer-Encoding: chunked foo"], b""),
            400,
        ),
        (
            "te-identity",
            post(&[b"Transfer-Encoding: identity"], b"abc"),
            400,
        ),
        (
            "te-chunked-twice",
            post(&[b"Transfer-Encoding: chunked, chunked"], b""),
            400,
        ),
        (
            "te-two-chunked-lines",
            post(
                &[b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                b"",
            ),
            400,
        ),
        (
            "te-obfuscated-second-line",
            post(
                &[b"Transfer-Encoding: chunked", b"Transfer-encoding: x"],
                b"",
            ),
            400,
        ),
        (
            "te-trailing-comma",
            post(&[b"Transfer-Encoding: chunked,"], b""),
            400,
        ),
        ("te-empty", post(&[b"Transfer-Encoding:"], b""), 400),
        (
            "te-vertical-tab",
            post(&[b"Transfer-Encoding: \x0bchunked"], b""),
            400,
        ),
        (
            "te-in-http10",
            post_version(&[b"Transfer-Encoding: chunked"], b"0\r\n\r\n", b"1.0"),
            400,
        ),
        // ---- line structure: obs-fold, bare CR/LF, NUL, whitespace
        (
            "obs-fold-space",
            get_with(&[HOST, b"X-A: b", b" folded"]),
            400,
        ),
        (
            "obs-fold-tab",
            get_with(&[HOST, b"X-A: b", b"\tfolded"]),
            400,
        ),
        (
            "obs-fold-of-te",
            post(&[b"X-A: b", b" Transfer-Encoding: chunked"], b""),
            400,
        ),
        (
            "bare-lf-request-line",
            cat(&[b"GET / HTTP/1.1\n", H, b"\r\n"]),
            400,
        ),
        (
            "bare-lf-header",
            b"GET / HTTP/1.1\r\nHost: a\nX: y\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bare-lf-everywhere",
            b"GET / HTTP/1.1\nHost: a\n\n".to_vec(),
            400,
        ),
        (
            "bare-cr-header",
            b"GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n".to_vec(),
            400,
        ),
        (
            "bare-cr-before-request-line",
            cat(&[b"\rGET / HTTP/1.1\r\n", H, b"\r\n"]),
            400,
        ),
        (
            "bare-lf-before-request-line",
            cat(&[b"\nGET / HTTP/1.1\r\n", H, b"\r\n"]),
            400,
        ),
        ("nul-in-value", get_with(&[b"Host: a\x00b"]), 400),
        ("nul-in-name", get_with(&[HOST, b"X\x00A: b"]), 400),
        ("nul-in-target", line(b"GET /a\x00b HTTP/1.1"), 400),
        ("space-before-colon", get_with(&[b"Host : a"]), 400),
        ("tab-before-colon", get_with(&[HOST, b"X-A\t: b"]), 400),
        ("empty-header-name", get_with(&[HOST, b": b"]), 400),
        ("header-without-colon", get_with(&[HOST, b"X-A b"]), 400),
        ("space-in-header-name", get_with(&[HOST, b"X A: b"]), 400),
        (
            "invalid-char-in-header-name",
            get_with(&[HOST, b"X(A): b"]),
            400,
        ),
        ("ctl-in-value", get_with(&[HOST, b"X-A: a\x01b"]), 400),
        ("del-in-value", get_with(&[HOST, b"X-A: a\x7fb"]), 400),
        (
            "whitespace-before-first-header",
            cat(&[b"GET / HTTP/1.1\r\n ", H, b"\r\n"]),
            400,
        ),
        // ---- request line
        ("invalid-char-in-method", line(b"G(T / HTTP/1.1"), 400),
        ("empty-method", line(b" / HTTP/1.1"), 400),
        ("unknown-method", line(b"FROB / HTTP/1.1"), 501),
        ("lowercase-method", line(b"get / HTTP/1.1"), 501),
        ("two-spaces", line(b"GET  / HTTP/1.1"), 400),
        ("tab-separator", line(b"GET\t/ HTTP/1.1"), 400),
        ("missing-version", line(b"GET /"), 400),
        ("space-after-version", line(b"GET / HTTP/1.1 "), 400),
        ("space-in-target", line(b"GET /a b HTTP/1.1"), 400),
        (
            "non-ascii-in-target",
            line(b"GET /caf\xc3\xa9 HTTP/1.1"),
            400,
        ),
        ("fragment-in-target", line(b"GET /a#b HTTP/1.1"), 400),
        ("invalid-percent-encoding", line(b"GET /a%zz HTTP/1.1"), 400),
        (
            "truncated-percent-encoding",
            line(b"GET /a%4 HTTP/1.1"),
            400,
        ),
        ("relative-target", line(b"GET index.html HTTP/1.1"), 400),
        ("version-http-1.2", line(b"GET / HTTP/1.2"), 505),
        ("version-http-2.0", line(b"GET / HTTP/2.0"), 505),
        ("version-http-0.9", line(b"GET / HTTP/0.9"), 505),
        (
            "http2-preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            505,
        ),
        ("version-garbage", line(b"GET / HTTP/1.1x"), 400),
        ("version-lowercase", line(b"GET / http/1.1"), 400),
        // ---- targets and Host
        (
            "missing-host",
            b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "missing-host-absolute-form",
            b"GET http://a/ HTTP/1.1\r\n\r\n".to_vec(),
            400,
        ),
        ("duplicate-host", get_with(&[b"Host: a", b"Host: a"]), 400),
        (
            "duplicate-host-http10",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
        ),
        ("host-with-space", get_with(&[b"Host: a b"]), 400),
        ("host-with-path", get_with(&[b"Host: a/b"]), 400),
        ("host-with-userinfo", get_with(&[b"Host: u@a"]), 400),
        ("host-port-out-of-range", get_with(&[b"Host: a:99999"]), 400),
        (
            "connect",
            b"CONNECT orders:443 HTTP/1.1\r\nHost: orders:443\r\n\r\n".to_vec(),
            405,
        ),
        (
            "authority-form-without-connect",
            line(b"GET orders:80 HTTP/1.1"),
            400,
        ),
        (
            "asterisk-form-without-options",
            line(b"GET * HTTP/1.1"),
            400,
        ),
        (
            "absolute-form-userinfo",
            line(b"GET http://user:pw@a/ HTTP/1.1"),
            400,
        ),
        (
            "absolute-form-unknown-scheme",
            line(b"GET ftp://a/ HTTP/1.1"),
            400,
        ),
        (
            "absolute-form-empty-host",
            line(b"GET http:///x HTTP/1.1"),
            400,
        ),
        (
            "absolute-form-bad-port",
            line(b"GET http://a:8x/ HTTP/1.1"),
            400,
        ),
        // ---- sizes
        (
            "request-line-too-long",
            line(&cat(&[b"GET /", &[b'a'; 9000], b" HTTP/1.1"])),
            414,
        ),
        ("too-many-headers", get_with(&too_many), 431),
        ("header-section-too-large", get_with(&[HOST, &big]), 431),
        (
            "content-length-over-limit",
            post(&[b"Content-Length: 10485761"], b""),
            413,
        ),
        // ---- not HTTP at all
        ("tls-client-hello", tls_client_hello(), 400),
        ("binary-garbage", (0..=255u8).collect(), 400),
        ("only-spaces", b"        ".to_vec(), 400),
    ]
}

const CHUNKED: &[u8] = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";

fn chunked(body: &[u8]) -> Vec<u8> {
    cat(&[CHUNKED, body])
}

fn body_cases() -> Vec<(&'static str, Vec<u8>, u16)> {
    let ext_budget: Vec<u8> = (0..20)
        .flat_map(|_| cat(&[b"1;", &[b'e'; 1000], b"\r\na\r\n"]))
        .chain(b"0\r\n\r\n".iter().copied())
        .collect();
    vec![
        ("chunk-size-not-hex", chunked(b"zz\r\nab\r\n0\r\n\r\n"), 400),
        (
            "chunk-size-overflow",
            chunked(&cat(&[b"1", &[b'0'; 16], b"\r\nab\r\n0\r\n\r\n"])),
            400,
        ),
        (
            "chunk-size-0x-prefix",
            chunked(b"0x2\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk-size-plus", chunked(b"+2\r\nab\r\n0\r\n\r\n"), 400),
        (
            "chunk-size-negative",
            chunked(b"-2\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-size-underscore",
            chunked(&cat(&[b"1_0\r\n", &[b'a'; 16], b"\r\n0\r\n\r\n"])),
            400,
        ),
        ("chunk-size-empty", chunked(b"\r\nab\r\n0\r\n\r\n"), 400),
        (
            "chunk-size-trailing-space",
            chunked(b"2 \r\nab\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-size-leading-space",
            chunked(b" 2\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        ("chunk-size-bare-lf", chunked(b"2\nab\r\n0\r\n\r\n"), 400),
        (
            "chunk-data-longer-than-size",
            chunked(b"2\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-data-bare-lf-after",
            chunked(b"2\r\nab\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-ext-without-name",
            chunked(b"2;\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-ext-ctl",
            chunked(b"2;a=\x01\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-ext-unterminated-quote",
            chunked(b"2;a=\"b\r\nab\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk-ext-too-long",
            chunked(&cat(&[b"1;", &[b'e'; 17_000], b"\r\na\r\n0\r\n\r\n"])),
            400,
        ),
        ("chunk-ext-budget", chunked(&ext_budget), 400),
        ("chunk-size-over-body-limit", chunked(b"a00001\r\n"), 413),
        (
            "trailer-obs-fold",
            chunked(b"0\r\nX-T: a\r\n b\r\n\r\n"),
            400,
        ),
        ("trailer-nul", chunked(b"0\r\nX-T: a\x00\r\n\r\n"), 400),
        ("trailer-without-colon", chunked(b"0\r\nX-T a\r\n\r\n"), 400),
        (
            "trailer-space-before-colon",
            chunked(b"0\r\nX-T : a\r\n\r\n"),
            400,
        ),
        ("trailer-bare-lf", chunked(b"0\r\nX-T: a\n\r\n"), 400),
        (
            "too-many-trailers",
            chunked(&cat(&[b"0\r\n", &b"X-T: a\r\n".repeat(101), b"\r\n"])),
            431,
        ),
        (
            "trailer-section-too-large",
            chunked(&cat(&[b"0\r\nX-T: ", &[b'a'; 65_536], b"\r\n\r\n"])),
            431,
        ),
    ]
}

#[test]
fn the_tables_are_large_and_distinct() {
    let (heads, bodies) = (head_cases(), body_cases());
    let mut names: Vec<&str> = heads.iter().chain(&bodies).map(|c| c.0).collect();
    let total = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total);
    assert_eq!(heads.len(), 90);
    assert_eq!(bodies.len(), 25);
}

#[test]
fn head_cases_are_refused_before_any_request() {
    for (name, raw, status) in head_cases() {
        for (n, chunks) in feedings(&raw, 64).iter().enumerate() {
            let (got, events) = refuse(chunks, Limits::default());
            assert_eq!((got, events.len()), (status, 0), "{name}, feeding {n}");
        }
    }
}

#[test]
fn head_cases_are_refused_after_a_valid_request() {
    // Pipelined behind a good request: that one completes, this one is refused.
    for (name, raw, status) in head_cases() {
        let data = cat(&[b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n", &raw]);
        for chunks in [whole(&data), random_split(&data, 7)] {
            let (got, events) = refuse(&chunks, Limits::default());
            assert_eq!(got, status, "{name}");
            assert!(
                matches!(&events[..], [Event::Request(h), Event::End(_)] if &h.path[..] == b"/ok"),
                "{name}: {events:?}"
            );
        }
    }
}

#[test]
fn body_cases_deliver_the_head_but_never_complete() {
    for (name, raw, status) in body_cases() {
        let mut all = feedings(&raw, 64);
        all.push(split_at(&raw, &[CHUNKED.len() + 1, raw.len() - 3]));
        for (n, chunks) in all.iter().enumerate() {
            let (got, events) = refuse(chunks, Limits::default());
            assert_eq!(got, status, "{name}, feeding {n}");
            assert!(matches!(events.first(), Some(Event::Request(_))), "{name}");
            assert!(!events.iter().any(|e| matches!(e, Event::End(_))), "{name}");
        }
    }
}

#[test]
fn chunked_running_total_over_the_limit() {
    let limits = Limits {
        max_body: Some(10),
        ..Limits::default()
    };
    let raw = chunked(b"6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n");
    let (got, events) = refuse(&whole(&raw), limits);
    assert_eq!(got, 413);
    // the first 6 bytes streamed; the 7th..11th never
    assert!(matches!(&events[..], [Event::Request(_), Event::Data(d)] if &d[..] == b"abcdef"));
    let exact = chunked(b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n");
    let (events, result) = run(&whole(&exact), limits);
    assert!(result.is_ok());
    assert!(matches!(events.last(), Some(Event::End(_))));
}

#[test]
fn content_length_limit_is_checked_before_any_body() {
    let limits = Limits {
        max_body: Some(10),
        ..Limits::default()
    };
    let (got, events) = refuse(&whole(&post(&[b"Content-Length: 11"], b"")), limits);
    assert_eq!((got, events.len()), (413, 0));
    let (events, result) = run(
        &whole(&post(&[b"Content-Length: 10"], b"0123456789")),
        limits,
    );
    assert!(result.is_ok());
    assert_eq!(events.len(), 3);
}

#[test]
fn limits_are_configurable() {
    let cases: Vec<(Limits, Vec<u8>, u16)> = vec![
        (
            Limits {
                max_request_line: 16,
                ..Limits::default()
            },
            line(b"GET /123456789012 HTTP/1.1"),
            414,
        ),
        (
            Limits {
                max_headers: 2,
                ..Limits::default()
            },
            get_with(&[HOST, b"A: 1", b"B: 2"]),
            431,
        ),
        (
            Limits {
                max_header_bytes: 64,
                ..Limits::default()
            },
            get_with(&[HOST, &cat(&[b"A: ", &[b'1'; 40]])]),
            431,
        ),
        (
            Limits {
                max_chunk_ext_bytes: 3,
                ..Limits::default()
            },
            chunked(b"1;abc\r\na\r\n0\r\n\r\n"),
            400,
        ),
    ];
    for (limits, raw, status) in cases {
        assert_eq!(refuse(&whole(&raw), limits).0, status);
        assert_eq!(refuse(&bytewise(&raw), limits).0, status);
    }
}

#[test]
fn limits_validation_names_the_field() {
    let bad = [
        (
            Limits {
                max_request_line: 0,
                ..Limits::default()
            },
            "Limits: max_request_line must be an int >= 16, got 0",
        ),
        (
            Limits {
                max_headers: 0,
                ..Limits::default()
            },
            "Limits: max_headers must be an int >= 1, got 0",
        ),
        (
            Limits {
                max_header_bytes: 1,
                ..Limits::default()
            },
            "Limits: max_header_bytes must be an int >= 32, got 1",
        ),
    ];
    for (limits, message) in bad {
        assert_eq!(limits.validate().unwrap_err().to_string(), message);
    }
    assert!(Limits::default().validate().is_ok());
}

#[test]
fn defaults_are_pythons() {
    assert_eq!(
        Limits::default(),
        Limits {
            max_request_line: 8192,
            max_headers: 100,
            max_header_bytes: 65536,
            max_body: Some(10 * 1024 * 1024),
            max_chunk_ext_bytes: 16384,
        }
    );
}

#[test]
fn at_the_limits_is_accepted() {
    let limits = Limits {
        max_request_line: 20,
        max_headers: 2,
        max_header_bytes: 60,
        ..Limits::default()
    };
    let raw = b"GET /234567 HTTP/1.1\r\nHost: a\r\nX: 1234567890123456789012\r\n\r\n";
    assert_eq!(raw.len(), 60);
    for chunks in feedings(raw, 16) {
        let (events, result) = run(&chunks, limits);
        assert!(result.is_ok());
        assert!(matches!(&events[..], [Event::Request(_), Event::End(_)]));
    }
}

#[test]
fn silly_limits_never_panic() {
    let silly = [
        Limits {
            max_request_line: 0,
            max_headers: 0,
            max_header_bytes: 0,
            max_body: Some(0),
            max_chunk_ext_bytes: 0,
        },
        Limits {
            max_request_line: usize::MAX,
            max_headers: usize::MAX,
            max_header_bytes: usize::MAX,
            max_body: None,
            max_chunk_ext_bytes: usize::MAX,
        },
    ];
    let inputs = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        chunked(b"5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n"),
        post(&[b"Content-Length: 3"], b"abc"),
    ];
    for limits in silly {
        for raw in &inputs {
            for chunks in feedings(raw, 4) {
                let _ = run(&chunks, limits);
            }
        }
    }
}
