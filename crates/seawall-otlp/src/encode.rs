//! Writing OTLP/protobuf: the sidecar's `ExportTraceServiceRequest`, and the
//! collector's `ExportTraceServiceResponse`.
//!
//! Every nested message is preceded by its length, so the lengths must be
//! known before the bytes. One walk of the model ([`walk_request`]) drives two
//! passes: the first ([`Measure`]) computes each nested message's length once,
//! innermost first, and keeps them in pre-order in one `Vec`; the second
//! ([`Write`]) writes the bytes into a buffer reserved to the exact size,
//! taking the lengths in the same order. Nothing is encoded twice, and the
//! two passes cannot disagree because they are the same code. The cost: one
//! `Vec<usize>` (one entry per nested message) and the reserved output.
//!
//! Fields are written in field-number order and proto3 defaults are left out,
//! as protobuf's own serializers do; `oneof` members of `AnyValue` are written
//! even when they hold a default (`intValue: 0`, `stringValue: ""`), since
//! being set is their value. An `AnyValue::Empty` is an empty message.
use crate::model::{AnyValue, Event, KeyValue, Link, ResourceSpans, Scope, Span, Status};
use crate::wire::{self, I32, I64, LEN, VARINT};

/// Append the `ExportTraceServiceRequest` that carries `resource_spans` to `out`.
pub fn export_request(resource_spans: &[ResourceSpans], out: &mut Vec<u8>) {
    let mut measure = Measure::default();
    walk_request(&mut measure, resource_spans);
    out.reserve(measure.len);
    let mut write = Write {
        out,
        lengths: &measure.lengths,
        next: 0,
    };
    walk_request(&mut write, resource_spans);
}

/// The `ExportTraceServiceResponse` for a request of which `rejected` spans
/// were refused (`message` says why): empty when all were accepted.
pub fn export_response(rejected: i64, message: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if rejected == 0 && message.is_empty() {
        return out;
    }
    let mut measure = Measure::default();
    walk_response(&mut measure, rejected, message);
    out.reserve(measure.len);
    let mut write = Write {
        out: &mut out,
        lengths: &measure.lengths,
        next: 0,
    };
    walk_response(&mut write, rejected, message);
    out
}

/// Where the walk's fields go: measured, or written.
trait Pass {
    fn varint(&mut self, field: u32, value: u64);
    fn fixed64(&mut self, field: u32, value: u64);
    fn fixed32(&mut self, field: u32, value: u32);
    fn bytes(&mut self, field: u32, value: &[u8]);
    fn message(&mut self, field: u32, body: impl FnOnce(&mut Self));
}

/// The first pass: every nested message's length, in pre-order.
#[derive(Default)]
struct Measure {
    lengths: Vec<usize>,
    /// The length of the message being measured, so far.
    len: usize,
}

fn key_len(field: u32, wire_type: u8) -> usize {
    wire::varint_len(wire::key(field, wire_type))
}

impl Pass for Measure {
    fn varint(&mut self, field: u32, value: u64) {
        self.len += key_len(field, VARINT) + wire::varint_len(value);
    }

    fn fixed64(&mut self, field: u32, _: u64) {
        self.len += key_len(field, I64) + 8;
    }

    fn fixed32(&mut self, field: u32, _: u32) {
        self.len += key_len(field, I32) + 4;
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        self.len += key_len(field, LEN) + wire::varint_len(value.len() as u64) + value.len();
    }

    fn message(&mut self, field: u32, body: impl FnOnce(&mut Self)) {
        let slot = self.lengths.len();
        self.lengths.push(0);
        let outer = std::mem::replace(&mut self.len, 0);
        body(self);
        let inner = self.len;
        self.lengths[slot] = inner;
        self.len = outer + key_len(field, LEN) + wire::varint_len(inner as u64) + inner;
    }
}

/// The second pass: the bytes, with the lengths the first pass found.
struct Write<'a> {
    out: &'a mut Vec<u8>,
    lengths: &'a [usize],
    next: usize,
}

impl Pass for Write<'_> {
    fn varint(&mut self, field: u32, value: u64) {
        wire::put_varint(self.out, wire::key(field, VARINT));
        wire::put_varint(self.out, value);
    }

    fn fixed64(&mut self, field: u32, value: u64) {
        wire::put_varint(self.out, wire::key(field, I64));
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn fixed32(&mut self, field: u32, value: u32) {
        wire::put_varint(self.out, wire::key(field, I32));
        self.out.extend_from_slice(&value.to_le_bytes());
    }

    fn bytes(&mut self, field: u32, value: &[u8]) {
        wire::put_varint(self.out, wire::key(field, LEN));
        wire::put_varint(self.out, value.len() as u64);
        self.out.extend_from_slice(value);
    }

    fn message(&mut self, field: u32, body: impl FnOnce(&mut Self)) {
        // the same walk as the measure: the lengths come in the same order
        let len = self.lengths.get(self.next).copied().unwrap_or_default();
        self.next += 1;
        wire::put_varint(self.out, wire::key(field, LEN));
        wire::put_varint(self.out, len as u64);
        body(self);
    }
}

// ---------------------------------------------------------------- the walk
// Field numbers: opentelemetry-proto (collector/trace/v1/trace_service.proto,
// trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto).

fn walk_request<S: Pass>(s: &mut S, resource_spans: &[ResourceSpans]) {
    for rs in resource_spans {
        // ExportTraceServiceRequest.resource_spans = 1
        s.message(1, |s| walk_resource_spans(s, rs));
    }
}

fn walk_response<S: Pass>(s: &mut S, rejected: i64, message: &str) {
    // ExportTraceServiceResponse.partial_success = 1
    s.message(1, |s| {
        // ExportTracePartialSuccess.rejected_spans = 1 (int64), error_message = 2
        if rejected != 0 {
            s.varint(1, rejected as u64);
        }
        if !message.is_empty() {
            s.bytes(2, message.as_bytes());
        }
    });
}

fn walk_resource_spans<S: Pass>(s: &mut S, rs: &ResourceSpans) {
    // ResourceSpans.resource = 1, scope_spans = 2
    if !rs.resource.is_empty() {
        // Resource.attributes = 1
        s.message(1, |s| walk_attributes(s, 1, &rs.resource));
    }
    s.message(2, |s| {
        // ScopeSpans.scope = 1, spans = 2
        walk_scope(s, &rs.scope);
        for span in &rs.spans {
            s.message(2, |s| walk_span(s, span));
        }
    });
}

fn walk_scope<S: Pass>(s: &mut S, scope: &Scope) {
    if scope.name.is_empty() && scope.version.is_empty() {
        return;
    }
    // InstrumentationScope.name = 1, version = 2
    s.message(1, |s| {
        if !scope.name.is_empty() {
            s.bytes(1, scope.name.as_bytes());
        }
        if !scope.version.is_empty() {
            s.bytes(2, scope.version.as_bytes());
        }
    });
}

fn walk_span<S: Pass>(s: &mut S, span: &Span) {
    s.bytes(1, &span.trace_id);
    s.bytes(2, &span.span_id);
    if !span.trace_state.is_empty() {
        s.bytes(3, span.trace_state.as_bytes());
    }
    if let Some(parent) = &span.parent_span_id {
        s.bytes(4, parent);
    }
    if !span.name.is_empty() {
        s.bytes(5, span.name.as_bytes());
    }
    if span.kind as i32 != 0 {
        s.varint(6, span.kind as i32 as u64);
    }
    if span.start_unix_nano != 0 {
        s.fixed64(7, span.start_unix_nano);
    }
    if span.end_unix_nano != 0 {
        s.fixed64(8, span.end_unix_nano);
    }
    walk_attributes(s, 9, &span.attributes);
    for event in &span.events {
        s.message(11, |s| walk_event(s, event));
    }
    for link in &span.links {
        s.message(13, |s| walk_link(s, link));
    }
    if span.status != Status::default() {
        s.message(15, |s| walk_status(s, &span.status));
    }
    if span.flags != 0 {
        s.fixed32(16, span.flags);
    }
}

fn walk_event<S: Pass>(s: &mut S, event: &Event) {
    // Span.Event.time_unix_nano = 1 (fixed64), name = 2, attributes = 3
    if event.time_unix_nano != 0 {
        s.fixed64(1, event.time_unix_nano);
    }
    if !event.name.is_empty() {
        s.bytes(2, event.name.as_bytes());
    }
    walk_attributes(s, 3, &event.attributes);
}

fn walk_link<S: Pass>(s: &mut S, link: &Link) {
    // Span.Link.trace_id = 1, span_id = 2, trace_state = 3, attributes = 4, flags = 6 (fixed32)
    s.bytes(1, &link.trace_id);
    s.bytes(2, &link.span_id);
    if !link.trace_state.is_empty() {
        s.bytes(3, link.trace_state.as_bytes());
    }
    walk_attributes(s, 4, &link.attributes);
    if link.flags != 0 {
        s.fixed32(6, link.flags);
    }
}

fn walk_status<S: Pass>(s: &mut S, status: &Status) {
    // Status.message = 2, code = 3 (1 is reserved)
    if !status.message.is_empty() {
        s.bytes(2, status.message.as_bytes());
    }
    if status.code as i32 != 0 {
        s.varint(3, status.code as i32 as u64);
    }
}

fn walk_attributes<S: Pass>(s: &mut S, field: u32, attributes: &[KeyValue]) {
    for kv in attributes {
        s.message(field, |s| walk_key_value(s, kv));
    }
}

fn walk_key_value<S: Pass>(s: &mut S, kv: &KeyValue) {
    // KeyValue.key = 1, value = 2 (always written: an empty value is `{}`)
    if !kv.key.is_empty() {
        s.bytes(1, kv.key.as_bytes());
    }
    s.message(2, |s| walk_any_value(s, &kv.value));
}

fn walk_any_value<S: Pass>(s: &mut S, value: &AnyValue) {
    // AnyValue oneof: string_value = 1, bool_value = 2, int_value = 3,
    // double_value = 4 (fixed64), array_value = 5, kvlist_value = 6, bytes_value = 7
    match value {
        AnyValue::String(v) => s.bytes(1, v.as_bytes()),
        AnyValue::Bool(v) => s.varint(2, u64::from(*v)),
        AnyValue::Int(v) => s.varint(3, *v as u64),
        AnyValue::Double(v) => s.fixed64(4, v.to_bits()),
        AnyValue::Array(values) => s.message(5, |s| {
            // ArrayValue.values = 1
            for v in values {
                s.message(1, |s| walk_any_value(s, v));
            }
        }),
        AnyValue::KvList(values) => s.message(6, |s| {
            // KeyValueList.values = 1
            walk_attributes(s, 1, values);
        }),
        AnyValue::Bytes(v) => s.bytes(7, v),
        AnyValue::Empty => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SpanKind, StatusCode};

    #[test]
    fn an_empty_request_is_empty() {
        let mut out = Vec::new();
        export_request(&[], &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_span_by_hand() {
        let mut span = Span::new([1; 16], [2; 8], "GET");
        span.kind = SpanKind::Server;
        span.flags = 1;
        span.start_unix_nano = 5;
        span.status.code = StatusCode::Error;
        span.attributes.push(KeyValue::int("n", 0));
        let rs = ResourceSpans {
            resource: vec![],
            scope: Scope::default(),
            spans: vec![span],
        };
        let mut out = Vec::new();
        export_request(&[rs], &mut out);
        let mut span_bytes = vec![0x0a, 16];
        span_bytes.extend([1; 16]);
        span_bytes.extend([0x12, 8]);
        span_bytes.extend([2; 8]);
        span_bytes.extend([0x2a, 3, b'G', b'E', b'T']); // name = 5
        span_bytes.extend([0x30, 2]); // kind = 6
        span_bytes.extend([0x39, 5, 0, 0, 0, 0, 0, 0, 0]); // start = 7, fixed64
                                                           // attributes = 9: KeyValue{key "n", value {int_value 0}}
        span_bytes.extend([0x4a, 7, 0x0a, 1, b'n', 0x12, 2, 0x18, 0]);
        span_bytes.extend([0x7a, 2, 0x18, 2]); // status = 15 {code = 3}
        span_bytes.extend([0x85, 0x01, 1, 0, 0, 0]); // flags = 16, fixed32
        let mut expected = vec![0x0a];
        let scope_spans_len = 2 + span_bytes.len();
        wire::put_varint(&mut expected, (2 + scope_spans_len) as u64);
        expected.extend([0x12, scope_spans_len as u8, 0x12, span_bytes.len() as u8]);
        expected.extend(span_bytes);
        assert_eq!(out, expected);
    }

    #[test]
    fn long_messages_get_multi_byte_lengths() {
        let mut span = Span::new([1; 16], [2; 8], "x".repeat(300));
        span.attributes.push(KeyValue::str("k", "v".repeat(20_000)));
        let rs = ResourceSpans {
            resource: vec![KeyValue::str("service.name", "a")],
            scope: Scope::new("s", "1"),
            spans: vec![span.clone(), span],
        };
        let mut out = Vec::new();
        export_request(std::slice::from_ref(&rs), &mut out);
        assert!(out.len() > 40_000);
        let mut measure = Measure::default();
        walk_request(&mut measure, std::slice::from_ref(&rs));
        assert_eq!(measure.len, out.len(), "the measure is what is written");
        // request: resource spans, resource, its attribute and value, scope spans,
        // scope; then per span: the span, its attribute and value
        assert_eq!(measure.lengths.len(), 6 + 2 * 3);
        let decoded = crate::decode::protobuf_model(&out).expect("decodes");
        assert_eq!(decoded.resource_spans, vec![rs]);
    }

    #[test]
    fn responses() {
        assert!(export_response(0, "").is_empty());
        assert_eq!(export_response(2, ""), [0x0a, 2, 0x08, 2]);
        assert_eq!(export_response(0, "x"), [0x0a, 3, 0x12, 1, b'x']);
        let negative = export_response(-1, "");
        assert_eq!(negative.len(), 2 + 1 + 10);
    }
}
