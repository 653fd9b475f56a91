//! `CONNECT host:port` on the outbound listener: how HTTPS clients behind
//! `HTTPS_PROXY` reach a host outside the mesh (RFC 9110 §9.3.6).
//!
//! The request codec (`seawall_h1`) refuses CONNECT (405), as every other
//! listener must; the outbound listener reads a CONNECT head here instead,
//! with the same limits, and the server opens a byte-for-byte tunnel
//! (`server.rs`, `serve_connect`). The sidecar never reads what the tunnel
//! carries (the TLS inside it is the app's).
use seawall_h1::{Error, Limits};

/// A CONNECT request head, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The host, lower-cased (an IPv6 literal without its brackets).
    pub host: String,
    pub port: u16,
    /// Bytes of the head (what follows is already the tunnel's).
    pub consumed: usize,
}

/// Whether `buf` starts a CONNECT request (a head may not have arrived whole).
pub fn is_connect(buf: &[u8]) -> bool {
    buf.starts_with(b"CONNECT ")
}

/// Read a CONNECT head at the start of `buf`: `Ok(None)` while incomplete.
/// Refused (with the status to answer): a head past the limits (414, 431),
/// a malformed one, a target that is not `host:port`, a body (400).
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<ConnectRequest>, Error> {
    // The request line first, as the server looks for it: what comes before
    // it (even empty lines, which httparse would skip) would escape the
    // request line's limit (found by the connect_head fuzz target).
    if !is_connect(buf) {
        return Err(Error::new(400, "malformed CONNECT head"));
    }
    let line_end = buf.windows(2).position(|w| w == b"\r\n");
    if line_end.map_or(buf.len(), |n| n) > limits.max_request_line {
        return Err(Error::new(414, "request line too long"));
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > limits.max_header_bytes {
            return Err(Error::new(431, "header section too large"));
        }
        return Ok(None);
    };
    let consumed = end + 4;
    if consumed > limits.max_header_bytes {
        return Err(Error::new(431, "header section too large"));
    }
    let mut slots = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut slots);
    match req.parse(&buf[..consumed]) {
        Ok(httparse::Status::Complete(n)) if n == consumed => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Error::new(431, "too many header fields"))
        }
        _ => return Err(Error::new(400, "malformed CONNECT head")),
    }
    if req.method != Some("CONNECT") {
        return Err(Error::new(400, "malformed CONNECT head"));
    }
    let has_body = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-length") && h.value != b"0"
            || h.name.eq_ignore_ascii_case("transfer-encoding")
    });
    if has_body {
        return Err(Error::new(400, "a CONNECT request has no content"));
    }
    let (host, port) = authority_form(req.path.unwrap_or_default())?;
    Ok(Some(ConnectRequest {
        host,
        port,
        consumed,
    }))
}

/// `host:port` (RFC 9110 §9.3.6: the port is required): a reg-name or IPv4
/// address, or an IPv6 literal in brackets.
fn authority_form(target: &str) -> Result<(String, u16), Error> {
    let bad = || Error::new(400, "CONNECT target must be host:port");
    let (host, port) = target.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = match port.parse() {
        Ok(p) if p > 0 && !port.starts_with('+') => p,
        _ => return Err(bad()),
    };
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) if !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') => v6,
        Some(_) => return Err(bad()),
        None if !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')) =>
        {
            host
        }
        None => return Err(bad()),
    };
    Ok((host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits {
            max_request_line: 64,
            max_headers: 4,
            max_header_bytes: 256,
            ..Limits::DEFAULT
        }
    }

    #[test]
    fn a_connect_head_gives_host_port_and_its_length() {
        let raw =
            b"CONNECT API.Example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\n\r\n\x16\x03";
        let req = parse(raw, &small()).expect("valid").expect("complete");
        assert_eq!(
            req,
            ConnectRequest {
                host: "api.example.com".into(),
                port: 443,
                consumed: raw.len() - 2,
            }
        );
        let v6 = parse(b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n", &small()).expect("valid");
        assert_eq!(v6.map(|r| (r.host, r.port)), Some(("::1".into(), 8443)));
        assert_eq!(
            parse(b"CONNECT a:1 HTTP/1.1\r\nHo", &small()).expect("ok"),
            None
        );
        assert!(is_connect(b"CONNECT "));
        assert!(!is_connect(b"GET / HTTP/1.1"));
    }

    #[test]
    fn bad_connect_heads_are_refused_with_their_status() {
        let status = |raw: &[u8]| parse(raw, &small()).expect_err("refused").status;
        assert_eq!(status(b"CONNECT api.example.com HTTP/1.1\r\n\r\n"), 400); // no port
        assert_eq!(status(b"CONNECT a:0 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT a:+1 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT a b:1 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT [zz]:1 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT /path HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status(b"CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(status(b"CONNECT a:1 HTTP/2.0\r\n\r\n"), 400);
        // empty lines first would hide a request line past the limit
        let hidden = format!("\r\n\nCONNECT {}:1 HTTP/1.1\r\n\r\n", "a".repeat(300));
        assert_eq!(status(hidden.as_bytes()), 400);
        let long = format!("CONNECT {}:1 HTTP/1.1\r\n\r\n", "a".repeat(100));
        assert_eq!(status(long.as_bytes()), 414);
        let many = b"CONNECT a:1 HTTP/1.1\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n";
        assert_eq!(status(many), 431);
        let big = format!("CONNECT a:1 HTTP/1.1\r\nX: {}\r\n", "v".repeat(300));
        assert_eq!(status(big.as_bytes()), 431);
    }
}
