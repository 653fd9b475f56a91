//! Writing JSON text by hand: strings escaped, numbers as the store's columns
//! and tags have them (`seawall.telemetry.spans`).
//!
//! Doubles are written as Python's `json.dumps` writes them (the shortest text
//! that reads back to the same double, an exponent from 1e16 and below 1e-4,
//! `1e+16`, `1.5e-05`), so that a tag written here and one written by Python
//! agree. Non-finite doubles are not JSON numbers: in the columns they are the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"` (the proto3 JSON mapping); in
//! tags the same words, bare. Nothing here can fail.
use std::fmt::Write as _;

/// Append `s` as a JSON string (quoted, with `"`, `\` and control characters
/// escaped; everything else, non-ASCII included, as it is).
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    // most strings need no escape: one pass that the compiler vectorizes
    if !bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is an ASCII byte, so both ends of the run are char boundaries
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Append a finite double as Python's `repr` (and `json.dumps`) writes it.
fn finite(out: &mut String, v: f64) {
    let start = out.len();
    // Rust's `{:?}` is the shortest round-trip text, with an exponent exactly
    // where Python's repr has one; only the exponent's form differs.
    let _ = write!(out, "{v:?}");
    if let Some(e) = out[start..].find('e') {
        let e = start + e;
        let mut digits = e + 1;
        if out.as_bytes().get(digits) == Some(&b'-') {
            digits += 1;
        } else {
            out.insert(digits, '+');
            digits += 1;
        }
        if out.len() - digits < 2 {
            out.insert(digits, '0');
        }
    }
}

/// The word for a non-finite double.
fn non_finite(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Append a double as a JSON value: a number, or a string for NaN and the infinities.
pub fn double(out: &mut String, v: f64) {
    if v.is_finite() {
        finite(out, v);
    } else {
        out.push('"');
        out.push_str(non_finite(v));
        out.push('"');
    }
}

/// Append a double as tag text: a number, or `NaN`, `Infinity`, `-Infinity`.
pub fn double_text(out: &mut String, v: f64) {
    if v.is_finite() {
        finite(out, v);
    } else {
        out.push_str(non_finite(v));
    }
}

/// Append an integer in decimal.
pub fn int(out: &mut String, v: impl std::fmt::Display) {
    let _ = write!(out, "{v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        let mut out = String::new();
        string(&mut out, v);
        out
    }

    fn d(v: f64) -> String {
        let mut out = String::new();
        double(&mut out, v);
        out
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(s(""), r#""""#);
        assert_eq!(s("plain"), r#""plain""#);
        assert_eq!(s("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(s("\n\r\t\u{8}\u{c}"), r#""\n\r\t\b\f""#);
        assert_eq!(s("\u{0}\u{1f}\u{7f}"), "\"\\u0000\\u001f\u{7f}\"");
        assert_eq!(s("é→\u{2028}"), "\"é→\u{2028}\"");
        // every escape reads back with a real JSON parser
        let all: String = (0u8..128).map(char::from).collect();
        let back: String = serde_json::from_str(&s(&all)).expect("valid JSON");
        assert_eq!(back, all);
    }

    #[test]
    fn doubles_as_python_writes_them() {
        for (v, text) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.0001, "0.0001"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (f64::MAX, "1.7976931348623157e+308"),
            (f64::NAN, r#""NaN""#),
            (f64::INFINITY, r#""Infinity""#),
            (f64::NEG_INFINITY, r#""-Infinity""#),
        ] {
            assert_eq!(d(v), text, "{v:?}");
            let back: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
            if let Some(f) = back.as_f64() {
                assert_eq!(f.to_bits(), v.to_bits());
            }
        }
        let mut tag = String::new();
        double_text(&mut tag, f64::NEG_INFINITY);
        assert_eq!(tag, "-Infinity");
    }
}
