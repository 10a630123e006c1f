//! Offering a referral: who hears of it, the messages each is sent, and storing it with their
//! claim codes and those messages in one write (EF-1): the broadcast starts from the stored
//! referral, never before it. Shared by intake (LR-1, PPL-3, WT-2) and by the warm transfer that
//! falls back to ordinary routing (WT-6).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::{AppError, Services, random_u32, unassigned};
use crate::domain::agent::Agent;
use crate::domain::claim::claim_code;
use crate::domain::contact::FIRST_LOOK;
use crate::domain::referral::{
    Client, HistoryEntry, HistoryEvent, LeadDetails, PplTerms, PriceRange, Program, Referral,
    UnassignedReason,
};
use crate::domain::team::{CappedOffer, broadcast_recipients, within_daily_caps};
use crate::domain::values::{AgentId, ClientType, Email, Phone, ReferralId, TeamId, UserId, Zip};
use crate::domain::warm_transfer::{Advisor, WarmTransfer};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient, Timer, TimerPayload, key};
use crate::ports::{Created, Creation, Spawned, Versioned};

/// What an advisor sends (API.md: New referral).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewReferral {
    pub program: Program,
    /// Required, but for a re-offer, which takes the queued referral's client when it is left
    /// out (RC-2).
    #[serde(default)]
    pub client: Option<Client>,
    pub client_type: ClientType,
    pub zip: Zip,
    pub price_range: PriceRange,
    pub timeline: String,
    #[serde(default)]
    pub briefing: String,
    pub team_id: Option<TeamId>,
    /// Claimed by phone only (PPL-4): the offer asks the agent to request a call.
    #[serde(default)]
    pub call_first: bool,
    /// The advisor's phone: a warm transfer calls them there (WT-10), and they are texted there
    /// when nobody takes it (WT-6, RC-2).
    #[serde(default)]
    pub advisor_phone: Option<Phone>,
    /// A warm transfer's live call between the advisor and the client: `connect-client` moves
    /// it into the conference (WT-10); without it the system calls the client.
    #[serde(default)]
    pub client_call_sid: Option<String>,
    /// A referral of the advisors' queue this one re-offers (RC-2): it leaves the queue, closed,
    /// as this one is stored.
    #[serde(default)]
    pub reoffer_of: Option<ReferralId>,
    /// The advisor's address, from their token's `email` claim (never from the body).
    #[serde(skip)]
    pub advisor_email: Option<Email>,
}

/// What the advisor gets back: the lead and who it went to, never more (GEN-3 holds for advisors'
/// screens too: the contacts stay with the assigned agent).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Intake {
    pub id: ReferralId,
    pub program: Program,
    #[serde(flatten)]
    pub lead: LeadDetails,
    pub team_id: Option<TeamId>,
    pub call_first: bool,
    pub offered_to: Vec<AgentId>,
    /// An active referral of the same client of the past 60 days (RC-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<ReferralId>,
    /// The queued referral it re-offers (RC-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reoffer_of: Option<ReferralId>,
    /// Set when nobody could be offered it: it went straight to the advisors' queue (RC-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unassigned_since: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_transfer: Option<WarmTransferInfo>,
    /// False when this request repeated an earlier one (same `Idempotency-Key`).
    #[serde(skip)]
    pub created: bool,
}

/// How many times fresh claim codes are drawn when an agent already holds one of them.
const CODE_ATTEMPTS: usize = 5;

/// A referral about to be offered.
pub(super) struct Draft {
    pub id: ReferralId,
    pub request: NewReferral,
    pub created_by: UserId,
    /// The unanswered warm transfer an ordinary-routing referral came from (WT-6).
    pub parent_id: Option<ReferralId>,
    /// A pay-per-lead referral's price and subscriptions (PPL-10, PPL-11).
    pub ppl: Option<PplTerms>,
    /// The offers that count against daily caps (RC-3), for the agents it goes to.
    pub capped: Vec<CappedOffer>,
    /// The active referral of the same client it repeats, and the agents offered it only after
    /// the first look of the agent who has the client (RC-4).
    pub duplicate_of: Option<ReferralId>,
    pub held_back: Vec<AgentId>,
    /// The client's contact keys, indexed with it (RC-4).
    pub contact_keys: Vec<String>,
}

/// The referral `draft` describes, offered to `agents` with fresh claim codes.
pub(super) fn creation(
    s: &Services,
    draft: &Draft,
    agents: &[Agent],
    now: Timestamp,
) -> Result<Creation, AppError> {
    let request = &draft.request;
    let client = request
        .client
        .clone()
        .ok_or_else(|| AppError::BadRequest("client is required".into()))?;
    let transfer = match request.program {
        // Nobody to alert: no window to wait out, it goes to the advisors' queue (RC-2).
        Program::WarmTransfer if !agents.is_empty() => Some(WarmTransfer {
            advisor: Advisor {
                email: request.advisor_email.clone(),
                phone: request.advisor_phone.clone(),
            },
            client_call_sid: request.client_call_sid.clone(),
            ..WarmTransfer::start(
                agents.iter().map(|a| a.id.clone()).collect(),
                now,
                s.config.warm_transfer_timeout()?,
            )
        }),
        _ => None,
    };
    let lead = LeadDetails {
        client_type: request.client_type,
        zip: request.zip.clone(),
        price_range: request.price_range.clone(),
        timeline: request.timeline.clone(),
    };
    // Held-back agents get their claim codes now, their offers when the first look is over.
    let held_back: Vec<AgentId> = agents
        .iter()
        .filter(|a| draft.held_back.contains(&a.id))
        .map(|a| a.id.clone())
        .collect();
    let offered: Vec<Agent> = agents
        .iter()
        .filter(|a| !held_back.contains(&a.id))
        .cloned()
        .collect();
    let mut referral = Referral {
        reoffer_of: request.reoffer_of.clone(),
        duplicate_of: draft.duplicate_of.clone(),
        contact_keys: draft.contact_keys.clone(),
        held_back,
        briefing: request.briefing.clone(),
        advisor_email: request.advisor_email.clone(),
        advisor_phone: request.advisor_phone.clone(),
        team_id: request.team_id.clone(),
        parent_id: draft.parent_id.clone(),
        call_first: request.call_first,
        respond_by: transfer.as_ref().map(|t| t.timeout_at),
        warm_transfer: transfer,
        ppl: draft.ppl.clone(),
        capped_offers: draft
            .capped
            .iter()
            .filter(|c| agents.iter().any(|a| a.id == c.agent_id))
            .cloned()
            .collect(),
        codes: agents
            .iter()
            .map(|a| (a.id.clone(), claim_code(random_u32())))
            .collect(),
        ..Referral::offered(
            draft.id.clone(),
            request.program,
            client,
            lead,
            draft.created_by.clone(),
            now,
            offered.iter().map(|a| a.id.clone()),
        )
    };
    let mut history = vec![HistoryEntry::new(
        now,
        Some(draft.created_by.clone()),
        HistoryEvent::Created {
            program: referral.program,
            duplicate_of: referral.duplicate_of.clone(),
            reoffer_of: referral.reoffer_of.clone(),
        },
    )];
    let mut effects = offer_effects(s, &referral, &offered)?;
    if !referral.held_back.is_empty() {
        effects.push(Effect::StartTimer(Timer {
            name: first_look_timer(&referral.id),
            at: now + FIRST_LOOK,
            payload: TimerPayload::FirstLookOver {
                referral_id: referral.id.clone(),
            },
        }));
    }
    // Nobody to offer it to, whatever the program, or 24 hours for someone to claim it (RC-2). A
    // warm transfer has its window instead, and goes to routing when it closes.
    if agents.is_empty() {
        if let Some((entry, told)) =
            unassigned::to_advisors(&mut referral, UnassignedReason::NoEligibleAgent, now)
        {
            history.push(entry);
            effects.extend(told);
        }
    } else if matches!(referral.program, Program::Routing | Program::Ppl) {
        effects.push(unassigned::unclaimed_after(&referral));
    }
    Ok(Creation {
        referral,
        history,
        effects,
    })
}

/// What creating an offered referral owes: one delivery per (agent, channel), and for a warm
/// transfer the timer that ends its response window.
fn offer_effects(s: &Services, referral: &Referral, agents: &[Agent]) -> Result<Effects, AppError> {
    let mut effects = Effects::new(key::created(&referral.id));
    for agent in agents {
        let messages = match referral.warm_transfer {
            Some(_) => alert_messages(s, referral, agent)?,
            None => offer_messages(s, referral, agent)?,
        };
        effects.extend(messages.into_iter().map(Effect::Deliver));
    }
    if let Some(wt) = &referral.warm_transfer {
        effects.push(Effect::StartTimer(Timer {
            name: timeout_timer(&referral.id),
            at: wt.timeout_at,
            payload: TimerPayload::WarmTransferTimeout {
                referral_id: referral.id.clone(),
            },
        }));
    }
    Ok(effects)
}

/// Stores the referral offered to `agents` with their claim codes and its messages, in one write:
/// with the one query that found the agents, a warm transfer starts in two round trips, and its
/// alerts go out from the stored referral.
pub(super) async fn offer(
    s: &Services,
    draft: Draft,
    agents: &[Agent],
    now: Timestamp,
) -> Result<Intake, AppError> {
    for _ in 0..CODE_ATTEMPTS {
        let new = creation(s, &draft, agents, now)?;
        match s
            .referrals
            .create_referral(&new.referral, &new.history, &new.effects)
            .await?
        {
            Created::Yes => return intake(s, &new.referral, true),
            Created::Exists => {
                let Some(existing) = s.referrals.get_referral(&draft.id).await? else {
                    return Err(AppError::Busy(format!(
                        "referral {} is being created",
                        draft.id
                    )));
                };
                return replay(s, &existing.value);
            }
            Created::CodeInUse => continue,
            // Another referral took a member's last place of the day meanwhile: the offer is
            // chosen again on a retry, without them.
            Created::AtCap => {
                return Err(AppError::Busy(
                    "a member's daily cap was reached meanwhile; try again".into(),
                ));
            }
        }
    }
    Err(AppError::Busy(
        "could not draw free claim codes; try again".into(),
    ))
}

/// Stores the re-offer `draft` of a queued referral (RC-2) as `offer` stores a new one, in the
/// same transaction as the queued one leaving the queue, closed, with the re-offer in its
/// history; on the queued one's version, so of two re-offers of one referral only one is stored
/// (409 `not_in_queue` for the other). A retry with the first one's `Idempotency-Key` answers
/// its referral.
pub(super) async fn reoffer(
    s: &Services,
    draft: Draft,
    queued_id: &ReferralId,
    agents: &[Agent],
    now: Timestamp,
) -> Result<Intake, AppError> {
    for _ in 0..CODE_ATTEMPTS {
        let stored = queued_referral(s, queued_id, &draft.id).await?;
        let mut queued = match stored {
            Queued::Waiting(stored) => *stored,
            Queued::ReofferedAsThis => {
                return match s.referrals.get_referral(&draft.id).await? {
                    Some(existing) => replay(s, &existing.value),
                    None => Err(AppError::Busy(format!(
                        "referral {} is being created",
                        draft.id
                    ))),
                };
            }
        };
        let new = creation(s, &draft, agents, now)?;
        queued.value.reoffer_as(&draft.id);
        let entry = HistoryEntry::new(
            now,
            Some(draft.created_by.clone()),
            HistoryEvent::Reoffered {
                referral_id: draft.id.clone(),
            },
        );
        let effects = Effects::new(key::version(queued_id, queued.version + 1));
        match s
            .referrals
            .update_with_children(
                &queued.value,
                queued.version,
                &[entry],
                &effects,
                std::slice::from_ref(&new),
            )
            .await?
        {
            Spawned::Ok => return intake(s, &new.referral, true),
            // Changed meanwhile (another re-offer, a claim, a late decline): read it again.
            Spawned::Stale | Spawned::CodeInUse => continue,
        }
    }
    Err(AppError::Busy(format!(
        "referral {queued_id} is changing; try again"
    )))
}

/// Where the referral a re-offer names stands.
pub(super) enum Queued {
    /// In the advisors' queue, as read.
    Waiting(Box<Versioned<Referral>>),
    /// Re-offered already, as the referral of this very request (a retry).
    ReofferedAsThis,
}

/// The queued referral `id` a re-offer as `new` names: 422 when there is none, 409
/// `not_in_queue` when it is not (or no longer) in the advisors' queue.
pub(super) async fn queued_referral(
    s: &Services,
    id: &ReferralId,
    new: &ReferralId,
) -> Result<Queued, AppError> {
    let stored = s.referrals.get_referral(id).await?.ok_or_else(|| {
        AppError::unprocessable("unknown_referral", format!("there is no referral {id}"))
    })?;
    if stored.value.reoffered_as.as_ref() == Some(new) {
        return Ok(Queued::ReofferedAsThis);
    }
    if !stored.value.in_advisors_queue() {
        return Err(AppError::conflict(
            "not_in_queue",
            format!(
                "referral {id} is not in the advisors' queue: only a queued referral is re-offered"
            ),
        ));
    }
    Ok(Queued::Waiting(Box::new(stored)))
}

/// A repeated request: the referral as first created. Its messages went out with it.
pub(super) fn replay(s: &Services, referral: &Referral) -> Result<Intake, AppError> {
    intake(s, referral, false)
}

fn intake(s: &Services, referral: &Referral, created: bool) -> Result<Intake, AppError> {
    Ok(Intake {
        id: referral.id.clone(),
        program: referral.program,
        lead: referral.lead.clone(),
        team_id: referral.team_id.clone(),
        call_first: referral.call_first,
        offered_to: referral.offers.keys().cloned().collect(),
        duplicate_of: referral.duplicate_of.clone(),
        reoffer_of: referral.reoffer_of.clone(),
        unassigned_since: referral.unassigned_since,
        warm_transfer: info(s, referral)?,
        created,
    })
}

/// A team's referral: its routing members by their rules, or the lead alone (LR-1, LR-11),
/// leaving out members at their daily cap (RC-3).
pub(super) struct TeamRecipients {
    pub agents: Vec<Agent>,
    /// The offers that count against caps.
    pub capped: Vec<CappedOffer>,
    /// Told of every referral of the team (LR-4): the fallback agent, or the lead without routing.
    pub always_told: Option<AgentId>,
}

/// The team's recipients of `request` at `now`.
pub(super) async fn team_recipients(
    s: &Services,
    request: &NewReferral,
    now: Timestamp,
) -> Result<TeamRecipients, AppError> {
    match &request.team_id {
        Some(team_id) => team_members_for(s, team_id, request.client_type, now).await,
        None => Ok(TeamRecipients {
            agents: Vec::new(),
            capped: Vec::new(),
            always_told: None,
        }),
    }
}

/// Who of team `team_id` hears of a referral for a `client_type` client, as
/// [`team_recipients`] says.
pub(super) async fn team_members_for(
    s: &Services,
    team_id: &TeamId,
    client_type: ClientType,
    now: Timestamp,
) -> Result<TeamRecipients, AppError> {
    let team = s.agents.get_team(team_id).await?.ok_or_else(|| {
        AppError::unprocessable("unknown_team", format!("there is no team {team_id}"))
    })?;
    let settings = s.agents.get_routing(team_id).await?;
    let mut ids: Vec<AgentId> = team.agent_ids.iter().cloned().collect();
    ids.push(team.lead_agent_id.clone());
    let profiles = s.agents.get_agents(&ids).await?;
    let by_id: BTreeMap<&AgentId, &Agent> = profiles.iter().map(|a| (&a.id, a)).collect();
    let profile = |id: &AgentId| by_id.get(id).copied();
    let chosen = broadcast_recipients(&team, settings.as_ref(), profile, client_type, now);
    // Counters are read only for members with a cap: a team without caps costs nothing more.
    let days: Vec<(AgentId, Date)> = chosen
        .iter()
        .filter(|id| {
            settings
                .as_ref()
                .is_some_and(|s| s.enabled() && s.daily_cap(id).is_some())
        })
        .filter_map(|id| profile(id).map(|a| (id.clone(), a.local_date(now))))
        .collect();
    let counts = if days.is_empty() {
        BTreeMap::new()
    } else {
        s.referrals.offers_on(&days).await?
    };
    let (kept, capped) = within_daily_caps(
        settings.as_ref(),
        chosen,
        profile,
        |id, _| counts.get(id).copied().unwrap_or(0),
        now,
    );
    let agents = kept.iter().filter_map(|id| profile(id).cloned()).collect();
    let always_told = Some(match settings.as_ref().filter(|s| s.enabled()) {
        Some(s) => s.fallback_agent_id().clone(),
        None => team.lead_agent_id.clone(),
    });
    Ok(TeamRecipients {
        agents,
        capped,
        always_told,
    })
}

/// One delivery to `agent` about `referral`.
fn to_agent(referral: &Referral, agent: &Agent, message: Message) -> Delivery {
    Delivery {
        key: key::offer(&referral.id, &agent.id, message.channel()),
        referral_id: Some(referral.id.clone()),
        to: Recipient::Agent {
            agent_id: agent.id.clone(),
        },
        message,
    }
}

/// The offer to one agent on each channel they can be reached on. Lead details and how to claim;
/// never the client's name, phone, email or the advisor's briefing (GEN-3), which could hold
/// any of them.
pub fn offer_messages(
    s: &Services,
    referral: &Referral,
    agent: &Agent,
) -> Result<Vec<Delivery>, AppError> {
    let kind = match referral.lead.client_type {
        ClientType::Buyer => "buyer",
        ClientType::Seller => "seller",
    };
    let title = format!("New {kind} referral in {}", referral.lead.zip);
    let summary = referral.lead.summary();
    let link = s.config.app_link(&referral.id)?;
    let code = referral.codes.get(&agent.id);
    let sms = match (referral.call_first, code) {
        (true, _) => format!(
            "New {kind} referral: {summary}. Claimed by phone: open {link} and tap \"Call me to claim\", then press 1."
        ),
        (false, Some(code)) => format!(
            "New {kind} referral: {summary}. Reply {code} followed by a message to the client to claim it, or claim in the app: {link}"
        ),
        (false, None) => format!("New {kind} referral: {summary}. Claim it in the app: {link}"),
    };
    let push = if referral.call_first {
        format!("{summary}. Tap to get a call and claim it.")
    } else {
        format!("{summary}. Tap to claim it.")
    };
    let email = format!(
        "{sms}\n\nThe first agent to claim gets the client. Their contact details are emailed to \
         whoever claims it."
    );
    let mut out = Vec::new();
    if agent.phone().is_some() {
        out.push(to_agent(referral, agent, Message::Sms { body: sms }));
    }
    if agent.push_token.is_some() {
        out.push(to_agent(
            referral,
            agent,
            Message::Push {
                title: title.clone(),
                body: push,
            },
        ));
    }
    if agent.email.is_some() {
        out.push(to_agent(referral, agent, Message::email(title, email)));
    }
    Ok(out)
}

/// The timer that ends a duplicate's first look (RC-4).
pub fn first_look_timer(id: &ReferralId) -> String {
    format!("first-look-{id}")
}

/// A duplicate's first look is over (RC-4): the agents held back are offered it now, on every
/// channel, with the claim codes it was stored with. A referral claimed, closed, already offered
/// to all or gone is left alone (false), so a repeated firing changes nothing.
pub async fn offer_to_rest(
    s: &Services,
    id: &ReferralId,
    now: Timestamp,
) -> Result<bool, AppError> {
    let mut edit = super::Editing::new(s, id);
    loop {
        let stored = match edit.read().await {
            Ok(stored) => stored,
            Err(AppError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let mut referral = stored.value;
        if referral.held_back.is_empty()
            || referral.assigned.is_some()
            || referral.closure.is_some()
        {
            return Ok(false);
        }
        let rest = std::mem::take(&mut referral.held_back);
        let agents = s.agents.get_agents(&rest).await?;
        let mut effects = Effects::new(key::version(id, stored.version + 1));
        for agent in &agents {
            referral.offers.insert(agent.id.clone(), now);
            effects.extend(
                offer_messages(s, &referral, agent)?
                    .into_iter()
                    .map(Effect::Deliver),
            );
        }
        let entry = HistoryEntry::new(
            now,
            None,
            HistoryEvent::Offered {
                agent_ids: agents.iter().map(|a| a.id.clone()).collect(),
            },
        );
        if edit
            .save(&referral, stored.version, &[entry], &effects)
            .await?
        {
            return Ok(true);
        }
    }
}

/// The conference the winner, the advisor and then the client meet in.
pub fn room(id: &ReferralId) -> String {
    format!("wt-{id}")
}

/// The timer that ends a warm transfer's response window.
pub fn timeout_timer(id: &ReferralId) -> String {
    format!("wt-timeout-{id}")
}

/// The alert to one agent: push and SMS with the lead details and the line (WT-2); never the
/// client's contacts or the briefing (GEN-3).
pub(super) fn alert_messages(
    s: &Services,
    referral: &Referral,
    agent: &Agent,
) -> Result<Vec<Delivery>, AppError> {
    let summary = referral.lead.summary();
    let line = s.config.warm_transfer_line()?;
    let code = referral.codes.get(&agent.id).map_or("", String::as_str);
    let title = format!("Warm transfer now: {summary}");
    let sms = format!(
        "Warm transfer now: {summary}. A client is on the line with an advisor: call {line} ({code}) to take them, or respond in the app: {}. First to respond gets the client.",
        s.config.app_link(&referral.id)?
    );
    let push = format!("{summary}. A client is on the line: tap to take the call.");
    let mut out = Vec::new();
    if agent.push_token.is_some() {
        out.push(to_agent(
            referral,
            agent,
            Message::Push { title, body: push },
        ));
    }
    if agent.phone().is_some() {
        out.push(to_agent(referral, agent, Message::Sms { body: sms }));
    }
    Ok(out)
}

/// What the advisor needs to run the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmTransferInfo {
    /// The number alerted agents dial.
    pub line: String,
    /// The conference the advisor joins to brief the winner and bridge the client into.
    pub room: String,
    pub respond_by: Timestamp,
}

pub(super) fn info(
    s: &Services,
    referral: &Referral,
) -> Result<Option<WarmTransferInfo>, AppError> {
    let Some(wt) = referral.warm_transfer.as_ref() else {
        return Ok(None);
    };
    Ok(Some(WarmTransferInfo {
        line: s.config.warm_transfer_line()?.to_string(),
        room: room(&referral.id),
        respond_by: wt.timeout_at,
    }))
}
