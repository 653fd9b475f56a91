//! Rate limits on the wire (`rate_limit` in mesh.yaml): token buckets
//! (`seawall_policy::ratelimit::TokenBucket`, the twin of
//! `seawall.policy.RateLimiter`, held equal by the conformance corpus), used
//! as `RateLimiter(max_wait=0)` is: a request over the limit is refused at
//! once, never queued.
//!
//! Outbound (`policies.X.rate_limit`), one bucket for every call this sidecar
//! makes to X. Inbound (`services.X.rate_limit`), one bucket per caller
//! identity (the service named by the caller's mTLS certificate), and one
//! shared by every caller without one.
//!
//! Sans-I/O: told the time, never reads a clock.
use std::collections::HashMap;

use seawall_policy::ratelimit::{RateLimitError, TokenBucket};

use crate::spec;

/// The most callers with a bucket of their own; past it, the buckets that
/// are full (their callers quiet long enough to have saved up a burst)
/// are forgotten, which changes nothing for those callers.
const MAX_CALLERS: usize = 4096;

/// The key of the callers without an identity.
pub const UNAUTHENTICATED: &str = "";

/// The rate limit of one destination (outbound) or of the local service
/// (inbound, `per_caller`).
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    per_caller: bool,
    buckets: HashMap<String, TokenBucket>,
}

impl Limiter {
    pub fn new(spec: &spec::RateLimit, per_caller: bool) -> Result<Self, RateLimitError> {
        TokenBucket::new(spec.rate, spec.burst)?; // the settings, checked once
        Ok(Limiter {
            rate: spec.rate,
            burst: spec.burst,
            per_caller,
            buckets: HashMap::new(),
        })
    }

    /// Admit one request from `caller` at `now`; `Err(seconds)` until a
    /// token is there.
    pub fn admit(&mut self, caller: Option<&str>, now: f64) -> Result<(), f64> {
        let key = if self.per_caller {
            caller.unwrap_or(UNAUTHENTICATED)
        } else {
            UNAUTHENTICATED
        };
        if !self.buckets.contains_key(key) {
            if self.buckets.len() >= MAX_CALLERS {
                self.buckets.retain(|_, b| !b.is_full(now));
            }
            let Ok(bucket) = TokenBucket::new(self.rate, self.burst) else {
                return Ok(()); // checked in new() and set(): cannot happen
            };
            self.buckets.insert(key.to_owned(), bucket);
        }
        let Some(bucket) = self.buckets.get_mut(key) else {
            return Ok(());
        };
        if bucket.try_acquire(now) {
            Ok(())
        } else {
            Err(bucket.retry_after(now))
        }
    }

    /// New settings (a new config): every caller keeps what it has saved, up
    /// to the new burst.
    pub fn set(&mut self, spec: &spec::RateLimit, now: f64) -> Result<(), RateLimitError> {
        TokenBucket::new(spec.rate, spec.burst)?;
        self.rate = spec.rate;
        self.burst = spec.burst;
        for b in self.buckets.values_mut() {
            b.reconfigure(spec.rate, spec.burst, now)?;
        }
        Ok(())
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
        let mut l = Limiter::new(&limit(2.0, 3.0), false).expect("valid");
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
        let mut l = Limiter::new(&limit(1.0, 1.0), true).expect("valid");
        assert_eq!(l.admit(Some("orders"), 0.0), Ok(()));
        assert!(l.admit(Some("orders"), 0.0).is_err());
        assert_eq!(l.admit(Some("gateway"), 0.0), Ok(()));
        assert_eq!(l.admit(None, 0.0), Ok(()));
        assert!(
            l.admit(None, 0.5).is_err(),
            "callers without an identity share one"
        );
        // outbound: one bucket whoever calls
        let mut one = Limiter::new(&limit(1.0, 1.0), false).expect("valid");
        assert_eq!(one.admit(Some("a"), 0.0), Ok(()));
        assert!(one.admit(Some("b"), 0.0).is_err());
    }

    #[test]
    fn a_new_limit_keeps_what_was_saved_up_to_the_new_burst() {
        let mut l = Limiter::new(&limit(1.0, 10.0), false).expect("valid");
        for _ in 0..9 {
            assert_eq!(l.admit(None, 0.0), Ok(()));
        }
        l.set(&limit(1.0, 5.0), 0.0).expect("valid");
        assert_eq!(l.admit(None, 0.0), Ok(()), "one token was left");
        assert!(l.admit(None, 0.0).is_err(), "not a fresh bucket");
        l.set(&limit(100.0, 5.0), 0.0).expect("valid");
        assert_eq!(l.admit(None, 0.01), Ok(()), "the new rate refills");
    }

    #[test]
    fn the_callers_kept_are_bounded() {
        let mut l = Limiter::new(&limit(1.0, 1.0), true).expect("valid");
        for i in 0..(MAX_CALLERS + 10) {
            let _ = l.admit(Some(&format!("c{i}")), i as f64 * 0.001);
        }
        assert!(l.buckets.len() <= MAX_CALLERS + 1);
        let mut l = Limiter::new(&limit(1.0, 1.0), true).expect("valid");
        for i in 0..MAX_CALLERS {
            let _ = l.admit(Some(&format!("c{i}")), 0.0);
        }
        // every bucket has refilled by t=10: all are forgotten, the newcomer kept
        assert_eq!(l.admit(Some("late"), 10.0), Ok(()));
        assert_eq!(l.buckets.len(), 1);
    }
}
