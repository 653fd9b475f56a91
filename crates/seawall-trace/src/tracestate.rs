//! The `tracestate` header: vendor entries, most recently updated first.
//!
//! The twin of `seawall.telemetry.tracecontext.TraceState`, with the same
//! rules (W3C Trace Context Level 2, "Tracestate Header" and "Mutating the
//! tracestate Field"): at most 32 `key=value` members; a malformed member or
//! a 33rd member discards the whole header; a key that appears twice is kept
//! as received (Level 1 discarded the header; Level 2 forwards what it was
//! given), and a key this hop mutates replaces every entry of that key;
//! spaces and tabs around members and empty members are ignored; a mutated
//! key moves to the front; truncation removes whole entries, the ones longer
//! than 128 characters first.
//!
//! Keys follow Level 2's grammar: a lowercase letter or a digit, then up to
//! 255 of `a-z 0-9 _ - * / @` (Level 1's `tenant@system` split, with its
//! 241 + 14 character limits, is gone).
//!
//! A [`TraceState`] is its canonical header value (`k=v,k=v`, no whitespace),
//! one `String`: parsing validates the members in place and allocates only
//! that output. Keys and values contain neither `,` nor `=`, so the entries
//! are read back by splitting it.

use core::fmt;

use crate::traceparent::trim_ows;

/// Most list-members a `tracestate` may hold; a header with more is invalid.
pub const MAX_TRACESTATE_MEMBERS: usize = 32;

/// Length (in characters) that mutated `tracestate` values are truncated to.
///
/// The spec asks vendors to propagate at least 512 characters;
/// [`TraceState::with_entry`] keeps its result within a bound like this one by
/// removing whole entries.
pub const MAX_TRACESTATE_LENGTH: usize = 512;

/// Entries longer than this are the first to go when truncating.
const LARGE_ENTRY: usize = 128;

/// Why an entry was refused by [`TraceState::from_entries`] or
/// [`TraceState::with_entry`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum TraceStateError {
    /// The key does not follow the Level 2 grammar.
    InvalidKey,
    /// The value is not 1-256 printable ASCII characters without `,` or `=`,
    /// not ending in a space.
    InvalidValue,
    /// More than [`MAX_TRACESTATE_MEMBERS`] entries.
    TooManyMembers,
}

impl fmt::Display for TraceStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidKey => {
                "tracestate key must be a lowercase letter or a digit, then up to 255 of \
                 a-z 0-9 _ - * / @ (W3C Trace Context Level 2)"
            }
            Self::InvalidValue => {
                "tracestate value must be 1-256 printable ASCII characters, without ',' \
                 or '=', not ending in a space"
            }
            Self::TooManyMembers => "tracestate entries: at most 32 members",
        })
    }
}

impl std::error::Error for TraceStateError {}

/// A `tracestate` value: `(key, value)` entries in order, left to right.
///
/// Keys follow the spec's grammar (a key may appear more than once, as
/// received; the first is the one [`TraceState::get`] reads); values are 1 to 256
/// printable ASCII characters other than `,` and `=`, not ending in a space;
/// at most 32 entries. Immutable: [`TraceState::with_entry`] and
/// [`TraceState::without`] return new values. The default is empty.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TraceState {
    /// The canonical header value: `key=value` entries joined by `,`.
    text: String,
    /// Number of entries (at most 32).
    len: u8,
}

/// A list of at most 33 borrowed entries on the stack (32 plus one being added).
struct Members<'a> {
    items: [(&'a [u8], &'a [u8]); MAX_TRACESTATE_MEMBERS + 1],
    len: usize,
}

impl<'a> Members<'a> {
    fn new() -> Self {
        Self {
            items: [(&[], &[]); MAX_TRACESTATE_MEMBERS + 1],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[(&'a [u8], &'a [u8])] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// Appends an entry; `false` (and nothing added) when full.
    fn push(&mut self, key: &'a [u8], value: &'a [u8]) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = (key, value);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, index: usize) {
        if index < self.len {
            self.items.copy_within(index + 1..self.len, index);
            self.len -= 1;
        }
    }

    /// Removes whole entries until the formatted list fits, per the spec's
    /// guidance (the Python `_truncate`, step for step).
    ///
    /// At most 32 are kept (the last ones go). Then, while the list is longer
    /// than `max_length`: entries longer than 128 characters go first, from
    /// the end; then entries from the end. With `keep_first`, the first entry
    /// (the one just added) is never removed.
    fn truncate(&mut self, max_length: usize, keep_first: bool) {
        self.len = self.len.min(MAX_TRACESTATE_MEMBERS);
        let first = usize::from(keep_first);
        while formatted_len(self.as_slice()) > max_length && self.len > first {
            let large = (first..self.len).rev().find(|&i| {
                self.items
                    .get(i)
                    .is_some_and(|e| entry_len(e) > LARGE_ENTRY)
            });
            self.remove(large.unwrap_or(self.len - 1));
        }
    }

    fn to_state(&self) -> TraceState {
        let entries = self.as_slice();
        let mut text = Vec::with_capacity(formatted_len(entries));
        for (i, (key, value)) in entries.iter().enumerate() {
            if i > 0 {
                text.push(b',');
            }
            text.extend_from_slice(key);
            text.push(b'=');
            text.extend_from_slice(value);
        }
        TraceState {
            // Keys and values were checked to be ASCII: this never fails.
            text: String::from_utf8(text).unwrap_or_default(),
            len: entries.len().min(MAX_TRACESTATE_MEMBERS) as u8,
        }
    }
}

fn entry_len((key, value): &(&[u8], &[u8])) -> usize {
    key.len() + 1 + value.len()
}

fn formatted_len(entries: &[(&[u8], &[u8])]) -> usize {
    entries.iter().map(entry_len).sum::<usize>() + entries.len().saturating_sub(1)
}

/// `lcalpha / DIGIT / "_" / "-" / "*" / "/" / "@"`: Level 2's `keychar`.
fn is_key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@')
}

/// Level 2 key grammar, as Python's `_KEY`:
/// `key = ( lcalpha / DIGIT ) 0*255( keychar )`.
fn is_valid_key(key: &[u8]) -> bool {
    match key {
        [first, rest @ ..] => {
            matches!(first, b'a'..=b'z' | b'0'..=b'9')
                && rest.len() <= 255
                && rest.iter().all(|&b| is_key_char(b))
        }
        [] => false,
    }
}

/// Value grammar, as Python's `_VALUE`: 1-256 characters in
/// `\x20-\x2b \x2d-\x3c \x3e-\x7e` (printable ASCII but `,` and `=`), the
/// last not a space.
fn is_valid_value(value: &[u8]) -> bool {
    let chr = |b: &u8| matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e);
    match value {
        [.., last] => value.len() <= 256 && *last != b' ' && value.iter().all(chr),
        [] => false,
    }
}

/// Checks one entry as the Python `_check_entry` does.
fn check_entry(key: &str, value: &str) -> Result<(), TraceStateError> {
    if !is_valid_key(key.as_bytes()) {
        return Err(TraceStateError::InvalidKey);
    }
    if !is_valid_value(value.as_bytes()) {
        return Err(TraceStateError::InvalidValue);
    }
    Ok(())
}

impl TraceState {
    /// Parses a `tracestate` value; `None` if it is invalid and must be
    /// discarded whole.
    ///
    /// Members are separated by commas; spaces and tabs around a member are
    /// ignored, and empty members are skipped. Invalid: a member that is not
    /// `key=value` with a valid key and value, or more than 32 members. A key
    /// that appears twice is kept, both entries in place (Level 2). The empty
    /// string gives an empty `TraceState`.
    pub fn parse<V: AsRef<[u8]> + ?Sized>(value: &V) -> Option<Self> {
        Self::parse_fields([value.as_ref()])
    }

    /// Parses several `tracestate` header fields as one list, as if joined
    /// with `,` in the order given (RFC 9110 §5.3, which the spec cites as
    /// RFC 7230 §3.2.2); the joined value is never built.
    pub fn parse_fields<'a, I>(fields: I) -> Option<Self>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut members = Members::new();
        for field in fields {
            for raw in field.split(|&b| b == b',') {
                let member = trim_ows(raw);
                if member.is_empty() {
                    continue;
                }
                let eq = member.iter().position(|&b| b == b'=')?;
                let (key, value) = (&member[..eq], &member[eq + 1..]);
                if !is_valid_key(key) || !is_valid_value(value) {
                    return None;
                }
                if members.len == MAX_TRACESTATE_MEMBERS {
                    return None;
                }
                members.push(key, value);
            }
        }
        Some(members.to_state())
    }

    /// A state holding `entries` in order; an error names the first problem
    /// (invalid key or value, more than 32 entries).
    pub fn from_entries<'a, I>(entries: I) -> Result<Self, TraceStateError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut members = Members::new();
        for (key, value) in entries {
            if members.len == MAX_TRACESTATE_MEMBERS {
                return Err(TraceStateError::TooManyMembers);
            }
            check_entry(key, value)?;
            members.push(key.as_bytes(), value.as_bytes());
        }
        Ok(members.to_state())
    }

    /// The header value: `key=value` entries joined by `,`, no whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The header value as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The header value, by value (no copy).
    pub fn into_string(self) -> String {
        self.text
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are no entries (send no `tracestate` header then).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `(key, value)` entries, left to right.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.text
            .split(',')
            .filter(|member| !member.is_empty())
            .filter_map(|member| member.split_once('='))
    }

    /// The value stored under `key`, or `None`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Adds or updates `key`, moving it to the front (left) as the spec
    /// requires (every entry of `key` is replaced by the one); the other
    /// entries keep their order.
    ///
    /// If the result would have more than 32 entries or be longer than
    /// `max_length` characters (normally [`MAX_TRACESTATE_LENGTH`]), whole
    /// entries are removed, never the new one: first entries longer than 128
    /// characters, then entries from the end.
    pub fn with_entry(
        &self,
        key: &str,
        value: &str,
        max_length: usize,
    ) -> Result<Self, TraceStateError> {
        check_entry(key, value)?;
        let mut members = Members::new();
        members.push(key.as_bytes(), value.as_bytes());
        for (k, v) in self.iter().filter(|(k, _)| *k != key) {
            members.push(k.as_bytes(), v.as_bytes());
        }
        members.truncate(max_length, true);
        Ok(members.to_state())
    }

    /// This state without `key` (unchanged if absent). The spec allows
    /// deleting entries, but a vendor should delete only its own.
    pub fn without(&self, key: &str) -> Self {
        let mut members = Members::new();
        for (k, v) in self.iter().filter(|(k, _)| *k != key) {
            members.push(k.as_bytes(), v.as_bytes());
        }
        members.to_state()
    }

    /// This state cut to at most `max_length` characters by removing whole
    /// entries: those longer than 128 characters first, then from the end.
    pub fn truncated(&self, max_length: usize) -> Self {
        if self.text.len() <= max_length {
            return self.clone();
        }
        let mut members = Members::new();
        for (k, v) in self.iter() {
            members.push(k.as_bytes(), v.as_bytes());
        }
        members.truncate(max_length, false);
        members.to_state()
    }
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TraceState").field(&self.text).finish()
    }
}

impl fmt::Display for TraceState {
    /// The header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for ok in [
            "a",
            "0",
            "a0_-*/",
            "0@a",
            "a@b",
            "a@0",
            "a@b@c",
            "a@@b",
            "a@",
            "abc@d-e_f*g/h",
            &"a".repeat(256),
            &format!("{}@{}", "t".repeat(241), "v".repeat(14)),
            &format!("{}@v", "t".repeat(242)),
            &format!("t@{}", "v".repeat(15)),
        ] {
            assert!(is_valid_key(ok.as_bytes()), "{ok}");
        }
        for bad in ["", "A", "_a", "a.b", "@a", "aB", "a b", &"a".repeat(257)] {
            assert!(!is_valid_key(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn values() {
        assert!(is_valid_value(b"x"));
        assert!(is_valid_value(b" x"));
        assert!(is_valid_value(&[b'x'; 256]));
        assert!(!is_valid_value(&[b'x'; 257]));
        assert!(!is_valid_value(b""));
        assert!(!is_valid_value(b"x "));
        for b in [b',', b'=', b'\t', 0x7f, 0x00, 0x80, 0xff] {
            assert!(!is_valid_value(&[b'x', b, b'x']), "{b:#x}");
        }
    }

    #[test]
    fn members_never_overflow() {
        let mut m = Members::new();
        for _ in 0..MAX_TRACESTATE_MEMBERS + 1 {
            assert!(m.push(b"k", b"v"));
        }
        assert!(!m.push(b"k", b"v"));
        m.remove(99);
        m.truncate(0, false);
        assert_eq!(m.len, 0);
        assert_eq!(m.to_state(), TraceState::default());
    }
}
