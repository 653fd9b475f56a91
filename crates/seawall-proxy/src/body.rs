//! The request body as the upstream connection reads it.
//!
//! A body is empty, whole (buffered up to `retry_buffer_bytes`, so a retry or
//! a mirror can send it again: cloning `Bytes` is a reference count), or
//! streamed: the downstream connection pumps it into a small bounded channel
//! as the upstream reads it, so a slow upstream slows the client down
//! (backpressure) and nothing else is buffered.
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Chunks in flight between the downstream reader and the upstream writer.
/// With reads of about 16 KiB, a streamed body holds at most these two chunks,
/// the read being filled, and what hyper queues for writing (`upstream::MAX_BUF`,
/// 64 KiB): about 128 KiB per request, plus the socket buffers.
pub const STREAM_DEPTH: usize = 2;

/// Why a streamed body ended early.
#[derive(Debug, Clone)]
pub enum BodyError {
    /// The client closed its connection, or sent bytes that are not a valid body.
    Downstream(&'static str),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Downstream(why) => write!(f, "request body: {why}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// The sending half of a streamed body.
pub type BodySender = mpsc::Sender<Result<Bytes, BodyError>>;

/// A request body sent upstream.
#[derive(Debug)]
pub enum ProxyBody {
    Empty,
    Full(Option<Bytes>),
    Stream {
        /// Bytes read before streaming began (an attempt to buffer that overflowed).
        prefix: Option<Bytes>,
        rx: mpsc::Receiver<Result<Bytes, BodyError>>,
        /// The length the client declared, if any (sent as Content-Length).
        length: Option<u64>,
    },
}

impl ProxyBody {
    /// A streamed body and the sender that feeds it.
    pub fn channel(prefix: Option<Bytes>, length: Option<u64>) -> (BodySender, ProxyBody) {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        (tx, ProxyBody::Stream { prefix, rx, length })
    }

    pub fn full(data: Bytes) -> ProxyBody {
        if data.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(data))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            ProxyBody::Stream { prefix, rx, .. } => {
                if let Some(p) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(p))));
                }
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                    Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(data) => data.is_none(),
            ProxyBody::Stream { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ProxyBody::Stream {
                length: Some(n), ..
            } => SizeHint::with_exact(*n),
            ProxyBody::Stream { .. } => SizeHint::default(),
        }
    }
}
