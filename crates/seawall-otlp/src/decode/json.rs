//! The OTLP/JSON parser: an `ExportTraceServiceRequest` as JSON, read in
//! one pass (serde_json's tokenizer, no `Value` tree) and reported to a
//! [`Sink`] exactly as the protobuf parser reports the same message.
//!
//! OTLP/JSON is the proto3 JSON mapping with OTLP's exceptions: field names
//! in lowerCamelCase (the proto names, `trace_id`, are accepted too, as the
//! mapping requires of parsers); `traceId`, `spanId` and `parentSpanId`
//! (also in links) in hex, not base64; enums as integers (their names,
//! `SPAN_KIND_SERVER`, accepted too); 64-bit integers as decimal strings or
//! numbers; `bytesValue` in base64; doubles as numbers or the strings `NaN`,
//! `Infinity`, `-Infinity`; a missing field or `null` is the field's default.
//! Unknown keys are ignored.
//!
//! Each message is a [`Message`]: told its fields one by one as the text
//! has them, in any order. Strings without escapes are borrowed from the
//! body. The one place order matters is a `KeyValue` whose `value` comes
//! before its `key` (sinks write the key first): that value is kept as a
//! `serde_json::Value` and read from it, by the same code, once the key is
//! known. An error is recorded with its place (`Slot`) and the parse is
//! stopped; each level adds its field to the path on the way out.
use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::check::{self, Rejections, SpanAt};
use super::error::{DecodeError, ErrorKind, Segment};
use super::sink::{Discard, EventHead, LinkHead, Owner, Scalar, ScopeHead, Sink, SpanHead};
use super::MAX_DEPTH;
use crate::model::{SpanKind, StatusCode};
use crate::{base64, hex};

type Result<T> = std::result::Result<T, DecodeError>;

/// Parse an `ExportTraceServiceRequest` (JSON) into `sink`.
pub(crate) fn parse<S: Sink>(body: &[u8], sink: &mut S, rejections: &mut Rejections) -> Result<()> {
    let slot = Slot::default();
    let mut de = serde_json::Deserializer::from_slice(body);
    let request = RequestMsg {
        out: Out { sink, slot: &slot },
        rejections,
    };
    match MessageSeed(request)
        .deserialize(&mut de)
        .and_then(|()| de.end())
    {
        Ok(()) => Ok(()),
        Err(e) => Err(slot.into_inner().unwrap_or_else(|| syntax(&e))),
    }
}

fn syntax(e: &impl fmt::Display) -> DecodeError {
    DecodeError::new(ErrorKind::Syntax(e.to_string()))
}

// ---------------------------------------------------------------- errors

/// Where the parse's error is recorded (serde's own error only stops it);
/// shared by every level of the parse.
type Slot = RefCell<Option<DecodeError>>;

/// Record `e` and stop the parse.
fn fail<E: de::Error>(slot: &Slot, e: DecodeError) -> E {
    *slot.borrow_mut() = Some(e);
    E::custom("(recorded)")
}

/// `r`, its error (recorded, or serde_json's: the JSON syntax) one level further out.
fn within<T, E: de::Error>(
    slot: &Slot,
    segment: Segment,
    r: std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    r.inspect_err(|e| {
        let mut slot = slot.borrow_mut();
        let inner = slot.take().unwrap_or_else(|| syntax(e));
        *slot = Some(inner.at(segment));
    })
}

// ---------------------------------------------------------------- JSON values

/// A JSON value, for a field that holds a scalar (arrays and objects are
/// skipped: they are only ever the wrong type).
enum J<'de> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'de, str>),
    Array,
    Object,
}

struct JSeed;

impl<'de> DeserializeSeed<'de> for JSeed {
    type Value = J<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<J<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for JSeed {
    type Value = J<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> std::result::Result<J<'de>, E> {
        Ok(J::Null)
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<J<'de>, E> {
        Ok(J::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<J<'de>, E> {
        Ok(J::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<J<'de>, E> {
        Ok(J::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<J<'de>, E> {
        Ok(J::F64(v))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<J<'de>, E> {
        Ok(J::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<J<'de>, E> {
        Ok(J::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<J<'de>, E> {
        Ok(J::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<J<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(J::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<J<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(J::Object)
    }
}

/// An object's key, borrowed when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

fn type_name(j: &J<'_>) -> &'static str {
    match j {
        J::Null => "null",
        J::Bool(_) => "a boolean",
        J::U64(_) | J::I64(_) | J::F64(_) => "a number",
        J::Str(_) => "a string",
        J::Array => "an array",
        J::Object => "an object",
    }
}

fn wrong(want: &'static str, got: &'static str) -> DecodeError {
    DecodeError::new(ErrorKind::Type { want, got })
}

fn string(j: J<'_>) -> Result<Cow<'_, str>> {
    match j {
        J::Str(s) => Ok(s),
        J::Null => Ok(Cow::Borrowed("")),
        _ => Err(wrong("a string", type_name(&j))),
    }
}

fn boolean(j: J<'_>) -> Result<bool> {
    match j {
        J::Bool(b) => Ok(b),
        J::Null => Ok(false),
        _ => Err(wrong("a boolean", type_name(&j))),
    }
}

/// The largest integer a double holds exactly (2^53).
const EXACT: f64 = 9_007_199_254_740_992.0;

/// An integer field (`min..=max`): a number (an integral double too, as the
/// proto3 JSON mapping allows) or a decimal string.
fn integer(j: &J<'_>, want: &'static str, min: i128, max: i128) -> Result<i128> {
    let bad = |text: String| DecodeError::new(ErrorKind::Number { text, want });
    let n: i128 = match j {
        J::Null => 0,
        J::U64(u) => i128::from(*u),
        J::I64(i) => i128::from(*i),
        // integral and exact: converts without loss
        J::F64(f) if f.fract() == 0.0 && f.abs() <= EXACT => *f as i128,
        J::F64(f) => return Err(bad(f.to_string())),
        J::Str(s) => s.parse::<i128>().map_err(|_| bad(format!("{s:?}")))?,
        _ => {
            return Err(wrong(
                "an integer (a number or a decimal string)",
                type_name(j),
            ))
        }
    };
    if n < min || n > max {
        return Err(bad(n.to_string()));
    }
    Ok(n)
}

fn uint64(j: J<'_>) -> Result<u64> {
    // in range: checked by `integer`
    integer(&j, "a uint64", 0, i128::from(u64::MAX)).map(|n| n as u64)
}

fn int64(j: J<'_>) -> Result<i64> {
    integer(&j, "an int64", i128::from(i64::MIN), i128::from(i64::MAX)).map(|n| n as i64)
}

fn uint32(j: J<'_>) -> Result<u32> {
    integer(&j, "a uint32", 0, i128::from(u32::MAX)).map(|n| n as u32)
}

/// An enum: its number, or its name.
fn enumeration(j: J<'_>, number_of: impl Fn(&str) -> Option<i32>) -> Result<i32> {
    match j {
        J::Str(name) => number_of(&name).ok_or_else(|| {
            DecodeError::new(ErrorKind::Enum {
                name: name.into_owned(),
            })
        }),
        _ => integer(&j, "an int32", i128::from(i32::MIN), i128::from(i32::MAX)).map(|n| n as i32),
    }
}

fn double(j: J<'_>) -> Result<f64> {
    match j {
        J::Null => Ok(0.0),
        J::U64(u) => Ok(u as f64),
        J::I64(i) => Ok(i as f64),
        J::F64(f) => Ok(f),
        J::Str(s) => match &*s {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            // a number in a string; Rust's own words for the non-finite ones
            // ("inf", "nan") are not the mapping's
            text => text
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| {
                    DecodeError::new(ErrorKind::Number {
                        text: format!("{text:?}"),
                        want: "a double",
                    })
                }),
        },
        _ => Err(wrong("a number", type_name(&j))),
    }
}

/// An id, in hex.
fn id(j: J<'_>) -> Result<Vec<u8>> {
    hex::decode(&string(j)?).map_err(|e| DecodeError::new(ErrorKind::Hex(e)))
}

/// The value of field `name`, read and checked.
fn scalar<'de, A: MapAccess<'de>, T>(
    slot: &Slot,
    map: &mut A,
    name: &'static str,
    check: impl FnOnce(J<'de>) -> Result<T>,
) -> std::result::Result<T, A::Error> {
    let j = within(slot, Segment::Field(name), map.next_value_seed(JSeed))?;
    check(j).map_err(|e| fail(slot, e.at(Segment::Field(name))))
}

// ---------------------------------------------------------------- messages and lists

/// A message, told its fields as they come.
trait Message<'de> {
    /// Whether `null` is the message without fields (else: no message at all).
    const NULL_IS_EMPTY: bool = true;

    fn slot(&self) -> &Slot;

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        Ok(())
    }

    /// Read the value of `key` from `map` (an unknown key: skip it).
    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error>;

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        Ok(())
    }
}

struct MessageSeed<M>(M);

/// The `visit_*` methods of a visitor that takes no scalar: each one is the
/// visitor's `wrong(what it got)`.
macro_rules! refuse_scalars {
    () => {
        fn visit_bool<E: de::Error>(self, _: bool) -> std::result::Result<(), E> {
            self.wrong("a boolean")
        }

        fn visit_i64<E: de::Error>(self, _: i64) -> std::result::Result<(), E> {
            self.wrong("a number")
        }

        fn visit_u64<E: de::Error>(self, _: u64) -> std::result::Result<(), E> {
            self.wrong("a number")
        }

        fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<(), E> {
            self.wrong("a number")
        }

        fn visit_str<E: de::Error>(self, _: &str) -> std::result::Result<(), E> {
            self.wrong("a string")
        }
    };
}

impl<'de, M: Message<'de>> DeserializeSeed<'de> for MessageSeed<M> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, M: Message<'de>> MessageSeed<M> {
    fn wrong<E: de::Error>(self, got: &'static str) -> std::result::Result<(), E> {
        Err(fail(self.0.slot(), wrong("an object", got)))
    }
}

impl<'de, M: Message<'de>> Visitor<'de> for MessageSeed<M> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> std::result::Result<(), A::Error> {
        self.0.begin()?;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            self.0.field(&key, &mut map)?;
        }
        self.0.end()
    }

    fn visit_unit<E: de::Error>(mut self) -> std::result::Result<(), E> {
        if M::NULL_IS_EMPTY {
            self.0.begin()?;
            self.0.end()?;
        }
        Ok(())
    }

    refuse_scalars!();

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        self.wrong("an array")
    }
}

/// A repeated field, told its elements as they come.
trait List<'de> {
    fn slot(&self) -> &Slot;

    /// Read element `index` of the field `name` from `seq`; `false` at the end.
    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error>;
}

struct ListSeed<L> {
    list: L,
    name: &'static str,
}

impl<'de, L: List<'de>> DeserializeSeed<'de> for ListSeed<L> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, L: List<'de>> ListSeed<L> {
    fn wrong<E: de::Error>(self, got: &'static str) -> std::result::Result<(), E> {
        let e = wrong("an array", got).at(Segment::Field(self.name));
        Err(fail(self.list.slot(), e))
    }
}

impl<'de, L: List<'de>> Visitor<'de> for ListSeed<L> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<(), A::Error> {
        let mut index = 0;
        while self.list.element(self.name, index, &mut seq)? {
            index += 1;
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    refuse_scalars!();

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> std::result::Result<(), A::Error> {
        self.wrong("an object")
    }
}

/// The sink, and where errors go.
struct Out<'a, S> {
    sink: &'a mut S,
    slot: &'a Slot,
}

impl<S> Out<'_, S> {
    fn re(&mut self) -> Out<'_, S> {
        Out {
            sink: &mut *self.sink,
            slot: self.slot,
        }
    }
}

/// Read element `index` of a list as the message `msg`.
fn element<'de, A: SeqAccess<'de>, M: Message<'de>>(
    slot: &Slot,
    name: &'static str,
    index: usize,
    seq: &mut A,
    msg: M,
) -> std::result::Result<bool, A::Error> {
    let r = seq.next_element_seed(MessageSeed(msg));
    Ok(within(slot, Segment::Index(name, index), r)?.is_some())
}

fn dropped_count<'de, A: MapAccess<'de>>(
    slot: &Slot,
    map: &mut A,
    name: &'static str,
) -> std::result::Result<(), A::Error> {
    scalar(slot, map, name, uint32).map(drop)
}

fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> std::result::Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

// ---------------------------------------------------------------- OTLP's messages

struct RequestMsg<'a, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
}

impl<'de, S: Sink> Message<'de> for RequestMsg<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "resourceSpans" | "resource_spans" => map.next_value_seed(ListSeed {
                list: ResourceSpansList {
                    out: self.out.re(),
                    rejections: &mut *self.rejections,
                },
                name: "resourceSpans",
            }),
            _ => skip(map),
        }
    }
}

struct ResourceSpansList<'a, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
}

impl<'de, S: Sink> List<'de> for ResourceSpansList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = ResourceSpansMsg {
            out: self.out.re(),
            rejections: &mut *self.rejections,
            index,
        };
        element(slot, name, index, seq, msg)
    }
}

struct ResourceSpansMsg<'a, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
    index: usize,
}

impl<'de, S: Sink> Message<'de> for ResourceSpansMsg<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.begin_resource_spans();
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            "resource" => {
                let r = map.next_value_seed(MessageSeed(ResourceMsg { out: self.out.re() }));
                within(slot, Segment::Field("resource"), r)
            }
            "scopeSpans" | "scope_spans" => map.next_value_seed(ListSeed {
                list: ScopeSpansList {
                    out: self.out.re(),
                    rejections: &mut *self.rejections,
                    resource_spans: self.index,
                },
                name: "scopeSpans",
            }),
            "schemaUrl" | "schema_url" => scalar(slot, map, "schemaUrl", string).map(drop),
            _ => skip(map),
        }
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.end_resource_spans();
        Ok(())
    }
}

struct ResourceMsg<'a, S> {
    out: Out<'a, S>,
}

impl<'de, S: Sink> Message<'de> for ResourceMsg<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "attributes" => map.next_value_seed(attributes(self.out.re(), Owner::Resource)),
            "droppedAttributesCount" | "dropped_attributes_count" => {
                dropped_count(self.out.slot, map, "droppedAttributesCount")
            }
            _ => skip(map),
        }
    }
}

struct ScopeSpansList<'a, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
    resource_spans: usize,
}

impl<'de, S: Sink> List<'de> for ScopeSpansList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = ScopeSpansMsg {
            out: self.out.re(),
            rejections: &mut *self.rejections,
            at: SpanAt {
                resource_spans: self.resource_spans,
                scope_spans: index,
                span: 0,
            },
            name: Cow::Borrowed(""),
            version: Cow::Borrowed(""),
        };
        element(slot, name, index, seq, msg)
    }
}

struct ScopeSpansMsg<'a, 'de, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
    at: SpanAt,
    name: Cow<'de, str>,
    version: Cow<'de, str>,
}

impl<'de, S: Sink> Message<'de> for ScopeSpansMsg<'_, 'de, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.begin_scope_spans();
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            "scope" => {
                let scope = ScopeMsg {
                    slot,
                    name: &mut self.name,
                    version: &mut self.version,
                };
                let r = map.next_value_seed(MessageSeed(scope));
                within(slot, Segment::Field("scope"), r)
            }
            "spans" => map.next_value_seed(ListSeed {
                list: SpanList {
                    out: self.out.re(),
                    rejections: &mut *self.rejections,
                    at: self.at,
                },
                name: "spans",
            }),
            "schemaUrl" | "schema_url" => scalar(slot, map, "schemaUrl", string).map(drop),
            _ => skip(map),
        }
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.end_scope_spans(&ScopeHead {
            name: &self.name,
            version: &self.version,
        });
        Ok(())
    }
}

struct ScopeMsg<'a, 'de> {
    slot: &'a Slot,
    name: &'a mut Cow<'de, str>,
    version: &'a mut Cow<'de, str>,
}

impl<'de> Message<'de> for ScopeMsg<'_, 'de> {
    fn slot(&self) -> &Slot {
        self.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "name" => *self.name = scalar(self.slot, map, "name", string)?,
            "version" => *self.version = scalar(self.slot, map, "version", string)?,
            "attributes" => {
                // checked, not kept: the store's scope column is its name and version
                let out = Out {
                    sink: &mut Discard,
                    slot: self.slot,
                };
                map.next_value_seed(attributes(out, Owner::Resource))?;
            }
            "droppedAttributesCount" | "dropped_attributes_count" => {
                dropped_count(self.slot, map, "droppedAttributesCount")?;
            }
            _ => skip(map)?,
        }
        Ok(())
    }
}

struct SpanList<'a, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
    at: SpanAt,
}

impl<'de, S: Sink> List<'de> for SpanList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = SpanMsg {
            out: self.out.re(),
            rejections: &mut *self.rejections,
            at: SpanAt {
                span: index,
                ..self.at
            },
            trace_id: Vec::new(),
            span_id: Vec::new(),
            parent: Vec::new(),
            trace_state: Cow::Borrowed(""),
            flags: 0,
            name: Cow::Borrowed(""),
            kind: 0,
            start: 0,
            end: 0,
            status_code: 0,
            status_message: Cow::Borrowed(""),
            bad_link: None,
        };
        element(slot, name, index, seq, msg)
    }
}

struct SpanMsg<'a, 'de, S> {
    out: Out<'a, S>,
    rejections: &'a mut Rejections,
    at: SpanAt,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    trace_state: Cow<'de, str>,
    flags: u32,
    name: Cow<'de, str>,
    kind: i32,
    start: u64,
    end: u64,
    status_code: i32,
    status_message: Cow<'de, str>,
    bad_link: Option<check::Reject>,
}

impl<'de, S: Sink> Message<'de> for SpanMsg<'_, 'de, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.begin_span();
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            "traceId" | "trace_id" => self.trace_id = scalar(slot, map, "traceId", id)?,
            "spanId" | "span_id" => self.span_id = scalar(slot, map, "spanId", id)?,
            "parentSpanId" | "parent_span_id" => {
                self.parent = scalar(slot, map, "parentSpanId", id)?;
            }
            "traceState" | "trace_state" => {
                self.trace_state = scalar(slot, map, "traceState", string)?;
            }
            "name" => self.name = scalar(slot, map, "name", string)?,
            "kind" => {
                self.kind = scalar(slot, map, "kind", |j| {
                    enumeration(j, |n| SpanKind::from_name(n).map(|k| k as i32))
                })?;
            }
            "startTimeUnixNano" | "start_time_unix_nano" => {
                self.start = scalar(slot, map, "startTimeUnixNano", uint64)?;
            }
            "endTimeUnixNano" | "end_time_unix_nano" => {
                self.end = scalar(slot, map, "endTimeUnixNano", uint64)?;
            }
            "attributes" => map.next_value_seed(attributes(self.out.re(), Owner::Span))?,
            "events" => map.next_value_seed(ListSeed {
                list: EventList { out: self.out.re() },
                name: "events",
            })?,
            "links" => map.next_value_seed(ListSeed {
                list: LinkList {
                    out: self.out.re(),
                    bad: &mut self.bad_link,
                },
                name: "links",
            })?,
            "status" => {
                let status = StatusMsg {
                    slot,
                    code: &mut self.status_code,
                    message: &mut self.status_message,
                };
                let r = map.next_value_seed(MessageSeed(status));
                within(slot, Segment::Field("status"), r)?;
            }
            "flags" => self.flags = scalar(slot, map, "flags", uint32)?,
            "droppedAttributesCount" | "dropped_attributes_count" => {
                dropped_count(slot, map, "droppedAttributesCount")?;
            }
            "droppedEventsCount" | "dropped_events_count" => {
                dropped_count(slot, map, "droppedEventsCount")?;
            }
            "droppedLinksCount" | "dropped_links_count" => {
                dropped_count(slot, map, "droppedLinksCount")?;
            }
            _ => skip(map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        let ids =
            check::span_ids(&self.trace_id, &self.span_id, &self.parent).and_then(|ids| match self
                .bad_link
                .take()
            {
                Some(why) => Err(why),
                None => Ok(ids),
            });
        match ids {
            Ok(ids) => self.out.sink.end_span(&SpanHead {
                trace_id: ids.trace_id,
                span_id: ids.span_id,
                parent_span_id: ids.parent_span_id,
                trace_state: &self.trace_state,
                flags: self.flags,
                name: &self.name,
                kind: SpanKind::from_i32(self.kind),
                start: self.start,
                end: self.end,
                status_code: StatusCode::from_i32(self.status_code),
                status_message: &self.status_message,
            }),
            Err(why) => {
                self.out.sink.discard_span();
                self.rejections.add(self.at, &why);
            }
        }
        Ok(())
    }
}

struct StatusMsg<'a, 'de> {
    slot: &'a Slot,
    code: &'a mut i32,
    message: &'a mut Cow<'de, str>,
}

impl<'de> Message<'de> for StatusMsg<'_, 'de> {
    fn slot(&self) -> &Slot {
        self.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        match key {
            "message" => *self.message = scalar(self.slot, map, "message", string)?,
            "code" => {
                *self.code = scalar(self.slot, map, "code", |j| {
                    enumeration(j, |n| StatusCode::from_name(n).map(|c| c as i32))
                })?;
            }
            _ => skip(map)?,
        }
        Ok(())
    }
}

struct EventList<'a, S> {
    out: Out<'a, S>,
}

impl<'de, S: Sink> List<'de> for EventList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = EventMsg {
            out: self.out.re(),
            time: 0,
            name: Cow::Borrowed(""),
        };
        element(slot, name, index, seq, msg)
    }
}

struct EventMsg<'a, 'de, S> {
    out: Out<'a, S>,
    time: u64,
    name: Cow<'de, str>,
}

impl<'de, S: Sink> Message<'de> for EventMsg<'_, 'de, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.begin_event();
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            "timeUnixNano" | "time_unix_nano" => {
                self.time = scalar(slot, map, "timeUnixNano", uint64)?;
            }
            "name" => self.name = scalar(slot, map, "name", string)?,
            "attributes" => map.next_value_seed(attributes(self.out.re(), Owner::Event))?,
            "droppedAttributesCount" | "dropped_attributes_count" => {
                dropped_count(slot, map, "droppedAttributesCount")?;
            }
            _ => skip(map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.end_event(&EventHead {
            time: self.time,
            name: &self.name,
        });
        Ok(())
    }
}

struct LinkList<'a, S> {
    out: Out<'a, S>,
    /// The first link that makes the span invalid.
    bad: &'a mut Option<check::Reject>,
}

impl<'de, S: Sink> List<'de> for LinkList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = LinkMsg {
            out: self.out.re(),
            bad: &mut *self.bad,
            index,
            trace_id: Vec::new(),
            span_id: Vec::new(),
            trace_state: Cow::Borrowed(""),
            flags: 0,
        };
        element(slot, name, index, seq, msg)
    }
}

struct LinkMsg<'a, 'de, S> {
    out: Out<'a, S>,
    bad: &'a mut Option<check::Reject>,
    index: usize,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    trace_state: Cow<'de, str>,
    flags: u32,
}

impl<'de, S: Sink> Message<'de> for LinkMsg<'_, 'de, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        self.out.sink.begin_link();
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            "traceId" | "trace_id" => self.trace_id = scalar(slot, map, "traceId", id)?,
            "spanId" | "span_id" => self.span_id = scalar(slot, map, "spanId", id)?,
            "traceState" | "trace_state" => {
                self.trace_state = scalar(slot, map, "traceState", string)?;
            }
            "attributes" => map.next_value_seed(attributes(self.out.re(), Owner::Link))?,
            "droppedAttributesCount" | "dropped_attributes_count" => {
                dropped_count(slot, map, "droppedAttributesCount")?;
            }
            "flags" => self.flags = scalar(slot, map, "flags", uint32)?,
            _ => skip(map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        let ids = match check::link_ids(self.index, &self.trace_id, &self.span_id) {
            Ok(ids) => ids,
            Err(why) => {
                if self.bad.is_none() {
                    *self.bad = Some(why);
                }
                ([0; 16], [0; 8])
            }
        };
        self.out.sink.end_link(&LinkHead {
            trace_id: ids.0,
            span_id: ids.1,
            trace_state: &self.trace_state,
            flags: self.flags,
        });
        Ok(())
    }
}

/// A repeated `KeyValue` field.
fn attributes<S: Sink>(out: Out<'_, S>, owner: Owner) -> ListSeed<KvList<'_, S>> {
    ListSeed {
        list: KvList {
            out,
            owner,
            depth: 0,
        },
        name: "attributes",
    }
}

struct KvList<'a, S> {
    out: Out<'a, S>,
    owner: Owner,
    depth: usize,
}

impl<'de, S: Sink> List<'de> for KvList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = KvMsg {
            out: self.out.re(),
            owner: self.owner,
            depth: self.depth,
            key: None,
            emitted: false,
            early: None,
        };
        element(slot, name, index, seq, msg)
    }
}

struct KvMsg<'a, 'de, S> {
    out: Out<'a, S>,
    owner: Owner,
    depth: usize,
    key: Option<Cow<'de, str>>,
    /// The value was reported to the sink.
    emitted: bool,
    /// A value that came before the key, kept until the key is known.
    early: Option<Value>,
}

impl<'de, S: Sink> Message<'de> for KvMsg<'_, 'de, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        match key {
            // a key after the value was reported cannot change it
            "key" if !self.emitted => self.key = Some(scalar(slot, map, "key", string)?),
            "value" if !self.emitted => match &self.key {
                Some(k) => {
                    self.out.sink.begin_kv(self.owner, k);
                    self.emitted = true;
                    let value = AnyMsg {
                        out: self.out.re(),
                        depth: self.depth,
                        member: None,
                    };
                    let r = map.next_value_seed(MessageSeed(value));
                    within(slot, Segment::Field("value"), r)?;
                }
                None => {
                    let r = map.next_value::<Value>();
                    self.early = Some(within(slot, Segment::Field("value"), r)?);
                }
            },
            _ => skip(map)?,
        }
        Ok(())
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        if !self.emitted {
            let key = self.key.as_deref().unwrap_or("");
            self.out.sink.begin_kv(self.owner, key);
            match self.early.take() {
                Some(early) => {
                    let slot = self.out.slot;
                    let value = AnyMsg {
                        out: self.out.re(),
                        depth: self.depth,
                        member: None,
                    };
                    let r = MessageSeed(value).deserialize(&early);
                    within(slot, Segment::Field("value"), r)
                        .map_err(|_| E::custom("(recorded)"))?;
                }
                None => self.out.sink.scalar(Scalar::Empty),
            }
        }
        self.out.sink.end_kv();
        Ok(())
    }
}

/// An `AnyValue`: at most one of its members.
struct AnyMsg<'a, S> {
    out: Out<'a, S>,
    depth: usize,
    /// The member that is set.
    member: Option<&'static str>,
}

impl<'de, S: Sink> Message<'de> for AnyMsg<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        let slot = self.out.slot;
        let name = match key {
            "stringValue" | "string_value" => "stringValue",
            "boolValue" | "bool_value" => "boolValue",
            "intValue" | "int_value" => "intValue",
            "doubleValue" | "double_value" => "doubleValue",
            "arrayValue" | "array_value" => "arrayValue",
            "kvlistValue" | "kvlist_value" => "kvlistValue",
            "bytesValue" | "bytes_value" => "bytesValue",
            _ => return skip(map),
        };
        if let "arrayValue" | "kvlistValue" = name {
            let nested = NestedMsg {
                out: self.out.re(),
                depth: self.depth,
                member: &mut self.member,
                array: name == "arrayValue",
            };
            let r = map.next_value_seed(MessageSeed(nested));
            return within(slot, Segment::Field(name), r);
        }
        let j = within(slot, Segment::Field(name), map.next_value_seed(JSeed))?;
        if let J::Null = j {
            return Ok(());
        }
        let here = |e: DecodeError| fail::<A::Error>(slot, e.at(Segment::Field(name)));
        if let Some(first) = self.member {
            return Err(here(DecodeError::new(ErrorKind::Oneof {
                first,
                second: name,
            })));
        }
        self.member = Some(name);
        let sink = &mut *self.out.sink;
        match name {
            "stringValue" => sink.scalar(Scalar::Str(&string(j).map_err(here)?)),
            "boolValue" => sink.scalar(Scalar::Bool(boolean(j).map_err(here)?)),
            "intValue" => sink.scalar(Scalar::Int(int64(j).map_err(here)?)),
            "doubleValue" => sink.scalar(Scalar::Double(double(j).map_err(here)?)),
            _ => {
                let text = string(j).map_err(here)?;
                let bytes = base64::decode(&text)
                    .map_err(|e| here(DecodeError::new(ErrorKind::Base64(e))))?;
                sink.scalar(Scalar::Bytes(&bytes));
            }
        }
        Ok(())
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        if self.member.is_none() {
            self.out.sink.scalar(Scalar::Empty);
        }
        Ok(())
    }
}

/// An `arrayValue` or a `kvlistValue`.
struct NestedMsg<'a, S> {
    out: Out<'a, S>,
    depth: usize,
    /// Its `AnyValue`'s member.
    member: &'a mut Option<&'static str>,
    array: bool,
}

impl<'de, S: Sink> Message<'de> for NestedMsg<'_, S> {
    /// `"arrayValue": null` is no member at all.
    const NULL_IS_EMPTY: bool = false;

    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn begin<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        let name = if self.array {
            "arrayValue"
        } else {
            "kvlistValue"
        };
        if let Some(first) = *self.member {
            let e = DecodeError::new(ErrorKind::Oneof {
                first,
                second: name,
            });
            return Err(fail(self.out.slot, e));
        }
        *self.member = Some(name);
        if self.depth >= MAX_DEPTH {
            return Err(fail(self.out.slot, DecodeError::new(ErrorKind::TooDeep)));
        }
        if self.array {
            self.out.sink.begin_array();
        } else {
            self.out.sink.begin_kvlist();
        }
        Ok(())
    }

    fn field<A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> std::result::Result<(), A::Error> {
        if key != "values" {
            return skip(map);
        }
        let depth = self.depth + 1;
        if self.array {
            map.next_value_seed(ListSeed {
                list: AnyList {
                    out: self.out.re(),
                    depth,
                },
                name: "values",
            })
        } else {
            map.next_value_seed(ListSeed {
                list: KvList {
                    out: self.out.re(),
                    owner: Owner::List,
                    depth,
                },
                name: "values",
            })
        }
    }

    fn end<E: de::Error>(&mut self) -> std::result::Result<(), E> {
        if self.array {
            self.out.sink.end_array();
        } else {
            self.out.sink.end_kvlist();
        }
        Ok(())
    }
}

struct AnyList<'a, S> {
    out: Out<'a, S>,
    depth: usize,
}

impl<'de, S: Sink> List<'de> for AnyList<'_, S> {
    fn slot(&self) -> &Slot {
        self.out.slot
    }

    fn element<A: SeqAccess<'de>>(
        &mut self,
        name: &'static str,
        index: usize,
        seq: &mut A,
    ) -> std::result::Result<bool, A::Error> {
        let slot = self.out.slot;
        let msg = AnyMsg {
            out: self.out.re(),
            depth: self.depth,
            member: None,
        };
        element(slot, name, index, seq, msg)
    }
}
