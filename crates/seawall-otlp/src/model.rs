//! The spans the encoder writes: OTLP's trace messages, as the sidecar builds
//! them (and as `decode::protobuf_model` / `decode::json_model` give them back).
//!
//! Simpler than OTLP where the sidecar does not need more: one scope per
//! [`ResourceSpans`], no dropped counts, no schema URLs. Ids are fixed-size
//! arrays, so a model span always has ids of the right length.
use std::borrow::Cow;

/// The spans of one resource, all from one instrumentation scope.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceSpans {
    /// The resource's attributes (`service.name` among them).
    pub resource: Vec<KeyValue>,
    pub scope: Scope,
    pub spans: Vec<Span>,
}

/// OTLP's `InstrumentationScope` (without attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub name: Cow<'static, str>,
    pub version: Cow<'static, str>,
}

impl Scope {
    pub fn new(name: impl Into<Cow<'static, str>>, version: impl Into<Cow<'static, str>>) -> Self {
        Scope {
            name: name.into(),
            version: version.into(),
        }
    }
}

/// One span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// Never all zero, for a valid span.
    pub trace_id: [u8; 16],
    /// Never all zero, for a valid span.
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// The W3C `tracestate`, as text.
    pub trace_state: String,
    /// OTLP's `Span.flags`: the W3C trace flags in the low byte, then the
    /// `SPAN_FLAGS_CONTEXT_*` bits.
    pub flags: u32,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<Event>,
    pub links: Vec<Link>,
    pub status: Status,
}

impl Span {
    /// A span with these ids and name, and every other field at its default
    /// (an unset status, no attributes, events or links, times 0).
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], name: impl Into<String>) -> Self {
        Span {
            trace_id,
            span_id,
            parent_span_id: None,
            trace_state: String::new(),
            flags: 0,
            name: name.into(),
            kind: SpanKind::Unspecified,
            start_unix_nano: 0,
            end_unix_nano: 0,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
        }
    }
}

/// An attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: Cow<'static, str>,
    pub value: AnyValue,
}

impl KeyValue {
    pub fn new(key: impl Into<Cow<'static, str>>, value: AnyValue) -> Self {
        KeyValue {
            key: key.into(),
            value,
        }
    }

    /// A string attribute.
    pub fn str(key: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        KeyValue::new(key, AnyValue::String(value.into()))
    }

    /// An integer attribute.
    pub fn int(key: impl Into<Cow<'static, str>>, value: i64) -> Self {
        KeyValue::new(key, AnyValue::Int(value))
    }

    /// A boolean attribute.
    pub fn bool(key: impl Into<Cow<'static, str>>, value: bool) -> Self {
        KeyValue::new(key, AnyValue::Bool(value))
    }

    /// A floating-point attribute.
    pub fn double(key: impl Into<Cow<'static, str>>, value: f64) -> Self {
        KeyValue::new(key, AnyValue::Double(value))
    }
}

/// OTLP's `AnyValue`: one of these, or none ([`AnyValue::Empty`]).
#[derive(Clone, Debug, PartialEq)]
pub enum AnyValue {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Array(Vec<AnyValue>),
    KvList(Vec<KeyValue>),
    Empty,
}

/// A time-stamped annotation of a span.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub time_unix_nano: u64,
    pub name: Cow<'static, str>,
    pub attributes: Vec<KeyValue>,
}

/// A pointer to another span, in this trace or another.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub trace_state: String,
    pub flags: u32,
    pub attributes: Vec<KeyValue>,
}

/// A span's outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub code: StatusCode,
    pub message: String,
}

/// OTLP's `Span.SpanKind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum SpanKind {
    #[default]
    Unspecified = 0,
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

impl SpanKind {
    /// The kind with this number; a number OTLP does not define (proto3 enums
    /// are open) is `Unspecified`, which receivers may read as `Internal`.
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The kind named as the proto3 JSON mapping names it (`SPAN_KIND_SERVER`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "SPAN_KIND_UNSPECIFIED" => SpanKind::Unspecified,
            "SPAN_KIND_INTERNAL" => SpanKind::Internal,
            "SPAN_KIND_SERVER" => SpanKind::Server,
            "SPAN_KIND_CLIENT" => SpanKind::Client,
            "SPAN_KIND_PRODUCER" => SpanKind::Producer,
            "SPAN_KIND_CONSUMER" => SpanKind::Consumer,
            _ => return None,
        })
    }
}

/// OTLP's `Status.StatusCode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum StatusCode {
    #[default]
    Unset = 0,
    Ok = 1,
    Error = 2,
}

impl StatusCode {
    /// The code with this number; one OTLP does not define is `Unset`.
    pub fn from_i32(n: i32) -> Self {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The code named as the proto3 JSON mapping names it (`STATUS_CODE_ERROR`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "STATUS_CODE_UNSET" => StatusCode::Unset,
            "STATUS_CODE_OK" => StatusCode::Ok,
            "STATUS_CODE_ERROR" => StatusCode::Error,
            _ => return None,
        })
    }
}
