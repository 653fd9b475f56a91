//! `trace_context`: `traceparent` and `tracestate` values from a client,
//! parsed, continued and written again as the sidecar does.
//!
//! The input is lines: the first is a `traceparent` value, each of the
//! others one `tracestate` field.
//!
//! Invariants:
//! - no panic, no unbounded allocation;
//! - `TraceParent::parse` accepts exactly what a reference parser written
//!   from the W3C grammar accepts (trace context level 1 §3.2, with the
//!   version rules of §3.2.4), with the same fields; a value it accepts is
//!   written back byte for byte (version 00) or as its four fields (a
//!   higher version), and that parses to the same value; a child keeps the
//!   trace, changes the span, keeps the `sampled` and `random` flags and
//!   clears the reserved ones (Level 2);
//! - `TraceState::parse_fields` accepts exactly what the reference does
//!   (Level 2's key grammar and the value grammar as regular expressions,
//!   32 members, a repeated key kept), with the same entries in order; its text is
//!   canonical and parses to itself; `with_entry` and `truncated` keep the
//!   bounds they promise and re-parse;
//! - `continue_trace` continues exactly one valid `traceparent` (several
//!   fields restart the trace), forwards the state only then, and keeps the
//!   last non-empty `x-request-id`.
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};
use regex::bytes::Regex;
use seawall_policy::rng::SplitMix64;
use seawall_trace::{
    continue_trace, TraceParent, TraceState, MAX_TRACESTATE_LENGTH, MAX_TRACESTATE_MEMBERS,
    TRACEPARENT_LEN,
};

use crate::{fingerprint, show, trim_ows};

pub fn check(data: &[u8]) {
    let mut lines = data.split(|&b| b == b'\n');
    let parent = lines.next().unwrap_or_default();
    let states: Vec<&[u8]> = lines.collect();
    let mut rng = SplitMix64::new(fingerprint(data));

    // traceparent
    let parsed = TraceParent::parse(parent);
    let reference = reference_traceparent(parent);
    match (&parsed, &reference) {
        (Some(p), Some((version, trace, span, flags))) => {
            assert_eq!(
                (
                    p.version(),
                    p.trace_id().to_string(),
                    p.parent_id().to_string(),
                    p.flags()
                ),
                (*version, text(trace), text(span), *flags),
                "{}",
                show(parent)
            );
            let written = p.encode();
            assert_eq!(TraceParent::parse(&written), Some(*p), "round trip");
            if *version == 0 {
                assert_eq!(&written[..], trim_ows(parent), "written as received");
            }
            let child = p.child(&mut rng);
            assert_eq!(child.trace_id(), p.trace_id());
            assert_ne!(child.parent_id(), p.parent_id());
            assert_eq!((child.version(), child.flags()), (0, p.flags() & 3));
            assert_eq!(TraceParent::parse(&child.encode()), Some(child));
        }
        (None, None) => {}
        _ => panic!(
            "traceparent {:?}: parsed {parsed:?}, the reference says {reference:?}",
            show(parent)
        ),
    }

    // tracestate
    let state = TraceState::parse_fields(states.iter().copied());
    let reference = reference_tracestate(&states);
    match (&state, &reference) {
        (Some(s), Some(entries)) => {
            let got: Vec<(&str, &str)> = s.iter().collect();
            let want: Vec<(String, String)> =
                entries.iter().map(|(k, v)| (text(k), text(v))).collect();
            let want: Vec<(&str, &str)> = want.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            assert_eq!(got, want, "{states:?}");
            assert_eq!(s.len(), entries.len());
            let canonical: Vec<Vec<u8>> = entries
                .iter()
                .map(|(k, v)| [*k, b"=", *v].concat())
                .collect();
            assert_eq!(s.as_bytes(), &canonical.join(&b","[..])[..]);
            assert_eq!(
                TraceState::parse(s.as_str()).as_ref(),
                Some(s),
                "round trip"
            );
            mutations(s, data.len());
        }
        (None, None) => {}
        _ => panic!("tracestate {states:?}: parsed {state:?}, the reference says {reference:?}"),
    }

    // continue_trace, with one traceparent field and with two
    for copies in [1, 2] {
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(parent) {
            for _ in 0..copies {
                headers.append("traceparent", v.clone());
            }
        }
        let mut values = Vec::new();
        for field in &states {
            if let Ok(v) = HeaderValue::from_bytes(field) {
                values.push(v.clone());
                headers.append("tracestate", v);
            }
        }
        if let Ok(id) = HeaderValue::from_bytes(trim_ows(parent)) {
            headers.append("x-request-id", id);
        }
        let continued = continue_trace(&headers, &mut rng);
        let valid = headers.get_all("traceparent").iter().count() == 1 && parsed.is_some();
        assert_eq!(continued.continued, valid, "{}", show(parent));
        if valid {
            let parsed = parsed.expect("valid");
            assert_eq!(continued.traceparent.trace_id(), parsed.trace_id());
            let state = TraceState::parse_fields(values.iter().map(HeaderValue::as_bytes))
                .filter(|s| !s.is_empty());
            assert_eq!(continued.tracestate, state);
        } else {
            assert_eq!(continued.tracestate, None);
            assert!(continued.traceparent.sampled());
            assert!(
                continued.traceparent.random_trace_id(),
                "a trace this hop starts is random"
            );
        }
        assert_eq!(continued.traceparent.version(), 0);
        assert!(TraceParent::parse(&continued.traceparent.encode()).is_some());
        match headers.get_all("x-request-id").iter().next_back() {
            Some(kept) if !kept.is_empty() => assert_eq!(continued.request_id, kept.as_bytes()),
            _ => assert!(!continued.request_id.is_empty()),
        }
        assert!(HeaderValue::from_maybe_shared(continued.request_id.clone()).is_ok());
    }
}

/// What the sidecar (or a vendor) does to a state: add its entry, cut to length.
fn mutations(s: &TraceState, size: usize) {
    let max = size % (MAX_TRACESTATE_LENGTH + 64);
    let added = s
        .with_entry("seawall", "00f067aa0ba902b7", max)
        .expect("a valid entry");
    assert_eq!(added.iter().next(), Some(("seawall", "00f067aa0ba902b7")));
    assert!(added.len() <= MAX_TRACESTATE_MEMBERS);
    assert!(
        added.as_str().len() <= max.max("seawall=00f067aa0ba902b7".len()),
        "{added:?} longer than {max}"
    );
    assert_eq!(TraceState::parse(added.as_str()).as_ref(), Some(&added));
    assert!(added.iter().skip(1).all(|e| s.iter().any(|f| f == e)));
    // a repeated key received is replaced whole by this hop's entry
    assert_eq!(added.iter().filter(|(k, _)| *k == "seawall").count(), 1);
    let cut = s.truncated(max);
    assert!(cut.as_str().len() <= max || cut.as_str() == s.as_str() && s.as_str().len() <= max);
    assert_eq!(TraceState::parse(cut.as_str()).as_ref(), Some(&cut));
    // whole entries removed, the others in order
    let mut rest = s.iter();
    for entry in cut.iter() {
        assert!(
            rest.any(|e| e == entry),
            "{cut:?} is not a sub-list of {s:?}"
        );
    }
    let without = s.without("seawall");
    assert!(without.get("seawall").is_none());
}

// ------------------------------------------------------------------ references

/// Bytes the grammars keep ASCII, as text.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `traceparent` as W3C Trace Context level 1 writes it: OWS around the
/// value; `version "-" trace-id "-" parent-id "-" trace-flags`, lowercase
/// hex of 2, 32, 16 and 2 digits; `ff` is not a version; all-zero ids are
/// invalid; version 00 has exactly these fields, a higher version may have
/// more after a dash. Returns the fields as text.
fn reference_traceparent(value: &[u8]) -> Option<(u8, &[u8], &[u8], u8)> {
    let value = trim_ows(value);
    let fields: Vec<&[u8]> = value.split(|&b| b == b'-').collect();
    let hex = |f: &[u8], n: usize| {
        f.len() == n && f.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let byte = |f: &[u8]| u8::from_str_radix(std::str::from_utf8(f).ok()?, 16).ok();
    if fields.len() < 4 || !hex(fields[0], 2) || fields[0] == b"ff" {
        return None;
    }
    if fields[0] == b"00" && fields.len() != 4 {
        return None;
    }
    let (trace, span) = (fields[1], fields[2]);
    if !hex(trace, 32) || !hex(span, 16) || !hex(fields[3], 2) {
        return None;
    }
    if trace.iter().all(|&b| b == b'0') || span.iter().all(|&b| b == b'0') {
        return None;
    }
    debug_assert!(value.len() == TRACEPARENT_LEN || fields.len() > 4);
    Some((byte(fields[0])?, trace, span, byte(fields[3])?))
}

/// Level 2's key grammar and the value grammar, as Python's `re` patterns.
fn grammar() -> &'static (Regex, Regex) {
    static GRAMMAR: OnceLock<(Regex, Regex)> = OnceLock::new();
    GRAMMAR.get_or_init(|| {
        let key = r"^[a-z0-9][a-z0-9_\-*/@]{0,255}$";
        let value = r"^[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$";
        let build = |p: &str| {
            regex::bytes::RegexBuilder::new(p)
                .unicode(false)
                .build()
                .expect("a valid pattern")
        };
        (build(key), build(value))
    })
}

/// `tracestate` fields as one list (several fields are one list): members
/// split on `,`, OWS trimmed, empty ones skipped; each `key=value` (split at
/// the first `=`) in the grammar; a key may repeat (Level 2); at most 32.
fn reference_tracestate<'a>(fields: &[&'a [u8]]) -> Option<Vec<(&'a [u8], &'a [u8])>> {
    let (key_re, value_re) = grammar();
    let mut entries: Vec<(&[u8], &[u8])> = Vec::new();
    for field in fields {
        for member in field.split(|&b| b == b',').map(trim_ows) {
            if member.is_empty() {
                continue;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !key_re.is_match(key) || !value_re.is_match(value) {
                return None;
            }
            if entries.len() == MAX_TRACESTATE_MEMBERS {
                return None;
            }
            entries.push((key, value));
        }
    }
    Some(entries)
}
