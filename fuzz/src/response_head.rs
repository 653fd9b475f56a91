//! `response_head`: a response head from the app (or another sidecar),
//! through the sidecar's checks, on to the client, and parsed again there.
//!
//! The input is the bytes an upstream answers. Each is read as the answer to
//! a GET and to a HEAD (`parse_response_head`), then sent on as the server
//! does (`ResponseHead::downstream_framing` for an HTTP/1.1 and an HTTP/1.0
//! client, `encode_response_head` with the sidecar's Via; a 101 as the
//! tunnel's head), and what the client receives is parsed again.
//!
//! Invariants:
//! - no panic, no unbounded allocation;
//! - a head is accepted or refused whatever the bytes after it, and its
//!   prefixes are incomplete, never refused;
//! - an accepted head is framed one way (RFC 9112 §6.3): no body for HEAD,
//!   1xx, 204 and 304; else Transfer-Encoding (Content-Length dropped), or
//!   one Content-Length, or until close; reusable only when framed;
//! - what the client receives parses, whole, to the same meaning: the same
//!   status and reason, every end-to-end field in order (the hop-by-hop
//!   ones, and those Connection lists, dropped), the sidecar's Via last, one
//!   framing (never Content-Length with Transfer-Encoding, never two
//!   lengths), the same body length or chunked or until close, and
//!   persistence as decided.
use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use seawall_h1::{parse_response_head, ResponseBody, ResponseFraming, ResponseHead};

use crate::{members, show};

pub fn check(data: &[u8]) {
    for head_request in [false, true] {
        let parsed = parse_response_head(data, head_request);
        let Ok(Some((head, used))) = parsed else {
            if parsed.is_err() {
                // a refusal is about the head, not what comes after it
                if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                    let again = parse_response_head(&data[..end + 4], head_request);
                    assert!(
                        !matches!(again, Ok(Some(_))),
                        "refused only with a body: {again:?}"
                    );
                }
            }
            continue;
        };
        for cut in [used / 2, used - 1] {
            let prefix = parse_response_head(&data[..cut], head_request);
            assert!(
                matches!(prefix, Ok(None)),
                "a prefix of an accepted head: {prefix:?}"
            );
        }
        check_head(&head, head_request);
        if head.status == 101 {
            tunnel(&head);
        } else if head.status >= 200 {
            // (client.rs skips the other 1xx: they never reach the server)
            for client_http11 in [true, false] {
                send_on(&head, head_request, client_http11);
            }
        }
    }
}

fn check_head(head: &ResponseHead, head_request: bool) {
    let status = head.status;
    assert!((100..=999).contains(&status));
    let lengths: Vec<&HeaderValue> = head
        .headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .collect();
    let te = head.headers.contains_key(header::TRANSFER_ENCODING);
    let bodiless = head_request || status < 200 || status == 204 || status == 304;
    match head.body {
        ResponseBody::None => assert!(bodiless),
        ResponseBody::Length(n) => {
            assert!(!bodiless && !te && !lengths.is_empty());
            for value in &lengths {
                for member in members(value.as_bytes()) {
                    assert_eq!(
                        std::str::from_utf8(member)
                            .ok()
                            .and_then(|m| m.parse().ok()),
                        Some(n)
                    );
                }
            }
        }
        ResponseBody::Chunked => assert!(!bodiless && te && lengths.is_empty()),
        ResponseBody::Close => assert!(!bodiless && lengths.is_empty()),
    }
    if te {
        assert!(
            lengths.is_empty(),
            "Content-Length dropped beside Transfer-Encoding"
        );
    }
    if head.reusable {
        assert!(status != 101 && head.body != ResponseBody::Close);
    }
}

/// The server's `respond`: the framing downstream, then the head the client reads.
fn send_on(head: &ResponseHead, head_request: bool, client_http11: bool) {
    let (framing, reusable) = head.downstream_framing(client_http11);
    let keep_alive = reusable; // the client asked for keep-alive
    let reason = Some(head.reason.as_str()).filter(|r| !r.is_empty());
    let mut out = BytesMut::new();
    seawall_h1::encode_response_head(
        head.status,
        reason,
        &head.headers,
        framing.clone(),
        keep_alive,
        Some(seawall_h1::VIA),
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{head:?} with {framing:?} cannot be sent on: {e}"));
    let (got, used) = match parse_response_head(&out, head_request) {
        Ok(Some(parsed)) => parsed,
        // Each sidecar adds a Via: past 13 of them the room a response has
        // for its hops' fields is gone (HOP_FIELDS in response.rs).
        Err(e) if vias(head) > 13 && e.reason == "too many fields in the response head" => return,
        other => panic!(
            "what the client reads does not parse: {other:?}\n{}",
            show(&out)
        ),
    };
    let wire = || format!("{head:?}\n->\n{}", show(&out));
    assert_eq!(used, out.len(), "{}", wire());
    assert_eq!(got.status, head.status);
    if !head.reason.is_empty() {
        assert_eq!(got.reason, head.reason, "{}", wire());
    }
    // one framing field at most, and one length
    let count = |name: &HeaderName| got.headers.get_all(name).iter().count();
    assert!(
        count(&header::CONTENT_LENGTH) + count(&header::TRANSFER_ENCODING) <= 1,
        "{}",
        wire()
    );
    let expected_body = match (&framing, head.body) {
        (_, ResponseBody::None) => ResponseBody::None,
        (ResponseFraming::Length(n), _) => ResponseBody::Length(*n),
        (ResponseFraming::Chunked, _) => ResponseBody::Chunked,
        (ResponseFraming::Close, _) => ResponseBody::Close,
        (other, body) => panic!("{other:?} for a body {body:?}"),
    };
    assert_eq!(got.body, expected_body, "{}", wire());
    if let ResponseBody::Length(n) = head.body {
        assert_eq!(
            got.body,
            ResponseBody::Length(n),
            "the length goes on: {}",
            wire()
        );
    }
    assert_eq!(
        got.reusable,
        keep_alive && framing != ResponseFraming::Close,
        "{}",
        wire()
    );
    // the fields: end to end in order, then Via, then this hop's framing
    let mut expected = end_to_end(&head.headers);
    let drop_length = !matches!(framing, ResponseFraming::NoBody) || head.status == 204;
    if drop_length {
        expected.remove(header::CONTENT_LENGTH);
    }
    expected.append(
        header::VIA,
        HeaderValue::from_bytes(seawall_h1::VIA).expect("via"),
    );
    match framing {
        ResponseFraming::Length(n) => {
            expected.append(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        ResponseFraming::Chunked => {
            expected.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        _ => {}
    }
    if !keep_alive || framing == ResponseFraming::Close {
        expected.append(header::CONNECTION, HeaderValue::from_static("close"));
    }
    assert_eq!(got.headers, expected, "{}", wire());
}

fn vias(head: &ResponseHead) -> usize {
    head.headers.get_all(header::VIA).iter().count()
}

/// The server's `tunnel`: a 101 goes on with the Upgrade pair only (the
/// forwarder opens a tunnel only for a 101 naming a protocol: its Upgrade).
fn tunnel(head: &ResponseHead) {
    let Some(upgrade) = head.headers.get(header::UPGRADE).cloned() else {
        return;
    };
    let mut out = BytesMut::new();
    seawall_h1::encode_response_head(
        101,
        None,
        &head.headers,
        ResponseFraming::Upgrade(upgrade.clone()),
        true,
        Some(seawall_h1::VIA),
        &mut out,
    )
    .unwrap_or_else(|e| panic!("{head:?}: a 101 cannot be sent on: {e}"));
    let (got, _) = match parse_response_head(&out, false) {
        Ok(Some(parsed)) => parsed,
        Err(e) if vias(head) > 13 && e.reason == "too many fields in the response head" => return,
        other => panic!(
            "the 101 the client reads does not parse: {other:?}\n{}",
            show(&out)
        ),
    };
    let wire = || format!("{head:?}\n->\n{}", show(&out));
    assert_eq!(got.status, 101);
    assert_eq!(
        got.headers
            .get_all(header::UPGRADE)
            .iter()
            .collect::<Vec<_>>(),
        [&upgrade],
        "{}",
        wire()
    );
    assert_eq!(
        got.headers
            .get_all(header::CONNECTION)
            .iter()
            .collect::<Vec<_>>(),
        [&HeaderValue::from_static("upgrade")],
        "{}",
        wire()
    );
    assert!(
        !got.headers.contains_key(header::CONTENT_LENGTH),
        "{}",
        wire()
    );
    assert!(
        !got.headers.contains_key(header::TRANSFER_ENCODING),
        "{}",
        wire()
    );
}

/// The fields a proxy forwards (RFC 9110 §7.6.1): not Connection, not the
/// fields it lists (but Host and Content-Length), not Keep-Alive, TE,
/// Trailer, Transfer-Encoding, Upgrade or Proxy-*.
fn end_to_end(received: &HeaderMap) -> HeaderMap {
    let mut listed: Vec<Vec<u8>> = Vec::new();
    for value in received.get_all(header::CONNECTION) {
        for token in members(value.as_bytes()) {
            listed.push(token.to_ascii_lowercase());
        }
    }
    let mut kept = HeaderMap::new();
    for (name, value) in received {
        let text = name.as_str();
        let hop = matches!(
            text,
            "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
        ) || text.starts_with("proxy-");
        let listed = text != "host"
            && text != "content-length"
            && listed.iter().any(|t| t == text.as_bytes());
        if !hop && !listed {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}
