//! The biweekly update reminders (RM-1, RM-2).

use jiff::Timestamp;

use super::{AppError, Services};
use crate::domain::reminder;
use crate::domain::values::AgentId;
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key as effects_key};
use crate::ports::DueKind;

/// What one reminders run did.
#[derive(Debug, Default)]
pub struct RemindersRun {
    pub reminded: Vec<AgentId>,
    /// Agents whose reminder could not be handled this run, with why; the others were (EF-2).
    pub failed: Vec<(String, AppError)>,
}

/// Sends each agent whose reminder is due one email listing their active referrals, the longest
/// without an update first. The due time moves on by a conditional write that commits the email
/// with it (EF-1), so two overlapping runs send one reminder and none is lost between them.
/// Agents with nothing active drop out of the index. One agent that fails is reported and does
/// not stop the others.
pub async fn run_reminders(s: &Services, now: Timestamp) -> Result<RemindersRun, AppError> {
    let mut run = RemindersRun::default();
    for (key, due_at) in s.due.due(DueKind::Reminder, now).await? {
        match remind(s, &key, due_at, now).await {
            Ok(Some(agent)) => run.reminded.push(agent),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(agent_id = %key, error = %e, "reminder failed");
                run.failed.push((key, e));
            }
        }
    }
    crate::telemetry::reminders_sent(run.reminded.len());
    Ok(run)
}

async fn remind(
    s: &Services,
    key: &str,
    due_at: Timestamp,
    now: Timestamp,
) -> Result<Option<AgentId>, AppError> {
    let agent_id: AgentId = key.parse()?;
    let referrals = s.referrals.agent_referrals(&agent_id, None).await?;
    let list = reminder::reminder_list(&referrals);
    if list.is_empty() {
        s.due
            .advance_due(DueKind::Reminder, key, due_at, None, &Effects::default())
            .await?;
        return Ok(None);
    }
    let lines: Vec<String> = list
        .iter()
        .map(|r| {
            let p = r.pipeline();
            format!(
                "- {} ({}): {}, last updated {}",
                r.client.name,
                r.lead.summary(),
                p.map_or("", |p| p.stage.label()),
                p.map_or_else(String::new, |p| p
                    .updated_at
                    .strftime("%Y-%m-%d")
                    .to_string())
            )
        })
        .collect();
    let email_key = effects_key::reminder(&agent_id, due_at.as_millisecond());
    let effects = Effects::new(email_key.clone()).with(Effect::Deliver(Delivery {
        key: email_key,
        referral_id: None,
        to: Recipient::Agent {
            agent_id: agent_id.clone(),
        },
        message: Message::email(
            format!("Update your {} active referral(s)", list.len()),
            format!(
                "Please update these referrals, oldest update first:\n\n{}\n",
                lines.join("\n")
            ),
        ),
    }));
    let next = reminder::next_due(due_at, now);
    let moved = s
        .due
        .advance_due(DueKind::Reminder, key, due_at, Some(next), &effects)
        .await?;
    Ok(moved.then_some(agent_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::{after_claim, claim_referral};
    use crate::app::pipeline::change_stage;
    use crate::app::testing::services;
    use crate::app::{Actor, Role};
    use crate::domain::agent::fixtures::agent;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::{ClaimChannel, Program};
    use crate::domain::stage::{Stage, StageChange};
    use crate::ports::{AgentDirectory, ReferralStore};
    use jiff::SignedDuration;

    fn day(n: i64) -> Timestamp {
        "2026-01-01T09:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * n)
    }

    /// A run, and everything it committed sent.
    async fn remind(
        s: &Services,
        store: &crate::memory::MemoryStore,
        outbox: &std::sync::Arc<crate::memory::Outbox>,
        at: Timestamp,
    ) -> Vec<AgentId> {
        let run = run_reminders(s, at).await.unwrap();
        assert!(run.failed.is_empty());
        crate::memory::settle(s, store, outbox, at).await.unwrap();
        run.reminded
    }

    fn emails(outbox: &crate::memory::Outbox) -> Vec<crate::ports::EmailMessage> {
        outbox
            .emails()
            .into_iter()
            .filter(|m| m.subject.starts_with("Update"))
            .collect()
    }

    #[tokio::test]
    async fn rm_1_rm_2_every_two_weeks_once_and_none_when_nothing_is_active() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let a1: AgentId = "a1".parse().unwrap();
        let r = referral(Program::Routing, &["a1"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        claim_referral(&s, &a1, &r.id, ClaimChannel::App, day(0))
            .await
            .unwrap();
        after_claim(&s, &r.id, &a1, day(0)).await.unwrap();

        assert!(remind(&s, &store, &outbox, day(13)).await.is_empty());
        assert_eq!(remind(&s, &store, &outbox, day(14)).await, vec![a1.clone()]);
        assert!(
            remind(&s, &store, &outbox, day(14)).await.is_empty(),
            "RM-2: twice in a period"
        );
        assert!(remind(&s, &store, &outbox, day(20)).await.is_empty());
        assert_eq!(remind(&s, &store, &outbox, day(28)).await, vec![a1.clone()]);
        assert_eq!(emails(&outbox).len(), 2);
        assert!(emails(&outbox)[0].body.contains("Casey Client"));

        // Closed: nothing active, so no more reminders.
        let actor = Actor {
            user: "a1".parse().unwrap(),
            role: Role::Agent,
        };
        change_stage(&s, &actor, &r.id, &StageChange::to(Stage::Closed), day(30))
            .await
            .unwrap();
        assert!(remind(&s, &store, &outbox, day(42)).await.is_empty());
        assert!(remind(&s, &store, &outbox, day(56)).await.is_empty());
        assert_eq!(emails(&outbox).len(), 2);
    }
}
