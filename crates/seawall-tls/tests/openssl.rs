//! Against OpenSSL over real loopback sockets: the Python sidecars' TLS stack.
//!
//! During the migration a Rust sidecar serves Python ones (OpenSSL clients)
//! and calls them (OpenSSL servers), so both directions are tried with the
//! `openssl` command line, as `tests/proxy/test_sidecar_mtls.py` does with
//! `openssl s_client`.
#![allow(clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConfig, ServerConnection};
use seawall_tls::{
    check_client, check_server, client_config, server_config, Identity, Peer, TlsError,
};
use support::{Ca, Leaf, TempDir, Validity, TD};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Pki {
    _dir: TempDir,
    ca: Ca,
    orders: Leaf,
    payments: Leaf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = TempDir::new(name);
        let ca = Ca::new(dir.path(), "ca");
        let orders = ca.service("orders");
        let payments = ca.service("payments");
        Pki {
            _dir: dir,
            ca,
            orders,
            payments,
        }
    }

    fn identity(&self, leaf: &Leaf) -> Identity {
        Identity::from_pem(&leaf.cert, &leaf.key, &self.ca.pem).expect("a valid identity")
    }
}

/// Accept one connection with `config`: the caller if admitted (it is then sent a greeting).
fn serve_once(config: Arc<ServerConfig>) -> (u16, JoinHandle<Result<Peer, TlsError>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let handle = thread::spawn(move || {
        let (mut sock, _) = listener.accept().expect("a connection");
        sock.set_read_timeout(Some(TIMEOUT))
            .expect("a read timeout");
        sock.set_write_timeout(Some(TIMEOUT))
            .expect("a write timeout");
        let mut conn = ServerConnection::new(config).expect("a server connection");
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        let peer = check_client(conn.peer_certificates().unwrap_or_default(), TD, |s| {
            s == "orders"
        })?;
        let greeting = format!("HTTP/1.1 200 OK\r\n\r\nhello {}\n", peer.spiffe_id);
        conn.writer().write_all(greeting.as_bytes())?;
        conn.send_close_notify();
        while conn.wants_write() {
            conn.complete_io(&mut sock)?;
        }
        Ok(peer)
    });
    (port, handle)
}

/// Wait for `child`, killing it after the timeout.
fn finish(mut child: Child) -> String {
    let start = Instant::now();
    while child.try_wait().expect("the child's status").is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("the child's output");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// `openssl s_client` to the port, as a sidecar of the Python mesh would connect.
fn s_client(port: u16, ca: &Ca, leaf: Option<&Leaf>, version: &str) -> String {
    let connect = format!("127.0.0.1:{port}");
    let mut argv = vec![
        "s_client",
        "-connect",
        &connect,
        version,
        "-CAfile",
        path(&ca.pem_path),
        "-ign_eof",
        "-verify_return_error",
        "-alpn",
        "http/1.1",
    ];
    if let Some(leaf) = leaf {
        argv.extend(["-cert", path(&leaf.cert_path), "-key", path(&leaf.key_path)]);
    }
    let child = Command::new("openssl")
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client runs");
    finish(child)
}

#[test]
fn openssl_client_with_a_mesh_certificate_is_served_over_tls13() {
    let pki = Pki::new("s-client-good");
    let config = server_config(&pki.identity(&pki.payments), TD).expect("server config");
    let (port, server) = serve_once(config);
    let out = s_client(port, &pki.ca, Some(&pki.orders), "-tls1_3");
    let peer = server.join().expect("the server thread");
    assert_eq!(peer.map(|p| p.service), Ok("orders".to_owned()), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}"); // OpenSSL trusts our chain
    assert!(
        out.contains("hello spiffe://t.local/service/orders"),
        "{out}"
    );
}

#[test]
fn openssl_client_offering_tls12_is_refused() {
    let pki = Pki::new("s-client-tls12");
    let config = server_config(&pki.identity(&pki.payments), TD).expect("server config");
    let (port, server) = serve_once(config);
    let out = s_client(port, &pki.ca, Some(&pki.orders), "-tls1_2");
    let refusal = server
        .join()
        .expect("the server thread")
        .expect_err("refused");
    assert_eq!(refusal.reason(), "handshake", "{refusal:?}");
    assert!(!out.contains("hello"), "{out}");
}

#[test]
fn openssl_client_without_a_certificate_is_refused() {
    let pki = Pki::new("s-client-no-cert");
    let config = server_config(&pki.identity(&pki.payments), TD).expect("server config");
    let (port, server) = serve_once(config);
    let out = s_client(port, &pki.ca, None, "-tls1_3");
    let refusal = server
        .join()
        .expect("the server thread")
        .expect_err("refused");
    assert_eq!(
        refusal,
        TlsError::Handshake(rustls::Error::NoCertificatesPresented),
        "{out}"
    );
    assert!(!out.contains("hello"), "{out}");
}

#[test]
fn openssl_client_of_another_trust_domain_is_refused_as_identity() {
    let pki = Pki::new("s-client-foreign");
    let foreign = pki.ca.issue(
        &["spiffe://other.domain/service/orders"],
        Validity::Days(1),
        None,
    );
    let config = server_config(&pki.identity(&pki.payments), TD).expect("server config");
    let (port, server) = serve_once(config);
    let out = s_client(port, &pki.ca, Some(&foreign), "-tls1_3");
    let refusal = server
        .join()
        .expect("the server thread")
        .expect_err("refused");
    assert_eq!(refusal.reason(), "identity", "{refusal:?}");
    assert!(!out.contains("hello"), "{out}");
}

/// Kills the `openssl s_server` if the test ends early.
struct Reaper(Option<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_sidecar_client_calls_an_openssl_server() {
    let pki = Pki::new("s-server");
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        probe.local_addr().expect("its address").port()
    };
    let accept = format!("127.0.0.1:{}", port);
    let mut child = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &accept,
            "-naccept",
            "1",
            "-tls1_3",
            "-cert",
            path(&pki.payments.cert_path),
            "-key",
            path(&pki.payments.key_path),
            "-CAfile",
            path(&pki.ca.pem_path),
            "-Verify",
            "1",
            "-verify_return_error",
            "-alpn",
            "http/1.1",
            "-www",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server runs");
    let stdout = child.stdout.take().expect("its stdout");
    let _reaper = Reaper(Some(child));
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|line| line.is_ok_and(|l| l.contains("ACCEPT")));
    assert!(ready, "s_server did not start");

    let config = client_config(&pki.identity(&pki.orders), TD).expect("client config");
    let name = ServerName::try_from("127.0.0.1").expect("an IP address");
    let mut conn = ClientConnection::new(config, name).expect("a client connection");
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connected");
    sock.set_read_timeout(Some(TIMEOUT))
        .expect("a read timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).expect("the handshake");
    }
    assert_eq!(conn.alpn_protocol(), Some(b"http/1.1".as_slice()));
    let certs = conn.peer_certificates().unwrap_or_default();
    assert_eq!(
        check_server(certs, TD, "payments"),
        Ok("spiffe://t.local/service/payments".to_owned())
    );
    assert_eq!(
        check_server(certs, TD, "inventory").map_err(|e| e.reason()),
        Err("identity")
    );
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.0\r\n\r\n")
        .expect("the request");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer); // s_server -www may close without close_notify
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 200 ok"), "{answer}");
    assert!(answer.contains("TLSv1.3"), "{answer}");
}
