//! `connect_head`: a CONNECT head from a client, as the outbound listener
//! reads it (`seawall_proxy::connect`), whole and in two pieces.
//!
//! Invariants:
//! - no panic, no unbounded allocation;
//! - a prefix of an accepted head (one the server would ask about: it
//!   starts with `CONNECT `) is incomplete, never refused, or the same head;
//! - an accepted head names a host the tunnel can dial (not empty, only
//!   reg-name or IPv6 bytes, lower case) and a port above 0, consumes no more
//!   than it was given, and written again as `CONNECT host:port` reads back
//!   to the same host and port.
use seawall_h1::Limits;
use seawall_proxy::connect::{is_connect, parse, ConnectRequest};

use crate::{fingerprint, show};

/// Small limits, so that short inputs reach them.
const LIMITS: Limits = Limits {
    max_request_line: 256,
    max_headers: 8,
    max_header_bytes: 1024,
    ..Limits::DEFAULT
};

pub fn check(data: &[u8]) {
    let whole = parse(data, &LIMITS);
    let split = (fingerprint(data) % (data.len() as u64 + 1)) as usize;
    // a connection sees the first piece alone first (the server asks only
    // once it starts with "CONNECT ")
    let first = &data[..split];
    let early = if is_connect(first) {
        parse(first, &LIMITS)
    } else {
        Ok(None)
    };
    match (&whole, &early) {
        (Ok(Some(req)), Ok(Some(first))) => assert_eq!(req, first, "{}", show(data)),
        (Ok(Some(req)), Err(e)) => panic!(
            "a prefix of an accepted head was refused ({}): {req:?} {}",
            e.status,
            show(data)
        ),
        _ => {}
    }
    let Ok(Some(req)) = whole else {
        if let Err(e) = &whole {
            assert!(matches!(e.status, 400 | 414 | 431), "status {}", e.status);
        }
        return;
    };
    check_accepted(data, &req);
}

fn check_accepted(data: &[u8], req: &ConnectRequest) {
    assert!(req.consumed <= data.len() && req.consumed >= 4);
    assert_eq!(&data[req.consumed - 4..req.consumed], b"\r\n\r\n");
    assert!(req.port > 0);
    assert!(!req.host.is_empty());
    assert!(
        req.host.bytes().all(|b| b.is_ascii_lowercase()
            || b.is_ascii_digit()
            || matches!(b, b'-' | b'.' | b'_' | b':')),
        "host {:?}",
        req.host
    );
    let host = if req.host.contains(':') {
        format!("[{}]", req.host)
    } else {
        req.host.clone()
    };
    let again = format!("CONNECT {host}:{} HTTP/1.1\r\n\r\n", req.port);
    let read = parse(again.as_bytes(), &LIMITS)
        .unwrap_or_else(|e| panic!("{again:?} refused: {e:?}"))
        .expect("complete");
    assert_eq!((&read.host, read.port), (&req.host, req.port));
}
