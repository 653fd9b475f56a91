//! Base64 (RFC 4648), for OTLP/JSON's `bytesValue`.
//!
//! Written as the standard alphabet with padding; read as the proto3 JSON
//! mapping asks: the standard or the URL-safe alphabet, with or without
//! padding.
use std::fmt;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Text that is not base64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Base64Error {
    /// A character outside both alphabets (or `=` before the end).
    Character { at: usize },
    /// A length that no bytes encode to (one character past a group of 4).
    Length { len: usize },
}

impl fmt::Display for Base64Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Base64Error::Character { at } => write!(f, "not base64: bad character at {at}"),
            Base64Error::Length { len } => write!(f, "not base64: {len} characters"),
        }
    }
}

impl std::error::Error for Base64Error {}

/// Append `bytes` in base64 (standard alphabet, padded).
pub fn encode_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
        }
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
            out.push_str("==");
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.push(char::from(ALPHABET[(n >> 18) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 12) as usize & 63]));
            out.push(char::from(ALPHABET[(n >> 6) as usize & 63]));
            out.push('=');
        }
        _ => {}
    }
}

fn sextet(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    }))
}

/// Decode base64 text (either alphabet, padding optional).
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    // padding: at most two `=`, only at the end, and only to a multiple of 4
    let unpadded = bytes.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let pad = bytes.len() - unpadded;
    if pad > 2 || (pad > 0 && bytes.len() % 4 != 0) {
        return Err(Base64Error::Character { at: unpadded });
    }
    let body = &bytes[..unpadded];
    if body.len() % 4 == 1 {
        return Err(Base64Error::Length { len: bytes.len() });
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for (i, chunk) in body.chunks(4).enumerate() {
        let mut n = 0u32;
        for (j, &c) in chunk.iter().enumerate() {
            let v = sextet(c).ok_or(Base64Error::Character { at: i * 4 + j })?;
            n |= v << (18 - 6 * j);
        }
        let [_, a, b, c] = n.to_be_bytes();
        match chunk.len() {
            4 => out.extend_from_slice(&[a, b, c]),
            3 => out.extend_from_slice(&[a, b]),
            _ => out.push(a),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(bytes: &[u8]) -> String {
        let mut s = String::new();
        encode_into(&mut s, bytes);
        s
    }

    #[test]
    fn rfc4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(enc(plain.as_bytes()), coded);
            assert_eq!(decode(coded).as_deref(), Ok(plain.as_bytes()));
            assert_eq!(
                decode(coded.trim_end_matches('=')).as_deref(),
                Ok(plain.as_bytes())
            );
        }
    }

    #[test]
    fn both_alphabets_are_read() {
        let bytes = [0xfb, 0xff, 0xbf];
        assert_eq!(enc(&bytes), "+/+/");
        assert_eq!(decode("+/+/").as_deref(), Ok(&bytes[..]));
        assert_eq!(decode("-_-_").as_deref(), Ok(&bytes[..]));
    }

    #[test]
    fn every_byte_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        for n in 0..all.len() {
            assert_eq!(decode(&enc(&all[..n])).as_deref(), Ok(&all[..n]));
        }
    }

    #[test]
    fn bad_text_is_refused() {
        assert_eq!(decode("Zg=a"), Err(Base64Error::Character { at: 2 }));
        assert_eq!(decode("Z==="), Err(Base64Error::Character { at: 1 }));
        assert_eq!(decode("Zg="), Err(Base64Error::Character { at: 2 }));
        assert_eq!(decode("Zm9vY"), Err(Base64Error::Length { len: 5 }));
        assert_eq!(decode("Zm 9"), Err(Base64Error::Character { at: 2 }));
        assert_eq!(decode("é"), Err(Base64Error::Character { at: 0 }));
    }
}
