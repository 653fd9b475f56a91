//! Bytes to send: response heads, chunks, error responses, and hop-by-hop
//! fields. A port of the response-serialization tests of
//! tests/proxy/test_http1.py (the request encoder is hyper's, upstream).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use bytes::{Bytes, BytesMut};
use common::{random_split, Rng};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use seawall_h1::{
    encode_chunk, encode_last_chunk, encode_response_head, error_response, strip_hop_by_hop,
    BodyEvent, ChunkedDecoder, Error, Limits, ResponseFraming, LAST_CHUNK, VIA,
};

fn map(fields: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in fields {
        map.append(
            HeaderName::from_bytes(n.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

fn encode(
    status: u16,
    reason: Option<&str>,
    headers: &HeaderMap,
    framing: ResponseFraming,
    keep_alive: bool,
    via: Option<&[u8]>,
) -> Result<String, Error> {
    let mut dst = BytesMut::new();
    encode_response_head(status, reason, headers, framing, keep_alive, via, &mut dst)?;
    Ok(String::from_utf8(dst.to_vec()).unwrap())
}

#[test]
fn downstream_response_head() {
    let headers = map(&[
        ("content-type", "text/plain"),
        ("transfer-encoding", "chunked"),
        ("connection", "close"),
        ("trailer", "x-t"),
    ]);
    assert_eq!(
        encode(200, Some("OK"), &headers, ResponseFraming::Chunked, true, Some(VIA)).unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nvia: 1.1 seawall\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        encode(
            503,
            Some(""),
            &HeaderMap::new(),
            ResponseFraming::NoBody,
            false,
            None
        )
        .unwrap(),
        "HTTP/1.1 503 \r\nconnection: close\r\n\r\n"
    );
    // no reason given: the standard phrase (Python's HTTPStatus)
    assert_eq!(
        encode(
            413,
            None,
            &HeaderMap::new(),
            ResponseFraming::Length(0),
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 413 Request Entity Too Large\r\ncontent-length: 0\r\n\r\n"
    );
    // 1xx and 204 never carry Content-Length; 304 and HEAD responses keep it.
    let length = map(&[("content-length", "5")]);
    let no_content = encode(204, None, &length, ResponseFraming::NoBody, true, None).unwrap();
    assert!(!no_content.contains("content-length"), "{no_content}");
    let not_modified = encode(304, None, &length, ResponseFraming::NoBody, true, None).unwrap();
    assert!(
        not_modified.contains("content-length: 5\r\n"),
        "{not_modified}"
    );
    assert_eq!(
        encode(
            101,
            None,
            &HeaderMap::new(),
            ResponseFraming::Upgrade(HeaderValue::from_static("websocket")),
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
    );
}

#[test]
fn the_framing_of_this_hop_replaces_the_received_one() {
    let received = map(&[("content-length", "999"), ("x-a", "1")]);
    assert_eq!(
        encode(
            200,
            Some("OK"),
            &received,
            ResponseFraming::Length(0),
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 0\r\n\r\n"
    );
    assert_eq!(
        encode(
            200,
            Some("OK"),
            &received,
            ResponseFraming::Chunked,
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 200 OK\r\nx-a: 1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        encode(
            200,
            Some("OK"),
            &received,
            ResponseFraming::Close,
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 200 OK\r\nx-a: 1\r\nconnection: close\r\n\r\n"
    );
    // forwarded as received (a response to HEAD)
    assert_eq!(
        encode(
            200,
            Some("OK"),
            &received,
            ResponseFraming::NoBody,
            true,
            None
        )
        .unwrap(),
        "HTTP/1.1 200 OK\r\ncontent-length: 999\r\nx-a: 1\r\n\r\n"
    );
}

#[test]
fn response_head_refusals() {
    let none = HeaderMap::new();
    let refused = [
        (204, Some("X"), ResponseFraming::Chunked),
        (304, Some("X"), ResponseFraming::Chunked),
        (100, Some("X"), ResponseFraming::Chunked),
        (204, Some("X"), ResponseFraming::Length(0)),
        (101, Some("X"), ResponseFraming::Length(1)),
        (100, Some("X"), ResponseFraming::Close),
        (99, Some("X"), ResponseFraming::NoBody),
        (1000, Some("X"), ResponseFraming::NoBody),
        (200, Some("O\r\nK"), ResponseFraming::NoBody),
        (200, Some("O\0K"), ResponseFraming::NoBody),
    ];
    for (status, reason, framing) in refused {
        let mut dst = BytesMut::new();
        let err =
            encode_response_head(status, reason, &none, framing, true, None, &mut dst).unwrap_err();
        assert_eq!(err.status, 500);
        assert!(dst.is_empty(), "nothing is written");
    }
    let mut dst = BytesMut::new();
    let err = encode_response_head(
        200,
        None,
        &none,
        ResponseFraming::NoBody,
        true,
        Some(b"1.1 x\r\n"),
        &mut dst,
    );
    assert!(err.is_err());
}

#[test]
fn hop_by_hop_fields_are_never_forwarded() {
    let received = map(&[
        ("connection", "keep-alive, x-hop"),
        ("keep-alive", "timeout=5"),
        ("x-hop", "secret"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic abc"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "h2c"),
        ("trailer", "x-t"),
        ("accept", "*/*"),
        ("via", "1.1 edge"),
        ("content-length", "3"),
    ]);
    let head = encode(
        200,
        Some("OK"),
        &received,
        ResponseFraming::NoBody,
        true,
        Some(VIA),
    )
    .unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\naccept: */*\r\nvia: 1.1 edge\r\ncontent-length: 3\r\nvia: 1.1 seawall\r\n\r\n"
    );
    let mut stripped = received.clone();
    strip_hop_by_hop(&mut stripped);
    let mut names: Vec<&str> = stripped.keys().map(HeaderName::as_str).collect();
    names.sort_unstable(); // removal reorders the map; order across names means nothing
    assert_eq!(names, ["accept", "content-length", "via"]);
}

#[test]
fn connection_cannot_strip_framing_or_host() {
    let mut headers = map(&[
        ("host", "o"),
        ("connection", "content-length, host, x-a, X-B"),
        ("content-length", "3"),
        ("x-a", "1"),
        ("x-b", "2"),
    ]);
    let head = encode(
        200,
        Some("OK"),
        &headers,
        ResponseFraming::NoBody,
        true,
        None,
    )
    .unwrap();
    assert_eq!(
        head,
        "HTTP/1.1 200 OK\r\nhost: o\r\ncontent-length: 3\r\n\r\n"
    );
    strip_hop_by_hop(&mut headers);
    let mut fields: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, [("content-length", &b"3"[..]), ("host", b"o")]);
}

#[test]
fn several_connection_fields_all_count() {
    let mut headers = map(&[
        ("connection", "x-a"),
        ("connection", "x-b"),
        ("x-a", "1"),
        ("x-b", "2"),
        ("x-c", "3"),
    ]);
    strip_hop_by_hop(&mut headers);
    assert_eq!(
        headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
        ["x-c"]
    );
}

#[test]
fn chunks() {
    let mut dst = BytesMut::new();
    encode_chunk(b"", &mut dst);
    assert!(dst.is_empty());
    encode_chunk(b"hello", &mut dst);
    assert_eq!(&dst[..], b"5\r\nhello\r\n");
    let mut dst = BytesMut::new();
    encode_chunk(&[b'x'; 255], &mut dst);
    assert_eq!(&dst[..4], b"ff\r\n");
    assert_eq!(dst.len(), 4 + 255 + 2);
    assert_eq!(LAST_CHUNK, b"0\r\n\r\n");
    let mut dst = BytesMut::new();
    encode_last_chunk(&HeaderMap::new(), &mut dst);
    assert_eq!(&dst[..], LAST_CHUNK);
    let mut dst = BytesMut::new();
    encode_last_chunk(
        &map(&[("x-sum", "1"), ("transfer-encoding", "chunked")]),
        &mut dst,
    );
    assert_eq!(&dst[..], b"0\r\nx-sum: 1\r\n\r\n");
}

#[test]
fn chunked_bodies_round_trip() {
    let mut rng = Rng::new(7);
    for _ in 0..200 {
        let body: Vec<u8> = (0..rng.below(5000)).map(|_| rng.next() as u8).collect();
        let mut wire = BytesMut::new();
        for piece in random_split(&body, rng.next()) {
            encode_chunk(&piece, &mut wire);
        }
        encode_last_chunk(&map(&[("x-t", "1")]), &mut wire);
        wire.extend_from_slice(b"NEXT");
        let mut decoder = ChunkedDecoder::new(&Limits {
            max_body: None,
            ..Limits::default()
        });
        let (mut buf, mut got, mut trailers) = (BytesMut::new(), Vec::new(), None);
        for piece in random_split(&wire, rng.next()) {
            buf.extend_from_slice(&piece);
            while let Some(event) = decoder.decode(&mut buf).unwrap() {
                match event {
                    BodyEvent::Data(d) => got.extend_from_slice(&d),
                    BodyEvent::End(t) => trailers = Some(t),
                }
            }
        }
        assert_eq!(got, body);
        assert_eq!(trailers.unwrap()["x-t"], "1");
        assert_eq!(&buf[..], b"NEXT");
    }
}

#[test]
fn error_response_is_a_valid_closing_response() {
    let mut dst = BytesMut::new();
    error_response(&Error::new(431, "too many header fields"), &mut dst);
    assert_eq!(
        &dst[..],
        &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
content-length: 80\r\nconnection: close\r\n\r\n\
{\"error\":\"head_too_large\",\"destination\":null,\"reason\":\"too many header fields\"}\n"[..]
    );
    let mut headers = [httparse::EMPTY_HEADER; 8];
    let mut response = httparse::Response::new(&mut headers);
    let n = response.parse(&dst).unwrap().unwrap();
    assert_eq!(
        (response.code, response.reason),
        (Some(431), Some("Request Header Fields Too Large"))
    );
    assert_eq!(
        &dst[n..],
        &b"{\"error\":\"head_too_large\",\"destination\":null,\"reason\":\"too many header fields\"}\n"[..]
    );

    let mut dst = BytesMut::new();
    error_response(&Error::new(405, "CONNECT is not supported"), &mut dst);
    assert!(dst.windows(14).any(|w| w == b"\r\nallow: GET, "));
    let mut dst = BytesMut::new();
    error_response(&Error::new(400, ""), &mut dst);
    assert!(dst.ends_with(b"\"reason\":\"Bad Request\"}\n"));
    let mut dst = BytesMut::new();
    error_response(&Error::new(400, "duplicate Host"), &mut dst);
    assert_eq!(
        Bytes::from(dst.to_vec()),
        Bytes::from_static(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 69\r\n\
connection: close\r\n\r\n{\"error\":\"bad_request\",\"destination\":null,\"reason\":\"duplicate Host\"}\n"
        )
    );
    // a status no response can have is answered as a 500
    let mut dst = BytesMut::new();
    error_response(&Error::new(42, "nonsense"), &mut dst);
    assert!(dst.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
}

#[test]
fn errors_display_reason_and_status() {
    let err = Error::new(413, "body too large");
    assert_eq!(err.to_string(), "body too large (413)");
    let _: &dyn std::error::Error = &err;
}

#[test]
fn local_bodies_are_one_line_of_json_with_every_byte_escaped() {
    let body = seawall_h1::local_body("unavailable", Some("pay\"ments"), "a\nb\\c\u{1}é");
    assert_eq!(
        std::str::from_utf8(&body).expect("utf-8"),
        "{\"error\":\"unavailable\",\"destination\":\"pay\\\"ments\",\
         \"reason\":\"a\\nb\\\\c\\u0001é\"}\n"
    );
    assert_eq!(seawall_h1::error_kind(504), "timeout");
    assert_eq!(seawall_h1::error_kind(599), "server_error");
    assert_eq!(seawall_h1::canonical_reason(503), "Service Unavailable");
}
