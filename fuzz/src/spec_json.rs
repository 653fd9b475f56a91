//! `spec_json`: the config document Python hands to the Rust core, read and
//! built as the sidecar does, then used.
//!
//! The input is the document's text (`Spec::from_json`), when it starts with
//! `{`. Anything else is read as edits to a valid document
//! (`data/request-spec.json`), three bytes each (at most 48): which value (two bytes,
//! over every number, string, boolean and null in the document) becomes
//! which of a list of values that matter (the third byte: negative, zero,
//! huge and fractional numbers, regexes that do not compile or are huge,
//! names, weights, ...), so that most inputs reach past the JSON syntax.
//! The edited document goes through the same checks as text. A spec that parses
//! is built into a [`Runtime`] (routes and their regexes, splits, mirrors,
//! faults, breakers, budgets, outlier detection, balancers, pools), and
//! everything the request path derives from it is exercised once: each
//! duration as a `Duration` and as a deadline on the clock (as server.rs,
//! cluster.rs and forward.rs turn them), route selection for a few requests,
//! fault decisions, split choices, backoff delays, authorization, and an
//! endpoint update.
//!
//! Invariants: no panic, no unbounded allocation; a spec is refused with an
//! error, or every duration in it is finite, >= 0 and at most
//! `spec::MAX_DURATION`; every delay and deadline derived from it is finite
//! and not negative.
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use seawall_policy::rng::SplitMix64;
use seawall_proxy::clock::Clock;
use seawall_proxy::events::{Events, Format};
use seawall_proxy::metrics::Metrics;
use seawall_proxy::route::decide_fault;
use seawall_proxy::runtime::{Destination, Runtime};
use seawall_proxy::spec::{self, Spec, MAX_DURATION};
use serde_json::Value;

use crate::fingerprint;

pub fn check(data: &[u8]) {
    if data.first() == Some(&b'{') {
        document(data);
    } else {
        document(edited(data).as_bytes());
    }
}

/// The base document with `data`'s edits applied, as text.
fn edited(data: &[u8]) -> String {
    let (base, leaves) = base();
    let mut doc = base.clone();
    // (a few dozen edits reach every combination worth trying; more only cost time)
    for edit in data.chunks_exact(3).take(MAX_EDITS) {
        let which = usize::from(u16::from_be_bytes([edit[0], edit[1]]));
        let (path, kind) = &leaves[which % leaves.len()];
        let choices: &[&str] = match kind {
            Kind::Number => NUMBERS,
            Kind::String => STRINGS,
            Kind::Other => OTHERS,
        };
        let choice = choices[usize::from(edit[2]) % choices.len()];
        if let (Some(slot), Ok(value)) = (at(&mut doc, path), serde_json::from_str(choice)) {
            *slot = value;
        }
    }
    doc.to_string()
}

/// The most edits one input makes.
const MAX_EDITS: usize = 48;

/// One step into a document: a key or an index.
enum Step {
    Key(String),
    Index(usize),
}

fn at<'a>(doc: &'a mut Value, path: &[Step]) -> Option<&'a mut Value> {
    path.iter().try_fold(doc, |v, step| match step {
        Step::Key(k) => v.get_mut(k.as_str()),
        Step::Index(i) => v.get_mut(*i),
    })
}

/// What a value in the base document was, so that an edit mostly keeps its type.
enum Kind {
    Number,
    String,
    Other,
}

/// Numbers that matter: signs, zeros, bounds, fractions, overflows.
const NUMBERS: &[&str] = &[
    "-1",
    "0",
    "-0.0",
    "0.5",
    "1e-300",
    "1e300",
    "31536000",
    "31536000.5",
    "4294967295",
    "4294967296",
    "18446744073709551616",
    "65535",
    "65536",
    "1000000",
    "1000001",
    "100",
    "100.5",
    "1e16",
    "2",
    "10",
    "-5",
    "null",
];

/// Strings that matter: regexes (invalid, huge, Python-only), names, methods, enums.
const STRINGS: &[&str] = &[
    r#""""#,
    r#""(""#,
    r#""a{1000}{1000}""#,
    r#""(a|b)*c""#,
    r#""[^/]+""#,
    r#""(?i)x""#,
    r#""\b{start}""#,
    r#""(?x) a""#,
    r#""[[:alpha:]]""#,
    r#""a++""#,
    r#""é""#,
    r#""/orders/[0-9]+""#,
    r#""GET""#,
    r#""get""#,
    r#""bad name""#,
    r#""x-canary""#,
    r#""websocket""#,
    r#""h2c""#,
    r#""orders""#,
    r#""payments""#,
    r#""v1""#,
    r#""count""#,
    r#""time""#,
    r#""strict""#,
    r#""peak_ewma""#,
    r#""decorrelated""#,
    r#""::1""#,
    "null",
];

/// Everything else: booleans, nulls, lists and objects.
const OTHERS: &[&str] = &[
    "true",
    "false",
    "null",
    "0",
    "[]",
    "{}",
    r#"[["v1",50.0],["v2",50.0]]"#,
    r#"[["",1.0]]"#,
    r#"[["v1",-1.0]]"#,
    r#"[["v1",0.0],["v2",0.0]]"#,
    r#"[["v1",1e300],["v2",1e300]]"#,
    r#"{"to":"nowhere","subset":null,"percent":100.0}"#,
    r#"["GET","BAD METHOD"]"#,
    r#"{"delay":1e300,"delay_percent":100.0,"abort_status":0,"abort_percent":100.0,"header_faults":true}"#,
];

type Leaves = Vec<(Vec<Step>, Kind)>;

/// The base document, and the path and kind of each of its leaves.
fn base() -> &'static (Value, Leaves) {
    static BASE: OnceLock<(Value, Leaves)> = OnceLock::new();
    BASE.get_or_init(|| {
        let doc: Value = serde_json::from_str(include_str!("../data/request-spec.json"))
            .expect("data/request-spec.json is JSON");
        let mut leaves = Vec::new();
        collect(&doc, &mut Vec::new(), &mut leaves);
        (doc, leaves)
    })
}

fn collect(value: &Value, path: &mut Vec<Step>, leaves: &mut Leaves) {
    let here = |path: &[Step]| -> Vec<Step> {
        path.iter()
            .map(|s| match s {
                Step::Key(k) => Step::Key(k.clone()),
                Step::Index(i) => Step::Index(*i),
            })
            .collect()
    };
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                path.push(Step::Key(key.clone()));
                collect(v, path, leaves);
                path.pop();
            }
        }
        Value::Array(items) => {
            leaves.push((here(path), Kind::Other)); // the whole list, too
            for (i, v) in items.iter().enumerate() {
                path.push(Step::Index(i));
                collect(v, path, leaves);
                path.pop();
            }
        }
        Value::Number(_) => leaves.push((here(path), Kind::Number)),
        Value::String(_) => leaves.push((here(path), Kind::String)),
        Value::Bool(_) | Value::Null => leaves.push((here(path), Kind::Other)),
    }
}

/// The sidecar's path for a document: parse, build, use.
fn document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = Spec::from_json(text) else {
        return;
    };
    let durations = durations(&spec);
    let clock = Clock::new();
    let now = clock.now();
    for (_, seconds) in &durations {
        // server.rs, cluster.rs: timeouts; forward.rs: deadlines on the clock
        let _ = Duration::from_secs_f64(*seconds);
        let _ = clock.instant(now + seconds);
        let remaining_ms = (seconds * 1000.0).max(0.0) as u64;
        let _ = seawall_h1::decimal(remaining_ms, &mut [0; 20]);
    }
    let endpoints: HashMap<String, Vec<spec::Endpoint>> = spec
        .destinations
        .iter()
        .map(|d| (d.name.clone(), d.endpoints.clone()))
        .collect();
    let events = Arc::new(Events::silent("fuzz", Format::Text, clock));
    let Ok(rt) = Runtime::build(spec, Arc::new(Metrics::new()), events, clock) else {
        return;
    };
    let mut rng = SplitMix64::new(fingerprint(data));
    for dest in rt.destinations.values().chain(std::iter::once(&rt.inbound)) {
        use_destination(dest, now, &mut rng);
    }
    if let Some(authz) = &rt.authz {
        for (caller, path) in [
            (None, &b"/"[..]),
            (Some("gateway"), b"/orders/1"),
            (Some("x"), b"/a/../b//c%2F..?q"),
        ] {
            let _ = authz.decide(caller, "GET", path);
        }
    }
    rt.set_endpoints(&endpoints);
    rt.set_endpoints(&HashMap::new());
    rt.sweep();
    // (last, so that a duration the validation missed shows where it hurts first)
    for (path, seconds) in &durations {
        assert!(
            seconds.is_finite() && *seconds >= 0.0 && *seconds <= MAX_DURATION,
            "{path} = {seconds} passed validation"
        );
    }
}

/// What the request path does with a destination's routes.
fn use_destination(dest: &Destination, now: f64, rng: &mut SplitMix64) {
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
    headers.insert("x-seawall-fault-delay-ms", HeaderValue::from_static("100"));
    headers.insert("x-seawall-fault-abort", HeaderValue::from_static("503"));
    for (method, path) in [
        (Method::GET, &b"/"[..]),
        (Method::POST, b"/orders/12?x=1"),
        (Method::GET, b"/charge"),
    ] {
        let _ = dest.routes.select(&method, path, &headers);
    }
    for route in dest.routes.routes() {
        let policy = &route.data;
        let deadline = now + policy.timeout;
        assert!(deadline.is_finite() && deadline >= now);
        let _ = Duration::from_secs_f64(policy.timeout);
        for attempt in 1..=policy.retry.attempts.min(10) {
            let delay = policy.retry.backoff_delay(attempt, rng);
            assert!(delay.is_finite() && delay >= 0.0, "backoff {delay}");
            let _ = Duration::from_secs_f64(delay);
        }
        if let Some(fault) = &policy.fault {
            for h in [&HeaderMap::new(), &headers] {
                if let Some(decision) = decide_fault(fault, h, rng) {
                    assert!(decision.delay.is_finite() && decision.delay >= 0.0);
                    let wait = decision.delay.min(policy.timeout);
                    let _ = Duration::from_secs_f64(wait);
                }
            }
        }
        if let Some(split) = &policy.split {
            let _ = split.choose(rng);
        }
    }
}

/// Every duration in a spec, with its path.
fn durations(spec: &Spec) -> Vec<(String, f64)> {
    let mut all = vec![
        ("drain_grace".to_owned(), spec.drain_grace),
        (
            "limits.header_timeout".to_owned(),
            spec.limits.header_timeout,
        ),
        ("limits.body_timeout".to_owned(), spec.limits.body_timeout),
        ("limits.idle_timeout".to_owned(), spec.limits.idle_timeout),
    ];
    for d in spec
        .destinations
        .iter()
        .chain(std::iter::once(&spec.inbound))
    {
        let mut add = |field: &str, value: Option<f64>| {
            if let Some(v) = value {
                all.push((format!("{}.{field}", d.name), v));
            }
        };
        add("timeout", Some(d.timeout));
        add("per_try_timeout", d.per_try_timeout);
        add("idle_timeout", d.idle_timeout);
        add("connect_timeout", Some(d.connect_timeout));
        add("retry.backoff.base", Some(d.retry.backoff.base));
        add("retry.backoff.max", Some(d.retry.backoff.max));
        if let Some(b) = &d.budget {
            add("budget.ttl", Some(b.ttl));
        }
        if let Some(b) = &d.breaker {
            if b.window_type == spec::WindowType::Time {
                add("breaker.window_size", Some(b.window_size));
            }
            add("breaker.slow_call_duration", b.slow_call_duration);
            add("breaker.open_for", Some(b.open_for));
            add("breaker.max_open_for", Some(b.max_open_for));
        }
        if let Some(o) = &d.outlier {
            add("outlier.interval", Some(o.interval));
            add("outlier.ejection", Some(o.ejection));
            add("outlier.max_ejection", Some(o.max_ejection));
        }
        for r in &d.routes {
            add("route.timeout", Some(r.timeout));
            add("route.retry.backoff.base", Some(r.retry.backoff.base));
            add("route.retry.backoff.max", Some(r.retry.backoff.max));
            if let Some(f) = &r.fault {
                add("route.fault.delay", Some(f.delay));
            }
        }
    }
    all
}
