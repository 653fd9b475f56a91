//! Port of tests/telemetry/test_tracecontext.py (the parts that are not
//! Python's context variables): parse, format, new, child, tracestate.
//!
//! The valid and invalid vectors live in tests/cases.json (checked by
//! tests/cases.rs and by the Python tests); the hypothesis tests become
//! deterministic loops over a seeded SplitMix64.

use seawall_policy::rng::{Sequence, SplitMix64};
use seawall_trace::{
    SpanId, TraceId, TraceParent, TraceState, TraceStateError, FLAG_RANDOM, FLAG_SAMPLED,
    MAX_TRACESTATE_LENGTH, MAX_TRACESTATE_MEMBERS, REQUEST_ID_HEADER, TRACEPARENT, TRACEPARENT_LEN,
    TRACESTATE,
};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const SPEC_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SPEC_NOT_SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

fn trace_id(hex: &str) -> TraceId {
    TraceId::from_hex(hex.as_bytes()).expect("valid trace id")
}

fn span_id(hex: &str) -> SpanId {
    SpanId::from_hex(hex.as_bytes()).expect("valid span id")
}

fn tp(version: u8, flags: u8) -> TraceParent {
    TraceParent::from_parts(version, trace_id(TRACE_ID), span_id(PARENT_ID), flags)
        .expect("valid parts")
}

fn is_lower_hex(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// ------------------------------------------------------------- reference oracle

/// A direct transcription of the spec's rules (the Python test's regular
/// expression, `[ \t]*vv-t{32}-p{16}-ff(-.*)?[ \t]*`), written differently from
/// the parser: leading OWS, fixed fields, then a remainder that is either all
/// OWS or starts with a dash.
fn oracle(value: &[u8]) -> Option<(u8, String, String, u8)> {
    let start = value.iter().position(|b| *b != b' ' && *b != b'\t')?;
    let s = &value[start..];
    if s.len() < TRACEPARENT_LEN {
        return None;
    }
    let (head, rest) = s.split_at(TRACEPARENT_LEN);
    let dashes = [2, 35, 52];
    for (i, b) in head.iter().enumerate() {
        let ok = if dashes.contains(&i) {
            *b == b'-'
        } else {
            is_lower_hex(&[*b])
        };
        if !ok {
            return None;
        }
    }
    let extension = if rest.iter().all(|b| *b == b' ' || *b == b'\t') {
        false
    } else if rest.first() == Some(&b'-') {
        true
    } else {
        return None;
    };
    let text = std::str::from_utf8(head).ok()?;
    let version = u8::from_str_radix(&text[0..2], 16).ok()?;
    let flags = u8::from_str_radix(&text[53..55], 16).ok()?;
    if version == 0xff || (version == 0 && extension) {
        return None;
    }
    let (trace, parent) = (&text[3..35], &text[36..52]);
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    Some((version, trace.to_owned(), parent.to_owned(), flags))
}

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

/// As the Python `mutated_traceparents` strategy: a near-valid value with up
/// to three single-character insertions, deletions or replacements.
fn mutated_traceparent(rng: &mut SplitMix64) -> Vec<u8> {
    let upper = TRACE_ID.to_uppercase();
    let version = *pick(rng, &["00", "01", "cc", "fe", "ff", "0A", "0x"]);
    let trace = *pick(
        rng,
        &[TRACE_ID, "00000000000000000000000000000000", upper.as_str()],
    );
    let parent = *pick(rng, &[PARENT_ID, "0000000000000000"]);
    let flags = *pick(rng, &["00", "01", "ff", "FF"]);
    let rest = *pick(rng, &["", "-", "-ext", ".ext", "x", " ", "\t", "\n"]);
    let mut text = format!("{version}-{trace}-{parent}-{flags}{rest}").into_bytes();
    let chars: Vec<&[u8]> = [
        "0", "1", "9", "a", "b", "f", "A", "B", "F", "-", " ", "\t", ".", "x", "\u{e9}",
    ]
    .iter()
    .map(|s| s.as_bytes())
    .collect();
    for _ in 0..rng.next_u64() % 4 {
        let pos = (rng.next_u64() % (text.len() as u64 + 1)) as usize;
        let ch = *pick(rng, &chars);
        match rng.next_u64() % 3 {
            0 => {
                text.splice(pos..pos, ch.iter().copied());
            }
            1 => {
                if pos < text.len() {
                    text.remove(pos);
                }
            }
            _ => {
                let end = (pos + 1).min(text.len());
                text.splice(pos..end, ch.iter().copied());
            }
        }
    }
    text
}

// ------------------------------------------------------------------ traceparent

#[test]
fn header_names() {
    assert_eq!(TRACEPARENT.as_str(), "traceparent");
    assert_eq!(TRACESTATE.as_str(), "tracestate");
    assert_eq!(REQUEST_ID_HEADER.as_str(), "x-request-id");
}

#[test]
fn parse_spec_examples() {
    for (value, flags, sampled) in [(SPEC_SAMPLED, 1, true), (SPEC_NOT_SAMPLED, 0, false)] {
        let parsed = TraceParent::parse(value).expect("spec example");
        assert_eq!(parsed, tp(0, flags));
        assert_eq!(parsed.sampled(), sampled);
        assert_eq!(parsed.to_string(), value);
        assert_eq!(&parsed.encode()[..], value.as_bytes());
    }
}

#[test]
fn parse_accepts_any_flags_byte() {
    for flags in 0..=255u8 {
        let value = format!("00-{TRACE_ID}-{PARENT_ID}-{flags:02x}");
        let parsed = TraceParent::parse(&value).expect("any flags byte");
        assert_eq!(parsed.flags(), flags);
        assert_eq!(parsed.sampled(), flags & 1 == 1);
    }
}

#[test]
fn parse_accepts_every_version_but_ff() {
    for version in 0..=255u8 {
        let value = format!("{version:02x}-{TRACE_ID}-{PARENT_ID}-01");
        let parsed = TraceParent::parse(&value);
        assert_eq!(parsed.is_some(), version != 0xff, "{value}");
        let extended = format!("{value}-future");
        assert_eq!(
            TraceParent::parse(&extended).map(|t| t.version()),
            (version != 0 && version != 0xff).then_some(version),
            "{extended}"
        );
    }
    assert_eq!(
        TraceParent::from_parts(0xff, trace_id(TRACE_ID), span_id(PARENT_ID), 1),
        None
    );
}

#[test]
fn higher_versions_are_downgraded_by_child() {
    let value = format!("cc-{TRACE_ID}-{PARENT_ID}-01-what-the-future-will-be-like");
    let parsed = TraceParent::parse(&value).expect("higher version");
    assert_eq!(parsed, tp(0xcc, 1));
    let child = parsed.child(&mut SplitMix64::new(1));
    assert_eq!(child.version(), 0);
    assert_eq!(child.trace_id(), trace_id(TRACE_ID));
}

#[test]
fn parse_rejects_non_ascii_bytes_that_are_not_utf8() {
    // Latin-1 or raw bytes in a header value (obs-text) are not hex digits.
    let mut value = SPEC_SAMPLED.as_bytes().to_vec();
    value[10] = 0xe9;
    assert_eq!(TraceParent::parse(&value[..]), None);
    // After the dash that ends a higher version's fields, nothing is looked at.
    let mut higher = format!("cc-{TRACE_ID}-{PARENT_ID}-01-").into_bytes();
    higher.extend_from_slice(&[0xff, 0x00, 0x80]);
    assert_eq!(TraceParent::parse(&higher[..]), Some(tp(0xcc, 1)));
}

#[test]
fn format_parse_round_trip() {
    let mut rng = SplitMix64::new(11);
    for _ in 0..5000 {
        let version = (rng.next_u64() % 255) as u8; // 0..=254
        let flags = rng.next_u64() as u8;
        let trace = TraceId::random(&mut rng);
        let parent = SpanId::random(&mut rng);
        let value = TraceParent::from_parts(version, trace, parent, flags).expect("not ff");
        let text = value.encode();
        assert_eq!(text.len(), 55);
        assert_eq!(TraceParent::parse(&text), Some(value));
        let padded = format!(" \t{value}\t ");
        assert_eq!(TraceParent::parse(&padded), Some(value));
        assert_eq!(
            (value.trace_id().to_string(), value.parent_id().to_string()),
            (
                String::from_utf8_lossy(&text[3..35]).into_owned(),
                String::from_utf8_lossy(&text[36..52]).into_owned()
            )
        );
    }
}

#[test]
fn parse_agrees_with_spec_oracle() {
    let mut rng = SplitMix64::new(2024);
    let mut valid = 0;
    for _ in 0..50_000 {
        let value = mutated_traceparent(&mut rng);
        let got = TraceParent::parse(&value[..]).map(|t| {
            (
                t.version(),
                t.trace_id().to_string(),
                t.parent_id().to_string(),
                t.flags(),
            )
        });
        assert_eq!(got, oracle(&value), "{:?}", String::from_utf8_lossy(&value));
        valid += usize::from(got.is_some());
    }
    assert!(
        valid > 300,
        "the mutations should leave many valid values: {valid}"
    );
}

#[test]
fn parse_never_panics_and_round_trips() {
    let mut rng = SplitMix64::new(5);
    let alphabet = b"0123456789abcdefABCDEF- \t\r\n.x\xff\x00";
    for _ in 0..50_000 {
        let len = (rng.next_u64() % 70) as usize;
        let value: Vec<u8> = (0..len).map(|_| *pick(&mut rng, alphabet)).collect();
        if let Some(parsed) = TraceParent::parse(&value[..]) {
            assert_eq!(TraceParent::parse(&parsed.encode()), Some(parsed));
        }
    }
}

#[test]
fn traceparent_is_copy_and_hashable() {
    let value = TraceParent::new(&mut SplitMix64::new(1), true);
    let copy = value;
    let set: std::collections::HashSet<TraceParent> = [
        value,
        copy,
        TraceParent::parse(&value.encode()).expect("own format"),
    ]
    .into();
    assert_eq!(set.len(), 1);
}

#[test]
fn new_starts_a_trace() {
    let mut rng = SplitMix64::new(3);
    let value = TraceParent::new(&mut rng, true);
    assert_eq!(value.version(), 0);
    assert!(is_lower_hex(&value.trace_id().to_hex()));
    assert!(is_lower_hex(&value.parent_id().to_hex()));
    assert!(value.sampled());
    // Level 2: the trace-id was drawn at random, and says so
    assert!(value.random_trace_id());
    assert_eq!(value.flags(), FLAG_SAMPLED | FLAG_RANDOM);
    assert_eq!(TraceParent::new(&mut rng, false).flags(), FLAG_RANDOM);
    let ids: std::collections::HashSet<TraceId> = (0..1000)
        .map(|_| TraceParent::new(&mut rng, true).trace_id())
        .collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn new_is_deterministic_with_an_injected_rng() {
    let a = TraceParent::new(&mut SplitMix64::new(7), true);
    assert_eq!(a, TraceParent::new(&mut SplitMix64::new(7), true));
    assert_ne!(a, TraceParent::new(&mut SplitMix64::new(8), true));
    // Through a trait object, as the proxy holds its source.
    let mut boxed: Box<dyn seawall_policy::rng::Random> = Box::new(SplitMix64::new(7));
    assert_eq!(TraceParent::new(boxed.as_mut(), true), a);
}

#[test]
fn ids_are_never_all_zero() {
    // Four draws of zero make a zero trace id, then two a zero span id.
    let mut zeros_first = Sequence::new(vec![
        0.0, 0.0, 0.0, 0.0, 0.25, 0.5, 0.75, 0.125, 0.0, 0.0, 0.3,
    ]);
    let value = TraceParent::new(&mut zeros_first, true);
    assert_ne!(value.trace_id().to_u128(), 0);
    assert_ne!(value.parent_id().to_u64(), 0);
    let child = value.child(&mut Sequence::new(vec![0.0, 0.0, 0.6]));
    assert_ne!(child.parent_id().to_u64(), 0);
}

#[test]
fn child_keeps_trace_id_and_changes_parent_id() {
    let parent = TraceParent::parse(SPEC_SAMPLED).expect("spec example");
    let mut rng = SplitMix64::new(4);
    let children: Vec<TraceParent> = (0..100).map(|_| parent.child(&mut rng)).collect();
    assert!(children.iter().all(|c| c.trace_id() == trace_id(TRACE_ID)));
    assert!(children.iter().all(|c| c.parent_id() != span_id(PARENT_ID)));
    let parents: std::collections::HashSet<SpanId> =
        children.iter().map(TraceParent::parent_id).collect();
    assert_eq!(parents.len(), 100);
    assert!(children.iter().all(|c| c.version() == 0 && c.flags() == 1));
    assert_eq!(
        parent.child(&mut SplitMix64::new(3)),
        parent.child(&mut SplitMix64::new(3))
    );
}

#[test]
fn child_keeps_the_sampled_and_random_flags_and_clears_reserved_bits() {
    let mut rng = SplitMix64::new(6);
    let unsampled = TraceParent::parse(SPEC_NOT_SAMPLED).expect("spec example");
    assert_eq!(unsampled.child(&mut rng).flags(), 0);
    assert_eq!(tp(0, 0x09).child(&mut rng).flags(), 0x01);
    assert_eq!(tp(0, 0xfe).child(&mut rng).flags(), 0x02);
    assert_eq!(tp(0, 0xff).child(&mut rng).flags(), 0x03);
    assert_eq!(tp(0, 0x02).child(&mut rng).flags(), FLAG_RANDOM);
}

#[test]
fn child_can_change_the_sampled_flag() {
    let mut rng = SplitMix64::new(6);
    assert_eq!(tp(0, 1).child_with_sampled(&mut rng, false).flags(), 0);
    assert_eq!(tp(0, 1).child_with_sampled(&mut rng, true).flags(), 1);
    // the random flag stays with the trace-id it describes
    assert_eq!(
        tp(0, 3).child_with_sampled(&mut rng, false).flags(),
        FLAG_RANDOM
    );
    assert!(tp(0, 0).child_with_sampled(&mut rng, true).sampled());
}

#[test]
fn child_never_reuses_the_parent_id() {
    // Seeded so that the first draw equals the parent id.
    let first = SpanId::random(&mut SplitMix64::new(5));
    let parent = TraceParent::from_parts(0, trace_id(TRACE_ID), first, 1).expect("valid parts");
    assert_ne!(parent.child(&mut SplitMix64::new(5)).parent_id(), first);
    // A source stuck on one value still gives a different id, without hanging.
    let stuck = TraceParent::from_parts(0, trace_id(TRACE_ID), SpanId::from_u64(1).expect("1"), 1)
        .expect("valid parts");
    assert_eq!(
        stuck
            .child(&mut Sequence::new(vec![0.0]))
            .parent_id()
            .to_u64(),
        2
    );
}

#[test]
fn write_to_appends_without_formatting_machinery() {
    let value = tp(0, 1);
    let mut buf = bytes::BytesMut::with_capacity(64);
    buf.extend_from_slice(b"traceparent: ");
    value.write_to(&mut buf);
    assert_eq!(&buf[..], format!("traceparent: {SPEC_SAMPLED}").as_bytes());
}

// ------------------------------------------------------------------- tracestate

fn state(entries: &[(&str, &str)]) -> TraceState {
    TraceState::from_entries(entries.iter().copied()).expect("valid entries")
}

fn keys(state: &TraceState) -> Vec<&str> {
    state.iter().map(|(k, _)| k).collect()
}

#[test]
fn tracestate_spec_examples() {
    let ts = TraceState::parse("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE").expect("spec example");
    assert_eq!(
        ts.iter().collect::<Vec<_>>(),
        [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")]
    );
    assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
    assert_eq!(ts.get("absent"), None);
    assert_eq!(ts.len(), 2);
    assert_eq!(ts.as_str(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    // The spec's walk-through: Congo re-enters and rewrites its entry at the front.
    let again = ts
        .with_entry("congo", "ucfJifl5GOE", MAX_TRACESTATE_LENGTH)
        .expect("valid entry");
    assert_eq!(again.as_str(), "congo=ucfJifl5GOE,rojo=00f067aa0ba902b7");
}

#[test]
fn tracestate_empty_header_is_an_empty_state() {
    for value in ["", " ", "\t", ",", " , \t,"] {
        let ts = TraceState::parse(value).expect("empty is valid");
        assert_eq!(ts, TraceState::default());
        assert!(ts.is_empty());
        assert_eq!(ts.as_str(), "");
        assert_eq!(ts.iter().count(), 0);
    }
    assert_eq!(TraceState::parse_fields([]), Some(TraceState::default()));
}

#[test]
fn tracestate_32_members_is_the_limit() {
    let value = (1..=MAX_TRACESTATE_MEMBERS)
        .map(|i| format!("bar{i:02}={i:02}"))
        .collect::<Vec<_>>()
        .join(",");
    let ts = TraceState::parse(&value).expect("32 members");
    assert_eq!(ts.len(), 32);
    assert_eq!(ts.get("bar01"), Some("01"));
    assert_eq!(ts.as_str(), value);
    assert_eq!(TraceState::parse(&format!("{value},bar33=33")), None);
    // Across fields as well.
    assert_eq!(
        TraceState::parse_fields([value.as_bytes(), b"x=1".as_slice()]),
        None
    );
}

fn random_key(rng: &mut SplitMix64) -> String {
    const FIRST: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const REST: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_-*/";
    let mut key = String::new();
    if rng.next_u64() % 2 == 0 {
        key.push(*pick(rng, FIRST) as char);
        for _ in 0..rng.next_u64() % 21 {
            key.push(*pick(rng, REST) as char);
        }
    } else {
        key.push(*pick(rng, b"abcdefghijklmnopqrstuvwxyz0123456789") as char);
        for _ in 0..rng.next_u64() % 11 {
            key.push(*pick(rng, REST) as char);
        }
        key.push('@');
        key.push(*pick(rng, FIRST) as char);
        for _ in 0..rng.next_u64() % 14 {
            key.push(*pick(rng, REST) as char);
        }
    }
    key
}

fn random_value(rng: &mut SplitMix64) -> String {
    let chr = |b: u8| b != b',' && b != b'=';
    let mut value: String = (0..rng.next_u64() % 31)
        .map(|_| 0x20 + (rng.next_u64() % 95) as u8)
        .filter(|b| chr(*b))
        .map(char::from)
        .collect();
    let mut last = b' ';
    while last == b' ' || !chr(last) {
        last = 0x21 + (rng.next_u64() % 94) as u8;
    }
    value.push(char::from(last));
    value
}

#[test]
fn tracestate_round_trip() {
    let mut rng = SplitMix64::new(17);
    for _ in 0..2000 {
        let mut entries: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.next_u64() % (MAX_TRACESTATE_MEMBERS as u64 + 1) {
            let key = random_key(&mut rng);
            if entries.iter().all(|(k, _)| *k != key) {
                entries.push((key, random_value(&mut rng)));
            }
        }
        let ts = TraceState::from_entries(entries.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .expect("valid entries");
        assert_eq!(TraceState::parse(ts.as_str()).as_ref(), Some(&ts));
        let spaced = entries
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(TraceState::parse(&spaced).as_ref(), Some(&ts));
        for (k, v) in &entries {
            assert_eq!(ts.get(k), Some(v.as_str()));
        }
    }
}

#[test]
fn tracestate_parse_never_panics_and_round_trips() {
    let mut rng = SplitMix64::new(23);
    let alphabet = b"ab0@=, \t*/_-\x01\x7f\xe9Z";
    for _ in 0..50_000 {
        let len = (rng.next_u64() % 40) as usize;
        let value: Vec<u8> = (0..len).map(|_| *pick(&mut rng, alphabet)).collect();
        if let Some(ts) = TraceState::parse(&value[..]) {
            assert_eq!(TraceState::parse(ts.as_str()).as_ref(), Some(&ts));
            assert!(ts.len() <= MAX_TRACESTATE_MEMBERS);
        }
    }
}

#[test]
fn with_entry_puts_new_keys_first_and_keeps_the_rest_in_order() {
    let ts = TraceState::parse("a=1,b=2,c=3").expect("valid");
    let put = |k: &str, v: &str| {
        ts.with_entry(k, v, MAX_TRACESTATE_LENGTH)
            .expect("valid entry")
            .into_string()
    };
    assert_eq!(put("seawall", "x"), "seawall=x,a=1,b=2,c=3");
    assert_eq!(put("b", "20"), "b=20,a=1,c=3");
    assert_eq!(put("c", "3"), "c=3,a=1,b=2");
    assert_eq!(ts.as_str(), "a=1,b=2,c=3"); // immutable
    assert_eq!(
        TraceState::default()
            .with_entry("k@sys", "v", MAX_TRACESTATE_LENGTH)
            .expect("valid entry")
            .as_str(),
        "k@sys=v"
    );
}

#[test]
fn with_entry_rejects_invalid_entries() {
    let long_key = "a".repeat(257);
    let long_value = "x".repeat(257);
    for (key, value, error) in [
        ("Bad", "v", TraceStateError::InvalidKey),
        ("", "v", TraceStateError::InvalidKey),
        (long_key.as_str(), "v", TraceStateError::InvalidKey),
        ("ok", "", TraceStateError::InvalidValue),
        ("ok", "a,b", TraceStateError::InvalidValue),
        ("ok", "a=b", TraceStateError::InvalidValue),
        ("ok", "trailing ", TraceStateError::InvalidValue),
        ("ok", long_value.as_str(), TraceStateError::InvalidValue),
    ] {
        assert_eq!(
            TraceState::default().with_entry(key, value, MAX_TRACESTATE_LENGTH),
            Err(error),
            "{key:?}={value:?}"
        );
    }
    assert!(TraceStateError::InvalidKey.to_string().contains("key"));
    assert!(TraceStateError::InvalidValue.to_string().contains("value"));
}

#[test]
fn with_entry_drops_from_the_end_beyond_32_members() {
    let names: Vec<String> = (0..32).map(|i| format!("k{i:02}")).collect();
    let full = TraceState::from_entries(names.iter().map(|k| (k.as_str(), "v"))).expect("32");
    let grown = full
        .with_entry("new", "v", MAX_TRACESTATE_LENGTH)
        .expect("valid");
    assert_eq!(grown.len(), 32);
    assert_eq!(keys(&grown)[..2], ["new", "k00"]);
    assert_eq!(grown.get("k31"), None);
    assert_eq!(grown.get("k30"), Some("v"));
    // Updating an existing key needs no room.
    let moved = full
        .with_entry("k31", "w", MAX_TRACESTATE_LENGTH)
        .expect("valid");
    assert_eq!(moved.len(), 32);
    assert_eq!(moved.iter().next(), Some(("k31", "w")));
}

#[test]
fn with_entry_truncates_to_512_characters_large_entries_first() {
    let (one, two, three, four) = (
        "1".repeat(60),
        "2".repeat(60),
        "3".repeat(60),
        "4".repeat(60),
    );
    let big = "x".repeat(150); // entry "bigN=" + 150 chars: longer than 128
    let ts = state(&[
        ("a", &one),
        ("big1", &big),
        ("b", &two),
        ("big2", &big),
        ("c", &three),
        ("d", &four),
    ]);
    assert!(ts.as_str().len() > MAX_TRACESTATE_LENGTH);
    let fifty = "s".repeat(50);
    let out = ts
        .with_entry("seawall", &fifty, MAX_TRACESTATE_LENGTH)
        .expect("valid");
    assert!(out.as_str().len() <= MAX_TRACESTATE_LENGTH);
    // big2 (the last large entry) goes first; that is enough here.
    assert_eq!(keys(&out), ["seawall", "a", "big1", "b", "c", "d"]);
    let smaller = ts.with_entry("seawall", &fifty, 300).expect("valid");
    // Both large entries go, then entries from the end until it fits.
    assert_eq!(keys(&smaller), ["seawall", "a", "b", "c"]);
    assert!(smaller.as_str().len() <= 300);
}

#[test]
fn with_entry_keeps_the_new_entry_even_when_it_alone_is_too_long() {
    let long = "v".repeat(256);
    let ts = state(&[("a", "1")])
        .with_entry("k", &long, 100)
        .expect("valid");
    assert_eq!(ts.iter().collect::<Vec<_>>(), [("k", long.as_str())]);
}

#[test]
fn truncated_and_without() {
    let value = "v".repeat(100);
    let names: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    // Entries of 103 characters each.
    let ts = TraceState::from_entries(names.iter().map(|k| (k.as_str(), value.as_str())))
        .expect("valid");
    assert_eq!(
        keys(&ts.truncated(MAX_TRACESTATE_LENGTH)),
        ["k0", "k1", "k2", "k3"]
    );
    assert!(ts.truncated(250).as_str().len() <= 250);
    assert_eq!(ts.truncated(0), TraceState::default());
    let small = state(&[("a", "1")]);
    assert_eq!(small.truncated(MAX_TRACESTATE_LENGTH), small);
    assert_eq!(ts.without("k2").get("k2"), None);
    assert_eq!(ts.without("k2").len(), 5);
    assert_eq!(ts.without("absent"), ts);
}

#[test]
fn tracestate_keeps_duplicate_keys_and_a_mutation_replaces_them_all() {
    // Level 2: a key received twice is forwarded as received
    let ts = TraceState::from_entries([("a", "1"), ("b", "2"), ("a", "3")]).expect("valid");
    assert_eq!(ts.as_str(), "a=1,b=2,a=3");
    assert_eq!(ts.get("a"), Some("1"));
    let parsed = TraceState::parse("a=1, b=2,a=3").expect("valid");
    assert_eq!(parsed, ts);
    // this hop's own entry replaces every entry of its key, in front
    let mutated = ts
        .with_entry("a", "9", MAX_TRACESTATE_LENGTH)
        .expect("valid");
    assert_eq!(mutated.as_str(), "a=9,b=2");
    assert_eq!(ts.without("a").as_str(), "b=2");
}

#[test]
fn tracestate_constructor_validates() {
    let too_many: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
    for (entries, error) in [
        (vec![("A", "1")], TraceStateError::InvalidKey),
        (vec![("a", "1,2")], TraceStateError::InvalidValue),
        (
            too_many.iter().map(|k| (k.as_str(), "v")).collect(),
            TraceStateError::TooManyMembers,
        ),
    ] {
        assert_eq!(TraceState::from_entries(entries), Err(error));
    }
}
