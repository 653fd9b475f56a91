//! The inbound step of every hop: continue the caller's trace or start one,
//! and keep or create the correlation id.
//!
//! The twin of step 3 of the Python sidecar's pipeline
//! (`seawall.proxy.forward.Forwarder._mesh_headers`, built on
//! `seawall.telemetry.tracecontext.continue_trace`).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use seawall_policy::rng::Random;

use crate::id::{SpanId, TraceId};
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
    /// The caller's span (the received `parent-id`): the parent of this
    /// hop's span. `None` for a new trace.
    pub caller: Option<SpanId>,
}

/// Head sampling of a trace started here: whether a trace with this id is
/// recorded at `probability` (0 to 1).
///
/// Decided on the id's last 56 bits, which are random (the Level 2 `random`
/// flag, set on every trace seawall starts), as OpenTelemetry's
/// `TraceIdRatioBased` sampler and its consistent-probability successor do:
/// every process that decides on the same id at the same probability
/// decides alike, and no random draw is spent.
pub fn sampled_at(trace_id: TraceId, probability: f64) -> bool {
    const RANDOM_BITS: u32 = 56;
    if probability >= 1.0 {
        return true;
    }
    if probability.is_nan() || probability <= 0.0 {
        return false;
    }
    let random = trace_id.to_u128() as u64 & ((1u64 << RANDOM_BITS) - 1);
    let threshold = (probability * (1u64 << RANDOM_BITS) as f64) as u64;
    random < threshold
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
    continue_trace_sampled(headers, rng, 1.0)
}

/// [`continue_trace`], with head sampling: a trace started here is sampled
/// at `probability` ([`sampled_at`] on its new id); a continued trace keeps
/// the caller's decision (parent-based sampling, as OpenTelemetry's
/// `ParentBased` sampler does).
pub fn continue_trace_sampled<R: Random + ?Sized>(
    headers: &HeaderMap,
    rng: &mut R,
    probability: f64,
) -> Continued {
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
            caller: Some(parent.parent_id()),
        },
        None => {
            let started = TraceParent::new(rng, true);
            let traceparent = if sampled_at(started.trace_id(), probability) {
                started
            } else {
                // the same ids, the sampled flag cleared
                TraceParent::new_with(started.trace_id(), started.parent_id(), false)
            };
            Continued {
                traceparent,
                tracestate: None, // not even parsed (§3.3)
                request_id,
                continued: false,
                caller: None,
            }
        }
    }
}
