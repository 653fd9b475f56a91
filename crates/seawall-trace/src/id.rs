//! Trace and span identifiers: [`TraceId`] (16 bytes) and [`SpanId`] (8 bytes).
//!
//! Both are plain `Copy` values, never all zero (the W3C recommendation makes
//! an all-zero id invalid, so the types cannot hold one), shown as lowercase
//! hex. They are the ids a span recorder stores: the `parent-id` of a
//! `traceparent` is the [`SpanId`] of the caller's span.
//!
//! Random ids come from an injected [`Random`] (seawall-policy's
//! `SplitMix64` in the sidecar, a scripted `Sequence` in tests), like every
//! other draw in the data plane. Trace ids are not secrets.

use core::fmt;

use seawall_policy::rng::Random;

/// Lowercase hex digits, by value.
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Value of each lowercase hex digit; [`NOT_HEX`] for every other byte
/// (upper case included: the spec's HEXDIGLC is lower case only).
const HEX_VALUE: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xff;

/// Decodes two lowercase hex digits into a byte.
#[inline]
pub(crate) fn hex_byte(hi: u8, lo: u8) -> Option<u8> {
    let (h, l) = (HEX_VALUE[usize::from(hi)], HEX_VALUE[usize::from(lo)]);
    if h == NOT_HEX || l == NOT_HEX {
        None
    } else {
        Some(h << 4 | l)
    }
}

/// Decodes `2 * N` lowercase hex digits into `N` bytes.
#[inline]
fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = hex_byte(pair[0], pair[1])?;
    }
    Some(out)
}

/// Writes `bytes` as lowercase hex into `out` (which is twice as long).
#[inline]
pub(crate) fn encode_hex_into(bytes: &[u8], out: &mut [u8]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
}

/// Two lowercase hex digits for `byte`.
#[inline]
pub(crate) fn hex_pair(byte: u8) -> [u8; 2] {
    [
        HEX_DIGITS[usize::from(byte >> 4)],
        HEX_DIGITS[usize::from(byte & 0x0f)],
    ]
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 32];
    let out = &mut buf[..2 * bytes.len()];
    encode_hex_into(bytes, out);
    // Hex digits are ASCII: this never fails; "?" is a harmless fallback.
    f.write_str(core::str::from_utf8(out).unwrap_or("?"))
}

// ------------------------------------------------------------------ randomness

/// How many draws an id generator makes before falling back to a fixed id.
///
/// Python loops until its `getrandbits` returns a usable id; a scripted source
/// that always answers zero would hang that loop, so here the loop is bounded.
/// With a real generator the fallback is never reached (2^-64 per draw).
const MAX_DRAWS: usize = 16;

/// 53 uniform bits from one [`Random::next_f64`] draw in `[0, 1)`.
#[inline]
fn bits53<R: Random + ?Sized>(rng: &mut R) -> u64 {
    // `as` saturates (and maps NaN to 0), so a misbehaving source cannot panic.
    ((rng.next_f64() * (1u64 << 53) as f64) as u64) & ((1u64 << 53) - 1)
}

/// 64 uniform bits from two draws (53 bits, then the top 11 of the next 53).
#[inline]
pub(crate) fn random_u64<R: Random + ?Sized>(rng: &mut R) -> u64 {
    (bits53(rng) << 11) | (bits53(rng) >> 42)
}

/// 128 uniform bits from four draws.
#[inline]
pub(crate) fn random_u128<R: Random + ?Sized>(rng: &mut R) -> u128 {
    (u128::from(random_u64(rng)) << 64) | u128::from(random_u64(rng))
}

// --------------------------------------------------------------------- TraceId

/// A `trace-id`: 16 bytes, never all zero; the same on every hop of a trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

impl TraceId {
    /// Length of the id in lowercase hex (32).
    pub const HEX_LEN: usize = 32;

    /// The id with these bytes; `None` if they are all zero (an invalid id).
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        if u128::from_be_bytes(bytes) == 0 {
            None
        } else {
            Some(Self(bytes))
        }
    }

    /// The id whose big-endian bytes are `value`; `None` for zero.
    pub const fn from_u128(value: u128) -> Option<Self> {
        Self::from_bytes(value.to_be_bytes())
    }

    /// Parses exactly 32 lowercase hex digits; `None` if malformed or all zero.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        Self::from_bytes(decode_hex::<16>(hex)?)
    }

    /// The 16 bytes of the id.
    pub const fn to_bytes(self) -> [u8; 16] {
        self.0
    }

    /// The id as a big-endian integer (never zero).
    pub const fn to_u128(self) -> u128 {
        u128::from_be_bytes(self.0)
    }

    /// The id as 32 lowercase hex digits, without allocating.
    pub fn to_hex(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        encode_hex_into(&self.0, &mut out);
        out
    }

    /// A new random id (never all zero).
    pub fn random<R: Random + ?Sized>(rng: &mut R) -> Self {
        for _ in 0..MAX_DRAWS {
            if let Some(id) = Self::from_u128(random_u128(rng)) {
                return id;
            }
        }
        Self(1u128.to_be_bytes()) // a source stuck at zero (see MAX_DRAWS)
    }
}

impl fmt::Display for TraceId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TraceId(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

// ---------------------------------------------------------------------- SpanId

/// A span id, the `parent-id` of a `traceparent`: 8 bytes, never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

impl SpanId {
    /// Length of the id in lowercase hex (16).
    pub const HEX_LEN: usize = 16;

    /// The id with these bytes; `None` if they are all zero (an invalid id).
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        if u64::from_be_bytes(bytes) == 0 {
            None
        } else {
            Some(Self(bytes))
        }
    }

    /// The id whose big-endian bytes are `value`; `None` for zero.
    pub const fn from_u64(value: u64) -> Option<Self> {
        Self::from_bytes(value.to_be_bytes())
    }

    /// Parses exactly 16 lowercase hex digits; `None` if malformed or all zero.
    pub fn from_hex(hex: &[u8]) -> Option<Self> {
        Self::from_bytes(decode_hex::<8>(hex)?)
    }

    /// The 8 bytes of the id.
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0
    }

    /// The id as a big-endian integer (never zero).
    pub const fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// The id as 16 lowercase hex digits, without allocating.
    pub fn to_hex(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        encode_hex_into(&self.0, &mut out);
        out
    }

    /// A new random id (never all zero).
    pub fn random<R: Random + ?Sized>(rng: &mut R) -> Self {
        Self::random_other_than(rng, None)
    }

    /// A new random id, never all zero and never equal to `other` (a child
    /// span must not reuse its parent's id).
    pub fn random_other_than<R: Random + ?Sized>(rng: &mut R, other: Option<SpanId>) -> Self {
        for _ in 0..MAX_DRAWS {
            match Self::from_u64(random_u64(rng)) {
                Some(id) if Some(id) != other => return id,
                _ => {}
            }
        }
        // A source stuck on one value (see MAX_DRAWS): 1, or 2 if 1 is taken.
        let fallback = if other == Self::from_u64(1) { 2 } else { 1 };
        Self(u64::to_be_bytes(fallback))
    }
}

impl fmt::Display for SpanId {
    /// 16 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpanId(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_policy::rng::{Sequence, SplitMix64};

    #[test]
    fn hex_round_trip_and_lower_case_only() {
        let id = TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e4736").expect("valid");
        assert_eq!(&id.to_hex(), b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            format!("{id:?}"),
            "TraceId(4bf92f3577b34da6a3ce929d0e0e4736)"
        );
        assert_eq!(TraceId::from_hex(b"4BF92F3577B34DA6A3CE929D0E0E4736"), None);
        assert_eq!(TraceId::from_hex(b"4bf92f3577b34da6a3ce929d0e0e473"), None);
        assert_eq!(TraceId::from_hex(&[b'0'; 32]), None);
        let span = SpanId::from_hex(b"00f067aa0ba902b7").expect("valid");
        assert_eq!(span.to_u64(), 0x00f0_67aa_0ba9_02b7);
        assert_eq!(span.to_string(), "00f067aa0ba902b7");
        assert_eq!(SpanId::from_hex(b"00f067aa0ba902bg"), None);
        assert_eq!(SpanId::from_hex(&[b'0'; 16]), None);
        assert_eq!(SpanId::from_u64(0), None);
        assert_eq!(TraceId::from_u128(0), None);
        assert_eq!(TraceId::from_u128(7).map(TraceId::to_u128), Some(7));
    }

    #[test]
    fn every_byte_value_round_trips() {
        for b in 1..=255u8 {
            let id = SpanId::from_bytes([b; 8]).expect("non-zero");
            assert_eq!(SpanId::from_hex(&id.to_hex()), Some(id));
            assert_eq!(hex_byte(hex_pair(b)[0], hex_pair(b)[1]), Some(b));
        }
    }

    #[test]
    fn random_ids_use_all_bits() {
        let mut rng = SplitMix64::new(1);
        let (mut or, mut and) = (0u64, u64::MAX);
        for _ in 0..1000 {
            let v = random_u64(&mut rng);
            or |= v;
            and &= v;
        }
        assert_eq!((or, and), (u64::MAX, 0));
    }

    #[test]
    fn a_source_stuck_at_zero_still_gives_valid_ids_without_hanging() {
        let mut zeros = Sequence::new(vec![0.0]);
        assert_eq!(TraceId::random(&mut zeros).to_u128(), 1);
        assert_eq!(SpanId::random(&mut zeros).to_u64(), 1);
        let one = SpanId::from_u64(1);
        assert_eq!(SpanId::random_other_than(&mut zeros, one).to_u64(), 2);
        // Out-of-range draws are clamped, not a panic.
        let mut weird = Sequence::new(vec![f64::NAN, 1.5, -1.0, f64::INFINITY]);
        for _ in 0..4 {
            let _ = SpanId::random(&mut weird);
        }
    }

    #[test]
    fn zero_draws_are_skipped() {
        let mut rng = Sequence::new(vec![0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5]);
        let id = TraceId::random(&mut rng);
        assert_eq!(id.to_u128() >> 64, 1 << 63 | 1 << 10);
    }
}
