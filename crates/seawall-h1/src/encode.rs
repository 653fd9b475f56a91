//! Bytes to send downstream: response heads, chunks, error responses; and
//! the hop-by-hop fields a proxy must not forward.
//!
//! Mirrors the response half of `seawall.proxy.http1._serialize`. A proxy
//! forwards end-to-end fields and replaces the hop-by-hop ones (RFC 9110
//! §7.6.1): Connection and every field it lists (never Host or
//! Content-Length), Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade and
//! Proxy-*. It then adds its own Via and the framing of *this* hop.

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::error::Error;
use crate::syntax::{decimal, hex, list_members};

/// The Via entry the sidecar adds (RFC 9110 §7.6.3: received protocol,
/// pseudonym). Pass `b"1.0 seawall"` for a message received as HTTP/1.0.
pub const VIA: &[u8] = b"1.1 seawall";

/// The end of a chunked body with no trailer fields.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The methods the proxy forwards, for the Allow field of a 405.
const ALLOW: &[u8] = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH, TRACE";

/// How the body of a response sent downstream is delimited on this hop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `content-length: n` (a received Content-Length is replaced).
    Length(u64),
    /// `transfer-encoding: chunked`: send the body with [`encode_chunk`]
    /// and end it with [`LAST_CHUNK`] or [`encode_last_chunk`]. Not for an
    /// HTTP/1.0 client (use `Close`).
    Chunked,
    /// The body ends when the connection closes: no length, a received
    /// Content-Length dropped, and `connection: close`.
    Close,
    /// No body follows (1xx, 204, 304, a response to HEAD): no framing
    /// field is added, and a received Content-Length is kept (for HEAD and
    /// 304 it describes the representation) except on 1xx and 204, which
    /// never carry one (RFC 9110 §8.6). Python's encoder with neither
    /// `chunked` nor `content_length`.
    NoBody,
    /// A protocol switch (101): `connection: upgrade` and `upgrade: <value>`.
    Upgrade(HeaderValue),
}

/// Write an HTTP/1.1 response head to `dst`.
///
/// `headers` are the fields received from upstream (or made locally):
/// hop-by-hop fields are skipped as they are written (so calling
/// [`strip_hop_by_hop`] first is not needed), then `via` (if any) is added
/// after them, then the framing of `framing`, then `connection: close` when
/// `!keep_alive` (or for [`ResponseFraming::Close`]). `reason` is the phrase
/// to send; `None` sends the standard one (`""` for an unknown status).
///
/// Errors (status 500, as Python's `LocalProtocolError`) for a status
/// outside 100..=999, a CR, LF or NUL in `reason` or `via`, a chunked or
/// close-delimited body on a 1xx, a chunked body on a 204 or 304, and a
/// Content-Length on a 1xx or 204. Nothing is written then.
pub fn encode_response_head(
    status: u16,
    reason: Option<&str>,
    headers: &HeaderMap,
    framing: ResponseFraming,
    keep_alive: bool,
    via: Option<&[u8]>,
    dst: &mut BytesMut,
) -> Result<(), Error> {
    if !(100..=999).contains(&status) {
        return Err(Error::local("invalid status code"));
    }
    let no_length = status < 200 || status == 204;
    match framing {
        ResponseFraming::Chunked if no_length || status == 304 => {
            return Err(Error::local(
                "a response with this status has no body to chunk",
            ));
        }
        ResponseFraming::Length(_) if no_length => {
            return Err(Error::local(
                "a response with this status has no Content-Length",
            ));
        }
        ResponseFraming::Close if status < 200 => {
            return Err(Error::local(
                "an interim response cannot end the connection",
            ));
        }
        _ => {}
    }
    let reason = reason.map_or_else(|| reason_phrase(status), str::as_bytes);
    if breaks_framing(reason) {
        return Err(Error::local("CR, LF or NUL in the reason phrase"));
    }
    if via.is_some_and(breaks_framing) {
        return Err(Error::local("CR, LF or NUL in via"));
    }
    let drop_length = no_length
        || matches!(
            framing,
            ResponseFraming::Length(_) | ResponseFraming::Chunked | ResponseFraming::Close
        );

    dst.reserve(64 + reason.len() + headers.len() * 32);
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(&[
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    dst.put_slice(reason);
    dst.put_slice(b"\r\n");
    let connection = headers.get(header::CONNECTION).is_some();
    for (name, value) in headers {
        if is_hop_by_hop(name)
            || (drop_length && name == header::CONTENT_LENGTH)
            || (connection && listed_in_connection(headers, name))
        {
            continue;
        }
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(via) = via {
        put_field(dst, b"via", via);
    }
    match &framing {
        ResponseFraming::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
        ResponseFraming::Length(n) => put_field(dst, b"content-length", decimal(*n, &mut [0; 20])),
        _ => {}
    }
    match &framing {
        ResponseFraming::Upgrade(protocol) => {
            put_field(dst, b"connection", b"upgrade");
            put_field(dst, b"upgrade", protocol.as_bytes());
        }
        ResponseFraming::Close => put_field(dst, b"connection", b"close"),
        _ if !keep_alive => put_field(dst, b"connection", b"close"),
        _ => {}
    }
    dst.put_slice(b"\r\n");
    Ok(())
}

pub(crate) fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

fn breaks_framing(value: &[u8]) -> bool {
    value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0)
}

/// One chunk of a chunked body. Empty `data` writes nothing (an empty chunk
/// would end the body: send [`LAST_CHUNK`] for that).
pub fn encode_chunk(data: &[u8], dst: &mut BytesMut) {
    if data.is_empty() {
        return;
    }
    dst.reserve(data.len() + 20);
    dst.put_slice(hex(data.len() as u64, &mut [0; 16]));
    dst.put_slice(b"\r\n");
    dst.put_slice(data);
    dst.put_slice(b"\r\n");
}

/// The last chunk with trailer fields (hop-by-hop ones skipped); with no
/// trailers, [`LAST_CHUNK`].
pub fn encode_last_chunk(trailers: &HeaderMap, dst: &mut BytesMut) {
    dst.put_slice(b"0\r\n");
    for (name, value) in trailers {
        if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
            put_field(dst, name.as_str().as_bytes(), value.as_bytes());
        }
    }
    dst.put_slice(b"\r\n");
}

/// The kind of a local answer, for its JSON body's `error`: what a program
/// switches on (`bad_request`, `timeout`, `unavailable`...).
pub fn error_kind(status: u16) -> &'static str {
    match status {
        400 => "bad_request",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "body_too_large",
        414 => "target_too_long",
        429 => "rate_limited",
        431 => "head_too_large",
        499 => "client_gone",
        500 => "internal_error",
        501 => "not_implemented",
        502 => "bad_gateway",
        503 => "unavailable",
        504 => "timeout",
        505 => "version_not_supported",
        _ if status >= 500 => "server_error",
        _ => "client_error",
    }
}

/// The body of an answer the proxy makes itself: one line of JSON,
/// `{"error": kind, "destination": name or null, "reason": text}\n`.
pub fn local_body(error: &str, destination: Option<&str>, reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + reason.len());
    out.extend_from_slice(b"{\"error\":");
    json_string(error, &mut out);
    out.extend_from_slice(b",\"destination\":");
    match destination {
        Some(d) => json_string(d, &mut out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"reason\":");
    json_string(reason, &mut out);
    out.extend_from_slice(b"}\n");
    out
}

/// `s` as a JSON string (RFC 8259 §7: quote, backslash and controls escaped).
fn json_string(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The canonical reason phrase of `status` (empty for an unknown one).
pub fn canonical_reason(status: u16) -> &'static str {
    std::str::from_utf8(reason_phrase(status)).unwrap_or("")
}

/// Answer a request the codec refused, and close:
///
/// ```text
/// HTTP/1.1 400 Bad Request
/// content-type: application/json
/// content-length: 69
/// connection: close
///
/// {"error":"bad_request","destination":null,"reason":"duplicate Host"}
/// ```
///
/// The body is [`local_body`]: the kind of error, no destination (none was
/// chosen yet), and the reason (or the status's phrase when it is empty). A
/// 405 lists the methods the proxy forwards in Allow. A status outside
/// 100..=999 is answered as 500.
pub fn error_response(err: &Error, dst: &mut BytesMut) {
    let status = if (100..=999).contains(&err.status) {
        err.status
    } else {
        500
    };
    let phrase = reason_phrase(status);
    let reason: &str = if err.reason.is_empty() {
        std::str::from_utf8(phrase).unwrap_or("")
    } else {
        &err.reason
    };
    let body = local_body(error_kind(status), None, reason);
    dst.reserve(160 + body.len());
    dst.put_slice(b"HTTP/1.1 ");
    dst.put_slice(decimal(u64::from(status), &mut [0; 20]));
    dst.put_u8(b' ');
    dst.put_slice(phrase);
    dst.put_slice(b"\r\n");
    put_field(dst, b"content-type", b"application/json");
    put_field(
        dst,
        b"content-length",
        decimal(body.len() as u64, &mut [0; 20]),
    );
    if status == 405 {
        put_field(dst, b"allow", ALLOW);
    }
    put_field(dst, b"connection", b"close");
    dst.put_slice(b"\r\n");
    dst.put_slice(&body);
}

/// Remove the hop-by-hop fields from `headers` (Python's
/// `remove_hop_by_hop`): Connection and every field it lists, Keep-Alive,
/// TE, Trailer, Transfer-Encoding, Upgrade and every Proxy-* field.
///
/// Connection can never remove Host or Content-Length: a client listing
/// `Connection: content-length` would otherwise strip the upstream's
/// framing and smuggle its body.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut listed: Vec<HeaderValue> = Vec::new();
    if headers.contains_key(header::CONNECTION) {
        listed.extend(headers.get_all(header::CONNECTION).iter().cloned());
    }
    for value in &listed {
        for token in list_members(value.as_bytes()) {
            if token.eq_ignore_ascii_case(b"host") || token.eq_ignore_ascii_case(b"content-length")
            {
                continue;
            }
            if let Ok(name) = std::str::from_utf8(token) {
                headers.remove(name);
            }
        }
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    if headers.keys().any(is_proxy_field) {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_proxy_field(n))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
}

fn is_proxy_field(name: &HeaderName) -> bool {
    name.as_str().starts_with("proxy-")
}

/// Connection, Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || is_proxy_field(name)
}

/// `name` is listed in a Connection field of `headers` (Host and
/// Content-Length never count).
fn listed_in_connection(headers: &HeaderMap, name: &HeaderName) -> bool {
    if name == header::HOST || name == header::CONTENT_LENGTH {
        return false;
    }
    let name = name.as_str().as_bytes();
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|value| list_members(value.as_bytes()).any(|t| t.eq_ignore_ascii_case(name)))
}

/// The reason phrases Python's `http.HTTPStatus` gives (3.11), so that
/// responses read the same as the Python sidecar's; `http`'s canonical
/// phrase for the few it does not list, else empty.
pub(crate) fn reason_phrase(status: u16) -> &'static [u8] {
    let phrase = match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Requested Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a Teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(""),
    };
    phrase.as_bytes()
}
