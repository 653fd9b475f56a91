//! What every connection of one sidecar shares: the current runtime (swapped
//! whole on reload), the metrics, the mTLS store, and the drain signal.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::tls::UpstreamTls;

pub struct State {
    runtime: RwLock<Arc<Runtime>>,
    pub metrics: Arc<Metrics>,
    tls: RwLock<Option<UpstreamTls>>,
    draining: AtomicBool,
    drain: Notify,
    /// Told at every swap: open connections check whether their caller is refused now.
    swapped: Notify,
    connections: AtomicUsize,
    idle: Notify,
    pub ready: AtomicBool,
}

/// Counts a downstream connection open while it lives.
pub struct OpenConnection<'a>(&'a State);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        if self.0.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl State {
    pub fn new(runtime: Runtime, metrics: Arc<Metrics>) -> Self {
        State {
            runtime: RwLock::new(Arc::new(runtime)),
            metrics,
            tls: RwLock::new(None),
            draining: AtomicBool::new(false),
            drain: Notify::new(),
            swapped: Notify::new(),
            connections: AtomicUsize::new(0),
            idle: Notify::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// The runtime a new request starts with (it keeps it to the end).
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swap in a new runtime; returns the old one.
    pub fn swap(&self, runtime: Runtime) -> Arc<Runtime> {
        let old = {
            let mut current = self.runtime.write().unwrap_or_else(|e| e.into_inner());
            std::mem::replace(&mut *current, Arc::new(runtime))
        };
        self.swapped.notify_waiters();
        old
    }

    /// Resolves once the runtime in force refuses connections from `caller`
    /// (`authorization.refuse`): checked now, then at every swap; the refusal
    /// is counted and told as made `at` that point. Never, for no caller.
    pub async fn refused(&self, caller: Option<&str>, at: &'static str) {
        let Some(caller) = caller else {
            return std::future::pending().await;
        };
        loop {
            let swapped = self.swapped.notified();
            if self.runtime().refuses(Some(caller), at) {
                return;
            }
            swapped.await;
        }
    }

    pub fn upstream_tls(&self) -> Option<UpstreamTls> {
        self.tls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_upstream_tls(&self, tls: Option<UpstreamTls>) {
        *self.tls.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    pub fn connection_opened(&self) -> OpenConnection<'_> {
        self.connections.fetch_add(1, Ordering::AcqRel);
        OpenConnection(self)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Stop taking requests: idle keep-alive connections close, busy ones after their request.
    pub fn start_drain(&self) {
        self.ready.store(false, Ordering::Release);
        self.draining.store(true, Ordering::Release);
        self.drain.notify_waiters();
    }

    /// Resolves once draining has begun.
    pub async fn drained(&self) {
        loop {
            let notified = self.drain.notified();
            if self.draining() {
                return;
            }
            notified.await;
        }
    }

    /// Resolves once no downstream connection is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.idle.notified();
            if self.connections() == 0 {
                return;
            }
            notified.await;
        }
    }
}
