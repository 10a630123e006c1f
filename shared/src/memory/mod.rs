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

use crate::app::{Config, DEFAULT_PRICES, Lines, Services};
use crate::domain::billing::PriceTable;

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
    let prices = match PriceTable::from_json(DEFAULT_PRICES) {
        Ok(p) => p,
        Err(e) => unreachable!("the default price table is valid: {e}"),
    };
    let email = |s: &str| match s.parse() {
        Ok(e) => e,
        Err(e) => unreachable!("the development addresses are valid: {e}"),
    };
    let s = Services {
        agents: store.clone(),
        referrals: store.clone(),
        effects: store.clone(),
        lines: store.clone(),
        due: store.clone(),
        subscriptions: store.clone(),
        once: store.clone(),
        notifier: outbox.clone(),
        queue: outbox.clone(),
        bus: outbox.clone(),
        scheduler: outbox.clone(),
        telephony: outbox.clone(),
        config: Arc::new(Config {
            prices,
            closings_email: email("closings@referrals.example.com"),
            sender_email: email("no-reply@referrals.example.com"),
            advisor_email: email("advisors@referrals.example.com"),
            warm_transfer_timeout: crate::domain::warm_transfer::DEFAULT_TIMEOUT,
            lines: Lines::development(),
        }),
    };
    (s, store, outbox)
}

/// The outbox function's work, in process: relays every outbox item committed since the last
/// call, as the table's stream would deliver them (deliveries to the queue, events, timers).
pub async fn relay(s: &Services, store: &MemoryStore) -> Result<(), crate::app::AppError> {
    for effects in store.take_committed_effects() {
        crate::app::outbox::relay(s, &effects).await?;
    }
    Ok(())
}

/// Sends every delivery queued and not yet sent, as the broadcast function would, until none is
/// left (a delivery can queue none, but a loop keeps this true if one ever does).
pub async fn deliver(
    s: &Services,
    outbox: &Outbox,
    now: jiff::Timestamp,
) -> Result<(), crate::app::AppError> {
    loop {
        let queued = outbox.take_queued();
        if queued.is_empty() {
            return Ok(());
        }
        for delivery in &queued {
            crate::app::broadcast::deliver(s, delivery, now).await?;
        }
    }
}

/// Relays what was committed, then sends every delivery queued and not yet sent: what a user
/// would see once the stack settles.
pub async fn settle(
    s: &Services,
    store: &MemoryStore,
    outbox: &Outbox,
    now: jiff::Timestamp,
) -> Result<(), crate::app::AppError> {
    relay(s, store).await?;
    deliver(s, outbox, now).await
}
