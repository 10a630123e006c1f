//! The broadcast queue's consumer: each message is one delivery (an offer or alert to one agent
//! on one channel, a relayed text, a receipt, a claim call), sent once however often the queue
//! delivers it (LR-1, WT-2, PPL-3, GEN-3, GEN-5, EF-1, EF-2).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::{AppError, LEASE, Services};
use crate::domain::agent::Agent;
use crate::domain::referral::{HistoryEntry, HistoryEvent, NotSentReason};
use crate::domain::values::{Email, Phone};
use crate::effects::{Delivery, Message, Recipient};
use crate::ports::{Begun, EmailMessage, Notifier, SendError, Telephony};
use crate::telemetry::{self, AlertOutcome};

/// How long a delivery is remembered: longer than any queue redelivery.
const DELIVERY_MEMORY: SignedDuration = SignedDuration::from_hours(24 * 14);

/// The outside services messages go through: texts, pushes and emails, and calls.
#[derive(Clone)]
pub struct Senders {
    pub notifier: Arc<dyn Notifier>,
    pub telephony: Arc<dyn Telephony>,
}

/// What delivering one message came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Sent,
    /// An earlier delivery of the same message sent it.
    AlreadySent,
    /// The recipient has no phone, device or address for this channel (or no profile).
    Unreachable,
    /// The provider refused it for good (an invalid number, an address it will not send to):
    /// kept as an outcome, never retried.
    Refused(String),
    /// A text to a number that opted out (TX-2): not sent, kept in the referral's history, never
    /// retried.
    OptedOut,
}

impl Delivered {
    /// The outcome as the logs name it (the `outcome` of the `delivered` line).
    pub fn name(&self) -> &'static str {
        match self {
            Delivered::Sent => "sent",
            Delivered::AlreadySent => "already_sent",
            Delivered::Unreachable => "unreachable",
            Delivered::Refused(_) => "refused",
            Delivered::OptedOut => "opted_out",
        }
    }
}

/// Sends one delivery once. The key is taken with a lease before sending and marked done (with
/// the `Notified` history entry of an offer) after: a send that fails transiently lets the key
/// go and fails, so the queue delivers it again; an attempt that dies after taking the key is
/// recovered when its lease runs out.
pub async fn deliver(
    s: &Services,
    senders: &Senders,
    delivery: &Delivery,
    now: Timestamp,
) -> Result<Delivered, AppError> {
    let agent = match &delivery.to {
        Recipient::Agent { agent_id } => match s.agents.get_agent(agent_id).await? {
            Some(agent) => Some(agent),
            None => {
                tracing::warn!(agent_id = %agent_id, key = %delivery.key, "delivery to an unknown agent dropped");
                return Ok(Delivered::Unreachable);
            }
        },
        _ => None,
    };
    let Some(address) = address(&delivery.to, agent.as_ref(), &delivery.message) else {
        return Ok(Delivered::Unreachable);
    };
    let opted_out = match (&address, &delivery.message) {
        (Address::Phone(phone), Message::Sms { .. }) => s.lines.opted_out(phone).await?,
        _ => false,
    };
    match s.once.begin(&delivery.key, LEASE).await? {
        Begun::Done => return Ok(Delivered::AlreadySent),
        Begun::InProgress => {
            return Err(AppError::Busy(format!("{} is being sent", delivery.key)));
        }
        Begun::First => {}
    }
    let sent = if opted_out {
        Err(SendError::Rejected(OPTED_OUT.into()))
    } else {
        send(senders, &address, &delivery.message).await
    };
    let outcome = match sent {
        Ok(()) => Delivered::Sent,
        // AWS refuses a text to a number on its opt-out list as well, which the service may not
        // have heard of (a STOP sent before it recorded them).
        Err(SendError::Rejected(reason)) if is_opted_out(&reason) => {
            tracing::info!(key = %delivery.key, "text not sent: the number opted out");
            Delivered::OptedOut
        }
        Err(SendError::Rejected(reason)) => {
            tracing::error!(key = %delivery.key, channel = delivery.channel(), reason, "delivery refused by the provider");
            Delivered::Refused(reason)
        }
        Err(e) => {
            s.once.abandon(&delivery.key).await?;
            return Err(e.into());
        }
    };
    let counted = match outcome {
        Delivered::Sent => Some(AlertOutcome::Sent),
        Delivered::Refused(_) => Some(AlertOutcome::Failed),
        Delivered::OptedOut => Some(AlertOutcome::OptedOut),
        Delivered::AlreadySent | Delivered::Unreachable => None,
    };
    if let Some(counted) = counted {
        telemetry::alert(delivery.channel(), counted);
    }
    let entries: Vec<HistoryEntry> = match (&delivery.to, &delivery.referral_id, &outcome) {
        (Recipient::Agent { agent_id }, Some(_), Delivered::Sent) => vec![HistoryEntry::new(
            now,
            None,
            HistoryEvent::Notified {
                agent_id: agent_id.clone(),
                channel: delivery.channel().to_owned(),
            },
        )],
        (Recipient::Agent { agent_id }, Some(_), Delivered::OptedOut) => vec![HistoryEntry::new(
            now,
            None,
            HistoryEvent::TextNotSent {
                agent_id: agent_id.clone(),
                reason: NotSentReason::OptedOut,
            },
        )],
        _ => Vec::new(),
    };
    // The message is out: recording it is retried here, since failing now would send it again
    // once the lease runs out.
    let mut tries = 0;
    loop {
        match s
            .once
            .finish(
                &delivery.key,
                DELIVERY_MEMORY,
                delivery.referral_id.as_ref(),
                &entries,
            )
            .await
        {
            Ok(()) => return Ok(outcome),
            Err(e) if e.is_retryable() && tries < FINISH_TRIES => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20 << tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a refused text says when its number opted out.
const OPTED_OUT: &str = "the number opted out of texts";

/// Whether a provider's refusal means the number opted out: the service's own record, SNS's
/// delivery failure ("Phone is currently opted out") and End User Messaging's reason
/// (`DESTINATION_PHONE_NUMBER_OPTED_OUT`).
fn is_opted_out(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.contains("opted out") || reason.contains("opted_out")
}

/// How often recording a sent message is tried again before giving up to the lease.
const FINISH_TRIES: u32 = 3;

/// Where a message goes: the recipient's own, or the agent's phone, device or address.
enum Address {
    Phone(Phone),
    Device(String),
    Email(Email),
    Call(String),
}

fn address(to: &Recipient, agent: Option<&Agent>, message: &Message) -> Option<Address> {
    match (to, message) {
        (
            Recipient::Phone { phone },
            Message::Sms { .. } | Message::Call { .. } | Message::OptIn,
        ) => Some(Address::Phone(phone.clone())),
        (Recipient::Email { email }, Message::Email { .. }) => Some(Address::Email(email.clone())),
        (Recipient::Call { call_sid }, Message::CallUpdate { .. }) => {
            Some(Address::Call(call_sid.clone()))
        }
        (Recipient::Agent { .. }, Message::Sms { .. } | Message::Call { .. }) => {
            agent?.phone().cloned().map(Address::Phone)
        }
        (Recipient::Agent { .. }, Message::Push { .. }) => {
            agent?.push_token.clone().map(Address::Device)
        }
        (Recipient::Agent { .. }, Message::Email { .. }) => {
            agent?.email.clone().map(Address::Email)
        }
        _ => None,
    }
}

async fn send(s: &Senders, address: &Address, message: &Message) -> Result<(), SendError> {
    match (address, message) {
        (Address::Phone(phone), Message::Sms { body }) => s.notifier.sms(phone, body).await,
        (Address::Phone(phone), Message::OptIn) => s.notifier.opt_in(phone).await,
        (Address::Device(token), Message::Push { title, body }) => {
            s.notifier.push(token, title, body).await
        }
        (
            Address::Email(to),
            Message::Email {
                subject,
                body,
                cc,
                attachments,
            },
        ) => {
            s.notifier
                .email(&EmailMessage {
                    to: to.clone(),
                    cc: cc.clone(),
                    subject: subject.clone(),
                    body: body.clone(),
                    attachments: attachments.clone(),
                })
                .await
        }
        (
            Address::Phone(phone),
            Message::Call {
                url,
                status_callback,
            },
        ) => s
            .telephony
            .call(phone, url, status_callback)
            .await
            .map(drop),
        (Address::Call(call_sid), Message::CallUpdate { twiml }) => {
            s.telephony.update(call_sid, twiml).await
        }
        _ => Err(SendError::Rejected(format!(
            "a {} message cannot go to this address",
            message.channel()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::memory::{Sent, senders_of};
    use crate::ports::{AgentDirectory, ReferralStore};

    fn offer(message: Message) -> Delivery {
        Delivery {
            key: format!("notify#r1#a1#{}", message.channel()),
            referral_id: Some("r1".parse().unwrap()),
            to: Recipient::Agent {
                agent_id: "a1".parse().unwrap(),
            },
            message,
        }
    }

    fn sms() -> Delivery {
        offer(Message::Sms {
            body: "Seller in 94110. Reply #4821 to claim.".into(),
        })
    }

    fn sent_sms(outbox: &crate::memory::Outbox) -> usize {
        outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::Sms { .. }))
            .count()
    }

    #[tokio::test]
    async fn gen_5_redelivered_message_notifies_once() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &sms(), now)
                .await
                .unwrap(),
            Delivered::Sent
        );
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &sms(), now)
                .await
                .unwrap(),
            Delivered::AlreadySent
        );
        assert_eq!(sent_sms(&outbox), 1);
        let history = store.history(&"r1".parse().unwrap()).await.unwrap();
        assert!(
            matches!(&history[0].event, HistoryEvent::Notified { channel, .. } if channel == "sms")
        );
    }

    #[tokio::test]
    async fn tx_2_a_text_to_an_opted_out_number_is_an_outcome_in_the_history_not_a_retry() {
        let (s, store, outbox) = services();
        let a = agent("a1");
        store.put_agent(&a).await.unwrap();
        let phone = a.cell_phone.clone().unwrap();
        s.lines.set_opted_out(&phone, true).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..2 {
            let outcome = deliver(&s, &senders_of(&outbox), &sms(), now).await;
            assert!(
                matches!(outcome, Ok(Delivered::OptedOut | Delivered::AlreadySent)),
                "{outcome:?}"
            );
        }
        assert_eq!(sent_sms(&outbox), 0);
        let history = store.history(&"r1".parse().unwrap()).await.unwrap();
        let not_sent: Vec<_> = history
            .iter()
            .filter(|h| matches!(h.event, HistoryEvent::TextNotSent { .. }))
            .collect();
        assert_eq!(not_sent.len(), 1, "{history:?}");
        assert_eq!(
            serde_json::to_value(not_sent[0]).unwrap()["reason"],
            "opted_out"
        );
        // Push still goes.
        let push = offer(Message::Push {
            title: "New referral".into(),
            body: "Seller in 94110".into(),
        });
        let mut with_device = a.clone();
        with_device.push_token = Some("device-1".into());
        store.put_agent(&with_device).await.unwrap();
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &push, now).await.unwrap(),
            Delivered::Sent
        );
        // After START, texts go again.
        s.lines.set_opted_out(&phone, false).await.unwrap();
        let mut again = sms();
        again.key.push_str("#2");
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &again, now)
                .await
                .unwrap(),
            Delivered::Sent
        );
    }

    #[test]
    fn tx_2_the_providers_opt_out_refusals_read_as_opted_out() {
        assert!(is_opted_out(
            "SNS Publish failed: Phone is currently opted out"
        ));
        assert!(is_opted_out(
            "ConflictException: DESTINATION_PHONE_NUMBER_OPTED_OUT"
        ));
        assert!(!is_opted_out("InvalidParameter: invalid phone number"));
    }

    #[tokio::test]
    async fn ef_2_failed_send_is_retried_by_the_next_delivery() {
        let (s, store, outbox) = services();
        let a = agent("a1");
        store.put_agent(&a).await.unwrap();
        outbox
            .refuse_sms_to
            .lock()
            .unwrap()
            .insert(a.cell_phone.clone().unwrap());
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = deliver(&s, &senders_of(&outbox), &sms(), now)
            .await
            .unwrap_err();
        assert!(e.is_retryable());
        outbox.refuse_sms_to.lock().unwrap().clear();
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &sms(), now)
                .await
                .unwrap(),
            Delivered::Sent
        );
        assert_eq!(sent_sms(&outbox), 1);
    }

    #[tokio::test]
    async fn ef_1_an_attempt_that_died_holding_the_message_is_taken_over_after_its_lease() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        // A first attempt took the message and died before sending it.
        s.once
            .begin(&sms().key, SignedDuration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &sms(), now)
                .await
                .unwrap(),
            Delivered::Sent
        );
        assert_eq!(sent_sms(&outbox), 1);
    }

    #[tokio::test]
    async fn ef_2_a_live_attempt_makes_a_concurrent_one_retry_later() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        s.once.begin(&sms().key, LEASE).await.unwrap();
        let e = deliver(&s, &senders_of(&outbox), &sms(), now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.is_retryable()), (503, true));
        assert_eq!(sent_sms(&outbox), 0);
    }

    #[tokio::test]
    async fn gen_3_an_agent_without_a_device_is_not_pushed_and_nothing_is_retried() {
        let (s, store, outbox) = services();
        let mut a = agent("a1");
        a.push_token = None;
        store.put_agent(&a).await.unwrap();
        let push = offer(Message::Push {
            title: "t".into(),
            body: "b".into(),
        });
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            deliver(&s, &senders_of(&outbox), &push, now).await.unwrap(),
            Delivered::Unreachable
        );
        assert!(outbox.sent().is_empty());
    }
}
