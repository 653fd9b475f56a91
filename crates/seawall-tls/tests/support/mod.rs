//! Real certificates from the `openssl` command line, and TLS connections pumped in memory.
//!
//! [`Ca`] is a mesh CA as `seawall.control.ca` makes one (EC P-256,
//! `CA:TRUE`, `keyCertSign`) in a temporary directory, issuing leaves as it
//! does (critical URI SAN, `CA:FALSE`, `digitalSignature`, `serverAuth` and
//! `clientAuth`), plus the ones it never would (any SAN, none, any dates),
//! like `tests/tlsutil.py`'s `forge`. [`handshake`] and [`send`] move TLS
//! records between two rustls connections without sockets.
#![allow(dead_code)] // each test file uses its own part
#![allow(clippy::expect_used)]

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, ServerConfig,
    ServerConnection, SignatureScheme, SupportedProtocolVersion,
};

pub const TD: &str = "t.local";

/// A directory under the system's temporary one, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("seawall-tls-{}-{n}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line runs");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn new_key(dir: &Path, file: &str) {
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            file,
        ],
    );
}

/// How long a leaf is valid.
#[derive(Clone, Copy)]
pub enum Validity {
    /// From now, for this many days.
    Days(u32),
    /// From, to (`YYYYMMDDHHMMSSZ`).
    Dates(&'static str, &'static str),
}

/// A leaf certificate and its key, as PEM bytes and as files.
pub struct Leaf {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Leaf {
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(&self.cert).expect("a PEM certificate")
    }
}

/// A CA in its own directory (not tied to a trust domain, as the mesh's).
pub struct Ca {
    dir: PathBuf,
    pub pem: Vec<u8>,
    pub pem_path: PathBuf,
    next: AtomicU32,
}

impl Ca {
    pub fn new(root: &Path, name: &str) -> Ca {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("issued")).expect("the CA directory");
        fs::write(dir.join("index.txt"), b"").expect("index.txt");
        fs::write(dir.join("serial"), b"1000\n").expect("serial");
        let config = format!(
            "[ req ]\n\
             distinguished_name = dn\n\
             prompt = no\n\
             [ dn ]\n\
             O = seawall\n\
             CN = seawall mesh CA {name}\n\
             [ v3_ca ]\n\
             basicConstraints = critical, CA:TRUE, pathlen:0\n\
             keyUsage = critical, keyCertSign, cRLSign\n\
             subjectKeyIdentifier = hash\n\
             [ ca ]\n\
             default_ca = mesh\n\
             [ mesh ]\n\
             dir = {dir}\n\
             database = $dir/index.txt\n\
             new_certs_dir = $dir/issued\n\
             serial = $dir/serial\n\
             certificate = $dir/ca.pem\n\
             private_key = $dir/ca-key.pem\n\
             default_md = sha256\n\
             policy = anything\n\
             unique_subject = no\n\
             copy_extensions = none\n\
             email_in_dn = no\n\
             [ anything ]\n\
             commonName = optional\n",
            dir = dir.display()
        );
        fs::write(dir.join("ca.cnf"), config).expect("ca.cnf");
        new_key(&dir, "ca-key.pem");
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-new",
                "-config",
                "ca.cnf",
                "-extensions",
                "v3_ca",
                "-key",
                "ca-key.pem",
                "-days",
                "3650",
                "-out",
                "ca.pem",
            ],
        );
        let pem_path = dir.join("ca.pem");
        let pem = fs::read(&pem_path).expect("ca.pem");
        Ca {
            dir,
            pem,
            pem_path,
            next: AtomicU32::new(0),
        }
    }

    /// A leaf for `service` of trust domain `t.local`, valid a day, with a new key.
    pub fn service(&self, service: &str) -> Leaf {
        let uri = format!("spiffe://{TD}/service/{service}");
        self.issue(&[&uri], Validity::Days(1), None)
    }

    /// A leaf with these URI SANs (`DNS:x` for a DNS name; none: no SAN extension), dates and key
    /// (`same_key_as`, or a new one).
    pub fn issue(&self, uris: &[&str], validity: Validity, same_key_as: Option<&Leaf>) -> Leaf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.join(format!("leaf{n}"));
        fs::create_dir_all(&dir).expect("the leaf directory");
        let key_path = dir.join("key.pem");
        match same_key_as {
            Some(leaf) => {
                fs::copy(&leaf.key_path, &key_path).expect("the key copied");
            }
            None => new_key(&dir, "key.pem"),
        }
        let cnf = self.dir.join("ca.cnf");
        let cnf = cnf.to_str().expect("a UTF-8 path");
        openssl(
            &dir,
            &[
                "req", "-new", "-config", cnf, "-key", "key.pem", "-subj", "/CN=leaf", "-out",
                "leaf.csr",
            ],
        );
        let mut ext = String::from(
            "[ leaf ]\n\
             basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature\n\
             extendedKeyUsage = serverAuth, clientAuth\n",
        );
        if !uris.is_empty() {
            let names: Vec<String> = uris
                .iter()
                .map(|u| match u.strip_prefix("DNS:") {
                    Some(dns) => format!("DNS:{dns}"),
                    None => format!("URI:{u}"),
                })
                .collect();
            ext.push_str(&format!(
                "subjectAltName = critical, {}\n",
                names.join(", ")
            ));
        }
        fs::write(dir.join("leaf.ext"), ext).expect("leaf.ext");
        let mut args = vec![
            "ca",
            "-batch",
            "-config",
            cnf,
            "-notext",
            "-in",
            "leaf.csr",
            "-out",
            "cert.pem",
            "-extfile",
            "leaf.ext",
            "-extensions",
            "leaf",
        ];
        let days;
        match validity {
            Validity::Days(n) => {
                days = n.to_string();
                args.extend(["-days", &days]);
            }
            Validity::Dates(from, to) => args.extend(["-startdate", from, "-enddate", to]),
        }
        openssl(&dir, &args);
        let cert_path = dir.join("cert.pem");
        Leaf {
            cert: fs::read(&cert_path).expect("cert.pem"),
            key: fs::read(&key_path).expect("key.pem"),
            cert_path,
            key_path,
        }
    }
}

// ----------------------------------------------------------------- connections

/// A client connection to a sidecar at an IP address (no SNI, as Python's).
pub fn client(config: Arc<ClientConfig>) -> Connection {
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    ClientConnection::new(config, name)
        .expect("a client connection")
        .into()
}

pub fn server(config: Arc<ServerConfig>) -> Connection {
    ServerConnection::new(config)
        .expect("a server connection")
        .into()
}

/// How a handshake ended, on each side.
#[derive(Debug)]
pub struct Outcome {
    pub client: Result<(), rustls::Error>,
    pub server: Result<(), rustls::Error>,
}

/// Move records both ways until neither side has anything to say (or both failed).
pub fn handshake(client: &mut Connection, server: &mut Connection) -> Outcome {
    let (mut client_error, mut server_error) = (None, None);
    for _ in 0..64 {
        let sent = transfer(client, server, &mut server_error);
        let answered = transfer(server, client, &mut client_error);
        if sent == 0 && answered == 0 {
            break;
        }
    }
    let done = |error: Option<rustls::Error>, conn: &Connection| match error {
        Some(err) => Err(err),
        None if conn.is_handshaking() => Err(rustls::Error::General("handshake stalled".into())),
        None => Ok(()),
    };
    Outcome {
        client: done(client_error, client),
        server: done(server_error, server),
    }
}

/// `from`'s pending records into `to` (the first error `to` meets is kept).
fn transfer(
    from: &mut Connection,
    to: &mut Connection,
    error: &mut Option<rustls::Error>,
) -> usize {
    let mut records = Vec::new();
    while from.wants_write() {
        match from.write_tls(&mut records) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let mut rest = records.as_slice();
    while !rest.is_empty() {
        match to.read_tls(&mut rest) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Err(err) = to.process_new_packets() {
            error.get_or_insert(err);
            break;
        }
    }
    records.len()
}

/// Application data from `from` to `to`: what `to` reads.
pub fn send(from: &mut Connection, to: &mut Connection, data: &[u8]) -> Vec<u8> {
    from.writer().write_all(data).expect("plaintext buffered");
    let mut error = None;
    transfer(from, to, &mut error);
    assert!(error.is_none(), "{error:?}");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match to.reader().read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(_) => break, // WouldBlock: everything sent was read
        }
    }
    got
}

// ----------------------------------------------------------------- test peers

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A test client that trusts any server and presents `leaf` (or no certificate).
pub fn raw_client(
    leaf: Option<&Leaf>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())));
    let config = match leaf {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.der()], key(leaf))
            .expect("a client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A test server that asks for no client certificate.
pub fn raw_server(
    leaf: &Leaf,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der()], key(leaf))
        .expect("a server certificate");
    Arc::new(config)
}

fn key(leaf: &Leaf) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_slice(&leaf.key).expect("a PEM key")
}

/// Trusts every server certificate (the handshake signatures are still checked).
#[derive(Debug)]
struct AnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
