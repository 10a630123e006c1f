//! Claiming and declining (WT-4, LR-1, LR-8, LR-9, PPL-3, PPL-5, GEN-1, GEN-2).

use jiff::Timestamp;

use super::{AppError, Editing, Services, once, unassigned};
use crate::domain::billing::SubscriptionStatus;
use crate::domain::claim::{self, ClaimRefusal, DeclineError, DeclineScope};
use crate::domain::referral::{
    ClaimChannel, HistoryEntry, HistoryEvent, Program, Referral, UnassignedReason,
};
use crate::domain::reminder;
use crate::domain::values::{AgentId, ReferralId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::{ClaimOutcome, DomainEvent, DueKind, QuotaPlace, StoreError};
use crate::telemetry;

/// What a successful claim came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This call won the referral.
    Now,
    /// The agent already held it: a retried claim (a repeated webhook, an app retry after a
    /// timeout) succeeds again and changes nothing.
    Already,
}

/// An agent claims a referral on any channel. Exactly one claim wins (one conditional write,
/// and for the winner nothing else); a loser is told who has it, the attempt is kept in the
/// history, and how fast they responded counts in their speed to lead like a winner's (GEN-1).
///
/// Everything after a win (the client's details to the winner, speed to lead, reminders, the
/// `ReferralClaimed` event) happens in [`after_claim`], fed by the table's stream, off the
/// claim's path.
pub async fn claim_referral(
    s: &Services,
    agent: &AgentId,
    id: &ReferralId,
    channel: ClaimChannel,
    now: Timestamp,
) -> Result<Claimed, AppError> {
    let outcome = match s.referrals.claim(id, agent, channel, now).await? {
        // Only a pay-per-lead claim reads more: the winner's subscription, for its cycle.
        ClaimOutcome::PayPerLead(referral) => {
            let place = quota_place(s, &referral, agent, now).await?;
            s.referrals
                .claim_counted(id, agent, channel, now, &place)
                .await?
        }
        other => other,
    };
    match outcome {
        ClaimOutcome::Won(_) => Ok(Claimed::Now),
        ClaimOutcome::Refused(ClaimRefusal::Taken { winner }) if &winner == agent => {
            Ok(Claimed::Already)
        }
        ClaimOutcome::Refused(refusal) => {
            if matches!(refusal, ClaimRefusal::Taken { .. }) {
                telemetry::claim_lost(&snake_case(&channel));
                let lost = HistoryEntry::new(
                    now,
                    Some(agent.clone().into()),
                    HistoryEvent::ClaimAttempt {
                        agent_id: agent.clone(),
                        channel,
                        won: false,
                    },
                );
                s.referrals.append_history(id, &[lost]).await?;
                if let Some(referral) = s.referrals.get_referral(id).await? {
                    record_response(s, &referral.value, agent, now).await?;
                }
            }
            Err(refusal_error(refusal))
        }
        ClaimOutcome::NotFound => Err(AppError::NotFound(format!("no referral {id}"))),
        ClaimOutcome::PayPerLead(_) => Err(AppError::Store(StoreError::Corrupt(format!(
            "referral {id}: a counted claim asked to be counted again"
        )))),
    }
}

/// Where `agent`'s claim of a pay-per-lead referral counts: the subscription it was offered
/// under, the cycle under way and that cycle's quota (PPL-10). A cancelled subscription receives
/// nothing more (PPL-12).
pub async fn quota_place(
    s: &Services,
    referral: &Referral,
    agent: &AgentId,
    now: Timestamp,
) -> Result<QuotaPlace, AppError> {
    let sub_id = referral
        .ppl
        .as_ref()
        .and_then(|p| p.subscriptions.get(agent))
        .ok_or_else(|| AppError::Forbidden("this referral was not offered to you".into()))?;
    let sub = s
        .subscriptions
        .get_subscription(sub_id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no subscription {sub_id}")))?;
    if sub.status == SubscriptionStatus::Cancelled {
        return Err(AppError::conflict(
            "cancelled",
            "your pay-per-lead subscription is cancelled",
        ));
    }
    let cycle = sub.current_cycle(now);
    Ok(QuotaPlace {
        subscription: sub.id.clone(),
        cycle,
        quota: sub.quota(cycle),
    })
}

/// Keeps how fast `agent` responded to their offer of `referral` in their speed-to-lead record
/// (GEN-1): once per referral and agent, however often the response is retried.
async fn record_response(
    s: &Services,
    referral: &Referral,
    agent: &AgentId,
    responded_at: Timestamp,
) -> Result<(), AppError> {
    // Offered again after a take-back (RC-1), each agent's response to the new offer counts
    // on its own.
    let what = match referral.taken_back.len() {
        0 => "response-time".to_owned(),
        n => format!("response-time-offer{}", n + 1),
    };
    record_speed(s, &what, referral, agent, responded_at).await
}

/// Keeps the time from `agent`'s offer of `referral` to `at` in their speed-to-lead record
/// (GEN-1), once per `what` (a response, a take-back), referral and agent.
pub(super) async fn record_speed(
    s: &Services,
    what: &str,
    referral: &Referral,
    agent: &AgentId,
    at: Timestamp,
) -> Result<(), AppError> {
    let Some(ms) = claim::response_millis(referral, agent, at) else {
        return Ok(());
    };
    let key = format!("{what}#{}#{agent}", referral.id);
    match once(
        s,
        &key,
        jiff::SignedDuration::from_hours(24 * 30),
        || async {
            s.agents
                .record_response_time(agent, ms)
                .await
                .map_err(AppError::from)
        },
    )
    .await
    {
        Ok(_) => Ok(()),
        // The claim's follow-up is recording this offer as ignored at this very moment, or a
        // retry of this response is: either way it counts once.
        Err(AppError::Busy(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The offers of `referral` nobody answered before `winner` claimed it at `claimed_at`: each
/// counts in its agent's speed to lead as the time it stayed open, from the offer to the claim
/// (GEN-1, LR-11). Under the same key as a response, so an agent who tries to claim after the
/// win counts once. Declines are answers, and are left out.
async fn record_ignored_offers(
    s: &Services,
    referral: &Referral,
    winner: &AgentId,
    claimed_at: Timestamp,
) -> Result<(), AppError> {
    for agent in referral.offers.keys() {
        if agent != winner && !referral.declined.contains(agent) {
            record_response(s, referral, agent, claimed_at).await?;
        }
    }
    Ok(())
}

/// An enum as the API writes it (`warm_transfer`, `sms`).
fn snake_case(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How a refused claim reads to the caller (API.md: 409 taken, 403 not offered).
pub fn refusal_error(refusal: ClaimRefusal) -> AppError {
    match refusal {
        ClaimRefusal::Taken { .. } => AppError::conflict("taken", refusal.to_string()),
        ClaimRefusal::NotOffered => AppError::Forbidden(refusal.to_string()),
        ClaimRefusal::Declined => AppError::conflict("declined", refusal.to_string()),
        ClaimRefusal::Closed(_) => AppError::conflict("closed", refusal.to_string()),
        ClaimRefusal::CallFirst => AppError::conflict("call_first", refusal.to_string()),
        ClaimRefusal::TooLate => AppError::conflict("timed_out", refusal.to_string()),
        ClaimRefusal::QuotaReached => AppError::conflict("quota_reached", refusal.to_string()),
    }
}

/// After a win: email the winner the client's contact details (PPL-3), keep the winner's speed to
/// lead (GEN-1), start their biweekly reminders (RM-1) and tell the bus (`ReferralClaimed`). Fed
/// by the table's stream, so it follows every committed claim and nothing else; the email and the
/// event are committed once, as the claim's effects (EF-1), however often the claim is delivered
/// (GEN-5).
pub async fn after_claim(
    s: &Services,
    id: &ReferralId,
    winner: &AgentId,
    now: Timestamp,
) -> Result<(), AppError> {
    let Some(stored) = s.referrals.get_referral(id).await? else {
        return Err(AppError::NotFound(format!("no referral {id}")));
    };
    let referral = stored.value;
    if referral.assigned_agent() != Some(winner) {
        return Err(AppError::conflict(
            "taken",
            "the event names an agent who does not hold the referral",
        ));
    }
    let claimed_at = referral.assignment().map_or(now, |a| a.claimed_at);
    record_response(s, &referral, winner, claimed_at).await?;
    record_ignored_offers(s, &referral, winner, claimed_at).await?;
    // The claim won, by channel, and its speed to lead, by program and channel (metrics), and its
    // log line: ids and names only, never the client's contacts. A redelivered claim counts again.
    let program = snake_case(&referral.program);
    let channel = referral
        .assignment()
        .map(|a| snake_case(&a.channel))
        .unwrap_or_default();
    let speed_to_lead_ms = claim::response_millis(&referral, winner, claimed_at);
    telemetry::claim_won(&program, &channel, speed_to_lead_ms);
    tracing::info!(
        referral_id = %id,
        agent_id = %winner,
        program,
        channel,
        speed_to_lead_ms,
        "claimed"
    );
    s.due
        .set_due_if_absent(
            DueKind::Reminder,
            winner.as_str(),
            reminder::first_due(claimed_at),
        )
        .await?;
    let c = &referral.client;
    let body = format!(
        "{} referral {id} ({}).\n\nClient: {}\nPhone: {}\nEmail: {}\n\nBriefing: {}\n\nCall them now: speed wins clients.",
        match referral.assignment().map(|a| a.channel) {
            Some(ClaimChannel::Introduction) => "You have been introduced to the client of",
            _ => "You claimed",
        },
        referral.lead.summary(),
        c.name,
        c.phone,
        c.email,
        referral.briefing
    );
    // A referral taken back from an earlier agent (RC-1) is claimed again: each claim's effects
    // have keys of their own.
    let (effects_key, email_key) = if referral.taken_back.is_empty() {
        (key::claimed(id), format!("claim-email#{id}"))
    } else {
        (
            format!("{}#{winner}", key::claimed(id)),
            format!("claim-email#{id}#{winner}"),
        )
    };
    let mut effects = Effects::new(effects_key)
        .with(Effect::Deliver(Delivery {
            key: email_key,
            referral_id: Some(id.clone()),
            to: Recipient::Agent {
                agent_id: winner.clone(),
            },
            message: Message::email(format!("Your new referral: {}", c.name), body),
        }))
        .with(Effect::Publish(DomainEvent::ReferralClaimed {
            referral_id: id.clone(),
            agent_id: winner.clone(),
        }));
    // A warm transfer's winner and advisor are called into its conference (WT-10).
    effects.extend(super::warm_transfer::leg_calls(s, &referral)?);
    // The team's contact deadline starts (RC-1).
    effects.extend(super::contact::deadline_after_claim(s, &referral, winner, claimed_at).await?);
    s.effects.commit_effects(&effects).await?;
    Ok(())
}

/// An agent declines for themselves, or a team lead for the team (LR-8); never PPL (PPL-5).
pub async fn decline_referral(
    s: &Services,
    agent: &AgentId,
    id: &ReferralId,
    for_team: bool,
    now: Timestamp,
) -> Result<(), AppError> {
    let mut edit = Editing::new(s, id);
    loop {
        let stored = edit.read().await?;
        let referral = &stored.value;
        let is_team_lead = match &referral.team_id {
            Some(team) => s
                .agents
                .get_team(team)
                .await?
                .is_some_and(|t| &t.lead_agent_id == agent),
            None => false,
        };
        let scope = if for_team {
            DeclineScope::Team
        } else {
            DeclineScope::Myself
        };
        let mut next =
            claim::decline(referral, agent, scope, is_team_lead).map_err(|e| match e {
                DeclineError::NotDeclinable => AppError::conflict("not_declinable", e.to_string()),
                DeclineError::Taken => AppError::conflict("taken", e.to_string()),
                DeclineError::NotTeamLead | DeclineError::NotOffered => {
                    AppError::Forbidden(e.to_string())
                }
            })?;
        if &next == referral {
            return Ok(());
        }
        let mut entries = vec![HistoryEntry::new(
            now,
            Some(agent.clone().into()),
            HistoryEvent::Declined {
                agent_id: agent.clone(),
                for_team,
            },
        )];
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        // The last one out sends it to the advisors, with the decline, in one write (RC-2).
        if next.program == Program::Routing
            && next.nobody_left()
            && let Some((entry, told)) =
                unassigned::to_advisors(&mut next, UnassignedReason::Declined, now)
        {
            entries.push(entry);
            effects.extend(told);
        }
        if edit.save(&next, stored.version, &entries, &effects).await? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::Program;
    use crate::ports::{AgentDirectory, DueWork, ReferralStore};

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn wt_4_concurrent_claims_have_exactly_one_winner_and_losers_are_recorded() {
        let (s, store, outbox) = services();
        let agents: Vec<String> = (0..20).map(|i| format!("a{i}")).collect();
        let names: Vec<&str> = agents.iter().map(String::as_str).collect();
        let r = referral(Program::Routing, &names);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for a in &agents {
            let s = s.clone();
            let a = id(a);
            let rid = r.id.clone();
            tasks.push(tokio::spawn(async move {
                claim_referral(&s, &a, &rid, ClaimChannel::App, t("2026-01-01T00:01:00Z")).await
            }));
        }
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => winners += 1,
                Err(e) => assert_eq!(e.code(), "taken"),
            }
        }
        assert_eq!(winners, 1);
        let history = store.history(&r.id).await.unwrap();
        let attempts = history
            .iter()
            .filter(|h| matches!(h.event, HistoryEvent::ClaimAttempt { .. }))
            .count();
        assert_eq!(attempts, 20, "GEN-2: every attempt, won and lost, is kept");
        // The claim is the write and nothing else: no message, no event on its path.
        assert!(outbox.sent().is_empty(), "{:?}", outbox.sent());
    }

    #[tokio::test]
    async fn gen_1_a_losers_response_counts_in_their_speed_to_lead_once() {
        let (s, store, _) = services();
        for a in ["a1", "a2"] {
            store.put_agent(&agent(a)).await.unwrap();
        }
        let r = referral(Program::Routing, &["a1", "a2"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        claim_referral(
            &s,
            &id("a1"),
            &r.id,
            ClaimChannel::App,
            t("2026-01-01T00:00:30Z"),
        )
        .await
        .unwrap();
        // a2 answered 15 s later and lost; the retried attempt counts nothing again.
        for _ in 0..2 {
            let e = claim_referral(
                &s,
                &id("a2"),
                &r.id,
                ClaimChannel::Sms,
                t("2026-01-01T00:00:45Z"),
            )
            .await
            .unwrap_err();
            assert_eq!(e.code(), "taken");
        }
        let a2 = store.get_agent(&id("a2")).await.unwrap().unwrap();
        assert_eq!(a2.response_times.len(), 1);
        assert_eq!(a2.response_times.median_millis(), Some(45_000));
    }

    #[tokio::test]
    async fn gen_1_an_ignored_offer_counts_as_the_time_it_stayed_open() {
        let (s, store, _) = services();
        for a in ["a1", "a2", "a3"] {
            store.put_agent(&agent(a)).await.unwrap();
        }
        let r = referral(Program::Routing, &["a1", "a2", "a3"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        decline_referral(&s, &id("a3"), &r.id, false, t("2026-01-01T00:00:10Z"))
            .await
            .unwrap();
        let claimed_at = t("2026-01-01T00:00:30Z");
        claim_referral(&s, &id("a1"), &r.id, ClaimChannel::App, claimed_at)
            .await
            .unwrap();
        // The follow-up, delivered twice by the stream, counts a2's ignored offer once.
        for _ in 0..2 {
            after_claim(&s, &r.id, &id("a1"), claimed_at).await.unwrap();
        }
        // a2 tries later: the offer already counted as ignored until the claim.
        let e = claim_referral(
            &s,
            &id("a2"),
            &r.id,
            ClaimChannel::App,
            t("2026-01-01T00:05:00Z"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "taken");
        let times = |a: &'static str| {
            let store = store.clone();
            async move {
                store
                    .get_agent(&id(a))
                    .await
                    .unwrap()
                    .unwrap()
                    .response_times
            }
        };
        let a2 = times("a2").await;
        assert_eq!((a2.len(), a2.median_millis()), (1, Some(30_000)));
        assert!(times("a3").await.is_empty(), "a decline is an answer");
        assert_eq!(times("a1").await.median_millis(), Some(30_000));
    }

    #[tokio::test]
    async fn lr_1_not_offered_is_forbidden_and_unknown_is_not_found() {
        let (s, store, _) = services();
        let r = referral(Program::Routing, &["a1"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let now = t("2026-01-01T00:01:00Z");
        let e = claim_referral(&s, &id("x"), &r.id, ClaimChannel::App, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        let e = claim_referral(
            &s,
            &id("a1"),
            &"nope".parse().unwrap(),
            ClaimChannel::App,
            now,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 404);
    }

    #[tokio::test]
    async fn ppl_3_winner_gets_client_details_by_email_once() {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let r = referral(Program::Ppl, &["a1", "a2"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let now = t("2026-01-01T00:00:30Z");
        claim_referral(&s, &id("a1"), &r.id, ClaimChannel::Sms, now)
            .await
            .unwrap();
        after_claim(&s, &r.id, &id("a1"), now).await.unwrap();
        after_claim(&s, &r.id, &id("a1"), now).await.unwrap();
        crate::memory::deliver(&s, &outbox, now).await.unwrap();
        let emails = outbox.emails();
        assert_eq!(
            emails.len(),
            1,
            "GEN-5: a redelivered event sends nothing twice"
        );
        assert_eq!(emails[0].to.as_str(), "a1@agents.example.com");
        assert!(
            emails[0].body.contains("+14155559876") && emails[0].body.contains("casey@example.com")
        );
        // GEN-1: 30 s from notification to claim is now part of the agent's record.
        let a1 = store.get_agent(&id("a1")).await.unwrap().unwrap();
        assert_eq!(a1.response_times.median_millis(), Some(30_000));
        // RM-1: the first reminder falls due two weeks after the claim.
        let due = store
            .due(DueKind::Reminder, t("2026-01-15T00:00:30Z"))
            .await
            .unwrap();
        assert_eq!(due, vec![("a1".to_owned(), t("2026-01-15T00:00:30Z"))]);
    }

    #[tokio::test]
    async fn lr_8_decline_for_self_keeps_it_open_for_others() {
        let (s, store, _) = services();
        let r = referral(Program::Routing, &["a1", "a2"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let now = t("2026-01-01T00:01:00Z");
        decline_referral(&s, &id("a1"), &r.id, false, now)
            .await
            .unwrap();
        let e = claim_referral(&s, &id("a1"), &r.id, ClaimChannel::App, now)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "declined");
        claim_referral(&s, &id("a2"), &r.id, ClaimChannel::App, now)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn lr_8_only_the_team_lead_declines_for_the_team() {
        let (s, store, _) = services();
        let team = crate::domain::team::Team {
            id: "t1".parse().unwrap(),
            name: "T".into(),
            lead_agent_id: id("lead"),
            agent_ids: [id("a1")].into(),
        };
        store.put_team(&team).await.unwrap();
        let mut r = referral(Program::Routing, &["lead", "a1"]);
        r.team_id = Some(team.id.clone());
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let now = t("2026-01-01T00:01:00Z");
        let e = decline_referral(&s, &id("a1"), &r.id, true, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        decline_referral(&s, &id("lead"), &r.id, true, now)
            .await
            .unwrap();
        let e = claim_referral(&s, &id("a1"), &r.id, ClaimChannel::App, now)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "closed");
    }

    #[tokio::test]
    async fn ppl_5_decline_is_refused_with_409_and_writes_nothing() {
        let (s, store, _) = services();
        let r = referral(Program::Ppl, &["a1"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let e = decline_referral(&s, &id("a1"), &r.id, false, t("2026-01-01T00:01:00Z"))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "not_declinable"));
        assert!(store.history(&r.id).await.unwrap().is_empty());
        assert_eq!(store.get_referral(&r.id).await.unwrap().unwrap().version, 1);
    }
}
