//! Contact deadlines (RC-1): a routing team's lead may give the agent who claims one of its
//! referrals a number of minutes to record a contact (a stage move, a note, a text relayed to the
//! client). Without one by then, the referral is taken back from that agent, offered again to the
//! team's other eligible members, and the agent is told why.
//!
//! The deadline is a one-time timer started by the claim's follow-up, not a due-time index swept
//! by the scheduled function: a deadline is 5 to 240 minutes away, beyond one SQS delay (15
//! minutes), and to the minute is precise enough, which EventBridge Scheduler gives. A timer
//! costs nothing until it fires and then reads only its own referral, so the work grows with the
//! deadlines that fall due and nothing else (no query of an index, no item read for a deadline met
//! early). A contact does not stop the timer: the timer finds the contact when it fires, so a
//! stage move or note costs no extra write, and a contact that raced the timer's start still
//! counts.

use jiff::Timestamp;

use super::{AppError, Editing, Services, offer, unassigned};
use crate::domain::agent::Agent;
use crate::domain::referral::{
    HistoryEntry, HistoryEvent, Program, Referral, TakeBackReason, UnassignedReason,
};
use crate::domain::values::{AgentId, ReferralId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, Timer, TimerPayload, key};

/// The timer of `agent`'s contact deadline on referral `id`: one per referral and agent.
pub fn deadline_timer(id: &ReferralId, agent: &AgentId) -> String {
    format!("contact-{}", pair_digest(id, agent))
}

/// The 24 hours to claim a referral offered again after its take-back from `agent` (RC-2).
fn unclaimed_again_timer(id: &ReferralId, agent: &AgentId) -> String {
    format!("unclaimed-{}", pair_digest(id, agent))
}

/// A referral and an agent in 40 characters: two ids of up to 64 would pass the 64 characters
/// a schedule's name may have.
fn pair_digest(id: &ReferralId, agent: &AgentId) -> String {
    use sha1::{Digest, Sha1};
    Sha1::digest(format!("{id}\n{agent}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The contact deadline a claim of `referral` by `winner` at `claimed_at` owes, if its team set
/// one (RC-1): read from the team's routing settings by the claim's follow-up, off the claim's
/// path.
pub(super) async fn deadline_after_claim(
    s: &Services,
    referral: &Referral,
    winner: &AgentId,
    claimed_at: Timestamp,
) -> Result<Option<Effect>, AppError> {
    let Some(team) = referral.team_id.as_ref() else {
        return Ok(None);
    };
    if referral.program != Program::Routing {
        return Ok(None);
    }
    let Some(minutes) = s
        .agents
        .get_routing(team)
        .await?
        .and_then(|r| r.contact_deadline())
    else {
        return Ok(None);
    };
    Ok(Some(Effect::StartTimer(Timer {
        name: deadline_timer(&referral.id, winner),
        at: claimed_at + minutes,
        payload: TimerPayload::ContactDeadline {
            referral_id: referral.id.clone(),
            agent_id: winner.clone(),
        },
    })))
}

/// Whether `agent`, holding `referral` since `claimed_at`, recorded a contact: moved the stage,
/// added a note, or had a text relayed to the client.
fn contacted(
    referral: &Referral,
    history: &[HistoryEntry],
    agent: &AgentId,
    claimed_at: Timestamp,
) -> bool {
    let moved = referral
        .pipeline()
        .is_some_and(|p| p.updated_at > claimed_at);
    let by_agent = |h: &HistoryEntry| {
        h.by.as_ref()
            .is_some_and(|by| by.as_str() == agent.as_str())
    };
    moved
        || history
            .iter()
            .filter(|h| h.at >= claimed_at)
            .any(|h| match &h.event {
                HistoryEvent::StageChanged { .. } | HistoryEvent::Note { .. } => by_agent(h),
                HistoryEvent::TextRelayed { agent_id } => agent_id == agent,
                _ => false,
            })
}

/// `agent`'s contact deadline on referral `id` falls due at `now` (RC-1). If they still hold it
/// and recorded no contact since their claim, it is taken back: unassigned (they lose the
/// client's contacts, GEN-3), offered again to the team's other eligible members through the
/// ordinary offer messages, and `agent` is told why by SMS and push, all in one write; the time it
/// stayed with them counts in their speed to lead (GEN-1). True when this call took it back; a
/// referral met in time, already taken back or gone is left alone, so a repeated firing changes
/// nothing.
pub async fn contact_deadline_passed(
    s: &Services,
    id: &ReferralId,
    agent: &AgentId,
    now: Timestamp,
) -> Result<bool, AppError> {
    let mut edit = Editing::new(s, id);
    loop {
        let Some(stored) = edit.read_if_stored().await? else {
            return Ok(false);
        };
        let referral = stored.value;
        let Some(assignment) = referral.assignment().cloned() else {
            return Ok(false);
        };
        if &assignment.agent_id != agent || referral.taken_back.contains(agent) {
            return Ok(false);
        }
        let history = s.referrals.history_since(id, assignment.claimed_at).await?;
        if contacted(&referral, &history, agent, assignment.claimed_at) {
            return Ok(false);
        }
        let others = reoffer_to(s, &referral, agent, now).await?;
        let mut next = referral.clone();
        next.assigned = None;
        next.taken_back.insert(agent.clone());
        next.offers = others.iter().map(|a| (a.id.clone(), now)).collect();
        // The others keep the claim codes they were first sent: those still name this referral.
        next.codes.retain(|a, _| next.offers.contains_key(a));
        next.respond_by = None;
        let mut entries = vec![
            // The won claim lives on the assignment, which goes: it stays in the history here.
            HistoryEntry::new(
                assignment.claimed_at,
                Some(agent.clone().into()),
                HistoryEvent::ClaimAttempt {
                    agent_id: agent.clone(),
                    channel: assignment.channel,
                    won: true,
                },
            ),
            HistoryEntry::new(
                now,
                None,
                HistoryEvent::TakenBack {
                    agent_id: agent.clone(),
                    reason: TakeBackReason::NoContact,
                },
            ),
        ];
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        effects.extend(told_taken_back(
            s,
            &next,
            agent,
            &assignment.claimed_at,
            now,
        )?);
        if others.is_empty() {
            // Nobody else to offer it to: the advisors take it (RC-2).
            if let Some((entry, told)) =
                unassigned::to_advisors(&mut next, UnassignedReason::NoEligibleAgent, now)
            {
                entries.push(entry);
                effects.extend(told);
            }
        } else {
            for other in &others {
                effects.extend(
                    offer::offer_messages(s, &next, other)?
                        .into_iter()
                        .map(|d| Effect::Deliver(reoffered(d, agent))),
                );
            }
            // Another 24 hours for someone to claim it, or the advisors take it (RC-2).
            effects.push(Effect::StartTimer(Timer {
                name: unclaimed_again_timer(id, agent),
                at: now + unassigned::UNCLAIMED_AFTER,
                payload: TimerPayload::Unclaimed {
                    referral_id: id.clone(),
                },
            }));
        }
        if edit.save(&next, stored.version, &entries, &effects).await? {
            // The time it stayed with them counts like a slow response (GEN-1).
            super::claim::record_speed(s, "taken-back-time", &referral, agent, now).await?;
            return Ok(true);
        }
    }
}

/// The team's members eligible for `referral` now, by the ordinary broadcast rules (LR-1, LR-7,
/// LR-11; members at their daily cap left out, RC-3, though the offer made again does not count
/// against a cap), but for `agent`, those it was taken back from before and those who declined it.
async fn reoffer_to(
    s: &Services,
    referral: &Referral,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Vec<Agent>, AppError> {
    let Some(team_id) = &referral.team_id else {
        return Ok(Vec::new());
    };
    let members = offer::team_members_for(s, team_id, referral.lead.client_type, now)
        .await?
        .agents;
    Ok(members
        .into_iter()
        .filter(|a| {
            &a.id != agent
                && !referral.taken_back.contains(&a.id)
                && !referral.declined.contains(&a.id)
        })
        .collect())
}

/// An offer message sent again after a take-back, saying so: its own key, so it is sent although
/// the first offer on that channel was.
fn reoffered(mut delivery: Delivery, taken_from: &AgentId) -> Delivery {
    delivery.key = format!("{}#after#{taken_from}", delivery.key);
    const AGAIN: &str = "Offered again: ";
    match &mut delivery.message {
        Message::Sms { body } => body.insert_str(0, AGAIN),
        Message::Push { title, .. } => title.insert_str(0, AGAIN),
        Message::Email { subject, .. } => subject.insert_str(0, AGAIN),
        _ => {}
    }
    delivery
}

/// The SMS and push telling `agent` why they lost the referral; the lead only, never the
/// client's contacts (GEN-3).
fn told_taken_back(
    s: &Services,
    referral: &Referral,
    agent: &AgentId,
    claimed_at: &Timestamp,
    now: Timestamp,
) -> Result<Vec<Effect>, AppError> {
    let minutes = now.duration_since(*claimed_at).as_mins();
    let summary = referral.lead.summary();
    let link = s.config.app_link(&referral.id)?;
    let body = format!(
        "Referral {} ({summary}) was taken back and offered to your team: no contact was recorded \
         within {minutes} minutes of your claim (no stage update, note or text to the client). {link}",
        referral.id
    );
    let id = &referral.id;
    let to = || Recipient::Agent {
        agent_id: agent.clone(),
    };
    Ok(vec![
        Effect::Deliver(Delivery {
            key: format!("taken-back#{id}#{agent}#sms"),
            referral_id: Some(id.clone()),
            to: to(),
            message: Message::Sms { body: body.clone() },
        }),
        Effect::Deliver(Delivery {
            key: format!("taken-back#{id}#{agent}#push"),
            referral_id: Some(id.clone()),
            to: to(),
            message: Message::Push {
                title: "Referral taken back: no contact recorded".into(),
                body,
            },
        }),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::{after_claim, claim_referral};
    use crate::app::intake::create_referral;
    use crate::app::intake::tests::{advisor, at, request, routed_team};
    use crate::app::pipeline::add_note;
    use crate::app::testing::services;
    use crate::app::{Actor, Role};
    use crate::domain::referral::ClaimChannel;
    use crate::memory::{MemoryStore, Outbox, Sent, settle};
    use crate::ports::{AgentDirectory, ReferralStore};
    use jiff::SignedDuration;
    use std::sync::Arc;

    fn aid(a: &str) -> AgentId {
        a.parse().unwrap()
    }

    /// The routing team with a 30-minute deadline; its seller referral (offered to ana, the
    /// fallback, and cy), claimed by cy at 17:00:30 and followed up.
    async fn claimed_by_cy(
        s: &Services,
        store: &MemoryStore,
        outbox: &Arc<Outbox>,
    ) -> (ReferralId, Timestamp) {
        routed_team(store, true).await;
        let team = "bay-team".parse().unwrap();
        let settings = store.get_routing(&team).await.unwrap().unwrap();
        store
            .put_routing(&team, &settings.with_contact_deadline(Some(30)).unwrap())
            .await
            .unwrap();
        let now = at("2026-03-02T17:00:00Z");
        let id = create_referral(
            s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            now,
        )
        .await
        .unwrap()
        .id;
        let claimed_at = at("2026-03-02T17:00:30Z");
        claim_referral(s, &aid("cy"), &id, ClaimChannel::App, claimed_at)
            .await
            .unwrap();
        after_claim(s, &id, &aid("cy"), claimed_at).await.unwrap();
        settle(s, store, outbox, claimed_at).await.unwrap();
        (id, claimed_at + SignedDuration::from_mins(30))
    }

    #[tokio::test]
    async fn rc_1_an_idle_winner_loses_the_referral_to_the_others_once() {
        let (s, store, outbox) = services();
        let (id, due) = claimed_by_cy(&s, &store, &outbox).await;
        let timer = outbox.sent().into_iter().find_map(|x| match x {
            Sent::Scheduled(t) => Some(t).filter(|t| t.name == deadline_timer(&id, &aid("cy"))),
            _ => None,
        });
        assert_eq!(timer.map(|t| t.at), Some(due), "the deadline starts");
        assert!(
            contact_deadline_passed(&s, &id, &aid("cy"), due)
                .await
                .unwrap()
        );
        assert!(
            !contact_deadline_passed(&s, &id, &aid("cy"), due)
                .await
                .unwrap(),
            "a repeated firing changes nothing"
        );
        settle(&s, &store, &outbox, due).await.unwrap();
        let r = store.get_referral(&id).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), None);
        assert_eq!(r.offers.keys().cloned().collect::<Vec<_>>(), [aid("ana")]);
        let history = store.history(&id).await.unwrap();
        assert!(history.iter().any(|h| matches!(&h.event,
            HistoryEvent::TakenBack { agent_id, reason: TakeBackReason::NoContact } if agent_id == &aid("cy"))));
        let sent = outbox.sent();
        let told = |x: &Sent| match x {
            Sent::Sms { body, .. } | Sent::Push { body, .. } => body.contains("taken back"),
            _ => false,
        };
        assert_eq!(sent.iter().filter(|x| told(x)).count(), 2, "{sent:?}");
        assert!(sent.iter().filter(|x| told(x)).all(|x| match x {
            Sent::Sms { body, .. } | Sent::Push { body, .. } => !body.contains("+14155559876"),
            _ => true,
        }));
        let again = claim_referral(&s, &aid("cy"), &id, ClaimChannel::App, due)
            .await
            .unwrap_err();
        assert_eq!(again.status(), 403);
        let reclaimed = due + SignedDuration::from_secs(45);
        claim_referral(&s, &aid("ana"), &id, ClaimChannel::App, reclaimed)
            .await
            .unwrap();
        after_claim(&s, &id, &aid("ana"), reclaimed).await.unwrap();
        settle(&s, &store, &outbox, reclaimed).await.unwrap();
        let ana = store.get_agent(&aid("ana")).await.unwrap().unwrap();
        assert_eq!(
            ana.response_times.len(),
            2,
            "GEN-1: the first offer she left to cy, and the new one she claimed"
        );
        let emails = outbox.emails();
        assert!(
            emails
                .iter()
                .any(|e| e.to.as_str() == "ana@agents.example.com"
                    && e.body.contains("+14155559876")),
            "the new winner gets the client's details: {emails:?}"
        );
        let cy = store.get_agent(&aid("cy")).await.unwrap().unwrap();
        assert_eq!(
            cy.response_times.len(),
            2,
            "GEN-1: the claim, and the time held without a contact"
        );
    }

    #[tokio::test]
    async fn rc_1_a_note_before_the_deadline_keeps_the_referral() {
        let (s, store, outbox) = services();
        let (id, due) = claimed_by_cy(&s, &store, &outbox).await;
        let cy = Actor {
            user: "cy".parse().unwrap(),
            role: Role::Agent,
        };
        add_note(
            &s,
            &cy,
            &id,
            "Left a voicemail, calling back at 5",
            None,
            due - SignedDuration::from_mins(1),
        )
        .await
        .unwrap();
        assert!(
            !contact_deadline_passed(&s, &id, &aid("cy"), due)
                .await
                .unwrap()
        );
        let r = store.get_referral(&id).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), Some(&aid("cy")));
    }
}
