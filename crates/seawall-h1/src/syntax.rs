//! Byte classes and small scanners shared by the parsers (RFC 9110 §5.6, RFC 9112).

/// tchar (RFC 9110 §5.6.2): a byte of a token (a method, a field name).
pub(crate) const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.'
        | b'^' | b'_' | b'`' | b'|' | b'~' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z')
}

/// A non-empty run of tchar.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A field-value byte (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
pub(crate) const fn is_field_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

/// SP or HTAB (OWS / BWS).
pub(crate) const fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

pub(crate) fn trim_ws(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if !is_ws(*first) {
            break;
        }
        s = rest;
    }
    while let [rest @ .., last] = s {
        if !is_ws(*last) {
            break;
        }
        s = rest;
    }
    s
}

pub(crate) fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Where `\r\n\r\n` begins in `hay`.
pub(crate) fn find_blank_line(hay: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = find_byte(&hay[from..], b'\n') {
        let lf = from + i;
        if lf >= 3 && &hay[lf - 3..=lf] == b"\r\n\r\n" {
            return Some(lf - 3);
        }
        from = lf + 1;
    }
    None
}

pub(crate) fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decimal digits of `n` into `buf`, returning the used tail (no allocation).
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Lower-case hex digits of `n` into `buf`, returning the used tail.
pub(crate) fn hex(mut n: u64, buf: &mut [u8; 16]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The comma-separated members of a list-valued field, OWS trimmed
/// (`#element` of RFC 9110 §5.6.1, empty members kept).
pub(crate) fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ws)
}
