//! The Rust policies of `seawall-policy`, as `seawall._native` classes.
//!
//! Each class mirrors its `seawall.policy` twin: same constructor keywords and
//! defaults, same method names, times as float seconds passed in (`now`). They
//! exist so that Python can drive the Rust policies step by step (the
//! conformance corpus in `tests/conformance`) and read back every decision.
//!
//! * `CircuitBreaker(*, name="breaker", window_type="count", window_size=100, ...)`:
//!   `admit(now) -> BreakerPermit` (raises `seawall.policy.errors.CircuitOpenError`),
//!   `record_success/record_failure(permit, now, elapsed=0.0)`, `release(permit)`,
//!   `state(now)`, `poll(now)`, `metrics(now) -> dict`, `transition_to_*(now)`,
//!   `reset(now)`; transitions are returned as `(from, to)` state names and
//!   counted (`transition_count`, `transitions_between`, `last_transition`).
//! * `RetryBudget(ratio=0.2, min_per_second=10.0, ttl=10.0, *, buckets=10)`.
//! * `Bulkhead(max_in_flight, *, max_waiting=0, max_wait=1.0)`: the state
//!   machine of `seawall.policy.Bulkhead` (tickets for queued calls; waiting
//!   is the caller's): `acquire(now, deadline=None)`, `release()`,
//!   `expired(now)`, `settle(ticket, timed_out)`, `reconfigure(...)`, `metrics()`.
//! * `Backoff(jitter="full", base=0.05, max=2.0)`: `delay(attempt, previous, rng)`.
//! * `ScriptedRandom(values)`: the draws to hand to `Backoff.delay` and
//!   `WeightedSplit.choose`, in order (then the last again); `drawn` counts them.
//! * `OutlierDetector(endpoints=(), *, consecutive_5xx=5, ...)` keyed by `str`.
//! * `WeightedSplit(weights)`: `pick(draw)`, `choose(rng)`.
//! * `RateLimiter(rate, burst=None)`: the token bucket of
//!   `seawall.policy.RateLimiter`, told the time: `try_acquire(now)`,
//!   `retry_after(now)`, `available(now)`.
//!
//! Invalid settings raise `ValueError` naming the setting, as in Python.
use std::num::NonZeroU32;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use seawall_policy::backoff::{Backoff, Jitter};
use seawall_policy::breaker::{
    BreakerConfig, BreakerMetrics, CircuitBreaker, CircuitOpen, Permit, State, Transition,
    WindowConfig,
};
use seawall_policy::budget::{BudgetConfig, RetryBudget};
use seawall_policy::bulkhead::{Admission, Bulkhead, BulkheadConfig};
use seawall_policy::outlier::{OutlierConfig, OutlierDetector, OutlierSnapshot, ReasonCounts};
use seawall_policy::ratelimit::TokenBucket;
use seawall_policy::rng::{Random, Sequence};
use seawall_policy::shed::{self, Criticality, Gradient, Limit, ShedConfig, Shedder};
use seawall_policy::split::WeightedSplit;

/// Add the policy classes to `seawall._native`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCircuitBreaker>()?;
    m.add_class::<PyBreakerPermit>()?;
    m.add_class::<PyRetryBudget>()?;
    m.add_class::<PyBulkhead>()?;
    m.add_class::<PyBackoff>()?;
    m.add_class::<PyScriptedRandom>()?;
    m.add_class::<PyOutlierDetector>()?;
    m.add_class::<PyWeightedSplit>()?;
    m.add_class::<PyRateLimiter>()?;
    m.add_class::<PyLoadShedder>()?;
    Ok(())
}

fn value_error(err: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(err.to_string())
}

// ---------------------------------------------------------------- randomness

/// Scripted draws: `values` in order, then the last one again (0.0 if empty).
#[pyclass(module = "seawall._native", name = "ScriptedRandom")]
struct PyScriptedRandom {
    values: Sequence,
    drawn: usize,
}

impl Random for PyScriptedRandom {
    fn next_f64(&mut self) -> f64 {
        self.drawn += 1;
        self.values.next_f64()
    }
}

#[pymethods]
impl PyScriptedRandom {
    #[new]
    fn new(values: Vec<f64>) -> Self {
        Self {
            values: Sequence::new(values),
            drawn: 0,
        }
    }

    /// How many values were drawn so far.
    #[getter]
    fn drawn(&self) -> usize {
        self.drawn
    }
}

// ---------------------------------------------------------------- breaker

/// The right to run one call; hand it back once to the breaker that gave it.
#[pyclass(module = "seawall._native", name = "BreakerPermit")]
struct PyBreakerPermit {
    permit: Option<Permit>,
    records: bool,
}

#[pymethods]
impl PyBreakerPermit {
    /// Whether the call's outcome will be recorded (false in the disabled state).
    #[getter]
    fn records(&self) -> bool {
        self.records
    }
}

fn take_permit(permit: &mut PyBreakerPermit) -> PyResult<Permit> {
    permit
        .permit
        .take()
        .ok_or_else(|| PyValueError::new_err("BreakerPermit: this permit was already used"))
}

fn names(t: Transition) -> (&'static str, &'static str) {
    (t.from.as_str(), t.to.as_str())
}

fn pair(t: Option<Transition>) -> Option<(&'static str, &'static str)> {
    t.map(names)
}

fn state_named(name: &str) -> PyResult<State> {
    State::from_name(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown breaker state {name:?}")))
}

/// A breaker's settings as the constructor's keywords.
fn current_settings<'py>(py: Python<'py>, c: &BreakerConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match c.window {
        WindowConfig::Count { size } => {
            d.set_item("window_type", "count")?;
            d.set_item("window_size", size)?;
            d.set_item("window_buckets", 10)?;
        }
        WindowConfig::Time { seconds, buckets } => {
            d.set_item("window_type", "time")?;
            d.set_item("window_size", seconds)?;
            d.set_item("window_buckets", buckets)?;
        }
    }
    d.set_item("minimum_calls", c.minimum_calls)?;
    d.set_item("failure_rate", c.failure_rate)?;
    d.set_item("slow_call_duration", c.slow_call_duration)?;
    d.set_item("slow_call_rate", c.slow_call_rate)?;
    d.set_item("open_for", c.open_for)?;
    d.set_item("open_multiplier", c.open_multiplier)?;
    d.set_item("max_open_for", c.max_open_for)?;
    d.set_item("half_open_calls", c.half_open_calls)?;
    d.set_item("max_half_open_time", c.max_half_open_time)?;
    d.set_item("automatic_transition", c.automatic_transition)?;
    Ok(d)
}

/// `seawall_policy::breaker::CircuitBreaker`, with the Python breaker's constructor.
#[pyclass(module = "seawall._native", name = "CircuitBreaker")]
struct PyCircuitBreaker {
    name: String,
    inner: CircuitBreaker,
}

#[pymethods]
impl PyCircuitBreaker {
    #[new]
    #[pyo3(signature = (
        *,
        name = "breaker".to_string(),
        window_type = "count",
        window_size = None,
        window_buckets = 10,
        minimum_calls = 20,
        failure_rate = 50.0,
        slow_call_duration = None,
        slow_call_rate = 100.0,
        open_for = 5.0,
        open_multiplier = 1.0,
        max_open_for = 60.0,
        half_open_calls = 3,
        max_half_open_time = None,
        automatic_transition = false,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        window_type: &str,
        window_size: Option<&Bound<'_, PyAny>>,
        window_buckets: i64,
        minimum_calls: i64,
        failure_rate: f64,
        slow_call_duration: Option<f64>,
        slow_call_rate: f64,
        open_for: f64,
        open_multiplier: f64,
        max_open_for: f64,
        half_open_calls: i64,
        max_half_open_time: Option<f64>,
        automatic_transition: bool,
    ) -> PyResult<Self> {
        let bad = |field: &str, rule: &str, value: String| {
            PyValueError::new_err(format!(
                "CircuitBreaker: {field} must be {rule}, got {value}"
            ))
        };
        let count = |field: &str, value: i64| {
            usize::try_from(value)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| bad(field, "an int >= 1", value.to_string()))
        };
        let window = match window_type {
            "count" => {
                let size = match window_size {
                    None => 100,
                    Some(v) => v
                        .extract::<i64>()
                        .map_err(|_| bad("window_size", "an int >= 1", v.to_string()))?,
                };
                WindowConfig::Count {
                    size: count("window_size", size)?,
                }
            }
            "time" => WindowConfig::Time {
                seconds: match window_size {
                    None => 100.0,
                    Some(v) => v
                        .extract::<f64>()
                        .map_err(|_| bad("window_size", "a finite number > 0", v.to_string()))?,
                },
                buckets: count("window_buckets", window_buckets)?,
            },
            other => {
                return Err(bad(
                    "window_type",
                    "'count' or 'time'",
                    format!("{other:?}"),
                ))
            }
        };
        let narrow = |field: &str, value: i64| {
            u32::try_from(value)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| bad(field, "an int >= 1", value.to_string()))
        };
        let config = BreakerConfig {
            window,
            minimum_calls: narrow("minimum_calls", minimum_calls)?,
            failure_rate,
            slow_call_duration,
            slow_call_rate,
            open_for,
            open_multiplier,
            max_open_for,
            half_open_calls: narrow("half_open_calls", half_open_calls)?,
            max_half_open_time,
            automatic_transition,
        };
        Ok(Self {
            name,
            inner: CircuitBreaker::new(&config).map_err(value_error)?,
        })
    }

    /// New settings for this live breaker, as the constructor's keywords; the
    /// ones left out keep their value. State, counters and (if its shape is the
    /// same) the window carry over.
    #[pyo3(signature = (**settings))]
    fn reconfigure(
        &mut self,
        py: Python<'_>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let merged = current_settings(py, self.inner.config())?;
        if let Some(settings) = settings {
            for (key, value) in settings.iter() {
                let known: String = key.extract()?;
                if known == "name" || merged.get_item(&known)?.is_none() {
                    return Err(PyValueError::new_err(format!(
                        "CircuitBreaker: cannot reconfigure {known:?}"
                    )));
                }
                merged.set_item(key, value)?;
            }
        }
        let fresh = py
            .get_type::<PyCircuitBreaker>()
            .call((), Some(&merged))?
            .cast_into::<PyCircuitBreaker>()?;
        let config = fresh.borrow().inner.config().clone();
        self.inner.reconfigure(&config).map_err(value_error)
    }

    /// The settings, as the constructor's keywords from `window_type` to
    /// `automatic_transition` (the Python breaker's `settings`).
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        current_settings(py, self.inner.config())
    }

    /// The breaker's name (shown in `CircuitOpenError`).
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// Ask to run one call at `now`; raises `CircuitOpenError` when it must not run.
    fn admit(&mut self, py: Python<'_>, now: f64) -> PyResult<PyBreakerPermit> {
        match self.inner.admit(now) {
            Ok(permit) => Ok(PyBreakerPermit {
                records: permit.records(),
                permit: Some(permit),
            }),
            Err(CircuitOpen {
                state,
                retry_at,
                retry_after,
            }) => {
                let cls = py
                    .import("seawall.policy.errors")?
                    .getattr("CircuitOpenError")?;
                let exc = cls.call1((self.name.as_str(), state.as_str(), retry_at, retry_after))?;
                Err(PyErr::from_value(exc))
            }
        }
    }

    /// Report a success; returns the transition it caused as `(from, to)`, if any.
    #[pyo3(signature = (permit, now, elapsed = 0.0))]
    fn record_success(
        &mut self,
        mut permit: PyRefMut<'_, PyBreakerPermit>,
        now: f64,
        elapsed: f64,
    ) -> PyResult<Option<(&'static str, &'static str)>> {
        let permit = take_permit(&mut permit)?;
        Ok(pair(self.inner.record_success(permit, now, elapsed)))
    }

    /// Report a failure; returns the transition it caused as `(from, to)`, if any.
    #[pyo3(signature = (permit, now, elapsed = 0.0))]
    fn record_failure(
        &mut self,
        mut permit: PyRefMut<'_, PyBreakerPermit>,
        now: f64,
        elapsed: f64,
    ) -> PyResult<Option<(&'static str, &'static str)>> {
        let permit = take_permit(&mut permit)?;
        Ok(pair(self.inner.record_failure(permit, now, elapsed)))
    }

    /// Hand back a permit without an outcome.
    fn release(&mut self, mut permit: PyRefMut<'_, PyBreakerPermit>) -> PyResult<()> {
        let permit = take_permit(&mut permit)?;
        self.inner.release(permit);
        Ok(())
    }

    /// The state at `now` (due transitions applied), e.g. `"half_open"`.
    fn state(&mut self, now: f64) -> &'static str {
        self.inner.state(now).as_str()
    }

    /// The state as last changed, without applying anything due later.
    #[getter]
    fn current_state(&self) -> &'static str {
        self.inner.current_state().as_str()
    }

    /// Apply the transitions due at `now`; returns the one it made, if any.
    fn poll(&mut self, now: f64) -> Option<(&'static str, &'static str)> {
        pair(self.inner.poll(now))
    }

    fn transition_to_closed(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.transition_to_closed(now))
    }

    fn transition_to_open(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.transition_to_open(now))
    }

    fn transition_to_forced_open(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.transition_to_forced_open(now))
    }

    fn transition_to_disabled(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.transition_to_disabled(now))
    }

    fn transition_to_metrics_only(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.transition_to_metrics_only(now))
    }

    fn reset(&mut self, now: f64) -> (&'static str, &'static str) {
        names(self.inner.reset(now))
    }

    /// Transitions so far.
    #[getter]
    fn transition_count(&self) -> u64 {
        self.inner.transition_count()
    }

    /// Transitions so far from the state named `from_` to the one named `to`.
    fn transitions_between(&self, from_: &str, to: &str) -> PyResult<u64> {
        Ok(self
            .inner
            .transitions_between(state_named(from_)?, state_named(to)?))
    }

    /// The latest transition as `(from, to, at)`, if any.
    #[getter]
    fn last_transition(&self) -> Option<(&'static str, &'static str, f64)> {
        self.inner
            .last_transition()
            .map(|t| (t.from.as_str(), t.to.as_str(), t.at))
    }

    /// The `BreakerMetrics` fields (without `name`) as a dict, state as its name.
    fn metrics<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyDict>> {
        let BreakerMetrics {
            state,
            window_calls,
            window_failures,
            window_slow_calls,
            failure_rate,
            slow_call_rate,
            successful_calls,
            failed_calls,
            slow_calls,
            not_permitted_calls,
            ignored_calls,
            consecutive_openings,
            next_probe_at,
            probes_in_flight,
        } = self.inner.metrics(now);
        let d = PyDict::new(py);
        d.set_item("state", state.as_str())?;
        d.set_item("window_calls", window_calls)?;
        d.set_item("window_failures", window_failures)?;
        d.set_item("window_slow_calls", window_slow_calls)?;
        d.set_item("failure_rate", failure_rate)?;
        d.set_item("slow_call_rate", slow_call_rate)?;
        d.set_item("successful_calls", successful_calls)?;
        d.set_item("failed_calls", failed_calls)?;
        d.set_item("slow_calls", slow_calls)?;
        d.set_item("not_permitted_calls", not_permitted_calls)?;
        d.set_item("ignored_calls", ignored_calls)?;
        d.set_item("consecutive_openings", consecutive_openings)?;
        d.set_item("next_probe_at", next_probe_at)?;
        d.set_item("probes_in_flight", probes_in_flight)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------- budget

/// `seawall_policy::budget::RetryBudget`, with the Python budget's constructor.
#[pyclass(module = "seawall._native", name = "RetryBudget")]
struct PyRetryBudget {
    inner: RetryBudget,
}

#[pymethods]
impl PyRetryBudget {
    #[new]
    #[pyo3(signature = (ratio = 0.2, min_per_second = 10.0, ttl = 10.0, *, buckets = 10))]
    fn new(ratio: f64, min_per_second: f64, ttl: f64, buckets: i64) -> PyResult<Self> {
        let buckets = usize::try_from(buckets).map_err(|_| {
            PyValueError::new_err(format!(
                "RetryBudget: buckets must be an int >= 1, got {buckets}"
            ))
        })?;
        let config = BudgetConfig {
            ratio,
            min_per_second,
            ttl,
        };
        Ok(Self {
            inner: RetryBudget::with_buckets(&config, buckets).map_err(value_error)?,
        })
    }

    /// New settings (`None` keeps one): see `RetryBudget::reconfigure`.
    #[pyo3(signature = (ratio = None, min_per_second = None, ttl = None, *, buckets = None))]
    fn reconfigure(
        &mut self,
        ratio: Option<f64>,
        min_per_second: Option<f64>,
        ttl: Option<f64>,
        buckets: Option<i64>,
    ) -> PyResult<()> {
        let c = *self.inner.config();
        let buckets = match buckets {
            None => self.inner.buckets(),
            Some(b) => usize::try_from(b).map_err(|_| {
                PyValueError::new_err(format!("RetryBudget: buckets must be an int >= 1, got {b}"))
            })?,
        };
        let config = BudgetConfig {
            ratio: ratio.unwrap_or(c.ratio),
            min_per_second: min_per_second.unwrap_or(c.min_per_second),
            ttl: ttl.unwrap_or(c.ttl),
        };
        self.inner
            .reconfigure(&config, buckets)
            .map_err(value_error)
    }

    /// The settings, as the constructor's keywords.
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("ratio", c.ratio)?;
        d.set_item("min_per_second", c.min_per_second)?;
        d.set_item("ttl", c.ttl)?;
        d.set_item("buckets", self.inner.buckets())?;
        Ok(d)
    }

    /// Record that a request was made.
    fn deposit(&mut self, now: f64) {
        self.inner.deposit(now);
    }

    /// Ask for one retry: record it and return true if the budget allows it.
    fn try_withdraw(&mut self, now: f64) -> bool {
        self.inner.try_withdraw(now)
    }

    /// The balance of the window, at least 0.
    fn available(&mut self, now: f64) -> f64 {
        self.inner.available(now)
    }

    /// `(requests, retries)` in the window at `now`.
    fn counts(&mut self, now: f64) -> (u64, u64) {
        self.inner.counts(now)
    }
}

// ---------------------------------------------------------------- bulkhead

/// `seawall_policy::bulkhead::Bulkhead`, with the Python bulkhead's constructor.
#[pyclass(module = "seawall._native", name = "Bulkhead")]
struct PyBulkhead {
    inner: Bulkhead,
}

fn bulkhead_config(
    max_in_flight: i64,
    max_waiting: i64,
    max_wait: f64,
) -> PyResult<BulkheadConfig> {
    let count = |field: &str, value: i64, min: i64| {
        usize::try_from(value)
            .ok()
            .filter(|_| value >= min)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "Bulkhead: {field} must be an int >= {min}, got {value}"
                ))
            })
    };
    Ok(BulkheadConfig {
        // `max_in_flight` in Python and mesh.yaml; the Rust field keeps its old name
        // until the sidecar's cluster.rs follows (issue 14)
        max_in_flight: count("max_in_flight", max_in_flight, 1)?,
        max_waiting: count("max_waiting", max_waiting, 0)?,
        max_wait,
    })
}

#[pymethods]
impl PyBulkhead {
    #[new]
    #[pyo3(signature = (max_in_flight, *, max_waiting = 0, max_wait = 1.0))]
    fn new(max_in_flight: i64, max_waiting: i64, max_wait: f64) -> PyResult<Self> {
        let config = bulkhead_config(max_in_flight, max_waiting, max_wait)?;
        Ok(Self {
            inner: Bulkhead::new(&config).map_err(value_error)?,
        })
    }

    /// The settings, as the constructor's keywords.
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("max_in_flight", c.max_in_flight)?;
        d.set_item("max_waiting", c.max_waiting)?;
        d.set_item("max_wait", c.max_wait)?;
        Ok(d)
    }

    /// A slot if one is free and nobody is queued (counts nothing).
    fn try_acquire(&mut self) -> bool {
        self.inner.try_acquire()
    }

    /// `("granted", None)`, `("queued", ticket)` or `("rejected", reason)`.
    #[pyo3(signature = (now, deadline = None))]
    fn acquire<'py>(
        &mut self,
        py: Python<'py>,
        now: f64,
        deadline: Option<f64>,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        let (what, detail) = match self.inner.acquire(now, deadline) {
            Ok(Admission::Granted) => ("granted", py.None()),
            Ok(Admission::Queued(t)) => ("queued", t.into_pyobject(py)?.into_any().unbind()),
            Err(r) => (
                "rejected",
                r.as_str().into_pyobject(py)?.into_any().unbind(),
            ),
        };
        pyo3::types::PyTuple::new(py, [what.into_pyobject(py)?.into_any().unbind(), detail])
    }

    /// Give a slot back: the tickets granted a slot by it.
    fn release(&mut self) -> Vec<u64> {
        self.inner.release()
    }

    /// Tickets whose wait has run out at `now`.
    fn expired(&self, now: f64) -> Vec<u64> {
        self.inner.expired(now)
    }

    /// A queued call stops waiting: true if it holds a slot.
    fn settle(&mut self, ticket: u64, timed_out: bool) -> bool {
        self.inner.settle(ticket, timed_out)
    }

    /// New limits (`None` keeps a setting); the calls in flight and queued carry over.
    #[pyo3(signature = (max_in_flight = None, *, max_waiting = None, max_wait = None))]
    fn reconfigure(
        &mut self,
        max_in_flight: Option<i64>,
        max_waiting: Option<i64>,
        max_wait: Option<f64>,
    ) -> PyResult<Vec<u64>> {
        let c = *self.inner.config();
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let config = bulkhead_config(
            max_in_flight.unwrap_or(as_i64(c.max_in_flight)),
            max_waiting.unwrap_or(as_i64(c.max_waiting)),
            max_wait.unwrap_or(c.max_wait),
        )?;
        self.inner.reconfigure(&config).map_err(value_error)
    }

    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.metrics();
        let d = PyDict::new(py);
        d.set_item("max_in_flight", m.max_in_flight)?;
        d.set_item("in_flight", m.in_flight)?;
        d.set_item("waiting", m.waiting)?;
        d.set_item("rejected_queue_full", m.rejected_queue_full)?;
        d.set_item("rejected_wait_timeout", m.rejected_wait_timeout)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------- load shedding

/// `seawall_policy::shed::Shedder`: Python's `seawall.policy.shed.LoadShedder`.
#[pyclass(module = "seawall._native", name = "LoadShedder")]
struct PyLoadShedder {
    inner: Shedder,
}

#[allow(clippy::too_many_arguments)]
fn shed_config(
    limit: Option<i64>,
    initial_limit: f64,
    min_limit: f64,
    max_limit: f64,
    smoothing: f64,
    tolerance: f64,
    long_window: i64,
    warmup: i64,
    max_waiting: i64,
    max_wait: f64,
) -> PyResult<ShedConfig> {
    let count = |field: &str, value: i64, min: i64| {
        usize::try_from(value)
            .ok()
            .filter(|_| value >= min)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "LoadShedder: {field} must be an int >= {min}, got {value}"
                ))
            })
    };
    let window = |field: &str, value: i64| {
        u32::try_from(value)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "LoadShedder: {field} must be an int >= 1, got {value}"
                ))
            })
    };
    let limit = match limit {
        Some(n) => Limit::Fixed(count("limit", n, 1)?),
        None => Limit::Gradient(Gradient {
            initial: initial_limit,
            min: min_limit,
            max: max_limit,
            smoothing,
            tolerance,
            long_window: window("long_window", long_window)?,
            warmup: window("warmup", warmup)?,
        }),
    };
    Ok(ShedConfig {
        limit,
        max_waiting: count("max_waiting", max_waiting, 0)?,
        max_wait,
    })
}

fn criticality(name: &str) -> PyResult<Criticality> {
    Criticality::parse(name).ok_or_else(|| {
        PyValueError::new_err(format!(
            "criticality {name:?} is not one of critical_plus, critical, sheddable_plus, sheddable"
        ))
    })
}

#[pymethods]
impl PyLoadShedder {
    #[new]
    #[pyo3(signature = (
        limit = None, *, initial_limit = 20.0, min_limit = 1.0, max_limit = 1000.0,
        smoothing = 0.2, tolerance = 1.5, long_window = 600, warmup = 10,
        max_waiting = 50, max_wait = 0.1
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        limit: Option<i64>,
        initial_limit: f64,
        min_limit: f64,
        max_limit: f64,
        smoothing: f64,
        tolerance: f64,
        long_window: i64,
        warmup: i64,
        max_waiting: i64,
        max_wait: f64,
    ) -> PyResult<Self> {
        let config = shed_config(
            limit,
            initial_limit,
            min_limit,
            max_limit,
            smoothing,
            tolerance,
            long_window,
            warmup,
            max_waiting,
            max_wait,
        )?;
        Ok(Self {
            inner: Shedder::new(config).map_err(value_error)?,
        })
    }

    #[getter]
    fn limit(&self) -> f64 {
        self.inner.limit()
    }

    #[getter]
    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }

    #[getter]
    fn waiting(&self) -> usize {
        self.inner.waiting()
    }

    /// `(kind, ticket, evicted)`: `admitted`, `queued` or `shed`.
    fn acquire(
        &mut self,
        now: f64,
        criticality_: &str,
    ) -> PyResult<(&'static str, Option<u64>, Option<u64>)> {
        Ok(match self.inner.acquire(now, criticality(criticality_)?) {
            shed::Admission::Admitted => ("admitted", None, None),
            shed::Admission::Queued { ticket, evicted } => ("queued", Some(ticket), evicted),
            shed::Admission::Shed => ("shed", None, None),
        })
    }

    #[pyo3(signature = (latency = None))]
    fn release(&mut self, latency: Option<f64>) -> Vec<u64> {
        self.inner.release(latency)
    }

    fn expired(&mut self, now: f64) -> Vec<u64> {
        self.inner.expired(now)
    }

    fn cancel(&mut self, ticket: u64) -> bool {
        self.inner.cancel(ticket)
    }

    #[pyo3(signature = (
        limit = None, *, initial_limit = 20.0, min_limit = 1.0, max_limit = 1000.0,
        smoothing = 0.2, tolerance = 1.5, long_window = 600, warmup = 10,
        max_waiting = 50, max_wait = 0.1
    ))]
    #[allow(clippy::too_many_arguments)]
    fn reconfigure(
        &mut self,
        limit: Option<i64>,
        initial_limit: f64,
        min_limit: f64,
        max_limit: f64,
        smoothing: f64,
        tolerance: f64,
        long_window: i64,
        warmup: i64,
        max_waiting: i64,
        max_wait: f64,
    ) -> PyResult<(Vec<u64>, Vec<u64>)> {
        let config = shed_config(
            limit,
            initial_limit,
            min_limit,
            max_limit,
            smoothing,
            tolerance,
            long_window,
            warmup,
            max_waiting,
            max_wait,
        )?;
        self.inner.reconfigure(config).map_err(value_error)
    }

    /// Requests admitted and shed, by criticality.
    fn counts<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.counts();
        let d = PyDict::new(py);
        for (key, values) in [("admitted", c.admitted), ("shed", c.shed)] {
            let by = PyDict::new(py);
            for (level, n) in Criticality::ALL.iter().zip(values) {
                by.set_item(level.as_str(), n)?;
            }
            d.set_item(key, by)?;
        }
        Ok(d)
    }
}

// ---------------------------------------------------------------- backoff

/// `seawall_policy::backoff::Backoff`: Python's `backoff(jitter, base, max)`.
#[pyclass(module = "seawall._native", name = "Backoff")]
struct PyBackoff {
    inner: Backoff,
}

#[pymethods]
impl PyBackoff {
    #[new]
    #[pyo3(signature = (jitter = "full", base = 0.05, max = 2.0))]
    fn new(jitter: &str, base: f64, max: f64) -> PyResult<Self> {
        let jitter = Jitter::from_name(jitter).map_err(value_error)?;
        Ok(Self {
            inner: Backoff::new(jitter, base, max).map_err(value_error)?,
        })
    }

    #[getter]
    fn jitter(&self) -> &'static str {
        self.inner.jitter().as_str()
    }

    #[getter]
    fn base(&self) -> f64 {
        self.inner.base()
    }

    #[getter]
    fn max(&self) -> f64 {
        self.inner.max()
    }

    /// Seconds before retry `attempt` (>= 1), drawing from `rng`.
    fn delay(
        &self,
        attempt: i64,
        previous: f64,
        mut rng: PyRefMut<'_, PyScriptedRandom>,
    ) -> PyResult<f64> {
        let attempt = u32::try_from(attempt)
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "backoff: attempt must be an int >= 1, got {attempt}"
                ))
            })?;
        Ok(self.inner.delay(attempt, previous, &mut *rng))
    }
}

// ---------------------------------------------------------------- outlier

/// `seawall_policy::outlier::OutlierDetector` keyed by `str`, with the Python constructor.
#[pyclass(module = "seawall._native", name = "OutlierDetector")]
struct PyOutlierDetector {
    inner: OutlierDetector<String>,
}

fn threshold(field: &str, value: i64) -> PyResult<u32> {
    u32::try_from(value).map_err(|_| {
        PyValueError::new_err(format!(
            "OutlierDetector: {field} must be an int >= 0, got {value}"
        ))
    })
}

fn reasons<'py>(
    py: Python<'py>,
    counts: &ReasonCounts,
    local_origin: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("consecutive_5xx", counts.consecutive_5xx)?;
    d.set_item(
        "consecutive_gateway_error",
        counts.consecutive_gateway_error,
    )?;
    if local_origin {
        d.set_item(
            "consecutive_local_origin_failure",
            counts.consecutive_local_origin_failure,
        )?;
    }
    Ok(d)
}

#[pymethods]
impl PyOutlierDetector {
    #[new]
    #[pyo3(signature = (
        endpoints = Vec::new(),
        *,
        consecutive_5xx = 5,
        consecutive_gateway_errors = 5,
        base_ejection = 30.0,
        max_ejection = None,
        max_ejected_percent = 10.0,
        always_eject_one = true,
        interval = 10.0,
        consecutive_local_origin_failures = None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoints: Vec<String>,
        consecutive_5xx: i64,
        consecutive_gateway_errors: i64,
        base_ejection: f64,
        max_ejection: Option<f64>,
        max_ejected_percent: f64,
        always_eject_one: bool,
        interval: f64,
        consecutive_local_origin_failures: Option<i64>,
    ) -> PyResult<Self> {
        let consecutive_5xx = threshold("consecutive_5xx", consecutive_5xx)?;
        let consecutive_gateway_errors =
            threshold("consecutive_gateway_errors", consecutive_gateway_errors)?;
        let consecutive_local_origin_failures = match consecutive_local_origin_failures {
            None => None,
            Some(n) => Some(u32::try_from(n).map_err(|_| {
                PyValueError::new_err(format!(
                    "OutlierDetector: consecutive_local_origin_failures must be an int >= 1 or None, got {n}"
                ))
            })?),
        };
        // Python: max_ejection=None is max(300, base_ejection), base checked first.
        let max_ejection = match max_ejection {
            Some(m) => m,
            None if base_ejection.is_finite() && base_ejection > 0.0 => base_ejection.max(300.0),
            None => {
                return Err(PyValueError::new_err(format!(
                "OutlierDetector: base_ejection must be a finite number > 0, got {base_ejection}"
            )))
            }
        };
        let config = OutlierConfig {
            consecutive_5xx,
            consecutive_gateway_errors,
            consecutive_local_origin_failures,
            base_ejection,
            max_ejection,
            max_ejected_percent,
            always_eject_one,
            interval,
        };
        Ok(Self {
            inner: OutlierDetector::new(&config, endpoints).map_err(value_error)?,
        })
    }

    /// The settings, as the constructor's keywords (without `endpoints`).
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.inner.config();
        let d = PyDict::new(py);
        d.set_item("consecutive_5xx", c.consecutive_5xx)?;
        d.set_item("consecutive_gateway_errors", c.consecutive_gateway_errors)?;
        d.set_item("base_ejection", c.base_ejection)?;
        d.set_item("max_ejection", c.max_ejection)?;
        d.set_item("max_ejected_percent", c.max_ejected_percent)?;
        d.set_item("always_eject_one", c.always_eject_one)?;
        d.set_item("interval", c.interval)?;
        d.set_item(
            "consecutive_local_origin_failures",
            c.consecutive_local_origin_failures,
        )?;
        Ok(d)
    }

    /// New settings, as the constructor's keywords (the ones left out keep
    /// their value); every endpoint's state carries over.
    #[pyo3(signature = (**settings))]
    fn reconfigure(
        &mut self,
        py: Python<'_>,
        settings: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let merged = self.settings(py)?;
        if let Some(settings) = settings {
            for (key, value) in settings.iter() {
                let name: String = key.extract()?;
                if merged.get_item(&name)?.is_none() {
                    return Err(PyValueError::new_err(format!(
                        "OutlierDetector: cannot reconfigure {name:?}"
                    )));
                }
                merged.set_item(key, value)?;
            }
        }
        let fresh = py
            .get_type::<PyOutlierDetector>()
            .call((), Some(&merged))?
            .cast_into::<PyOutlierDetector>()?;
        let config = *fresh.borrow().inner.config();
        self.inner.reconfigure(&config).map_err(value_error)
    }

    /// Set the endpoint set, keeping the state of endpoints that remain.
    fn update(&mut self, endpoints: Vec<String>) {
        self.inner.update(endpoints);
    }

    /// A number that changes whenever the ejected set changes.
    fn version(&mut self, now: f64) -> u64 {
        self.inner.version(now)
    }

    fn is_ejected(&mut self, endpoint: String, now: f64) -> bool {
        self.inner.is_ejected(&endpoint, now)
    }

    fn eligible(&mut self, endpoints: Vec<String>, now: f64) -> Vec<String> {
        self.inner.eligible(&endpoints, now)
    }

    fn ejected_count(&mut self, now: f64) -> usize {
        self.inner.ejected_count(now)
    }

    /// Ejections so far.
    #[getter]
    fn ejections(&self) -> u64 {
        self.inner.ejections()
    }

    /// Record an attempt's outcome; true if it ejected `endpoint`. A status
    /// outside 0..=65535 is a response that is not a 5xx, as in Python.
    #[pyo3(signature = (endpoint, now, status, gateway_error = false))]
    fn on_result(
        &mut self,
        endpoint: String,
        now: f64,
        status: Option<i64>,
        gateway_error: bool,
    ) -> bool {
        let status = status.map(|s| u16::try_from(s).unwrap_or(0));
        self.inner.on_result(&endpoint, now, status, gateway_error)
    }

    /// The `OutlierSnapshot` fields as a dict (endpoints as a list of dicts).
    fn snapshot<'py>(&mut self, py: Python<'py>, now: f64) -> PyResult<Bound<'py, PyDict>> {
        let local_origin = self
            .inner
            .config()
            .consecutive_local_origin_failures
            .is_some();
        let OutlierSnapshot {
            endpoints,
            ejected,
            ejections,
            ejections_by_reason,
            detections,
            overflows,
        } = self.inner.snapshot(now);
        let states = endpoints
            .into_iter()
            .map(|e| {
                let d = PyDict::new(py);
                d.set_item("endpoint", e.endpoint)?;
                d.set_item("ejected", e.ejected)?;
                d.set_item("ejected_until", e.ejected_until)?;
                d.set_item("ejection_remaining", e.ejection_remaining)?;
                d.set_item("times_ejected", e.times_ejected)?;
                d.set_item("multiplier", e.multiplier)?;
                d.set_item("consecutive_5xx", e.consecutive_5xx)?;
                d.set_item("consecutive_gateway_errors", e.consecutive_gateway_errors)?;
                d.set_item(
                    "consecutive_local_origin_failures",
                    e.consecutive_local_origin_failures,
                )?;
                Ok(d)
            })
            .collect::<PyResult<Vec<_>>>()?;
        let d = PyDict::new(py);
        d.set_item("endpoints", states)?;
        d.set_item("ejected", ejected)?;
        d.set_item("ejections", ejections)?;
        d.set_item(
            "ejections_by_reason",
            reasons(py, &ejections_by_reason, local_origin)?,
        )?;
        d.set_item("detections", reasons(py, &detections, local_origin)?)?;
        d.set_item("overflows", overflows)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------- split

/// `seawall_policy::split::WeightedSplit`: Python's `WeightedSplit` + `Decider.choose_subset`.
#[pyclass(module = "seawall._native", name = "WeightedSplit")]
struct PyWeightedSplit {
    inner: WeightedSplit,
}

#[pymethods]
impl PyWeightedSplit {
    #[new]
    fn new(weights: Vec<(String, f64)>) -> PyResult<Self> {
        Ok(Self {
            inner: WeightedSplit::new(weights).map_err(value_error)?,
        })
    }

    /// The sum of the weights.
    #[getter]
    fn total(&self) -> f64 {
        self.inner.total()
    }

    /// The `(subset, weight)` pairs.
    #[getter]
    fn weights(&self) -> Vec<(String, f64)> {
        self.inner
            .weights()
            .map(|(name, w)| (name.to_owned(), w))
            .collect()
    }

    /// The subset for one draw in `[0, 1)`.
    fn pick(&self, draw: f64) -> String {
        self.inner.pick(draw).to_owned()
    }

    /// A subset, drawing once from `rng`.
    fn choose(&self, mut rng: PyRefMut<'_, PyScriptedRandom>) -> String {
        self.inner.choose(&mut *rng).to_owned()
    }
}

// ---------------------------------------------------------------- rate limiter

/// `seawall_policy::ratelimit::TokenBucket`, with `seawall.policy.RateLimiter`'s
/// constructor (`burst` defaults to `max(1, rate)`).
#[pyclass(module = "seawall._native", name = "RateLimiter")]
struct PyRateLimiter {
    inner: TokenBucket,
}

#[pymethods]
impl PyRateLimiter {
    #[new]
    #[pyo3(signature = (rate, burst = None))]
    fn new(rate: f64, burst: Option<f64>) -> PyResult<Self> {
        let burst = burst.unwrap_or(rate.max(1.0));
        Ok(Self {
            inner: TokenBucket::new(rate, burst).map_err(value_error)?,
        })
    }

    /// The settings, as the constructor's keywords.
    #[getter]
    fn settings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let (rate, burst) = self.inner.settings();
        let d = PyDict::new(py);
        d.set_item("rate", rate)?;
        d.set_item("burst", burst)?;
        Ok(d)
    }

    /// Take one token if there is one at `now`.
    fn try_acquire(&mut self, now: f64) -> bool {
        self.inner.try_acquire(now)
    }

    /// Seconds from `now` until a token is there (0 if one is).
    fn retry_after(&mut self, now: f64) -> f64 {
        self.inner.retry_after(now)
    }

    /// Tokens in the bucket at `now`.
    fn available(&mut self, now: f64) -> f64 {
        self.inner.available(now)
    }
}
