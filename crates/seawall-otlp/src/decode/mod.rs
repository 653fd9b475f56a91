//! Reading an `ExportTraceServiceRequest`, as OTLP/protobuf or OTLP/JSON,
//! into the trace store's rows ([`protobuf`], [`json`]) or into the model
//! ([`protobuf_model`], [`json_model`]).
//!
//! Two parsers, two outputs, one walk each: a parser reports what it reads to
//! a sink (`sink.rs`), and the sink builds rows (`rows.rs`) or the model
//! (`to_model.rs`). The same span gives the same row from either encoding,
//! and the same model.
//!
//! A body that is not well-formed (bad protobuf, bad JSON, a field of the
//! wrong type, a string that is not UTF-8, ids that are not hex) is a
//! [`DecodeError`] that names the place. A well-formed span that OTLP calls
//! invalid (its ids, see `check.rs`) is skipped and counted: the partial
//! success of the answer ([`Decoded::rejected`], [`Decoded::message`]).
//!
//! Measured with `cargo run --release -p seawall-otlp --example bench_decode`
//! (10,000 spans of 12 attributes and 0 to 2 events, 100 per resource): about
//! 520,000 spans/s from protobuf and 215,000 from JSON on one core of the
//! build VM (the example's header has the details).
mod check;
mod error;
mod json;
mod protobuf;
mod rows;
mod sink;
mod to_model;

pub use error::{DecodeError, ErrorKind, Segment};
pub use rows::{Row, TagList, Tags};

use crate::model::ResourceSpans;
use check::Rejections;

/// Characters of an attribute's value kept in its tag (`seawall.telemetry.spans.MAX_TAG_VALUE`).
pub const MAX_TAG_VALUE: usize = 256;

/// Tags kept per span, its own first: a bound on what one span costs the
/// index (and on what a large resource costs each of its spans). The OTel
/// SDKs keep 128 attributes per span by default.
pub const MAX_TAGS: usize = 256;

/// The service of a span whose resource has no `service.name` (`seawall.telemetry.spans.UNKNOWN_SERVICE`).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// How deep arrays and lists may nest in an attribute's value (a bound on
/// the parsers' recursion; JSON's own limit is deeper than this).
pub const MAX_DEPTH: usize = 16;

/// The rows of a body, and the spans refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub rows: Vec<Row>,
    /// Spans skipped as invalid (`ExportTracePartialSuccess.rejected_spans`).
    pub rejected: u64,
    /// Empty, or how many were skipped and why the first was (`error_message`).
    pub message: String,
}

/// The model of a body, and the spans refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedModel {
    pub resource_spans: Vec<ResourceSpans>,
    pub rejected: u64,
    pub message: String,
}

type Parser<S> = fn(&[u8], &mut S, &mut Rejections) -> Result<(), DecodeError>;

fn rows(body: &[u8], parse: Parser<rows::RowSink>) -> Result<Decoded, DecodeError> {
    let mut sink = rows::RowSink::new();
    let mut rejections = Rejections::default();
    parse(body, &mut sink, &mut rejections)?;
    Ok(Decoded {
        rows: sink.into_rows(),
        rejected: rejections.count(),
        message: rejections.message(),
    })
}

fn model(body: &[u8], parse: Parser<to_model::ModelSink>) -> Result<DecodedModel, DecodeError> {
    let mut sink = to_model::ModelSink::default();
    let mut rejections = Rejections::default();
    parse(body, &mut sink, &mut rejections)?;
    Ok(DecodedModel {
        resource_spans: sink.into_model(),
        rejected: rejections.count(),
        message: rejections.message(),
    })
}

/// The rows of an OTLP/protobuf `ExportTraceServiceRequest`.
pub fn protobuf(body: &[u8]) -> Result<Decoded, DecodeError> {
    rows(body, protobuf::parse)
}

/// The rows of an OTLP/JSON `ExportTraceServiceRequest`.
pub fn json(body: &[u8]) -> Result<Decoded, DecodeError> {
    rows(body, json::parse)
}

/// The model of an OTLP/protobuf `ExportTraceServiceRequest`.
pub fn protobuf_model(body: &[u8]) -> Result<DecodedModel, DecodeError> {
    model(body, protobuf::parse)
}

/// The model of an OTLP/JSON `ExportTraceServiceRequest`.
pub fn json_model(body: &[u8]) -> Result<DecodedModel, DecodeError> {
    model(body, json::parse)
}
