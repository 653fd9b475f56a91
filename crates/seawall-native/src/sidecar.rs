//! `seawall._native.Sidecar`: the Rust data plane as Python drives it.
//!
//! Python validates mesh.yaml and hands over the spec (JSON); the core serves
//! on threads of its own. Every method returns quickly except `drain`, which
//! releases the GIL while it waits. Python is never called per request.
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use seawall_proxy::control::{self, CallError};
use seawall_proxy::sidecar::{CoreError, IdentityPem, Options, Sidecar as Core};

fn to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::Spec(_) | CoreError::Identity(_) => PyValueError::new_err(e.to_string()),
        CoreError::Bind { .. } | CoreError::Runtime(_) => PyOSError::new_err(e.to_string()),
    }
}

/// A running sidecar core.
#[pyclass(module = "seawall._native", frozen)]
pub struct Sidecar {
    core: Mutex<Option<Core>>,
}

impl Sidecar {
    fn with<T>(&self, f: impl FnOnce(&Core) -> Result<T, CoreError>) -> PyResult<T> {
        let guard = self.core.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(core) => f(core).map_err(to_py),
            None => Err(PyRuntimeError::new_err("the sidecar was drained")),
        }
    }
}

#[pymethods]
impl Sidecar {
    /// Open every listener of `spec` (JSON) and start serving on `workers` threads.
    #[new]
    #[pyo3(signature = (spec, *, workers = 1, reuse_port = false, cert = None, key = None, bundle = None, log_format = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        spec: &str,
        workers: usize,
        reuse_port: bool,
        cert: Option<Vec<u8>>,
        key: Option<Vec<u8>>,
        bundle: Option<Vec<u8>>,
        log_format: Option<&str>,
    ) -> PyResult<Self> {
        let log_format = log_format
            .map(str::parse::<seawall_proxy::events::Format>)
            .transpose()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let identity = match (&cert, &key, &bundle) {
            (Some(c), Some(k), Some(b)) => Some((c.as_slice(), k.as_slice(), b.as_slice())),
            (None, None, None) => None,
            _ => return Err(PyValueError::new_err("give cert, key and bundle together")),
        };
        let core = py
            .detach(|| {
                let identity = identity.map(|(cert_chain, key, bundle)| IdentityPem {
                    cert_chain,
                    key,
                    bundle,
                });
                Core::start(
                    spec,
                    Options {
                        workers,
                        reuse_port,
                        identity,
                        log_format,
                    },
                )
            })
            .map_err(to_py)?;
        Ok(Sidecar {
            core: Mutex::new(Some(core)),
        })
    }

    /// `{listener name: bound port}`.
    fn ports(&self) -> PyResult<Vec<(String, u16)>> {
        self.with(|c| Ok(c.ports().to_vec()))
    }

    /// Swap in a new spec, keeping each destination's state where the change
    /// allows; returns whether its listeners differ (they wait for a
    /// restart), and the state reset: `(destination, what, reason)` each.
    #[allow(clippy::type_complexity)]
    fn apply(&self, py: Python<'_>, spec: &str) -> PyResult<(bool, Vec<(String, String, String)>)> {
        py.detach(|| {
            self.with(|c| {
                let applied = c.apply(spec)?;
                let resets = applied
                    .resets
                    .into_iter()
                    .map(|r| (r.cluster, r.what.to_owned(), r.reason))
                    .collect();
                Ok((applied.listeners_moved, resets))
            })
        })
    }

    /// Replace the endpoint sets in place (JSON: `{destination: [endpoint, ...]}`).
    fn set_endpoints(&self, endpoints: &str) -> PyResult<()> {
        self.with(|c| c.set_endpoints(endpoints))
    }

    /// Rotate the mTLS identity (PEM bytes); open connections carry on.
    fn set_identity(&self, cert: &[u8], key: &[u8], bundle: &[u8]) -> PyResult<()> {
        self.with(|c| {
            c.set_identity(IdentityPem {
                cert_chain: cert,
                key,
                bundle,
            })
        })
    }

    /// Close every idle pooled upstream connection; the next requests connect anew.
    fn close_idle(&self) -> PyResult<()> {
        self.with(|c| {
            c.close_idle();
            Ok(())
        })
    }

    /// The Prometheus text page (OpenMetrics, with exemplars, when asked).
    #[pyo3(signature = (openmetrics = false))]
    fn metrics(&self, openmetrics: bool) -> PyResult<String> {
        self.with(|c| Ok(c.metrics(openmetrics)))
    }

    /// The `/clusters` document (JSON).
    fn clusters(&self) -> PyResult<String> {
        self.with(|c| Ok(c.clusters()))
    }

    fn ready(&self) -> PyResult<bool> {
        self.with(|c| Ok(c.ready()))
    }

    /// Open downstream connections.
    fn connections(&self) -> PyResult<usize> {
        self.with(|c| Ok(c.connections()))
    }

    /// Stop accepting, let requests in flight finish for up to `grace` seconds, then stop.
    fn drain(&self, py: Python<'_>, grace: f64) {
        let core = self.core.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut core) = core {
            let grace = Duration::from_secs_f64(if grace.is_finite() {
                grace.max(0.0)
            } else {
                0.0
            });
            py.detach(move || core.drain(grace));
        }
    }
}

/// Check a spec document without serving it (the error says what is wrong).
#[pyfunction]
pub fn check_spec(spec: &str) -> PyResult<()> {
    seawall_proxy::spec::Spec::from_json(spec)
        .map(|_| ())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Check that the core can run a route regex with Python's meaning (ValueError says why not).
#[pyfunction]
pub fn check_regex(pattern: &str) -> PyResult<()> {
    seawall_proxy::route::check_regex(pattern).map_err(PyValueError::new_err)
}

/// One HTTP call to the control plane: `(status, body)`. The GIL is released
/// while it waits. ValueError: a bad method, URL or header (nothing sent);
/// TimeoutError: no whole answer within `timeout` s; OSError: anything else.
#[pyfunction]
#[pyo3(signature = (method, url, *, headers = Vec::new(), body = Vec::new(), timeout = 5.0))]
pub fn control_call(
    py: Python<'_>,
    method: &str,
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    timeout: f64,
) -> PyResult<(u16, Py<PyBytes>)> {
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(PyValueError::new_err(format!(
            "timeout must be > 0 s, got {timeout}"
        )));
    }
    let timeout = Duration::from_secs_f64(timeout);
    let answer = py
        .detach(|| control::call(method, url, &headers, body, timeout))
        .map_err(|e| match e {
            CallError::Invalid(_) => PyValueError::new_err(e.to_string()),
            CallError::Timeout(_) => PyTimeoutError::new_err(e.to_string()),
            CallError::Io(_) | CallError::TooLarge => PyOSError::new_err(e.to_string()),
        })?;
    Ok((answer.status, PyBytes::new(py, &answer.body).unbind()))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Sidecar>()?;
    m.add_function(wrap_pyfunction!(control_call, m)?)?;
    m.add_function(wrap_pyfunction!(check_regex, m)?)?;
    m.add_function(wrap_pyfunction!(check_spec, m)?)?;
    Ok(())
}
