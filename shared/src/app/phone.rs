//! Claiming by phone and by text (LR-9, LR-10, PPL-3, PPL-4, TX-1, GEN-5, GEN-6): texts to the
//! service's number (AWS End User Messaging, through the inbound topic), the telephony
//! provider's voice webhooks, answered with TwiML, and the claim calls the service places.
//!
//! Every webhook is checked against its signature at the edge, before it reaches this module. Who
//! is calling is read from what the provider signed (the `From` number of a PIN-line call, or the
//! query of a URL the service itself built for a claim call), or from the sender AWS received a
//! text from; a number identifies an agent only once verified (TX-3).

use jiff::Timestamp;

use super::claim::{Claimed, claim_referral};
use super::voice::Voice;
use super::{AppError, Services, random_u32};
use crate::domain::claim::{
    self, ClaimRefusal, Pin, PinOutcome, call_failed, check_claim, parse_claim_sms,
};
use crate::domain::referral::{ClaimChannel, HistoryEntry, HistoryEvent, Referral};
use crate::domain::texts::{LOCKED_TEXT, MAX_WRONG_GUESSES, OptKeyword, opt_keyword};
use crate::domain::values::{AgentId, Phone, ReferralId};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, Timer, TimerPayload, key};
use crate::ports::Saved;

/// Versioned writes give up after this many lost races.
const ATTEMPTS: usize = 5;
/// Claim calls placed per agent and referral, asked for or retried (TX-5): the service is no way
/// to ring a number over and over. Past them, the agent claims with a PIN (LR-10).
pub const MAX_CLAIM_CALLS: u8 = 2;

fn claim_call_url(s: &Services, id: &ReferralId, agent: &AgentId) -> Result<String, AppError> {
    s.config.webhook(&format!(
        "/twilio/voice/claim?referralId={id}&agentId={agent}"
    ))
}

fn status_url(s: &Services, id: &ReferralId, agent: &AgentId) -> Result<String, AppError> {
    s.config.webhook(&format!(
        "/twilio/voice/status?referralId={id}&agentId={agent}"
    ))
}

/// "Call me to claim" (LR-9, PPL-4): the provider calls the agent, who presses 1. The call is
/// committed with the count of the agent's claim calls (EF-1) and placed from it; a request
/// retried with its `Idempotency-Key` places none again (EF-3).
pub async fn request_claim_call(
    s: &Services,
    actor: &super::Actor,
    id: &ReferralId,
    idempotency_key: Option<&str>,
    now: Timestamp,
) -> Result<(), AppError> {
    let agent = &actor
        .agent()
        .ok_or_else(|| AppError::Forbidden("only agents claim referrals".into()))?;
    let request = idempotency_key
        .map(|key| super::idempotent_id(actor, key, "call-"))
        .transpose()?;
    let referral = load(s, id).await?;
    check_claim(&referral, agent, ClaimChannel::Call, now).map_err(super::claim::refusal_error)?;
    agent_phone(s, agent).await?;
    let so_far = s.lines.claim_calls(id, agent).await?.value;
    let repeated = request
        .as_ref()
        .is_some_and(|r| so_far.requests.contains(r));
    if so_far.calls_placed >= MAX_CLAIM_CALLS && !repeated {
        return Err(AppError::RateLimited(format!(
            "{MAX_CLAIM_CALLS} claim calls were placed for this referral: claim it in the app, by text, or with a PIN"
        )));
    }
    // Built before the edit: the calls the edit may commit need these settings.
    let (url, status) = (claim_call_url(s, id, agent)?, status_url(s, id, agent)?);
    edit_claim_calls(s, id, agent, |calls| {
        if let Some(request) = &request
            && !calls.requests.insert(request.clone())
        {
            return None;
        }
        if calls.calls_placed >= MAX_CLAIM_CALLS {
            return None;
        }
        calls.calls_placed = calls.calls_placed.saturating_add(1);
        let effects = Effects::new(format!("claim-call#{id}#{agent}#{}", calls.calls_placed)).with(
            Effect::Deliver(call_delivery(id, agent, calls.calls_placed, &url, &status)),
        );
        Some((Vec::new(), effects))
    })
    .await
    .map(drop)
}

/// The claim call to `agent`: the provider requests the claim webhook, which says "press 1".
fn call_delivery(
    id: &ReferralId,
    agent: &AgentId,
    number: u8,
    url: &str,
    status_callback: &str,
) -> Delivery {
    Delivery {
        key: format!("claim-call#{id}#{agent}#{number}"),
        referral_id: Some(id.clone()),
        to: Recipient::Agent {
            agent_id: agent.clone(),
        },
        message: Message::Call {
            url: url.to_owned(),
            status_callback: status_callback.to_owned(),
        },
    }
}

async fn agent_phone(s: &Services, agent: &AgentId) -> Result<Phone, AppError> {
    s.agents
        .get_agent(agent)
        .await?
        .and_then(|a| a.phone().cloned())
        .ok_or_else(|| {
            AppError::unprocessable("no_phone", "add a phone number to your profile first")
        })
}

async fn load(s: &Services, id: &ReferralId) -> Result<Referral, AppError> {
    Ok(s.referrals
        .get_referral(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?
        .value)
}

/// A text sent to the service's number, as AWS End User Messaging publishes it to the inbound
/// topic (TX-1): `originationNumber` is the sender.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InboundText {
    pub origination_number: String,
    #[serde(default)]
    pub destination_number: String,
    pub message_body: String,
    pub inbound_message_id: String,
}

/// A text to the service's number (TX-1): from an agent's verified phone, a claim or a message
/// for their client; from a client the service texted for an agent, a message for that agent;
/// from anyone else, a short answer and no change. The answer is texted back, committed once per
/// inbound message id with what the text caused, so a redelivered notification claims, relays
/// and answers nothing twice (GEN-5).
pub async fn receive_text(
    s: &Services,
    text: &InboundText,
    now: Timestamp,
) -> Result<(), AppError> {
    let Ok(from) = text.origination_number.parse::<Phone>() else {
        // A sender no country issues (a short code, an alphanumeric id) cannot be answered.
        return Ok(());
    };
    let id = &text.inbound_message_id;
    // STOP and START are honoured from anyone, before anything else a text may mean (TX-2). AWS
    // answers them itself; the service must not text a number that just opted out.
    if let Some(keyword) = opt_keyword(&text.message_body) {
        let opted_out = keyword == OptKeyword::OptOut;
        s.lines.set_opted_out(&from, opted_out).await?;
        tracing::info!(opted_out, "opt-out keyword recorded");
        if !opted_out {
            // AWS's own opt-out list keeps the number until it is told otherwise.
            let key = format!("opt-in#{id}");
            let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
                key,
                referral_id: None,
                to: Recipient::Phone { phone: from },
                message: Message::OptIn,
            }));
            s.effects.commit_effects(&effects).await?;
        }
        return Ok(());
    }
    let reply = match s.agents.agent_by_phone(&from).await? {
        Some(agent) => Some(agent_text(s, &agent, &from, &text.message_body, id, now).await?),
        None => client_text(s, &from, &text.message_body, id).await?,
    };
    if let Some(reply) = reply {
        let key = format!("text-reply#{id}");
        let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
            key,
            referral_id: None,
            to: Recipient::Phone { phone: from },
            message: Message::Sms { body: reply },
        }));
        s.effects.commit_effects(&effects).await?;
    }
    Ok(())
}

/// A client's text, relayed to the agent the service last texted them for; the answer for
/// anyone else, who is nobody's client here.
async fn client_text(
    s: &Services,
    from: &Phone,
    body: &str,
    message_id: &str,
) -> Result<Option<String>, AppError> {
    let stranger =
        "This number takes replies to referral offers from registered agents and their clients.";
    let Some(id) = s.lines.client_thread(from).await? else {
        return Ok(Some(stranger.into()));
    };
    let referral = load(s, &id).await?;
    let Some(agent) = referral
        .assigned
        .as_ref()
        .map(|a| a.assignment.agent_id.clone())
    else {
        return Ok(Some(stranger.into()));
    };
    let text = body.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let key = key::webhook(message_id);
    let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
        key,
        referral_id: Some(id.clone()),
        to: Recipient::Agent { agent_id: agent },
        message: Message::Sms {
            body: format!("{}, your client: {text}", referral.client.name),
        },
    }));
    s.referrals.record(&id, &[], &effects).await?;
    Ok(None)
}

/// An agent's text: a message starting with their claim code claims the referral, and the rest
/// is relayed to the client once it is theirs. Answers what to text back.
async fn agent_text(
    s: &Services,
    agent: &AgentId,
    from: &Phone,
    body: &str,
    message_id: &str,
    now: Timestamp,
) -> Result<String, AppError> {
    let reply = |text: &str| Ok(text.to_owned());
    let Ok((code, text)) = parse_claim_sms(body) else {
        return reply(
            "To claim a referral, reply with its code, such as #4821, then your message to the client.",
        );
    };
    // Both reads at once: the lock check costs the right code no extra round trip.
    let (locked, found) = tokio::join!(
        guessing_locked(s, from, now),
        s.lines.code_referral(agent, &code, now)
    );
    if locked? {
        return reply(LOCKED_TEXT);
    }
    let Some(id) = found? else {
        // The answer to this text tells of a lock, so no separate text is owed.
        if wrong_guess(s, from, now, false).await? {
            return reply(LOCKED_TEXT);
        }
        return reply(&format!("{code} does not match an open referral of yours."));
    };
    let mut claimed = match claim_referral(s, agent, &id, ClaimChannel::Sms, now).await {
        Ok(c) => c,
        Err(e) if !e.is_retryable() => return reply(&refusal_text(&e)),
        Err(e) => return Err(e),
    };
    if claimed == Claimed::Already {
        // This very text may have claimed it on an attempt that failed after the claim: a claim
        // by text at this text's time is its own, and is answered as it was then.
        let referral = load(s, &id).await?;
        if referral.assigned.is_some_and(|a| {
            a.assignment.channel == ClaimChannel::Sms && a.assignment.claimed_at == now
        }) {
            claimed = Claimed::Now;
        }
    }
    if !text.is_empty() {
        relay(s, agent, &id, &text, message_id, now).await?;
    }
    reply(match (claimed, text.is_empty()) {
        (Claimed::Now, false) => {
            "The referral is yours, and your message is on its way to the client. Their contact details follow by email."
        }
        (Claimed::Now, true) => {
            "The referral is yours. The client's contact details follow by email; reply with the code and a message to text them."
        }
        (Claimed::Already, false) => "Sent to your client.",
        (Claimed::Already, true) => "This referral is already yours.",
    })
}

/// Whether `phone` may not try a claim code or PIN now (TX-5).
pub(crate) async fn guessing_locked(
    s: &Services,
    phone: &Phone,
    now: Timestamp,
) -> Result<bool, AppError> {
    Ok(s.lines
        .wrong_guesses(phone)
        .await?
        .is_some_and(|g| g.locked(now)))
}

/// Counts a wrong claim code or PIN from `phone` (TX-5) and answers whether the phone is now
/// locked. With `tell`, the phone is texted about the lock once, when it starts (committed with
/// a key of the lock, so a repeated webhook texts nothing twice).
pub(crate) async fn wrong_guess(
    s: &Services,
    phone: &Phone,
    now: Timestamp,
    tell: bool,
) -> Result<bool, AppError> {
    let guesses = s.lines.count_wrong_guess(phone, now).await?;
    if tell && guesses.count == MAX_WRONG_GUESSES {
        let key = format!("guess-lock#{phone}#{}", guesses.since.as_second());
        let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
            key,
            referral_id: None,
            to: Recipient::Phone {
                phone: phone.clone(),
            },
            message: Message::Sms {
                body: LOCKED_TEXT.into(),
            },
        }));
        s.effects.commit_effects(&effects).await?;
    }
    Ok(guesses.locked(now))
}

/// Texts the client on the agent's behalf, from the service's number: the agent's number stays
/// private and the client's never reaches the agent's screen before the email. Committed once
/// per provider message id.
async fn relay(
    s: &Services,
    agent: &AgentId,
    id: &ReferralId,
    text: &str,
    message_sid: &str,
    now: Timestamp,
) -> Result<(), AppError> {
    let referral = load(s, id).await?;
    let name = s
        .agents
        .get_agent(agent)
        .await?
        .map_or_else(|| "Your agent".to_owned(), |a| a.name);
    // Before the text: the client's reply to it must find its way back (TX-1).
    s.lines
        .set_client_thread(&referral.client.phone, id)
        .await?;
    let key = key::webhook(message_sid);
    let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
        key,
        referral_id: Some(id.clone()),
        to: Recipient::Phone {
            phone: referral.client.phone.clone(),
        },
        message: Message::Sms {
            body: format!("{name}, your agent: {text}"),
        },
    }));
    // Kept, without the text, as the agent's contact with the client (RC-1).
    let relayed = HistoryEntry::new(
        now,
        Some(agent.clone().into()),
        HistoryEvent::TextRelayed {
            agent_id: agent.clone(),
        },
    );
    s.referrals.record(id, &[relayed], &effects).await?;
    Ok(())
}

/// What a refused claim tells the agent on the phone or by text.
fn refusal_text(e: &AppError) -> String {
    match e.code() {
        "taken" => "Sorry, another agent claimed this referral first.".into(),
        "call_first" => {
            "This referral is claimed by phone: open it in the app and tap \"Call me to claim\"."
                .into()
        }
        _ => e.public_message(),
    }
}

/// The claim call's instructions (`POST /twilio/voice/claim`): the lead read out and "press 1";
/// `Digits=1` claims.
pub async fn voice_claim(
    s: &Services,
    id: &ReferralId,
    agent: &AgentId,
    digits: Option<&str>,
    now: Timestamp,
) -> Result<Voice, AppError> {
    let Some(stored) = s.referrals.get_referral(id).await? else {
        return Ok(goodbye("This referral is no longer available."));
    };
    let referral = stored.value;
    match digits {
        None => Ok(
            match check_claim(&referral, agent, ClaimChannel::Call, now) {
                Ok(()) => Voice::Ask {
                    digits: 1,
                    prompt: format!(
                        "You have a new referral: {}. Press 1 to claim it.",
                        referral.lead.summary()
                    ),
                    action: claim_call_url(s, id, agent)?,
                    otherwise: Some("We did not hear a key. Goodbye.".into()),
                },
                Err(ClaimRefusal::Taken { winner }) if &winner == agent => {
                    goodbye("This referral is already yours.")
                }
                Err(refusal) => goodbye(&refusal_text(&super::claim::refusal_error(refusal))),
            },
        ),
        Some("1") => claim_on_call(s, agent, id, ClaimChannel::Call, now).await,
        Some(_) => Ok(goodbye("The referral was not claimed. Goodbye.")),
    }
}

async fn claim_on_call(
    s: &Services,
    agent: &AgentId,
    id: &ReferralId,
    channel: ClaimChannel,
    now: Timestamp,
) -> Result<Voice, AppError> {
    match claim_referral(s, agent, id, channel, now).await {
        Ok(_) => Ok(goodbye(
            "The referral is yours. The client's contact details are on their way by email. Goodbye.",
        )),
        Err(e) if !e.is_retryable() => Ok(goodbye(&refusal_text(&e))),
        Err(e) => Err(e),
    }
}

fn goodbye(text: &str) -> Voice {
    Voice::goodbye(text)
}

/// How long after a failed claim call the next one is placed (LR-10). A phone that was busy or
/// rang out a moment ago is likely still busy or away: a minute gives the agent time to finish
/// the call or get to the phone, and is still short enough for a claim that agents race for.
pub const CLAIM_CALL_RETRY_DELAY: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// A claim call's status callback (`POST /twilio/voice/status`). A call that did not reach the
/// agent is tried once more, [`CLAIM_CALL_RETRY_DELAY`] later, by a short timer (WT-12); the
/// second failure sends them the PIN line's number and a PIN (LR-10). Each call's outcome counts
/// once, however often it is reported, and what it leads to (the retry's timer, or the PIN text
/// and its history entry) is committed with the count.
pub async fn voice_status(
    s: &Services,
    id: &ReferralId,
    agent: &AgentId,
    call_status: &str,
    call_sid: &str,
    now: Timestamp,
) -> Result<(), AppError> {
    if !call_failed(call_status) {
        return Ok(());
    }
    let referral = load(s, id).await?;
    if check_claim(&referral, agent, ClaimChannel::Call, now).is_err() {
        return Ok(());
    }
    let summary = referral.lead.summary();
    let pin_line = s.config.pin_line()?;
    edit_claim_calls(s, id, agent, |calls| {
        if !calls.counted.insert(call_sid.to_owned()) {
            return None;
        }
        // Two failed calls earn the PIN (LR-10), and so does a failure once the calls are used up:
        // no third call is placed (TX-5).
        let earned_pin = calls.record_failed_call()
            || (calls.pin.is_none() && calls.calls_placed >= MAX_CLAIM_CALLS);
        if earned_pin {
            calls.pin = Some(Pin::from_random(random_u32()));
        }
        let mut effects = Effects::new(key::webhook(&format!("{call_sid}#failed")));
        let mut entries = Vec::new();
        match &calls.pin {
            None => {
                let call = calls.calls_placed.saturating_add(1);
                effects.push(Effect::StartTimer(Timer {
                    name: retry_timer(id, agent, call),
                    at: now + CLAIM_CALL_RETRY_DELAY,
                    payload: TimerPayload::ClaimCallRetry {
                        referral_id: id.clone(),
                        agent_id: agent.clone(),
                        call,
                    },
                }));
            }
            Some(pin) if earned_pin => {
                let text = format!(
                    "We could not reach you to claim a referral ({summary}). Call {pin_line} and enter PIN: {} to claim it.",
                    pin.code
                );
                effects.push(Effect::Deliver(Delivery {
                    key: format!("pin#{id}#{agent}"),
                    referral_id: Some(id.clone()),
                    to: Recipient::Agent {
                        agent_id: agent.clone(),
                    },
                    message: Message::Sms { body: text },
                }));
                entries.push(HistoryEntry::new(
                    now,
                    None,
                    HistoryEvent::PinIssued {
                        agent_id: agent.clone(),
                    },
                ));
            }
            Some(_) => {}
        }
        Some((entries, effects))
    })
    .await
    .map(drop)
}

/// The timer that places claim call number `call` again.
fn retry_timer(id: &ReferralId, agent: &AgentId, call: u8) -> String {
    format!("claim-call-{id}-{agent}-{call}")
}

/// The retry of a failed claim call falls due (the timer of [`voice_status`], LR-10): claim call
/// number `call` is placed, committed with the count of calls placed, unless it was placed
/// already (the timer fired twice, or the agent asked for a call meanwhile), the calls are used
/// up, a PIN was issued, or the referral can no longer be claimed by this agent (claimed
/// meanwhile). Answers whether the call was placed.
pub async fn retry_claim_call(
    s: &Services,
    id: &ReferralId,
    agent: &AgentId,
    call: u8,
    now: Timestamp,
) -> Result<bool, AppError> {
    let referral = load(s, id).await?;
    if check_claim(&referral, agent, ClaimChannel::Call, now).is_err() {
        return Ok(false);
    }
    let (url, status) = (claim_call_url(s, id, agent)?, status_url(s, id, agent)?);
    edit_claim_calls(s, id, agent, |calls| {
        if calls.calls_placed >= call
            || calls.calls_placed >= MAX_CLAIM_CALLS
            || calls.pin.is_some()
        {
            return None;
        }
        calls.calls_placed = call;
        let effects = Effects::new(format!("claim-call#{id}#{agent}#{call}")).with(
            Effect::Deliver(call_delivery(id, agent, call, &url, &status)),
        );
        Some((Vec::new(), effects))
    })
    .await
}

/// Applies `change` to one agent's claim calls for one referral and saves them with the history
/// entries and effects it returns, again on a fresh read when someone else wrote first. `None`
/// from `change` saves nothing. Answers whether anything was saved.
async fn edit_claim_calls(
    s: &Services,
    id: &ReferralId,
    agent: &AgentId,
    change: impl Fn(&mut claim::ClaimCalls) -> Option<(Vec<HistoryEntry>, Effects)>,
) -> Result<bool, AppError> {
    for _ in 0..ATTEMPTS {
        let stored = s.lines.claim_calls(id, agent).await?;
        let mut calls = stored.value;
        let Some((entries, effects)) = change(&mut calls) else {
            return Ok(false);
        };
        if s.lines
            .save_claim_calls(id, agent, &calls, stored.version, &entries, &effects)
            .await?
            == Saved::Ok
        {
            return Ok(true);
        }
    }
    Err(AppError::Busy("the claim calls are changing".into()))
}

/// The PIN line (`POST /twilio/voice/pin`): the caller is known by their number; their PIN
/// claims the referral it was issued for. Wrong PINs are bounded (LR-10).
pub async fn voice_pin(
    s: &Services,
    from: &str,
    digits: Option<&str>,
    now: Timestamp,
) -> Result<Voice, AppError> {
    let action = s.config.webhook("/twilio/voice/pin")?;
    let phone = from.parse::<Phone>().ok();
    let agent = match &phone {
        Some(phone) => s.agents.agent_by_phone(phone).await?,
        None => None,
    };
    let (Some(agent), Some(phone)) = (agent, phone) else {
        return Ok(goodbye(
            "This line is for agents claiming referrals. Call from a phone you verified in the app. Goodbye.",
        ));
    };
    let Some(digits) = digits else {
        return Ok(Voice::Ask {
            digits: 6,
            prompt: "Enter your 6-digit PIN.".into(),
            action,
            otherwise: Some("We did not hear a PIN. Goodbye.".into()),
        });
    };
    if guessing_locked(s, &phone, now).await? {
        return Ok(goodbye(&format!("{LOCKED_TEXT} Goodbye.")));
    }
    let Some(id) = s.lines.pin_referral(&agent).await? else {
        return Ok(goodbye("There is no PIN waiting for you. Goodbye."));
    };
    for _ in 0..ATTEMPTS {
        let stored = s.lines.claim_calls(&id, &agent).await?;
        let mut calls = stored.value;
        let tries_before = calls.pin.as_ref().map_or(0, |p| p.attempts_left);
        let outcome = calls.try_pin(digits);
        if outcome != PinOutcome::Accepted
            && s.lines
                .save_claim_calls(
                    &id,
                    &agent,
                    &calls,
                    stored.version,
                    &[],
                    &Effects::default(),
                )
                .await?
                == Saved::Stale
        {
            continue;
        }
        let wrong = matches!(outcome, PinOutcome::Wrong { .. })
            || (outcome == PinOutcome::Locked && tries_before > 0);
        if wrong && wrong_guess(s, &phone, now, true).await? {
            return Ok(goodbye(&format!("{LOCKED_TEXT} Goodbye.")));
        }
        return match outcome {
            PinOutcome::Accepted => claim_on_call(s, &agent, &id, ClaimChannel::Pin, now).await,
            PinOutcome::Wrong { attempts_left } => Ok(Voice::Ask {
                digits: 6,
                prompt: format!(
                    "That PIN is not right. {attempts_left} {} left. Enter your PIN.",
                    if attempts_left == 1 { "try" } else { "tries" }
                ),
                action,
                otherwise: None,
            }),
            PinOutcome::Locked => Ok(goodbye(
                "Too many wrong PINs: this PIN no longer works. Goodbye.",
            )),
            PinOutcome::NoPin => Ok(goodbye("There is no PIN waiting for you. Goodbye.")),
        };
    }
    Err(AppError::Busy("the PIN is changing; call again".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::app::intake::tests::{advisor, at, request, routed_team};
    use crate::app::intake::{NewReferral, create_referral};
    use crate::app::testing::services;
    use crate::domain::referral::Program;
    use crate::memory::{MemoryStore, Outbox, Sent};
    use crate::ports::{AgentDirectory, ReferralStore};

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    fn agent_actor(s: &str) -> crate::app::Actor {
        crate::app::Actor {
            user: s.parse().unwrap(),
            role: crate::app::Role::Agent,
        }
    }

    async fn offered(
        store: &MemoryStore,
        s: &Services,
        req: NewReferral,
    ) -> (ReferralId, Referral) {
        routed_team(store, true).await;
        let r = create_referral(s, &advisor(), req, None, at("2026-03-02T17:00:00Z"))
            .await
            .unwrap();
        let stored = store.get_referral(&r.id).await.unwrap().unwrap().value;
        (r.id, stored)
    }

    async fn phone_of(store: &MemoryStore, agent: &str) -> String {
        store
            .get_agent(&id(agent))
            .await
            .unwrap()
            .unwrap()
            .cell_phone
            .unwrap()
            .to_string()
    }

    /// The texts `to` received once everything committed is delivered.
    async fn sms_to(s: &Services, outbox: &Arc<Outbox>, to: &str) -> Vec<String> {
        crate::memory::deliver(s, outbox, at("2026-03-02T17:05:00Z"))
            .await
            .unwrap();
        outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Sms { to: t, body } if t.as_str() == to => Some(body),
                _ => None,
            })
            .collect()
    }

    /// The calls placed once everything committed is delivered.
    async fn calls(s: &Services, outbox: &Arc<Outbox>) -> Vec<(String, String)> {
        crate::memory::deliver(s, outbox, at("2026-03-02T17:05:00Z"))
            .await
            .unwrap();
        outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Call {
                    url,
                    status_callback,
                    ..
                } => Some((url, status_callback)),
                _ => None,
            })
            .collect()
    }

    /// Texts `body` from `from` to the service's number as AWS delivers it; answers what was
    /// texted back (empty when nothing was).
    async fn text(
        s: &Services,
        outbox: &Arc<Outbox>,
        from: &str,
        body: &str,
        message_id: &str,
        now: Timestamp,
    ) -> String {
        let before = sms_to(s, outbox, from).await.len();
        let inbound = InboundText {
            origination_number: from.into(),
            destination_number: "+15005550009".into(),
            message_body: body.into(),
            inbound_message_id: message_id.into(),
        };
        receive_text(s, &inbound, now).await.unwrap();
        sms_to(s, outbox, from).await[before..].concat()
    }

    #[tokio::test]
    async fn lr_9_a_text_with_the_code_claims_and_reaches_the_client_once() {
        let (s, store, outbox) = services();
        let (rid, r) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:00:40Z");
        let cy = phone_of(&store, "cy").await;
        let code = &r.codes[&id("cy")];
        let body = format!("{code} Hi Casey, Cy here. When can we talk?");
        let reply = text(&s, &outbox, &cy, &body, "in-1", now).await;
        assert!(reply.contains("The referral is yours"), "{reply}");
        let claimed = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(claimed.assigned_agent(), Some(&id("cy")));
        let relayed = sms_to(&s, &outbox, "+14155559876").await;
        assert_eq!(
            relayed,
            ["Agent cy, your agent: Hi Casey, Cy here. When can we talk?"]
        );
        // GEN-5: the notification is delivered again: no second claim, relay or answer.
        let again = text(&s, &outbox, &cy, &body, "in-1", now).await;
        assert_eq!(again, "");
        assert_eq!(sms_to(&s, &outbox, "+14155559876").await.len(), 1);
        // The loser's text claims nothing and says so.
        let ana = phone_of(&store, "ana").await;
        let lost = format!("{} Hello!", r.codes[&id("ana")]);
        let reply = text(&s, &outbox, &ana, &lost, "in-2", now).await;
        assert!(reply.contains("another agent claimed"), "{reply}");
        assert_eq!(sms_to(&s, &outbox, "+14155559876").await.len(), 1);
        // A stranger's text or a wrong code claims nothing.
        let reply = text(&s, &outbox, "+14155550999", &body, "in-3", now).await;
        assert!(reply.contains("registered agents"), "{reply}");
        let reply = text(&s, &outbox, &ana, "#0000 hi", "in-4", now).await;
        assert!(reply.contains("does not match"), "{reply}");
    }

    #[tokio::test]
    async fn tx_1_a_clients_reply_to_a_relayed_text_reaches_the_assigned_agent() {
        let (s, store, outbox) = services();
        let (_, r) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:00:40Z");
        let cy = phone_of(&store, "cy").await;
        let body = format!("{} Hi Casey, Cy here.", r.codes[&id("cy")]);
        text(&s, &outbox, &cy, &body, "in-1", now).await;
        let before = sms_to(&s, &outbox, &cy).await.len();
        let answer = text(
            &s,
            &outbox,
            "+14155559876",
            "Tomorrow at 10 works",
            "in-2",
            now,
        )
        .await;
        assert_eq!(answer, "", "the client is not answered by the service");
        let to_cy = sms_to(&s, &outbox, &cy).await;
        assert_eq!(
            to_cy[before..],
            ["Casey Client, your client: Tomorrow at 10 works"]
        );
        // Delivered again: the agent gets it once.
        text(
            &s,
            &outbox,
            "+14155559876",
            "Tomorrow at 10 works",
            "in-2",
            now,
        )
        .await;
        assert_eq!(sms_to(&s, &outbox, &cy).await.len(), before + 1);
    }

    #[tokio::test]
    async fn tx_5_at_most_two_claim_calls_per_agent_and_referral_then_the_pin() {
        let (s, store, outbox) = services();
        let (rid, _) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:01:00Z");
        for _ in 0..2 {
            request_claim_call(&s, &agent_actor("cy"), &rid, None, now)
                .await
                .unwrap();
        }
        let e = request_claim_call(&s, &agent_actor("cy"), &rid, None, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (429, "rate_limited"));
        assert_eq!(calls(&s, &outbox).await.len(), 2);
        // The first call fails: no third call, the PIN instead (LR-10).
        voice_status(&s, &rid, &id("cy"), "no-answer", "CA1", now)
            .await
            .unwrap();
        assert_eq!(calls(&s, &outbox).await.len(), 2);
        let cy = phone_of(&store, "cy").await;
        assert!(
            sms_to(&s, &outbox, &cy)
                .await
                .iter()
                .any(|b| b.contains("PIN: ")),
            "the PIN is texted"
        );
    }

    #[tokio::test]
    async fn lr_9_ppl_4_the_claim_call_says_press_1_and_1_claims() {
        let (s, store, outbox) = services();
        let mut req = request(Program::Routing, "seller");
        req.call_first = true;
        let (rid, _) = offered(&store, &s, req).await;
        let now = at("2026-03-02T17:01:00Z");
        // Call-first: the app's plain claim and a text are refused.
        let e = claim_referral(&s, &id("cy"), &rid, ClaimChannel::App, now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "call_first"));
        request_claim_call(&s, &agent_actor("cy"), &rid, None, now)
            .await
            .unwrap();
        let (url, status) = calls(&s, &outbox).await.pop().unwrap();
        assert_eq!(
            url,
            format!("http://127.0.0.1:3000/twilio/voice/claim?referralId={rid}&agentId=cy")
        );
        assert!(status.contains("/twilio/voice/status?"), "{status}");
        let prompt =
            crate::twilio::render(&voice_claim(&s, &rid, &id("cy"), None, now).await.unwrap());
        assert!(
            prompt.contains(r#"<Gather numDigits="1""#) && prompt.contains("Press 1"),
            "{prompt}"
        );
        let other = crate::twilio::render(
            &voice_claim(&s, &rid, &id("cy"), Some("7"), now)
                .await
                .unwrap(),
        );
        assert!(other.contains("not claimed"), "{other}");
        let won = crate::twilio::render(
            &voice_claim(&s, &rid, &id("cy"), Some("1"), now)
                .await
                .unwrap(),
        );
        assert!(won.contains("The referral is yours"), "{won}");
        let claimed = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(
            claimed
                .assignment()
                .cloned()
                .map(|a| (a.agent_id, a.channel)),
            Some((id("cy"), ClaimChannel::Call))
        );
        // Ana's call comes too late.
        let late =
            crate::twilio::render(&voice_claim(&s, &rid, &id("ana"), None, now).await.unwrap());
        assert!(late.contains("another agent claimed"), "{late}");
        let e = request_claim_call(&s, &agent_actor("ana"), &rid, None, now)
            .await
            .unwrap_err();
        assert_eq!(e.code(), "taken");
    }

    #[tokio::test]
    async fn lr_10_two_failed_claim_calls_bring_a_pin_that_claims() {
        let (s, store, outbox) = services();
        let (rid, _) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:01:00Z");
        let cy = phone_of(&store, "cy").await;
        request_claim_call(&s, &agent_actor("cy"), &rid, None, now)
            .await
            .unwrap();
        // Ringing and answered calls are not failures.
        voice_status(&s, &rid, &id("cy"), "ringing", "CA1", now)
            .await
            .unwrap();
        voice_status(&s, &rid, &id("cy"), "no-answer", "CA1", now)
            .await
            .unwrap();
        // GEN-5: the same call reported twice counts once.
        voice_status(&s, &rid, &id("cy"), "no-answer", "CA1", now)
            .await
            .unwrap();
        assert_eq!(
            calls(&s, &outbox).await.len(),
            1,
            "the retry waits for its timer"
        );
        let retry = store
            .committed_effects()
            .into_iter()
            .flat_map(|e| e.items)
            .find_map(|e| match e {
                Effect::StartTimer(t)
                    if matches!(t.payload, TimerPayload::ClaimCallRetry { .. }) =>
                {
                    Some(t)
                }
                _ => None,
            })
            .expect("the retry's timer is committed with the failure");
        assert_eq!(retry.at, now + CLAIM_CALL_RETRY_DELAY);
        let TimerPayload::ClaimCallRetry { call, .. } = retry.payload else {
            panic!("{retry:?}");
        };
        // WT-12: the timer fires twice; one call.
        for _ in 0..2 {
            retry_claim_call(&s, &rid, &id("cy"), call, retry.at)
                .await
                .unwrap();
        }
        assert_eq!(
            calls(&s, &outbox).await.len(),
            2,
            "the first failure is retried once"
        );
        assert!(
            sms_to(&s, &outbox, &cy)
                .await
                .iter()
                .all(|m| !m.contains("PIN:"))
        );
        voice_status(&s, &rid, &id("cy"), "busy", "CA2", now)
            .await
            .unwrap();
        assert_eq!(
            calls(&s, &outbox).await.len(),
            2,
            "no third call: the PIN instead"
        );
        let pin_sms = sms_to(&s, &outbox, &cy).await.pop().unwrap();
        assert!(pin_sms.contains("+15005550007"), "{pin_sms}");
        let pin: String = pin_sms
            .split("PIN: ")
            .nth(1)
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert_eq!(pin.len(), 6);

        let gather = crate::twilio::render(&voice_pin(&s, &cy, None, now).await.unwrap());
        assert!(gather.contains(r#"<Gather numDigits="6""#), "{gather}");
        let wrong = if pin == "000000" { "111111" } else { "000000" };
        let retry = crate::twilio::render(&voice_pin(&s, &cy, Some(wrong), now).await.unwrap());
        assert!(retry.contains("2 tries left"), "{retry}");
        let won = crate::twilio::render(&voice_pin(&s, &cy, Some(&pin), now).await.unwrap());
        assert!(won.contains("The referral is yours"), "{won}");
        let claimed = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(
            claimed
                .assignment()
                .cloned()
                .map(|a| (a.agent_id, a.channel)),
            Some((id("cy"), ClaimChannel::Pin))
        );
        let history = store.history(&rid).await.unwrap();
        assert!(history.iter().any(|h| matches!(
            &h.event,
            HistoryEvent::PinIssued { agent_id } if agent_id == &id("cy")
        )));
        // A caller with no PIN, or an unknown number, claims nothing.
        let ana = phone_of(&store, "ana").await;
        let none = crate::twilio::render(&voice_pin(&s, &ana, Some(&pin), now).await.unwrap());
        assert!(none.contains("no PIN waiting"), "{none}");
        let stranger = crate::twilio::render(
            &voice_pin(&s, "+14155550999", Some(&pin), now)
                .await
                .unwrap(),
        );
        assert!(stranger.contains("a phone you verified"), "{stranger}");
    }

    #[tokio::test]
    async fn lr_10_wrong_pins_are_bounded() {
        let (s, store, outbox) = services();
        let (rid, _) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:01:00Z");
        let cy = phone_of(&store, "cy").await;
        voice_status(&s, &rid, &id("cy"), "failed", "CA1", now)
            .await
            .unwrap();
        voice_status(&s, &rid, &id("cy"), "failed", "CA2", now)
            .await
            .unwrap();
        let pin_sms = sms_to(&s, &outbox, &cy).await.pop().unwrap();
        let pin: String = pin_sms.split("PIN: ").nth(1).unwrap()[..6].to_owned();
        let wrong = if pin == "000000" { "111111" } else { "000000" };
        voice_pin(&s, &cy, Some(wrong), now).await.unwrap();
        voice_pin(&s, &cy, Some(wrong), now).await.unwrap();
        let locked = crate::twilio::render(&voice_pin(&s, &cy, Some(wrong), now).await.unwrap());
        assert!(locked.contains("locked for an hour"), "{locked}");
        let still = crate::twilio::render(&voice_pin(&s, &cy, Some(&pin), now).await.unwrap());
        assert!(still.contains("locked for an hour"), "{still}");
        // TX-5: the phone is told of the lock by text, once.
        let told = sms_to(&s, &outbox, &cy).await;
        assert_eq!(told.iter().filter(|b| b.contains("locked")).count(), 1);
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert!(r.assignment().is_none());
    }

    #[tokio::test]
    async fn tx_5_three_wrong_codes_by_text_lock_the_phone_even_for_the_right_code() {
        let (s, store, outbox) = services();
        let (rid, r) = offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:00:40Z");
        let cy = phone_of(&store, "cy").await;
        let code = &r.codes[&id("cy")];
        let wrong = if code == "#0000" { "#1111" } else { "#0000" };
        for (i, expected) in ["does not match", "does not match", "locked"]
            .iter()
            .enumerate()
        {
            let reply = text(&s, &outbox, &cy, wrong, &format!("w-{i}"), now).await;
            assert!(reply.contains(expected), "{reply}");
        }
        let reply = text(&s, &outbox, &cy, code, "right", now).await;
        assert!(reply.contains("locked"), "{reply}");
        let r = store.get_referral(&rid).await.unwrap().unwrap().value;
        assert_eq!(r.assigned_agent(), None, "the fourth try claims nothing");
        // An hour after the first wrong code, the right one claims.
        let later = at("2026-03-02T18:01:00Z");
        let reply = text(&s, &outbox, &cy, code, "right-later", later).await;
        assert!(reply.contains("is yours"), "{reply}");
    }

    #[tokio::test]
    async fn tx_2_stop_and_start_are_recorded_and_not_answered() {
        let (s, store, outbox) = services();
        offered(&store, &s, request(Program::Routing, "seller")).await;
        let now = at("2026-03-02T17:00:40Z");
        let cy = phone_of(&store, "cy").await;
        let phone: Phone = cy.parse().unwrap();
        let answer = text(&s, &outbox, &cy, "Stop", "in-1", now).await;
        assert_eq!(answer, "");
        assert!(s.lines.opted_out(&phone).await.unwrap());
        let answer = text(&s, &outbox, &cy, "START", "in-2", now).await;
        assert_eq!(answer, "");
        assert!(!s.lines.opted_out(&phone).await.unwrap());
        // AWS is told to take the number off its own opt-out list, once.
        text(&s, &outbox, &cy, "START", "in-2", now).await;
        let opt_ins = outbox
            .sent()
            .into_iter()
            .filter(|x| matches!(x, Sent::OptIn { to } if to == &phone))
            .count();
        assert_eq!(opt_ins, 1);
        // A stranger's STOP is honoured too.
        text(&s, &outbox, "+14155550999", "unsubscribe", "in-3", now).await;
        let stranger: Phone = "+14155550999".parse().unwrap();
        assert!(s.lines.opted_out(&stranger).await.unwrap());
    }

    #[tokio::test]
    async fn ef_3_call_me_to_claim_retried_with_its_key_places_one_call() {
        let (s, store, outbox) = services();
        let mut req = request(Program::Routing, "seller");
        req.call_first = true;
        let (rid, _) = offered(&store, &s, req).await;
        let now = at("2026-03-02T17:01:00Z");
        for _ in 0..3 {
            request_claim_call(&s, &agent_actor("cy"), &rid, Some("tap-1"), now)
                .await
                .unwrap();
        }
        assert_eq!(calls(&s, &outbox).await.len(), 1);
    }
}
