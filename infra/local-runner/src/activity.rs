//! Knowing when the local stack has settled. A change's effects travel on: the table's stream to
//! the outbox function, the broadcast queue to its consumer, bus rules to theirs. On AWS they
//! arrive a moment later; locally, the clock and the outbox wait for them, so that "the clock
//! moved a month" and "what was sent" mean the same thing every run.
//!
//! Every poller reports its cycles. The stack has settled when, since the last work done
//! anywhere, every poller has run a whole cycle, begun after the question was asked, that found
//! nothing to do. Asking wakes the pollers, so settling takes a few round trips, not a poll
//! interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a poller with nothing to do sleeps before it looks again, unless woken.
pub const IDLE: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Activity {
    /// How much work has been done anywhere: moves on with every cycle that found some.
    epoch: AtomicU64,
    pulses: Mutex<Vec<Arc<Pulse>>>,
}

/// One poller's cycles.
#[derive(Default)]
pub struct Pulse {
    begun: AtomicU64,
    /// The last cycle that found nothing to do, and the epoch when it began.
    idle: Mutex<Option<(u64, u64)>>,
    wake: Notify,
}

/// A cycle in progress.
pub struct Cycle {
    number: u64,
    epoch: u64,
}

impl Activity {
    /// A poller's pulse, counted in from now on.
    pub fn pulse(&self) -> Arc<Pulse> {
        let pulse = Arc::new(Pulse::default());
        self.pulses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pulse.clone());
        pulse
    }

    pub fn begin(&self, pulse: &Pulse) -> Cycle {
        Cycle {
            number: pulse.begun.fetch_add(1, Ordering::SeqCst) + 1,
            epoch: self.epoch.load(Ordering::SeqCst),
        }
    }

    /// Ends a cycle that did (or did not do) some work.
    pub fn end(&self, pulse: &Pulse, cycle: Cycle, worked: bool) {
        if worked {
            self.epoch.fetch_add(1, Ordering::SeqCst);
        } else {
            *pulse.idle.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((cycle.number, cycle.epoch));
        }
    }

    /// Waits until the stack has settled, or `limit` has passed; true if it settled.
    pub async fn settle(&self, limit: Duration) -> bool {
        let pulses = self
            .pulses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let marks: Vec<u64> = pulses
            .iter()
            .map(|p| p.begun.load(Ordering::SeqCst))
            .collect();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let epoch = self.epoch.load(Ordering::SeqCst);
            let settled = pulses.iter().zip(&marks).all(|(p, mark)| {
                let idle = *p.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.is_some_and(|(cycle, at)| cycle > *mark && at == epoch)
            });
            if settled {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(?limit, "the local stack did not settle in time");
                return false;
            }
            for p in &pulses {
                p.wake.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Pulse {
    /// Sleeps `idle`, or less when someone wants to know whether the stack has settled.
    pub async fn rest(&self, idle: Duration) {
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            () = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settled_only_after_every_poller_idled_since_the_last_work() {
        let activity = Arc::new(Activity::default());
        let (a, b) = (activity.pulse(), activity.pulse());
        // Nobody has run a cycle: not settled.
        assert!(!activity.settle(Duration::from_millis(50)).await);
        let waiter = {
            let activity = activity.clone();
            tokio::spawn(async move { activity.settle(Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        // a idles, then b works: a must idle again after b's work.
        let c = activity.begin(&a);
        activity.end(&a, c, false);
        let c = activity.begin(&b);
        activity.end(&b, c, true);
        let c = activity.begin(&b);
        activity.end(&b, c, false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a has not looked since b's work");
        let c = activity.begin(&a);
        activity.end(&a, c, false);
        assert!(waiter.await.unwrap());
    }
}
