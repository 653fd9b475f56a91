//! Sliding windows of call outcomes, O(1) per recorded call: the twin of
//! `seawall.policy.window`.
//!
//! The breaker judges failure and slow-call rates over one of these:
//!
//! * [`CountWindow`] holds the last `size` outcomes in a ring. Recording
//!   overwrites the oldest slot and adjusts three running totals, so the cost
//!   does not depend on the window size.
//! * [`TimeWindow`] covers the last `seconds` in `buckets` equal time buckets.
//!   Bucket `k` covers `[k * width, (k + 1) * width)` on the clock's time line;
//!   the window at `now` is the bucket holding `now` and the `buckets - 1`
//!   before it. A bucket that falls out is subtracted from the totals when the
//!   window next moves (amortised O(1), bounded by the number of buckets).
//!
//! Bucket indices are computed with Python's float floor division
//! ([`floor_div`]), not `(now / width).floor()`: the two differ on some inputs
//! (`1.0 // 0.1` is `9.0` in Python, `(1.0 / 0.1).floor()` is `10.0`), and the
//! conformance corpus requires the same bucket as the Python window, always.

use std::fmt;

/// Bit of an outcome: a call (always set for a recorded outcome).
pub const CALL: u8 = 1;
/// Bit of an outcome: the call failed.
pub const FAILED: u8 = 2;
/// Bit of an outcome: the call was slow.
pub const SLOW: u8 = 4;

/// The largest count window, and the most buckets of a time window (the mesh
/// config's own limit; the ring is allocated up front).
pub const MAX_SIZE: usize = 1_000_000;

/// The outcome of one call, as a window records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Outcome {
    /// The call failed.
    pub failed: bool,
    /// The call was slow.
    pub slow: bool,
}

impl Outcome {
    /// A plain success: neither failed nor slow.
    pub const SUCCESS: Outcome = Outcome {
        failed: false,
        slow: false,
    };
    /// A failure that was not slow.
    pub const FAILURE: Outcome = Outcome {
        failed: true,
        slow: false,
    };

    /// The outcome's bits, as the Python window stores them (`CALL | FAILED | SLOW`).
    pub fn bits(self) -> u8 {
        CALL | if self.failed { FAILED } else { 0 } | if self.slow { SLOW } else { 0 }
    }
}

/// Counts over a window at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotals {
    /// Calls in the window.
    pub calls: u64,
    /// Failed calls in the window.
    pub failures: u64,
    /// Slow calls in the window.
    pub slow_calls: u64,
}

impl WindowTotals {
    /// Failures as a percentage of calls (0.0 when there are no calls).
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            100.0 * self.failures as f64 / self.calls as f64
        }
    }

    /// Slow calls as a percentage of calls (0.0 when there are no calls).
    pub fn slow_call_rate(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            100.0 * self.slow_calls as f64 / self.calls as f64
        }
    }
}

/// Why a window could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowError {
    /// `size` of a count window is not in `1..=MAX_SIZE`.
    Size(usize),
    /// `buckets` of a time window is not in `1..=MAX_SIZE`.
    Buckets(usize),
    /// `seconds` of a time window is not a number > 0 (infinity is allowed).
    Seconds(f64),
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WindowError::Size(v) => {
                write!(
                    f,
                    "CountWindow: size must be an int from 1 to {MAX_SIZE}, got {v}"
                )
            }
            WindowError::Buckets(v) => {
                write!(
                    f,
                    "TimeWindow: buckets must be an int from 1 to {MAX_SIZE}, got {v}"
                )
            }
            WindowError::Seconds(v) => {
                write!(f, "TimeWindow: seconds must be a number > 0, got {v}")
            }
        }
    }
}

impl std::error::Error for WindowError {}

/// Python's `a // b` on floats (CPython's `_float_div_mod`), for `b != 0`.
///
/// The fmod-based quotient, snapped to the nearest integer: it is what makes
/// `1.0 // 0.1 == 9.0`. Returns NaN where Python would (an infinite `a`).
pub fn floor_div(a: f64, b: f64) -> f64 {
    let rem = a % b; // fmod
    let mut div = (a - rem) / b;
    if rem != 0.0 && ((b < 0.0) != (rem < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let mut floor = div.floor();
        if div - floor > 0.5 {
            floor += 1.0;
        }
        floor
    } else {
        0.0f64.copysign(a / b)
    }
}

/// Python's `int(a // b)`, saturating where Python's int would not (NaN gives 0).
pub(crate) fn floor_index(a: f64, b: f64) -> i64 {
    floor_div(a, b) as i64
}

/// The last `size` outcomes.
#[derive(Debug, Clone)]
pub struct CountWindow {
    ring: Vec<u8>,
    pos: usize,
    totals: WindowTotals,
}

impl CountWindow {
    /// A window of the last `size` outcomes (`1..=MAX_SIZE`).
    pub fn new(size: usize) -> Result<Self, WindowError> {
        if !(1..=MAX_SIZE).contains(&size) {
            return Err(WindowError::Size(size));
        }
        Ok(Self {
            ring: vec![0; size],
            pos: 0,
            totals: WindowTotals::default(),
        })
    }

    /// The number of outcomes the window holds when full.
    pub fn size(&self) -> usize {
        self.ring.len()
    }

    /// Add one outcome, evicting the oldest when the window is full.
    pub fn record(&mut self, outcome: Outcome) {
        let new = outcome.bits();
        let Some(slot) = self.ring.get_mut(self.pos) else {
            return; // unreachable: pos < len, kept in range below
        };
        let old = *slot;
        *slot = new;
        self.pos += 1;
        if self.pos == self.ring.len() {
            self.pos = 0;
        }
        if old != new {
            let t = &mut self.totals;
            t.calls = t.calls + u64::from(new & 1) - u64::from(old & 1);
            t.failures = t.failures + u64::from((new >> 1) & 1) - u64::from((old >> 1) & 1);
            t.slow_calls = t.slow_calls + u64::from(new >> 2) - u64::from(old >> 2);
        }
    }

    /// The counts over the window.
    pub fn totals(&self) -> WindowTotals {
        self.totals
    }

    /// Forget every outcome.
    pub fn clear(&mut self) {
        self.ring.fill(0);
        self.pos = 0;
        self.totals = WindowTotals::default();
    }
}

/// Outcomes of the last `seconds`, in `buckets` buckets of equal width.
#[derive(Debug, Clone)]
pub struct TimeWindow {
    width: f64,
    calls: Vec<u64>,
    failures: Vec<u64>,
    slow: Vec<u64>,
    /// Absolute index of the newest bucket, `None` before the first outcome.
    head: Option<i64>,
    totals: WindowTotals,
}

impl TimeWindow {
    /// A window over the last `seconds` (> 0, infinity allowed) in `buckets` buckets.
    pub fn new(seconds: f64, buckets: usize) -> Result<Self, WindowError> {
        if !(1..=MAX_SIZE).contains(&buckets) {
            return Err(WindowError::Buckets(buckets));
        }
        if seconds.is_nan() || seconds <= 0.0 {
            return Err(WindowError::Seconds(seconds));
        }
        Ok(Self {
            width: seconds / buckets as f64,
            calls: vec![0; buckets],
            failures: vec![0; buckets],
            slow: vec![0; buckets],
            head: None,
            totals: WindowTotals::default(),
        })
    }

    /// Seconds covered by one bucket.
    pub fn bucket_width(&self) -> f64 {
        self.width
    }

    /// Move the window to `now`; return the ring slot of the current bucket.
    fn advance(&mut self, now: f64) -> usize {
        let n = self.calls.len() as i64; // 1..=MAX_SIZE
        let mut index = floor_index(now, self.width);
        match self.head {
            None => self.head = Some(index),
            Some(head) if index > head => {
                // Expire the buckets between the old head and the new one (at most n).
                for k in (head + 1)..=index.min(head.saturating_add(n)) {
                    let slot = k.rem_euclid(n) as usize;
                    let t = &mut self.totals;
                    t.calls = t.calls.saturating_sub(self.calls[slot]);
                    t.failures = t.failures.saturating_sub(self.failures[slot]);
                    t.slow_calls = t.slow_calls.saturating_sub(self.slow[slot]);
                    self.calls[slot] = 0;
                    self.failures[slot] = 0;
                    self.slow[slot] = 0;
                }
                self.head = Some(index);
            }
            // A time read before another caller moved the window: count it in
            // the newest bucket.
            Some(head) if index < head => index = head,
            Some(_) => {}
        }
        index.rem_euclid(n) as usize
    }

    /// Add one outcome at time `now`.
    pub fn record(&mut self, outcome: Outcome, now: f64) {
        let slot = self.advance(now);
        self.calls[slot] += 1;
        self.totals.calls += 1;
        if outcome.failed {
            self.failures[slot] += 1;
            self.totals.failures += 1;
        }
        if outcome.slow {
            self.slow[slot] += 1;
            self.totals.slow_calls += 1;
        }
    }

    /// The counts over the window ending at `now` (moves the window).
    pub fn totals(&mut self, now: f64) -> WindowTotals {
        self.advance(now);
        self.totals
    }

    /// The counts as of the last move, without moving the window.
    pub fn current(&self) -> WindowTotals {
        self.totals
    }

    /// Forget every outcome.
    pub fn clear(&mut self) {
        self.calls.fill(0);
        self.failures.fill(0);
        self.slow.fill(0);
        self.head = None;
        self.totals = WindowTotals::default();
    }
}

/// Either window, as a breaker holds it.
#[derive(Debug, Clone)]
pub enum SlidingWindow {
    /// The last `size` calls.
    Count(CountWindow),
    /// The last `seconds`.
    Time(TimeWindow),
}

impl SlidingWindow {
    /// Add one outcome at time `now` (a count window ignores the time).
    pub fn record(&mut self, outcome: Outcome, now: f64) {
        match self {
            SlidingWindow::Count(w) => w.record(outcome),
            SlidingWindow::Time(w) => w.record(outcome, now),
        }
    }

    /// The counts over the window at `now` (a time window moves to `now`).
    pub fn totals(&mut self, now: f64) -> WindowTotals {
        match self {
            SlidingWindow::Count(w) => w.totals(),
            SlidingWindow::Time(w) => w.totals(now),
        }
    }

    /// The running counts, without moving a time window.
    pub fn current(&self) -> WindowTotals {
        match self {
            SlidingWindow::Count(w) => w.totals(),
            SlidingWindow::Time(w) => w.current(),
        }
    }

    /// Forget every outcome.
    pub fn clear(&mut self) {
        match self {
            SlidingWindow::Count(w) => w.clear(),
            SlidingWindow::Time(w) => w.clear(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOW_FAILURE: Outcome = Outcome {
        failed: true,
        slow: true,
    };
    const SLOW_SUCCESS: Outcome = Outcome {
        failed: false,
        slow: true,
    };

    fn t(calls: u64, failures: u64, slow_calls: u64) -> WindowTotals {
        WindowTotals {
            calls,
            failures,
            slow_calls,
        }
    }

    #[test]
    fn floor_div_is_pythons() {
        assert_eq!(floor_div(1.0, 0.1), 9.0); // Python: 1.0 // 0.1 == 9.0
        assert_eq!(floor_div(0.3, 0.1), 2.0);
        assert_eq!(floor_div(7.5, 2.5), 3.0);
        assert_eq!(floor_div(-0.5, 1.0), -1.0);
        assert_eq!(floor_div(5.0, f64::INFINITY), 0.0);
        assert_eq!(floor_index(1e300, 1e-300), i64::MAX);
        assert_eq!(floor_index(f64::INFINITY, 1.0), 0); // NaN saturates to 0
    }

    #[test]
    fn rates() {
        assert_eq!(t(0, 0, 0).failure_rate(), 0.0);
        assert_eq!(t(4, 1, 3).failure_rate(), 25.0);
        assert_eq!(t(4, 1, 3).slow_call_rate(), 75.0);
    }

    #[test]
    fn count_window_evicts_the_oldest() {
        let mut w = CountWindow::new(3).expect("size");
        for o in [Outcome::FAILURE, Outcome::SUCCESS, SLOW_SUCCESS] {
            w.record(o);
        }
        assert_eq!(w.totals(), t(3, 1, 1));
        w.record(Outcome::SUCCESS); // evicts the failure
        assert_eq!(w.totals(), t(3, 0, 1));
        w.record(Outcome::SUCCESS);
        assert_eq!(w.totals(), t(3, 0, 1));
        w.record(SLOW_FAILURE); // evicts the slow call
        assert_eq!(w.totals(), t(3, 1, 1));
        w.clear();
        assert_eq!(w.totals(), t(0, 0, 0));
        assert_eq!(w.size(), 3);
    }

    #[test]
    fn count_window_sizes_are_checked() {
        assert_eq!(CountWindow::new(0).err(), Some(WindowError::Size(0)));
        assert!(CountWindow::new(MAX_SIZE + 1).is_err());
        assert!(CountWindow::new(1).is_ok());
    }

    #[test]
    fn time_window_expires_old_buckets() {
        let mut w = TimeWindow::new(10.0, 10).expect("window");
        assert_eq!(w.bucket_width(), 1.0);
        w.record(Outcome::FAILURE, 0.5);
        w.record(SLOW_SUCCESS, 3.2);
        assert_eq!(w.totals(9.9), t(2, 1, 1));
        assert_eq!(w.totals(10.0), t(1, 0, 1)); // bucket 0 left the window
        assert_eq!(w.totals(12.99), t(1, 0, 1));
        assert_eq!(w.totals(13.0), t(0, 0, 0));
        w.record(Outcome::FAILURE, 1000.0);
        assert_eq!(w.totals(1000.0), t(1, 1, 0));
        // A time before the head counts in the newest bucket.
        w.record(Outcome::SUCCESS, 990.0);
        assert_eq!(w.totals(1009.99), t(2, 1, 0));
        assert_eq!(w.totals(1010.0), t(0, 0, 0));
    }

    #[test]
    fn time_window_is_checked_and_survives_odd_times() {
        assert_eq!(TimeWindow::new(1.0, 0).err(), Some(WindowError::Buckets(0)));
        assert!(TimeWindow::new(0.0, 1).is_err());
        assert!(TimeWindow::new(f64::NAN, 1).is_err());
        let mut w = TimeWindow::new(f64::INFINITY, 4).expect("infinite window");
        w.record(Outcome::FAILURE, 0.0);
        w.record(Outcome::FAILURE, 1e300);
        assert_eq!(w.totals(f64::MAX), t(2, 2, 0));
        let mut w = TimeWindow::new(1.0, 3).expect("window");
        for now in [
            f64::NAN,
            -1e300,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
        ] {
            w.record(Outcome::SUCCESS, now);
            let _ = w.totals(now);
        }
    }

    #[test]
    fn sliding_window_dispatches() {
        let mut w = SlidingWindow::Time(TimeWindow::new(2.0, 2).expect("window"));
        w.record(Outcome::FAILURE, 0.0);
        assert_eq!(w.current(), t(1, 1, 0));
        assert_eq!(w.totals(2.0), t(0, 0, 0));
        w.record(Outcome::SUCCESS, 2.0);
        w.clear();
        assert_eq!(w.current(), t(0, 0, 0));
        let mut w = SlidingWindow::Count(CountWindow::new(1).expect("window"));
        w.record(Outcome::FAILURE, 0.0);
        assert_eq!(w.totals(5.0), t(1, 1, 0));
    }

    #[test]
    fn errors_name_the_setting() {
        assert_eq!(
            WindowError::Size(0).to_string(),
            "CountWindow: size must be an int from 1 to 1000000, got 0"
        );
        assert!(WindowError::Seconds(-1.0).to_string().contains("seconds"));
    }
}
