//! One test per past framing vulnerability in Rust HTTP/1.1 servers: the
//! reasons the sidecar decides framing itself instead of trusting hyper's
//! server. Each is refused before anything reaches the application, and a
//! smuggled second request never appears.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{feedings, refuse, run, whole, Event};
use seawall_h1::{Framing, Limits};

fn post(fields: &[&str], body: &str) -> Vec<u8> {
    let mut out = String::from("POST /a HTTP/1.1\r\nHost: o\r\n");
    for f in fields {
        out.push_str(f);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(body);
    out.into_bytes()
}

/// Refused with `status` however it arrives, and no request (smuggled or
/// not) reaches the application.
fn refused(raw: &[u8], status: u16) {
    for chunks in feedings(raw, 32) {
        let (got, events) = refuse(&chunks, Limits::default());
        assert_eq!(
            (got, events.len()),
            (status, 0),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
}

/// RUSTSEC-2021-0020 (hyper < 0.14.3): with several Transfer-Encoding
/// fields, only one was looked at, so `chunked` then `gzip` was read as
/// chunked. Every field line counts here: the codings of all of them, in
/// order, must be exactly one final `chunked`.
#[test]
fn rustsec_2021_0020_multiple_transfer_encoding_headers() {
    let smuggle = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: o\r\n\r\n";
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Transfer-Encoding: gzip"],
            smuggle,
        ),
        400,
    );
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            smuggle,
        ),
        400,
    );
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
            smuggle,
        ),
        400,
    );
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Transfer-encoding: x"],
            smuggle,
        ),
        400,
    );
    refused(
        &post(
            &["Transfer-Encoding: identity", "Transfer-Encoding:"],
            smuggle,
        ),
        400,
    );
    // another coding before chunked, over two lines: not implemented
    refused(
        &post(
            &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
            smuggle,
        ),
        501,
    );
    // one field line, one chunked: the only framing accepted
    let (events, result) = run(
        &whole(&post(&["Transfer-Encoding: chunked"], "0\r\n\r\n")),
        Limits::default(),
    );
    result.unwrap();
    assert!(
        matches!(&events[..], [Event::Request(h), Event::End(_)] if h.framing == Framing::Chunked)
    );
}

/// RUSTSEC-2021-0078 (hyper < 0.14.10): `Content-Length: +3` was parsed
/// as 3 (Rust's `u64::from_str` takes a sign), while a front end may read
/// it otherwise. Content-Length is `1*DIGIT` here, nothing else.
#[test]
fn rustsec_2021_0078_content_length_with_a_plus_sign() {
    refused(&post(&["Content-Length: +3"], "abc"), 400);
    for value in [
        "-3",
        "+0",
        "3+",
        "0x3",
        "3 3",
        "3,3",
        "3_0",
        "\u{0663}",
        "1e3",
        "99999999999999999999",
    ] {
        refused(&post(&[&format!("Content-Length: {value}")], "abc"), 400);
    }
    // and never taken for a chunked body either
    refused(
        &post(
            &["Content-Length: +3", "Transfer-Encoding: chunked"],
            "0\r\n\r\n",
        ),
        400,
    );
    let (events, result) = run(
        &whole(&post(&["Content-Length:  3 "], "abc")),
        Limits::default(),
    );
    result.unwrap();
    assert!(matches!(&events[0], Event::Request(h) if h.framing == Framing::Length(3)));
}

/// RUSTSEC-2021-0079 (hyper < 0.14.10): a chunk size of more than 16 hex
/// digits overflowed and wrapped, so `f0000000000000003` was read as 3 and
/// the rest of the chunk as a new request. More than 16 digits is refused
/// (leading zeros included), and the running total never wraps.
#[test]
fn rustsec_2021_0079_chunk_size_overflow() {
    let te = ["Transfer-Encoding: chunked"];
    let smuggle = "\r\nabc\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: o\r\n\r\n";
    for size in [
        "f0000000000000003",
        "10000000000000000",
        "00000000000000003",
        "fffffffffffffffff",
    ] {
        let raw = post(&te, &format!("{size}{smuggle}"));
        for chunks in feedings(&raw, 32) {
            let (status, events) = refuse(&chunks, Limits::default());
            assert_eq!(status, 400, "{size}");
            assert!(
                matches!(&events[..], [Event::Request(_)]),
                "{size}: {events:?}"
            );
        }
    }
    // 16 digits fit in 64 bits: then the body limit applies (413), and with
    // no limit two huge chunks do not wrap the running total.
    let raw = post(&te, "ffffffffffffffff\r\n");
    assert_eq!(refuse(&whole(&raw), Limits::default()).0, 413);
    let unlimited = Limits {
        max_body: None,
        ..Limits::default()
    };
    let (events, result) = run(&whole(&raw), unlimited);
    result.unwrap();
    assert_eq!(events.len(), 1);
}

/// hyper#4123 (hyper <= 1.10.1, fixed by PR #4124): a Content-Length before
/// a Transfer-Encoding was kept and the connection reused, so a front end
/// framing by Content-Length and hyper framing by chunked disagreed.
#[test]
fn hyper_4123_content_length_before_transfer_encoding() {
    let smuggle = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: o\r\n\r\n";
    let raw = post(
        &["Content-Length: 40", "Transfer-Encoding: chunked"],
        smuggle,
    );
    refused(&raw, 400);
}

/// The same, the other way round: Transfer-Encoding before Content-Length.
#[test]
fn hyper_4123_transfer_encoding_before_content_length() {
    let smuggle = "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: o\r\n\r\n";
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Content-Length: 40"],
            smuggle,
        ),
        400,
    );
    // also when the Content-Length is 0, or the Transfer-Encoding is not chunked
    refused(
        &post(
            &["Transfer-Encoding: chunked", "Content-Length: 0"],
            smuggle,
        ),
        400,
    );
    refused(
        &post(
            &["Content-Length: 0", "Transfer-Encoding: gzip, chunked"],
            smuggle,
        ),
        400,
    );
}

/// The product's list: CL+TE, duplicate Content-Length, obs-fold, bare CR
/// or LF, invalid field names or values, NUL: 400 each, nothing reaches the
/// application (hyper's server would drop one header and carry on).
#[test]
fn the_framing_the_product_refuses() {
    refused(
        &post(&["Content-Length: 3", "Content-Length: 3"], "abc"),
        400,
    );
    refused(&post(&["X-A: b", " folded"], ""), 400);
    refused(b"GET / HTTP/1.1\r\nHost: o\rX: y\r\n\r\n", 400);
    refused(b"GET / HTTP/1.1\r\nHost: o\nX: y\r\n\r\n", 400);
    refused(b"GET / HTTP/1.1\r\nHost: o\r\nX(A): y\r\n\r\n", 400);
    refused(b"GET / HTTP/1.1\r\nHost: o\r\nX-A: \x01\r\n\r\n", 400);
    refused(b"GET / HTTP/1.1\r\nHost: o\x00\r\n\r\n", 400);
}
