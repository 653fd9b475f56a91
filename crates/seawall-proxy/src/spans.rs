//! The spans of the requests this sidecar serves (issue 10).
//!
//! Every sampled request records one span for its hop, a SERVER span
//! inbound and a CLIENT span outbound, following OpenTelemetry's HTTP
//! conventions; outbound, each attempt (a retry, a hedged copy) is a child
//! CLIENT span of its own, and the next hop continues the trace under that
//! attempt, so that a trace reads: app span → sidecar client span → attempt
//! → callee's sidecar server span → app span. The policy decisions taken on
//! the way are events on the hop's span, with their reasons
//! (`docs/telemetry/tracing.md` has the table, shared with `seawall.telemetry`).
//!
//! What a span costs: its fields are written to protobuf as they become
//! known ([`seawall_otlp::stream::SpanWriter`]), so a span is one buffer, not
//! a string per attribute; a sampled-out request costs nothing:
//! [`RequestSpan::off`] is `None` inside, every call on it returns at once,
//! and the closures that build attributes are never run.
//!
//! A finished request hands its spans to the [`Tracer`]'s bounded queue
//! ([`crate::export`]) without waiting; a full queue drops them and counts
//! them. Times are the core's monotonic clock, turned into Unix time by one
//! offset taken when the tracer started (spans of one sidecar never go back
//! in time when the wall clock is stepped).
use std::borrow::Cow;
use std::sync::Mutex;

use seawall_otlp::stream::{EncodedSpan, EventAttributes, SpanWriter, Value};
use seawall_otlp::{SpanKind, StatusCode};
use seawall_policy::rng::SplitMix64;
use seawall_trace::{Continued, SpanId, TraceParent, TRACEPARENT_LEN};

use crate::export::Queue;

/// What records and ships spans, one per sidecar (every config version shares it).
#[derive(Debug)]
pub struct Tracer {
    queue: Queue,
    /// Unix nanoseconds at the core clock's zero (an integer: an `f64` of
    /// today's Unix nanoseconds is only good to 256 ns).
    unix_at_zero: i128,
}

impl Tracer {
    /// A tracer whose spans go to `queue`; `unix_now` is the wall clock's
    /// reading (Unix seconds) when the core clock read `clock_now`.
    pub fn new(queue: Queue, unix_now: f64, clock_now: f64) -> Self {
        Tracer {
            queue,
            unix_at_zero: (unix_now * 1e6).round() as i128 * 1000
                - (clock_now * 1e9).round() as i128,
        }
    }

    /// Unix nanoseconds of a core clock time.
    pub fn unix_nanos(&self, at: f64) -> u64 {
        let nanos = self.unix_at_zero + (at * 1e9).round() as i128;
        u64::try_from(nanos.max(0)).unwrap_or(u64::MAX)
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }
}

/// One attribute, its value borrowed when it can be.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr<'a> {
    key: &'static str,
    value: AttrValue<'a>,
}

#[derive(Debug, Clone, PartialEq)]
enum AttrValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl Attr<'_> {
    fn value(&self) -> Value<'_> {
        match &self.value {
            AttrValue::Str(s) => Value::Str(s),
            AttrValue::Int(i) => Value::Int(*i),
            AttrValue::Double(d) => Value::Double(*d),
            AttrValue::Bool(b) => Value::Bool(*b),
        }
    }
}

/// A string attribute.
pub fn s<'a>(key: &'static str, value: impl Into<Cow<'a, str>>) -> Attr<'a> {
    Attr {
        key,
        value: AttrValue::Str(value.into()),
    }
}

/// An integer attribute.
pub fn i(key: &'static str, value: i64) -> Attr<'static> {
    Attr {
        key,
        value: AttrValue::Int(value),
    }
}

/// A floating-point attribute.
pub fn f(key: &'static str, value: f64) -> Attr<'static> {
    Attr {
        key,
        value: AttrValue::Double(value),
    }
}

/// A boolean attribute.
pub fn b(key: &'static str, value: bool) -> Attr<'static> {
    Attr {
        key,
        value: AttrValue::Bool(value),
    }
}

/// Milliseconds, rounded to the microsecond (what an event says of a wait).
pub fn ms(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e3
}

/// Where [`RequestSpan::attributes`] writes.
pub struct Attrs<'w>(&'w mut SpanWriter);

impl Attrs<'_> {
    pub fn push(&mut self, attr: Attr<'_>) {
        self.0.attribute(attr.key, attr.value());
    }
}

fn event_attributes(attrs: &[Attr<'_>], e: &mut EventAttributes) {
    for a in attrs {
        e.add(a.key, a.value());
    }
}

/// The span of one request's hop, and its attempts: nothing when not sampled.
#[derive(Debug, Default)]
pub struct RequestSpan(Option<Box<Recording>>);

#[derive(Debug)]
struct Recording {
    tracer: std::sync::Arc<Tracer>,
    traceparent: TraceParent,
    client: bool,
    inner: Mutex<Spans>,
}

#[derive(Debug)]
struct Spans {
    hop: SpanWriter,
    /// The hop's name (`{method} {route}`), its attempts' too.
    name: String,
    trace_state: String,
    attempts: Vec<Attempt>,
    /// Draws the attempts' span ids (seeded by the hop's id: no shared source).
    ids: SplitMix64,
}

#[derive(Debug)]
enum Attempt {
    Open(SpanWriter),
    Done(EncodedSpan),
}

/// A child span begun for an attempt: its index in the recording, and the
/// `traceparent` the attempt sends.
#[derive(Debug, Clone, Copy)]
pub struct AttemptSpan {
    index: usize,
    pub traceparent: [u8; TRACEPARENT_LEN],
}

fn lock(m: &Mutex<Spans>) -> std::sync::MutexGuard<'_, Spans> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RequestSpan {
    /// The span of a request that is not recorded.
    pub const fn off() -> Self {
        RequestSpan(None)
    }

    /// Begin the span of a request whose trace context is `trace`: recorded
    /// when the trace is sampled and the sidecar has a tracer. Its span id
    /// is the `parent-id` the hop forwards; its parent is the caller's span.
    pub fn start(
        tracer: Option<&std::sync::Arc<Tracer>>,
        trace: &Continued,
        inbound: bool,
        now: f64,
        method: &str,
    ) -> Self {
        let Some(tracer) = tracer.filter(|_| trace.traceparent.sampled()) else {
            return RequestSpan(None);
        };
        let tp = trace.traceparent;
        let kind = if inbound {
            SpanKind::Server
        } else {
            SpanKind::Client
        };
        let span_id = tp.parent_id().to_bytes();
        let caller = trace.caller.map(SpanId::to_bytes);
        let mut hop = SpanWriter::new(
            &tp.trace_id().to_bytes(),
            &span_id,
            caller.as_ref(),
            u32::from(tp.flags()),
            kind,
            tracer.unix_nanos(now),
        );
        let trace_state = trace
            .tracestate
            .as_ref()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default();
        hop.trace_state(&trace_state);
        RequestSpan(Some(Box::new(Recording {
            tracer: tracer.clone(),
            traceparent: tp,
            client: !inbound,
            inner: Mutex::new(Spans {
                ids: SplitMix64::new(u64::from_be_bytes(span_id)),
                hop,
                name: method.to_owned(),
                trace_state,
                attempts: Vec::new(),
            }),
        })))
    }

    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Whether each attempt gets a span of its own (and sends its own
    /// `traceparent`): outbound requests that are recorded. Inbound, the
    /// app is called under the hop's SERVER span.
    pub fn records_attempts(&self) -> bool {
        self.0.as_ref().is_some_and(|r| r.client)
    }

    /// The hop's `traceparent`, when its attempts send their own (what a
    /// mirror copy, which has no attempt span, sends).
    pub fn traceparent(&self) -> Option<[u8; TRACEPARENT_LEN]> {
        self.0
            .as_ref()
            .filter(|r| r.client)
            .map(|r| r.traceparent.encode())
    }

    /// The trace id in 32 hex digits, when the request is recorded (sampled):
    /// the exemplar its metrics keep.
    pub fn trace_hex(&self) -> Option<[u8; 32]> {
        let recording = self.0.as_ref()?;
        let encoded = recording.traceparent.encode();
        // `00-<trace id>-<span id>-<flags>`
        crate::metrics::trace_hex(encoded.get(3..35)?)
    }

    /// Name the span (once the route is known): `{method} {route}`, as the
    /// HTTP conventions name a span by its method and route template.
    pub fn name(&self, name: impl FnOnce() -> String) {
        if let Some(r) = &self.0 {
            lock(&r.inner).name = name();
        }
    }

    /// Add attributes to the hop's span.
    pub fn attributes(&self, add: impl FnOnce(&mut Attrs<'_>)) {
        if let Some(r) = &self.0 {
            add(&mut Attrs(&mut lock(&r.inner).hop));
        }
    }

    /// A policy decision: an event on the hop's span at `now`.
    pub fn event<'a>(
        &self,
        now: f64,
        name: &'static str,
        attributes: impl FnOnce() -> Vec<Attr<'a>>,
    ) {
        if let Some(r) = &self.0 {
            let attrs = attributes();
            let at = r.tracer.unix_nanos(now);
            lock(&r.inner)
                .hop
                .event(at, name, |e| event_attributes(&attrs, e));
        }
    }

    /// Begin the child CLIENT span of one attempt, named like the hop; its
    /// `traceparent` is what that attempt sends. `None` inbound.
    pub fn attempt<'a>(
        &self,
        now: f64,
        attributes: impl FnOnce() -> Vec<Attr<'a>>,
    ) -> Option<AttemptSpan> {
        let r = self.0.as_ref().filter(|r| r.client)?;
        let attrs = attributes();
        let start = r.tracer.unix_nanos(now);
        let tp = r.traceparent;
        let hop_id = tp.parent_id();
        let mut spans = lock(&r.inner);
        let id = SpanId::random_other_than(&mut spans.ids, Some(hop_id));
        let mut w = SpanWriter::new(
            &tp.trace_id().to_bytes(),
            &id.to_bytes(),
            Some(&hop_id.to_bytes()),
            u32::from(tp.flags()),
            SpanKind::Client,
            start,
        );
        w.trace_state(&spans.trace_state);
        for a in &attrs {
            w.attribute(a.key, a.value());
        }
        spans.attempts.push(Attempt::Open(w));
        Some(AttemptSpan {
            index: spans.attempts.len() - 1,
            traceparent: tp.with_parent_id(id).encode(),
        })
    }

    /// End an attempt's span: its status code when it got an answer, or why not.
    pub fn attempt_ended(
        &self,
        attempt: Option<AttemptSpan>,
        now: f64,
        status: Option<u16>,
        error: Option<&str>,
    ) {
        let (Some(r), Some(a)) = (&self.0, attempt) else {
            return;
        };
        let end = r.tracer.unix_nanos(now);
        let mut spans = lock(&r.inner);
        let spans = &mut *spans;
        let Some(slot) = spans.attempts.get_mut(a.index) else {
            return;
        };
        let Attempt::Open(w) = std::mem::replace(slot, Attempt::Done(EncodedSpan::default()))
        else {
            return; // ended already
        };
        *slot = Attempt::Done(close(w, &spans.name, end, status, error, true));
    }

    /// End the hop's span with the status answered (`error`: why the mesh
    /// answered itself, if it did) and hand every span to the exporter.
    /// Attempts still open (hedged copies that lost) end now, cancelled.
    pub fn finish(self, now: f64, status: u16, error: Option<&str>) {
        let Some(r) = self.0 else {
            return;
        };
        let end = r.tracer.unix_nanos(now);
        let client = r.client;
        let Spans {
            hop,
            name,
            attempts,
            ..
        } = r.inner.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(attempts.len() + 1);
        for a in attempts {
            out.push(match a {
                Attempt::Done(span) => span,
                Attempt::Open(w) => close(w, &name, end, None, Some("cancelled"), true),
            });
        }
        out.push(close(hop, &name, end, Some(status), error, client));
        r.tracer.queue.push(out);
    }
}

/// End a span: its name, status code attribute and status: an error for a
/// 5xx (and, on a client span, a 4xx), as the HTTP conventions say, or for
/// a failure with no answer; `error.type` says which (the status code, or
/// the mesh's reason).
fn close(
    mut w: SpanWriter,
    name: &str,
    end: u64,
    status: Option<u16>,
    error: Option<&str>,
    client: bool,
) -> EncodedSpan {
    w.name(name);
    if let Some(code) = status {
        w.attribute("http.response.status_code", Value::Int(i64::from(code)));
    }
    let failed_status = status.filter(|s| *s >= 500 || (client && *s >= 400));
    match (failed_status, error) {
        (_, Some(why)) => {
            w.attribute("error.type", Value::Str(why));
            w.finish(end, StatusCode::Error, why)
        }
        (Some(code), None) => {
            let mut digits = [0u8; 20];
            let text = seawall_h1::decimal(u64::from(code), &mut digits);
            let text = std::str::from_utf8(text).unwrap_or("error");
            w.attribute("error.type", Value::Str(text));
            w.finish(end, StatusCode::Error, "")
        }
        (None, None) => w.finish(end, StatusCode::Unset, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::Queue;
    use http::HeaderMap;
    use seawall_otlp::decode::Row;
    use std::sync::Arc;

    /// What a collector reads of these spans.
    fn rows(spans: Vec<EncodedSpan>) -> Vec<Row> {
        let mut body = Vec::new();
        let scope = seawall_otlp::Scope::new("seawall-sidecar", "0");
        seawall_otlp::stream::export_request(&[], &scope, &spans, &mut body);
        let decoded = seawall_otlp::decode::protobuf(&body).expect("the spans decode");
        assert_eq!(decoded.rejected, 0);
        decoded.rows
    }

    fn tracer(capacity: usize) -> (Arc<Tracer>, crate::export::Receiver) {
        let (queue, rx) = Queue::new(capacity, Arc::new(crate::metrics::Metrics::new()));
        (Arc::new(Tracer::new(queue, 1_700_000_000.0, 10.0)), rx)
    }

    fn continued(header: Option<&str>) -> Continued {
        let mut headers = HeaderMap::new();
        if let Some(v) = header {
            headers.insert("traceparent", v.parse().expect("value"));
        }
        seawall_trace::continue_trace(&headers, &mut SplitMix64::new(1))
    }

    #[test]
    fn an_unsampled_request_records_nothing() {
        let (t, mut rx) = tracer(8);
        let trace = continued(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",
        ));
        let span = RequestSpan::start(Some(&t), &trace, false, 10.0, "GET");
        assert!(!span.is_recording());
        let mut ran = false;
        span.event(10.1, "seawall.retry", || {
            ran = true;
            Vec::new()
        });
        assert!(!ran, "no attribute is built for a span not recorded");
        span.finish(10.2, 200, None);
        assert!(rx.try_recv().is_none());
        // no tracer: nothing either
        let sampled = continued(None);
        assert!(!RequestSpan::start(None, &sampled, true, 1.0, "GET").is_recording());
    }

    #[test]
    fn a_hop_with_two_attempts_gives_three_spans_in_one_trace() {
        let (t, mut rx) = tracer(8);
        let trace = continued(Some(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ));
        let span = RequestSpan::start(Some(&t), &trace, false, 10.0, "GET");
        span.name(|| "GET checkout".into());
        span.attributes(|a| a.push(s("seawall.destination", "orders")));
        let first = span.attempt(10.001, || vec![i("seawall.attempt", 1)]);
        span.attempt_ended(first, 10.010, Some(503), None);
        span.event(10.010, "seawall.retry", || vec![i("seawall.attempt", 2)]);
        let second = span.attempt(10.020, || vec![i("seawall.attempt", 2)]);
        let tp = second.expect("recorded").traceparent;
        let tp = TraceParent::parse(&tp[..]).expect("a valid traceparent");
        assert_eq!(tp.trace_id(), trace.traceparent.trace_id());
        assert!(tp.sampled());
        span.attempt_ended(second, 10.030, Some(200), None);
        span.finish(10.031, 200, None);
        let spans = rows(rx.try_recv().expect("one request's spans"));
        assert_eq!(spans.len(), 3);
        let hop = &spans[2];
        assert_eq!(hop.kind, SpanKind::Client as i32);
        assert_eq!(hop.name, "GET checkout");
        assert_eq!(
            hop.parent_span_id,
            Some(
                SpanId::from_hex(b"b7ad6b7169203331")
                    .expect("id")
                    .to_bytes()
            )
        );
        assert_eq!(hop.span_id, trace.traceparent.parent_id().to_bytes());
        assert_eq!(hop.status_code, StatusCode::Unset as i32);
        assert!(hop.events.contains("\"seawall.retry\""), "{}", hop.events);
        assert!(
            hop.attributes.contains("\"seawall.destination\""),
            "{}",
            hop.attributes
        );
        assert_eq!(hop.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(hop.end_ns, 1_700_000_000_031_000_000);
        for a in &spans[..2] {
            assert_eq!(a.parent_span_id, Some(hop.span_id));
            assert_eq!(a.name, "GET checkout");
        }
        assert_eq!(spans[0].status_code, StatusCode::Error as i32);
        assert!(
            spans[0].attributes.contains("503"),
            "{}",
            spans[0].attributes
        );
        assert_eq!(spans[1].span_id, tp.parent_id().to_bytes());
        assert_eq!(spans[1].status_code, StatusCode::Unset as i32);
    }

    #[test]
    fn a_server_span_is_an_error_only_for_a_5xx_and_an_open_attempt_ends_cancelled() {
        let (t, mut rx) = tracer(8);
        let trace = continued(None);
        let span = RequestSpan::start(Some(&t), &trace, true, 1.0, "POST");
        assert!(span.is_recording());
        span.finish(1.5, 404, None);
        let spans = rows(rx.try_recv().expect("spans"));
        assert_eq!(spans[0].kind, SpanKind::Server as i32);
        assert_eq!(spans[0].parent_span_id, None);
        assert_eq!(spans[0].status_code, StatusCode::Unset as i32);

        let span = RequestSpan::start(Some(&t), &trace, false, 1.0, "GET");
        let _lost = span.attempt(1.1, Vec::new);
        span.finish(1.5, 504, Some("request timeout"));
        let spans = rows(rx.try_recv().expect("spans"));
        assert_eq!(spans[0].status_message, "cancelled");
        assert_eq!(spans[1].status_code, StatusCode::Error as i32);
        assert_eq!(spans[1].status_message, "request timeout");
    }

    #[test]
    fn a_full_queue_drops_spans_and_counts_them() {
        let (t, mut rx) = tracer(1);
        let trace = continued(None);
        for _ in 0..3 {
            RequestSpan::start(Some(&t), &trace, true, 1.0, "GET").finish(1.1, 200, None);
        }
        assert!(rx.try_recv().is_some());
        assert!(rx.try_recv().is_none());
        assert_eq!(t.queue().dropped(), 2);
    }
}
