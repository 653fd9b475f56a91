//! From a spec to the objects that serve requests.
//!
//! [`Runtime::build`] turns a [`Spec`] into a cluster and a route table per
//! destination, each route's policy assembled in [`RoutePolicy::new`], top to
//! bottom, one step per concern. A reload builds a new runtime
//! ([`Runtime::next`]) and swaps it in whole: a request keeps the routes it
//! started with, so no request ever sees half a route table. The clusters, which
//! hold the state (breakers, budgets, ejections, balancer estimates, bulkheads,
//! pools), are kept across versions and changed in place, each policy keeping
//! what the change leaves meaningful. An endpoint update changes them in place
//! too ([`Runtime::set_endpoints`]).
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use seawall_policy::backoff::{Backoff, Jitter};
use seawall_policy::rng::Random;
use seawall_policy::split::WeightedSplit;

use crate::authz::Authorizer;
use crate::clock::Clock;
use crate::cluster::{Cluster, Plan, Reset};
use crate::events::Events;
use crate::metrics::{Dimension, Metrics, RouteMetrics};
use crate::route::{Route, RouteTable};
use crate::spec::{self, Spec};

/// A spec that is well-formed but cannot be served.
#[derive(Debug)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// When and how a route retries.
#[derive(Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    /// Retried status codes, as a bitset over 0..640.
    pub statuses: StatusSet,
    /// The connection failed after it was made, before a response head (or the per-try timeout).
    pub on_reset: bool,
    /// No connection could be made.
    pub on_connect_failure: bool,
    pub backoff: Backoff,
    /// Methods that may be sent more than once.
    pub methods: Vec<http::Method>,
}

impl RetryPolicy {
    fn new(r: &spec::Retry) -> Result<Self, BuildError> {
        let jitter = match r.backoff.jitter {
            spec::Jitter::None => Jitter::None,
            spec::Jitter::Full => Jitter::Full,
            spec::Jitter::Equal => Jitter::Equal,
            spec::Jitter::Decorrelated => Jitter::Decorrelated,
        };
        let backoff = Backoff::new(jitter, r.backoff.base, r.backoff.max)
            .map_err(|e| BuildError(format!("retry backoff: {e}")))?;
        let methods = r
            .methods
            .iter()
            .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
            .collect();
        Ok(RetryPolicy {
            attempts: r.attempts.max(1),
            statuses: StatusSet::of(&r.statuses),
            on_reset: r.on_reset,
            on_connect_failure: r.on_connect_failure,
            backoff,
            methods,
        })
    }

    /// The wait before the retry that follows attempt `attempt` (1-based).
    pub fn backoff_delay(&self, attempt: u32, rng: &mut dyn Random) -> f64 {
        let n = std::num::NonZeroU32::new(attempt).unwrap_or(std::num::NonZeroU32::MIN);
        self.backoff.delay(n, 0.0, rng)
    }
}

/// A set of HTTP status codes (100..=639), one bit each.
#[derive(Debug, Clone, Default)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    pub fn of(statuses: &[u16]) -> Self {
        let mut set = StatusSet::default();
        for s in statuses {
            let s = *s as usize;
            if s < 640 {
                set.0[s / 64] |= 1 << (s % 64);
            }
        }
        set
    }

    pub fn contains(&self, status: u16) -> bool {
        let s = status as usize;
        s < 640 && self.0[s / 64] & (1 << (s % 64)) != 0
    }
}

/// Everything the forwarder needs to know about one route.
#[derive(Debug)]
pub struct RoutePolicy {
    pub name: String,
    /// The whole request, retries included.
    pub timeout: f64,
    pub per_try_timeout: Option<f64>,
    /// Longest silence from the upstream on a request in flight.
    pub idle_timeout: Option<f64>,
    pub retry: RetryPolicy,
    pub split: Option<WeightedSplit>,
    pub mirror: Option<spec::Mirror>,
    pub fault: Option<spec::Fault>,
    /// Protocols an Upgrade may switch to (lower case); empty: none.
    pub upgrades: Vec<String>,
    /// Longest a tunnel may carry no byte either way.
    pub tunnel_idle_timeout: f64,
    /// Copies of a slow idempotent request (`None`: not hedged).
    pub hedge: Option<spec::Hedge>,
    /// Where this route's finished requests are counted.
    pub metrics: Arc<RouteMetrics>,
    /// The split's subsets, each with where its requests are counted.
    pub subsets: Vec<(String, Arc<RouteMetrics>)>,
    /// The criticality of its requests that carry none.
    pub criticality: Option<seawall_policy::shed::Criticality>,
}

impl RoutePolicy {
    /// One route's behaviour, read top to bottom (the forwarder applies it in this order).
    fn new(
        dest: &spec::Destination,
        route: Option<&spec::Route>,
        metrics: Arc<RouteMetrics>,
    ) -> Result<Self, BuildError> {
        let name = route.map_or(if dest.inbound { "inbound" } else { "default" }, |r| {
            &r.name
        });
        let split = match route.and_then(|r| r.split.as_ref()) {
            None => None,
            Some(weights) => Some(
                WeightedSplit::new(weights.iter().map(|(n, w)| (n.clone(), *w)))
                    .map_err(|e| BuildError(format!("route {name}: split: {e}")))?,
            ),
        };
        Ok(RoutePolicy {
            name: name.to_owned(),
            // 1. the request timeout covers every attempt (the route's, else the destination's)
            timeout: route.map_or(dest.timeout, |r| r.timeout),
            // 2. each attempt may have its own, shorter timeout
            per_try_timeout: dest.per_try_timeout,
            // ... and the upstream may stay silent at most this long (head or body)
            idle_timeout: dest.idle_timeout,
            // 3. retries: conditions, backoff, methods (the budget is per destination)
            retry: RetryPolicy::new(route.map_or(&dest.retry, |r| &r.retry))?,
            // 4. traffic decisions: split, mirror, faults
            split,
            mirror: route.and_then(|r| r.mirror.clone()),
            fault: route.and_then(|r| r.fault.clone()),
            // 5. which protocol switches are tunnelled
            upgrades: route
                .map_or(&dest.upgrades, |r| &r.upgrades)
                .iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            // ... and how long a tunnel may stay silent
            tunnel_idle_timeout: dest.tunnel_idle_timeout,
            // 6. hedged copies of a slow request (on the destination's budget)
            hedge: dest.hedge.clone(),
            // 7. how much its requests matter under overload (checked with the spec)
            criticality: route
                .and_then(|r| r.criticality.as_deref())
                .and_then(seawall_policy::shed::Criticality::parse),
            subsets: route
                .and_then(|r| r.split.as_ref())
                .map(|weights| {
                    weights
                        .iter()
                        .map(|(n, _)| (n.clone(), metrics.child(Dimension::Subset, n)))
                        .collect()
                })
                .unwrap_or_default(),
            metrics,
        })
    }
}

/// One service this sidecar sends requests to (or, inbound, its own app).
#[derive(Debug)]
pub struct Destination {
    pub name: String,
    pub cluster: Arc<Cluster>,
    pub routes: RouteTable<RoutePolicy>,
    /// The Host its requests carry, whatever the app sent (an external service).
    pub authority: Option<http::HeaderValue>,
}

impl Destination {
    /// The routes of `spec` over `cluster` (new, or kept from the runtime before).
    fn with_cluster(
        spec: &spec::Destination,
        cluster: Arc<Cluster>,
        metrics: &Arc<Metrics>,
    ) -> Result<Self, BuildError> {
        let direction = if spec.inbound { "inbound" } else { "outbound" };
        let mut routes = Vec::with_capacity(spec.routes.len());
        for r in &spec.routes {
            let m = metrics.route(direction, &spec.name, &r.name, &spec.latency_bounds);
            let policy = RoutePolicy::new(spec, Some(r), m)?;
            routes.push(Route::new(&r.name, &r.matcher, policy).map_err(|e| BuildError(e.0))?);
        }
        let default_name = if spec.inbound { "inbound" } else { "default" };
        let m = metrics.route(direction, &spec.name, default_name, &spec.latency_bounds);
        let default = Route::any(RoutePolicy::new(spec, None, m)?);
        let authority = match &spec.authority {
            None => None,
            Some(a) => Some(http::HeaderValue::from_str(a).map_err(|_| {
                BuildError(format!(
                    "{}: authority {a:?} is not a Host value",
                    spec.name
                ))
            })?),
        };
        Ok(Destination {
            name: spec.name.clone(),
            authority,
            cluster,
            routes: RouteTable::new(routes, default),
        })
    }
}

/// The most fields a sidecar adds to a request it forwards: Via,
/// X-Forwarded-For, x-request-id, traceparent, tracestate, x-seawall-peer,
/// x-seawall-deadline-ms, x-seawall-attempt, Host (for HTTP/1.0) and its
/// framing field are ten; the rest is room for a chain of gateways.
pub const MESH_ROOM_FIELDS: usize = 16;

/// The most bytes those fields take: a SPIFFE id of up to 2 KiB aside,
/// about 400 bytes; 4 KiB leaves room for a long identity.
pub const MESH_ROOM_BYTES: usize = 4096;

/// The effective config of one sidecar, ready to serve.
#[derive(Debug)]
pub struct Runtime {
    pub spec: Spec,
    pub service: String,
    pub destinations: HashMap<String, Arc<Destination>>,
    pub inbound: Arc<Destination>,
    /// `None`: every inbound request is allowed (nothing to ask).
    pub authz: Option<Authorizer>,
    /// The head limits of the mesh (`limits` in mesh.yaml), for a request
    /// from a client (outbound, and the control endpoints).
    pub limits: seawall_h1::Limits,
    /// The same limits with room for what the caller's sidecar added
    /// ([`MESH_ROOM_FIELDS`], [`MESH_ROOM_BYTES`]), for inbound requests: a
    /// request within the limits when its client sent it is within them at
    /// every hop.
    pub inbound_limits: seawall_h1::Limits,
    pub retry_buffer: usize,
    pub metrics: Arc<Metrics>,
    /// What the operators are told (breakers, ejections, budgets, swaps).
    pub events: Arc<Events>,
    pub clock: Clock,
    /// Calls to hosts outside the mesh (`None`: the spec has no `egress`).
    pub external: Option<External>,
    /// Where sampled requests' spans go (`None`: tracing is off); the
    /// sidecar sets it ([`crate::sidecar`]), one tracer for every version.
    pub tracer: Option<Arc<crate::spans::Tracer>>,
    /// Head sampling of the traces started here, from 0 to 1.
    pub sample: f64,
}

/// The most external `host:port` destinations kept built at once (their
/// pools with them); past it the set is dropped and built again as used.
const MAX_EXTERNAL: usize = 1024;

/// The label of the external hosts past `egress.metric_hosts` (not a valid
/// service name, so it never collides with one).
pub const OTHER_HOSTS: &str = "(other)";

/// Calls to hosts outside the mesh: `egress` in mesh.yaml. Each `host:port`
/// becomes a destination of its own, with the egress policy, the first time
/// it is called.
#[derive(Debug)]
pub struct External {
    pub mode: spec::EgressMode,
    pub max_tunnels: usize,
    pub tunnel_idle_timeout: f64,
    policy: spec::Destination,
    metric_hosts: usize,
    limits: spec::Limits,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    clock: Clock,
    built: std::sync::Mutex<HashMap<String, Arc<Destination>>>,
    /// Hosts with metric labels of their own, in the order first seen.
    labelled: std::sync::Mutex<Vec<String>>,
    /// CONNECT tunnels open (kept across config versions).
    tunnels: Arc<AtomicUsize>,
}

/// A CONNECT tunnel counted against `egress.max_tunnels` until dropped.
#[derive(Debug)]
pub struct TunnelSlot(Arc<AtomicUsize>);

impl Drop for TunnelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl External {
    fn new(
        egress: &spec::Egress,
        limits: &spec::Limits,
        metrics: &Arc<Metrics>,
        events: &Arc<Events>,
        clock: Clock,
        tunnels: Arc<AtomicUsize>,
    ) -> Result<Self, BuildError> {
        let external = External {
            mode: egress.mode,
            max_tunnels: egress.max_tunnels,
            tunnel_idle_timeout: egress.tunnel_idle_timeout,
            policy: egress.policy.clone(),
            metric_hosts: egress.metric_hosts,
            limits: limits.clone(),
            metrics: metrics.clone(),
            events: events.clone(),
            clock,
            built: std::sync::Mutex::new(HashMap::new()),
            labelled: std::sync::Mutex::new(Vec::new()),
            tunnels,
        };
        // the policy is checked once, here, on a host that needs no lookup
        // (counted in metrics of its own, thrown away: no series for it)
        external.build_in(&Arc::new(Metrics::new()), "127.0.0.1", 80, "egress")?;
        Ok(external)
    }

    /// A slot for one more CONNECT tunnel, or `None` at `max_tunnels`.
    pub fn open_tunnel(&self) -> Option<TunnelSlot> {
        let open = self.tunnels.fetch_add(1, Ordering::AcqRel);
        let slot = TunnelSlot(self.tunnels.clone());
        (open < self.max_tunnels).then_some(slot)
    }

    /// CONNECT tunnels open now.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::Acquire)
    }

    /// The destination of `host:port` (built the first time).
    pub fn destination(&self, host: &str, port: u16) -> Result<Arc<Destination>, BuildError> {
        let key = format!("{host}:{port}");
        if let Some(d) = lock(&self.built).get(&key) {
            return Ok(d.clone());
        }
        let built = Arc::new(self.build(host, port, &self.label(host))?);
        let mut all = lock(&self.built);
        if all.len() >= MAX_EXTERNAL {
            all.clear();
        }
        Ok(all.entry(key).or_insert(built).clone())
    }

    fn build(&self, host: &str, port: u16, label: &str) -> Result<Destination, BuildError> {
        self.build_in(&self.metrics, host, port, label)
    }

    fn build_in(
        &self,
        metrics: &Arc<Metrics>,
        host: &str,
        port: u16,
        label: &str,
    ) -> Result<Destination, BuildError> {
        let mut spec = self.policy.clone();
        spec.name = label.to_owned();
        spec.inbound = false;
        spec.mesh = false;
        spec.external = true;
        spec.endpoints = vec![spec::Endpoint {
            address: host.to_owned(),
            port,
            subset: None,
            weight: 1,
        }];
        let cluster = Cluster::new(&spec, metrics, &self.events, self.clock, &self.limits)?;
        Destination::with_cluster(&spec, Arc::new(cluster), metrics)
    }

    /// `host` as a metric label: itself for the first `metric_hosts` hosts,
    /// [`OTHER_HOSTS`] for the rest.
    fn label(&self, host: &str) -> String {
        let mut labelled = lock(&self.labelled);
        if labelled.iter().any(|h| h == host) {
            return host.to_owned();
        }
        if labelled.len() < self.metric_hosts {
            labelled.push(host.to_owned());
            return host.to_owned();
        }
        OTHER_HOSTS.to_owned()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runtime {
    /// Whether this service refuses connections from `caller`
    /// (`authorization.refuse`); if so, the refusal is counted and told.
    /// `at` says where: `handshake`, or `request` for a connection opened before.
    pub fn refuses(&self, caller: Option<&str>, at: &'static str) -> bool {
        let refused = self.authz.as_ref().is_some_and(|a| a.refuses(caller));
        if refused {
            self.metrics.tls_refused.labels(&["caller"]).inc();
            self.events.emit(
                "connection_refused",
                &self.service,
                &[
                    ("caller", caller.unwrap_or_default().into()),
                    ("at", at.into()),
                ],
            );
        }
        refused
    }

    /// Build every destination of `spec`.
    pub fn build(
        spec: Spec,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
        clock: Clock,
    ) -> Result<Runtime, BuildError> {
        Ok(Self::next(spec, metrics, events, clock, None)?.0)
    }

    /// Build the runtime of a new spec that follows `prev` (a reload, a new
    /// version from the control plane): each destination that `prev` has
    /// too keeps its cluster, changed in place ([`Cluster::apply`]), so its
    /// breaker, retry budget, outlier ejections, balancer estimates, bulkhead
    /// and pooled connections carry on; its routes are built anew. Returns
    /// the state that could not be kept, and why.
    ///
    /// Everything that can fail is checked before any cluster changes: an
    /// error leaves `prev` exactly as it was.
    pub fn next(
        spec: Spec,
        metrics: Arc<Metrics>,
        events: Arc<Events>,
        clock: Clock,
        prev: Option<&Runtime>,
    ) -> Result<(Runtime, Vec<Reset>), BuildError> {
        let mut resets = Vec::new();
        let mut plans: Vec<(Arc<Cluster>, Plan)> = Vec::new();
        let mut cluster_for = |d: &spec::Destination,
                               before: Option<&Arc<Destination>>|
         -> Result<Arc<Cluster>, BuildError> {
            if let Some(before) = before {
                match before.cluster.plan(d, &spec.limits)? {
                    Ok(plan) => {
                        plans.push((before.cluster.clone(), plan));
                        return Ok(before.cluster.clone());
                    }
                    Err(reason) => resets.push(Reset {
                        cluster: before.cluster.name.clone(),
                        what: "everything",
                        reason,
                    }),
                }
            }
            Ok(Arc::new(Cluster::new(
                d,
                &metrics,
                &events,
                clock,
                &spec.limits,
            )?))
        };
        let mut destinations = HashMap::with_capacity(spec.destinations.len());
        for d in &spec.destinations {
            let before = prev.and_then(|p| p.destinations.get(&d.name));
            let cluster = cluster_for(d, before)?;
            let built = Destination::with_cluster(d, cluster, &metrics)?;
            destinations.insert(d.name.clone(), Arc::new(built));
        }
        let before = prev.map(|p| &p.inbound);
        let cluster = cluster_for(&spec.inbound, before)?;
        let inbound = Arc::new(Destination::with_cluster(&spec.inbound, cluster, &metrics)?);
        let external = match &spec.egress {
            Some(egress) => Some(External::new(
                egress,
                &spec.limits,
                &metrics,
                &events,
                clock,
                // the tunnels open now stay counted under the new version
                prev.and_then(|p| p.external.as_ref())
                    .map_or_else(Arc::default, |e| e.tunnels.clone()),
            )?),
            None => None,
        };
        // every check has passed: change the clusters kept
        for (cluster, plan) in plans {
            resets.extend(cluster.apply(plan));
        }
        if let Some(prev) = prev {
            let mut gone: Vec<&String> = prev
                .destinations
                .keys()
                .filter(|n| !destinations.contains_key(*n))
                .collect();
            gone.sort();
            for name in gone {
                resets.push(Reset {
                    cluster: name.clone(),
                    what: "everything",
                    reason: "no longer a destination of this service".into(),
                });
            }
        }
        let lim = &spec.limits;
        let limits = seawall_h1::Limits {
            max_request_line: lim.max_request_line,
            max_headers: lim.max_header_count,
            max_header_bytes: lim.max_header_bytes,
            max_body: lim.max_body_bytes,
            ..seawall_h1::Limits::DEFAULT
        };
        let inbound_limits = seawall_h1::Limits {
            max_headers: limits.max_headers.saturating_add(MESH_ROOM_FIELDS),
            max_header_bytes: limits.max_header_bytes.saturating_add(MESH_ROOM_BYTES),
            ..limits
        };
        let sample = spec.tracing.as_ref().map_or(0.0, |t| t.sample);
        let runtime = Runtime {
            external,
            tracer: None,
            sample,
            service: spec.service.clone(),
            authz: spec.authorization.as_ref().map(Authorizer::new),
            retry_buffer: lim.retry_buffer_bytes,
            limits,
            inbound_limits,
            destinations,
            inbound,
            metrics,
            events,
            clock,
            spec,
        };
        Ok((runtime, resets))
    }

    /// Replace the endpoint sets in place (a control-plane push with the same config):
    /// a destination missing from `endpoints` has none. An external service's
    /// endpoint is its declared host, never pushed: it is left as it is.
    pub fn set_endpoints(&self, endpoints: &HashMap<String, Vec<spec::Endpoint>>) {
        for (name, dest) in &self.destinations {
            if dest.cluster.external {
                continue;
            }
            let set = endpoints.get(name).map(Vec::as_slice).unwrap_or(&[]);
            dest.cluster.set_endpoints(set);
        }
    }

    /// The clusters, outbound then inbound.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        let mut names: Vec<&String> = self.destinations.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|n| self.destinations.get(n))
            .map(|d| &d.cluster)
            .chain(std::iter::once(&self.inbound.cluster))
    }

    /// Close idle pooled connections that are closed or past their idle timeout.
    pub fn sweep(&self) {
        for c in self.clusters() {
            c.pool.sweep();
        }
    }

    /// Close every idle pooled connection (exchanges in flight carry on).
    pub fn close(&self) {
        for c in self.clusters() {
            c.pool.close_idle();
        }
    }

    /// Close the pooled connections of the clusters `successor` does not
    /// keep (called when it replaced this runtime).
    pub fn retire(&self, successor: &Runtime) {
        for c in self.clusters() {
            if !successor.clusters().any(|kept| Arc::ptr_eq(kept, c)) {
                c.pool.close_idle();
            }
        }
    }
}
