//! Warm transfer (WT-1 to WT-9): a client is on the line with an advisor; 3 to 5 agents are
//! alerted, the first to respond is connected, nobody in time means ordinary routing, and after
//! the call up to two more agents are introduced.
//!
//! A response is a claim: the app's `POST /referrals/{id}/claim` or a call to the warm-transfer
//! line, settled by the same single conditional write as every claim, which also refuses any
//! response at or after the deadline (`respond_by`). Every response, won or lost, is a claim
//! attempt in the history, so the response order that WT-7 needs is the history's.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::claim::{Claimed, claim_referral};
use super::offer::{Draft, NewReferral, creation, room, team_recipients};
use super::{Actor, AppError, Role, Services};
use crate::domain::agent::Agent;
use crate::domain::referral::{
    Assigned, ClaimChannel, Closure, HistoryEntry, HistoryEvent, Program, Referral,
};
use crate::domain::values::{AgentId, ReferralId};
use crate::domain::warm_transfer::{self, Metrics, Outcome, Response, WarmTransfer, choose_agents};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::{Creation, DomainEvent, Spawned};

/// How many times a transfer's end or completion is applied to a fresh read before giving up.
const ATTEMPTS: usize = 5;
use super::voice::{ConferenceLeg, Voice};

/// How many agents an unanswered warm transfer falls back to (WT-6).
const FALLBACK_AGENTS: usize = 10;

/// The agents to alert (WT-2, WT-3, LR-3): eligible now, a routing team's warm-transfer members
/// only, fastest first, at most five. One query for the agents (their index items carry the
/// profiles); a team adds the read of its routing.
pub(super) async fn alert_recipients(
    s: &Services,
    request: &NewReferral,
    now: Timestamp,
) -> Result<Vec<Agent>, AppError> {
    let candidates = s
        .agents
        .agents_serving(&request.zip, request.client_type)
        .await?;
    let members = match &request.team_id {
        Some(team) => s
            .agents
            .get_routing(team)
            .await?
            .filter(|r| r.enabled())
            .map(|r| r.warm_transfer_members()),
        None => None,
    };
    let chosen = choose_agents(
        &candidates,
        members.as_deref(),
        &request.zip,
        request.client_type,
        now,
    )
    .map_err(|e| AppError::unprocessable("no_eligible_agents", e.to_string()))?;
    let by_id: BTreeMap<&AgentId, &Agent> = candidates.iter().map(|a| (&a.id, a)).collect();
    Ok(chosen
        .iter()
        .filter_map(|id| by_id.get(id).map(|a| (*a).clone()))
        .collect())
}

/// An agent dials the warm-transfer line (`POST /twilio/voice/warm-transfer`). Caller ID alone
/// never claims (it is trivially spoofed): the line asks for the code of the caller's alert and
/// goes on only when the digits match it (TX-4). Then the first response wins and is held in the
/// transfer's conference until the advisor joins to brief them and bridges the client in (WT-4,
/// WT-5); anyone later is told it is taken, and their response is kept for the introductions
/// (WT-7).
pub async fn line_call(
    s: &Services,
    from: &str,
    digits: Option<&str>,
    now: Timestamp,
) -> Result<Voice, AppError> {
    let bye = Voice::goodbye;
    let agent = match from.parse() {
        Ok(phone) => s.agents.agent_by_phone(&phone).await?,
        Err(_) => None,
    };
    let Some(agent) = agent else {
        return Ok(bye(
            "This line is for agents taking warm transfers. Call from a phone you verified in the app. Goodbye.",
        ));
    };
    let Some(id) = s.lines.warm_transfer_of(&agent).await? else {
        return Ok(bye("There is no warm transfer waiting for you. Goodbye."));
    };
    let alerted = s
        .referrals
        .get_referral(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?
        .value;
    let Some(code) = alerted.codes.get(&agent) else {
        return Ok(bye("There is no warm transfer waiting for you. Goodbye."));
    };
    let code = code.trim_start_matches('#');
    let Some(digits) = digits else {
        return Ok(Voice::Ask {
            digits: u8::try_from(code.len()).unwrap_or(u8::MAX),
            prompt: "Enter the code from your warm-transfer alert.".into(),
            action: s.config.webhook("/twilio/voice/warm-transfer")?,
            otherwise: Some("We did not hear a code. Goodbye.".into()),
        });
    };
    if digits != code {
        return Ok(bye(
            "That code does not match your alert, so this call cannot take the transfer. Goodbye.",
        ));
    }
    match claim_referral(s, &agent, &id, ClaimChannel::WarmTransferLine, now).await {
        Ok(Claimed::Now | Claimed::Already) => {}
        Err(e) if e.code() == "taken" => {
            return Ok(bye(
                "Another agent was faster and has this client. We will keep you in mind for an introduction. Goodbye.",
            ));
        }
        Err(e) if e.status() < 500 => {
            return Ok(bye("This warm transfer has ended. Goodbye."));
        }
        Err(e) => return Err(e),
    }
    let referral = s
        .referrals
        .get_referral(&id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?
        .value;
    // The briefing is read out while the agent holds, so the client never repeats their story.
    Ok(Voice::Join {
        text: format!(
            "You have the warm transfer: {}. Briefing: {} Please hold: the advisor joins to brief you, then brings the client in.",
            referral.lead.summary(),
            referral.briefing
        ),
        leg: ConferenceLeg {
            room: room(&id),
            // The advisor starts the conference; until then the agent hears hold music.
            start_on_enter: false,
            // When the agent hangs up, the call with the client is over.
            end_on_exit: true,
        },
    })
}

/// The response window ends (the timeout timer, WT-6). If nobody responded, the client goes to
/// ordinary routing as a new referral and the advisors are told, in the same write that closes
/// the transfer (EF-1): a timer that fires again, or a fallback that failed halfway, finds either
/// nothing done or everything. A response that wins in the same instant keeps the client.
/// Returns whether it timed out.
pub async fn time_out(s: &Services, id: &ReferralId, now: Timestamp) -> Result<bool, AppError> {
    for _ in 0..ATTEMPTS {
        let Some(stored) = s.referrals.get_referral(id).await? else {
            return Ok(false);
        };
        let mut referral = stored.value;
        let settled = referral.assigned.is_some() || referral.closure.is_some();
        let Some(wt) = referral.warm_transfer.as_mut() else {
            return Ok(false);
        };
        if settled || !wt.time_out(now) {
            return Ok(false);
        }
        referral.closure = Some(Closure::TimedOut);
        let entry = HistoryEntry::new(now, None, HistoryEvent::WarmTransferTimedOut);
        let routed = fallback(s, &referral, now).await?;
        let offered = routed.referral.offers.len();
        let effects = Effects::new(key::timed_out(id)).with(Effect::Deliver(Delivery {
            key: format!("wt-timeout-email#{id}"),
            referral_id: Some(id.clone()),
            to: Recipient::Email {
                email: s.config.advisor_email()?.clone(),
            },
            message: Message::email(
                format!("Warm transfer unanswered: {}", referral.lead.summary()),
                format!(
                    "Nobody took warm transfer {id} within the time allowed. The client has gone to ordinary routing as referral {} ({offered} agents offered).",
                    routed.referral.id
                ),
            ),
        }));
        match s
            .referrals
            .update_with_children(
                &referral,
                stored.version,
                &[entry],
                &effects,
                std::slice::from_ref(&routed),
            )
            .await?
        {
            Spawned::Ok => return Ok(true),
            Spawned::Stale | Spawned::CodeInUse => continue,
        }
    }
    Err(AppError::Busy(format!("referral {id} is changing")))
}

/// The ordinary-routing referral of an unanswered warm transfer: the team's broadcast for a
/// team, else the eligible agents for the zip and type, fastest first. Its id is derived from the
/// transfer's, so it is created once.
async fn fallback(s: &Services, wt: &Referral, now: Timestamp) -> Result<Creation, AppError> {
    let request = NewReferral {
        program: Program::Routing,
        client: wt.client.clone(),
        client_type: wt.lead.client_type,
        zip: wt.lead.zip.clone(),
        price_range: wt.lead.price_range.clone(),
        timeline: wt.lead.timeline.clone(),
        briefing: wt.briefing.clone(),
        team_id: wt.team_id.clone(),
        call_first: false,
        advisor_phone: wt.advisor_phone.clone(),
        advisor_email: wt.advisor_email.clone(),
    };
    let (mut agents, capped) = match &wt.team_id {
        Some(_) => team_recipients(s, &request, now).await?,
        None => (
            s.agents
                .agents_serving(&wt.lead.zip, wt.lead.client_type)
                .await?
                .into_iter()
                .filter(|a| !a.on_vacation(now) && a.phone().is_some())
                .collect(),
            Vec::new(),
        ),
    };
    agents.sort_by(Agent::by_speed);
    agents.truncate(FALLBACK_AGENTS);
    let draft = Draft {
        id: format!("{}-routed", wt.id).parse()?,
        request,
        created_by: wt.created_by.clone(),
        parent_id: Some(wt.id.clone()),
        ppl: None,
        capped,
    };
    creation(s, &draft, &agents, now)
}

/// A warm transfer's metrics (WT item 6), from its alerts and the claim attempts in its history.
pub fn metrics(referral: &Referral, history: &[HistoryEntry]) -> Option<Metrics> {
    let wt = referral.warm_transfer.as_ref()?;
    Some(with_responses(wt, referral, history).metrics())
}

/// The warm transfer with its responses (in order), winner and outcome read from the referral and
/// its history.
fn with_responses(
    wt: &WarmTransfer,
    referral: &Referral,
    history: &[HistoryEntry],
) -> WarmTransfer {
    let mut full = wt.clone();
    full.responses = history
        .iter()
        .filter_map(|h| match &h.event {
            HistoryEvent::ClaimAttempt { agent_id, .. } if wt.alerted.contains(agent_id) => {
                Some(Response {
                    agent_id: agent_id.clone(),
                    at: h.at,
                })
            }
            _ => None,
        })
        .fold(Vec::new(), |mut seen: Vec<Response>, r| {
            if !seen.iter().any(|x| x.agent_id == r.agent_id) {
                seen.push(r);
            }
            seen
        });
    full.winner = referral.assigned_agent().cloned();
    full.outcome = match (&full.winner, referral.closure) {
        (Some(_), _) => Some(Outcome::Connected),
        (None, Some(Closure::TimedOut)) => Some(Outcome::TimedOut),
        _ => wt.outcome,
    };
    full
}

/// What completing a warm transfer came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Completed {
    pub referral_id: ReferralId,
    pub introduced: Vec<Introduction>,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Introduction {
    pub agent_id: AgentId,
    pub referral_id: ReferralId,
}

/// The winner's call has ended (`POST /warm-transfers/{id}/complete`, advisor): up to two more
/// agents are introduced, those who responded after the winner first in response order, then
/// other eligible agents by speed (WT-7). Each gets a referral of their own, created in the same
/// write that completes the transfer, and is told by SMS and push (the email with the client's
/// details follows from their claim). Completing twice introduces nobody twice.
pub async fn complete(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    now: Timestamp,
) -> Result<Completed, AppError> {
    actor.require(Role::Advisor)?;
    for _ in 0..ATTEMPTS {
        let stored = s
            .referrals
            .get_referral(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?;
        let mut referral = stored.value;
        let Some(wt) = referral.warm_transfer.clone() else {
            return Err(AppError::conflict(
                "not_a_warm_transfer",
                "this referral is not a warm transfer",
            ));
        };
        if referral.assignment().is_none() {
            return Err(AppError::conflict(
                "not_connected",
                "nobody took this warm transfer, so there is no call to complete",
            ));
        }
        let history = s.referrals.history(id).await?;
        let full = with_responses(&wt, &referral, &history);
        if wt.completed {
            return Ok(Completed {
                referral_id: id.clone(),
                introduced: introductions_of(id, &wt.introduced),
                metrics: full.metrics(),
            });
        }
        let others: Vec<AgentId> = {
            let mut eligible: Vec<Agent> = s
                .agents
                .agents_serving(&referral.lead.zip, referral.lead.client_type)
                .await?
                .into_iter()
                .filter(|a| {
                    warm_transfer::eligible(a, &referral.lead.zip, referral.lead.client_type, now)
                })
                .collect();
            eligible.sort_by(Agent::by_speed);
            eligible.into_iter().map(|a| a.id).collect()
        };
        let chosen = full.choose_introductions(&others);
        let by: Option<crate::domain::values::UserId> = Some(actor.user.clone());
        let entries: Vec<HistoryEntry> = chosen
            .iter()
            .map(|agent| {
                HistoryEntry::new(
                    now,
                    by.clone(),
                    HistoryEvent::Introduced {
                        agent_id: agent.clone(),
                        referral_id: introduced_id(id, agent),
                    },
                )
            })
            .collect();
        let mut done = wt.clone();
        done.completed = true;
        done.introduced = chosen.clone();
        done.responses = full.responses.clone();
        done.winner = full.winner.clone();
        done.outcome = full.outcome;
        referral.warm_transfer = Some(done);
        let introductions: Vec<Creation> = chosen
            .iter()
            .map(|agent| introduction(s, &referral, agent, now))
            .collect::<Result<_, _>>()?;
        let effects = Effects::new(key::version(id, stored.version + 1)).with(Effect::Publish(
            DomainEvent::WarmTransferCompleted {
                referral_id: id.clone(),
            },
        ));
        match s
            .referrals
            .update_with_children(
                &referral,
                stored.version,
                &entries,
                &effects,
                &introductions,
            )
            .await?
        {
            Spawned::Ok => {
                return Ok(Completed {
                    referral_id: id.clone(),
                    introduced: introductions_of(id, &chosen),
                    metrics: full.metrics(),
                });
            }
            Spawned::Stale | Spawned::CodeInUse => continue,
        }
    }
    Err(AppError::Busy(format!("referral {id} is changing")))
}

fn introduced_id(parent: &ReferralId, agent: &AgentId) -> ReferralId {
    // Ids are [A-Za-z0-9_-], so the joined id is one too.
    format!("{parent}-{agent}")
        .parse()
        .unwrap_or_else(|_| ReferralId::generate())
}

fn introductions_of(parent: &ReferralId, agents: &[AgentId]) -> Vec<Introduction> {
    agents
        .iter()
        .map(|a| Introduction {
            agent_id: a.clone(),
            referral_id: introduced_id(parent, a),
        })
        .collect()
}

/// The introduced agent's own referral, already theirs (WT-7), with the news by SMS and push;
/// the email with the client's details (now theirs) follows from the claim follow-up, which sees
/// the referral created assigned.
fn introduction(
    s: &Services,
    parent: &Referral,
    agent: &AgentId,
    now: Timestamp,
) -> Result<Creation, AppError> {
    let id = introduced_id(&parent.id, agent);
    let referral = Referral {
        briefing: parent.briefing.clone(),
        parent_id: Some(parent.id.clone()),
        assigned: Some(Assigned::claimed(
            agent.clone(),
            now,
            ClaimChannel::Introduction,
        )),
        ..Referral::offered(
            id.clone(),
            Program::WarmTransfer,
            parent.client.clone(),
            parent.lead.clone(),
            parent.created_by.clone(),
            now,
            [agent.clone()],
        )
    };
    let history = vec![HistoryEntry::new(
        now,
        None,
        HistoryEvent::Created {
            program: Program::WarmTransfer,
        },
    )];
    let summary = parent.lead.summary();
    let text = format!(
        "You have been introduced to a client after a warm transfer: {summary}. Their details are in your email and in the app: {}",
        s.config.app_link(&id)?
    );
    let title = format!("New introduction: {summary}");
    let to_agent = |message: Message| {
        Effect::Deliver(Delivery {
            key: key::offer(&id, agent, message.channel()),
            referral_id: Some(id.clone()),
            to: Recipient::Agent {
                agent_id: agent.clone(),
            },
            message,
        })
    };
    let effects = Effects::new(key::created(&id))
        .with(to_agent(Message::Sms { body: text.clone() }))
        .with(to_agent(Message::Push { title, body: text }));
    Ok(Creation {
        referral,
        history,
        effects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::intake::create_referral;
    use crate::app::intake::tests::{advisor, at, put_agents, queued, request};
    use crate::app::offer::timeout_timer;
    use crate::app::testing::services;
    use crate::domain::agent::Vacation;
    use crate::memory::{MemoryStore, Outbox, Sent};
    use crate::ports::{AgentDirectory, ReferralStore};

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    /// Agents w1..w6 serve 94110; w1 is the fastest, w6 the slowest. w5 opted out of warm
    /// transfers, w6 is on vacation.
    async fn market(store: &MemoryStore) {
        let ids = ["w1", "w2", "w3", "w4", "w5", "w6", "w7"];
        put_agents(store, &ids).await;
        for (i, a) in ids.iter().enumerate() {
            let mut agent = store.get_agent(&id(a)).await.unwrap().unwrap();
            agent.response_times.record(1_000 * (i as u64 + 1));
            match *a {
                "w5" => agent.warm_transfer = false,
                "w6" => {
                    agent.vacation = Some(
                        Vacation::new("2026-03-01".parse().unwrap(), "2026-03-09".parse().unwrap())
                            .unwrap(),
                    )
                }
                _ => {}
            }
            store.put_agent(&agent).await.unwrap();
        }
    }

    async fn phone_of(store: &MemoryStore, agent: &str) -> String {
        store
            .get_agent(&id(agent))
            .await
            .unwrap()
            .unwrap()
            .phone()
            .unwrap()
            .to_string()
    }

    const START: &str = "2026-03-02T17:00:00Z";

    async fn started(s: &Services, store: &MemoryStore) -> ReferralId {
        market(store).await;
        let wt = create_referral(
            s,
            &advisor(),
            request(Program::WarmTransfer, "seller"),
            None,
            at(START),
        )
        .await
        .unwrap();
        wt.id
    }

    fn scheduled(outbox: &Outbox) -> Vec<(String, Timestamp)> {
        outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Scheduled(timer) => Some((timer.name, timer.at)),
                _ => None,
            })
            .collect()
    }

    /// The digits of `agent`'s alert code for transfer `rid`: what they key in on the line (TX-4).
    async fn alert_code(store: &MemoryStore, rid: &ReferralId, agent: &str) -> String {
        let r = store.get_referral(rid).await.unwrap().unwrap().value;
        r.codes[&id(agent)].trim_start_matches('#').to_owned()
    }

    #[tokio::test]
    async fn wt_2_wt_3_five_eligible_agents_fastest_first_alerted_by_push_and_sms() {
        let (s, store, outbox) = services();
        let rid = started(&s, &store).await;
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        // w5 opted out and w6 is on vacation; w7, the slowest eligible, is the sixth.
        let alerted = &r.warm_transfer.as_ref().unwrap().alerted;
        assert_eq!(alerted, &["w1", "w2", "w3", "w4", "w7"].map(id));
        let messages = queued(&store);
        assert_eq!(messages.len(), 10, "push and SMS to each of five");
        for m in &messages {
            assert!(matches!(m.channel, "push" | "sms"));
            for secret in ["+14155559876", "casey@example.com", "after 5pm"] {
                assert!(!m.body.contains(secret), "GEN-3: {m:?}");
            }
            if m.channel == "sms" {
                assert!(m.body.contains("+15005550008"), "the line: {}", m.body);
                assert!(m.body.contains(&r.codes[&m.agent_id]), "{}", m.body);
            }
        }
        // WT-6: the response window closes 90 s after the start.
        let end = at(START) + warm_transfer::DEFAULT_TIMEOUT;
        assert_eq!(scheduled(&outbox), vec![(timeout_timer(&rid), end)]);
        assert_eq!(r.respond_by, Some(end));
    }

    #[tokio::test]
    async fn wt_4_wt_5_first_response_wins_and_holds_for_the_briefing() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let w3 = phone_of(&store, "w3").await;
        let xml = crate::twilio::render(
            &line_call(
                &s,
                &w3,
                Some(&alert_code(&store, &rid, "w3").await),
                at("2026-03-02T17:00:20Z"),
            )
            .await
            .unwrap(),
        );
        assert!(xml.contains(&format!(">wt-{rid}</Conference>")), "{xml}");
        assert!(xml.contains(r#"startConferenceOnEnter="false""#), "{xml}");
        // The briefing is read out while the winner holds, so the client never repeats it.
        assert!(xml.contains("after 5pm"), "{xml}");
        // Later responses lose, on the app or on the line.
        let e = claim_referral(
            &s,
            &id("w1"),
            &rid,
            ClaimChannel::App,
            at("2026-03-02T17:00:21Z"),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), "taken");
        let w2 = phone_of(&store, "w2").await;
        let late = crate::twilio::render(
            &line_call(
                &s,
                &w2,
                Some(&alert_code(&store, &rid, "w2").await),
                at("2026-03-02T17:00:22Z"),
            )
            .await
            .unwrap(),
        );
        assert!(late.contains("Another agent was faster"), "{late}");
        // The winner calling again (a dropped call) is put back in the room.
        let again = crate::twilio::render(
            &line_call(
                &s,
                &w3,
                Some(&alert_code(&store, &rid, "w3").await),
                at("2026-03-02T17:00:30Z"),
            )
            .await
            .unwrap(),
        );
        assert!(again.contains("<Conference"), "{again}");
        // A stranger's call joins nothing.
        let stranger = crate::twilio::render(
            &line_call(&s, "+14155550999", Some("1234"), at("2026-03-02T17:00:30Z"))
                .await
                .unwrap(),
        );
        assert!(!stranger.contains("<Conference"), "{stranger}");
    }

    #[tokio::test]
    async fn tx_4_caller_id_alone_never_claims_the_line_asks_for_the_alert_code() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let w3 = phone_of(&store, "w3").await;
        let now = at("2026-03-02T17:00:20Z");
        // A call presenting w3's number (caller ID is easily spoofed) is only asked for the code.
        let ask = crate::twilio::render(&line_call(&s, &w3, None, now).await.unwrap());
        assert!(ask.contains(r#"<Gather numDigits="4""#), "{ask}");
        assert!(!ask.contains("<Conference"), "{ask}");
        let code = alert_code(&store, &rid, "w3").await;
        let wrong = if code == "0000" { "1111" } else { "0000" };
        let refused = crate::twilio::render(&line_call(&s, &w3, Some(wrong), now).await.unwrap());
        assert!(
            !refused.contains("<Conference") && !refused.contains("after 5pm"),
            "{refused}"
        );
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), None, "nothing claimed");
        let joined = crate::twilio::render(&line_call(&s, &w3, Some(&code), now).await.unwrap());
        assert!(joined.contains("<Conference"), "{joined}");
    }

    #[tokio::test]
    async fn wt_6_nobody_in_time_tells_the_advisor_and_routes_the_client() {
        let (s, store, outbox) = services();
        let rid = started(&s, &store).await;
        let end = at(START) + warm_transfer::DEFAULT_TIMEOUT;
        // A response at the deadline, before the timer fires, is refused.
        let e = claim_referral(&s, &id("w1"), &rid, ClaimChannel::App, end)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "timed_out"));
        assert!(time_out(&s, &rid, end).await.unwrap());
        assert!(
            !time_out(&s, &rid, end).await.unwrap(),
            "a repeated timer does nothing"
        );
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.closure, Some(Closure::TimedOut));
        let history = store.history(&rid).await.unwrap();
        assert_eq!(
            metrics(&r, &history).unwrap().outcome,
            Some(Outcome::TimedOut)
        );
        crate::memory::deliver(&s, &outbox, end).await.unwrap();
        let emails = outbox.emails();
        let told: Vec<_> = emails
            .iter()
            .filter(|m| m.to.as_str() == "advisors@referrals.example.com")
            .collect();
        assert_eq!(told.len(), 1);
        // Ordinary routing: every agent serving the zip who is not away, opted in or not.
        let routed: ReferralId = format!("{rid}-routed").parse().unwrap();
        let child = store.get_referral(&routed).await.unwrap().unwrap().value;
        assert_eq!(child.program, Program::Routing);
        assert_eq!(child.parent_id, Some(rid.clone()));
        assert!(child.offers.contains_key(&id("w5")));
        assert!(!child.offers.contains_key(&id("w6")));
        assert!(told[0].body.contains(routed.as_str()));
        // The line now says the transfer has ended.
        let w1 = phone_of(&store, "w1").await;
        let xml = crate::twilio::render(
            &line_call(&s, &w1, Some(&alert_code(&store, &rid, "w1").await), end)
                .await
                .unwrap(),
        );
        assert!(xml.contains("has ended"), "{xml}");
    }

    #[tokio::test]
    async fn wt_6_a_winner_keeps_the_client_when_the_timer_fires() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let w1 = phone_of(&store, "w1").await;
        line_call(
            &s,
            &w1,
            Some(&alert_code(&store, &rid, "w1").await),
            at("2026-03-02T17:01:29Z"),
        )
        .await
        .unwrap();
        let end = at(START) + warm_transfer::DEFAULT_TIMEOUT;
        assert!(!time_out(&s, &rid, end).await.unwrap());
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), Some(&id("w1")));
        assert!(r.closure.is_none());
    }

    #[tokio::test]
    async fn wt_7_late_responders_are_introduced_first_in_response_order() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        for (agent, time) in [
            ("w4", "2026-03-02T17:00:10Z"),
            ("w3", "2026-03-02T17:00:12Z"),
            ("w2", "2026-03-02T17:00:15Z"),
        ] {
            let phone = phone_of(&store, agent).await;
            line_call(
                &s,
                &phone,
                Some(&alert_code(&store, &rid, agent).await),
                at(time),
            )
            .await
            .unwrap();
        }
        let done_at = at("2026-03-02T17:20:00Z");
        let e = complete(
            &s,
            &Actor {
                role: Role::Agent,
                ..advisor()
            },
            &rid,
            done_at,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 403);
        let done = complete(&s, &advisor(), &rid, done_at).await.unwrap();
        let introduced: Vec<&AgentId> = done.introduced.iter().map(|i| &i.agent_id).collect();
        assert_eq!(introduced, [&id("w3"), &id("w2")]);
        assert_eq!(
            done.metrics,
            Metrics {
                alerted: 5,
                responded: 3,
                time_to_first_response_ms: Some(10_000),
                outcome: Some(Outcome::Connected),
            }
        );
        for intro in &done.introduced {
            let child = store
                .get_referral(&intro.referral_id)
                .await
                .unwrap()
                .unwrap()
                .value;
            assert_eq!(child.assigned_agent(), Some(&intro.agent_id));
            assert_eq!(child.parent_id, Some(rid.clone()));
        }

        let intro_messages: Vec<_> = queued(&store)
            .into_iter()
            .filter(|m| m.body.starts_with("You have been introduced"))
            .collect();
        assert_eq!(intro_messages.len(), 4, "SMS and push to each");
        // Completing again introduces nobody twice.
        let again = complete(&s, &advisor(), &rid, done_at).await.unwrap();
        assert_eq!(again.introduced, done.introduced);
        assert_eq!(
            queued(&store)
                .iter()
                .filter(|m| m.body.starts_with("You have been introduced"))
                .count(),
            4
        );
        let history = store.history(&rid).await.unwrap();
        assert_eq!(
            history
                .iter()
                .filter(|h| matches!(h.event, HistoryEvent::Introduced { .. }))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn wt_7_with_one_late_responder_the_fastest_other_eligible_agent_follows() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        for (agent, time) in [
            ("w2", "2026-03-02T17:00:10Z"),
            ("w4", "2026-03-02T17:00:12Z"),
        ] {
            let phone = phone_of(&store, agent).await;
            line_call(
                &s,
                &phone,
                Some(&alert_code(&store, &rid, agent).await),
                at(time),
            )
            .await
            .unwrap();
        }
        let done = complete(&s, &advisor(), &rid, at("2026-03-02T17:20:00Z"))
            .await
            .unwrap();
        let introduced: Vec<&AgentId> = done.introduced.iter().map(|i| &i.agent_id).collect();
        // w4 responded late; then w1, the fastest eligible agent who is not the winner.
        assert_eq!(introduced, [&id("w4"), &id("w1")]);
    }

    #[tokio::test]
    async fn wt_8_opting_out_takes_effect_on_the_next_transfer() {
        let (s, store, _) = services();
        let first = started(&s, &store).await;
        let r = store.get_referral(&first).await.unwrap().unwrap().value;
        assert!(r.warm_transfer.unwrap().alerted.contains(&id("w1")));
        let mut w1 = store.get_agent(&id("w1")).await.unwrap().unwrap();
        w1.warm_transfer = false;
        store.put_agent(&w1).await.unwrap();
        let next = create_referral(
            &s,
            &advisor(),
            request(Program::WarmTransfer, "seller"),
            None,
            at("2026-03-02T18:00:00Z"),
        )
        .await
        .unwrap();
        assert!(!next.offered_to.contains(&id("w1")));
        assert_eq!(next.offered_to.len(), 4, "w2, w3, w4 and w7 remain");
    }
}
