//! Delivering the broadcast queue's notifications: one agent, one channel each (LR-1, WT-2,
//! PPL-3, GEN-3, GEN-5).

use jiff::{SignedDuration, Timestamp};

use super::{AppError, Services, once};
use crate::domain::referral::{HistoryEntry, HistoryEvent};
use crate::ports::{BroadcastMessage, Channel, EmailMessage};

/// How long a delivery is remembered: longer than any queue redelivery.
const DELIVERY_MEMORY: SignedDuration = SignedDuration::from_hours(24 * 14);

/// Sends one notification, once however often the queue delivers it. A failed send forgets the
/// delivery, so the queue's retry sends it then.
pub async fn deliver(
    s: &Services,
    message: &BroadcastMessage,
    now: Timestamp,
) -> Result<bool, AppError> {
    let key = format!(
        "notify#{}#{}#{}",
        message.referral_id,
        message.agent_id,
        message.channel.as_str()
    );
    let Some(agent) = s.agents.get_agent(&message.agent_id).await? else {
        tracing::warn!(agent_id = %message.agent_id, "notification for an unknown agent dropped");
        return Ok(false);
    };
    let notifier = &s.notifier;
    let send = || async {
        let result = match message.channel {
            Channel::Sms => match agent.phone() {
                Some(phone) => notifier.sms(phone, &message.body).await,
                None => Ok(()),
            },
            Channel::Push => match &agent.push_token {
                Some(token) => notifier.push(token, &message.title, &message.body).await,
                None => Ok(()),
            },
            Channel::Email => match &agent.email {
                Some(to) => {
                    notifier
                        .email(&EmailMessage {
                            to: to.clone(),
                            cc: vec![],
                            subject: message.title.clone(),
                            body: message.body.clone(),
                            attachments: vec![],
                        })
                        .await
                }
                None => Ok(()),
            },
        };
        result.map_err(AppError::from)
    };
    let reachable = match message.channel {
        Channel::Sms => agent.phone().is_some(),
        Channel::Push => agent.push_token.is_some(),
        Channel::Email => agent.email.is_some(),
    };
    if !reachable || !once(s, &key, now + DELIVERY_MEMORY, send).await? {
        return Ok(false);
    }
    let entry = HistoryEntry::new(
        now,
        None,
        HistoryEvent::Notified {
            agent_id: message.agent_id.clone(),
            channel: message.channel.as_str().to_owned(),
        },
    );
    s.referrals
        .append_history(&message.referral_id, &[entry])
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::memory::Sent;
    use crate::ports::{AgentDirectory, ReferralStore};

    fn message(channel: Channel) -> BroadcastMessage {
        BroadcastMessage {
            referral_id: "r1".parse().unwrap(),
            agent_id: "a1".parse().unwrap(),
            channel,
            title: "New seller referral".into(),
            body: "Seller in 94110. Reply #4821 to claim.".into(),
        }
    }

    #[tokio::test]
    async fn gen_5_redelivered_message_notifies_once() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(deliver(&s, &message(Channel::Sms), now).await.unwrap());
        assert!(!deliver(&s, &message(Channel::Sms), now).await.unwrap());
        let sms = outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::Sms { .. }))
            .count();
        assert_eq!(sms, 1);
        let history = store.history(&"r1".parse().unwrap()).await.unwrap();
        assert!(
            matches!(&history[0].event, HistoryEvent::Notified { channel, .. } if channel == "sms")
        );
    }

    #[tokio::test]
    async fn gen_5_failed_send_is_retried_by_the_next_delivery() {
        let (s, store, outbox) = services();
        let a = agent("a1");
        store.put_agent(&a).await.unwrap();
        outbox
            .refuse_sms_to
            .lock()
            .unwrap()
            .insert(a.cell_phone.clone().unwrap());
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = deliver(&s, &message(Channel::Sms), now).await.unwrap_err();
        assert!(e.is_retryable());
        outbox.refuse_sms_to.lock().unwrap().clear();
        assert!(deliver(&s, &message(Channel::Sms), now).await.unwrap());
    }
}
