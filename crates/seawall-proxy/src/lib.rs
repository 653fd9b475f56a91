//! seawall-proxy: the sidecar's data plane.
//!
//! The folders follow the request path: `listener` accepts, `server` reads
//! requests with the strict codec and writes responses, `forward` is the
//! pipeline (read it top to bottom), `cluster` and `upstream` hold the
//! per-destination policies and pooled connections, `ratelimit` the token
//! buckets, `tls` the mesh's mTLS and TLS to external hosts.
//! `spec` is the config as Python hands it over; `runtime` builds what
//! serves from it; `sidecar` is the handle Python drives.
#![forbid(unsafe_code)]

pub mod admin;
pub mod authz;
pub mod body;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod connect;
pub mod control;
pub mod events;
pub mod export;
pub mod forward;
pub mod listener;
pub mod metrics;
pub mod ratelimit;
pub mod readbuf;
pub mod route;
pub mod runtime;
pub mod server;
pub mod shedding;
pub mod sidecar;
pub mod spans;
pub mod spec;
pub mod state;
pub mod tls;
pub mod tunnel;
pub mod upstream;
