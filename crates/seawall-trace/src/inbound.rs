//! The inbound step of every hop: continue the caller's trace or start one,
//! and keep or create the correlation id.
//!
//! The twin of step 3 of the Python sidecar's pipeline
//! (`seawall.proxy.forward.Forwarder._mesh_headers`, built on
//! `seawall.telemetry.tracecontext.continue_trace`).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use seawall_policy::rng::Random;

use crate::request_id::new_request_id_hex;
use crate::traceparent::TraceParent;
use crate::tracestate::TraceState;
use crate::{REQUEST_ID_HEADER, TRACEPARENT, TRACESTATE};

/// What the sidecar forwards for one request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Continued {
    /// The `traceparent` to send: a child of the caller's, or a new trace.
    pub traceparent: TraceParent,
    /// The `tracestate` to send, canonical; `None` (send no header) when the
    /// trace was restarted, or the incoming one was absent, empty or invalid.
    pub tracestate: Option<TraceState>,
    /// The `x-request-id` to send: the caller's, or a new one.
    pub request_id: Bytes,
    /// Whether the caller's trace was continued (`false`: a new trace).
    pub continued: bool,
}

/// The trace context and correlation id for a request with these headers.
///
/// - `traceparent`: exactly one field with a valid value → its
///   [`TraceParent::child`]; absent, invalid or sent more than once → a new,
///   sampled trace ([`TraceParent::new`]), as the Python sidecar starts one.
/// - `tracestate`: only when the trace is continued, all its fields parsed as
///   one list ([`TraceState::parse_fields`]); forwarded when valid and not
///   empty.
/// - `x-request-id`: kept when present and non-empty (the last field, as the
///   Python sidecar reads them), else [`new_request_id`](crate::new_request_id).
///
/// Allocates only the outputs: the tracestate string when there is one, and
/// the request id.
pub fn continue_trace<R: Random + ?Sized>(headers: &HeaderMap, rng: &mut R) -> Continued {
    let request_id = match headers.get_all(REQUEST_ID_HEADER).iter().next_back() {
        Some(kept) if !kept.is_empty() => Bytes::copy_from_slice(kept.as_bytes()),
        _ => Bytes::copy_from_slice(&new_request_id_hex(rng)),
    };

    // Several `traceparent` fields make a new trace, as if there were none.
    //
    // The Level 1 recommendation (https://www.w3.org/TR/trace-context-1/) has
    // no sentence for this case; the rule follows from three that it has:
    // - §3.2.2 "traceparent Header Field Values" defines the value as one
    //   `version "-" version-format`, not a list (unlike `tracestate`, which
    //   §3.3 says "MAY be sent or received as multiple header fields");
    // - HTTP combines several fields of one name only as a comma-separated
    //   list (RFC 7230 §3.2.2, which the spec cites; now RFC 9110 §5.3), and
    //   "a, b" is not a valid value, so the traceparent is invalid: "vendors
    //   MUST ignore the traceparent" (§3.2.2.3 trace-id, §3.2.2.4 parent-id),
    //   and a trace with an invalid traceparent is restarted (§4, Processing
    //   Model);
    // - §3.3: "If the vendor failed to parse traceparent, it MUST NOT attempt
    //   to parse tracestate", so the tracestate is dropped as well.
    // The W3C test suite checks exactly this (w3c/trace-context test/test.py,
    // `test_traceparent_duplicated`: two traceparent headers, one new
    // trace-id). Python gets there by combining the fields before parsing
    // (httpx.Headers); here they are counted instead.
    let mut fields = headers.get_all(TRACEPARENT).iter();
    let parent = match (fields.next(), fields.next()) {
        (Some(only), None) => TraceParent::parse(only),
        _ => None, // absent, or more than one field
    };

    match parent {
        Some(parent) => Continued {
            traceparent: parent.child(rng),
            tracestate: TraceState::parse_fields(
                headers
                    .get_all(TRACESTATE)
                    .iter()
                    .map(HeaderValue::as_bytes),
            )
            .filter(|state| !state.is_empty()),
            request_id,
            continued: true,
        },
        None => Continued {
            traceparent: TraceParent::new(rng, true),
            tracestate: None, // not even parsed (§3.3)
            request_id,
            continued: false,
        },
    }
}
