//! A token bucket: the twin of `seawall.policy.RateLimiter`'s state machine
//! (its `try_acquire`, `retry_after` and `available`, told the time).
//!
//! `rate` tokens a second are added, at most `burst` kept; a call takes one.
//! The bucket starts full. Time that goes backwards adds nothing. A shortfall
//! of at most `1e-9` token counts as none (Python's `_EPSILON`), so that a
//! refill that lands a hair under a whole token (0.1 a second for 10 s) is
//! one token on both sides.
use std::fmt;

const EPSILON: f64 = 1e-9;

/// A setting is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitError {
    /// `"rate"` or `"burst"`.
    pub field: &'static str,
    /// What it must be.
    pub rule: &'static str,
    /// The value given, as text.
    pub value: String,
}

impl fmt::Display for RateLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RateLimiter: {} must be {}, got {}",
            self.field, self.rule, self.value
        )
    }
}

impl std::error::Error for RateLimitError {}

/// One token bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Option<f64>,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens, refilled at `rate` a second.
    pub fn new(rate: f64, burst: f64) -> Result<Self, RateLimitError> {
        check(rate, burst)?;
        Ok(TokenBucket {
            rate,
            burst,
            tokens: burst,
            updated: None,
        })
    }

    /// `(rate, burst)`.
    pub fn settings(&self) -> (f64, f64) {
        (self.rate, self.burst)
    }

    fn refill(&mut self, now: f64) {
        match self.updated {
            None => self.updated = Some(now),
            Some(then) if now > then => {
                self.tokens = self.burst.min(self.tokens + (now - then) * self.rate);
                self.updated = Some(now);
            }
            Some(_) => {}
        }
    }

    /// Tokens in the bucket at `now`.
    pub fn available(&mut self, now: f64) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Take one token if there is one at `now`.
    pub fn try_acquire(&mut self, now: f64) -> bool {
        self.refill(now);
        if 1.0 - self.tokens > EPSILON {
            return false;
        }
        self.tokens -= 1.0;
        true
    }

    /// Seconds from `now` until a token is there (0 if one is).
    pub fn retry_after(&mut self, now: f64) -> f64 {
        self.refill(now);
        let short = 1.0 - self.tokens;
        if short <= EPSILON {
            0.0
        } else {
            short / self.rate
        }
    }

    /// New settings at `now`: the tokens saved stay, up to the new burst.
    pub fn reconfigure(&mut self, rate: f64, burst: f64, now: f64) -> Result<(), RateLimitError> {
        check(rate, burst)?;
        self.refill(now);
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
        Ok(())
    }

    /// Whether the bucket is full at `now` (its owner has been quiet).
    pub fn is_full(&mut self, now: f64) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

fn check(rate: f64, burst: f64) -> Result<(), RateLimitError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(RateLimitError {
            field: "rate",
            rule: "a finite number > 0",
            value: rate.to_string(),
        });
    }
    if !(burst.is_finite() && burst >= 1.0) {
        return Err(RateLimitError {
            field: "burst",
            rule: "a finite number >= 1",
            value: burst.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let mut b = TokenBucket::new(2.0, 3.0).expect("valid");
        assert!((0..3).all(|_| b.try_acquire(10.0)));
        assert!(!b.try_acquire(10.0));
        assert_eq!(b.retry_after(10.0), 0.5);
        assert_eq!(b.retry_after(10.25), 0.25);
        assert!(b.try_acquire(10.5));
        // time going backwards adds nothing
        assert!(!b.try_acquire(9.0));
        assert_eq!(b.available(100.0), 3.0);
    }

    #[test]
    fn a_hair_under_a_token_is_a_token() {
        let mut b = TokenBucket::new(0.1, 1.0).expect("valid");
        assert!(b.try_acquire(0.0));
        let mut t = 0.0;
        for _ in 0..10 {
            t += 1.0; // ten refills of 0.1 add up to 0.9999999999999999
            let _ = b.available(t);
        }
        assert!(b.try_acquire(t));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = TokenBucket::new(0.0, 1.0).expect_err("refused");
        assert_eq!(
            e.to_string(),
            "RateLimiter: rate must be a finite number > 0, got 0"
        );
        assert_eq!(
            TokenBucket::new(1.0, 0.5).expect_err("refused").field,
            "burst"
        );
        let mut b = TokenBucket::new(1.0, 10.0).expect("valid");
        assert!(b.reconfigure(f64::NAN, 1.0, 0.0).is_err());
        assert_eq!(b.settings(), (1.0, 10.0));
        b.reconfigure(1.0, 2.0, 0.0).expect("valid");
        assert_eq!(b.available(0.0), 2.0);
    }
}
