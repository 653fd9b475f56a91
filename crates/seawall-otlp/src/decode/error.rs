//! Why a body could not be decoded, and where: [`DecodeError`].
//!
//! The path uses OTLP/JSON's field names for both encodings
//! (`resourceSpans[0].scopeSpans[1].spans[3].name`), so the same mistake in
//! a protobuf and a JSON body is reported at the same place. It is built on
//! the way out of the parser, one segment per level, so a body that decodes
//! pays nothing for it.
use std::fmt;

use crate::base64::Base64Error;
use crate::hex::HexError;
use crate::wire::WireError;

/// A body that is not a well-formed OTLP trace export: nothing in it is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeError {
    /// Innermost first.
    path: Vec<Segment>,
    kind: ErrorKind,
}

/// One step of a path: a field, or an element of a repeated field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Field(&'static str),
    Index(&'static str, usize),
}

/// What was wrong.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    /// Protobuf: not a well-formed message (truncated, a length past the end, …).
    Wire(WireError),
    /// Protobuf: a known field with another wire type than its type has.
    WireType {
        field: u32,
        name: &'static str,
        wire_type: u8,
    },
    /// A string that is not UTF-8 (protobuf: `at` is the byte in the body).
    Utf8 { at: usize },
    /// JSON: not JSON (serde_json's message, with the line and column).
    Syntax(String),
    /// JSON: a field whose value has the wrong JSON type.
    Type {
        want: &'static str,
        got: &'static str,
    },
    /// JSON: a number, or a number in a string, out of the field's range.
    Number { text: String, want: &'static str },
    /// JSON: an enum name that the enum does not have.
    Enum { name: String },
    /// JSON: an id that is not hex.
    Hex(HexError),
    /// JSON: a `bytesValue` that is not base64.
    Base64(Base64Error),
    /// JSON: an `AnyValue` with two values of its `oneof`.
    Oneof {
        first: &'static str,
        second: &'static str,
    },
    /// `AnyValue`s nested deeper than [`super::MAX_DEPTH`].
    TooDeep,
}

impl DecodeError {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        DecodeError {
            path: Vec::new(),
            kind,
        }
    }

    /// The same error, one level further out.
    pub(crate) fn at(mut self, segment: Segment) -> Self {
        self.path.push(segment);
        self
    }

    /// What was wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Where, as `resourceSpans[0].scopeSpans[1].spans[3].traceId` (empty: the whole body).
    pub fn path(&self) -> String {
        let mut out = String::new();
        write_path(&mut out, self.path.iter().rev());
        out
    }
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        DecodeError::new(ErrorKind::Wire(e))
    }
}

/// `segments` (outermost first) as a dotted path.
pub(crate) fn write_path<'a>(out: &mut String, segments: impl Iterator<Item = &'a Segment>) {
    use std::fmt::Write as _;
    for (i, segment) in segments.enumerate() {
        if i > 0 {
            out.push('.');
        }
        let _ = match segment {
            Segment::Field(name) => write!(out, "{name}"),
            Segment::Index(name, i) => write!(out, "{name}[{i}]"),
        };
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Wire(e) => write!(f, "{e}"),
            ErrorKind::WireType {
                field,
                name,
                wire_type,
            } => write!(f, "wire type {wire_type} for field {field} ({name})"),
            ErrorKind::Utf8 { at } => write!(f, "invalid UTF-8 at byte {at}"),
            ErrorKind::Syntax(e) => write!(f, "not JSON: {e}"),
            ErrorKind::Type { want, got } => write!(f, "expected {want}, got {got}"),
            ErrorKind::Number { text, want } => write!(f, "{text} is not {want}"),
            ErrorKind::Enum { name } => write!(f, "unknown enum value {name:?}"),
            ErrorKind::Hex(e) => write!(f, "{e}"),
            ErrorKind::Base64(e) => write!(f, "{e}"),
            ErrorKind::Oneof { first, second } => {
                write!(f, "two values in one AnyValue ({first} and {second})")
            }
            ErrorKind::TooDeep => write!(
                f,
                "values nested deeper than {} arrays and lists",
                super::MAX_DEPTH
            ),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.path(), self.kind)
        }
    }
}

impl std::error::Error for DecodeError {}
