//! Mesh mTLS with real certificates (from `openssl`), handshakes pumped in memory.
//!
//! The cases of `tests/proxy/test_sidecar_mtls.py` and `test_identity.py`:
//! who is refused, under which `reason` label, and rotation.
#![allow(clippy::expect_used)]

mod support;

use rustls::pki_types::UnixTime;
use rustls::version::{TLS12, TLS13};
use rustls::{CertificateError, Connection, HandshakeKind, ProtocolVersion};
use seawall_tls::{
    admit, check_client, check_server, client_config, peer_spiffe_id, server_config, Identity,
    IdentityError, MtlsMode, Peer, TlsError, TlsStore, Transport, ALPN_HTTP1,
};
use support::{
    client, handshake, raw_client, raw_server, send, server, Ca, Leaf, TempDir, Validity, TD,
};

struct Mesh {
    _dir: TempDir,
    ca: Ca,
    other_ca: Ca,
    orders: Leaf,
    payments: Leaf,
}

impl Mesh {
    fn new(name: &str) -> Mesh {
        let dir = TempDir::new(name);
        let ca = Ca::new(dir.path(), "ca");
        let other_ca = Ca::new(dir.path(), "other-ca"); // the same trust domain, another root
        let orders = ca.service("orders");
        let payments = ca.service("payments");
        Mesh {
            _dir: dir,
            ca,
            other_ca,
            orders,
            payments,
        }
    }

    fn identity(&self, leaf: &Leaf) -> Identity {
        Identity::from_pem(&leaf.cert, &leaf.key, &self.ca.pem).expect("a valid identity")
    }
}

fn peer_certs(conn: &Connection) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    conn.peer_certificates().unwrap_or_default().to_vec()
}

fn mesh_services(service: &str) -> bool {
    ["orders", "payments", "inventory"].contains(&service)
}

/// The server's refusal of a client (presenting `leaf`, trusting any server) by payments.
fn refusal_of(mesh: &Mesh, leaf: Option<&Leaf>) -> TlsError {
    let payments = mesh.identity(&mesh.payments);
    let mut c = client(raw_client(leaf, &[&TLS13]));
    let mut s = server(server_config(&payments, TD).expect("server config"));
    let outcome = handshake(&mut c, &mut s);
    assert!(outcome.client.is_err(), "the client is told: {outcome:?}");
    let err = outcome.server.expect_err("the server refuses");
    TlsError::from(err)
}

// ----------------------------------------------------------------- the good path

#[test]
fn tls13_handshake_with_spiffe_ids_both_ways() {
    let mesh = Mesh::new("good");
    let orders = mesh.identity(&mesh.orders);
    let payments = mesh.identity(&mesh.payments);
    assert_eq!(orders.spiffe_id(), "spiffe://t.local/service/orders");
    assert_eq!((orders.service(), orders.trust_domain()), ("orders", TD));
    let mut c = client(client_config(&orders, TD).expect("client config"));
    let mut s = server(server_config(&payments, TD).expect("server config"));
    let outcome = handshake(&mut c, &mut s);
    assert!(
        outcome.client.is_ok() && outcome.server.is_ok(),
        "{outcome:?}"
    );
    for conn in [&c, &s] {
        assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
        assert_eq!(conn.alpn_protocol(), Some(ALPN_HTTP1));
        assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
    }
    // the server knows its caller, the caller knows it reached payments
    let caller = check_client(&peer_certs(&s), TD, mesh_services).expect("a mesh caller");
    assert_eq!(
        caller,
        Peer {
            spiffe_id: "spiffe://t.local/service/orders".into(),
            service: "orders".into()
        }
    );
    assert_eq!(
        check_server(&peer_certs(&c), TD, "payments"),
        Ok("spiffe://t.local/service/payments".to_owned())
    );
    assert_eq!(
        peer_spiffe_id(&peer_certs(&c)).as_deref(),
        Some(payments.spiffe_id())
    );
    assert_eq!(
        send(&mut c, &mut s, b"GET / HTTP/1.1\r\n\r\n"),
        b"GET / HTTP/1.1\r\n\r\n"
    );
    assert_eq!(
        send(&mut s, &mut c, b"HTTP/1.1 200 OK\r\n"),
        b"HTTP/1.1 200 OK\r\n"
    );
}

#[test]
fn configs_are_tls13_only_with_http11_alpn_and_no_resumption() {
    let mesh = Mesh::new("configs");
    let payments = mesh.identity(&mesh.payments);
    let server_cfg = server_config(&payments, TD).expect("server config");
    let client_cfg = client_config(&mesh.identity(&mesh.orders), TD).expect("client config");
    assert_eq!(server_cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_eq!(client_cfg.alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert_eq!(server_cfg.send_tls13_tickets, 0);
    // a second connection with the same configs is a full handshake again
    for _ in 0..2 {
        let mut c = client(client_cfg.clone());
        let mut s = server(server_cfg.clone());
        let outcome = handshake(&mut c, &mut s);
        assert!(outcome.server.is_ok(), "{outcome:?}");
        assert_eq!(c.handshake_kind(), Some(HandshakeKind::Full));
        assert!(
            !peer_certs(&s).is_empty(),
            "every connection shows its certificate"
        );
    }
}

// ----------------------------------------------------------------- refused at the handshake

#[test]
fn tls_without_a_client_certificate_is_refused_even_on_a_permissive_port() {
    let mesh = Mesh::new("no-cert");
    // permissive lets plaintext in; TLS goes through the one server config either way
    assert_eq!(admit(MtlsMode::Permissive, 0x16), Ok(Transport::Mtls));
    assert_eq!(admit(MtlsMode::Permissive, b'G'), Ok(Transport::Plaintext));
    assert_eq!(admit(MtlsMode::Strict, b'G'), Err(TlsError::Plaintext));
    let refusal = refusal_of(&mesh, None);
    assert_eq!(
        refusal,
        TlsError::Handshake(rustls::Error::NoCertificatesPresented)
    );
    assert_eq!(refusal.reason(), "handshake");
}

#[test]
fn a_client_certificate_from_another_ca_is_refused() {
    let mesh = Mesh::new("other-ca");
    let stranger = mesh.other_ca.service("orders");
    let refusal = refusal_of(&mesh, Some(&stranger));
    assert_eq!(
        refusal,
        TlsError::Handshake(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    assert_eq!(refusal.reason(), "handshake");
    // the same with the sidecar's own client config (it trusts the mesh CA too)
    let bundle = [mesh.other_ca.pem.as_slice(), mesh.ca.pem.as_slice()].concat();
    let id = Identity::from_pem(&stranger.cert, &stranger.key, &bundle).expect("identity");
    let mut c = client(client_config(&id, TD).expect("client config"));
    let mut s = server(server_config(&mesh.identity(&mesh.payments), TD).expect("server"));
    let outcome = handshake(&mut c, &mut s);
    assert_eq!(
        outcome
            .server
            .map_err(TlsError::from)
            .map_err(|e| e.reason()),
        Err("handshake")
    );
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let mesh = Mesh::new("expired");
    let expired = mesh.ca.issue(
        &["spiffe://t.local/service/orders"],
        Validity::Dates("20200101000000Z", "20200102000000Z"),
        None,
    );
    let refusal = refusal_of(&mesh, Some(&expired));
    assert!(
        matches!(
            &refusal,
            TlsError::Handshake(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. }
            ))
        ),
        "{refusal:?}"
    );
    assert_eq!(refusal.reason(), "handshake");
    // and no sidecar takes it as its identity
    let err = Identity::from_pem(&expired.cert, &expired.key, &mesh.ca.pem).expect_err("expired");
    assert_eq!(
        err,
        IdentityError::Expired {
            not_after: 1_577_923_200
        }
    );
    assert_eq!(
        err.to_string(),
        "the certificate expired at 2020-01-02T00:00:00Z"
    );
}

#[test]
fn tls12_is_refused() {
    let mesh = Mesh::new("tls12");
    // a client offering TLS 1.2 only, with a valid mesh certificate
    let payments = mesh.identity(&mesh.payments);
    let mut c = client(raw_client(Some(&mesh.orders), &[&TLS12]));
    let mut s = server(server_config(&payments, TD).expect("server config"));
    let outcome = handshake(&mut c, &mut s);
    let refusal = TlsError::from(outcome.server.expect_err("refused"));
    assert!(
        matches!(
            refusal,
            TlsError::Handshake(rustls::Error::PeerIncompatible(_))
        ),
        "{refusal:?}"
    );
    assert_eq!(refusal.reason(), "handshake");
    // and the sidecar's client does not speak TLS 1.2 to a server that offers only that
    let mut c = client(client_config(&mesh.identity(&mesh.orders), TD).expect("client"));
    let mut s = server(raw_server(&mesh.payments, &[&TLS12]));
    let outcome = handshake(&mut c, &mut s);
    assert_eq!(
        outcome
            .client
            .map_err(TlsError::from)
            .map_err(|e| e.reason()),
        Err("handshake")
    );
}

// ----------------------------------------------------------------- refused for who the peer is

#[test]
fn a_client_of_another_trust_domain_is_refused_as_identity() {
    let mesh = Mesh::new("foreign-client");
    let foreign = mesh.ca.issue(
        &["spiffe://other.domain/service/x"],
        Validity::Days(1),
        None,
    );
    let refusal = refusal_of(&mesh, Some(&foreign));
    assert_eq!(
        refusal,
        TlsError::NotAService {
            found: "spiffe://other.domain/service/x".into()
        }
    );
    assert_eq!(refusal.reason(), "identity");
}

#[test]
fn clients_signed_by_the_mesh_ca_without_a_service_id_are_refused_as_identity() {
    let mesh = Mesh::new("not-a-service");
    let cases: [(&[&str], TlsError); 5] = [
        (&["https://orders.example/x"], TlsError::NoSpiffeId),
        (
            &[
                "spiffe://t.local/service/orders",
                "spiffe://t.local/service/email",
            ],
            TlsError::NoSpiffeId,
        ),
        (
            &["spiffe://t.local/ns/orders"],
            TlsError::NotAService {
                found: "spiffe://t.local/ns/orders".into(),
            },
        ),
        (
            &["spiffe://t.local/service/Orders"],
            TlsError::NotAService {
                found: "spiffe://t.local/service/Orders".into(),
            },
        ),
        (&[], TlsError::NoSpiffeId),
    ];
    for (uris, expected) in cases {
        let leaf = mesh.ca.issue(uris, Validity::Days(1), None);
        let refusal = refusal_of(&mesh, Some(&leaf));
        assert_eq!(refusal, expected, "{uris:?}");
        assert_eq!(refusal.reason(), "identity");
    }
}

#[test]
fn a_service_the_mesh_does_not_have_is_refused_after_the_handshake() {
    let mesh = Mesh::new("unknown");
    let nobody = mesh.identity(&mesh.ca.service("nobody"));
    let mut c = client(client_config(&nobody, TD).expect("client config"));
    let mut s = server(server_config(&mesh.identity(&mesh.payments), TD).expect("server"));
    let outcome = handshake(&mut c, &mut s);
    assert!(outcome.server.is_ok(), "{outcome:?}");
    let refusal = check_client(&peer_certs(&s), TD, mesh_services).expect_err("unknown");
    assert_eq!(
        refusal,
        TlsError::UnknownService {
            service: "nobody".into()
        }
    );
    assert_eq!(refusal.reason(), "identity");
    assert_eq!(
        check_client(&[], TD, mesh_services),
        Err(TlsError::NoSpiffeId)
    );
}

#[test]
fn check_server_refuses_another_service() {
    let mesh = Mesh::new("impostor");
    let mut c = client(client_config(&mesh.identity(&mesh.orders), TD).expect("client"));
    let mut s = server(server_config(&mesh.identity(&mesh.payments), TD).expect("server"));
    let outcome = handshake(&mut c, &mut s);
    assert!(
        outcome.client.is_ok() && outcome.server.is_ok(),
        "{outcome:?}"
    );
    let refusal = check_server(&peer_certs(&c), TD, "impostor").expect_err("not impostor");
    assert_eq!(
        refusal,
        TlsError::WrongService {
            found: "spiffe://t.local/service/payments".into(),
            expected: "spiffe://t.local/service/impostor".into(),
        }
    );
    assert_eq!(refusal.reason(), "identity");
    assert_eq!(
        refusal.to_string(),
        "the server is spiffe://t.local/service/payments, expected spiffe://t.local/service/impostor"
    );
    assert_eq!(check_server(&[], TD, "payments"), Err(TlsError::NoSpiffeId));
}

#[test]
fn the_client_refuses_a_server_of_another_trust_domain_or_ca() {
    let mesh = Mesh::new("bad-servers");
    let orders = client_config(&mesh.identity(&mesh.orders), TD).expect("client config");
    // signed by the mesh CA, but in another trust domain
    let foreign = mesh.ca.issue(
        &["spiffe://other.domain/service/payments"],
        Validity::Days(1),
        None,
    );
    let foreign = mesh.identity(&foreign);
    assert_eq!(foreign.trust_domain(), "other.domain");
    assert_eq!(
        server_config(&foreign, TD).expect_err("another trust domain"),
        IdentityError::TrustDomain {
            found: "other.domain".into(),
            expected: TD.into()
        }
    );
    let mut c = client(orders.clone());
    let mut s = server(server_config(&foreign, "other.domain").expect("server config"));
    let refusal = TlsError::from(handshake(&mut c, &mut s).client.expect_err("refused"));
    assert_eq!(
        refusal,
        TlsError::NotAService {
            found: "spiffe://other.domain/service/payments".into()
        }
    );
    assert_eq!(refusal.reason(), "identity");
    // a server from another CA
    let stranger = mesh.other_ca.service("payments");
    let mut c = client(orders);
    let mut s = server(raw_server(&stranger, &[&TLS13]));
    let refusal = TlsError::from(handshake(&mut c, &mut s).client.expect_err("refused"));
    assert_eq!(
        refusal,
        TlsError::Handshake(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    );
    assert_eq!(refusal.reason(), "handshake");
}

// ----------------------------------------------------------------- rotation

#[test]
fn rotation_serves_new_handshakes_and_keeps_open_connections() {
    let mesh = Mesh::new("rotation");
    let store = TlsStore::new(mesh.identity(&mesh.payments), TD, "payments").expect("store");
    let callers = TlsStore::new(mesh.identity(&mesh.orders), TD, "orders").expect("store");
    // a connection opened before any rotation
    let mut old_c = client(callers.client());
    let mut old_s = server(store.server());
    assert!(handshake(&mut old_c, &mut old_s).server.is_ok());
    assert_eq!(peer_certs(&old_c), vec![mesh.payments.der()]);
    let first = store.identity().serial().to_vec();

    // both sides get new certificates (the same keys, as a renewal)
    let renewed = mesh.ca.issue(
        &["spiffe://t.local/service/payments"],
        Validity::Days(1),
        Some(&mesh.payments),
    );
    store.rotate(mesh.identity(&renewed)).expect("rotated");
    let renewed_orders = mesh.ca.issue(
        &["spiffe://t.local/service/orders"],
        Validity::Days(1),
        Some(&mesh.orders),
    );
    callers
        .rotate(mesh.identity(&renewed_orders))
        .expect("rotated");
    assert_ne!(store.identity().serial(), first.as_slice());

    // a new connection sees the new certificates at once, both ways
    let mut new_c = client(callers.client());
    let mut new_s = server(store.server());
    let outcome = handshake(&mut new_c, &mut new_s);
    assert!(
        outcome.client.is_ok() && outcome.server.is_ok(),
        "{outcome:?}"
    );
    assert_eq!(peer_certs(&new_c), vec![renewed.der()]);
    assert_eq!(peer_certs(&new_s), vec![renewed_orders.der()]);

    // the connection from before still works, on its old certificates
    assert_eq!(
        send(&mut old_c, &mut old_s, b"still there?"),
        b"still there?"
    );
    assert_eq!(send(&mut old_s, &mut old_c, b"yes"), b"yes");
    assert_eq!(peer_certs(&old_c), vec![mesh.payments.der()]);
}

#[test]
fn rotation_refuses_another_service_or_trust_domain_and_changes_nothing() {
    let mesh = Mesh::new("rotation-refused");
    let store = TlsStore::new(mesh.identity(&mesh.payments), TD, "payments").expect("store");
    let before = store.identity().serial().to_vec();
    assert_eq!(
        store.rotate(mesh.identity(&mesh.orders)),
        Err(IdentityError::Service {
            found: "orders".into(),
            expected: "payments".into()
        })
    );
    let foreign = mesh.ca.issue(
        &["spiffe://other.domain/service/payments"],
        Validity::Days(1),
        None,
    );
    assert!(matches!(
        store.rotate(mesh.identity(&foreign)),
        Err(IdentityError::TrustDomain { .. })
    ));
    assert_eq!(store.identity().serial(), before.as_slice());
    assert_eq!(store.trust_domain(), TD);
    // Python's check_identity: the identity must be the sidecar's service
    assert!(matches!(
        TlsStore::new(mesh.identity(&mesh.orders), TD, "payments"),
        Err(IdentityError::Service { .. })
    ));
}

#[test]
fn a_new_ca_bundle_is_trusted_and_a_dropped_ca_is_forgotten() {
    let mesh = Mesh::new("ca-rotation");
    let (old, new) = (&mesh.ca, &mesh.other_ca);
    let both = [old.pem.as_slice(), new.pem.as_slice()].concat();
    let orders = mesh.identity(&mesh.orders); // old CA
    let newcomer = new.service("orders");
    let newcomer = Identity::from_pem(&newcomer.cert, &newcomer.key, &both).expect("identity");
    let store = TlsStore::new(mesh.identity(&mesh.payments), TD, "payments").expect("store");
    let serves = |caller: &Identity| {
        let mut c = client(client_config(caller, TD).expect("client config"));
        let mut s = server(store.server());
        let outcome = handshake(&mut c, &mut s);
        outcome.client.is_ok() && outcome.server.is_ok()
    };
    assert!(serves(&orders));
    assert!(!serves(&newcomer));
    // step 1: trust both
    let payments = Identity::from_pem(&mesh.payments.cert, &mesh.payments.key, &both);
    store.rotate(payments.expect("identity")).expect("rotated");
    assert!(serves(&orders) && serves(&newcomer));
    // step 2: a certificate from the new CA, the old CA dropped
    let renewed = new.service("payments");
    store
        .rotate(Identity::from_pem(&renewed.cert, &renewed.key, &new.pem).expect("identity"))
        .expect("rotated");
    assert!(serves(&newcomer));
    assert!(!serves(&orders));
}

// ----------------------------------------------------------------- identities

/// A PEM input: certificate chain, key or CA bundle.
type Pem<'a> = &'a [u8];

#[test]
fn identity_refuses_what_does_not_fit() {
    let mesh = Mesh::new("identity");
    let (ca, good) = (&mesh.ca, &mesh.orders);
    let stranger_key = ca.service("orders");
    let other = mesh.other_ca.service("orders");
    let expired = ca.issue(
        &["spiffe://t.local/service/orders"],
        Validity::Dates("20200101000000Z", "20200102000000Z"),
        Some(good),
    );
    let no_san = ca.issue(&[], Validity::Days(1), Some(good));
    let foreign = ca.issue(
        &["spiffe://x.local/ns/orders"],
        Validity::Days(1),
        Some(good),
    );
    let cases: Vec<(Pem, Pem, Pem, &str)> = vec![
        (&good.cert, &stranger_key.key, &ca.pem, "for another key"),
        (
            &other.cert,
            &other.key,
            &ca.pem,
            "not signed by the given CA",
        ),
        (
            &good.cert,
            &good.key,
            &mesh.other_ca.pem,
            "not signed by the given CA",
        ),
        (&expired.cert, &expired.key, &ca.pem, "expired"),
        (&no_san.cert, &no_san.key, &ca.pem, "names no SPIFFE ID"),
        (
            &foreign.cert,
            &foreign.key,
            &ca.pem,
            "names spiffe://x.local/ns/orders, not a service",
        ),
        (b"junk", &good.key, &ca.pem, "not a PEM certificate"),
        (
            &good.cert,
            b"junk",
            &ca.pem,
            "not an unencrypted PEM private key",
        ),
        (&good.cert, &good.key, &good.cert, "not a CA"),
        (&good.cert, &good.key, b"junk", "not PEM certificates"),
    ];
    for (cert, key, bundle, message) in cases {
        let err = Identity::from_pem(cert, key, bundle).expect_err(message);
        assert!(err.to_string().contains(message), "{err} / {message}");
    }
    assert!(Identity::from_pem(&good.cert, &good.key, &ca.pem).is_ok());
}

#[test]
fn identity_lifetime_and_the_clock() {
    let mesh = Mesh::new("lifetime");
    let leaf = mesh.ca.issue(
        &["spiffe://t.local/service/orders"],
        Validity::Dates("20300101000000Z", "20300101003000Z"),
        None,
    );
    // not valid yet: accepted, as by Python (peers judge it by their own clocks)
    let id = mesh.identity(&leaf);
    assert_eq!(id.not_before(), 1_893_456_000);
    assert_eq!(id.not_after(), 1_893_456_000 + 1_800);
    assert_eq!(id.renew_at(), 1_893_456_000 + 1_200);
    assert!(format!("{id:?}").contains("spiffe://t.local/service/orders"));
    // past its end it is refused; `now` is the caller's to give
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_893_457_800));
    let err = Identity::from_pem_at(&leaf.cert, &leaf.key, &mesh.ca.pem, later).expect_err("late");
    assert_eq!(
        err,
        IdentityError::Expired {
            not_after: 1_893_457_800
        }
    );
}

#[test]
fn a_chain_with_a_dns_name_and_a_spiffe_id_has_that_id() {
    let mesh = Mesh::new("extraction");
    // one URI SAN among other kinds of names: that is the SPIFFE ID (as Python)
    let leaf = mesh.ca.issue(
        &["DNS:orders", "spiffe://t.local/service/orders"],
        Validity::Days(1),
        None,
    );
    assert_eq!(
        peer_spiffe_id(&[leaf.der(), mesh.payments.der()]).as_deref(),
        Some("spiffe://t.local/service/orders")
    );
    let two = mesh.ca.issue(
        &["spiffe://t.local/service/a", "spiffe://t.local/service/b"],
        Validity::Days(1),
        None,
    );
    assert_eq!(peer_spiffe_id(&[two.der()]), None);
    let web = mesh
        .ca
        .issue(&["https://orders.example/"], Validity::Days(1), None);
    assert_eq!(peer_spiffe_id(&[web.der()]), None);
    assert_eq!(
        peer_spiffe_id(&[mesh.ca.issue(&[], Validity::Days(1), None).der()]),
        None
    );
}
