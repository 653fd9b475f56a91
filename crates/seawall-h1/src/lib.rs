//! seawall-h1: the sidecar's strict HTTP/1.1 server-side codec: requests
//! in, responses out. Sans-I/O: bytes in, heads and body pieces out, bytes
//! to send out; no sockets, no clock, no tasks.
//!
//! It mirrors the Python sidecar's codec (`seawall.proxy.http1`, the
//! contract; `docs/proxy/http1.md`), rule for rule and status for status.
//! There is one way to decide framing, and the HTTP library's defaults are
//! not trusted: Content-Length with Transfer-Encoding, a repeated
//! Content-Length, obs-fold, a bare CR or LF, an invalid field name or
//! value, and NUL are all refused (400) before anything reaches the
//! application, and the connection is closed.
//!
//! * [`HeadParser`] (or [`parse_request_head`]) parses a request head into a
//!   [`RequestHead`]: target forms, Host, framing, persistence,
//!   100-continue and upgrade worked out once.
//! * [`BodyDecoder`] ([`LengthDecoder`], [`ChunkedDecoder`]) splits the body
//!   off the read buffer, zero-copy, and never reads past it.
//! * [`encode_response_head`], [`encode_chunk`], [`LAST_CHUNK`],
//!   [`encode_last_chunk`] build what to send; [`error_response`] answers a
//!   refused request; [`strip_hop_by_hop`] drops what must not be forwarded.
//!
//! Everything a client can get wrong is an [`Error`] whose `status` is what
//! to answer before closing.
//!
//! ```
//! use bytes::BytesMut;
//! use seawall_h1::{BodyDecoder, BodyEvent, Framing, HeadParser, Limits};
//!
//! let mut buf = BytesMut::from(&b"POST /orders HTTP/1.1\r\nHost: Orders:8080\r\n\
//!     Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /next HTTP/1.1\r\n"[..]);
//! let mut heads = HeadParser::new(Limits::default());
//! let head = heads.decode(&mut buf).unwrap().unwrap();
//! assert_eq!(head.authority.as_deref(), Some(&b"orders:8080"[..]));
//! assert_eq!(head.framing, Framing::Chunked);
//! let mut body = BodyDecoder::new(head.framing, heads.limits());
//! assert_eq!(body.decode(&mut buf).unwrap(), Some(BodyEvent::Data("hello".into())));
//! assert!(matches!(body.decode(&mut buf).unwrap(), Some(BodyEvent::End(_))));
//! assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n"); // the next request waits
//! assert!(heads.decode(&mut buf).unwrap().is_none());
//! ```
#![forbid(unsafe_code)]

mod body;
mod encode;
mod error;
mod head;
mod limits;
mod response;
mod syntax;
mod target;

pub use body::{BodyDecoder, BodyEvent, ChunkedDecoder, LengthDecoder};
pub use encode::{
    canonical_reason, encode_chunk, encode_last_chunk, encode_response_head, error_kind,
    error_response, local_body, strip_hop_by_hop, ResponseFraming, LAST_CHUNK, VIA,
};
pub use error::Error;
pub use head::{parse_request_head, Framing, HeadParser, RequestHead};
pub use limits::{InvalidLimits, Limits};
pub use response::{
    encode_request_head, parse_response_head, RequestFraming, ResponseBody, ResponseHead,
    MAX_RESPONSE_FIELDS,
};
pub use syntax::decimal;
pub use target::normalize_path;
