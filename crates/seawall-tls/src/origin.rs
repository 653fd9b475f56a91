//! TLS originated by a sidecar to a host outside the mesh (an `external:`
//! service with `tls: true`): the app speaks plain HTTP to its sidecar, the
//! sidecar speaks HTTPS to the real host.
//!
//! The server is checked as a browser checks it, not as a mesh peer is: its
//! chain must lead to one of the trusted roots and its certificate must name
//! the host (DNS name or IP address); no client certificate is presented.
//! The roots are a PEM bundle: the one the external service names
//! (`ca_file`, for a private CA), else the system's ([`system_roots`]).
//!
//! Nothing here does I/O but [`read_roots`], which reads one file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use crate::config::{provider, ALPN_HTTP1};

/// Where the system's CA bundle usually is, most common first: Debian,
/// Ubuntu and Alpine; Fedora and RHEL; openSUSE; RHEL's extracted bundle;
/// macOS and the BSDs.
pub const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Why TLS to an external host cannot be set up.
#[derive(Debug, Clone, PartialEq)]
pub enum OriginError {
    /// The bundle could not be read.
    Read { path: PathBuf, why: String },
    /// The bundle holds no certificate that can be a root.
    NoRoots { path: PathBuf },
    /// No system bundle was found (and `SSL_CERT_FILE` is not set).
    NoSystemRoots,
    /// The host cannot be a TLS server name.
    ServerName(String),
    /// rustls refused the configuration.
    Config(String),
}

impl std::fmt::Display for OriginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OriginError::Read { path, why } => {
                write!(f, "cannot read the CA bundle {}: {why}", path.display())
            }
            OriginError::NoRoots { path } => write!(
                f,
                "the CA bundle {} holds no usable PEM certificate",
                path.display()
            ),
            OriginError::NoSystemRoots => write!(
                f,
                "no system CA bundle found (looked for SSL_CERT_FILE, then {}); \
                 set ca_file on the external service",
                SYSTEM_BUNDLES.join(", ")
            ),
            OriginError::ServerName(host) => {
                write!(f, "{host:?} is not a valid TLS server name")
            }
            OriginError::Config(why) => write!(f, "TLS configuration: {why}"),
        }
    }
}

impl std::error::Error for OriginError {}

/// The system's CA bundle: `ssl_cert_file` (the `SSL_CERT_FILE` variable, as
/// OpenSSL reads it) when set, else the first of [`SYSTEM_BUNDLES`] that
/// `exists` says is there.
pub fn system_roots(
    ssl_cert_file: Option<PathBuf>,
    exists: impl Fn(&Path) -> bool,
) -> Result<PathBuf, OriginError> {
    if let Some(path) = ssl_cert_file.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(path);
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| exists(p))
        .ok_or(OriginError::NoSystemRoots)
}

/// The roots in the PEM bundle at `path`.
pub fn read_roots(path: &Path) -> Result<RootCertStore, OriginError> {
    let pem = std::fs::read(path).map_err(|e| OriginError::Read {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    roots_of(&pem).ok_or_else(|| OriginError::NoRoots {
        path: path.to_owned(),
    })
}

/// The certificates of a PEM bundle that can be roots (a system bundle may
/// hold some that cannot: those are skipped); `None` if none can.
pub fn roots_of(pem: &[u8]) -> Option<RootCertStore> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(certs);
    (!roots.is_empty()).then_some(roots)
}

/// The configuration for TLS to external hosts trusting `roots`: TLS 1.2
/// and 1.3, the server's chain and name checked by webpki, ALPN `http/1.1`,
/// session resumption on (an external host is called often, and it is not
/// a mesh identity that may rotate under us).
pub fn origin_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, OriginError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| OriginError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// `host` as the name the server's certificate must carry (and the SNI sent).
pub fn server_name(host: &str) -> Result<ServerName<'static>, OriginError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| OriginError::ServerName(host.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_cert_file_wins_then_the_first_bundle_that_exists() {
        let set = system_roots(Some("/tmp/ca.pem".into()), |_| false);
        assert_eq!(set, Ok(PathBuf::from("/tmp/ca.pem")));
        let fedora = system_roots(None, |p| p == Path::new(SYSTEM_BUNDLES[1]));
        assert_eq!(fedora, Ok(PathBuf::from(SYSTEM_BUNDLES[1])));
        let empty_var = system_roots(Some(PathBuf::new()), |p| p == Path::new(SYSTEM_BUNDLES[0]));
        assert_eq!(empty_var, Ok(PathBuf::from(SYSTEM_BUNDLES[0])));
        assert_eq!(
            system_roots(None, |_| false),
            Err(OriginError::NoSystemRoots)
        );
    }

    #[test]
    fn a_bundle_without_certificates_has_no_roots() {
        assert!(roots_of(b"").is_none());
        assert!(
            roots_of(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_none()
        );
        let dir = std::env::temp_dir().join(format!("seawall-origin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("empty.pem");
        std::fs::write(&path, b"not pem").expect("write");
        assert_eq!(
            read_roots(&path).err(),
            Some(OriginError::NoRoots { path: path.clone() })
        );
        let missing = dir.join("missing.pem");
        assert!(matches!(
            read_roots(&missing),
            Err(OriginError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn server_names_are_dns_names_or_addresses() {
        assert!(server_name("api.stripe.com").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("not a name").is_err());
    }
}
