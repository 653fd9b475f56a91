//! Correlation ids (`x-request-id`): created when absent, always forwarded.
//!
//! The twin of `seawall.telemetry.tracecontext.new_request_id`: a random
//! version-4 UUID written as 32 lowercase hex digits, no dashes (the form of
//! Python's `uuid.uuid4().hex`).

use seawall_policy::rng::Random;

use crate::id::{encode_hex_into, random_u128};

/// Length of a request id made here, in characters (32).
pub const REQUEST_ID_LEN: usize = 32;

/// A new correlation id as 32 lowercase hex digits, without allocating.
pub(crate) fn new_request_id_hex<R: Random + ?Sized>(rng: &mut R) -> [u8; REQUEST_ID_LEN] {
    let mut bytes = random_u128(rng).to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // variant RFC 4122 (10xx)
    let mut out = [0u8; REQUEST_ID_LEN];
    encode_hex_into(&bytes, &mut out);
    out
}

/// A new correlation id: a random (version 4) UUID as 32 lowercase hex digits.
pub fn new_request_id<R: Random + ?Sized>(rng: &mut R) -> String {
    // Hex digits are ASCII, so the lossy conversion never replaces anything.
    String::from_utf8_lossy(&new_request_id_hex(rng)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seawall_policy::rng::{Sequence, SplitMix64};

    #[test]
    fn is_a_uuid4_in_lower_hex() {
        let mut rng = SplitMix64::new(9);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = new_request_id(&mut rng);
            assert_eq!(id.len(), REQUEST_ID_LEN);
            assert!(
                id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
                "{id}"
            );
            assert_eq!(&id[12..13], "4", "{id}");
            assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
            assert!(seen.insert(id));
        }
        assert_eq!(
            new_request_id(&mut SplitMix64::new(2)),
            new_request_id(&mut SplitMix64::new(2))
        );
    }

    #[test]
    fn fixed_bits_even_from_a_source_of_zeros() {
        let id = new_request_id(&mut Sequence::new(vec![0.0]));
        assert_eq!(id, "00000000000040008000000000000000");
    }
}
