//! Listeners: accept loops for inbound (mTLS, strict or permissive on one
//! port), outbound (the HTTP proxy), per-destination ports, and admin.
use std::net::SocketAddr;
use std::sync::Arc;

use seawall_tls::{admit, MtlsMode, TlsStore, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::forward::Down;
use crate::state::State;

/// The client's address as X-Forwarded-For carries it.
fn peer_text(peer: SocketAddr) -> Option<http::HeaderValue> {
    http::HeaderValue::from_str(&peer.ip().to_string()).ok()
}

/// What a listener serves.
#[derive(Debug, Clone)]
pub enum Role {
    Inbound,
    Outbound,
    /// Every request goes to this destination.
    Upstream(Arc<str>),
    Admin,
}

/// Bind a listening socket (SO_REUSEADDR, and SO_REUSEPORT when asked).
pub fn bind(host: &str, port: u16, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let ip: std::net::IpAddr = match host.trim_start_matches('[').trim_end_matches(']').parse() {
        Ok(ip) => ip,
        Err(_) if host == "localhost" => std::net::IpAddr::from([127, 0, 0, 1]),
        Err(_) => std::net::IpAddr::from([0, 0, 0, 0]),
    };
    let addr = SocketAddr::new(ip, port);
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    let listener = socket.listen(1024)?;
    listener.into_std()
}

/// Accept connections until draining starts.
pub async fn accept_loop(
    listener: TcpListener,
    role: Role,
    state: Arc<State>,
    tls: Option<(Arc<TlsStore>, MtlsMode)>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = state.drained() => return,
        };
        let Ok((stream, peer)) = accepted else {
            // Out of file descriptors, or a connection reset before accept: go on.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let role = role.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match role {
                Role::Admin => crate::admin::serve(stream, state).await,
                Role::Outbound => {
                    let down = Down {
                        peer_text: peer_text(peer),
                        ..Down::default()
                    };
                    crate::server::serve(stream, state, down).await;
                }
                Role::Upstream(dest) => {
                    let down = Down {
                        peer_text: peer_text(peer),
                        destination: Some(dest),
                        ..Down::default()
                    };
                    crate::server::serve(stream, state, down).await;
                }
                Role::Inbound => inbound(stream, peer, state, tls).await,
            }
        });
    }
}

async fn inbound(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<State>,
    tls: Option<(Arc<TlsStore>, MtlsMode)>,
) {
    let down = Down {
        inbound: true,
        peer_text: peer_text(peer),
        ..Down::default()
    };
    let Some((store, mode)) = tls else {
        return crate::server::serve(stream, state, down).await;
    };
    // mTLS and plaintext on one port: the first byte tells a TLS handshake.
    let mut first = [0u8; 1];
    let timeout = std::time::Duration::from_secs_f64(state.runtime().spec.limits.header_timeout);
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    let metrics = state.metrics.clone();
    match admit(mode, first[0]) {
        Err(e) => {
            metrics.tls_refused.labels(&[e.reason()]).inc();
        }
        Ok(Transport::Plaintext) => {
            metrics.inbound_connections.labels(&["plaintext"]).inc();
            crate::server::serve(stream, state, down).await;
        }
        Ok(Transport::Mtls) => {
            let accepted = {
                let rt = state.runtime();
                let known = |s: &str| {
                    rt.spec
                        .config
                        .get("services")
                        .and_then(|v| v.get(s))
                        .is_some()
                };
                tokio::time::timeout(timeout, crate::tls::accept(&store, stream, known)).await
            };
            match accepted {
                Ok(Ok((mut secured, peer_identity))) => {
                    // (the runtime of the handshake's end: refusals apply at once)
                    let rt = state.runtime();
                    let caller = peer_identity.as_ref().map(|p| p.service.as_str());
                    if rt.refuses(caller, "handshake") {
                        // closed before any request is read: close_notify, then FIN
                        let _ = tokio::time::timeout(timeout, secured.shutdown()).await;
                        return;
                    }
                    drop(rt);
                    metrics.inbound_connections.labels(&["mtls"]).inc();
                    let mut down = down;
                    if let Some(p) = peer_identity {
                        down.peer_id = Some(p.spiffe_id.into());
                        down.peer_service = Some(p.service.into());
                    }
                    crate::server::serve(secured, state, down).await;
                }
                Ok(Err(e)) => metrics.tls_refused.labels(&[e.reason()]).inc(),
                Err(_) => metrics.tls_refused.labels(&["handshake"]).inc(),
            }
        }
    }
}
