//! The request-target and the authority: forms, Host, path normalization.
//!
//! Mirrors the target half of `seawall.proxy.http1._heads.build_request_head`
//! and its helpers `_authority`, `_absolute_target` and `normalize_path`
//! (RFC 9112 §3.2, RFC 3986 §6.2.2). Each refusal is a 400.

use bytes::Bytes;

use crate::error::Error;
use crate::syntax::hex_value;

/// A validated `host[:port]`, as Python's `RequestHead.authority` gives it:
/// the host lower-cased, the port (if any digits were given) in decimal.
pub(crate) struct Authority {
    /// `host[:port]`, canonical. A slice of the received bytes when they
    /// already are canonical (the common case), else a new buffer.
    pub(crate) canonical: Bytes,
    /// The host part is empty (`Host:` or `Host: :80`).
    pub(crate) empty_host: bool,
}

/// Which field an authority came from, for the error's reason.
#[derive(Clone, Copy)]
pub(crate) enum Source {
    Host,
    Target,
}

impl Source {
    fn invalid(self) -> Error {
        match self {
            Source::Host => Error::bad("invalid Host"),
            Source::Target => Error::bad("invalid authority in request-target"),
        }
    }

    fn invalid_port(self) -> Error {
        match self {
            Source::Host => Error::bad("invalid port in Host"),
            Source::Target => Error::bad("invalid port in authority in request-target"),
        }
    }
}

/// reg-name and IPv4 bytes (RFC 3986 §3.2.2: unreserved, sub-delims, and `%`).
const fn reg_name_byte(b: u8) -> bool {
    matches!(b,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~'
        | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' | b'%')
}

/// `reg_name_byte` as a table (a Host field is checked on every request).
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = reg_name_byte(b as u8);
        b += 1;
    }
    table
};

fn is_reg_name(b: u8) -> bool {
    REG_NAME[b as usize]
}

/// `host [":" port]`: an IP literal in brackets, or a reg-name / IPv4
/// address; the port is `*DIGIT`, at most 65535 (Python's `_AUTHORITY`).
pub(crate) fn authority(value: Bytes, source: Source) -> Result<Authority, Error> {
    let bytes = &value[..];
    let host_end = if bytes.first() == Some(&b'[') {
        let close = bytes
            .iter()
            .position(|&b| b == b']')
            .ok_or_else(|| source.invalid())?;
        let inner = &bytes[1..close];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(source.invalid());
        }
        close + 1
    } else {
        bytes
            .iter()
            .position(|&b| !is_reg_name(b))
            .unwrap_or(bytes.len())
    };
    let (host, rest) = bytes.split_at(host_end);
    let port = match rest {
        [] => None,
        [b':', digits @ ..] if digits.iter().all(u8::is_ascii_digit) => Some(digits),
        _ => return Err(source.invalid()),
    };
    let port = match port {
        None | Some([]) => None,
        Some(digits) => {
            if digits.len() > 5 {
                return Err(source.invalid_port());
            }
            let n = digits
                .iter()
                .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
            if n > 65535 {
                return Err(source.invalid_port());
            }
            Some((n, digits))
        }
    };
    let lower = !host.iter().any(u8::is_ascii_uppercase);
    let empty_host = host.is_empty();
    let canonical = match port {
        // "host" as received, or "host:" (an empty port means none)
        None if lower && host_end == bytes.len() => value,
        None if lower => value.slice(..host_end),
        // "host:8080" with no leading zero: as received
        Some((_, digits)) if lower && (digits[0] != b'0' || digits.len() == 1) => value,
        _ => {
            let mut out = Vec::with_capacity(host.len() + 6);
            out.extend(host.iter().map(u8::to_ascii_lowercase));
            if let Some((n, _)) = port {
                out.push(b':');
                out.extend_from_slice(crate::syntax::decimal(u64::from(n), &mut [0; 20]));
            }
            Bytes::from(out)
        }
    };
    Ok(Authority {
        canonical,
        empty_host,
    })
}

/// An absolute-form target (`http://host[:port][/path][?query]`, from
/// HTTP_PROXY clients) → (authority, path). The path is `/` at least.
pub(crate) fn absolute_target(target: &Bytes) -> Result<(Authority, Bytes), Error> {
    let sep = target
        .windows(3)
        .position(|w| w == b"://")
        .ok_or(Error::bad("malformed request-target"))?;
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return Err(Error::bad("unsupported request-target"));
    }
    let start = sep + 3;
    let cut = target[start..]
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .map_or(target.len(), |i| start + i);
    let auth = target.slice(start..cut);
    if auth.contains(&b'@') {
        return Err(Error::bad("userinfo in request-target"));
    }
    let authority = authority(auth, Source::Target)?;
    if authority.empty_host {
        return Err(Error::bad("empty host in request-target"));
    }
    let path = match target.get(cut) {
        None => Bytes::from_static(b"/"),
        Some(b'?') => {
            let mut p = Vec::with_capacity(target.len() - cut + 1);
            p.push(b'/');
            p.extend_from_slice(&target[cut..]);
            Bytes::from(p)
        }
        Some(_) => target.slice(cut..),
    };
    Ok((authority, normalize_path(&path)?))
}

const fn is_unreserved(b: u8) -> bool {
    matches!(b, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~')
}

/// RFC 3986 §6.2.2 normalization of a path (`/`-rooted) with its query.
///
/// Exactly Python's `normalize_path`: percent-encoded unreserved characters
/// are decoded (`%7E` → `~`, `%2e` → `.`), other percent-encodings get
/// upper-case hex (`%2f` → `%2F`, never decoded), then dot segments are
/// removed (`/a/./b/../c` → `/a/c`, never above `/`). The query is untouched.
/// So `/%61dmin` and `/x/../admin` cannot slip past a route for `/admin`.
/// A `%` not followed by two hex digits is refused (400).
///
/// Returns a slice of `path` when nothing changes (no allocation).
pub fn normalize_path(path: &Bytes) -> Result<Bytes, Error> {
    let q = path.iter().position(|&b| b == b'?').unwrap_or(path.len());
    let raw = &path[..q];
    let has_percent = raw.contains(&b'%');
    let has_dot = raw.windows(2).any(|w| w == b"/.");
    if !has_percent && !has_dot {
        return Ok(path.clone());
    }
    let mut decoded: Vec<u8>;
    let mut raw: &[u8] = raw;
    if has_percent {
        decoded = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let b = raw[i];
            if b == b'%' && i + 2 < raw.len() {
                if let (Some(h), Some(l)) = (hex_value(raw[i + 1]), hex_value(raw[i + 2])) {
                    let code = h * 16 + l;
                    if is_unreserved(code) {
                        decoded.push(code);
                    } else {
                        decoded.push(b'%');
                        decoded.push(raw[i + 1].to_ascii_uppercase());
                        decoded.push(raw[i + 2].to_ascii_uppercase());
                    }
                    i += 3;
                    continue;
                }
            }
            decoded.push(b);
            i += 1;
        }
        // Python's check: as many '%' as there are %HH escapes left.
        let percents = decoded.iter().filter(|&&b| b == b'%').count();
        let mut escapes = 0;
        let mut i = 0;
        while i < decoded.len() {
            if decoded[i] == b'%'
                && i + 2 < decoded.len()
                && decoded[i + 1].is_ascii_hexdigit()
                && decoded[i + 2].is_ascii_hexdigit()
            {
                escapes += 1;
                i += 3;
            } else {
                i += 1;
            }
        }
        if percents != escapes {
            return Err(Error::bad("invalid percent-encoding in path"));
        }
        raw = &decoded;
    }
    let mut out: Vec<u8> = Vec::with_capacity(path.len());
    if raw.windows(2).any(|w| w == b"/.") {
        let mut segments: Vec<&[u8]> = Vec::new();
        for segment in raw.split(|&b| b == b'/').skip(1) {
            match segment {
                b".." => {
                    segments.pop();
                }
                b"." => {}
                _ => segments.push(segment),
            }
        }
        let last = raw.rsplit(|&b| b == b'/').next().unwrap_or_default();
        out.push(b'/');
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(segment);
        }
        if (last == b"." || last == b"..") && out.last() != Some(&b'/') {
            out.push(b'/');
        }
    } else {
        out.extend_from_slice(raw);
    }
    out.extend_from_slice(&path[q..]);
    if out[..] == path[..] {
        Ok(path.clone())
    } else {
        Ok(Bytes::from(out))
    }
}
