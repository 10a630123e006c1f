//! The advisors' queue (RC-2): referrals nobody took (nobody eligible, everyone declined, or
//! unclaimed for 24 hours), oldest first; the advisor who created one is told at once.

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::closings::parse_limit;
use super::{Actor, AppError, Editing, Role, Services};
use crate::domain::referral::{
    HistoryEntry, HistoryEvent, LeadDetails, Program, Referral, UnassignedReason,
};
use crate::domain::values::{ReferralId, TeamId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, Timer, TimerPayload, key};

/// An offer nobody claims within this long goes to the advisors (RC-2).
pub const UNCLAIMED_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// The timer that sends an unclaimed referral to the advisors.
pub fn unclaimed_timer(id: &ReferralId) -> String {
    format!("unclaimed-{id}")
}

/// The timer a new offer starts (RC-2).
pub(super) fn unclaimed_after(referral: &Referral) -> Effect {
    Effect::StartTimer(Timer {
        name: unclaimed_timer(&referral.id),
        at: referral.created_at + UNCLAIMED_AFTER,
        payload: TimerPayload::Unclaimed {
            referral_id: referral.id.clone(),
        },
    })
}

/// Puts `referral` in the advisors' queue, once: its history entry and the messages telling the
/// advisor who created it (an email to the token's address, an SMS to `advisorPhone`). `None`
/// when it is in the queue already or taken.
pub(super) fn to_advisors(
    referral: &mut Referral,
    reason: UnassignedReason,
    now: Timestamp,
) -> Option<(HistoryEntry, Vec<Effect>)> {
    if !referral.to_advisors(now) {
        return None;
    }
    let entry = HistoryEntry::new(now, None, HistoryEvent::Unassigned { reason });
    Some((entry, advisor_told(referral, reason)))
}

fn advisor_told(referral: &Referral, reason: UnassignedReason) -> Vec<Effect> {
    let why = match reason {
        UnassignedReason::NoEligibleAgent => "no agent could be offered it",
        UnassignedReason::Declined => "every agent declined it",
        UnassignedReason::Unclaimed => "nobody claimed it within 24 hours",
    };
    let id = &referral.id;
    let summary = referral.lead.summary();
    let text = format!(
        "Referral {id} ({summary}) is in the advisors' queue: {why}. Re-offer it or call the client."
    );
    let mut out = Vec::new();
    if let Some(email) = &referral.advisor_email {
        out.push(Effect::Deliver(Delivery {
            key: format!("unassigned#{id}#email"),
            referral_id: Some(id.clone()),
            to: Recipient::Email {
                email: email.clone(),
            },
            message: Message::email(
                format!("Nobody took referral {id}: {summary}"),
                text.clone(),
            ),
        }));
    }
    if let Some(phone) = &referral.advisor_phone {
        out.push(Effect::Deliver(Delivery {
            key: format!("unassigned#{id}#sms"),
            referral_id: Some(id.clone()),
            to: Recipient::Phone {
                phone: phone.clone(),
            },
            message: Message::Sms { body: text },
        }));
    }
    out
}

/// The 24-hour timer of an offer (RC-2): still unclaimed, it goes to the advisors' queue. A
/// referral claimed, in the queue already or gone is left alone (false), so a repeated firing
/// changes nothing.
pub async fn escalate_unclaimed(
    s: &Services,
    id: &ReferralId,
    now: Timestamp,
) -> Result<bool, AppError> {
    let mut edit = Editing::new(s, id);
    loop {
        let Some(stored) = edit.read_if_stored().await? else {
            return Ok(false);
        };
        let mut referral = stored.value;
        let Some((entry, told)) = to_advisors(&mut referral, UnassignedReason::Unclaimed, now)
        else {
            return Ok(false);
        };
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        effects.extend(told);
        if edit
            .save(&referral, stored.version, &[entry], &effects)
            .await?
        {
            return Ok(true);
        }
    }
}

/// One referral of the queue: the lead and why, never the client's contacts (GEN-3).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueItem {
    pub id: ReferralId,
    pub program: Program,
    #[serde(flatten)]
    pub lead: LeadDetails,
    pub team_id: Option<TeamId>,
    pub created_at: Timestamp,
    pub unassigned_since: Timestamp,
    pub offered_to: Vec<crate::domain::values::AgentId>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuePage {
    pub items: Vec<QueueItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Where a page starts: after the referral the previous page ended with. The cursor is
/// `<epoch ms in the queue>.<referral id>`.
fn parse_cursor(cursor: Option<&str>) -> Result<Option<(Timestamp, ReferralId)>, AppError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let bad = || AppError::BadRequest("cursor: not a cursor this list gave".into());
    let (ms, id) = cursor.split_once('.').ok_or_else(bad)?;
    let ms: i64 = ms.parse().map_err(|_| bad())?;
    let at = Timestamp::from_millisecond(ms).map_err(|_| bad())?;
    Ok(Some((at, id.parse().map_err(|_| bad())?)))
}

/// The advisors' queue, oldest first (RC-2). Advisors only; `status` must be `unassigned`.
pub async fn unassigned_referrals(
    s: &Services,
    actor: &Actor,
    status: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<QueuePage, AppError> {
    actor.require(Role::Advisor)?;
    match status {
        Some("unassigned") => {}
        _ => {
            return Err(AppError::BadRequest(
                "status: the list of referrals takes status=unassigned".into(),
            ));
        }
    }
    let limit = parse_limit(limit)?;
    let after = parse_cursor(cursor)?;
    // One more than fits tells whether a next page exists.
    let mut page = s
        .referrals
        .unassigned_referrals(after.as_ref().map(|(at, id)| (*at, id)), limit + 1)
        .await?;
    let more = page.len() > limit;
    page.truncate(limit);
    let items: Vec<QueueItem> = page
        .into_iter()
        .filter_map(|r| {
            Some(QueueItem {
                unassigned_since: r.unassigned_since?,
                offered_to: r.offers.keys().cloned().collect(),
                id: r.id,
                program: r.program,
                lead: r.lead,
                team_id: r.team_id,
                created_at: r.created_at,
            })
        })
        .collect();
    let next_cursor = more
        .then(|| items.last())
        .flatten()
        .map(|last| format!("{}.{}", last.unassigned_since.as_millisecond(), last.id));
    Ok(QueuePage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::{claim_referral, decline_referral};
    use crate::app::intake::create_referral;
    use crate::app::intake::tests::{advisor, at, request, routed_team};
    use crate::app::testing::services;
    use crate::domain::referral::ClaimChannel;
    use crate::domain::team::RoutingSettings;
    use crate::memory::MemoryStore;
    use crate::memory::{Fault, Service};
    use crate::ports::{AgentDirectory, ReferralStore};

    const ADVISOR_EMAIL: &str = "ada@advisors.example.com";
    const ADVISOR_PHONE: &str = "+14155550100";

    fn seller() -> crate::app::intake::NewReferral {
        let mut r = request(Program::Routing, "seller");
        r.advisor_email = Some(ADVISOR_EMAIL.parse().unwrap());
        r.advisor_phone = Some(ADVISOR_PHONE.parse().unwrap());
        r
    }

    /// What the advisor was sent, as `(channel, to, text)`.
    fn told(store: &MemoryStore) -> Vec<(&'static str, String, String)> {
        store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .filter_map(|e| match e {
                Effect::Deliver(d) => Some(d),
                _ => None,
            })
            .filter_map(|d| {
                let to = match &d.to {
                    Recipient::Email { email } => email.to_string(),
                    Recipient::Phone { phone } => phone.to_string(),
                    Recipient::Agent { .. } | Recipient::Call { .. } => return None,
                };
                let text = match &d.message {
                    Message::Sms { body } | Message::Email { body, .. } => body.clone(),
                    _ => String::new(),
                };
                Some((d.channel(), to, text))
            })
            .collect()
    }

    fn queue_ids(page: &QueuePage) -> Vec<String> {
        page.items.iter().map(|i| i.id.to_string()).collect()
    }

    /// Caps ana (the fallback agent) and cy, who take sellers, at one referral a day.
    async fn cap_sellers(store: &MemoryStore) {
        let team = "bay-team".parse().unwrap();
        let saved = store.get_routing(&team).await.unwrap().unwrap();
        let mut members = saved.members().to_vec();
        for m in &mut members {
            if ["ana", "cy"].contains(&m.agent_id.as_str()) {
                m.daily_cap = Some(1);
            }
        }
        let capped =
            RoutingSettings::new(true, saved.fallback_agent_id().clone(), members).unwrap();
        store.put_routing(&team, &capped).await.unwrap();
    }

    #[tokio::test]
    async fn rc_2_a_referral_nobody_can_take_goes_to_the_queue_and_the_advisor_is_told() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        cap_sellers(&store).await;
        let now = at("2026-03-02T17:00:00Z");
        let first = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        assert_eq!(first.unassigned_since, None);
        assert!(told(&store).is_empty());
        // RC-3 leaves nobody for the second: RC-2 applies.
        let second = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        assert!(second.offered_to.is_empty());
        assert_eq!(second.unassigned_since, Some(now));
        let sent = told(&store);
        assert_eq!(
            sent.iter()
                .map(|(c, to, _)| (*c, to.as_str()))
                .collect::<Vec<_>>(),
            [("email", ADVISOR_EMAIL), ("sms", ADVISOR_PHONE)]
        );
        assert!(
            sent[0].2.contains("no agent could be offered it"),
            "{sent:?}"
        );
        // GEN-3 holds for the advisor's messages too.
        assert!(
            sent.iter()
                .all(|(_, _, text)| !text.contains("+14155559876"))
        );
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert_eq!(queue_ids(&page), [second.id.to_string()]);
        let history = store.history(&second.id).await.unwrap();
        assert!(history.iter().any(|h| h.event
            == HistoryEvent::Unassigned {
                reason: UnassignedReason::NoEligibleAgent
            }));
    }

    /// A pay-per-lead or warm-transfer request as the advisor sends it, with their contacts.
    fn of_program(program: Program) -> crate::app::intake::NewReferral {
        let mut r = request(program, "seller");
        r.advisor_email = Some(ADVISOR_EMAIL.parse().unwrap());
        r.advisor_phone = Some(ADVISOR_PHONE.parse().unwrap());
        r
    }

    #[tokio::test]
    async fn rc_2_a_pay_per_lead_or_warm_transfer_referral_nobody_can_take_is_queued_too() {
        let (s, store, _) = services();
        let now = at("2026-03-02T17:00:00Z");
        // Nobody subscribes to 94110 and nobody takes warm transfers there.
        let mut ids = Vec::new();
        for program in [Program::Ppl, Program::WarmTransfer] {
            let r = create_referral(&s, &advisor(), of_program(program), None, now)
                .await
                .unwrap();
            assert!(
                r.offered_to.is_empty() && r.warm_transfer.is_none(),
                "{r:?}"
            );
            assert_eq!(r.unassigned_since, Some(now));
            ids.push(r.id.to_string());
        }
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        let mut queued = queue_ids(&page);
        // Queued at the same instant: in id order.
        ids.sort();
        queued.sort();
        assert_eq!(queued, ids);
        let sent = told(&store);
        assert_eq!(sent.len(), 4, "an email and a text for each: {sent:?}");
        assert!(
            sent.iter()
                .all(|(_, _, text)| text.contains("no agent could be offered it"))
        );
    }

    /// A pay-per-lead referral nobody could take, in the queue.
    async fn queued_ppl(s: &Services, now: Timestamp) -> ReferralId {
        let r = create_referral(s, &advisor(), of_program(Program::Ppl), None, now)
            .await
            .unwrap();
        assert!(r.unassigned_since.is_some());
        r.id
    }

    /// A re-offer of `queued` to the routing team, taking its client.
    fn reoffer_of(queued: &ReferralId) -> crate::app::intake::NewReferral {
        let mut r = seller();
        r.client = None;
        r.reoffer_of = Some(queued.clone());
        r
    }

    #[tokio::test]
    async fn rc_2_an_advisor_reoffers_a_queued_referral_to_a_team_once() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let queued = queued_ppl(&s, now).await;
        let later = now + SignedDuration::from_mins(10);
        let new = create_referral(&s, &advisor(), reoffer_of(&queued), Some("k1"), later)
            .await
            .unwrap();
        assert!(new.created);
        assert_eq!(new.reoffer_of, Some(queued.clone()));
        assert_eq!(
            new.duplicate_of, None,
            "the referral it replaces is no duplicate"
        );
        assert_eq!(new.offered_to.len(), 2, "ana and cy, who take sellers");
        let stored = store.get_referral_sync(&new.id).unwrap();
        let old = store.get_referral_sync(&queued).unwrap();
        assert_eq!(
            stored.client, old.client,
            "the client comes from the queued one"
        );
        // Out of the queue, claimed by nobody, with the re-offer in its history.
        assert!(!old.in_advisors_queue());
        assert_eq!(old.reoffered_as, Some(new.id.clone()));
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert!(page.items.is_empty(), "{page:?}");
        let history = store.history(&queued).await.unwrap();
        let reoffers: Vec<_> = history
            .iter()
            .filter(|h| matches!(h.event, HistoryEvent::Reoffered { .. }))
            .collect();
        assert_eq!(reoffers.len(), 1);
        assert_eq!(
            reoffers[0].event,
            HistoryEvent::Reoffered {
                referral_id: new.id.clone()
            }
        );
        // The same request again answers the same referral; another one is refused.
        let again = create_referral(&s, &advisor(), reoffer_of(&queued), Some("k1"), later)
            .await
            .unwrap();
        assert_eq!((again.id.clone(), again.created), (new.id.clone(), false));
        let e = create_referral(&s, &advisor(), reoffer_of(&queued), Some("k2"), later)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "not_in_queue"));
        // Nothing new was stored by the refused one.
        assert_eq!(store.referrals().len(), 2);
    }

    #[tokio::test]
    async fn rc_2_only_an_advisor_reoffers_and_only_a_queued_referral() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let queued = queued_ppl(&s, now).await;
        let agent = Actor {
            user: "ana".parse().unwrap(),
            role: Role::Agent,
        };
        let e = create_referral(&s, &agent, reoffer_of(&queued), None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        let offered = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        let e = create_referral(&s, &advisor(), reoffer_of(&offered.id), None, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "not_in_queue"));
        let e = create_referral(
            &s,
            &advisor(),
            reoffer_of(&"r-none".parse().unwrap()),
            None,
            now,
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "unknown_referral"));
        // Without a re-offer, the client is required.
        let mut bare = seller();
        bare.client = None;
        let e = create_referral(&s, &advisor(), bare, None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        assert_eq!(
            store.referrals().len(),
            2,
            "nothing stored by the refused ones"
        );
    }

    #[tokio::test]
    async fn rc_2_two_reoffers_of_one_referral_at_once_store_one() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let queued = queued_ppl(&s, now).await;
        let advisor = advisor();
        let (a, b) = tokio::join!(
            create_referral(&s, &advisor, reoffer_of(&queued), Some("a"), now),
            create_referral(&s, &advisor, reoffer_of(&queued), Some("b"), now),
        );
        let won = [a.is_ok(), b.is_ok()];
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
        assert_eq!(store.referrals().len(), 2);
    }

    #[tokio::test]
    async fn rc_2_a_team_wide_decline_goes_to_the_queue_once() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let r = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        let ana = "ana".parse().unwrap();
        decline_referral(&s, &ana, &r.id, true, now).await.unwrap();
        // Declined again: nothing new, the advisor is told once.
        decline_referral(&s, &ana, &r.id, true, now).await.unwrap();
        assert_eq!(told(&store).len(), 2, "{:?}", told(&store));
        assert!(told(&store)[0].2.contains("every agent declined it"));
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert_eq!(queue_ids(&page), [r.id.to_string()]);
    }

    #[tokio::test]
    async fn rc_2_when_every_member_has_declined_it_goes_to_the_queue() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let r = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        decline_referral(&s, &"cy".parse().unwrap(), &r.id, false, now)
            .await
            .unwrap();
        assert!(told(&store).is_empty(), "ana can still take it");
        decline_referral(&s, &"ana".parse().unwrap(), &r.id, false, now)
            .await
            .unwrap();
        assert_eq!(told(&store).len(), 2);
        let stored = store.get_referral_sync(&r.id).unwrap();
        assert_eq!(stored.unassigned_since, Some(now));
    }

    #[tokio::test]
    async fn rc_2_a_decline_that_fails_to_save_tells_nobody_and_a_retry_does() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let r = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        store.faults.inject_next(Service::Store, Fault::Fails);
        let ana = "ana".parse().unwrap();
        assert!(decline_referral(&s, &ana, &r.id, true, now).await.is_err());
        assert!(told(&store).is_empty());
        assert_eq!(
            store.get_referral_sync(&r.id).unwrap().unassigned_since,
            None
        );
        decline_referral(&s, &ana, &r.id, true, now).await.unwrap();
        assert_eq!(told(&store).len(), 2);
    }

    #[tokio::test]
    async fn rc_2_an_offer_unclaimed_for_24_hours_goes_to_the_queue_and_a_claimed_one_does_not() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let idle = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        let taken = create_referral(&s, &advisor(), seller(), None, now)
            .await
            .unwrap();
        // Each offer starts its 24-hour timer with it.
        let timers: Vec<Timer> = store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .filter_map(|e| match e {
                Effect::StartTimer(t) => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(timers.len(), 2);
        assert_eq!(timers[0].at, now + UNCLAIMED_AFTER);
        claim_referral(
            &s,
            &"cy".parse().unwrap(),
            &taken.id,
            ClaimChannel::App,
            now,
        )
        .await
        .unwrap();
        let due = now + UNCLAIMED_AFTER;
        assert!(escalate_unclaimed(&s, &idle.id, due).await.unwrap());
        assert!(!escalate_unclaimed(&s, &taken.id, due).await.unwrap());
        // Fired twice: once in the queue, told once.
        assert!(!escalate_unclaimed(&s, &idle.id, due).await.unwrap());
        assert_eq!(told(&store).len(), 2);
        assert!(
            told(&store)[0]
                .2
                .contains("nobody claimed it within 24 hours")
        );
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert_eq!(queue_ids(&page), [idle.id.to_string()]);
        // A late claim still wins it, and takes it out of the queue.
        claim_referral(
            &s,
            &"ana".parse().unwrap(),
            &idle.id,
            ClaimChannel::App,
            due,
        )
        .await
        .unwrap();
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert!(page.items.is_empty());
    }

    #[tokio::test]
    async fn rc_2_a_pay_per_lead_offer_unclaimed_for_24_hours_goes_to_the_queue() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let cy = crate::app::Actor {
            user: "cy".parse().unwrap(),
            role: crate::app::Role::Agent,
        };
        let signup = serde_json::from_value(serde_json::json!(
            {"zips": ["94110"], "clientTypes": ["seller"], "referralsPerCycle": 5}
        ))
        .unwrap();
        crate::app::billing::sign_up(&s, &cy, signup, None, now)
            .await
            .unwrap();
        let lead = create_referral(&s, &advisor(), of_program(Program::Ppl), None, now)
            .await
            .unwrap();
        assert!(!lead.offered_to.is_empty() && lead.unassigned_since.is_none());
        // The offer starts its 24-hour timer with it, as a team's does.
        let timers: Vec<Timer> = store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .filter_map(|e| match e {
                Effect::StartTimer(t) => Some(t),
                _ => None,
            })
            .filter(|t| t.name == unclaimed_timer(&lead.id))
            .collect();
        assert_eq!(timers.len(), 1);
        assert_eq!(timers[0].at, now + UNCLAIMED_AFTER);
        assert!(
            escalate_unclaimed(&s, &lead.id, now + UNCLAIMED_AFTER)
                .await
                .unwrap()
        );
        let page = unassigned_referrals(&s, &advisor(), Some("unassigned"), None, None)
            .await
            .unwrap();
        assert_eq!(queue_ids(&page), [lead.id.to_string()]);
        assert!(
            told(&store)
                .iter()
                .any(|(_, _, text)| text.contains("nobody claimed it within 24 hours"))
        );
    }

    #[tokio::test]
    async fn rc_2_the_queue_is_for_advisors_oldest_first_in_pages() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let mut ids = Vec::new();
        for minute in 0..3 {
            let now = at("2026-03-02T17:00:00Z") + SignedDuration::from_mins(minute);
            let r = create_referral(&s, &advisor(), seller(), None, now)
                .await
                .unwrap();
            decline_referral(&s, &"ana".parse().unwrap(), &r.id, true, now)
                .await
                .unwrap();
            ids.push(r.id.to_string());
        }
        let first = unassigned_referrals(&s, &advisor(), Some("unassigned"), Some("2"), None)
            .await
            .unwrap();
        assert_eq!(queue_ids(&first), ids[..2]);
        let cursor = first.next_cursor.clone().unwrap();
        let rest =
            unassigned_referrals(&s, &advisor(), Some("unassigned"), Some("2"), Some(&cursor))
                .await
                .unwrap();
        assert_eq!(queue_ids(&rest), ids[2..]);
        assert_eq!(rest.next_cursor, None);
        let agent = Actor {
            user: "ana".parse().unwrap(),
            role: Role::Agent,
        };
        let e = unassigned_referrals(&s, &agent, Some("unassigned"), None, None)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        for (status, limit, cursor) in [
            (None, None, None),
            (Some("open"), None, None),
            (Some("unassigned"), Some("0"), None),
            (Some("unassigned"), Some("201"), None),
            (Some("unassigned"), None, Some("nonsense")),
        ] {
            let e = unassigned_referrals(&s, &advisor(), status, limit, cursor)
                .await
                .unwrap_err();
            assert_eq!(e.status(), 400, "{status:?} {limit:?} {cursor:?}");
        }
    }
}
