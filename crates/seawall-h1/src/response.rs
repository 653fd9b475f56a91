//! The upstream half: request heads to send, response heads to read, and how
//! a response's body is delimited (RFC 9112 §6.3, decided here and nowhere
//! else).
//!
//! The upstream is an app the mesh fronts, so its answers are read strictly
//! enough that a response can never be taken for two: two different
//! Content-Length values, an unparseable one, obs-fold, or a field value
//! with a control character is a protocol error (502 downstream), never a
//! guess. Transfer-Encoding beside Content-Length is read as the RFC says
//! (Transfer-Encoding wins, Content-Length is dropped) and the connection is
//! not reused after it.

use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::encode::put_field;
use crate::error::Error;
use crate::syntax::decimal;

/// How a request body sent upstream is delimited on this hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body, and no framing field.
    Empty,
    /// `content-length: n`.
    Length(u64),
    /// `transfer-encoding: chunked` (a streamed body of unknown length).
    Chunked,
}

/// Write an HTTP/1.1 request head: the request line, `headers` as they are
/// (the caller has removed the hop-by-hop and framing fields), the `extra`
/// fields, then the framing field.
///
/// Errors (nothing written) for a method that is not a token or a target
/// with a space, CR, LF or NUL.
pub fn encode_request_head(
    method: &str,
    target: &[u8],
    headers: &HeaderMap,
    extra: &[(&str, &[u8])],
    framing: RequestFraming,
    dst: &mut BytesMut,
) -> Result<(), Error> {
    if method.is_empty() || !crate::syntax::is_token(method.as_bytes()) {
        return Err(Error::local("invalid method"));
    }
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(Error::local("invalid request target"));
    }
    dst.reserve(32 + target.len() + headers.len() * 40);
    dst.put_slice(method.as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target);
    dst.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        put_field(dst, name.as_str().as_bytes(), value.as_bytes());
    }
    for (name, value) in extra {
        put_field(dst, name.as_bytes(), value);
    }
    match framing {
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => put_field(dst, b"content-length", decimal(n, &mut [0; 20])),
        RequestFraming::Chunked => put_field(dst, b"transfer-encoding", b"chunked"),
    }
    dst.put_slice(b"\r\n");
    Ok(())
}

/// How a response's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body: a response to HEAD, a 1xx, 204 or 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    /// The reason phrase as received (visible ASCII, spaces and tabs).
    pub reason: String,
    /// HTTP/1.0 (`false`) or HTTP/1.1 (`true`).
    pub http11: bool,
    /// The fields, with Content-Length removed when Transfer-Encoding is also present.
    pub headers: HeaderMap,
    pub body: ResponseBody,
    /// Whether the connection may carry another request once the body is read.
    pub reusable: bool,
}

/// The most fields a response head may have.
pub const MAX_RESPONSE_FIELDS: usize = 128;

/// Parse a response head at the start of `buf`: `Ok(None)` while incomplete,
/// else the head and its length in bytes. `head_request`: the request was
/// HEAD (no body follows whatever the fields say).
pub fn parse_response_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(ResponseHead, usize)>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_FIELDS];
    let mut parsed = httparse::Response::new(&mut slots);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(502, "too many fields in the response head"))
        }
        Err(_) => return Err(Error::new(502, "malformed response head")),
    };
    let status = parsed.code.unwrap_or(0);
    if !(100..=999).contains(&status) {
        return Err(Error::new(502, "invalid response status"));
    }
    let http11 = parsed.version == Some(1);
    let reason = parsed.reason.unwrap_or("");
    if reason.bytes().any(|b| b < b' ' && b != b'\t' || b == 0x7f) {
        return Err(Error::new(502, "control character in the reason phrase"));
    }
    let reason = reason.to_owned();
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked_last = false;
    let mut close = false;
    let mut keep_alive = false;
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes())
            .map_err(|_| Error::new(502, "invalid field name in the response"))?;
        let value = HeaderValue::from_bytes(field.value)
            .map_err(|_| Error::new(502, "invalid field value in the response"))?;
        if name == header::CONTENT_LENGTH {
            for member in value.as_bytes().split(|&b| b == b',') {
                let n = parse_length(member)
                    .ok_or(Error::new(502, "invalid Content-Length in the response"))?;
                if length.is_some_and(|seen| seen != n) {
                    return Err(Error::new(
                        502,
                        "conflicting Content-Length in the response",
                    ));
                }
                length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
            // the final coding counts: a later field line follows an earlier one
            chunked_last = chunked_is_final(value.as_bytes());
        } else if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',') {
                let token = token.trim_ascii();
                close |= token.eq_ignore_ascii_case(b"close");
                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        headers.append(name, value);
    }
    // After a 101 the connection speaks another protocol: never HTTP/1.1 again.
    let mut reusable = status != 101 && if http11 { !close } else { keep_alive && !close };
    let body = if head_request || status < 200 || status == 204 || status == 304 {
        ResponseBody::None
    } else if transfer_encoding {
        if length.is_some() {
            headers.remove(header::CONTENT_LENGTH);
            reusable = false; // a message framed two ways: never trust the rest of the stream
        }
        if chunked_last {
            ResponseBody::Chunked
        } else {
            reusable = false;
            ResponseBody::Close
        }
    } else if let Some(n) = length {
        ResponseBody::Length(n)
    } else {
        reusable = false;
        ResponseBody::Close
    };
    Ok(Some((
        ResponseHead {
            status,
            reason,
            http11,
            headers,
            body,
            reusable,
        },
        used,
    )))
}

/// Whether the last coding a Transfer-Encoding value lists is `chunked`.
fn chunked_is_final(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .rfind(|coding| !coding.is_empty())
        .is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked"))
}

fn parse_length(text: &[u8]) -> Option<u64> {
    let text = text.trim_ascii();
    if text.is_empty() || text.len() > 19 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> ResponseHead {
        let (head, used) = parse_response_head(raw, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, raw.len());
        head
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let h = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Length(5), true));
        let h = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Chunked, true));
        let h = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Close, false));
        let h = parse(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Close, false));
        let h = parse(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(h.body, ResponseBody::None);
        let h = parse(b"HTTP/1.1 304 Not Modified\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::None, true));
        let h = parse(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::None, false));
        let (h, _) = parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true)
            .expect("valid")
            .expect("complete");
        assert_eq!(h.body, ResponseBody::None);
        assert_eq!(h.headers["content-length"], "9"); // kept: it describes the representation
    }

    #[test]
    fn transfer_encoding_beats_content_length_and_closes() {
        let h =
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!((h.body, h.reusable), (ResponseBody::Chunked, false));
        assert!(!h.headers.contains_key("content-length"));
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        assert!(
            !parse(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").reusable
        );
        assert!(!parse(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").reusable);
        let h = parse(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n");
        assert!(h.reusable && !h.http11);
    }

    #[test]
    fn ambiguous_or_malformed_heads_are_protocol_errors() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nx: a\r\n b\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
        ] {
            let err = parse_response_head(raw, false).expect_err("refused");
            assert_eq!(err.status, 502, "{raw:?}");
        }
        // the same length twice is one length
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n").body,
            ResponseBody::Length(3)
        );
        assert!(
            parse_response_head(b"HTTP/1.1 200 OK\r\ncontent-len", false)
                .expect("valid so far")
                .is_none()
        );
    }

    #[test]
    fn request_heads_are_written_in_order_with_their_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("orders"));
        let mut out = BytesMut::new();
        encode_request_head(
            "POST",
            b"/a?b=1",
            &headers,
            &[("x-seawall-deadline-ms", b"250")],
            RequestFraming::Length(2),
            &mut out,
        )
        .expect("encoded");
        assert_eq!(
            &out[..],
            b"POST /a?b=1 HTTP/1.1\r\nhost: orders\r\nx-seawall-deadline-ms: 250\r\ncontent-length: 2\r\n\r\n"
        );
        out.clear();
        encode_request_head(
            "GET",
            b"/",
            &headers,
            &[],
            RequestFraming::Chunked,
            &mut out,
        )
        .expect("encoded");
        assert!(out.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        assert!(encode_request_head(
            "GET",
            b"/a b",
            &headers,
            &[],
            RequestFraming::Empty,
            &mut out
        )
        .is_err());
        assert!(
            encode_request_head("G T", b"/", &headers, &[], RequestFraming::Empty, &mut out)
                .is_err()
        );
    }
}
