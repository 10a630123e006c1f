//! Offering a referral: who hears of it, the messages each is sent, and storing it with their
//! claim codes before the broadcast starts. Shared by intake (LR-1, PPL-3, WT-2) and by the
//! warm transfer that falls back to ordinary routing (WT-6).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::{AppError, Services, random_u32};
use crate::domain::agent::Agent;
use crate::domain::claim::claim_code;
use crate::domain::referral::{
    Client, HistoryEntry, HistoryEvent, LeadDetails, PriceRange, Program, Referral,
};
use crate::domain::team::broadcast_recipients;
use crate::domain::values::{AgentId, ClientType, ReferralId, TeamId, UserId, Zip};
use crate::domain::warm_transfer::WarmTransfer;
use crate::ports::{BroadcastMessage, Channel, Created};

/// What an advisor sends (API.md: New referral).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewReferral {
    pub program: Program,
    pub client: Client,
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
}

/// Stores the referral offered to `agents` with their claim codes, then queues its messages (and
/// for a warm transfer schedules the end of its response window). Storing, then one queue call:
/// with the one query that found the agents, a warm transfer starts in three round trips.
pub(super) async fn offer(
    s: &Services,
    draft: Draft,
    agents: &[Agent],
    now: Timestamp,
) -> Result<Intake, AppError> {
    let request = draft.request;
    let warm = request.program == Program::WarmTransfer;
    let transfer = warm.then(|| {
        WarmTransfer::start(
            agents.iter().map(|a| a.id.clone()).collect(),
            now,
            s.config.warm_transfer_timeout,
        )
    });
    let lead = LeadDetails {
        client_type: request.client_type,
        zip: request.zip,
        price_range: request.price_range,
        timeline: request.timeline,
    };
    let mut referral = Referral {
        briefing: request.briefing,
        team_id: request.team_id,
        parent_id: draft.parent_id,
        call_first: request.call_first,
        respond_by: transfer.as_ref().map(|t| t.timeout_at),
        warm_transfer: transfer,
        ..Referral::offered(
            draft.id,
            request.program,
            request.client,
            lead,
            draft.created_by.clone(),
            now,
            agents.iter().map(|a| a.id.clone()),
        )
    };
    let created = HistoryEntry::new(
        now,
        Some(draft.created_by),
        HistoryEvent::Created {
            program: referral.program,
        },
    );
    for _ in 0..CODE_ATTEMPTS {
        referral.codes = agents
            .iter()
            .map(|a| (a.id.clone(), claim_code(random_u32())))
            .collect();
        match s
            .referrals
            .create_referral(&referral, std::slice::from_ref(&created))
            .await?
        {
            Created::Yes => {
                broadcast(s, &referral, agents).await?;
                schedule_timeout(s, &referral).await?;
                return Ok(intake(s, &referral, true));
            }
            Created::Exists => {
                let Some(existing) = s.referrals.get_referral(&referral.id).await? else {
                    return Err(AppError::conflict("busy", "try again"));
                };
                return replay(s, existing.value).await;
            }
            Created::CodeInUse => continue,
        }
    }
    Err(AppError::conflict(
        "busy",
        "could not draw free claim codes; try again",
    ))
}

/// A repeated request: the referral as first created. Its messages are queued again in case the
/// first attempt failed before queueing them; the consumer sends each once.
pub(super) async fn replay(s: &Services, referral: Referral) -> Result<Intake, AppError> {
    let ids: Vec<AgentId> = referral.offers.keys().cloned().collect();
    let agents = s.agents.get_agents(&ids).await?;
    if referral.assignment().is_none() && referral.closure.is_none() {
        broadcast(s, &referral, &agents).await?;
        schedule_timeout(s, &referral).await?;
    }
    Ok(intake(s, &referral, false))
}

fn intake(s: &Services, referral: &Referral, created: bool) -> Intake {
    Intake {
        id: referral.id.clone(),
        program: referral.program,
        lead: referral.lead.clone(),
        team_id: referral.team_id.clone(),
        call_first: referral.call_first,
        offered_to: referral.offers.keys().cloned().collect(),
        warm_transfer: info(s, referral),
        created,
    }
}

/// A team's referral: its routing members by their rules, or the lead alone (LR-1, LR-11).
pub(super) async fn team_recipients(
    s: &Services,
    request: &NewReferral,
    now: Timestamp,
) -> Result<Vec<Agent>, AppError> {
    let Some(team_id) = &request.team_id else {
        return Ok(Vec::new());
    };
    let team = s.agents.get_team(team_id).await?.ok_or_else(|| {
        AppError::unprocessable("unknown_team", format!("there is no team {team_id}"))
    })?;
    let settings = s.agents.get_routing(team_id).await?;
    let mut ids: Vec<AgentId> = team.agent_ids.iter().cloned().collect();
    ids.push(team.lead_agent_id.clone());
    let profiles = s.agents.get_agents(&ids).await?;
    let by_id: BTreeMap<&AgentId, &Agent> = profiles.iter().map(|a| (&a.id, a)).collect();
    let chosen = broadcast_recipients(
        &team,
        settings.as_ref(),
        |id| by_id.get(id).copied(),
        request.client_type,
        now,
    );
    Ok(chosen
        .iter()
        .filter_map(|id| by_id.get(id).map(|a| (*a).clone()))
        .collect())
}

/// Puts one message per (agent, reachable channel) on the broadcast queue, in as few calls as the
/// queue's batches allow.
async fn broadcast(s: &Services, referral: &Referral, agents: &[Agent]) -> Result<(), AppError> {
    let messages: Vec<BroadcastMessage> = agents
        .iter()
        .flat_map(|a| match referral.warm_transfer {
            Some(_) => alert_messages(s, referral, a),
            None => offer_messages(s, referral, a),
        })
        .collect();
    s.queue.enqueue(&messages).await?;
    Ok(())
}

/// The offer to one agent on each channel they can be reached on. Lead details and how to claim;
/// never the client's name, phone, email or the advisor's briefing (GEN-3), which could hold
/// any of them.
pub fn offer_messages(s: &Services, referral: &Referral, agent: &Agent) -> Vec<BroadcastMessage> {
    let kind = match referral.lead.client_type {
        ClientType::Buyer => "buyer",
        ClientType::Seller => "seller",
    };
    let title = format!("New {kind} referral in {}", referral.lead.zip);
    let summary = referral.lead.summary();
    let link = s.config.lines.app_link(&referral.id);
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
    let mut add = |channel, body: String| {
        out.push(BroadcastMessage {
            referral_id: referral.id.clone(),
            agent_id: agent.id.clone(),
            channel,
            title: title.clone(),
            body,
        })
    };
    if agent.phone().is_some() {
        add(Channel::Sms, sms.clone());
    }
    if agent.push_token.is_some() {
        add(Channel::Push, push);
    }
    if agent.email.is_some() {
        add(Channel::Email, email);
    }
    out
}

/// The conference the winner, the advisor and then the client meet in.
pub fn room(id: &ReferralId) -> String {
    format!("wt-{id}")
}

/// The one-time schedule that ends the response window.
pub fn timeout_schedule(id: &ReferralId) -> String {
    format!("wt-timeout-{id}")
}

/// The alert to one agent: push and SMS with the lead details and the line (WT-2); never the
/// client's contacts or the briefing (GEN-3).
pub(super) fn alert_messages(
    s: &Services,
    referral: &Referral,
    agent: &Agent,
) -> Vec<BroadcastMessage> {
    let summary = referral.lead.summary();
    let line = &s.config.lines.warm_transfer_line;
    let code = referral.codes.get(&agent.id).map_or("", String::as_str);
    let title = format!("Warm transfer now: {summary}");
    let sms = format!(
        "Warm transfer now: {summary}. A client is on the line with an advisor: call {line} ({code}) to take them, or respond in the app: {}. First to respond gets the client.",
        s.config.lines.app_link(&referral.id)
    );
    let push = format!("{summary}. A client is on the line: tap to take the call.");
    let mut out = Vec::new();
    let message = |channel, body| BroadcastMessage {
        referral_id: referral.id.clone(),
        agent_id: agent.id.clone(),
        channel,
        title: title.clone(),
        body,
    };
    if agent.push_token.is_some() {
        out.push(message(Channel::Push, push));
    }
    if agent.phone().is_some() {
        out.push(message(Channel::Sms, sms));
    }
    out
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

pub(super) fn info(s: &Services, referral: &Referral) -> Option<WarmTransferInfo> {
    let wt = referral.warm_transfer.as_ref()?;
    Some(WarmTransferInfo {
        line: s.config.lines.warm_transfer_line.to_string(),
        room: room(&referral.id),
        respond_by: wt.timeout_at,
    })
}

/// The response window's end, scheduled once the referral exists.
pub(super) async fn schedule_timeout(s: &Services, referral: &Referral) -> Result<(), AppError> {
    let Some(wt) = &referral.warm_transfer else {
        return Ok(());
    };
    s.scheduler
        .schedule_once(
            &timeout_schedule(&referral.id),
            wt.timeout_at,
            &serde_json::json!({
                "action": "warm_transfer_timeout",
                "referralId": referral.id,
                "time": wt.timeout_at,
            }),
        )
        .await?;
    Ok(())
}
