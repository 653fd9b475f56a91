//! The OTLP/protobuf parser: an `ExportTraceServiceRequest`, walked once,
//! reported to a [`Sink`].
//!
//! No tree is built and nothing is copied: strings are checked for UTF-8 and
//! handed over borrowed from the body. Unknown fields are skipped, whatever
//! their wire type (groups excepted: refused); a known field with the wrong
//! wire type is an error. As protobuf merges them, a message field that
//! appears twice (a resource, a status, a scope) counts as one, its repeated
//! fields appended and its scalars the last ones seen; for a `KeyValue`'s
//! value and the members of `AnyValue`'s oneof, the last one wins.
//!
//! Field numbers: opentelemetry-proto (collector/trace/v1/trace_service.proto,
//! trace/v1/trace.proto, common/v1/common.proto, resource/v1/resource.proto),
//! checked against the descriptors of the `opentelemetry-proto` Python
//! package the tests use.
use super::check::{self, Rejections, SpanAt};
use super::error::{DecodeError, ErrorKind, Segment};
use super::sink::{Discard, EventHead, LinkHead, Owner, Scalar, ScopeHead, Sink, SpanHead};
use super::MAX_DEPTH;
use crate::model::{SpanKind, StatusCode};
use crate::wire::{Reader, I32, I64, LEN, VARINT};

type Result<T> = std::result::Result<T, DecodeError>;

/// Parse an `ExportTraceServiceRequest` into `sink`.
pub(crate) fn parse<S: Sink>(body: &[u8], sink: &mut S, rejections: &mut Rejections) -> Result<()> {
    let mut r = Reader::new(body);
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // ExportTraceServiceRequest.resource_spans = 1
            1 => {
                expect(field, "resourceSpans", wire_type, LEN)?;
                let at = Segment::Index("resourceSpans", n);
                let msg = r.message().map_err(|e| DecodeError::from(e).at(at))?;
                resource_spans(msg, n, sink, rejections).map_err(|e| e.at(at))?;
                n += 1;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}

/// A known field's wire type, checked.
#[inline]
fn expect(field: u32, name: &'static str, wire_type: u8, want: u8) -> Result<()> {
    if wire_type == want {
        Ok(())
    } else {
        Err(DecodeError::new(ErrorKind::WireType {
            field,
            name,
            wire_type,
        }))
    }
}

/// A string field's value.
#[inline]
fn string<'a>(r: &mut Reader<'a>, name: &'static str) -> Result<&'a str> {
    let at = Segment::Field(name);
    let (bytes, offset) = r.bytes().map_err(|e| DecodeError::from(e).at(at))?;
    utf8(bytes, offset).map_err(|e| e.at(at))
}

/// Bytes that must be UTF-8 (`offset`: where they start in the body).
#[inline]
fn utf8(bytes: &[u8], offset: usize) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(ErrorKind::Utf8 {
            at: offset + e.valid_up_to(),
        })
    })
}

/// A bytes field's value.
#[inline]
fn bytes<'a>(r: &mut Reader<'a>, name: &'static str) -> Result<&'a [u8]> {
    let (bytes, _) = r
        .bytes()
        .map_err(|e| DecodeError::from(e).at(Segment::Field(name)))?;
    Ok(bytes)
}

/// A message field's value, as a reader of its own.
#[inline]
fn message<'a>(r: &mut Reader<'a>, at: Segment) -> Result<Reader<'a>> {
    r.message().map_err(|e| DecodeError::from(e).at(at))
}

fn resource_spans<S: Sink>(
    mut r: Reader<'_>,
    index: usize,
    sink: &mut S,
    rejections: &mut Rejections,
) -> Result<()> {
    sink.begin_resource_spans();
    let mut scopes = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // ResourceSpans.resource = 1, scope_spans = 2, schema_url = 3
            1 => {
                expect(field, "resource", wire_type, LEN)?;
                let at = Segment::Field("resource");
                let msg = message(&mut r, at)?;
                resource(msg, sink).map_err(|e| e.at(at))?;
            }
            2 => {
                expect(field, "scopeSpans", wire_type, LEN)?;
                let at = Segment::Index("scopeSpans", scopes);
                let msg = message(&mut r, at)?;
                let span_at = SpanAt {
                    resource_spans: index,
                    scope_spans: scopes,
                    span: 0,
                };
                scope_spans(msg, span_at, sink, rejections).map_err(|e| e.at(at))?;
                scopes += 1;
            }
            3 => {
                expect(field, "schemaUrl", wire_type, LEN)?;
                string(&mut r, "schemaUrl")?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    sink.end_resource_spans();
    Ok(())
}

fn resource<S: Sink>(mut r: Reader<'_>, sink: &mut S) -> Result<()> {
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // Resource.attributes = 1, dropped_attributes_count = 2
            1 => {
                expect(field, "attributes", wire_type, LEN)?;
                attribute(&mut r, "attributes", n, Owner::Resource, sink)?;
                n += 1;
            }
            2 => {
                expect(field, "droppedAttributesCount", wire_type, VARINT)?;
                r.varint()?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}

fn scope_spans<S: Sink>(
    mut r: Reader<'_>,
    mut at: SpanAt,
    sink: &mut S,
    rejections: &mut Rejections,
) -> Result<()> {
    sink.begin_scope_spans();
    let mut head = ScopeHead::default();
    let mut spans = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // ScopeSpans.scope = 1, spans = 2, schema_url = 3
            1 => {
                expect(field, "scope", wire_type, LEN)?;
                let seg = Segment::Field("scope");
                let msg = message(&mut r, seg)?;
                scope(msg, &mut head).map_err(|e| e.at(seg))?;
            }
            2 => {
                expect(field, "spans", wire_type, LEN)?;
                let seg = Segment::Index("spans", spans);
                let msg = message(&mut r, seg)?;
                at.span = spans;
                span(msg, at, sink, rejections).map_err(|e| e.at(seg))?;
                spans += 1;
            }
            3 => {
                expect(field, "schemaUrl", wire_type, LEN)?;
                string(&mut r, "schemaUrl")?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    sink.end_scope_spans(&head);
    Ok(())
}

fn scope<'a>(mut r: Reader<'a>, head: &mut ScopeHead<'a>) -> Result<()> {
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // InstrumentationScope.name = 1, version = 2, attributes = 3,
            // dropped_attributes_count = 4
            1 => {
                expect(field, "name", wire_type, LEN)?;
                head.name = string(&mut r, "name")?;
            }
            2 => {
                expect(field, "version", wire_type, LEN)?;
                head.version = string(&mut r, "version")?;
            }
            3 => {
                // checked, not kept: the store's scope column is its name and version
                expect(field, "attributes", wire_type, LEN)?;
                attribute(&mut r, "attributes", n, Owner::Resource, &mut Discard)?;
                n += 1;
            }
            4 => {
                expect(field, "droppedAttributesCount", wire_type, VARINT)?;
                r.varint()?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}

fn span<S: Sink>(
    mut r: Reader<'_>,
    at: SpanAt,
    sink: &mut S,
    rejections: &mut Rejections,
) -> Result<()> {
    sink.begin_span();
    let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
    let mut trace_state = "";
    let mut flags = 0;
    let mut name = "";
    let mut kind = 0;
    let (mut start, mut end) = (0, 0);
    let (mut status_code, mut status_message) = (0, "");
    let (mut attributes, mut events, mut links) = (0, 0, 0);
    let mut bad_link = None;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // Span.trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4,
            // name = 5, kind = 6, start_time_unix_nano = 7 (fixed64),
            // end_time_unix_nano = 8 (fixed64), attributes = 9,
            // dropped_attributes_count = 10, events = 11, dropped_events_count = 12,
            // links = 13, dropped_links_count = 14, status = 15, flags = 16 (fixed32)
            1 => {
                expect(field, "traceId", wire_type, LEN)?;
                trace_id = bytes(&mut r, "traceId")?;
            }
            2 => {
                expect(field, "spanId", wire_type, LEN)?;
                span_id = bytes(&mut r, "spanId")?;
            }
            3 => {
                expect(field, "traceState", wire_type, LEN)?;
                trace_state = string(&mut r, "traceState")?;
            }
            4 => {
                expect(field, "parentSpanId", wire_type, LEN)?;
                parent = bytes(&mut r, "parentSpanId")?;
            }
            5 => {
                expect(field, "name", wire_type, LEN)?;
                name = string(&mut r, "name")?;
            }
            6 => {
                expect(field, "kind", wire_type, VARINT)?;
                // an int32 enum: the low 32 bits of the varint
                kind = r.varint()? as i32;
            }
            7 => {
                expect(field, "startTimeUnixNano", wire_type, I64)?;
                start = r.fixed64()?;
            }
            8 => {
                expect(field, "endTimeUnixNano", wire_type, I64)?;
                end = r.fixed64()?;
            }
            9 => {
                expect(field, "attributes", wire_type, LEN)?;
                attribute(&mut r, "attributes", attributes, Owner::Span, sink)?;
                attributes += 1;
            }
            11 => {
                expect(field, "events", wire_type, LEN)?;
                let seg = Segment::Index("events", events);
                let msg = message(&mut r, seg)?;
                event(msg, sink).map_err(|e| e.at(seg))?;
                events += 1;
            }
            13 => {
                expect(field, "links", wire_type, LEN)?;
                let seg = Segment::Index("links", links);
                let msg = message(&mut r, seg)?;
                let why = link(msg, links, sink).map_err(|e| e.at(seg))?;
                bad_link = bad_link.or(why);
                links += 1;
            }
            15 => {
                expect(field, "status", wire_type, LEN)?;
                let seg = Segment::Field("status");
                let msg = message(&mut r, seg)?;
                status(msg, &mut status_code, &mut status_message).map_err(|e| e.at(seg))?;
            }
            16 => {
                expect(field, "flags", wire_type, I32)?;
                flags = r.fixed32()?;
            }
            10 | 12 | 14 => {
                let name = match field {
                    10 => "droppedAttributesCount",
                    12 => "droppedEventsCount",
                    _ => "droppedLinksCount",
                };
                expect(field, name, wire_type, VARINT)?;
                r.varint()?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    let ids = check::span_ids(trace_id, span_id, parent).and_then(|ids| match bad_link {
        Some(why) => Err(why),
        None => Ok(ids),
    });
    match ids {
        Ok(ids) => sink.end_span(&SpanHead {
            trace_id: ids.trace_id,
            span_id: ids.span_id,
            parent_span_id: ids.parent_span_id,
            trace_state,
            flags,
            name,
            kind: SpanKind::from_i32(kind),
            start,
            end,
            status_code: StatusCode::from_i32(status_code),
            status_message,
        }),
        Err(why) => {
            sink.discard_span();
            rejections.add(at, &why);
        }
    }
    Ok(())
}

fn event<S: Sink>(mut r: Reader<'_>, sink: &mut S) -> Result<()> {
    sink.begin_event();
    let mut head = EventHead { time: 0, name: "" };
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // Span.Event.time_unix_nano = 1 (fixed64), name = 2, attributes = 3,
            // dropped_attributes_count = 4
            1 => {
                expect(field, "timeUnixNano", wire_type, I64)?;
                head.time = r.fixed64()?;
            }
            2 => {
                expect(field, "name", wire_type, LEN)?;
                head.name = string(&mut r, "name")?;
            }
            3 => {
                expect(field, "attributes", wire_type, LEN)?;
                attribute(&mut r, "attributes", n, Owner::Event, sink)?;
                n += 1;
            }
            4 => {
                expect(field, "droppedAttributesCount", wire_type, VARINT)?;
                r.varint()?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    sink.end_event(&head);
    Ok(())
}

/// A link; `Some` when its ids make its span invalid.
fn link<S: Sink>(mut r: Reader<'_>, index: usize, sink: &mut S) -> Result<Option<check::Reject>> {
    sink.begin_link();
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    let mut trace_state = "";
    let mut flags = 0;
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // Span.Link.trace_id = 1, span_id = 2, trace_state = 3, attributes = 4,
            // dropped_attributes_count = 5, flags = 6 (fixed32)
            1 => {
                expect(field, "traceId", wire_type, LEN)?;
                trace_id = bytes(&mut r, "traceId")?;
            }
            2 => {
                expect(field, "spanId", wire_type, LEN)?;
                span_id = bytes(&mut r, "spanId")?;
            }
            3 => {
                expect(field, "traceState", wire_type, LEN)?;
                trace_state = string(&mut r, "traceState")?;
            }
            4 => {
                expect(field, "attributes", wire_type, LEN)?;
                attribute(&mut r, "attributes", n, Owner::Link, sink)?;
                n += 1;
            }
            5 => {
                expect(field, "droppedAttributesCount", wire_type, VARINT)?;
                r.varint()?;
            }
            6 => {
                expect(field, "flags", wire_type, I32)?;
                flags = r.fixed32()?;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    let (ids, why) = match check::link_ids(index, trace_id, span_id) {
        Ok(ids) => (ids, None),
        Err(why) => (([0; 16], [0; 8]), Some(why)),
    };
    sink.end_link(&LinkHead {
        trace_id: ids.0,
        span_id: ids.1,
        trace_state,
        flags,
    });
    Ok(why)
}

fn status<'a>(mut r: Reader<'a>, code: &mut i32, message: &mut &'a str) -> Result<()> {
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // Status.message = 2, code = 3 (1 is reserved)
            2 => {
                expect(field, "message", wire_type, LEN)?;
                *message = string(&mut r, "message")?;
            }
            3 => {
                expect(field, "code", wire_type, VARINT)?;
                *code = r.varint()? as i32;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}

/// The `index`th element of a repeated `KeyValue` field called `name`.
#[inline]
fn attribute<S: Sink>(
    r: &mut Reader<'_>,
    name: &'static str,
    index: usize,
    owner: Owner,
    sink: &mut S,
) -> Result<()> {
    let seg = Segment::Index(name, index);
    let msg = message(r, seg)?;
    key_value(msg, owner, 0, sink).map_err(|e| e.at(seg))
}

fn key_value<S: Sink>(mut r: Reader<'_>, owner: Owner, depth: usize, sink: &mut S) -> Result<()> {
    // the key first, wherever it is: sinks write it before the value
    let mut key = "";
    let mut value = None;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // KeyValue.key = 1, value = 2
            1 => {
                expect(field, "key", wire_type, LEN)?;
                key = string(&mut r, "key")?;
            }
            2 => {
                expect(field, "value", wire_type, LEN)?;
                value = Some(message(&mut r, Segment::Field("value"))?);
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    sink.begin_kv(owner, key);
    match value {
        Some(v) => any_value(v, depth, sink).map_err(|e| e.at(Segment::Field("value")))?,
        None => sink.scalar(Scalar::Empty),
    }
    sink.end_kv();
    Ok(())
}

/// The member of `AnyValue`'s oneof that was set last.
enum Member<'a> {
    None,
    Varint(u32, u64),
    Fixed64(u64),
    Len(u32, Reader<'a>),
}

fn any_value<S: Sink>(mut r: Reader<'_>, depth: usize, sink: &mut S) -> Result<()> {
    let mut member = Member::None;
    while let Some((field, wire_type)) = r.key()? {
        // AnyValue oneof: string_value = 1, bool_value = 2, int_value = 3,
        // double_value = 4 (fixed64), array_value = 5, kvlist_value = 6, bytes_value = 7
        member = match field {
            1 | 5 | 6 | 7 => {
                let name = match field {
                    1 => "stringValue",
                    5 => "arrayValue",
                    6 => "kvlistValue",
                    _ => "bytesValue",
                };
                expect(field, name, wire_type, LEN)?;
                Member::Len(field, message(&mut r, Segment::Field(name))?)
            }
            2 | 3 => {
                let name = if field == 2 { "boolValue" } else { "intValue" };
                expect(field, name, wire_type, VARINT)?;
                Member::Varint(field, r.varint()?)
            }
            4 => {
                expect(field, "doubleValue", wire_type, I64)?;
                Member::Fixed64(r.fixed64()?)
            }
            _ => {
                r.skip(field, wire_type)?;
                continue;
            }
        };
    }
    match member {
        Member::None => sink.scalar(Scalar::Empty),
        Member::Varint(2, v) => sink.scalar(Scalar::Bool(v != 0)),
        Member::Varint(_, v) => sink.scalar(Scalar::Int(v as i64)),
        Member::Fixed64(bits) => sink.scalar(Scalar::Double(f64::from_bits(bits))),
        Member::Len(1, v) => {
            let s = utf8(v.rest(), v.offset()).map_err(|e| e.at(Segment::Field("stringValue")))?;
            sink.scalar(Scalar::Str(s));
        }
        Member::Len(7, v) => sink.scalar(Scalar::Bytes(v.rest())),
        Member::Len(field, v) => {
            if depth >= MAX_DEPTH {
                let name = if field == 5 {
                    "arrayValue"
                } else {
                    "kvlistValue"
                };
                return Err(DecodeError::new(ErrorKind::TooDeep).at(Segment::Field(name)));
            }
            if field == 5 {
                sink.begin_array();
                array_value(v, depth + 1, sink).map_err(|e| e.at(Segment::Field("arrayValue")))?;
                sink.end_array();
            } else {
                sink.begin_kvlist();
                kvlist_value(v, depth + 1, sink)
                    .map_err(|e| e.at(Segment::Field("kvlistValue")))?;
                sink.end_kvlist();
            }
        }
    }
    Ok(())
}

fn array_value<S: Sink>(mut r: Reader<'_>, depth: usize, sink: &mut S) -> Result<()> {
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // ArrayValue.values = 1
            1 => {
                expect(field, "values", wire_type, LEN)?;
                let seg = Segment::Index("values", n);
                let msg = message(&mut r, seg)?;
                any_value(msg, depth, sink).map_err(|e| e.at(seg))?;
                n += 1;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}

fn kvlist_value<S: Sink>(mut r: Reader<'_>, depth: usize, sink: &mut S) -> Result<()> {
    let mut n = 0;
    while let Some((field, wire_type)) = r.key()? {
        match field {
            // KeyValueList.values = 1
            1 => {
                expect(field, "values", wire_type, LEN)?;
                let seg = Segment::Index("values", n);
                let msg = message(&mut r, seg)?;
                key_value(msg, Owner::List, depth, sink).map_err(|e| e.at(seg))?;
                n += 1;
            }
            _ => r.skip(field, wire_type)?,
        }
    }
    Ok(())
}
