//! The checks behind seawall's fuzz targets, one module per target.
//!
//! Each module's `check(data)` takes arbitrary bytes, runs them through
//! seawall's own code as the sidecar does, and panics when an invariant
//! breaks (libFuzzer records the input as a crash). The invariants are the
//! same everywhere: no panic, no unbounded allocation (the runs set
//! `-rss_limit_mb` and `-malloc_limit_mb`), and whatever the sidecar sends
//! on re-parses to the same meaning. docs/proxy/fuzzing.md lists them per
//! target.
//!
//! `cargo test` in this directory replays every seed (`seeds/<target>/`) and
//! every fixed crash (`regressions/<target>/`) through the same checks, on
//! stable, without libFuzzer.
#![forbid(unsafe_code)]

pub mod connect_head;
pub mod otlp_decode;
pub mod request_head;
pub mod response_head;
pub mod spec_json;
pub mod trace_context;

/// The names of the targets, as `cargo fuzz run` knows them.
pub const TARGETS: [&str; 6] = [
    "request_head",
    "trace_context",
    "spec_json",
    "response_head",
    "connect_head",
    "otlp_decode",
];

/// A target's check, by name.
pub fn check_of(target: &str) -> Option<fn(&[u8])> {
    Some(match target {
        "request_head" => request_head::check,
        "trace_context" => trace_context::check,
        "spec_json" => spec_json::check,
        "response_head" => response_head::check,
        "connect_head" => connect_head::check,
        "otlp_decode" => otlp_decode::check,
        _ => return None,
    })
}

/// A cheap, deterministic number from the input (FNV-1a), for choices that
/// must not consume input bytes (so that the seeds stay plain protocol text).
pub(crate) fn fingerprint(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Spaces and tabs (OWS) removed from both ends.
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The members of a comma-separated list field, OWS trimmed, empty ones kept.
pub(crate) fn members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Bytes for a failure message.
pub(crate) fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}
