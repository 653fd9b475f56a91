//! A sidecar's identity: its certificate chain, its private key and the mesh's CA bundle.
//!
//! The twin of `Identity.install` in `seawall/proxy/identity.py`: the same
//! checks, in the same order, with the same messages. The files themselves
//! (`key.pem`, `cert.pem`, `ca.pem`), the key's generation and the CSR stay on
//! the Python side; Rust is handed the PEM bytes.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::provider;
use crate::spiffe::{service_of, spiffe_of_cert, trust_domain_of};

/// Why a certificate, key or CA bundle cannot be a sidecar's identity (Python's `IdentityError`).
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityError {
    /// The certificate chain holds no PEM certificate, or a malformed one.
    NotPemCertificate,
    /// The key is not an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1).
    NotPemKey,
    /// The private key is of a kind the sidecar cannot sign with.
    UnusableKey(rustls::Error),
    /// The certificate is for another key than the one given.
    KeyMismatch,
    /// The CA bundle holds no PEM certificate, or a malformed one.
    NotPemBundle,
    /// A certificate of the bundle is not a CA (basic constraints `CA:TRUE` missing).
    NotACa {
        /// Its subject.
        subject: String,
    },
    /// A CA of the bundle cannot be a trust anchor.
    InvalidCa(rustls::Error),
    /// The certificate is not signed by the bundle's CAs (or is not for TLS
    /// client and server authentication).
    Untrusted(rustls::Error),
    /// The certificate has expired.
    Expired {
        /// When it expired (Unix seconds).
        not_after: i64,
    },
    /// The certificate names no service: its SPIFFE ID (if any) is not
    /// `spiffe://<trust domain>/service/<name>`.
    NotAService {
        /// The SPIFFE ID it has.
        found: Option<String>,
    },
    /// The identity is in another trust domain than the mesh's.
    TrustDomain {
        /// The identity's trust domain.
        found: String,
        /// The mesh's.
        expected: String,
    },
    /// The identity is another service's: a sidecar cannot change service.
    Service {
        /// The certificate's service.
        found: String,
        /// The sidecar's.
        expected: String,
    },
    /// rustls refused to build a TLS configuration with it.
    Config(rustls::Error),
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPemCertificate => f.write_str("not a PEM certificate"),
            Self::NotPemKey => f.write_str("not an unencrypted PEM private key"),
            Self::UnusableKey(err) => write!(f, "the private key cannot be used: {err}"),
            Self::KeyMismatch => {
                f.write_str("the certificate is for another key than this identity's")
            }
            Self::NotPemBundle => f.write_str("the CA is not PEM certificates"),
            Self::NotACa { subject } => {
                write!(
                    f,
                    "the CA bundle holds a certificate that is not a CA: {subject}"
                )
            }
            Self::InvalidCa(err) => write!(f, "the CA bundle holds an unusable CA: {err}"),
            Self::Untrusted(err) => {
                write!(f, "the certificate is not signed by the given CA ({err})")
            }
            Self::Expired { not_after } => {
                write!(f, "the certificate expired at {}", utc(*not_after))
            }
            Self::NotAService { found } => write!(
                f,
                "the certificate names {}, not a service \
                 (spiffe://<trust domain>/service/<name>)",
                found.as_deref().unwrap_or("no SPIFFE ID")
            ),
            Self::TrustDomain { found, expected } => write!(
                f,
                "the identity is in trust domain {found:?}, the mesh's is {expected:?}"
            ),
            Self::Service { found, expected } => {
                write!(f, "the certificate is for {found:?}, not {expected:?}")
            }
            Self::Config(err) => write!(f, "TLS cannot use the certificate: {err}"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// A sidecar's certificate chain and key, the CA bundle it trusts, and the SPIFFE ID it has.
///
/// Cheap to clone (the key and the bundle are shared). Built only by
/// [`Identity::from_pem`], so every `Identity` passed its checks.
#[derive(Clone)]
pub struct Identity {
    key: Arc<CertifiedKey>,
    roots: Arc<RootCertStore>,
    spiffe_id: String,
    trust_domain: String,
    service: String,
    not_before: i64,
    not_after: i64,
    serial: Vec<u8>,
}

impl Identity {
    /// Parse and check an identity from PEM, at the current (wall-clock) time.
    ///
    /// See [`Identity::from_pem_at`].
    pub fn from_pem(cert_chain: &[u8], key: &[u8], bundle: &[u8]) -> Result<Self, IdentityError> {
        Self::from_pem_at(cert_chain, key, bundle, UnixTime::now())
    }

    /// Parse and check an identity from PEM, as it is at `now`.
    ///
    /// `cert_chain` is the sidecar's certificate, optionally followed by
    /// intermediates; `key` its private key; `bundle` the CA certificates it
    /// trusts (several during a CA rotation). As Python's `Identity.install`,
    /// the certificate must be for `key`, signed through the bundle, not
    /// expired at `now`, and name the SPIFFE ID of a service,
    /// `spiffe://<trust domain>/service/<name>`; every certificate of the
    /// bundle must be a CA. Certificates are wall-clock objects: validity is
    /// the one place where the time of day matters, and tests pass `now`.
    pub fn from_pem_at(
        cert_chain: &[u8],
        key: &[u8],
        bundle: &[u8],
        now: UnixTime,
    ) -> Result<Self, IdentityError> {
        let provider = provider();
        let chain = pem_certs(cert_chain).ok_or(IdentityError::NotPemCertificate)?;
        let cas = pem_certs(bundle).ok_or(IdentityError::NotPemBundle)?;
        let roots = Arc::new(trust_anchors(&cas)?);
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| IdentityError::NotPemKey)?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(IdentityError::UnusableKey)?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(IdentityError::KeyMismatch)
            }
            Err(err) => return Err(IdentityError::UnusableKey(err)),
        }
        let (leaf, intermediates) = certified
            .cert
            .split_first()
            .ok_or(IdentityError::NotPemCertificate)?;
        let (_, parsed) =
            X509Certificate::from_der(leaf).map_err(|_| IdentityError::NotPemCertificate)?;
        let not_before = parsed.validity().not_before.timestamp();
        let not_after = parsed.validity().not_after.timestamp();
        let serial = parsed.raw_serial().to_vec();
        // Signed through the bundle, for both of the ways a sidecar uses it. Like
        // Python, the signatures are checked apart from the time (at `now` moved into
        // the certificate's validity), then expiry on its own: a certificate not valid
        // *yet* (a clock a little behind the CA's) is accepted, and each peer judges it
        // by its own clock.
        let (start, end) = (unix(not_before), unix(not_after));
        let at = now.as_secs().clamp(start, end.max(start));
        let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at));
        check_chain(&provider, &roots, leaf, intermediates, at)?;
        if end <= now.as_secs() {
            return Err(IdentityError::Expired { not_after });
        }
        let found = spiffe_of_cert(&parsed);
        let named = found.as_deref().and_then(|id| {
            let domain = trust_domain_of(id)?;
            Some((domain.to_owned(), service_of(id, domain)?.to_owned()))
        });
        let (Some(spiffe_id), Some((trust_domain, service))) = (found.clone(), named) else {
            return Err(IdentityError::NotAService { found });
        };
        Ok(Identity {
            key: Arc::new(certified),
            roots,
            spiffe_id,
            trust_domain,
            service,
            not_before,
            not_after,
            serial,
        })
    }

    /// `spiffe://<trust domain>/service/<service>`.
    pub fn spiffe_id(&self) -> &str {
        &self.spiffe_id
    }

    /// The SPIFFE trust domain (`shop.local`).
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The service this identity names.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// When the certificate becomes valid (Unix seconds).
    pub fn not_before(&self) -> i64 {
        self.not_before
    }

    /// When the certificate expires (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// When to ask for a new certificate: two thirds into its lifetime (as Python's `renew_at`).
    pub fn renew_at(&self) -> i64 {
        let lifetime = self.not_after.saturating_sub(self.not_before);
        self.not_before
            .saturating_add(lifetime / 3 * 2 + lifetime % 3 * 2 / 3)
    }

    /// The certificate's serial number (big-endian bytes, as encoded).
    pub fn serial(&self) -> &[u8] {
        &self.serial
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.key)
    }

    pub(crate) fn roots(&self) -> Arc<RootCertStore> {
        Arc::clone(&self.roots)
    }

    /// Refuse an identity of another trust domain than the mesh's.
    pub(crate) fn check_trust_domain(&self, trust_domain: &str) -> Result<(), IdentityError> {
        if self.trust_domain == trust_domain {
            return Ok(());
        }
        Err(IdentityError::TrustDomain {
            found: self.trust_domain.clone(),
            expected: trust_domain.to_owned(),
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let serial: String = self.serial.iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "<Identity {} (serial {serial})>", self.spiffe_id)
    }
}

/// Unix seconds as rustls counts them (times before 1970 are 0).
fn unix(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

/// Every certificate in `pem`, or `None` when there is none or one is malformed.
fn pem_certs(pem: &[u8]) -> Option<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    (!certs.is_empty()).then_some(certs)
}

fn trust_anchors(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, IdentityError> {
    let mut roots = RootCertStore::empty();
    for der in cas {
        let (_, ca) = X509Certificate::from_der(der).map_err(|_| IdentityError::NotPemBundle)?;
        let is_ca = matches!(ca.basic_constraints(), Ok(Some(ext)) if ext.value.ca);
        if !is_ca {
            let subject = ca.subject().to_string();
            return Err(IdentityError::NotACa { subject });
        }
        roots.add(der.clone()).map_err(IdentityError::InvalidCa)?;
    }
    Ok(roots)
}

/// The certificate chains to `roots`, for TLS servers and for TLS clients alike.
fn check_chain(
    provider: &Arc<CryptoProvider>,
    roots: &Arc<RootCertStore>,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    at: UnixTime,
) -> Result<(), IdentityError> {
    let parsed = ParsedCertificate::try_from(leaf).map_err(IdentityError::Untrusted)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        at,
        provider.signature_verification_algorithms.all,
    )
    .map_err(IdentityError::Untrusted)?;
    let as_client =
        WebPkiClientVerifier::builder_with_provider(Arc::clone(roots), provider.clone())
            .build()
            .map_err(|err| IdentityError::Config(rustls::Error::General(err.to_string())))?;
    as_client
        .verify_client_cert(leaf, intermediates, at)
        .map_err(IdentityError::Untrusted)?;
    Ok(())
}

/// `secs` as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
fn utc(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3_600, rem % 3_600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_like_python() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_577_923_199), "2020-01-01T23:59:59Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn junk_is_refused_not_panicked_on() {
        let junk = b"junk".as_slice();
        let none = Identity::from_pem(junk, junk, junk);
        assert_eq!(none.err(), Some(IdentityError::NotPemCertificate));
        let torn = b"-----BEGIN CERTIFICATE-----\nMIIB\n".as_slice();
        assert_eq!(
            Identity::from_pem(torn, junk, junk).err(),
            Some(IdentityError::NotPemCertificate)
        );
    }
}
