//! Spans written straight to protobuf as they are recorded: the sidecar's
//! request path.
//!
//! [`crate::encode::export_request`] writes a batch from the [`crate::model`]
//! types, which own their strings: a span of a dozen attributes is a dozen
//! allocations before a byte is written. The sidecar records a span per
//! request, so it writes each span's fields into one buffer as they become
//! known instead ([`SpanWriter`]): protobuf lets a message's fields come in
//! any order, and a repeated field's entries be spread out, so an attribute
//! learnt late in the request is appended like one learnt early. A finished
//! span is an [`EncodedSpan`]: the `spans` entry of a `ScopeSpans`, tag and
//! length included. A batch of them becomes an `ExportTraceServiceRequest`
//! with [`export_request`], which only adds the envelope around them.
use crate::model::{AnyValue, KeyValue, Scope, SpanKind, StatusCode};
use crate::wire::{self, I64, LEN, VARINT};

// field numbers (opentelemetry/proto/trace/v1/trace.proto)
const SPAN_TRACE_ID: u32 = 1;
const SPAN_SPAN_ID: u32 = 2;
const SPAN_TRACE_STATE: u32 = 3;
const SPAN_PARENT_SPAN_ID: u32 = 4;
const SPAN_NAME: u32 = 5;
const SPAN_KIND: u32 = 6;
const SPAN_START: u32 = 7;
const SPAN_END: u32 = 8;
const SPAN_ATTRIBUTES: u32 = 9;
const SPAN_EVENTS: u32 = 11;
const SPAN_STATUS: u32 = 15;
const SPAN_FLAGS: u32 = 16;
const EVENT_TIME: u32 = 1;
const EVENT_NAME: u32 = 2;
const EVENT_ATTRIBUTES: u32 = 3;
const STATUS_MESSAGE: u32 = 2;
const STATUS_CODE: u32 = 3;
const KV_KEY: u32 = 1;
const KV_VALUE: u32 = 2;
const ANY_STRING: u32 = 1;
const ANY_BOOL: u32 = 2;
const ANY_INT: u32 = 3;
const ANY_DOUBLE: u32 = 4;
// collector/trace/v1/trace_service.proto, resource/v1, common/v1
const REQUEST_RESOURCE_SPANS: u32 = 1;
const RESOURCE_SPANS_RESOURCE: u32 = 1;
const RESOURCE_SPANS_SCOPE_SPANS: u32 = 2;
const RESOURCE_ATTRIBUTES: u32 = 1;
const SCOPE_SPANS_SCOPE: u32 = 1;
const SCOPE_SPANS_SPANS: u32 = 2;
const SCOPE_NAME: u32 = 1;
const SCOPE_VERSION: u32 = 2;

/// A scalar attribute value, borrowed: written without an allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

fn put_key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    wire::put_varint(out, wire::key(field, wire_type));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, value: &[u8]) {
    put_key(out, field, LEN);
    wire::put_varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn put_fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, I64);
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    put_key(out, field, VARINT);
    wire::put_varint(out, value);
}

/// The length of an `AnyValue` holding `value`.
fn any_len(value: Value<'_>) -> usize {
    match value {
        Value::Str(s) => 1 + wire::varint_len(s.len() as u64) + s.len(),
        Value::Int(i) => 1 + wire::varint_len(i as u64),
        Value::Double(_) => 1 + 8,
        Value::Bool(_) => 2,
    }
}

fn put_any(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Str(s) => put_bytes(out, ANY_STRING, s.as_bytes()),
        Value::Int(i) => put_varint_field(out, ANY_INT, i as u64),
        Value::Double(d) => put_fixed64(out, ANY_DOUBLE, d.to_bits()),
        Value::Bool(b) => put_varint_field(out, ANY_BOOL, u64::from(b)),
    }
}

/// Append a `KeyValue` as repeated field `field` of the message being written.
fn put_key_value(out: &mut Vec<u8>, field: u32, key: &str, value: Value<'_>) {
    let any = any_len(value);
    let kv =
        1 + wire::varint_len(key.len() as u64) + key.len() + 1 + wire::varint_len(any as u64) + any;
    put_key(out, field, LEN);
    wire::put_varint(out, kv as u64);
    put_bytes(out, KV_KEY, key.as_bytes());
    put_key(out, KV_VALUE, LEN);
    wire::put_varint(out, any as u64);
    put_any(out, value);
}

/// The attributes of an event being written ([`SpanWriter::event`]).
#[derive(Debug, Default)]
pub struct EventAttributes {
    buf: Vec<u8>,
}

impl EventAttributes {
    pub fn add(&mut self, key: &str, value: Value<'_>) -> &mut Self {
        put_key_value(&mut self.buf, EVENT_ATTRIBUTES, key, value);
        self
    }
}

/// One span's fields, written as they become known.
#[derive(Debug, Clone)]
pub struct SpanWriter {
    buf: Vec<u8>,
}

/// A finished span: a `ScopeSpans.spans` entry, tag and length included.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedSpan(Vec<u8>);

impl EncodedSpan {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl SpanWriter {
    /// A span with its identity, kind and start (Unix nanoseconds).
    pub fn new(
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
        parent_span_id: Option<&[u8; 8]>,
        flags: u32,
        kind: SpanKind,
        start_unix_nano: u64,
    ) -> Self {
        let mut buf = Vec::with_capacity(512);
        put_bytes(&mut buf, SPAN_TRACE_ID, trace_id);
        put_bytes(&mut buf, SPAN_SPAN_ID, span_id);
        if let Some(parent) = parent_span_id {
            put_bytes(&mut buf, SPAN_PARENT_SPAN_ID, parent);
        }
        if kind as u64 != 0 {
            put_varint_field(&mut buf, SPAN_KIND, kind as u64);
        }
        put_fixed64(&mut buf, SPAN_START, start_unix_nano);
        if flags != 0 {
            put_key(&mut buf, SPAN_FLAGS, crate::wire::I32);
            buf.extend_from_slice(&flags.to_le_bytes());
        }
        SpanWriter { buf }
    }

    /// The W3C tracestate (left out when empty).
    pub fn trace_state(&mut self, state: &str) -> &mut Self {
        if !state.is_empty() {
            put_bytes(&mut self.buf, SPAN_TRACE_STATE, state.as_bytes());
        }
        self
    }

    /// The span's name (write it once).
    pub fn name(&mut self, name: &str) -> &mut Self {
        put_bytes(&mut self.buf, SPAN_NAME, name.as_bytes());
        self
    }

    /// One attribute.
    pub fn attribute(&mut self, key: &str, value: Value<'_>) -> &mut Self {
        put_key_value(&mut self.buf, SPAN_ATTRIBUTES, key, value);
        self
    }

    /// One event at `time_unix_nano`, with its attributes.
    pub fn event(
        &mut self,
        time_unix_nano: u64,
        name: &str,
        attributes: impl FnOnce(&mut EventAttributes),
    ) -> &mut Self {
        let mut attrs = EventAttributes::default();
        attributes(&mut attrs);
        let len = 1 + 8 + 1 + wire::varint_len(name.len() as u64) + name.len() + attrs.buf.len();
        put_key(&mut self.buf, SPAN_EVENTS, LEN);
        wire::put_varint(&mut self.buf, len as u64);
        put_fixed64(&mut self.buf, EVENT_TIME, time_unix_nano);
        put_bytes(&mut self.buf, EVENT_NAME, name.as_bytes());
        self.buf.extend_from_slice(&attrs.buf);
        self
    }

    /// End the span: its end time and status.
    pub fn finish(mut self, end_unix_nano: u64, code: StatusCode, message: &str) -> EncodedSpan {
        put_fixed64(&mut self.buf, SPAN_END, end_unix_nano);
        let code = code as u64;
        if code != 0 || !message.is_empty() {
            let mut status = Vec::new();
            if !message.is_empty() {
                put_bytes(&mut status, STATUS_MESSAGE, message.as_bytes());
            }
            if code != 0 {
                put_varint_field(&mut status, STATUS_CODE, code);
            }
            put_bytes(&mut self.buf, SPAN_STATUS, &status);
        }
        let mut out = Vec::with_capacity(self.buf.len() + 4);
        put_bytes(&mut out, SCOPE_SPANS_SPANS, &self.buf);
        EncodedSpan(out)
    }
}

/// Append an `ExportTraceServiceRequest` of one resource and one scope around
/// `spans` to `out`.
pub fn export_request(
    resource: &[KeyValue],
    scope: &Scope,
    spans: &[EncodedSpan],
    out: &mut Vec<u8>,
) {
    let mut res = Vec::new();
    for kv in resource {
        let value = match &kv.value {
            AnyValue::String(s) => Value::Str(s),
            AnyValue::Int(i) => Value::Int(*i),
            AnyValue::Double(d) => Value::Double(*d),
            AnyValue::Bool(b) => Value::Bool(*b),
            // a resource of the sidecar's has scalar attributes only
            _ => continue,
        };
        put_key_value(&mut res, RESOURCE_ATTRIBUTES, kv.key.as_ref(), value);
    }
    let mut scope_msg = Vec::new();
    if !scope.name.is_empty() {
        put_bytes(&mut scope_msg, SCOPE_NAME, scope.name.as_bytes());
    }
    if !scope.version.is_empty() {
        put_bytes(&mut scope_msg, SCOPE_VERSION, scope.version.as_bytes());
    }
    let spans_len: usize = spans.iter().map(|s| s.0.len()).sum();
    let scope_spans_len =
        1 + wire::varint_len(scope_msg.len() as u64) + scope_msg.len() + spans_len;
    let resource_spans_len = 1
        + wire::varint_len(res.len() as u64)
        + res.len()
        + 1
        + wire::varint_len(scope_spans_len as u64)
        + scope_spans_len;
    out.reserve(resource_spans_len + 8);
    put_key(out, REQUEST_RESOURCE_SPANS, LEN);
    wire::put_varint(out, resource_spans_len as u64);
    put_bytes(out, RESOURCE_SPANS_RESOURCE, &res);
    put_key(out, RESOURCE_SPANS_SCOPE_SPANS, LEN);
    wire::put_varint(out, scope_spans_len as u64);
    put_bytes(out, SCOPE_SPANS_SCOPE, &scope_msg);
    for span in spans {
        out.extend_from_slice(&span.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, ResourceSpans, Span, Status};

    fn kv(key: &'static str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
        }
    }

    /// The same span through the model's encoder and through the writer
    /// decode to the same rows (the writer's field order differs).
    #[test]
    fn a_written_span_decodes_like_the_models() {
        let model = Span {
            trace_id: [7; 16],
            span_id: [3; 8],
            parent_span_id: Some([2; 8]),
            trace_state: "k=v".into(),
            flags: 0x301,
            name: "GET default".into(),
            kind: SpanKind::Client,
            start_unix_nano: 1_700_000_000_000_000_000,
            end_unix_nano: 1_700_000_000_500_000_000,
            attributes: vec![
                kv("http.request.method", AnyValue::String("GET".into())),
                kv("seawall.attempt", AnyValue::Int(-2)),
                kv("ratio", AnyValue::Double(0.25)),
                kv("seawall.mirror", AnyValue::Bool(true)),
            ],
            events: vec![Event {
                time_unix_nano: 1_700_000_000_100_000_000,
                name: "seawall.retry".into(),
                attributes: vec![kv(
                    "seawall.retry.reason",
                    AnyValue::String("status 503".into()),
                )],
            }],
            links: Vec::new(),
            status: Status {
                code: StatusCode::Error,
                message: "upstream timeout".into(),
            },
        };
        let resource = vec![kv("service.name", AnyValue::String("orders".into()))];
        let scope = Scope {
            name: "seawall-sidecar".into(),
            version: "0.1.0".into(),
        };
        let mut expected = Vec::new();
        crate::encode::export_request(
            &[ResourceSpans {
                resource: resource.clone(),
                scope: scope.clone(),
                spans: vec![model],
            }],
            &mut expected,
        );
        let mut w = SpanWriter::new(
            &[7; 16],
            &[3; 8],
            Some(&[2; 8]),
            0x301,
            SpanKind::Client,
            1_700_000_000_000_000_000,
        );
        w.trace_state("k=v")
            .attribute("http.request.method", Value::Str("GET"))
            .attribute("seawall.attempt", Value::Int(-2))
            .event(1_700_000_000_100_000_000, "seawall.retry", |e| {
                e.add("seawall.retry.reason", Value::Str("status 503"));
            })
            .attribute("ratio", Value::Double(0.25))
            .attribute("seawall.mirror", Value::Bool(true))
            .name("GET default");
        let span = w.finish(
            1_700_000_000_500_000_000,
            StatusCode::Error,
            "upstream timeout",
        );
        let mut written = Vec::new();
        export_request(&resource, &scope, &[span.clone(), span], &mut written);
        let want = crate::decode::protobuf(&expected).expect("the model's bytes");
        let got = crate::decode::protobuf(&written).expect("the writer's bytes");
        assert_eq!(got.rejected, 0);
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[0], want.rows[0]);
        assert_eq!(got.rows[1], want.rows[0]);
    }

    #[test]
    fn an_unset_status_and_no_parent_are_left_out() {
        let w = SpanWriter::new(&[1; 16], &[1; 8], None, 0, SpanKind::Server, 5);
        let span = w.finish(6, StatusCode::Unset, "");
        let mut out = Vec::new();
        export_request(
            &[],
            &Scope {
                name: "".into(),
                version: "".into(),
            },
            &[span],
            &mut out,
        );
        let got = crate::decode::protobuf(&out).expect("decodes");
        assert_eq!(got.rows.len(), 1);
        let row = &got.rows[0];
        assert!(row.parent_span_id.is_none());
        assert_eq!((row.start_ns, row.end_ns, row.status_code), (5, 6, 0));
    }
}
