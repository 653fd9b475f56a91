//! The sidecar's Prometheus metrics, rendered in the text exposition format.
//!
//! One [`Metrics`] per sidecar (no global registry), served on the admin port
//! at `/metrics`. The names, labels and help texts are the Python sidecar's,
//! unchanged. The hot path pays a few relaxed atomic increments: every
//! counter a request can touch is resolved to an `Arc<Counter>` when the
//! runtime is built, and the maps are only locked to create a child (a rare
//! event: a new label value) or to render a scrape. Gauges for connections,
//! pending and in-flight requests are read from the live clusters at scrape
//! time, not maintained per request.
//!
//! A scrape that accepts `application/openmetrics-text` gets OpenMetrics 1.0
//! instead: the same samples, the counter families named without `_total`,
//! `# EOF` at the end, and exemplars: the request counters of each status
//! class and each latency bucket keep the trace id of the last *sampled*
//! request counted there (a link from a burning SLO to a trace of a bad
//! request). Keeping one costs a short lock, for sampled requests only.
//!
//! Beside each route's counts, the same counts per subset of its split
//! (outbound: how a canary compares with its baseline) and per caller
//! (inbound, the caller known from its certificate): a dependency SLO of
//! one caller, measured at the server.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Seconds. From 0.5 ms (a loopback hop) to 10 s (beyond any sane request timeout).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Seconds a tunnel (a connection switched by a 101) lasted: from a second to four hours.
pub const TUNNEL_BUCKETS: [f64; 8] = [1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14400.0];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Which page a scrape asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text, version 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0, with exemplars.
    OpenMetrics,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names it
    /// (without `q=0`), else the Prometheus text.
    pub fn accepted(accept: &[u8]) -> Format {
        let accept = String::from_utf8_lossy(accept).to_ascii_lowercase();
        let wanted = accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let named = parts.next() == Some("application/openmetrics-text");
            let quality = parts
                .filter_map(|p| p.strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f64>().ok())
                .unwrap_or(1.0);
            named && quality > 0.0
        });
        if wanted {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The last sampled request counted in a cell: its trace id (32 lower-case
/// hex digits), its value (1 on a counter, its latency on a bucket) and when
/// it was counted (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    trace_id: [u8; 32],
    value: f64,
    unix: f64,
}

impl Exemplar {
    fn render(&self, out: &mut String) {
        out.push_str(" # {trace_id=\"");
        out.push_str(std::str::from_utf8(&self.trace_id).unwrap_or("0"));
        let _ = write!(out, "\"}} {} {:.3}", number(self.value), self.unix);
    }
}

/// A trace id as 32 lower-case hex digits, or `None`.
pub fn trace_hex(id: &[u8]) -> Option<[u8; 32]> {
    let id: [u8; 32] = id.try_into().ok()?;
    id.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .then_some(id)
}

/// What a route's counts are split by, beside the route itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dimension {
    /// The subset a split sent the request to (outbound).
    Subset,
    /// The calling service, from its certificate (inbound).
    Caller,
}

impl Dimension {
    fn label(self) -> &'static str {
        match self {
            Dimension::Subset => "subset",
            Dimension::Caller => "caller",
        }
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// For gauges kept in a counter cell (0/1 states): set the value.
    pub fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }
}

/// Whether a [`Family`] is a counter (`_total` suffix) or a gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// A counter or gauge with labels: `family.labels(&["orders"]).inc()`.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    label_names: &'static [&'static str],
    children: Mutex<BTreeMap<Vec<String>, Arc<Counter>>>,
}

impl Family {
    const fn new(
        name: &'static str,
        kind: Kind,
        help: &'static str,
        label_names: &'static [&'static str],
    ) -> Self {
        Family {
            name,
            kind,
            help,
            label_names,
            children: Mutex::new(BTreeMap::new()),
        }
    }

    /// The child for these label values (created at zero on first use). Extra
    /// or missing values are a bug in the caller; they are padded or cut so a
    /// scrape still renders.
    pub fn labels(&self, values: &[&str]) -> Arc<Counter> {
        let mut key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
        key.resize(self.label_names.len(), String::new());
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children.entry(key).or_default().clone()
    }

    fn render(&self, out: &mut String, format: Format) {
        let kind = match self.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let sample = header(out, format, self.name, kind, self.help);
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        for (values, child) in children.iter() {
            out.push_str(&sample);
            labels(out, self.label_names, values, None);
            let _ = writeln!(out, " {}", number(child.get() as f64));
        }
    }
}

/// A family's `# HELP` and `# TYPE` lines; returns the name of its samples.
/// A counter's samples end in `_total`; its family is named so in the
/// Prometheus text, without it in OpenMetrics.
fn header(out: &mut String, format: Format, name: &str, kind: &str, help: &str) -> String {
    let sample = if kind == "counter" {
        format!("{name}_total")
    } else {
        name.to_owned()
    };
    let family = match format {
        Format::OpenMetrics => name,
        Format::Prometheus => &sample,
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
    sample
}

/// A route's counts for one subset or one caller.
type Child = (Dimension, Arc<str>, Arc<RouteMetrics>);

/// Request counts by status class and a latency histogram, for one route.
#[derive(Debug)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    /// [`LATENCY_BUCKETS`] and the route's own bounds (its SLOs' latency
    /// thresholds, exact), sorted; a bucket per bound and one for +Inf.
    bounds: Vec<f64>,
    buckets: Vec<Counter>,
    total_nanos: Counter,
    /// Per status class, then per bucket: the last sampled request counted there.
    exemplars: Mutex<Vec<Option<Exemplar>>>,
    /// The same counts per subset or per caller, made on first use (a
    /// subset of a split, or a caller: a handful each).
    children: Mutex<Vec<Child>>,
    /// The route's protocol switches (rendered once it has opened one).
    pub tunnels: TunnelMetrics,
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics::with_bounds(&[])
    }
}

impl RouteMetrics {
    /// A route's counters, its histogram with these bounds (seconds) beside
    /// the standard ones.
    pub fn with_bounds(extra: &[f64]) -> Self {
        Self::with_exact_bounds(histogram_bounds(extra))
    }

    fn with_exact_bounds(bounds: Vec<f64>) -> Self {
        let buckets = (0..=bounds.len()).map(|_| Counter::default()).collect();
        let cells = STATUS_CLASSES.len() + bounds.len() + 1;
        RouteMetrics {
            by_class: Default::default(),
            bounds,
            buckets,
            total_nanos: Counter::default(),
            exemplars: Mutex::new(vec![None; cells]),
            children: Mutex::new(Vec::new()),
            tunnels: TunnelMetrics::default(),
        }
    }

    /// Count one finished request with its status and latency; `trace`: its
    /// trace id (32 hex digits) when it was sampled, kept as an exemplar.
    pub fn observe(&self, status: u16, seconds: f64, trace: Option<&[u8; 32]>) {
        let index = (status / 100) as usize;
        let class = if (1..=5).contains(&index) {
            index - 1
        } else {
            4
        };
        self.by_class[class].inc();
        // bisect_left: the first bound >= seconds (else the +Inf bucket).
        let bucket = self.bounds.partition_point(|b| *b < seconds);
        self.buckets[bucket].inc();
        self.total_nanos.add((seconds.max(0.0) * 1e9) as u64);
        if let Some(trace_id) = trace {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let mut cells = self.exemplars.lock().unwrap_or_else(|e| e.into_inner());
            let (value, latency) = (1.0, seconds.max(0.0));
            cells[class] = Some(Exemplar {
                trace_id: *trace_id,
                value,
                unix,
            });
            cells[STATUS_CLASSES.len() + bucket] = Some(Exemplar {
                trace_id: *trace_id,
                value: latency,
                unix,
            });
        }
    }

    /// The counts of this route for one subset or one caller (made on first
    /// use, with the route's bounds).
    pub fn child(&self, dimension: Dimension, name: &str) -> Arc<RouteMetrics> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, m)) = children
            .iter()
            .find(|(d, n, _)| *d == dimension && &**n == name)
        {
            return m.clone();
        }
        let made = Arc::new(RouteMetrics::with_exact_bounds(self.bounds.clone()));
        children.push((dimension, name.into(), made.clone()));
        made
    }

    fn children(&self, dimension: Dimension) -> Vec<(Arc<str>, Arc<RouteMetrics>)> {
        let children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        children
            .iter()
            .filter(|(d, _, _)| *d == dimension)
            .map(|(_, n, m)| (n.clone(), m.clone()))
            .collect()
    }

    fn exemplars(&self) -> Vec<Option<Exemplar>> {
        self.exemplars
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The standard bounds with `extra` (finite, positive) merged in, sorted, once each.
fn histogram_bounds(extra: &[f64]) -> Vec<f64> {
    let mut bounds: Vec<f64> = LATENCY_BUCKETS
        .iter()
        .chain(extra.iter().filter(|b| b.is_finite() && **b > 0.0))
        .copied()
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    bounds
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEnd {
    /// The client closed its side (and the upstream then its own), or went away.
    Client,
    /// The upstream closed its side (and the client then its own).
    Upstream,
    /// No byte either way for the tunnel idle timeout.
    Idle,
    /// A read or write failed on either side.
    Error,
    /// The service came to refuse the tunnel's caller (`authorization.refuse`).
    Refused,
}

impl TunnelEnd {
    const ALL: [TunnelEnd; 5] = [
        Self::Client,
        Self::Upstream,
        Self::Idle,
        Self::Error,
        Self::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Upstream => "upstream",
            Self::Idle => "idle",
            Self::Error => "error",
            Self::Refused => "refused",
        }
    }
}

/// The tunnels a route opened: how many are open, their bytes (counted as they
/// flow, so a long WebSocket shows traffic before it closes), how they ended
/// and how long they lasted.
#[derive(Debug, Default)]
pub struct TunnelMetrics {
    opened: Counter,
    closed: [Counter; 5],
    pub to_upstream: Counter,
    pub to_client: Counter,
    buckets: [Counter; TUNNEL_BUCKETS.len() + 1],
    total_nanos: Counter,
}

impl TunnelMetrics {
    pub fn opened(&self) {
        self.opened.inc();
    }

    /// Count one tunnel that ended, after `seconds`.
    pub fn closed(&self, end: TunnelEnd, seconds: f64) {
        let i = TunnelEnd::ALL.iter().position(|e| *e == end).unwrap_or(3);
        self.closed[i].inc();
        self.buckets[TUNNEL_BUCKETS.partition_point(|b| *b < seconds)].inc();
        self.total_nanos.add((seconds.max(0.0) * 1e9) as u64);
    }

    fn open(&self) -> u64 {
        let closed: u64 = self.closed.iter().map(Counter::get).sum();
        self.opened.get().saturating_sub(closed)
    }
}

/// `(direction, destination, route)`: what a route's metrics are keyed by.
const ROUTE_LABELS: &[&str] = &["direction", "destination", "route"];

/// The values of [`ROUTE_LABELS`].
pub type RouteKey = (&'static str, String, String);

/// Open upstream connections, pending and in-flight requests of one destination.
#[derive(Debug, Clone)]
pub struct ClusterGauges {
    pub destination: String,
    pub connections: u64,
    pub pending: u64,
    pub in_flight: u64,
}

/// Every metric a sidecar exports.
#[derive(Debug)]
pub struct Metrics {
    routes: Mutex<Vec<(RouteKey, Arc<RouteMetrics>)>>,
    pub retries: Family,
    pub budget_exhausted: Family,
    pub breaker_state: Family,
    pub breaker_transitions: Family,
    pub ejections: Family,
    pub overflow: Family,
    pub tls_refused: Family,
    pub inbound_connections: Family,
    pub denied: Family,
    pub upstream_tls_failures: Family,
    pub hedges: Family,
    pub rate_limited: Family,
    pub spans: Family,
    pub shed: Family,
    pub admitted: Family,
    pub concurrency_limit: Family,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            routes: Mutex::new(Vec::new()),
            retries: Family::new(
                "seawall_retries",
                Kind::Counter,
                "Retries sent upstream.",
                &["destination"],
            ),
            budget_exhausted: Family::new(
                "seawall_retry_budget_exhausted",
                Kind::Counter,
                "Retries not sent because the retry budget was empty.",
                &["destination"],
            ),
            breaker_state: Family::new(
                "seawall_breaker_state",
                Kind::Gauge,
                "1 for the current state of each destination's circuit breaker, else 0.",
                &["destination", "state"],
            ),
            breaker_transitions: Family::new(
                "seawall_breaker_transitions",
                Kind::Counter,
                "Circuit breaker state transitions.",
                &["destination", "from_state", "to_state"],
            ),
            ejections: Family::new(
                "seawall_outlier_ejections",
                Kind::Counter,
                "Endpoints ejected by outlier detection.",
                &["destination"],
            ),
            overflow: Family::new(
                "seawall_overflow",
                Kind::Counter,
                "Requests refused at once because a pool limit was reached.",
                &["destination", "limit"],
            ),
            tls_refused: Family::new(
                "seawall_inbound_tls_refused",
                Kind::Counter,
                "Inbound connections refused: before any request, plaintext where mTLS is \
                 strict, a failed TLS handshake, or a certificate naming no service of the mesh; \
                 or, at any time, a caller the service refuses (authorization.refuse).",
                &["reason"],
            ),
            inbound_connections: Family::new(
                "seawall_inbound_connections",
                Kind::Counter,
                "Inbound connections served by a sidecar with an identity, by transport \
                 (mtls or plaintext): before a service goes strict, plaintext should stay at zero.",
                &["transport"],
            ),
            denied: Family::new(
                "seawall_inbound_denied",
                Kind::Counter,
                "Inbound requests answered 403 by the service's authorization, by caller \
                 (unauthenticated when plaintext) and the rule that denied them.",
                &["caller", "rule"],
            ),
            upstream_tls_failures: Family::new(
                "seawall_upstream_tls_failures",
                Kind::Counter,
                "Upstream connections that failed TLS: mTLS to another sidecar (the handshake, \
                 or a certificate that is not the destination's), or TLS to an external host \
                 (origin).",
                &["destination", "reason"],
            ),
            hedges: Family::new(
                "seawall_hedges",
                Kind::Counter,
                "Hedged copies of slow idempotent requests, by what became of them: won (its \
                 answer was used), lost (cancelled on the wire when another answered first) or \
                 failed; refused_budget counts copies the retry budget did not allow.",
                &["destination", "outcome"],
            ),
            rate_limited: Family::new(
                "seawall_rate_limited",
                Kind::Counter,
                "Requests refused with 429 by a rate limit: outbound (this caller's limit on a \
                 destination) or inbound (the service's limit per caller).",
                &["destination", "direction"],
            ),
            spans: Family::new(
                "seawall_trace_spans",
                Kind::Counter,
                "Spans of sampled requests, by what became of them: exported, \
                 dropped_queue_full (the export queue was full), dropped_export_failed \
                 (the collector refused the batch or could not be reached) or \
                 dropped_tracing_off (a new config turned tracing off before export).",
                &["outcome"],
            ),
            shed: Family::new(
                "seawall_shed",
                Kind::Counter,
                "Inbound requests shed by the service's concurrency limit (answered 503 with \
                 x-seawall-overloaded: 1), by criticality: the least critical first.",
                &["service", "criticality"],
            ),
            admitted: Family::new(
                "seawall_shedding_admitted",
                Kind::Counter,
                "Inbound requests let through the service's concurrency limit, by criticality.",
                &["service", "criticality"],
            ),
            concurrency_limit: Family::new(
                "seawall_concurrency_limit",
                Kind::Gauge,
                "The inbound concurrency limit now (the adaptive one moves with the app's \
                 latency).",
                &["service"],
            ),
        }
    }

    /// The metrics of one route (created on first use, kept across reloads),
    /// its histogram with `extra_bounds` beside the standard ones. A reload
    /// that changes the bounds starts the route's counters again (Prometheus
    /// reads that as a reset).
    pub fn route(
        &self,
        direction: &'static str,
        destination: &str,
        route: &str,
        extra_bounds: &[f64],
    ) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let found = routes
            .iter_mut()
            .find(|((d, dest, r), _)| *d == direction && dest == destination && r == route);
        if let Some((_, metrics)) = found {
            if metrics.bounds != histogram_bounds(extra_bounds) {
                *metrics = Arc::new(RouteMetrics::with_bounds(extra_bounds));
            }
            return metrics.clone();
        }
        let made = Arc::new(RouteMetrics::with_bounds(extra_bounds));
        routes.push((
            (direction, destination.to_owned(), route.to_owned()),
            made.clone(),
        ));
        made
    }

    fn families(&self) -> [&Family; 16] {
        [
            &self.retries,
            &self.budget_exhausted,
            &self.breaker_state,
            &self.breaker_transitions,
            &self.ejections,
            &self.overflow,
            &self.tls_refused,
            &self.inbound_connections,
            &self.denied,
            &self.upstream_tls_failures,
            &self.hedges,
            &self.rate_limited,
            &self.spans,
            &self.shed,
            &self.admitted,
            &self.concurrency_limit,
        ]
    }

    /// The whole page, in the Prometheus text format (version 0.0.4) or OpenMetrics.
    pub fn render(&self, gauges: &[ClusterGauges], format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        self.render_routes(&mut out, format);
        render_gauges(&mut out, gauges);
        for family in self.families() {
            family.render(&mut out, format);
        }
        if format == Format::OpenMetrics {
            out.push_str("# EOF\n");
        }
        out
    }

    fn render_routes(&self, out: &mut String, format: Format) {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let rows: Vec<_> = routes
            .iter()
            .map(|((dir, dest, route), m)| {
                (
                    vec![(*dir).to_owned(), dest.clone(), route.clone()],
                    m.clone(),
                )
            })
            .collect();
        let requests = Requests {
            counter: "seawall_requests",
            histogram: "seawall_request_duration_seconds",
            help: "Requests finished by the sidecar, by direction, destination, route and status class.",
            names: ROUTE_LABELS,
        };
        requests.render(out, format, &rows, true);
        for (dimension, help) in [
            (
                Dimension::Subset,
                "Outbound requests a route's split sent to a subset, by destination, route, \
                 subset and status class (a canary beside its baseline).",
            ),
            (
                Dimension::Caller,
                "Inbound requests by the calling service (known from its certificate), \
                 destination, route and status class.",
            ),
        ] {
            let label = dimension.label();
            let rows: Vec<_> = routes
                .iter()
                .flat_map(|((_, dest, route), m)| {
                    m.children(dimension).into_iter().map(move |(name, child)| {
                        (vec![dest.clone(), route.clone(), name.to_string()], child)
                    })
                })
                .collect();
            let requests = Requests {
                counter: match dimension {
                    Dimension::Subset => "seawall_subset_requests",
                    Dimension::Caller => "seawall_caller_requests",
                },
                histogram: match dimension {
                    Dimension::Subset => "seawall_subset_request_duration_seconds",
                    Dimension::Caller => "seawall_caller_request_duration_seconds",
                },
                help,
                names: &["destination", "route", label],
            };
            requests.render(out, format, &rows, false);
        }
        Self::render_tunnels(out, &routes, format);
    }

    fn render_tunnels(out: &mut String, routes: &[(RouteKey, Arc<RouteMetrics>)], format: Format) {
        let tunnelled: Vec<_> = routes
            .iter()
            .filter(|(_, m)| m.tunnels.opened.get() > 0)
            .map(|((dir, dest, route), m)| ([(*dir).to_owned(), dest.clone(), route.clone()], m))
            .collect();
        let sample = header(
            out,
            format,
            "seawall_tunnels_open",
            "gauge",
            "Connections switched by a 101 (WebSocket...) and still open, by the route of the \
             request that opened them.",
        );
        for (values, m) in &tunnelled {
            out.push_str(&sample);
            labels(out, ROUTE_LABELS, values, None);
            let _ = writeln!(out, " {}", number(m.tunnels.open() as f64));
        }
        let sample = header(
            out,
            format,
            "seawall_tunnels_closed",
            "counter",
            "Tunnels ended, by what ended them (client, upstream, idle: the tunnel idle \
             timeout, error).",
        );
        for (values, m) in &tunnelled {
            for (end, counter) in TunnelEnd::ALL.iter().zip(&m.tunnels.closed) {
                out.push_str(&sample);
                labels(out, ROUTE_LABELS, values, Some(("closed_by", end.as_str())));
                let _ = writeln!(out, " {}", number(counter.get() as f64));
            }
        }
        let sample = header(
            out,
            format,
            "seawall_tunnel_bytes",
            "counter",
            "Bytes carried by tunnels, to the upstream or to the client, counted as they flow.",
        );
        for (values, m) in &tunnelled {
            for (to, counter) in [
                ("upstream", &m.tunnels.to_upstream),
                ("client", &m.tunnels.to_client),
            ] {
                out.push_str(&sample);
                labels(out, ROUTE_LABELS, values, Some(("to", to)));
                let _ = writeln!(out, " {}", number(counter.get() as f64));
            }
        }
        let name = "seawall_tunnel_duration_seconds";
        header(
            out,
            format,
            name,
            "histogram",
            "How long tunnels lasted, from the 101 to their end.",
        );
        for (values, m) in &tunnelled {
            let h = Histogram {
                bounds: &TUNNEL_BUCKETS,
                buckets: &m.tunnels.buckets,
                total_nanos: &m.tunnels.total_nanos,
                exemplars: &[],
            };
            h.render(out, name, ROUTE_LABELS, values);
        }
    }
}

/// The request counter and latency histogram of a set of rows (routes, or
/// routes by subset or caller).
struct Requests<'a> {
    counter: &'static str,
    histogram: &'static str,
    help: &'static str,
    names: &'a [&'a str],
}

impl Requests<'_> {
    /// `always`: the families' headers even with no row (the route families,
    /// on every page); else only when some row exists.
    fn render(
        &self,
        out: &mut String,
        format: Format,
        rows: &[(Vec<String>, Arc<RouteMetrics>)],
        always: bool,
    ) {
        if rows.is_empty() && !always {
            return;
        }
        let om = format == Format::OpenMetrics;
        let exemplars: Vec<Vec<Option<Exemplar>>> = rows
            .iter()
            .map(|(_, m)| if om { m.exemplars() } else { Vec::new() })
            .collect();
        let sample = header(out, format, self.counter, "counter", self.help);
        for ((values, m), cells) in rows.iter().zip(&exemplars) {
            for (i, (class, counter)) in STATUS_CLASSES.iter().zip(&m.by_class).enumerate() {
                out.push_str(&sample);
                labels(out, self.names, values, Some(("status_class", class)));
                let _ = write!(out, " {}", number(counter.get() as f64));
                if let Some(Some(e)) = cells.get(i) {
                    e.render(out);
                }
                out.push('\n');
            }
        }
        header(
            out,
            format,
            self.histogram,
            "histogram",
            "Time from the request head to the last response byte (to the 101 for a protocol \
             switch), retries included.",
        );
        for ((values, m), cells) in rows.iter().zip(&exemplars) {
            let h = Histogram {
                bounds: &m.bounds,
                buckets: &m.buckets,
                total_nanos: &m.total_nanos,
                exemplars: cells.get(STATUS_CLASSES.len()..).unwrap_or(&[]),
            };
            h.render(out, self.histogram, self.names, values);
        }
    }
}

/// A histogram's cells: a count per bound (the last one +Inf) and the sum;
/// an exemplar per bucket, if any (OpenMetrics only).
struct Histogram<'a> {
    bounds: &'a [f64],
    buckets: &'a [Counter],
    total_nanos: &'a Counter,
    exemplars: &'a [Option<Exemplar>],
}

impl Histogram<'_> {
    fn render(&self, out: &mut String, name: &str, names: &[&str], values: &[String]) {
        let mut running = 0u64;
        for (i, counter) in self.buckets.iter().enumerate() {
            running += counter.get();
            let bound = self.bounds.get(i).map_or("+Inf".to_owned(), |b| number(*b));
            let _ = write!(out, "{name}_bucket");
            labels(out, names, values, Some(("le", &bound)));
            let _ = write!(out, " {}", number(running as f64));
            if let Some(Some(e)) = self.exemplars.get(i) {
                e.render(out);
            }
            out.push('\n');
        }
        let _ = write!(out, "{name}_sum");
        labels(out, names, values, None);
        let _ = writeln!(out, " {}", number(self.total_nanos.get() as f64 / 1e9));
        let _ = write!(out, "{name}_count");
        labels(out, names, values, None);
        let _ = writeln!(out, " {}", number(running as f64));
    }
}

fn render_gauges(out: &mut String, rows: &[ClusterGauges]) {
    type Column = (&'static str, &'static str, fn(&ClusterGauges) -> u64);
    let columns: [Column; 3] = [
        (
            "seawall_upstream_connections",
            "Open upstream connections (idle and busy).",
            |r| r.connections,
        ),
        (
            "seawall_pending_requests",
            "Requests waiting for an upstream connection.",
            |r| r.pending,
        ),
        (
            "seawall_in_flight_requests",
            "Requests being served upstream.",
            |r| r.in_flight,
        ),
    ];
    for (name, help, value) in columns {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for row in rows {
            out.push_str(name);
            labels(
                out,
                &["destination"],
                std::slice::from_ref(&row.destination),
                None,
            );
            let _ = writeln!(out, " {}", number(value(row) as f64));
        }
    }
}

fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn labels(out: &mut String, names: &[&str], values: &[String], extra: Option<(&str, &str)>) {
    if names.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let pairs = names
        .iter()
        .zip(values)
        .map(|(n, v)| (*n, v.as_str()))
        .chain(extra);
    for (name, value) in pairs {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(name);
        out.push_str("=\"");
        escape(out, value);
        out.push('"');
    }
    out.push('}');
}

/// A sample value as Python's `repr(float)` writes it (`1.0`, `0.0005`, `+Inf`).
fn number(value: f64) -> String {
    if value.is_infinite() && value > 0.0 {
        "+Inf".to_owned()
    } else {
        format!("{value:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_routes_histograms_and_families() {
        let m = Metrics::new();
        let r = m.route("outbound", "orders", "default", &[]);
        r.observe(200, 0.0004, None);
        r.observe(503, 0.2, None);
        r.observe(99, 20.0, None); // out of range: counted as 5xx, in +Inf
        m.retries.labels(&["orders"]).inc();
        m.denied.labels(&["a\"b", "rules[0]"]).inc();
        let page = m.render(
            &[ClusterGauges {
                destination: "orders".into(),
                connections: 2,
                pending: 0,
                in_flight: 1,
            }],
            Format::Prometheus,
        );
        assert!(page.contains(
            "seawall_requests_total{direction=\"outbound\",destination=\"orders\",route=\"default\",status_class=\"5xx\"} 2.0"
        ), "{page}");
        assert!(page.contains("le=\"0.0005\"} 1.0"), "{page}");
        assert!(page.contains("le=\"0.25\"} 2.0"), "{page}");
        assert!(page.contains("le=\"+Inf\"} 3.0"), "{page}");
        assert!(page.contains("seawall_retries_total{destination=\"orders\"} 1.0"));
        assert!(page.contains("caller=\"a\\\"b\""));
        assert!(page.contains("seawall_upstream_connections{destination=\"orders\"} 2.0"));
        assert!(page.ends_with('\n'));
    }

    #[test]
    fn a_route_is_created_once() {
        let m = Metrics::new();
        let a = m.route("inbound", "x", "inbound", &[]);
        let b = m.route("inbound", "x", "inbound", &[]);
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn an_slo_threshold_is_an_exact_bound_and_changing_it_starts_again() {
        let m = Metrics::new();
        let r = m.route("inbound", "x", "checkout", &[0.23, 0.25, f64::NAN, -1.0]);
        r.observe(200, 0.2, None);
        r.observe(200, 0.24, None);
        let page = m.render(&[], Format::Prometheus);
        assert!(
            page.contains("route=\"checkout\",le=\"0.23\"} 1.0"),
            "{page}"
        );
        assert!(
            page.contains("route=\"checkout\",le=\"0.25\"} 2.0"),
            "{page}"
        );
        assert_eq!(page.matches("le=\"0.25\"").count(), 1, "{page}"); // once, not twice
                                                                      // the same bounds again: the same counters; other bounds: new ones
        assert!(Arc::ptr_eq(
            &r,
            &m.route("inbound", "x", "checkout", &[0.23])
        ));
        let other = m.route("inbound", "x", "checkout", &[0.3]);
        assert!(!Arc::ptr_eq(&r, &other));
        let page = m.render(&[], Format::Prometheus);
        assert!(
            page.contains("route=\"checkout\",le=\"0.3\"} 0.0"),
            "{page}"
        );
        assert!(!page.contains("le=\"0.23\""), "{page}");
    }

    const TRACE: [u8; 32] = *b"4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let m = Metrics::new();
        m.route("inbound", "x", "inbound", &[])
            .observe(200, 0.01, None);
        m.retries.labels(&["orders"]).inc();
        let page = m.render(&[], Format::OpenMetrics);
        assert!(page.contains("# TYPE seawall_requests counter\n"), "{page}");
        assert!(page.contains("# TYPE seawall_retries counter\n"), "{page}");
        assert!(page.contains("seawall_retries_total{destination=\"orders\"} 1.0\n"));
        assert!(page.contains("# TYPE seawall_request_duration_seconds histogram\n"));
        assert!(page.ends_with("# EOF\n"), "{page}");
        assert!(
            !page.contains(" # {"),
            "no sampled request, no exemplar: {page}"
        );
        let text = m.render(&[], Format::Prometheus);
        assert!(text.contains("# TYPE seawall_requests_total counter\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn a_sampled_request_is_the_exemplar_of_its_class_and_bucket_in_openmetrics_only() {
        let m = Metrics::new();
        let r = m.route("inbound", "gateway", "/checkout", &[0.3]);
        r.observe(503, 0.42, Some(&TRACE));
        r.observe(200, 0.01, None);
        let page = m.render(&[], Format::OpenMetrics);
        let line = |needle: &str| {
            page.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle} not in {page}"))
                .to_owned()
        };
        let errors = line("status_class=\"5xx\"}");
        assert!(
            errors.starts_with(
                "seawall_requests_total{direction=\"inbound\",destination=\"gateway\",\
                 route=\"/checkout\",status_class=\"5xx\"} 1.0 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 1.0 "
            ),
            "{errors}"
        );
        // the bucket it fell in (0.3 < 0.42 <= 0.5) carries it, with its latency
        let bucket = line("le=\"0.5\"}");
        assert!(bucket.contains("} 2.0 # {trace_id=\"4bf9"), "{bucket}");
        assert!(bucket.contains("\"} 0.42 "), "{bucket}");
        assert!(!line("le=\"0.3\"}").contains('#'));
        assert!(!line("status_class=\"2xx\"}").contains('#'));
        assert!(!m.render(&[], Format::Prometheus).contains(" # {"));
    }

    #[test]
    fn subsets_and_callers_are_counted_beside_their_route() {
        let m = Metrics::new();
        let r = m.route("outbound", "orders", "place", &[0.3]);
        r.child(Dimension::Subset, "v2").observe(500, 0.31, None);
        assert!(Arc::ptr_eq(
            &r.child(Dimension::Subset, "v2"),
            &r.child(Dimension::Subset, "v2")
        ));
        let i = m.route("inbound", "payments", "inbound", &[]);
        i.child(Dimension::Caller, "orders")
            .observe(200, 0.01, None);
        let page = m.render(&[], Format::Prometheus);
        assert!(page.contains(
            "seawall_subset_requests_total{destination=\"orders\",route=\"place\",subset=\"v2\",status_class=\"5xx\"} 1.0"
        ), "{page}");
        // the subset's histogram has the route's SLO bound
        assert!(page.contains(
            "seawall_subset_request_duration_seconds_bucket{destination=\"orders\",route=\"place\",subset=\"v2\",le=\"0.3\"} 0.0"
        ), "{page}");
        assert!(page.contains(
            "seawall_caller_requests_total{destination=\"payments\",route=\"inbound\",caller=\"orders\",status_class=\"2xx\"} 1.0"
        ), "{page}");
        // a page with neither has no such family
        assert!(!Metrics::new()
            .render(&[], Format::Prometheus)
            .contains("seawall_subset_requests"));
    }

    #[test]
    fn accept_headers_choose_the_format() {
        for (accept, format) in [
            (
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                Format::OpenMetrics,
            ),
            (
                "application/openmetrics-text; version=0.0.1; q=0.75",
                Format::OpenMetrics,
            ),
            ("application/openmetrics-text;q=0", Format::Prometheus),
            ("text/plain", Format::Prometheus),
            ("*/*", Format::Prometheus),
            ("", Format::Prometheus),
        ] {
            assert_eq!(Format::accepted(accept.as_bytes()), format, "{accept}");
        }
        assert_eq!(trace_hex(b"4BF92F3577B34DA6A3CE929D0E0E4736"), None);
        assert_eq!(trace_hex(b"4bf9"), None);
    }
}
