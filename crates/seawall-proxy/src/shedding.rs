//! Criticality shedding at the inbound sidecar: the concurrency limit in
//! front of the app (`services.X.shedding`), the least critical shed first.
//!
//! The [`Gate`] is the adapter of `seawall_policy::shed::Shedder` (the twin
//! of `seawall.policy.shed.LoadShedder`): the state machine decides who is
//! admitted, queued, granted a freed slot or shed; the gate does the waiting.
//! Its lock is held for a decision only, never across an await.
//!
//! A request admitted holds a [`Slot`] until its response has been sent (the
//! app is busy with it until then); the slot measures the app's latency for
//! the adaptive limit once the app has answered. A queued request waits for a
//! grant, no longer than the queue's `max_wait` nor its own deadline; a
//! request whose client goes away while queued leaves the queue (and a slot
//! granted to it meanwhile is given back at once).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use seawall_policy::shed::{Admission, Criticality, ShedConfig, ShedError, Shedder};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::metrics::{Counter, Metrics};

/// `x-seawall-criticality`: set by the caller, else by the route's default.
pub const CRITICALITY: http::HeaderName = http::HeaderName::from_static("x-seawall-criticality");

/// A request's criticality when neither it nor its route says.
pub const DEFAULT: Criticality = Criticality::Critical;

/// The concurrency limit of one service, shared by its inbound listeners.
#[derive(Debug)]
pub struct Gate {
    inner: Mutex<Inner>,
    clock: Clock,
    shed: [Arc<Counter>; 4],
    admitted: [Arc<Counter>; 4],
    limit: Arc<Counter>,
}

#[derive(Debug)]
struct Inner {
    shedder: Shedder,
    /// The queued requests' wake-ups, by ticket.
    waiters: HashMap<u64, oneshot::Sender<()>>,
}

impl Gate {
    pub fn new(
        service: &str,
        config: ShedConfig,
        clock: Clock,
        metrics: &Metrics,
    ) -> Result<Self, ShedError> {
        let shedder = Shedder::new(config)?;
        let by_level = |family: &crate::metrics::Family| {
            Criticality::ALL.map(|c| family.labels(&[service, c.as_str()]))
        };
        let gate = Gate {
            shed: by_level(&metrics.shed),
            admitted: by_level(&metrics.admitted),
            limit: metrics.concurrency_limit.labels(&[service]),
            inner: Mutex::new(Inner {
                shedder,
                waiters: HashMap::new(),
            }),
            clock,
        };
        gate.limit.set(gate.lock().shedder.limit().floor() as u64);
        Ok(gate)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// New settings; what is in flight and queued carries over.
    pub fn reconfigure(&self, config: ShedConfig) -> Result<(), ShedError> {
        let mut inner = self.lock();
        let before = inner.shedder.counts();
        let (granted, shed) = inner.shedder.reconfigure(config)?;
        for ticket in shed {
            inner.waiters.remove(&ticket); // its waiter wakes up shed
        }
        self.wake(&mut inner, granted);
        self.count(&inner, before);
        Ok(())
    }

    /// Ask for a slot for a request of `criticality` that must be answered by
    /// `deadline` (clock seconds): `Some` once admitted, `None` when shed.
    pub async fn enter(self: &Arc<Self>, criticality: Criticality, deadline: f64) -> Option<Slot> {
        let now = self.clock.now();
        let (ticket, rx) = {
            let mut inner = self.lock();
            let before = inner.shedder.counts();
            let admission = inner.shedder.acquire(now, criticality);
            self.count(&inner, before);
            match admission {
                Admission::Admitted => return Some(self.slot()),
                Admission::Shed => return None,
                Admission::Queued { ticket, evicted } => {
                    if let Some(evicted) = evicted {
                        inner.waiters.remove(&evicted); // wakes up shed
                    }
                    let (tx, rx) = oneshot::channel();
                    inner.waiters.insert(ticket, tx);
                    (ticket, rx)
                }
            }
        };
        let max_wait = self.lock().shedder.config().max_wait;
        let mut queued = Queued {
            gate: self,
            ticket,
            rx: Some(rx),
        };
        let wait = max_wait.min(deadline - now).max(0.0);
        let rx = queued.rx.as_mut()?;
        match tokio::time::timeout(Duration::from_secs_f64(wait), rx).await {
            Ok(Ok(())) => {
                queued.rx = None; // granted: nothing to undo
                Some(self.slot())
            }
            Ok(Err(_)) => {
                queued.rx = None; // evicted by a more critical request: counted then
                None
            }
            // out of time: shed, unless granted at the last moment
            Err(_) => queued.settle().then(|| self.slot()),
        }
    }

    fn slot(self: &Arc<Self>) -> Slot {
        Slot {
            gate: self.clone(),
            start: self.clock.now(),
            answered: AtomicBool::new(false),
        }
    }

    fn release(&self, latency: Option<f64>) {
        let mut inner = self.lock();
        let before = inner.shedder.counts();
        let granted = inner.shedder.release(latency);
        self.wake(&mut inner, granted);
        self.count(&inner, before);
    }

    /// Wake the granted tickets; a slot granted to a request that is gone is
    /// given back at once (and granted on).
    fn wake(&self, inner: &mut Inner, mut granted: Vec<u64>) {
        while let Some(ticket) = granted.pop() {
            let delivered = inner
                .waiters
                .remove(&ticket)
                .is_some_and(|tx| tx.send(()).is_ok());
            if !delivered {
                granted.extend(inner.shedder.release(None));
            }
        }
        self.limit.set(inner.shedder.limit().floor() as u64);
    }

    /// Add what the shedder counted since `before` to the metrics.
    fn count(&self, inner: &Inner, before: seawall_policy::shed::ShedCounts) {
        let after = inner.shedder.counts();
        for i in 0..4 {
            self.admitted[i].add(after.admitted[i] - before.admitted[i]);
            self.shed[i].add(after.shed[i] - before.shed[i]);
        }
    }
}

/// A queued request's place; leaving it (the client went away, or its wait
/// ran out) takes it out of the queue, or gives back a slot granted meanwhile.
struct Queued<'g> {
    gate: &'g Arc<Gate>,
    ticket: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Queued<'_> {
    /// Leave the queue: `true` if a slot was granted meanwhile (now held).
    fn settle(&mut self) -> bool {
        let Some(mut rx) = self.rx.take() else {
            return false;
        };
        let gate = self.gate;
        let mut inner = gate.lock();
        let before = inner.shedder.counts();
        let cancelled = inner.shedder.cancel(self.ticket);
        inner.waiters.remove(&self.ticket);
        gate.count(&inner, before);
        !cancelled && rx.try_recv().is_ok()
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.rx.is_some() && self.settle() {
            self.gate.release(None); // granted to a request that left
        }
    }
}

/// A slot at the app, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    gate: Arc<Gate>,
    start: f64,
    answered: AtomicBool,
}

impl Slot {
    /// The app answered (its latency is measured when the slot is given back).
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let latency = self
            .answered
            .load(Ordering::Relaxed)
            .then(|| self.gate.clock.now() - self.start);
        self.gate.release(latency);
    }
}

/// The criticality a request asks for in `x-seawall-criticality`: `Ok(None)`
/// when it does not say, `Err` naming the value when it is not a level.
pub fn requested(headers: &http::HeaderMap) -> Result<Option<Criticality>, String> {
    let Some(value) = headers.get(&CRITICALITY) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    Criticality::parse(&text).map(Some).ok_or_else(|| {
        format!(
            "x-seawall-criticality: '{text}' is not one of critical_plus, critical, \
             sheddable_plus, sheddable"
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use seawall_policy::shed::Limit;

    fn gate(limit: usize, max_waiting: usize, max_wait: f64) -> Arc<Gate> {
        let config = ShedConfig {
            limit: Limit::Fixed(limit),
            max_waiting,
            max_wait,
        };
        Arc::new(Gate::new("app", config, Clock::new(), &Metrics::new()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_most_critical_waiter() {
        let g = gate(1, 2, 10.0);
        let held = g.enter(Criticality::Sheddable, 1e9).await.unwrap();
        let low = tokio::spawn({
            let g = g.clone();
            async move { g.enter(Criticality::Sheddable, 1e9).await.is_some() }
        });
        tokio::task::yield_now().await;
        let high = tokio::spawn({
            let g = g.clone();
            async move {
                g.enter(Criticality::CriticalPlus, 1e9)
                    .await
                    .map(drop)
                    .is_some()
            }
        });
        tokio::task::yield_now().await;
        // a third waiter, as critical as the low one, finds the queue full: shed
        assert!(g.enter(Criticality::Sheddable, 1e9).await.is_none());
        drop(held);
        assert!(high.await.unwrap());
        assert!(low.await.unwrap());
        assert_eq!(g.shed[3].get(), 1);
        assert_eq!(g.admitted[0].get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_at_max_wait_or_the_deadline_and_a_leaver_frees_its_place() {
        let g = gate(1, 4, 0.5);
        let _held = g.enter(Criticality::Critical, 1e9).await.unwrap();
        let t0 = tokio::time::Instant::now();
        assert!(g.enter(Criticality::Critical, 1e9).await.is_none());
        assert_eq!(t0.elapsed(), Duration::from_millis(500));
        let now = g.clock.now();
        assert!(g.enter(Criticality::Critical, now + 0.1).await.is_none());
        // a request that leaves the queue (its future dropped) is out of it
        let waiting = g.enter(Criticality::Critical, 1e9);
        let _ = tokio::time::timeout(Duration::from_millis(10), waiting).await;
        assert_eq!(g.lock().shedder.waiting(), 0);
        assert_eq!(g.shed[1].get(), 3);
    }

    #[test]
    fn the_header_names_a_level_or_is_refused() {
        let mut h = http::HeaderMap::new();
        assert_eq!(requested(&h), Ok(None));
        h.insert(CRITICALITY, http::HeaderValue::from_static("Sheddable"));
        assert_eq!(requested(&h), Ok(Some(Criticality::Sheddable)));
        h.insert(CRITICALITY, http::HeaderValue::from_static("urgent"));
        assert!(requested(&h)
            .unwrap_err()
            .contains("'urgent' is not one of"));
    }
}
