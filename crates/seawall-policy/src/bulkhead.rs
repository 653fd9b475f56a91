//! Bulkheads: at most `max_in_flight` calls in flight, and a bounded FIFO
//! queue for the calls that arrive while it is full. The twin of
//! `seawall.policy.bulkhead.Bulkhead`'s state machine.
//!
//! A call takes a slot if one is free and nobody is queued. Otherwise it
//! queues if fewer than `max_waiting` calls already are, for at most
//! `max_wait` seconds and never past its deadline; otherwise it is rejected
//! (`queue_full`, or `wait_timeout` when it has no time left to wait). A slot
//! given back goes to the first queued call (it is *granted*: counted in
//! flight, and the call's to claim), else back to the free ones.
//!
//! Waiting is the adapter's: this struct only says who is queued, who was
//! granted a slot, and (through [`Bulkhead::expired`]) whose wait has run out,
//! which the adapter then [`settle`](Bulkhead::settle)s. The sidecar uses one
//! with no queue for a destination's `max_in_flight`.
//!
//! [`Bulkhead::reconfigure`] changes the limits of a live bulkhead: the calls
//! in flight and the queue carry over. Under a lower limit the calls over it
//! finish normally, and a slot is free again only once in flight is under the
//! new limit; a higher limit grants queued calls at once.
//!
//! Names: `max_in_flight`, as in the Python twin, `seawall._native` and
//! mesh.yaml (one vocabulary).
use std::collections::VecDeque;
use std::fmt;

/// A bulkhead's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BulkheadConfig {
    /// Calls in flight at once (>= 1).
    pub max_in_flight: usize,
    /// Calls queued for a slot (0: reject at once when full).
    pub max_waiting: usize,
    /// Longest a queued call waits, seconds (>= 0, `inf` allowed).
    pub max_wait: f64,
}

impl Default for BulkheadConfig {
    /// The Python defaults (with one slot).
    fn default() -> Self {
        Self {
            max_in_flight: 1,
            max_waiting: 0,
            max_wait: 1.0,
        }
    }
}

/// A setting of a [`BulkheadConfig`] is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkheadError {
    /// `"max_in_flight"` or `"max_wait"`.
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for BulkheadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bulkhead {} {}", self.field, self.reason)
    }
}

impl std::error::Error for BulkheadError {}

impl BulkheadConfig {
    pub fn validate(&self) -> Result<(), BulkheadError> {
        if self.max_in_flight < 1 {
            return Err(BulkheadError {
                field: "max_in_flight",
                reason: "must be >= 1",
            });
        }
        if self.max_wait.is_nan() || self.max_wait < 0.0 {
            return Err(BulkheadError {
                field: "max_wait",
                reason: "must be seconds >= 0",
            });
        }
        Ok(())
    }
}

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// `max_waiting` calls are queued already.
    QueueFull,
    /// No time left to wait (its deadline), or its wait ran out.
    WaitTimeout,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::WaitTimeout => "wait_timeout",
        }
    }
}

/// What [`Bulkhead::acquire`] did with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It has a slot.
    Granted,
    /// It is queued under this ticket: wait, then [`Bulkhead::settle`] it.
    Queued(u64),
}

/// Calls in flight and queued, and the rejections so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadMetrics {
    pub max_in_flight: usize,
    /// Slots taken: calls running, or granted a slot and not claimed yet.
    pub in_flight: usize,
    pub waiting: usize,
    pub rejected_queue_full: u64,
    pub rejected_wait_timeout: u64,
}

/// A queued call: its ticket and when its wait runs out.
#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: u64,
    expires: f64,
}

/// The bulkhead's state: see the module docs.
#[derive(Debug, Clone)]
pub struct Bulkhead {
    config: BulkheadConfig,
    in_flight: usize,
    waiters: VecDeque<Waiter>,
    /// Tickets granted a slot and not settled yet (few: bounded by the queue).
    granted: Vec<u64>,
    next_ticket: u64,
    rejected_queue_full: u64,
    rejected_wait_timeout: u64,
}

impl Bulkhead {
    pub fn new(config: &BulkheadConfig) -> Result<Self, BulkheadError> {
        config.validate()?;
        Ok(Bulkhead {
            config: *config,
            in_flight: 0,
            waiters: VecDeque::new(),
            granted: Vec::new(),
            next_ticket: 0,
            rejected_queue_full: 0,
            rejected_wait_timeout: 0,
        })
    }

    pub fn config(&self) -> &BulkheadConfig {
        &self.config
    }

    fn free(&self) -> bool {
        self.in_flight < self.config.max_in_flight
    }

    /// Take a slot if one is free and nobody is queued; never queues, counts nothing.
    pub fn try_acquire(&mut self) -> bool {
        if !self.waiters.is_empty() || !self.free() {
            return false;
        }
        self.in_flight += 1;
        true
    }

    /// A call arrives at `now` with `deadline` (absolute, if any): a slot, a
    /// place in the queue, or a rejection (counted).
    pub fn acquire(&mut self, now: f64, deadline: Option<f64>) -> Result<Admission, Rejection> {
        if self.try_acquire() {
            return Ok(Admission::Granted);
        }
        let mut budget = self.config.max_wait;
        if let Some(deadline) = deadline {
            if deadline - now < budget {
                budget = deadline - now;
            }
        }
        if self.waiters.len() >= self.config.max_waiting {
            self.rejected_queue_full += 1;
            return Err(Rejection::QueueFull);
        }
        if budget <= 0.0 || budget.is_nan() {
            self.rejected_wait_timeout += 1;
            return Err(Rejection::WaitTimeout);
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.waiters.push_back(Waiter {
            ticket,
            expires: now + budget,
        });
        self.grant();
        Ok(Admission::Queued(ticket))
    }

    /// Hand free slots to queued calls, first come first served; returns their tickets.
    fn grant(&mut self) -> Vec<u64> {
        let mut woken = Vec::new();
        while self.free() {
            let Some(w) = self.waiters.pop_front() else {
                break;
            };
            self.in_flight += 1;
            self.granted.push(w.ticket);
            woken.push(w.ticket);
        }
        woken
    }

    /// A call gives its slot back: the tickets of the queued calls granted one.
    pub fn release(&mut self) -> Vec<u64> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.grant()
    }

    /// The queued calls whose wait has run out at `now`, first queued first.
    pub fn expired(&self, now: f64) -> Vec<u64> {
        self.waiters
            .iter()
            .filter(|w| w.expires <= now)
            .map(|w| w.ticket)
            .collect()
    }

    /// A queued call stops waiting (its wait ran out: `timed_out`, or it was
    /// cancelled). `true`: it had been granted a slot, now its to use (or to
    /// release); `false`: it left the queue (a timeout is counted).
    pub fn settle(&mut self, ticket: u64, timed_out: bool) -> bool {
        if let Some(i) = self.granted.iter().position(|t| *t == ticket) {
            self.granted.swap_remove(i);
            return true;
        }
        if let Some(i) = self.waiters.iter().position(|w| w.ticket == ticket) {
            self.waiters.remove(i);
            if timed_out {
                self.rejected_wait_timeout += 1;
            }
        }
        false
    }

    /// New limits for a live bulkhead (see the module docs); returns the
    /// tickets of queued calls that a higher limit granted.
    pub fn reconfigure(&mut self, config: &BulkheadConfig) -> Result<Vec<u64>, BulkheadError> {
        config.validate()?;
        self.config = *config;
        Ok(self.grant())
    }

    pub fn metrics(&self) -> BulkheadMetrics {
        BulkheadMetrics {
            max_in_flight: self.config.max_in_flight,
            in_flight: self.in_flight,
            waiting: self.waiters.len(),
            rejected_queue_full: self.rejected_queue_full,
            rejected_wait_timeout: self.rejected_wait_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulkhead(max_in_flight: usize, max_waiting: usize, max_wait: f64) -> Bulkhead {
        let config = BulkheadConfig {
            max_in_flight,
            max_waiting,
            max_wait,
        };
        Bulkhead::new(&config).expect("valid")
    }

    #[test]
    fn full_without_a_queue_rejects_at_once() {
        let mut b = bulkhead(2, 0, 1.0);
        assert_eq!(b.acquire(0.0, None), Ok(Admission::Granted));
        assert_eq!(b.acquire(0.0, None), Ok(Admission::Granted));
        assert_eq!(b.acquire(0.0, None), Err(Rejection::QueueFull));
        assert!(b.release().is_empty());
        assert!(b.try_acquire());
        assert_eq!(b.metrics().in_flight, 2);
        assert_eq!(b.metrics().rejected_queue_full, 1);
    }

    #[test]
    fn the_queue_is_fifo_and_bounded_in_length_and_time() {
        let mut b = bulkhead(1, 2, 5.0);
        assert_eq!(b.acquire(0.0, None), Ok(Admission::Granted));
        assert_eq!(b.acquire(1.0, None), Ok(Admission::Queued(0)));
        assert_eq!(b.acquire(2.0, Some(4.0)), Ok(Admission::Queued(1)));
        assert_eq!(b.acquire(2.0, None), Err(Rejection::QueueFull));
        // the deadline cut the second one's wait to 2 s
        assert_eq!(b.expired(4.0), vec![1]);
        assert!(!b.settle(1, true));
        assert_eq!(b.metrics().rejected_wait_timeout, 1);
        // a slot given back goes to the first queued
        assert_eq!(b.release(), vec![0]);
        assert!(
            b.settle(0, true),
            "granted before it timed out: it keeps the slot"
        );
        assert_eq!(b.metrics().in_flight, 1);
        // no time left at all: rejected without queueing
        assert_eq!(b.acquire(9.0, Some(9.0)), Err(Rejection::WaitTimeout));
    }

    #[test]
    fn a_new_limit_keeps_what_is_in_flight() {
        let mut b = bulkhead(3, 4, 10.0);
        for _ in 0..3 {
            assert_eq!(b.acquire(0.0, None), Ok(Admission::Granted));
        }
        assert_eq!(b.acquire(0.0, None), Ok(Admission::Queued(0)));
        let lower = BulkheadConfig {
            max_in_flight: 1,
            max_waiting: 4,
            max_wait: 10.0,
        };
        assert!(b.reconfigure(&lower).expect("valid").is_empty());
        assert_eq!(b.metrics().in_flight, 3);
        // two calls over the new limit finish before a slot is free again
        assert!(b.release().is_empty());
        assert!(b.release().is_empty());
        assert_eq!(b.release(), vec![0]);
        let higher = BulkheadConfig {
            max_in_flight: 5,
            ..lower
        };
        assert_eq!(b.acquire(1.0, None), Ok(Admission::Queued(1)));
        assert_eq!(b.reconfigure(&higher).expect("valid"), vec![1]);
        let bad = BulkheadConfig {
            max_in_flight: 0,
            ..lower
        };
        assert_eq!(
            b.reconfigure(&bad).expect_err("invalid").field,
            "max_in_flight"
        );
        assert_eq!(
            b.config().max_in_flight,
            5,
            "an invalid config changes nothing"
        );
    }
}
