//! Valid requests: heads, bodies, pipelining, keep-alive, 100-continue,
//! upgrade. A port of the request side of tests/proxy/test_http1.py: every
//! valid input is fed whole, one byte at a time and split at pseudo-random
//! points, and must give the same events each way.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

use bytes::{Bytes, BytesMut};
use common::{bytewise, feedings, random_split, run, whole, Conn, Event, Rng};
use http::{HeaderMap, Method, Version};
use seawall_h1::{
    encode_chunk, normalize_path, parse_request_head, BodyDecoder, BodyEvent, Framing, HeadParser,
    Limits, RequestHead, LAST_CHUNK,
};

const GET: &[u8] =
    b"GET /api/v1/orders/12?expand=items HTTP/1.1\r\nHost: orders.shop:8080\r\nAccept: */*\r\n\r\n";
const POST_LENGTH: &[u8] =
    b"POST /orders HTTP/1.1\r\nHost: orders\r\nContent-Length: 11\r\n\r\nhello world";
const POST_CHUNKED: &[u8] =
    b"POST /upload HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6;name=value;q=\"a \\\" b\"\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n";

fn valid_streams() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("get", GET.to_vec()),
        ("post-content-length", POST_LENGTH.to_vec()),
        ("post-chunked-extensions-trailers", POST_CHUNKED.to_vec()),
        ("pipelined-mix", [GET, POST_LENGTH, POST_CHUNKED, GET].concat()),
        (
            "http10-keep-alive",
            b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n".to_vec(),
        ),
        ("absolute-form", b"GET http://orders:8002/x?y=1 HTTP/1.1\r\nHost: orders:8002\r\n\r\n".to_vec()),
        ("asterisk-form", b"OPTIONS * HTTP/1.1\r\nHost: orders\r\n\r\n".to_vec()),
        ("leading-empty-lines", [b"\r\n\r\n", GET].concat()),
        (
            "expect-continue",
            b"PUT /f HTTP/1.1\r\nHost: o\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc".to_vec(),
        ),
        (
            "zero-length-and-empty-chunked",
            b"POST /a HTTP/1.1\r\nHost: o\r\nContent-Length: 0\r\n\r\n\
POST /b HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "uppercase-chunk-size-and-leading-zeros",
            b"POST /a HTTP/1.1\r\nHost: o\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n000\r\n\r\n".to_vec(),
        ),
        (
            "obs-text-and-empty-values",
            b"GET / HTTP/1.1\r\nHost: o\r\nX-Empty:\r\nX-Latin: caf\xe9\r\n\r\n".to_vec(),
        ),
        ("close-then-ignored", b"GET / HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\nGARBAGE!".to_vec()),
    ]
}

type Absolute = (&'static [u8], &'static [u8], Option<u16>, &'static [u8]);
type KeepAlive = (&'static [u8], Option<&'static [u8]>, bool);

fn parse(data: &[u8]) -> Vec<Event> {
    let (events, result) = run(&whole(data), Limits::default());
    result.unwrap();
    events
}

fn heads(events: &[Event]) -> Vec<RequestHead> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Request(h) => Some((**h).clone()),
            _ => None,
        })
        .collect()
}

fn head(data: &[u8]) -> RequestHead {
    let (head, _) = parse_request_head(data, &Limits::default())
        .unwrap()
        .unwrap();
    head
}

#[test]
fn whole_bytewise_and_random_splits_give_the_same_events() {
    for (name, data) in valid_streams() {
        let expected = parse(&data);
        assert!(matches!(expected.last(), Some(Event::End(_))), "{name}");
        for (n, chunks) in feedings(&data, 300).iter().enumerate() {
            let (events, result) = run(chunks, Limits::default());
            assert!(result.is_ok(), "{name}, feeding {n}: {result:?}");
            assert_eq!(events, expected, "{name}, feeding {n}");
        }
    }
}

#[test]
fn trailing_data_is_kept_not_parsed() {
    const TRAILING: &[u8] = b"POST /next HTTP/1.1\r\nHost: o\r\nContent-Len";
    for (name, data) in valid_streams() {
        let expected = parse(&data);
        for feed in [whole, bytewise] {
            let mut conn = Conn::new(Limits::default());
            for chunk in feed(&[&data[..], TRAILING].concat()) {
                conn.feed(&chunk).unwrap();
            }
            assert_eq!(conn.events, expected, "{name}");
            if conn.closed {
                continue; // after "Connection: close" what follows is dropped
            }
            assert_eq!(
                &conn.buf[..],
                TRAILING,
                "{name}: the next request waits, unparsed"
            );
            for chunk in feed(b"gth: 2\r\n\r\nok") {
                conn.feed(&chunk).unwrap();
            }
            let tail = &conn.events[expected.len()..];
            match tail {
                [Event::Request(h), Event::Data(d), Event::End(t)] => {
                    assert_eq!(
                        (&h.path[..], &d[..], t.len()),
                        (&b"/next"[..], &b"ok"[..], 0)
                    );
                }
                _ => panic!("{name}: {tail:?}"),
            }
        }
    }
}

#[test]
fn get_head() {
    let events = parse(GET);
    let [Event::Request(h), Event::End(trailers)] = &events[..] else {
        panic!("{events:?}");
    };
    assert!(trailers.is_empty());
    assert_eq!(h.method, Method::GET);
    assert_eq!(&h.target[..], b"/api/v1/orders/12?expand=items");
    assert_eq!(&h.path[..], b"/api/v1/orders/12?expand=items");
    assert_eq!(h.authority.as_deref(), Some(&b"orders.shop:8080"[..]));
    assert_eq!(h.host(), Some(&b"orders.shop"[..]));
    assert_eq!(h.port(), Some(8080));
    assert!(!h.absolute);
    assert_eq!(h.version, Version::HTTP_11);
    assert_eq!(h.framing, Framing::Empty);
    assert!(!h.has_body());
    assert!(h.keep_alive);
    assert!(!h.expect_continue);
    assert_eq!(h.upgrade, None);
    let fields: Vec<(&str, &[u8])> = h
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(
        fields,
        [("host", &b"orders.shop:8080"[..]), ("accept", b"*/*")]
    );
}

#[test]
fn the_head_is_zero_copy() {
    let mut buf = BytesMut::from(GET);
    let start = buf.as_ptr() as usize;
    let end = start + GET.len();
    let h = HeadParser::new(Limits::default())
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    let inside = |b: &[u8]| (start..end).contains(&(b.as_ptr() as usize));
    assert!(inside(&h.target) && inside(&h.path));
    assert!(inside(h.authority.as_deref().unwrap()));
    assert!(h.headers.values().all(|v| inside(v.as_bytes())));
    assert!(buf.is_empty());
}

#[test]
fn bodies_are_delivered_exactly() {
    let events = parse(&[POST_LENGTH, POST_CHUNKED].concat());
    let [Event::Request(a), Event::Data(x), Event::End(none), Event::Request(b), Event::Data(y), Event::End(trailers)] =
        &events[..]
    else {
        panic!("{events:?}");
    };
    assert_eq!((&x[..], &y[..]), (&b"hello world"[..], &b"hello world"[..]));
    assert_eq!(a.framing, Framing::Length(11));
    assert_eq!(b.framing, Framing::Chunked);
    assert!(none.is_empty());
    assert_eq!(trailers.len(), 1);
    assert_eq!(trailers["x-checksum"], "abc");
}

#[test]
fn headers_keep_order_duplicates_and_trim_whitespace() {
    let h = head(
        b"GET / HTTP/1.1\r\nHost: o\r\nX-A: 1\r\nx-a:2 \t\r\nCookie: a=1\r\nCOOKIE: b=2\r\n\r\n",
    );
    let get = |name: &str| -> Vec<&[u8]> {
        h.headers
            .get_all(name)
            .iter()
            .map(|v| v.as_bytes())
            .collect()
    };
    assert_eq!(get("host"), [b"o"]);
    assert_eq!(get("x-a"), [b"1", b"2"]);
    assert_eq!(get("cookie"), [&b"a=1"[..], b"b=2"]);
    assert_eq!(h.headers.len(), 5);
}

#[test]
fn absolute_form_targets() {
    // (target, authority, port, path)
    let cases: [Absolute; 7] = [
        (b"http://orders/path", b"orders", None, b"/path"),
        (
            b"http://Orders.Shop:8002/a/b?c=d",
            b"orders.shop:8002",
            Some(8002),
            b"/a/b?c=d",
        ),
        (b"HTTPS://orders:443", b"orders:443", Some(443), b"/"),
        (b"http://orders?q=1", b"orders", None, b"/?q=1"),
        (b"http://10.0.0.7:80/x", b"10.0.0.7:80", Some(80), b"/x"),
        (b"http://[::1]:8080/x", b"[::1]:8080", Some(8080), b"/x"),
        (b"http://orders:/x", b"orders", None, b"/x"),
    ];
    for (target, authority, port, path) in cases {
        let h = head(&[b"GET ", target, b" HTTP/1.1\r\nHost: whatever\r\n\r\n"].concat());
        assert!(h.absolute);
        assert_eq!(h.authority.as_deref(), Some(authority));
        assert_eq!((h.port(), &h.path[..], &h.target[..]), (port, path, target));
    }
    assert_eq!(
        head(b"GET http://[::1]:8080/x HTTP/1.1\r\nHost: a\r\n\r\n").host(),
        Some(&b"[::1]"[..])
    );
}

#[test]
fn origin_form_takes_the_authority_from_the_host_field() {
    let cases: [(&[u8], &[u8], Option<u16>); 5] = [
        (b"orders", b"orders", None),
        (b"ORDERS:8002", b"orders:8002", Some(8002)),
        (b"[2001:db8::1]:443", b"[2001:db8::1]:443", Some(443)),
        (b"orders:080", b"orders:80", Some(80)),
        (b"", b"", None), // allowed: an empty authority (RFC 9112 §3.2)
    ];
    for (field, authority, port) in cases {
        let h = head(&[b"GET /x HTTP/1.1\r\nHost: ", field, b"\r\n\r\n"].concat());
        assert!(!h.absolute);
        assert_eq!(h.authority.as_deref(), Some(authority));
        assert_eq!((h.port(), &h.path[..]), (port, &b"/x"[..]));
    }
}

#[test]
fn paths_are_normalized_for_routing_and_upstream() {
    let cases: [(&[u8], &[u8]); 11] = [
        (b"/a/b/c/./../../g", b"/a/g"), // RFC 3986 §5.4.2
        (b"/a/..", b"/"),
        (b"/a/.", b"/a/"),
        (b"/../../x", b"/x"),          // never above the root
        (b"/a//b/", b"/a//b/"),        // empty segments are kept
        (b"/%61dmin", b"/admin"),      // unreserved characters are decoded
        (b"/%2e%2E/admin", b"/admin"), // ... before dot segments are removed
        (b"/%7euser", b"/~user"),
        (b"/a%2fb%3a", b"/a%2Fb%3A"), // reserved ones are not, hex is upper-cased
        (b"/x/../admin?next=/../y&q=%61", b"/admin?next=/../y&q=%61"), // query untouched
        (b"/a/.hidden/..b", b"/a/.hidden/..b"),
    ];
    for (raw, normal) in cases {
        assert_eq!(
            &normalize_path(&Bytes::from_static(raw)).unwrap()[..],
            normal
        );
        let h = head(&[b"GET ", raw, b" HTTP/1.1\r\nHost: o\r\n\r\n"].concat());
        assert_eq!((&h.target[..], &h.path[..]), (raw, normal));
        let absolute = head(&[b"GET http://o", raw, b" HTTP/1.1\r\nHost: o\r\n\r\n"].concat());
        assert_eq!(&absolute.path[..], normal);
    }
    assert_eq!(
        normalize_path(&Bytes::from_static(b"/a%zz"))
            .unwrap_err()
            .status,
        400
    );
}

#[test]
fn http10_without_host_is_accepted() {
    let h = head(b"GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(
        (h.version, h.authority, h.keep_alive),
        (Version::HTTP_10, None, false)
    );
}

#[test]
fn keep_alive() {
    // (version, Connection, keep-alive)
    let cases: [KeepAlive; 7] = [
        (b"1.1", None, true),
        (b"1.1", Some(b"close"), false),
        (b"1.1", Some(b"keep-alive, CLOSE"), false),
        (b"1.1", Some(b"keep-alive"), true),
        (b"1.0", None, false),
        (b"1.0", Some(b"keep-alive"), true),
        (b"1.0", Some(b"close"), false),
    ];
    for (version, connection, keep_alive) in cases {
        let mut data = [b"GET / HTTP/", version, b"\r\nHost: o\r\n"].concat();
        if let Some(c) = connection {
            data.extend_from_slice(&[b"Connection: ", c, b"\r\n"].concat());
        }
        data.extend_from_slice(b"\r\n");
        assert_eq!(
            head(&data).keep_alive,
            keep_alive,
            "{version:?} {connection:?}"
        );
    }
}

#[test]
fn pipelined_requests_wait_in_the_buffer_in_order() {
    let second: &[u8] = b"POST /2 HTTP/1.1\r\nHost: o\r\nContent-Length: 2\r\n\r\nok";
    let third: &[u8] = b"GET /3 HTTP/1.1\r\nHost: o\r\n"; // incomplete
    let mut buf =
        BytesMut::from(&[b"GET /1 HTTP/1.1\r\nHost: o\r\n\r\n", second, third].concat()[..]);
    let mut heads = HeadParser::new(Limits::default());
    let first = heads.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        (&first.path[..], buf.len()),
        (&b"/1"[..], second.len() + third.len())
    );
    let h = heads.decode(&mut buf).unwrap().unwrap();
    assert_eq!(&h.path[..], b"/2");
    let mut body = BodyDecoder::new(h.framing, heads.limits());
    assert_eq!(
        body.decode(&mut buf).unwrap(),
        Some(BodyEvent::Data(Bytes::from_static(b"ok")))
    );
    assert_eq!(
        body.decode(&mut buf).unwrap(),
        Some(BodyEvent::End(HeaderMap::new()))
    );
    assert_eq!(body.decode(&mut buf).unwrap(), None);
    assert!(heads.decode(&mut buf).unwrap().is_none());
    assert_eq!(&buf[..], third);
    buf.extend_from_slice(b"\r\n");
    assert_eq!(&heads.decode(&mut buf).unwrap().unwrap().path[..], b"/3");
    assert!(buf.is_empty());
}

#[test]
fn the_slice_api_reports_what_it_consumed() {
    let data = [b"\r\n", GET, b"rest"].concat();
    let (h, consumed) = parse_request_head(&data, &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        (consumed, &h.path[..]),
        (2 + GET.len(), &b"/api/v1/orders/12?expand=items"[..])
    );
    assert_eq!(
        parse_request_head(&data[..20], &Limits::default()).unwrap(),
        None
    );
    // a HeadParser resumes where it stopped, and gives the same head
    let mut parser = HeadParser::new(Limits::default());
    for end in 1..data.len() - 4 {
        if end < 2 + GET.len() {
            assert_eq!(parser.parse(&data[..end]).unwrap(), None, "{end}");
        }
    }
    let (again, n) = parser.parse(&data).unwrap().unwrap();
    assert_eq!((again, n), (h, consumed));
}

#[test]
fn after_connection_close_later_bytes_are_dropped() {
    let mut conn = Conn::new(Limits::default());
    conn.feed(b"GET /1 HTTP/1.1\r\nHost: o\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n")
        .unwrap();
    assert!(conn.closed);
    conn.feed(b"more garbage\r\n\r\n").unwrap();
    assert_eq!(heads(&conn.events).len(), 1);
    assert!(!conn.pending());
}

#[test]
fn eof() {
    for data in [GET, b"", b"\r\n\r\n"] {
        let mut conn = Conn::new(Limits::default());
        conn.feed(data).unwrap();
        assert!(conn.eof().is_ok());
    }
    for cut in [
        &GET[..10],
        &POST_LENGTH[..POST_LENGTH.len() - 3],
        &POST_CHUNKED[..POST_CHUNKED.len() - 2],
    ] {
        let mut conn = Conn::new(Limits::default());
        conn.feed(cut).unwrap();
        assert_eq!(conn.eof().unwrap_err().status, 400);
    }
}

#[test]
fn expect_continue() {
    let cases: [(&[u8], &[u8], bool); 4] = [
        (b"1.1", b"100-continue", true),
        (b"1.1", b"100-Continue", true),
        (b"1.0", b"100-continue", false), // a server MUST ignore it in 1.0 (RFC 9110 §10.1.1)
        (b"1.1", b"something-else", false),
    ];
    for (version, expect, detected) in cases {
        let data = [
            b"PUT /f HTTP/",
            version,
            b"\r\nHost: o\r\nExpect: ",
            expect,
            b"\r\nContent-Length: 1\r\n\r\nx",
        ]
        .concat();
        assert_eq!(head(&data).expect_continue, detected);
    }
}

const WEBSOCKET: &[u8] = b"GET /chat HTTP/1.1\r\nHost: o\r\nConnection: keep-alive, Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn upgrade_detection() {
    let cases: [(&[u8], Option<&[u8]>); 5] = [
        (WEBSOCKET, Some(b"websocket")),
        (b"GET / HTTP/1.1\r\nHost: o\r\nUpgrade: websocket\r\n\r\n", None), // not in Connection
        (b"GET / HTTP/1.0\r\nHost: o\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: o\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", Some(b"h2c")),
        (
            b"GET / HTTP/1.1\r\nHost: o\r\nConnection: Upgrade\r\nUpgrade: a\r\nUpgrade: b/2\r\n\r\n",
            Some(b"a, b/2"),
        ),
    ];
    for (data, upgrade) in cases {
        assert_eq!(head(data).upgrade.as_deref(), upgrade);
    }
}

#[test]
fn the_bytes_after_an_upgrade_request_stay_in_the_buffer() {
    let mut buf = BytesMut::from(&[WEBSOCKET, b"\x81\x05hel"].concat()[..]);
    let mut heads = HeadParser::new(Limits::default());
    let h = heads.decode(&mut buf).unwrap().unwrap();
    assert_eq!(h.upgrade.as_deref(), Some(&b"websocket"[..]));
    let mut body = BodyDecoder::new(h.framing, heads.limits());
    assert!(matches!(
        body.decode(&mut buf).unwrap(),
        Some(BodyEvent::End(_))
    ));
    assert_eq!(&buf[..], b"\x81\x05hel"); // the start of the tunnel, for the proxy to forward
}

#[test]
fn a_refused_upgrade_continues_as_http() {
    let events = parse(&[WEBSOCKET, GET].concat());
    let hs = heads(&events);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[1].upgrade, None);
}

#[test]
fn request_bodies_round_trip() {
    // Random bodies, sent with Content-Length or chunked at random cuts,
    // then a GET; fed at random cuts.
    let mut rng = Rng::new(42);
    for round in 0..300 {
        let body: Vec<u8> = (0..rng.below(3000)).map(|_| rng.next() as u8).collect();
        let chunked = round % 2 == 0;
        let mut wire = BytesMut::new();
        if chunked {
            wire.extend_from_slice(
                b"POST /x HTTP/1.1\r\nHost: orders\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            for piece in random_split(&body, rng.next()) {
                encode_chunk(&piece, &mut wire);
            }
            wire.extend_from_slice(LAST_CHUNK);
        } else {
            wire.extend_from_slice(
                format!(
                    "POST /x HTTP/1.1\r\nHost: orders\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            wire.extend_from_slice(&body);
        }
        wire.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: orders\r\n\r\n");
        let (events, result) = run(&random_split(&wire, rng.next()), Limits::default());
        result.unwrap();
        let received: Vec<u8> = events
            .iter()
            .filter_map(|e| {
                if let Event::Data(d) = e {
                    Some(&d[..])
                } else {
                    None
                }
            })
            .flatten()
            .copied()
            .collect();
        assert_eq!(received, body);
        let hs = heads(&events);
        assert_eq!(hs.len(), 2);
        assert_eq!(hs[0].framing == Framing::Chunked, chunked);
        assert_eq!(&hs[1].path[..], b"/next");
        assert!(matches!(events.last(), Some(Event::End(_))));
    }
}

#[test]
fn every_llhttp_method_is_accepted() {
    let methods = [
        "DELETE",
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "OPTIONS",
        "TRACE",
        "COPY",
        "LOCK",
        "MKCOL",
        "MOVE",
        "PROPFIND",
        "PROPPATCH",
        "SEARCH",
        "UNLOCK",
        "BIND",
        "REBIND",
        "UNBIND",
        "ACL",
        "REPORT",
        "MKACTIVITY",
        "CHECKOUT",
        "MERGE",
        "M-SEARCH",
        "NOTIFY",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "PATCH",
        "PURGE",
        "MKCALENDAR",
        "LINK",
        "UNLINK",
        "SOURCE",
        "QUERY",
    ];
    for m in methods {
        let h = head(format!("{m} / HTTP/1.1\r\nHost: o\r\n\r\n").as_bytes());
        assert_eq!(h.method.as_str(), m);
    }
    for (m, status) in [
        ("PRI", 400),
        ("DESCRIBE", 400),
        ("FROB", 501),
        ("get", 501),
        ("CONNECT", 405),
    ] {
        let err = parse_request_head(
            format!("{m} / HTTP/1.1\r\nHost: o\r\n\r\n").as_bytes(),
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(err.status, status, "{m}");
    }
}
