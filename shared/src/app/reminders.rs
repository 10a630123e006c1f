//! The biweekly update reminders (RM-1, RM-2).

use jiff::Timestamp;

use super::{AppError, Services};
use crate::domain::reminder;
use crate::domain::values::AgentId;
use crate::ports::{DueKind, EmailMessage};

/// Sends each agent whose reminder is due one email listing their active referrals, the longest
/// without an update first. The due time moves on by a conditional write before the email goes,
/// so two overlapping runs send one reminder. Agents with nothing active drop out of the index.
pub async fn run_reminders(s: &Services, now: Timestamp) -> Result<Vec<AgentId>, AppError> {
    let mut reminded = Vec::new();
    for (key, due_at) in s.due.due(DueKind::Reminder, now).await? {
        let agent_id: AgentId = key.parse()?;
        let referrals = s.referrals.agent_referrals(&agent_id, None).await?;
        let list = reminder::reminder_list(&referrals);
        if list.is_empty() {
            s.due
                .advance_due(DueKind::Reminder, &key, due_at, None)
                .await?;
            continue;
        }
        let next = reminder::next_due(due_at, now);
        if !s
            .due
            .advance_due(DueKind::Reminder, &key, due_at, Some(next))
            .await?
        {
            continue;
        }
        let Some(email) = s.agents.get_agent(&agent_id).await?.and_then(|a| a.email) else {
            continue;
        };
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
        s.notifier
            .email(&EmailMessage {
                to: email,
                cc: vec![],
                subject: format!("Update your {} active referral(s)", list.len()),
                body: format!(
                    "Please update these referrals, oldest update first:\n\n{}\n",
                    lines.join("\n")
                ),
                attachments: vec![],
            })
            .await?;
        reminded.push(agent_id);
    }
    Ok(reminded)
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

    fn emails(outbox: &crate::memory::Outbox) -> Vec<EmailMessage> {
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
        store.create_referral(&r, &[]).await.unwrap();
        claim_referral(&s, &a1, &r.id, ClaimChannel::App, day(0))
            .await
            .unwrap();
        after_claim(&s, &r.id, &a1, day(0)).await.unwrap();

        assert!(run_reminders(&s, day(13)).await.unwrap().is_empty());
        assert_eq!(run_reminders(&s, day(14)).await.unwrap(), vec![a1.clone()]);
        assert!(
            run_reminders(&s, day(14)).await.unwrap().is_empty(),
            "RM-2: twice in a period"
        );
        assert!(run_reminders(&s, day(20)).await.unwrap().is_empty());
        assert_eq!(run_reminders(&s, day(28)).await.unwrap(), vec![a1.clone()]);
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
        assert!(run_reminders(&s, day(42)).await.unwrap().is_empty());
        assert!(run_reminders(&s, day(56)).await.unwrap().is_empty());
        assert_eq!(emails(&outbox).len(), 2);
    }
}
