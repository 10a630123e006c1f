//! The side-effect ports (notifier, queue, bus, scheduler, telephony) writing to one list, so a
//! test reads everything the use cases sent, in order.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::faults::{Fault, Faults, Service, die};
use crate::domain::values::Phone;
use crate::effects::{Delivery, Effect, Effects, Timer};
use crate::ports::*;

/// Everything sent, in order: the in-memory notifier, queue, bus, scheduler and telephony all
/// write here, so a test reads one list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Sms {
        to: Phone,
        body: String,
    },
    Push {
        token: String,
        title: String,
        body: String,
    },
    Email(EmailMessage),
    Queued(Delivery),
    Event(String, String),
    Scheduled(Timer),
    /// A short timer sent to the timer queue, to fire after `delay`.
    Delayed {
        timer: Timer,
        delay: jiff::SignedDuration,
    },
    Cancelled {
        name: String,
    },
    Call {
        to: Phone,
        url: String,
        status_callback: String,
    },
    OptIn {
        to: Phone,
    },
    CallUpdate {
        call_sid: String,
        twiml: String,
    },
}

/// The in-memory side-effect adapters.
#[derive(Default)]
pub struct Outbox {
    sent: Mutex<Vec<Sent>>,
    /// How far `take_queued` has read.
    taken: Mutex<usize>,
    /// Phone numbers whose SMS the provider refuses, to test partial failures.
    pub refuse_sms_to: Mutex<BTreeSet<Phone>>,
    /// Faults to inject, shared with the store so one plan covers a whole flow.
    pub faults: Arc<Faults>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The emails sent so far, in order.
    pub fn emails(&self) -> Vec<EmailMessage> {
        self.sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Email(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    /// Runs `call` against `service` with the fault planned for this call, if any: `Fails`
    /// answers a retryable error without calling, `DiesAfter` calls, then panics.
    fn through<T>(&self, service: Service, call: impl FnOnce() -> T) -> Result<T, SendError> {
        match self.faults.check(service) {
            Some(Fault::Fails) => Err(SendError::Retryable(
                format!("{service:?} is unavailable (injected)").into(),
            )),
            Some(Fault::DiesAfter) => {
                call();
                die(service)
            }
            None => Ok(call()),
        }
    }

    /// Records `effects` as the outbox function performs them (`app::outbox::relay`): the
    /// deliveries queued, then each event, timer started and timer stopped, in order.
    pub fn forward(&self, effects: &Effects) {
        for effect in &effects.items {
            if let Effect::Deliver(d) = effect {
                self.push_sent(Sent::Queued(d.clone()));
            }
        }
        for effect in &effects.items {
            match effect {
                Effect::Deliver(_) => {}
                Effect::Publish(event) => self.push_sent(published(event)),
                Effect::StartTimer(timer) => self.push_sent(Sent::Scheduled(timer.clone())),
                Effect::StopTimer { name } => {
                    self.push_sent(Sent::Cancelled { name: name.clone() })
                }
            }
        }
    }

    /// The deliveries queued since the last call, in order.
    pub fn take_queued(&self) -> Vec<Delivery> {
        let sent = self.sent();
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = sent[*taken..]
            .iter()
            .filter_map(|x| match x {
                Sent::Queued(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        *taken = sent.len();
        fresh
    }

    fn push_sent(&self, s: Sent) {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

#[async_trait]
impl Notifier for Outbox {
    async fn sms(&self, to: &Phone, body: &str) -> Result<(), SendError> {
        if self
            .refuse_sms_to
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(to)
        {
            return Err(SendError::Retryable(format!("carrier refused {to}").into()));
        }
        self.through(Service::Sms, || {
            self.push_sent(Sent::Sms {
                to: to.clone(),
                body: body.to_owned(),
            })
        })
    }

    async fn opt_in(&self, to: &Phone) -> Result<(), SendError> {
        self.through(Service::Sms, || {
            self.push_sent(Sent::OptIn { to: to.clone() })
        })
    }

    async fn push(&self, device_token: &str, title: &str, body: &str) -> Result<(), SendError> {
        self.through(Service::Push, || {
            self.push_sent(Sent::Push {
                token: device_token.to_owned(),
                title: title.to_owned(),
                body: body.to_owned(),
            })
        })
    }

    async fn email(&self, message: &EmailMessage) -> Result<(), SendError> {
        self.through(Service::Email, || {
            self.push_sent(Sent::Email(message.clone()))
        })
    }
}

#[async_trait]
impl BroadcastQueue for Outbox {
    async fn enqueue(&self, messages: &[Delivery]) -> Result<(), SendError> {
        self.through(Service::Queue, || {
            for m in messages {
                self.push_sent(Sent::Queued(m.clone()));
            }
        })
    }
}

#[async_trait]
impl EventBus for Outbox {
    async fn publish(&self, event: &DomainEvent) -> Result<(), SendError> {
        self.through(Service::Bus, || self.push_sent(published(event)))
    }
}

/// An event as the outbox keeps it: its detail type and its detail as JSON.
fn published(event: &DomainEvent) -> Sent {
    let detail = serde_json::to_value(event)
        .map(|v| v["detail"].to_string())
        .unwrap_or_default();
    Sent::Event(event.detail_type().to_owned(), detail)
}

#[async_trait]
impl Scheduler for Outbox {
    async fn start(&self, timer: &Timer) -> Result<(), SendError> {
        self.through(Service::Scheduler, || {
            self.push_sent(Sent::Scheduled(timer.clone()))
        })
    }

    async fn stop(&self, name: &str) -> Result<(), SendError> {
        self.through(Service::Scheduler, || {
            self.push_sent(Sent::Cancelled {
                name: name.to_owned(),
            })
        })
    }
}

#[async_trait]
impl TimerQueue for Outbox {
    async fn delay(&self, timer: &Timer, delay: jiff::SignedDuration) -> Result<(), SendError> {
        self.through(Service::Queue, || {
            self.push_sent(Sent::Delayed {
                timer: timer.clone(),
                delay,
            })
        })
    }
}

#[async_trait]
impl Telephony for Outbox {
    async fn call(
        &self,
        to: &Phone,
        url: &str,
        status_callback: &str,
    ) -> Result<String, SendError> {
        self.through(Service::Call, || {
            self.push_sent(Sent::Call {
                to: to.clone(),
                url: url.to_owned(),
                status_callback: status_callback.to_owned(),
            });
            format!("CA{}", ulid::Ulid::new())
        })
    }

    async fn update(&self, call_sid: &str, twiml: &str) -> Result<(), SendError> {
        self.through(Service::Call, || {
            self.push_sent(Sent::CallUpdate {
                call_sid: call_sid.to_owned(),
                twiml: twiml.to_owned(),
            })
        })
    }
}
