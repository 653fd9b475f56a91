//! The `traceparent` header: which trace a request belongs to and its parent span.
//!
//! The twin of `seawall.telemetry.tracecontext.TraceParent`: the same parsing
//! rules (W3C Trace Context, "traceparent Header Field Values" and
//! "Versioning of traceparent"), the same `new` and `child`. Level 2's
//! `random` flag is set on the traces this hop starts (their ids are drawn at
//! random) and kept on the ones it continues. The
//! parser is a few comparisons at fixed offsets and table lookups on the
//! bytes; formatting writes 55 bytes into an array or a buffer, no allocation.

use core::fmt;

use bytes::BufMut;
use seawall_policy::rng::Random;

use crate::id::{hex_byte, hex_pair, SpanId, TraceId};

/// The `sampled` bit of `trace-flags`.
pub const FLAG_SAMPLED: u8 = 0x01;

/// The `random` bit of `trace-flags` (Trace Context Level 2): at least the
/// right-most 7 bytes of the trace-id were drawn at random, so a hop may
/// sample or shard on them.
pub const FLAG_RANDOM: u8 = 0x02;

/// The flags a hop propagates; the others are reserved and cleared.
const KNOWN_FLAGS: u8 = FLAG_SAMPLED | FLAG_RANDOM;

/// Length of a version-`00` `traceparent` value: `vv-<32 hex>-<16 hex>-ff`.
pub const TRACEPARENT_LEN: usize = 55;

/// The version this crate writes; `0xff` is forbidden by the spec.
const VERSION: u8 = 0x00;
const FORBIDDEN_VERSION: u8 = 0xff;

/// A `traceparent` value.
///
/// The fields are read through accessors so that a value always holds a
/// version other than `ff` and two valid (non-zero) ids: [`TraceParent::parse`]
/// for what came from outside, [`TraceParent::new`] to start a trace,
/// [`TraceParent::child`] to continue one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TraceParent {
    version: u8,
    trace_id: TraceId,
    parent_id: SpanId,
    flags: u8,
}

impl TraceParent {
    /// A value from its fields; `None` for version `0xff` (forbidden).
    pub const fn from_parts(
        version: u8,
        trace_id: TraceId,
        parent_id: SpanId,
        flags: u8,
    ) -> Option<Self> {
        if version == FORBIDDEN_VERSION {
            return None;
        }
        Some(Self {
            version,
            trace_id,
            parent_id,
            flags,
        })
    }

    /// The header version: `0` for this spec; a higher version that parsed as
    /// version `00` keeps its number.
    pub const fn version(&self) -> u8 {
        self.version
    }

    /// The trace id, the same on every hop.
    pub const fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The caller's span id (the `parent-id` field).
    pub const fn parent_id(&self) -> SpanId {
        self.parent_id
    }

    /// The `trace-flags` byte; bit 0 is [`TraceParent::sampled`].
    pub const fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller may have recorded trace data (the `sampled` flag).
    pub const fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// Parses a `traceparent` value; `None` if it is invalid (restart the trace).
    ///
    /// Exactly the rules of the Python `TraceParent.parse`: spaces and tabs
    /// around the value are ignored; every field must be lowercase hex of its
    /// exact length; an all-zero trace-id or parent-id and version `ff` are
    /// invalid. Version `00` must be exactly the four fields. A higher version
    /// is accepted when its first four fields parse as version `00` and the
    /// flags are followed by the end of the value or by a dash; what follows
    /// that dash is not looked at (§3.2.4).
    pub fn parse<V: AsRef<[u8]> + ?Sized>(value: &V) -> Option<Self> {
        parse(value.as_ref())
    }

    /// Starts a trace: a new random trace-id and parent-id, version `00`, the
    /// `random` flag set (the trace-id was drawn at random) and the `sampled`
    /// flag set to `sampled` (the recording decision).
    pub fn new<R: Random + ?Sized>(rng: &mut R, sampled: bool) -> Self {
        let trace_id = TraceId::random(rng);
        let parent_id = SpanId::random(rng);
        Self {
            version: VERSION,
            trace_id,
            parent_id,
            flags: FLAG_RANDOM | if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// A trace started with these ids (drawn at random by the caller): version
    /// `00`, the `random` flag set, `sampled` as given.
    pub const fn new_with(trace_id: TraceId, parent_id: SpanId, sampled: bool) -> Self {
        Self {
            version: VERSION,
            trace_id,
            parent_id,
            flags: FLAG_RANDOM | if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// The same trace, flags and version, from another span: the value a
    /// hop sends for a child span it recorded (an attempt of a request).
    pub const fn with_parent_id(&self, parent_id: SpanId) -> Self {
        Self {
            version: self.version,
            trace_id: self.trace_id,
            parent_id,
            flags: self.flags,
        }
    }

    /// Whether the trace-id is random (the Level 2 `random` flag).
    pub const fn random_trace_id(&self) -> bool {
        self.flags & FLAG_RANDOM != 0
    }

    /// Continues this trace from a new span: the same trace-id, a new
    /// parent-id (never all zero, never this one), version `00`, and the
    /// `sampled` and `random` flags kept.
    ///
    /// The other flag bits are reserved and are cleared, as the spec requires
    /// of the vendor that writes them ("Other Flags": vendors MUST set those
    /// to zero) and as the Python twin does.
    pub fn child<R: Random + ?Sized>(&self, rng: &mut R) -> Self {
        self.child_with_sampled(rng, self.sampled())
    }

    /// Like [`TraceParent::child`] with the `sampled` flag set to `sampled`
    /// (the spec allows changing it only together with the parent-id); the
    /// `random` flag is kept: the trace-id is the same.
    pub fn child_with_sampled<R: Random + ?Sized>(&self, rng: &mut R, sampled: bool) -> Self {
        let random = self.flags & KNOWN_FLAGS & FLAG_RANDOM;
        Self {
            version: VERSION,
            trace_id: self.trace_id,
            parent_id: SpanId::random_other_than(rng, Some(self.parent_id)),
            flags: random | if sampled { FLAG_SAMPLED } else { 0 },
        }
    }

    /// The header value, `{version}-{trace_id}-{parent_id}-{flags}` in
    /// lowercase hex, as an array (no allocation).
    ///
    /// This writes the four fields as they are: a parsed higher-version value
    /// keeps its version but not its unknown extra fields, so a hop that
    /// forwards without mutating should send the received value instead.
    pub fn encode(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[0..2].copy_from_slice(&hex_pair(self.version));
        out[3..35].copy_from_slice(&self.trace_id.to_hex());
        out[36..52].copy_from_slice(&self.parent_id.to_hex());
        out[53..55].copy_from_slice(&hex_pair(self.flags));
        out
    }

    /// Appends the header value ([`TraceParent::encode`]) to `buf`.
    pub fn write_to<B: BufMut + ?Sized>(&self, buf: &mut B) {
        buf.put_slice(&self.encode());
    }
}

impl fmt::Display for TraceParent {
    /// The header value, as [`TraceParent::encode`] writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits and dashes are ASCII: this never fails.
        f.write_str(core::str::from_utf8(&self.encode()).unwrap_or("?"))
    }
}

/// Spaces and tabs (the spec's OWS) removed from both ends.
pub(crate) fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

fn parse(value: &[u8]) -> Option<TraceParent> {
    // The same steps, in the same order, as the Python parser.
    let mut value = value;
    if value.len() != TRACEPARENT_LEN {
        value = trim_ows(value);
        if value.len() != TRACEPARENT_LEN {
            // Only a higher version may carry more fields, after a dash.
            if value.len() < TRACEPARENT_LEN
                || value.get(TRACEPARENT_LEN) != Some(&b'-')
                || value.starts_with(b"00")
            {
                return None;
            }
            value = value.get(..TRACEPARENT_LEN)?;
        }
    }
    let v: &[u8; TRACEPARENT_LEN] = value.try_into().ok()?;
    if v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(v[0], v[1])?;
    let trace_id = TraceId::from_hex(&v[3..35])?; // None when all zero, too
    let parent_id = SpanId::from_hex(&v[36..52])?;
    let flags = hex_byte(v[53], v[54])?;
    TraceParent::from_parts(version, trace_id, parent_id, flags) // None for "ff"
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_policy::rng::SplitMix64;

    const VALUE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parse_encode_round_trip() {
        let tp = TraceParent::parse(VALUE).expect("spec example");
        assert_eq!(&tp.encode(), VALUE.as_bytes());
        assert_eq!(tp.to_string(), VALUE);
        let mut buf = Vec::new();
        tp.write_to(&mut buf);
        tp.write_to(&mut buf);
        assert_eq!(buf.len(), 2 * TRACEPARENT_LEN);
        assert_eq!(&buf[TRACEPARENT_LEN..], VALUE.as_bytes());
    }

    #[test]
    fn trim_ows_only_strips_spaces_and_tabs() {
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"\na\n"), b"\na\n");
    }

    #[test]
    fn parse_never_panics_on_any_length_or_byte() {
        let mut rng = SplitMix64::new(3);
        for len in 0..120 {
            for _ in 0..50 {
                let bytes: Vec<u8> = (0..len).map(|_| (rng.next_u64() & 0xff) as u8).collect();
                let _ = TraceParent::parse(&bytes[..]);
            }
        }
    }
}
