//! Size limits for parsing, mirroring `seawall.proxy.http1._limits.Limits`.

use std::fmt;

/// How much a parser accepts before it refuses the request.
///
/// The defaults are Python's `DEFAULT_LIMITS` (see `docs/proxy/http1.md` for
/// why each one). Every limit is inclusive: a request line of exactly
/// `max_request_line` bytes is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the request line, CRLF excluded. Over it: 414, detected
    /// before the line ends.
    pub max_request_line: usize,
    /// Field lines in the head (and, separately, in a trailer section). Over it: 431.
    pub max_headers: usize,
    /// Bytes in the whole head, request line and final CRLF included (and,
    /// separately, in a trailer section). Over it: 431, detected before the head ends.
    pub max_header_bytes: usize,
    /// Bytes of body content (chunk framing not counted), or `None` for no
    /// limit. A larger Content-Length is refused before any body byte is
    /// read; a chunked body as soon as a chunk size takes the total over it. 413.
    pub max_body: Option<u64>,
    /// Bytes of chunk extensions (`;name=value`) in one message, all chunks
    /// together. Over it: 400 (CVE-2024-22019).
    pub max_chunk_ext_bytes: usize,
}

impl Limits {
    /// Python's `DEFAULT_LIMITS`: 8 KiB request line, 100 fields, 64 KiB head,
    /// 10 MiB body, 16 KiB of chunk extensions.
    pub const DEFAULT: Limits = Limits {
        max_request_line: 8 * 1024,
        max_headers: 100,
        max_header_bytes: 64 * 1024,
        max_body: Some(10 * 1024 * 1024),
        max_chunk_ext_bytes: 16 * 1024,
    };

    /// Check the limits as Python's `Limits.__post_init__` does (the same
    /// minimums). The parsers never panic whatever the limits; this is for
    /// refusing a bad configuration with a message naming the field.
    pub fn validate(&self) -> Result<(), InvalidLimits> {
        let check = |field: &'static str, value: usize, minimum: usize| {
            if value < minimum {
                Err(InvalidLimits {
                    field,
                    value,
                    minimum,
                })
            } else {
                Ok(())
            }
        };
        check("max_request_line", self.max_request_line, 16)?;
        check("max_headers", self.max_headers, 1)?;
        check("max_header_bytes", self.max_header_bytes, 32)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A [`Limits`] field below its minimum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidLimits {
    /// The field's name.
    pub field: &'static str,
    /// The value given.
    pub value: usize,
    /// The smallest value accepted.
    pub minimum: usize,
}

impl fmt::Display for InvalidLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Limits: {} must be an int >= {}, got {}",
            self.field, self.minimum, self.value
        )
    }
}

impl std::error::Error for InvalidLimits {}
