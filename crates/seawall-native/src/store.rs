//! The trace store's pass over a batch of spans (`seawall.telemetry.store`,
//! `TraceStore._insert`), done here because it was most of an insert's time
//! in Python (about 10 of 20 µs per span).
//!
//! * `SpanBatch(rows)`: the rows (`SpanRow` tuples) read once, grouped by
//!   trace (`trace_ids`, first seen first) and by origin (`origins`: each
//!   distinct `(service, name, kind, resource, scope)`, as Python tuples).
//! * `SpanBatch.prepare(refs, origins, keys)`: given each trace's ref and each
//!   origin's interned ids, the rows to insert into `spans`, each trace's
//!   summary of the batch, each origin's latest start, and the posting lists.
//!
//! What is decided stays in Python: SQL, interning, refs, how a summary is
//! merged into a stored one. The store's docstring is the specification; its
//! tests (a brute-force reference among them) run through this code.
use std::collections::{BTreeMap, HashMap};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

// `SpanRow`'s fields.
const TRACE_ID: usize = 0;
const SPAN_ID: usize = 1;
const PARENT: usize = 2;
const SERVICE: usize = 3;
const NAME: usize = 4;
const KIND: usize = 5;
const START: usize = 6;
const END: usize = 7;
const STATUS: usize = 8;
const MESSAGE: usize = 9;
const FLAGS: usize = 10;
const STATE: usize = 11;
const ATTRIBUTES: usize = 12;
const EVENTS: usize = 13;
const LINKS: usize = 14;
const RESOURCE: usize = 15;
const SCOPE: usize = 16;
const TAGS: usize = 17;
const FIELDS: usize = 18;
const STATUS_ERROR: i64 = 2;

/// Ids for strings: by object first (the decoder shares a resource's objects
/// among its rows, and every row is alive while a batch is), then by text.
#[derive(Default)]
struct Interner {
    by_object: HashMap<usize, u32>,
    by_text: HashMap<String, u32>,
}

impl Interner {
    fn id(&mut self, obj: &Bound<'_, PyAny>, field: &str) -> PyResult<u32> {
        let address = obj.as_ptr() as usize;
        if let Some(&id) = self.by_object.get(&address) {
            return Ok(id);
        }
        let text = obj
            .cast::<PyString>()
            .map_err(|_| PyValueError::new_err(format!("a span's {field} is not a string")))?
            .to_str()?;
        let next = u32::try_from(self.by_text.len()).unwrap_or(u32::MAX);
        let id = match self.by_text.get(text) {
            Some(&id) => id,
            None => *self.by_text.entry(text.to_owned()).or_insert(next),
        };
        self.by_object.insert(address, id);
        Ok(id)
    }
}

/// A batch of rows, read once: see the module's documentation.
#[pyclass(module = "seawall._native", frozen)]
pub struct SpanBatch {
    rows: Vec<Py<PyTuple>>,
    /// Each row's trace (an index into `trace_ids`) and origin (into `origins`).
    trace_of: Vec<u32>,
    origin_of: Vec<u32>,
    /// The trace ids, first seen first.
    #[pyo3(get)]
    trace_ids: Py<PyList>,
    /// The distinct `(service, name, kind, resource, scope)`, first seen first.
    #[pyo3(get)]
    origins: Py<PyList>,
}

fn field<'py>(row: &Bound<'py, PyTuple>, i: usize) -> Bound<'py, PyAny> {
    row.get_borrowed_item(i)
        .map(|item| item.to_owned())
        .unwrap_or_else(|_| row.py().None().into_bound(row.py()))
}

fn int(row: &Bound<'_, PyTuple>, i: usize, name: &str) -> PyResult<i64> {
    field(row, i)
        .extract::<i64>()
        .map_err(|_| PyValueError::new_err(format!("a span's {name} is not an integer")))
}

fn bytes_of<'a>(obj: &'a Bound<'_, PyAny>, name: &str) -> PyResult<&'a [u8]> {
    obj.cast::<PyBytes>()
        .map(|b| b.as_bytes())
        .map_err(|_| PyValueError::new_err(format!("a span's {name} is not bytes")))
}

#[pymethods]
impl SpanBatch {
    #[new]
    fn new(py: Python<'_>, rows: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut kept = Vec::new();
        let mut trace_of = Vec::new();
        let mut origin_of = Vec::new();
        let mut traces: HashMap<Vec<u8>, u32> = HashMap::new();
        let trace_ids = PyList::empty(py);
        let origins = PyList::empty(py);
        let mut origin_ids: HashMap<(u32, u32, i64, u32, u32), u32> = HashMap::new();
        let (mut services, mut names) = (Interner::default(), Interner::default());
        let (mut resources, mut scopes) = (Interner::default(), Interner::default());
        for item in rows.try_iter()? {
            let item = item?;
            let row = item
                .cast::<PyTuple>()
                .map_err(|_| PyValueError::new_err("a span row is not a tuple"))?;
            if row.len() != FIELDS {
                return Err(PyValueError::new_err(format!(
                    "a span row has {} fields, not {FIELDS}",
                    row.len()
                )));
            }
            let trace_id = field(row, TRACE_ID);
            let id = bytes_of(&trace_id, "trace id")?;
            let next = u32::try_from(traces.len()).unwrap_or(u32::MAX);
            let trace = match traces.get(id) {
                Some(&t) => t,
                None => {
                    traces.insert(id.to_vec(), next);
                    trace_ids.append(&trace_id)?;
                    next
                }
            };
            let key = (
                services.id(&field(row, SERVICE), "service")?,
                names.id(&field(row, NAME), "name")?,
                int(row, KIND, "kind")?,
                resources.id(&field(row, RESOURCE), "resource")?,
                scopes.id(&field(row, SCOPE), "scope")?,
            );
            let next = u32::try_from(origin_ids.len()).unwrap_or(u32::MAX);
            let origin = *origin_ids.entry(key).or_insert_with(|| next);
            if origin == next && origins.len() == next as usize {
                let parts = [SERVICE, NAME, KIND, RESOURCE, SCOPE].map(|i| field(row, i));
                origins.append(PyTuple::new(py, parts)?)?;
            }
            trace_of.push(trace);
            origin_of.push(origin);
            kept.push(row.clone().unbind());
        }
        Ok(SpanBatch {
            rows: kept,
            trace_of,
            origin_of,
            trace_ids: trace_ids.unbind(),
            origins: origins.unbind(),
        })
    }

    fn __len__(&self) -> usize {
        self.rows.len()
    }

    /// `refs`: each trace's ref (as `trace_ids`); `origins`: each origin's
    /// `(op_id, service_id, source_id, source_key, source_tags)`; `keys`: the
    /// store's key bases `(op, service_duration, duration, error, service, pairs)`.
    ///
    /// Returns `(spans, summaries, latest, postings)`: the `spans` rows to
    /// insert (with `source_tags` 1 and the span's own tags when its tags end
    /// with its source's); per trace `(ref, start, end, spans, errors,
    /// services, root_op, root_start, root_span_id, root_parentless)`; per
    /// origin its latest start; `(key, refs)` by key (little-endian uint32
    /// refs), then `(pairs key, sorted crc << 32 | ref int64s)` for the tags
    /// one trace holds, if any.
    #[allow(clippy::type_complexity)]
    fn prepare<'py>(
        &self,
        py: Python<'py>,
        refs: Vec<u32>,
        origins: Vec<(i64, i64, i64, i64, Bound<'py, PyTuple>)>,
        keys: (i64, i64, i64, i64, i64, i64),
    ) -> PyResult<(
        Bound<'py, PyList>,
        Bound<'py, PyList>,
        Vec<i64>,
        Bound<'py, PyList>,
    )> {
        let (key_op, key_service_duration, key_duration, key_error, key_service, key_pairs) = keys;
        if refs.len() != self.trace_ids.bind(py).len() {
            return Err(PyValueError::new_err("prepare: one ref per trace id"));
        }
        if origins.len() != self.origins.bind(py).len() {
            return Err(PyValueError::new_err("prepare: one origin per origin"));
        }
        let source_tags: Vec<Vec<String>> = origins
            .iter()
            .map(|o| o.4.iter().map(|t| t.extract::<String>()).collect())
            .collect::<PyResult<_>>()?;
        // rows by trace, first seen first, each trace's in batch order
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.sort_by_key(|&i| self.trace_of[i]);

        let mut spans = Vec::with_capacity(self.rows.len());
        let mut summaries = Vec::with_capacity(refs.len());
        let mut latest = vec![-1i64; origins.len()];
        let mut postings = Postings::default();
        let mut text = String::new();
        let mut own: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut at = 0;
        while at < order.len() {
            let trace = self.trace_of[order[at]];
            let trace_ref = refs[trace as usize];
            let mut summary = Summary::new();
            while at < order.len() && self.trace_of[order[at]] == trace {
                let i = order[at];
                at += 1;
                let row = self.rows[i].bind(py);
                let origin = self.origin_of[i] as usize;
                let (op_id, service_id, source_id, source_key, _) = &origins[origin];
                let start = int(row, START, "start")?;
                let end = int(row, END, "end")?;
                let status = int(row, STATUS, "status")?;
                latest[origin] = latest[origin].max(start);
                let duration = (end - start).max(0);
                let bucket = i64::from(64 - duration.leading_zeros());
                postings.key(key_op | op_id, trace_ref);
                postings.key(key_service_duration | service_id << 7 | bucket, trace_ref);
                postings.key(key_duration | bucket, trace_ref);
                if status == STATUS_ERROR {
                    postings.key(key_error, trace_ref);
                }
                let span_id = field(row, SPAN_ID);
                let parent = field(row, PARENT);
                let has_parent = !bytes_of(&parent, "parent span id")?.is_empty();
                summary.add(
                    start,
                    end,
                    status == STATUS_ERROR,
                    *service_id,
                    (has_parent, start, bytes_of(&span_id, "span id")?, *op_id),
                    &span_id,
                );
                // the source's tags are stored once: a span keeps its own (and a flag)
                let tags_obj = field(row, TAGS);
                let tags = tags_obj
                    .cast::<PyTuple>()
                    .map_err(|_| PyValueError::new_err("a span's tags are not a tuple"))?;
                let shared_tags = &source_tags[origin];
                let n = tags.len();
                let mut shared = !shared_tags.is_empty() && n >= shared_tags.len();
                if shared {
                    for (k, want) in shared_tags.iter().enumerate() {
                        let tag = tags.get_borrowed_item(n - shared_tags.len() + k)?;
                        let same = match tag.cast::<PyString>() {
                            Ok(text) => text.to_str().ok() == Some(want.as_str()),
                            Err(_) => false,
                        };
                        if !same {
                            shared = false;
                            break;
                        }
                    }
                }
                if shared {
                    postings.key(*source_key, trace_ref);
                }
                let own_count = if shared { n - shared_tags.len() } else { n };
                own.clear();
                for k in 0..own_count {
                    own.push(tags.get_borrowed_item(k)?.to_owned());
                }
                text.clear();
                tags_text(&own, &mut text, &mut postings, trace_ref)?;
                let items: [Bound<'py, PyAny>; 17] = [
                    trace_ref.into_pyobject(py)?.into_any(),
                    span_id,
                    parent,
                    op_id.into_pyobject(py)?.into_any(),
                    field(row, START),
                    field(row, END),
                    duration.into_pyobject(py)?.into_any(),
                    field(row, STATUS),
                    field(row, MESSAGE),
                    field(row, FLAGS),
                    field(row, STATE),
                    source_id.into_pyobject(py)?.into_any(),
                    i64::from(shared).into_pyobject(py)?.into_any(),
                    PyString::new(py, &text).into_any(),
                    field(row, ATTRIBUTES),
                    field(row, EVENTS),
                    field(row, LINKS),
                ];
                spans.push(PyTuple::new(py, items)?);
            }
            for &(service, _) in &summary.services {
                postings.key(key_service | service, trace_ref);
            }
            summaries.push(summary.into_tuple(py, trace_ref)?);
        }
        let postings = postings.rows(py, key_pairs)?;
        Ok((
            PyList::new(py, spans)?,
            PyList::new(py, summaries)?,
            latest,
            postings,
        ))
    }
}

/// A span's own tags as the `tags` column has them (`"\nk=v\nk=v\n"`, or a
/// JSON array when one holds a newline; empty for none), each one a posting.
fn tags_text(
    tags: &[Bound<'_, PyAny>],
    text: &mut String,
    postings: &mut Postings,
    trace_ref: u32,
) -> PyResult<()> {
    if tags.is_empty() {
        return Ok(());
    }
    let mut newline = false;
    text.push('\n');
    for tag in tags {
        let tag = tag
            .cast::<PyString>()
            .map_err(|_| PyValueError::new_err("a span's tag is not a string"))?
            .to_str()?;
        newline |= tag.contains('\n');
        postings.tag(tag, trace_ref);
        text.push_str(tag);
        text.push('\n');
    }
    if newline {
        text.clear();
        text.push('[');
        for (k, tag) in tags.iter().enumerate() {
            if k > 0 {
                text.push(',');
            }
            seawall_otlp::json_text::string(text, tag.cast::<PyString>()?.to_str()?);
        }
        text.push(']');
    }
    Ok(())
}

/// The root so far: (has a parent, start, span id, op id, the span id's object).
type Root<'py> = (bool, i64, Vec<u8>, i64, Bound<'py, PyAny>);

/// A trace's summary of the batch.
struct Summary<'py> {
    start: i64,
    end: i64,
    spans: i64,
    errors: i64,
    /// `(service id, spans)`, first seen first.
    services: Vec<(i64, i64)>,
    /// The least (has a parent, start, span id, op id) so far.
    root: Option<Root<'py>>,
}

impl<'py> Summary<'py> {
    fn new() -> Self {
        Summary {
            start: i64::MAX,
            end: -1,
            spans: 0,
            errors: 0,
            services: Vec::new(),
            root: None,
        }
    }

    fn add(
        &mut self,
        start: i64,
        end: i64,
        error: bool,
        service: i64,
        candidate: (bool, i64, &[u8], i64),
        span_id: &Bound<'py, PyAny>,
    ) {
        self.start = self.start.min(start);
        self.end = self.end.max(end);
        self.spans += 1;
        self.errors += i64::from(error);
        match self.services.iter_mut().find(|(s, _)| *s == service) {
            Some((_, n)) => *n += 1,
            None => self.services.push((service, 1)),
        }
        let better = self
            .root
            .as_ref()
            .is_none_or(|(parent, start, span, op, _)| {
                candidate < (*parent, *start, span.as_slice(), *op)
            });
        if better {
            let (parent, start, span, op) = candidate;
            self.root = Some((parent, start, span.to_vec(), op, span_id.clone()));
        }
    }

    fn into_tuple(self, py: Python<'py>, trace_ref: u32) -> PyResult<Bound<'py, PyTuple>> {
        let mut services = String::new();
        for (k, (service, n)) in self.services.iter().enumerate() {
            if k > 0 {
                services.push(',');
            }
            services.push_str(&format!("{service}:{n}"));
        }
        let (has_parent, root_start, _, root_op, root_span) = self
            .root
            .ok_or_else(|| PyValueError::new_err("a trace without spans"))?;
        let items: [Bound<'py, PyAny>; 10] = [
            trace_ref.into_pyobject(py)?.into_any(),
            self.start.into_pyobject(py)?.into_any(),
            self.end.into_pyobject(py)?.into_any(),
            self.spans.into_pyobject(py)?.into_any(),
            self.errors.into_pyobject(py)?.into_any(),
            PyString::new(py, &services).into_any(),
            root_op.into_pyobject(py)?.into_any(),
            root_start.into_pyobject(py)?.into_any(),
            root_span,
            i64::from(!has_parent).into_pyobject(py)?.into_any(),
        ];
        PyTuple::new(py, items)
    }
}

/// The batch's posting lists: each key's refs, each trace once (the traces
/// come one after the other, so "once" is "not the last one pushed").
#[derive(Default)]
struct Postings {
    keys: HashMap<i64, Vec<u32>>,
    tags: HashMap<String, Vec<u32>>,
}

impl Postings {
    fn key(&mut self, key: i64, trace_ref: u32) {
        let refs = self.keys.entry(key).or_default();
        if refs.last() != Some(&trace_ref) {
            refs.push(trace_ref);
        }
    }

    fn tag(&mut self, tag: &str, trace_ref: u32) {
        match self.tags.get_mut(tag) {
            Some(refs) if refs.last() == Some(&trace_ref) => {}
            Some(refs) => refs.push(trace_ref),
            None => {
                self.tags.insert(tag.to_owned(), vec![trace_ref]);
            }
        }
    }

    /// `(key, packed refs)` by key, a tag's key its CRC-32 (signed); the tags
    /// one trace holds as one last row of pairs.
    fn rows<'py>(self, py: Python<'py>, key_pairs: i64) -> PyResult<Bound<'py, PyList>> {
        let mut lists: BTreeMap<i64, Vec<u32>> = self.keys.into_iter().collect();
        let mut pairs = Vec::new();
        for (tag, refs) in self.tags {
            let crc = i64::from(crc32(tag.as_bytes()) as i32);
            if let [only] = refs[..] {
                pairs.push(crc << 32 | i64::from(only));
            } else {
                lists.entry(crc).or_default().extend(refs); // two tags, one CRC
            }
        }
        let out = PyList::empty(py);
        for (key, refs) in lists {
            let packed: Vec<u8> = refs.iter().flat_map(|r| r.to_le_bytes()).collect();
            out.append((key, PyBytes::new(py, &packed)))?;
        }
        if !pairs.is_empty() {
            pairs.sort_unstable();
            let packed: Vec<u8> = pairs.iter().flat_map(|p| p.to_le_bytes()).collect();
            out.append((key_pairs, PyBytes::new(py, &packed)))?;
        }
        Ok(out)
    }
}

/// CRC-32 (IEEE 802.3, zlib's `crc32`).
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SpanBatch>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crc32;

    const CART: u32 = 0x8E6E_9B1E; // zlib.crc32(b"http.route=/cart")

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"http.route=/cart"), CART);
    }
}
