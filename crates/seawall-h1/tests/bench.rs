//! Micro-benchmarks (ignored by a plain `cargo test`). Run with:
//!
//!     cargo test --release -p seawall-h1 --test bench -- --ignored --nocapture
//!
//! Prints nanoseconds per operation for a typical 8-field GET: a new head
//! parsed from a connection's buffer (zero-copy), from a slice (one copy),
//! and the whole request/response turn the sidecar makes per request.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use seawall_h1::{
    encode_response_head, parse_request_head, strip_hop_by_hop, BodyDecoder, HeadParser, Limits,
    ResponseFraming, VIA,
};

const GET: &[u8] = b"GET /api/v1/orders/12345?expand=items HTTP/1.1\r\n\
Host: orders.default.svc:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
Accept: application/json\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Connection: keep-alive\r\n\
X-Request-Id: 4bf92f3577b34da6a3ce929d0e0e4736\r\n\
Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";

const BATCH: usize = 10_000;
const ROUNDS: usize = 30;

fn report(what: &str, f: impl Fn() -> usize) {
    let _ = f(); // warm up
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let n = f();
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    println!("{what:<58} {best:>7.0} ns");
}

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn bench_parse_typical_get() {
    println!("typical GET: {} bytes, 8 fields", GET.len());
    let pipelined: Vec<u8> = GET.repeat(BATCH);
    report("HeadParser::decode (zero-copy, from a BytesMut)", || {
        let mut n = 0;
        for _ in 0..ROUNDS {
            let mut buf = BytesMut::from(&pipelined[..]);
            let mut parser = HeadParser::new(Limits::default());
            while let Some(head) = parser.decode(&mut buf).unwrap() {
                black_box(&head);
                n += 1;
            }
        }
        n
    });
    report("parse_request_head (from a slice, one copy)", || {
        let limits = Limits::default();
        for _ in 0..ROUNDS * BATCH {
            black_box(parse_request_head(black_box(GET), &limits).unwrap());
        }
        ROUNDS * BATCH
    });
    report("httparse alone (the syntax pass, for reference)", || {
        for _ in 0..ROUNDS * BATCH {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut req = httparse::Request::new(&mut headers);
            black_box(req.parse(black_box(GET)).unwrap());
        }
        ROUNDS * BATCH
    });
    report(
        "decode + body + strip hop-by-hop + encode a 200 head",
        || {
            let mut n = 0;
            let mut out = BytesMut::with_capacity(1 << 20);
            for _ in 0..ROUNDS {
                let mut buf = BytesMut::from(&pipelined[..]);
                let mut parser = HeadParser::new(Limits::default());
                while let Some(mut head) = parser.decode(&mut buf).unwrap() {
                    let mut body = BodyDecoder::new(head.framing, parser.limits());
                    black_box(body.decode(&mut buf).unwrap());
                    strip_hop_by_hop(&mut head.headers);
                    out.clear();
                    encode_response_head(
                        200,
                        None,
                        &head.headers,
                        ResponseFraming::Length(2),
                        head.keep_alive,
                        Some(VIA),
                        &mut out,
                    )
                    .unwrap();
                    black_box(&out);
                    n += 1;
                }
            }
            n
        },
    );
}
