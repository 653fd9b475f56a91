//! The rustls configurations of a sidecar: one to serve its port, one to call other sidecars.
//!
//! As Python's `_server_context` and `_client_context`: TLS 1.3 only, a
//! certificate required from the peer and checked against the mesh's CA
//! bundle only, no host name checked (the SPIFFE ID is), ALPN `http/1.1`,
//! and no session resumption, so that every connection shows its
//! certificate (and a rotated one is seen by the next handshake).

use std::sync::{Arc, OnceLock};

use rustls::client::Resumption;
use rustls::crypto::{ring, CryptoProvider};
use rustls::server::{NoServerSessionStorage, VerifierBuilderError, WebPkiClientVerifier};
use rustls::sign::SingleCertAndKey;
use rustls::version::TLS13;
use rustls::{ClientConfig, ServerConfig};

use crate::identity::{Identity, IdentityError};
use crate::verify::{MeshClientVerifier, MeshServerVerifier};

/// The one application protocol sidecars speak to each other (Python's `ALPN`).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider: rustls' ring provider, built once.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(ring::default_provider())))
}

/// The inbound listener's configuration for `id` in the mesh's `trust_domain`.
///
/// TLS 1.3 only; the client must present a certificate that chains to the
/// bundle and names a service of `trust_domain` (else the handshake fails),
/// in both mTLS modes: permissive mode lets plaintext in too, never TLS
/// without a certificate (see [`crate::admit`]). ALPN `http/1.1`; no
/// session tickets. Fails when `id` is of another trust domain (Python's
/// `check_identity`).
pub fn server_config(
    id: &Identity,
    trust_domain: &str,
) -> Result<Arc<ServerConfig>, IdentityError> {
    id.check_trust_domain(trust_domain)?;
    let provider = provider();
    let webpki = WebPkiClientVerifier::builder_with_provider(id.roots(), Arc::clone(&provider))
        .build()
        .map_err(|err| match err {
            VerifierBuilderError::NoRootAnchors => IdentityError::NotPemBundle,
            other => IdentityError::Config(rustls::Error::General(other.to_string())),
        })?;
    let verifier = MeshClientVerifier {
        webpki,
        trust_domain: trust_domain.to_owned(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(IdentityError::Config)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified_key())));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.send_tls13_tickets = 0; // Python: num_tickets = 0
    config.session_storage = Arc::new(NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The configuration for connections to other sidecars, as `id` in the mesh's `trust_domain`.
///
/// TLS 1.3 only; presents `id`'s certificate; the server's certificate must
/// chain to the bundle and name a service of `trust_domain` (no DNS name is
/// checked). That it is the destination's is for [`crate::check_server`]
/// after the handshake. ALPN `http/1.1`; no resumption.
///
/// SNI follows the `ServerName` the connection is opened with: open it with
/// the endpoint's address, as Python does (`server_hostname` defaults to the
/// host), so that an IP address sends none and a host name sends itself.
pub fn client_config(
    id: &Identity,
    trust_domain: &str,
) -> Result<Arc<ClientConfig>, IdentityError> {
    id.check_trust_domain(trust_domain)?;
    let provider = provider();
    let verifier = MeshServerVerifier {
        roots: id.roots(),
        algorithms: provider.signature_verification_algorithms,
        trust_domain: trust_domain.to_owned(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])
        .map_err(IdentityError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(id.certified_key())));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
