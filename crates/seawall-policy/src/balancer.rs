//! Load balancers: round robin, P2C least request and P2C peak EWMA (the default).
//!
//! The Rust twin of `seawall.proxy.upstream.balancer` and of `EndpointStats`
//! in `seawall.proxy.upstream.endpoint`. A [`Balancer`] holds one
//! destination's endpoints, each identified by a stable `u64` key that the
//! sidecar assigns (the same address keeps its key across updates), and
//! their [`EndpointStats`]. The proxy asks it [`Balancer::pick`] for each
//! attempt, then reports the attempt with [`Balancer::on_start`] and
//! [`Balancer::on_finish`]. It is sans-I/O (told `now`, seconds on a monotonic
//! clock; randomness from an injected [`Random`]) and not thread-safe by
//! itself: the sidecar wraps one per destination in a `Mutex`.
//!
//! What a pick considers, in order:
//!
//! 1. **The subset.** `None` means every endpoint; `Some("v2")` means the
//!    endpoints whose subset is `"v2"`. An unknown or empty subset picks
//!    nothing (`None`); there is no fallback to other subsets (as Envoy's
//!    default `NO_FALLBACK`): the route asked for that version.
//! 2. **Ejections.** Endpoints the ejection view (the outlier detector) says
//!    are ejected are skipped. If *every* endpoint of the subset is ejected,
//!    the pick uses them all anyway ([`BalancerOptions::panic`], on by
//!    default): like Envoy's panic mode, trying a suspect endpoint beats
//!    failing every request for the whole ejection time. The candidate list is
//!    cached under the view's version and recomputed only when it changes, so
//!    a pick costs no per-endpoint ejection checks.
//! 3. **Exclusions.** `exclude` (the keys a retried request already tried) is
//!    avoided when another candidate exists, so a retry goes to a different
//!    endpoint. If every candidate is excluded, the pick ignores `exclude`
//!    rather than fail: retrying the same healthy endpoint beats answering 503.
//!    Ejection is the stronger signal: an excluded endpoint that is healthy is
//!    preferred to one that is ejected.
//!
//! Then the [`Policy`]:
//!
//! * [`Policy::RoundRobin`]: nginx's smooth weighted round robin. Every pick
//!   adds each candidate's weight to its running score, takes the highest
//!   score (the first on ties) and subtracts the total weight from it. Weights
//!   5, 1, 1 give `a a b a c a a`. With equal weights it is a plain rotation,
//!   starting at a random endpoint so that sidecars started together do not
//!   all hit the same endpoint first (as Envoy does).
//! * [`Policy::LeastRequest`]: power of two choices: draw two distinct
//!   candidates uniformly, take the one with fewer requests in flight per unit
//!   of weight, `(in_flight + 1) / weight`.
//! * [`Policy::PeakEwma`] (the default): power of two choices on the
//!   peak-EWMA cost `latency * (in_flight + 1) / weight` (Finagle, Linkerd);
//!   see [`EndpointStats`] for how `latency` is kept.
//!
//! Randomness is drawn exactly where the Python balancer draws it, in the same
//! order, so a scripted [`crate::rng::Sequence`] gives both the same picks:
//! one draw per non-empty equal-weight group at every update (the whole set
//! first, then each subset in order of first appearance, whatever the
//! policy), and two draws per P2C pick among two or more candidates (none for
//! one).
//!
//! Where the shape differs from Python, and why:
//!
//! * The ejection view is passed to each pick, as a predicate plus its
//!   version, instead of being held by the balancer (it lives behind its own
//!   lock in the sidecar). The predicate is asked only when the version moved.
//! * The random source is passed to each call that draws, [`Balancer::update`]
//!   included (Python's balancer owns its `random.Random`).
//! * Refusals are [`BalancerError`] values, not exceptions; a weight of 0 and
//!   an empty subset name are refused here because there is no validated
//!   `Endpoint` type in front (Python's `Endpoint` refuses them).
//! * [`Balancer::stats`] returns a snapshot ([`EndpointLoad`]), not the live
//!   record; [`EndpointStats`] itself is public for the conformance corpus.
//! * An `elapsed` that is negative or not finite is not taken as a latency
//!   sample (the request still finishes). Python would fold it into the
//!   estimate, and a negative or NaN estimate would make that endpoint win or
//!   lose every comparison for good. The sidecar never produces one.
//!
//! Cost: `pick`, `on_start` and `on_finish` do not allocate. A pick is O(1)
//! for P2C and O(candidates) for weighted round robin; with a non-empty
//! `exclude` it is O(candidates × excluded). Recomputing the candidates after
//! the ejection version changed is O(endpoints of the subset) and reuses the
//! group's buffers.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::rng::Random;

/// Latency estimate (seconds) of an endpoint with no responses yet: Linkerd's 30 ms.
pub const DEFAULT_RTT: f64 = 0.030;

/// Time constant (seconds) of the peak-EWMA decay: Finagle's and Linkerd's 10 s.
pub const DEFAULT_DECAY: f64 = 10.0;

// ---------------------------------------------------------------------------- errors

/// Why an endpoint set, an option or a policy name was refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum BalancerError {
    /// The same key appears twice in one endpoint set.
    DuplicateEndpoint {
        /// The repeated key.
        key: u64,
    },
    /// An endpoint's weight is 0 (weights are at least 1).
    InvalidWeight {
        /// The endpoint's key.
        key: u64,
    },
    /// An endpoint's subset is `Some("")` (use `None` for no subset).
    EmptySubset {
        /// The endpoint's key.
        key: u64,
    },
    /// `default_rtt` or `decay` is not a finite number > 0.
    InvalidOption {
        /// `"default_rtt"` or `"decay"`.
        field: &'static str,
        /// The refused value.
        value: f64,
    },
    /// Not one of `round_robin`, `least_request`, `peak_ewma`.
    UnknownPolicy {
        /// The refused name.
        name: String,
    },
}

impl fmt::Display for BalancerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DuplicateEndpoint { key } => {
                write!(f, "Balancer: endpoints must be unique, got key {key} twice")
            }
            Self::InvalidWeight { key } => {
                write!(
                    f,
                    "Balancer: weight must be an int >= 1, got 0 (endpoint key {key})"
                )
            }
            Self::EmptySubset { key } => write!(
                f,
                "Balancer: subset must be a non-empty str or None, got '' (endpoint key {key})"
            ),
            Self::InvalidOption { field, value } => {
                write!(
                    f,
                    "Balancer: {field} must be a finite number > 0, got {value:?}"
                )
            }
            Self::UnknownPolicy { name } => write!(
                f,
                "Balancer: policy must be one of least_request, peak_ewma, round_robin, \
                 got {name:?}"
            ),
        }
    }
}

impl std::error::Error for BalancerError {}

// ---------------------------------------------------------------------------- config

/// The balancing policy, as `mesh.yaml`'s `load_balancer` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// `round_robin`: nginx's smooth weighted round robin.
    RoundRobin,
    /// `least_request`: power of two choices on in-flight requests per unit of weight.
    LeastRequest,
    /// `peak_ewma` (the default): power of two choices on peak-EWMA cost per unit of weight.
    #[default]
    PeakEwma,
}

impl Policy {
    /// The config name: `round_robin`, `least_request` or `peak_ewma`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastRequest => "least_request",
            Self::PeakEwma => "peak_ewma",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Policy {
    type Err = BalancerError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "round_robin" => Ok(Self::RoundRobin),
            "least_request" => Ok(Self::LeastRequest),
            "peak_ewma" => Ok(Self::PeakEwma),
            _ => Err(BalancerError::UnknownPolicy {
                name: name.to_owned(),
            }),
        }
    }
}

/// The balancer's tunables; [`Default`] gives the Python defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BalancerOptions {
    /// When every endpoint of the subset is ejected, pick among them anyway
    /// (default `true`) rather than return `None`.
    pub panic: bool,
    /// Latency estimate of a new endpoint, in seconds (finite, > 0; default 30 ms).
    pub default_rtt: f64,
    /// Time constant of the latency estimate, in seconds (finite, > 0; default 10 s).
    pub decay: f64,
}

impl Default for BalancerOptions {
    fn default() -> Self {
        Self {
            panic: true,
            default_rtt: DEFAULT_RTT,
            decay: DEFAULT_DECAY,
        }
    }
}

impl BalancerOptions {
    fn validate(&self) -> Result<(), BalancerError> {
        require_positive("default_rtt", self.default_rtt)?;
        require_positive("decay", self.decay)
    }
}

fn require_positive(field: &'static str, value: f64) -> Result<(), BalancerError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(BalancerError::InvalidOption { field, value })
    }
}

/// One endpoint of the set handed to [`Balancer::new`] and [`Balancer::update`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointInfo {
    /// The endpoint's stable identity (its stats follow it across updates).
    pub key: u64,
    /// Load balancing weight, at least 1.
    pub weight: u32,
    /// The subset (version) it belongs to, e.g. `"v2"`; `None` for none.
    pub subset: Option<Arc<str>>,
}

impl EndpointInfo {
    /// An endpoint of weight 1 in no subset.
    pub fn new(key: u64) -> Self {
        Self {
            key,
            weight: 1,
            subset: None,
        }
    }

    /// The same endpoint with `weight`.
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The same endpoint in `subset`.
    #[must_use]
    pub fn in_subset(mut self, subset: impl Into<Arc<str>>) -> Self {
        self.subset = Some(subset.into());
        self
    }
}

// ---------------------------------------------------------------------------- stats

/// Load record of one endpoint: in-flight count and peak-EWMA latency.
///
/// Mirrors `EndpointStats` in `seawall.proxy.upstream.endpoint`:
///
/// * **Peak.** A response slower than the estimate replaces it at once.
/// * **EWMA.** A faster response pulls the estimate toward it with weight
///   `1 - exp(-elapsed / decay)`, `elapsed` being the time since the estimate
///   last changed: it forgets by time, not by request count.
/// * **Decay while idle.** Reading the estimate ([`latency`](Self::latency),
///   at each pick) decays it toward zero by the same rule, so a penalised
///   endpoint left alone becomes attractive again and gets measured again.
/// * **New endpoints** start at `default_rtt`, not zero (zero would look
///   infinitely fast and draw every request until the first answers).
/// * **Failures never make an endpoint look faster**: a failure faster than
///   the estimate leaves it alone; a slow failure still raises the peak.
/// * The **cost** is `latency * (in_flight + 1)`.
///
/// Call [`on_start`](Self::on_start) when a request is sent and
/// [`on_finish`](Self::on_finish) when it ends, however it ends, or the
/// in-flight count leaks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointStats {
    decay: f64,
    estimate: f64,
    /// When the estimate last changed; `None` before first use.
    stamp: Option<f64>,
    in_flight: u64,
    requests: u64,
    failures: u64,
}

impl Default for EndpointStats {
    fn default() -> Self {
        Self::fresh(DEFAULT_RTT, DEFAULT_DECAY)
    }
}

impl EndpointStats {
    /// A new record; `default_rtt` and `decay` are seconds, finite and > 0.
    ///
    /// # Errors
    ///
    /// [`BalancerError::InvalidOption`] naming the first invalid value.
    pub fn new(default_rtt: f64, decay: f64) -> Result<Self, BalancerError> {
        require_positive("default_rtt", default_rtt)?;
        require_positive("decay", decay)?;
        Ok(Self::fresh(default_rtt, decay))
    }

    /// A new record from already validated values.
    fn fresh(default_rtt: f64, decay: f64) -> Self {
        Self {
            decay,
            estimate: default_rtt,
            stamp: None,
            in_flight: 0,
            requests: 0,
            failures: 0,
        }
    }

    /// A request was sent to the endpoint at `now`.
    pub fn on_start(&mut self, now: f64) {
        self.in_flight = self.in_flight.saturating_add(1);
        if self.stamp.is_none() {
            self.stamp = Some(now); // the estimate's age counts from first use
        }
    }

    /// A request finished at `now` after `elapsed` seconds; `ok` is false on failure.
    ///
    /// An `elapsed` that is negative or not finite still ends the request but
    /// is not a latency sample (the Python twin has no such guard).
    pub fn on_finish(&mut self, now: f64, elapsed: f64, ok: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.requests = self.requests.saturating_add(1);
        if !ok {
            self.failures = self.failures.saturating_add(1);
        }
        if !(elapsed.is_finite() && elapsed >= 0.0) {
            return;
        }
        let estimate = self.estimate;
        if elapsed > estimate {
            self.estimate = elapsed; // peak: the worst recent latency wins at once
        } else if !ok {
            return; // a fast failure is not a latency sample
        } else if let Some(stamp) = self.stamp {
            if now > stamp {
                let decay = ((stamp - now) / self.decay).exp();
                self.estimate = estimate * decay + elapsed * (1.0 - decay);
            }
            // At the same instant no time has passed that would justify
            // forgetting the estimate.
        }
        self.stamp = Some(now);
    }

    /// The latency estimate in seconds at `now`, decayed toward zero while idle.
    pub fn latency(&mut self, now: f64) -> f64 {
        match self.stamp {
            None => self.stamp = Some(now),
            Some(stamp) if now > stamp => {
                self.estimate *= ((stamp - now) / self.decay).exp();
                self.stamp = Some(now);
            }
            Some(_) => {}
        }
        self.estimate
    }

    /// Peak-EWMA cost at `now`: `latency(now) * (in_flight + 1)`.
    pub fn cost(&mut self, now: f64) -> f64 {
        self.latency(now) * self.in_flight.saturating_add(1) as f64
    }

    /// Requests sent and not finished.
    pub fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// Requests finished.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests finished with `ok == false`.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    fn load(&self, weight: u32) -> EndpointLoad {
        EndpointLoad {
            weight,
            in_flight: self.in_flight,
            requests: self.requests,
            failures: self.failures,
            latency: self.estimate,
            updated_at: self.stamp,
            decay: self.decay,
        }
    }
}

/// A read-out of one endpoint's load, for the admin page (`/clusters`).
///
/// Taking it changes nothing: [`latency_at`](Self::latency_at) decays the
/// stored estimate to a later `now` without storing the result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EndpointLoad {
    /// The endpoint's weight.
    pub weight: u32,
    /// Requests sent and not finished.
    pub in_flight: u64,
    /// Requests finished.
    pub requests: u64,
    /// Requests finished with a failure.
    pub failures: u64,
    /// The latency estimate in seconds, as of `updated_at`.
    pub latency: f64,
    /// When the estimate last changed or was read; `None` before first use.
    pub updated_at: Option<f64>,
    decay: f64,
}

impl EndpointLoad {
    /// The latency estimate decayed to `now`, as the next pick would see it.
    pub fn latency_at(&self, now: f64) -> f64 {
        match self.updated_at {
            Some(stamp) if now > stamp => self.latency * ((stamp - now) / self.decay).exp(),
            _ => self.latency,
        }
    }

    /// The peak-EWMA cost at `now`, `latency_at(now) * (in_flight + 1)`; the
    /// balancer compares it divided by `weight`.
    pub fn cost_at(&self, now: f64) -> f64 {
        self.latency_at(now) * self.in_flight.saturating_add(1) as f64
    }
}

// ---------------------------------------------------------------------------- the balancer

/// One endpoint as the balancer holds it.
#[derive(Debug, Clone)]
struct Entry {
    key: u64,
    weight: u32,
    subset: Option<Arc<str>>,
    stats: EndpointStats,
}

/// The endpoints of one subset (or all of them), with the cached candidates.
#[derive(Debug, Clone)]
struct Group {
    /// `None` for the group of all endpoints.
    name: Option<Arc<str>>,
    /// Indices into `Balancer::entries`, in update order.
    members: Vec<usize>,
    /// The ejection version `cands` was computed for; `None` before the first pick.
    version: Option<u64>,
    /// The members that are not ejected (or all of them, in panic), as indices.
    cands: Vec<usize>,
    /// Smooth WRR scores, parallel to `cands`.
    current: Vec<i64>,
    /// Whether every candidate has the same weight (round robin is then a rotation).
    equal: bool,
    /// Rotation index when all weights are equal.
    pos: usize,
}

impl Group {
    fn new(name: Option<Arc<str>>, members: Vec<usize>, entries: &[Entry]) -> Self {
        Self {
            name,
            cands: members.clone(),
            current: vec![0; members.len()],
            equal: same_weight(&members, entries),
            members,
            version: None,
            pos: 0,
        }
    }

    /// Recompute the candidates for `version`, reusing the buffers.
    fn refresh(
        &mut self,
        entries: &[Entry],
        ejected: &dyn Fn(u64) -> bool,
        panic: bool,
        version: u64,
    ) {
        self.cands.clear();
        self.cands.extend(
            self.members
                .iter()
                .copied()
                .filter(|&i| entries.get(i).is_some_and(|e| !ejected(e.key))),
        );
        if self.cands.is_empty() && panic {
            self.cands.extend_from_slice(&self.members);
        }
        self.current.clear();
        self.current.resize(self.cands.len(), 0);
        self.equal = same_weight(&self.cands, entries);
        self.version = Some(version);
    }
}

fn same_weight(indices: &[usize], entries: &[Entry]) -> bool {
    let mut weights = indices
        .iter()
        .filter_map(|&i| entries.get(i))
        .map(|e| e.weight);
    match weights.next() {
        None => true,
        Some(first) => weights.all(|w| w == first),
    }
}

/// Picks an endpoint of one destination for each request attempt (see the module docs).
#[derive(Debug, Clone)]
pub struct Balancer {
    policy: Policy,
    options: BalancerOptions,
    /// The endpoint set, in update order.
    entries: Vec<Entry>,
    /// Key to index into `entries`.
    by_key: HashMap<u64, usize>,
    /// `groups[0]` holds every endpoint; then one group per subset, in order of first appearance.
    groups: Vec<Group>,
    /// Subset name to index into `groups`.
    by_subset: HashMap<Arc<str>, usize>,
}

impl Balancer {
    /// A balancer over `endpoints` with the default options (see [`update`](Self::update)).
    ///
    /// # Errors
    ///
    /// As [`update`](Self::update).
    pub fn new(
        policy: Policy,
        endpoints: impl IntoIterator<Item = EndpointInfo>,
        rng: &mut dyn Random,
    ) -> Result<Self, BalancerError> {
        Self::with_options(policy, BalancerOptions::default(), endpoints, rng)
    }

    /// A balancer over `endpoints` with `options`.
    ///
    /// # Errors
    ///
    /// [`BalancerError::InvalidOption`] for a bad `default_rtt` or `decay`;
    /// otherwise as [`update`](Self::update).
    pub fn with_options(
        policy: Policy,
        options: BalancerOptions,
        endpoints: impl IntoIterator<Item = EndpointInfo>,
        rng: &mut dyn Random,
    ) -> Result<Self, BalancerError> {
        options.validate()?;
        let mut balancer = Self {
            policy,
            options,
            entries: Vec::new(),
            by_key: HashMap::new(),
            groups: vec![Group::new(None, Vec::new(), &[])],
            by_subset: HashMap::new(),
        };
        balancer.update(endpoints, rng)?;
        Ok(balancer)
    }

    // ------------------------------------------------------------------ membership

    /// Replace the endpoint set in place.
    ///
    /// Endpoints whose key stays keep their stats (EWMA, in-flight) and take
    /// their new weight and subset; new ones start fresh; removed ones are
    /// forgotten (a later `on_finish` for them is ignored). Every group's
    /// candidates are recomputed at the next pick, and round robin restarts
    /// each equal-weight group at a random endpoint (one draw per non-empty
    /// group, as the Python balancer does, whatever the policy).
    ///
    /// # Errors
    ///
    /// [`BalancerError::DuplicateEndpoint`], [`BalancerError::InvalidWeight`]
    /// (weight 0) or [`BalancerError::EmptySubset`] for the first bad
    /// endpoint; the balancer is then left as it was, with no draw taken.
    pub fn update(
        &mut self,
        endpoints: impl IntoIterator<Item = EndpointInfo>,
        rng: &mut dyn Random,
    ) -> Result<(), BalancerError> {
        let endpoints = endpoints.into_iter();
        let mut entries: Vec<Entry> = Vec::with_capacity(endpoints.size_hint().0);
        let mut by_key: HashMap<u64, usize> = HashMap::with_capacity(entries.capacity());
        for info in endpoints {
            let EndpointInfo {
                key,
                weight,
                subset,
            } = info;
            if weight == 0 {
                return Err(BalancerError::InvalidWeight { key });
            }
            if subset.as_deref() == Some("") {
                return Err(BalancerError::EmptySubset { key });
            }
            if by_key.insert(key, entries.len()).is_some() {
                return Err(BalancerError::DuplicateEndpoint { key });
            }
            let stats = match self.by_key.get(&key).and_then(|&i| self.entries.get(i)) {
                Some(previous) => previous.stats,
                None => EndpointStats::fresh(self.options.default_rtt, self.options.decay),
            };
            entries.push(Entry {
                key,
                weight,
                subset,
                stats,
            });
        }

        let mut members: Vec<Vec<usize>> = vec![(0..entries.len()).collect()];
        let mut names: Vec<Option<Arc<str>>> = vec![None];
        let mut by_subset: HashMap<Arc<str>, usize> = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(name) = &entry.subset {
                let g = *by_subset.entry(Arc::clone(name)).or_insert_with(|| {
                    members.push(Vec::new());
                    names.push(Some(Arc::clone(name)));
                    members.len() - 1
                });
                if let Some(list) = members.get_mut(g) {
                    list.push(i);
                }
            }
        }
        let mut groups: Vec<Group> = names
            .into_iter()
            .zip(members)
            .map(|(name, list)| Group::new(name, list, &entries))
            .collect();
        for group in &mut groups {
            if group.equal && !group.members.is_empty() {
                group.pos = rng.below(group.members.len());
            }
        }

        self.entries = entries;
        self.by_key = by_key;
        self.groups = groups;
        self.by_subset = by_subset;
        Ok(())
    }

    /// The balancing policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The options the balancer was built with.
    pub fn options(&self) -> BalancerOptions {
        self.options
    }

    /// The number of endpoints.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the endpoint set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The endpoint keys, in update order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.key)
    }

    /// The subset names present in the endpoint set, in order of first appearance.
    pub fn subsets(&self) -> impl Iterator<Item = &str> + '_ {
        self.groups.iter().filter_map(|g| g.name.as_deref())
    }

    /// The load of the endpoint `key`, or `None` if it is not in the set.
    pub fn stats(&self, key: u64) -> Option<EndpointLoad> {
        let entry = self.entry(key)?;
        Some(entry.stats.load(entry.weight))
    }

    fn entry(&self, key: u64) -> Option<&Entry> {
        self.by_key.get(&key).and_then(|&i| self.entries.get(i))
    }

    fn entry_mut(&mut self, key: u64) -> Option<&mut Entry> {
        let i = *self.by_key.get(&key)?;
        self.entries.get_mut(i)
    }

    // ------------------------------------------------------------------ the request path

    /// The endpoint for the next attempt, or `None` if the subset has no candidate.
    ///
    /// * `now`: the current monotonic time, in seconds.
    /// * `exclude`: keys this request already tried, avoided when another
    ///   candidate exists.
    /// * `subset`: pick only endpoints of this subset; `None` for any.
    /// * `ejected`: whether a key is ejected now; asked only when
    ///   `ejection_version` differs from the one the candidates were cached
    ///   under. Without outlier detection pass `&|_| false` and a constant.
    /// * `ejection_version`: changes whenever the ejected set changes.
    pub fn pick(
        &mut self,
        now: f64,
        exclude: &[u64],
        subset: Option<&str>,
        ejected: &dyn Fn(u64) -> bool,
        ejection_version: u64,
        rng: &mut dyn Random,
    ) -> Option<u64> {
        let g = match subset {
            None => 0,
            Some(name) => *self.by_subset.get(name)?,
        };
        let Self {
            policy,
            options,
            entries,
            groups,
            ..
        } = self;
        let group = groups.get_mut(g)?;
        if group.version != Some(ejection_version) {
            group.refresh(entries, ejected, options.panic, ejection_version);
        }
        if group.cands.is_empty() {
            return None;
        }
        if !exclude.is_empty() {
            if let Some(i) = choose(*policy, group, entries, exclude, now, rng) {
                return entries.get(i).map(|e| e.key);
            }
        }
        let i = choose(*policy, group, entries, &[], now, rng)?;
        entries.get(i).map(|e| e.key)
    }

    /// An attempt was sent to `key` at `now` (ignored if it is not in the set).
    pub fn on_start(&mut self, key: u64, now: f64) {
        if let Some(entry) = self.entry_mut(key) {
            entry.stats.on_start(now);
        }
    }

    /// An attempt to `key` finished at `now` after `elapsed` seconds; `ok` is
    /// false when it failed (error, 5xx, timeout). Ignored if the endpoint
    /// left the set meanwhile.
    pub fn on_finish(&mut self, key: u64, now: f64, elapsed: f64, ok: bool) {
        if let Some(entry) = self.entry_mut(key) {
            entry.stats.on_finish(now, elapsed, ok);
        }
    }
}

// ---------------------------------------------------------------------------- the policies

/// Choose among `group.cands` minus `exclude`; `None` if all are excluded.
fn choose(
    policy: Policy,
    group: &mut Group,
    entries: &mut [Entry],
    exclude: &[u64],
    now: f64,
    rng: &mut dyn Random,
) -> Option<usize> {
    match policy {
        Policy::RoundRobin => round_robin(group, entries, exclude),
        Policy::LeastRequest | Policy::PeakEwma => {
            p2c(policy, &group.cands, entries, exclude, now, rng)
        }
    }
}

fn is_excluded(entries: &[Entry], i: usize, exclude: &[u64]) -> bool {
    !exclude.is_empty() && entries.get(i).is_some_and(|e| exclude.contains(&e.key))
}

/// nginx's smooth weighted round robin; a rotation when all weights are equal.
fn round_robin(group: &mut Group, entries: &[Entry], exclude: &[u64]) -> Option<usize> {
    let n = group.cands.len();
    if n == 0 {
        return None;
    }
    if group.equal {
        let start = group.pos % n;
        for k in 0..n {
            let index = (start + k) % n;
            let i = *group.cands.get(index)?;
            if !is_excluded(entries, i, exclude) {
                group.pos = index + 1;
                return Some(i);
            }
        }
        return None;
    }
    // nginx's ngx_http_upstream_get_peer: excluded peers are skipped and do
    // not take part in this round.
    let mut total: i64 = 0;
    let mut best: Option<(usize, i64)> = None;
    for (index, (&i, score)) in group.cands.iter().zip(group.current.iter_mut()).enumerate() {
        if is_excluded(entries, i, exclude) {
            continue;
        }
        let Some(entry) = entries.get(i) else {
            continue;
        };
        let weight = i64::from(entry.weight);
        *score = score.saturating_add(weight);
        total = total.saturating_add(weight);
        if best.is_none_or(|(_, best_score)| *score > best_score) {
            best = Some((index, *score));
        }
    }
    let (index, _) = best?;
    if let Some(score) = group.current.get_mut(index) {
        *score = score.saturating_sub(total);
    }
    group.cands.get(index).copied()
}

/// The `nth` candidate that is not excluded.
fn nth_allowed(cands: &[usize], entries: &[Entry], exclude: &[u64], nth: usize) -> Option<usize> {
    if exclude.is_empty() {
        return cands.get(nth).copied();
    }
    cands
        .iter()
        .copied()
        .filter(|&i| !is_excluded(entries, i, exclude))
        .nth(nth)
}

/// Power of two choices: two distinct candidates drawn uniformly, the less loaded wins.
fn p2c(
    policy: Policy,
    cands: &[usize],
    entries: &mut [Entry],
    exclude: &[u64],
    now: f64,
    rng: &mut dyn Random,
) -> Option<usize> {
    let n = if exclude.is_empty() {
        cands.len()
    } else {
        cands
            .iter()
            .filter(|&&i| !is_excluded(entries, i, exclude))
            .count()
    };
    if n <= 1 {
        return if n == 1 {
            nth_allowed(cands, entries, exclude, 0)
        } else {
            None
        };
    }
    let i = rng.below(n);
    let mut j = rng.below(n - 1);
    if j >= i {
        j += 1;
    }
    let a = nth_allowed(cands, entries, exclude, i)?;
    let b = nth_allowed(cands, entries, exclude, j)?;
    Some(if prefer(policy, entries, a, b, now) {
        a
    } else {
        b
    })
}

/// Whether `a` is at most as loaded as `b`, per unit of weight.
fn prefer(policy: Policy, entries: &mut [Entry], a: usize, b: usize, now: f64) -> bool {
    let (Some(wa), Some(wb)) = (
        entries.get(a).map(|e| e.weight),
        entries.get(b).map(|e| e.weight),
    ) else {
        return true;
    };
    match policy {
        Policy::LeastRequest => {
            let load = |i: usize| entries.get(i).map_or(0, |e| e.stats.in_flight);
            let (la, lb) = (u128::from(load(a)) + 1, u128::from(load(b)) + 1);
            la * u128::from(wb) <= lb * u128::from(wa)
        }
        Policy::PeakEwma => {
            // Both are read (and so decayed to `now`), a first, as in Python.
            let ca = entries.get_mut(a).map_or(0.0, |e| e.stats.cost(now));
            let cb = entries.get_mut(b).map_or(0.0, |e| e.stats.cost(now));
            ca * f64::from(wb) <= cb * f64::from(wa)
        }
        Policy::RoundRobin => true,
    }
}

// ---------------------------------------------------------------------------- tests

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rng::{Sequence, SplitMix64};
    use std::cell::Cell;
    use std::cmp::{Ordering, Reverse};
    use std::collections::{BinaryHeap, HashSet};

    const ALL: [Policy; 3] = [Policy::RoundRobin, Policy::LeastRequest, Policy::PeakEwma];

    fn none(_: u64) -> bool {
        false
    }

    fn eps(n: u64) -> Vec<EndpointInfo> {
        (0..n).map(EndpointInfo::new).collect()
    }

    fn build(policy: Policy, endpoints: Vec<EndpointInfo>, seed: u64) -> Balancer {
        Balancer::new(policy, endpoints, &mut SplitMix64::new(seed)).unwrap()
    }

    /// `n` picks with no ejections, none of which may be `None`.
    fn picks(
        b: &mut Balancer,
        n: usize,
        now: f64,
        exclude: &[u64],
        subset: Option<&str>,
        rng: &mut dyn Random,
    ) -> Vec<u64> {
        (0..n)
            .map(|_| b.pick(now, exclude, subset, &none, 0, rng).unwrap())
            .collect()
    }

    fn set(keys: &[u64]) -> HashSet<u64> {
        keys.iter().copied().collect()
    }

    fn count(keys: &[u64], key: u64) -> usize {
        keys.iter().filter(|&&k| k == key).count()
    }

    /// A stand-in for the outlier detector: an ejected set and its version.
    #[derive(Default)]
    struct Ejections {
        ejected: HashSet<u64>,
        version: u64,
    }

    impl Ejections {
        fn eject(&mut self, key: u64) {
            self.ejected.insert(key);
            self.version += 1;
        }

        fn restore(&mut self, key: u64) {
            self.ejected.remove(&key);
            self.version += 1;
        }

        fn picks(
            &self,
            b: &mut Balancer,
            n: usize,
            exclude: &[u64],
            subset: Option<&str>,
            rng: &mut dyn Random,
        ) -> Vec<Option<u64>> {
            let is_ejected = |k: u64| self.ejected.contains(&k);
            (0..n)
                .map(|_| b.pick(0.0, exclude, subset, &is_ejected, self.version, rng))
                .collect()
        }
    }

    // ------------------------------------------------------------ EndpointStats

    #[test]
    fn stats_start_at_default_rtt_and_count_in_flight() {
        let mut s = EndpointStats::default();
        assert_eq!(s.latency(0.0), DEFAULT_RTT);
        assert_eq!(s.cost(0.0), DEFAULT_RTT);
        s.on_start(0.0);
        s.on_start(0.0);
        assert_eq!(s.in_flight(), 2);
        assert!((s.cost(0.0) - DEFAULT_RTT * 3.0).abs() < 1e-12);
        s.on_finish(0.0, 0.01, true);
        s.on_finish(0.0, 0.01, false);
        s.on_finish(0.0, 0.01, true); // one too many: never negative
        assert_eq!((s.in_flight(), s.requests(), s.failures()), (0, 3, 1));
    }

    #[test]
    fn stats_peak_replaces_estimate_at_once() {
        let mut s = EndpointStats::new(0.01, DEFAULT_DECAY).unwrap();
        s.on_start(0.0);
        s.on_finish(0.5, 0.5, true);
        assert_eq!(s.latency(0.5), 0.5);
    }

    #[test]
    fn stats_faster_sample_decays_toward_it_by_elapsed_time() {
        let mut s = EndpointStats::new(0.01, 10.0).unwrap();
        s.on_start(0.0);
        s.on_finish(1.0, 1.0, true); // peak: 1.0 at t=1
        s.on_finish(6.0, 0.1, true); // 5 s later, a 0.1 s sample
        let w = (-5.0f64 / 10.0).exp();
        assert!((s.latency(6.0) - (w + 0.1 * (1.0 - w))).abs() < 1e-12);
    }

    #[test]
    fn stats_decay_toward_zero_while_idle() {
        let mut s = EndpointStats::new(0.01, 10.0).unwrap();
        s.on_start(0.0);
        s.on_finish(1.0, 1.0, true);
        assert!((s.latency(11.0) - (-1.0f64).exp()).abs() < 1e-12);
        // Reading twice decays once in total (exp composes).
        assert!((s.latency(21.0) - (-2.0f64).exp()).abs() < 1e-12);
    }

    #[test]
    fn stats_fast_failure_never_lowers_the_estimate() {
        let mut s = EndpointStats::new(0.01, 10.0).unwrap();
        s.on_start(0.0);
        s.on_finish(1.0, 1.0, true);
        s.on_finish(6.0, 0.001, false); // fast failure: not a sample
        assert!((s.latency(6.0) - (-0.5f64).exp()).abs() < 1e-12); // only idle decay
        s.on_finish(6.0, 2.0, false); // a slow failure still raises the peak
        assert_eq!(s.latency(6.0), 2.0);
    }

    #[test]
    fn stats_ignore_elapsed_that_is_negative_or_not_finite() {
        let mut s = EndpointStats::new(0.01, 10.0).unwrap();
        s.on_start(0.0);
        s.on_start(0.0);
        s.on_start(0.0);
        s.on_finish(1.0, f64::NAN, true);
        s.on_finish(1.0, f64::INFINITY, true);
        s.on_finish(1.0, -5.0, true);
        assert_eq!((s.in_flight(), s.requests()), (0, 3));
        assert!((s.latency(0.0) - 0.01).abs() < 1e-15);
    }

    #[test]
    fn stats_validation() {
        for (rtt, decay, field) in [
            (0.0, 10.0, "default_rtt"),
            (-0.1, 10.0, "default_rtt"),
            (0.03, -1.0, "decay"),
            (0.03, f64::INFINITY, "decay"),
            (0.03, f64::NAN, "decay"),
        ] {
            let err = EndpointStats::new(rtt, decay).unwrap_err();
            assert!(matches!(err, BalancerError::InvalidOption { field: f, .. } if f == field));
            let options = BalancerOptions {
                default_rtt: rtt,
                decay,
                ..BalancerOptions::default()
            };
            let err = Balancer::with_options(
                Policy::PeakEwma,
                options,
                eps(1),
                &mut Sequence::new(vec![]),
            )
            .unwrap_err();
            assert!(err
                .to_string()
                .contains(&format!("{field} must be a finite number > 0")));
        }
        assert_eq!(
            BalancerError::InvalidOption {
                field: "decay",
                value: -1.0
            }
            .to_string(),
            "Balancer: decay must be a finite number > 0, got -1.0"
        );
    }

    #[test]
    fn load_read_out_decays_without_changing_anything() {
        let mut b = build(Policy::PeakEwma, eps(1), 1);
        b.on_start(0, 0.0);
        b.on_finish(0, 1.0, 1.0, true);
        b.on_start(0, 1.0);
        let load = b.stats(0).unwrap();
        assert_eq!(
            (load.weight, load.in_flight, load.requests, load.failures),
            (1, 1, 1, 0)
        );
        assert_eq!((load.latency, load.updated_at), (1.0, Some(1.0)));
        assert!((load.latency_at(11.0) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((load.cost_at(11.0) - 2.0 * (-1.0f64).exp()).abs() < 1e-12);
        assert_eq!(b.stats(0), Some(load)); // reading changed nothing
        assert_eq!(b.stats(7), None);
    }

    // ------------------------------------------------------------ common behaviour

    #[test]
    fn policy_names_round_trip() {
        for policy in ALL {
            assert_eq!(policy.name().parse::<Policy>(), Ok(policy));
            assert_eq!(policy.to_string(), policy.name());
        }
        assert_eq!(Policy::default(), Policy::PeakEwma);
        let err = "random".parse::<Policy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Balancer: policy must be one of least_request, peak_ewma, round_robin, got \"random\""
        );
    }

    #[test]
    fn empty_set_picks_none() {
        for policy in ALL {
            let mut rng = SplitMix64::new(1);
            let mut b = Balancer::new(policy, vec![], &mut rng).unwrap();
            assert!(b.is_empty());
            assert_eq!(b.len(), 0);
            assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), None);
            assert_eq!(b.pick(0.0, &[1], None, &none, 0, &mut rng), None);
            assert_eq!(b.pick(0.0, &[], Some("v1"), &none, 0, &mut rng), None);
        }
    }

    #[test]
    fn single_endpoint_always_picked() {
        for policy in ALL {
            let mut b = build(policy, eps(1), 1);
            let mut rng = SplitMix64::new(1);
            assert_eq!(set(&picks(&mut b, 20, 0.0, &[], None, &mut rng)), set(&[0]));
        }
    }

    #[test]
    fn exclude_goes_to_another_endpoint() {
        for policy in ALL {
            let mut b = build(policy, eps(3), 3);
            let mut rng = SplitMix64::new(3);
            assert!(!picks(&mut b, 200, 0.0, &[0], None, &mut rng).contains(&0));
            assert_eq!(
                set(&picks(&mut b, 50, 0.0, &[0, 1], None, &mut rng)),
                set(&[2])
            );
            assert_eq!(
                set(&picks(&mut b, 50, 0.0, &[2, 0], None, &mut rng)),
                set(&[1])
            );
            // keys not in the set change nothing
            assert_eq!(
                set(&picks(&mut b, 200, 0.0, &[9], None, &mut rng)),
                set(&[0, 1, 2])
            );
        }
    }

    #[test]
    fn exclude_everything_falls_back_to_all() {
        for policy in ALL {
            let mut b = build(policy, eps(2), 3);
            let mut rng = SplitMix64::new(3);
            assert_eq!(
                set(&picks(&mut b, 100, 0.0, &[0, 1], None, &mut rng)),
                set(&[0, 1])
            );
        }
    }

    fn subset_endpoints() -> Vec<EndpointInfo> {
        // v1: 10, 11, 12; v2: 20, 21; no subset: 30
        let mut out: Vec<EndpointInfo> = (10..13)
            .map(|k| EndpointInfo::new(k).in_subset("v1"))
            .collect();
        out.extend((20..22).map(|k| EndpointInfo::new(k).in_subset("v2")));
        out.push(EndpointInfo::new(30));
        out
    }

    #[test]
    fn subset_picks_only_its_endpoints() {
        for policy in ALL {
            let mut b = build(policy, subset_endpoints(), 5);
            let mut rng = SplitMix64::new(5);
            assert_eq!(b.subsets().collect::<Vec<_>>(), ["v1", "v2"]);
            assert_eq!(
                set(&picks(&mut b, 200, 0.0, &[], Some("v2"), &mut rng)),
                set(&[20, 21])
            );
            assert_eq!(
                set(&picks(&mut b, 200, 0.0, &[], Some("v1"), &mut rng)),
                set(&[10, 11, 12])
            );
            assert_eq!(
                set(&picks(&mut b, 600, 0.0, &[], None, &mut rng)),
                set(&[10, 11, 12, 20, 21, 30])
            );
            // no fallback to other subsets
            assert_eq!(b.pick(0.0, &[], Some("v3"), &none, 0, &mut rng), None);
            // exclusion within a subset
            assert_eq!(
                set(&picks(&mut b, 50, 0.0, &[20], Some("v2"), &mut rng)),
                set(&[21])
            );
        }
    }

    #[test]
    fn update_keeps_stats_of_endpoints_that_remain() {
        for policy in ALL {
            let mut rng = SplitMix64::new(1);
            let mut bal = Balancer::new(policy, eps(2), &mut rng).unwrap();
            bal.on_start(0, 0.0);
            bal.on_start(0, 0.0);
            bal.on_start(1, 0.0);
            bal.on_finish(0, 0.5, 0.5, true);
            bal.on_start(0, 0.5);
            let before = bal.stats(0).unwrap();
            // 0 stays (with a new weight), 1 leaves, 2 joins
            bal.update(
                vec![EndpointInfo::new(0).with_weight(3), EndpointInfo::new(2)],
                &mut rng,
            )
            .unwrap();
            let after = bal.stats(0).unwrap();
            assert_eq!(after.weight, 3);
            assert_eq!(
                (after.in_flight, after.requests, after.latency),
                (2, 1, 0.5)
            );
            assert_eq!(
                after,
                EndpointLoad {
                    weight: 3,
                    ..before
                }
            );
            assert_eq!(bal.stats(1), None);
            let fresh = bal.stats(2).unwrap();
            assert_eq!(
                (fresh.in_flight, fresh.latency, fresh.updated_at),
                (0, DEFAULT_RTT, None)
            );
            assert_eq!(bal.keys().collect::<Vec<_>>(), [0, 2]);
            // the finish of a request to the departed endpoint is ignored
            bal.on_finish(1, 1.0, 0.1, true);
            bal.on_start(1, 1.0);
            bal.on_finish(0, 1.0, 0.1, true);
            assert_eq!(bal.stats(0).unwrap().in_flight, 1);
            assert_eq!(bal.stats(1), None);
            assert!(set(&picks(&mut bal, 100, 1.0, &[], None, &mut rng)).is_subset(&set(&[0, 2])));
        }
    }

    #[test]
    fn update_refuses_bad_sets_and_keeps_the_old_one() {
        for policy in ALL {
            let mut rng = Sequence::new(vec![0.0]);
            let mut b = Balancer::new(policy, eps(2), &mut rng).unwrap();
            b.on_start(1, 0.0);
            let bad = [
                (
                    vec![EndpointInfo::new(1), EndpointInfo::new(1).with_weight(2)],
                    BalancerError::DuplicateEndpoint { key: 1 },
                ),
                (
                    vec![EndpointInfo::new(4), EndpointInfo::new(5).with_weight(0)],
                    BalancerError::InvalidWeight { key: 5 },
                ),
                (
                    vec![EndpointInfo::new(6).in_subset("")],
                    BalancerError::EmptySubset { key: 6 },
                ),
            ];
            for (endpoints, error) in bad {
                assert_eq!(b.update(endpoints.clone(), &mut rng), Err(error.clone()));
                assert_eq!(
                    Balancer::new(policy, endpoints, &mut rng).unwrap_err(),
                    error
                );
            }
            assert_eq!(b.keys().collect::<Vec<_>>(), [0, 1]);
            assert_eq!(b.stats(1).unwrap().in_flight, 1);
        }
        assert_eq!(
            BalancerError::DuplicateEndpoint { key: 1 }.to_string(),
            "Balancer: endpoints must be unique, got key 1 twice"
        );
    }

    // ------------------------------------------------------------ with ejections

    #[test]
    fn ejected_endpoints_are_skipped_until_they_return() {
        for policy in ALL {
            let mut b = build(policy, eps(3), 2);
            let mut rng = SplitMix64::new(2);
            let mut view = Ejections::default();
            let all = view.picks(&mut b, 100, &[], None, &mut rng);
            assert_eq!(
                all.iter().flatten().copied().collect::<HashSet<_>>(),
                set(&[0, 1, 2])
            );
            view.eject(1);
            let some = view.picks(&mut b, 200, &[], None, &mut rng);
            assert_eq!(
                some.iter().flatten().copied().collect::<HashSet<_>>(),
                set(&[0, 2])
            );
            assert!(some.iter().all(Option::is_some));
            view.restore(1); // the ejection time is over: back without any other event
            let back = view.picks(&mut b, 200, &[], None, &mut rng);
            assert!(back.contains(&Some(1)));
        }
    }

    #[test]
    fn healthy_excluded_is_preferred_to_ejected() {
        for policy in ALL {
            let mut b = build(policy, eps(2), 2);
            let mut rng = SplitMix64::new(2);
            let mut view = Ejections::default();
            view.eject(1);
            // a retry after a failure on 0: 0 again, not the ejected 1
            let out = view.picks(&mut b, 50, &[0], None, &mut rng);
            assert!(out.iter().all(|k| *k == Some(0)), "{policy}: {out:?}");
        }
    }

    #[test]
    fn panic_when_every_endpoint_is_ejected() {
        for policy in ALL {
            let mut rng = SplitMix64::new(2);
            let mut panicking = build(policy, eps(2), 2);
            let strict_options = BalancerOptions {
                panic: false,
                ..BalancerOptions::default()
            };
            let mut strict =
                Balancer::with_options(policy, strict_options, eps(2), &mut rng).unwrap();
            let mut view = Ejections::default();
            view.eject(0);
            view.eject(1);
            let out = view.picks(&mut panicking, 100, &[], None, &mut rng);
            assert_eq!(
                out.iter().flatten().copied().collect::<HashSet<_>>(),
                set(&[0, 1])
            );
            assert!(out.iter().all(Option::is_some));
            let out = view.picks(&mut panicking, 50, &[0], None, &mut rng);
            assert!(out.iter().all(|k| *k == Some(1)));
            assert_eq!(view.picks(&mut strict, 1, &[], None, &mut rng), [None]);
            view.restore(0);
            assert_eq!(
                view.picks(&mut strict, 5, &[], None, &mut rng),
                [Some(0); 5]
            );
        }
    }

    #[test]
    fn panic_is_per_subset() {
        let endpoints = vec![
            EndpointInfo::new(1).in_subset("v1"),
            EndpointInfo::new(20).in_subset("v2"),
            EndpointInfo::new(21).in_subset("v2"),
        ];
        let mut b = build(Policy::PeakEwma, endpoints, 2);
        let mut rng = SplitMix64::new(2);
        let mut view = Ejections::default();
        view.eject(1);
        // only member: panic
        assert_eq!(
            view.picks(&mut b, 20, &[], Some("v1"), &mut rng),
            [Some(1); 20]
        );
        // the whole set still has healthy ones
        let all = view.picks(&mut b, 200, &[], None, &mut rng);
        assert!(all.iter().all(|k| matches!(k, Some(20 | 21))));
    }

    #[test]
    fn candidates_are_cached_on_the_ejection_version() {
        for policy in ALL {
            let mut b = build(policy, eps(4), 2);
            let mut rng = SplitMix64::new(2);
            let asked = Cell::new(0usize);
            let ejected = Cell::new(None::<u64>);
            let view = |k: u64| {
                asked.set(asked.get() + 1);
                ejected.get() == Some(k)
            };
            for _ in 0..100 {
                b.pick(0.0, &[], None, &view, 7, &mut rng).unwrap();
            }
            assert_eq!(asked.get(), 4, "one check per endpoint, once per version");
            // The set changes but the version does not: the cache stands.
            ejected.set(Some(3));
            let out: HashSet<u64> = (0..200)
                .map(|_| b.pick(0.0, &[], None, &view, 7, &mut rng).unwrap())
                .collect();
            assert!(out.contains(&3));
            assert_eq!(asked.get(), 4);
            // A new version: recomputed once.
            let out: HashSet<u64> = (0..200)
                .map(|_| b.pick(0.0, &[], None, &view, 8, &mut rng).unwrap())
                .collect();
            assert_eq!(out, set(&[0, 1, 2]));
            assert_eq!(asked.get(), 8);
            // An update drops the cache even under the same version.
            b.update(eps(4), &mut rng).unwrap();
            b.pick(0.0, &[], None, &view, 8, &mut rng).unwrap();
            assert_eq!(asked.get(), 12);
        }
    }

    // ------------------------------------------------------------ RoundRobin

    #[test]
    fn round_robin_equal_weights_is_a_rotation() {
        let mut b = build(Policy::RoundRobin, eps(4), 11);
        let mut rng = SplitMix64::new(11);
        let seq = picks(&mut b, 12, 0.0, &[], None, &mut rng);
        let start = seq[0];
        let expected: Vec<u64> = (0..12).map(|k| (start + k) % 4).collect();
        assert_eq!(seq, expected);
    }

    #[test]
    fn round_robin_start_is_random() {
        let starts: HashSet<u64> = (0..40)
            .map(|seed| {
                let mut rng = SplitMix64::new(seed);
                let mut b = Balancer::new(Policy::RoundRobin, eps(5), &mut rng).unwrap();
                b.pick(0.0, &[], None, &none, 0, &mut rng).unwrap()
            })
            .collect();
        assert!(starts.len() >= 4, "{starts:?}");
        // Scripted: a draw of 0.5 over four endpoints starts at the third.
        let mut rng = Sequence::new(vec![0.5]);
        let mut b = Balancer::new(Policy::RoundRobin, eps(4), &mut rng).unwrap();
        assert_eq!(picks(&mut b, 5, 0.0, &[], None, &mut rng), [2, 3, 0, 1, 2]);
    }

    #[test]
    fn update_draws_one_start_per_equal_group_in_order() {
        // Whole set (4 endpoints), then v1, then v2, as Python's dict order;
        // weighted groups take no draw. P2C balancers draw too, as in Python.
        let endpoints = vec![
            EndpointInfo::new(10).in_subset("v1"),
            EndpointInfo::new(20).in_subset("v2"),
            EndpointInfo::new(11).in_subset("v1"),
            EndpointInfo::new(21).in_subset("v2"),
        ];
        let mut rng = Sequence::new(vec![0.0, 0.5, 0.75, 0.0]);
        let mut b = Balancer::new(Policy::RoundRobin, endpoints.clone(), &mut rng).unwrap();
        assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), Some(10));
        assert_eq!(b.pick(0.0, &[], Some("v1"), &none, 0, &mut rng), Some(11));
        assert_eq!(b.pick(0.0, &[], Some("v2"), &none, 0, &mut rng), Some(21));

        let mut weighted = endpoints;
        weighted[0].weight = 2; // the whole set and v1 are weighted now: only v2 draws
        let mut rng = Sequence::new(vec![0.5, 0.0]);
        let mut b = Balancer::new(Policy::RoundRobin, weighted, &mut rng).unwrap();
        assert_eq!(b.pick(0.0, &[], Some("v2"), &none, 0, &mut rng), Some(21));

        // P2C: the draw at update is taken as well, so pick draws come next.
        let mut rng = Sequence::new(vec![0.9, 0.0, 0.0]);
        let mut b = Balancer::new(Policy::LeastRequest, eps(2), &mut rng).unwrap();
        b.on_start(1, 0.0);
        // i = below(2) of 0.0 = 0, j = below(1) = 0 -> 1; 0 is less loaded
        assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), Some(0));
    }

    fn weighted(weights: &[u32]) -> Vec<EndpointInfo> {
        weights
            .iter()
            .enumerate()
            .map(|(k, &w)| EndpointInfo::new(k as u64).with_weight(w))
            .collect()
    }

    fn names(keys: &[u64]) -> String {
        keys.iter().map(|&k| char::from(b'a' + k as u8)).collect()
    }

    #[test]
    fn round_robin_smooth_weighted_order_is_nginx() {
        let mut b = build(Policy::RoundRobin, weighted(&[5, 1, 1]), 1);
        let mut rng = SplitMix64::new(1);
        // nginx's documented sequence for weights 5, 1, 1: { a, a, b, a, c, a, a }
        let seq = picks(&mut b, 14, 0.0, &[], None, &mut rng);
        assert_eq!(names(&seq), "aabacaa".repeat(2));
    }

    #[test]
    fn round_robin_weights_are_exact_per_period() {
        let mut b = build(Policy::RoundRobin, weighted(&[3, 2, 1]), 1);
        let mut rng = SplitMix64::new(1);
        let seq = picks(&mut b, 600, 0.0, &[], None, &mut rng);
        for period in seq.chunks(6) {
            assert_eq!(
                [count(period, 0), count(period, 1), count(period, 2)],
                [3, 2, 1]
            );
        }
        assert_eq!(names(&seq[..6]), "abacba"); // spread out, not bunched
    }

    #[test]
    fn round_robin_weighted_exclude_skips_like_nginx() {
        let mut b = build(Policy::RoundRobin, weighted(&[5, 1]), 1);
        let mut rng = SplitMix64::new(1);
        assert_eq!(picks(&mut b, 3, 0.0, &[0], None, &mut rng), [1, 1, 1]);
        let seq = picks(&mut b, 600, 0.0, &[], None, &mut rng);
        assert_eq!([count(&seq, 0), count(&seq, 1)], [500, 100]);
    }

    #[test]
    fn round_robin_distribution_is_exact() {
        let endpoints = weighted(&[7, 3, 1, 1, 4]);
        let mut b = build(Policy::RoundRobin, endpoints, 9);
        let mut rng = SplitMix64::new(9);
        let seq = picks(&mut b, 16 * 1000, 0.0, &[], None, &mut rng);
        let shares: Vec<usize> = (0..5).map(|k| count(&seq, k)).collect();
        assert_eq!(shares, [7000, 3000, 1000, 1000, 4000]);
        // equal weights: exact shares as well
        let mut b = build(Policy::RoundRobin, eps(3), 9);
        let seq = picks(&mut b, 3000, 0.0, &[], None, &mut rng);
        assert_eq!([count(&seq, 0), count(&seq, 1), count(&seq, 2)], [1000; 3]);
    }

    // ------------------------------------------------------------ P2C

    #[test]
    fn p2c_scripted_draws_compare_the_two_drawn() {
        for policy in [Policy::LeastRequest, Policy::PeakEwma] {
            // eps(3) with equal weights takes one draw at construction.
            let mut rng = Sequence::new(vec![0.0]);
            let mut b = Balancer::new(policy, eps(3), &mut rng).unwrap();
            b.on_start(1, 0.0);
            b.on_start(1, 0.0);
            // i = 0, j = 0 -> 1: 0 vs 1, 0 is less loaded
            let mut rng = Sequence::new(vec![0.0, 0.0]);
            assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), Some(0));
            // i = 1, j = 1 -> 2: 1 vs 2, 2 is less loaded
            let mut rng = Sequence::new(vec![0.4, 0.5]);
            assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), Some(2));
            // a tie goes to the first drawn: i = 2, j = 0
            let mut rng = Sequence::new(vec![0.9, 0.0]);
            assert_eq!(b.pick(0.0, &[], None, &none, 0, &mut rng), Some(2));
            // with exclude, the draws index the remaining candidates: [1, 2] -> i = 0, j = 1
            let mut rng = Sequence::new(vec![0.0, 0.0]);
            assert_eq!(b.pick(0.0, &[0], None, &none, 0, &mut rng), Some(2));
            // a single remaining candidate takes no draw
            let mut rng = Sequence::new(vec![]);
            assert_eq!(b.pick(0.0, &[0, 2], None, &none, 0, &mut rng), Some(1));
        }
    }

    #[test]
    fn least_request_never_picks_the_most_loaded_of_three() {
        let mut b = build(Policy::LeastRequest, eps(3), 4);
        let mut rng = SplitMix64::new(4);
        for _ in 0..10 {
            b.on_start(0, 0.0);
        }
        b.on_start(1, 0.0);
        let seq = picks(&mut b, 3000, 0.0, &[], None, &mut rng);
        // 0 is never the less loaded of two distinct candidates
        assert_eq!(count(&seq, 0), 0);
        // 2 (0 in flight) beats 1 (1) whenever they meet: 2 gets 2/3 of all picks
        let share = count(&seq, 2) as f64 / 3000.0;
        assert!((share - 2.0 / 3.0).abs() < 0.03, "{share}");
    }

    #[test]
    fn least_request_is_uniform_when_idle() {
        let mut b = build(Policy::LeastRequest, eps(4), 4);
        let mut rng = SplitMix64::new(4);
        let seq = picks(&mut b, 8000, 0.0, &[], None, &mut rng);
        for k in 0..4 {
            let share = count(&seq, k) as f64 / 8000.0;
            assert!((share - 0.25).abs() < 0.03, "{k}: {share}");
        }
    }

    #[test]
    fn least_request_is_uniform_under_equal_load() {
        // Every endpoint equally loaded (3 in flight each): ties all round.
        let mut b = build(Policy::LeastRequest, eps(5), 6);
        let mut rng = SplitMix64::new(6);
        for k in 0..5 {
            for _ in 0..3 {
                b.on_start(k, 0.0);
            }
        }
        let seq = picks(&mut b, 50_000, 0.0, &[], None, &mut rng);
        for k in 0..5 {
            let share = count(&seq, k) as f64 / 50_000.0;
            assert!((share - 0.2).abs() < 0.01, "{k}: {share}");
        }
    }

    #[test]
    fn least_request_weights_scale_load() {
        let endpoints = vec![EndpointInfo::new(0).with_weight(3), EndpointInfo::new(1)];
        let mut b = build(Policy::LeastRequest, endpoints, 4);
        let mut rng = SplitMix64::new(4);
        b.on_start(0, 0.0);
        b.on_start(0, 0.0);
        // (2 + 1) / 3 == (0 + 1) / 1: a tie, either may win
        assert_eq!(
            set(&picks(&mut b, 50, 0.0, &[], None, &mut rng)),
            set(&[0, 1])
        );
        b.on_start(0, 0.0);
        // (3 + 1) / 3 > (0 + 1) / 1
        assert_eq!(set(&picks(&mut b, 50, 0.0, &[], None, &mut rng)), set(&[1]));
    }

    #[derive(PartialEq)]
    struct Pending {
        finish: f64,
        key: u64,
        start: f64,
    }

    impl Eq for Pending {}

    impl Ord for Pending {
        fn cmp(&self, other: &Self) -> Ordering {
            self.finish
                .total_cmp(&other.finish)
                .then(self.key.cmp(&other.key))
                .then(self.start.total_cmp(&other.start))
        }
    }

    impl PartialOrd for Pending {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }

    /// Open-loop load: a request every `step` s; each takes `latency(key, t)`.
    fn simulate(
        b: &mut Balancer,
        latency: impl Fn(u64, f64) -> f64,
        until: f64,
        rng: &mut dyn Random,
    ) -> Vec<(f64, u64)> {
        let step = 0.002;
        let mut pending: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
        let mut log = Vec::new();
        let mut t = 0.0;
        while t < until {
            while pending.peek().is_some_and(|p| p.0.finish <= t) {
                let Reverse(p) = pending.pop().unwrap();
                b.on_finish(p.key, p.finish, p.finish - p.start, true);
            }
            let key = b.pick(t, &[], None, &none, 0, rng).unwrap();
            b.on_start(key, t);
            pending.push(Reverse(Pending {
                finish: t + latency(key, t),
                key,
                start: t,
            }));
            log.push((t, key));
            t += step;
        }
        log
    }

    fn share(log: &[(f64, u64)], key: u64, lo: f64, hi: f64) -> f64 {
        let window: Vec<u64> = log
            .iter()
            .filter(|(t, _)| lo <= *t && *t < hi)
            .map(|&(_, k)| k)
            .collect();
        count(&window, key) as f64 / window.len() as f64
    }

    #[test]
    fn peak_ewma_moves_traffic_away_from_a_slow_endpoint_and_back() {
        let slow = 1;
        let latency = |k: u64, t: f64| {
            if k == slow && (10.0..20.0).contains(&t) {
                0.5
            } else {
                0.010
            }
        };
        let mut b = build(Policy::PeakEwma, eps(3), 7);
        let mut rng = SplitMix64::new(7);
        let log = simulate(&mut b, latency, 60.0, &mut rng);
        let before = share(&log, slow, 0.0, 10.0);
        assert!((before - 1.0 / 3.0).abs() < 0.05, "{before}");
        // Slow from t=10: its first slow answer arrives at 10.5 s; within the
        // next 50 requests (0.1 s) it gets (almost) nothing.
        assert!(share(&log, slow, 10.5, 10.6) <= 0.02);
        assert!(share(&log, slow, 10.6, 20.0) <= 0.01);
        // Fast again from t=20: its 0.5 s peak decays with the 10 s time
        // constant until it is tried again, and then it earns its share back.
        let after = share(&log, slow, 50.0, 60.0);
        assert!((after - 1.0 / 3.0).abs() < 0.05, "{after}");
    }

    #[test]
    fn peak_ewma_prefers_the_faster_endpoint() {
        let mut b = build(Policy::PeakEwma, eps(2), 7);
        let mut rng = SplitMix64::new(7);
        let log = simulate(
            &mut b,
            |k, _| if k == 0 { 0.005 } else { 0.050 },
            5.0,
            &mut rng,
        );
        assert!(share(&log, 0, 1.0, 5.0) > 0.8);
    }

    #[test]
    fn peak_ewma_new_endpoint_is_not_flooded() {
        let mut rng = SplitMix64::new(7);
        let mut b = Balancer::new(Policy::PeakEwma, eps(3), &mut rng).unwrap();
        let log = simulate(&mut b, |_, _| 0.010, 5.0, &mut rng);
        assert!(!log.is_empty());
        b.update(eps(4), &mut rng).unwrap(); // 3 joins
                                             // New requests that do not finish yet: the new endpoint's default
                                             // 30 ms estimate times its growing in-flight count keeps it to a fair share.
        let mut new = 0;
        for _ in 0..40 {
            let key = b.pick(5.0, &[], None, &none, 0, &mut rng).unwrap();
            b.on_start(key, 5.0);
            new += usize::from(key == 3);
        }
        assert!(new <= 12, "{new}");
    }

    #[test]
    fn peak_ewma_fast_failures_are_not_latency_samples() {
        // Twins: both answer in 1 ms, one with successes, one with failures.
        let run = |ok: bool| {
            let mut b = build(Policy::PeakEwma, eps(1), 7);
            for n in 0..100 {
                let t = f64::from(n) * 0.01;
                b.on_start(0, t);
                b.on_finish(0, t + 0.001, 0.001, ok);
            }
            b.stats(0).unwrap()
        };
        let (succeeding, failing) = (run(true), run(false));
        // Failures left the estimate alone: the stamp is still the first start,
        // so reading it applies only the idle decay (as in Python).
        assert_eq!(failing.updated_at, Some(0.0));
        assert_eq!(failing.latency, DEFAULT_RTT);
        let idle = DEFAULT_RTT * (-1.0f64 / DEFAULT_DECAY).exp();
        assert!((failing.latency_at(1.0) - idle).abs() < 1e-15);
        // Successes were samples: the estimate moved toward 1 ms, stamped at the last one.
        assert_eq!(succeeding.updated_at, Some(0.991));
        let pulled = 0.001 + (DEFAULT_RTT - 0.001) * (-0.991f64 / DEFAULT_DECAY).exp();
        assert!(
            (succeeding.latency - pulled).abs() < 1e-9,
            "{}",
            succeeding.latency
        );
        assert_eq!((failing.requests, failing.failures), (100, 100));
    }
}
