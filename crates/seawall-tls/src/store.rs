//! Certificate rotation: the current configurations, replaced whole when a new identity arrives.
//!
//! As Python's `Identity.install` reloading its contexts: new handshakes use
//! the new certificate (and the new CA bundle, which may have dropped a CA),
//! and connections already open are untouched, since each rustls connection
//! holds the `Arc` of the configuration it was made with. Reading the
//! current configuration is one uncontended read lock and an `Arc` clone,
//! cheap enough for every accept and every connect; the lock is never held
//! for more than that swap (Linkerd publishes the new `Arc`s on a `watch`
//! channel instead: the same idea, pulled rather than pushed).

use std::sync::{Arc, PoisonError, RwLock};

use rustls::{ClientConfig, ServerConfig};

use crate::config::{client_config, server_config};
use crate::identity::{Identity, IdentityError};

/// The sidecar's TLS configurations, swapped whole on [`rotate`](Self::rotate).
#[derive(Debug)]
pub struct TlsStore {
    trust_domain: String,
    current: RwLock<Arc<Current>>,
}

#[derive(Debug)]
struct Current {
    identity: Identity,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Current {
    fn build(identity: Identity, trust_domain: &str) -> Result<Self, IdentityError> {
        let server = server_config(&identity, trust_domain)?;
        let client = client_config(&identity, trust_domain)?;
        Ok(Current {
            identity,
            server,
            client,
        })
    }
}

impl TlsStore {
    /// The configurations of `identity`, which must be `service`'s in the mesh's `trust_domain`.
    ///
    /// The checks of Python's `check_identity`: another trust domain or
    /// another service is refused.
    pub fn new(
        identity: Identity,
        trust_domain: &str,
        service: &str,
    ) -> Result<Self, IdentityError> {
        if identity.service() != service {
            return Err(IdentityError::Service {
                found: identity.service().to_owned(),
                expected: service.to_owned(),
            });
        }
        let current = Current::build(identity, trust_domain)?;
        Ok(TlsStore {
            trust_domain: trust_domain.to_owned(),
            current: RwLock::new(Arc::new(current)),
        })
    }

    /// Start using `identity` for new handshakes; open connections keep theirs.
    ///
    /// It must be the same service in the same trust domain (a sidecar
    /// cannot become another service). On error nothing changes.
    pub fn rotate(&self, identity: Identity) -> Result<(), IdentityError> {
        let next = Arc::new(Current::build(identity, &self.trust_domain)?);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if next.identity.service() != current.identity.service() {
            return Err(IdentityError::Service {
                found: next.identity.service().to_owned(),
                expected: current.identity.service().to_owned(),
            });
        }
        *current = next;
        Ok(())
    }

    /// The configuration for the next inbound handshake.
    pub fn server(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.now().server)
    }

    /// The configuration for the next connection to another sidecar.
    pub fn client(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.now().client)
    }

    /// The identity in use (for its SPIFFE ID, expiry and renewal time).
    pub fn identity(&self) -> Identity {
        self.now().identity.clone()
    }

    /// The mesh's trust domain.
    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    fn now(&self) -> Arc<Current> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}
