//! seawall-trace: W3C Trace Context (Level 2) and correlation ids for the
//! Rust sidecar (see the workspace Cargo.toml for what each crate is for).
//!
//! The twin of `seawall.telemetry.tracecontext` and of step 3 of the Python
//! sidecar's pipeline: the same parsing rules, the same mutations, the same
//! id formats; `tests/cases.json` is a table that both runtimes check.
//!
//! - [`TraceId`], [`SpanId`]: the ids, `Copy`, never all zero (also what a
//!   span recorder stores).
//! - [`TraceParent`]: parse, format (into an array or a buffer), `new`, `child`.
//! - [`TraceState`]: parse (one field or several), format, mutate, truncate.
//! - [`continue_trace`]: the inbound step, from request headers to the
//!   [`Continued`] values to forward; [`new_request_id`] for `x-request-id`.
//!
//! Sans-I/O and on the request path: no regular expressions, no allocation
//! beyond the output strings. Randomness is injected ([`Random`], normally
//! seawall-policy's `SplitMix64`); ids are not secrets.
//!
//! Measured with `cargo run --release -p seawall-trace --example
//! bench_continue_trace` (rustc 1.95, a shared 2-core build VM, so roughly):
//! parse 45 ns; parse + child + encode 75 ns; `continue_trace` with a
//! traceparent and a request id 190 ns, plus a two-member tracestate 360 ns,
//! with no headers 95 ns. At 100k requests/s a request has 10 us of one core.
//!
//! [`Random`]: seawall_policy::rng::Random
#![forbid(unsafe_code)]

mod id;
mod inbound;
mod request_id;
mod traceparent;
mod tracestate;

use http::HeaderName;

pub use id::{SpanId, TraceId};
pub use inbound::{continue_trace, continue_trace_sampled, sampled_at, Continued};
pub use request_id::{new_request_id, REQUEST_ID_LEN};
pub use traceparent::{TraceParent, FLAG_RANDOM, FLAG_SAMPLED, TRACEPARENT_LEN};
pub use tracestate::{TraceState, TraceStateError, MAX_TRACESTATE_LENGTH, MAX_TRACESTATE_MEMBERS};

/// The W3C `traceparent` header (sent in lower case, as the spec asks).
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The W3C `tracestate` header.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The correlation-id header: created when absent, always forwarded.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");
