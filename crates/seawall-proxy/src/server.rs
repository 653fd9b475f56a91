//! Downstream connections: requests in, one at a time, responses streamed back.
//!
//! A connection task reads a request head with the strict codec
//! (`seawall-h1`), hands it to the pipeline (`forward`), and streams the
//! answer back. Pipelined requests wait in the read buffer and are answered
//! in order. It enforces the slowloris timeouts (header, body, idle), answers
//! protocol errors with their status and closes, and keeps every direction
//! under backpressure: a request body moves through a two-slot channel as the
//! upstream reads it, a response body is read from the upstream only as fast
//! as the client takes it.
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use seawall_h1::{BodyDecoder, BodyEvent, Framing, HeadParser, RequestHead, ResponseFraming, VIA};
use seawall_policy::rng::{Random, SplitMix64};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::body::{BodyError, BodySender, ProxyBody};
use crate::connect::ConnectRequest;
use crate::forward::{self, BodySource, Down, Local, Upstream};
use crate::metrics::{Dimension, TunnelEnd, TunnelMetrics};
use crate::runtime::{Destination, RoutePolicy, Runtime, TunnelSlot};
use crate::spans;
use crate::spec::EgressMode;
use crate::state::State;
use crate::tunnel::{splice, Spliced};
use crate::upstream::{dial, ConnectError};

use crate::readbuf::{room, READ_SIZE};

/// Bytes kept unparsed while a request is served; then the client is not read.
const MAX_PIPELINED: usize = 1 << 20;

/// Where the client side of an exchange is: one of the constants below, or
/// the status (>= 400) of a body that could not be read whole.
struct PhaseCell(std::sync::atomic::AtomicU16);

impl PhaseCell {
    fn new(v: u16) -> Self {
        PhaseCell(std::sync::atomic::AtomicU16::new(v))
    }
    fn get(&self) -> u16 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn set(&self, v: u16) {
        self.0.store(v, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Its body is being streamed upstream.
const PUMPING: u16 = 0;
/// The body is complete (or there was none): watching for the client leaving.
const WATCHING: u16 = 1;
/// The client closed its connection.
const GONE: u16 = 2;
/// The upstream stopped reading the body (it answered early).
const STOPPED: u16 = 3;

/// Why a connection ends.
#[derive(Debug)]
enum Stop {
    /// The client closed, or an I/O error: nothing more to say.
    Gone,
    /// A timeout (header, body, idle).
    Timeout,
}

struct Conn<S> {
    parser: HeadParser,
    rd: ReadHalf<S>,
    wr: WriteHalf<S>,
    buf: BytesMut,
    out: BytesMut,
    /// The client may still be sending a request body that was not read (an
    /// early answer, a refused body): close with a linger, not at once.
    unread: bool,
    /// The outbound proxy listener: CONNECT is read ([`crate::connect`]).
    connect: bool,
}

/// What arrived on a connection.
// The large variant is the common one: boxing it would allocate per request.
#[allow(clippy::large_enum_variant)]
enum Incoming {
    Request(RequestHead),
    Connect(ConnectRequest),
}

/// The lingering close (nginx's `lingering_time` and `lingering_timeout`):
/// read and discard for at most this long in all, each read waiting at most
/// `LINGER_SILENCE`, and at most `LINGER_BYTES`.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_SILENCE: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 64 << 20;

/// Serve one downstream connection until it closes.
pub async fn serve<S>(stream: S, state: Arc<State>, down: Down)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    // (the runtime of the moment: a reload applies from the next connection)
    let (limits, close_within) = {
        let rt = state.runtime();
        let limits = if down.inbound {
            rt.inbound_limits
        } else {
            rt.limits
        };
        // how long a close may take when a refused caller's connection is closed
        (
            limits,
            Duration::from_secs_f64(rt.spec.limits.header_timeout),
        )
    };
    let mut c = Conn {
        parser: HeadParser::new(limits),
        rd,
        wr,
        buf: BytesMut::with_capacity(READ_SIZE),
        out: BytesMut::with_capacity(READ_SIZE),
        unread: false,
        connect: !down.inbound && down.destination.is_none(),
    };
    let mut rng = SplitMix64::from_entropy();
    let _open = state.connection_opened();
    // inbound, the caller its certificate named: closed when the service comes to refuse it
    let caller = down.peer_service.clone().filter(|_| down.inbound);
    loop {
        let waiting = state.runtime();
        let read = tokio::select! {
            read = read_head(&mut c, &waiting, &state) => Some(read),
            () = state.refused(caller.as_deref(), "idle") => None,
        };
        drop(waiting);
        let Some(read) = read else {
            let _ = tokio::time::timeout(close_within, c.wr.shutdown()).await;
            return;
        };
        let head = match read {
            Ok(Some(Incoming::Request(head))) => head,
            Ok(Some(Incoming::Connect(req))) => {
                // the connection is the tunnel's now, or closes
                serve_connect(&mut c, &state.runtime(), req).await;
                let _ = c.wr.shutdown().await;
                return;
            }
            Ok(None) | Err(Stop::Gone) | Err(Stop::Timeout) => return,
        };
        // The config of the moment the request arrived, not of the moment the
        // connection went idle: a keep-alive connection open across a reload
        // serves its next request with the new routes, rules and egress.
        let rt = state.runtime();
        if rt.refuses(caller.as_deref(), "request") {
            // refused while a request was on its way: closed unanswered, as at
            // the handshake (the caller's pool takes it for a stale one)
            let _ = tokio::time::timeout(close_within, c.wr.shutdown()).await;
            return;
        }
        let keep = serve_one(&mut c, &rt, &state, &down, head, &mut rng).await;
        if !keep || state.draining() {
            let _ = c.wr.shutdown().await;
            if c.unread && !state.draining() {
                linger(&mut c).await;
            }
            return;
        }
    }
}

/// Closing a connection the client is still sending on resets it, and the
/// reset can destroy the answer before the client has read it. So, after the
/// answer and a FIN, read and discard what the client still sends until it
/// closes too, or stops, or the linger's bounds are reached.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Conn<S>) {
    let until = tokio::time::Instant::now() + LINGER_TIME;
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        c.buf.clear();
        room(&mut c.buf);
        let wait = until.min(tokio::time::Instant::now() + LINGER_SILENCE);
        match tokio::time::timeout_at(wait, c.rd.read_buf(&mut c.buf)).await {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// Wait for the next request head: `None` when the client closed between requests.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    rt: &Runtime,
    state: &State,
) -> Result<Option<Incoming>, Stop> {
    let lim = &rt.spec.limits;
    let idle = Duration::from_secs_f64(lim.idle_timeout);
    let header = Duration::from_secs_f64(lim.header_timeout);
    let mut head_by: Option<tokio::time::Instant> = None;
    loop {
        if !c.buf.is_empty() {
            // CONNECT on the outbound listener is read apart (crate::connect)
            let decoded = if c.connect && crate::connect::is_connect(&c.buf) {
                match crate::connect::parse(&c.buf, c.parser.limits()) {
                    Ok(Some(req)) => {
                        let _ = c.buf.split_to(req.consumed);
                        Ok(Some(Incoming::Connect(req)))
                    }
                    other => other.map(|_| None),
                }
            } else {
                c.parser
                    .decode(&mut c.buf)
                    .map(|head| head.map(Incoming::Request))
            };
            match decoded {
                Ok(Some(incoming)) => return Ok(Some(incoming)),
                Ok(None) => {}
                Err(e) => {
                    c.out.clear();
                    seawall_h1::error_response(&e, &mut c.out);
                    let _ = c.wr.write_all(&c.out).await;
                    let _ = c.wr.shutdown().await;
                    return Err(Stop::Gone);
                }
            }
            head_by.get_or_insert_with(|| tokio::time::Instant::now() + header);
        }
        // Between requests the idle timeout applies; once a head has begun, the header timeout.
        let until = match head_by {
            Some(t) => t,
            None if state.draining() => return Ok(None),
            None => tokio::time::Instant::now() + idle,
        };
        room(&mut c.buf);
        let read = tokio::select! {
            r = tokio::time::timeout_at(until, c.rd.read_buf(&mut c.buf)) => r,
            () = state.drained(), if head_by.is_none() => return Ok(None),
        };
        match read {
            Err(_) if head_by.is_some() => {
                c.out.clear();
                let e = seawall_h1::Error::new(408, "request head timeout");
                seawall_h1::error_response(&e, &mut c.out);
                let _ = c.wr.write_all(&c.out).await;
                return Err(Stop::Timeout);
            }
            Err(_) => return Err(Stop::Timeout),
            Ok(Ok(0)) if c.buf.is_empty() => return Ok(None),
            Ok(Ok(0)) => {
                // Closed (or half-closed) in the middle of a head: say why, then close.
                if let Err(e) = c.parser.eof(&c.buf) {
                    c.out.clear();
                    seawall_h1::error_response(&e, &mut c.out);
                    let _ = c.wr.write_all(&c.out).await;
                }
                return Err(Stop::Gone);
            }
            Ok(Ok(_)) => {
                head_by.get_or_insert_with(|| tokio::time::Instant::now() + header);
            }
            Ok(Err(_)) => return Err(Stop::Gone),
        }
    }
}

/// Read the next piece of a request body from the connection (None at its end).
/// The error carries the status to answer: 400 malformed, 408 stalled, 413 too large.
async fn next_body_chunk<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    decoder: &mut BodyDecoder,
    timeout: Duration,
) -> Result<Option<Bytes>, seawall_h1::Error> {
    loop {
        match decoder.decode(&mut c.buf)? {
            Some(BodyEvent::Data(data)) => return Ok(Some(data)),
            Some(BodyEvent::End(_trailers)) => return Ok(None),
            None => {}
        }
        room(&mut c.buf);
        match tokio::time::timeout(timeout, c.rd.read_buf(&mut c.buf)).await {
            Err(_) => return Err(seawall_h1::Error::new(408, "request body timeout")),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(seawall_h1::Error::new(
                    400,
                    "connection closed in the request body",
                ))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Serve one request; returns whether the connection may carry another.
async fn serve_one<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    c: &mut Conn<S>,
    rt: &Runtime,
    state: &State,
    down: &Down,
    head: RequestHead,
    rng: &mut (dyn Random + Send),
) -> bool {
    let start = rt.clock.now();
    let mut keep_alive = head.keep_alive;
    let mut decoder = BodyDecoder::new(head.framing, &rt.limits);
    let has_body = !matches!(head.framing, Framing::Empty);
    c.unread = has_body;
    let body_timeout = Duration::from_secs_f64(rt.spec.limits.body_timeout);
    // The correlation id as forwarded (kept, or created by the pipeline), for the access log.
    let mut request_id: Option<HeaderValue> = None;
    // A protocol switch: the tunnel it opened, once it has ended.
    let mut tunnelled: Option<Tunnelled> = None;
    // step 3 first: the trace context, and the request's span
    let (trace, span) = forward::correlate(rt, down, &head, start, rng);
    // Why the mesh answered itself (a local answer), for the span.
    let mut local_error: Option<&'static str> = None;
    // Body bytes: received from the client, sent back to it.
    let mut sizes = (0u64, 0u64);
    let (status, served) = 'serve: {
        // steps 1-5
        let prepared = match forward::prepare(rt, down, &head, start, &trace, &span, rng) {
            Ok(p) => p,
            Err(local) => {
                local_error = Some(local.error());
                let ka = keep_alive && !has_body;
                // inbound, the destination is this service; outbound, none was found
                let dest = match &local.destination {
                    Some(d) => Some(d.as_str()),
                    None => down.inbound.then_some(rt.service.as_str()),
                };
                keep_alive = write_local(c, &head, &local, dest, ka).await && ka;
                break 'serve (local.status, None);
            }
        };
        request_id = prepared
            .mesh
            .iter()
            .find(|(n, _)| n == "x-request-id")
            .map(|(_, v)| v.clone());
        let subset = prepared.subset().map(|(_, m)| m.clone());
        let served = Some((prepared.dest.clone(), prepared.route.clone(), subset));
        let out = match forward::outgoing(
            &head,
            down,
            &prepared.mesh,
            prepared.destination(),
            prepared.dest.authority.as_ref(),
        ) {
            Ok(o) => o,
            Err(local) => {
                local_error = Some(local.error());
                write_local(c, &head, &local, Some(prepared.destination()), false).await;
                keep_alive = false;
                break 'serve (local.status, served);
            }
        };
        let continue_ = has_body && head.expect_continue;
        if continue_
            && c.wr
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return false;
        }
        let length = match head.framing {
            Framing::Length(n) => Some(n),
            _ => None,
        };
        // The body: buffered whole (so a retry or a mirror can send it again) when
        // small enough, else streamed with backpressure.
        let mut complete = !has_body;
        let mut pending: Option<BodySender> = None;
        let source = if !has_body {
            BodySource::Whole(Bytes::new())
        } else if let Some(limit) = prepared.buffer {
            let mut whole = BytesMut::new();
            let mut overflowed = false;
            loop {
                match next_body_chunk(c, &mut decoder, body_timeout).await {
                    Ok(Some(data)) => {
                        whole.extend_from_slice(&data);
                        if whole.len() > limit {
                            overflowed = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let local = Local::new(e.status, e.reason.into_owned());
                        local_error = Some(local.error());
                        write_local(c, &head, &local, Some(prepared.destination()), false).await;
                        keep_alive = false;
                        break 'serve (e.status, served);
                    }
                }
            }
            if overflowed {
                let (tx, body) = ProxyBody::channel(Some(whole.freeze()));
                pending = Some(tx);
                BodySource::Stream(Some(body))
            } else {
                complete = true;
                c.unread = false;
                sizes.0 = whole.len() as u64;
                BodySource::Whole(whole.freeze())
            }
        } else {
            let (tx, body) = ProxyBody::channel(None);
            pending = Some(tx);
            BodySource::Stream(Some(body))
        };
        let send_length = if matches!(source, BodySource::Whole(_)) {
            None
        } else {
            length
        };
        // steps 6-8, with the body pumped from the client as the upstream reads it
        let tls = state.upstream_tls();
        if let Some(n) = send_length {
            sizes.0 = n;
        }
        let exchange = forward::forward(
            rt,
            &prepared,
            &out,
            source,
            send_length,
            tls.as_ref(),
            &span,
            rng,
        );
        tokio::pin!(exchange);
        // The client side while the exchange runs: pump the body, then watch for
        // the client going away (its request is then abandoned, and the upstream
        // connection closed, not orphaned).
        let phase = PhaseCell::new(if pending.is_none() { WATCHING } else { PUMPING });
        let result = {
            let conn = &mut *c;
            let phase = &phase;
            let client = async move {
                if let Some(tx) = pending.take() {
                    loop {
                        let Ok(permit) = tx.reserve().await else {
                            // the upstream stopped reading (an early answer): stop too
                            phase.set(STOPPED);
                            std::future::pending::<()>().await;
                            return;
                        };
                        match next_body_chunk(conn, &mut decoder, body_timeout).await {
                            Ok(Some(data)) => permit.send(Ok(data)),
                            Ok(None) => break,
                            Err(e) => {
                                permit.send(Err(BodyError::Downstream(
                                    "the client's body was refused",
                                )));
                                phase.set(e.status);
                                return;
                            }
                        }
                    }
                    phase.set(WATCHING);
                }
                // Pipelined bytes are kept for the next request (up to a bound).
                while conn.buf.len() < MAX_PIPELINED {
                    room(&mut conn.buf);
                    match conn.rd.read_buf(&mut conn.buf).await {
                        Ok(0) | Err(_) => {
                            phase.set(GONE);
                            return;
                        }
                        Ok(_) => {}
                    }
                }
                std::future::pending::<()>().await;
            };
            tokio::pin!(client);
            let mut client_done = false;
            loop {
                tokio::select! {
                    r = &mut exchange => break Some(r),
                    () = &mut client, if !client_done => {
                        client_done = true;
                        if phase.get() == GONE || phase.get() >= 400 {
                            break None;
                        }
                    }
                }
            }
        };
        let Some(result) = result else {
            keep_alive = false;
            let status = phase.get();
            if status >= 400 {
                // A body that could not be read: the upstream request is abandoned
                // (never completed) and the client told why.
                let local = Local::new(status, "invalid request body");
                local_error = Some(local.error());
                write_local(c, &head, &local, Some(prepared.destination()), false).await;
                break 'serve (status, served);
            }
            // The client went away: nothing to answer; 499 as nginx counts it.
            local_error = Some("client_closed");
            break 'serve (499, served);
        };
        let complete = complete || phase.get() == WATCHING;
        c.unread = has_body && !complete;
        let pump_failed = phase.get() != WATCHING;
        match result {
            Err(local) => {
                local_error = Some(local.error());
                let ka = keep_alive && complete && !pump_failed;
                let dest = Some(prepared.destination());
                keep_alive = write_local(c, &head, &local, dest, ka).await && ka;
                (local.status, served)
            }
            Ok(upstream) => {
                let upgrading = out.upgrade.is_some().then_some(&prepared.route.data);
                let ka = keep_alive && complete;
                // an inbound tunnel ends when its service comes to refuse the caller
                let caller = down.peer_service.as_deref().filter(|_| down.inbound);
                let cut = state.refused(caller, "tunnel");
                let (status, ok, sent) =
                    respond(c, &head, upgrading, upstream, ka, &mut tunnelled, cut).await;
                sizes.1 = sent;
                keep_alive = ok && complete;
                (status, served)
            }
        }
    };
    let mut elapsed = rt.clock.now() - start;
    if let Some(t) = &tunnelled {
        elapsed -= t.seconds; // the request, to its 101; the tunnel is counted apart
    }
    // a sampled request is kept as the exemplar of its counters
    let trace = span.trace_hex();
    let trace = trace.as_ref();
    match &served {
        // the route's counters (and its subsets'), resolved when the runtime was built
        Some((_, route, subset)) => {
            let counts = &route.data.metrics;
            counts.observe(status, elapsed, trace);
            if let Some(subset) = subset {
                subset.observe(status, elapsed, trace);
            }
            if let Some(caller) = down.peer_service.as_deref().filter(|_| down.inbound) {
                counts
                    .child(Dimension::Caller, caller)
                    .observe(status, elapsed, trace);
            }
        }
        None => {
            let direction = if down.inbound { "inbound" } else { "outbound" };
            rt.metrics
                .route(direction, "-", "-", &[])
                .observe(status, elapsed, trace);
        }
    }
    if span.is_recording() {
        span.attributes(|a| {
            a.push(spans::i("http.request.body.size", sizes.0 as i64));
            a.push(spans::i("http.response.body.size", sizes.1 as i64));
        });
        span.finish(rt.clock.now(), status, local_error);
    }
    if rt.spec.access_log {
        let (dest, route) = match &served {
            Some((d, r, _)) => (d.name.as_str(), r.data.name.as_str()),
            None => ("-", "-"),
        };
        access_log(
            &head,
            request_id.as_ref(),
            status,
            elapsed,
            dest,
            route,
            tunnelled.as_ref(),
        );
    }
    keep_alive
}

/// Write a local answer; returns whether the write succeeded.
/// Answer a request locally: the status with its canonical reason phrase,
/// and a line of JSON, `{"error", "destination", "reason"}`
/// ([`seawall_h1::local_body`]); `destination`: the one chosen, if any.
async fn write_local<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    head: &RequestHead,
    local: &Local,
    destination: Option<&str>,
    keep_alive: bool,
) -> bool {
    let head_request = head.method == http::Method::HEAD;
    write_answer(c, head_request, local, destination, keep_alive).await
}

/// [`write_local`] for any request (`head_request`: no body is sent).
async fn write_answer<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    head_request: bool,
    local: &Local,
    destination: Option<&str>,
    keep_alive: bool,
) -> bool {
    let body = seawall_h1::local_body(local.error(), destination, &local.detail);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (n, v) in &local.extra {
        headers.append(n.clone(), v.clone());
    }
    c.out.clear();
    if seawall_h1::encode_response_head(
        local.status,
        Some(seawall_h1::canonical_reason(local.status)).filter(|r| !r.is_empty()),
        &headers,
        ResponseFraming::Length(body.len() as u64),
        keep_alive,
        Some(VIA),
        &mut c.out,
    )
    .is_err()
    {
        return false;
    }
    if !head_request {
        c.out.extend_from_slice(&body);
    }
    c.wr.write_all(&c.out).await.is_ok()
}

/// Stream the upstream response to the client: (status, whether the connection
/// may be reused). A 101 to a request that asked for a switch (`upgrading`: its
/// route) opens a tunnel, and returns when it has ended, with `tunnelled` set.
async fn respond<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    c: &mut Conn<S>,
    head: &RequestHead,
    upgrading: Option<&RoutePolicy>,
    upstream: Upstream,
    keep_alive: bool,
    tunnelled: &mut Option<Tunnelled>,
    cut: impl std::future::Future<Output = ()>,
) -> (u16, bool, u64) {
    let Upstream {
        head: answer,
        mut body,
        active,
        idle_timeout,
        slot,
    } = upstream;
    let status = answer.status;
    if let (101, Some(route)) = (status, upgrading) {
        drop(slot); // a tunnel is not a request the app is busy with
                    // `active` is held until the tunnel ends: it counts against max_requests
        *tunnelled = tunnel(c, &answer, body, route, cut).await;
        drop(active);
        return (101, false, 0);
    }
    // (the encoder skips hop-by-hop fields as it writes them)
    let headers = &answer.headers;
    let no_body =
        head.method == http::Method::HEAD || status == 204 || status == 304 || status < 200;
    let (framing, reusable) = answer.downstream_framing(head.version == http::Version::HTTP_11);
    let keep_alive = keep_alive && reusable;
    c.out.clear();
    let chunked = matches!(framing, ResponseFraming::Chunked);
    if let Err(e) = seawall_h1::encode_response_head(
        status,
        Some(answer.reason.as_str()).filter(|r| !r.is_empty()),
        headers,
        framing,
        keep_alive,
        Some(VIA),
        &mut c.out,
    ) {
        // An upstream answer that cannot be sent as it is (a bad status or reason): a 502.
        let local = Local::new(502, format!("upstream response: {}", e.reason));
        let dest = Some(active.cluster().name.as_str());
        let _ = write_local(c, head, &local, dest, false).await;
        return (502, false, 0);
    }
    let idle = idle_timeout.map(Duration::from_secs_f64);
    let mut sent: u64 = 0;
    // Small responses go out in one write: the head and the whole body.
    while !no_body && !body.is_end() {
        match body.next(idle).await {
            Ok(None) => break,
            Ok(Some(data)) => {
                sent += data.len() as u64;
                if chunked {
                    seawall_h1::encode_chunk(&data, &mut c.out);
                } else {
                    c.out.extend_from_slice(&data);
                }
                if !body.is_end() {
                    if c.wr.write_all(&c.out).await.is_err() {
                        return (status, false, sent);
                    }
                    c.out.clear();
                }
            }
            // the upstream went silent, or cut the body short: a short body and a close
            Err(_) => {
                let _ = c.wr.write_all(&c.out).await;
                return (status, false, sent);
            }
        }
    }
    if chunked {
        match body.trailers() {
            Some(trailers) => seawall_h1::encode_last_chunk(&trailers, &mut c.out),
            None => c.out.extend_from_slice(seawall_h1::LAST_CHUNK),
        }
    }
    if c.wr.write_all(&c.out).await.is_err() {
        return (status, false, sent);
    }
    c.out.clear();
    if let Some(conn) = body.into_conn() {
        active.cluster().pool.release(conn);
    }
    (status, keep_alive, sent)
}

/// A tunnel that ended: what it carried, why it ended, how long it lasted.
pub struct Tunnelled {
    pub protocol: String,
    pub seconds: f64,
    pub spliced: Spliced,
}

/// A 101 Switching Protocols: splice the two connections until both close, one
/// fails, or the route's tunnel idle timeout passes (`None`: the 101 could not
/// be sent on, or the bytes that came with it could not).
async fn tunnel<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    c: &mut Conn<S>,
    answer: &seawall_h1::ResponseHead,
    body: crate::client::ResponseBody,
    route: &RoutePolicy,
    cut: impl std::future::Future<Output = ()>,
) -> Option<Tunnelled> {
    let opened = tokio::time::Instant::now();
    let upgrade = answer
        .headers
        .get(http::header::UPGRADE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("websocket"));
    let protocol = String::from_utf8_lossy(upgrade.as_bytes()).into_owned();
    c.out.clear();
    let framing = ResponseFraming::Upgrade(upgrade);
    seawall_h1::encode_response_head(
        101,
        None,
        &answer.headers,
        framing,
        true,
        Some(VIA),
        &mut c.out,
    )
    .ok()?;
    let mut up = body.into_raw();
    // Bytes the upstream sent after its 101.
    let late = up.buf.split().freeze();
    let idle = Duration::from_secs_f64(route.tunnel_idle_timeout);
    let spliced = carry(c, &mut up.io, late, &route.metrics.tunnels, idle, cut).await;
    Some(Tunnelled {
        protocol,
        seconds: opened.elapsed().as_secs_f64(),
        spliced,
    })
}

/// Carry bytes both ways until the tunnel ends, counted in `metrics`: first
/// `c.out` (the answer that opened it) and `late` (what the upstream sent
/// after it) to the client, and what the client sent after its request
/// (`c.buf`) to the upstream; then both directions at once
/// ([`crate::tunnel::splice`]), until both sides have closed, either fails,
/// or `idle` passes with no byte either way.
async fn carry<S, U, F>(
    c: &mut Conn<S>,
    up: &mut U,
    late: Bytes,
    metrics: &TunnelMetrics,
    idle: Duration,
    cut: F,
) -> Spliced
where
    S: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
    F: std::future::Future<Output = ()>,
{
    let opened = tokio::time::Instant::now();
    metrics.opened();
    c.out.extend_from_slice(&late);
    let early = c.buf.split().freeze();
    let carried = async {
        c.wr.write_all(&c.out).await.ok()?;
        up.write_all(&early).await.ok()?;
        Some(())
    };
    let mut spliced = Spliced {
        to_upstream: early.len() as u64,
        to_client: late.len() as u64,
        end: TunnelEnd::Error,
    };
    metrics.to_upstream.add(spliced.to_upstream);
    metrics.to_client.add(spliced.to_client);
    if carried.await.is_some() {
        let (mut up_rd, mut up_wr) = tokio::io::split(up);
        let (to_upstream, to_client) = (&metrics.to_upstream, &metrics.to_client);
        let s = splice(
            &mut c.rd,
            &mut c.wr,
            &mut up_rd,
            &mut up_wr,
            idle,
            to_upstream,
            to_client,
            cut,
        )
        .await;
        spliced.to_upstream += s.to_upstream;
        spliced.to_client += s.to_client;
        spliced.end = s.end;
    }
    c.out.clear();
    metrics.closed(spliced.end, opened.elapsed().as_secs_f64());
    spliced
}

/// `CONNECT host:port` on the outbound listener: a byte-for-byte tunnel to
/// a host outside the mesh (docs/proxy/egress.md), answered `200` once the
/// upstream connection is open. Refused: no egress (405), `registry_only`
/// (403), a mesh service (400), past `egress.max_tunnels` (503), a name
/// that does not resolve (502, `x-seawall-error: dns`).
async fn serve_connect<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conn<S>,
    rt: &Runtime,
    req: ConnectRequest,
) {
    let (mut stream, dest, _slot, idle) = match open_connect(rt, &req).await {
        Ok(opened) => opened,
        Err(local) => {
            write_answer(c, false, &local, None, false).await;
            return;
        }
    };
    c.out.clear();
    c.out
        .extend_from_slice(b"HTTP/1.1 200 Connection Established\r\n\r\n");
    let route = dest.routes.routes().last().map(|r| r.data.metrics.clone());
    if let Some(metrics) = route {
        carry(
            c,
            &mut stream,
            Bytes::new(),
            &metrics.tunnels,
            idle,
            std::future::pending(),
        )
        .await;
    }
}

async fn open_connect(
    rt: &Runtime,
    req: &ConnectRequest,
) -> Result<(TcpStream, Arc<Destination>, TunnelSlot, Duration), Local> {
    let Some(external) = &rt.external else {
        return Err(Local::new(405, "CONNECT: this sidecar has no egress"));
    };
    // a mesh service by any of its names (`orders`, `orders.svc`)
    if rt
        .destinations
        .contains_key(forward::mesh_name(&req.host.to_ascii_lowercase()))
    {
        return Err(Local::new(
            400,
            format!(
                "CONNECT to mesh service '{}': call it over plain HTTP (the mesh encrypts it)",
                req.host
            ),
        ));
    }
    if external.mode == EgressMode::RegistryOnly {
        return Err(forward::egress_refused(&req.host));
    }
    if forward::is_own_listener(rt, &req.host, req.port) {
        return Err(forward::loop_refused(&req.host, req.port));
    }
    let slot = external.open_tunnel().ok_or_else(|| {
        Local::new(503, "tunnel limit reached (egress.max_tunnels)")
            .with(HeaderName::from_static("x-seawall-overflow"), "tunnels")
    })?;
    let dest = external
        .destination(&req.host, req.port)
        .map_err(|e| Local::new(502, format!("egress to '{}': {e}", req.host)))?;
    let ip = req.host.parse::<std::net::IpAddr>().ok();
    let addr = ip.map(|ip| std::net::SocketAddr::new(ip, req.port));
    let timeout = dest.cluster.pool.limits().connect_timeout;
    let stream = match tokio::time::timeout(timeout, dial(&req.host, req.port, addr)).await {
        Err(_) => return Err(Local::new(504, "upstream connect timeout")),
        Ok(Err(ConnectError::Dns(why))) => {
            return Err(Local::new(502, format!("upstream DNS: {why}"))
                .with(HeaderName::from_static("x-seawall-error"), "dns"))
        }
        Ok(Err(e)) => return Err(Local::new(502, format!("upstream connect: {e}"))),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_secs_f64(external.tunnel_idle_timeout);
    Ok((stream, dest, slot, idle))
}

fn access_log(
    head: &RequestHead,
    request_id: Option<&HeaderValue>,
    status: u16,
    elapsed: f64,
    dest: &str,
    route: &str,
    tunnelled: Option<&Tunnelled>,
) {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let request_id = request_id
        .or_else(|| head.headers.get("x-request-id"))
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let mut record = serde_json::json!({
        "time": time,
        "method": head.method.as_str(),
        "path": String::from_utf8_lossy(&head.path),
        "status": status,
        "duration_ms": (elapsed * 1_000_000.0).round() / 1000.0,
        "destination": dest,
        "route": route,
        "request_id": request_id,
    });
    if let (Some(t), Some(fields)) = (tunnelled, record.as_object_mut()) {
        let tunnel = serde_json::json!({
            "protocol": t.protocol,
            "duration_ms": (t.seconds * 1_000_000.0).round() / 1000.0,
            "bytes_to_upstream": t.spliced.to_upstream,
            "bytes_to_client": t.spliced.to_client,
            "closed_by": t.spliced.end.as_str(),
        });
        fields.insert("tunnel".to_owned(), tunnel);
    }
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{record}");
}
