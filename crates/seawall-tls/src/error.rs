//! Why a mesh connection was refused, in the words of the sidecar's metrics.
//!
//! Every [`TlsError`] maps to one `reason` label of
//! `seawall_inbound_tls_refused_total` (`plaintext`, `handshake`, `identity`;
//! with the sidecar's own `caller`, Python's `REFUSALS`) or of
//! `seawall_upstream_tls_failures_total` (`handshake`, `identity`).
//!
//! The mesh verifiers refuse a peer without a SPIFFE ID of the trust domain
//! inside the handshake. They carry that refusal as a [`TlsError`] inside
//! `rustls::Error::InvalidCertificate(CertificateError::Other(..))`, and the
//! `From` conversions here take it out again, so such a peer is counted under
//! `identity` (as Python counts it), not `handshake`.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

use rustls::{CertificateError, OtherError};

/// The `reason` labels of `seawall_inbound_tls_refused_total` (Python's
/// `REFUSALS`): a [`TlsError`]'s, and `caller`, a caller the service refuses
/// (its `authorization.refuse`, told by the sidecar, not by a `TlsError`).
pub const REFUSALS: [&str; 4] = ["plaintext", "handshake", "identity", "caller"];

/// A refused mesh connection: what went wrong, matched by the caller, counted by [`reason`](Self::reason).
#[derive(Debug, Clone, PartialEq)]
pub enum TlsError {
    /// Plaintext on a port whose mTLS mode is strict (`plaintext`).
    Plaintext,
    /// The TLS handshake failed (`handshake`): no client certificate, another
    /// CA, an expired certificate, TLS 1.2 only, no shared ALPN protocol...
    /// On the side that did not refuse, the alert it received.
    Handshake(rustls::Error),
    /// The connection broke, or timed out, before the handshake was over (`handshake`).
    Io(io::ErrorKind),
    /// The peer's certificate has no SPIFFE ID: no URI SAN, several, or not `spiffe://` (`identity`).
    NoSpiffeId,
    /// The SPIFFE ID is not `spiffe://<trust domain>/service/<name>` of this
    /// mesh's trust domain (`identity`).
    NotAService {
        /// The SPIFFE ID the certificate has.
        found: String,
    },
    /// A service of the trust domain that the mesh's config does not have (`identity`).
    UnknownService {
        /// The service the certificate names.
        service: String,
    },
    /// The server is not the destination the client meant to reach (`identity`).
    WrongService {
        /// The server's SPIFFE ID.
        found: String,
        /// The destination's SPIFFE ID.
        expected: String,
    },
}

impl TlsError {
    /// The `reason` label this refusal is counted under: `plaintext`, `handshake` or `identity`.
    pub fn reason(&self) -> &'static str {
        match self {
            TlsError::Plaintext => "plaintext",
            TlsError::Handshake(_) | TlsError::Io(_) => "handshake",
            TlsError::NoSpiffeId
            | TlsError::NotAService { .. }
            | TlsError::UnknownService { .. }
            | TlsError::WrongService { .. } => "identity",
        }
    }

    /// As a certificate error, for a verifier to fail the handshake with.
    pub(crate) fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Plaintext => f.write_str("plaintext on a port where mTLS is strict"),
            TlsError::Handshake(err) => write!(f, "TLS handshake failed: {err}"),
            TlsError::Io(kind) => write!(f, "TLS handshake failed: {kind}"),
            TlsError::NoSpiffeId => f.write_str("the peer is not a SPIFFE identity"),
            TlsError::NotAService { found } => {
                write!(f, "the peer is {found}, not a service of the mesh")
            }
            TlsError::UnknownService { service } => {
                write!(
                    f,
                    "the peer is service {service:?}, which the mesh does not have"
                )
            }
            TlsError::WrongService { found, expected } => {
                write!(f, "the server is {found}, expected {expected}")
            }
        }
    }
}

impl StdError for TlsError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            TlsError::Handshake(err) => Some(err),
            _ => None,
        }
    }
}

/// A handshake's rustls error: a mesh verifier's identity refusal comes out as
/// itself, anything else is [`TlsError::Handshake`].
impl From<rustls::Error> for TlsError {
    fn from(err: rustls::Error) -> Self {
        if let rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) = &err
        {
            if let Some(refusal) = inner.downcast_ref::<TlsError>() {
                return refusal.clone();
            }
        }
        TlsError::Handshake(err)
    }
}

/// A handshake's I/O error, as tokio-rustls and rustls' `complete_io` return
/// them: the rustls error they wrap (see `From<rustls::Error>`), else [`TlsError::Io`].
impl From<io::Error> for TlsError {
    fn from(err: io::Error) -> Self {
        match err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TlsError::from(tls.clone()),
            None => TlsError::Io(err.kind()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_python_label() {
        let all = [
            TlsError::Plaintext,
            TlsError::Handshake(rustls::Error::NoCertificatesPresented),
            TlsError::Io(io::ErrorKind::TimedOut),
            TlsError::NoSpiffeId,
            TlsError::NotAService {
                found: "spiffe://x/y".into(),
            },
            TlsError::UnknownService {
                service: "x".into(),
            },
            TlsError::WrongService {
                found: "a".into(),
                expected: "b".into(),
            },
        ];
        for err in &all {
            assert!(REFUSALS.contains(&err.reason()), "{err:?}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn an_identity_refusal_survives_rustls_and_io() {
        let refusal = TlsError::NotAService {
            found: "spiffe://other/service/x".into(),
        };
        let as_rustls = refusal.clone().into_rustls();
        assert_eq!(TlsError::from(as_rustls.clone()), refusal);
        let as_io = io::Error::new(io::ErrorKind::InvalidData, as_rustls);
        assert_eq!(TlsError::from(as_io), refusal);
        let other = rustls::Error::InvalidCertificate(CertificateError::Expired);
        assert_eq!(TlsError::from(other.clone()), TlsError::Handshake(other));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(
            TlsError::from(reset),
            TlsError::Io(io::ErrorKind::ConnectionReset)
        );
    }
}
