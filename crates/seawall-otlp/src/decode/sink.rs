//! What a parser tells its consumer: the [`Sink`] between the two parsers
//! (protobuf, JSON) and the two outputs (rows, the model).
//!
//! A parser walks its body once and reports what it finds in document order:
//! the nested lists (attributes, events, links) as they come, the scalar
//! fields of a span, event, link or scope all at once when its message ends
//! (a message's fields may come in any order). A span OTLP calls invalid is
//! ended with [`Sink::discard_span`]. Between `begin_kv` and `end_kv` comes
//! exactly one value: a scalar, or an array or list with its own values.
use crate::model::{SpanKind, StatusCode};

/// The list a key-value belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    Resource,
    Span,
    Event,
    Link,
    /// An element of a `kvlistValue`.
    List,
}

/// A value that holds no other value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(&'a [u8]),
    Empty,
}

/// A span's own fields, valid ids included.
#[derive(Clone, Debug)]
pub(crate) struct SpanHead<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub trace_state: &'a str,
    pub flags: u32,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start: u64,
    pub end: u64,
    pub status_code: StatusCode,
    pub status_message: &'a str,
}

/// An event's own fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventHead<'a> {
    pub time: u64,
    pub name: &'a str,
}

/// A link's own fields (ids all zero when they were not valid: the span is
/// then discarded).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkHead<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: &'a str,
    pub flags: u32,
}

/// An instrumentation scope's name and version.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ScopeHead<'a> {
    pub name: &'a str,
    pub version: &'a str,
}

/// The consumer of a parse.
pub(crate) trait Sink {
    fn begin_resource_spans(&mut self);
    fn end_resource_spans(&mut self);
    fn begin_scope_spans(&mut self);
    fn end_scope_spans(&mut self, scope: &ScopeHead<'_>);
    fn begin_span(&mut self);
    fn end_span(&mut self, span: &SpanHead<'_>);
    /// The span begun last is not valid OTLP: drop what was reported of it.
    fn discard_span(&mut self);
    fn begin_event(&mut self);
    fn end_event(&mut self, event: &EventHead<'_>);
    fn begin_link(&mut self);
    fn end_link(&mut self, link: &LinkHead<'_>);
    fn begin_kv(&mut self, owner: Owner, key: &str);
    fn end_kv(&mut self);
    fn scalar(&mut self, value: Scalar<'_>);
    fn begin_array(&mut self);
    fn end_array(&mut self);
    fn begin_kvlist(&mut self);
    fn end_kvlist(&mut self);
}

/// A sink that keeps nothing: for what is checked but not kept (a scope's attributes).
pub(crate) struct Discard;

impl Sink for Discard {
    fn begin_resource_spans(&mut self) {}
    fn end_resource_spans(&mut self) {}
    fn begin_scope_spans(&mut self) {}
    fn end_scope_spans(&mut self, _: &ScopeHead<'_>) {}
    fn begin_span(&mut self) {}
    fn end_span(&mut self, _: &SpanHead<'_>) {}
    fn discard_span(&mut self) {}
    fn begin_event(&mut self) {}
    fn end_event(&mut self, _: &EventHead<'_>) {}
    fn begin_link(&mut self) {}
    fn end_link(&mut self, _: &LinkHead<'_>) {}
    fn begin_kv(&mut self, _: Owner, _: &str) {}
    fn end_kv(&mut self) {}
    fn scalar(&mut self, _: Scalar<'_>) {}
    fn begin_array(&mut self) {}
    fn end_array(&mut self) {}
    fn begin_kvlist(&mut self) {}
    fn end_kvlist(&mut self) {}
}
