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
    /// The pollers nudged when another has handed something on: all but a queue's extra
    /// pollers, which wait for a backlog.
    nudged: Mutex<Vec<Arc<Pulse>>>,
    /// The table's stream readers, nudged when the gateway has answered.
    streams: Mutex<Vec<Arc<Pulse>>>,
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
        let pulse = self.extra_pulse();
        self.nudged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pulse.clone());
        pulse
    }

    /// An extra poller's pulse: counted in, but not nudged (`nudge_others`).
    pub fn extra_pulse(&self) -> Arc<Pulse> {
        let pulse = Arc::new(Pulse::default());
        self.pulses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pulse.clone());
        pulse
    }

    /// A stream reader's pulse: as `pulse`, and nudged by `nudge_streams`.
    pub fn stream_pulse(&self) -> Arc<Pulse> {
        let pulse = self.pulse();
        self.streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(pulse.clone());
        pulse
    }

    /// Something was just handed on (a function wrote to the table, sent to a queue): the
    /// other pollers look now rather than at the end of their rest. On AWS a queue's long poll
    /// answers as a message arrives; a poll interval of the runner's own would add up to
    /// `IDLE` at every hop of an effect's way.
    pub fn nudge_others(&self, from: &Pulse) {
        for p in self.nudged.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if !std::ptr::eq(Arc::as_ptr(p), from) {
                p.wake.notify_one();
            }
        }
    }

    /// A request was answered, which may have written to the table: its stream readers look
    /// now. (Lambda reads a stream's shards four times a second; this is a little sooner.)
    pub fn nudge_streams(&self) {
        for p in self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            p.wake.notify_one();
        }
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
    /// Sleeps `idle`, or less when someone wants to know whether the stack has settled or has
    /// handed this poller something.
    pub async fn rest(&self, idle: Duration) {
        tokio::select! {
            () = tokio::time::sleep(idle) => {}
            () = self.wake.notified() => {}
        }
    }

    /// Sleeps until `signal`, or until woken as `rest` is.
    pub async fn rest_until(&self, signal: &Notify) {
        tokio::select! {
            () = signal.notified() => {}
            () = self.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_nudge_wakes_the_other_pollers_but_not_the_nudger_or_the_extra_ones() {
        let activity = Activity::default();
        let (a, b, extra) = (activity.pulse(), activity.pulse(), activity.extra_pulse());
        activity.nudge_others(&a);
        let (long, soon) = (Duration::from_secs(5), Duration::from_millis(100));
        assert!(tokio::time::timeout(soon, b.rest(long)).await.is_ok());
        assert!(tokio::time::timeout(soon, a.rest(long)).await.is_err());
        let backlog = Notify::new();
        assert!(
            tokio::time::timeout(soon, extra.rest_until(&backlog))
                .await
                .is_err()
        );
    }

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
