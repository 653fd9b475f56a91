//! Retry budgets: cap retries at a fraction of the requests, per time window.
//! The twin of `seawall.policy.budget.RetryBudget`.
//!
//! The rule is Linkerd's (and Finagle's before it): over the last `ttl`
//! seconds, a retry is allowed while
//!
//! ```text
//! retries + 1 <= ratio * requests + min_per_second * ttl
//! ```
//!
//! The window slides in steps: a ring of `buckets` time buckets, each
//! `ttl / buckets` seconds wide, aligned on multiples of that width. At `now`
//! the window holds the bucket containing `now` and the `buckets - 1` before
//! it; running totals make every operation O(1) amortized. Time that goes
//! backwards is counted in the newest bucket. Bucket indices use Python's
//! float floor division ([`crate::window::floor_div`]), so both runtimes put
//! every event in the same bucket.

use std::fmt;

use crate::window::{floor_index, MAX_SIZE};

/// Tolerance of the budget comparison, far below one retry (`0.29 * 100` is
/// `28.999999999999996`).
const EPSILON: f64 = 1e-9;

/// Bucket index before any event: far enough back that the first event clears the ring.
const NEVER: i64 = -(1 << 62);

/// A budget's settings; the defaults are the Python budget's (and Linkerd's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per request in the window, in `(0, 1000]`. Default 0.2.
    pub ratio: f64,
    /// Reserve of retries per second, independent of traffic (finite, >= 0). Default 10.
    pub min_per_second: f64,
    /// The window, seconds (finite, > 0). Default 10.
    pub ttl: f64,
}

/// Time buckets a window is made of unless told otherwise (Python's default):
/// the window moves in steps of `ttl / 10`.
pub const DEFAULT_BUCKETS: usize = 10;

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10.0,
            ttl: 10.0,
        }
    }
}

/// A setting of a [`BudgetConfig`] is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetError {
    /// The setting (`"ratio"`, `"min_per_second"`, `"ttl"`, or `"buckets"` of
    /// [`RetryBudget::with_buckets`]).
    pub field: &'static str,
    /// What it must be.
    pub rule: &'static str,
    /// The value given, as text.
    pub value: String,
}

impl fmt::Display for BudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RetryBudget: {} must be {}, got {}",
            self.field, self.rule, self.value
        )
    }
}

impl std::error::Error for BudgetError {}

impl BudgetConfig {
    /// Check every setting; the error names the first bad one.
    pub fn validate(&self) -> Result<(), BudgetError> {
        let bad = |field, rule, value: String| Err(BudgetError { field, rule, value });
        if !(self.ratio > 0.0 && self.ratio <= 1000.0) {
            return bad("ratio", "in (0, 1000]", self.ratio.to_string());
        }
        if !(self.min_per_second.is_finite() && self.min_per_second >= 0.0) {
            return bad(
                "min_per_second",
                "a finite number >= 0",
                self.min_per_second.to_string(),
            );
        }
        if !(self.ttl.is_finite() && self.ttl > 0.0) {
            return bad("ttl", "a finite number > 0", self.ttl.to_string());
        }
        Ok(())
    }
}

/// A sliding-window budget of retries, shared by every retry of one destination.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: BudgetConfig,
    reserve: f64,
    width: f64,
    requests: Vec<u64>,
    retries: Vec<u64>,
    requests_total: u64,
    retries_total: u64,
    k: i64,
}

impl RetryBudget {
    /// An empty budget whose window moves in [`DEFAULT_BUCKETS`] steps.
    pub fn new(config: &BudgetConfig) -> Result<Self, BudgetError> {
        Self::with_buckets(config, DEFAULT_BUCKETS)
    }

    /// An empty budget whose window is made of `buckets` time buckets (1..=1,000,000).
    pub fn with_buckets(config: &BudgetConfig, buckets: usize) -> Result<Self, BudgetError> {
        config.validate()?;
        if !(1..=MAX_SIZE).contains(&buckets) {
            return Err(BudgetError {
                field: "buckets",
                rule: "an int from 1 to 1000000",
                value: buckets.to_string(),
            });
        }
        Ok(Self {
            config: *config,
            reserve: config.min_per_second * config.ttl,
            width: config.ttl / buckets as f64,
            requests: vec![0; buckets],
            retries: vec![0; buckets],
            requests_total: 0,
            retries_total: 0,
            k: NEVER,
        })
    }

    /// The settings.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Buckets the window is made of.
    pub fn buckets(&self) -> usize {
        self.requests.len()
    }

    /// New settings for this live budget (a new config version). A new
    /// `ratio` or `min_per_second` applies at once to the requests and retries
    /// in the window, which is kept; a window of another `ttl` or number of
    /// buckets starts empty. Invalid settings are refused and change nothing.
    pub fn reconfigure(
        &mut self,
        config: &BudgetConfig,
        buckets: usize,
    ) -> Result<(), BudgetError> {
        let fresh = Self::with_buckets(config, buckets)?;
        if fresh.config.ttl == self.config.ttl && buckets == self.buckets() {
            self.config = fresh.config;
            self.reserve = fresh.reserve;
        } else {
            *self = fresh;
        }
        Ok(())
    }

    /// Width of one bucket, `ttl / buckets` seconds.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Clear the buckets that left the window; return the ring index for `now`.
    fn advance(&mut self, now: f64) -> usize {
        let n = self.requests.len() as i64; // 1..=MAX_SIZE
        let k = floor_index(now, self.width);
        let current = self.k;
        if k > current {
            if k.saturating_sub(current) >= n {
                self.requests.fill(0);
                self.retries.fill(0);
                self.requests_total = 0;
                self.retries_total = 0;
            } else {
                for j in (current + 1)..=k {
                    let i = j.rem_euclid(n) as usize;
                    self.requests_total = self.requests_total.saturating_sub(self.requests[i]);
                    self.retries_total = self.retries_total.saturating_sub(self.retries[i]);
                    self.requests[i] = 0;
                    self.retries[i] = 0;
                }
            }
            self.k = k;
        }
        self.k.rem_euclid(n) as usize
    }

    /// Record that a request was made (once per call, not per attempt).
    pub fn deposit(&mut self, now: f64) {
        let i = self.advance(now);
        self.requests[i] += 1;
        self.requests_total += 1;
    }

    /// Ask for one retry: record it and return true if the budget allows it.
    pub fn try_withdraw(&mut self, now: f64) -> bool {
        let i = self.advance(now);
        let limit = self.config.ratio * self.requests_total as f64 + self.reserve + EPSILON;
        if (self.retries_total + 1) as f64 > limit {
            return false;
        }
        self.retries[i] += 1;
        self.retries_total += 1;
        true
    }

    /// The balance of the window, `ratio * requests + reserve - retries`, at least 0.
    pub fn available(&mut self, now: f64) -> f64 {
        self.advance(now);
        let balance = self.config.ratio * self.requests_total as f64 + self.reserve
            - self.retries_total as f64;
        if balance > 0.0 {
            balance
        } else {
            0.0
        }
    }

    /// `(requests, retries)` recorded in the window at `now`.
    pub fn counts(&mut self, now: f64) -> (u64, u64) {
        self.advance(now);
        (self.requests_total, self.retries_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio: f64, min_per_second: f64, ttl: f64) -> RetryBudget {
        RetryBudget::new(&BudgetConfig {
            ratio,
            min_per_second,
            ttl,
        })
        .expect("valid")
    }

    #[test]
    fn ratio_of_requests() {
        let mut b = budget(0.5, 0.0, 10.0);
        b.deposit(0.0);
        b.deposit(0.0);
        assert!(b.try_withdraw(0.0));
        assert!(!b.try_withdraw(0.0));
        assert_eq!(b.counts(0.0), (2, 1));
        assert_eq!(b.available(0.0), 0.0);
    }

    #[test]
    fn reserve_without_traffic() {
        let mut b = budget(0.2, 1.0, 10.0);
        let allowed = (0..20).filter(|_| b.try_withdraw(0.0)).count();
        assert_eq!(allowed, 10);
    }

    #[test]
    fn epsilon_absorbs_rounding() {
        let mut b = budget(0.29, 0.0, 10.0);
        for _ in 0..100 {
            b.deposit(0.0);
        }
        let allowed = (0..40).filter(|_| b.try_withdraw(0.0)).count();
        assert_eq!(allowed, 29);
    }

    #[test]
    fn window_slides_by_buckets() {
        let mut b = budget(1.0, 0.0, 10.0);
        b.deposit(0.5);
        b.deposit(5.5);
        assert_eq!(b.counts(9.99), (2, 0));
        assert_eq!(b.counts(10.0), (1, 0)); // bucket [0, 1) left
        assert_eq!(b.counts(14.99), (1, 0));
        assert_eq!(b.counts(15.0), (0, 0));
        b.deposit(100.0);
        assert_eq!(b.counts(50.0), (1, 0)); // backwards: the newest bucket
        assert_eq!(b.counts(1e300), (0, 0));
    }

    #[test]
    fn odd_times_do_not_panic() {
        let mut b = budget(1.0, 1.0, 1.0);
        for now in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -1e300,
            1e300,
            0.0,
        ] {
            b.deposit(now);
            let _ = b.try_withdraw(now);
            let _ = b.available(now);
        }
    }

    #[test]
    fn bad_settings_are_named() {
        let base = BudgetConfig::default();
        for (config, field) in [
            (BudgetConfig { ratio: 0.0, ..base }, "ratio"),
            (
                BudgetConfig {
                    ratio: 1000.5,
                    ..base
                },
                "ratio",
            ),
            (
                BudgetConfig {
                    min_per_second: -1.0,
                    ..base
                },
                "min_per_second",
            ),
            (
                BudgetConfig {
                    ttl: f64::INFINITY,
                    ..base
                },
                "ttl",
            ),
        ] {
            let err = RetryBudget::new(&config).expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().starts_with("RetryBudget: "));
        }
        assert_eq!(RetryBudget::new(&base).map(|b| b.width()), Ok(1.0));
        assert_eq!(
            RetryBudget::with_buckets(&base, 0)
                .map(|b| b.width())
                .map_err(|e| e.field),
            Err("buckets")
        );
        assert_eq!(
            RetryBudget::with_buckets(&base, 4).map(|b| b.width()),
            Ok(2.5)
        );
    }
}
