//! Upstream connections: a pool per destination of raw connections (plain TCP
//! or mTLS), each used by one request at a time on the request's own task
//! (`client` does the HTTP/1.1 exchange on it).
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

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_rustls::client::TlsStream;

use crate::tls::Secure;

/// Why no connection could be had.
#[derive(Debug)]
pub enum ConnectError {
    /// A pool limit was reached (`pending`): answer 503 with `x-seawall-overflow`.
    Overflow(&'static str),
    /// The endpoint refused, was unreachable, or failed the mTLS checks.
    Failed(String),
    /// Its host name did not resolve (an external host): 502 with
    /// `x-seawall-error: dns`, not retried.
    Dns(String),
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
            ConnectError::Dns(why) => f.write_str(why),
            ConnectError::Timeout => f.write_str("connect timeout"),
            ConnectError::PoolTimeout => f.write_str("timed out waiting for a pooled connection"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Pool limits for one destination.
#[derive(Debug, Clone, Copy, PartialEq)]
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

/// The byte stream of one upstream connection.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One upstream connection, lent to one request at a time; give it back with
/// [`Pool::release`] once its response was read whole.
pub struct Conn {
    pub io: Io,
    /// Bytes read from the upstream and not used yet.
    pub buf: BytesMut,
    /// Bytes to write: a request head, a small body, a chunk.
    pub wbuf: BytesMut,
    pub key: u64,
    /// Whether it came from the idle pool (a stale one may fail before any byte is sent).
    pub reused: bool,
    /// Whether it may carry another request (the last response said so and was read whole).
    pub reusable: bool,
    _open: OpenGuard,
}

impl Conn {
    /// Whether an idle connection is still usable: no byte and no end of stream
    /// waiting on it. (The TLS layer consumes a TLS 1.3 session ticket here.)
    fn idle_and_open(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        matches!(
            Pin::new(&mut self.io).poll_read(&mut cx, &mut buf),
            Poll::Pending
        ) && self.buf.is_empty()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One destination's upstream connections.
pub struct Pool {
    idle: Mutex<HashMap<u64, Vec<Idle>>>,
    open: Arc<AtomicUsize>,
    pending: AtomicUsize,
    freed: Arc<Notify>,
    /// Changed in place by a new config (open connections carry on).
    limits: std::sync::RwLock<PoolLimits>,
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

/// A TCP connection to `host:port` (`addr`: already resolved). A name is
/// resolved on its own, so that one that does not resolve
/// ([`ConnectError::Dns`]) is told apart from an address that refuses; each
/// address is tried in the resolver's order until one answers.
pub async fn dial(
    host: &str,
    port: u16,
    addr: Option<std::net::SocketAddr>,
) -> Result<TcpStream, ConnectError> {
    let addrs: Vec<std::net::SocketAddr> = match addr {
        Some(addr) => vec![addr],
        None => tokio::net::lookup_host((host, port))
            .await
            .map(Iterator::collect)
            .unwrap_or_default(),
    };
    if addrs.is_empty() {
        return Err(ConnectError::Dns(format!(
            "{host}: the name does not resolve"
        )));
    }
    let mut failure = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failure = Some(e),
        }
    }
    let why = failure.map_or_else(|| "no address".to_owned(), |e| e.to_string());
    Err(ConnectError::Failed(format!("{host}:{port}: {why}")))
}

impl Pool {
    pub fn new(destination: &str, limits: PoolLimits) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            open: Arc::new(AtomicUsize::new(0)),
            pending: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
            limits: std::sync::RwLock::new(limits),
            destination: destination.into(),
        }
    }

    /// The limits of the moment.
    pub fn limits(&self) -> PoolLimits {
        *self.limits.read().unwrap_or_else(|e| e.into_inner())
    }

    /// New limits (a new config): connections open and pending carry on, the
    /// next ones are counted against these.
    pub fn set_limits(&self, limits: PoolLimits) {
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
        // a larger limit may admit a waiter now
        self.freed.notify_waiters();
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
        let idle_timeout = self.limits().idle_timeout;
        let mut idle = self.lock_idle();
        let list = idle.get_mut(&key)?;
        while let Some(mut entry) = list.pop() {
            if entry.since.elapsed() < idle_timeout && entry.conn.idle_and_open() {
                entry.conn.reused = true;
                return Some(entry.conn);
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
        tls: Option<Secure<'_>>,
    ) -> Result<Conn, ConnectError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(conn) = self.take_idle(target.key) {
                return Ok(conn);
            }
            // Reserve a connection slot, or wait for one to be freed.
            let open = self.open.load(Ordering::Acquire);
            if open < self.limits().max_connections {
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
            } else if self.pending.load(Ordering::Acquire) >= self.limits().max_pending {
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
        let connect_by = deadline.min(tokio::time::Instant::now() + self.limits().connect_timeout);
        let made = tokio::time::timeout_at(connect_by, self.connect(target, tls, guard)).await;
        match made {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        tls: Option<Secure<'_>>,
        guard: OpenGuard,
    ) -> Result<Conn, ConnectError> {
        let where_ = || format!("{}:{}", target.host, target.port);
        let stream = dial(&target.host, target.port, target.addr).await?;
        let _ = stream.set_nodelay(true);
        let io = match tls {
            None => Io::Plain(stream),
            Some(Secure::Mesh(tls)) => Io::Tls(Box::new(
                tls.connect(stream, &target.host, &self.destination)
                    .await
                    .map_err(|e| ConnectError::Failed(format!("{}: {e}", where_())))?,
            )),
            Some(Secure::Origin(tls)) => Io::Tls(Box::new(
                tls.connect(stream, &self.destination)
                    .await
                    .map_err(|e| ConnectError::Failed(format!("{}: TLS: {e}", where_())))?,
            )),
        };
        Ok(Conn {
            io,
            buf: BytesMut::new(),
            wbuf: BytesMut::new(),
            key: target.key,
            reused: false,
            reusable: true,
            _open: guard,
        })
    }

    /// Give a connection back after its exchange: pooled if still usable, else closed.
    pub fn release(&self, conn: Conn) {
        if !conn.reusable {
            return;
        }
        let mut idle = self.lock_idle();
        idle.entry(conn.key).or_default().push(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        self.freed.notify_one();
    }

    /// Close the idle connections that the upstream closed or that sat unused past
    /// the idle timeout (a freed slot wakes a request waiting for one).
    ///
    /// A connection idle for a second or more also gives back its buffers (up to
    /// 16 KiB read and 16 KiB write each): under load a connection is reused within
    /// milliseconds and keeps them, at rest the pool holds sockets only.
    pub fn sweep(&self) {
        let idle_timeout = self.limits().idle_timeout;
        let mut idle = self.lock_idle();
        for list in idle.values_mut() {
            list.retain_mut(|entry| {
                let age = entry.since.elapsed();
                if age >= Duration::from_secs(1) && entry.conn.buf.is_empty() {
                    entry.conn.buf = BytesMut::new();
                    entry.conn.wbuf = BytesMut::new();
                }
                age < idle_timeout && entry.conn.idle_and_open()
            });
        }
        idle.retain(|_, list| !list.is_empty());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(idle_timeout: Duration) -> Pool {
        Pool::new(
            "svc",
            PoolLimits {
                max_connections: 4,
                max_pending: 4,
                connect_timeout: Duration::from_secs(1),
                idle_timeout,
            },
        )
    }

    #[tokio::test]
    async fn idle_connections_the_upstream_closed_are_swept_and_never_lent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let target = Target::new(7, "127.0.0.1", port);
        let pool = pool(Duration::from_secs(60));
        let conn = pool
            .acquire(&target, Duration::from_secs(1), None)
            .await
            .expect("connected");
        let (server_side, _) = listener.accept().await.expect("accept");
        assert!(!conn.reused);
        pool.release(conn);
        assert_eq!((pool.idle_count(7), pool.open_connections()), (1, 1));
        pool.sweep(); // still open: kept
        assert_eq!(pool.idle_count(7), 1);
        drop(server_side);
        tokio::time::sleep(Duration::from_millis(50)).await;
        pool.sweep();
        assert_eq!((pool.idle_count(7), pool.open_connections()), (0, 0));
    }

    #[tokio::test]
    async fn a_closed_idle_connection_is_not_lent_and_an_open_one_is() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = Target::new(1, "127.0.0.1", listener.local_addr().expect("addr").port());
        let pool = pool(Duration::from_secs(60));
        let first = pool
            .acquire(&target, Duration::from_secs(1), None)
            .await
            .expect("a");
        let (first_server, _) = listener.accept().await.expect("accept");
        pool.release(first);
        let again = pool
            .acquire(&target, Duration::from_secs(1), None)
            .await
            .expect("b");
        assert!(again.reused, "an open idle connection is lent again");
        pool.release(again);
        drop(first_server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let fresh = pool
            .acquire(&target, Duration::from_secs(1), None)
            .await
            .expect("c");
        assert!(!fresh.reused, "the closed one was dropped, a new one made");
    }

    #[tokio::test]
    async fn idle_connections_past_the_idle_timeout_are_swept() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let target = Target::new(1, "127.0.0.1", listener.local_addr().expect("addr").port());
        let pool = pool(Duration::from_millis(1));
        let conn = pool
            .acquire(&target, Duration::from_secs(1), None)
            .await
            .expect("a");
        let _server = listener.accept().await.expect("accept");
        pool.release(conn);
        tokio::time::sleep(Duration::from_millis(5)).await;
        pool.sweep();
        assert_eq!((pool.idle_count(1), pool.open_connections()), (0, 0));
    }
}
