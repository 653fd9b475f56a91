//! TLS in the sidecar: mTLS to other sidecars (client side) and the inbound
//! handshake (server side), over the rotating configs of `seawall-tls`; and
//! TLS originated to external hosts ([`OriginTls`]).
use std::sync::Arc;

use rustls::pki_types::ServerName;
use seawall_tls::{check_client, check_server, Peer, TlsError, TlsStore};

use crate::runtime::BuildError;
use crate::spec;
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::metrics::Metrics;

/// The sidecar's side of mTLS to other sidecars.
#[derive(Clone)]
pub struct UpstreamTls {
    pub store: Arc<TlsStore>,
    pub metrics: Arc<Metrics>,
}

impl UpstreamTls {
    /// Handshake with `destination`'s sidecar at `host`; its certificate must name that service.
    pub async fn connect(
        &self,
        stream: TcpStream,
        host: &str,
        destination: &str,
    ) -> Result<client::TlsStream<TcpStream>, TlsError> {
        let result = self.handshake(stream, host, destination).await;
        if let Err(e) = &result {
            self.metrics
                .upstream_tls_failures
                .labels(&[destination, e.reason()])
                .inc();
        }
        result
    }

    async fn handshake(
        &self,
        stream: TcpStream,
        host: &str,
        destination: &str,
    ) -> Result<client::TlsStream<TcpStream>, TlsError> {
        // The endpoint's address, as Python's client does: an IP literal sends no SNI.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|_| TlsError::Io(std::io::ErrorKind::InvalidInput))?;
        let connector = TlsConnector::from(self.store.client());
        let secured = connector
            .connect(name, stream)
            .await
            .map_err(TlsError::from)?;
        let certs = secured.get_ref().1.peer_certificates().unwrap_or(&[]);
        check_server(certs, self.store.trust_domain(), destination)?;
        Ok(secured)
    }
}

/// TLS from the sidecar to an external host (`external:` with `tls: true`):
/// the host's certificate checked against public roots and its name.
pub struct OriginTls {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for OriginTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl OriginTls {
    /// Read the roots (`ca_file`, else `SSL_CERT_FILE`, else the system
    /// bundle) once, when the destination is built.
    pub fn new(
        destination: &str,
        spec: &spec::OriginTls,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, BuildError> {
        let fail = |e: seawall_tls::OriginError| BuildError(format!("{destination}: tls: {e}"));
        let path = match &spec.ca_file {
            Some(file) => std::path::PathBuf::from(file),
            None => seawall_tls::system_roots(
                std::env::var_os("SSL_CERT_FILE").map(Into::into),
                std::path::Path::exists,
            )
            .map_err(fail)?,
        };
        let roots = seawall_tls::read_roots(&path).map_err(fail)?;
        Ok(OriginTls {
            config: seawall_tls::origin_config(roots).map_err(fail)?,
            name: seawall_tls::server_name(&spec.server_name).map_err(fail)?,
            metrics: metrics.clone(),
        })
    }

    /// The handshake with the external host behind `destination`.
    pub async fn connect(
        &self,
        stream: TcpStream,
        destination: &str,
    ) -> Result<client::TlsStream<TcpStream>, std::io::Error> {
        let connector = TlsConnector::from(self.config.clone());
        let result = connector.connect(self.name.clone(), stream).await;
        if result.is_err() {
            self.metrics
                .upstream_tls_failures
                .labels(&[destination, "origin"])
                .inc();
        }
        result
    }
}

/// How a connection to an upstream is secured, if it is.
#[derive(Clone, Copy)]
pub enum Secure<'a> {
    /// mTLS to another sidecar.
    Mesh(&'a UpstreamTls),
    /// TLS to an external host.
    Origin(&'a OriginTls),
}

/// The inbound handshake: the caller's identity, checked against the mesh's services.
pub async fn accept(
    store: &TlsStore,
    stream: TcpStream,
    is_service: impl Fn(&str) -> bool,
) -> Result<(server::TlsStream<TcpStream>, Option<Peer>), TlsError> {
    let acceptor = TlsAcceptor::from(store.server());
    let secured = acceptor.accept(stream).await.map_err(TlsError::from)?;
    let certs = secured.get_ref().1.peer_certificates();
    let peer = match certs {
        None | Some([]) => None,
        Some(certs) => Some(check_client(certs, store.trust_domain(), is_service)?),
    };
    Ok((secured, peer))
}
