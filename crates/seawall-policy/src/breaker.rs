//! Circuit breaker: the twin of `seawall.policy.breaker.CircuitBreaker`.
//!
//! States (resilience4j's set, the same as the Python breaker):
//!
//! * `Closed`: calls pass; outcomes go into a sliding window. When at least
//!   `minimum_calls` are in the window and the failure rate reaches
//!   `failure_rate` (or the slow-call rate reaches
//!   `slow_call_rate`), the breaker opens.
//! * `Open`: calls are rejected with [`CircuitOpen`] until the wait is over
//!   (`open_for`, multiplied by `open_multiplier` per consecutive opening,
//!   capped by `max_open_for`). Then the next admission (or, with
//!   `automatic_transition`, the first observation of any kind) moves it to
//!   `HalfOpen`.
//! * `HalfOpen`: exactly `half_open_calls` probes are admitted. When all have
//!   reported, the breaker closes if their failure and slow rates are under the
//!   thresholds and opens again otherwise. With `max_half_open_time`, a
//!   half-open state that has not finished its probes in time opens again.
//! * `Disabled` (admit all, record nothing), `MetricsOnly` (admit all, record,
//!   never change state) and `ForcedOpen` (reject all) are set by an operator
//!   through the `transition_to_*` methods.
//!
//! Sans-I/O: every method is told `now` (seconds on a monotonic clock). Each
//! admission carries the epoch of the state that admitted it, so the outcome of
//! a call admitted before a state change counts in the lifetime counters only.
//!
//! # Observing transitions
//!
//! There are no callbacks. A breaker keeps, per `(from, to)` pair, the number
//! of transitions so far ([`CircuitBreaker::transitions_between`], a counter a
//! metrics exporter reads at scrape time), their total
//! ([`CircuitBreaker::transition_count`]) and the latest one
//! ([`CircuitBreaker::last_transition`]). No call makes more than one
//! transition. `record_success`, `record_failure` and `poll` return the one
//! they made (`Option<Transition>`), the `transition_to_*` methods and `reset`
//! the one they always make. `admit`, `state` and `metrics` return their own
//! answer: compare `transition_count()` before and after them to see whether
//! they moved the breaker (`admit`: open to half-open once the wait is over,
//! or half-open back to open past `max_half_open_time`; `state` and
//! `metrics`: what `poll` would have done).
//!
//! [`CircuitBreaker::reconfigure`] gives a live breaker new settings (a new
//! config version): its state, wait and half-open progress, counters and
//! transitions carry over, and so does its window unless the window's shape
//! (type, size, buckets) changed, in which case it starts empty. The new
//! thresholds judge the next outcome; nothing is judged at the swap itself. An
//! open breaker stays open until the probe time it was given.
//!
//! Differences from the Python breaker: no name (the caller labels its
//! breaker), no exception classification or result predicate (the caller
//! decides success or failure), permits are values consumed by the call that
//! reports them, so a permit cannot be reported twice, and a window holds at
//! most 1,000,000 calls or buckets (the mesh config's own limit: the ring is
//! allocated up front).

use std::fmt;

use crate::window::{CountWindow, Outcome, SlidingWindow, TimeWindow, WindowError, CALL};

/// The states of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls pass and are judged over the window.
    Closed,
    /// Calls are rejected until the wait is over.
    Open,
    /// A few probes decide between closing and opening again.
    HalfOpen,
    /// Every call passes; nothing is recorded.
    Disabled,
    /// Every call is rejected, until an operator says otherwise.
    ForcedOpen,
    /// Every call passes and is recorded; the state never changes by itself.
    MetricsOnly,
}

impl State {
    /// How many states there are.
    pub const COUNT: usize = 6;

    /// Every state, in a fixed order (the index of [`State::index`]).
    pub const ALL: [State; State::COUNT] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];

    /// The state's name, as the Python `BreakerState` values spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// The state named `name` (`"closed"`, `"half_open"`...), if any.
    pub fn from_name(name: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The position of the state in [`State::ALL`].
    pub fn index(self) -> usize {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
            State::Disabled => 3,
            State::ForcedOpen => 4,
            State::MetricsOnly => 5,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The breaker's sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WindowConfig {
    /// The last `size` calls.
    Count {
        /// Calls in the window (1..=1,000,000).
        size: usize,
    },
    /// The last `seconds`, in `buckets` buckets.
    Time {
        /// The window, seconds (finite, > 0).
        seconds: f64,
        /// Buckets the window moves by (1..=1,000,000).
        buckets: usize,
    },
}

/// A breaker's settings; the defaults are the Python breaker's.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Count (default, 100 calls) or time window.
    pub window: WindowConfig,
    /// Calls in the window before it is judged (>= 1; capped at a count window's size). Default 20.
    pub minimum_calls: u32,
    /// Failure percentage that opens, in `(0, 100]`. Default 50.
    pub failure_rate: f64,
    /// Calls at least this long are slow (seconds, > 0); `None` (default): no slow calls.
    pub slow_call_duration: Option<f64>,
    /// Slow-call percentage that opens, in `(0, 100]`. Default 100.
    pub slow_call_rate: f64,
    /// Seconds spent open before probing (> 0). Default 5.
    pub open_for: f64,
    /// Growth of the wait per consecutive opening (>= 1). Default 1 (fixed).
    pub open_multiplier: f64,
    /// Cap on the growing wait (>= `open_for`). Default 60.
    pub max_open_for: f64,
    /// Probes admitted in half-open (>= 1). Default 3.
    pub half_open_calls: u32,
    /// Seconds half-open may wait for its probes; `None` (default): however long.
    pub max_half_open_time: Option<f64>,
    /// Open becomes half-open at the first observation after the wait, not only at an admission.
    pub automatic_transition: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: WindowConfig::Count { size: 100 },
            minimum_calls: 20,
            failure_rate: 50.0,
            slow_call_duration: None,
            slow_call_rate: 100.0,
            open_for: 5.0,
            open_multiplier: 1.0,
            max_open_for: 60.0,
            half_open_calls: 3,
            max_half_open_time: None,
            automatic_transition: false,
        }
    }
}

/// A setting of a [`BreakerConfig`] is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerError {
    /// The setting, named as in the Python breaker (`"failure_rate"`).
    pub field: &'static str,
    /// What it must be (`"in (0, 100]"`).
    pub rule: &'static str,
    /// The value given, as text.
    pub value: String,
}

impl fmt::Display for BreakerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CircuitBreaker: {} must be {}, got {}",
            self.field, self.rule, self.value
        )
    }
}

impl std::error::Error for BreakerError {}

/// The breaker rejected a call (the twin of Python's `CircuitOpenError`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitOpen {
    /// The state that rejected it: `Open`, `HalfOpen` (every probe taken) or `ForcedOpen`.
    pub state: State,
    /// When the breaker admits its next probe (`Open` only).
    pub retry_at: Option<f64>,
    /// Seconds from the rejection until `retry_at`.
    pub retry_after: Option<f64>,
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker is {}", self.state)?;
        if let Some(after) = self.retry_after {
            write!(f, "; next probe in {after:.3}s")?;
        }
        Ok(())
    }
}

impl std::error::Error for CircuitOpen {}

/// The right to run one call, handed back with its outcome or released.
///
/// It carries the epoch of the state that admitted the call (none in
/// `Disabled`: nothing is recorded). Consumed by the call that reports it.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be reported (record_success, record_failure) or released"]
pub struct Permit {
    epoch: Option<u64>,
}

impl Permit {
    /// Whether the outcome of this call will be recorded (false in `Disabled`).
    pub fn records(&self) -> bool {
        self.epoch.is_some()
    }
}

/// One state change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// When (the `now` of the call that caused it).
    pub at: f64,
}

/// A snapshot of a breaker (the twin of Python's `BreakerMetrics`, without the name).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerMetrics {
    /// The state.
    pub state: State,
    /// Calls in the window (the probes that reported, in half-open).
    pub window_calls: u64,
    /// Failures among them.
    pub window_failures: u64,
    /// Slow calls among them.
    pub window_slow_calls: u64,
    /// Failure percentage over the window; -1.0 while fewer than `minimum_calls` were seen.
    pub failure_rate: f64,
    /// Slow-call percentage over the window; -1.0 likewise.
    pub slow_call_rate: f64,
    /// Lifetime: successful calls.
    pub successful_calls: u64,
    /// Lifetime: failed calls.
    pub failed_calls: u64,
    /// Lifetime: slow calls.
    pub slow_calls: u64,
    /// Lifetime: rejected calls.
    pub not_permitted_calls: u64,
    /// Lifetime: released permits (no outcome).
    pub ignored_calls: u64,
    /// Consecutive openings without a successful close (drives the growing wait).
    pub consecutive_openings: u64,
    /// When the breaker admits its next probe (`Open` only).
    pub next_probe_at: Option<f64>,
    /// Probes admitted and not yet reported (`HalfOpen` only).
    pub probes_in_flight: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    successful: u64,
    failed: u64,
    slow: u64,
    not_permitted: u64,
    ignored: u64,
}

/// A circuit breaker with a count or time sliding window (see the module docs).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    window: SlidingWindow,
    min_calls: u64,
    fail_threshold: f64,
    slow_duration: Option<f64>,
    slow_threshold: f64,
    wait: f64,
    open_multiplier: f64,
    max_wait: f64,
    half_open_calls: u64,
    max_half_open: Option<f64>,
    automatic_transition: bool,
    judge_every_call: bool,

    state: State,
    epoch: u64,
    state_since: f64,
    next_probe_at: f64,
    consecutive_openings: u64,
    half_open_issued: u64,
    half_open_done: u64,
    half_open_failures: u64,
    half_open_slow: u64,
    counters: Counters,

    transitions: [[u64; State::COUNT]; State::COUNT],
    transition_count: u64,
    last_transition: Option<Transition>,
}

fn invalid(field: &'static str, rule: &'static str, value: impl fmt::Display) -> BreakerError {
    BreakerError {
        field,
        rule,
        value: value.to_string(),
    }
}

fn check_seconds(field: &'static str, value: f64) -> Result<(), BreakerError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(invalid(field, "a finite number > 0", value))
    }
}

fn check_rate(field: &'static str, value: f64) -> Result<(), BreakerError> {
    if value > 0.0 && value <= 100.0 {
        Ok(())
    } else {
        Err(invalid(field, "in (0, 100]", value))
    }
}

impl BreakerConfig {
    /// Check every setting, in the Python breaker's order; the error names the first bad one.
    pub fn validate(&self) -> Result<(), BreakerError> {
        self.build_window().map(|_| ())
    }

    fn build_window(&self) -> Result<SlidingWindow, BreakerError> {
        let window = match self.window {
            WindowConfig::Count { size } => CountWindow::new(size)
                .map(SlidingWindow::Count)
                .map_err(|_| invalid("window_size", "an int from 1 to 1000000", size))?,
            WindowConfig::Time { seconds, buckets } => {
                check_seconds("window_size", seconds)?;
                TimeWindow::new(seconds, buckets)
                    .map(SlidingWindow::Time)
                    .map_err(|e| match e {
                        WindowError::Buckets(b) => {
                            invalid("window_buckets", "an int from 1 to 1000000", b)
                        }
                        _ => invalid("window_size", "a finite number > 0", seconds),
                    })?
            }
        };
        if self.minimum_calls < 1 {
            return Err(invalid("minimum_calls", "an int >= 1", self.minimum_calls));
        }
        check_rate("failure_rate", self.failure_rate)?;
        if let Some(slow) = self.slow_call_duration {
            check_seconds("slow_call_duration", slow)?;
        }
        check_rate("slow_call_rate", self.slow_call_rate)?;
        check_seconds("open_for", self.open_for)?;
        if !(self.open_multiplier.is_finite() && self.open_multiplier >= 1.0) {
            return Err(invalid(
                "open_multiplier",
                "a finite number >= 1",
                self.open_multiplier,
            ));
        }
        check_seconds("max_open_for", self.max_open_for)?;
        if self.max_open_for < self.open_for {
            return Err(invalid("max_open_for", ">= open_for", self.max_open_for));
        }
        if self.half_open_calls < 1 {
            return Err(invalid(
                "half_open_calls",
                "an int >= 1",
                self.half_open_calls,
            ));
        }
        if let Some(limit) = self.max_half_open_time {
            check_seconds("max_half_open_time", limit)?;
        }
        Ok(window)
    }
}

impl CircuitBreaker {
    /// A closed breaker with an empty window.
    pub fn new(config: &BreakerConfig) -> Result<Self, BreakerError> {
        let window = config.build_window()?;
        // A count window never holds more than its size: judge a full window
        // rather than never (minimum_calls=20 with a window of 10), like resilience4j.
        let min_calls = match config.window {
            WindowConfig::Count { size } => u64::from(config.minimum_calls).min(size as u64),
            WindowConfig::Time { .. } => u64::from(config.minimum_calls),
        };
        Ok(Self {
            config: config.clone(),
            window,
            min_calls,
            fail_threshold: config.failure_rate,
            slow_duration: config.slow_call_duration,
            slow_threshold: config.slow_call_rate,
            wait: config.open_for,
            open_multiplier: config.open_multiplier,
            max_wait: config.max_open_for,
            half_open_calls: u64::from(config.half_open_calls),
            max_half_open: config.max_half_open_time,
            automatic_transition: config.automatic_transition,
            judge_every_call: matches!(config.window, WindowConfig::Time { .. }),
            state: State::Closed,
            epoch: 0,
            state_since: 0.0,
            next_probe_at: 0.0,
            consecutive_openings: 0,
            half_open_issued: 0,
            half_open_done: 0,
            half_open_failures: 0,
            half_open_slow: 0,
            counters: Counters::default(),
            transitions: [[0; State::COUNT]; State::COUNT],
            transition_count: 0,
            last_transition: None,
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// New settings for this live breaker (see the module docs). Invalid
    /// settings are refused and change nothing.
    pub fn reconfigure(&mut self, config: &BreakerConfig) -> Result<(), BreakerError> {
        let fresh = Self::new(config)?;
        let old = std::mem::replace(self, fresh);
        if old.config.window == config.window {
            self.window = old.window;
        }
        self.state = old.state;
        self.epoch = old.epoch;
        self.state_since = old.state_since;
        self.next_probe_at = old.next_probe_at;
        self.consecutive_openings = old.consecutive_openings;
        self.half_open_issued = old.half_open_issued;
        self.half_open_done = old.half_open_done;
        self.half_open_failures = old.half_open_failures;
        self.half_open_slow = old.half_open_slow;
        self.counters = old.counters;
        self.transitions = old.transitions;
        self.transition_count = old.transition_count;
        self.last_transition = old.last_transition;
        Ok(())
    }

    // ------------------------------------------------------------ state machine

    /// The state at `now`, time-driven transitions applied first (Python's `state`).
    pub fn state(&mut self, now: f64) -> State {
        if self.state != State::Closed {
            self.poll(now);
        }
        self.state
    }

    /// The state as last changed, without applying anything due at a later time.
    pub fn current_state(&self) -> State {
        self.state
    }

    /// Apply the transitions due at `now` without a call: with
    /// `automatic_transition`, open becomes half-open once the wait is over;
    /// half-open past `max_half_open_time` opens again.
    pub fn poll(&mut self, now: f64) -> Option<Transition> {
        match self.state {
            State::Open if self.automatic_transition && now >= self.next_probe_at => {
                Some(self.enter(State::HalfOpen, now))
            }
            State::HalfOpen => self.check_half_open_time(now),
            _ => None,
        }
    }

    /// Ask to run one call at `now`: a permit to report with its outcome, or the rejection.
    pub fn admit(&mut self, now: f64) -> Result<Permit, CircuitOpen> {
        let mut state = self.state;
        if state == State::Closed {
            return Ok(Permit {
                epoch: Some(self.epoch),
            });
        }
        if state == State::Open && now >= self.next_probe_at {
            self.enter(State::HalfOpen, now);
            state = State::HalfOpen;
        } else if state == State::HalfOpen {
            self.check_half_open_time(now);
            state = self.state;
        }
        match state {
            State::Closed | State::MetricsOnly => Ok(Permit {
                epoch: Some(self.epoch),
            }),
            State::Disabled => Ok(Permit { epoch: None }),
            State::HalfOpen if self.half_open_issued < self.half_open_calls => {
                self.half_open_issued += 1;
                Ok(Permit {
                    epoch: Some(self.epoch),
                })
            }
            _ => {
                self.counters.not_permitted += 1;
                let retry_at = (state == State::Open).then_some(self.next_probe_at);
                Err(CircuitOpen {
                    state,
                    retry_at,
                    retry_after: retry_at.map(|at| f64::max(0.0, at - now)),
                })
            }
        }
    }

    /// Report that an admitted call succeeded at `now` after `elapsed` seconds.
    pub fn record_success(&mut self, permit: Permit, now: f64, elapsed: f64) -> Option<Transition> {
        let slow = self.is_slow(elapsed);
        self.record(
            permit,
            Outcome {
                failed: false,
                slow,
            },
            now,
        )
    }

    /// Report that an admitted call failed at `now` after `elapsed` seconds.
    pub fn record_failure(&mut self, permit: Permit, now: f64, elapsed: f64) -> Option<Transition> {
        let slow = self.is_slow(elapsed);
        self.record(permit, Outcome { failed: true, slow }, now)
    }

    /// Hand back a permit without an outcome (the call was ignored or cancelled).
    pub fn release(&mut self, permit: Permit) {
        let Some(epoch) = permit.epoch else {
            return;
        };
        self.counters.ignored += 1;
        if epoch == self.epoch && self.state == State::HalfOpen {
            self.half_open_issued = self.half_open_issued.saturating_sub(1);
        }
    }

    fn is_slow(&self, elapsed: f64) -> bool {
        matches!(self.slow_duration, Some(slow) if elapsed >= slow)
    }

    fn record(&mut self, permit: Permit, outcome: Outcome, now: f64) -> Option<Transition> {
        let epoch = permit.epoch?;
        let c = &mut self.counters;
        if outcome.failed {
            c.failed += 1;
        } else {
            c.successful += 1;
        }
        if outcome.slow {
            c.slow += 1;
        }
        if epoch != self.epoch {
            return None; // admitted by an earlier state: lifetime counters only
        }
        match self.state {
            State::Closed | State::MetricsOnly => {
                self.window.record(outcome, now);
                // A success can only raise a rate in a count window by bringing the
                // calls up to the minimum; a time window can also expire successes.
                if self.state == State::Closed
                    && (outcome.bits() != CALL
                        || self.judge_every_call
                        || self.window.current().calls == self.min_calls)
                {
                    self.judge_closed(now)
                } else {
                    None
                }
            }
            State::HalfOpen => {
                // A probe that reports after max_half_open_time is too late to close.
                if let Some(t) = self.check_half_open_time(now) {
                    return Some(t);
                }
                self.count_probe(outcome, now)
            }
            _ => None,
        }
    }

    /// In `Closed`: open if the window's rates reach a threshold.
    fn judge_closed(&mut self, now: f64) -> Option<Transition> {
        let w = self.window.current();
        let calls = w.calls as f64;
        if w.calls >= self.min_calls
            && (w.failures as f64 * 100.0 >= self.fail_threshold * calls
                || w.slow_calls as f64 * 100.0 >= self.slow_threshold * calls)
        {
            Some(self.open(now))
        } else {
            None
        }
    }

    /// In `HalfOpen`: count one probe; decide when all have reported.
    fn count_probe(&mut self, outcome: Outcome, now: f64) -> Option<Transition> {
        self.half_open_done += 1;
        if outcome.failed {
            self.half_open_failures += 1;
        }
        if outcome.slow {
            self.half_open_slow += 1;
        }
        let done = self.half_open_done;
        if done < self.half_open_calls {
            return None;
        }
        let d = done as f64;
        if self.half_open_failures as f64 * 100.0 >= self.fail_threshold * d
            || self.half_open_slow as f64 * 100.0 >= self.slow_threshold * d
        {
            Some(self.open(now))
        } else {
            self.consecutive_openings = 0;
            Some(self.enter(State::Closed, now))
        }
    }

    fn open(&mut self, now: f64) -> Transition {
        // Grow the wait step by step (never exponentiate: a long outage would
        // overflow a power); the cap stops the growth. Stopping early once the
        // wait no longer changes gives the same value as the Python loop.
        let mut wait = self.wait;
        for _ in 0..self.consecutive_openings {
            let grown = wait * self.open_multiplier;
            if grown >= self.max_wait {
                wait = self.max_wait;
                break;
            }
            if grown == wait {
                break;
            }
            wait = grown;
        }
        self.consecutive_openings += 1;
        self.next_probe_at = now + wait;
        self.enter(State::Open, now)
    }

    fn enter(&mut self, new: State, now: f64) -> Transition {
        let old = self.state;
        self.state = new;
        self.epoch += 1;
        self.state_since = now;
        self.half_open_issued = 0;
        self.half_open_done = 0;
        self.half_open_failures = 0;
        self.half_open_slow = 0;
        if matches!(new, State::Closed | State::MetricsOnly) {
            self.window.clear();
        }
        if new != State::Open {
            self.next_probe_at = 0.0;
        }
        let t = Transition {
            from: old,
            to: new,
            at: now,
        };
        self.transitions[old.index()][new.index()] += 1;
        self.transition_count += 1;
        self.last_transition = Some(t);
        t
    }

    fn check_half_open_time(&mut self, now: f64) -> Option<Transition> {
        match self.max_half_open {
            Some(limit) if now - self.state_since >= limit => Some(self.open(now)),
            _ => None,
        }
    }

    // ------------------------------------------------------------ operator controls

    fn force(&mut self, new: State, now: f64) -> Transition {
        if new == State::Open {
            return self.open(now);
        }
        if new == State::Closed {
            self.consecutive_openings = 0;
        }
        self.enter(new, now)
    }

    /// Close now, clearing the window and the opening count.
    pub fn transition_to_closed(&mut self, now: f64) -> Transition {
        self.force(State::Closed, now)
    }

    /// Open now, as if the thresholds had been reached.
    pub fn transition_to_open(&mut self, now: f64) -> Transition {
        self.force(State::Open, now)
    }

    /// Reject every call until another `transition_to_*`.
    pub fn transition_to_forced_open(&mut self, now: f64) -> Transition {
        self.force(State::ForcedOpen, now)
    }

    /// Admit every call and record nothing.
    pub fn transition_to_disabled(&mut self, now: f64) -> Transition {
        self.force(State::Disabled, now)
    }

    /// Admit every call, record outcomes, never change state by itself.
    pub fn transition_to_metrics_only(&mut self, now: f64) -> Transition {
        self.force(State::MetricsOnly, now)
    }

    /// Back to a fresh closed breaker: window, lifetime counters and openings cleared
    /// (the transition counters are kept: they count transitions, and this is one).
    pub fn reset(&mut self, now: f64) -> Transition {
        let t = self.force(State::Closed, now);
        self.counters = Counters::default();
        t
    }

    // ------------------------------------------------------------ observation

    /// Transitions so far (never goes down).
    pub fn transition_count(&self) -> u64 {
        self.transition_count
    }

    /// Transitions so far from `from` to `to` (a labelled counter for metrics).
    pub fn transitions_between(&self, from: State, to: State) -> u64 {
        self.transitions[from.index()][to.index()]
    }

    /// The latest transition, if any.
    pub fn last_transition(&self) -> Option<Transition> {
        self.last_transition
    }

    /// A snapshot of the state and the counters at `now` (due transitions applied first).
    pub fn metrics(&mut self, now: f64) -> BreakerMetrics {
        if self.state != State::Closed {
            self.poll(now);
        }
        let state = self.state;
        let (calls, fails, slow, judged) = if state == State::HalfOpen {
            let calls = self.half_open_done;
            (
                calls,
                self.half_open_failures,
                self.half_open_slow,
                calls > 0,
            )
        } else {
            let t = self.window.totals(now);
            (t.calls, t.failures, t.slow_calls, t.calls >= self.min_calls)
        };
        let rate = |n: u64| {
            if judged {
                100.0 * n as f64 / calls as f64
            } else {
                -1.0
            }
        };
        let c = self.counters;
        BreakerMetrics {
            state,
            window_calls: calls,
            window_failures: fails,
            window_slow_calls: slow,
            failure_rate: rate(fails),
            slow_call_rate: rate(slow),
            successful_calls: c.successful,
            failed_calls: c.failed,
            slow_calls: c.slow,
            not_permitted_calls: c.not_permitted,
            ignored_calls: c.ignored,
            consecutive_openings: self.consecutive_openings,
            next_probe_at: (state == State::Open).then_some(self.next_probe_at),
            probes_in_flight: if state == State::HalfOpen {
                self.half_open_issued.saturating_sub(self.half_open_done)
            } else {
                0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(config: BreakerConfig) -> CircuitBreaker {
        CircuitBreaker::new(&config).expect("valid config")
    }

    fn small() -> BreakerConfig {
        BreakerConfig {
            window: WindowConfig::Count { size: 4 },
            minimum_calls: 4,
            half_open_calls: 2,
            ..BreakerConfig::default()
        }
    }

    fn fail(b: &mut CircuitBreaker, now: f64) -> Option<Transition> {
        let p = b.admit(now).expect("admitted");
        b.record_failure(p, now, 0.0)
    }

    fn succeed(b: &mut CircuitBreaker, now: f64) -> Option<Transition> {
        let p = b.admit(now).expect("admitted");
        b.record_success(p, now, 0.0)
    }

    #[test]
    fn defaults_are_pythons() {
        let c = BreakerConfig::default();
        assert_eq!(c.window, WindowConfig::Count { size: 100 });
        assert_eq!((c.minimum_calls, c.half_open_calls), (20, 3));
        assert_eq!((c.open_for, c.max_open_for), (5.0, 60.0));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn opens_at_the_threshold_after_minimum_calls() {
        let mut b = breaker(small());
        assert_eq!(fail(&mut b, 0.0), None);
        assert_eq!(fail(&mut b, 0.0), None);
        assert_eq!(succeed(&mut b, 0.0), None);
        let t = succeed(&mut b, 1.0).expect("opened: 2 of 4 failed");
        assert_eq!((t.from, t.to, t.at), (State::Closed, State::Open, 1.0));
        assert_eq!(b.current_state(), State::Open);
        assert_eq!(b.transition_count(), 1);
        assert_eq!(b.transitions_between(State::Closed, State::Open), 1);
        let err = b.admit(2.0).expect_err("open");
        assert_eq!(err.state, State::Open);
        assert_eq!(err.retry_at, Some(6.0));
        assert_eq!(err.retry_after, Some(4.0));
        assert_eq!(
            err.to_string(),
            "circuit breaker is open; next probe in 4.000s"
        );
    }

    #[test]
    fn half_open_probes_close_or_reopen() {
        let mut b = breaker(small());
        for _ in 0..4 {
            fail(&mut b, 0.0);
        }
        assert_eq!(b.current_state(), State::Open);
        let p1 = b.admit(5.0).expect("probe 1");
        assert_eq!(b.last_transition().map(|t| t.to), Some(State::HalfOpen));
        let p2 = b.admit(5.0).expect("probe 2");
        let err = b.admit(5.0).expect_err("no third probe");
        assert_eq!((err.state, err.retry_at), (State::HalfOpen, None));
        assert_eq!(b.metrics(5.0).probes_in_flight, 2);
        assert_eq!(b.record_success(p1, 5.0, 0.0), None);
        let t = b.record_success(p2, 5.5, 0.0).expect("closed");
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Closed));
        assert_eq!(b.metrics(5.5).consecutive_openings, 0);

        for _ in 0..4 {
            fail(&mut b, 10.0);
        }
        let p1 = b.admit(15.0).expect("probe");
        let p2 = b.admit(15.0).expect("probe");
        b.record_failure(p1, 15.0, 0.0);
        let t = b.record_success(p2, 15.0, 0.0).expect("reopened at 50%");
        assert_eq!(t.to, State::Open);
        assert_eq!(b.metrics(15.0).next_probe_at, Some(20.0));
    }

    #[test]
    fn released_probe_frees_its_slot() {
        let mut b = breaker(small());
        b.transition_to_open(0.0);
        let p1 = b.admit(5.0).expect("probe");
        let p2 = b.admit(5.0).expect("probe");
        assert!(b.admit(5.0).is_err());
        b.release(p1);
        let p3 = b.admit(5.0).expect("slot freed");
        assert_eq!(b.metrics(5.0).ignored_calls, 1);
        b.record_success(p2, 5.0, 0.0);
        b.record_success(p3, 5.0, 0.0);
        assert_eq!(b.current_state(), State::Closed);
    }

    #[test]
    fn wait_grows_and_is_capped() {
        let mut b = breaker(BreakerConfig {
            open_for: 1.0,
            open_multiplier: 2.0,
            max_open_for: 5.0,
            half_open_calls: 1,
            ..small()
        });
        let mut waits = vec![];
        let mut now = 0.0;
        b.transition_to_open(now);
        for _ in 0..5 {
            let at = b.metrics(now).next_probe_at.expect("open");
            waits.push(at - now);
            now = at;
            fail(&mut b, now);
        }
        assert_eq!(waits, [1.0, 2.0, 4.0, 5.0, 5.0]);
    }

    #[test]
    fn a_long_outage_does_not_loop_forever_with_a_fixed_wait() {
        let mut b = breaker(small());
        b.consecutive_openings = u64::MAX - 1;
        let t = b.transition_to_open(0.0);
        assert_eq!(t.to, State::Open);
        assert_eq!(b.metrics(0.0).next_probe_at, Some(5.0));
    }

    #[test]
    fn stale_permits_count_only_in_lifetime_counters() {
        let mut b = breaker(small());
        let old = b.admit(0.0).expect("closed");
        b.transition_to_open(0.0);
        b.transition_to_closed(0.0);
        assert_eq!(b.record_failure(old, 1.0, 0.0), None);
        let m = b.metrics(1.0);
        assert_eq!((m.failed_calls, m.window_calls), (1, 0));
    }

    #[test]
    fn slow_calls_open_and_are_counted() {
        let mut b = breaker(BreakerConfig {
            slow_call_duration: Some(1.0),
            slow_call_rate: 50.0,
            ..small()
        });
        for elapsed in [0.5, 1.0, 0.1] {
            let p = b.admit(0.0).expect("closed");
            b.record_success(p, 0.0, elapsed);
        }
        let p = b.admit(0.0).expect("closed");
        let t = b.record_success(p, 0.0, 2.0).expect("2 of 4 slow");
        assert_eq!(t.to, State::Open);
        assert_eq!(b.metrics(0.0).slow_calls, 2);
    }

    #[test]
    fn time_window_judges_recent_calls_only() {
        let mut b = breaker(BreakerConfig {
            window: WindowConfig::Time {
                seconds: 10.0,
                buckets: 10,
            },
            minimum_calls: 2,
            ..BreakerConfig::default()
        });
        fail(&mut b, 0.0);
        succeed(&mut b, 10.5); // the failure left the window
        assert_eq!(b.current_state(), State::Closed);
        fail(&mut b, 11.0);
        assert_eq!(b.current_state(), State::Open);
    }

    #[test]
    fn automatic_transition_and_max_half_open_time() {
        let mut b = breaker(BreakerConfig {
            automatic_transition: true,
            max_half_open_time: Some(2.0),
            ..small()
        });
        b.transition_to_open(0.0);
        assert_eq!(b.state(4.9), State::Open);
        assert_eq!(b.state(5.0), State::HalfOpen);
        let p = b.admit(6.0).expect("probe");
        let t = b.record_success(p, 7.0, 0.0).expect("too late: open again");
        assert_eq!((t.from, t.to), (State::HalfOpen, State::Open));
        assert_eq!(b.metrics(7.0).consecutive_openings, 2);
    }

    #[test]
    fn operator_states() {
        let mut b = breaker(small());
        b.transition_to_disabled(0.0);
        let p = b.admit(0.0).expect("disabled admits");
        assert!(!p.records());
        b.record_failure(p, 0.0, 0.0);
        assert_eq!(b.metrics(0.0).failed_calls, 0);
        b.transition_to_forced_open(0.0);
        let err = b.admit(0.0).expect_err("forced open");
        assert_eq!(
            (err.state, err.retry_at, err.retry_after),
            (State::ForcedOpen, None, None)
        );
        b.transition_to_metrics_only(0.0);
        for _ in 0..10 {
            fail(&mut b, 0.0);
        }
        let m = b.metrics(0.0);
        assert_eq!(
            (m.state, m.window_calls, m.failure_rate),
            (State::MetricsOnly, 4, 100.0)
        );
        let t = b.reset(1.0);
        assert_eq!((t.from, t.to), (State::MetricsOnly, State::Closed));
        assert_eq!(b.metrics(1.0).failed_calls, 0);
        assert_eq!(b.transition_count(), 4);
    }

    #[test]
    fn minimum_calls_is_capped_by_a_count_window() {
        let mut b = breaker(BreakerConfig {
            window: WindowConfig::Count { size: 2 },
            minimum_calls: 20,
            ..BreakerConfig::default()
        });
        fail(&mut b, 0.0);
        fail(&mut b, 0.0);
        assert_eq!(b.current_state(), State::Open);
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = [
            (
                BreakerConfig {
                    window: WindowConfig::Count { size: 0 },
                    ..small()
                },
                "window_size",
            ),
            (
                BreakerConfig {
                    window: WindowConfig::Time {
                        seconds: f64::INFINITY,
                        buckets: 10,
                    },
                    ..small()
                },
                "window_size",
            ),
            (
                BreakerConfig {
                    window: WindowConfig::Time {
                        seconds: 1.0,
                        buckets: 0,
                    },
                    ..small()
                },
                "window_buckets",
            ),
            (
                BreakerConfig {
                    minimum_calls: 0,
                    ..small()
                },
                "minimum_calls",
            ),
            (
                BreakerConfig {
                    failure_rate: 0.0,
                    ..small()
                },
                "failure_rate",
            ),
            (
                BreakerConfig {
                    failure_rate: f64::NAN,
                    ..small()
                },
                "failure_rate",
            ),
            (
                BreakerConfig {
                    slow_call_duration: Some(0.0),
                    ..small()
                },
                "slow_call_duration",
            ),
            (
                BreakerConfig {
                    slow_call_rate: 101.0,
                    ..small()
                },
                "slow_call_rate",
            ),
            (
                BreakerConfig {
                    open_for: -1.0,
                    ..small()
                },
                "open_for",
            ),
            (
                BreakerConfig {
                    open_multiplier: 0.5,
                    ..small()
                },
                "open_multiplier",
            ),
            (
                BreakerConfig {
                    max_open_for: 1.0,
                    ..small()
                },
                "max_open_for",
            ),
            (
                BreakerConfig {
                    half_open_calls: 0,
                    ..small()
                },
                "half_open_calls",
            ),
            (
                BreakerConfig {
                    max_half_open_time: Some(f64::NAN),
                    ..small()
                },
                "max_half_open_time",
            ),
        ];
        for (config, field) in bad {
            let err = CircuitBreaker::new(&config).expect_err(field);
            assert_eq!(err.field, field);
            assert!(err
                .to_string()
                .starts_with(&format!("CircuitBreaker: {field} must be")));
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in State::ALL {
            assert_eq!(State::from_name(s.as_str()), Some(s));
            assert_eq!(State::ALL[s.index()], s);
        }
        assert_eq!(State::from_name("ajar"), None);
    }
}
