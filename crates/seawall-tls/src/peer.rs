//! After a handshake: who the peer is, and whether it may be (Python's `_accept_peer`, `UpstreamTLS.check`).
//!
//! The verifiers already refused every peer without a SPIFFE ID of the trust
//! domain. What remains depends on the caller's state: the mesh's current
//! services (inbound) and the destination of the connection (outbound).

use rustls::pki_types::CertificateDer;

use crate::error::TlsError;
use crate::spiffe::{peer_spiffe_id, service_of, spiffe_id};

/// An authenticated caller: its SPIFFE ID and the service it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// `spiffe://<trust domain>/service/<service>` (the `x-seawall-peer` value).
    pub spiffe_id: String,
    /// The service (what authorization rules name in `from`).
    pub service: String,
}

/// Server side, after the handshake: the caller, if it is a service the mesh has.
///
/// `certs` is the connection's `peer_certificates()` (`unwrap_or_default()`
/// it); `is_service` says whether the mesh's current config has a service
/// (read per connection, so that a reload applies to new connections). Err
/// is counted under `identity`; the connection is then closed before a byte
/// of it is read.
pub fn check_client(
    certs: &[CertificateDer<'_>],
    trust_domain: &str,
    is_service: impl Fn(&str) -> bool,
) -> Result<Peer, TlsError> {
    let spiffe_id = peer_spiffe_id(certs).ok_or(TlsError::NoSpiffeId)?;
    let Some(service) = service_of(&spiffe_id, trust_domain) else {
        return Err(TlsError::NotAService { found: spiffe_id });
    };
    if !is_service(service) {
        return Err(TlsError::UnknownService {
            service: service.to_owned(),
        });
    }
    let service = service.to_owned();
    Ok(Peer { spiffe_id, service })
}

/// Client side, after the handshake: the server must be `expected_service`'s sidecar.
///
/// Ok is the server's SPIFFE ID. Err (counted under `identity`) is a connect
/// failure, retried and counted like one.
pub fn check_server(
    certs: &[CertificateDer<'_>],
    trust_domain: &str,
    expected_service: &str,
) -> Result<String, TlsError> {
    let found = peer_spiffe_id(certs).ok_or(TlsError::NoSpiffeId)?;
    let expected = spiffe_id(trust_domain, expected_service);
    if found != expected {
        return Err(TlsError::WrongService { found, expected });
    }
    Ok(found)
}
