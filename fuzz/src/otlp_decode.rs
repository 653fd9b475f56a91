//! `otlp_decode`: a body as the collector receives it, read as OTLP/protobuf
//! and as OTLP/JSON (`seawall_otlp::decode`).
//!
//! Invariants:
//! - no panic, no unbounded allocation, on either decoder;
//! - the rows and the model of a body come from one parse: both decoded or
//!   both refused with the same error, the same spans rejected;
//! - a decoded body, written again by the encoder from its model
//!   (`encode::export_request`), decodes to the same rows with nothing
//!   rejected (for JSON bodies too: the JSON parser, the encoder and the
//!   protobuf parser agree);
//! - every row is what the store expects: ids not zero, JSON columns that
//!   are JSON, at most `MAX_TAGS` tags of `key=value` with values of at most
//!   `MAX_TAG_VALUE` characters, flags in one byte.
use seawall_otlp::decode::{self, DecodeError, Decoded, DecodedModel, Row};
use seawall_otlp::encode;

use crate::show;

pub fn check(data: &[u8]) {
    both(data, decode::protobuf(data), decode::protobuf_model(data));
    both(data, decode::json(data), decode::json_model(data));
}

fn both(data: &[u8], rows: Result<Decoded, DecodeError>, model: Result<DecodedModel, DecodeError>) {
    let (decoded, model) = match (rows, model) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{}", show(data));
            // an error always says what (and the message is not empty)
            assert!(!a.to_string().is_empty());
            return;
        }
        (rows, model) => panic!(
            "rows {:?} but model {:?}: {}",
            rows.err(),
            model.err(),
            show(data)
        ),
    };
    assert_eq!(decoded.rejected, model.rejected, "{}", show(data));
    assert_eq!(decoded.message, model.message, "{}", show(data));
    assert_eq!(decoded.rejected == 0, decoded.message.is_empty());
    let spans: usize = model.resource_spans.iter().map(|rs| rs.spans.len()).sum();
    assert_eq!(spans, decoded.rows.len(), "{}", show(data));
    for row in &decoded.rows {
        check_row(row);
    }
    let mut again = Vec::new();
    encode::export_request(&model.resource_spans, &mut again);
    let round = match decode::protobuf(&again) {
        Ok(round) => round,
        Err(e) => panic!("the encoder's output does not decode: {e}: {}", show(data)),
    };
    assert_eq!(round.rejected, 0, "{}", round.message);
    assert_eq!(round.rows, decoded.rows, "{}", show(data));
}

fn check_row(row: &Row) {
    assert_ne!(row.trace_id, [0; 16]);
    assert_ne!(row.span_id, [0; 8]);
    assert_ne!(row.parent_span_id, Some([0; 8]));
    assert!(row.flags <= 0xff);
    for column in [
        &row.attributes,
        &row.events,
        &row.links,
        &*row.resource,
        &*row.scope,
    ] {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(column) {
            panic!("not JSON ({e}): {column}");
        }
    }
    assert!(row.tags.len() <= decode::MAX_TAGS);
    assert_eq!(row.tags.iter().count(), row.tags.len());
    for tag in row.tags.iter() {
        let Some((_, value)) = tag.split_once('=') else {
            panic!("a tag without '=': {tag:?}");
        };
        // the key may hold '=' too: the value is at most what follows the last one
        let last = tag.rsplit('=').next().unwrap_or(value);
        assert!(last.chars().count() <= decode::MAX_TAG_VALUE, "{tag:?}");
    }
}
