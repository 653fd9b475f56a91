//! Criticality shedding: a concurrency limit, fixed or adaptive, that sheds
//! the least critical requests first. The twin of
//! `seawall.policy.shed.LoadShedder`'s state machine; the inbound sidecar
//! keeps one in front of its app.
//!
//! A request takes a slot while fewer than the limit are in flight and none
//! is queued. Otherwise it queues, up to `max_waiting` requests, for at most
//! `max_wait` seconds (and never past its deadline: the adapter's part). The
//! queue is ordered by criticality, then arrival: a freed slot goes to the
//! most critical request that has waited longest. A request that finds the
//! queue full takes the place of the least critical, newest request queued
//! when that one is less critical than itself (that one is shed); otherwise it
//! is shed itself. So under overload the lowest criticality absorbs the
//! shedding, and a more critical request is shed only when the queue holds
//! nothing less critical than it, or its wait ran out.
//!
//! The adaptive limit is a gradient, in the manner of Netflix's
//! concurrency-limits (`Gradient2Limit`): each finished request's latency is
//! compared with a long-term average of latencies. While latency stays within
//! `tolerance` times the average the limit grows (by about its square root
//! per step, smoothed); once the app slows down (requests queue inside it),
//! the ratio falls and the limit shrinks with it, to no less than half per
//! step. A service that uses less than half of its limit is not measured
//! against it (the limit would grow without evidence). The average follows
//! a latency that dropped by far (a recovery) faster than one that rose.
//!
//! Waiting is the adapter's: this struct says who is queued, who was granted
//! a slot when one was given back, and whose wait ran out ([`Shedder::expired`]).
use std::collections::VecDeque;
use std::fmt;

/// How much a request matters when its service is overloaded, most critical
/// first (the names of Google's criticality levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Criticality {
    CriticalPlus,
    Critical,
    SheddablePlus,
    Sheddable,
}

impl Criticality {
    /// Every level, most critical first.
    pub const ALL: [Criticality; 4] = [
        Criticality::CriticalPlus,
        Criticality::Critical,
        Criticality::SheddablePlus,
        Criticality::Sheddable,
    ];

    /// A level by name (`critical_plus`, `critical`, `sheddable_plus`,
    /// `sheddable`), in any case; `None` for another.
    pub fn parse(name: &str) -> Option<Criticality> {
        let name = name.trim();
        Criticality::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(name))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Criticality::CriticalPlus => "critical_plus",
            Criticality::Critical => "critical",
            Criticality::SheddablePlus => "sheddable_plus",
            Criticality::Sheddable => "sheddable",
        }
    }

    /// 0 for the most critical, 3 for the least.
    pub fn rank(self) -> usize {
        self as usize
    }
}

/// The adaptive limit's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gradient {
    /// The limit before any measurement.
    pub initial: f64,
    pub min: f64,
    pub max: f64,
    /// How much of each step's new limit is taken (0, 1].
    pub smoothing: f64,
    /// Latency up to this many times the long-term average is no sign of
    /// overload (>= 1).
    pub tolerance: f64,
    /// Samples the long-term average spans (its first `warmup` are a plain mean).
    pub long_window: u32,
    pub warmup: u32,
}

impl Default for Gradient {
    fn default() -> Self {
        Gradient {
            initial: 20.0,
            min: 1.0,
            max: 1000.0,
            smoothing: 0.2,
            tolerance: 1.5,
            long_window: 600,
            warmup: 10,
        }
    }
}

/// A fixed or an adaptive concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Fixed(usize),
    Gradient(Gradient),
}

/// A shedder's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedConfig {
    pub limit: Limit,
    /// Requests queued for a slot (0: shed at once when full).
    pub max_waiting: usize,
    /// Longest a queued request waits, seconds (>= 0).
    pub max_wait: f64,
}

impl Default for ShedConfig {
    fn default() -> Self {
        ShedConfig {
            limit: Limit::Gradient(Gradient::default()),
            max_waiting: 50,
            max_wait: 0.1,
        }
    }
}

/// A setting of a [`ShedConfig`] is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct ShedError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl fmt::Display for ShedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoadShedder {} {}", self.field, self.reason)
    }
}

impl std::error::Error for ShedError {}

fn check(ok: bool, field: &'static str, reason: &'static str) -> Result<(), ShedError> {
    if ok {
        Ok(())
    } else {
        Err(ShedError { field, reason })
    }
}

impl ShedConfig {
    pub fn validate(&self) -> Result<(), ShedError> {
        match self.limit {
            Limit::Fixed(n) => check(n >= 1, "limit", "must be >= 1")?,
            Limit::Gradient(g) => {
                check(
                    g.min >= 1.0 && g.min.is_finite(),
                    "min_limit",
                    "must be >= 1",
                )?;
                check(
                    g.max >= g.min && g.max.is_finite(),
                    "max_limit",
                    "must be >= min_limit",
                )?;
                check(
                    g.initial >= g.min && g.initial <= g.max,
                    "initial_limit",
                    "must be within [min_limit, max_limit]",
                )?;
                check(
                    g.smoothing > 0.0 && g.smoothing <= 1.0,
                    "smoothing",
                    "must be in (0, 1]",
                )?;
                check(
                    g.tolerance >= 1.0 && g.tolerance.is_finite(),
                    "tolerance",
                    "must be >= 1",
                )?;
                check(g.long_window >= 1, "long_window", "must be >= 1")?;
                check(g.warmup >= 1, "warmup", "must be >= 1")?;
            }
        }
        check(
            self.max_wait >= 0.0 && !self.max_wait.is_nan(),
            "max_wait",
            "must be seconds >= 0",
        )
    }
}

/// What became of a request that asked for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// It holds a slot: release it when the request ends.
    Admitted,
    /// It waits for a slot under this ticket; `evicted`: the ticket of a less
    /// critical request it took the place of, shed now.
    Queued { ticket: u64, evicted: Option<u64> },
    /// Refused: the queue is full of requests at least as critical.
    Shed,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    ticket: u64,
    criticality: Criticality,
    since: f64,
}

/// Counts since the shedder was made, by criticality (most critical first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShedCounts {
    pub admitted: [u64; 4],
    pub shed: [u64; 4],
}

/// The limit and the queue; see the module's documentation.
#[derive(Debug, Clone)]
pub struct Shedder {
    config: ShedConfig,
    limit: f64,
    in_flight: usize,
    /// Most critical first, then by arrival.
    queue: VecDeque<Waiter>,
    next_ticket: u64,
    long_latency: f64,
    samples: u64,
    counts: ShedCounts,
}

impl Shedder {
    pub fn new(config: ShedConfig) -> Result<Self, ShedError> {
        config.validate()?;
        Ok(Shedder {
            config,
            limit: initial_limit(&config.limit),
            in_flight: 0,
            queue: VecDeque::new(),
            next_ticket: 0,
            long_latency: 0.0,
            samples: 0,
            counts: ShedCounts::default(),
        })
    }

    pub fn config(&self) -> &ShedConfig {
        &self.config
    }

    /// The limit now (the adaptive one is a real number; its slots are its floor, at least 1).
    pub fn limit(&self) -> f64 {
        self.limit
    }

    fn slots(&self) -> usize {
        (self.limit.floor() as usize).max(1)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    pub fn counts(&self) -> ShedCounts {
        self.counts
    }

    /// A request of this criticality asks for a slot at `now`.
    pub fn acquire(&mut self, now: f64, criticality: Criticality) -> Admission {
        let rank = criticality.rank();
        if self.in_flight < self.slots() && self.queue.is_empty() {
            self.in_flight += 1;
            self.counts.admitted[rank] += 1;
            return Admission::Admitted;
        }
        let mut evicted = None;
        if self.queue.len() >= self.config.max_waiting {
            // the least critical, newest request queued is the last one
            match self.queue.back() {
                Some(last) if last.criticality > criticality => {
                    evicted = Some(last.ticket);
                    self.counts.shed[last.criticality.rank()] += 1;
                    self.queue.pop_back();
                }
                _ => {
                    self.counts.shed[rank] += 1;
                    return Admission::Shed;
                }
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        // after every request at least as critical
        let at = self
            .queue
            .iter()
            .position(|w| w.criticality > criticality)
            .unwrap_or(self.queue.len());
        self.queue.insert(
            at,
            Waiter {
                ticket,
                criticality,
                since: now,
            },
        );
        Admission::Queued { ticket, evicted }
    }

    /// A request that held a slot ended at `now`; `latency`: how long the app
    /// took to answer it (`None`: no answer worth measuring, the client went
    /// away). Returns the tickets granted the freed slots (or the new ones,
    /// when the limit grew).
    pub fn release(&mut self, latency: Option<f64>) -> Vec<u64> {
        let busy = self.in_flight;
        self.in_flight = self.in_flight.saturating_sub(1);
        if let (Limit::Gradient(g), Some(latency)) = (self.config.limit, latency) {
            if latency.is_finite() && latency > 0.0 {
                self.measure(&g, latency, busy);
            }
        }
        self.grant()
    }

    fn measure(&mut self, g: &Gradient, latency: f64, busy: usize) {
        // the long-term average: a plain mean while warming up, then an EMA
        self.samples += 1;
        if self.samples <= u64::from(g.warmup) {
            let n = self.samples as f64;
            self.long_latency = self.long_latency * ((n - 1.0) / n) + latency / n;
        } else {
            let k = 2.0 / (f64::from(g.long_window) + 1.0);
            self.long_latency = self.long_latency * (1.0 - k) + latency * k;
        }
        // a latency far below the average (a recovery): the average follows faster
        if self.long_latency / latency > 2.0 {
            self.long_latency *= 0.95;
        }
        // a service using under half its limit says nothing about the limit
        if (busy as f64) < self.limit / 2.0 {
            return;
        }
        let gradient = (g.tolerance * self.long_latency / latency).clamp(0.5, 1.0);
        let grown = self.limit * gradient + self.limit.sqrt();
        let smoothed = self.limit * (1.0 - g.smoothing) + grown * g.smoothing;
        self.limit = smoothed.clamp(g.min, g.max);
    }

    /// Hand the free slots to the queue, most critical first.
    fn grant(&mut self) -> Vec<u64> {
        let mut granted = Vec::new();
        while self.in_flight < self.slots() {
            let Some(w) = self.queue.pop_front() else {
                break;
            };
            self.in_flight += 1;
            self.counts.admitted[w.criticality.rank()] += 1;
            granted.push(w.ticket);
        }
        granted
    }

    /// The queued tickets whose wait has run out by `now` (`max_wait`), shed
    /// and out of the queue.
    pub fn expired(&mut self, now: f64) -> Vec<u64> {
        let max_wait = self.config.max_wait;
        let mut gone = Vec::new();
        let counts = &mut self.counts;
        self.queue.retain(|w| {
            let keep = now - w.since < max_wait;
            if !keep {
                counts.shed[w.criticality.rank()] += 1;
                gone.push(w.ticket);
            }
            keep
        });
        gone
    }

    /// A queued request gives up (its own deadline, or its client left):
    /// `true` if it was still queued (it is shed now), `false` if it was
    /// granted a slot already (it holds one: release it) or was shed before.
    pub fn cancel(&mut self, ticket: u64) -> bool {
        match self.queue.iter().position(|w| w.ticket == ticket) {
            Some(i) => {
                if let Some(w) = self.queue.remove(i) {
                    self.counts.shed[w.criticality.rank()] += 1;
                }
                true
            }
            None => false,
        }
    }

    /// New settings for a live shedder: the requests in flight and queued
    /// carry over; a new kind of limit (or new fixed value) starts from its
    /// initial value, an adaptive one with the same kind keeps what it learnt
    /// (within the new bounds). Returns the tickets a higher limit grants,
    /// and those a shorter queue sheds (its least critical, newest).
    pub fn reconfigure(&mut self, config: ShedConfig) -> Result<(Vec<u64>, Vec<u64>), ShedError> {
        config.validate()?;
        self.limit = match (self.config.limit, config.limit) {
            (Limit::Gradient(_), Limit::Gradient(g)) => self.limit.clamp(g.min, g.max),
            (_, limit) => initial_limit(&limit),
        };
        self.config = config;
        let mut shed = Vec::new();
        while self.queue.len() > config.max_waiting {
            if let Some(w) = self.queue.pop_back() {
                self.counts.shed[w.criticality.rank()] += 1;
                shed.push(w.ticket);
            }
        }
        Ok((self.grant(), shed))
    }
}

fn initial_limit(limit: &Limit) -> f64 {
    match limit {
        Limit::Fixed(n) => *n as f64,
        Limit::Gradient(g) => g.initial,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Criticality::*;

    fn fixed(limit: usize, max_waiting: usize) -> Shedder {
        Shedder::new(ShedConfig {
            limit: Limit::Fixed(limit),
            max_waiting,
            max_wait: 1.0,
        })
        .unwrap()
    }

    #[test]
    fn levels_parse_by_name_in_any_case() {
        assert_eq!(Criticality::parse("critical_plus"), Some(CriticalPlus));
        assert_eq!(Criticality::parse(" SHEDDABLE "), Some(Sheddable));
        assert_eq!(Criticality::parse("urgent"), None);
        assert!(CriticalPlus < Sheddable);
    }

    #[test]
    fn a_full_queue_sheds_the_least_critical_first() {
        let mut s = fixed(1, 2);
        assert_eq!(s.acquire(0.0, Sheddable), Admission::Admitted);
        let Admission::Queued { ticket: a, .. } = s.acquire(0.0, Sheddable) else {
            panic!()
        };
        let Admission::Queued { ticket: b, .. } = s.acquire(0.0, SheddablePlus) else {
            panic!()
        };
        // full: a critical request takes the sheddable one's place
        let Admission::Queued { ticket: c, evicted } = s.acquire(0.0, Critical) else {
            panic!()
        };
        assert_eq!(evicted, Some(a));
        // full of more critical ones: a sheddable request is shed at once
        assert_eq!(s.acquire(0.0, Sheddable), Admission::Shed);
        // the freed slot goes to the critical request, then to sheddable_plus
        assert_eq!(s.release(None), vec![c]);
        assert_eq!(s.release(None), vec![b]);
        let counts = s.counts();
        assert_eq!(counts.shed, [0, 0, 0, 2]);
        assert_eq!(counts.admitted, [0, 1, 1, 1]);
    }

    #[test]
    fn waits_run_out_and_cancelled_waits_are_shed() {
        let mut s = fixed(1, 4);
        s.acquire(0.0, Critical);
        let Admission::Queued { ticket: a, .. } = s.acquire(0.0, Critical) else {
            panic!()
        };
        let Admission::Queued { ticket: b, .. } = s.acquire(0.5, Sheddable) else {
            panic!()
        };
        assert_eq!(s.expired(0.9), Vec::<u64>::new());
        assert_eq!(s.expired(1.0), vec![a]);
        assert!(s.cancel(b));
        assert!(!s.cancel(b));
        assert_eq!(s.waiting(), 0);
        assert_eq!(s.counts().shed, [0, 1, 0, 1]);
    }

    #[test]
    fn the_gradient_shrinks_when_latency_rises_and_grows_when_it_holds() {
        let g = Gradient {
            initial: 10.0,
            warmup: 1,
            ..Gradient::default()
        };
        let mut s = Shedder::new(ShedConfig {
            limit: Limit::Gradient(g),
            max_waiting: 0,
            max_wait: 0.0,
        })
        .unwrap();
        for _ in 0..10 {
            assert_eq!(s.acquire(0.0, Critical), Admission::Admitted);
        }
        // the first sample is the average: gradient 1, the limit grows by sqrt(10)*0.2
        s.release(Some(0.010));
        let grown = 10.0 * 0.8 + (10.0 + 10f64.sqrt()) * 0.2;
        assert_eq!(s.limit(), grown);
        s.acquire(0.0, Critical);
        // ten times slower: gradient 0.5 (its floor)
        s.release(Some(0.100));
        assert!(s.limit() < grown, "{}", s.limit());
        // mostly idle: not measured
        let before = s.limit();
        while s.in_flight() > 1 {
            s.release(None);
        }
        s.release(Some(0.5));
        assert_eq!(s.limit(), before);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |limit| {
            Shedder::new(ShedConfig {
                limit,
                max_waiting: 0,
                max_wait: 0.1,
            })
            .unwrap_err()
            .field
        };
        assert_eq!(bad(Limit::Fixed(0)), "limit");
        let g = Gradient::default();
        assert_eq!(
            bad(Limit::Gradient(Gradient { min: 0.0, ..g })),
            "min_limit"
        );
        assert_eq!(
            bad(Limit::Gradient(Gradient {
                initial: 5000.0,
                ..g
            })),
            "initial_limit"
        );
        assert_eq!(
            bad(Limit::Gradient(Gradient {
                tolerance: 0.5,
                ..g
            })),
            "tolerance"
        );
    }
}
