//! No panic on any input: a bounded, deterministic fuzz loop over mutated
//! valid requests (and plain garbage), fed whole and in random pieces.
//! Only Ok or Err is asserted, plus the shape of what was accepted.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use common::{random_split, run, whole, Event, Rng};
use seawall_h1::Limits;

const SEEDS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: orders\r\nAccept: */*\r\n\r\n",
    b"POST /o HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\nHost: o\r\n\r\n",
    b"POST /u HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\nGET /next HTTP/1.1\r\nHost: o\r\n\r\n",
    b"PUT /f HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n4;a=\"q\\\"x\"\r\nabcd\r\n0\r\n\r\n",
    b"GET http://Orders.Shop:8002/x/../y?q=%61 HTTP/1.1\r\nHost: orders\r\n\r\n",
    b"GET /chat HTTP/1.1\r\nHost: o\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
    b"\r\n\r\nGET /%7euser/./a/%2f HTTP/1.1\r\nHost: O:080\r\nX-A: 1\r\nx-a: 2 \r\n\r\n",
];

const TOKENS: &[&[u8]] = &[
    b" ",
    b"\t",
    b"\r",
    b"\n",
    b"\r\n",
    b",",
    b";",
    b":",
    b"0",
    b"a",
    b"\x00",
    b"\x7f",
    b"\xff",
    b"/",
    b"?",
    b"#",
    b"%",
    b"%2",
    b"/..",
    b"@",
    b"[",
    b"]",
    b"=",
    b"\"",
    b"\\",
    b"+",
    b"-",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"ffffffffffffffff",
    b"10000000000000000",
    b"http://",
    b"\r\n\r\n",
    b"\r\n ",
    b"Content-Length: 3\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Host: x\r\n",
    b"Connection: close\r\n",
    b"Upgrade: x\r\nConnection: upgrade\r\n",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, t.iter().copied());
            }
            1 => {
                let end = (at + 1 + rng.below(3)).min(data.len());
                data.drain(at..end);
            }
            2 if at < data.len() => data[at] = rng.next() as u8,
            3 => {
                let end = (at + 1 + rng.below(8)).min(data.len());
                for b in &mut data[at..end] {
                    *b = if b.is_ascii_lowercase() {
                        b.to_ascii_uppercase()
                    } else {
                        b.to_ascii_lowercase()
                    };
                }
            }
            _ => {
                let end = (at + rng.below(40)).min(data.len());
                let copy = data[at..end].to_vec();
                data.splice(at..at, copy);
            }
        }
    }
    data
}

/// What was accepted has the shape (Request Data* End)* [Request Data*].
fn check_shape(events: &[Event]) {
    let mut in_body = false;
    for event in events {
        match event {
            Event::Request(_) => {
                assert!(!in_body, "a request inside a body: {events:?}");
                in_body = true;
            }
            Event::Data(d) => assert!(in_body && !d.is_empty()),
            Event::End(_) => {
                assert!(in_body);
                in_body = false;
            }
        }
    }
}

#[test]
fn mutated_requests_never_panic() {
    let mut rng = Rng::new(0x5ea_3a11);
    let small = Limits {
        max_request_line: 24,
        max_headers: 3,
        max_header_bytes: 80,
        max_body: Some(8),
        max_chunk_ext_bytes: 4,
    };
    let (mut ok, mut err) = (0, 0);
    for i in 0..30_000 {
        let seed = SEEDS[rng.below(SEEDS.len())];
        let data = mutate(&mut rng, seed);
        let limits = if i % 5 == 0 { small } else { Limits::default() };
        for chunks in [whole(&data), random_split(&data, rng.next())] {
            let (events, result) = run(&chunks, limits);
            check_shape(&events);
            match result {
                Ok(()) => ok += 1,
                Err(e) => {
                    assert!(
                        [400, 405, 413, 414, 431, 501, 505].contains(&e.status),
                        "{e}"
                    );
                    err += 1;
                }
            }
        }
    }
    println!("{ok} accepted, {err} refused");
    assert!(ok > 1000 && err > 1000);
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng::new(99);
    for _ in 0..20_000 {
        let len = rng.below(300);
        let alphabet: &[u8] = if rng.below(2) == 0 {
            b"GET /HTP1.0\r\n: Hostchunked;=\"0123456789abcdef"
        } else {
            &[]
        };
        let data: Vec<u8> = (0..len)
            .map(|_| {
                if alphabet.is_empty() {
                    rng.next() as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        for chunks in [whole(&data), random_split(&data, rng.next())] {
            let (events, _) = run(&chunks, Limits::default());
            check_shape(&events);
        }
    }
}

#[test]
fn the_encoders_never_panic() {
    use bytes::BytesMut;
    use http::{HeaderMap, HeaderValue};
    use seawall_h1::{
        encode_chunk, encode_response_head, error_response, strip_hop_by_hop, Error,
        ResponseFraming,
    };
    let mut rng = Rng::new(5);
    for _ in 0..20_000 {
        let status = rng.below(1100) as u16;
        let reason: String = (0..rng.below(12))
            .map(|_| char::from(rng.next() as u8 & 0x7f))
            .collect();
        let mut headers = HeaderMap::new();
        for _ in 0..rng.below(6) {
            let name = [
                "connection",
                "x-a",
                "proxy-x",
                "content-length",
                "keep-alive",
                "te",
                "upgrade",
            ][rng.below(7)];
            let value = [
                "close",
                "x-a, proxy-x",
                "3",
                "",
                "upgrade, content-length, host",
            ][rng.below(5)];
            headers.append(name, HeaderValue::from_static(value));
        }
        let framing = match rng.below(5) {
            0 => ResponseFraming::Length(rng.next()),
            1 => ResponseFraming::Chunked,
            2 => ResponseFraming::Close,
            3 => ResponseFraming::NoBody,
            _ => ResponseFraming::Upgrade(HeaderValue::from_static("websocket")),
        };
        let mut dst = BytesMut::new();
        let _ = encode_response_head(
            status,
            Some(&reason),
            &headers,
            framing,
            rng.below(2) == 0,
            None,
            &mut dst,
        );
        error_response(&Error::new(status, "x"), &mut dst);
        encode_chunk(reason.as_bytes(), &mut dst);
        strip_hop_by_hop(&mut headers);
    }
}
