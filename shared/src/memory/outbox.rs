//! The side-effect ports (notifier, queue, bus, scheduler, telephony) writing to one list, so a
//! test reads everything the use cases sent, in order.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;
use jiff::Timestamp;

use crate::domain::values::Phone;
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
    Queued(BroadcastMessage),
    Event(String, String),
    Scheduled {
        name: String,
        at: Timestamp,
        payload: String,
    },
    Cancelled {
        name: String,
    },
    Call {
        to: Phone,
        url: String,
        status_callback: String,
    },
}

/// The in-memory side-effect adapters.
#[derive(Default)]
pub struct Outbox {
    sent: Mutex<Vec<Sent>>,
    /// Phone numbers whose SMS the provider refuses, to test partial failures.
    pub refuse_sms_to: Mutex<BTreeSet<Phone>>,
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
        self.push_sent(Sent::Sms {
            to: to.clone(),
            body: body.to_owned(),
        });
        Ok(())
    }

    async fn push(&self, device_token: &str, title: &str, body: &str) -> Result<(), SendError> {
        self.push_sent(Sent::Push {
            token: device_token.to_owned(),
            title: title.to_owned(),
            body: body.to_owned(),
        });
        Ok(())
    }

    async fn email(&self, message: &EmailMessage) -> Result<(), SendError> {
        self.push_sent(Sent::Email(message.clone()));
        Ok(())
    }
}

#[async_trait]
impl BroadcastQueue for Outbox {
    async fn enqueue(&self, messages: &[BroadcastMessage]) -> Result<(), SendError> {
        for m in messages {
            self.push_sent(Sent::Queued(m.clone()));
        }
        Ok(())
    }
}

#[async_trait]
impl EventBus for Outbox {
    async fn publish(&self, event: &DomainEvent) -> Result<(), SendError> {
        let detail = serde_json::to_value(event)
            .map(|v| v["detail"].to_string())
            .map_err(|e| SendError::Rejected(e.to_string()))?;
        self.push_sent(Sent::Event(event.detail_type().to_owned(), detail));
        Ok(())
    }
}

#[async_trait]
impl Scheduler for Outbox {
    async fn schedule_once(
        &self,
        name: &str,
        at: Timestamp,
        payload: &serde_json::Value,
    ) -> Result<(), SendError> {
        self.push_sent(Sent::Scheduled {
            name: name.to_owned(),
            at,
            payload: payload.to_string(),
        });
        Ok(())
    }

    async fn cancel(&self, name: &str) -> Result<(), SendError> {
        self.push_sent(Sent::Cancelled {
            name: name.to_owned(),
        });
        Ok(())
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
        self.push_sent(Sent::Call {
            to: to.clone(),
            url: url.to_owned(),
            status_callback: status_callback.to_owned(),
        });
        Ok(format!("CA{}", ulid::Ulid::new()))
    }
}
