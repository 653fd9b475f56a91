//! Upstream connections: a pool per destination, over hyper's HTTP/1.1 client.
//!
//! Pool limits (Envoy's circuit-breaker thresholds, Istio's connection pool):
//! at most `max_connections` open connections, and at most `max_pending`
//! requests waiting for one; going over answers 503 at once with
//! `x-seawall-overflow: <limit>` (see `forward`). Idle connections are kept
//! per endpoint, most recently used first, and closed after `idle_timeout`.
//!
//! Decisions are made under a short lock; connecting happens after it.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::body::ProxyBody;
use crate::tls::UpstreamTls;

/// hyper's per-connection buffer cap: the largest response head read, and the
/// most request body queued for writing (it also caps the queue at 16 pieces).
/// With a stalled upstream, this is what one streamed request holds in hyper, on
/// top of the two chunks in flight (`body::STREAM_DEPTH`): 64 KiB, like the
/// request head limit's default, against Envoy's 60 KiB of response headers.
const MAX_BUF: usize = 64 * 1024;

/// Why no connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    /// A pool limit was reached (`pending`): answer 503 with `x-seawall-overflow`.
    Overflow(&'static str),
    /// The endpoint refused, was unreachable, or failed the mTLS checks.
    Failed(String),
    /// No connection before the attempt's deadline: connecting took too long.
    Timeout,
    /// The deadline passed while waiting for a pool slot (no connection was tried).
    PoolTimeout,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Overflow(limit) => write!(f, "pool limit reached: {limit}"),
            ConnectError::Failed(why) => f.write_str(why),
            ConnectError::Timeout => f.write_str("connect timeout"),
            ConnectError::PoolTimeout => f.write_str("timed out waiting for a pooled connection"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Pool limits for one destination.
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub max_connections: usize,
    pub max_pending: usize,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Where one endpoint is.
#[derive(Debug, Clone)]
pub struct Target {
    pub key: u64,
    pub host: Arc<str>,
    pub port: u16,
    /// The resolved address when `host` is an IP literal (no lookup per connect).
    pub addr: Option<SocketAddr>,
}

impl Target {
    pub fn new(key: u64, host: &str, port: u16) -> Self {
        let addr = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port));
        Target {
            key,
            host: host.into(),
            port,
            addr,
        }
    }
}

struct Idle {
    send: http1::SendRequest<ProxyBody>,
    since: Instant,
}

/// A connection lent to one request; give it back with [`Pool::release`].
pub struct Conn {
    pub send: http1::SendRequest<ProxyBody>,
    pub key: u64,
    /// Whether it came from the idle pool (a stale one may fail before any byte is sent).
    pub reused: bool,
}

/// One destination's upstream connections.
pub struct Pool {
    idle: Mutex<HashMap<u64, Vec<Idle>>>,
    open: Arc<AtomicUsize>,
    pending: AtomicUsize,
    freed: Arc<Notify>,
    limits: PoolLimits,
    destination: Arc<str>,
}

/// Counts a connection open until its connection task ends.
struct OpenGuard {
    open: Arc<AtomicUsize>,
    freed: Arc<Notify>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
        self.freed.notify_one();
    }
}

impl Pool {
    pub fn new(destination: &str, limits: PoolLimits) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            pending: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
            limits,
            destination: destination.into(),
        }
    }

    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn idle_count(&self, key: u64) -> usize {
        self.lock_idle().get(&key).map_or(0, Vec::len)
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently pooled usable connection to `key`; stale ones are dropped.
    fn take_idle(&self, key: u64) -> Option<Conn> {
        let mut idle = self.lock_idle();
        let list = idle.get_mut(&key)?;
        while let Some(entry) = list.pop() {
            if !entry.send.is_closed()
                && entry.send.is_ready()
                && entry.since.elapsed() < self.limits.idle_timeout
            {
                return Some(Conn {
                    send: entry.send,
                    key,
                    reused: true,
                });
            }
        }
        None
    }

    /// Drop one idle connection (any endpoint) to make room; false if there was none.
    fn close_one_idle(&self) -> bool {
        let mut idle = self.lock_idle();
        for list in idle.values_mut() {
            if !list.is_empty() {
                list.remove(0);
                return true;
            }
        }
        false
    }

    /// A connection to `target`: an idle pooled one, or a new one.
    pub async fn acquire(
        &self,
        target: &Target,
        timeout: Duration,
        tls: Option<&UpstreamTls>,
    ) -> Result<Conn, ConnectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(conn) = self.take_idle(target.key) {
                return Ok(conn);
            }
            // Reserve a connection slot, or wait for one to be freed.
            let open = self.open.load(Ordering::Acquire);
            if open < self.limits.max_connections {
                if self
                    .open
                    .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    break;
                }
                continue;
            }
            if self.close_one_idle() {
                // Its connection task ends and frees the slot: wait for that below.
            } else if self.pending.load(Ordering::Acquire) >= self.limits.max_pending {
                return Err(ConnectError::Overflow("pending"));
            }
            self.pending.fetch_add(1, Ordering::AcqRel);
            let freed = self.freed.notified();
            let waited = tokio::time::timeout_at(deadline, freed).await;
            self.pending.fetch_sub(1, Ordering::AcqRel);
            if waited.is_err() {
                return Err(ConnectError::PoolTimeout);
            }
        }
        let guard = OpenGuard {
            open: self.open.clone(),
            freed: self.freed.clone(),
        };
        let connect_by = deadline.min(tokio::time::Instant::now() + self.limits.connect_timeout);
        let made = tokio::time::timeout_at(connect_by, self.connect(target, tls, guard)).await;
        match made {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        tls: Option<&UpstreamTls>,
        guard: OpenGuard,
    ) -> Result<Conn, ConnectError> {
        let where_ = || format!("{}:{}", target.host, target.port);
        let stream = match target.addr {
            Some(addr) => TcpStream::connect(addr).await,
            None => TcpStream::connect((&*target.host, target.port)).await,
        }
        .map_err(|e| ConnectError::Failed(format!("{}: {e}", where_())))?;
        let _ = stream.set_nodelay(true);
        let send = match tls {
            None => handshake(stream, guard).await,
            Some(tls) => {
                let secured = tls
                    .connect(stream, &target.host, &self.destination)
                    .await
                    .map_err(|e| ConnectError::Failed(format!("{}: {e}", where_())))?;
                handshake(secured, guard).await
            }
        }
        .map_err(|e| ConnectError::Failed(format!("{}: {e}", where_())))?;
        Ok(Conn {
            send,
            key: target.key,
            reused: false,
        })
    }

    /// Give a connection back after its exchange: pooled if still usable, else dropped.
    pub fn release(&self, conn: Conn) {
        if conn.send.is_closed() {
            return;
        }
        let mut idle = self.lock_idle();
        idle.entry(conn.key).or_default().push(Idle {
            send: conn.send,
            since: Instant::now(),
        });
        drop(idle);
        self.freed.notify_one();
    }

    /// Close idle connections to endpoints that are no longer in the set.
    pub fn retain(&self, keys: &dyn Fn(u64) -> bool) {
        self.lock_idle().retain(|k, _| keys(*k));
    }

    /// Close every idle connection (shutdown, or a config that replaced this one).
    pub fn close_idle(&self) {
        self.lock_idle().clear();
    }
}

async fn handshake<S>(
    stream: S,
    guard: OpenGuard,
) -> Result<http1::SendRequest<ProxyBody>, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, conn) = http1::Builder::new()
        .max_buf_size(MAX_BUF)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _guard = guard; // the slot is free when the connection is gone
        let _ = conn.with_upgrades().await;
    });
    Ok(send)
}
