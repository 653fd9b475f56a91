//! `request_head`: a request head from a client, through the sidecar's
//! request path up to the bytes it sends upstream, and parsed again there.
//!
//! The input is the bytes a client sends. They are parsed with the codec
//! (`seawall_h1`) under the limits of `data/request-spec.json` (small, so
//! that short inputs reach them), whole and in two pieces as a connection
//! receives them. An accepted head then goes through the proxy's own steps
//! for four connections (outbound routed by Host, a per-destination
//! listener, inbound from an authenticated caller, inbound unauthenticated):
//! `forward::correlate` and `forward::prepare` (correlation; destination,
//! authorization, route, upgrade, deadline, fault), `forward::outgoing` (hop-by-hop and mesh
//! fields dropped, the mesh's own added), then the request head of one
//! attempt as `client::encode_head` writes it (the deadline left, the
//! attempt number, this hop's framing), which is parsed again as the next
//! hop (the destination's sidecar) would.
//!
//! Invariants:
//! - no panic, no unbounded allocation;
//! - whole or in two pieces, the codec accepts the same head, or none;
//! - an accepted head is coherent (path form, framing fields, Host);
//!   normalisation is idempotent (`normalize_path`, `authz::canonical_path`);
//! - a local answer (`Local`) can be encoded;
//! - what goes upstream parses again, whole, to the same meaning: the same
//!   method, path, authority and body framing; every end-to-end field of the
//!   client's, in order; no hop-by-hop field (but the Upgrade pair of a
//!   switch the route allows, never h2c); the mesh's fields exactly once and
//!   only the sidecar's (`x-seawall-peer` only from a certificate, one
//!   `traceparent` continuing the client's trace when it sent one valid
//!   value, the deadline never later than the client's or the route's).
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};
use seawall_h1::{Framing, HeadParser, Limits, RequestFraming, RequestHead, ResponseFraming};
use seawall_policy::rng::SplitMix64;
use seawall_proxy::authz::canonical_path;
use seawall_proxy::clock::Clock;
use seawall_proxy::events::{Events, Format};
use seawall_proxy::forward::{self, Down, Local, Prepared};
use seawall_proxy::metrics::Metrics;
use seawall_proxy::runtime::Runtime;
use seawall_proxy::spec::Spec;
use seawall_trace::{TraceParent, TraceState};

use crate::{fingerprint, members, show};

/// The spec the requests are served with.
const SPEC: &str = include_str!("../data/request-spec.json");

/// The proxy's clock reading for every request (seconds; any value works).
const NOW: f64 = 1000.0;

/// The caller of the authenticated inbound connection.
const CALLER: &str = "gateway";
const CALLER_ID: &str = "spiffe://fuzz.local/ns/default/sa/gateway";

/// What an app accepts (the next hop of an inbound request): its limits are
/// not the mesh's, so only the meaning is checked there. The next hop of an
/// outbound request is the destination's sidecar, with the runtime's
/// `inbound_limits`: what a client sent within the limits must get through it.
const APP: Limits = Limits {
    max_request_line: 1 << 20,
    max_headers: 10_000,
    max_header_bytes: 1 << 22,
    max_body: None,
    max_chunk_ext_bytes: 16 * 1024,
};

/// Fields the sidecar owns or rewrites: compared on their own, never as
/// "end-to-end fields forwarded as received".
const SIDECAR_FIELDS: [&str; 17] = [
    // hop-by-hop (RFC 9110 §7.6.1) and this hop's framing and expectation
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "content-length",
    // rewritten
    "host",
    "x-forwarded-for",
    "via",
    // the mesh's own
    "x-seawall-peer",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-seawall-deadline-ms",
];

/// Mesh request fields that are dropped and never added on a request.
const MESH_DROPPED: [&str; 3] = [
    "x-seawall-attempt", // added per attempt, checked on its own
    "x-seawall-fault-delay-ms",
    "x-seawall-fault-abort",
];

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let spec = Spec::from_json(SPEC).expect("data/request-spec.json is a valid spec");
        let clock = Clock::new();
        let events = Arc::new(Events::silent("fuzz", Format::Text, clock));
        Runtime::build(spec, Arc::new(Metrics::new()), events, clock)
            .expect("data/request-spec.json builds")
    })
}

/// The connections a request is tried on.
fn connections() -> [Down; 4] {
    let peer_text = Some(HeaderValue::from_static("10.1.2.3"));
    [
        // outbound, the destination named by Host (or the absolute-form target)
        Down {
            peer_text: peer_text.clone(),
            ..Down::default()
        },
        // a per-destination listener (no client address known)
        Down {
            destination: Some("payments".into()),
            ..Down::default()
        },
        // inbound, from a caller with a certificate
        Down {
            inbound: true,
            peer_text: peer_text.clone(),
            peer_id: Some(CALLER_ID.into()),
            peer_service: Some(CALLER.into()),
            ..Down::default()
        },
        // inbound, unauthenticated
        Down {
            inbound: true,
            peer_text,
            ..Down::default()
        },
    ]
}

pub fn check(data: &[u8]) {
    let rt = runtime();
    let whole = seawall_h1::parse_request_head(data, &rt.limits);
    let split = (fingerprint(data) % (data.len() as u64 + 1)) as usize;
    let pieces = in_two_pieces(data, split, rt.limits);
    match (&whole, &pieces) {
        (Ok(Some((a, n))), Ok(Some((b, m)))) => {
            assert_eq!(a, b, "the same head, whole or split at {split}");
            assert_eq!(n, m, "the same length, whole or split at {split}");
        }
        (Ok(Some(_)), _) | (_, Ok(Some(_))) => {
            panic!("whole: {whole:?}; split at {split}: {pieces:?}")
        }
        // A refusal's status may depend on how the bytes arrive (as in
        // Python: tests/conformance.rs), and so may its moment: a bad
        // request line is refused before its end, but only checked for its
        // shape once it has ended (the rest waits for the head's end).
        _ => {}
    }
    let Ok(Some((head, _))) = whole else {
        return;
    };
    check_head(&head);
    for down in connections() {
        through_the_proxy(rt, &down, &head);
    }
}

/// Parse as a connection does, with the bytes arriving in two reads.
fn in_two_pieces(
    data: &[u8],
    split: usize,
    limits: Limits,
) -> Result<Option<(RequestHead, usize)>, seawall_h1::Error> {
    let mut parser = HeadParser::new(limits);
    let mut buf = BytesMut::from(&data[..split]);
    if let Some(head) = parser.decode(&mut buf)? {
        return Ok(Some((head, split - buf.len())));
    }
    buf.extend_from_slice(&data[split..]);
    let head = parser.decode(&mut buf)?;
    Ok(head.map(|h| (h, data.len() - buf.len())))
}

/// What the codec promises about a head it accepted.
fn check_head(head: &RequestHead) {
    let path = &head.path;
    assert!(
        path.first() == Some(&b'/') || &path[..] == b"*",
        "path {:?}",
        show(path)
    );
    if path.first() == Some(&b'/') {
        let again = seawall_h1::normalize_path(path).expect("a normalized path is a path");
        assert_eq!(again, path, "normalize_path is idempotent");
        let canonical = canonical_path(path);
        assert_eq!(
            canonical_path(canonical.as_bytes()),
            canonical,
            "canonical_path is idempotent"
        );
        let segments: Vec<&str> = canonical.split('/').skip(1).collect();
        assert!(
            canonical.starts_with('/') && !segments.iter().any(|s| *s == "." || *s == ".."),
            "canonical path {canonical:?} of {:?}",
            show(path)
        );
    }
    let h = &head.headers;
    let lengths: Vec<&HeaderValue> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    let te = h.contains_key(header::TRANSFER_ENCODING);
    match head.framing {
        Framing::Length(n) => {
            // (`Content-Length: 06` is 6)
            let value = lengths
                .first()
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok());
            assert!(!te && lengths.len() == 1 && value.and_then(|v| v.parse().ok()) == Some(n));
        }
        Framing::Chunked => assert!(te && lengths.is_empty()),
        Framing::Empty => {
            assert!(
                !te && lengths
                    .iter()
                    .all(|v| v.as_bytes().iter().all(|&b| b == b'0'))
            );
        }
    }
    let http11 = head.version == Version::HTTP_11;
    assert!(http11 || head.version == Version::HTTP_10);
    assert!(
        head.authority.is_some() || !http11,
        "an HTTP/1.1 head has Host"
    );
    assert!(!head.expect_continue || http11);
    assert!(head.upgrade.is_none() || http11);
}

/// Steps 1-5 and one attempt's head, as the server and the forwarder run them.
fn through_the_proxy(rt: &Runtime, down: &Down, head: &RequestHead) {
    let mut rng = SplitMix64::new(fingerprint(&head.target));
    let (trace, span) = forward::correlate(rt, down, head, NOW, &mut rng);
    assert!(!span.is_recording(), "the fuzzed sidecar has no tracer");
    let prepared = match forward::prepare(rt, down, head, NOW, &trace, &span, &mut rng) {
        Ok(p) => p,
        Err(local) => {
            assert!(
                matches!(local.status, 400 | 403 | 502 | 504),
                "prepare: {local:?}"
            );
            answer_locally(head, &local);
            return;
        }
    };
    check_prepared(down, head, &prepared);
    let authority = prepared.dest.authority.as_ref();
    let out = match forward::outgoing(
        head,
        down,
        &prepared.mesh,
        prepared.destination(),
        authority,
    ) {
        Ok(out) => out,
        Err(local) => {
            // only for a path `http::Uri` refuses
            assert_eq!(local.status, 400, "outgoing: {local:?}");
            assert!(http::Uri::from_maybe_shared(head.path.clone()).is_err());
            answer_locally(head, &local);
            return;
        }
    };

    // One attempt's head (forward::attempt_once and client::encode_head).
    let attempt: u32 = if prepared.may_retry { 2 } else { 1 };
    let remaining_ms = ((prepared.deadline - NOW) * 1000.0).max(0.0) as u64;
    let (mut digits, mut attempt_digits) = ([0u8; 20], [0u8; 20]);
    let deadline_text = seawall_h1::decimal(remaining_ms, &mut digits);
    let attempt_text = seawall_h1::decimal(u64::from(attempt), &mut attempt_digits);
    let all: [(&str, &[u8]); 2] = [
        ("x-seawall-deadline-ms", deadline_text),
        ("x-seawall-attempt", attempt_text),
    ];
    let extra = &all[..];
    // forward::BodySource::take: an empty body of POST, PUT or PATCH says
    // so; a body with a length keeps it; a chunked one streams (buffered
    // whole it would go with its decoded length).
    let framing = match head.framing {
        Framing::Empty if matches!(head.method, Method::POST | Method::PUT | Method::PATCH) => {
            RequestFraming::Length(0)
        }
        Framing::Empty => RequestFraming::Empty,
        Framing::Length(n) => RequestFraming::Length(n),
        Framing::Chunked => RequestFraming::Chunked,
    };
    let mut wire = BytesMut::new();
    seawall_h1::encode_request_head(
        out.method.as_str(),
        &out.target,
        &out.headers,
        extra,
        framing,
        &mut wire,
    )
    .unwrap_or_else(|e| panic!("a routed request must encode: {e}"));

    // The next hop.
    let next_hop = if down.inbound {
        &APP
    } else {
        &rt.inbound_limits
    };
    let next = match seawall_h1::parse_request_head(&wire, next_hop) {
        Ok(Some((next, used))) => {
            assert_eq!(used, wire.len(), "one head, nothing after it");
            next
        }
        other => panic!(
            "the forwarded head does not parse: {other:?}\n{}",
            show(&wire)
        ),
    };
    let mut expected = out.headers.clone();
    for (name, value) in extra {
        expected.append(
            HeaderName::from_static(name),
            HeaderValue::from_bytes(value).expect("digits"),
        );
    }
    match framing {
        RequestFraming::Length(n) => {
            expected.append(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        RequestFraming::Chunked => {
            expected.append(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        RequestFraming::Empty => {}
    }
    assert_eq!(
        next.headers,
        expected,
        "the fields as sent\n{}",
        show(&wire)
    );
    same_meaning(down, head, &prepared, &next, remaining_ms, attempt);
}

/// A local answer is a response the server can write (server.rs `write_local`).
fn answer_locally(head: &RequestHead, local: &Local) {
    // as server.rs `write_local` writes it: the reason phrase, a line of JSON
    let destination = head.authority.as_deref().map(String::from_utf8_lossy);
    let body = seawall_h1::local_body(local.error(), destination.as_deref(), &local.detail);
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("a local body is JSON: {e}: {}", show(&body)));
    assert_eq!(doc["reason"].as_str(), Some(local.detail.as_str()));
    assert_eq!(doc["error"].as_str(), Some(local.error()));
    assert_eq!(doc["destination"].as_str(), destination.as_deref());
    assert_eq!(body.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    let mut headers = HeaderMap::new();
    for (n, v) in &local.extra {
        headers.append(n.clone(), v.clone());
    }
    let mut out = BytesMut::new();
    seawall_h1::encode_response_head(
        local.status,
        Some(seawall_h1::canonical_reason(local.status)).filter(|r| !r.is_empty()),
        &headers,
        ResponseFraming::Length(body.len() as u64),
        head.keep_alive,
        Some(seawall_h1::VIA),
        &mut out,
    )
    .unwrap_or_else(|e| panic!("a local answer must encode: {local:?}: {e}"));
}

/// Steps 1-5 decided what they say they decide.
fn check_prepared(down: &Down, head: &RequestHead, p: &Prepared) {
    let policy = &p.route.data;
    // 4. deadline: the route's timeout, or the client's, whichever is sooner
    assert!(p.deadline <= NOW + policy.timeout);
    for value in head.headers.get_all(&forward::DEADLINE) {
        if let Some(ms) = forward::parse_deadline_ms(value.as_bytes()) {
            assert!(p.deadline <= NOW + ms as f64 / 1000.0);
        }
    }
    assert!(
        !down.inbound || p.deadline > NOW,
        "inbound: expired is a 504"
    );
    // 3. correlation
    let count = |name: &str| p.mesh.iter().filter(|(n, _)| n == name).count();
    assert_eq!(count("x-request-id"), 1);
    assert_eq!(count("traceparent"), 1);
    assert!(count("tracestate") <= 1);
    assert_eq!(count("x-seawall-peer"), usize::from(down.peer_id.is_some()));
}

/// The next hop sees the request the client sent, as the mesh forwards it.
fn same_meaning(
    down: &Down,
    head: &RequestHead,
    p: &Prepared,
    next: &RequestHead,
    remaining_ms: u64,
    attempt: u32,
) {
    let wire = || format!("{head:?}\n->\n{next:?}");
    assert_eq!(next.method, head.method, "{}", wire());
    assert_eq!(next.path, head.path, "{}", wire());
    assert_eq!(next.target, head.path, "sent in origin-form: {}", wire());
    assert_eq!(next.version, Version::HTTP_11);
    if head.authority.is_some() {
        assert_eq!(next.authority, head.authority, "{}", wire());
    } else {
        // HTTP/1.0 without Host: the destination's name (forward::outgoing)
        let name = p.destination().as_bytes();
        assert_eq!(next.authority.as_deref(), Some(name), "{}", wire());
    }
    let body = |f: Framing| match f {
        Framing::Length(0) | Framing::Empty => None,
        Framing::Length(n) => Some(Some(n)),
        Framing::Chunked => Some(None),
    };
    assert_eq!(body(next.framing), body(head.framing), "{}", wire());
    assert!(next.keep_alive && !next.expect_continue, "{}", wire());

    let got = &next.headers;
    let sent = &head.headers;
    // Connection's own list: hop-by-hop too (never Host or Content-Length).
    let mut listed: HashSet<HeaderName> = HashSet::new();
    for value in sent.get_all(header::CONNECTION) {
        for token in members(value.as_bytes()) {
            if let Ok(name) = HeaderName::from_bytes(token) {
                if name != header::HOST && name != header::CONTENT_LENGTH {
                    listed.insert(name);
                }
            }
        }
    }
    // every end-to-end field, in order
    for name in sent.keys() {
        let owned = SIDECAR_FIELDS.contains(&name.as_str())
            || MESH_DROPPED.contains(&name.as_str())
            || name.as_str().starts_with("proxy-");
        if owned {
            continue;
        }
        let forwarded: Vec<&HeaderValue> = got.get_all(name).iter().collect();
        if listed.contains(name) {
            assert!(
                forwarded.is_empty(),
                "{name} listed in Connection: {}",
                wire()
            );
        } else {
            let received: Vec<&HeaderValue> = sent.get_all(name).iter().collect();
            assert_eq!(forwarded, received, "{name}: {}", wire());
        }
    }
    // nothing hop-by-hop, but a switch the route allows
    for name in got.keys() {
        let text = name.as_str();
        assert!(
            !matches!(
                text,
                "keep-alive" | "te" | "trailer" | "http2-settings" | "expect"
            ) && !text.starts_with("proxy-")
                && !MESH_DROPPED[1..].contains(&text),
            "{name} forwarded: {}",
            wire()
        );
    }
    match &next.upgrade {
        None => assert!(
            !got.contains_key(header::UPGRADE) && !got.contains_key(header::CONNECTION),
            "{}",
            wire()
        ),
        Some(offered) => {
            assert_eq!(got.get_all(header::CONNECTION).iter().count(), 1);
            assert!(head.upgrade.is_some(), "a switch the client asked for");
            let allowed = &p.route.data.upgrades;
            for protocol in members(offered) {
                let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
                assert!(!name.eq_ignore_ascii_case(b"h2c"), "h2c is never tunnelled");
                assert!(
                    allowed
                        .iter()
                        .any(|a| a.as_bytes().eq_ignore_ascii_case(protocol)
                            || (!a.contains('/') && a.as_bytes().eq_ignore_ascii_case(name))),
                    "{} not allowed by {:?}: {}",
                    show(protocol),
                    allowed,
                    wire()
                );
            }
        }
    }
    // Via: the client's, then this hop's
    let mut via: Vec<&[u8]> = if listed.contains(&header::VIA) {
        Vec::new()
    } else {
        sent.get_all(header::VIA)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    };
    let own: &[u8] = if head.version == Version::HTTP_10 {
        b"1.0 seawall"
    } else {
        b"1.1 seawall"
    };
    via.push(own);
    let got_via: Vec<&[u8]> = got
        .get_all(header::VIA)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    assert_eq!(got_via, via, "{}", wire());
    // X-Forwarded-For: the client's, merged (an empty field adds no member),
    // then the client's address
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut chain: Vec<&[u8]> = if listed.contains(&xff) {
        Vec::new()
    } else {
        sent.get_all(&xff)
            .iter()
            .map(HeaderValue::as_bytes)
            .filter(|v| !v.is_empty())
            .collect()
    };
    if let Some(peer) = &down.peer_text {
        chain.push(peer.as_bytes());
    }
    let got_xff: Vec<&[u8]> = got
        .get_all(&xff)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    if chain.is_empty() {
        assert!(got_xff.is_empty(), "{}", wire());
    } else {
        assert_eq!(got_xff, [chain.join(&b", "[..])], "{}", wire());
    }
    // the mesh's fields: once each, the sidecar's values only
    let only = |name: &str| -> Option<&[u8]> {
        let mut all = got.get_all(name).iter();
        let first = all.next();
        assert!(all.next().is_none(), "{name} twice: {}", wire());
        first.map(HeaderValue::as_bytes)
    };
    assert_eq!(
        only("x-seawall-peer"),
        down.peer_id.as_deref().map(str::as_bytes),
        "a client cannot claim an identity: {}",
        wire()
    );
    assert!(only("x-request-id").is_some_and(|v| !v.is_empty()));
    let deadline = only("x-seawall-deadline-ms").expect("a deadline");
    assert_eq!(deadline, remaining_ms.to_string().as_bytes());
    assert!(remaining_ms as f64 <= p.route.data.timeout * 1000.0);
    for value in head.headers.get_all(&forward::DEADLINE) {
        if let Some(ms) = forward::parse_deadline_ms(value.as_bytes()) {
            assert!(remaining_ms <= ms, "the deadline only shrinks: {}", wire());
        }
    }
    let attempt_field = only("x-seawall-attempt");
    assert_eq!(
        attempt_field,
        Some(attempt.to_string().as_bytes()),
        "{}",
        wire()
    );
    // the trace: continued from one valid traceparent, else a new one
    let parent = TraceParent::parse(only("traceparent").expect("a traceparent"))
        .expect("the sidecar's traceparent parses");
    let mut fields = sent.get_all("traceparent").iter();
    let theirs = match (fields.next(), fields.next()) {
        (Some(one), None) => TraceParent::parse(one.as_bytes()),
        _ => None,
    };
    match theirs {
        Some(theirs) => {
            assert_eq!(parent.trace_id(), theirs.trace_id(), "{}", wire());
            assert_ne!(parent.parent_id(), theirs.parent_id());
            let state = TraceState::parse_fields(
                sent.get_all("tracestate").iter().map(HeaderValue::as_bytes),
            )
            .filter(|s| !s.is_empty());
            let forwarded = only("tracestate").map(|v| TraceState::parse(v).expect("parses"));
            assert_eq!(forwarded, state, "{}", wire());
        }
        None => assert!(only("tracestate").is_none(), "a new trace has no state"),
    }
    // The codec's own hop-by-hop rule agrees with the forwarder's.
    let mut stripped = sent.clone();
    seawall_h1::strip_hop_by_hop(&mut stripped);
    for name in sent.keys() {
        if stripped.contains_key(name) || name == header::CONNECTION || name == header::UPGRADE {
            continue;
        }
        assert!(
            !got.contains_key(name)
                || SIDECAR_FIELDS.contains(&name.as_str())
                || name == "x-seawall-attempt",
            "strip_hop_by_hop removes {name}, the forwarder kept it: {}",
            wire()
        );
    }
}
