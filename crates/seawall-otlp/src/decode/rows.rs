//! The collector's output: one flat [`Row`] per span, its nested parts
//! written as compact OTLP/JSON text as the parser reports them
//! (`seawall.telemetry.spans.SpanRow` documents every column).
//!
//! The text is written into buffers reused from span to span, then copied
//! once into the row. A resource's columns (its JSON, `service.name`, its
//! tags) and a scope's are shared by its rows (`Arc`), not copied: a big
//! resource over many small spans costs its size once.
use std::sync::Arc;

use super::sink::{EventHead, LinkHead, Owner, Scalar, ScopeHead, Sink, SpanHead};
use super::{MAX_TAGS, MAX_TAG_VALUE, UNKNOWN_SERVICE};
use crate::{base64, hex, json_text};

/// One span, as the trace store keeps it: `seawall.telemetry.spans.SpanRow`,
/// field for field.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Never all zero.
    pub trace_id: [u8; 16],
    /// Never all zero.
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    /// The resource's `service.name` (a string), or [`UNKNOWN_SERVICE`].
    pub service: Arc<str>,
    pub name: String,
    /// A `SpanKind` number (one OTLP does not define reads as 0).
    pub kind: i32,
    pub start_ns: u64,
    pub end_ns: u64,
    /// A `StatusCode` number (one OTLP does not define reads as 0).
    pub status_code: i32,
    pub status_message: String,
    /// The W3C trace flags (`Span.flags & 0xff`).
    pub flags: u32,
    pub trace_state: String,
    /// `[{"key":…,"value":{…}},…]`
    pub attributes: String,
    /// `[{"timeUnixNano":"…","name":"…","attributes":[…]},…]`
    pub events: String,
    /// `[{"traceId":"…","spanId":"…","traceState":"…","attributes":[…]},…]`
    pub links: String,
    /// The resource's attributes, as `attributes`.
    pub resource: Arc<str>,
    /// `{"name":"…","version":"…"}`
    pub scope: Arc<str>,
    pub tags: Tags,
}

/// The attribute index's `key=value` texts of a span: its own scalar
/// attributes, then its resource's (shared by the resource's rows); at most
/// [`MAX_TAGS`] in all.
#[derive(Clone, Debug, Default)]
pub struct Tags {
    span: TagList,
    resource: Arc<TagList>,
}

impl Tags {
    /// The tags, the span's first.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let room = MAX_TAGS.saturating_sub(self.span.len());
        self.span.iter().chain(self.resource.iter().take(room))
    }

    /// The span's own tags, then its resource's (`Arc::ptr_eq` tells the
    /// rows of one resource apart, for sharing what is built from them).
    pub fn parts(&self) -> (&TagList, &Arc<TagList>) {
        (&self.span, &self.resource)
    }

    pub fn len(&self) -> usize {
        (self.span.len() + self.resource.len()).min(MAX_TAGS)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartialEq for Tags {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// Tags in one string (one allocation for all of them, not one each).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TagList {
    text: String,
    ends: Vec<usize>,
}

impl TagList {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.text[a..b])
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// `key=value` for a scalar; nothing for bytes and empty values, or when full.
    fn push(&mut self, key: &str, value: Scalar<'_>) {
        if self.ends.len() >= MAX_TAGS {
            return;
        }
        let start = self.text.len();
        self.text.push_str(key);
        self.text.push('=');
        match value {
            Scalar::Str(s) => self.text.push_str(cut(s, MAX_TAG_VALUE)),
            Scalar::Bool(b) => self.text.push_str(if b { "true" } else { "false" }),
            Scalar::Int(n) => json_text::int(&mut self.text, n),
            Scalar::Double(d) => json_text::double_text(&mut self.text, d),
            Scalar::Bytes(_) | Scalar::Empty => {
                self.text.truncate(start);
                return;
            }
        }
        self.ends.push(self.text.len());
    }

    /// A copy without spare capacity (for a row to keep).
    fn to_exact(&self) -> TagList {
        TagList {
            text: self.text.as_str().into(),
            ends: self.ends.as_slice().into(),
        }
    }
}

/// `s` cut to at most `max` characters (on a char boundary).
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Before an element of a JSON array or object: a comma, unless it is the first.
fn separate(buf: &mut String) {
    if !matches!(buf.as_bytes().last(), Some(b'[' | b'{' | b':') | None) {
        buf.push(',');
    }
}

/// The rows of a body, written as the parser reports it.
pub(crate) struct RowSink {
    rows: Vec<Row>,
    /// The first row of the resource spans, and of the scope spans, being read.
    resource_start: usize,
    scope_start: usize,
    resource: String,
    resource_tags: TagList,
    service: Option<Arc<str>>,
    // the span being read
    attributes: String,
    events: String,
    links: String,
    span_tags: TagList,
    /// The attributes of the event or link being read.
    item: String,
    /// The list the current top-level key-value is in, and its key.
    owner: Owner,
    key: String,
    /// Arrays and lists open inside the current top-level key-value.
    depth: usize,
    /// The placeholder of the shared columns until their message ends.
    empty: Arc<str>,
    no_tags: Arc<TagList>,
}

impl RowSink {
    pub fn new() -> Self {
        RowSink {
            rows: Vec::new(),
            resource_start: 0,
            scope_start: 0,
            resource: String::new(),
            resource_tags: TagList::default(),
            service: None,
            attributes: String::new(),
            events: String::new(),
            links: String::new(),
            span_tags: TagList::default(),
            item: String::new(),
            owner: Owner::Span,
            key: String::new(),
            depth: 0,
            empty: Arc::from(""),
            no_tags: Arc::default(),
        }
    }

    pub fn into_rows(self) -> Vec<Row> {
        self.rows
    }

    /// Where the current key-value's JSON goes.
    fn buf(&mut self) -> &mut String {
        match self.owner {
            Owner::Resource => &mut self.resource,
            Owner::Span => &mut self.attributes,
            // (`owner` is never `List`: a list's key-values stay in their top-level one's)
            Owner::Event | Owner::Link | Owner::List => &mut self.item,
        }
    }
}

impl Sink for RowSink {
    fn begin_resource_spans(&mut self) {
        self.resource_start = self.rows.len();
        self.resource.clear();
        self.resource.push('[');
        self.resource_tags.clear();
        self.service = None;
    }

    fn end_resource_spans(&mut self) {
        self.resource.push(']');
        let resource: Arc<str> = Arc::from(self.resource.as_str());
        let service = self
            .service
            .take()
            .unwrap_or_else(|| Arc::from(UNKNOWN_SERVICE));
        let tags = Arc::new(self.resource_tags.to_exact());
        for row in &mut self.rows[self.resource_start..] {
            row.resource = Arc::clone(&resource);
            row.service = Arc::clone(&service);
            row.tags.resource = Arc::clone(&tags);
        }
    }

    fn begin_scope_spans(&mut self) {
        self.scope_start = self.rows.len();
    }

    fn end_scope_spans(&mut self, scope: &ScopeHead<'_>) {
        if self.scope_start == self.rows.len() {
            return;
        }
        let mut text = String::with_capacity(24 + scope.name.len() + scope.version.len());
        text.push_str("{\"name\":");
        json_text::string(&mut text, scope.name);
        text.push_str(",\"version\":");
        json_text::string(&mut text, scope.version);
        text.push('}');
        let text: Arc<str> = Arc::from(text);
        for row in &mut self.rows[self.scope_start..] {
            row.scope = Arc::clone(&text);
        }
    }

    fn begin_span(&mut self) {
        for buf in [&mut self.attributes, &mut self.events, &mut self.links] {
            buf.clear();
            buf.push('[');
        }
        self.span_tags.clear();
    }

    fn end_span(&mut self, span: &SpanHead<'_>) {
        for buf in [&mut self.attributes, &mut self.events, &mut self.links] {
            buf.push(']');
        }
        self.rows.push(Row {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            service: Arc::clone(&self.empty),
            name: span.name.to_owned(),
            kind: span.kind as i32,
            start_ns: span.start,
            end_ns: span.end,
            status_code: span.status_code as i32,
            status_message: span.status_message.to_owned(),
            flags: span.flags & 0xff,
            trace_state: span.trace_state.to_owned(),
            attributes: self.attributes.as_str().into(),
            events: self.events.as_str().into(),
            links: self.links.as_str().into(),
            resource: Arc::clone(&self.empty),
            scope: Arc::clone(&self.empty),
            tags: Tags {
                span: self.span_tags.to_exact(),
                resource: Arc::clone(&self.no_tags),
            },
        });
    }

    fn discard_span(&mut self) {}

    fn begin_event(&mut self) {
        self.item.clear();
        self.item.push('[');
    }

    fn end_event(&mut self, event: &EventHead<'_>) {
        let out = &mut self.events;
        separate(out);
        out.push_str("{\"timeUnixNano\":\"");
        json_text::int(out, event.time);
        out.push_str("\",\"name\":");
        json_text::string(out, event.name);
        out.push_str(",\"attributes\":");
        out.push_str(&self.item);
        out.push_str("]}");
    }

    fn begin_link(&mut self) {
        self.item.clear();
        self.item.push('[');
    }

    fn end_link(&mut self, link: &LinkHead<'_>) {
        let out = &mut self.links;
        separate(out);
        out.push_str("{\"traceId\":\"");
        hex::encode_into(out, &link.trace_id);
        out.push_str("\",\"spanId\":\"");
        hex::encode_into(out, &link.span_id);
        out.push_str("\",\"traceState\":");
        json_text::string(out, link.trace_state);
        out.push_str(",\"attributes\":");
        out.push_str(&self.item);
        out.push_str("]}");
    }

    fn begin_kv(&mut self, owner: Owner, key: &str) {
        if owner != Owner::List {
            self.owner = owner;
            self.depth = 0;
            self.key.clear();
            self.key.push_str(key);
        }
        let buf = self.buf();
        separate(buf);
        buf.push_str("{\"key\":");
        json_text::string(buf, key);
        buf.push_str(",\"value\":");
    }

    fn end_kv(&mut self) {
        self.buf().push('}');
    }

    fn scalar(&mut self, value: Scalar<'_>) {
        let buf = self.buf();
        separate(buf);
        match value {
            Scalar::Str(s) => {
                buf.push_str("{\"stringValue\":");
                json_text::string(buf, s);
            }
            Scalar::Bool(b) => buf.push_str(if b {
                "{\"boolValue\":true"
            } else {
                "{\"boolValue\":false"
            }),
            Scalar::Int(n) => {
                buf.push_str("{\"intValue\":\"");
                json_text::int(buf, n);
                buf.push('"');
            }
            Scalar::Double(d) => {
                buf.push_str("{\"doubleValue\":");
                json_text::double(buf, d);
            }
            Scalar::Bytes(b) => {
                buf.push_str("{\"bytesValue\":\"");
                base64::encode_into(buf, b);
                buf.push('"');
            }
            Scalar::Empty => buf.push('{'),
        }
        buf.push('}');
        if self.depth > 0 {
            return;
        }
        match self.owner {
            Owner::Span => self.span_tags.push(&self.key, value),
            Owner::Resource => {
                if let (None, "service.name", Scalar::Str(s)) =
                    (&self.service, self.key.as_str(), value)
                {
                    self.service = Some(Arc::from(s));
                }
                self.resource_tags.push(&self.key, value);
            }
            _ => {}
        }
    }

    fn begin_array(&mut self) {
        let buf = self.buf();
        separate(buf);
        buf.push_str("{\"arrayValue\":{\"values\":[");
        self.depth += 1;
    }

    fn end_array(&mut self) {
        self.buf().push_str("]}}");
        self.depth -= 1;
    }

    fn begin_kvlist(&mut self) {
        let buf = self.buf();
        separate(buf);
        buf.push_str("{\"kvlistValue\":{\"values\":[");
        self.depth += 1;
    }

    fn end_kvlist(&mut self) {
        self.buf().push_str("]}}");
        self.depth -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_on_char_boundaries() {
        assert_eq!(cut("abc", 2), "ab");
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("ééé", 2), "éé");
        let long = "é".repeat(300);
        assert_eq!(cut(&long, MAX_TAG_VALUE).chars().count(), MAX_TAG_VALUE);
        // 256 characters of 2 bytes each: longer than 256 bytes, not cut
        let exact = "é".repeat(MAX_TAG_VALUE);
        assert_eq!(cut(&exact, MAX_TAG_VALUE), exact);
    }

    #[test]
    fn tags() {
        let mut t = TagList::default();
        t.push("s", Scalar::Str("v"));
        t.push("b", Scalar::Bool(false));
        t.push("i", Scalar::Int(-3));
        t.push("d", Scalar::Double(0.5));
        t.push("n", Scalar::Double(f64::NAN));
        t.push("x", Scalar::Bytes(b"no"));
        t.push("e", Scalar::Empty);
        t.push("", Scalar::Str(""));
        assert_eq!(
            t.iter().collect::<Vec<_>>(),
            ["s=v", "b=false", "i=-3", "d=0.5", "n=NaN", "="]
        );
        let tags = Tags {
            span: t.clone(),
            resource: Arc::new(t),
        };
        assert_eq!(tags.len(), 12);
        assert_eq!(tags.iter().count(), 12);
    }

    #[test]
    fn tags_stop_at_the_cap() {
        let mut span = TagList::default();
        for i in 0..MAX_TAGS + 5 {
            span.push(&format!("k{i}"), Scalar::Int(1));
        }
        assert_eq!(span.len(), MAX_TAGS);
        let mut resource = TagList::default();
        resource.push("r", Scalar::Int(1));
        let tags = Tags {
            span,
            resource: Arc::new(resource),
        };
        assert_eq!(tags.iter().count(), MAX_TAGS);
        assert_eq!(tags.len(), MAX_TAGS);
    }
}
