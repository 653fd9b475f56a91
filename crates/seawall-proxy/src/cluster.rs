//! A cluster: what the sidecar keeps per destination service.
//!
//! Endpoints and their balancer, outlier detection, the circuit breaker, the
//! retry budget, the pool limits and the pooled upstream connections. The
//! forwarder asks it small questions (`admit`, `pick`, `start_request`) and
//! tells it outcomes (`record`, `record_breaker`); every policy is a
//! sans-I/O state machine from `seawall-policy` behind its own short-held
//! lock, never held across an await or any I/O.
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use seawall_policy::balancer::{Balancer, EndpointInfo, Policy};
use seawall_policy::breaker::{
    BreakerConfig, CircuitBreaker, CircuitOpen, Permit, State, Transition, WindowConfig,
};
use seawall_policy::budget::{BudgetConfig, RetryBudget};
use seawall_policy::bulkhead::{Bulkhead, BulkheadConfig};
use seawall_policy::outlier::{EjectionReason, OutlierConfig, OutlierDetector};
use seawall_policy::rng::Random;

use crate::clock::Clock;
use crate::events::Events;
use crate::metrics::{Counter, Metrics};
use crate::ratelimit::Limiter;
use crate::runtime::BuildError;
use crate::shedding::Gate;
use crate::spec;
use crate::tls::{OriginTls, Secure, UpstreamTls};
use crate::upstream::{Pool, PoolLimits, Target};
use seawall_policy::shed::ShedConfig;

/// A pool limit was reached; the `x-seawall-overflow` value names it.
#[derive(Debug, Clone, Copy)]
pub struct Overflow(pub &'static str);

const LIMITS: [&str; 4] = ["connections", "pending", "in_flight", "retries"];

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stable key of an endpoint: the same address and port, the same key, across updates.
pub fn endpoint_key(address: &str, port: u16) -> u64 {
    let mut h = DefaultHasher::new();
    address.hash(&mut h);
    port.hash(&mut h);
    h.finish()
}

fn reasons(counts: &seawall_policy::outlier::ReasonCounts) -> serde_json::Value {
    serde_json::json!({
        "consecutive_5xx": counts.consecutive_5xx,
        "consecutive_gateway_error": counts.consecutive_gateway_error,
        "consecutive_local_origin_failure": counts.consecutive_local_origin_failure,
    })
}

/// One endpoint as the cluster keeps it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub spec: spec::Endpoint,
    pub target: Target,
}

/// Releases a slot (a retry waiting its backoff) when dropped.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request counted against the destination's `max_requests` until dropped,
/// whatever its outcome: while its attempts run, while its response streams,
/// and for as long as a tunnel it opened (a 101) lasts.
pub struct Active(Arc<Cluster>);

impl Active {
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.0
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        // no queue (max_waiting 0): a release never grants a waiter
        lock(&self.0.in_flight).release();
    }
}

/// The latencies of the last [`LATENCY_SAMPLES`] answered attempts.
#[derive(Debug, Default)]
struct Latencies {
    ring: Vec<f64>,
    next: usize,
}

/// How many latencies the hedge's percentile is taken over (`seawall.policy.Hedge`'s `samples`).
const LATENCY_SAMPLES: usize = 100;

impl Latencies {
    fn push(&mut self, seconds: f64) {
        if self.ring.len() < LATENCY_SAMPLES {
            self.ring.push(seconds);
        } else {
            self.ring[self.next] = seconds;
        }
        self.next = (self.next + 1) % LATENCY_SAMPLES;
    }

    /// The nearest-rank percentile `p`, once at least `min` were seen.
    fn percentile(&self, p: f64, min: usize) -> Option<f64> {
        let n = self.ring.len();
        if n < min.max(1) {
            return None;
        }
        let mut sorted = self.ring.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p * n as f64 / 100.0).ceil() as usize).clamp(1, n);
        Some(sorted[rank - 1])
    }
}

/// Whether a destination's hedge waits on a percentile of its latencies.
fn wants_latencies(hedge: Option<&spec::Hedge>) -> bool {
    hedge.is_some_and(|h| h.percentile.is_some())
}

/// One destination service: endpoints, policies and pooled connections.
pub struct Cluster {
    pub name: String,
    /// Its endpoints are mesh sidecars (mTLS with an identity), not a local app.
    pub mesh: bool,
    /// A host outside the mesh, reached by egress.
    pub external: bool,
    /// The local app (inbound): its rate limit is per caller.
    inbound: bool,
    /// TLS originated to its endpoints (an `external:` service with `tls: true`).
    origin: Option<OriginTls>,
    /// Rate limit: outbound one bucket, inbound one per caller (`None`: off).
    limiter: Mutex<Option<Limiter>>,
    /// Whether there is a rate limit (read on every request without the lock).
    limited: AtomicBool,
    /// Inbound: the concurrency limit in front of the app (`None`: off).
    gate: RwLock<Option<Arc<Gate>>>,
    /// Recent latencies of answered attempts (the hedge's percentile).
    latencies: Mutex<Latencies>,
    /// Whether they are wanted (a hedge on a percentile): recorded only then.
    timed: AtomicBool,
    endpoints: RwLock<Arc<Vec<Endpoint>>>,
    balancer: Mutex<Balancer>,
    /// Each policy behind its own lock, `None` while it is off; a new config
    /// changes them in place ([`Cluster::apply`]).
    outlier: Mutex<Option<OutlierDetector<u64>>>,
    breaker: Mutex<Option<CircuitBreaker>>,
    budget: Mutex<Option<RetryBudget>>,
    pub pool: Pool,
    max_retries: AtomicUsize,
    /// What the policies were built from (compared with a new config).
    settings: Mutex<Settings>,
    clock: Clock,
    /// `max_in_flight`: the bulkhead of `seawall.policy`, with no queue.
    in_flight: Mutex<Bulkhead>,
    retries_in_flight: AtomicUsize,
    ejections_seen: AtomicUsize,
    m_retries: Arc<Counter>,
    m_budget_exhausted: Arc<Counter>,
    m_ejections: Arc<Counter>,
    m_overflow: [Arc<Counter>; 4],
    m_breaker_state: [Arc<Counter>; State::ALL.len()],
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    /// The endpoints last known ejected, and the detector's version then:
    /// an endpoint that leaves this list has returned (an event).
    ejected_known: Mutex<(u64, Vec<u64>)>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn endpoints_of(set: &[spec::Endpoint]) -> Vec<Endpoint> {
    set.iter()
        .map(|e| Endpoint {
            spec: e.clone(),
            target: Target::new(endpoint_key(&e.address, e.port), &e.address, e.port),
        })
        .collect()
}

fn infos(endpoints: &[Endpoint]) -> Vec<EndpointInfo> {
    endpoints
        .iter()
        .map(|e| {
            let info = EndpointInfo::new(e.target.key).with_weight(e.spec.weight.max(1));
            match &e.spec.subset {
                Some(s) => info.in_subset(s.as_str()),
                None => info,
            }
        })
        .collect()
}

/// The settings a cluster runs with, as built from its part of the spec:
/// what a new config is compared with.
#[derive(Debug, Clone, PartialEq)]
struct Settings {
    balancer: Policy,
    outlier: Option<OutlierConfig>,
    breaker: Option<BreakerConfig>,
    budget: Option<BudgetConfig>,
    in_flight: BulkheadConfig,
    max_retries: usize,
    pool: PoolLimits,
    tls: Option<spec::OriginTls>,
    rate_limit: Option<spec::RateLimit>,
    hedge: Option<spec::Hedge>,
    shedding: Option<ShedConfig>,
}

impl Settings {
    /// The settings `spec` asks for, each checked by building it once (an
    /// invalid one is an error naming the cluster and the section).
    fn of(name: &str, spec: &spec::Destination, limits: &spec::Limits) -> Result<Self, BuildError> {
        let outlier = spec.outlier.as_ref().map(|o| OutlierConfig {
            // unset: the rule is off
            consecutive_5xx: o.consecutive_5xx.unwrap_or(0),
            consecutive_gateway_errors: o.consecutive_gateway_errors.unwrap_or(0),
            consecutive_local_origin_failures: o.consecutive_local_origin_failures,
            base_ejection: o.ejection,
            max_ejection: o.max_ejection,
            max_ejected_percent: o.max_ejected,
            always_eject_one: true,
            interval: o.interval,
        });
        if let Some(config) = &outlier {
            config
                .validate()
                .map_err(|e| BuildError(format!("{name}: outlier: {e}")))?;
        }
        let breaker = spec.breaker.as_ref().map(|b| BreakerConfig {
            window: match b.window_type {
                spec::WindowType::Count => WindowConfig::Count {
                    size: b.window_size as usize,
                },
                spec::WindowType::Time => WindowConfig::Time {
                    seconds: b.window_size,
                    buckets: 10,
                },
            },
            minimum_calls: b.minimum_calls,
            failure_rate: b.failure_rate,
            slow_call_duration: b.slow_call_duration,
            slow_call_rate: b.slow_call_rate,
            open_for: b.open_for,
            open_multiplier: b.open_multiplier,
            max_open_for: b.max_open_for,
            half_open_calls: b.half_open_calls,
            max_half_open_time: None,
            // /clusters and /metrics show HALF_OPEN when it is due
            automatic_transition: true,
        });
        if let Some(config) = &breaker {
            CircuitBreaker::new(config)
                .map_err(|e| BuildError(format!("{name}: circuit_breaker: {e}")))?;
        }
        let budget = spec.budget.as_ref().map(|b| BudgetConfig {
            ratio: b.ratio,
            min_per_second: b.min_per_second,
            ttl: b.ttl,
        });
        if let Some(config) = &budget {
            RetryBudget::new(config)
                .map_err(|e| BuildError(format!("{name}: retry budget: {e}")))?;
        }
        let bh = &spec.bulkhead;
        let in_flight = BulkheadConfig {
            max_in_flight: bh.max_in_flight,
            max_waiting: 0,
            max_wait: 0.0,
        };
        in_flight
            .validate()
            .map_err(|e| BuildError(format!("{name}: bulkhead: {e}")))?;
        Ok(Settings {
            balancer: match spec.load_balancer {
                spec::LoadBalancer::RoundRobin => Policy::RoundRobin,
                spec::LoadBalancer::LeastRequest => Policy::LeastRequest,
                spec::LoadBalancer::PeakEwma => Policy::PeakEwma,
            },
            outlier,
            breaker,
            budget,
            in_flight,
            max_retries: bh.max_retries,
            tls: spec.tls.clone(),
            rate_limit: spec.rate_limit.clone(),
            hedge: spec.hedge.clone(),
            shedding: match &spec.shedding {
                None => None,
                Some(s) => {
                    let config = s.config();
                    config
                        .validate()
                        .map_err(|e| BuildError(format!("{name}: shedding: {e}")))?;
                    Some(config)
                }
            },
            pool: PoolLimits {
                max_connections: bh.max_connections,
                max_pending: bh.max_pending,
                connect_timeout: Duration::from_secs_f64(spec.connect_timeout),
                // pooled connections unused this long close
                idle_timeout: Duration::from_secs_f64(limits.idle_timeout),
            },
        })
    }
}

/// State a new config could not keep, and why: logged by the sidecar.
#[derive(Debug, Clone, PartialEq)]
pub struct Reset {
    /// The destination (`inbound:<service>` for the inbound one).
    pub cluster: String,
    /// What was reset: `circuit breaker`, `breaker window`, `retry budget`,
    /// `outlier ejections`, `balancer estimates`, `everything`.
    pub what: &'static str,
    pub reason: String,
}

/// A new config for a cluster, checked and ready to apply ([`Cluster::plan`]).
pub struct Plan {
    settings: Settings,
    endpoints: Vec<spec::Endpoint>,
}

/// Seconds to the millisecond, for an event's figures (0.3, not 0.30000000000000004).
fn millis(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

fn seconds(s: f64) -> String {
    format!("{}s", millis(s))
}

fn window_text(w: &WindowConfig) -> String {
    match w {
        WindowConfig::Count { size } => format!("the last {size} calls"),
        WindowConfig::Time { seconds: t, .. } => format!("the last {}", seconds(*t)),
    }
}

impl Cluster {
    pub fn new(
        spec: &spec::Destination,
        metrics: &Arc<Metrics>,
        events: &Arc<Events>,
        clock: Clock,
        limits: &spec::Limits,
    ) -> Result<Self, BuildError> {
        let name = if spec.inbound {
            format!("inbound:{}", spec.name)
        } else {
            spec.name.clone()
        };
        let settings = Settings::of(&name, spec, limits)?;
        let endpoints = endpoints_of(&spec.endpoints);
        let keys: Vec<u64> = endpoints.iter().map(|e| e.target.key).collect();
        let mut rng = seawall_policy::rng::SplitMix64::from_entropy();
        let balancer = Balancer::new(settings.balancer, infos(&endpoints), &mut rng)
            .map_err(|e| BuildError(format!("{name}: endpoints: {e}")))?;
        let outlier = match &settings.outlier {
            None => None,
            Some(config) => Some(
                OutlierDetector::new(config, keys.iter().copied())
                    .map_err(|e| BuildError(format!("{name}: outlier: {e}")))?,
            ),
        };
        let breaker = match &settings.breaker {
            None => None,
            Some(config) => Some(
                CircuitBreaker::new(config)
                    .map_err(|e| BuildError(format!("{name}: circuit_breaker: {e}")))?,
            ),
        };
        let budget = match &settings.budget {
            None => None,
            Some(config) => Some(
                RetryBudget::new(config)
                    .map_err(|e| BuildError(format!("{name}: retry budget: {e}")))?,
            ),
        };
        let in_flight = Bulkhead::new(&settings.in_flight)
            .map_err(|e| BuildError(format!("{name}: bulkhead: {e}")))?;
        let pool = Pool::new(&spec.name, settings.pool);
        let origin = match &spec.tls {
            Some(tls) => Some(OriginTls::new(&name, tls, metrics)?),
            None => None,
        };
        let limiter = match &spec.rate_limit {
            None => None,
            Some(r) => Some(
                Limiter::new(r, spec.inbound)
                    .map_err(|e| BuildError(format!("{name}: rate_limit: {e}")))?,
            ),
        };
        let gate = match &settings.shedding {
            None => None,
            Some(config) => Some(Arc::new(
                Gate::new(&spec.name, *config, clock, metrics)
                    .map_err(|e| BuildError(format!("{name}: shedding: {e}")))?,
            )),
        };
        let m_breaker_state =
            State::ALL.map(|s| metrics.breaker_state.labels(&[&name, s.as_str()]));
        if breaker.is_some() {
            m_breaker_state[State::Closed.index()].set(1);
        }
        Ok(Cluster {
            mesh: spec.mesh,
            external: spec.external,
            inbound: spec.inbound,
            origin,
            limited: AtomicBool::new(limiter.is_some()),
            limiter: Mutex::new(limiter),
            gate: RwLock::new(gate),
            latencies: Mutex::new(Latencies::default()),
            timed: AtomicBool::new(wants_latencies(spec.hedge.as_ref())),
            endpoints: RwLock::new(Arc::new(endpoints)),
            balancer: Mutex::new(balancer),
            outlier: Mutex::new(outlier),
            breaker: Mutex::new(breaker),
            budget: Mutex::new(budget),
            pool,
            max_retries: AtomicUsize::new(settings.max_retries),
            settings: Mutex::new(settings),
            clock,
            in_flight: Mutex::new(in_flight),
            retries_in_flight: AtomicUsize::new(0),
            ejections_seen: AtomicUsize::new(0),
            m_retries: metrics.retries.labels(&[&name]),
            m_budget_exhausted: metrics.budget_exhausted.labels(&[&name]),
            m_ejections: metrics.ejections.labels(&[&name]),
            m_overflow: LIMITS.map(|l| metrics.overflow.labels(&[&name, l])),
            m_breaker_state,
            metrics: metrics.clone(),
            events: events.clone(),
            ejected_known: Mutex::new((0, Vec::new())),
            name,
        })
    }

    // -- a new config -----------------------------------------------------

    /// Check a new config for this cluster without changing anything: an
    /// error leaves the cluster as it is. `Err(why)` inside: it cannot be
    /// applied in place (its endpoints became, or stopped being, mesh
    /// sidecars; its TLS origination changed), and a new cluster is built
    /// instead.
    pub fn plan(
        &self,
        spec: &spec::Destination,
        limits: &spec::Limits,
    ) -> Result<Result<Plan, String>, BuildError> {
        let settings = Settings::of(&self.name, spec, limits)?;
        // the endpoint set is checked as Cluster::new checks it
        let mut rng = seawall_policy::rng::SplitMix64::from_entropy();
        Balancer::new(
            settings.balancer,
            infos(&endpoints_of(&spec.endpoints)),
            &mut rng,
        )
        .map_err(|e| BuildError(format!("{}: endpoints: {e}", self.name)))?;
        if spec.mesh != self.mesh {
            return Ok(Err(if spec.mesh {
                "its endpoints are now mesh sidecars (mTLS)".into()
            } else {
                "its endpoints are no longer mesh sidecars".into()
            }));
        }
        if spec.tls != lock(&self.settings).tls {
            if let Some(tls) = &spec.tls {
                // the new roots are read now, so that an unreadable bundle is an error
                OriginTls::new(&self.name, tls, &self.metrics)?;
            }
            return Ok(Err("its TLS origination (tls, ca_file) changed".into()));
        }
        Ok(Ok(Plan {
            settings,
            endpoints: spec.endpoints.clone(),
        }))
    }

    /// Apply a checked config in place, keeping every piece of state the
    /// change leaves meaningful (docs/proxy/sidecar.md, "What a new config keeps"): an open breaker stays
    /// open when its thresholds change, ejected endpoints stay ejected, the
    /// retry budget keeps its window, in-flight requests stay counted against
    /// a new limit, pooled connections stay. Returns what had to be reset.
    pub fn apply(&self, plan: Plan) -> Vec<Reset> {
        let Plan {
            settings: new,
            endpoints,
        } = plan;
        let mut resets = Vec::new();
        let mut reset = |what: &'static str, reason: String| {
            resets.push(Reset {
                cluster: self.name.clone(),
                what,
                reason,
            });
        };
        let mut current = lock(&self.settings);
        let old = current.clone();
        if *current == new && endpoints == self.endpoint_specs() {
            return resets;
        }
        // the balancer: another policy starts without estimates
        if new.balancer != old.balancer {
            let eps = self
                .endpoints
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let mut rng = seawall_policy::rng::SplitMix64::from_entropy();
            if let Ok(balancer) = Balancer::new(new.balancer, infos(&eps), &mut rng) {
                *lock(&self.balancer) = balancer;
            }
            reset(
                "balancer estimates",
                format!(
                    "load_balancer changed from {} to {}",
                    old.balancer, new.balancer
                ),
            );
        }
        // outlier detection
        {
            let mut o = lock(&self.outlier);
            match (o.as_mut(), &new.outlier) {
                (Some(detector), Some(config)) if old.outlier.as_ref() != Some(config) => {
                    // checked in plan(): cannot fail
                    let _ = detector.reconfigure(config);
                }
                (Some(_), None) => {
                    *o = None;
                    reset(
                        "outlier ejections",
                        "outlier detection turned off: every endpoint is back in the balancer"
                            .into(),
                    );
                }
                (None, Some(config)) => {
                    let eps = self
                        .endpoints
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    *o = OutlierDetector::new(config, eps.iter().map(|e| e.target.key)).ok();
                }
                _ => {}
            }
        }
        // the circuit breaker
        {
            let mut b = lock(&self.breaker);
            match (b.as_mut(), &new.breaker) {
                (Some(breaker), Some(config)) if old.breaker.as_ref() != Some(config) => {
                    let state = breaker.current_state();
                    let window_was = old.breaker.as_ref().map(|c| c.window);
                    let _ = breaker.reconfigure(config);
                    if window_was.as_ref() != Some(&config.window) {
                        reset(
                            "breaker window",
                            format!(
                                "the window changed from {} to {}; the breaker stays {}",
                                window_was.as_ref().map_or_else(String::new, window_text),
                                window_text(&config.window),
                                state.as_str()
                            ),
                        );
                    }
                }
                (Some(breaker), None) => {
                    let state = breaker.current_state();
                    *b = None;
                    reset(
                        "circuit breaker",
                        format!("circuit_breaker turned off (it was {})", state.as_str()),
                    );
                    drop(b);
                    for s in State::ALL {
                        self.m_breaker_state[s.index()].set(0);
                    }
                }
                (None, Some(config)) => {
                    *b = CircuitBreaker::new(config).ok();
                    drop(b);
                    self.set_state_gauge(State::Closed);
                }
                _ => {}
            }
        }
        // the retry budget
        {
            let mut budget = lock(&self.budget);
            match (budget.as_mut(), &new.budget) {
                (Some(current_budget), Some(config)) if old.budget.as_ref() != Some(config) => {
                    let buckets = current_budget.buckets();
                    let ttl_was = old.budget.map(|c| c.ttl);
                    let _ = current_budget.reconfigure(config, buckets);
                    if ttl_was != Some(config.ttl) {
                        reset(
                            "retry budget",
                            format!(
                                "its ttl changed from {} to {}: the budget starts empty",
                                ttl_was.map_or_else(String::new, seconds),
                                seconds(config.ttl)
                            ),
                        );
                    }
                }
                (Some(_), None) => {
                    *budget = None;
                    reset("retry budget", "retry_budget turned off".into());
                }
                (None, Some(config)) => *budget = RetryBudget::new(config).ok(),
                _ => {}
            }
        }
        // limits: in-flight requests, retries and pooled connections carry on
        if new.in_flight != old.in_flight {
            let _ = lock(&self.in_flight).reconfigure(&new.in_flight);
        }
        self.max_retries.store(new.max_retries, Ordering::Release);
        if new.rate_limit != old.rate_limit {
            let mut limiter = lock(&self.limiter);
            match (limiter.as_mut(), &new.rate_limit) {
                // the tokens saved carry over, up to the new burst
                // (the spec's bounds were checked: these cannot fail)
                (Some(l), Some(spec)) => {
                    let _ = l.set(spec, self.clock.now());
                }
                (_, Some(spec)) => *limiter = Limiter::new(spec, self.inbound).ok(),
                (_, None) => *limiter = None,
            }
            self.limited.store(limiter.is_some(), Ordering::Release);
        }
        if new.shedding != old.shedding {
            let mut gate = self.gate.write().unwrap_or_else(|e| e.into_inner());
            match (gate.as_ref(), &new.shedding) {
                // what is in flight and queued carries over (checked in plan(): cannot fail)
                (Some(g), Some(config)) => {
                    let _ = g.reconfigure(*config);
                }
                (_, Some(config)) => {
                    let service = self.name.trim_start_matches("inbound:");
                    *gate = Gate::new(service, *config, self.clock, &self.metrics)
                        .ok()
                        .map(Arc::new);
                }
                // the slots held keep the old gate until they end
                (_, None) => *gate = None,
            }
        }
        self.timed
            .store(wants_latencies(new.hedge.as_ref()), Ordering::Release);
        if new.pool != old.pool {
            self.pool.set_limits(new.pool);
        }
        *current = new;
        drop(current);
        if endpoints != self.endpoint_specs() {
            self.set_endpoints(&endpoints);
        }
        resets
    }

    fn endpoint_specs(&self) -> Vec<spec::Endpoint> {
        let eps = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        eps.iter().map(|e| e.spec.clone()).collect()
    }

    // -- admission --------------------------------------------------------

    /// How a connection to its endpoints is secured: mTLS when they are
    /// sidecars (and this sidecar has an identity), TLS when it originates
    /// TLS to an external host, else nothing.
    pub fn secure<'a>(&'a self, mesh: Option<&'a UpstreamTls>) -> Option<Secure<'a>> {
        if self.mesh {
            mesh.map(Secure::Mesh)
        } else {
            self.origin.as_ref().map(Secure::Origin)
        }
    }

    /// The rate limit: `Err(seconds)` until `caller` may send again.
    pub fn rate_limit(&self, caller: Option<&str>, now: f64) -> Result<(), f64> {
        if !self.limited.load(Ordering::Acquire) {
            return Ok(());
        }
        match lock(&self.limiter).as_mut() {
            Some(limiter) => limiter.admit(caller, now),
            None => Ok(()),
        }
    }

    /// Inbound: the concurrency limit in front of the app, if there is one.
    pub fn gate(&self) -> Option<Arc<Gate>> {
        self.gate.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The clock its policies are told the time by.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// How long to wait for an answer before sending a copy: the hedge's
    /// `delay`, or the latency at its `percentile` over the last 100
    /// answered attempts once `min_samples` were seen (nearest rank, as
    /// `seawall.policy.Hedge`).
    pub fn hedge_delay(&self, hedge: &spec::Hedge) -> f64 {
        match hedge.percentile {
            None => hedge.delay,
            Some(p) => lock(&self.latencies)
                .percentile(p, hedge.min_samples as usize)
                .unwrap_or(hedge.delay),
        }
    }

    /// Count the latency of an answered attempt, when a hedge's percentile
    /// wants it (otherwise nothing is kept).
    pub fn record_latency(&self, seconds: f64) {
        if !self.timed.load(Ordering::Acquire) {
            return;
        }
        lock(&self.latencies).push(seconds);
    }

    /// Count an overflow of `limit`.
    pub fn overflowed(&self, limit: &'static str) {
        if let Some(i) = LIMITS.iter().position(|l| *l == limit) {
            self.m_overflow[i].inc();
        }
        let settings = lock(&self.settings).clone();
        let max = match limit {
            "connections" => settings.pool.max_connections,
            "pending" => settings.pool.max_pending,
            "in_flight" => settings.in_flight.max_in_flight,
            _ => settings.max_retries,
        };
        self.events.emit(
            "bulkhead_overflow",
            &self.name,
            &[("limit", limit.into()), ("max", max.into())],
        );
    }

    /// A request is about to be served upstream: counted until the [`Active`] drops.
    pub fn start_request(self: &Arc<Self>) -> Result<Active, Overflow> {
        let admitted = lock(&self.in_flight).try_acquire();
        if !admitted {
            self.overflowed("in_flight");
            return Err(Overflow("in_flight"));
        }
        Ok(Active(self.clone()))
    }

    pub fn retries_in_flight(&self) -> usize {
        self.retries_in_flight.load(Ordering::Acquire)
    }

    pub fn max_retries(&self) -> usize {
        self.max_retries.load(Ordering::Acquire)
    }

    /// A retry is waiting its backoff: counted against `max_retries` until dropped.
    pub fn retry_started(&self) -> InFlight<'_> {
        self.retries_in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(&self.retries_in_flight)
    }

    pub fn count_retry(&self) {
        self.m_retries.inc();
    }

    // -- breaker ----------------------------------------------------------

    /// Ask the breaker (if any) for a permit; `Err` while it is open.
    pub fn admit(&self, now: f64) -> Result<Option<Permit>, CircuitOpen> {
        let mut guard = lock(&self.breaker);
        let Some(b) = guard.as_mut() else {
            return Ok(None);
        };
        let before = b.transition_count();
        let result = b.admit(now);
        let after = b.current_state();
        let moved = b.transition_count() != before;
        drop(guard);
        if moved {
            self.breaker_moved(after);
            self.breaker_event(after, &[]);
        }
        result.map(Some)
    }

    /// The breaker's state now, by name (`None`: this destination has no breaker).
    pub fn breaker_state(&self) -> Option<&'static str> {
        lock(&self.breaker)
            .as_ref()
            .map(|b| b.current_state().as_str())
    }

    /// Give back a permit that will not report an outcome (no attempt was made).
    pub fn release(&self, permit: Option<Permit>) {
        if let Some(permit) = permit {
            if let Some(b) = lock(&self.breaker).as_mut() {
                b.release(permit);
            }
        }
    }

    /// Report an attempt's outcome to the breaker.
    pub fn record_breaker(&self, permit: Option<Permit>, now: f64, elapsed: f64, failed: bool) {
        let Some(permit) = permit else {
            return;
        };
        let mut guard = lock(&self.breaker);
        let Some(b) = guard.as_mut() else {
            return; // turned off by a new config since the permit was given
        };
        let t = if failed {
            b.record_failure(permit, now, elapsed)
        } else {
            b.record_success(permit, now, elapsed)
        };
        let seen = t.map(|_| b.metrics(now));
        drop(guard);
        if let (Some(t), Some(m)) = (t, seen) {
            self.transitioned(t);
            let mut figures = vec![("from", t.from.as_str().into())];
            // the rates of the window; a breaker just closed has none yet (-1)
            if m.failure_rate >= 0.0 {
                figures.push(("failure_rate", m.failure_rate.into()));
                figures.push(("slow_call_rate", m.slow_call_rate.into()));
            }
            if let (State::Open, Some(at)) = (t.to, m.next_probe_at) {
                figures.push(("open_for", millis((at - now).max(0.0)).into()));
            }
            self.breaker_event(t.to, &figures);
        }
    }

    fn transitioned(&self, t: Transition) {
        self.metrics
            .breaker_transitions
            .labels(&[&self.name, t.from.as_str(), t.to.as_str()])
            .inc();
        self.set_state_gauge(t.to);
    }

    /// Bring the transition counters up to date after a call that may have moved the breaker.
    fn breaker_moved(&self, state: State) {
        // admit() may have moved OPEN → HALF_OPEN; the metrics learn it from the counters.
        if let Some(b) = lock(&self.breaker).as_ref() {
            for from in State::ALL {
                for to in State::ALL {
                    let n = b.transitions_between(from, to);
                    if n > 0 {
                        let c = self.metrics.breaker_transitions.labels(&[
                            &self.name,
                            from.as_str(),
                            to.as_str(),
                        ]);
                        if c.get() < n {
                            c.set(n);
                        }
                    }
                }
            }
        }
        self.set_state_gauge(state);
    }

    /// `breaker_opened`, `breaker_half_open` or `breaker_closed`.
    fn breaker_event(&self, to: State, figures: &[(&str, serde_json::Value)]) {
        let kind = match to {
            State::Open | State::ForcedOpen => "breaker_opened",
            State::HalfOpen => "breaker_half_open",
            _ => "breaker_closed",
        };
        self.events.emit(kind, &self.name, figures);
    }

    fn set_state_gauge(&self, state: State) {
        for s in State::ALL {
            self.m_breaker_state[s.index()].set(u64::from(s == state));
        }
    }

    // -- budget -----------------------------------------------------------

    /// A request was made: it earns the budget its share of retries.
    pub fn deposit(&self, now: f64) {
        if let Some(budget) = lock(&self.budget).as_mut() {
            budget.deposit(now);
        }
    }

    /// May a retry be sent? (Counts the refusal in the metrics.)
    pub fn withdraw(&self, now: f64) -> bool {
        let ok = match lock(&self.budget).as_mut() {
            None => return true,
            Some(budget) => budget.try_withdraw(now),
        };
        if !ok {
            self.m_budget_exhausted.inc();
            self.events.emit(
                "retry_budget_exhausted",
                &self.name,
                &[("refused_total", self.m_budget_exhausted.get().into())],
            );
        }
        ok
    }

    // -- balancing and outlier detection ------------------------------------

    /// The endpoint for the next attempt (ejected ones skipped; see the balancer).
    pub fn pick(
        &self,
        now: f64,
        exclude: &[u64],
        subset: Option<&str>,
        rng: &mut dyn Random,
    ) -> Option<Target> {
        let mut guard = lock(&self.outlier);
        let key = match guard.as_mut() {
            None => {
                drop(guard);
                lock(&self.balancer).pick(now, exclude, subset, &|_| false, 0, rng)
            }
            Some(o) => {
                let version = o.version(now);
                self.note_returns(o, version);
                let ejected = |k: u64| o.ejected(&k); // version(now) has returned the due ones
                let key = lock(&self.balancer).pick(now, exclude, subset, &ejected, version, rng);
                drop(guard);
                key
            }
        }?;
        let endpoints = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        endpoints
            .iter()
            .find(|e| e.target.key == key)
            .map(|e| e.target.clone())
    }

    /// After the detector's version changed: an event for each endpoint
    /// known ejected that is back (called with the outlier lock held).
    fn note_returns(&self, o: &OutlierDetector<u64>, version: u64) {
        let mut known = lock(&self.ejected_known);
        if known.0 == version {
            return;
        }
        known.0 = version;
        let (back, still): (Vec<u64>, Vec<u64>) = known.1.iter().partition(|k| !o.ejected(k));
        known.1 = still;
        drop(known);
        for key in back {
            self.events.emit(
                "endpoint_returned",
                &self.name,
                &[("endpoint", self.endpoint_name(key).into())],
            );
        }
    }

    /// `address:port` of an endpoint key (the key itself if it left the set).
    fn endpoint_name(&self, key: u64) -> String {
        let eps = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        eps.iter().find(|e| e.target.key == key).map_or_else(
            || key.to_string(),
            |e| format!("{}:{}", e.spec.address, e.spec.port),
        )
    }

    pub fn on_start(&self, key: u64, now: f64) {
        lock(&self.balancer).on_start(key, now);
    }

    pub fn on_finish(&self, key: u64, now: f64, elapsed: f64, ok: bool) {
        lock(&self.balancer).on_finish(key, now, elapsed, ok);
    }

    /// Feed one attempt's outcome to outlier detection.
    /// `status: None` with `gateway: true` is a local-origin failure (no response at all).
    /// Returns why the endpoint was ejected, when this outcome ejected it.
    pub fn record(
        &self,
        key: u64,
        now: f64,
        status: Option<u16>,
        gateway: bool,
    ) -> Option<&'static str> {
        let mut guard = lock(&self.outlier);
        let o = guard.as_mut()?;
        let before = o.ejections_by_reason();
        let mut ejected = None;
        if o.on_result(&key, now, status, gateway) {
            let after = o.ejections_by_reason();
            let reason = [
                EjectionReason::Consecutive5xx,
                EjectionReason::ConsecutiveGatewayError,
                EjectionReason::ConsecutiveLocalOriginFailure,
            ]
            .into_iter()
            .find(|r| after.get(*r) > before.get(*r))
            .map_or("", EjectionReason::as_str);
            ejected = Some(reason);
            let until = o.ejected_until(&key).unwrap_or(now);
            lock(&self.ejected_known).1.push(key);
            self.events.emit(
                "endpoint_ejected",
                &self.name,
                &[
                    ("endpoint", self.endpoint_name(key).into()),
                    ("reason", reason.into()),
                    ("ejected_for", millis(until - now).into()),
                ],
            );
        }
        let total = o.ejections() as usize;
        drop(guard);
        let seen = self.ejections_seen.swap(total, Ordering::AcqRel);
        if total > seen {
            self.m_ejections.add((total - seen) as u64);
        }
        ejected
    }

    /// Replace the endpoint set in place (an update pushed by the control plane).
    ///
    /// The breaker, the retry budget and the pool stay as they are; endpoints
    /// that remain keep their load-balancing stats and outlier state (an
    /// ejected one stays ejected); idle connections to endpoints that left are
    /// closed.
    pub fn set_endpoints(&self, set: &[spec::Endpoint]) {
        let endpoints = endpoints_of(set);
        let keys: Vec<u64> = endpoints.iter().map(|e| e.target.key).collect();
        let mut rng = seawall_policy::rng::SplitMix64::from_entropy();
        if let Err(e) = lock(&self.balancer).update(infos(&endpoints), &mut rng) {
            // A set the balancer refuses (duplicates, a bad weight) keeps the old one in
            // full: outlier detection is only told once the balancer took it.
            eprintln!(
                "seawall sidecar: {}: endpoint update refused: {e}",
                self.name
            );
            return;
        }
        if let Some(o) = lock(&self.outlier).as_mut() {
            o.update(keys.iter().copied());
        }
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(endpoints);
        self.pool.retain(&|k| keys.contains(&k));
    }

    // -- observation ------------------------------------------------------

    pub fn in_flight(&self) -> usize {
        lock(&self.in_flight).metrics().in_flight
    }

    /// The state of the cluster, for the admin `/clusters` endpoint.
    pub fn snapshot(&self) -> serde_json::Value {
        let now = self.clock.now();
        let endpoints = self
            .endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut outlier_json = serde_json::Value::Null;
        let mut ejected: Vec<u64> = Vec::new();
        if let Some(o) = lock(&self.outlier).as_mut() {
            for e in endpoints.iter() {
                if o.is_ejected(&e.target.key, now) {
                    ejected.push(e.target.key);
                }
            }
            let name_of = |k: &u64| {
                endpoints.iter().find(|e| e.target.key == *k).map_or_else(
                    || k.to_string(),
                    |e| format!("{}:{}", e.spec.address, e.spec.port),
                )
            };
            let snap = o.snapshot(now);
            outlier_json = serde_json::json!({
                "endpoints": snap.endpoints.iter().map(|e| serde_json::json!({
                    "endpoint": name_of(&e.endpoint),
                    "ejected": e.ejected,
                    "ejected_until": e.ejected_until,
                    "ejection_remaining": e.ejection_remaining,
                    "times_ejected": e.times_ejected,
                    "multiplier": e.multiplier,
                    "consecutive_5xx": e.consecutive_5xx,
                    "consecutive_gateway_errors": e.consecutive_gateway_errors,
                    "consecutive_local_origin_failures": e.consecutive_local_origin_failures,
                })).collect::<Vec<_>>(),
                "ejected": snap.ejected,
                "ejections": snap.ejections,
                "ejections_by_reason": reasons(&snap.ejections_by_reason),
                "detections": reasons(&snap.detections),
                "overflows": snap.overflows,
            });
        }
        let mut moved = None;
        let breaker = lock(&self.breaker).as_mut().map(|b| {
            // reading it may move it (open -> half-open when due): said like any move
            let before = b.transition_count();
            let m = b.metrics(now);
            if b.transition_count() != before {
                moved = Some(m.state);
            }
            serde_json::json!({
                "state": m.state.as_str(),
                "failure_rate": m.failure_rate,
                "slow_call_rate": m.slow_call_rate,
                "not_permitted_calls": m.not_permitted_calls,
                "next_probe_at": m.next_probe_at,
            })
        });
        if let Some(state) = moved {
            self.breaker_moved(state);
            self.breaker_event(state, &[]);
        }
        let loads: Vec<_> = {
            let balancer = lock(&self.balancer);
            endpoints
                .iter()
                .map(|e| balancer.stats(e.target.key))
                .collect()
        };
        serde_json::json!({
            "name": self.name,
            "endpoints": endpoints.iter().zip(loads).map(|(e, load)| serde_json::json!({
                "address": e.spec.address,
                "port": e.spec.port,
                "subset": e.spec.subset,
                "ejected": ejected.contains(&e.target.key),
                "idle_connections": self.pool.idle_count(e.target.key),
                // Envoy's per-host rq_active, rq_total and rq_error
                "requests_active": load.as_ref().map_or(0, |l| l.in_flight),
                "requests_total": load.as_ref().map_or(0, |l| l.requests),
                "requests_failed": load.as_ref().map_or(0, |l| l.failures),
            })).collect::<Vec<_>>(),
            "outlier": outlier_json,
            "breaker": breaker,
            "open_connections": self.pool.open_connections(),
            "pending": self.pool.pending(),
            "in_flight": self.in_flight(),
            "retries_in_flight": self.retries_in_flight(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hedge_percentile_is_the_nearest_rank_over_the_last_hundred() {
        let mut l = Latencies::default();
        assert_eq!(l.percentile(95.0, 1), None);
        for ms in 1..=19 {
            l.push(f64::from(ms) / 1000.0);
        }
        assert_eq!(l.percentile(95.0, 20), None, "fewer than min_samples");
        l.push(0.020);
        // 20 samples: rank ceil(0.95 * 20) = 19
        assert_eq!(l.percentile(95.0, 20), Some(0.019));
        assert_eq!(l.percentile(50.0, 20), Some(0.010));
        for _ in 0..100 {
            l.push(1.0); // the oldest are overwritten: the ring holds 100
        }
        assert_eq!(l.ring.len(), LATENCY_SAMPLES);
        assert_eq!(l.percentile(1.0, 20), Some(1.0));
    }

    #[test]
    fn latencies_are_kept_only_for_a_percentile_hedge() {
        let hedge = |percentile| spec::Hedge {
            delay: 0.05,
            percentile,
            max_hedges: 1,
            min_samples: 20,
        };
        assert!(!wants_latencies(None));
        assert!(!wants_latencies(Some(&hedge(None))));
        assert!(wants_latencies(Some(&hedge(Some(95.0)))));
    }
}
