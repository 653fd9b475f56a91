//! Rate limits on the wire (`rate_limit` in mesh.yaml): token buckets, as
//! `seawall.policy.RateLimiter` with `max_wait=0` (a request over the limit is
//! refused at once, never queued).
//!
//! Outbound (`policies.X.rate_limit`), one bucket for every call this sidecar
//! makes to X. Inbound (`services.X.rate_limit`), one bucket per caller
//! identity (the service named by the caller's mTLS certificate), and one
//! shared by every caller without one.
//!
//! Sans-I/O: told the time, never reads a clock.
use std::collections::HashMap;

use crate::spec;

/// The most callers with a bucket of their own; past it, the buckets that
/// are full (their callers quiet long enough to have saved up a burst)
/// are forgotten, which changes nothing for those callers.
const MAX_CALLERS: usize = 4096;

/// The key of the callers without an identity.
pub const UNAUTHENTICATED: &str = "";

/// One token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Option<f64>,
}

impl Bucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            updated: None,
        }
    }

    fn refill(&mut self, now: f64) {
        if let Some(then) = self.updated {
            let earned = (now - then).max(0.0) * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
        }
        self.updated = Some(match self.updated {
            Some(then) => then.max(now),
            None => now,
        });
    }

    /// Take one token at `now`; `Err(seconds)`: none there, and one will be
    /// after that long.
    pub fn take(&mut self, now: f64) -> Result<(), f64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err((1.0 - self.tokens) / self.rate)
    }

    fn is_full(&mut self, now: f64) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }

    /// New settings: the tokens saved stay, up to the new burst.
    fn set(&mut self, rate: f64, burst: f64, now: f64) {
        self.refill(now);
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }
}

/// The rate limit of one destination (outbound) or of the local service
/// (inbound, `per_caller`).
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    per_caller: bool,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    pub fn new(spec: &spec::RateLimit, per_caller: bool) -> Self {
        Limiter {
            rate: spec.rate,
            burst: spec.burst,
            per_caller,
            buckets: HashMap::new(),
        }
    }

    /// Admit one request from `caller` at `now`; `Err(seconds)` until a
    /// token is there.
    pub fn admit(&mut self, caller: Option<&str>, now: f64) -> Result<(), f64> {
        let key = if self.per_caller {
            caller.unwrap_or(UNAUTHENTICATED)
        } else {
            UNAUTHENTICATED
        };
        if let Some(bucket) = self.buckets.get_mut(key) {
            return bucket.take(now);
        }
        if self.buckets.len() >= MAX_CALLERS {
            self.buckets.retain(|_, b| !b.is_full(now));
        }
        let mut bucket = Bucket::new(self.rate, self.burst);
        let taken = bucket.take(now);
        self.buckets.insert(key.to_owned(), bucket);
        taken
    }

    /// New settings (a new config): every caller keeps what it has saved, up
    /// to the new burst.
    pub fn set(&mut self, spec: &spec::RateLimit, now: f64) {
        self.rate = spec.rate;
        self.burst = spec.burst;
        for b in self.buckets.values_mut() {
            b.set(spec.rate, spec.burst, now);
        }
    }
}

/// `retry-after` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after(wait: f64) -> u64 {
    (wait.ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: f64, burst: f64) -> spec::RateLimit {
        spec::RateLimit { rate, burst }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = Limiter::new(&limit(2.0, 3.0), false);
        for _ in 0..3 {
            assert_eq!(l.admit(None, 10.0), Ok(()));
        }
        assert_eq!(l.admit(None, 10.0), Err(0.5));
        assert_eq!(l.admit(None, 10.25), Err(0.25));
        assert_eq!(l.admit(None, 10.5), Ok(()));
        // a long quiet spell saves up the burst, no more
        for _ in 0..3 {
            assert_eq!(l.admit(None, 100.0), Ok(()));
        }
        assert!(l.admit(None, 100.0).is_err());
        assert_eq!(retry_after(0.25), 1);
        assert_eq!(retry_after(2.5), 3);
    }

    #[test]
    fn inbound_each_caller_has_its_own_bucket() {
        let mut l = Limiter::new(&limit(1.0, 1.0), true);
        assert_eq!(l.admit(Some("orders"), 0.0), Ok(()));
        assert!(l.admit(Some("orders"), 0.0).is_err());
        assert_eq!(l.admit(Some("gateway"), 0.0), Ok(()));
        assert_eq!(l.admit(None, 0.0), Ok(()));
        assert!(
            l.admit(None, 0.5).is_err(),
            "callers without an identity share one"
        );
        // outbound: one bucket whoever calls
        let mut one = Limiter::new(&limit(1.0, 1.0), false);
        assert_eq!(one.admit(Some("a"), 0.0), Ok(()));
        assert!(one.admit(Some("b"), 0.0).is_err());
    }

    #[test]
    fn a_new_limit_keeps_what_was_saved_up_to_the_new_burst() {
        let mut l = Limiter::new(&limit(1.0, 10.0), false);
        for _ in 0..9 {
            assert_eq!(l.admit(None, 0.0), Ok(()));
        }
        l.set(&limit(1.0, 5.0), 0.0);
        assert_eq!(l.admit(None, 0.0), Ok(()), "one token was left");
        assert!(l.admit(None, 0.0).is_err(), "not a fresh bucket");
        l.set(&limit(100.0, 5.0), 0.0);
        assert_eq!(l.admit(None, 0.01), Ok(()), "the new rate refills");
    }

    #[test]
    fn the_callers_kept_are_bounded() {
        let mut l = Limiter::new(&limit(1.0, 1.0), true);
        for i in 0..(MAX_CALLERS + 10) {
            let _ = l.admit(Some(&format!("c{i}")), i as f64 * 0.001);
        }
        assert!(l.buckets.len() <= MAX_CALLERS + 1);
        let mut l = Limiter::new(&limit(1.0, 1.0), true);
        for i in 0..MAX_CALLERS {
            let _ = l.admit(Some(&format!("c{i}")), 0.0);
        }
        // every bucket has refilled by t=10: all are forgotten, the newcomer kept
        assert_eq!(l.admit(Some("late"), 10.0), Ok(()));
        assert_eq!(l.buckets.len(), 1);
    }
}
