//! mTLS in the sidecar: connections to other sidecars (client side) and the
//! inbound handshake (server side), over the rotating configs of `seawall-tls`.
use std::sync::Arc;

use rustls::pki_types::ServerName;
use seawall_tls::{check_client, check_server, Peer, TlsError, TlsStore};
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
