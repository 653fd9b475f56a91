//! The spec: the validated config as the core receives it from Python.
//!
//! `seawall.proxy.spec` (Python) builds this document from mesh.yaml, once,
//! with every default filled in and every merge done; here it is only
//! deserialised into typed structs. A field the core does not know is an
//! error, so a mismatch between the two halves shows at once.
//!
//! What the types cannot say is checked once, in [`Spec::validate`], before
//! anything is built from the document: every duration is a finite number of
//! seconds from 0 to [`MAX_DURATION`]. A duration becomes a
//! `std::time::Duration` or a deadline on the monotonic clock deep in the
//! request path, where a negative or enormous value would panic (and the
//! release profile aborts on a panic: the whole sidecar would go down).
use std::collections::BTreeMap;

use serde::Deserialize;

/// The shape version this core reads (`SPEC_VERSION` in Python).
pub const SPEC_VERSION: u32 = 1;

/// The longest duration a spec may hold, in seconds: 365 days.
///
/// Far beyond any useful timeout, and far below what the clock arithmetic
/// can hold (`now + timeout` as a monotonic `Instant`, or as milliseconds in
/// `x-seawall-deadline-ms`), so no duration from the config can overflow it.
pub const MAX_DURATION: f64 = 365.0 * 86_400.0;

/// A spec that could not be read.
#[derive(Debug)]
pub struct SpecError(pub String);

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid sidecar spec: {}", self.0)
    }
}

impl std::error::Error for SpecError {}

/// One sidecar: its listeners, limits, inbound app and destinations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub version: u32,
    pub mesh: String,
    pub trust_domain: String,
    pub service: String,
    pub digest: String,
    pub listeners: Listeners,
    pub limits: Limits,
    pub access_log: bool,
    pub drain_grace: f64,
    pub mtls: MtlsMode,
    pub authorization: Option<Authorization>,
    pub inbound: Destination,
    pub destinations: Vec<Destination>,
    /// The whole config for the admin `/config` page (served as it is).
    pub config: serde_json::Value,
    /// The config's version: the control plane's, or (static) how many
    /// configs this sidecar has run. Shown by `/config`.
    #[serde(default)]
    pub config_version: u64,
    /// The settings of this config that wait for a restart (listener
    /// addresses, workers), as Python found them. Shown by `/config`.
    #[serde(default)]
    pub restart_needed: Vec<String>,
    /// Calls to hosts outside the mesh (`None`: refused as unknown
    /// destinations, 502).
    #[serde(default)]
    pub egress: Option<Egress>,
    /// Spans of the requests served (`None`: none are recorded).
    #[serde(default)]
    pub tracing: Option<Tracing>,
}

/// `tracing` in mesh.yaml, for this sidecar.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tracing {
    /// The OTLP/HTTP traces URL (`http://`).
    pub endpoint: String,
    /// Head sampling of the traces started here, from 0 to 1.
    pub sample: f64,
    /// Spans waiting for export; beyond it they are dropped and counted.
    pub queue: usize,
    /// Spans per export request, at most.
    pub batch: usize,
    /// Seconds a span waits at most for its batch to fill.
    pub interval: f64,
    /// The resource's attributes besides `service.name` (strings).
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
}

/// `egress` in mesh.yaml: calls through the outbound proxy to a host that is
/// not a mesh service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Egress {
    pub mode: EgressMode,
    /// CONNECT tunnels open at once.
    pub max_tunnels: usize,
    /// Seconds a CONNECT tunnel may carry no byte either way.
    pub tunnel_idle_timeout: f64,
    /// External hosts with metric labels of their own; the rest are `other`.
    pub metric_hosts: usize,
    /// The policy of every external host (its name and endpoints are filled
    /// in per host).
    pub policy: Destination,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressMode {
    /// To the host named, resolved by DNS (Istio's ALLOW_ANY).
    AllowAny,
    /// Refused: 403.
    RegistryOnly,
}

impl Spec {
    /// Parse and check a spec document.
    pub fn from_json(text: &str) -> Result<Spec, SpecError> {
        let spec: Spec = serde_json::from_str(text).map_err(|e| SpecError(e.to_string()))?;
        if spec.version != SPEC_VERSION {
            return Err(SpecError(format!(
                "version {} (this core reads version {SPEC_VERSION}: rebuild the package)",
                spec.version
            )));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Check what the types do not: every duration (see [`MAX_DURATION`]).
    /// The error names the field by its path, destinations and routes by
    /// name: `destinations.payments.timeout: -1 is not a duration (...)`.
    pub fn validate(&self) -> Result<(), SpecError> {
        duration("drain_grace", self.drain_grace)?;
        let l = &self.limits;
        duration("limits.header_timeout", l.header_timeout)?;
        duration("limits.body_timeout", l.body_timeout)?;
        duration("limits.idle_timeout", l.idle_timeout)?;
        self.inbound.validate("inbound")?;
        for d in &self.destinations {
            d.validate(&format!("destinations.{}", d.name))?;
        }
        if let Some(e) = &self.egress {
            duration("egress.tunnel_idle_timeout", e.tunnel_idle_timeout)?;
            e.policy.validate("egress.policy")?;
        }
        if let Some(t) = &self.tracing {
            duration("tracing.interval", t.interval)?;
            if !(0.0..=1.0).contains(&t.sample) {
                return Err(SpecError(format!(
                    "tracing.sample: {} is not a probability (0 to 1)",
                    t.sample
                )));
            }
            if t.queue == 0 || t.batch == 0 {
                return Err(SpecError(
                    "tracing.queue and tracing.batch must be at least 1".into(),
                ));
            }
            if !t.endpoint.starts_with("http://") {
                return Err(SpecError(format!(
                    "tracing.endpoint: {:?}: the sidecar exports over http:// only",
                    t.endpoint
                )));
            }
        }
        Ok(())
    }
}

/// `value` is a duration the core can use: finite, >= 0, at most
/// [`MAX_DURATION`] (NaN and the infinities are outside the range).
fn duration(path: &str, value: f64) -> Result<(), SpecError> {
    if (0.0..=MAX_DURATION).contains(&value) {
        return Ok(());
    }
    // -1 as "-1", 0.5 as "0.5", 1e300 as "1e300" (not 301 digits)
    let shown = if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value}")
    } else {
        format!("{value:?}")
    };
    Err(SpecError(format!(
        "{path}: {shown} is not a duration (seconds >= 0, finite, at most 365 days)"
    )))
}

fn optional_duration(path: &str, value: Option<f64>) -> Result<(), SpecError> {
    value.map_or(Ok(()), |v| duration(path, v))
}

/// `(host, port)`.
pub type Address = (String, u16);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listeners {
    pub inbound: Address,
    pub outbound: Address,
    pub admin: Address,
    /// One listener per destination: a plain HTTP port that always goes there.
    pub upstreams: std::collections::BTreeMap<String, Address>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub max_body_bytes: Option<u64>,
    pub retry_buffer_bytes: usize,
    pub header_timeout: f64,
    pub body_timeout: f64,
    pub idle_timeout: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    Strict,
    Permissive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    pub default_allow: bool,
    pub require_peer: bool,
    pub rules: Vec<AuthzRule>,
    /// Services whose connections are closed right after the handshake
    /// (`authorization.refuse`), before any request is read.
    #[serde(default)]
    pub refuse: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthzRule {
    pub name: String,
    pub allow: bool,
    pub any_authenticated: bool,
    pub callers: Option<Vec<String>>,
    pub methods: Option<Vec<String>>,
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
    pub subset: Option<String>,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadBalancer {
    RoundRobin,
    LeastRequest,
    PeakEwma,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    pub name: String,
    pub inbound: bool,
    pub mesh: bool,
    /// A host outside the mesh (egress): a name that does not resolve is a
    /// 502 at once, not a connect failure to retry elsewhere.
    #[serde(default)]
    pub external: bool,
    pub endpoints: Vec<Endpoint>,
    pub load_balancer: LoadBalancer,
    pub timeout: f64,
    pub per_try_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    /// Seconds a new upstream connection may take (TCP and the mTLS handshake).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: f64,
    /// Protocols an Upgrade may switch to (lower case), for requests no route matches.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// Seconds a tunnel (after a 101) may carry no byte either way before it is closed.
    #[serde(default = "default_tunnel_idle_timeout")]
    pub tunnel_idle_timeout: f64,
    pub retry: Retry,
    pub budget: Option<Budget>,
    pub breaker: Option<Breaker>,
    pub outlier: Option<Outlier>,
    pub bulkhead: Bulkhead,
    pub routes: Vec<Route>,
    /// TLS originated to the endpoints (an `external:` service with `tls: true`).
    #[serde(default)]
    pub tls: Option<OriginTls>,
    /// The Host every request to it carries (an external service: its real
    /// host, not the mesh's name for it).
    #[serde(default)]
    pub authority: Option<String>,
    /// Copies of a slow idempotent request (`policies.X.hedge`).
    #[serde(default)]
    pub hedge: Option<Hedge>,
    /// Outbound: one bucket for the calls to this destination; inbound: a
    /// bucket per caller identity (`services.X.rate_limit`).
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Latency thresholds (seconds) of the SLOs measured here: exact bounds
    /// of its routes' histograms, beside the standard ones.
    #[serde(default)]
    pub latency_bounds: Vec<f64>,
    /// Inbound: the concurrency limit in front of the app, shedding the
    /// least critical first (`services.X.shedding`).
    #[serde(default)]
    pub shedding: Option<Shedding>,
}

/// `services.X.shedding`: a fixed `limit`, or (when it is `None`) the
/// adaptive gradient's settings; the queue's length and longest wait.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shedding {
    pub limit: Option<usize>,
    pub initial_limit: f64,
    pub min_limit: f64,
    pub max_limit: f64,
    pub smoothing: f64,
    pub tolerance: f64,
    pub long_window: u32,
    pub warmup: u32,
    pub max_waiting: usize,
    pub max_wait: f64,
}

impl Shedding {
    /// The shedder's settings.
    pub fn config(&self) -> seawall_policy::shed::ShedConfig {
        use seawall_policy::shed::{Gradient, Limit, ShedConfig};
        ShedConfig {
            limit: match self.limit {
                Some(n) => Limit::Fixed(n),
                None => Limit::Gradient(Gradient {
                    initial: self.initial_limit,
                    min: self.min_limit,
                    max: self.max_limit,
                    smoothing: self.smoothing,
                    tolerance: self.tolerance,
                    long_window: self.long_window,
                    warmup: self.warmup,
                }),
            },
            max_waiting: self.max_waiting,
            max_wait: self.max_wait,
        }
    }
}

/// TLS to an external host: its certificate must name `server_name` and
/// chain to the roots in `ca_file` (`None`: the system's).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginTls {
    pub server_name: String,
    pub ca_file: Option<String>,
}

/// `policies.X.hedge`: after `delay` (or the latency at `percentile` once
/// `min_samples` requests were measured) with no answer, another copy, up to
/// `max_hedges` copies beyond the first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hedge {
    pub delay: f64,
    pub percentile: Option<f64>,
    pub max_hedges: u32,
    pub min_samples: u32,
}

/// A token bucket: `rate` per second, `burst` at most saved up.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: f64,
    pub burst: f64,
}

impl Destination {
    fn validate(&self, at: &str) -> Result<(), SpecError> {
        duration(&format!("{at}.timeout"), self.timeout)?;
        for (i, bound) in self.latency_bounds.iter().enumerate() {
            duration(&format!("{at}.latency_bounds[{i}]"), *bound)?;
        }
        optional_duration(&format!("{at}.per_try_timeout"), self.per_try_timeout)?;
        optional_duration(&format!("{at}.idle_timeout"), self.idle_timeout)?;
        duration(&format!("{at}.connect_timeout"), self.connect_timeout)?;
        duration(
            &format!("{at}.tunnel_idle_timeout"),
            self.tunnel_idle_timeout,
        )?;
        self.retry.validate(&format!("{at}.retry"))?;
        if let Some(b) = &self.budget {
            duration(&format!("{at}.budget.ttl"), b.ttl)?;
        }
        if let Some(b) = &self.breaker {
            if b.window_type == WindowType::Time {
                duration(&format!("{at}.breaker.window_size"), b.window_size)?;
            }
            optional_duration(
                &format!("{at}.breaker.slow_call_duration"),
                b.slow_call_duration,
            )?;
            duration(&format!("{at}.breaker.open_for"), b.open_for)?;
            duration(&format!("{at}.breaker.max_open_for"), b.max_open_for)?;
        }
        if let Some(h) = &self.hedge {
            duration(&format!("{at}.hedge.delay"), h.delay)?;
            if !h.percentile.is_none_or(|p| p > 0.0 && p < 100.0) {
                return Err(SpecError(format!(
                    "{at}.hedge.percentile: must be in (0, 100)"
                )));
            }
            if !(1..=5).contains(&h.max_hedges) || h.min_samples == 0 {
                return Err(SpecError(format!(
                    "{at}.hedge: max_hedges must be 1..5 and min_samples >= 1"
                )));
            }
        }
        if let Some(r) = &self.rate_limit {
            if !(r.rate.is_finite() && r.rate > 0.0 && r.burst.is_finite() && r.burst >= 1.0) {
                return Err(SpecError(format!(
                    "{at}.rate_limit: rate must be > 0 and burst >= 1"
                )));
            }
        }
        if let Some(shed) = &self.shedding {
            shed.config()
                .validate()
                .map_err(|e| SpecError(format!("{at}.shedding.{}: {}", e.field, e.reason)))?;
        }
        if let Some(o) = &self.outlier {
            duration(&format!("{at}.outlier.interval"), o.interval)?;
            duration(&format!("{at}.outlier.ejection"), o.ejection)?;
            duration(&format!("{at}.outlier.max_ejection"), o.max_ejection)?;
        }
        for r in &self.routes {
            let at = format!("{at}.routes.{}", r.name);
            duration(&format!("{at}.timeout"), r.timeout)?;
            r.retry.validate(&format!("{at}.retry"))?;
            if let Some(f) = &r.fault {
                duration(&format!("{at}.fault.delay"), f.delay)?;
            }
            if let Some(c) = &r.criticality {
                if seawall_policy::shed::Criticality::parse(c).is_none() {
                    return Err(SpecError(format!(
                        "{at}.criticality: {c:?} is not one of critical_plus, critical, \
                         sheddable_plus, sheddable"
                    )));
                }
            }
        }
        Ok(())
    }
}

fn default_connect_timeout() -> f64 {
    1.0
}

fn default_tunnel_idle_timeout() -> f64 {
    300.0
}

fn default_upgrades() -> Vec<String> {
    vec!["websocket".to_owned()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    pub attempts: u32,
    pub statuses: Vec<u16>,
    pub on_reset: bool,
    pub on_connect_failure: bool,
    pub backoff: Backoff,
    pub methods: Vec<String>,
}

impl Retry {
    fn validate(&self, at: &str) -> Result<(), SpecError> {
        duration(&format!("{at}.backoff.base"), self.backoff.base)?;
        duration(&format!("{at}.backoff.max"), self.backoff.max)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    pub jitter: Jitter,
    pub base: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    None,
    Full,
    Equal,
    Decorrelated,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub ratio: f64,
    pub min_per_second: f64,
    pub ttl: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    Count,
    Time,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Breaker {
    pub window_type: WindowType,
    pub window_size: f64,
    pub minimum_calls: u32,
    pub failure_rate: f64,
    pub slow_call_duration: Option<f64>,
    pub slow_call_rate: f64,
    pub open_for: f64,
    pub open_multiplier: f64,
    pub max_open_for: f64,
    pub half_open_calls: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    pub consecutive_5xx: Option<u32>,
    pub consecutive_gateway_errors: Option<u32>,
    pub consecutive_local_origin_failures: Option<u32>,
    pub interval: f64,
    pub ejection: f64,
    pub max_ejection: f64,
    pub max_ejected: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulkhead {
    pub max_connections: usize,
    pub max_pending: usize,
    pub max_in_flight: usize,
    pub max_retries: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    pub timeout: f64,
    pub retry: Retry,
    pub split: Option<Vec<(String, f64)>>,
    pub mirror: Option<Mirror>,
    pub fault: Option<Fault>,
    /// The route's own, or its destination's, resolved by Python.
    #[serde(default = "default_upgrades")]
    pub upgrades: Vec<String>,
    /// The criticality of its requests that carry no `x-seawall-criticality`.
    #[serde(default)]
    pub criticality: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
    pub headers: Vec<HeaderMatch>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub exact: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    pub to: String,
    pub subset: Option<String>,
    pub percent: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub delay: f64,
    pub delay_percent: f64,
    pub abort_status: u16,
    pub abort_percent: f64,
    pub header_faults: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SHOP_GATEWAY: &str = include_str!("../tests/data/spec-gateway.json");

    /// The shop's gateway spec with `edit` applied to it.
    fn parse_edited(edit: impl FnOnce(&mut Value)) -> Result<Spec, SpecError> {
        let mut doc: Value = serde_json::from_str(SHOP_GATEWAY).expect("json");
        edit(&mut doc);
        Spec::from_json(&doc.to_string())
    }

    fn refused(edit: impl FnOnce(&mut Value)) -> String {
        parse_edited(edit).expect_err("refused").to_string()
    }

    /// Issue 15: a negative (or huge) timeout reached
    /// `Duration::from_secs_f64` and aborted the sidecar. Without this check
    /// the spec_json fuzz target finds it in about a minute
    /// (fuzz/regressions/spec_json/huge-header-timeout).
    #[test]
    fn a_negative_duration_is_refused_with_its_path() {
        let err = refused(|d| d["destinations"][2]["timeout"] = json!(-1));
        assert_eq!(
            err,
            "invalid sidecar spec: destinations.payments.timeout: -1 is not a duration \
             (seconds >= 0, finite, at most 365 days)"
        );
    }

    #[test]
    fn every_duration_is_checked() {
        type Edit = fn(&mut Value);
        let cases: [(&str, Edit); 19] = [
            ("drain_grace", |d| d["drain_grace"] = json!(-0.5)),
            ("limits.header_timeout", |d| {
                d["limits"]["header_timeout"] = json!(-1)
            }),
            ("limits.body_timeout", |d| {
                d["limits"]["body_timeout"] = json!(1e300)
            }),
            ("limits.idle_timeout", |d| {
                d["limits"]["idle_timeout"] = json!(-1e-9)
            }),
            ("inbound.timeout", |d| d["inbound"]["timeout"] = json!(-3)),
            ("destinations.orders.per_try_timeout", |d| {
                d["destinations"][1]["per_try_timeout"] = json!(-1)
            }),
            ("destinations.orders.idle_timeout", |d| {
                d["destinations"][1]["idle_timeout"] = json!(1e20)
            }),
            ("destinations.orders.connect_timeout", |d| {
                d["destinations"][1]["connect_timeout"] = json!(-1)
            }),
            ("destinations.orders.tunnel_idle_timeout", |d| {
                d["destinations"][1]["tunnel_idle_timeout"] = json!(-1)
            }),
            ("destinations.orders.retry.backoff.base", |d| {
                d["destinations"][1]["retry"]["backoff"]["base"] = json!(-1)
            }),
            ("destinations.orders.retry.backoff.max", |d| {
                d["destinations"][1]["retry"]["backoff"]["max"] = json!(1e300)
            }),
            ("destinations.orders.budget.ttl", |d| {
                d["destinations"][1]["budget"]["ttl"] = json!(1e300)
            }),
            ("destinations.orders.breaker.open_for", |d| {
                d["destinations"][1]["breaker"]["open_for"] = json!(-5)
            }),
            ("destinations.orders.breaker.max_open_for", |d| {
                d["destinations"][1]["breaker"]["max_open_for"] = json!(1e300)
            }),
            ("destinations.orders.breaker.slow_call_duration", |d| {
                d["destinations"][1]["breaker"]["slow_call_duration"] = json!(-1)
            }),
            ("destinations.login.outlier.ejection", |d| {
                d["destinations"][4]["outlier"]["ejection"] = json!(-1)
            }),
            ("destinations.orders.routes.place-order.timeout", |d| {
                d["destinations"][1]["routes"][0]["timeout"] = json!(-1)
            }),
            (
                "destinations.orders.routes.order-status.retry.backoff.base",
                |d| d["destinations"][1]["routes"][1]["retry"]["backoff"]["base"] = json!(-1),
            ),
            ("destinations.payments.routes.charge.fault.delay", |d| {
                d["destinations"][2]["routes"][0]["fault"]["delay"] = json!(1e300)
            }),
        ];
        for (path, edit) in cases {
            let err = refused(edit);
            assert!(
                err.starts_with(&format!("invalid sidecar spec: {path}: ")),
                "{path}: {err}"
            );
            assert!(err.ends_with("is not a duration (seconds >= 0, finite, at most 365 days)"));
        }
    }

    #[test]
    fn huge_values_are_shown_short() {
        let err = refused(|d| d["limits"]["body_timeout"] = json!(1e300));
        assert!(err.contains(": 1e300 is not"), "{err}");
        let err = refused(|d| d["drain_grace"] = json!(-0.5));
        assert!(err.contains(": -0.5 is not"), "{err}");
    }

    #[test]
    fn a_time_window_is_a_duration_and_a_count_window_is_not() {
        let err = refused(|d| {
            let b = &mut d["destinations"][1]["breaker"];
            b["window_type"] = json!("time");
            b["window_size"] = json!(1e300);
        });
        assert!(
            err.contains("destinations.orders.breaker.window_size: 1e300"),
            "{err}"
        );
        // a count window is a number of calls, checked when the breaker is built
        parse_edited(|d| d["destinations"][1]["breaker"]["window_size"] = json!(1_000_000))
            .expect("a count");
    }

    #[test]
    fn zero_and_the_maximum_are_durations() {
        let spec = parse_edited(|d| {
            d["drain_grace"] = json!(0);
            d["limits"]["idle_timeout"] = json!(MAX_DURATION);
            d["destinations"][1]["timeout"] = json!(-0.0);
        })
        .expect("valid");
        assert_eq!(spec.limits.idle_timeout, MAX_DURATION);
        let err = refused(|d| d["limits"]["idle_timeout"] = json!(MAX_DURATION + 1.0));
        assert!(err.contains("31536001 is not a duration"), "{err}");
    }

    #[test]
    fn nan_and_infinity_are_not_durations() {
        let mut spec = Spec::from_json(SHOP_GATEWAY).expect("valid");
        spec.drain_grace = f64::NAN;
        let err = spec.validate().expect_err("NaN").to_string();
        assert!(
            err.ends_with(
                "drain_grace: NaN is not a duration (seconds >= 0, finite, at most 365 days)"
            ),
            "{err}"
        );
        spec.drain_grace = 1.0;
        spec.destinations[0].idle_timeout = Some(f64::INFINITY);
        let err = spec.validate().expect_err("inf").to_string();
        assert!(
            err.contains("destinations.gateway.idle_timeout: inf is not"),
            "{err}"
        );
    }

    #[test]
    fn numbers_json_cannot_hold_are_a_parse_error() {
        let mut doc: Value = serde_json::from_str(SHOP_GATEWAY).expect("json");
        doc["drain_grace"] = json!(12345.5);
        let text = doc.to_string().replacen("12345.5", "1e400", 1);
        let err = Spec::from_json(&text).expect_err("out of range");
        assert!(err.to_string().contains("number out of range"), "{err}");
    }
}
