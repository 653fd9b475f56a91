//! One port, two transports: the first byte decides (Python's `MeshListener._dispatch`).
//!
//! The listener peeks at a new connection's first byte without consuming it.
//! `0x16` starts a TLS handshake record: a ClientHello follows, and the
//! connection is served with mutual TLS in both modes. Anything else is
//! plaintext: served in permissive mode, refused at once in strict mode.

use crate::error::TlsError;

/// The content type of a TLS handshake record.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Is this first byte the start of a TLS handshake record (`0x16`)?
pub fn looks_like_tls(first_byte: u8) -> bool {
    first_byte == TLS_HANDSHAKE
}

/// A service's `mtls` setting: how its sidecar's inbound port takes connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtlsMode {
    /// Mutual TLS only.
    Strict,
    /// Mutual TLS and plaintext on the same port (for migrating a mesh).
    Permissive,
}

impl MtlsMode {
    /// The mode named as in the config (`strict`, `permissive`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "strict" => Some(MtlsMode::Strict),
            "permissive" => Some(MtlsMode::Permissive),
            _ => None,
        }
    }

    /// Its name in the config.
    pub fn name(self) -> &'static str {
        match self {
            MtlsMode::Strict => "strict",
            MtlsMode::Permissive => "permissive",
        }
    }
}

/// How an admitted connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A TLS handshake with a client certificate, then HTTP.
    Mtls,
    /// HTTP as it comes; the caller is unauthenticated.
    Plaintext,
}

impl Transport {
    /// The `transport` label of `seawall_inbound_connections_total` (`mtls`, `plaintext`).
    pub fn label(self) -> &'static str {
        match self {
            Transport::Mtls => "mtls",
            Transport::Plaintext => "plaintext",
        }
    }
}

/// What to do with a connection whose first byte is `first_byte`, in `mode`.
///
/// Err is [`TlsError::Plaintext`]: close it at once and count it. A
/// connection closed before its first byte, or silent past the header
/// timeout, is the listener's to drop (Python counts neither).
pub fn admit(mode: MtlsMode, first_byte: u8) -> Result<Transport, TlsError> {
    if looks_like_tls(first_byte) {
        return Ok(Transport::Mtls);
    }
    match mode {
        MtlsMode::Strict => Err(TlsError::Plaintext),
        MtlsMode::Permissive => Ok(Transport::Plaintext),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_byte_decides() {
        assert!(looks_like_tls(0x16));
        for byte in [b'G', b'P', 0x15, 0x17, 0x80, 0] {
            assert!(!looks_like_tls(byte));
        }
        assert_eq!(admit(MtlsMode::Strict, 0x16), Ok(Transport::Mtls));
        assert_eq!(admit(MtlsMode::Permissive, 0x16), Ok(Transport::Mtls));
        assert_eq!(admit(MtlsMode::Strict, b'G'), Err(TlsError::Plaintext));
        assert_eq!(admit(MtlsMode::Permissive, b'G'), Ok(Transport::Plaintext));
        assert_eq!(TlsError::Plaintext.reason(), "plaintext");
        assert_eq!(Transport::Mtls.label(), "mtls");
        assert_eq!(Transport::Plaintext.label(), "plaintext");
    }

    #[test]
    fn modes_by_name() {
        for mode in [MtlsMode::Strict, MtlsMode::Permissive] {
            assert_eq!(MtlsMode::from_name(mode.name()), Some(mode));
        }
        assert_eq!(MtlsMode::from_name("Strict"), None);
    }
}
