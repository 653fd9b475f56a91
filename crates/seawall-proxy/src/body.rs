//! A streamed request body, between the downstream reader and the upstream writer.
//!
//! A request body is either whole (buffered up to `retry_buffer_bytes`, so a
//! retry or a mirror can send it again: cloning `Bytes` is a reference count;
//! see `forward::BodySource`) or streamed through here: the downstream
//! connection pumps it into a small bounded channel as the upstream
//! connection writes it, so a slow upstream slows the client down
//! (backpressure) and nothing else is buffered.
use bytes::Bytes;
use tokio::sync::mpsc;

/// Chunks in flight between the downstream reader and the upstream writer.
/// With reads of at most 16 KiB, a streamed body holds at most these two
/// chunks, the read being filled and the piece being written: about 64 KiB
/// per request, plus the connections' buffers and the socket buffers.
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

/// A streamed request body: the bytes read before streaming began (an attempt
/// to buffer that overflowed), then what the channel brings.
#[derive(Debug)]
pub struct ProxyBody {
    prefix: Option<Bytes>,
    rx: mpsc::Receiver<Result<Bytes, BodyError>>,
}

impl ProxyBody {
    /// A streamed body and the sender that feeds it.
    pub fn channel(prefix: Option<Bytes>) -> (BodySender, ProxyBody) {
        let (tx, rx) = mpsc::channel(STREAM_DEPTH);
        (tx, ProxyBody { prefix, rx })
    }

    /// The next piece; `None` at the end (the sender is gone).
    pub async fn next(&mut self) -> Option<Result<Bytes, BodyError>> {
        if let Some(prefix) = self.prefix.take() {
            return Some(Ok(prefix));
        }
        self.rx.recv().await
    }
}
