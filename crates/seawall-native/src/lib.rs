//! `seawall._native`: the Rust core, as the Python package sees it.
//!
//! The boundary is small and typed: Python hands over validated, canonical
//! config as JSON and gets handles back. Python is never called per request.
use pyo3::prelude::*;

mod otlp;
mod policy;
mod sidecar;
mod store;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    policy::register(m)?;
    otlp::register(m)?;
    sidecar::register(m)?;
    store::register(m)?;
    Ok(())
}
