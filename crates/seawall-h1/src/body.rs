//! Request bodies: Content-Length and chunked, decoded incrementally.
//!
//! Mirrors the body states of `seawall.proxy.http1._parser` (LENGTH,
//! CHUNK_SIZE, CHUNK_DATA, CHUNK_CRLF, TRAILERS). Feed a decoder the
//! connection's read buffer; it splits body bytes off the front (zero-copy)
//! and never consumes past the end of the body, so pipelined requests stay
//! in the buffer for the next [`crate::HeadParser`] call.
//!
//! Chunked bodies are strict (RFC 9112 §7.1):
//!
//! | input | status |
//! |---|---|
//! | chunk size not `1*HEXDIG` (sign, `0x`, `_`, spaces, empty), or more than 16 digits (RUSTSEC-2021-0079) | 400 |
//! | chunk extension not `;token[=token/quoted-string]` with BWS, or more than `max_chunk_ext_bytes` of them per message | 400 |
//! | a chunk-size line still without LF after 16 digits plus the extension budget | 400 |
//! | no CRLF right after the chunk data, a bare LF anywhere in the framing | 400 |
//! | the running total of chunk sizes over `max_body` (checked at each size line, before its data) | 413 |
//! | trailer section: obs-fold, CTL/NUL, bad names, bare LF; more than `max_headers` fields or over `max_header_bytes` | 400 / 431 |
//!
//! Chunk extensions are checked and dropped. Trailer fields are returned
//! with [`BodyEvent::End`], never merged into the head.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::head::Framing;
use crate::limits::Limits;
use crate::syntax::{
    find_blank_line, find_byte, hex_value, is_field_byte, is_tchar, is_ws, trim_ws,
};

/// What a body decoder found in the buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyEvent {
    /// A piece of the body, de-chunked, never empty: split off the buffer.
    Data(Bytes),
    /// The body is complete; the trailer fields of a chunked body (names
    /// lower-cased), empty otherwise. Nothing after it was consumed.
    End(HeaderMap),
}

/// Decodes a body delimited by Content-Length.
#[derive(Clone, Debug)]
pub struct LengthDecoder {
    remaining: u64,
    done: bool,
}

impl LengthDecoder {
    /// A body of `length` bytes (0: no body; `decode` gives `End` at once).
    pub fn new(length: u64) -> Self {
        LengthDecoder {
            remaining: length,
            done: false,
        }
    }

    /// Body bytes not received yet.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// The next event: `Data` with what `buf` holds of the body, then `End`
    /// (without needing more bytes); `None` when `buf` is empty mid-body, or
    /// after `End`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Option<BodyEvent> {
        if self.remaining == 0 {
            if self.done {
                return None;
            }
            self.done = true;
            return Some(BodyEvent::End(HeaderMap::new()));
        }
        if buf.is_empty() {
            return None;
        }
        let take = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        self.remaining -= take as u64;
        Some(BodyEvent::Data(buf.split_to(take).freeze()))
    }

    /// `End` was returned.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// In a chunk's data, this much left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section.
    Trailers,
    Done,
}

/// The longest chunk size: 16 hex digits are 64 bits; more is an overflow
/// attempt (RUSTSEC-2021-0079), leading zeros included, as in Python.
const MAX_CHUNK_DIGITS: usize = 16;

/// Decodes a chunked body, strictly; see the module docs for what it refuses.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// Body bytes announced so far (for `max_body`).
    seen: u64,
    /// Chunk-extension bytes still allowed in this message.
    ext_budget: usize,
    /// Bytes at the front of the buffer already scanned for a line end.
    scanned: usize,
    max_body: Option<u64>,
    max_headers: usize,
    max_header_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder for one chunked body.
    pub fn new(limits: &Limits) -> Self {
        ChunkedDecoder {
            state: Chunk::Size,
            seen: 0,
            ext_budget: limits.max_chunk_ext_bytes,
            scanned: 0,
            max_body: limits.max_body,
            max_headers: limits.max_headers,
            max_header_bytes: limits.max_header_bytes,
        }
    }

    /// `End` was returned.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// The next event from the front of `buf`: `Ok(None)` when more bytes
    /// are needed (or after `End`). Call again after each event. The buffer
    /// must only grow at the end between calls: the decoder remembers how
    /// far it has scanned an incomplete line.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Error> {
        self.scanned = self.scanned.min(buf.len());
        loop {
            match self.state {
                Chunk::Size => {
                    if !self.size_line(buf)? {
                        return Ok(None);
                    }
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left)
                    };
                    return Ok(Some(BodyEvent::Data(buf.split_to(take).freeze())));
                }
                Chunk::DataEnd => match buf.get(..2) {
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = Chunk::Size;
                    }
                    Some(_) => return Err(Error::bad("missing CRLF after chunk data")),
                    None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(None),
                    None => return Err(Error::bad("missing CRLF after chunk data")),
                },
                Chunk::Trailers => return self.trailers(buf),
                Chunk::Done => return Ok(None),
            }
        }
    }

    /// Parse a chunk-size line at the front of `buf`; false if incomplete.
    fn size_line(&mut self, buf: &mut BytesMut) -> Result<bool, Error> {
        let Some(lf) = find_byte(&buf[self.scanned..], b'\n').map(|i| self.scanned + i) else {
            if buf.len() > (MAX_CHUNK_DIGITS + 1).saturating_add(self.ext_budget) {
                return Err(Error::bad("chunk size line too long"));
            }
            self.scanned = buf.len();
            return Ok(false);
        };
        let (size, ext) = chunk_size_line(&buf[..=lf])?;
        if ext > self.ext_budget {
            return Err(Error::bad("chunk extensions too long"));
        }
        self.ext_budget -= ext;
        buf.advance(lf + 1);
        self.scanned = 0;
        if size == 0 {
            self.state = Chunk::Trailers;
            return Ok(true);
        }
        let seen = self.seen.saturating_add(size);
        if self.max_body.is_some_and(|max| seen > max) {
            return Err(Error::new(413, "body too large"));
        }
        self.seen = seen;
        self.state = Chunk::Data(size);
        Ok(true)
    }

    /// The trailer section (RFC 9112 §7.1.2), up to and including its blank line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Error> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = Chunk::Done;
            self.scanned = 0;
            return Ok(Some(BodyEvent::End(HeaderMap::new())));
        }
        let from = self.scanned.saturating_sub(3);
        let Some(end) = find_blank_line(&buf[from..]).map(|i| from + i + 4) else {
            for i in self.scanned..buf.len() {
                if buf[i] == b'\n' && (i == 0 || buf[i - 1] != b'\r') {
                    return Err(Error::bad("bare LF in trailer section"));
                }
            }
            if buf.len() >= self.max_header_bytes {
                return Err(Error::new(431, "trailer section too large"));
            }
            self.scanned = buf.len();
            return Ok(None);
        };
        if end > self.max_header_bytes {
            return Err(Error::new(431, "trailer section too large"));
        }
        let section = buf.split_to(end).freeze();
        self.state = Chunk::Done;
        self.scanned = 0;
        // Field lines end with CRLF: split at LF, and each line but the last
        // must end with its CR (a bare LF is refused, not taken as a line end).
        let lines = section[..end - 4].split(|&b| b == b'\n');
        let count = lines.clone().count();
        if count > self.max_headers {
            return Err(Error::new(431, "too many trailer fields"));
        }
        let mut trailers = HeaderMap::new();
        for (i, line) in lines.enumerate() {
            let line = if i + 1 < count {
                line.strip_suffix(b"\r")
                    .ok_or(Error::bad("bare LF in trailer section"))?
            } else {
                line
            };
            let (name, value) = trailer_field(line)?;
            let name =
                HeaderName::from_bytes(name).map_err(|_| Error::bad("malformed trailer field"))?;
            let value = HeaderValue::from_maybe_shared(section.slice_ref(value))
                .map_err(|_| Error::bad("malformed trailer field"))?;
            trailers
                .try_append(name, value)
                .map_err(|_| Error::new(431, "too many trailer fields"))?;
        }
        Ok(Some(BodyEvent::End(trailers)))
    }
}

/// `chunk-size [chunk-ext] CRLF` (RFC 9112 §7.1.1), `line` ending at its
/// first LF: → (size, bytes of extensions). BWS only around `;` and `=`.
fn chunk_size_line(line: &[u8]) -> Result<(u64, usize), Error> {
    let invalid = || Error::bad("invalid chunk size line");
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid());
    }
    let mut i = digits;
    let skip_ws = |mut i: usize| {
        while line.get(i).is_some_and(|&b| is_ws(b)) {
            i += 1;
        }
        i
    };
    let token = |i: usize| {
        let n = line[i..].iter().take_while(|&&b| is_tchar(b)).count();
        if n == 0 {
            None
        } else {
            Some(i + n)
        }
    };
    loop {
        let j = skip_ws(i);
        if line.get(j) != Some(&b';') {
            break;
        }
        i = token(skip_ws(j + 1)).ok_or_else(invalid)?;
        let k = skip_ws(i);
        if line.get(k) == Some(&b'=') {
            let v = skip_ws(k + 1);
            i = if line.get(v) == Some(&b'"') {
                quoted_string(line, v).ok_or_else(invalid)?
            } else {
                token(v).ok_or_else(invalid)?
            };
        }
    }
    if &line[i..] != b"\r\n" {
        return Err(invalid());
    }
    if digits > MAX_CHUNK_DIGITS {
        return Err(Error::bad("chunk size overflow"));
    }
    let size = line[..digits]
        .iter()
        .filter_map(|&b| hex_value(b))
        .fold(0u64, |n, d| (n << 4) | u64::from(d));
    Ok((size, i - digits))
}

/// A quoted-string starting at `line[i] == '"'`: where it ends.
fn quoted_string(line: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *line.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *line.get(i + 1)?;
                if !(escaped == b'\t' || (0x20..=0x7e).contains(&escaped) || escaped >= 0x80) {
                    return None;
                }
                i += 2;
            }
            // qdtext: HTAB, SP, %x21, %x23-5B, %x5D-7E, obs-text
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

/// A trailer field line: `token ":" OWS value OWS`, the value without CTLs
/// (Python's `_FIELD_LINE`; no obs-fold, no space before the colon).
fn trailer_field(line: &[u8]) -> Result<(&[u8], &[u8]), Error> {
    let malformed = || Error::bad("malformed trailer field");
    let colon = find_byte(line, b':').ok_or_else(malformed)?;
    let (name, rest) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(malformed());
    }
    if !rest.iter().all(|&b| is_field_byte(b)) {
        return Err(malformed());
    }
    Ok((name, trim_ws(rest)))
}

/// Decodes a request body, whatever its [`Framing`].
#[derive(Clone, Debug)]
pub enum BodyDecoder {
    /// Content-Length (or no body: a length of 0).
    Length(LengthDecoder),
    /// Transfer-Encoding: chunked.
    Chunked(ChunkedDecoder),
}

impl BodyDecoder {
    /// The decoder for a request head's framing.
    pub fn new(framing: Framing, limits: &Limits) -> Self {
        match framing {
            Framing::Empty => BodyDecoder::Length(LengthDecoder::new(0)),
            Framing::Length(n) => BodyDecoder::Length(LengthDecoder::new(n)),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(limits)),
        }
    }

    /// The next event from the front of `buf`; `Ok(None)` when more bytes
    /// are needed (or after `End`).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, Error> {
        match self {
            BodyDecoder::Length(d) => Ok(d.decode(buf)),
            BodyDecoder::Chunked(d) => d.decode(buf),
        }
    }

    /// `End` was returned.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length(d) => d.is_done(),
            BodyDecoder::Chunked(d) => d.is_done(),
        }
    }

    /// The client closed its side: a 400 unless the body was complete
    /// (Python's `feed_eof` in the middle of a request).
    pub fn eof(&self) -> Result<(), Error> {
        let complete = match self {
            BodyDecoder::Length(d) => d.remaining() == 0,
            BodyDecoder::Chunked(d) => d.is_done(),
        };
        if complete {
            Ok(())
        } else {
            Err(Error::bad("connection closed in the middle of a request"))
        }
    }
}
