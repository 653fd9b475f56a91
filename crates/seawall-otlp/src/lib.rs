//! seawall-otlp: OTLP traces, written by the sidecar's exporter and read by
//! the collector's receiver (see the workspace Cargo.toml for what each crate
//! is for).
//!
//! - [`model`]: the spans the encoder writes ([`ResourceSpans`], [`Span`],
//!   [`KeyValue`], [`AnyValue`], …).
//! - [`encode`]: [`encode::export_request`] (an `ExportTraceServiceRequest`
//!   in protobuf) and [`encode::export_response`] (the partial success).
//! - [`stream`]: a span written to protobuf field by field as it is
//!   recorded ([`stream::SpanWriter`]), and a batch of them
//!   ([`stream::export_request`]): the sidecar's request path, no allocation
//!   per attribute.
//! - [`decode`]: an `ExportTraceServiceRequest`, protobuf or JSON, into the
//!   trace store's rows ([`decode::protobuf`], [`decode::json`]: one
//!   [`decode::Row`] per span, `seawall.telemetry.spans.SpanRow` field for
//!   field) or into the model ([`decode::protobuf_model`],
//!   [`decode::json_model`]).
//!
//! The wire formats are written by hand, each in its module: protobuf's
//! (`wire`), base64 (`base64`), hex (`hex`) and the JSON text of the store's
//! columns (`json_text`); JSON bodies are read with serde_json's tokenizer.
//! Sans-I/O: bytes in, rows or bytes out.
#![forbid(unsafe_code)]

pub mod base64;
pub mod decode;
pub mod encode;
pub mod hex;
pub mod json_text;
pub mod model;
pub mod stream;
pub mod wire;

pub use decode::{DecodeError, Decoded, DecodedModel, Row};
pub use model::{
    AnyValue, Event, KeyValue, Link, ResourceSpans, Scope, Span, SpanKind, Status, StatusCode,
};
