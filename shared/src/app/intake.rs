//! A new referral: stored, offered to the agents who should hear of it, and broadcast through the
//! queue (LR-1 to LR-7, LR-11, PPL-1, PPL-3, PPL-4, PPL-7, PPL-9, GEN-1, GEN-3, GEN-5).

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::offer::{Draft, Queued, offer, queued_referral, reoffer, replay, team_recipients};
pub use super::offer::{Intake, NewReferral};
use super::{Actor, AppError, Role, Services, idempotent_id, limits};
use crate::domain::agent::Agent;
use crate::domain::billing::ppl_eligible;
use crate::domain::contact::{DUPLICATE_WINDOW, still_active};
use crate::domain::referral::{PplTerms, Program, Referral};
use crate::domain::team::CappedOffer;
use crate::domain::values::{AgentId, ReferralId};

/// Creates a referral and starts its broadcast (or a warm transfer's alerts). With an
/// `idempotency_key`, a repeated request creates nothing twice and answers with the first one's
/// referral; its messages may be queued again, and the broadcast consumer sends each once (GEN-5).
pub async fn create_referral(
    s: &Services,
    actor: &Actor,
    mut request: NewReferral,
    idempotency_key: Option<&str>,
    now: Timestamp,
) -> Result<Intake, AppError> {
    actor.require(Role::Advisor)?;
    validate(&request)?;
    let id = match idempotency_key {
        Some(key) => idempotent_id(actor, key, "r")?.parse()?,
        None => ReferralId::generate(),
    };
    // A re-offer of a queued referral (RC-2): only of one in the queue, and with its client
    // unless the advisor gives one.
    if let Some(queued) = &request.reoffer_of {
        match queued_referral(s, queued, &id).await? {
            Queued::Waiting(stored) => {
                request.client.get_or_insert(stored.value.client);
            }
            Queued::ReofferedAsThis => {
                if let Some(existing) = s.referrals.get_referral(&id).await? {
                    return replay(s, &existing.value);
                }
            }
        }
    }
    let Some(client) = request.client.clone() else {
        return Err(AppError::BadRequest("client is required".into()));
    };
    // Whatever the program, a referral nobody can take is stored and goes to the advisors'
    // queue (RC-2, `offer::creation`). The client's earlier referral (RC-4) is looked up
    // alongside the recipients: a warm transfer's advisor is on the line while both are read.
    let contact_keys = s.config.contact_secret()?.keys(&client).to_vec();
    let (found, earlier) = tokio::try_join!(
        recipients(s, &request, now),
        earlier_referral(s, &contact_keys, request.reoffer_of.as_ref(), now)
    )?;
    let Recipients {
        agents,
        ppl,
        capped,
        always_told,
    } = found;
    // A team's duplicate goes first to the member who has the client, alone but for the agent
    // told of everything (LR-4), for five minutes (RC-4).
    let holder = earlier
        .as_ref()
        .and_then(Referral::assigned_agent)
        .filter(|holder| {
            request.program == Program::Routing && agents.iter().any(|a| &a.id == *holder)
        });
    let held_back = match holder {
        Some(holder) => agents
            .iter()
            .map(|a| a.id.clone())
            .filter(|a| a != holder && Some(a) != always_told.as_ref())
            .collect(),
        None => Vec::new(),
    };
    let draft = Draft {
        id,
        request,
        created_by: actor.user.clone(),
        parent_id: None,
        ppl,
        capped,
        duplicate_of: earlier.as_ref().map(|r| r.id.clone()),
        held_back,
        contact_keys,
    };
    match draft.request.reoffer_of.clone() {
        Some(queued) => reoffer(s, draft, &queued, &agents, now).await,
        None => offer(s, draft, &agents, now).await,
    }
}

/// Who a new referral is offered to, by program, with what the program adds: a PPL referral's
/// terms, a team's members skipped at their daily cap and the agent told of everything (LR-4).
#[derive(Default)]
struct Recipients {
    agents: Vec<Agent>,
    ppl: Option<PplTerms>,
    capped: Vec<CappedOffer>,
    always_told: Option<AgentId>,
}

async fn recipients(
    s: &Services,
    request: &NewReferral,
    now: Timestamp,
) -> Result<Recipients, AppError> {
    Ok(match request.program {
        Program::Routing => {
            let team = team_recipients(s, request, now).await?;
            Recipients {
                agents: team.agents,
                capped: team.capped,
                always_told: team.always_told,
                ..Default::default()
            }
        }
        Program::Ppl => {
            let (agents, terms) = ppl_recipients(s, request, now).await?;
            Recipients {
                agents,
                ppl: Some(terms),
                ..Default::default()
            }
        }
        Program::WarmTransfer => Recipients {
            agents: super::warm_transfer::alert_recipients(s, request, now).await?,
            ..Default::default()
        },
    })
}

/// The newest active referral of the same client of the past 60 days, by their contact keys
/// (RC-4): one query of the index per key, then the referrals it names until an active one.
/// `not` is left out: the referral a re-offer replaces is no duplicate of it.
async fn earlier_referral(
    s: &Services,
    contact_keys: &[String],
    not: Option<&ReferralId>,
    now: Timestamp,
) -> Result<Option<Referral>, AppError> {
    let since = now - DUPLICATE_WINDOW;
    for id in s
        .referrals
        .referrals_by_contact(contact_keys, since)
        .await?
    {
        if Some(&id) == not {
            continue;
        }
        if let Some(stored) = s.referrals.get_referral(&id).await?
            && still_active(&stored.value, now)
        {
            return Ok(Some(stored.value));
        }
    }
    Ok(None)
}

/// The request within the documented limits (EF-4) and consistent, before anything is read.
fn validate(request: &NewReferral) -> Result<(), AppError> {
    match &request.client {
        Some(client) => limits::required_text("client.name", &client.name, limits::SHORT_TEXT)?,
        // A re-offer takes the queued referral's client.
        None if request.reoffer_of.is_some() => {}
        None => return Err(AppError::BadRequest("client is required".into())),
    }
    limits::text("timeline", &request.timeline, limits::SHORT_TEXT)?;
    limits::text("briefing", &request.briefing, limits::LONG_TEXT)?;
    limits::amount("priceRange.min", request.price_range.min())?;
    limits::amount("priceRange.max", request.price_range.max())?;
    match (request.program, &request.team_id) {
        (Program::Routing, None) => Err(AppError::BadRequest(
            "teamId is required for a routing referral".into(),
        )),
        (Program::Ppl, Some(_)) => Err(AppError::BadRequest(
            "a pay-per-lead referral goes to subscribers, not to a team: drop teamId".into(),
        )),
        // Any referral may carry the advisor's phone, texted if nobody takes it (RC-2); only a
        // warm transfer has a live call to move into a conference.
        (Program::Routing | Program::Ppl, _) if request.client_call_sid.is_some() => Err(
            AppError::BadRequest("clientCallSid is for warm transfers only".into()),
        ),
        (_, _)
            if request
                .client_call_sid
                .as_deref()
                .is_some_and(|s| !is_call_sid(s)) =>
        {
            Err(AppError::BadRequest(
                "clientCallSid must be a call SID: CA and 32 hex digits".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// A Twilio call SID: `CA` and 32 hex digits.
fn is_call_sid(text: &str) -> bool {
    text.len() == 34 && text.starts_with("CA") && text[2..].chars().all(|c| c.is_ascii_hexdigit())
}

/// A pay-per-lead referral: subscribers covering the zip and type, active, not on vacation,
/// with room left in their cycle, fastest first (PPL-1, PPL-7, PPL-9, PPL-10, GEN-1); and its
/// terms: its own price, and the subscription each agent receives it under (PPL-11). Nothing is
/// counted here: an offer uses no quota, only the claim does.
async fn ppl_recipients(
    s: &Services,
    request: &NewReferral,
    now: Timestamp,
) -> Result<(Vec<Agent>, PplTerms), AppError> {
    let price = s.config.prices()?.price(&request.zip, request.client_type);
    let subs = s
        .subscriptions
        .subscriptions_covering(&request.zip, request.client_type)
        .await?;
    let ids: Vec<AgentId> = subs.iter().map(|sub| sub.agent_id.clone()).collect();
    let profiles = s.agents.get_agents(&ids).await?;
    let by_id: BTreeMap<&AgentId, &Agent> = profiles.iter().map(|a| (&a.id, a)).collect();
    let mut candidates = Vec::new();
    for sub in &subs {
        let Some(agent) = by_id.get(&sub.agent_id) else {
            continue;
        };
        let received = s
            .subscriptions
            .received(&sub.id, sub.current_cycle(now))
            .await?
            .len();
        let received = u32::try_from(received).unwrap_or(u32::MAX);
        if ppl_eligible(sub, agent, &request.zip, request.client_type, received, now) {
            candidates.push((sub, *agent));
        }
    }
    candidates.sort_by(|(_, a), (_, b)| Agent::by_speed(a, b));
    let mut chosen: Vec<Agent> = Vec::new();
    let mut subscriptions = BTreeMap::new();
    for (sub, agent) in candidates {
        // One offer per agent, under the first of their subscriptions with room.
        if subscriptions.contains_key(&agent.id) {
            continue;
        }
        subscriptions.insert(agent.id.clone(), sub.id.clone());
        chosen.push(agent.clone());
    }
    let terms = PplTerms {
        price,
        subscriptions,
        returned: None,
    };
    Ok((chosen, terms))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::domain::agent::Vacation;
    use crate::domain::agent::fixtures::agent;
    use crate::domain::billing::{SignUp, Subscription};
    use crate::domain::team::{Receives, RoutingMember, RoutingSettings, Team};
    use crate::domain::values::ClientType;
    use crate::domain::values::{SubscriptionId, UserId};
    use crate::effects::{Delivery, Effect, Message, Recipient};
    use crate::memory::{MemoryStore, Sent};
    use crate::ports::{AgentDirectory, ReferralStore, SubscriptionStore};

    pub fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    pub fn advisor() -> Actor {
        Actor {
            user: "advisor-1".parse::<UserId>().unwrap(),
            role: Role::Advisor,
        }
    }

    pub fn request(program: Program, client_type: &str) -> NewReferral {
        serde_json::from_value(serde_json::json!({
            "program": program,
            "client": {"name": "Casey Client", "phone": "+14155559876", "email": "casey@example.com"},
            "clientType": client_type, "zip": "94110",
            "priceRange": {"min": "600000", "max": "800000"}, "timeline": "1-3 months",
            "briefing": "Call Casey at +14155559876 after 5pm",
            "teamId": (program == Program::Routing).then_some("bay-team"),
        }))
        .unwrap()
    }

    /// Agents with their own verified phones (TX-3) and push tokens; `n` makes the phone unique.
    pub async fn put_agents(store: &MemoryStore, ids: &[&str]) {
        for (n, id) in ids.iter().enumerate() {
            let mut a = agent(id);
            let phone = format!("+1415555{:04}", 200 + n).parse().unwrap();
            a.cell_phone = Some(phone);
            a.push_token = Some(format!("device-{id}"));
            store.put_agent(&a).await.unwrap();
            store.verify_phones(&a).await;
        }
    }

    /// Team bay-team: ana leads (the fallback agent), ben takes buyers, cy sellers.
    pub async fn routed_team(store: &MemoryStore, enabled: bool) {
        put_agents(store, &["ana", "ben", "cy"]).await;
        let team = Team {
            id: "bay-team".parse().unwrap(),
            name: "Bay".into(),
            lead_agent_id: "ana".parse().unwrap(),
            agent_ids: ["ben".parse().unwrap(), "cy".parse().unwrap()].into(),
        };
        store.put_team(&team).await.unwrap();
        let member = |id: &str, receives| RoutingMember {
            agent_id: id.parse().unwrap(),
            receives,
            warm_transfer: false,
            daily_cap: None,
        };
        let settings = RoutingSettings::new(
            enabled,
            "ana".parse().unwrap(),
            vec![
                member("ana", Receives::Both),
                member("ben", Receives::Buyer),
                member("cy", Receives::Seller),
            ],
        )
        .unwrap();
        store.put_routing(&team.id, &settings).await.unwrap();
    }

    /// One delivery to an agent that a change committed, as a test reads it.
    #[derive(Debug, Clone)]
    pub struct Offered {
        pub agent_id: AgentId,
        pub channel: &'static str,
        pub title: String,
        pub body: String,
        pub delivery: Delivery,
    }

    /// Every delivery to an agent committed so far, in order: what the broadcast owes.
    pub fn queued(store: &MemoryStore) -> Vec<Offered> {
        store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .filter_map(|e| match e {
                Effect::Deliver(d) => Some(d),
                _ => None,
            })
            .filter_map(|d| {
                let Recipient::Agent { agent_id } = &d.to else {
                    return None;
                };
                let (title, body) = match &d.message {
                    Message::Sms { body } => (String::new(), body.clone()),
                    Message::Push { title, body } => (title.clone(), body.clone()),
                    Message::Email { subject, body, .. } => (subject.clone(), body.clone()),
                    Message::Call { url, .. } => (String::new(), url.clone()),
                    Message::OptIn => (String::new(), String::new()),
                    Message::CallUpdate { twiml } => (String::new(), twiml.clone()),
                };
                Some(Offered {
                    agent_id: agent_id.clone(),
                    channel: d.channel(),
                    title,
                    body,
                    delivery: d.clone(),
                })
            })
            .collect()
    }

    fn agents_of(messages: &[Offered]) -> Vec<String> {
        let mut ids: Vec<String> = messages.iter().map(|m| m.agent_id.to_string()).collect();
        ids.dedup();
        ids
    }

    #[tokio::test]
    async fn lr_1_lr_2_team_broadcast_follows_member_rules_on_every_channel() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            r.offered_to,
            vec!["ana".parse().unwrap(), "cy".parse().unwrap()]
        );
        let messages = queued(&store);
        // The buyer-only member never hears of a seller.
        assert_eq!(agents_of(&messages), ["ana", "cy"]);
        let channels: Vec<&str> = messages.iter().map(|m| m.channel).collect();
        assert_eq!(channels.len(), 6, "sms, push and email to each");
        let stored = store.get_referral(&r.id).await.unwrap().unwrap().value;
        for m in &messages {
            // GEN-3: the client's phone, email and name and the briefing (which holds the phone)
            // stay out of every offer.
            for secret in ["+14155559876", "casey@example.com", "Casey", "after 5pm"] {
                assert!(
                    !m.body.contains(secret) && !m.title.contains(secret),
                    "{m:?}"
                );
            }
            if m.channel == "sms" {
                let code = &stored.codes[&m.agent_id];
                assert!(m.body.contains(&format!("Reply {code}")), "{}", m.body);
            }
        }
        // Codes are per agent: each agent's text claims with their own.
        assert_eq!(stored.codes.len(), 2);
    }

    #[tokio::test]
    async fn lr_11_lr_6_team_without_routing_hears_through_its_lead_only() {
        let (s, store, _) = services();
        routed_team(&store, false).await;
        let now = at("2026-03-02T17:00:00Z");
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "buyer"),
            None,
            now,
        )
        .await
        .unwrap();
        assert_eq!(r.offered_to, vec!["ana".parse().unwrap()]);
        assert_eq!(agents_of(&queued(&store)), ["ana"]);
    }

    #[tokio::test]
    async fn lr_7_member_on_vacation_hears_nothing() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let mut cy = store
            .get_agent(&"cy".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        cy.vacation = Some(
            Vacation::new("2026-03-01".parse().unwrap(), "2026-03-05".parse().unwrap()).unwrap(),
        );
        store.put_agent(&cy).await.unwrap();
        let now = at("2026-03-02T17:00:00Z");
        create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            now,
        )
        .await
        .unwrap();
        assert_eq!(agents_of(&queued(&store)), ["ana"]);
    }

    /// Caps cy, who takes sellers, at `cap` referrals a day.
    async fn cap_cy(store: &MemoryStore, cap: u32) {
        let team: crate::domain::values::TeamId = "bay-team".parse().unwrap();
        let saved = store.get_routing(&team).await.unwrap().unwrap();
        let mut members = saved.members().to_vec();
        for m in &mut members {
            if m.agent_id.as_str() == "cy" {
                m.daily_cap = Some(cap);
            }
        }
        let capped =
            RoutingSettings::new(true, saved.fallback_agent_id().clone(), members).unwrap();
        store.put_routing(&team, &capped).await.unwrap();
    }

    #[tokio::test]
    async fn rc_3_a_member_at_their_daily_cap_is_offered_nothing_more_that_day() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        cap_cy(&store, 2).await;
        // 17:00 UTC is 09:00 in Los Angeles, where cy lives.
        let morning = at("2026-03-02T17:00:00Z");
        let seller = || request(Program::Routing, "seller");
        for _ in 0..2 {
            let r = create_referral(&s, &advisor(), seller(), None, morning)
                .await
                .unwrap();
            assert!(r.offered_to.contains(&"cy".parse().unwrap()));
        }
        let third = create_referral(&s, &advisor(), seller(), None, morning)
            .await
            .unwrap();
        assert_eq!(third.offered_to, vec!["ana".parse().unwrap()]);
        // 07:00 UTC on the 3rd is still the 2nd in Los Angeles.
        let late = create_referral(&s, &advisor(), seller(), None, at("2026-03-03T07:00:00Z"))
            .await
            .unwrap();
        assert_eq!(late.offered_to, vec!["ana".parse().unwrap()]);
        let next_day = create_referral(&s, &advisor(), seller(), None, at("2026-03-03T17:00:00Z"))
            .await
            .unwrap();
        assert!(next_day.offered_to.contains(&"cy".parse().unwrap()));
    }

    #[tokio::test]
    async fn rc_3_a_cap_filled_meanwhile_stores_nothing_and_a_retry_skips_the_agent() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        cap_cy(&store, 1).await;
        let now = at("2026-03-02T17:00:00Z");
        let seller = request(Program::Routing, "seller");
        // Another intake counted cy's one place after this one read the counters.
        let team = team_recipients(&s, &seller, now).await.unwrap();
        let (agents, capped) = (team.agents, team.capped);
        assert_eq!(capped.len(), 1);
        create_referral(&s, &advisor(), seller.clone(), None, now)
            .await
            .unwrap();
        let late = Draft {
            id: "r-late".parse().unwrap(),
            request: seller.clone(),
            created_by: advisor().user,
            parent_id: None,
            ppl: None,
            capped,
            duplicate_of: None,
            held_back: Vec::new(),
            contact_keys: Vec::new(),
        };
        let err = offer(&s, late, &agents, now).await.unwrap_err();
        assert!(matches!(err, AppError::Busy(_)), "{err:?}");
        assert!(
            store
                .get_referral_sync(&"r-late".parse().unwrap())
                .is_none()
        );
        let retry = create_referral(&s, &advisor(), seller, Some("k1"), now)
            .await
            .unwrap();
        assert_eq!(retry.offered_to, vec!["ana".parse().unwrap()]);
    }

    /// Bay team with every member taking both buyers and sellers.
    pub async fn everyone_takes_all(store: &MemoryStore) {
        let team: crate::domain::values::TeamId = "bay-team".parse().unwrap();
        let member = |id: &str| RoutingMember {
            agent_id: id.parse().unwrap(),
            receives: Receives::Both,
            warm_transfer: false,
            daily_cap: None,
        };
        let all = RoutingSettings::new(
            true,
            "ana".parse().unwrap(),
            vec![member("ana"), member("ben"), member("cy")],
        )
        .unwrap();
        store.put_routing(&team, &all).await.unwrap();
    }

    #[tokio::test]
    async fn rc_4_a_duplicate_client_goes_to_their_agent_first_and_to_the_rest_after_5_minutes() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        everyone_takes_all(&store).await;
        let now = at("2026-03-02T17:00:00Z");
        let first = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            now,
        )
        .await
        .unwrap();
        assert_eq!(first.duplicate_of, None);
        claim_as(&s, "cy", &first.id, now).await.unwrap();
        let offers_before = queued(&store).len();
        // The same client, their email written differently.
        let mut again = request(Program::Routing, "buyer");
        again.client.as_mut().unwrap().email = "Casey@Example.com".parse().unwrap();
        let later = now + jiff::SignedDuration::from_hours(24 * 30);
        let dup = create_referral(&s, &advisor(), again, None, later)
            .await
            .unwrap();
        assert_eq!(dup.duplicate_of, Some(first.id.clone()));
        // cy has the client; ana, the fallback agent, is still told (LR-4); ben waits.
        assert_eq!(
            dup.offered_to,
            vec!["ana".parse().unwrap(), "cy".parse().unwrap()]
        );
        assert_eq!(agents_of(&queued(&store)[offers_before..]), ["ana", "cy"]);
        let stored = store.get_referral_sync(&dup.id).unwrap();
        assert_eq!(stored.held_back, vec!["ben".parse::<AgentId>().unwrap()]);
        let e = claim_as(&s, "ben", &dup.id, later).await.unwrap_err();
        assert_eq!(e.status(), 403, "not offered to ben yet");
        let first_look_over = later + crate::domain::contact::FIRST_LOOK;
        assert!(
            store
                .committed_effects()
                .into_iter()
                .flat_map(|e| e.items)
                .any(|e| matches!(e, Effect::StartTimer(t) if t.at == first_look_over))
        );
        // The store fails once: nobody more is offered it, and the retry offers ben once.
        store
            .faults
            .inject_next(crate::memory::Service::Store, crate::memory::Fault::Fails);
        assert!(
            super::super::offer::offer_to_rest(&s, &dup.id, first_look_over)
                .await
                .is_err()
        );
        assert!(store.get_referral_sync(&dup.id).unwrap().offers.len() == 2);
        assert!(
            super::super::offer::offer_to_rest(&s, &dup.id, first_look_over)
                .await
                .unwrap()
        );
        assert!(
            !super::super::offer::offer_to_rest(&s, &dup.id, first_look_over)
                .await
                .unwrap()
        );
        let to_ben = queued(&store)
            .into_iter()
            .filter(|m| {
                m.agent_id.as_str() == "ben" && m.delivery.referral_id.as_ref() == Some(&dup.id)
            })
            .count();
        assert_eq!(to_ben, 3, "sms, push and email, once");
        claim_as(&s, "ben", &dup.id, first_look_over).await.unwrap();
    }

    #[tokio::test]
    async fn rc_4_a_client_of_a_finished_or_older_referral_is_no_duplicate() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let first = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            now,
        )
        .await
        .unwrap();
        let mut other = request(Program::Routing, "seller");
        other.client.as_mut().unwrap().phone = "+14155550111".parse().unwrap();
        other.client.as_mut().unwrap().email = "someone.else@example.com".parse().unwrap();
        let r = create_referral(&s, &advisor(), other, None, now)
            .await
            .unwrap();
        assert_eq!(r.duplicate_of, None);
        let within = now + jiff::SignedDuration::from_hours(24 * 60);
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            within,
        )
        .await
        .unwrap();
        assert_eq!(r.duplicate_of, Some(first.id.clone()));
        // 61 days after the newest one of this client.
        let past = within + jiff::SignedDuration::from_hours(24 * 61);
        let r = create_referral(
            &s,
            &advisor(),
            request(Program::Routing, "seller"),
            None,
            past,
        )
        .await
        .unwrap();
        assert_eq!(r.duplicate_of, None);
        assert_eq!(r.offered_to.len(), 2, "offered to all at once");
    }

    async fn subscribe(store: &MemoryStore, agent: &str, per_cycle: u32) -> Subscription {
        let sub = Subscription::sign_up(
            SubscriptionId::generate(),
            agent.parse().unwrap(),
            SignUp {
                zips: ["94110".parse().unwrap()].into(),
                client_types: [ClientType::Seller].into(),
                referrals_per_cycle: per_cycle,
            },
            at("2026-03-01T00:00:00Z"),
        )
        .unwrap();
        store
            .create_subscription(&sub, sub.charge_due_at(1))
            .await
            .unwrap();
        sub
    }

    async fn claim_as(
        s: &Services,
        agent: &str,
        id: &ReferralId,
        now: Timestamp,
    ) -> Result<(), AppError> {
        crate::app::claim::claim_referral(
            s,
            &agent.parse().unwrap(),
            id,
            crate::domain::referral::ClaimChannel::App,
            now,
        )
        .await
        .map(drop)
    }

    #[tokio::test]
    async fn ppl_10_only_the_winner_s_quota_moves() {
        let (s, store, _) = services();
        put_agents(&store, &["p1", "p2"]).await;
        let p1 = subscribe(&store, "p1", 1).await;
        let p2 = subscribe(&store, "p2", 1).await;
        let now = at("2026-03-02T17:00:00Z");
        let lead = create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, now)
            .await
            .unwrap();
        assert_eq!(lead.offered_to.len(), 2);
        claim_as(&s, "p1", &lead.id, now).await.unwrap();
        let cycle = p1.current_cycle(now);
        assert_eq!(
            store.received(&p1.id, cycle).await.unwrap(),
            vec![lead.id.clone()]
        );
        assert!(store.received(&p2.id, cycle).await.unwrap().is_empty());
        // p1 has no room left, p2 still has its one.
        let next = create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, now)
            .await
            .unwrap();
        assert_eq!(next.offered_to, vec!["p2".parse().unwrap()]);
        // The referral is priced by its own type and zip (PPL-11).
        let stored = store.get_referral_sync(&lead.id).unwrap();
        let terms = stored.ppl.unwrap();
        assert_eq!(terms.subscriptions.len(), 2);
        assert_eq!(
            terms.price,
            s.config
                .prices()
                .unwrap()
                .price(&"94110".parse().unwrap(), ClientType::Seller)
        );
    }

    #[tokio::test]
    async fn ppl_10_concurrent_claims_never_pass_the_quota() {
        let (s, store, _) = services();
        put_agents(&store, &["p1"]).await;
        let p1 = subscribe(&store, "p1", 1).await;
        let now = at("2026-03-02T17:00:00Z");
        let mut leads = Vec::new();
        for _ in 0..3 {
            leads.push(
                create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, now)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let (a, b, c) = tokio::join!(
            claim_as(&s, "p1", &leads[0], now),
            claim_as(&s, "p1", &leads[1], now),
            claim_as(&s, "p1", &leads[2], now)
        );
        let results = [a, b, c];
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1);
        for e in results.into_iter().filter_map(Result::err) {
            assert_eq!((e.status(), e.code()), (409, "quota_reached"));
        }
        assert_eq!(
            store
                .received(&p1.id, p1.current_cycle(now))
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn ppl_9_ppl_7_deliveries_stop_at_the_quota_and_pause_on_vacation() {
        let (s, store, _) = services();
        put_agents(&store, &["p1", "p2", "p3"]).await;
        subscribe(&store, "p1", 1).await;
        subscribe(&store, "p2", 5).await;
        subscribe(&store, "p3", 5).await;
        let mut p3 = store
            .get_agent(&"p3".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        p3.vacation = Some(
            Vacation::new("2026-03-01".parse().unwrap(), "2026-03-10".parse().unwrap()).unwrap(),
        );
        store.put_agent(&p3).await.unwrap();
        let now = at("2026-03-02T17:00:00Z");
        let first = create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, now)
            .await
            .unwrap();
        assert_eq!(
            first.offered_to,
            vec!["p1".parse().unwrap(), "p2".parse().unwrap()]
        );
        // p1's one referral this cycle is used up once received.
        claim_as(&s, "p1", &first.id, now).await.unwrap();
        let second = create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, now)
            .await
            .unwrap();
        assert_eq!(second.offered_to, vec!["p2".parse().unwrap()]);
        // The next cycle (day 30 after sign-up) resets the quota; p3 is back from vacation.
        let later = at("2026-03-31T17:00:00Z");
        let third = create_referral(&s, &advisor(), request(Program::Ppl, "seller"), None, later)
            .await
            .unwrap();
        assert_eq!(third.offered_to.len(), 3);
        // No buyer subscription: nobody to offer it to; it waits for the advisors (RC-2).
        let before = queued(&store).len();
        let r = create_referral(&s, &advisor(), request(Program::Ppl, "buyer"), None, now)
            .await
            .unwrap();
        assert!(r.offered_to.is_empty() && r.unassigned_since.is_some());
        assert_eq!(queued(&store).len(), before);
    }

    #[tokio::test]
    async fn gen_5_a_repeated_request_creates_once_and_notifies_once() {
        let (s, store, outbox) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let req = || request(Program::Routing, "seller");
        let first = create_referral(&s, &advisor(), req(), Some("k-1"), now)
            .await
            .unwrap();
        let again = create_referral(&s, &advisor(), req(), Some("k-1"), now)
            .await
            .unwrap();
        assert!(first.created && !again.created);
        assert_eq!(first.id, again.id);
        // The offers were committed once, with the referral; delivered twice (a queue
        // redelivery), each (agent, channel) is sent once.
        let messages = queued(&store);
        assert_eq!(messages.len(), 6);
        for m in messages.iter().chain(&messages) {
            crate::app::broadcast::deliver(
                &s,
                &crate::memory::senders_of(&outbox),
                &m.delivery,
                now,
            )
            .await
            .unwrap();
        }
        let sent = outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::Sms { .. } | Sent::Push { .. } | Sent::Email(_)))
            .count();
        assert_eq!(sent, 6, "sms, push and email to ana and cy, once each");
        assert_eq!(store.history(&first.id).await.unwrap().len(), 1 + 6);
        let other = create_referral(&s, &advisor(), req(), Some("k-2"), now)
            .await
            .unwrap();
        assert_ne!(other.id, first.id);
    }

    #[tokio::test]
    async fn gen_4_bad_intake_is_refused_and_writes_nothing() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let agent = Actor {
            user: "ana".parse().unwrap(),
            role: Role::Agent,
        };
        let e = create_referral(&s, &agent, request(Program::Routing, "seller"), None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        let mut no_team = request(Program::Routing, "seller");
        no_team.team_id = None;
        let e = create_referral(&s, &advisor(), no_team, None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 400);
        let mut unknown = request(Program::Routing, "seller");
        unknown.team_id = Some("nope".parse().unwrap());
        let e = create_referral(&s, &advisor(), unknown, None, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "unknown_team"));
        assert!(queued(&store).is_empty());
        assert!(
            store
                .agent_referrals(&"ana".parse().unwrap(), None)
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// WT-10, GEN-4: the advisor's live call belongs to warm transfers and must be a call SID;
    /// anything else is refused and writes nothing.
    #[tokio::test]
    async fn gen_4_warm_transfer_call_fields_are_checked_and_nothing_is_written() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let mut routed = request(Program::Routing, "seller");
        routed.client_call_sid = Some("CA0123456789abcdef0123456789abcdef".into());
        let e = create_referral(&s, &advisor(), routed, None, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        let mut not_a_call = request(Program::WarmTransfer, "seller");
        not_a_call.client_call_sid = Some("SM0123456789abcdef0123456789abcdef".into());
        let e = create_referral(&s, &advisor(), not_a_call, None, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert!(e.to_string().contains("clientCallSid"), "{e}");
        assert!(queued(&store).is_empty());
    }

    #[tokio::test]
    async fn ef_4_gen_4_intake_beyond_its_limits_is_refused_naming_the_field_and_writes_nothing() {
        let (s, store, _) = services();
        routed_team(&store, true).await;
        let now = at("2026-03-02T17:00:00Z");
        let mut long_timeline = request(Program::Routing, "seller");
        long_timeline.timeline = "soon ".repeat(41);
        let mut long_briefing = request(Program::Routing, "seller");
        long_briefing.briefing = "b".repeat(4_001);
        let mut long_name = request(Program::Routing, "seller");
        long_name.client.as_mut().unwrap().name = "N".repeat(201);
        for (req, field) in [
            (long_timeline, "timeline"),
            (long_briefing, "briefing"),
            (long_name, "client.name"),
        ] {
            let e = create_referral(&s, &advisor(), req, None, now)
                .await
                .unwrap_err();
            assert_eq!((e.status(), e.code()), (400, "bad_request"));
            assert!(e.to_string().starts_with(field), "{e}");
        }
        // A price far beyond any house: refused while parsing, never stored.
        let mut json = serde_json::to_value(serde_json::json!({
            "program": "routing", "teamId": "bay-team",
            "client": {"name": "C", "phone": "+14155559876", "email": "c@example.com"},
            "clientType": "seller", "zip": "94110", "timeline": "soon",
            "priceRange": {"min": "1", "max": 1e27},
        }))
        .unwrap();
        assert!(serde_json::from_value::<NewReferral>(json.clone()).is_err());
        json["priceRange"]["max"] = "2000000000".into();
        let over = serde_json::from_value::<NewReferral>(json).unwrap();
        let e = create_referral(&s, &advisor(), over, None, now)
            .await
            .unwrap_err();
        assert!(e.to_string().starts_with("priceRange.max"), "{e}");
        assert!(store.committed_effects().is_empty());
        assert!(
            store
                .agent_referrals(&"ana".parse().unwrap(), None)
                .await
                .unwrap()
                .is_empty()
        );
    }
}
