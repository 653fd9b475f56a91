//! Partial success: the spans that are well-formed but not valid OTLP, which
//! are skipped and counted instead of failing the whole body.
//!
//! A span is refused when its trace id is not 16 bytes or is all zero, its
//! span id is not 8 bytes or is all zero, its parent span id is neither
//! empty nor 8 bytes, or one of its links has a trace id that is not 16
//! bytes or a span id that is not 8. A parent id of 8 zero bytes is no
//! parent (a root span), as some SDKs send it. [`Rejections`] counts them and
//! describes the first, for `ExportTracePartialSuccess.error_message`.
use std::fmt;

use super::error::{write_path, Segment};

/// Where a span is: its indexes in the body.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpanAt {
    pub resource_spans: usize,
    pub scope_spans: usize,
    pub span: usize,
}

/// Why a span was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    /// The link whose id is wrong, if it is a link's.
    link: Option<usize>,
    field: &'static str,
    problem: Problem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Problem {
    Length { len: usize, want: &'static str },
    Zero,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = self.link {
            write!(f, "links[{i}].")?;
        }
        match self.problem {
            Problem::Length { len: 0, want } => write!(f, "{}: missing, want {want}", self.field),
            Problem::Length { len, want } => write!(f, "{}: {len} bytes, want {want}", self.field),
            Problem::Zero => write!(f, "{}: all zero", self.field),
        }
    }
}

/// A span's valid ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
}

fn exact<const N: usize>(
    link: Option<usize>,
    field: &'static str,
    bytes: &[u8],
    want: &'static str,
) -> Result<[u8; N], Reject> {
    <[u8; N]>::try_from(bytes).map_err(|_| Reject {
        link,
        field,
        problem: Problem::Length {
            len: bytes.len(),
            want,
        },
    })
}

fn nonzero<const N: usize>(field: &'static str, id: [u8; N]) -> Result<[u8; N], Reject> {
    if id == [0; N] {
        Err(Reject {
            link: None,
            field,
            problem: Problem::Zero,
        })
    } else {
        Ok(id)
    }
}

/// A span's ids, checked.
pub(crate) fn span_ids(trace_id: &[u8], span_id: &[u8], parent: &[u8]) -> Result<Ids, Reject> {
    let trace_id = nonzero(
        "traceId",
        exact::<16>(None, "traceId", trace_id, "16 bytes")?,
    )?;
    let span_id = nonzero("spanId", exact::<8>(None, "spanId", span_id, "8 bytes")?)?;
    let parent_span_id = if parent.is_empty() {
        None
    } else {
        Some(exact::<8>(None, "parentSpanId", parent, "8 bytes or none")?).filter(|p| *p != [0; 8])
    };
    Ok(Ids {
        trace_id,
        span_id,
        parent_span_id,
    })
}

/// A link's ids, checked (of the right lengths; zeros are kept).
pub(crate) fn link_ids(
    index: usize,
    trace_id: &[u8],
    span_id: &[u8],
) -> Result<([u8; 16], [u8; 8]), Reject> {
    Ok((
        exact::<16>(Some(index), "traceId", trace_id, "16 bytes")?,
        exact::<8>(Some(index), "spanId", span_id, "8 bytes")?,
    ))
}

/// The spans refused so far.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    count: u64,
    first: String,
}

impl Rejections {
    pub fn add(&mut self, at: SpanAt, why: &Reject) {
        if self.count == 0 {
            let path = [
                Segment::Index("resourceSpans", at.resource_spans),
                Segment::Index("scopeSpans", at.scope_spans),
                Segment::Index("spans", at.span),
            ];
            write_path(&mut self.first, path.iter());
            self.first.push('.');
            self.first.push_str(&why.to_string());
        }
        self.count += 1;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// What `error_message` says: how many, and the first (empty: none).
    pub fn message(&self) -> String {
        match self.count {
            0 => String::new(),
            1 => format!("1 span rejected: {}", self.first),
            n => format!("{n} spans rejected, the first: {}", self.first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_in_order() {
        let t = [1u8; 16];
        let s = [2u8; 8];
        assert_eq!(
            span_ids(&t, &s, &[]),
            Ok(Ids {
                trace_id: t,
                span_id: s,
                parent_span_id: None
            })
        );
        assert_eq!(
            span_ids(&t, &s, &[3; 8]).map(|i| i.parent_span_id),
            Ok(Some([3; 8]))
        );
        assert_eq!(
            span_ids(&t, &s, &[0; 8]).map(|i| i.parent_span_id),
            Ok(None)
        );
        let why = |r: Result<Ids, Reject>| r.err().map(|e| e.to_string());
        assert_eq!(
            why(span_ids(&t[..15], &s, &[])).as_deref(),
            Some("traceId: 15 bytes, want 16 bytes")
        );
        assert_eq!(
            why(span_ids(&[], &[], &[])).as_deref(),
            Some("traceId: missing, want 16 bytes")
        );
        assert_eq!(
            why(span_ids(&[0; 16], &s, &[])).as_deref(),
            Some("traceId: all zero")
        );
        assert_eq!(
            why(span_ids(&t, &[0; 8], &[])).as_deref(),
            Some("spanId: all zero")
        );
        assert_eq!(
            why(span_ids(&t, &s[..7], &[])).as_deref(),
            Some("spanId: 7 bytes, want 8 bytes")
        );
        assert_eq!(
            why(span_ids(&t, &s, &[1; 9])).as_deref(),
            Some("parentSpanId: 9 bytes, want 8 bytes or none")
        );
        assert_eq!(
            link_ids(2, &t, &s[..1])
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("links[2].spanId: 1 bytes, want 8 bytes")
        );
        assert_eq!(link_ids(0, &[0; 16], &[0; 8]), Ok(([0; 16], [0; 8])));
    }

    #[test]
    fn the_message_names_the_first_and_counts() {
        let mut r = Rejections::default();
        assert_eq!(r.message(), "");
        let at = SpanAt {
            resource_spans: 0,
            scope_spans: 1,
            span: 3,
        };
        let why = span_ids(&[1; 15], &[1; 8], &[]).expect_err("short");
        r.add(at, &why);
        assert_eq!(
            r.message(),
            "1 span rejected: resourceSpans[0].scopeSpans[1].spans[3].traceId: 15 bytes, want 16 bytes"
        );
        r.add(SpanAt { span: 4, ..at }, &why);
        assert_eq!(r.count(), 2);
        assert!(r
            .message()
            .starts_with("2 spans rejected, the first: resourceSpans[0].scopeSpans[1].spans[3]."));
    }
}
