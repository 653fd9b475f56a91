//! The protobuf wire format (proto3 encoding spec): varints, keys,
//! length-delimited fields, fixed64 and fixed32, read and written.
//!
//! A [`Reader`] walks one message's bytes and knows where they sit in the
//! whole body, so that every [`WireError`] says at which byte it happened.
//! Groups (wire types 3 and 4, deprecated since proto2) are refused.
use std::fmt;

/// A varint: int32, int64, uint32, uint64, bool, enum.
pub const VARINT: u8 = 0;
/// 8 little-endian bytes: fixed64, sfixed64, double.
pub const I64: u8 = 1;
/// A varint length, then that many bytes: string, bytes, messages.
pub const LEN: u8 = 2;
/// 4 little-endian bytes: fixed32, sfixed32, float.
pub const I32: u8 = 5;

/// The largest field number protobuf allows (2^29 - 1).
pub const MAX_FIELD: u64 = (1 << 29) - 1;

/// Bytes that are not a well-formed protobuf message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    /// The message ends inside a key or value (`what`: "varint", "fixed64", …).
    Truncated { what: &'static str, at: usize },
    /// A varint of more than 64 bits.
    VarintOverflow { at: usize },
    /// A length-delimited field longer than what is left of its message.
    LengthPastEnd { len: u64, left: usize, at: usize },
    /// Field number 0, or one above 2^29 - 1.
    FieldNumber { field: u64, at: usize },
    /// A group (wire type 3 or 4), deprecated and not used by OTLP.
    Group { field: u32, at: usize },
    /// Wire type 6 or 7, which do not exist.
    WireType {
        wire_type: u8,
        field: u32,
        at: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated { what, at } => write!(f, "truncated {what} at byte {at}"),
            WireError::VarintOverflow { at } => {
                write!(f, "varint longer than 64 bits at byte {at}")
            }
            WireError::LengthPastEnd { len, left, at } => write!(
                f,
                "length {len} at byte {at} runs past the end of its message ({left} bytes left)"
            ),
            WireError::FieldNumber { field, at } => {
                write!(
                    f,
                    "field number {field} at byte {at} (want 1 to {MAX_FIELD})"
                )
            }
            WireError::Group { field, at } => {
                write!(
                    f,
                    "group (deprecated wire type 3/4) for field {field} at byte {at}"
                )
            }
            WireError::WireType {
                wire_type,
                field,
                at,
            } => write!(
                f,
                "invalid wire type {wire_type} for field {field} at byte {at}"
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// One message's bytes, read front to back.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Where `buf` starts in the whole body (for error offsets).
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader of a whole body.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// The offset, in the whole body, of the next byte to read.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// What is left to read.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// The next field's number and wire type, or `None` at the end of the message.
    #[inline]
    pub fn key(&mut self) -> Result<Option<(u32, u8)>, WireError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let at = self.offset();
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > MAX_FIELD {
            return Err(WireError::FieldNumber { field, at });
        }
        // in range: checked just above
        let field = field as u32;
        let wire_type = (key & 7) as u8;
        Ok(Some((field, wire_type)))
    }

    /// A varint.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // one byte: most keys and lengths, inlined where they are read
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, WireError> {
        let rest = &self.buf[self.pos..];
        let mut value = 0u64;
        for (i, &b) in rest.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(WireError::VarintOverflow { at: self.offset() });
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(value);
            }
        }
        if rest.len() >= 10 {
            Err(WireError::VarintOverflow { at: self.offset() })
        } else {
            Err(WireError::Truncated {
                what: "varint",
                at: self.offset(),
            })
        }
    }

    /// 8 little-endian bytes.
    #[inline]
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let bytes = self.take::<8>("fixed64")?;
        Ok(u64::from_le_bytes(bytes))
    }

    /// 4 little-endian bytes.
    #[inline]
    pub fn fixed32(&mut self) -> Result<u32, WireError> {
        let bytes = self.take::<4>("fixed32")?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let end = self.pos + N;
        match self
            .buf
            .get(self.pos..end)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
        {
            Some(bytes) => {
                self.pos = end;
                Ok(bytes)
            }
            None => Err(WireError::Truncated {
                what,
                at: self.offset(),
            }),
        }
    }

    /// A length-delimited value: its bytes, and where they start in the body.
    #[inline]
    pub fn bytes(&mut self) -> Result<(&'a [u8], usize), WireError> {
        let at = self.offset();
        let len = self.varint()?;
        let left = self.buf.len() - self.pos;
        if len > left as u64 {
            return Err(WireError::LengthPastEnd { len, left, at });
        }
        // at most `left`: checked just above
        let len = len as usize;
        let start = self.pos;
        self.pos += len;
        Ok((&self.buf[start..self.pos], self.base + start))
    }

    /// A length-delimited value read as a message of its own.
    #[inline]
    pub fn message(&mut self) -> Result<Reader<'a>, WireError> {
        let (buf, base) = self.bytes()?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Skip the value of a field this reader does not know.
    pub fn skip(&mut self, field: u32, wire_type: u8) -> Result<(), WireError> {
        let at = self.offset();
        match wire_type {
            VARINT => self.varint().map(drop),
            I64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            I32 => self.fixed32().map(drop),
            3 | 4 => Err(WireError::Group { field, at }),
            _ => Err(WireError::WireType {
                wire_type,
                field,
                at,
            }),
        }
    }
}

/// The bytes of `value` as a varint.
#[inline]
pub fn varint_len(value: u64) -> usize {
    // 1 byte per started 7 bits, and 1 byte for 0
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Append `value` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A field's key: its number and wire type.
#[inline]
pub const fn key(field: u32, wire_type: u8) -> u64 {
    ((field as u64) << 3) | wire_type as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, v);
        out
    }

    #[test]
    fn varints_round_trip_at_every_length_boundary() {
        let mut cases = vec![0, 1, u64::MAX, u64::MAX - 1, i64::MAX as u64, 1 << 63];
        for bits in (7..64).step_by(7) {
            cases.extend([(1u64 << bits) - 1, 1u64 << bits, (1u64 << bits) + 1]);
        }
        for v in cases {
            let bytes = encoded(v);
            assert_eq!(bytes.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&bytes);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.offset(), bytes.len());
        }
        assert_eq!(encoded(0), [0]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(u64::MAX).len(), 10);
        assert_eq!(
            encoded(-1i64 as u64),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn a_non_minimal_varint_is_read() {
        // 1, padded to 5 bytes: valid protobuf (parsers accept it)
        let mut r = Reader::new(&[0x81, 0x80, 0x80, 0x80, 0x00]);
        assert_eq!(r.varint(), Ok(1));
    }

    #[test]
    fn varint_errors_say_where() {
        assert_eq!(
            Reader::new(&[0x80]).varint(),
            Err(WireError::Truncated {
                what: "varint",
                at: 0
            })
        );
        assert_eq!(
            Reader::new(&[]).varint(),
            Err(WireError::Truncated {
                what: "varint",
                at: 0
            })
        );
        // a tenth byte above 1 overflows 64 bits
        let mut eleven = vec![0xff; 9];
        eleven.push(0x02);
        assert_eq!(
            Reader::new(&eleven).varint(),
            Err(WireError::VarintOverflow { at: 0 })
        );
        let long = [0x80; 11];
        assert_eq!(
            Reader::new(&long).varint(),
            Err(WireError::VarintOverflow { at: 0 })
        );
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(Reader::new(&[0x08]).key(), Ok(Some((1, VARINT))));
        // field 16, fixed32: Span.flags
        assert_eq!(Reader::new(&[0x85, 0x01]).key(), Ok(Some((16, I32))));
        assert_eq!(
            Reader::new(&[0x02]).key(),
            Err(WireError::FieldNumber { field: 0, at: 0 })
        );
        let mut big = Vec::new();
        put_varint(&mut big, key(0, 0) | ((MAX_FIELD + 1) << 3));
        assert!(matches!(
            Reader::new(&big).key(),
            Err(WireError::FieldNumber { .. })
        ));
        assert_eq!(Reader::new(&[]).key(), Ok(None));
    }

    #[test]
    fn lengths_past_the_end_and_groups_are_refused() {
        let mut r = Reader::new(&[0x0a, 0x05, b'a', b'b']);
        assert_eq!(r.key(), Ok(Some((1, LEN))));
        assert_eq!(
            r.bytes(),
            Err(WireError::LengthPastEnd {
                len: 5,
                left: 2,
                at: 1
            })
        );
        let mut r = Reader::new(&[0x0b]);
        let (field, wt) = r.key().ok().flatten().expect("a key");
        assert_eq!(r.skip(field, wt), Err(WireError::Group { field: 1, at: 1 }));
        let mut r = Reader::new(&[0x0e]);
        let (field, wt) = r.key().ok().flatten().expect("a key");
        assert_eq!(
            r.skip(field, wt),
            Err(WireError::WireType {
                wire_type: 6,
                field: 1,
                at: 1
            })
        );
        assert_eq!(
            Reader::new(&[1, 2, 3]).fixed32(),
            Err(WireError::Truncated {
                what: "fixed32",
                at: 0
            })
        );
    }

    #[test]
    fn nested_readers_report_offsets_in_the_whole_body() {
        let body = [0x0a, 0x03, 0x12, 0x01, 0x80];
        let mut r = Reader::new(&body);
        r.key().expect("a key");
        let mut inner = r.message().expect("a message");
        assert_eq!(inner.key(), Ok(Some((2, LEN))));
        assert_eq!(inner.offset(), 3);
        let (bytes, at) = inner.bytes().expect("bytes");
        assert_eq!((bytes, at), (&[0x80u8][..], 4));
    }
}
