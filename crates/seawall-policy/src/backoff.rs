//! Backoff: how long to wait before each retry. The twin of
//! `seawall.policy.backoff.backoff(jitter, base, max)`, the exponential family
//! a config file names with three words.
//!
//! `v = min(max, base * 2^(attempt - 1))` is the capped exponential delay:
//!
//! | jitter | delay | draws |
//! |---|---|---|
//! | `none` | `v` | none |
//! | `full` | `r * v` | one |
//! | `equal` | `v/2 + r * v/2` | one |
//! | `decorrelated` | `min(max, base + r * (3 * max(previous, base) - base))` | one |
//!
//! where `r` is one draw from the injected [`Random`] (the AWS Architecture
//! Blog's "Exponential Backoff And Jitter"). Each kind draws exactly what the
//! Python strategy draws (`rng.random()`, once or never), so both runtimes fed
//! the same draws return the same delays, bit for bit.
//!
//! Every delay is in `[0, max]`. The Python strategies guarantee it for draws
//! in `[0, 1)`; here it holds whatever a [`Random`] returns (a NaN or
//! out-of-range draw is clamped), so a delay is always safe to sleep on.

use std::fmt;
use std::num::NonZeroU32;

use crate::rng::Random;

/// How a delay is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Jitter {
    /// Plain exponential (Python's `Exponential(base, 2.0, max)`).
    None,
    /// AWS "Full Jitter" (`ExponentialFullJitter`), the default.
    Full,
    /// AWS "Equal Jitter" (`ExponentialEqualJitter`).
    Equal,
    /// AWS "Decorrelated Jitter" (`DecorrelatedJitter`).
    Decorrelated,
}

impl Jitter {
    /// The config word: `"none"`, `"full"`, `"equal"` or `"decorrelated"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        }
    }

    /// The jitter named by a config word.
    pub fn from_name(name: &str) -> Result<Jitter, BackoffError> {
        match name {
            "none" => Ok(Jitter::None),
            "full" => Ok(Jitter::Full),
            "equal" => Ok(Jitter::Equal),
            "decorrelated" => Ok(Jitter::Decorrelated),
            _ => Err(BackoffError::Jitter(name.to_owned())),
        }
    }
}

/// A backoff could not be built.
#[derive(Debug, Clone, PartialEq)]
pub enum BackoffError {
    /// Not one of `none`, `full`, `equal`, `decorrelated`.
    Jitter(String),
    /// `base` is not a finite number >= 0 (> 0 for decorrelated jitter).
    Base(f64),
    /// `max` is not a finite number >= 0, or is below `base`.
    Max(f64),
}

impl fmt::Display for BackoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackoffError::Jitter(j) => write!(
                f,
                "backoff: jitter must be one of none, full, equal, decorrelated; got {j:?}"
            ),
            BackoffError::Base(v) => write!(
                f,
                "backoff: base must be a finite number >= 0 (> 0 for decorrelated jitter), got {v}"
            ),
            BackoffError::Max(v) => {
                write!(f, "backoff: max must be a finite number >= base, got {v}")
            }
        }
    }
}

impl std::error::Error for BackoffError {}

/// An exponential backoff with jitter (stateless: share one per policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    jitter: Jitter,
    base: f64,
    max: f64,
}

impl Backoff {
    /// `base` (seconds, finite, >= 0; > 0 for decorrelated) doubling per retry up to `max` (>= base).
    pub fn new(jitter: Jitter, base: f64, max: f64) -> Result<Self, BackoffError> {
        let base_ok = base.is_finite()
            && if jitter == Jitter::Decorrelated {
                base > 0.0
            } else {
                base >= 0.0
            };
        if !base_ok {
            return Err(BackoffError::Base(base));
        }
        if !(max.is_finite() && max >= base) {
            return Err(BackoffError::Max(max));
        }
        Ok(Self { jitter, base, max })
    }

    /// The jitter kind.
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }

    /// Delay before the first retry (its upper bound, with jitter), seconds.
    pub fn base(&self) -> f64 {
        self.base
    }

    /// The cap: no delay is ever longer, seconds.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Seconds to wait before retry number `attempt` (1 for the first retry).
    ///
    /// `previous` is the delay returned for the previous retry (0.0 before
    /// the first); only decorrelated jitter uses it.
    pub fn delay(&self, attempt: NonZeroU32, previous: f64, rng: &mut dyn Random) -> f64 {
        let value = match self.jitter {
            Jitter::None => self.exponential(attempt),
            Jitter::Full => rng.next_f64() * self.exponential(attempt),
            Jitter::Equal => {
                let half = self.exponential(attempt) / 2.0;
                half + rng.next_f64() * half
            }
            Jitter::Decorrelated => {
                let base = self.base;
                let upper = 3.0 * if previous > base { previous } else { base };
                let value = base + rng.next_f64() * (upper - base);
                if value > self.max {
                    self.max
                } else {
                    value
                }
            }
        };
        // Only a draw outside [0, 1) (or a NaN) can leave the range.
        if value >= 0.0 && value <= self.max {
            value
        } else if value < 0.0 {
            0.0
        } else {
            self.max
        }
    }

    /// `min(max, base * 2^(attempt - 1))`, as Python computes it: an overflowing
    /// power gives the cap (0 when `base` is 0).
    fn exponential(&self, attempt: NonZeroU32) -> f64 {
        let growth = 2.0f64.powf(f64::from(attempt.get() - 1));
        if growth.is_infinite() {
            return if self.base > 0.0 { self.max } else { 0.0 };
        }
        let value = self.base * growth;
        if value > self.max {
            self.max
        } else {
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Sequence, SplitMix64};

    fn n(attempt: u32) -> NonZeroU32 {
        NonZeroU32::new(attempt).expect("attempt >= 1")
    }

    #[test]
    fn none_doubles_up_to_the_cap_and_draws_nothing() {
        let b = Backoff::new(Jitter::None, 0.1, 1.0).expect("valid");
        let mut rng = Sequence::new(vec![]);
        let delays: Vec<f64> = (1..=5).map(|a| b.delay(n(a), 0.0, &mut rng)).collect();
        assert_eq!(delays, [0.1, 0.2, 0.4, 0.8, 1.0]);
        assert_eq!(b.delay(n(u32::MAX), 0.0, &mut rng), 1.0);
        let zero = Backoff::new(Jitter::None, 0.0, 1.0).expect("valid");
        assert_eq!(zero.delay(n(5000), 0.0, &mut rng), 0.0);
    }

    #[test]
    fn full_and_equal_use_one_draw() {
        let full = Backoff::new(Jitter::Full, 1.0, 10.0).expect("valid");
        let equal = Backoff::new(Jitter::Equal, 1.0, 10.0).expect("valid");
        let mut rng = Sequence::new(vec![0.5, 0.25]);
        assert_eq!(full.delay(n(3), 0.0, &mut rng), 2.0);
        assert_eq!(equal.delay(n(3), 0.0, &mut rng), 2.5);
        assert_eq!(full.delay(n(2000), 0.0, &mut Sequence::new(vec![0.5])), 5.0);
    }

    #[test]
    fn decorrelated_grows_from_the_previous_delay() {
        let b = Backoff::new(Jitter::Decorrelated, 1.0, 20.0).expect("valid");
        let mut rng = Sequence::new(vec![0.0, 0.5, 0.999]);
        assert_eq!(b.delay(n(1), 0.0, &mut rng), 1.0);
        assert_eq!(b.delay(n(2), 4.0, &mut rng), 1.0 + 0.5 * 11.0);
        assert_eq!(b.delay(n(3), 100.0, &mut rng), 20.0);
    }

    #[test]
    fn every_delay_is_in_range_whatever_the_draws() {
        let mut rng = SplitMix64::new(3);
        for jitter in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            let b = Backoff::new(jitter, 0.05, 2.0).expect("valid");
            let mut previous = 0.0;
            for attempt in 1..200 {
                previous = b.delay(n(attempt), previous, &mut rng);
                assert!((0.0..=2.0).contains(&previous));
            }
            for draw in [f64::NAN, -1.0, 7.0, f64::INFINITY] {
                let d = b.delay(n(4), f64::INFINITY, &mut Sequence::new(vec![draw]));
                assert!((0.0..=2.0).contains(&d), "{jitter:?} {draw} {d}");
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            Jitter::from_name("wild"),
            Err(BackoffError::Jitter("wild".into()))
        );
        for j in [
            Jitter::None,
            Jitter::Full,
            Jitter::Equal,
            Jitter::Decorrelated,
        ] {
            assert_eq!(Jitter::from_name(j.as_str()), Ok(j));
        }
        assert_eq!(
            Backoff::new(Jitter::Decorrelated, 0.0, 1.0),
            Err(BackoffError::Base(0.0))
        );
        assert!(Backoff::new(Jitter::Full, 0.0, 1.0).is_ok());
        assert!(Backoff::new(Jitter::Full, f64::NAN, 1.0).is_err());
        assert_eq!(
            Backoff::new(Jitter::Full, 2.0, 1.0),
            Err(BackoffError::Max(1.0))
        );
        assert!(Backoff::new(Jitter::Equal, 1.0, f64::INFINITY).is_err());
        let b = Backoff::new(Jitter::Equal, 0.5, 3.0).expect("valid");
        assert_eq!((b.jitter(), b.base(), b.max()), (Jitter::Equal, 0.5, 3.0));
        assert!(BackoffError::Max(1.0).to_string().contains("max"));
    }
}
