//! `continue_trace` on request headers: the twin of the Python sidecar's step
//! 3 (`Forwarder._mesh_headers`) and of `continue_trace`'s tests in
//! tests/telemetry/test_tracecontext.py, plus a deterministic no-panic loop.

use http::{HeaderMap, HeaderName, HeaderValue};
use seawall_policy::rng::{Random, SplitMix64};
use seawall_trace::{
    continue_trace, continue_trace_sampled, new_request_id, sampled_at, Continued, TraceId,
    TraceParent, TraceState, REQUEST_ID_HEADER, REQUEST_ID_LEN, TRACEPARENT, TRACESTATE,
};

const SUITE_TRACE_ID: &str = "12345678901234567890123456789012";
const SUITE_PARENT_ID: &str = "1234567890123456";
const SUITE: &str = "00-12345678901234567890123456789012-1234567890123456-01";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("header name"),
            HeaderValue::from_str(value).expect("header value"),
        );
    }
    map
}

fn run(pairs: &[(&str, &str)]) -> Continued {
    continue_trace(&headers(pairs), &mut SplitMix64::new(99))
}

fn trace_id(c: &Continued) -> String {
    c.traceparent.trace_id().to_string()
}

fn is_new_request_id(id: &[u8]) -> bool {
    id.len() == REQUEST_ID_LEN
        && id.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && id[12] == b'4'
        && matches!(id[16], b'8' | b'9' | b'a' | b'b')
}

#[test]
fn continues_with_a_child() {
    let c = run(&[("traceparent", SUITE), ("tracestate", "foo=1,bar=2")]);
    assert!(c.continued);
    assert_eq!(trace_id(&c), SUITE_TRACE_ID);
    assert_ne!(c.traceparent.parent_id().to_string(), SUITE_PARENT_ID);
    assert_eq!(c.traceparent.version(), 0);
    assert!(c.traceparent.sampled());
    assert_eq!(
        c.tracestate.as_ref().map(TraceState::as_str),
        Some("foo=1,bar=2")
    );
}

#[test]
fn one_valid_traceparent_keeps_the_trace_id_and_the_sampled_and_random_flags() {
    // sampled (0x01) and random (0x02) are kept; every other bit is cleared
    for (flags, expected) in [
        ("00", 0),
        ("01", 1),
        ("02", 2),
        ("03", 3),
        ("09", 1),
        ("fe", 2),
    ] {
        let value = format!("00-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-{flags}");
        let c = run(&[("traceparent", &value)]);
        assert!(c.continued);
        assert_eq!(trace_id(&c), SUITE_TRACE_ID);
        assert_ne!(c.traceparent.parent_id().to_string(), SUITE_PARENT_ID);
        assert_eq!(c.traceparent.flags(), expected, "flags {flags}");
        assert_eq!(c.tracestate, None);
    }
}

#[test]
fn starts_a_trace_when_traceparent_is_missing() {
    let c = run(&[("tracestate", "foo=1")]);
    assert!(!c.continued);
    assert_eq!(c.traceparent.version(), 0);
    assert!(c.traceparent.sampled());
    assert_eq!(c.tracestate, None);
    assert!(!run(&[]).continued);
}

#[test]
fn restarts_on_invalid_traceparent_and_drops_tracestate() {
    for bad in [
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", // no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // all-zero parent id
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "garbage",
        "",
    ] {
        let c = run(&[("traceparent", bad), ("tracestate", "foo=1")]);
        assert!(!c.continued, "{bad}");
        assert!(!bad.to_lowercase().contains(&trace_id(&c)), "{bad}");
        assert_eq!(c.tracestate, None, "{bad}");
    }
}

#[test]
fn two_traceparent_fields_make_a_new_trace_without_tracestate() {
    let other = "00-12345678901234567890123456789011-1234567890123456-01";
    for pair in [
        [SUITE, other],
        [SUITE, SUITE],
        [SUITE, "garbage"],
        ["garbage", SUITE],
    ] {
        let c = run(&[
            ("traceparent", pair[0]),
            ("tracestate", "foo=1"),
            ("traceparent", pair[1]),
        ]);
        assert!(!c.continued, "{pair:?}");
        assert_ne!(trace_id(&c), SUITE_TRACE_ID);
        assert_ne!(trace_id(&c), &other[3..35]);
        assert_eq!(c.tracestate, None);
    }
    // Three, in any case of the name.
    let c = run(&[
        ("TraceParent", SUITE),
        ("traceparent", SUITE),
        ("TRACEPARENT", SUITE),
    ]);
    assert!(!c.continued);
}

#[test]
fn keeps_traceparent_when_tracestate_is_bad_or_empty() {
    for state in ["foo=1,Foo=2", "", " , ", "FOO=1", "a=1\t2", "@a=1"] {
        let c = run(&[("traceparent", SUITE), ("tracestate", state)]);
        assert!(c.continued, "{state:?}");
        assert_eq!(trace_id(&c), SUITE_TRACE_ID);
        assert_eq!(c.tracestate, None, "{state:?}");
    }
}

#[test]
fn tracestate_with_obs_text_is_dropped() {
    let mut map = headers(&[("traceparent", SUITE)]);
    let value = HeaderValue::from_bytes(b"foo=caf\xe9").expect("obs-text is a valid value");
    map.append(TRACESTATE, value);
    let c = continue_trace(&map, &mut SplitMix64::new(1));
    assert!(c.continued);
    assert_eq!(c.tracestate, None);
}

#[test]
fn downgrades_a_higher_version() {
    let value = format!("cc-{SUITE_TRACE_ID}-{SUITE_PARENT_ID}-01-what-the-future-will-be-like");
    let c = run(&[("traceparent", &value), ("tracestate", "foo=1")]);
    assert!(c
        .traceparent
        .to_string()
        .starts_with(&format!("00-{SUITE_TRACE_ID}-")));
    assert_eq!(c.tracestate.as_ref().and_then(|s| s.get("foo")), Some("1"));
}

#[test]
fn matches_header_names_in_any_case() {
    for name in ["TraceParent", "TrAcEpArEnT", "TRACEPARENT"] {
        let c = run(&[(name, SUITE), ("TraceState", "foo=1"), ("other", "x")]);
        assert_eq!(trace_id(&c), SUITE_TRACE_ID);
        assert_eq!(c.tracestate.as_ref().and_then(|s| s.get("foo")), Some("1"));
    }
    for name in ["trace-parent", "trace.parent", "traceparents"] {
        assert_ne!(trace_id(&run(&[(name, SUITE)])), SUITE_TRACE_ID);
    }
}

#[test]
fn tracestate_fields_are_one_list() {
    let c = run(&[
        ("TraceParent", SUITE),
        ("tracestate", "foo=1,bar=2"),
        ("tracestate", "rojo=1,congo=2"),
        ("TRACESTATE", "baz=3"),
    ]);
    assert_eq!(
        c.tracestate.as_ref().map(TraceState::as_str),
        Some("foo=1,bar=2,rojo=1,congo=2,baz=3")
    );
    // Duplicate keys across fields are forwarded as received (Level 2).
    let dup = run(&[
        ("traceparent", SUITE),
        ("tracestate", "foo=1"),
        ("tracestate", "foo=2"),
    ]);
    assert!(dup.continued);
    assert_eq!(
        dup.tracestate.as_ref().map(TraceState::as_str),
        Some("foo=1,foo=2")
    );
}

#[test]
fn is_deterministic_with_an_injected_rng() {
    for pairs in [&[("traceparent", SUITE)][..], &[][..]] {
        let map = headers(pairs);
        let a = continue_trace(&map, &mut SplitMix64::new(1));
        assert_eq!(a, continue_trace(&map, &mut SplitMix64::new(1)));
        let mut dynamic: Box<dyn Random> = Box::new(SplitMix64::new(1));
        assert_eq!(a, continue_trace(&map, dynamic.as_mut()));
    }
}

#[test]
fn request_id_is_kept_when_present_and_created_when_absent() {
    let kept = run(&[("x-request-id", "abc-123")]);
    assert_eq!(&kept.request_id[..], b"abc-123");
    let kept = run(&[("X-Request-Id", "abc-123"), ("traceparent", SUITE)]);
    assert_eq!(&kept.request_id[..], b"abc-123");
    for pairs in [
        &[][..],
        &[("x-request-id", "")][..],
        &[("traceparent", SUITE)][..],
    ] {
        let created = run(pairs);
        assert!(
            is_new_request_id(&created.request_id),
            "{:?}",
            created.request_id
        );
    }
    // Distinct ids from one source.
    let mut rng = SplitMix64::new(5);
    let ids: std::collections::HashSet<_> = (0..1000)
        .map(|_| continue_trace(&HeaderMap::new(), &mut rng).request_id)
        .collect();
    assert_eq!(ids.len(), 1000);
    // The Python sidecar reads the fields in order and keeps the last one.
    let last = run(&[("x-request-id", "first"), ("x-request-id", "second")]);
    assert_eq!(&last.request_id[..], b"second");
    let emptied = run(&[("x-request-id", "first"), ("x-request-id", "")]);
    assert!(is_new_request_id(&emptied.request_id));
}

#[test]
fn new_request_id_has_pythons_format() {
    let mut rng = SplitMix64::new(8);
    for _ in 0..100 {
        let id = new_request_id(&mut rng);
        assert!(is_new_request_id(id.as_bytes()), "{id}");
    }
}

// ------------------------------------------------------------ no-panic loop

fn pick<'a, T>(rng: &mut SplitMix64, items: &'a [T]) -> &'a T {
    &items[(rng.next_u64() % items.len() as u64) as usize]
}

/// A header value built from `seed` with up to four byte mutations.
fn mutate(rng: &mut SplitMix64, seed: &str) -> Vec<u8> {
    let alphabet = b"0123456789abcdefABF-=,@ \t.x\x01\x7f\xe9\xff";
    let mut value = seed.as_bytes().to_vec();
    for _ in 0..rng.next_u64() % 5 {
        let pos = (rng.next_u64() % (value.len() as u64 + 1)) as usize;
        let byte = *pick(rng, alphabet);
        match rng.next_u64() % 3 {
            0 => value.insert(pos, byte),
            1 if pos < value.len() => {
                value.remove(pos);
            }
            _ if pos < value.len() => value[pos] = byte,
            _ => value.push(byte),
        }
    }
    value
}

#[test]
fn mutated_headers_never_panic_and_keep_the_invariants() {
    let traceparents = [
        SUITE,
        "cc-12345678901234567890123456789012-1234567890123456-01-ext",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    ];
    let tracestates = ["foo=1,bar=2", "rojo=00f067aa0ba902b7", "a@b=c d", ""];
    let request_ids = ["abc-123", "", "x"];
    let mut rng = SplitMix64::new(0x5ea_3a11);
    let mut continued = 0;
    let mut with_state = 0;
    for _ in 0..20_000 {
        let mut map = HeaderMap::new();
        let mut sent_parents = Vec::new();
        let mut sent_states = Vec::new();
        let mut last_request_id = None;
        for _ in 0..rng.next_u64() % 6 {
            let kind = rng.next_u64() % 10;
            let (name, seeds) = match kind {
                0..=4 => (TRACEPARENT, &traceparents[..]),
                5..=7 => (TRACESTATE, &tracestates[..]),
                _ => (REQUEST_ID_HEADER, &request_ids[..]),
            };
            let seed = *pick(&mut rng, seeds);
            let value = mutate(&mut rng, seed);
            // Only what a header map can hold (no control characters but tab).
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                continue;
            };
            if name == TRACEPARENT {
                sent_parents.push(TraceParent::parse(&value));
            } else if name == TRACESTATE {
                sent_states.push(value.as_bytes().to_vec());
            } else {
                last_request_id = Some(value.as_bytes().to_vec());
            }
            map.append(name, value);
        }

        let c = continue_trace(&map, &mut rng);

        // The traceparent sent on is always a valid version-00 value.
        assert_eq!(c.traceparent.version(), 0);
        assert_eq!(
            TraceParent::parse(&c.traceparent.encode()),
            Some(c.traceparent)
        );
        match sent_parents[..] {
            [Some(parent)] => {
                assert!(c.continued);
                assert_eq!(c.traceparent.trace_id(), parent.trace_id());
                assert_ne!(c.traceparent.parent_id(), parent.parent_id());
                assert_eq!(c.traceparent.flags(), parent.flags() & 3);
                // The fields, joined with "," as Python joins them, parse the same.
                let joined = sent_states.join(&b","[..]);
                let expected = TraceState::parse(&joined[..]).filter(|s| !s.is_empty());
                assert_eq!(c.tracestate, expected);
                continued += 1;
            }
            _ => {
                assert!(!c.continued);
                assert!(c.traceparent.sampled());
                assert_eq!(c.tracestate, None);
            }
        }
        if let Some(state) = &c.tracestate {
            assert!(!state.is_empty());
            assert_eq!(TraceState::parse(state.as_str()).as_ref(), Some(state));
            with_state += 1;
        }
        match last_request_id {
            Some(id) if !id.is_empty() => assert_eq!(&c.request_id[..], &id[..]),
            _ => assert!(is_new_request_id(&c.request_id)),
        }
    }
    assert!(continued > 1000, "{continued}");
    assert!(with_state > 300, "{with_state}");
}

#[test]
fn the_callers_span_is_the_parent_of_this_hop() {
    let c = run(&[("traceparent", SUITE)]);
    assert_eq!(
        c.caller.map(|id| id.to_string()).as_deref(),
        Some(SUITE_PARENT_ID)
    );
    assert_eq!(run(&[]).caller, None);
}

#[test]
fn head_sampling_decides_on_the_trace_ids_random_bits() {
    let id = |low: u64| TraceId::from_u128(0xffff_u128 << 112 | u128::from(low)).expect("id");
    let half = 1u64 << 55; // the middle of the 56 random bits
    assert!(sampled_at(id(half - 1), 0.5));
    assert!(!sampled_at(id(half), 0.5));
    // the bits above the last 56 do not count
    assert!(sampled_at(id(0), 0.000_001));
    assert!(sampled_at(id(half), 1.0));
    assert!(!sampled_at(id(0), 0.0));
    assert!(!sampled_at(id(0), f64::NAN));
}

#[test]
fn a_trace_started_here_is_sampled_at_the_probability_and_a_callers_decision_is_kept() {
    let mut rng = SplitMix64::new(7);
    let empty = headers(&[]);
    let n = 4000;
    let sampled = (0..n)
        .filter(|_| {
            continue_trace_sampled(&empty, &mut rng, 0.25)
                .traceparent
                .sampled()
        })
        .count();
    // 1000 expected; 5 standard deviations (27) either side
    assert!((850..=1150).contains(&sampled), "{sampled} of {n}");
    for _ in 0..100 {
        let c = continue_trace_sampled(&empty, &mut rng, 0.25);
        assert!(c.traceparent.random_trace_id());
        assert_eq!(
            c.traceparent.sampled(),
            sampled_at(c.traceparent.trace_id(), 0.25)
        );
    }
    // parent-based: a sampled caller stays sampled at 0%, an unsampled one at 100%
    let kept = continue_trace_sampled(&headers(&[("traceparent", SUITE)]), &mut rng, 0.0);
    assert!(kept.traceparent.sampled());
    let off = "00-12345678901234567890123456789012-1234567890123456-00";
    let kept = continue_trace_sampled(&headers(&[("traceparent", off)]), &mut rng, 1.0);
    assert!(!kept.traceparent.sampled());
}
