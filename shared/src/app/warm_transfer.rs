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
use super::phone::{guessing_locked, wrong_guess};
use super::{Actor, AppError, Role, Services};
use crate::domain::agent::Agent;
use crate::domain::referral::{
    Assigned, ClaimChannel, Closure, HistoryEntry, HistoryEvent, Program, Referral,
};
use crate::domain::texts::LOCKED_TEXT;
use crate::domain::values::{AgentId, Phone, ReferralId};
use crate::domain::warm_transfer::{
    self, Applied, ClientConnect, ConferenceEvent, Leg, LegChoice, Metrics, Outcome, Response,
    WarmTransfer, choose_agents,
};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, key};
use crate::ports::{Creation, DomainEvent, Saved, Spawned};

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
    // Nobody to alert: the referral is stored for the advisors' queue all the same (RC-2).
    let Ok(chosen) = choose_agents(
        &candidates,
        members.as_deref(),
        &request.zip,
        request.client_type,
        now,
    ) else {
        return Ok(Vec::new());
    };
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
    let phone = from.parse::<Phone>().ok();
    let agent = match &phone {
        Some(phone) => s.agents.agent_by_phone(phone).await?,
        None => None,
    };
    let (Some(agent), Some(phone)) = (agent, phone) else {
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
        // An agent holding a PIN for this referral (LR-10) may enter it instead; the longer PIN
        // sets how many keys are gathered, and `#` ends a shorter code.
        let pin = s.lines.claim_calls(&id, &agent).await?.value.pin;
        let (digits, prompt) = match pin {
            Some(pin) => (
                code.len().max(pin.code.len()),
                "Enter the code from your warm-transfer alert, or your PIN, then press pound.",
            ),
            None => (code.len(), "Enter the code from your warm-transfer alert."),
        };
        return Ok(Voice::Ask {
            digits: u8::try_from(digits).unwrap_or(u8::MAX),
            prompt: prompt.into(),
            action: s.config.webhook("/twilio/voice/warm-transfer")?,
            otherwise: Some("We did not hear a code. Goodbye.".into()),
        });
    };
    let locked = format!("{LOCKED_TEXT} Goodbye.");
    // A spoofed caller ID gets three guesses an hour, not one per call (TX-5).
    if guessing_locked(s, &phone, now).await? {
        return Ok(Voice::goodbye(locked));
    }
    let matches = digits == code || {
        // Only a wrong code costs the PIN's read.
        let calls = s.lines.claim_calls(&id, &agent).await?.value;
        calls.pin.is_some_and(|pin| pin.accepts(digits))
    };
    if !matches {
        if wrong_guess(s, &phone, now, true).await? {
            return Ok(Voice::goodbye(locked));
        }
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
            label: Leg::Agent,
            status_callback: conference_callback(s, &id)?,
        },
    })
}

/// The webhook the provider requests when a leg the system placed answers (WT-10).
fn leg_url(s: &Services, id: &ReferralId, leg: Leg) -> Result<String, AppError> {
    s.config.webhook(&format!(
        "/twilio/voice/warm-transfer?referralId={id}&leg={}",
        leg.as_str()
    ))
}

/// Where the provider reports how a leg the system placed ended (busy, no answer, ...).
fn leg_status_url(s: &Services, id: &ReferralId, leg: Leg) -> Result<String, AppError> {
    s.config.webhook(&format!(
        "/twilio/voice/status?referralId={id}&leg={}",
        leg.as_str()
    ))
}

/// A call the system places for one leg of the transfer's conference.
fn leg_delivery(
    s: &Services,
    id: &ReferralId,
    leg: Leg,
    to: Recipient,
    attempt: u32,
) -> Result<Effect, AppError> {
    Ok(Effect::Deliver(Delivery {
        key: format!("wt-leg#{id}#{}#{attempt}", leg.as_str()),
        referral_id: Some(id.clone()),
        to,
        message: Message::Call {
            url: leg_url(s, id, leg)?,
            status_callback: leg_status_url(s, id, leg)?,
        },
    }))
}

/// The calls a warm transfer's win owes (WT-10), committed with the claim's follow-up: the
/// winner is called into the conference unless they won on the line (and so are on it), and
/// the advisor is called at the phone they gave. However the winner responded (app, text, claim
/// call, PIN), they end up in the same room.
pub fn leg_calls(s: &Services, referral: &Referral) -> Result<Vec<Effect>, AppError> {
    let (Some(wt), Some(assignment)) = (&referral.warm_transfer, referral.assignment()) else {
        return Ok(Vec::new());
    };
    let id = &referral.id;
    let mut calls = Vec::new();
    if assignment.channel != ClaimChannel::WarmTransferLine {
        let winner = Recipient::Agent {
            agent_id: assignment.agent_id.clone(),
        };
        calls.push(leg_delivery(s, id, Leg::Agent, winner, 1)?);
    }
    if let Some(phone) = &wt.advisor.phone {
        let advisor = Recipient::Phone {
            phone: phone.clone(),
        };
        calls.push(leg_delivery(s, id, Leg::Advisor, advisor, 1)?);
    }
    Ok(calls)
}

/// A leg the system placed has answered (`POST /twilio/voice/warm-transfer?referralId&leg`,
/// WT-10). The winner is asked for their alert's code first, as on the line (TX-4: whoever
/// answers the winner's phone does not take the client by answering), then holds in the room
/// hearing the briefing; the advisor starts the conference hearing the lead details; the client
/// joins the two.
pub async fn leg_call(
    s: &Services,
    id: &ReferralId,
    leg: Leg,
    digits: Option<&str>,
) -> Result<Voice, AppError> {
    let referral = s
        .referrals
        .get_referral(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?
        .value;
    let ended = Voice::goodbye("This warm transfer has ended. Goodbye.");
    let (Some(wt), Some(winner)) = (&referral.warm_transfer, referral.assigned_agent()) else {
        return Ok(ended);
    };
    if wt.completed || referral.closure.is_some() {
        return Ok(ended);
    }
    let join = |text: String, label: Leg, start_on_enter: bool, end_on_exit: bool| {
        Ok::<_, AppError>(Voice::Join {
            text,
            leg: ConferenceLeg {
                room: room(id),
                start_on_enter,
                end_on_exit,
                label,
                status_callback: conference_callback(s, id)?,
            },
        })
    };
    let summary = referral.lead.summary();
    match leg {
        Leg::Agent => {
            let code = referral
                .codes
                .get(winner)
                .map(|c| c.trim_start_matches('#'))
                .unwrap_or_default();
            match digits {
                None => Ok(Voice::Ask {
                    digits: u8::try_from(code.len()).unwrap_or(u8::MAX),
                    prompt:
                        "You won a warm transfer. Enter the code from your alert to join the call."
                            .into(),
                    action: leg_url(s, id, Leg::Agent)?,
                    otherwise: Some("We did not hear a code. Goodbye.".into()),
                }),
                Some(d) if !code.is_empty() && d == code => join(
                    format!(
                        "You have the warm transfer: {summary}. Briefing: {} Please hold: the advisor briefs you, then brings the client in.",
                        referral.briefing
                    ),
                    Leg::Agent,
                    false,
                    true,
                ),
                Some(_) => Ok(Voice::goodbye(
                    "That code does not match your alert, so this call cannot join the transfer. Goodbye.",
                )),
            }
        }
        Leg::Advisor => join(
            format!(
                "Your warm transfer has an agent: {summary}. Briefing: {} Brief the agent, then connect the client from the app; you leave the call when the client joins.",
                referral.briefing
            ),
            Leg::Advisor,
            true,
            false,
        ),
        // The client and the winner are the call now: either hanging up ends it.
        Leg::Client => join(
            "Thank you for holding. Connecting you with your agent now.".into(),
            Leg::Client,
            true,
            true,
        ),
    }
}

/// How a leg the system placed ended (`POST /twilio/voice/status?referralId&leg`). A call that
/// did not reach its person (busy, no answer, failed) is texted to the advisor, once per call,
/// with what they can do: the winner can still dial the line with their code, the client can be
/// connected again, and `complete` hands the client to other agents (WT-7). When the winner's or
/// the client's leg fails while the advisor is on their call in the conference, the advisor
/// also hears it there and chooses (WT-10, [`leg_choice`]): 1 calls that person again, 2 gives
/// up on the winner and sends the client to ordinary routing; holding returns them to the call.
/// The text and the call's new instructions are committed together, once per failed call.
pub async fn leg_status(
    s: &Services,
    id: &ReferralId,
    leg: Leg,
    call_status: &str,
    call_sid: &str,
) -> Result<(), AppError> {
    if !crate::domain::claim::call_failed(call_status) {
        return Ok(());
    }
    let Some(stored) = s.referrals.get_referral(id).await? else {
        return Err(AppError::NotFound(format!("no referral {id}")));
    };
    let referral = stored.value;
    let Some(wt) = referral.warm_transfer.as_ref() else {
        return Ok(());
    };
    let what = call_status.replace('-', " ");
    // The advisor hears it on their call only while a choice can still change something.
    let open = referral.assignment().is_some() && referral.closure.is_none() && !wt.completed;
    let advisor_call = match leg {
        Leg::Agent | Leg::Client if open => wt.conference.on_the_line(Leg::Advisor),
        _ => None,
    };
    let mut effects = Effects::new(key::webhook(&format!("{call_sid}#failed")));
    if let Some(advisor_call) = advisor_call {
        let who = match leg {
            Leg::Client => "client",
            _ => "agent",
        };
        let choose = Voice::Choose {
            prompt: format!(
                "The {who}'s phone gave {what}. Press 1 to call the {who} again. Press 2 to give up on this agent and send the client to ordinary routing. Or stay on the line to go back to the call."
            ),
            action: s.config.webhook(&format!(
                "/twilio/voice/leg-choice?referralId={id}&leg={}&failed={call_sid}",
                leg.as_str()
            ))?,
            back: advisor_leg(s, id)?,
        };
        effects.push(Effect::Deliver(Delivery {
            key: format!("wt-leg-failed-call#{call_sid}"),
            referral_id: Some(id.clone()),
            to: Recipient::Call {
                call_sid: advisor_call.to_owned(),
            },
            message: Message::CallUpdate {
                twiml: crate::twilio::render(&choose),
            },
        }));
    }
    let Some(phone) = wt.advisor.phone.clone() else {
        if !effects.is_empty() {
            s.effects.commit_effects(&effects).await?;
        }
        return Ok(());
    };
    let body = match leg {
        Leg::Agent => format!(
            "Warm transfer {id}: the agent's phone gave {what}. They can still join by dialing the warm-transfer line with their alert code; or complete the transfer to introduce other agents."
        ),
        Leg::Client => format!(
            "Warm transfer {id}: the client's phone gave {what}. Connect the client again from the app to retry."
        ),
        Leg::Advisor => format!(
            "Warm transfer {id}: your phone gave {what}. The agent holds in the conference; connect the client from the app."
        ),
    };
    effects.push(Effect::Deliver(Delivery {
        key: format!("wt-leg-failed#{call_sid}"),
        referral_id: Some(id.clone()),
        to: Recipient::Phone { phone },
        message: Message::Sms { body },
    }));
    s.effects.commit_effects(&effects).await?;
    Ok(())
}

/// The advisor's place in the transfer's conference: they start it and may leave it.
fn advisor_leg(s: &Services, id: &ReferralId) -> Result<ConferenceLeg, AppError> {
    Ok(ConferenceLeg {
        room: room(id),
        start_on_enter: true,
        end_on_exit: false,
        label: Leg::Advisor,
        status_callback: conference_callback(s, id)?,
    })
}

/// The advisor's key press after a leg failed (`POST /twilio/voice/leg-choice?referralId&leg&failed`,
/// WT-10). 1: that person (the winner, or the client) is called again, one new call committed
/// with the transfer's new version; 2: the advisor gives up on the winner, who no longer holds
/// the referral, and the client goes to ordinary routing as a new referral, created in the same
/// write that closes the transfer (the fallback of an unanswered window, WT-6), and the winner is
/// told by text. Anything else returns the advisor to the call. One choice counts per failed
/// call: the webhook posted again changes nothing and answers as the state now stands.
pub async fn leg_choice(
    s: &Services,
    id: &ReferralId,
    leg: Leg,
    failed_call: &str,
    digits: Option<&str>,
    now: Timestamp,
) -> Result<Voice, AppError> {
    let choice = LegChoice::from_digits(digits);
    let back = |text: &str| -> Result<Voice, AppError> {
        Ok(Voice::Join {
            text: text.into(),
            leg: advisor_leg(s, id)?,
        })
    };
    let routed = Voice::goodbye(format!(
        "The client has gone to ordinary routing as referral {}. You can leave this call. Goodbye.",
        routed_id(id)?
    ));
    for _ in 0..ATTEMPTS {
        let stored = s
            .referrals
            .get_referral(id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?;
        let mut referral = stored.value;
        if referral.closure == Some(Closure::WinnerNotReached) {
            return Ok(routed);
        }
        let winner = referral.assigned_agent().cloned();
        let client_phone = referral.client.phone.clone();
        let closed = referral.closure.is_some();
        let Some(wt) = referral.warm_transfer.as_mut() else {
            return Err(AppError::NotFound(format!("{id} is not a warm transfer")));
        };
        let Some(winner) = winner.filter(|_| !closed && !wt.completed) else {
            return Ok(Voice::goodbye("This warm transfer has ended. Goodbye."));
        };
        if choice == LegChoice::Back || leg == Leg::Advisor || wt.chosen.contains(failed_call) {
            return back("Back to the call.");
        }
        wt.chosen.insert(failed_call.to_owned());
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        if choice == LegChoice::CallAgain {
            let (text, call) = match leg {
                Leg::Client => {
                    wt.client_connects += 1;
                    let client = Recipient::Phone {
                        phone: client_phone,
                    };
                    let call = leg_delivery(s, id, Leg::Client, client, wt.client_connects)?;
                    ("Calling the client again. Please hold.", call)
                }
                _ => {
                    wt.winner_recalls += 1;
                    let agent = Recipient::Agent {
                        agent_id: winner.clone(),
                    };
                    // The first call to the winner was attempt 1 (the win's).
                    let call = leg_delivery(s, id, Leg::Agent, agent, wt.winner_recalls + 1)?;
                    ("Calling the agent again. Please hold.", call)
                }
            };
            effects.push(call);
            if s.referrals
                .update_referral(&referral, stored.version, &[], &effects)
                .await?
                == Saved::Ok
            {
                return back(text);
            }
            continue;
        }
        // Key 2: the winner is let go and the client goes to ordinary routing.
        referral.assigned = None;
        referral.closure = Some(Closure::WinnerNotReached);
        let entry = HistoryEntry::new(
            now,
            None,
            HistoryEvent::WarmTransferRouted {
                agent_id: winner.clone(),
            },
        );
        let fallback = fallback(s, &referral, now).await?;
        effects.push(Effect::Deliver(Delivery {
            key: format!("wt-released#{id}"),
            referral_id: Some(id.clone()),
            to: Recipient::Agent { agent_id: winner },
            message: Message::Sms {
                body: format!(
                    "We could not reach you by phone for the warm transfer ({}), so it is no longer yours: the advisor has sent the client to ordinary routing.",
                    referral.lead.summary()
                ),
            },
        }));
        if save_routed(s, &referral, stored.version, entry, &effects, &fallback).await? {
            return Ok(routed);
        }
    }
    Err(AppError::Busy(format!("referral {id} is changing")))
}

/// The ordinary-routing referral a warm transfer falls back to (WT-6, WT-10): derived from the
/// transfer's id, so it is created once.
fn routed_id(id: &ReferralId) -> Result<ReferralId, AppError> {
    Ok(format!("{id}-routed").parse()?)
}

/// What `connect-client` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnecting {
    pub referral_id: ReferralId,
    /// `moved`: the advisor's live call with the client was moved into the conference;
    /// `called`: the system calls the client's phone.
    pub client_leg: &'static str,
    /// Whether the advisor's leg is taken out of the conference.
    pub advisor_leaves: bool,
}

/// The briefing is done (`POST /warm-transfers/{id}/connect-client`, the advisor who started
/// it, WT-5, WT-10): the client joins the winner in the conference, by moving the advisor's
/// live call with the client (`clientCallSid`) in, or by calling the client's phone; and the
/// advisor's leg is taken out. Committed with the referral's new version, so each request owes
/// exactly its calls; asking again (the client's phone did not answer) places the client leg
/// again, by calling their phone. A request retried with its `Idempotency-Key` places nothing
/// again and answers as the first did (EF-3).
pub async fn connect_client(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    idempotency_key: Option<&str>,
) -> Result<ClientConnecting, AppError> {
    actor.require(Role::Advisor)?;
    let request = idempotency_key
        .map(|key| super::idempotent_id(actor, key, "connect-"))
        .transpose()?;
    let mut edit = super::Editing::new(s, id);
    loop {
        let stored = edit.read().await?;
        let mut referral = stored.value;
        if referral.created_by != actor.user {
            return Err(AppError::Forbidden(
                "only the advisor who started this warm transfer connects its client".into(),
            ));
        }
        let assigned = referral.assignment().is_some();
        let client_phone = referral.client.phone.clone();
        let closed = referral.closure.is_some();
        let Some(wt) = referral.warm_transfer.as_mut() else {
            return Err(AppError::conflict(
                "not_a_warm_transfer",
                "this referral is not a warm transfer",
            ));
        };
        if let Some(done) = request.as_ref().and_then(|r| wt.connect_requests.get(r)) {
            return Ok(ClientConnecting {
                referral_id: id.clone(),
                client_leg: if done.moved { "moved" } else { "called" },
                advisor_leaves: done.advisor_leaves,
            });
        }
        if !assigned || closed {
            return Err(AppError::conflict(
                "not_connected",
                "no agent has taken this warm transfer, so there is nobody to connect the client to",
            ));
        }
        if wt.completed {
            return Err(AppError::conflict(
                "completed",
                "this warm transfer's call is over",
            ));
        }
        if wt.conference.on_the_line(Leg::Client).is_some() {
            return Err(AppError::conflict(
                "already_connected",
                "the client is already on the call",
            ));
        }
        wt.client_connects += 1;
        let attempt = wt.client_connects;
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        let client_leg = match (&wt.client_call_sid, attempt) {
            (Some(call_sid), 1) => {
                let joined = crate::twilio::render(&Voice::Join {
                    text: "Thank you for holding. Connecting you with your agent now.".into(),
                    leg: ConferenceLeg {
                        room: room(id),
                        start_on_enter: true,
                        end_on_exit: true,
                        label: Leg::Client,
                        status_callback: conference_callback(s, id)?,
                    },
                });
                effects.push(call_update(id, "client", attempt, call_sid, joined));
                "moved"
            }
            _ => {
                let client = Recipient::Phone {
                    phone: client_phone,
                };
                effects.push(leg_delivery(s, id, Leg::Client, client, attempt)?);
                "called"
            }
        };
        let advisor_leaves = match wt.conference.on_the_line(Leg::Advisor) {
            Some(call_sid) => {
                let goodbye = crate::twilio::render(&Voice::goodbye(
                    "The client is joining the agent now. You have left the call. Thank you.",
                ));
                effects.push(call_update(id, "advisor-out", attempt, call_sid, goodbye));
                true
            }
            None => false,
        };
        if let Some(request) = &request {
            let done = ClientConnect {
                moved: client_leg == "moved",
                advisor_leaves,
            };
            wt.connect_requests.insert(request.clone(), done);
        }
        if edit.save(&referral, stored.version, &[], &effects).await? {
            return Ok(ClientConnecting {
                referral_id: id.clone(),
                client_leg,
                advisor_leaves,
            });
        }
    }
}

/// New instructions for a live call of the transfer.
fn call_update(id: &ReferralId, what: &str, attempt: u32, call_sid: &str, twiml: String) -> Effect {
    Effect::Deliver(Delivery {
        key: format!("wt-{what}#{id}#{attempt}"),
        referral_id: Some(id.clone()),
        to: Recipient::Call {
            call_sid: call_sid.to_owned(),
        },
        message: Message::CallUpdate { twiml },
    })
}

/// Where a transfer's conference reports joins, leaves and its end (WT-11): the referral is in
/// the query, which the provider signs with the rest.
fn conference_callback(s: &Services, id: &ReferralId) -> Result<String, AppError> {
    s.config
        .webhook(&format!("/twilio/voice/conference?referralId={id}"))
}

/// One status callback of a transfer's conference (`POST /twilio/voice/conference`), as the
/// provider signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceCallback {
    pub conference_sid: String,
    pub sequence_number: String,
    pub event: ConferenceEvent,
}

impl ConferenceCallback {
    /// From the callback's fields (`StatusCallbackEvent`, `ConferenceSid`, `SequenceNumber`,
    /// `CallSid`, `ParticipantLabel`); `field` answers a field or refuses its absence.
    pub fn parse<'a>(
        field: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<ConferenceCallback, AppError> {
        let required = |name: &str| {
            field(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AppError::BadRequest(format!("the callback lacks {name}")))
        };
        let leg = field("ParticipantLabel").and_then(Leg::parse);
        let event = match required("StatusCallbackEvent")? {
            "participant-join" => ConferenceEvent::Joined {
                leg,
                call_sid: required("CallSid")?.to_owned(),
            },
            "participant-leave" => ConferenceEvent::Left {
                leg,
                call_sid: required("CallSid")?.to_owned(),
            },
            "conference-end" => ConferenceEvent::Ended,
            _ => ConferenceEvent::Other,
        };
        Ok(ConferenceCallback {
            conference_sid: required("ConferenceSid")?.to_owned(),
            sequence_number: required("SequenceNumber")?.to_owned(),
            event,
        })
    }
}

/// A status callback of the transfer's conference (WT-10, WT-11): the legs, their labels and
/// call SIDs are kept on the referral; when the winner's call with the client ends (either
/// leaves, or the conference ends, once both had joined) the introductions start by themselves.
/// Each callback counts once by its conference and sequence number, so a repeat changes nothing
/// and introduces nobody twice; the introductions are made before the callback is recorded, so
/// a callback whose handling died halfway does the rest when the provider sends it again.
pub async fn conference_event(
    s: &Services,
    id: &ReferralId,
    callback: &ConferenceCallback,
    now: Timestamp,
) -> Result<(), AppError> {
    let key = format!("{}#{}", callback.conference_sid, callback.sequence_number);
    let mut edit = super::Editing::new(s, id);
    loop {
        let stored = edit.read().await?;
        let mut referral = stored.value;
        let assigned = referral.assignment().is_some();
        let Some(wt) = referral.warm_transfer.as_mut() else {
            return Err(AppError::NotFound(format!("{id} is not a warm transfer")));
        };
        let completed = wt.completed;
        match wt
            .conference
            .apply(&key, &callback.conference_sid, &callback.event, now)
        {
            Applied::Repeated => return Ok(()),
            Applied::CallEnded if assigned && !completed => {
                introduce(s, id, None, now).await?;
                // Read again: the introductions changed the referral.
                continue;
            }
            Applied::CallEnded | Applied::Recorded => {}
        }
        if edit
            .save(&referral, stored.version, &[], &Effects::default())
            .await?
        {
            return Ok(());
        }
    }
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
        let effects = timed_out_effects(s, &referral, &routed.referral.id, offered)?;
        if save_routed(s, &referral, stored.version, entry, &effects, &routed).await? {
            return Ok(true);
        }
    }
    Err(AppError::Busy(format!("referral {id} is changing")))
}

/// Saves a transfer that ends in ordinary routing (WT-6, WT-10) with its history entry, the
/// effects it owes and the routed referral, in one write; false when someone else wrote first.
async fn save_routed(
    s: &Services,
    referral: &Referral,
    version: u64,
    entry: HistoryEntry,
    effects: &Effects,
    routed: &Creation,
) -> Result<bool, AppError> {
    let saved = s
        .referrals
        .update_with_children(
            referral,
            version,
            &[entry],
            effects,
            std::slice::from_ref(routed),
        )
        .await?;
    Ok(saved == Spawned::Ok)
}

/// What an unanswered transfer owes its advisor (WT-6): an email to the address their token
/// carried when they started it (the advisors' shared address for a token without one) and a
/// text to the phone they gave, each saying where the client went.
fn timed_out_effects(
    s: &Services,
    referral: &Referral,
    routed: &ReferralId,
    offered: usize,
) -> Result<Effects, AppError> {
    let id = &referral.id;
    let advisor = referral
        .warm_transfer
        .as_ref()
        .map(|wt| wt.advisor.clone())
        .unwrap_or_default();
    let email = match advisor.email {
        Some(email) => email,
        None => s.config.advisor_email()?.clone(),
    };
    let summary = referral.lead.summary();
    let mut effects = Effects::new(key::timed_out(id)).with(Effect::Deliver(Delivery {
        key: format!("wt-timeout-email#{id}"),
        referral_id: Some(id.clone()),
        to: Recipient::Email { email },
        message: Message::email(
            format!("Warm transfer unanswered: {summary}"),
            format!(
                "Nobody took warm transfer {id} within the time allowed. The client has gone to ordinary routing as referral {routed} ({offered} agents offered)."
            ),
        ),
    }));
    if let Some(phone) = advisor.phone {
        effects.push(Effect::Deliver(Delivery {
            key: format!("wt-timeout-sms#{id}"),
            referral_id: Some(id.clone()),
            to: Recipient::Phone { phone },
            message: Message::Sms {
                body: format!(
                    "No agent took your warm transfer ({summary}) in time. The client has gone to ordinary routing as referral {routed}."
                ),
            },
        }));
    }
    Ok(effects)
}

/// The ordinary-routing referral of an unanswered warm transfer: the team's broadcast for a
/// team, else the eligible agents for the zip and type, fastest first. Its id is derived from the
/// transfer's, so it is created once.
async fn fallback(s: &Services, wt: &Referral, now: Timestamp) -> Result<Creation, AppError> {
    let request = NewReferral {
        program: Program::Routing,
        client: Some(wt.client.clone()),
        client_type: wt.lead.client_type,
        zip: wt.lead.zip.clone(),
        price_range: wt.lead.price_range.clone(),
        timeline: wt.lead.timeline.clone(),
        briefing: wt.briefing.clone(),
        team_id: wt.team_id.clone(),
        call_first: false,
        advisor_phone: wt.advisor_phone.clone(),
        advisor_email: wt.advisor_email.clone(),
        client_call_sid: None,
        reoffer_of: None,
    };
    let (mut agents, capped) = match &wt.team_id {
        Some(_) => {
            let team = team_recipients(s, &request, now).await?;
            (team.agents, team.capped)
        }
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
        id: routed_id(&wt.id)?,
        request,
        created_by: wt.created_by.clone(),
        parent_id: Some(wt.id.clone()),
        ppl: None,
        capped,
        duplicate_of: None,
        held_back: Vec::new(),
        contact_keys: Vec::new(),
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
        (None, Some(Closure::WinnerNotReached)) => Some(Outcome::NotConnected),
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

/// The advisor says the winner's call has ended (`POST /warm-transfers/{id}/complete`): for a
/// call that ended early, before the conference could tell (WT-11). See [`introduce`].
pub async fn complete(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    now: Timestamp,
) -> Result<Completed, AppError> {
    actor.require(Role::Advisor)?;
    introduce(s, id, Some(actor.user.clone()), now).await
}

/// The winner's call has ended: up to two more agents are introduced, those who responded after
/// the winner first in response order, then other eligible agents by speed (WT-7). Each gets a
/// referral of their own, created in the same write that completes the transfer, and is told by
/// SMS and push (the email with the client's details follows from their claim). Completing
/// twice, by the advisor or by the conference's end, introduces nobody twice.
async fn introduce(
    s: &Services,
    id: &ReferralId,
    by: Option<crate::domain::values::UserId>,
    now: Timestamp,
) -> Result<Completed, AppError> {
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
            duplicate_of: None,
            reoffer_of: None,
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
pub(crate) mod tests {
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
    async fn tx_4_the_line_takes_the_agents_pin_as_well_as_the_alert_code() {
        use crate::domain::claim::{ClaimCalls, Pin};
        use crate::ports::ClaimLines;
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let w3 = phone_of(&store, "w3").await;
        let now = at("2026-03-02T17:00:20Z");
        let calls = ClaimCalls {
            pin: Some(Pin::from_random(246_810)),
            ..ClaimCalls::default()
        };
        store
            .save_claim_calls(&rid, &id("w3"), &calls, 0, &[], &Effects::default())
            .await
            .unwrap();
        // The PIN is longer than the code: the line gathers enough keys for it.
        let ask = crate::twilio::render(&line_call(&s, &w3, None, now).await.unwrap());
        assert!(ask.contains(r#"<Gather numDigits="6""#), "{ask}");
        assert!(ask.contains("or your PIN"), "{ask}");
        // Another agent's PIN is no key to w3's line.
        let w2 = phone_of(&store, "w2").await;
        let refused =
            crate::twilio::render(&line_call(&s, &w2, Some("246810"), now).await.unwrap());
        assert!(!refused.contains("<Conference"), "{refused}");
        let joined = crate::twilio::render(&line_call(&s, &w3, Some("246810"), now).await.unwrap());
        assert!(joined.contains("<Conference"), "{joined}");
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), Some(&id("w3")));
    }

    #[tokio::test]
    async fn tx_5_three_wrong_codes_on_the_line_lock_it_even_for_the_right_code() {
        let (s, store, outbox) = services();
        let rid = started(&s, &store).await;
        let w3 = phone_of(&store, "w3").await;
        let now = at("2026-03-02T17:00:20Z");
        let code = alert_code(&store, &rid, "w3").await;
        let wrong = if code == "0000" { "1111" } else { "0000" };
        for _ in 0..2 {
            let refused =
                crate::twilio::render(&line_call(&s, &w3, Some(wrong), now).await.unwrap());
            assert!(refused.contains("does not match"), "{refused}");
        }
        let locked = crate::twilio::render(&line_call(&s, &w3, Some(wrong), now).await.unwrap());
        assert!(locked.contains("locked for an hour"), "{locked}");
        let still = crate::twilio::render(&line_call(&s, &w3, Some(&code), now).await.unwrap());
        assert!(
            still.contains("locked for an hour") && !still.contains("<Conference"),
            "{still}"
        );
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), None);
        crate::memory::deliver(&s, &outbox, now).await.unwrap();
        let told = outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::Sms { to, body } if to.as_str() == w3 && body.contains("locked")))
            .count();
        assert_eq!(told, 1, "the phone is told of the lock by text, once");
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

    /// WT-6, WT-12: the advisor is told at the address their token carried and the phone they
    /// gave, once however often the timer fires.
    #[tokio::test]
    async fn wt_6_the_advisor_who_started_it_is_told_by_sms_and_email() {
        let (s, store, outbox) = services();
        market(&store).await;
        let mut req = request(Program::WarmTransfer, "seller");
        req.advisor_phone = Some("+16505550123".parse().unwrap());
        req.advisor_email = Some("ana.advisor@example.com".parse().unwrap());
        let rid = create_referral(&s, &advisor(), req, None, at(START))
            .await
            .unwrap()
            .id;
        let end = at(START) + warm_transfer::DEFAULT_TIMEOUT;
        assert!(time_out(&s, &rid, end).await.unwrap());
        assert!(!time_out(&s, &rid, end).await.unwrap());
        crate::memory::deliver(&s, &outbox, end).await.unwrap();
        let emails = outbox.emails();
        let to_advisor: Vec<_> = emails
            .iter()
            .filter(|m| m.to.as_str() == "ana.advisor@example.com")
            .collect();
        assert_eq!(to_advisor.len(), 1);
        assert!(to_advisor[0].body.contains(rid.as_str()));
        assert!(
            !emails
                .iter()
                .any(|m| m.to.as_str() == "advisors@referrals.example.com")
        );
        let texts: Vec<String> = outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Sms { to, body } if to.as_str() == "+16505550123" => Some(body),
                _ => None,
            })
            .collect();
        assert_eq!(texts.len(), 1, "{texts:?}");
        assert!(texts[0].contains(&format!("{rid}-routed")), "{}", texts[0]);
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

    /// A status callback of conference `CF1`, numbered `seq`, about `call` (SID, label).
    pub(crate) fn callback(
        seq: u32,
        event: &str,
        call: Option<(&str, &str)>,
    ) -> ConferenceCallback {
        let mut fields = vec![
            ("ConferenceSid", "CF1".to_owned()),
            ("SequenceNumber", seq.to_string()),
            ("StatusCallbackEvent", event.to_owned()),
        ];
        if let Some((sid, label)) = call {
            fields.push(("CallSid", sid.to_owned()));
            fields.push(("ParticipantLabel", label.to_owned()));
        }
        ConferenceCallback::parse(|name| {
            fields
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        })
        .unwrap()
    }

    /// WT-11: when the winner's call with the client ends, the introductions start by
    /// themselves; every callback arriving twice introduces nobody twice, and the advisor's
    /// `complete` afterwards answers the same introductions.
    #[tokio::test]
    async fn wt_11_the_end_of_the_winners_call_with_the_client_introduces_once() {
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
        let events = [
            callback(1, "conference-start", None),
            callback(2, "participant-join", Some(("CA-agent", "agent"))),
            callback(3, "participant-join", Some(("CA-advisor", "advisor"))),
            callback(4, "participant-join", Some(("CA-client", "client"))),
            callback(5, "participant-leave", Some(("CA-advisor", "advisor"))),
        ];
        let now = at("2026-03-02T17:05:00Z");
        for e in events.iter().chain(&events) {
            conference_event(&s, &rid, e, now).await.unwrap();
        }
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        let wt = r.warm_transfer.unwrap();
        assert!(!wt.completed, "the advisor leaving ends nothing");
        assert_eq!(
            wt.conference.participant(Leg::Client).unwrap().call_sid,
            "CA-client"
        );
        let end = [
            callback(6, "participant-leave", Some(("CA-agent", "agent"))),
            callback(7, "conference-end", None),
        ];
        let ended = at("2026-03-02T17:20:00Z");
        for e in end.iter().chain(&end) {
            conference_event(&s, &rid, e, ended).await.unwrap();
        }
        let intros: Vec<_> = queued(&store)
            .into_iter()
            .filter(|m| m.body.starts_with("You have been introduced"))
            .collect();
        assert_eq!(intros.len(), 4, "SMS and push to each of two, once");
        let history = store.history(&rid).await.unwrap();
        let introduced: Vec<&AgentId> = history
            .iter()
            .filter_map(|h| match &h.event {
                HistoryEvent::Introduced { agent_id, .. } => Some(agent_id),
                _ => None,
            })
            .collect();
        assert_eq!(introduced, [&id("w3"), &id("w2")]);
        let done = complete(&s, &advisor(), &rid, ended).await.unwrap();
        assert_eq!(done.introduced.len(), 2);
        assert_eq!(
            queued(&store)
                .iter()
                .filter(|m| m.body.starts_with("You have been introduced"))
                .count(),
            4
        );
    }

    /// WT-11: the advisor's `complete` stays for a call that ends early; the conference's end
    /// afterwards introduces nobody again.
    #[tokio::test]
    async fn wt_11_complete_for_an_early_end_then_the_conference_end_adds_nothing() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let w1 = phone_of(&store, "w1").await;
        line_call(
            &s,
            &w1,
            Some(&alert_code(&store, &rid, "w1").await),
            at("2026-03-02T17:00:10Z"),
        )
        .await
        .unwrap();
        let now = at("2026-03-02T17:03:00Z");
        let early = complete(&s, &advisor(), &rid, now).await.unwrap();
        for e in [
            callback(1, "participant-join", Some(("CA-agent", "agent"))),
            callback(2, "participant-join", Some(("CA-client", "client"))),
            callback(3, "conference-end", None),
        ] {
            conference_event(&s, &rid, &e, now).await.unwrap();
        }
        let history = store.history(&rid).await.unwrap();
        let introductions = history
            .iter()
            .filter(|h| matches!(h.event, HistoryEvent::Introduced { .. }))
            .count();
        assert_eq!(introductions, early.introduced.len());
    }

    /// The deliveries committed on `channel`, to anyone.
    fn committed(store: &MemoryStore, channel: &str) -> Vec<Delivery> {
        store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .filter_map(|e| match e {
                Effect::Deliver(d) if d.channel() == channel => Some(d),
                _ => None,
            })
            .collect()
    }

    /// WT-10: a win in the app owes a call to the winner (asked for their code, then held with
    /// the briefing) and one to the advisor's phone (the lead details, starting the room).
    #[tokio::test]
    async fn wt_10_a_win_in_the_app_calls_the_winner_and_the_advisor_into_the_room() {
        let (s, store, _) = services();
        market(&store).await;
        let mut req = request(Program::WarmTransfer, "seller");
        req.advisor_phone = Some("+16505550123".parse().unwrap());
        let rid = create_referral(&s, &advisor(), req, None, at(START))
            .await
            .unwrap()
            .id;
        let won = at("2026-03-02T17:00:20Z");
        claim_referral(&s, &id("w2"), &rid, ClaimChannel::App, won)
            .await
            .unwrap();
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        let legs = leg_calls(&s, &r).unwrap();
        let urls: Vec<String> = legs
            .iter()
            .filter_map(|e| match e {
                Effect::Deliver(Delivery {
                    message: Message::Call { url, .. },
                    ..
                }) => Some(url.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            urls,
            [Leg::Agent, Leg::Advisor]
                .map(|l| format!(
                    "http://127.0.0.1:3000/twilio/voice/warm-transfer?referralId={rid}&leg={}",
                    l.as_str()
                ))
                .to_vec()
        );
        let ask = crate::twilio::render(&leg_call(&s, &rid, Leg::Agent, None).await.unwrap());
        assert!(
            ask.contains("<Gather") && !ask.contains("<Conference"),
            "{ask}"
        );
        let code = alert_code(&store, &rid, "w2").await;
        let held =
            crate::twilio::render(&leg_call(&s, &rid, Leg::Agent, Some(&code)).await.unwrap());
        assert!(held.contains(r#"participantLabel="agent""#), "{held}");
        assert!(held.contains("after 5pm"), "the briefing: {held}");
        let advisor_leg =
            crate::twilio::render(&leg_call(&s, &rid, Leg::Advisor, None).await.unwrap());
        assert!(
            advisor_leg.contains(r#"startConferenceOnEnter="true""#)
                && advisor_leg.contains("Seller in 94110"),
            "{advisor_leg}"
        );
        // A winner on the line is not called: they are on it.
        let (s2, store2, _) = services();
        let rid2 = started(&s2, &store2).await;
        let w1 = phone_of(&store2, "w1").await;
        line_call(&s2, &w1, Some(&alert_code(&store2, &rid2, "w1").await), won)
            .await
            .unwrap();
        let r2 = store2.get_referral(&rid2).await.unwrap().unwrap().value;
        assert!(leg_calls(&s2, &r2).unwrap().is_empty());
    }

    /// WT-10: only the advisor who started it connects the client; without the advisor's live
    /// call the client's phone is called, and the advisor's leg on the line is taken out.
    #[tokio::test]
    async fn wt_10_connect_client_calls_the_client_and_takes_the_advisor_out() {
        let (s, store, _) = services();
        let rid = started(&s, &store).await;
        let e = connect_client(&s, &advisor(), &rid, None)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "not_connected"));
        claim_referral(
            &s,
            &id("w1"),
            &rid,
            ClaimChannel::App,
            at("2026-03-02T17:00:20Z"),
        )
        .await
        .unwrap();
        let other = Actor {
            user: "advisor-2".parse().unwrap(),
            role: Role::Advisor,
        };
        let e = connect_client(&s, &other, &rid, None).await.unwrap_err();
        assert_eq!(e.status(), 403);
        let before = committed(&store, "call").len();
        let join = callback(1, "participant-join", Some(("CA-advisor", "advisor")));
        conference_event(&s, &rid, &join, at("2026-03-02T17:01:00Z"))
            .await
            .unwrap();
        let done = connect_client(&s, &advisor(), &rid, None).await.unwrap();
        assert_eq!((done.client_leg, done.advisor_leaves), ("called", true));
        let placed = committed(&store, "call");
        assert_eq!(placed.len(), before + 1, "{placed:?}");
        assert_eq!(
            placed[before].to,
            Recipient::Phone {
                phone: "+14155559876".parse().unwrap()
            }
        );
        let updates = committed(&store, "call_update");
        assert_eq!(updates.len(), 1);
        assert_eq!(
            updates[0].to,
            Recipient::Call {
                call_sid: "CA-advisor".into()
            }
        );
        assert!(
            matches!(&updates[0].message, Message::CallUpdate { twiml } if twiml.contains("<Hangup/>")),
            "{:?}",
            updates[0]
        );
        let joined = callback(2, "participant-join", Some(("CA-client", "client")));
        conference_event(&s, &rid, &joined, at("2026-03-02T17:02:00Z"))
            .await
            .unwrap();
        let e = connect_client(&s, &advisor(), &rid, None)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "already_connected"));
    }

    /// A transfer with the advisor's phone, won in the app by w2; the advisor is on their call
    /// in the conference.
    async fn won_in_the_app(s: &Services, store: &MemoryStore) -> ReferralId {
        market(store).await;
        let mut req = request(Program::WarmTransfer, "seller");
        req.advisor_phone = Some("+16505550123".parse().unwrap());
        let rid = create_referral(s, &advisor(), req, None, at(START))
            .await
            .unwrap()
            .id;
        claim_referral(
            s,
            &id("w2"),
            &rid,
            ClaimChannel::App,
            at("2026-03-02T17:00:20Z"),
        )
        .await
        .unwrap();
        let join = callback(1, "participant-join", Some(("CA-advisor", "advisor")));
        conference_event(s, &rid, &join, at("2026-03-02T17:00:40Z"))
            .await
            .unwrap();
        rid
    }

    /// WT-10: the winner's leg is busy: the advisor hears it on their call, with the choice, and
    /// is texted, once however often the status is reported; pressing 1 calls the winner again,
    /// once however often the key press is posted, and returns the advisor to the call.
    #[tokio::test]
    async fn wt_10_a_busy_winner_leg_is_told_on_the_advisors_call_and_1_calls_again_once() {
        let (s, store, _) = services();
        let rid = won_in_the_app(&s, &store).await;
        for _ in 0..2 {
            leg_status(&s, &rid, Leg::Agent, "busy", "CA-w2")
                .await
                .unwrap();
        }
        let updates = committed(&store, "call_update");
        assert_eq!(updates.len(), 1, "{updates:?}");
        assert_eq!(
            updates[0].to,
            Recipient::Call {
                call_sid: "CA-advisor".into()
            }
        );
        let Message::CallUpdate { twiml } = &updates[0].message else {
            panic!("{:?}", updates[0]);
        };
        assert!(
            twiml.contains(r#"<Gather numDigits="1""#)
                && twiml.contains(&format!(
                    "/twilio/voice/leg-choice?referralId={rid}&amp;leg=agent&amp;failed=CA-w2"
                ))
                && twiml.contains("agent&apos;s phone gave busy")
                && twiml.contains("Press 2")
                && twiml.contains(r#"participantLabel="advisor""#),
            "{twiml}"
        );
        let texted = committed(&store, "sms")
            .into_iter()
            .filter(|d| matches!(&d.message, Message::Sms { body } if body.contains("gave busy")))
            .count();
        assert_eq!(texted, 1, "the text to the advisor stays");
        let before = committed(&store, "call").len();
        let now = at("2026-03-02T17:01:00Z");
        for _ in 0..2 {
            let answer = crate::twilio::render(
                &leg_choice(&s, &rid, Leg::Agent, "CA-w2", Some("1"), now)
                    .await
                    .unwrap(),
            );
            assert!(answer.contains(r#"participantLabel="advisor""#), "{answer}");
        }
        let calls = committed(&store, "call");
        assert_eq!(calls.len(), before + 1, "{calls:?}");
        assert_eq!(calls[before].to, Recipient::Agent { agent_id: id("w2") });
        assert_eq!(calls[before].key, format!("wt-leg#{rid}#agent#2"));
        // Any other key, or none, is back to the call and changes nothing.
        let back = leg_choice(&s, &rid, Leg::Agent, "CA-w2b", Some("9"), now)
            .await
            .unwrap();
        assert!(matches!(back, Voice::Join { .. }), "{back:?}");
        assert_eq!(committed(&store, "call").len(), before + 1);
    }

    /// WT-10: pressing 2 lets the winner go and sends the client to ordinary routing as a new
    /// referral, once however often it is posted; the winner is told by text.
    #[tokio::test]
    async fn wt_10_pressing_2_sends_the_client_to_routing_once_and_lets_the_winner_go() {
        let (s, store, _) = services();
        let rid = won_in_the_app(&s, &store).await;
        leg_status(&s, &rid, Leg::Agent, "no-answer", "CA-w2")
            .await
            .unwrap();
        let now = at("2026-03-02T17:01:00Z");
        for _ in 0..2 {
            let answer = crate::twilio::render(
                &leg_choice(&s, &rid, Leg::Agent, "CA-w2", Some("2"), now)
                    .await
                    .unwrap(),
            );
            assert!(
                answer.contains(&format!("referral {rid}-routed")) && answer.contains("<Hangup/>"),
                "{answer}"
            );
        }
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.closure, Some(Closure::WinnerNotReached));
        assert_eq!(r.assigned_agent(), None);
        let routed = store
            .get_referral(&routed_id(&rid).unwrap())
            .await
            .unwrap()
            .unwrap()
            .value;
        assert_eq!(routed.program, Program::Routing);
        assert!(!routed.offers.is_empty());
        let history = store.history(&rid).await.unwrap();
        let routings = history
            .iter()
            .filter(|h| matches!(&h.event, HistoryEvent::WarmTransferRouted { agent_id } if agent_id == &id("w2")))
            .count();
        assert_eq!(routings, 1);
        assert_eq!(
            metrics(&r, &history).unwrap().outcome,
            Some(Outcome::NotConnected)
        );
        let released = committed(&store, "sms")
            .into_iter()
            .filter(|d| d.key == format!("wt-released#{rid}"))
            .count();
        assert_eq!(released, 1);
        // The window's end changes nothing, and nobody claims it again.
        assert!(
            !time_out(&s, &rid, at("2026-03-02T17:01:30Z"))
                .await
                .unwrap()
        );
        let e = claim_referral(&s, &id("w1"), &rid, ClaimChannel::App, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn gen_4_a_conference_callback_without_its_sids_is_refused() {
        let e = ConferenceCallback::parse(|name| match name {
            "StatusCallbackEvent" => Some("participant-join"),
            "ConferenceSid" => Some("CF1"),
            "SequenceNumber" => Some("1"),
            _ => None,
        })
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert!(e.to_string().contains("CallSid"), "{e}");
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
