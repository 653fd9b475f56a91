//! Mesh mTLS for the Rust sidecar: the twin of `seawall.proxy.tls` and `seawall.proxy.identity`.
//!
//! A sidecar proves who it is with an X.509 certificate whose only URI
//! subject alternative name is its SPIFFE ID,
//! `spiffe://<trust domain>/service/<name>`, issued by the mesh's CA.
//!
//! | Python                                    | here                                   |
//! |-------------------------------------------|----------------------------------------|
//! | `spiffe_id`, `service_of`, `spiffe_id_of` | [`spiffe_id`], [`service_of`], [`peer_spiffe_id`] |
//! | `Identity.install(cert, ca, now=)`        | [`Identity::from_pem`], [`Identity::from_pem_at`] |
//! | `server_context`, `client_context`        | [`server_config`], [`client_config`]   |
//! | `check_identity`                          | [`TlsStore::new`]                      |
//! | installing a renewed certificate          | [`TlsStore::rotate`]                   |
//! | `MeshListener._dispatch` (first byte)     | [`looks_like_tls`], [`admit`]          |
//! | `MeshListener._accept_peer`               | [`check_client`]                       |
//! | `UpstreamTLS.check`                       | [`check_server`]                       |
//! | `REFUSALS`, the `reason` labels           | [`TlsError::reason`], [`REFUSALS`]     |
//!
//! And one thing Python has no twin of: TLS originated to a host outside the
//! mesh (an `external:` service), checked against public roots ([`origin_config`]).
//!
//! One difference in where, not what: Python lets a peer finish the
//! handshake and then closes the connection when its certificate names no
//! service of the trust domain; here the verifiers refuse such a peer in the
//! handshake. The refusal keeps its `identity` label: convert the
//! handshake's error with `TlsError::from`.
//!
//! Nothing here does I/O or reads a clock, except [`Identity::from_pem`]
//! (the wall clock, for certificate validity) and rustls itself (the same,
//! for the peer's certificate).
#![forbid(unsafe_code)]

mod config;
mod error;
mod identity;
mod inbound;
mod origin;
mod peer;
mod spiffe;
mod store;
mod verify;

pub use config::{client_config, server_config, ALPN_HTTP1};
pub use error::{TlsError, REFUSALS};
pub use identity::{Identity, IdentityError};
pub use inbound::{admit, looks_like_tls, MtlsMode, Transport, TLS_HANDSHAKE};
pub use origin::{
    origin_config, read_roots, roots_of, server_name, system_roots, OriginError, SYSTEM_BUNDLES,
};
pub use peer::{check_client, check_server, Peer};
pub use spiffe::{peer_spiffe_id, service_of, spiffe_id};
pub use store::TlsStore;
