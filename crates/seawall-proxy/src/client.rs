//! One HTTP/1.1 exchange with an upstream, inline on the request's own task.
//!
//! The request head is written with the codec's encoder, the body after it
//! (whole, or streamed from the client under backpressure while the
//! response is awaited: an upstream may answer before it has read it all),
//! and the response head is read with the codec's parser, which alone
//! decides how its body is delimited. The body is then read by the listener
//! as fast as the client takes it ([`ResponseBody::next`]), and the
//! connection goes back to the pool only if it was read whole and the
//! upstream allows reuse.
//!
//! No connection task, no channel between tasks: the exchange costs the
//! syscalls it needs and nothing else.
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use seawall_h1::{
    BodyEvent, ChunkedDecoder, LengthDecoder, Limits, RequestFraming, ResponseBody as Framing,
    ResponseHead,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::body::ProxyBody;
use crate::readbuf::room;
use crate::upstream::Conn;

/// The largest response head read.
pub const MAX_HEAD: usize = 64 * 1024;
/// A whole body up to this size goes out in the same write as the head.
const COALESCE: usize = 16 * 1024;

/// Trailer sections are read with the request codec's limits, and no body limit.
const TRAILER_LIMITS: Limits = Limits {
    max_body: None,
    ..Limits::DEFAULT
};

/// Why an exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// Nothing came back on a connection reused from the pool: the upstream
    /// had closed it. Safe to send again on a new connection.
    Stale(String),
    /// The connection failed (refused write, reset, closed before a whole head).
    Reset(String),
    /// The upstream's answer is not valid HTTP/1.1.
    Protocol(String),
}

/// The request body as one attempt sends it.
pub enum Outbound {
    /// Whole (possibly empty), with this hop's framing already in the head.
    Whole(Bytes),
    /// Streamed from the client; chunked when its length is unknown.
    Stream(ProxyBody, bool),
}

/// Send one request (its head, encoded into the connection's write buffer by
/// [`encode_head`], and its body) and read the response head.
///
/// `idempotent`: the request may be sent twice (a safe or idempotent method,
/// or an Idempotency-Key). On a reused connection, a write that fails is
/// always [`ExchangeError::Stale`] (the upstream cannot have acted on a
/// request it did not receive whole); a close with nothing answered after
/// the request was written is `Stale` only for an idempotent request, since
/// the upstream may have acted on it before closing.
pub async fn exchange(
    conn: &mut Conn,
    body: Outbound,
    head_request: bool,
    idempotent: bool,
) -> Result<ResponseHead, ExchangeError> {
    let reused = conn.reused;
    match body {
        Outbound::Whole(data) => {
            let written = if data.len() <= COALESCE {
                conn.wbuf.extend_from_slice(&data);
                conn.io.write_all(&conn.wbuf).await
            } else {
                match conn.io.write_all(&conn.wbuf).await {
                    Ok(()) => conn.io.write_all(&data).await,
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = written {
                return Err(if reused {
                    ExchangeError::Stale(e.to_string())
                } else {
                    ExchangeError::Reset(e.to_string())
                });
            }
            read_head(conn, head_request, reused && idempotent).await
        }
        Outbound::Stream(body, chunked) => stream_and_read(conn, body, chunked, head_request).await,
    }
}

/// Write the head and pump the body while waiting for the response head.
async fn stream_and_read(
    conn: &mut Conn,
    mut body: ProxyBody,
    chunked: bool,
    head_request: bool,
) -> Result<ResponseHead, ExchangeError> {
    let (head, sent) = {
        let Conn { io, buf, wbuf, .. } = &mut *conn;
        let (mut rd, mut wr) = tokio::io::split(io);
        let pump = async move {
            wr.write_all(wbuf).await?;
            while let Some(piece) = body.next().await {
                let data = piece.map_err(std::io::Error::other)?;
                if chunked {
                    wbuf.clear();
                    seawall_h1::encode_chunk(&data, wbuf);
                    wr.write_all(wbuf).await?;
                } else {
                    wr.write_all(&data).await?;
                }
            }
            if chunked {
                wr.write_all(seawall_h1::LAST_CHUNK).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let answer = read_head_from(&mut rd, buf, head_request, false);
        tokio::pin!(pump, answer);
        let mut sent: Option<Result<(), std::io::Error>> = None;
        let head = loop {
            tokio::select! {
                r = &mut pump, if sent.is_none() => sent = Some(r),
                h = &mut answer => break h,
            }
        };
        (head, sent)
    };
    let head = match (head, &sent) {
        (Ok(head), _) => head,
        // the write failed and no answer explains it
        (Err(_), Some(Err(e))) => return Err(ExchangeError::Reset(e.to_string())),
        (Err(e), _) => return Err(e),
    };
    if !matches!(sent, Some(Ok(()))) {
        // An early answer: the rest of the request body is not sent, so the
        // connection cannot carry another request.
        conn.reusable = false;
    }
    Ok(head)
}

async fn read_head(
    conn: &mut Conn,
    head_request: bool,
    stale_if_silent: bool,
) -> Result<ResponseHead, ExchangeError> {
    read_head_from(&mut conn.io, &mut conn.buf, head_request, stale_if_silent).await
}

/// Read until a final response head (1xx other than 101 are skipped).
/// `stale_if_silent`: a close with nothing received is [`ExchangeError::Stale`].
async fn read_head_from<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    head_request: bool,
    stale_if_silent: bool,
) -> Result<ResponseHead, ExchangeError> {
    let mut received = 0usize;
    loop {
        if !buf.is_empty() {
            match seawall_h1::parse_response_head(buf, head_request) {
                Ok(Some((head, used))) => {
                    let _ = buf.split_to(used);
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue; // interim: the final answer follows
                    }
                    return Ok(head);
                }
                Ok(None) if buf.len() >= MAX_HEAD => {
                    return Err(ExchangeError::Protocol(format!(
                        "response head over {MAX_HEAD} bytes"
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(ExchangeError::Protocol(e.reason.into_owned())),
            }
        }
        room(buf);
        match rd.read_buf(buf).await {
            Ok(0) if received == 0 && stale_if_silent => {
                return Err(ExchangeError::Stale("closed before answering".into()))
            }
            Ok(0) if received == 0 => {
                return Err(ExchangeError::Reset(
                    "connection closed before a response".into(),
                ))
            }
            Ok(0) => {
                return Err(ExchangeError::Reset(
                    "connection closed in the response head".into(),
                ))
            }
            Ok(n) => received += n,
            Err(e) if received == 0 && stale_if_silent => {
                return Err(ExchangeError::Stale(e.to_string()))
            }
            Err(e) => return Err(ExchangeError::Reset(e.to_string())),
        }
    }
}

enum Decoder {
    Length(LengthDecoder),
    Chunked(ChunkedDecoder),
    Close,
}

/// A response body being read from its connection.
pub struct ResponseBody {
    conn: Conn,
    decoder: Option<Decoder>,
    /// A piece decoded ahead (to learn whether the body ends after the one returned).
    ahead: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

/// Why a response body could not be read to its end.
#[derive(Debug)]
pub enum BodyReadError {
    /// The upstream was silent for longer than the idle timeout.
    Idle,
    /// Closed early, reset, or a malformed chunk.
    Broken(String),
}

impl ResponseBody {
    /// The body that follows `head` on `conn`.
    pub fn new(conn: Conn, head: &ResponseHead) -> Self {
        let mut conn = conn;
        conn.reusable &= head.reusable;
        let decoder = match head.body {
            Framing::None => None,
            Framing::Length(0) => None,
            Framing::Length(n) => Some(Decoder::Length(LengthDecoder::new(n))),
            Framing::Chunked => Some(Decoder::Chunked(ChunkedDecoder::new(&TRAILER_LIMITS))),
            Framing::Close => Some(Decoder::Close),
        };
        ResponseBody {
            conn,
            decoder,
            ahead: None,
            trailers: None,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_end(&self) -> bool {
        self.decoder.is_none() && self.ahead.is_none()
    }

    /// The next piece of the body, `None` at its end; each silence is bounded by `idle`.
    pub async fn next(&mut self, idle: Option<Duration>) -> Result<Option<Bytes>, BodyReadError> {
        if let Some(data) = self.ahead.take() {
            return Ok(Some(data));
        }
        loop {
            let Some(data) = self.decode()? else {
                if self.decoder.is_none() {
                    return Ok(None);
                }
                self.fill(idle).await?;
                continue;
            };
            // What follows in the buffer already: the end, or the next piece.
            if matches!(self.decoder, Some(Decoder::Chunked(_))) && !self.conn.buf.is_empty() {
                self.ahead = self.decode()?;
            }
            return Ok(Some(data));
        }
    }

    /// The next non-empty piece from the buffer; `None` if it needs more bytes or ended.
    fn decode(&mut self) -> Result<Option<Bytes>, BodyReadError> {
        loop {
            let Some(decoder) = &mut self.decoder else {
                return Ok(None);
            };
            let buf = &mut self.conn.buf;
            let event = match decoder {
                Decoder::Length(d) => d.decode(buf),
                Decoder::Chunked(d) => d
                    .decode(buf)
                    .map_err(|e| BodyReadError::Broken(e.reason.into_owned()))?,
                Decoder::Close if !buf.is_empty() => Some(BodyEvent::Data(buf.split().freeze())),
                Decoder::Close => None,
            };
            match event {
                Some(BodyEvent::Data(data)) => {
                    if matches!(decoder, Decoder::Length(d) if d.remaining() == 0) {
                        self.decoder = None;
                    }
                    if !data.is_empty() {
                        return Ok(Some(data));
                    }
                }
                Some(BodyEvent::End(trailers)) => {
                    self.decoder = None;
                    if !trailers.is_empty() {
                        self.trailers = Some(trailers);
                    }
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
    }

    /// Read more of the body from the connection.
    async fn fill(&mut self, idle: Option<Duration>) -> Result<(), BodyReadError> {
        room(&mut self.conn.buf);
        let read = self.conn.io.read_buf(&mut self.conn.buf);
        let n = match idle {
            Some(t) => tokio::time::timeout(t, read)
                .await
                .map_err(|_| BodyReadError::Idle)?,
            None => read.await,
        }
        .map_err(|e| BodyReadError::Broken(e.to_string()))?;
        if n == 0 {
            if matches!(self.decoder, Some(Decoder::Close)) {
                self.decoder = None; // a close-delimited body ends here
                return Ok(());
            }
            return Err(BodyReadError::Broken("closed in the response body".into()));
        }
        Ok(())
    }

    /// The trailer fields of a chunked body, once it has been read.
    pub fn trailers(&mut self) -> Option<HeaderMap> {
        self.trailers.take()
    }

    /// The connection, once the body was read whole (it goes back to the pool
    /// if reusable); `None` before that, or if it cannot be reused.
    pub fn into_conn(self) -> Option<Conn> {
        (self.is_end() && self.conn.reusable && self.conn.buf.is_empty()).then_some(self.conn)
    }

    /// The connection whatever state it is in (a protocol switch takes it over).
    pub fn into_raw(self) -> Conn {
        self.conn
    }
}

/// Encode the head of one attempt into `conn`'s write buffer: `headers` as
/// built once for the request, this attempt's own fields, and the framing of
/// its body. (The buffer is the connection's: no allocation per request.)
pub fn encode_head(
    conn: &mut Conn,
    method: &http::Method,
    target: &[u8],
    headers: &HeaderMap,
    extra: &[(&str, &[u8])],
    framing: RequestFraming,
) -> Result<(), String> {
    conn.wbuf.clear();
    seawall_h1::encode_request_head(
        method.as_str(),
        target,
        headers,
        extra,
        framing,
        &mut conn.wbuf,
    )
    .map_err(|e| e.reason.into_owned())
}
