//! SPIFFE IDs: the names sidecars know each other by (`seawall.proxy.tls`'s helpers).
//!
//! A sidecar's certificate has exactly one URI subject alternative name, its
//! SPIFFE ID `spiffe://<trust domain>/service/<service>`. The rules here are
//! the Python ones, character for character: a service is a DNS label
//! (`[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?`), a trust domain is
//! `[a-z0-9._-]{1,255}`, and a certificate with two URI SANs has no SPIFFE ID.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

const SCHEME: &str = "spiffe://";

/// The SPIFFE ID of `service`: `spiffe://<trust_domain>/service/<service>`.
pub fn spiffe_id(trust_domain: &str, service: &str) -> String {
    format!("{SCHEME}{trust_domain}/service/{service}")
}

/// The service named by `spiffe://<trust_domain>/service/<name>`, else `None`.
///
/// `None` too when `<name>` is not a service name (upper case, a `/`, empty,
/// longer than 63 characters...), exactly as Python's `service_of`.
pub fn service_of<'a>(spiffe: &'a str, trust_domain: &str) -> Option<&'a str> {
    let name = spiffe
        .strip_prefix(SCHEME)?
        .strip_prefix(trust_domain)?
        .strip_prefix("/service/")?;
    is_service_name(name).then_some(name)
}

/// After a handshake: the SPIFFE ID in the peer's end-entity certificate.
///
/// `None` unless that certificate parses and has exactly one URI subject
/// alternative name, a `spiffe://` one (other kinds of names are ignored);
/// `certs` is what `peer_certificates()` gives (`unwrap_or_default()` it).
pub fn peer_spiffe_id(certs: &[CertificateDer<'_>]) -> Option<String> {
    certs.first().and_then(|leaf| spiffe_of_der(leaf))
}

/// The SPIFFE ID of one DER certificate (see [`peer_spiffe_id`]).
pub(crate) fn spiffe_of_der(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    spiffe_of_cert(&cert)
}

/// The SPIFFE ID of a parsed certificate: its one `spiffe://` URI SAN.
pub(crate) fn spiffe_of_cert(cert: &X509Certificate<'_>) -> Option<String> {
    // A duplicated or malformed SAN extension is an error: no SPIFFE ID (as Python).
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::URI(uri) => Some(*uri),
            _ => None,
        });
    let uri = uris.next()?;
    if uris.next().is_some() || !uri.starts_with(SCHEME) {
        return None; // an X509-SVID has exactly one URI SAN
    }
    Some(uri.to_owned())
}

/// The trust domain of a SPIFFE ID (`spiffe://<this>/...`), if it is a valid one.
pub(crate) fn trust_domain_of(spiffe: &str) -> Option<&str> {
    let rest = spiffe.strip_prefix(SCHEME)?;
    let domain = rest.split('/').next()?;
    is_trust_domain(domain).then_some(domain)
}

/// `[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?`: a DNS label.
pub(crate) fn is_service_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= 63
                && inner(first)
                && inner(last)
                && bytes.iter().all(|b| inner(b) || *b == b'-')
        }
        _ => false,
    }
}

/// `[a-z0-9._-]{1,255}`.
pub(crate) fn is_trust_domain(domain: &str) -> bool {
    (1..=255).contains(&domain.len())
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spiffe_id_is_the_python_format() {
        assert_eq!(
            spiffe_id("shop.local", "orders"),
            "spiffe://shop.local/service/orders"
        );
    }

    #[test]
    fn service_of_follows_the_python_rules() {
        assert_eq!(
            service_of("spiffe://t.local/service/orders", "t.local"),
            Some("orders")
        );
        assert_eq!(
            service_of("spiffe://t.local/service/a", "t.local"),
            Some("a")
        );
        let longest = format!("spiffe://t.local/service/a{}z", "-".repeat(61));
        assert!(service_of(&longest, "t.local").is_some());
        let too_long = format!("spiffe://t.local/service/a{}z", "-".repeat(62));
        for bad in [
            "spiffe://t.local/service/Orders",
            "spiffe://t.local/service/a/b",
            "spiffe://t.local/service/",
            "spiffe://t.local/service/-a",
            "spiffe://t.local/service/a-",
            "spiffe://t.local/service/a_b",
            "spiffe://t.local/ns/orders",
            "spiffe://t.localx/service/orders",
            "spiffe://x.t.local/service/orders",
            "spiffe://other.local/service/orders",
            "https://t.local/service/orders",
            "spiffe://t.local/service/orders\n",
            "",
            &too_long,
        ] {
            assert_eq!(service_of(bad, "t.local"), None, "{bad:?}");
        }
    }

    #[test]
    fn trust_domains() {
        assert_eq!(
            trust_domain_of("spiffe://t.local/service/x"),
            Some("t.local")
        );
        assert_eq!(trust_domain_of("spiffe://t.local"), Some("t.local"));
        assert_eq!(trust_domain_of("spiffe://T.local/service/x"), None);
        assert_eq!(trust_domain_of("spiffe:///service/x"), None);
        assert_eq!(trust_domain_of("https://t.local/service/x"), None);
        assert!(is_trust_domain(&"a".repeat(255)));
        assert!(!is_trust_domain(&"a".repeat(256)));
    }

    #[test]
    fn junk_is_no_certificate() {
        assert_eq!(spiffe_of_der(b""), None);
        assert_eq!(spiffe_of_der(b"\x30\x03\x02\x01\x00"), None);
        assert_eq!(peer_spiffe_id(&[]), None);
    }
}
