//! The OTLP trace codec (crate `seawall-otlp`), for the collector's receiver.
//!
//! * `otlp_decode(body, json) -> (rows, rejected, message)`: an
//!   `ExportTraceServiceRequest` (protobuf, or JSON when `json`) decoded with
//!   the GIL released, then each span as a plain tuple in the field order of
//!   `seawall.telemetry.spans.SpanRow`. A malformed body raises `ValueError`
//!   (the message names the place).
//! * `otlp_export_response(rejected, message) -> bytes`: the answer.
//! * `otlp_json_to_protobuf(body) -> bytes`: OTLP/JSON read into the
//!   encoder's model and written as protobuf (for the encoder's tests).
//!
//! The columns a resource's spans share (`service`, `resource`, `scope`, the
//! resource's tags) become one Python object each, shared by those rows.
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use seawall_otlp::decode::{self, DecodeError, Row, TagList};
use seawall_otlp::encode;

fn to_py(e: DecodeError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// The Python object made from the last `Arc` seen, reused while it is the same.
struct Shared<'py, T: ?Sized, O> {
    last: Option<(Arc<T>, O)>,
    py: Python<'py>,
}

impl<'py, T: ?Sized, O: Clone> Shared<'py, T, O> {
    fn new(py: Python<'py>) -> Self {
        Shared { last: None, py }
    }

    fn get(
        &mut self,
        value: &Arc<T>,
        make: impl FnOnce(Python<'py>, &T) -> PyResult<O>,
    ) -> PyResult<O> {
        if let Some((arc, obj)) = &self.last {
            if Arc::ptr_eq(arc, value) {
                return Ok(obj.clone());
            }
        }
        let obj = make(self.py, value)?;
        self.last = Some((Arc::clone(value), obj.clone()));
        Ok(obj)
    }
}

fn string<'py>(py: Python<'py>, s: &str) -> PyResult<Bound<'py, PyAny>> {
    Ok(PyString::new(py, s).into_any())
}

fn tag_strings<'py>(py: Python<'py>, tags: &TagList) -> PyResult<Vec<Bound<'py, PyAny>>> {
    Ok(tags
        .iter()
        .map(|t| PyString::new(py, t).into_any())
        .collect())
}

/// Decode an OTLP trace export: `(rows, rejected, message)`, each row a
/// tuple in `SpanRow`'s field order. ValueError: a malformed body.
#[pyfunction]
pub fn otlp_decode<'py>(
    py: Python<'py>,
    body: &[u8],
    json: bool,
) -> PyResult<(Bound<'py, PyList>, u64, String)> {
    let decoded = py
        .detach(|| {
            if json {
                decode::json(body)
            } else {
                decode::protobuf(body)
            }
        })
        .map_err(to_py)?;
    let mut service = Shared::new(py);
    let mut resource = Shared::new(py);
    let mut scope = Shared::new(py);
    let mut resource_tags = Shared::new(py);
    let mut rows = Vec::with_capacity(decoded.rows.len());
    for row in &decoded.rows {
        rows.push(row_tuple(
            py,
            row,
            &mut service,
            &mut resource,
            &mut scope,
            &mut resource_tags,
        )?);
    }
    Ok((PyList::new(py, rows)?, decoded.rejected, decoded.message))
}

type SharedStr<'py> = Shared<'py, str, Bound<'py, PyAny>>;

fn row_tuple<'py>(
    py: Python<'py>,
    row: &Row,
    service: &mut SharedStr<'py>,
    resource: &mut SharedStr<'py>,
    scope: &mut SharedStr<'py>,
    resource_tags: &mut Shared<'py, TagList, Vec<Bound<'py, PyAny>>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let parent: &[u8] = match &row.parent_span_id {
        Some(p) => p,
        None => b"",
    };
    let (span_tags, shared_tags) = row.tags.parts();
    let mut tags = tag_strings(py, span_tags)?;
    let room = decode::MAX_TAGS.saturating_sub(tags.len());
    let from_resource = resource_tags.get(shared_tags, tag_strings)?;
    tags.extend(from_resource.into_iter().take(room));
    let items: [Bound<'py, PyAny>; 18] = [
        PyBytes::new(py, &row.trace_id).into_any(),
        PyBytes::new(py, &row.span_id).into_any(),
        PyBytes::new(py, parent).into_any(),
        service.get(&row.service, string)?,
        string(py, &row.name)?,
        row.kind.into_pyobject(py)?.into_any(),
        row.start_ns.into_pyobject(py)?.into_any(),
        row.end_ns.into_pyobject(py)?.into_any(),
        row.status_code.into_pyobject(py)?.into_any(),
        string(py, &row.status_message)?,
        row.flags.into_pyobject(py)?.into_any(),
        string(py, &row.trace_state)?,
        string(py, &row.attributes)?,
        string(py, &row.events)?,
        string(py, &row.links)?,
        resource.get(&row.resource, string)?,
        scope.get(&row.scope, string)?,
        PyTuple::new(py, tags)?.into_any(),
    ];
    PyTuple::new(py, items)
}

/// The `ExportTraceServiceResponse` (protobuf) for a request of which
/// `rejected` spans were refused, `message` saying why (empty: all accepted).
#[pyfunction]
pub fn otlp_export_response<'py>(
    py: Python<'py>,
    rejected: i64,
    message: &str,
) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &encode::export_response(rejected, message))
}

/// OTLP/JSON read into the encoder's model and written as OTLP/protobuf
/// (invalid spans left out). ValueError: a malformed body.
#[pyfunction]
pub fn otlp_json_to_protobuf<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let out = py
        .detach(|| {
            decode::json_model(body).map(|model| {
                let mut out = Vec::new();
                encode::export_request(&model.resource_spans, &mut out);
                out
            })
        })
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &out))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(otlp_decode, m)?)?;
    m.add_function(wrap_pyfunction!(otlp_export_response, m)?)?;
    m.add_function(wrap_pyfunction!(otlp_json_to_protobuf, m)?)?;
    Ok(())
}
