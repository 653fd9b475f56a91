//! The request path: one request from a client to an upstream and back.
//!
//! Read top to bottom, one step per concern (DESIGN.md, "A request through
//! the mesh"); [`prepare`] is steps 1-5, [`forward`] steps 6-8:
//!
//! 1. destination (fixed by the listener, or from the Host / absolute URI);
//!    inbound, the caller's identity and the service's authorization: a
//!    denied request is answered 403 without calling the app;
//! 2. route (path, method, headers), which brings its policy;
//! 3. correlation: `x-request-id` kept or created, `traceparent` continued
//!    (two `traceparent` fields restart the trace), head sampling; done
//!    first ([`correlate`]), so that a request refused at any step still has
//!    its span, and every policy decision below is an event on it;
//! 4. deadline: the incoming `x-seawall-deadline-ms` or the route timeout,
//!    whichever is sooner; already expired inbound → 504 without calling the app;
//! 5. fault injection (decided here, the delay is waited in `forward`);
//! 6. traffic split (subset) and mirror copy (fire and forget);
//! 7. attempts: breaker → pool limits → balancer → pooled connection →
//!    exchange, retried on the route's conditions with backoff and the retry
//!    budget, never past the deadline, never for an `x-seawall-overloaded`
//!    response, each retry to another endpoint;
//! 8. the response head goes back to the listener, which streams the body;
//!    outcomes have fed the breaker, outlier detection and the balancer.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use seawall_h1::{RequestFraming, RequestHead, ResponseHead};
use seawall_policy::rng::Random;

use crate::body::ProxyBody;
use crate::client::{self, ExchangeError, Outbound, ResponseBody};
use crate::cluster::{Active, Cluster, Overflow};
use crate::route::{chance, decide_fault, shadow_host, FaultDecision, Route};
use crate::runtime::{Destination, External, RoutePolicy, Runtime};
use crate::shedding::{self, Slot};
use crate::spans::{self, RequestSpan};
use crate::spec::EgressMode;
use crate::tls::UpstreamTls;
use crate::upstream::ConnectError;
use seawall_policy::shed::Criticality;

/// `x-seawall-deadline-ms`: time left for the whole request, relative.
pub const DEADLINE: HeaderName = HeaderName::from_static("x-seawall-deadline-ms");
/// On responses the mesh made because of overload: callers must not retry them.
pub const OVERLOADED: HeaderName = HeaderName::from_static("x-seawall-overloaded");
const ATTEMPT: &str = "x-seawall-attempt";
/// The caller's SPIFFE ID, set inbound from its certificate only.
const PEER: HeaderName = HeaderName::from_static("x-seawall-peer");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The longest deadline a request may carry: 10 days, in milliseconds.
const MAX_DEADLINE_MS: u64 = 864_000_000;

/// Request fields the mesh owns: never forwarded as received.
const MESH_HEADERS: [&str; 8] = [
    "x-seawall-peer", // a client cannot claim an identity
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-seawall-deadline-ms",
    "x-seawall-attempt",
    "x-seawall-fault-delay-ms",
    "x-seawall-fault-abort",
];

/// What the listener knows about the connection a request came on.
#[derive(Debug, Clone, Default)]
pub struct Down {
    pub inbound: bool,
    /// Set on a per-destination listener: every request goes there.
    pub destination: Option<Arc<str>>,
    /// The client's address, as appended to X-Forwarded-For (formatted once per connection).
    pub peer_text: Option<HeaderValue>,
    /// Inbound over mTLS: the caller's SPIFFE ID and service.
    pub peer_id: Option<Arc<str>>,
    pub peer_service: Option<Arc<str>>,
}

/// A local answer instead of an upstream response.
#[derive(Debug)]
pub struct Local {
    pub status: u16,
    pub detail: String,
    pub extra: Vec<(HeaderName, HeaderValue)>,
    /// The destination it is about, when the answer came before the request
    /// was prepared whole (an outbound rate limit).
    pub destination: Option<String>,
}

impl Local {
    /// Its kind, for the body's `error`: what the mesh's own fields say
    /// (`circuit_open`, `overflow`, `fault_injected`), else the status's.
    pub fn error(&self) -> &'static str {
        for (name, _) in &self.extra {
            match name.as_str() {
                "x-seawall-circuit" => return "circuit_open",
                "x-seawall-overflow" => return "overflow",
                "x-seawall-fault" => return "fault_injected",
                "x-seawall-ratelimit" => return "rate_limited",
                "x-seawall-shed" => return "load_shed",
                _ => {}
            }
        }
        seawall_h1::error_kind(self.status)
    }

    pub fn new(status: u16, detail: impl Into<String>) -> Self {
        Local {
            status,
            detail: detail.into(),
            extra: Vec::new(),
            destination: None,
        }
    }

    pub fn with(mut self, name: HeaderName, value: &'static str) -> Self {
        self.extra.push((name, HeaderValue::from_static(value)));
        self
    }

    fn overloaded(self) -> Self {
        self.with(OVERLOADED, "1")
    }
}

/// Steps 1-5 done: what the attempts need.
pub struct Prepared {
    pub dest: Arc<Destination>,
    pub route: Arc<Route<RoutePolicy>>,
    pub start: f64,
    pub deadline: f64,
    /// x-request-id, traceparent, tracestate, x-seawall-peer.
    pub mesh: Vec<(HeaderName, HeaderValue)>,
    /// Read the body up to this many bytes before the first attempt (a retry or a mirror needs it).
    pub buffer: Option<usize>,
    pub may_retry: bool,
    pub fault: Option<FaultDecision>,
    /// The subset the route's split chose (an index of its `subsets`).
    pub subset: Option<usize>,
    /// Its `x-seawall-criticality`, else its route's, else `critical`.
    pub criticality: Criticality,
}

impl Prepared {
    pub fn destination(&self) -> &str {
        &self.dest.name
    }

    pub fn route_name(&self) -> &str {
        &self.route.data.name
    }

    /// The subset the split chose, and where its requests are counted.
    pub fn subset(&self) -> Option<&(String, Arc<crate::metrics::RouteMetrics>)> {
        self.subset.and_then(|i| self.route.data.subsets.get(i))
    }
}

/// The request body as the attempts see it.
pub enum BodySource {
    /// The whole body (possibly empty): every attempt sends a copy.
    Whole(Bytes),
    /// Streamed: one attempt only, which takes it.
    Stream(Option<ProxyBody>),
}

impl BodySource {
    fn replayable(&self) -> bool {
        matches!(self, BodySource::Whole(_))
    }

    /// What one attempt sends, and its framing on the upstream hop.
    fn take(&mut self, method: &http::Method, length: Option<u64>) -> (Outbound, RequestFraming) {
        match self {
            BodySource::Whole(b) if b.is_empty() => {
                // As clients do: a POST, PUT or PATCH says its body is empty.
                let framing = if matches!(*method, http::Method::POST | http::Method::PUT)
                    || method == "PATCH"
                {
                    RequestFraming::Length(0)
                } else {
                    RequestFraming::Empty
                };
                (Outbound::Whole(Bytes::new()), framing)
            }
            BodySource::Whole(b) => (
                Outbound::Whole(b.clone()),
                RequestFraming::Length(b.len() as u64),
            ),
            BodySource::Stream(s) => match (s.take(), length) {
                (Some(body), Some(n)) => (Outbound::Stream(body, false), RequestFraming::Length(n)),
                (Some(body), None) => (Outbound::Stream(body, true), RequestFraming::Chunked),
                // (never: a streamed body is sent once, and only a whole one is sent again)
                (None, _) => (Outbound::Whole(Bytes::new()), RequestFraming::Length(0)),
            },
        }
    }
}

/// An upstream response to stream back: its head, and its body on its connection.
pub struct Upstream {
    pub head: ResponseHead,
    pub body: ResponseBody,
    /// The request's slot in its destination's `max_requests`, held until the
    /// response (or a tunnel it opens) ends.
    pub active: Active,
    /// Longest silence from the upstream while its body streams.
    pub idle_timeout: Option<f64>,
    /// Inbound: the request's slot under the service's concurrency limit,
    /// held until the response ends (given back at a 101: a tunnel is not a
    /// request the app is busy with).
    pub slot: Option<Slot>,
}

// ------------------------------------------------------------------ steps 1-5

/// Step 3, first: the trace context and request id to forward, and the
/// request's span (recorded when the trace is sampled: the caller's
/// decision, or `tracing.sample` for a trace started here).
pub fn correlate(
    rt: &Runtime,
    down: &Down,
    head: &RequestHead,
    now: f64,
    rng: &mut dyn Random,
) -> (seawall_trace::Continued, RequestSpan) {
    let trace = seawall_trace::continue_trace_sampled(&head.headers, rng, rt.sample);
    let span = RequestSpan::start(
        rt.tracer.as_ref(),
        &trace,
        down.inbound,
        now,
        head.method.as_str(),
    );
    span.attributes(|a| {
        a.push(spans::s("http.request.method", head.method.as_str()));
        let path = head.path.split(|b| *b == b'?').next().unwrap_or_default();
        a.push(spans::s("url.path", String::from_utf8_lossy(path)));
        a.push(spans::s("seawall.service", rt.service.as_str()));
        if let Some(peer) = &down.peer_text {
            a.push(spans::s(
                "client.address",
                String::from_utf8_lossy(peer.as_bytes()),
            ));
        }
        if let Some(id) = &down.peer_id {
            a.push(spans::s("seawall.peer.spiffe_id", id.as_ref()));
        }
        if let Some(caller) = down.peer_service.as_deref().filter(|_| down.inbound) {
            a.push(spans::s("seawall.caller", caller));
        }
    });
    if down.inbound && head.authority.as_deref().is_some_and(is_shadow) {
        // the copy a caller's mirror sent: its answer is thrown away
        span.event(now, "seawall.mirror", Vec::new);
        span.attributes(|a| a.push(spans::b("seawall.mirror", true)));
    }
    (trace, span)
}

/// Whether a Host names a mirror's shadow (`orders-shadow`, `orders-shadow:8002`).
fn is_shadow(host: &[u8]) -> bool {
    let host = String::from_utf8_lossy(host);
    strip_port(&host).ends_with("-shadow")
}

/// Steps 1-5: destination, authorization, route, deadline, fault decision.
pub fn prepare(
    rt: &Runtime,
    down: &Down,
    head: &RequestHead,
    now: f64,
    trace: &seawall_trace::Continued,
    span: &RequestSpan,
    rng: &mut dyn Random,
) -> Result<Prepared, Local> {
    // 1. destination; inbound, the caller's identity and authorization
    let dest = destination(rt, down, head)?;
    if down.inbound {
        if let Some(authz) = &rt.authz {
            let caller = down.peer_service.as_deref();
            let decision = authz.decide(caller, head.method.as_str(), &head.path);
            if !decision.allowed {
                rt.metrics
                    .denied
                    .labels(&[caller.unwrap_or("unauthenticated"), &decision.rule])
                    .inc();
                let who = caller.map_or("unauthenticated caller".to_owned(), |c| format!("'{c}'"));
                let mut local = Local::new(
                    403,
                    format!("access denied: {who} may not call '{}' here", rt.service),
                );
                if let Ok(v) = HeaderValue::from_str(&decision.rule) {
                    local
                        .extra
                        .push((HeaderName::from_static("x-seawall-denied"), v));
                }
                return Err(local);
            }
        }
    }
    // 1b. the rate limit: inbound per caller, outbound one for the destination
    let caller = down.peer_service.as_deref().filter(|_| down.inbound);
    if let Err(wait) = dest.cluster.rate_limit(caller, now) {
        let direction = if down.inbound { "inbound" } else { "outbound" };
        rt.metrics
            .rate_limited
            .labels(&[&dest.name, direction])
            .inc();
        // logged like every repeated event: a few, then a count of those dropped
        rt.events.emit(
            "rate_limited",
            &dest.name,
            &[
                ("direction", direction.into()),
                ("caller", caller.unwrap_or("unauthenticated").into()),
            ],
        );
        span.event(now, "seawall.ratelimit.refused", || {
            vec![spans::s("seawall.ratelimit.direction", direction)]
        });
        return Err(rate_limited(&dest, down.inbound, caller, wait));
    }
    // 2. route
    let route = dest
        .routes
        .select(&head.method, &head.path, &head.headers)
        .clone();
    let policy = &route.data;
    span.name(|| format!("{} {}", head.method, policy.name));
    // 2a. criticality: the caller's, else the route's default
    let asked = shedding::requested(&head.headers).map_err(|why| Local::new(400, why))?;
    let criticality = asked.or(policy.criticality).unwrap_or(shedding::DEFAULT);
    span.attributes(|a| {
        a.push(spans::s("seawall.destination", dest.name.as_str()));
        a.push(spans::s("seawall.route", policy.name.as_str()));
        if down.inbound {
            a.push(spans::s("http.route", policy.name.as_str()));
        } else {
            a.push(spans::s("server.address", dest.name.as_str()));
        }
    });
    // 2b. a protocol switch only to a protocol the route allows (h2c is dropped, not refused)
    if let Some(offered) = head.upgrade.as_ref().and_then(without_h2c) {
        if let Some(refused) = offered
            .split(|&b| b == b',')
            .map(trim_ows)
            .find(|p| !allowed_upgrade(&policy.upgrades, p))
        {
            let refused = String::from_utf8_lossy(refused);
            let detail = if policy.upgrades.is_empty() {
                format!(
                    "upgrade to '{refused}' refused: upgrades are off for route '{}'",
                    policy.name
                )
            } else {
                format!(
                    "upgrade to '{refused}' refused: route '{}' allows {}",
                    policy.name,
                    policy.upgrades.join(", ")
                )
            };
            return Err(Local::new(400, detail));
        }
    }
    // 3. correlation and 4. deadline
    let mut deadline = now + policy.timeout;
    let mut carried: Option<u64> = None;
    for value in head.headers.get_all(&DEADLINE) {
        if let Some(ms) = parse_deadline_ms(value.as_bytes()) {
            deadline = deadline.min(now + ms as f64 / 1000.0);
            carried = Some(carried.map_or(ms, |c| c.min(ms)));
        }
    }
    if let Some(ms) = carried {
        span.event(now, "seawall.deadline", || {
            vec![spans::f("seawall.deadline.left_ms", ms as f64)]
        });
    }
    if down.inbound && deadline <= now {
        span.event(now, "seawall.deadline.expired", Vec::new);
        return Err(Local::new(504, "deadline already expired"));
    }
    let mut mesh = Vec::with_capacity(4);
    if let Ok(v) = HeaderValue::from_maybe_shared(trace.request_id.clone()) {
        mesh.push((REQUEST_ID, v));
    }
    // Outbound, a recorded request's attempts each send their own (the next
    // hop is a child of the attempt's span): see `attempt_once`.
    if !span.records_attempts() {
        if let Ok(v) = HeaderValue::from_bytes(&trace.traceparent.encode()) {
            mesh.push((TRACEPARENT, v));
        }
    }
    if let Some(state) = &trace.tracestate {
        if !state.is_empty() {
            if let Ok(v) = HeaderValue::from_str(state.as_str()) {
                mesh.push((TRACESTATE, v));
            }
        }
    }
    if let Some(id) = &down.peer_id {
        if let Ok(v) = HeaderValue::from_str(id) {
            mesh.push((PEER, v));
        }
    }
    // outbound, a route's default criticality goes with requests that set none
    if let (None, Some(level), false) = (asked, policy.criticality, down.inbound) {
        mesh.push((
            shedding::CRITICALITY,
            HeaderValue::from_static(level.as_str()),
        ));
    }
    // 5. fault injection (decided now, applied first thing in `forward`)
    let fault = policy
        .fault
        .as_ref()
        .and_then(|f| decide_fault(f, &head.headers, rng));
    // Whether a copy of the body is kept: retries (idempotent, or with an
    // Idempotency-Key) and mirrors need one.
    let retry = &policy.retry;
    let may_retry = retry.attempts > 1
        && (retry.methods.contains(&head.method) || head.headers.contains_key(&IDEMPOTENCY_KEY));
    let has_body = !matches!(head.framing, seawall_h1::Framing::Empty);
    let wants_copy = may_retry || policy.mirror.is_some();
    let buffer = (has_body && wants_copy).then_some(rt.retry_buffer);
    // 6a. the split's subset (drawn after the fault's draws, before the mirror's)
    let subset = policy.split.as_ref().and_then(|s| {
        let chosen = s.choose(rng);
        policy.subsets.iter().position(|(name, _)| name == chosen)
    });
    Ok(Prepared {
        dest,
        route,
        start: now,
        deadline,
        mesh,
        buffer,
        may_retry,
        fault,
        subset,
        criticality,
    })
}

/// The slot of a request the app answered (its latency is measured).
fn answered(slot: Option<Slot>) -> Option<Slot> {
    if let Some(s) = &slot {
        s.answered();
    }
    slot
}

/// 503 for a request the concurrency limit shed: marked "do not retry" and
/// with its criticality, on the answer and on the span.
fn shed(rt: &Runtime, p: &Prepared, span: &RequestSpan) -> Local {
    let level = p.criticality.as_str();
    let now = rt.clock.now();
    span.attributes(|a| a.push(spans::s("seawall.criticality", level)));
    span.event(now, "seawall.shed", || {
        vec![spans::s("seawall.criticality", level)]
    });
    rt.events
        .emit("shed", &rt.service, &[("criticality", level.into())]);
    Local::new(
        503,
        format!("'{}' is overloaded: a {level} request was shed", rt.service),
    )
    .with(HeaderName::from_static("x-seawall-shed"), level)
    .overloaded()
}

/// 429 over a rate limit: `retry-after` in whole seconds, marked "do not retry".
fn rate_limited(dest: &Destination, inbound: bool, caller: Option<&str>, wait: f64) -> Local {
    let detail = if inbound {
        let who = caller.map_or("unauthenticated callers".to_owned(), |c| format!("'{c}'"));
        format!("rate limit of '{}' reached for {who}", dest.name)
    } else {
        format!("rate limit for calls to '{}' reached", dest.name)
    };
    let mut local = Local::new(429, detail)
        .with(
            HeaderName::from_static("x-seawall-ratelimit"),
            if inbound { "inbound" } else { "outbound" },
        )
        .overloaded();
    local.destination = Some(dest.name.clone());
    let seconds = crate::ratelimit::retry_after(wait);
    local
        .extra
        .push((http::header::RETRY_AFTER, HeaderValue::from(seconds)));
    local
}

fn destination(rt: &Runtime, down: &Down, head: &RequestHead) -> Result<Arc<Destination>, Local> {
    if down.inbound {
        return Ok(rt.inbound.clone());
    }
    let name: std::borrow::Cow<'_, str> = match &down.destination {
        Some(d) => d.as_ref().into(),
        None => {
            let host = head.authority.as_deref().unwrap_or_default();
            let host = String::from_utf8_lossy(host);
            let host = strip_port(&host).to_owned();
            mesh_name(&host).to_owned().into()
        }
    };
    match rt.destinations.get(name.as_ref()) {
        Some(d) => Ok(d.clone()),
        None if name.is_empty() => Err(Local::new(400, "unknown destination ''")),
        None => match (&rt.external, &down.destination) {
            // not a mesh service, through the outbound proxy: egress
            (Some(external), None) => egress(rt, external, head),
            _ => Err(Local::new(502, format!("unknown destination '{name}'"))),
        },
    }
}

/// Whether `host:port` is one of this sidecar's own listeners (on a
/// loopback or wildcard address): egress there would loop through the
/// sidecar until a header limit stopped it.
pub fn is_own_listener(rt: &Runtime, host: &str, port: u16) -> bool {
    let l = &rt.spec.listeners;
    let ours = [&l.inbound, &l.outbound, &l.admin]
        .into_iter()
        .chain(l.upstreams.values())
        .any(|(_, p)| *p == port);
    let local = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        || [&l.inbound, &l.outbound, &l.admin]
            .iter()
            .any(|(a, _)| a.eq_ignore_ascii_case(host));
    ours && local
}

/// 508 for a call that would come back to this sidecar.
pub fn loop_refused(host: &str, port: u16) -> Local {
    Local::new(
        508,
        format!("egress to {host}:{port} refused: it is this sidecar's own listener (a loop)"),
    )
}

/// The mesh name a host stands for: `orders.svc` is `orders`.
pub fn mesh_name(host: &str) -> &str {
    host.strip_suffix(".svc").unwrap_or(host)
}

/// A call to a host outside the mesh: to that host (`allow_any`), or 403
/// (`registry_only`).
fn egress(
    rt: &Runtime,
    external: &External,
    head: &RequestHead,
) -> Result<Arc<Destination>, Local> {
    let authority = String::from_utf8_lossy(head.authority.as_deref().unwrap_or_default());
    let Some((host, port)) = split_authority(&authority, 80) else {
        return Err(Local::new(400, format!("invalid host '{authority}'")));
    };
    if is_own_listener(rt, host, port) {
        return Err(loop_refused(host, port));
    }
    if external.mode == EgressMode::RegistryOnly {
        return Err(egress_refused(host));
    }
    external
        .destination(host, port)
        .map_err(|e| Local::new(502, format!("egress to '{host}': {e}")))
}

/// The answer to a call (or a CONNECT) to `host` under `registry_only`.
pub fn egress_refused(host: &str) -> Local {
    Local::new(
        403,
        format!(
            "egress to '{host}' refused: egress.mode is registry_only \
             (declare the host in the mesh, or set egress.mode: allow_any)"
        ),
    )
    .with(HeaderName::from_static("x-seawall-denied"), "egress")
}

/// `host` and `port` of an authority (`[v6]:port` too); `default` when it
/// has no port. `None`: an empty host or a port that is not one.
pub fn split_authority(authority: &str, default: u16) -> Option<(&str, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') && (!h.contains(':') || h.ends_with(']')) => {
            (h, p.parse::<u16>().ok().filter(|p| *p > 0)?)
        }
        _ => (authority, default),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then_some((host, port))
}

/// The host part of an authority (`orders:8002` → `orders`, `[::1]:80` → `[::1]`).
fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') && authority[..i].matches(':').count() == 0 => {
            &authority[..i]
        }
        Some(i) if authority.starts_with('[') && authority[..i].ends_with(']') => &authority[..i],
        _ => authority,
    }
}

/// An `x-seawall-deadline-ms` value: ASCII digits (spaces and tabs around
/// ignored), at most 10 days; anything else is ignored, as if absent.
pub fn parse_deadline_ms(value: &[u8]) -> Option<u64> {
    let text = trim_ows(value);
    if text.is_empty() || text.len() > 9 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    (ms <= MAX_DEADLINE_MS).then_some(ms)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

// ------------------------------------------------------------------ steps 6-8

/// What one attempt came to.
enum Attempt {
    /// A response to forward.
    Response(ResponseHead, ResponseBody),
    /// A retryable 5xx, not forwarded yet.
    Status(u16, ResponseHead, ResponseBody),
    Connect(String),
    Reset(String),
    Timeout,
    /// The attempt's time ran out in the pool's queue, before any connection.
    Waited,
    Protocol(String),
}

impl Attempt {
    /// What a failed attempt came to, as its span's `error.type` says it.
    fn kind(&self) -> &'static str {
        match self {
            Attempt::Response(..) | Attempt::Status(..) => "",
            Attempt::Connect(_) => "connect_failure",
            Attempt::Reset(_) => "reset",
            Attempt::Timeout => "timeout",
            Attempt::Waited => "pool_timeout",
            Attempt::Protocol(_) => "protocol_error",
        }
    }
}

/// The request to send upstream, built once; each attempt encodes its head from it.
pub struct Outgoing {
    pub method: http::Method,
    /// The request target as received (origin or absolute form).
    pub target: Bytes,
    pub headers: HeaderMap,
    /// Safe to send twice: an idempotent method (RFC 9110 §9.2.2), or an Idempotency-Key.
    pub idempotent: bool,
    /// The protocols offered upstream in Upgrade (h2c never is); `None`: no switch asked.
    pub upgrade: Option<Bytes>,
}

/// Whether a received request field is never forwarded as it is: hop-by-hop
/// (RFC 9110 §7.6.1, with every Proxy-* field), owned by the mesh, or the
/// framing and expectation of the client's hop (this hop sets its own).
fn dropped(name: &HeaderName) -> bool {
    use http::header;
    if name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::EXPECT
        || name == header::CONTENT_LENGTH
    {
        return true;
    }
    let text = name.as_str();
    text == "keep-alive"
        || text == "http2-settings" // hop-by-hop by definition (RFC 9113 §3.2.1)
        || text.starts_with("proxy-")
        || (text.starts_with("x-") && MESH_HEADERS.contains(&text))
        || text == "traceparent"
        || text == "tracestate"
}

/// The fields a Connection header lists (never Host or Content-Length: a client
/// listing `Connection: content-length` would otherwise strip this hop's framing).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut listed = Vec::new();
    for value in headers.get_all(http::header::CONNECTION) {
        for token in value.as_bytes().split(|b| *b == b',') {
            let token = trim_ows(token);
            if token.eq_ignore_ascii_case(b"host") || token.eq_ignore_ascii_case(b"content-length")
            {
                continue;
            }
            if let Ok(name) = HeaderName::from_bytes(token) {
                listed.push(name);
            }
        }
    }
    listed
}

/// The request fields as forwarded, built in one pass over the received ones:
/// hop-by-hop and mesh fields dropped, the mesh's own added (request id, trace
/// context, the caller's identity), Host set for an absolute-form request,
/// X-Forwarded-For extended and Via appended. Each attempt adds its deadline.
///
/// The request goes upstream as HTTP/1.1, which needs a Host (RFC 9112
/// §3.2): an HTTP/1.0 request without one gets `default_host`, the
/// destination's name (as nginx's `proxy_pass` sends its upstream's name).
pub fn outgoing(
    head: &RequestHead,
    down: &Down,
    mesh: &[(HeaderName, HeaderValue)],
    default_host: &str,
    authority: Option<&HeaderValue>,
) -> Result<Outgoing, Local> {
    if http::Uri::from_maybe_shared(head.path.clone()).is_err() {
        return Err(Local::new(400, "invalid request target"));
    }
    let received = &head.headers;
    let listed = if received.contains_key(http::header::CONNECTION) {
        connection_listed(received)
    } else {
        Vec::new()
    };
    let mut headers = HeaderMap::with_capacity(received.len() + mesh.len() + 4);
    let mut forwarded: Option<Vec<u8>> = None;
    for (name, value) in received {
        if dropped(name) || (!listed.is_empty() && listed.contains(name)) {
            continue;
        }
        if name == X_FORWARDED_FOR {
            // every received X-Forwarded-For field merged into one, in order
            // (an empty one adds no member: found by the request_head fuzz
            // target, it left the merged value ending in ", ")
            let joined = forwarded.get_or_insert_with(Vec::new);
            if !value.is_empty() {
                joined.extend_from_slice(value.as_bytes());
                joined.extend_from_slice(b", ");
            }
            continue;
        }
        if head.absolute && name == http::header::HOST {
            continue; // replaced by the absolute-form target's authority below
        }
        headers.append(name.clone(), value.clone());
    }
    if head.absolute {
        if let Some(authority) = &head.authority {
            if let Ok(v) = HeaderValue::from_maybe_shared(authority.clone()) {
                headers.insert(http::header::HOST, v);
            }
        }
    }
    if let Some(authority) = authority {
        headers.insert(http::header::HOST, authority.clone());
    } else if !headers.contains_key(http::header::HOST) {
        let host = HeaderValue::from_str(default_host)
            .map_err(|_| Local::new(400, "missing Host, and no name to send as one"))?;
        headers.insert(http::header::HOST, host);
    }
    match (forwarded, &down.peer_text) {
        (None, Some(peer)) => {
            headers.insert(X_FORWARDED_FOR, peer.clone());
        }
        (Some(mut joined), peer) => {
            match peer {
                Some(peer) => joined.extend_from_slice(peer.as_bytes()),
                None => joined.truncate(joined.len().saturating_sub(2)),
            }
            if joined.is_empty() {
                // only empty fields, and no address of our own to add
            } else if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(joined)) {
                headers.insert(X_FORWARDED_FOR, v);
            }
        }
        (None, None) => {}
    }
    // A protocol switch is forwarded as one (the Upgrade pair goes upstream),
    // except to h2c: never tunnelled, since every request on an HTTP/2
    // connection would then pass the sidecar unparsed (h2c smuggling). The
    // request goes on as plain HTTP/1.1, so the app's answer cannot be a switch.
    let upgrade = head.upgrade.as_ref().and_then(without_h2c);
    if let Some(protocols) = &upgrade {
        if let Ok(v) = HeaderValue::from_maybe_shared(protocols.clone()) {
            headers.insert(
                http::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
            headers.insert(http::header::UPGRADE, v);
        }
    }
    let via = if head.version == http::Version::HTTP_10 {
        "1.0 seawall"
    } else {
        "1.1 seawall"
    };
    headers.append(http::header::VIA, HeaderValue::from_static(via));
    for (name, value) in mesh {
        headers.append(name.clone(), value.clone());
    }
    let idempotent = matches!(
        head.method,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::TRACE
            | http::Method::PUT
            | http::Method::DELETE
    ) || head.headers.contains_key(&IDEMPOTENCY_KEY);
    Ok(Outgoing {
        method: head.method.clone(),
        target: head.path.clone(),
        headers,
        idempotent,
        upgrade,
    })
}

/// The protocols of an Upgrade value other than h2c (`None` if none is left).
fn without_h2c(offered: &Bytes) -> Option<Bytes> {
    let is_h2c = |p: &[u8]| {
        let name = p.split(|&b| b == b'/').next().unwrap_or(p);
        trim_ows(name).eq_ignore_ascii_case(b"h2c")
    };
    let members: Vec<&[u8]> = offered
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|p| !p.is_empty())
        .collect();
    if !members.iter().any(|p| is_h2c(p)) {
        return Some(offered.clone());
    }
    let kept: Vec<&[u8]> = members.into_iter().filter(|p| !is_h2c(p)).collect();
    (!kept.is_empty()).then(|| Bytes::from(kept.join(&b", "[..])))
}

/// Whether `protocol` (`name[/version]`) is in `allowed` (lower case; an entry
/// without a version allows every version).
fn allowed_upgrade(allowed: &[String], protocol: &[u8]) -> bool {
    let name = protocol.split(|&b| b == b'/').next().unwrap_or(protocol);
    allowed.iter().any(|a| {
        let a = a.as_bytes();
        a.eq_ignore_ascii_case(protocol) || (!a.contains(&b'/') && a.eq_ignore_ascii_case(name))
    })
}

/// Whether a 101's Upgrade names a protocol the request offered.
fn switched_to_offered(answer: &ResponseHead, offered: &Bytes) -> bool {
    let Some(chosen) = answer.headers.get(http::header::UPGRADE) else {
        return false;
    };
    let chosen = trim_ows(chosen.as_bytes());
    offered
        .split(|&b| b == b',')
        .any(|p| trim_ows(p).eq_ignore_ascii_case(chosen))
}

/// Steps 6-8: fault delay and abort, split, mirror, then the attempts.
#[allow(clippy::too_many_arguments)] // the request's parts, each borrowed for the exchange
pub async fn forward(
    rt: &Runtime,
    p: &Prepared,
    out: &Outgoing,
    mut body: BodySource,
    length: Option<u64>,
    tls: Option<&UpstreamTls>,
    span: &RequestSpan,
    rng: &mut (dyn Random + Send),
) -> Result<Upstream, Local> {
    let policy = &p.route.data;
    let clock = &rt.clock;
    // inbound, the service's concurrency limit: the least critical wait or go first
    let slot = match p.dest.cluster.gate() {
        Some(gate) => match gate.enter(p.criticality, p.deadline).await {
            Some(slot) => Some(slot),
            None => return Err(shed(rt, p, span)),
        },
        None => None,
    };
    // 5. fault injection: the delay (never past the deadline), then the abort
    if let Some(fault) = p.fault {
        if fault.delay > 0.0 {
            let wait = fault.delay.min((p.deadline - clock.now()).max(0.0));
            span.event(clock.now(), "seawall.fault", || {
                vec![
                    spans::s("seawall.fault.kind", "delay"),
                    spans::f("seawall.fault.delay_ms", spans::ms(wait)),
                ]
            });
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        }
        if let Some(status) = fault.abort {
            span.event(clock.now(), "seawall.fault", || {
                vec![
                    spans::s("seawall.fault.kind", "abort"),
                    spans::i("http.response.status_code", i64::from(status)),
                ]
            });
            return Err(Local::new(status, "fault injected")
                .with(HeaderName::from_static("x-seawall-fault"), "abort"));
        }
    }
    // 6. split (chosen in `prepare`, to count the request by subset) and mirror
    let subset: Option<&str> = p.subset().map(|(name, _)| name.as_str());
    if let Some(subset) = subset {
        span.attributes(|a| a.push(spans::s("seawall.subset", subset)));
    }
    if let (Some(mirror), BodySource::Whole(payload)) = (&policy.mirror, &body) {
        if chance(rng, mirror.percent) {
            if let Some(target) = rt.destinations.get(mirror.to.as_str()) {
                span.event(clock.now(), "seawall.mirror", || {
                    vec![spans::s("seawall.mirror.destination", mirror.to.as_str())]
                });
                spawn_mirror(
                    rt,
                    target.clone(),
                    mirror.subset.clone(),
                    out,
                    payload.clone(),
                    tls,
                    span.traceparent(),
                );
            }
        }
    }
    // 7. attempts (each one copy, or a race of hedged copies)
    let shared = p.dest.cluster.clone();
    let cluster: &Cluster = &shared;
    let retry = &policy.retry;
    let may_retry = p.may_retry && body.replayable();
    cluster.deposit(p.start);
    let active = shared.start_request().map_err(|e| {
        span.event(clock.now(), "seawall.pool.overflow", || {
            vec![spans::s("seawall.pool.limit", e.0)]
        });
        overflow(e)
    })?;
    // hedging: idempotent requests with a whole body, no protocol switch
    let hedge = policy
        .hedge
        .as_ref()
        .filter(|_| out.idempotent && out.upgrade.is_none() && body.replayable());
    let mut tried = Tried::default();
    let mut attempt: u32 = 0;
    // a retry holds one of `max_retries` from its backoff to its outcome
    let mut retrying = None;
    loop {
        attempt += 1;
        let now = clock.now();
        if now >= p.deadline {
            span.event(now, "seawall.deadline.expired", Vec::new);
            return Err(Local::new(504, "request timeout"));
        }
        let can_retry = may_retry && attempt < retry.attempts;
        let copy = Copies {
            span,
            rt,
            cluster,
            p,
            out,
            length,
            subset,
            can_retry,
            tls,
        };
        let outcome = match (hedge, &body) {
            (Some(h), BodySource::Whole(payload)) => {
                let (outcome, sent) = copy.race(h, payload, attempt, &mut tried, rng).await?;
                // the copies beyond the first took the attempt numbers after this one
                attempt += sent - 1;
                outcome
            }
            _ => {
                let (admitted, target) = copy.admit(now, &mut tried, rng)?;
                let outcome = copy.send(&mut body, attempt, &target, now).await;
                admitted.settle(&target, now, outcome, span)?
            }
        };
        let ended = clock.now();
        let (kind_retryable, last) = match outcome {
            Attempt::Response(head, body) => {
                return Ok(Upstream {
                    head,
                    body,
                    active,
                    idle_timeout: policy.idle_timeout,
                    slot: answered(slot),
                });
            }
            Attempt::Status(s, head, body) => {
                let retryable = retry.statuses.contains(s);
                (retryable, Last::Status(Box::new((head, body))))
            }
            Attempt::Reset(why) => (
                retry.on_reset,
                Last::Failed(502, format!("upstream reset: {why}")),
            ),
            Attempt::Timeout => (retry.on_reset, Last::Failed(504, "upstream timeout".into())),
            Attempt::Waited => (
                false,
                Last::Failed(504, "upstream timeout (no connection free)".into()),
            ),
            Attempt::Connect(why) => (
                retry.on_connect_failure,
                Last::Failed(503, format!("upstream connect: {why}")),
            ),
            Attempt::Protocol(why) => (
                false,
                Last::Failed(502, format!("upstream protocol: {why}")),
            ),
        };
        // Retry, or give up: nothing was forwarded yet.
        let mut give_up = !(can_retry && kind_retryable);
        // why not, for the span (a failure the route would retry, not retried)
        let mut skipped: Option<&'static str> = None;
        if give_up && kind_retryable && span.is_recording() {
            skipped = Some(if !may_retry {
                "not idempotent"
            } else {
                "attempts exhausted"
            });
        }
        if !give_up && cluster.retries_in_flight() >= cluster.max_retries() {
            cluster.overflowed("retries");
            span.event(ended, "seawall.pool.overflow", || {
                vec![spans::s("seawall.pool.limit", "retries")]
            });
            skipped = Some("max_retries");
            give_up = true;
        }
        if !give_up && !cluster.withdraw(ended) {
            skipped = Some("budget exhausted");
            give_up = true;
        }
        let mut delay = 0.0;
        if !give_up {
            delay = retry.backoff_delay(attempt, rng);
            give_up = ended + delay >= p.deadline;
            if give_up {
                skipped = Some("deadline");
            }
        }
        if let Some(reason) = skipped {
            span.event(ended, "seawall.retry.skipped", || {
                vec![spans::s("seawall.retry.reason", reason)]
            });
        }
        if give_up {
            return match last {
                // the upstream's own answer, as it is
                Last::Status(answer) => Ok(Upstream {
                    head: answer.0,
                    body: answer.1,
                    active,
                    idle_timeout: policy.idle_timeout,
                    slot: answered(slot),
                }),
                Last::Failed(status, detail) => Err(Local::new(status, detail)),
            };
        }
        span.event(ended, "seawall.retry", || {
            vec![
                spans::i("seawall.attempt", i64::from(attempt + 1)),
                spans::s("seawall.retry.reason", last.reason()),
                spans::f("seawall.retry.delay_ms", spans::ms(delay)),
            ]
        });
        drop(last); // a response that will not be forwarded: its connection closes
        cluster.count_retry();
        drop(retrying.take()); // the retry before this one has its outcome
        retrying = Some(cluster.retry_started());
        if delay > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(delay)).await;
        }
    }
}

/// The endpoints a request has tried (attempts and hedges are at most 10
/// and 6: room for all).
#[derive(Default)]
struct Tried {
    keys: [u64; 16],
    len: usize,
}

impl Tried {
    fn keys(&self) -> &[u64] {
        &self.keys[..self.len]
    }

    fn push(&mut self, key: u64) {
        if let Some(slot) = self.keys.get_mut(self.len) {
            *slot = key;
            self.len += 1;
        }
    }
}

/// A copy admitted by the breaker, its permit given back if the copy is
/// dropped before its outcome is known (a hedge that lost).
struct Admitted<'c> {
    cluster: &'c Cluster,
    permit: Option<Option<seawall_policy::breaker::Permit>>,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.cluster.release(permit);
        }
    }
}

impl Admitted<'_> {
    /// Record what the copy sent at `began` came to, with the outlier
    /// detector and the breaker; a local answer instead gives the permit back.
    fn settle(
        mut self,
        target: &crate::upstream::Target,
        began: f64,
        outcome: Result<Attempt, Local>,
        span: &RequestSpan,
    ) -> Result<Attempt, Local> {
        let outcome = outcome?;
        let cluster = self.cluster;
        let ended = cluster.clock().now();
        let (status, local_origin) = match &outcome {
            Attempt::Response(h, _) => (Some(h.status), false),
            Attempt::Status(s, _, _) => (Some(*s), false),
            Attempt::Connect(_) | Attempt::Reset(_) | Attempt::Timeout => (None, true),
            Attempt::Protocol(_) | Attempt::Waited => (None, false),
        };
        let failed = status.is_none_or(|s| s >= 500);
        let gateway = local_origin || matches!(status, Some(502..=504));
        if let Some(reason) = cluster.record(target.key, ended, status, gateway) {
            span.event(ended, "seawall.outlier.ejected", || {
                vec![
                    spans::s(
                        "seawall.endpoint",
                        format!("{}:{}", target.host, target.port),
                    ),
                    spans::s("seawall.outlier.reason", reason),
                ]
            });
        }
        if let Some(permit) = self.permit.take() {
            cluster.record_breaker(permit, ended, ended - began, failed);
        }
        Ok(outcome)
    }
}

/// What every copy of one request shares.
struct Copies<'a> {
    span: &'a RequestSpan,
    rt: &'a Runtime,
    cluster: &'a Cluster,
    p: &'a Prepared,
    out: &'a Outgoing,
    length: Option<u64>,
    subset: Option<&'a str>,
    can_retry: bool,
    tls: Option<&'a UpstreamTls>,
}

impl<'a> Copies<'a> {
    /// The breaker's admission and an endpoint for one copy: 503 at once
    /// while the breaker is open (no upstream attempt), or with no endpoint.
    fn admit(
        &self,
        now: f64,
        tried: &mut Tried,
        rng: &mut (dyn Random + Send),
    ) -> Result<(Admitted<'a>, crate::upstream::Target), Local> {
        let cluster = self.cluster;
        let span = self.span;
        let permit = cluster.admit(now).map_err(|_| {
            span.event(now, "seawall.breaker.rejected", || {
                vec![spans::s("seawall.breaker.state", "open")]
            });
            Local::new(503, format!("circuit open for {}", cluster.name))
                .with(HeaderName::from_static("x-seawall-circuit"), "open")
                .overloaded()
        })?;
        if span.is_recording() {
            // a probe while half open (a closed breaker is not worth an event)
            if let Some(state) = cluster.breaker_state().filter(|s| *s != "closed") {
                span.event(now, "seawall.breaker", || {
                    vec![spans::s("seawall.breaker.state", state)]
                });
            }
        }
        let admitted = Admitted {
            cluster,
            permit: Some(permit),
        };
        let Some(target) = cluster.pick(now, tried.keys(), self.subset, rng) else {
            return Err(Local::new(503, format!("no endpoint for {}", cluster.name)));
        };
        tried.push(target.key);
        Ok((admitted, target))
    }

    /// Send one copy, attempt number `attempt`, begun at `now`.
    async fn send(
        &self,
        body: &mut BodySource,
        attempt: u32,
        target: &crate::upstream::Target,
        now: f64,
    ) -> Result<Attempt, Local> {
        let policy = &self.p.route.data;
        let mut try_deadline = self.p.deadline;
        if let Some(per_try) = policy.per_try_timeout {
            try_deadline = try_deadline.min(now + per_try);
        }
        if let Some(idle) = policy.idle_timeout {
            try_deadline = try_deadline.min(now + idle); // silence until the head is idle too
        }
        let span = self.span;
        let recorded = span.attempt(now, || {
            let mut a = vec![
                spans::i("seawall.attempt", i64::from(attempt)),
                spans::s(
                    "seawall.endpoint",
                    format!("{}:{}", target.host, target.port),
                ),
                spans::s("server.address", target.host.as_ref()),
                spans::i("server.port", i64::from(target.port)),
            ];
            if let Some(subset) = self.subset {
                a.push(spans::s("seawall.subset", subset));
            }
            a
        });
        let outcome = attempt_once(
            self.rt,
            self.cluster,
            self.p,
            self.out,
            body,
            self.length,
            attempt,
            try_deadline,
            target,
            self.can_retry,
            self.tls,
            recorded.as_ref().map(|a| &a.traceparent[..]),
            span,
        )
        .await;
        let ended = self.rt.clock.now();
        match &outcome {
            Ok(Attempt::Response(h, _)) | Ok(Attempt::Status(_, h, _)) => {
                span.attempt_ended(recorded, ended, Some(h.status), None);
            }
            Ok(failed) => span.attempt_ended(recorded, ended, None, Some(failed.kind())),
            Err(local) => {
                span.attempt_ended(recorded, ended, Some(local.status), Some(local.error()))
            }
        }
        outcome
    }

    /// Hedged copies of one idempotent request: the first now, another each
    /// time `hedge`'s delay passes with no answer (or at once when a copy
    /// fails), up to `max_hedges` more, each drawing on the retry budget.
    /// The first answer that is not a failure wins, and the copies still in
    /// flight are dropped: their connections close, so the upstream sees
    /// them cancelled. Returns the outcome and how many copies were sent.
    async fn race(
        &self,
        hedge: &crate::spec::Hedge,
        payload: &Bytes,
        first: u32,
        tried: &mut Tried,
        rng: &mut (dyn Random + Send),
    ) -> Result<(Attempt, u32), Local> {
        type Flight<'f> = std::pin::Pin<
            Box<dyn std::future::Future<Output = (Result<Attempt, Local>, u32)> + Send + 'f>,
        >;
        let cluster = self.cluster;
        let clock = self.rt.clock;
        let delay = Duration::from_secs_f64(cluster.hedge_delay(hedge));
        let most = 1 + hedge.max_hedges;
        let hedges = &self.rt.metrics.hedges;
        // the copies in flight, and what settles each: (admission, endpoint,
        // sent at, and for a hedge its slot in `max_retries`)
        let mut flights: Vec<Flight<'_>> = Vec::with_capacity(most as usize);
        let mut settles = Vec::with_capacity(most as usize);
        let mut sent: u32 = 0;
        let mut more = true;
        let mut last: Option<Result<Attempt, Local>> = None;
        let launch = |n: u32, target: crate::upstream::Target, now: f64| -> Flight<'_> {
            let mut body = BodySource::Whole(payload.clone());
            Box::pin(async move {
                let outcome = self.send(&mut body, first + n, &target, now).await;
                (outcome, n)
            })
        };
        let now = clock.now();
        let (admitted, target) = self.admit(now, tried, rng)?;
        flights.push(launch(0, target.clone(), now));
        settles.push(Some((admitted, target, now, None)));
        sent += 1;
        let mut timer = Box::pin(tokio::time::sleep(delay));
        loop {
            let hedge_due = more && sent < most;
            let event = std::future::poll_fn(|cx| {
                for (i, f) in flights.iter_mut().enumerate() {
                    if let std::task::Poll::Ready(done) = f.as_mut().poll(cx) {
                        return std::task::Poll::Ready(Some((i, done)));
                    }
                }
                if hedge_due && std::future::Future::poll(timer.as_mut(), cx).is_ready() {
                    return std::task::Poll::Ready(None);
                }
                std::task::Poll::Pending
            })
            .await;
            // the delay passed with no answer, or a copy failed: the next copy goes now
            let mut send_now = event.is_none();
            if let Some((i, (outcome, n))) = event {
                drop(flights.swap_remove(i));
                let Some((admitted, target, began, _slot)) = settles[n as usize].take() else {
                    continue;
                };
                let outcome = admitted.settle(&target, began, outcome, self.span);
                // an answer wins; a 5xx only when no other copy can do better (below)
                let won = matches!(&outcome, Ok(Attempt::Response(h, _)) if h.status < 500);
                if n > 0 {
                    let how = if won { "won" } else { "failed" };
                    hedges.labels(&[&cluster.name, how]).inc();
                }
                if won {
                    let lost = settles
                        .iter()
                        .enumerate()
                        .filter(|(k, s)| *k > 0 && s.is_some())
                        .count();
                    if lost > 0 {
                        hedges.labels(&[&cluster.name, "lost"]).add(lost as u64);
                    }
                    // dropping the other copies cancels them on the wire
                    return outcome.map(|o| (o, sent));
                }
                last = Some(outcome);
                send_now = true;
            }
            if send_now && more && sent < most {
                let now = clock.now();
                if now >= self.p.deadline {
                    more = false;
                } else if cluster.retries_in_flight() >= cluster.max_retries()
                    || !cluster.withdraw(now)
                {
                    // no room in the budget: no more copies
                    hedges.labels(&[&cluster.name, "refused_budget"]).inc();
                    more = false;
                } else {
                    match self.admit(now, tried, rng) {
                        Ok((admitted, target)) => {
                            self.span.event(now, "seawall.hedge", || {
                                vec![spans::i("seawall.attempt", i64::from(first + sent))]
                            });
                            flights.push(launch(sent, target.clone(), now));
                            let slot = cluster.retry_started();
                            settles.push(Some((admitted, target, now, Some(slot))));
                            sent += 1;
                            timer.as_mut().reset(tokio::time::Instant::now() + delay);
                        }
                        // the breaker opened, or no endpoint: no more copies
                        Err(_) => more = false,
                    }
                }
            }
            if flights.is_empty() && !(more && sent < most) {
                let outcome = last.take().unwrap_or_else(|| Ok(Attempt::Waited));
                return outcome.map(|o| (o, sent));
            }
        }
    }
}

enum Last {
    Status(Box<(ResponseHead, ResponseBody)>),
    Failed(u16, String),
}

impl Last {
    /// Why the attempt failed, as a retry event says it.
    fn reason(&self) -> String {
        match self {
            Last::Status(answer) => format!("status {}", answer.0.status),
            Last::Failed(_, why) => why.clone(),
        }
    }
}

fn overflow(e: Overflow) -> Local {
    let mut local = Local::new(503, format!("pool limit reached: {}", e.0));
    local.extra.push((
        HeaderName::from_static("x-seawall-overflow"),
        HeaderValue::from_static(e.0),
    ));
    local.overloaded()
}

/// One attempt: a connection, the exchange, the response head (or why not).
#[allow(clippy::too_many_arguments)]
async fn attempt_once(
    rt: &Runtime,
    cluster: &Cluster,
    p: &Prepared,
    out: &Outgoing,
    body: &mut BodySource,
    length: Option<u64>,
    attempt: u32,
    try_deadline: f64,
    target: &crate::upstream::Target,
    can_retry: bool,
    tls: Option<&UpstreamTls>,
    traceparent: Option<&[u8]>,
    span: &RequestSpan,
) -> Result<Attempt, Local> {
    let clock = &rt.clock;
    let until = clock.instant(try_deadline);
    let begun = clock.now();
    let wait = Duration::from_secs_f64((try_deadline - begun).max(0.0));
    let secure = cluster.secure(tls);
    let mut stale_tries = 0;
    let mut balancer = Sent {
        cluster,
        key: target.key,
        at: None,
    };
    loop {
        let acquired = cluster.pool.acquire(target, wait, secure).await;
        if acquired.is_err() {
            // no new connection after a stale one: the attempt the balancer saw ends here
            balancer.finish(clock.now(), false);
        }
        let mut conn = match acquired {
            Ok(conn) => conn,
            Err(ConnectError::Overflow(limit)) => {
                cluster.overflowed(limit);
                span.event(clock.now(), "seawall.pool.overflow", || {
                    vec![spans::s("seawall.pool.limit", limit)]
                });
                return Err(overflow(Overflow(limit)));
            }
            Err(ConnectError::Failed(why)) => return Ok(Attempt::Connect(why)),
            Err(ConnectError::Dns(why)) if cluster.external => {
                return Err(Local::new(502, format!("upstream DNS: {why}"))
                    .with(HeaderName::from_static("x-seawall-error"), "dns"))
            }
            // a mesh endpoint by a name that does not resolve: another may
            Err(ConnectError::Dns(why)) => return Ok(Attempt::Connect(why)),
            Err(ConnectError::Timeout) => return Ok(Attempt::Timeout),
            // Waiting for a pool slot says nothing about the endpoint: no outlier signal.
            Err(ConnectError::PoolTimeout) => return Ok(Attempt::Waited),
        };
        let now = clock.now();
        // The balancer sees one request per attempt, from its first send: a send
        // again after a stale pooled connection is the same request.
        balancer.start(now);
        let remaining_ms = ((p.deadline - now) * 1000.0).max(0.0) as u64;
        let (mut digits, mut attempt_digits) = ([0u8; 20], [0u8; 20]);
        let deadline_text = seawall_h1::decimal(remaining_ms, &mut digits);
        // every attempt says which it is, the first too (as seawall.client.httpx does)
        let extra: [(&str, &[u8]); 3] = [
            ("x-seawall-deadline-ms", deadline_text),
            (
                ATTEMPT,
                seawall_h1::decimal(u64::from(attempt), &mut attempt_digits),
            ),
            ("traceparent", traceparent.unwrap_or_default()),
        ];
        // the attempt's own traceparent when its span is recorded
        let extra = &extra[..if traceparent.is_some() { 3 } else { 2 }];
        let (outbound, framing) = body.take(&out.method, length);
        client::encode_head(
            &mut conn,
            &out.method,
            &out.target,
            &out.headers,
            extra,
            framing,
        )
        .map_err(|why| Local::new(400, why))?;
        let head_request = out.method == http::Method::HEAD;
        let sent = tokio::time::timeout_at(
            until,
            client::exchange(&mut conn, outbound, head_request, out.idempotent),
        )
        .await;
        let ended = clock.now();
        return Ok(match sent {
            Err(_) => {
                balancer.finish(ended, false);
                Attempt::Timeout
            }
            Ok(Err(ExchangeError::Stale(why))) => {
                // A pooled connection the upstream had closed: nothing was
                // answered; send again on another connection (not a retry).
                if body.replayable() && stale_tries < MAX_STALE {
                    stale_tries += 1;
                    continue;
                }
                balancer.finish(ended, false);
                Attempt::Reset(why)
            }
            Ok(Err(ExchangeError::Reset(why))) => {
                balancer.finish(ended, false);
                Attempt::Reset(why)
            }
            Ok(Err(ExchangeError::Protocol(why))) => {
                balancer.finish(ended, false);
                Attempt::Protocol(why)
            }
            Ok(Ok(head))
                if head.status == 101
                    && !out
                        .upgrade
                        .as_ref()
                        .is_some_and(|offered| switched_to_offered(&head, offered)) =>
            {
                // A tunnel opens only to a protocol the request offered.
                balancer.finish(ended, false);
                Attempt::Protocol("101 Switching Protocols to a protocol not offered".into())
            }
            Ok(Ok(head)) => {
                let status = head.status;
                if let Some(took) = balancer
                    .finish(ended, status < 500)
                    .filter(|_| status < 500)
                {
                    cluster.record_latency(took);
                }
                let overloaded = head.headers.contains_key(&OVERLOADED);
                let body = ResponseBody::new(conn, &head);
                if status >= 500 && can_retry && !overloaded {
                    Attempt::Status(status, head, body)
                } else {
                    Attempt::Response(head, body)
                }
            }
        });
    }
}

/// The balancer's view of one attempt: started at its first send, finished
/// once, and finished as failed when the attempt is dropped on the way (a
/// hedged copy that lost), so that no request stays counted in flight.
struct Sent<'c> {
    cluster: &'c Cluster,
    key: u64,
    at: Option<f64>,
}

impl Sent<'_> {
    /// The first send (a send again after a stale pooled connection is the same request).
    fn start(&mut self, now: f64) {
        if self.at.is_none() {
            self.cluster.on_start(self.key, now);
            self.at = Some(now);
        }
    }

    /// The attempt ended; how long it took, if it was started.
    fn finish(&mut self, ended: f64, ok: bool) -> Option<f64> {
        let at = self.at.take()?;
        self.cluster.on_finish(self.key, ended, ended - at, ok);
        Some(ended - at)
    }
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        if self.at.is_some() {
            let now = self.cluster.clock().now();
            self.finish(now, false);
        }
    }
}

/// Stale pooled connections tried in a row before one attempt counts as failed.
const MAX_STALE: u32 = 4;

/// Send a copy to `dest` with a `-shadow` Host; the result is ignored.
fn spawn_mirror(
    rt: &Runtime,
    dest: Arc<Destination>,
    subset: Option<String>,
    out: &Outgoing,
    payload: Bytes,
    tls: Option<&UpstreamTls>,
    traceparent: Option<[u8; seawall_trace::TRACEPARENT_LEN]>,
) {
    let clock = rt.clock;
    let mut headers = out.headers.clone();
    if let Some(v) = traceparent.and_then(|tp| HeaderValue::from_bytes(&tp).ok()) {
        headers.insert(TRACEPARENT, v);
    }
    if let Some(host) = headers.get(http::header::HOST) {
        if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(shadow_host(host.as_bytes()))) {
            headers.insert(http::header::HOST, v);
        }
    }
    let mut source = BodySource::Whole(payload);
    let (outbound, framing) = source.take(&out.method, None);
    let method = out.method.clone();
    let target_bytes = out.target.clone();
    let head_request = out.method == http::Method::HEAD;
    let tls = tls.cloned();
    let mut rng = seawall_policy::rng::SplitMix64::from_entropy();
    tokio::spawn(async move {
        let cluster = &dest.cluster;
        let Some(target) = cluster.pick(clock.now(), &[], subset.as_deref(), &mut rng) else {
            return;
        };
        let Ok(mut conn) = cluster
            .pool
            .acquire(&target, MIRROR_CONNECT, cluster.secure(tls.as_ref()))
            .await
        else {
            return;
        };
        if client::encode_head(&mut conn, &method, &target_bytes, &headers, &[], framing).is_err() {
            return;
        }
        let exchange = async {
            let answer = client::exchange(&mut conn, outbound, head_request, false)
                .await
                .ok()?;
            let mut body = ResponseBody::new(conn, &answer);
            while body.next(None).await.ok()?.is_some() {}
            body.into_conn()
        };
        if let Ok(Some(conn)) = tokio::time::timeout(MIRROR_EXCHANGE, exchange).await {
            cluster.pool.release(conn);
        }
    });
}

/// How long a mirror copy may wait for a connection, and its whole exchange take.
const MIRROR_CONNECT: Duration = Duration::from_secs(1);
const MIRROR_EXCHANGE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_strictly() {
        assert_eq!(parse_deadline_ms(b"1500"), Some(1500));
        assert_eq!(parse_deadline_ms(b" 7\t"), Some(7));
        assert_eq!(parse_deadline_ms(b"+5"), None);
        assert_eq!(parse_deadline_ms(b""), None);
        assert_eq!(parse_deadline_ms(b"1.5"), None);
        assert_eq!(parse_deadline_ms(b"864000001"), None);
        assert_eq!(parse_deadline_ms(b"9999999999"), None);
    }

    #[test]
    fn h2c_is_never_offered_upstream() {
        let offer = |v: &'static str| without_h2c(&Bytes::from_static(v.as_bytes()));
        assert_eq!(offer("h2c"), None);
        assert_eq!(offer(" H2C "), None);
        assert_eq!(offer("h2c/1.0"), None);
        assert_eq!(offer("websocket").as_deref(), Some(&b"websocket"[..]));
        assert_eq!(offer("h2c, websocket").as_deref(), Some(&b"websocket"[..]));
        assert_eq!(offer("a, h2c,b").as_deref(), Some(&b"a, b"[..]));
    }

    #[test]
    fn upgrades_are_allowed_by_name_or_exact_version() {
        let allowed = vec!["websocket".to_owned(), "echo/2".to_owned()];
        assert!(allowed_upgrade(&allowed, b"WebSocket"));
        assert!(allowed_upgrade(&allowed, b"websocket/13"));
        assert!(allowed_upgrade(&allowed, b"echo/2"));
        assert!(!allowed_upgrade(&allowed, b"echo/3"));
        assert!(!allowed_upgrade(&allowed, b"echo"));
        assert!(!allowed_upgrade(&[], b"websocket"));
    }

    #[test]
    fn ports_are_stripped_from_authorities() {
        assert_eq!(strip_port("orders:8002"), "orders");
        assert_eq!(strip_port("orders"), "orders");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("orders.svc:80"), "orders.svc");
    }

    fn head_of(raw: &[u8]) -> RequestHead {
        let limits = seawall_h1::Limits {
            max_request_line: 8192,
            max_headers: 100,
            max_header_bytes: 65536,
            max_body: None,
            max_chunk_ext_bytes: 4096,
        };
        let (head, _) = seawall_h1::parse_request_head(raw, &limits)
            .expect("valid")
            .expect("complete");
        head
    }

    /// Found by the request_head fuzz target: an HTTP/1.0 request without
    /// Host went upstream as HTTP/1.1 without Host, which the app refuses.
    #[test]
    fn an_http10_request_without_host_gets_the_destination_name() {
        let head = head_of(b"GET /x HTTP/1.0\r\n\r\n");
        let out = outgoing(&head, &Down::default(), &[], "payments", None).expect("forwarded");
        assert_eq!(out.headers.get("host").expect("a Host"), "payments");
        let head = head_of(b"GET /x HTTP/1.0\r\nHost: shop:8080\r\n\r\n");
        let out = outgoing(&head, &Down::default(), &[], "payments", None).expect("forwarded");
        assert_eq!(out.headers.get_all("host").iter().count(), 1);
        assert_eq!(out.headers.get("host").expect("a Host"), "shop:8080");
    }

    #[test]
    fn empty_x_forwarded_for_fields_add_no_member() {
        let raw = b"GET / HTTP/1.1\r\nHost: payments\r\nX-Forwarded-For: 10.0.0.1\r\n\
                    X-Forwarded-For:\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-For: \r\n\r\n";
        let head = head_of(raw);
        let out = outgoing(&head, &Down::default(), &[], "payments", None).expect("forwarded");
        assert_eq!(out.headers["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
        let peer = Down {
            peer_text: Some(HeaderValue::from_static("10.9.9.9")),
            ..Down::default()
        };
        let out = outgoing(&head, &peer, &[], "payments", None).expect("forwarded");
        assert_eq!(
            out.headers["x-forwarded-for"],
            "10.0.0.1, 10.0.0.2, 10.9.9.9"
        );
        let only_empty = head_of(b"GET / HTTP/1.1\r\nHost: p\r\nX-Forwarded-For:\r\n\r\n");
        let out = outgoing(&only_empty, &Down::default(), &[], "p", None).expect("forwarded");
        assert!(!out.headers.contains_key("x-forwarded-for"));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("api.example.com", 80),
            Some(("api.example.com", 80))
        );
        assert_eq!(
            split_authority("api.example.com:8443", 80),
            Some(("api.example.com", 8443))
        );
        assert_eq!(split_authority("[::1]:9000", 80), Some(("::1", 9000)));
        assert_eq!(split_authority("[::1]", 443), Some(("::1", 443)));
        assert_eq!(split_authority("host:0", 80), None);
        assert_eq!(split_authority("host:http", 80), None);
        assert_eq!(split_authority(":80", 80), None);
        assert_eq!(split_authority("", 80), None);
    }
}
