//! Sans-I/O resilience policies: the Rust twins of `seawall.policy`.
//!
//! Each policy is a plain struct told the time (`now`, seconds on a monotonic
//! clock, as an `f64`, exactly like the Python objects) and the outcome of each
//! call. Nothing here sleeps, spawns or reads a clock; randomness comes from an
//! injected [`rng::Random`]. The shared conformance corpus
//! (`tests/conformance/`) drives these and the Python objects step by step.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod balancer;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
pub mod outlier;
pub mod ratelimit;
pub mod rng;
pub mod shed;
pub mod split;
pub mod window;
