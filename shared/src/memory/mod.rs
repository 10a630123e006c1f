//! In-memory adapters of every port, for fast tests of the use cases and handlers and for the
//! in-process demo: `store` (the storage ports) and `outbox` (everything sent). Compiled for
//! tests and with the `memory` feature only, never into a deployed function.

mod outbox;
mod store;

use std::sync::Arc;

pub use outbox::{Outbox, Sent};
pub use store::MemoryStore;

use crate::app::{Config, DEFAULT_PRICES, Lines, Services};
use crate::domain::billing::PriceTable;

/// Services over the in-memory adapters, with handles to the store and the outbox for assertions:
/// for tests of the use cases and handlers, and for the in-process demo.
pub fn in_memory_services() -> (Services, Arc<MemoryStore>, Arc<Outbox>) {
    let store = Arc::new(MemoryStore::new());
    let outbox = Arc::new(Outbox::new());
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
