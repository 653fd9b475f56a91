//! The monotonic clock the policies are told: seconds since the core started.
use std::time::Instant;

/// Seconds as `f64` on a monotonic clock, like the Python policies' clocks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Seconds since this clock started.
    pub fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    /// The tokio instant of a time on this clock (for timers).
    pub fn instant(&self, at: f64) -> tokio::time::Instant {
        let at = if at.is_finite() { at.max(0.0) } else { 1e9 };
        tokio::time::Instant::from_std(self.origin + std::time::Duration::from_secs_f64(at))
    }
}
