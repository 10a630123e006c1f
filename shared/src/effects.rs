//! What a change owes the world outside the table (EF-1): every SMS, push, email, call, domain
//! event and timer is an [`Effect`], and the effects of one change are committed with it, in the
//! same transaction, as one outbox item of the table ([`Effects`]).
//!
//! A consumer of the table's stream performs them (`app::outbox`): deliveries go to the broadcast
//! queue, whose consumer sends each once (`app::broadcast`); events go to the bus; timers to the
//! scheduler. So nothing is sent before the change that causes it is stored, and nothing stored
//! goes unsent: a forwarding step that fails is retried from the stream, and what keeps failing
//! is parked where an alarm sees it.
//!
//! Every effect is safe to perform twice downstream: a delivery carries its own idempotency key
//! ([`key`]), events are read by idempotent consumers, and timers are named.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::domain::values::{AgentId, Email, Phone, ReferralId};
use crate::ports::{Attachment, DomainEvent};

/// The effects one change owes, stored as one outbox item under `key`. The key is unique to the
/// change (a referral's new version, a webhook's id, a charge's cycle), so a retried change
/// cannot commit its effects twice. The default is no effects: nothing is written for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effects {
    pub key: String,
    pub items: Vec<Effect>,
}

impl Effects {
    pub fn new(key: impl Into<String>) -> Self {
        Effects {
            key: key.into(),
            items: Vec::new(),
        }
    }

    pub fn with(mut self, effect: Effect) -> Self {
        self.items.push(effect);
        self
    }

    pub fn push(&mut self, effect: Effect) {
        self.items.push(effect);
    }

    pub fn extend(&mut self, effects: impl IntoIterator<Item = Effect>) {
        self.items.extend(effects);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// One thing a change owes the outside world.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Effect {
    /// One message to one person on one channel, sent once by the broadcast queue's consumer.
    Deliver(Delivery),
    /// A domain event on the project's bus.
    Publish(DomainEvent),
    /// A timer that invokes the timers function at its time; starting one again under the same
    /// name replaces it.
    StartTimer(Timer),
    /// Stops a named timer; stopping one that is gone is fine.
    StopTimer { name: String },
}

/// One message to one recipient on one channel: an offer, an alert, a relayed text, a receipt,
/// a claim call. Sent once per `key`, however often it is queued.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub key: String,
    /// The referral it is about, for its history and the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referral_id: Option<ReferralId>,
    pub to: Recipient,
    pub message: Message,
}

impl Delivery {
    pub fn channel(&self) -> &'static str {
        self.message.channel()
    }
}

/// Who a message goes to. An agent is reached at the phone, device or address their profile has
/// when it is sent, so a profile changed in between is honoured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Recipient {
    Agent {
        agent_id: AgentId,
    },
    Phone {
        phone: Phone,
    },
    Email {
        email: Email,
    },
    /// A live call, by its provider id: what a call update changes.
    Call {
        call_sid: String,
    },
}

/// What is sent, by channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "channel",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum Message {
    Sms {
        body: String,
    },
    Push {
        title: String,
        body: String,
    },
    Email {
        subject: String,
        body: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cc: Vec<Email>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// A call placed through the telephony provider, which then requests `url` for its
    /// instructions and reports to `status_callback`.
    Call {
        url: String,
        status_callback: String,
    },
    /// Tells the SMS provider that a number which texted START takes texts again (TX-2): AWS
    /// keeps its own opt-out list, which a START to the service's number does not clear.
    OptIn,
    /// A live call given new instructions (moved into a conference, taken out of one).
    CallUpdate {
        twiml: String,
    },
}

impl Message {
    pub fn channel(&self) -> &'static str {
        match self {
            Message::Sms { .. } => "sms",
            Message::Push { .. } => "push",
            Message::Email { .. } => "email",
            Message::Call { .. } => "call",
            Message::OptIn => "opt_in",
            Message::CallUpdate { .. } => "call_update",
        }
    }

    /// An email with no copies or attachments.
    pub fn email(subject: impl Into<String>, body: impl Into<String>) -> Self {
        Message::Email {
            subject: subject.into(),
            body: body.into(),
            cc: Vec::new(),
            attachments: Vec::new(),
        }
    }
}

/// The longest delay an SQS message takes (DelaySeconds 900): short timers due within it go to
/// the timer queue, the rest to the scheduler.
pub const MAX_TIMER_DELAY: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);

/// A named timer: at `at`, the timers function is invoked with `payload` and the time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    pub name: String,
    pub at: Timestamp,
    pub payload: TimerPayload,
}

/// What a timer does when it fires: the one payload the producer writes and the timers function
/// reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "action",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum TimerPayload {
    /// Coming Soon becomes Listing on its list date (ST-3).
    ListOnDate { referral_id: ReferralId },
    /// A warm transfer's response window ends (WT-6).
    WarmTransferTimeout { referral_id: ReferralId },
    /// An offer still unclaimed after 24 hours goes to the advisors' queue (RC-2).
    Unclaimed { referral_id: ReferralId },
    /// The assigned agent's contact deadline (RC-1): without a contact by then, it is taken back.
    ContactDeadline {
        referral_id: ReferralId,
        agent_id: AgentId,
    },
    /// A duplicate's first look by the agent who has the client is over: the rest are offered it
    /// (RC-4).
    FirstLookOver { referral_id: ReferralId },
    /// A claim call that did not reach the agent is placed again, as call number `call`
    /// (LR-10, WT-12).
    ClaimCallRetry {
        referral_id: ReferralId,
        agent_id: AgentId,
        call: u8,
    },
}

impl TimerPayload {
    /// Whether the timer must fire within seconds of its time (WT-12): the warm-transfer window
    /// and claim-call retries, which a person on the phone waits for. Date-based timers are
    /// fine within the minute the scheduler gives.
    pub fn is_short(&self) -> bool {
        match self {
            TimerPayload::ListOnDate { .. } => false,
            TimerPayload::WarmTransferTimeout { .. } => true,
            TimerPayload::Unclaimed { .. } => false,
            TimerPayload::ContactDeadline { .. } => false,
            // The rest of the team waits for it: five minutes, not five and up to one more.
            TimerPayload::FirstLookOver { .. } => true,
            TimerPayload::ClaimCallRetry { .. } => true,
        }
    }
}

/// A timer as the timers function receives it: its payload and the time it was due, which is the
/// handler's "now" (a replay does the same thing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEvent {
    #[serde(flatten)]
    pub payload: TimerPayload,
    pub time: Timestamp,
}

/// Every idempotency key of an effect, in one place, beside the store's keys: a delivery is sent
/// once per key, and an outbox item is committed once per key.
pub mod key {
    use crate::domain::values::{AgentId, ReferralId, SubscriptionId};

    /// An offer or alert to one agent on one channel.
    pub fn offer(referral: &ReferralId, agent: &AgentId, channel: &str) -> String {
        format!("notify#{referral}#{agent}#{channel}")
    }

    /// The effects of creating a referral.
    pub fn created(referral: &ReferralId) -> String {
        format!("created#{referral}")
    }

    /// The effects of the change that made version `version` of a referral.
    pub fn version(referral: &ReferralId, version: u64) -> String {
        format!("ref#{referral}#v{version}")
    }

    /// What a claim owes: the client's details to the winner and `ReferralClaimed`.
    pub fn claimed(referral: &ReferralId) -> String {
        format!("claimed#{referral}")
    }

    /// The closing documents of one entry into In Escrow.
    pub fn closing_documents(referral: &ReferralId, escrow_entry: u32) -> String {
        format!("escrow-docs#{referral}#{escrow_entry}")
    }

    /// One cycle's receipt.
    pub fn receipt(subscription: &SubscriptionId, cycle: u32) -> String {
        format!("receipt#{subscription}#{cycle}")
    }

    /// One agent's reminder falling due at `due_ms`.
    pub fn reminder(agent: &AgentId, due_ms: i64) -> String {
        format!("reminder#{agent}#{due_ms}")
    }

    /// What one telephony webhook owes (its `MessageSid` or `CallSid`, and what it reported).
    pub fn webhook(provider_id: &str) -> String {
        format!("webhook#{provider_id}")
    }

    /// The effects of a warm transfer's end: the advisors told, the fallback offered.
    pub fn timed_out(referral: &ReferralId) -> String {
        format!("timed-out#{referral}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_1_effects_read_back_as_written() {
        let effects = Effects::new("created#r1")
            .with(Effect::Deliver(Delivery {
                key: key::offer(&"r1".parse().unwrap(), &"a1".parse().unwrap(), "sms"),
                referral_id: Some("r1".parse().unwrap()),
                to: Recipient::Agent {
                    agent_id: "a1".parse().unwrap(),
                },
                message: Message::Sms {
                    body: "New seller referral".into(),
                },
            }))
            .with(Effect::Publish(DomainEvent::ReferralClaimed {
                referral_id: "r1".parse().unwrap(),
                agent_id: "a1".parse().unwrap(),
            }))
            .with(Effect::StartTimer(Timer {
                name: "wt-timeout-r1".into(),
                at: "2026-01-01T00:01:30Z".parse().unwrap(),
                payload: TimerPayload::WarmTransferTimeout {
                    referral_id: "r1".parse().unwrap(),
                },
            }))
            .with(Effect::StopTimer {
                name: "coming-soon-r1".into(),
            });
        let json = serde_json::to_value(&effects).unwrap();
        assert_eq!(json["items"][0]["effect"], "deliver");
        assert_eq!(json["items"][0]["to"]["kind"], "agent");
        assert_eq!(json["items"][0]["message"]["channel"], "sms");
        let back: Effects = serde_json::from_value(json).unwrap();
        assert_eq!(back, effects);
    }

    #[test]
    fn ef_1_the_timer_event_is_the_payload_and_its_time() {
        let event = TimerEvent {
            payload: TimerPayload::ListOnDate {
                referral_id: "r1".parse().unwrap(),
            },
            time: "2026-01-01T08:00:00Z".parse().unwrap(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"action": "list_on_date", "referralId": "r1", "time": "2026-01-01T08:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<TimerEvent>(json).unwrap(), event);
    }
}
