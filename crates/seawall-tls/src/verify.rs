//! The mesh's certificate verifiers: the chain to the CA bundle, then the SPIFFE ID.
//!
//! rustls (through webpki) checks names only as DNS names or IP addresses,
//! and mesh certificates have neither: a sidecar is named by the SPIFFE ID in
//! its URI SAN. So, as Linkerd does (`linkerd/meshtls/src/creds/verify.rs`):
//!
//! * server side, [`MeshClientVerifier`] wraps rustls' own
//!   `WebPkiClientVerifier` (chain, validity, `clientAuth`, signatures; it
//!   checks no name) and adds the SPIFFE check;
//! * client side, [`MeshServerVerifier`] checks the chain with
//!   `verify_server_cert_signed_by_trust_anchor` (validity, `serverAuth`)
//!   and the handshake signatures with the provider's algorithms, skips the
//!   name the connection was opened with, and adds the SPIFFE check.
//!
//! The SPIFFE check here is the part that does not depend on the mesh's
//! config: one `spiffe://` URI SAN naming a service of the trust domain. A
//! peer without one never completes a handshake. Whether that service is
//! one the mesh has ([`crate::check_client`]) or the destination
//! ([`crate::check_server`]) is checked after the handshake, as in Python.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::error::TlsError;
use crate::spiffe::{service_of, spiffe_of_der};

/// A peer's end-entity certificate must name a service of `trust_domain`.
fn check_spiffe(end_entity: &CertificateDer<'_>, trust_domain: &str) -> Result<(), rustls::Error> {
    let Some(found) = spiffe_of_der(end_entity) else {
        return Err(TlsError::NoSpiffeId.into_rustls());
    };
    if service_of(&found, trust_domain).is_none() {
        return Err(TlsError::NotAService { found }.into_rustls());
    }
    Ok(())
}

/// The server's check of a client certificate: required, chained to the bundle, a mesh SPIFFE ID.
#[derive(Debug)]
pub(crate) struct MeshClientVerifier {
    pub(crate) webpki: Arc<dyn ClientCertVerifier>,
    pub(crate) trust_domain: String,
}

impl ClientCertVerifier for MeshClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true // in both mTLS modes: permissive only lets plaintext in as well
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.webpki.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.webpki
            .verify_client_cert(end_entity, intermediates, now)?;
        check_spiffe(end_entity, &self.trust_domain)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// The client's check of another sidecar: chained to the bundle, a mesh SPIFFE ID, no DNS name.
#[derive(Debug)]
pub(crate) struct MeshServerVerifier {
    pub(crate) roots: Arc<RootCertStore>,
    pub(crate) algorithms: WebPkiSupportedAlgorithms,
    pub(crate) trust_domain: String,
}

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>, // an address: sidecars are named by SPIFFE IDs
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        check_spiffe(end_entity, &self.trust_domain)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
