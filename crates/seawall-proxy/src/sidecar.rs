//! The sidecar as Python drives it: start, apply, update, rotate, read out, drain.
//!
//! [`Sidecar::start`] binds every listener at once (so a port in use is an
//! error the caller sees), then serves on tokio worker threads of its own:
//! with one worker a current-thread runtime on one thread (no work-stealing
//! overhead), with N a multi-thread runtime of N workers. The caller's thread
//! is never used to serve, so Python keeps its main thread for signals and the
//! control link, and calls into the core only to change or read it.
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use seawall_tls::{Identity, MtlsMode, TlsStore};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::cluster::Reset;
use crate::events::{Events, Format};
use crate::export::{Exporter, Queue, Settings};
use crate::listener::{accept_loop, bind, Role};
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::spans::Tracer;
use crate::spec::{self, Spec};
use crate::state::State;
use crate::tls::UpstreamTls;
use seawall_otlp::KeyValue;

/// Why the core refused a call.
#[derive(Debug)]
pub enum CoreError {
    /// The spec could not be read or served.
    Spec(String),
    /// A listener could not be opened.
    Bind {
        listener: String,
        address: String,
        error: std::io::Error,
    },
    /// The identity (certificate, key, bundle) was refused.
    Identity(String),
    /// The threads could not be started.
    Runtime(std::io::Error),
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CoreError::Spec(why) => f.write_str(why),
            CoreError::Bind {
                listener,
                address,
                error,
            } => {
                write!(f, "cannot listen on {address} ({listener}): {error}")
            }
            CoreError::Identity(why) => write!(f, "identity refused: {why}"),
            CoreError::Runtime(e) => write!(f, "cannot start the sidecar's threads: {e}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// PEM files of the sidecar's mTLS identity.
/// What a new spec changed that the sidecar should say ([`Sidecar::apply`]).
#[derive(Debug)]
pub struct Applied {
    /// The listeners differ from the open ones: they move at the next restart.
    pub listeners_moved: bool,
    /// State that could not be kept, and why.
    pub resets: Vec<Reset>,
}

pub struct IdentityPem<'a> {
    pub cert_chain: &'a [u8],
    pub key: &'a [u8],
    pub bundle: &'a [u8],
}

/// How to run the core.
pub struct Options<'a> {
    /// Worker threads (1: one thread, no work stealing).
    pub workers: usize,
    /// Share the ports with other processes (SO_REUSEPORT).
    pub reuse_port: bool,
    pub identity: Option<IdentityPem<'a>>,
    /// How events (breakers, ejections, swaps) are written on standard
    /// error; `None`: not written (counted only).
    pub log_format: Option<Format>,
}

/// A running sidecar core.
pub struct Sidecar {
    state: Arc<State>,
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    threads: Option<std::thread::JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    ports: Vec<(String, u16)>,
    tls: Option<Arc<TlsStore>>,
    metrics: Arc<Metrics>,
    events: Arc<Events>,
    clock: Clock,
    tracer: Arc<Tracer>,
    exporter: Exporter,
}

/// How long a drain waits for the spans queued to be exported.
const SPANS_FLUSH: Duration = Duration::from_secs(2);

/// What the exporter is told of a spec: `None` when it turns tracing off.
fn export_settings(spec: &Spec) -> Option<Settings> {
    let t = spec.tracing.as_ref()?;
    let mut resource = vec![
        KeyValue::str("service.name", spec.service.as_str()),
        KeyValue::str("service.namespace", spec.mesh.as_str()),
        KeyValue::str("seawall.component", "sidecar"),
        KeyValue::str("telemetry.sdk.name", "seawall"),
        KeyValue::str("telemetry.sdk.language", "rust"),
        KeyValue::str("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ];
    for (key, value) in &t.resource {
        resource.retain(|kv| kv.key != key.as_str());
        resource.push(KeyValue::str(key.clone(), value.as_str()));
    }
    Some(Settings {
        endpoint: t.endpoint.clone(),
        batch: t.batch,
        interval: Duration::from_secs_f64(t.interval),
        resource,
    })
}

/// The runtime of `spec` with the sidecar's tracer when the spec traces.
fn traced(mut runtime: Runtime, tracer: &Arc<Tracer>) -> Runtime {
    runtime.tracer = runtime.spec.tracing.as_ref().map(|_| tracer.clone());
    runtime
}

/// Why `spec` cannot be served without an identity (mTLS), if it cannot:
/// `mtls: strict`, or callers to refuse (only a certificate names a caller).
fn needs_identity(spec: &Spec) -> Option<String> {
    if spec.mtls == spec::MtlsMode::Strict {
        return Some(format!(
            "service '{}' has mtls: strict, which needs an identity (run it under the control plane)",
            spec.service
        ));
    }
    let refused = spec
        .authorization
        .as_ref()
        .map_or(&[][..], |a| &a.refuse[..]);
    if !refused.is_empty() {
        return Some(format!(
            "service '{}' has authorization.refuse: [{}], which needs an identity: only a \
             certificate names a caller (run it under the control plane)",
            spec.service,
            refused.join(", ")
        ));
    }
    None
}

fn identity(spec: &Spec, pem: &IdentityPem<'_>) -> Result<Identity, CoreError> {
    let _ = spec;
    Identity::from_pem(pem.cert_chain, pem.key, pem.bundle)
        .map_err(|e| CoreError::Identity(e.to_string()))
}

impl Sidecar {
    /// Open every listener of `spec_json` and start serving.
    pub fn start(spec_json: &str, options: Options<'_>) -> Result<Sidecar, CoreError> {
        let spec = Spec::from_json(spec_json).map_err(|e| CoreError::Spec(e.to_string()))?;
        if let (Some(why), None) = (needs_identity(&spec), &options.identity) {
            return Err(CoreError::Spec(why));
        }
        let tls = match &options.identity {
            None => None,
            Some(pem) => {
                let id = identity(&spec, pem)?;
                let store = TlsStore::new(id, &spec.trust_domain, &spec.service)
                    .map_err(|e| CoreError::Identity(e.to_string()))?;
                Some(Arc::new(store))
            }
        };
        let workers = options.workers.max(1);
        let (rt, threads, stop, handle) = if workers == 1 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(CoreError::Runtime)?;
            let handle = rt.handle().clone();
            let (tx, rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name("seawall-core".into())
                .spawn(move || {
                    rt.block_on(async {
                        let _ = rx.await;
                    });
                    rt.shutdown_timeout(Duration::from_millis(100));
                })
                .map_err(CoreError::Runtime)?;
            (None, Some(thread), Some(tx), handle)
        } else {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("seawall-core")
                .enable_all()
                .build()
                .map_err(CoreError::Runtime)?;
            let handle = rt.handle().clone();
            (Some(rt), None, None, handle)
        };
        // Sockets are bound inside the runtime's context (tokio registers them).
        let enter = handle.enter();
        let metrics = Arc::new(Metrics::new());
        let clock = Clock::new();
        let events = Arc::new(match options.log_format {
            Some(format) => Events::to_stderr(&spec.service, format, clock),
            None => Events::silent(&spec.service, Format::Text, clock),
        });
        let mut sockets = Vec::new();
        let mut listen =
            |name: String, role: Role, addr: &spec::Address| -> Result<(), CoreError> {
                let socket =
                    bind(&addr.0, addr.1, options.reuse_port).map_err(|error| CoreError::Bind {
                        listener: name.clone(),
                        address: format!("{}:{}", addr.0, addr.1),
                        error,
                    })?;
                let _ = socket.set_nonblocking(true);
                sockets.push((name, role, socket));
                Ok(())
            };
        let l = &spec.listeners;
        listen("inbound".into(), Role::Inbound, &l.inbound)?;
        listen("outbound".into(), Role::Outbound, &l.outbound)?;
        for (dest, addr) in &l.upstreams {
            listen(
                format!("upstream:{dest}"),
                Role::Upstream(dest.as_str().into()),
                addr,
            )?;
        }
        listen("admin".into(), Role::Admin, &l.admin)?;
        let mode = match spec.mtls {
            spec::MtlsMode::Strict => MtlsMode::Strict,
            spec::MtlsMode::Permissive => MtlsMode::Permissive,
        };
        // spans: one queue and one exporter task for the sidecar's life
        let queue_size = spec.tracing.as_ref().map_or(1, |t| t.queue);
        let (queue, receiver) = Queue::new(queue_size, metrics.clone());
        let exporter = Exporter::spawn(&handle, receiver, metrics.clone());
        exporter.configure(export_settings(&spec));
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let tracer = Arc::new(Tracer::new(queue, unix_now, clock.now()));
        let runtime = Runtime::build(spec, metrics.clone(), events.clone(), clock)
            .map_err(|e| CoreError::Spec(e.0))?;
        let runtime = traced(runtime, &tracer);
        let state = Arc::new(State::new(runtime, metrics.clone()));
        if let Some(store) = &tls {
            state.set_upstream_tls(Some(UpstreamTls {
                store: store.clone(),
                metrics: metrics.clone(),
            }));
        }
        let mut ports = Vec::new();
        {
            for (name, role, socket) in sockets {
                let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
                let listener =
                    tokio::net::TcpListener::from_std(socket).map_err(|error| CoreError::Bind {
                        listener: name.clone(),
                        address: format!("port {port}"),
                        error,
                    })?;
                ports.push((name, port));
                let inbound_tls = match role {
                    Role::Inbound => tls.clone().map(|s| (s, mode)),
                    _ => None,
                };
                handle.spawn(accept_loop(listener, role, state.clone(), inbound_tls));
            }
        }
        // A timer that always fires within 250 ms keeps the time driver's next wake
        // near: a request's timers (seconds away) then never come earlier than it,
        // and registering one never has to wake the driver through its eventfd
        // (tokio#5207: one extra write and epoll_wait per request at one connection).
        // Every fourth tick it also sweeps the pools: idle connections the upstream
        // closed (or that sat past the idle timeout) are closed now, not at next use.
        let swept = state.clone();
        handle.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                tick.tick().await;
                if n % 4 == 0 {
                    swept.runtime().sweep();
                }
            }
        });
        drop(enter);
        state.ready.store(true, Ordering::Release);
        Ok(Sidecar {
            state,
            handle,
            stop,
            threads,
            runtime: rt,
            ports,
            tls,
            metrics,
            events,
            clock,
            tracer,
            exporter,
        })
    }

    /// The listeners and the ports they are bound to (useful with port 0).
    pub fn ports(&self) -> &[(String, u16)] {
        &self.ports
    }

    /// Swap in a new spec (a reload, or a new config from the control plane):
    /// new routes, and every cluster kept with its state where the change
    /// allows ([`Runtime::next`]). Returns what was reset, and whether the
    /// listeners in it differ from the open ones (they take effect at the
    /// next restart).
    pub fn apply(&self, spec_json: &str) -> Result<Applied, CoreError> {
        let spec = Spec::from_json(spec_json).map_err(|e| CoreError::Spec(e.to_string()))?;
        if let (Some(why), None) = (needs_identity(&spec), &self.tls) {
            return Err(CoreError::Spec(why));
        }
        let old = self.state.runtime();
        let listeners_moved =
            format!("{:?}", spec.listeners) != format!("{:?}", old.spec.listeners);
        let version = spec.config_version;
        let digest = spec.digest.chars().take(12).collect::<String>();
        let restart = spec.restart_needed.clone();
        let settings = export_settings(&spec);
        let (runtime, resets) = Runtime::next(
            spec,
            self.metrics.clone(),
            self.events.clone(),
            self.clock,
            Some(&old),
        )
        .map_err(|e| CoreError::Spec(e.0))?;
        self.exporter.configure(settings);
        self.state.swap(traced(runtime, &self.tracer));
        let service = old.service.clone();
        self.events.emit_always(
            "config_swapped",
            &service,
            &[
                ("version", version.into()),
                ("digest", digest.into()),
                ("state_resets", resets.len().into()),
                ("restart_needed", restart.into()),
            ],
        );
        for r in &resets {
            self.events.emit_always(
                "state_reset",
                &r.cluster,
                &[("what", r.what.into()), ("reason", r.reason.clone().into())],
            );
        }
        // Requests in flight keep the old routes; idle connections of the
        // clusters that went close now.
        old.retire(&self.state.runtime());
        Ok(Applied {
            listeners_moved,
            resets,
        })
    }

    /// Replace the endpoint sets in place, by destination (`{"orders": [{address, port, subset, weight}]}`).
    pub fn set_endpoints(&self, json: &str) -> Result<(), CoreError> {
        let sets: HashMap<String, Vec<spec::Endpoint>> =
            serde_json::from_str(json).map_err(|e| CoreError::Spec(format!("endpoints: {e}")))?;
        self.state.runtime().set_endpoints(&sets);
        Ok(())
    }

    /// Rotate the mTLS identity: new handshakes use it, open connections carry on.
    pub fn set_identity(&self, pem: IdentityPem<'_>) -> Result<(), CoreError> {
        let Some(store) = &self.tls else {
            return Err(CoreError::Identity(
                "this sidecar was started without an identity".into(),
            ));
        };
        let rt = self.state.runtime();
        let id = identity(&rt.spec, &pem)?;
        store
            .rotate(id)
            .map_err(|e| CoreError::Identity(e.to_string()))
    }

    /// Close every idle pooled upstream connection (exchanges in flight carry
    /// on): the next requests connect, and handshake, anew.
    pub fn close_idle(&self) {
        self.state.runtime().close();
    }

    /// The metrics page: Prometheus text, or OpenMetrics with exemplars.
    pub fn metrics(&self, openmetrics: bool) -> String {
        let format = if openmetrics {
            crate::metrics::Format::OpenMetrics
        } else {
            crate::metrics::Format::Prometheus
        };
        crate::admin::metrics_page(&self.state, format)
    }

    pub fn clusters(&self) -> String {
        crate::admin::clusters_page(&self.state)
    }

    pub fn ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// Open downstream connections.
    pub fn connections(&self) -> usize {
        self.state.connections()
    }

    /// Stop accepting, let requests in flight finish for up to `grace`, then stop.
    /// Blocks the calling thread (Python calls it with the GIL released).
    pub fn drain(&mut self, grace: Duration) {
        self.state.start_drain();
        let state = self.state.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let _ = tokio::time::timeout(grace, state.all_closed()).await;
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(grace + Duration::from_secs(1));
        // the spans of the requests that just finished go out too
        self.tracer.queue().flush(SPANS_FLUSH);
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.state.runtime().close();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.threads.take() {
            let _ = thread.join();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.state.start_drain();
        self.stop_now();
    }
}
