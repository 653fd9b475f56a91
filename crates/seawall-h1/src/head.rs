//! The request head: find it, check it, and work out what it means.
//!
//! Mirrors `seawall.proxy.http1._parser.RequestParser` (the head half) and
//! `_heads.build_request_head`. httparse checks the syntax in one pass (as
//! llhttp does for the Python codec); this module applies what httparse does
//! not, or not with the status the contract wants:
//!
//! | rule | status | Python |
//! |---|---|---|
//! | bare CR or LF before the request line, or bare LF anywhere in the head | 400 | `_head`, `_grow_partial` |
//! | request line over `max_request_line` (also before its CRLF arrives) | 414 | `parse_request_line`, `_grow_partial` |
//! | request line not `method SP target SP version` | 400 | `parse_request_line` |
//! | `HTTP/d.d` other than 1.0 and 1.1 | 505 | `parse_request_line` |
//! | CONNECT | 405 | `parse_request_line` |
//! | bytes that cannot start a request line (TLS, garbage) | 400 | `_REQUEST_PREFIX` |
//! | head over `max_header_bytes` (also before it ends) | 431 | `_feed_llhttp`, `_grow_partial` |
//! | method not a token / a token llhttp does not know | 400 / 501 | llhttp, `_llhttp_error` |
//! | target byte outside VCHAR (CTL, SP, obs-text) | 400 | llhttp |
//! | field syntax: obs-fold, space before colon, bad name, CTL/NUL in value | 400 | llhttp (httparse here) |
//! | more than `max_headers` field lines | 431 | `_feed_llhttp` |
//! | Content-Length not `1*18DIGIT`, or repeated (even equal) | 400 | `_content_length` |
//! | Host missing (1.1) or repeated, or not `host[:port]` | 400 | `build_request_head`, `_authority` |
//! | target forms (origin, absolute, asterisk), fragment, bad `%` | 400 | `build_request_head`, `normalize_path` |
//! | Transfer-Encoding in 1.0, or with Content-Length | 400 | `build_request_head` |
//! | Transfer-Encoding not ending in one `chunked` / another coding first | 400 / 501 | `_check_chunked` |
//! | Content-Length over `max_body` | 413 | `build_request_head` |
//!
//! The checks run in Python's order (request line, head size, method,
//! target, field syntax, llhttp's framing checks, field count, then the
//! meaning), and an incomplete head is checked exactly as Python checks one,
//! so a request with several faults gets the status Python gives it, however
//! its bytes arrive. tests/conformance.rs holds the two codecs to that.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Version};

use crate::error::Error;
use crate::limits::Limits;
use crate::syntax::{find_blank_line, find_byte, is_tchar, is_token, list_members};
use crate::target::{self, Source};

/// How the request body is delimited (RFC 9112 §6.3): exactly one way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: neither Content-Length nor Transfer-Encoding, or `Content-Length: 0`.
    Empty,
    /// `Content-Length: n`, n > 0.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A request's start line and header section, validated, with the facts the
/// proxy acts on worked out once (Python's `RequestHead`).
///
/// Every `Bytes` here, and every header value, is a slice of one buffer
/// holding the head as received (zero-copy), except `path` and `authority`
/// when they had to be normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method: one llhttp knows (the standard ones and the WebDAV,
    /// UPnP and other registered extensions), never CONNECT or PRI.
    pub method: Method,
    /// The request-target exactly as received.
    pub target: Bytes,
    /// What to route on and send upstream in origin-form: path and query,
    /// `/` at least, the path normalized by [`crate::normalize_path`] (the
    /// query untouched); for an absolute-form target its path part; `*` for
    /// `OPTIONS *`.
    pub path: Bytes,
    /// `host[:port]` with the host lower-cased, from an absolute-form
    /// target, else from the Host field; `None` for an HTTP/1.0 request
    /// without Host. IPv6 literals keep their brackets.
    pub authority: Option<Bytes>,
    /// The target was in absolute-form (a forward-proxy request, e.g. a
    /// client using HTTP_PROXY): send `authority` upstream as Host.
    pub absolute: bool,
    /// `HTTP_10` or `HTTP_11`.
    pub version: Version,
    /// Every field, names lower-cased, values without surrounding
    /// whitespace, duplicates kept in order (end-to-end and hop-by-hop
    /// alike: see [`crate::strip_hop_by_hop`]).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// The client allows the connection to be reused after this exchange:
    /// HTTP/1.1 without `Connection: close`, or HTTP/1.0 with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// An HTTP/1.1 request with `Expect: 100-continue` (RFC 9110 §10.1.1:
    /// ignored in 1.0).
    pub expect_continue: bool,
    /// The Upgrade field (several joined with `, `) when an HTTP/1.1
    /// request lists `upgrade` in Connection; else `None`.
    pub upgrade: Option<Bytes>,
}

impl RequestHead {
    /// Whether body bytes follow the head.
    pub fn has_body(&self) -> bool {
        self.framing != Framing::Empty
    }

    /// The host part of `authority` (lower-cased, brackets kept).
    pub fn host(&self) -> Option<&[u8]> {
        let auth = self.authority.as_deref()?;
        Some(&auth[..host_len(auth)])
    }

    /// The port given with the host, if any (else the scheme's default).
    pub fn port(&self) -> Option<u16> {
        let auth = self.authority.as_deref()?;
        let digits = auth.get(host_len(auth) + 1..)?;
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

fn host_len(auth: &[u8]) -> usize {
    let from = if auth.first() == Some(&b'[') {
        find_byte(auth, b']').unwrap_or(0)
    } else {
        0
    };
    find_byte(&auth[from..], b':').map_or(auth.len(), |i| from + i)
}

/// Parse one request head at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed (but a limit crossed, or bytes that can
/// never become a valid head, are refused at once: a request line longer
/// than `max_request_line` with no CRLF yet is a 414 without waiting).
/// `Ok(Some((head, consumed)))`: `consumed` bytes (empty lines before the
/// request line included) are the head; the body, if any, follows.
///
/// Stateless, so each call scans `buf` from the start: a connection that
/// receives a head in many pieces should keep a [`HeadParser`], which
/// scans each byte once. Copies the head once into a shared buffer;
/// [`HeadParser::decode`] does not.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, Error> {
    HeadParser::new(*limits).parse(buf)
}

/// Parses the request heads of one connection, one at a time.
///
/// Feed it the connection's read buffer again each time more bytes arrive
/// (the same buffer, grown at the end: it remembers how far it has looked,
/// so a head trickling in byte by byte costs O(n), not O(n²)). After a
/// head, decode its body with [`crate::BodyDecoder`], then call again for
/// the next (pipelined) request. After an error, answer
/// [`crate::error_response`] and close: the parser and the buffer are not
/// reusable.
#[derive(Clone, Debug)]
pub struct HeadParser {
    limits: Limits,
    /// Empty lines (CRLF pairs) before the request line, skipped.
    skipped: usize,
    /// How much of the buffer was checked as an incomplete head (0: none yet).
    scanned: usize,
    /// The request line of the incomplete head was complete and checked.
    line_checked: bool,
    /// Where the fields of the last head are (reused: no allocation per request).
    fields: Vec<Field>,
}

impl HeadParser {
    /// A parser for a new connection.
    pub fn new(limits: Limits) -> Self {
        HeadParser {
            limits,
            skipped: 0,
            scanned: 0,
            line_checked: false,
            fields: Vec::new(),
        }
    }

    /// The limits it applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Forget a head in progress (the buffer was replaced).
    pub fn reset(&mut self) {
        self.skipped = 0;
        self.scanned = 0;
        self.line_checked = false;
    }

    /// Like [`parse_request_head`], resuming where the last call stopped.
    /// Copies the head once; after `Ok(Some((_, consumed)))` drop `consumed`
    /// bytes from the front of `buf` before the next call.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<(RequestHead, usize)>, Error> {
        let mut fields = std::mem::take(&mut self.fields);
        let scan = self.scan(buf, &mut fields);
        let result = match scan {
            Ok(Some(scan)) => {
                let end = scan.skip + scan.len;
                let frozen = Bytes::copy_from_slice(&buf[scan.skip..end]);
                build(frozen, &scan, &fields, &self.limits).map(|head| Some((head, end)))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        self.fields = fields;
        result
    }

    /// Parse a head at the front of `buf` and split it off (zero-copy: the
    /// head's fields are slices of the bytes split off). On `Ok(None)` the
    /// buffer is left as it was; read more into it and call again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RequestHead>, Error> {
        let mut fields = std::mem::take(&mut self.fields);
        let result = match self.scan(buf, &mut fields) {
            Ok(Some(scan)) => {
                buf.advance(scan.skip);
                let frozen = buf.split_to(scan.len).freeze();
                build(frozen, &scan, &fields, &self.limits).map(Some)
            }
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        self.fields = fields;
        result
    }

    /// The client closed its side with `buf` unparsed: fine between
    /// requests (nothing, or only empty lines, left), a 400 in the middle of
    /// a head (Python's `feed_eof`).
    pub fn eof(&self, buf: &[u8]) -> Result<(), Error> {
        let mut rest = buf;
        while let Some(tail) = rest.strip_prefix(b"\r\n") {
            rest = tail;
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(Error::bad("connection closed in the middle of a request"))
        }
    }

    // ------------------------------------------------------------------ scanning
    //
    // Python's RequestParser sees a head either whole (its end, CRLF CRLF, in
    // the bytes at hand: `_process_head`) or incomplete (`_grow_partial`,
    // which checks only what may already be refused). Each call here is one
    // such step. A valid head takes the fast path: httparse, then the checks
    // it does not make. Anything else is worked out again in Python's order
    // (`refusal`), so that the status is the one Python gives.

    /// Find and check a complete head: offsets into `buf`, fields recorded.
    fn scan(&mut self, buf: &[u8], fields: &mut Vec<Field>) -> Result<Option<Scanned>, Error> {
        if self.scanned > buf.len() || self.skipped > buf.len() {
            self.reset(); // not the buffer it saw last time: start again
        }
        if self.scanned == 0 {
            // Empty lines before a request line are ignored (RFC 9112 §2.2);
            // a bare CR or LF there is not (httparse would skip a bare LF).
            let mut start = self.skipped;
            while buf.get(start..start + 2) == Some(b"\r\n") {
                start += 2;
            }
            self.skipped = start;
            match buf.get(start) {
                None => return Ok(None),
                Some(b'\n') => return Err(Error::bad("bare CR or LF before the start line")),
                Some(b'\r') if buf.len() == start + 1 => return Ok(None),
                Some(b'\r') => return Err(Error::bad("bare CR or LF before the start line")),
                Some(_) => {}
            }
            // The common case: the whole head arrived at once.
            let rest = &buf[start..];
            if let Fast::Head(scan) = self.fast(rest, fields) {
                self.reset();
                return Ok(Some(Scanned {
                    skip: start,
                    ..scan
                }));
            }
            // Refused, or incomplete: decide as Python does. (A syntax error
            // in a head that has not ended waits for its end, as in Python:
            // then a size limit crossed first gives its own status.)
            if let Some(at) = find_blank_line(rest) {
                return Err(self.refusal(&rest[..at + 4]));
            }
            self.check_partial(buf, start)?;
            return Ok(None);
        }
        // A head in progress: look at the new bytes only.
        let start = self.skipped;
        let from = self.scanned.saturating_sub(3).max(start);
        match find_blank_line(&buf[from..]) {
            Some(at) => {
                let head = &buf[start..from + at + 4];
                match self.fast(head, fields) {
                    Fast::Head(scan) => {
                        self.reset();
                        Ok(Some(Scanned {
                            skip: start,
                            ..scan
                        }))
                    }
                    _ => Err(self.refusal(head)),
                }
            }
            None => {
                self.check_partial(buf, start)?;
                Ok(None)
            }
        }
    }

    /// httparse on `rest`, then the checks it does not make: the verdict
    /// for a valid head, with its fields recorded.
    fn fast(&self, rest: &[u8], fields: &mut Vec<Field>) -> Fast {
        fields.clear();
        // Header slots: on the stack, uninitialized (so free to make). A head
        // of n bytes has at most n/4 field lines ("a:" CRLF), which bounds
        // the slots whatever `max_headers` says.
        let wanted = self.limits.max_headers.min(rest.len() / 4 + 1);
        let mut stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_SLOTS];
        let mut heap = Vec::new();
        let slots = if wanted <= STACK_SLOTS {
            &mut stack[..wanted]
        } else {
            heap.resize(wanted, MaybeUninit::uninit());
            &mut heap[..]
        };
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(rest, slots) {
            Ok(httparse::Status::Complete(n)) => match self.check_complete(rest, n, &req, fields) {
                Some(scan) => Fast::Head(scan),
                None => Fast::Refused,
            },
            Ok(httparse::Status::Partial) => Fast::Partial,
            Err(_) => Fast::Refused,
        }
    }

    /// httparse accepted a head of `n` bytes: does everything else Python
    /// checks before the meaning of the fields hold? (If not, `refusal`
    /// says which rule failed first.)
    fn check_complete(
        &self,
        rest: &[u8],
        n: usize,
        req: &httparse::Request<'_, '_>,
        fields: &mut Vec<Field>,
    ) -> Option<Scanned> {
        let limits = &self.limits;
        let head = &rest[..n];
        let (method, target, version) = (req.method?, req.path?, req.version?);
        // httparse has seen "token SP uri SP HTTP/1.x", single spaces.
        let line_len = method.len() + target.len() + 10;
        if line_len > limits.max_request_line
            || head.get(line_len) != Some(&b'\r')
            || method == "CONNECT"
            || n > limits.max_header_bytes
        {
            return None;
        }
        let method = known_method(method.as_bytes()).ok()?;
        check_target(target.as_bytes()).ok()?;
        // Every line ends with CRLF (httparse also takes a bare LF).
        let base = head.as_ptr() as usize;
        for h in req.headers.iter() {
            let at = h.name.as_ptr() as usize - base;
            if at < 2 || &head[at - 2..at] != b"\r\n" {
                return None;
            }
            let value = h.value.as_ptr() as usize - base;
            fields.push(Field {
                name: (at, at + h.name.len()),
                value: (value, value + h.value.len()),
            });
        }
        if !head.ends_with(b"\r\n\r\n") {
            return None;
        }
        let target_at = target.as_ptr() as usize - base;
        Some(Scanned {
            skip: 0,
            len: n,
            method,
            target: (target_at, target_at + target.len()),
            version: if version == 0 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
        })
    }

    /// Why a complete head (up to its first CRLF CRLF) is refused, in the
    /// Python codec's order (`_process_head`): the request line (its bytes
    /// up to the first CRLF), the head's size, then what llhttp checks in
    /// order (method, target, field syntax, Content-Length and
    /// Transfer-Encoding), then the number of fields.
    fn refusal(&self, head: &[u8]) -> Error {
        let limits = &self.limits;
        let line_end = find_crlf(head).unwrap_or(head.len());
        let (method, target) = match check_request_line(&head[..line_end], limits) {
            Ok(parts) => parts,
            Err(err) => return err,
        };
        if head.len() > limits.max_header_bytes {
            return Error::new(431, "header section too large");
        }
        if let Err(err) = known_method(method).and_then(|_| check_target(target)) {
            return err;
        }
        let mut slots = vec![MaybeUninit::<httparse::Header<'_>>::uninit(); head.len() / 4 + 1];
        let mut req = httparse::Request::new(&mut []);
        let n = match req.parse_with_uninit_headers(head, &mut slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Error::bad("malformed request head"),
            Err(err) => return header_error(err),
        };
        let base = head.as_ptr() as usize;
        let bare_lf = n != head.len()
            || head.get(line_end..line_end + 2) != Some(b"\r\n")
            || req.headers.iter().any(|h| {
                let at = h.name.as_ptr() as usize - base;
                at < 2 || &head[at - 2..at] != b"\r\n"
            });
        if bare_lf {
            return Error::bad("bare LF in head");
        }
        if let Err(err) = llhttp_framing(req.headers) {
            return err;
        }
        if req.headers.len() > limits.max_headers {
            return Error::new(431, "too many header fields");
        }
        Error::bad("malformed request head")
    }

    /// Checks on an incomplete head, on the bytes not checked yet (Python's
    /// `_grow_partial`): bare LF, the request line once it is complete (or
    /// its length and prefix until then), the head's size.
    fn check_partial(&mut self, buf: &[u8], start: usize) -> Result<(), Error> {
        let limits = &self.limits;
        let rest = &buf[start..];
        let new = self.scanned.max(start) - start;
        let mut first_lf = None;
        for (i, &b) in rest.iter().enumerate().skip(new) {
            if b == b'\n' {
                if i == 0 || rest[i - 1] != b'\r' {
                    return Err(Error::bad("bare LF in head"));
                }
                first_lf.get_or_insert(i);
            }
        }
        if !self.line_checked {
            if let Some(lf) = first_lf {
                check_request_line(&rest[..lf - 1], limits)?;
                self.line_checked = true;
            } else if rest.len() > limits.max_request_line.saturating_add(1) {
                return Err(Error::new(414, "request line too long"));
            } else if new < PREFIX_CHECKED
                && !plausible_line_prefix(&rest[..rest.len().min(PREFIX_CHECKED)])
            {
                return Err(Error::bad("malformed request line"));
            }
        }
        if rest.len() >= limits.max_header_bytes {
            return Err(Error::new(431, "header section too large"));
        }
        self.scanned = buf.len();
        Ok(())
    }
}

/// The fast path's verdict.
enum Fast {
    /// A valid head (before the meaning of its fields is checked).
    Head(Scanned),
    /// httparse needs more bytes.
    Partial,
    /// Refused, by httparse or by a later check.
    Refused,
}

fn header_error(err: httparse::Error) -> Error {
    match err {
        httparse::Error::TooManyHeaders => Error::new(431, "too many header fields"),
        httparse::Error::HeaderName => Error::bad("invalid header field name"),
        httparse::Error::HeaderValue => Error::bad("invalid header field value"),
        httparse::Error::NewLine => Error::bad("bare CR or LF in head"),
        _ => Error::bad("malformed request head"),
    }
}

fn find_crlf(hay: &[u8]) -> Option<usize> {
    hay.windows(2).position(|w| w == b"\r\n")
}

/// The framing rules llhttp applies while it reads the fields, before the
/// Python codec counts them (so they win over a 431): Content-Length empty,
/// not digits, overflowing or repeated; Content-Length with
/// Transfer-Encoding; Transfer-Encoding empty, with anything after
/// `chunked`, or not ending in `chunked`. All 400.
fn llhttp_framing(headers: &[httparse::Header<'_>]) -> Result<(), Error> {
    let (mut length, mut te, mut chunked_last) = (false, false, false);
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            if length {
                return Err(Error::bad("duplicate Content-Length"));
            }
            length = true;
            let digits = h.value;
            if digits.is_empty()
                || !digits.iter().all(u8::is_ascii_digit)
                || digits
                    .iter()
                    .try_fold(0u64, |n, &d| {
                        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                    })
                    .is_none()
            {
                return Err(Error::bad("invalid Content-Length"));
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.is_empty() {
                return Err(Error::bad("empty Transfer-Encoding"));
            }
            te = true;
            for coding in list_members(h.value) {
                if chunked_last {
                    return Err(Error::bad(
                        "Transfer-Encoding must end with a single chunked",
                    ));
                }
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        } else {
            continue;
        }
        if length && te {
            return Err(Error::bad("both Content-Length and Transfer-Encoding"));
        }
    }
    if te && !chunked_last {
        return Err(Error::bad(
            "Transfer-Encoding must end with a single chunked",
        ));
    }
    Ok(())
}

/// httparse header slots kept on the stack (more only if `max_headers` says so).
const STACK_SLOTS: usize = 128;
/// How much of an incomplete request line is checked for garbage (Python's `_PREFIX_CHECKED`).
const PREFIX_CHECKED: usize = 256;

/// Where a complete head is, and its request line, checked.
struct Scanned {
    /// Empty lines before it.
    skip: usize,
    /// Its length, final CRLF included.
    len: usize,
    method: Method,
    /// Offsets of the target in the head.
    target: (usize, usize),
    version: Version,
}

/// One field line: offsets of its name and value in the head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Field {
    name: (usize, usize),
    value: (usize, usize),
}

// ---------------------------------------------------------------------- the request line

/// `method SP request-target SP HTTP-version` (Python's `parse_request_line`):
/// 414, then 400 for the shape, 505 for another `HTTP/d.d`, 405 for CONNECT.
fn check_request_line<'a>(line: &'a [u8], limits: &Limits) -> Result<(&'a [u8], &'a [u8]), Error> {
    if line.len() > limits.max_request_line {
        return Err(Error::new(414, "request line too long"));
    }
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::bad("malformed request line"));
    };
    if method.is_empty() || target.is_empty() {
        return Err(Error::bad("malformed request line"));
    }
    if version != b"HTTP/1.1" && version != b"HTTP/1.0" {
        return Err(match version {
            [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                if major.is_ascii_digit() && minor.is_ascii_digit() =>
            {
                Error::new(505, "HTTP version not supported")
            }
            _ => Error::bad("malformed request line"),
        });
    }
    if method == b"CONNECT" {
        return Err(Error::new(405, "CONNECT is not supported"));
    }
    Ok((method, target))
}

/// What an incomplete request line may look like (Python's `_REQUEST_PREFIX`):
/// a method token, then a target, then a version, then maybe its CR.
fn plausible_line_prefix(p: &[u8]) -> bool {
    let mut i = p.iter().take_while(|&&b| is_tchar(b)).count();
    if i == p.len() {
        return true;
    }
    if i == 0 || p[i] != b' ' {
        return false;
    }
    i += 1;
    i += p[i..]
        .iter()
        .take_while(|&&b| (0x21..=0x7e).contains(&b) || b >= 0x80)
        .count();
    if i == p.len() {
        return true;
    }
    if p[i] != b' ' {
        return false;
    }
    i += 1;
    i += p[i..]
        .iter()
        .take_while(|&&b| (0x21..=0x7e).contains(&b))
        .count();
    i == p.len() || (p[i] == b'\r' && i + 1 == p.len())
}

/// The request-target's bytes: VCHAR only (llhttp refuses CTLs and obs-text).
fn check_target(target: &[u8]) -> Result<(), Error> {
    if target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(Error::bad("invalid character in request-target"))
    }
}

/// The methods llhttp accepts in an HTTP/1.x request; a well-formed token it
/// does not know is a 501 (RFC 9110 §9.1), as in Python's `_llhttp_error`.
fn known_method(m: &[u8]) -> Result<Method, Error> {
    Ok(match m {
        b"GET" => Method::GET,
        b"POST" => Method::POST,
        b"PUT" => Method::PUT,
        b"DELETE" => Method::DELETE,
        b"HEAD" => Method::HEAD,
        b"OPTIONS" => Method::OPTIONS,
        b"PATCH" => Method::PATCH,
        b"TRACE" => Method::TRACE,
        b"COPY" | b"LOCK" | b"MKCOL" | b"MOVE" | b"PROPFIND" | b"PROPPATCH" | b"SEARCH"
        | b"UNLOCK" | b"BIND" | b"REBIND" | b"UNBIND" | b"ACL" | b"REPORT" | b"MKACTIVITY"
        | b"CHECKOUT" | b"MERGE" | b"M-SEARCH" | b"NOTIFY" | b"SUBSCRIBE" | b"UNSUBSCRIBE"
        | b"PURGE" | b"MKCALENDAR" | b"LINK" | b"UNLINK" | b"SOURCE" | b"QUERY" => {
            Method::from_bytes(m).map_err(|_| Error::bad("invalid method"))?
        }
        // The HTTP/2 preface's method, outside the preface.
        b"PRI" => return Err(Error::bad("unexpected HTTP/2 connection preface")),
        // RTSP methods: llhttp knows them, and refuses them in HTTP.
        b"DESCRIBE" | b"ANNOUNCE" | b"SETUP" | b"PLAY" | b"PAUSE" | b"TEARDOWN"
        | b"GET_PARAMETER" | b"SET_PARAMETER" | b"REDIRECT" | b"RECORD" | b"FLUSH" => {
            return Err(Error::bad("invalid method for HTTP/1.x"))
        }
        _ if is_token(m) => return Err(Error::new(501, "method not implemented")),
        _ => return Err(Error::bad("invalid character in method")),
    })
}

// ---------------------------------------------------------------------- meaning

// Field names the mesh sends on every request that `http` does not know:
// made once here, so that parsing them allocates nothing.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_SEAWALL_DEADLINE_MS: HeaderName = HeaderName::from_static("x-seawall-deadline-ms");
const X_SEAWALL_ATTEMPT: HeaderName = HeaderName::from_static("x-seawall-attempt");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// A field name (a token, checked by httparse), lower-cased. The common
/// ones are matched here; `HeaderName::from_bytes` makes the rest (and
/// allocates for a name `http` does not know).
fn header_name(raw: &[u8]) -> Result<HeaderName, Error> {
    let mut lower = [0u8; 24];
    if raw.len() <= lower.len() {
        let lower = &mut lower[..raw.len()];
        for (l, r) in lower.iter_mut().zip(raw) {
            *l = r.to_ascii_lowercase();
        }
        let known = match &*lower {
            b"host" => header::HOST,
            b"user-agent" => header::USER_AGENT,
            b"accept" => header::ACCEPT,
            b"accept-encoding" => header::ACCEPT_ENCODING,
            b"accept-language" => header::ACCEPT_LANGUAGE,
            b"connection" => header::CONNECTION,
            b"content-length" => header::CONTENT_LENGTH,
            b"content-type" => header::CONTENT_TYPE,
            b"authorization" => header::AUTHORIZATION,
            b"cookie" => header::COOKIE,
            b"x-request-id" => X_REQUEST_ID,
            b"traceparent" => TRACEPARENT,
            b"tracestate" => TRACESTATE,
            b"x-forwarded-for" => X_FORWARDED_FOR,
            b"x-forwarded-proto" => X_FORWARDED_PROTO,
            b"x-seawall-deadline-ms" => X_SEAWALL_DEADLINE_MS,
            b"x-seawall-attempt" => X_SEAWALL_ATTEMPT,
            b"keep-alive" => KEEP_ALIVE,
            _ => {
                return HeaderName::from_bytes(raw)
                    .map_err(|_| Error::bad("invalid header field name"))
            }
        };
        return Ok(known);
    }
    HeaderName::from_bytes(raw).map_err(|_| Error::bad("invalid header field name"))
}

/// The tokens of Connection the codec acts on.
#[derive(Clone, Copy, Default)]
struct ConnectionTokens {
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

impl ConnectionTokens {
    fn add(&mut self, value: &[u8]) {
        for token in list_members(value) {
            self.close |= token.eq_ignore_ascii_case(b"close");
            self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            self.upgrade |= token.eq_ignore_ascii_case(b"upgrade");
        }
    }
}

/// `1*DIGIT`, nothing else: no sign, space, list, `_` or non-ASCII digit,
/// at most 18 digits (no overflow anywhere). RUSTSEC-2021-0078.
fn content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::bad("invalid Content-Length"));
    }
    Ok(value
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Transfer-Encoding must be exactly `chunked`, over all its field lines
/// (Python's `_check_chunked`, RFC 9112 §6.1, §6.3; RUSTSEC-2021-0020):
/// `chunked` not last, repeated, or an empty member → 400 (the length
/// cannot be determined); another coding before `chunked` → 501.
fn check_chunked<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Result<(), Error> {
    let (mut members, mut chunked, mut last_chunked, mut empty) = (0, 0, false, false);
    for value in values {
        for coding in list_members(value.as_bytes()) {
            members += 1;
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked += usize::from(last_chunked);
            empty |= coding.is_empty();
        }
    }
    if members == 1 && last_chunked {
        Ok(())
    } else if !last_chunked || chunked > 1 || empty {
        Err(Error::bad(
            "Transfer-Encoding must end with a single chunked",
        ))
    } else {
        Err(Error::new(501, "transfer coding not implemented"))
    }
}

/// Build the head from its checked bytes, applying the request rules in
/// Python's order (`build_request_head`).
fn build(
    frozen: Bytes,
    scan: &Scanned,
    fields: &[Field],
    limits: &Limits,
) -> Result<RequestHead, Error> {
    let too_many = |_| Error::new(431, "too many header fields");
    let mut headers = HeaderMap::try_with_capacity(fields.len()).map_err(too_many)?;
    let mut length: Option<u64> = None;
    // Host and Upgrade as offsets: sliced again only if used (each slice of
    // the shared buffer is an atomic increment).
    let (mut hosts, mut host): (usize, Option<(usize, usize)>) = (0, None);
    let mut chunked = false;
    let mut connection: Option<ConnectionTokens> = None;
    let mut expect_continue = false;
    let (mut upgrades, mut upgrade): (usize, Option<(usize, usize)>) = (0, None);
    for field in fields {
        let name = header_name(&frozen[field.name.0..field.name.1])?;
        let raw = &frozen[field.value.0..field.value.1];
        if name == header::HOST {
            hosts += 1;
            host.get_or_insert(field.value);
        } else if name == header::CONTENT_LENGTH {
            if length.is_some() {
                return Err(Error::bad("duplicate Content-Length"));
            }
            length = Some(content_length(raw)?);
        } else if name == header::TRANSFER_ENCODING {
            chunked = true;
        } else if name == header::CONNECTION {
            connection.get_or_insert_with(Default::default).add(raw);
        } else if name == header::EXPECT {
            expect_continue = raw.eq_ignore_ascii_case(b"100-continue");
        } else if name == header::UPGRADE {
            upgrades += 1;
            upgrade.get_or_insert(field.value);
        }
        let value = HeaderValue::from_maybe_shared(frozen.slice(field.value.0..field.value.1))
            .map_err(|_| Error::bad("invalid header field value"))?;
        headers.try_append(name, value).map_err(too_many)?;
    }
    let host = host.map(|(from, to)| frozen.slice(from..to));
    let http11 = scan.version == Version::HTTP_11;

    // Host (RFC 9112 §3.2): exactly one in HTTP/1.1, at most one in 1.0.
    if hosts > 1 {
        return Err(Error::bad("duplicate Host"));
    }
    if hosts == 0 && http11 {
        return Err(Error::bad("missing Host"));
    }
    let host_authority = |host: Option<Bytes>| -> Result<Option<Bytes>, Error> {
        match host {
            Some(h) => Ok(Some(target::authority(h, Source::Host)?.canonical)),
            None => Ok(None),
        }
    };

    // Request-target forms (RFC 9112 §3.2).
    let target = frozen.slice(scan.target.0..scan.target.1);
    let (path, authority, absolute) = match target.first() {
        Some(b'/') => {
            let path = target::normalize_path(&target)?;
            (path, host_authority(host)?, false)
        }
        _ if &target[..] == b"*" => {
            if scan.method != Method::OPTIONS {
                return Err(Error::bad("asterisk-form target is only for OPTIONS"));
            }
            (target.clone(), host_authority(host)?, false)
        }
        _ if target.windows(3).any(|w| w == b"://") => {
            let (authority, path) = target::absolute_target(&target)?;
            host_authority(host)?; // must still be valid; the target wins
            (path, Some(authority.canonical), true)
        }
        // authority-form is for CONNECT only, refused earlier
        _ => return Err(Error::bad("malformed request-target")),
    };
    if target.contains(&b'#') {
        return Err(Error::bad("fragment in request-target"));
    }

    // Framing (RFC 9112 §6): exactly one of Content-Length, chunked, or nothing.
    let framing = if chunked {
        if !http11 {
            return Err(Error::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if length.is_some() {
            return Err(Error::bad("both Content-Length and Transfer-Encoding"));
        }
        check_chunked(headers.get_all(header::TRANSFER_ENCODING).iter())?;
        Framing::Chunked
    } else {
        match length {
            Some(n) if limits.max_body.is_some_and(|max| n > max) => {
                return Err(Error::new(413, "body too large"));
            }
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };

    // Persistence, 100-continue, upgrade (RFC 9112 §9.3, RFC 9110 §7.8, §10.1.1).
    let (keep_alive, upgrade) = if http11 {
        match connection {
            None => (true, None),
            Some(tokens) => {
                let upgrade = if !tokens.upgrade {
                    None
                } else if upgrades == 1 {
                    upgrade.map(|(from, to)| frozen.slice(from..to))
                } else if upgrades > 1 {
                    let mut joined = Vec::new();
                    for (i, v) in headers.get_all(header::UPGRADE).iter().enumerate() {
                        if i > 0 {
                            joined.extend_from_slice(b", ");
                        }
                        joined.extend_from_slice(v.as_bytes());
                    }
                    Some(Bytes::from(joined))
                } else {
                    None
                };
                (!tokens.close, upgrade)
            }
        }
    } else {
        (connection.is_some_and(|t| t.keep_alive), None)
    };

    Ok(RequestHead {
        method: scan.method.clone(),
        target,
        path,
        authority,
        absolute,
        version: scan.version,
        headers,
        framing,
        keep_alive,
        expect_continue: expect_continue && http11,
        upgrade,
    })
}
