//! A tunnel: the client's and the upstream's connections after a protocol
//! switch (a 101), spliced byte for byte.
//!
//! Nothing in a tunnel is parsed: it was authorized, routed and counted once,
//! when its upgrade request was served. What the sidecar still enforces is an
//! idle timeout (no byte either way for that long closes both sides), its
//! service coming to refuse the caller (`authorization.refuse`), and it
//! counts the bytes each way as they flow. Each direction is its own pump, so
//! a peer that writes without reading cannot stall the other direction. A
//! half-close is passed on: the side that ends first has its EOF forwarded
//! (a write shutdown), and the tunnel ends when both directions have, or on
//! the first error.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::metrics::{Counter, TunnelEnd};

/// Bytes read at a time, per direction (allocated when the tunnel opens).
const CHUNK: usize = 16 * 1024;

/// What a tunnel carried and why it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spliced {
    pub to_upstream: u64,
    pub to_client: u64,
    pub end: TunnelEnd,
}

/// One direction's byte counts: the tunnel's own, and the route's metric.
pub struct Flow<'a> {
    pub moved: &'a AtomicU64,
    pub metric: &'a Counter,
}

/// When a byte last moved, in milliseconds after `origin`.
struct Activity {
    origin: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once no byte has moved for `idle`.
    async fn silent_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = self.origin + last + idle;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Copy one direction until its EOF (then shut the writer down) or an error.
async fn pump<R, W>(rd: &mut R, wr: &mut W, flow: &Flow<'_>, activity: &Activity) -> bool
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => return wr.shutdown().await.is_ok(),
            Ok(n) => n,
            Err(_) => return false,
        };
        activity.touch();
        let Some(data) = buf.get(..n) else {
            return false;
        };
        if wr.write_all(data).await.is_err() || wr.flush().await.is_err() {
            return false;
        }
        activity.touch();
        flow.moved.fetch_add(n as u64, Ordering::Relaxed);
        flow.metric.add(n as u64);
    }
}

/// Splice a client and an upstream until both sides have closed, either
/// fails, `idle` passes with no byte either way, or `cut` resolves (the
/// service came to refuse the caller).
#[allow(clippy::too_many_arguments)]
pub async fn splice<CR, CW, UR, UW, F>(
    client_rd: &mut CR,
    client_wr: &mut CW,
    up_rd: &mut UR,
    up_wr: &mut UW,
    idle: Duration,
    to_upstream: &Counter,
    to_client: &Counter,
    cut: F,
) -> Spliced
where
    CR: AsyncRead + Unpin + ?Sized,
    CW: AsyncWrite + Unpin + ?Sized,
    UR: AsyncRead + Unpin + ?Sized,
    UW: AsyncWrite + Unpin + ?Sized,
    F: std::future::Future<Output = ()>,
{
    let (up_moved, down_moved) = (AtomicU64::new(0), AtomicU64::new(0));
    let activity = Activity {
        origin: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let up_flow = Flow {
        moved: &up_moved,
        metric: to_upstream,
    };
    let down_flow = Flow {
        moved: &down_moved,
        metric: to_client,
    };
    let upward = pump(client_rd, up_wr, &up_flow, &activity);
    let downward = pump(up_rd, client_wr, &down_flow, &activity);
    let watchdog = activity.silent_for(idle);
    tokio::pin!(upward, downward, watchdog, cut);
    let (mut up_open, mut down_open) = (true, true);
    let mut first: Option<TunnelEnd> = None;
    let end = loop {
        tokio::select! {
            ok = &mut upward, if up_open => {
                up_open = false;
                if !ok {
                    break TunnelEnd::Error;
                }
                let first = *first.get_or_insert(TunnelEnd::Client);
                if !down_open {
                    break first;
                }
            }
            ok = &mut downward, if down_open => {
                down_open = false;
                if !ok {
                    break TunnelEnd::Error;
                }
                let first = *first.get_or_insert(TunnelEnd::Upstream);
                if !up_open {
                    break first;
                }
            }
            () = &mut watchdog => break TunnelEnd::Idle,
            () = &mut cut => break TunnelEnd::Refused,
        }
    };
    Spliced {
        to_upstream: up_moved.load(Ordering::Relaxed),
        to_client: down_moved.load(Ordering::Relaxed),
        end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, split, DuplexStream};

    struct Ends {
        client: DuplexStream,
        upstream: DuplexStream,
    }

    /// A tunnel between two in-memory pipes, run on the test's (paused) clock.
    fn open(idle: Duration) -> (Ends, tokio::task::JoinHandle<(Spliced, u64, u64)>) {
        let (client, client_side) = duplex(64 * 1024);
        let (upstream, up_side) = duplex(64 * 1024);
        let task = tokio::spawn(async move {
            let (mut crd, mut cwr) = split(client_side);
            let (mut urd, mut uwr) = split(up_side);
            let (tu, tc) = (Counter::default(), Counter::default());
            let never = std::future::pending();
            let s = splice(
                &mut crd, &mut cwr, &mut urd, &mut uwr, idle, &tu, &tc, never,
            )
            .await;
            (s, tu.get(), tc.get())
        });
        (Ends { client, upstream }, task)
    }

    #[tokio::test(start_paused = true)]
    async fn carries_both_ways_and_passes_a_half_close_on() {
        let (mut e, task) = open(Duration::from_secs(60));
        e.client.write_all(b"hello").await.expect("write");
        let mut got = [0u8; 5];
        e.upstream.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"hello");
        e.upstream.write_all(b"welcome!").await.expect("write");
        let mut got = [0u8; 8];
        e.client.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"welcome!");
        // the client closes its side: the upstream sees EOF, and may still answer
        e.client.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        e.upstream.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
        e.upstream.write_all(b"bye").await.expect("write");
        e.upstream.shutdown().await.expect("shutdown");
        let mut rest = Vec::new();
        e.client.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"bye");
        let (spliced, up, down) = task.await.expect("join");
        assert_eq!(
            spliced,
            Spliced {
                to_upstream: 5,
                to_client: 11,
                end: TunnelEnd::Client
            }
        );
        assert_eq!((up, down), (5, 11));
    }

    #[tokio::test(start_paused = true)]
    async fn closes_after_the_idle_timeout_and_not_before() {
        let (mut e, task) = open(Duration::from_secs(30));
        tokio::time::sleep(Duration::from_secs(20)).await;
        e.client.write_all(b"ping").await.expect("write");
        let mut got = [0u8; 4];
        e.upstream.read_exact(&mut got).await.expect("read");
        // 20 s after that byte the tunnel is still open (the timer restarted)...
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(!task.is_finished());
        // ... and 30 s of silence end it, closing both sides
        tokio::time::sleep(Duration::from_secs(11)).await;
        let (spliced, _, _) = task.await.expect("join");
        assert_eq!(spliced.end, TunnelEnd::Idle);
        assert_eq!(spliced.to_upstream, 4);
        let mut rest = Vec::new();
        e.upstream.read_to_end(&mut rest).await.expect("eof");
        e.client.read_to_end(&mut rest).await.expect("eof");
        assert!(rest.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_only_writes_does_not_stall_the_other_way() {
        let (mut e, task) = open(Duration::from_secs(60));
        // the upstream sends far more than the pipes hold, and nobody reads it yet
        let big = vec![7u8; 512 * 1024];
        let writer = tokio::spawn(async move {
            e.upstream.write_all(&big).await.expect("write");
            let mut got = [0u8; 3];
            e.upstream.read_exact(&mut got).await.expect("read");
            (e.upstream, got)
        });
        // meanwhile the client's bytes still reach the upstream
        e.client.write_all(b"abc").await.expect("write");
        let mut drained = vec![0u8; 512 * 1024];
        e.client.read_exact(&mut drained).await.expect("read");
        let (upstream, got) = writer.await.expect("join");
        assert_eq!(&got, b"abc");
        drop(upstream);
        drop(e.client);
        let (spliced, _, down) = task.await.expect("join");
        assert_eq!(down, 512 * 1024);
        assert_eq!(spliced.to_client, 512 * 1024);
    }
}
