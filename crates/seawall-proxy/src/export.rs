//! Spans out of the sidecar: a bounded queue, batches, OTLP/HTTP protobuf.
//!
//! The request path only ever calls [`Queue::push`], which never waits: a
//! full queue drops the request's spans and counts them
//! (`seawall_trace_spans_total{outcome="dropped_queue_full"}`). One task on
//! the sidecar's runtime ([`Exporter::spawn`]), woken when a batch is full
//! or `tracing.interval` has passed, takes what is queued, writes it as OTLP
//! `ExportTraceServiceRequest`s of up to `tracing.batch` spans and posts them
//! to `tracing.endpoint` on a kept-alive connection. As the OTLP
//! specification says, only 429, 502, 503 and 504 (and a connection that
//! failed) are retried, after `Retry-After` when the answer has one, else
//! with exponential backoff; any other answer drops the batch. A collector
//! that is down therefore costs the request path nothing: the task waits,
//! the queue fills, and new spans are dropped and counted until it drains.
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use seawall_otlp::stream::EncodedSpan;
use seawall_otlp::{KeyValue, Scope};
use tokio::sync::Notify;

use crate::control;
use crate::metrics::Metrics;

/// Tries of one batch (the first and the retries).
const MAX_TRIES: u32 = 5;
/// The first retry's wait, doubled each time (without `Retry-After`).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a retry, `Retry-After` included.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One post, connecting included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the request path and the exporter share.
///
/// Spans wait in a buffer behind a mutex (held for a push, or for the
/// exporter to take the whole buffer), and the exporter is woken only when
/// a batch is full (or for a flush): once per `batch` spans, not once per
/// request, as OpenTelemetry's batch span processor does. Waking a parked
/// thread per request (an eventfd write and a context switch on the
/// request's core) cost the sidecar half its requests/s at 100% sampling.
#[derive(Debug)]
struct Shared {
    buffer: Mutex<Vec<EncodedSpan>>,
    capacity: usize,
    /// Spans in the buffer that wake the exporter (`tracing.batch`).
    batch: AtomicUsize,
    wake: Notify,
    /// A flush asked: export what is buffered now.
    flush: AtomicBool,
    /// Flushes answered so far (a flush waits for this to move).
    flushed: AtomicU64,
    dropped: AtomicU64,
}

/// The request path's end of the queue.
#[derive(Debug, Clone)]
pub struct Queue {
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

/// The exporter's end of the queue.
#[derive(Debug)]
pub struct Receiver(Arc<Shared>);

impl Receiver {
    /// Everything buffered, if anything is (for tests).
    pub fn try_recv(&mut self) -> Option<Vec<EncodedSpan>> {
        let taken = std::mem::take(&mut *lock(&self.0.buffer));
        (!taken.is_empty()).then_some(taken)
    }
}

impl Queue {
    /// A queue of at most `spans` spans.
    pub fn new(spans: usize, metrics: Arc<Metrics>) -> (Queue, Receiver) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::new()),
            capacity: spans.max(1),
            batch: AtomicUsize::new(usize::MAX),
            wake: Notify::new(),
            flush: AtomicBool::new(false),
            flushed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let queue = Queue {
            shared: shared.clone(),
            metrics,
        };
        (queue, Receiver(shared))
    }

    /// Hand one request's spans over, never waiting: dropped (and counted)
    /// when the queue is full.
    pub fn push(&self, spans: Vec<EncodedSpan>) {
        let shared = &*self.shared;
        let n = spans.len();
        let filled = {
            let mut buffer = lock(&shared.buffer);
            if buffer.len() + n > shared.capacity {
                None
            } else {
                if buffer.capacity() == 0 {
                    buffer.reserve(shared.capacity.min(4096));
                }
                buffer.extend(spans);
                Some(buffer.len())
            }
        };
        match filled {
            None => {
                shared.dropped.fetch_add(n as u64, Ordering::Relaxed);
                self.metrics
                    .spans
                    .labels(&["dropped_queue_full"])
                    .add(n as u64);
            }
            // the push that fills a batch wakes the exporter; the others do not
            Some(len) => {
                let batch = shared.batch.load(Ordering::Relaxed);
                if len >= batch && len - n < batch {
                    shared.wake.notify_one();
                }
            }
        }
    }

    /// Spans dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Wait (up to `timeout`) until what is queued now was exported or given up.
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let before = shared.flushed.load(Ordering::Acquire);
        shared.flush.store(true, Ordering::Release);
        shared.wake.notify_one();
        let deadline = std::time::Instant::now() + timeout;
        while shared.flushed.load(Ordering::Acquire) == before {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }
}

/// Where and how batches go; replaced when a new config says otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// An `http://` OTLP/HTTP traces URL.
    pub endpoint: String,
    pub batch: usize,
    pub interval: Duration,
    /// The resource of every span: `service.name` and the rest.
    pub resource: Vec<KeyValue>,
}

/// Why a batch was not exported.
#[derive(Debug)]
pub enum ExportError {
    /// An answer that is not retried (any status but 429, 502, 503, 504).
    Refused(u16),
    /// Still failing after the last try: the last answer or error.
    GaveUp(String),
}

impl std::fmt::Display for ExportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExportError::Refused(status) => write!(f, "the collector answered {status}"),
            ExportError::GaveUp(why) => write!(f, "gave up after {MAX_TRIES} tries: {why}"),
        }
    }
}

impl std::error::Error for ExportError {}

/// The exporter task's handle: where its batches go.
#[derive(Debug)]
pub struct Exporter {
    settings: Arc<Mutex<Option<Settings>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Exporter {
    /// Start the task that drains the queue, on the sidecar's own runtime.
    ///
    /// A task, not a thread: a thread of its own, woken for each batch and
    /// for each step of its HTTP exchange, preempted the request thread on
    /// its core (CFS favours the thread that slept), and the context
    /// switches cost more than the export's work. As a task it runs between
    /// requests, on the sockets the runtime already polls.
    pub fn spawn(handle: &tokio::runtime::Handle, rx: Receiver, metrics: Arc<Metrics>) -> Exporter {
        let settings: Arc<Mutex<Option<Settings>>> = Arc::default();
        handle.spawn(drain(rx.0, settings.clone(), metrics));
        Exporter { settings }
    }

    /// Use these settings from the next batch on (`None`: spans are dropped).
    pub fn configure(&self, settings: Option<Settings>) {
        *lock(&self.settings) = settings;
    }
}

async fn drain(queue: Arc<Shared>, settings: Arc<Mutex<Option<Settings>>>, metrics: Arc<Metrics>) {
    // the collector's connection, kept from one batch to the next
    let mut link: Option<control::Connection> = None;
    // the request body's buffer, kept too: a fresh one per post cost page faults
    let mut body = Vec::new();
    loop {
        let before = lock(&settings).clone();
        let interval = before
            .as_ref()
            .map_or(Duration::from_millis(100), |s| s.interval);
        queue.batch.store(
            before.as_ref().map_or(usize::MAX, |s| s.batch),
            Ordering::Relaxed,
        );
        // a full batch or a flush wakes us; else the interval passes
        let _ = tokio::time::timeout(interval, queue.wake.notified()).await;
        let flushing = queue.flush.swap(false, Ordering::AcqRel);
        // the settings now (read after the wait: the sidecar configures the
        // exporter just after starting it, and a span recorded meanwhile must
        // not find it unconfigured)
        let now = lock(&settings).clone();
        let mut batch = std::mem::take(&mut *lock(&queue.buffer));
        match &now {
            // tracing turned off by a new config: what was queued goes, counted
            None => {
                if !batch.is_empty() {
                    metrics
                        .spans
                        .labels(&["dropped_tracing_off"])
                        .add(batch.len() as u64);
                }
            }
            Some(now) => {
                while !batch.is_empty() {
                    let rest = if batch.len() > now.batch {
                        batch.split_off(now.batch)
                    } else {
                        Vec::new()
                    };
                    let n = batch.len() as u64;
                    let sent = export(now, std::mem::take(&mut batch), &mut link, &mut body);
                    let outcome = match sent.await {
                        Ok(()) => "exported",
                        Err(_) => "dropped_export_failed",
                    };
                    metrics.spans.labels(&[outcome]).add(n);
                    batch = rest;
                }
            }
        }
        if flushing {
            queue.flushed.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Encode and post one batch on `link` (opened, or opened again, as needed),
/// retrying as OTLP allows. The body is written into `buffer`, which gets
/// its allocation back when the connection is done with it.
async fn export(
    settings: &Settings,
    spans: Vec<EncodedSpan>,
    link: &mut Option<control::Connection>,
    buffer: &mut Vec<u8>,
) -> Result<(), ExportError> {
    let scope = Scope {
        name: "seawall-sidecar".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let mut written = std::mem::take(buffer);
    written.clear();
    seawall_otlp::stream::export_request(&settings.resource, &scope, &spans, &mut written);
    drop(spans);
    // shared, not copied, by every try
    let body = bytes::Bytes::from(written);
    let result = post_with_retries(settings, link, &body).await;
    if let Ok(unique) = body.try_into_mut() {
        *buffer = unique.into();
    }
    result
}

async fn post_with_retries(
    settings: &Settings,
    link: &mut Option<control::Connection>,
    body: &bytes::Bytes,
) -> Result<(), ExportError> {
    let headers = [(
        "content-type".to_owned(),
        "application/x-protobuf".to_owned(),
    )];
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for _ in 0..MAX_TRIES {
        let answer =
            tokio::time::timeout(POST_TIMEOUT, post(link, &settings.endpoint, &headers, body))
                .await
                .unwrap_or(Err(control::CallError::Timeout(POST_TIMEOUT)));
        if answer.is_err() {
            *link = None; // a failed or silent connection is not used again
        }
        let wait = match answer {
            Ok(a) if (200..300).contains(&a.status) => return Ok(()),
            Ok(a) if matches!(a.status, 429 | 502 | 503 | 504) => {
                last = format!("the collector answered {}", a.status);
                a.retry_after.map(Duration::from_secs)
            }
            Ok(a) => return Err(ExportError::Refused(a.status)),
            Err(e) => {
                last = e.to_string();
                None
            }
        };
        let wait = wait.unwrap_or(backoff).min(MAX_BACKOFF);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Err(ExportError::GaveUp(last))
}

/// POST `body` on the kept connection (a new one if there is none, it goes
/// elsewhere, or the collector closed it). A kept connection that fails
/// before any answer (closed by the collector while idle) is replaced at
/// once, not counted as a try.
async fn post(
    link: &mut Option<control::Connection>,
    url: &str,
    headers: &[(String, String)],
    body: &bytes::Bytes,
) -> Result<control::Answer, control::CallError> {
    let (authority, request) = control::build("POST", url, headers, body.clone(), true)?;
    let kept = link
        .take()
        .filter(|c| c.is_open() && c.authority() == authority);
    if let Some(mut conn) = kept {
        if let Ok(answer) = conn.send(request).await {
            *link = Some(conn);
            return Ok(answer);
        }
    }
    let (_, request) = control::build("POST", url, headers, body.clone(), true)?;
    let mut conn = control::Connection::open(&authority).await?;
    let answer = conn.send(request).await?;
    *link = Some(conn);
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn settings(url: String) -> Settings {
        Settings {
            endpoint: url,
            batch: 2,
            interval: Duration::from_millis(20),
            resource: Vec::new(),
        }
    }

    fn span(n: u8) -> EncodedSpan {
        let mut w = seawall_otlp::stream::SpanWriter::new(
            &[1; 16],
            &[n.max(1); 8],
            None,
            1,
            seawall_otlp::SpanKind::Server,
            1,
        );
        w.name("GET");
        w.finish(2, seawall_otlp::StatusCode::Unset, "")
    }

    /// A collector answering each connection with the next of `answers`;
    /// returns the URL and what it read per connection.
    fn collector(answers: Vec<&'static str>) -> (String, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/v1/traces", listener.local_addr().expect("addr"));
        let handle = std::thread::spawn(move || {
            let mut got = Vec::new();
            for answer in answers {
                let (mut sock, _) = listener.accept().expect("accept");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                // read the head, then content-length bytes
                loop {
                    let n = sock.read(&mut chunk).expect("read");
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len || n == 0 {
                            break;
                        }
                    }
                }
                sock.write_all(answer.as_bytes()).expect("write");
                got.push(buf);
            }
            got
        });
        (url, handle)
    }

    // real time (the paused clock would jump past the post's timeout while
    // the socket is read): one second of Retry-After
    #[tokio::test]
    async fn a_503_with_retry_after_is_retried_and_a_400_is_not() {
        let (url, server) = collector(vec![
            "HTTP/1.1 503 Unavailable\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n",
        ]);
        let s = settings(url);
        let before = tokio::time::Instant::now();
        let mut link = None;
        let mut body = Vec::new();
        export(&s, vec![span(1)], &mut link, &mut body)
            .await
            .expect("exported on the second try");
        assert!(tokio::time::Instant::now() - before >= Duration::from_secs(1));
        // the body's allocation came back, for the next batch
        assert!(body.capacity() > 0);
        let err = export(&s, vec![span(2)], &mut link, &mut body)
            .await
            .expect_err("400 is final");
        assert!(matches!(err, ExportError::Refused(400)), "{err}");
        let got = server.join().expect("server");
        assert_eq!(got.len(), 3);
        let head = String::from_utf8_lossy(&got[0]);
        assert!(head.starts_with("POST /v1/traces HTTP/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
    }

    #[test]
    fn the_queue_batches_and_a_flush_waits_for_the_export() {
        let (url, server) = collector(vec![
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ]);
        let metrics = Arc::new(Metrics::new());
        let (queue, rx) = Queue::new(64, metrics.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let exporter = Exporter::spawn(runtime.handle(), rx, metrics.clone());
        exporter.configure(Some(settings(url)));
        queue.push(vec![span(1), span(2), span(3)]);
        assert!(queue.flush(Duration::from_secs(10)));
        let got = server.join().expect("server");
        // three spans in batches of two: two posts
        assert_eq!(got.len(), 2);
        assert_eq!(metrics.spans.labels(&["exported"]).get(), 3);
    }

    #[test]
    fn a_collector_that_is_down_costs_the_queue_nothing_but_drops() {
        let metrics = Arc::new(Metrics::new());
        let (queue, _rx) = Queue::new(4, metrics.clone());
        for n in 0..10 {
            queue.push(vec![span(n)]);
        }
        // four spans fit: six dropped at once
        assert_eq!(queue.dropped(), 6);
        assert_eq!(metrics.spans.labels(&["dropped_queue_full"]).get(), 6);
    }
}
