//! Outlier detection: eject endpoints that keep failing, for a growing time
//! (Envoy's consecutive-errors rules). The twin of
//! `seawall.policy.outlier.OutlierDetector`.
//!
//! One [`OutlierDetector`] per destination, keyed by any `K: Eq + Hash + Clone`
//! (the sidecar uses its `u64` endpoint ids). The proxy reports every
//! attempt's outcome with [`OutlierDetector::on_result`]; balancers cache their
//! candidates under [`OutlierDetector::version`], which changes whenever the
//! ejected set changes, and ask [`OutlierDetector::ejected`] only when it did.
//! Sans-I/O (told `now`), no timer, not thread-safe.
//!
//! # Reporting an outcome
//!
//! `on_result(key, now, status, gateway_error)`, as in Python:
//!
//! | outcome | `status` | `gateway_error` |
//! |---|---|---|
//! | a response | `Some(code)` | `false` (502/503/504 are gateway errors by their code) |
//! | connect failure, reset, timeout: no response (*local origin*) | `None` | `true` |
//! | no response, not the endpoint's fault (cancelled, the caller gave up) | `None` | `false` (ignored) |
//!
//! # Counting, in the default mode (`consecutive_local_origin_failures: None`)
//!
//! Envoy's default (`split_external_local_origin_errors: false`): local-origin
//! failures count as gateway errors. `consecutive_5xx` counts every 5xx and
//! every gateway error; `consecutive_gateway_errors` counts 502, 503, 504 and
//! local-origin failures. A 5xx that is not a gateway error resets the
//! gateway counter; any other response resets both.
//!
//! # Counting, in the local-origin mode (`consecutive_local_origin_failures: Some(n)`)
//!
//! Envoy's `split_external_local_origin_errors: true`. Local-origin failures
//! go to their own counter, which ejects at `n`; they leave the 5xx and
//! gateway counters untouched. The 5xx and gateway counters see only the
//! endpoint's own responses (a 503 it answered counts as a 5xx and a gateway
//! error, as in Envoy). Any response resets the local-origin counter: the
//! endpoint was reachable. To ignore the endpoint's own answers altogether
//! (an app that rightly answers 503 while one of its dependencies is down),
//! also set `consecutive_5xx` and `consecutive_gateway_errors` to 0.
//!
//! # Ejecting
//!
//! * **Detection.** When a counter reaches its threshold (0 disables the 5xx
//!   and gateway rules) the endpoint is detected, gateway rule first; every
//!   counter restarts from zero, whether or not it is then ejected.
//! * **Ejection time** `min(base_ejection * k, max_ejection)`: `k` grows by one
//!   per ejection (up to `ceil(max_ejection / base_ejection)`) and shrinks by
//!   one per `interval` the endpoint spent back in service.
//! * **Maximum ejected.** An ejection goes ahead only if
//!   `100 * (ejected + 1) <= max_ejected_percent * total`, or with
//!   `always_eject_one` when nothing is ejected; `max_ejected_percent = 0`
//!   disables ejection. A detection that may not eject is an overflow.
//! * **Return** is lazy and exact: the first call at or after the end of an
//!   ejection returns the endpoint, counters at zero. Results for an ejected
//!   endpoint (requests sent before the ejection) and for unknown keys are
//!   ignored.
//! * **Membership.** [`OutlierDetector::update`] replaces the endpoint set in
//!   place: endpoints that stay keep their state (an ejection survives another
//!   instance joining or leaving), removed ones are forgotten, and one that
//!   comes back starts afresh.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

use crate::window::floor_index;

/// Why an endpoint was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EjectionReason {
    /// `consecutive_5xx` responses (and, in the default mode, local-origin failures).
    Consecutive5xx,
    /// `consecutive_gateway_errors` gateway errors.
    ConsecutiveGatewayError,
    /// `consecutive_local_origin_failures` local-origin failures (local-origin mode).
    ConsecutiveLocalOriginFailure,
}

impl EjectionReason {
    /// The reason's name, as Python reports it (`"consecutive_5xx"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            EjectionReason::Consecutive5xx => "consecutive_5xx",
            EjectionReason::ConsecutiveGatewayError => "consecutive_gateway_error",
            EjectionReason::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
        }
    }
}

/// A detector's settings; the defaults are Envoy's (and the Python detector's).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierConfig {
    /// Consecutive 5xx that trip detection; 0 disables the rule. Default 5.
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors that trip detection; 0 disables the rule. Default 5.
    pub consecutive_gateway_errors: u32,
    /// `Some(n)` (n >= 1): the local-origin mode, ejecting at `n` consecutive
    /// local-origin failures. `None` (default): local-origin failures are gateway errors.
    pub consecutive_local_origin_failures: Option<u32>,
    /// Seconds of the first ejection (finite, > 0). Default 30.
    pub base_ejection: f64,
    /// Cap on the growing ejection time (finite, >= `base_ejection`). Default
    /// 300 (Python's `max_ejection=None` is `max(300, base_ejection)`).
    pub max_ejection: f64,
    /// At most this percentage of the endpoints is ejected at once (0..=100). Default 10.
    pub max_ejected_percent: f64,
    /// Allow one ejection when none is in force, whatever the percentage. Default true.
    pub always_eject_one: bool,
    /// The ejection multiplier shrinks by one per `interval` seconds in service (finite, > 0). Default 10.
    pub interval: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_5xx: 5,
            consecutive_gateway_errors: 5,
            consecutive_local_origin_failures: None,
            base_ejection: 30.0,
            max_ejection: 300.0,
            max_ejected_percent: 10.0,
            always_eject_one: true,
            interval: 10.0,
        }
    }
}

/// A setting of an [`OutlierConfig`] is out of range.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierError {
    /// The setting, named as in Python (`"max_ejected_percent"`).
    pub field: &'static str,
    /// What it must be.
    pub rule: &'static str,
    /// The value given, as text.
    pub value: String,
}

impl fmt::Display for OutlierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OutlierDetector: {} must be {}, got {}",
            self.field, self.rule, self.value
        )
    }
}

impl std::error::Error for OutlierError {}

impl OutlierConfig {
    /// Check every setting, in the Python detector's order; the error names the first bad one.
    pub fn validate(&self) -> Result<(), OutlierError> {
        let bad = |field, rule, value: String| Err(OutlierError { field, rule, value });
        if self.consecutive_local_origin_failures == Some(0) {
            return bad(
                "consecutive_local_origin_failures",
                "an int >= 1 or None",
                "0".into(),
            );
        }
        for (field, value) in [
            ("base_ejection", self.base_ejection),
            ("max_ejection", self.max_ejection),
            ("interval", self.interval),
        ] {
            if !(value.is_finite() && value > 0.0) {
                return bad(field, "a finite number > 0", value.to_string());
            }
        }
        if self.max_ejection < self.base_ejection {
            return bad(
                "max_ejection",
                ">= base_ejection",
                self.max_ejection.to_string(),
            );
        }
        let pct = self.max_ejected_percent;
        if !(0.0..=100.0).contains(&pct) {
            return bad("max_ejected_percent", "in 0..100", pct.to_string());
        }
        Ok(())
    }
}

/// Per-reason counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReasonCounts {
    /// For [`EjectionReason::Consecutive5xx`].
    pub consecutive_5xx: u64,
    /// For [`EjectionReason::ConsecutiveGatewayError`].
    pub consecutive_gateway_error: u64,
    /// For [`EjectionReason::ConsecutiveLocalOriginFailure`].
    pub consecutive_local_origin_failure: u64,
}

impl ReasonCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: EjectionReason) -> u64 {
        match reason {
            EjectionReason::Consecutive5xx => self.consecutive_5xx,
            EjectionReason::ConsecutiveGatewayError => self.consecutive_gateway_error,
            EjectionReason::ConsecutiveLocalOriginFailure => self.consecutive_local_origin_failure,
        }
    }

    fn bump(&mut self, reason: EjectionReason) {
        let slot = match reason {
            EjectionReason::Consecutive5xx => &mut self.consecutive_5xx,
            EjectionReason::ConsecutiveGatewayError => &mut self.consecutive_gateway_error,
            EjectionReason::ConsecutiveLocalOriginFailure => {
                &mut self.consecutive_local_origin_failure
            }
        };
        *slot += 1;
    }
}

/// One endpoint's state, for the admin page (Python's `EndpointOutlierState`).
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointState<K> {
    /// The endpoint (its key).
    pub endpoint: K,
    /// Whether it is ejected now.
    pub ejected: bool,
    /// When its ejection ends.
    pub ejected_until: Option<f64>,
    /// Seconds until then (0.0 if not ejected).
    pub ejection_remaining: f64,
    /// Ejections since it joined the set.
    pub times_ejected: u64,
    /// The `k` of its last or current ejection time, before any shrinking still to apply.
    pub multiplier: u64,
    /// The current consecutive 5xx count.
    pub consecutive_5xx: u64,
    /// The current consecutive gateway-error count.
    pub consecutive_gateway_errors: u64,
    /// The current consecutive local-origin failure count (0 outside that mode).
    pub consecutive_local_origin_failures: u64,
}

/// A detector's state and counters (Python's `OutlierSnapshot`).
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierSnapshot<K> {
    /// One state per endpoint, in set order.
    pub endpoints: Vec<EndpointState<K>>,
    /// Endpoints ejected now (a gauge).
    pub ejected: usize,
    /// Ejections so far (a counter).
    pub ejections: u64,
    /// Ejections so far, per reason.
    pub ejections_by_reason: ReasonCounts,
    /// Detections so far (ejected or not), per reason.
    pub detections: ReasonCounts,
    /// Detections that did not eject because of `max_ejected_percent`.
    pub overflows: u64,
}

#[derive(Debug, Clone, Default)]
struct Host {
    c5xx: u64,
    cgw: u64,
    clo: u64,
    multiplier: u64,
    times_ejected: u64,
    until: Option<f64>,       // set while ejected
    returned_at: Option<f64>, // last return to service
}

impl Host {
    fn reset_counters(&mut self) {
        self.c5xx = 0;
        self.cgw = 0;
        self.clo = 0;
    }
}

/// Passive health checking of one destination's endpoints (see the module docs).
#[derive(Debug, Clone)]
pub struct OutlierDetector<K> {
    config: OutlierConfig,
    cap: u64,
    hosts: Vec<(K, Host)>,
    index: HashMap<K, usize>,
    ejected: usize,
    next_return: f64,
    version: u64,
    ejections: u64,
    overflows: u64,
    by_reason: ReasonCounts,
    detections: ReasonCounts,
}

impl<K: Eq + Hash + Clone> OutlierDetector<K> {
    /// A detector over `endpoints` (see [`OutlierDetector::update`]).
    pub fn new(
        config: &OutlierConfig,
        endpoints: impl IntoIterator<Item = K>,
    ) -> Result<Self, OutlierError> {
        config.validate()?;
        // The multiplier stops growing once base * k covers max_ejection.
        let cap = (config.max_ejection / config.base_ejection).ceil().max(1.0) as u64;
        let mut detector = Self {
            config: *config,
            cap,
            hosts: Vec::new(),
            index: HashMap::new(),
            ejected: 0,
            next_return: f64::INFINITY,
            version: 0,
            ejections: 0,
            overflows: 0,
            by_reason: ReasonCounts::default(),
            detections: ReasonCounts::default(),
        };
        detector.update(endpoints);
        Ok(detector)
    }

    /// The settings.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// New settings for this live detector (a new config version). Every
    /// endpoint keeps its state: its consecutive counts, its ejection (which
    /// ends when it was set to), its multiplier; the counters carry over. The
    /// new thresholds judge the next response, and the new durations apply from
    /// the next ejection. Turning `consecutive_local_origin_failures` off drops
    /// its per-reason counts. Invalid settings are refused and change nothing.
    pub fn reconfigure(&mut self, config: &OutlierConfig) -> Result<(), OutlierError> {
        config.validate()?;
        self.cap = (config.max_ejection / config.base_ejection).ceil().max(1.0) as u64;
        if config.consecutive_local_origin_failures.is_none() {
            self.by_reason.consecutive_local_origin_failure = 0;
            self.detections.consecutive_local_origin_failure = 0;
        }
        self.config = *config;
        Ok(())
    }

    /// Ejections so far, per reason (an ejection's reason is the one that grew).
    pub fn ejections_by_reason(&self) -> ReasonCounts {
        self.by_reason
    }

    /// When `key`'s ejection ends (`None`: not ejected, as of the latest call
    /// told the time).
    pub fn ejected_until(&self, key: &K) -> Option<f64> {
        self.index
            .get(key)
            .and_then(|&i| self.hosts.get(i))
            .and_then(|(_, h)| h.until)
    }

    /// Ejections so far (a counter for metrics).
    pub fn ejections(&self) -> u64 {
        self.ejections
    }

    // ------------------------------------------------------------ membership

    /// Set the endpoint set, in place: keep the state of endpoints that remain,
    /// drop the others (a key given twice counts once, at its first place).
    pub fn update(&mut self, endpoints: impl IntoIterator<Item = K>) {
        let mut old: HashMap<K, Host> = std::mem::take(&mut self.hosts).into_iter().collect();
        let mut hosts = Vec::new();
        let mut index = HashMap::new();
        for key in endpoints {
            if index.contains_key(&key) {
                continue;
            }
            let host = old.remove(&key).unwrap_or_default();
            index.insert(key.clone(), hosts.len());
            hosts.push((key, host));
        }
        self.ejected = hosts.iter().filter(|(_, h)| h.until.is_some()).count();
        self.next_return = hosts
            .iter()
            .filter_map(|(_, h)| h.until)
            .fold(f64::INFINITY, f64::min);
        self.hosts = hosts;
        self.index = index;
        self.version += 1;
    }

    /// The number of endpoints in the set.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    // ------------------------------------------------------------ queries

    fn return_if_due(&mut self, now: f64) {
        if now >= self.next_return {
            self.return_due(now);
        }
    }

    /// A number that changes whenever the ejected set changes (returns due at `now` applied).
    pub fn version(&mut self, now: f64) -> u64 {
        self.return_if_due(now);
        self.version
    }

    /// Whether `key` is ejected at `now`.
    pub fn is_ejected(&mut self, key: &K, now: f64) -> bool {
        self.return_if_due(now);
        self.ejected(key)
    }

    /// Whether `key` is ejected, as of the latest call told the time (call
    /// [`OutlierDetector::version`] first): the predicate a balancer asks.
    pub fn ejected(&self, key: &K) -> bool {
        self.index
            .get(key)
            .and_then(|&i| self.hosts.get(i))
            .is_some_and(|(_, h)| h.until.is_some())
    }

    /// The keys of `keys` that are not ejected at `now`, in order.
    pub fn eligible<'a>(&mut self, keys: impl IntoIterator<Item = &'a K>, now: f64) -> Vec<K>
    where
        K: 'a,
    {
        self.return_if_due(now);
        keys.into_iter()
            .filter(|k| !self.ejected(k))
            .cloned()
            .collect()
    }

    /// Endpoints ejected at `now` (a gauge).
    pub fn ejected_count(&mut self, now: f64) -> usize {
        self.return_if_due(now);
        self.ejected
    }

    // ------------------------------------------------------------ outcomes

    /// Record an attempt's outcome (see the module docs); return true if it ejected `key`.
    pub fn on_result(
        &mut self,
        key: &K,
        now: f64,
        status: Option<u16>,
        gateway_error: bool,
    ) -> bool {
        self.return_if_due(now);
        let Some(&i) = self.index.get(key) else {
            return false; // unknown: ignored
        };
        let split = self.config.consecutive_local_origin_failures;
        let Some((_, host)) = self.hosts.get_mut(i) else {
            return false;
        };
        if host.until.is_some() {
            return false; // ejected: a late answer, ignored
        }
        let mut gateway = gateway_error;
        match status {
            None if !gateway_error => return false, // no information
            None => {
                if let Some(limit) = split {
                    // Local-origin mode: its own counter, nothing else touched.
                    host.clo = host.clo.saturating_add(1);
                    if host.clo >= u64::from(limit) {
                        return self.detected(
                            i,
                            now,
                            EjectionReason::ConsecutiveLocalOriginFailure,
                        );
                    }
                    return false;
                }
            }
            Some(code) if !(500..=599).contains(&code) => {
                host.reset_counters();
                return false;
            }
            Some(code) => {
                host.clo = 0; // it answered: reachable
                if matches!(code, 502..=504) {
                    gateway = true;
                }
            }
        }
        if gateway {
            host.cgw = host.cgw.saturating_add(1);
        } else {
            host.cgw = 0;
        }
        host.c5xx = host.c5xx.saturating_add(1);
        let (cgw, c5xx) = (host.cgw, host.c5xx);
        let limit = u64::from(self.config.consecutive_gateway_errors);
        if limit > 0 && cgw >= limit {
            return self.detected(i, now, EjectionReason::ConsecutiveGatewayError);
        }
        let limit = u64::from(self.config.consecutive_5xx);
        if limit > 0 && c5xx >= limit {
            return self.detected(i, now, EjectionReason::Consecutive5xx);
        }
        false
    }

    fn detected(&mut self, i: usize, now: f64, reason: EjectionReason) -> bool {
        self.detections.bump(reason);
        let total = self.hosts.len() as f64;
        let ejected = self.ejected;
        let config = self.config;
        let pct = config.max_ejected_percent;
        let allowed = pct > 0.0
            && (100.0 * (ejected + 1) as f64 <= pct * total
                || (config.always_eject_one && ejected == 0));
        let Some((_, host)) = self.hosts.get_mut(i) else {
            return false;
        };
        host.reset_counters();
        if !allowed {
            self.overflows += 1;
            return false;
        }
        // Shrink the multiplier for the time spent in service since the last return.
        if let Some(returned_at) = host.returned_at {
            if host.multiplier > 0 {
                let steps = floor_index(now - returned_at, config.interval);
                let k = i128::from(host.multiplier) - i128::from(steps);
                host.multiplier = k.clamp(0, i128::from(u64::MAX)) as u64;
            }
        }
        host.multiplier = host.multiplier.saturating_add(1).min(self.cap);
        let until = now
            + f64::min(
                config.base_ejection * host.multiplier as f64,
                config.max_ejection,
            );
        host.until = Some(until);
        host.times_ejected += 1;
        self.ejected += 1;
        self.next_return = self.next_return.min(until);
        self.ejections += 1;
        self.by_reason.bump(reason);
        self.version += 1;
        true
    }

    /// Return every endpoint whose ejection is over at `now`.
    fn return_due(&mut self, now: f64) {
        let mut next_return = f64::INFINITY;
        let mut back = 0;
        for (_, host) in &mut self.hosts {
            let Some(until) = host.until else { continue };
            if until <= now {
                host.returned_at = Some(until); // it was back then, whenever we noticed
                host.until = None;
                host.reset_counters();
                back += 1;
            } else if until < next_return {
                next_return = until;
            }
        }
        self.ejected -= back.min(self.ejected);
        self.next_return = next_return;
        if back > 0 {
            self.version += 1;
        }
    }

    // ------------------------------------------------------------ observation

    /// The state of every endpoint and the counters, at `now`.
    pub fn snapshot(&mut self, now: f64) -> OutlierSnapshot<K> {
        self.return_if_due(now);
        OutlierSnapshot {
            endpoints: self
                .hosts
                .iter()
                .map(|(key, h)| EndpointState {
                    endpoint: key.clone(),
                    ejected: h.until.is_some(),
                    ejected_until: h.until,
                    ejection_remaining: h.until.map_or(0.0, |until| until - now),
                    times_ejected: h.times_ejected,
                    multiplier: h.multiplier,
                    consecutive_5xx: h.c5xx,
                    consecutive_gateway_errors: h.cgw,
                    consecutive_local_origin_failures: h.clo,
                })
                .collect(),
            ejected: self.ejected,
            ejections: self.ejections,
            ejections_by_reason: self.by_reason,
            detections: self.detections,
            overflows: self.overflows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector(n: u64, config: OutlierConfig) -> OutlierDetector<u64> {
        OutlierDetector::new(&config, 0..n).expect("valid config")
    }

    fn half() -> OutlierConfig {
        OutlierConfig {
            max_ejected_percent: 50.0,
            ..OutlierConfig::default()
        }
    }

    fn fail(
        od: &mut OutlierDetector<u64>,
        key: u64,
        now: f64,
        times: usize,
        status: Option<u16>,
        gw: bool,
    ) -> Vec<bool> {
        (0..times)
            .map(|_| od.on_result(&key, now, status, gw))
            .collect()
    }

    #[test]
    fn consecutive_5xx_trips_at_the_threshold() {
        let mut od = detector(2, half());
        let v0 = od.version(0.0);
        assert_eq!(
            fail(&mut od, 0, 0.0, 5, Some(500), false),
            [false, false, false, false, true]
        );
        assert!(od.is_ejected(&0, 0.0));
        assert_ne!(od.version(0.0), v0);
        assert_eq!(od.eligible(&[0, 1], 0.0), vec![1]);
        let snap = od.snapshot(10.0);
        assert_eq!(snap.ejections_by_reason.consecutive_5xx, 1);
        assert_eq!(snap.endpoints[0].ejection_remaining, 20.0);
        assert!(!od.is_ejected(&0, 30.0));
        assert_eq!(od.ejected_count(30.0), 0);
    }

    #[test]
    fn responses_reset_and_gateway_errors_count_twice() {
        let mut od = detector(2, half());
        fail(&mut od, 0, 0.0, 4, Some(503), false);
        let s = od.snapshot(0.0);
        assert_eq!(
            (
                s.endpoints[0].consecutive_5xx,
                s.endpoints[0].consecutive_gateway_errors
            ),
            (4, 4)
        );
        assert!(od.on_result(&0, 0.0, Some(500), false)); // 5th 5xx; gateway counter reset
        assert_eq!(od.snapshot(0.0).ejections_by_reason.consecutive_5xx, 1);
        let mut od = detector(2, half());
        fail(&mut od, 0, 0.0, 4, None, true);
        od.on_result(&0, 0.0, Some(404), false);
        od.on_result(&0, 0.0, None, false); // no information
        assert_eq!(
            fail(&mut od, 0, 0.0, 5, None, true),
            [false, false, false, false, true]
        );
        assert_eq!(
            od.snapshot(0.0)
                .ejections_by_reason
                .consecutive_gateway_error,
            1
        );
    }

    #[test]
    fn local_origin_mode_splits_the_counters() {
        let config = OutlierConfig {
            consecutive_local_origin_failures: Some(3),
            ..half()
        };
        let mut od = detector(2, config);
        // Local-origin failures do not touch the 5xx and gateway counters...
        fail(&mut od, 0, 0.0, 2, Some(503), false);
        fail(&mut od, 0, 0.0, 2, None, true);
        let s = &od.snapshot(0.0).endpoints[0];
        assert_eq!(
            (
                s.consecutive_5xx,
                s.consecutive_gateway_errors,
                s.consecutive_local_origin_failures
            ),
            (2, 2, 2)
        );
        // ...a response resets the local-origin counter...
        od.on_result(&0, 0.0, Some(503), false);
        let s = &od.snapshot(0.0).endpoints[0];
        assert_eq!(
            (
                s.consecutive_5xx,
                s.consecutive_gateway_errors,
                s.consecutive_local_origin_failures
            ),
            (3, 3, 0)
        );
        // ...and the local-origin counter ejects at its own threshold.
        assert_eq!(fail(&mut od, 0, 0.0, 3, None, true), [false, false, true]);
        let snap = od.snapshot(0.0);
        assert_eq!(snap.ejections_by_reason.consecutive_local_origin_failure, 1);
        assert_eq!(snap.endpoints[0].consecutive_5xx, 0);

        // Only local-origin failures: the app's own 503s never eject.
        let only_local = OutlierConfig {
            consecutive_5xx: 0,
            consecutive_gateway_errors: 0,
            consecutive_local_origin_failures: Some(2),
            ..half()
        };
        let mut od = detector(2, only_local);
        assert!(!fail(&mut od, 0, 0.0, 100, Some(503), false).contains(&true));
        assert_eq!(fail(&mut od, 0, 0.0, 2, None, true), [false, true]);
    }

    #[test]
    fn ejection_time_grows_is_capped_and_shrinks() {
        let mut od = detector(
            2,
            OutlierConfig {
                max_ejection: 100.0,
                ..half()
            },
        );
        let mut now = 1000.0;
        let mut times = vec![];
        for _ in 0..5 {
            fail(&mut od, 0, now, 5, Some(500), false);
            let d = od.snapshot(now).endpoints[0].ejection_remaining;
            times.push(d);
            now += d;
        }
        assert_eq!(times, [30.0, 60.0, 90.0, 100.0, 100.0]);
        now += 25.0; // two intervals in service: k 4 -> 2, then 3
        fail(&mut od, 0, now, 5, Some(500), false);
        assert_eq!(od.snapshot(now).endpoints[0].multiplier, 3);
    }

    #[test]
    fn at_most_max_ejected_percent() {
        for (n, pct, always, expected) in [
            (10, 10.0, true, 1),
            (20, 10.0, true, 2),
            (19, 10.0, true, 1),
            (3, 10.0, true, 1),
            (3, 10.0, false, 0),
            (3, 50.0, true, 1),
            (4, 50.0, true, 2),
            (2, 100.0, true, 2),
            (5, 0.0, true, 0),
        ] {
            let mut od = detector(
                n,
                OutlierConfig {
                    max_ejected_percent: pct,
                    always_eject_one: always,
                    ..OutlierConfig::default()
                },
            );
            for key in 0..n {
                fail(&mut od, key, 0.0, 5, Some(500), false);
            }
            assert_eq!(od.ejected_count(0.0), expected, "{n} {pct} {always}");
        }
        let mut od = detector(3, OutlierConfig::default());
        fail(&mut od, 0, 0.0, 5, Some(500), false);
        fail(&mut od, 1, 0.0, 5, Some(500), false);
        let snap = od.snapshot(0.0);
        assert_eq!((snap.overflows, snap.detections.consecutive_5xx), (1, 2));
    }

    #[test]
    fn update_keeps_state_in_place() {
        let mut od = detector(
            3,
            OutlierConfig {
                max_ejected_percent: 100.0,
                ..OutlierConfig::default()
            },
        );
        fail(&mut od, 0, 0.0, 5, Some(500), false);
        fail(&mut od, 1, 10.0, 3, Some(500), false);
        let v = od.version(10.0);
        od.update([1, 0, 3, 1]); // 2 leaves, 3 joins: 0 stays ejected
        assert_ne!(od.version(10.0), v);
        assert_eq!(od.len(), 3);
        assert!(od.is_ejected(&0, 29.9));
        assert!(!od.is_ejected(&0, 30.0));
        let snap = od.snapshot(30.0);
        let keys: Vec<u64> = snap.endpoints.iter().map(|e| e.endpoint).collect();
        assert_eq!(keys, [1, 0, 3]);
        assert_eq!(snap.endpoints[0].consecutive_5xx, 3);
        assert!(!od.on_result(&2, 30.0, Some(500), false)); // unknown
        od.update([]);
        assert!(od.is_empty());
        assert_eq!(od.ejected_count(30.0), 0);
    }

    #[test]
    fn results_while_ejected_are_ignored() {
        let mut od = detector(2, half());
        fail(&mut od, 0, 0.0, 5, Some(500), false);
        assert!(!fail(&mut od, 0, 1.0, 20, Some(500), false).contains(&true));
        assert_eq!(od.snapshot(30.0).endpoints[0].consecutive_5xx, 0);
        assert!(fail(&mut od, 0, 30.0, 5, Some(500), false)[4]);
        assert_eq!(od.ejections(), 2);
    }

    #[test]
    fn odd_times_and_huge_counts_do_not_panic() {
        let mut od = detector(
            2,
            OutlierConfig {
                consecutive_5xx: 0,
                consecutive_gateway_errors: 0,
                ..half()
            },
        );
        for now in [f64::NAN, f64::INFINITY, -1e300, 0.0] {
            od.on_result(&0, now, Some(500), true);
            let _ = od.snapshot(now);
        }
        let mut od = detector(
            2,
            OutlierConfig {
                base_ejection: 1e-300,
                max_ejection: 1e300,
                ..half()
            },
        );
        fail(&mut od, 0, 0.0, 5, Some(500), false);
        let _ = od.on_result(&1, f64::NAN, Some(502), false);
        let _ = od.version(f64::INFINITY);
    }

    #[test]
    fn bad_settings_are_named() {
        let base = OutlierConfig::default();
        for (config, field) in [
            (
                OutlierConfig {
                    consecutive_local_origin_failures: Some(0),
                    ..base
                },
                "consecutive_local_origin_failures",
            ),
            (
                OutlierConfig {
                    base_ejection: 0.0,
                    ..base
                },
                "base_ejection",
            ),
            (
                OutlierConfig {
                    max_ejection: f64::INFINITY,
                    ..base
                },
                "max_ejection",
            ),
            (
                OutlierConfig {
                    interval: -1.0,
                    ..base
                },
                "interval",
            ),
            (
                OutlierConfig {
                    max_ejection: 10.0,
                    ..base
                },
                "max_ejection",
            ),
            (
                OutlierConfig {
                    max_ejected_percent: 101.0,
                    ..base
                },
                "max_ejected_percent",
            ),
            (
                OutlierConfig {
                    max_ejected_percent: f64::NAN,
                    ..base
                },
                "max_ejected_percent",
            ),
        ] {
            let err = OutlierDetector::<u64>::new(&config, []).expect_err(field);
            assert_eq!(err.field, field);
            assert!(err.to_string().starts_with("OutlierDetector: "));
        }
        assert_eq!(
            EjectionReason::ConsecutiveLocalOriginFailure.as_str(),
            "consecutive_local_origin_failure"
        );
        assert_eq!(
            ReasonCounts {
                consecutive_5xx: 2,
                ..ReasonCounts::default()
            }
            .get(EjectionReason::Consecutive5xx),
            2
        );
    }
}
