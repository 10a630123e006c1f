//! Faults injected into the in-memory adapters, to prove that no failure between a change and
//! its effects loses or doubles one (EF-1): a call to an outside service or a write to the store
//! fails as a throttled service fails, or the function dies right after it took effect. Calls are
//! counted per service, so a test can fail each of them in turn.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// What a fault can hit: each outside service the effects reach, and the store's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    Queue,
    Bus,
    Scheduler,
    Sms,
    Push,
    Email,
    Call,
    /// A write that commits a change, its effects, or a delivery's record.
    Store,
}

impl Service {
    pub const ALL: [Service; 8] = [
        Service::Queue,
        Service::Bus,
        Service::Scheduler,
        Service::Sms,
        Service::Push,
        Service::Email,
        Service::Call,
        Service::Store,
    ];
}

/// How an injected fault shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The call fails as a throttled or unreachable service does: a transient, retryable error,
    /// and nothing happened.
    Fails,
    /// The call takes effect, then the function dies before it learns so: it panics (run it in a
    /// task to watch it die).
    DiesAfter,
}

/// The plan of faults and the count of calls, by service.
#[derive(Debug, Default)]
pub struct Faults {
    plan: Mutex<BTreeMap<(Service, usize), Fault>>,
    calls: Mutex<BTreeMap<Service, usize>>,
}

impl Faults {
    /// Makes call number `nth` (from 0) to `service` show `fault`.
    pub fn inject(&self, service: Service, nth: usize, fault: Fault) {
        self.plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((service, nth), fault);
    }

    /// Makes the next call to `service` show `fault`.
    pub fn inject_next(&self, service: Service, fault: Fault) {
        let next = self.calls(service);
        self.inject(service, next, fault);
    }

    /// How many calls `service` has had.
    pub fn calls(&self, service: Service) -> usize {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&service)
            .copied()
            .unwrap_or(0)
    }

    /// Counts one call to `service` and answers the fault planned for it, if any.
    pub fn check(&self, service: Service) -> Option<Fault> {
        let nth = {
            let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            let count = calls.entry(service).or_default();
            *count += 1;
            *count - 1
        };
        self.plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(service, nth))
    }
}

/// The panic of a function that died after `service` took its call.
pub fn die(service: Service) -> ! {
    panic!("the function died after calling {service:?} (injected)")
}
