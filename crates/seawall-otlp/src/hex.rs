//! Hex, for the ids of OTLP/JSON (`traceId`, `spanId`, `parentSpanId`: hex,
//! not the base64 of the proto3 JSON mapping) and of the JSON columns.
use std::fmt;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Text that is not hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HexError {
    /// A character that is not a hex digit.
    Character { at: usize },
    /// An odd number of digits.
    OddLength { len: usize },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Character { at } => write!(f, "not hex: bad character at {at}"),
            HexError::OddLength { len } => write!(f, "not hex: {len} digits (an odd number)"),
        }
    }
}

impl std::error::Error for HexError {}

/// Append `bytes` as lower-case hex.
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decode hex text (either case).
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return Err(HexError::OddLength { len: bytes.len() });
    }
    bytes
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| {
            let hi = digit(pair[0]).ok_or(HexError::Character { at: 2 * i })?;
            let lo = digit(pair[1]).ok_or(HexError::Character { at: 2 * i + 1 })?;
            Ok(hi << 4 | lo)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        let mut s = String::new();
        encode_into(&mut s, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(s, "000fa5ff");
        assert_eq!(decode("000FA5ff"), Ok(vec![0x00, 0x0f, 0xa5, 0xff]));
        assert_eq!(decode(""), Ok(vec![]));
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!(decode("abc"), Err(HexError::OddLength { len: 3 }));
        assert_eq!(decode("0g"), Err(HexError::Character { at: 1 }));
        assert_eq!(decode("é"), Err(HexError::Character { at: 0 }));
    }
}
