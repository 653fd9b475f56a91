//! What the mesh did, for operators: one line per event on standard error.
//!
//! Breaker transitions, ejections and returns, retry budgets exhausted,
//! bulkhead overflows and config swaps are told to [`Events`] where they
//! happen (the clusters, the sidecar); each becomes one line with the time,
//! the service, the event, the destination and its figures, as text
//! (`key=value`) or as a JSON object (`--log-format json`). The Python side
//! of the sidecar writes its own events (certificates, the control plane,
//! the registry) in the same two formats.
//!
//! Nothing on the request path waits for a write: a line goes into a bounded
//! queue that one thread drains to standard error, and a full queue drops
//! the line and counts it (the next line written says how many were lost).
//! Events the data plane may repeat are rate-limited per (event, destination)
//! by [`Limiter`], a sans-I/O state machine told the time: a burst, then one
//! line per interval, each saying how many like it were dropped since the
//! last one. What an operator caused (a config swap, the state it reset) is
//! always written ([`Events::emit_always`]).
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::clock::Clock;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-12-04T23:16:52.123Z orders breaker_opened destination=payments failure_rate=62.5`
    Text,
    /// One JSON object per line: `{"time", "service", "event", "destination", ...}`.
    Json,
}

/// A log format name that is neither `text` nor `json`.
#[derive(Debug)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "log format {:?}: must be text or json", self.0)
    }
}

impl std::error::Error for FormatError {}

impl std::str::FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(FormatError(other.to_owned())),
        }
    }
}

/// Lines allowed per (event, destination) at once, then one per [`INTERVAL`].
pub const BURST: u32 = 5;
/// Seconds between two lines of one (event, destination) once its burst is spent.
pub const INTERVAL: f64 = 10.0;
/// Lines waiting for the writer thread; beyond it lines are dropped and counted.
const QUEUE: usize = 1024;

/// What the rate limiter decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it; `dropped` like it were not written since the last one.
    Write {
        dropped: u64,
    },
    Drop,
}

/// Per-key token buckets of [`BURST`], one token back every [`INTERVAL`],
/// kept as a theoretical arrival time (GCRA: no fractions of a token add up).
#[derive(Debug, Default)]
pub struct Limiter {
    keys: HashMap<(&'static str, String), Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// When the bucket is full again if nothing else comes.
    tat: f64,
    dropped: u64,
}

impl Limiter {
    /// Decide for one event of `kind` for `destination` at `now` (seconds).
    pub fn decide(&mut self, kind: &'static str, destination: &str, now: f64) -> Verdict {
        let bucket = self
            .keys
            .entry((kind, destination.to_owned()))
            .or_insert(Bucket {
                tat: now,
                dropped: 0,
            });
        let tat = bucket.tat.max(now);
        if tat - now > f64::from(BURST - 1) * INTERVAL {
            bucket.dropped += 1;
            return Verdict::Drop;
        }
        bucket.tat = tat + INTERVAL;
        Verdict::Write {
            dropped: std::mem::take(&mut bucket.dropped),
        }
    }
}

/// One sidecar's event log (no global: one per sidecar, handed to what reports).
pub struct Events {
    service: String,
    format: Format,
    clock: Clock,
    limiter: Mutex<Limiter>,
    /// `None`: events are counted, not written (tests, fuzzing).
    tx: Option<SyncSender<String>>,
    lost: AtomicU64,
    written: AtomicU64,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("service", &self.service)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Events written to standard error by a thread of their own.
    pub fn to_stderr(service: &str, format: Format, clock: Clock) -> Self {
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("seawall-events".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                for line in rx {
                    let mut out = stderr.lock();
                    let _ = out.write_all(line.as_bytes());
                    let _ = out.flush();
                }
            });
        let mut events = Self::silent(service, format, clock);
        if spawned.is_ok() {
            events.tx = Some(tx);
        }
        events
    }

    /// Events decided and counted but written nowhere.
    pub fn silent(service: &str, format: Format, clock: Clock) -> Self {
        Events {
            service: service.to_owned(),
            format,
            clock,
            limiter: Mutex::new(Limiter::default()),
            tx: None,
            lost: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// Lines written (or queued) so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Report an event the data plane may repeat (`breaker_opened`,
    /// `bulkhead_overflow`, ...) for `destination`, with its figures.
    /// Rate-limited; never waits.
    pub fn emit(&self, kind: &'static str, destination: &str, figures: &[(&str, Value)]) {
        let verdict = self
            .limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .decide(kind, destination, self.clock.now());
        let Verdict::Write { dropped } = verdict else {
            return;
        };
        self.write(kind, destination, figures, dropped);
    }

    /// Report an event an operator caused (a config swap and what it reset):
    /// never rate-limited, however many come at once. Never waits.
    pub fn emit_always(&self, kind: &'static str, destination: &str, figures: &[(&str, Value)]) {
        self.write(kind, destination, figures, 0);
    }

    fn write(&self, kind: &str, destination: &str, figures: &[(&str, Value)], dropped: u64) {
        let lost = self.lost.swap(0, Ordering::Relaxed);
        let line = self.line(kind, destination, figures, dropped, lost);
        self.written.fetch_add(1, Ordering::Relaxed);
        if let Some(tx) = &self.tx {
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = tx.try_send(line) {
                self.lost.fetch_add(lost + 1, Ordering::Relaxed);
            }
        }
    }

    /// One line in this log's format (ends with a newline).
    pub fn line(
        &self,
        kind: &str,
        destination: &str,
        figures: &[(&str, Value)],
        dropped: u64,
        lost: u64,
    ) -> String {
        let time = rfc3339_now();
        match self.format {
            Format::Json => {
                let mut doc = Map::new();
                doc.insert("time".into(), Value::from(time));
                doc.insert("service".into(), Value::from(self.service.as_str()));
                doc.insert("event".into(), Value::from(kind));
                doc.insert("destination".into(), Value::from(destination));
                for (k, v) in figures {
                    doc.insert((*k).to_owned(), v.clone());
                }
                if dropped > 0 {
                    doc.insert("dropped".into(), Value::from(dropped));
                }
                if lost > 0 {
                    doc.insert("lost".into(), Value::from(lost));
                }
                let mut text = Value::Object(doc).to_string();
                text.push('\n');
                text
            }
            Format::Text => {
                let mut text = format!("{time} {} {kind} destination={destination}", self.service);
                for (k, v) in figures {
                    text.push(' ');
                    text.push_str(k);
                    text.push('=');
                    match v {
                        Value::String(s) if !s.is_empty() && !s.contains([' ', '"', '=']) => {
                            text.push_str(s)
                        }
                        other => text.push_str(&other.to_string()),
                    }
                }
                if dropped > 0 {
                    text.push_str(&format!(" dropped={dropped}"));
                }
                if lost > 0 {
                    text.push_str(&format!(" lost={lost}"));
                }
                text.push('\n');
                text
            }
        }
    }
}

/// The wall-clock time as RFC 3339 in UTC, to the millisecond (for display
/// only: every decision uses the monotonic clock).
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Year, month and day of a count of days since 1970-01-01 (proleptic
/// Gregorian; Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_burst_then_one_line_per_interval_each_counting_the_dropped() {
        let mut l = Limiter::default();
        for _ in 0..BURST {
            assert_eq!(l.decide("x", "a", 0.0), Verdict::Write { dropped: 0 });
        }
        assert_eq!(l.decide("x", "a", 1.0), Verdict::Drop);
        assert_eq!(l.decide("x", "a", 2.0), Verdict::Drop);
        // another destination, another event: their own buckets
        assert_eq!(l.decide("x", "b", 2.0), Verdict::Write { dropped: 0 });
        assert_eq!(l.decide("y", "a", 2.0), Verdict::Write { dropped: 0 });
        assert_eq!(l.decide("x", "a", 9.0), Verdict::Drop);
        assert_eq!(l.decide("x", "a", 10.0), Verdict::Write { dropped: 3 });
        assert_eq!(l.decide("x", "a", 10.5), Verdict::Drop);
        // quiet for long: the burst is back, and no more; its first line
        // says what was dropped before
        assert_eq!(l.decide("x", "a", 1000.0), Verdict::Write { dropped: 1 });
        for _ in 1..BURST {
            assert_eq!(l.decide("x", "a", 1000.0), Verdict::Write { dropped: 0 });
        }
        assert_eq!(l.decide("x", "a", 1000.0), Verdict::Drop);
    }

    #[test]
    fn lines_have_the_time_service_event_destination_and_figures() {
        let e = Events::silent("orders", Format::Text, Clock::new());
        let figures = [
            ("from", json!("closed")),
            ("failure_rate", json!(62.5)),
            ("reason", json!("two words")),
        ];
        let line = e.line("breaker_opened", "payments", &figures, 2, 0);
        let (time, rest) = line.split_once(' ').expect("a time");
        assert_eq!(time.len(), "2026-12-04T23:16:52.123Z".len());
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");
        assert_eq!(
            rest,
            "orders breaker_opened destination=payments from=closed failure_rate=62.5 \
             reason=\"two words\" dropped=2\n"
        );
        let e = Events::silent("orders", Format::Json, Clock::new());
        let line = e.line("breaker_opened", "payments", &figures, 0, 3);
        let doc: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(doc["service"], "orders");
        assert_eq!(doc["event"], "breaker_opened");
        assert_eq!(doc["destination"], "payments");
        assert_eq!(doc["failure_rate"], 62.5);
        assert_eq!(doc["lost"], 3);
        assert!(doc.get("dropped").is_none());
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_791), (2026, 12, 4));
    }

    #[test]
    fn formats_are_named() {
        assert_eq!("json".parse::<Format>().expect("json"), Format::Json);
        let err = "yaml".parse::<Format>().expect_err("refused");
        assert_eq!(err.to_string(), "log format \"yaml\": must be text or json");
    }
}
