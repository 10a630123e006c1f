//! In-memory adapters of every port, for fast tests of the use cases and handlers and for the
//! in-process demo: `store` (the storage ports) and `outbox` (everything sent). Compiled for
//! tests and with the `memory` feature only, never into a deployed function.

mod faults;
mod outbox;
mod store;

use std::sync::Arc;

pub use faults::{Fault, Faults, Service};
pub use outbox::{Outbox, Sent};
pub use store::MemoryStore;

use crate::app::broadcast::Senders;
use crate::app::outbox::Relay;
use crate::app::{Config, Services};

/// Services over the in-memory adapters, with handles to the store and the outbox for assertions:
/// for tests of the use cases and handlers, and for the in-process demo.
///
/// Committed effects are forwarded to the outbox as they commit (deliveries queued, events
/// published, timers started), as the stream and the outbox function would; see
/// [`in_memory_services_unrelayed`] to relay them step by step.
pub fn in_memory_services() -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new());
    let store = Arc::new(MemoryStore::streaming_to(outbox.clone()));
    services_over(store, outbox)
}

/// Services whose committed effects wait in the store until [`relay`] performs them: for tests
/// that stop or fail the flow between a change and its effects.
pub fn in_memory_services_unrelayed() -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new());
    let store = Arc::new(MemoryStore::with_faults(outbox.faults.clone()));
    services_over(store, outbox)
}

fn services_over(
    store: Arc<MemoryStore>,
    outbox: Arc<Outbox>,
) -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let s = Services {
        agents: store.clone(),
        referrals: store.clone(),
        effects: store.clone(),
        lines: store.clone(),
        due: store.clone(),
        subscriptions: store.clone(),
        once: store.clone(),
        requests: store.clone(),
        config: Arc::new(Config::development()),
    };
    (s, store, outbox)
}

/// The outbox's services over `outbox`: what the outbox function forwards effects to.
pub fn relay_of(outbox: &Arc<Outbox>) -> Relay {
    Relay {
        queue: outbox.clone(),
        bus: outbox.clone(),
        scheduler: outbox.clone(),
        timers: outbox.clone(),
    }
}

/// The senders over `outbox`: what the broadcast function sends messages through.
pub fn senders_of(outbox: &Arc<Outbox>) -> Senders {
    Senders {
        notifier: outbox.clone(),
        telephony: outbox.clone(),
    }
}

/// The outbox function's work, in process: relays every outbox item committed since the last
/// call, as the table's stream would deliver them (deliveries to the queue, events, timers),
/// as committed at `now`.
pub async fn relay(
    store: &MemoryStore,
    outbox: &Arc<Outbox>,
    now: jiff::Timestamp,
) -> Result<(), crate::app::AppError> {
    let relay = relay_of(outbox);
    for effects in store.take_committed_effects() {
        crate::app::outbox::relay(&relay, &effects, now).await?;
    }
    Ok(())
}

/// Sends every delivery queued and not yet sent, as the broadcast function would, until none is
/// left (a delivery can queue none, but a loop keeps this true if one ever does).
pub async fn deliver(
    s: &Services,
    outbox: &Arc<Outbox>,
    now: jiff::Timestamp,
) -> Result<(), crate::app::AppError> {
    let senders = senders_of(outbox);
    loop {
        let queued = outbox.take_queued();
        if queued.is_empty() {
            return Ok(());
        }
        for delivery in &queued {
            crate::app::broadcast::deliver(s, &senders, delivery, now).await?;
        }
    }
}

/// Relays what was committed, then sends every delivery queued and not yet sent: what a user
/// would see once the stack settles.
pub async fn settle(
    s: &Services,
    store: &MemoryStore,
    outbox: &Arc<Outbox>,
    now: jiff::Timestamp,
) -> Result<(), crate::app::AppError> {
    relay(store, outbox, now).await?;
    deliver(s, outbox, now).await
}
