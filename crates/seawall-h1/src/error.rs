//! The codec's one error type: a request refused, or a response that cannot be encoded.
//!
//! Mirrors `seawall.proxy.http1._errors`: every refusal carries the status to
//! answer with (`status_hint` in Python) and a short, stable reason that never
//! quotes the offending bytes, so it is safe to log and to send back in the
//! body of [`crate::error_response`].

use std::borrow::Cow;
use std::fmt;

/// An HTTP/1.1 message broke the protocol; the connection cannot go on.
///
/// For a request (`RemoteProtocolError` in the Python codec) `status` is 400,
/// 405, 413, 414, 431, 501 or 505: answer it with [`crate::error_response`]
/// and close the connection. The encoders (`LocalProtocolError`) use 500: a
/// head the caller asked for that would not be valid HTTP/1.1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The status to answer with.
    pub status: u16,
    /// A short description of what was refused.
    pub reason: Cow<'static, str>,
}

impl Error {
    /// An error with a static reason (no allocation).
    pub const fn new(status: u16, reason: &'static str) -> Self {
        Error {
            status,
            reason: Cow::Borrowed(reason),
        }
    }

    /// A 400 Bad Request.
    pub(crate) const fn bad(reason: &'static str) -> Self {
        Error::new(400, reason)
    }

    /// A 500: the encoders were asked for something that cannot be sent.
    pub(crate) const fn local(reason: &'static str) -> Self {
        Error::new(500, reason)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.status)
    }
}

impl std::error::Error for Error {}
