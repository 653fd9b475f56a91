//! The other output of a parse: the encoder's model ([`ResourceSpans`]), so
//! that a body read can be written again (OTLP/JSON to protobuf, and the
//! round trips of the tests and the fuzz target).
//!
//! The model has one scope per `ResourceSpans`: a resource with several
//! scopes becomes several `ResourceSpans` with the same resource (following
//! scope spans with the same scope are merged). Scope spans without a valid
//! span are left out, and so are what the model has no place for (dropped
//! counts, schema URLs, scope attributes).
use std::borrow::Cow;

use super::sink::{EventHead, LinkHead, Owner, Scalar, ScopeHead, Sink, SpanHead};
use crate::model::{AnyValue, Event, KeyValue, Link, ResourceSpans, Scope, Span, Status};

/// A value being built.
enum Pending {
    Kv {
        owner: Owner,
        key: String,
        value: AnyValue,
    },
    Array(Vec<AnyValue>),
    List(Vec<KeyValue>),
}

#[derive(Default)]
pub(crate) struct ModelSink {
    out: Vec<ResourceSpans>,
    resource_start: usize,
    resource: Vec<KeyValue>,
    spans: Vec<Span>,
    attributes: Vec<KeyValue>,
    events: Vec<Event>,
    links: Vec<Link>,
    /// The attributes of the event or link being read.
    item: Vec<KeyValue>,
    stack: Vec<Pending>,
}

impl ModelSink {
    pub fn into_model(self) -> Vec<ResourceSpans> {
        self.out
    }

    fn deliver(&mut self, v: AnyValue) {
        match self.stack.last_mut() {
            Some(Pending::Kv { value, .. }) => *value = v,
            Some(Pending::Array(values)) => values.push(v),
            Some(Pending::List(_)) | None => {}
        }
    }
}

impl Sink for ModelSink {
    fn begin_resource_spans(&mut self) {
        self.resource_start = self.out.len();
        self.resource.clear();
    }

    fn end_resource_spans(&mut self) {
        let resource = std::mem::take(&mut self.resource);
        for rs in &mut self.out[self.resource_start..] {
            rs.resource.clone_from(&resource);
        }
    }

    fn begin_scope_spans(&mut self) {
        self.spans.clear();
    }

    fn end_scope_spans(&mut self, scope: &ScopeHead<'_>) {
        if self.spans.is_empty() {
            return;
        }
        let spans = std::mem::take(&mut self.spans);
        if let Some(last) = self.out[self.resource_start..].last_mut() {
            if last.scope.name == scope.name && last.scope.version == scope.version {
                last.spans.extend(spans);
                return;
            }
        }
        self.out.push(ResourceSpans {
            resource: Vec::new(),
            scope: Scope::new(scope.name.to_owned(), scope.version.to_owned()),
            spans,
        });
    }

    fn begin_span(&mut self) {
        self.attributes.clear();
        self.events.clear();
        self.links.clear();
    }

    fn end_span(&mut self, span: &SpanHead<'_>) {
        self.spans.push(Span {
            trace_id: span.trace_id,
            span_id: span.span_id,
            parent_span_id: span.parent_span_id,
            trace_state: span.trace_state.to_owned(),
            flags: span.flags,
            name: span.name.to_owned(),
            kind: span.kind,
            start_unix_nano: span.start,
            end_unix_nano: span.end,
            attributes: std::mem::take(&mut self.attributes),
            events: std::mem::take(&mut self.events),
            links: std::mem::take(&mut self.links),
            status: Status {
                code: span.status_code,
                message: span.status_message.to_owned(),
            },
        });
    }

    fn discard_span(&mut self) {}

    fn begin_event(&mut self) {
        self.item.clear();
    }

    fn end_event(&mut self, event: &EventHead<'_>) {
        self.events.push(Event {
            time_unix_nano: event.time,
            name: Cow::Owned(event.name.to_owned()),
            attributes: std::mem::take(&mut self.item),
        });
    }

    fn begin_link(&mut self) {
        self.item.clear();
    }

    fn end_link(&mut self, link: &LinkHead<'_>) {
        self.links.push(Link {
            trace_id: link.trace_id,
            span_id: link.span_id,
            trace_state: link.trace_state.to_owned(),
            flags: link.flags,
            attributes: std::mem::take(&mut self.item),
        });
    }

    fn begin_kv(&mut self, owner: Owner, key: &str) {
        self.stack.push(Pending::Kv {
            owner,
            key: key.to_owned(),
            value: AnyValue::Empty,
        });
    }

    fn end_kv(&mut self) {
        let Some(Pending::Kv { owner, key, value }) = self.stack.pop() else {
            return;
        };
        let kv = KeyValue::new(key, value);
        match owner {
            Owner::Resource => self.resource.push(kv),
            Owner::Span => self.attributes.push(kv),
            Owner::Event | Owner::Link => self.item.push(kv),
            Owner::List => {
                if let Some(Pending::List(values)) = self.stack.last_mut() {
                    values.push(kv);
                }
            }
        }
    }

    fn scalar(&mut self, value: Scalar<'_>) {
        let v = match value {
            Scalar::Str(s) => AnyValue::String(s.to_owned()),
            Scalar::Bool(b) => AnyValue::Bool(b),
            Scalar::Int(n) => AnyValue::Int(n),
            Scalar::Double(d) => AnyValue::Double(d),
            Scalar::Bytes(b) => AnyValue::Bytes(b.to_vec()),
            Scalar::Empty => AnyValue::Empty,
        };
        self.deliver(v);
    }

    fn begin_array(&mut self) {
        self.stack.push(Pending::Array(Vec::new()));
    }

    fn end_array(&mut self) {
        if let Some(Pending::Array(values)) = self.stack.pop() {
            self.deliver(AnyValue::Array(values));
        }
    }

    fn begin_kvlist(&mut self) {
        self.stack.push(Pending::List(Vec::new()));
    }

    fn end_kvlist(&mut self) {
        if let Some(Pending::List(values)) = self.stack.pop() {
            self.deliver(AnyValue::KvList(values));
        }
    }
}
