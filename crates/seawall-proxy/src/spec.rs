//! The spec: the validated config as the core receives it from Python.
//!
//! `seawall.proxy.spec` (Python) builds this document from mesh.yaml, once,
//! with every default filled in and every merge done; here it is only
//! deserialised into typed structs. A field the core does not know is an
//! error, so a mismatch between the two halves shows at once.
use serde::Deserialize;

/// The shape version this core reads (`SPEC_VERSION` in Python).
pub const SPEC_VERSION: u32 = 1;

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
        Ok(spec)
    }
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
