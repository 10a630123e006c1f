//! Warm transfer (WT-1 to WT-8): who is alerted, who wins, the timeout, and the introductions
//! after the call.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::values::{AgentId, ClientType, Zip};

/// At most this many agents are alerted at once (WT-2).
pub const MAX_ALERTED: usize = 5;
/// The number of agents a warm transfer aims for; fewer are alerted only when fewer are eligible.
pub const MIN_ALERTED: usize = 3;
/// How long the advisor waits before the client falls back to ordinary routing (WT-6).
pub const DEFAULT_TIMEOUT: SignedDuration = SignedDuration::from_secs(90);
/// Agents introduced after the winner's call (WT-7).
pub const MAX_INTRODUCTIONS: usize = 2;

/// Can take a warm transfer for this client now (WT-3, WT-8).
pub fn eligible(agent: &Agent, zip: &Zip, client_type: ClientType, now: Timestamp) -> bool {
    agent.warm_transfer
        && agent.serves(zip, client_type)
        && !agent.on_vacation(now)
        && agent.phone().is_some()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarmTransferError {
    #[error("no agent can take this warm transfer now")]
    NoEligibleAgents,
}

/// Chooses the agents to alert: eligible ones, restricted to a team's warm-transfer members when
/// the team routes leads (LR-3), fastest responders first (GEN-1), at most five.
///
/// Three to five is the aim (WT-2); with only one or two eligible agents they are still alerted,
/// since a client on the line is better served by two agents than by none.
pub fn choose_agents<'a>(
    candidates: impl IntoIterator<Item = &'a Agent>,
    team_members: Option<&[AgentId]>,
    zip: &Zip,
    client_type: ClientType,
    now: Timestamp,
) -> Result<Vec<AgentId>, WarmTransferError> {
    let mut ranked: Vec<&Agent> = candidates
        .into_iter()
        .filter(|a| team_members.is_none_or(|m| m.contains(&a.id)))
        .filter(|a| eligible(a, zip, client_type, now))
        .collect();
    ranked.sort_by(|a, b| Agent::by_speed(a, b));
    ranked.dedup_by(|a, b| a.id == b.id);
    if ranked.is_empty() {
        return Err(WarmTransferError::NoEligibleAgents);
    }
    Ok(ranked
        .into_iter()
        .take(MAX_ALERTED)
        .map(|a| a.id.clone())
        .collect())
}

/// How a warm transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Connected,
    TimedOut,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub agent_id: AgentId,
    pub at: Timestamp,
}

/// A warm transfer's state: who was alerted, who responded in what order, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmTransfer {
    pub alerted: Vec<AgentId>,
    pub started_at: Timestamp,
    pub timeout_at: Timestamp,
    pub responses: Vec<Response>,
    pub winner: Option<AgentId>,
    pub outcome: Option<Outcome>,
    pub introduced: Vec<AgentId>,
    pub completed: bool,
}

/// What a response earned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseOutcome {
    /// First to respond: connect them (WT-4).
    Won,
    /// Someone was faster; the response is kept for the introductions (WT-7).
    Taken {
        winner: AgentId,
    },
    /// Nobody answered in time and the client has gone to ordinary routing (WT-6).
    TimedOut,
    NotAlerted,
    /// Already responded; nothing changes.
    Repeated,
}

impl WarmTransfer {
    pub fn start(alerted: Vec<AgentId>, now: Timestamp, timeout: SignedDuration) -> Self {
        WarmTransfer {
            alerted,
            started_at: now,
            timeout_at: now + timeout,
            responses: Vec::new(),
            winner: None,
            outcome: None,
            introduced: Vec::new(),
            completed: false,
        }
    }

    /// An alerted agent responds (from the app or by dialing the line).
    pub fn respond(&mut self, agent: &AgentId, at: Timestamp) -> ResponseOutcome {
        if !self.alerted.contains(agent) {
            return ResponseOutcome::NotAlerted;
        }
        if self.outcome == Some(Outcome::TimedOut)
            || (self.winner.is_none() && at >= self.timeout_at)
        {
            return ResponseOutcome::TimedOut;
        }
        if self.responses.iter().any(|r| &r.agent_id == agent) {
            return ResponseOutcome::Repeated;
        }
        self.responses.push(Response {
            agent_id: agent.clone(),
            at,
        });
        match &self.winner {
            Some(w) => ResponseOutcome::Taken { winner: w.clone() },
            None => {
                self.winner = Some(agent.clone());
                self.outcome = Some(Outcome::Connected);
                ResponseOutcome::Won
            }
        }
    }

    /// The timeout fires: if nobody responded, the transfer times out and the client falls back
    /// to ordinary routing. Returns whether it did.
    pub fn time_out(&mut self, now: Timestamp) -> bool {
        if self.winner.is_some() || self.outcome.is_some() || now < self.timeout_at {
            return false;
        }
        self.outcome = Some(Outcome::TimedOut);
        true
    }

    /// The agents to introduce after the winner's call (WT-7): those who responded after the
    /// winner, in response order, then other eligible agents in rank order; two at most.
    pub fn choose_introductions(&self, others_ranked: &[AgentId]) -> Vec<AgentId> {
        let mut chosen: Vec<AgentId> = Vec::new();
        let excluded: BTreeSet<&AgentId> = self.winner.iter().chain(&self.introduced).collect();
        let late = self.responses.iter().map(|r| &r.agent_id);
        for a in late.chain(others_ranked) {
            if chosen.len() == MAX_INTRODUCTIONS {
                break;
            }
            if !excluded.contains(a) && !chosen.contains(a) {
                chosen.push(a.clone());
            }
        }
        chosen
    }

    /// Metrics kept on the referral (issue: warm-transfer metrics).
    pub fn metrics(&self) -> Metrics {
        Metrics {
            alerted: self.alerted.len(),
            responded: self.responses.len(),
            time_to_first_response_ms: self
                .responses
                .first()
                .and_then(|r| u64::try_from(r.at.duration_since(self.started_at).as_millis()).ok()),
            outcome: self.outcome,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub alerted: usize,
    pub responded: usize,
    pub time_to_first_response_ms: Option<u64>,
    pub outcome: Option<Outcome>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{Vacation, fixtures::agent};

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    fn zip() -> Zip {
        "94110".parse().unwrap()
    }

    fn now() -> Timestamp {
        "2026-03-01T20:00:00Z".parse().unwrap()
    }

    fn at(secs: i64) -> Timestamp {
        now() + SignedDuration::from_secs(secs)
    }

    #[test]
    fn wt_3_eligibility_opt_in_zip_type_vacation_phone() {
        let ok = agent("ok");
        let mut opted_out = agent("out");
        opted_out.warm_transfer = false;
        let mut elsewhere = agent("far");
        elsewhere.zips = ["10001".parse().unwrap()].into();
        let mut buyers_only = agent("buy");
        buyers_only.client_types = [ClientType::Buyer].into();
        let mut away = agent("away");
        away.vacation = Some(
            Vacation::new(jiff::civil::date(2026, 3, 1), jiff::civil::date(2026, 3, 2)).unwrap(),
        );
        let mut no_phone = agent("nophone");
        no_phone.cell_phone = None;
        let all = [ok, opted_out, elsewhere, buyers_only, away, no_phone];
        let chosen = choose_agents(&all, None, &zip(), ClientType::Seller, now()).unwrap();
        assert_eq!(chosen, vec![id("ok")]);
    }

    #[test]
    fn wt_8_opting_out_takes_effect_on_the_next_transfer() {
        let mut a = agent("a1");
        assert!(eligible(&a, &zip(), ClientType::Buyer, now()));
        a.warm_transfer = false;
        assert!(!eligible(&a, &zip(), ClientType::Buyer, now()));
    }

    #[test]
    fn wt_2_three_to_five_alerted_fastest_first() {
        let agents: Vec<Agent> = (0..8)
            .map(|i| {
                let mut a = agent(&format!("a{i}"));
                // a0 is slowest, a7 fastest; a3 has never responded.
                if i != 3 {
                    a.response_times.record(10_000 * (8 - i as u64));
                }
                a
            })
            .collect();
        let chosen = choose_agents(&agents, None, &zip(), ClientType::Buyer, now()).unwrap();
        assert_eq!(
            chosen,
            vec![id("a7"), id("a6"), id("a5"), id("a4"), id("a2")]
        );
        let three = choose_agents(&agents[..3], None, &zip(), ClientType::Buyer, now()).unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(
            choose_agents(&[], None, &zip(), ClientType::Buyer, now()),
            Err(WarmTransferError::NoEligibleAgents)
        );
    }

    #[test]
    fn wt_3_team_routing_limits_to_warm_transfer_members() {
        let agents: Vec<Agent> = (0..5).map(|i| agent(&format!("a{i}"))).collect();
        let members = [id("a1"), id("a3")];
        let chosen =
            choose_agents(&agents, Some(&members), &zip(), ClientType::Buyer, now()).unwrap();
        assert_eq!(chosen, vec![id("a1"), id("a3")]);
    }

    #[test]
    fn wt_4_exactly_one_winner_and_the_rest_are_told() {
        let mut wt =
            WarmTransfer::start(vec![id("a1"), id("a2"), id("a3")], now(), DEFAULT_TIMEOUT);
        assert_eq!(wt.respond(&id("a2"), at(5)), ResponseOutcome::Won);
        assert_eq!(
            wt.respond(&id("a1"), at(5)),
            ResponseOutcome::Taken { winner: id("a2") }
        );
        assert_eq!(wt.respond(&id("a1"), at(6)), ResponseOutcome::Repeated);
        assert_eq!(wt.respond(&id("zz"), at(6)), ResponseOutcome::NotAlerted);
        assert_eq!(wt.winner, Some(id("a2")));
        let m = wt.metrics();
        assert_eq!(
            (m.alerted, m.responded, m.time_to_first_response_ms),
            (3, 2, Some(5_000))
        );
        assert_eq!(m.outcome, Some(Outcome::Connected));
    }

    #[test]
    fn wt_6_nobody_in_time_falls_back_and_late_responses_are_refused() {
        let mut wt =
            WarmTransfer::start(vec![id("a1"), id("a2"), id("a3")], now(), DEFAULT_TIMEOUT);
        assert!(!wt.time_out(at(89)));
        assert!(wt.time_out(at(90)));
        assert!(!wt.time_out(at(91)), "the timeout acts once");
        assert_eq!(wt.respond(&id("a1"), at(95)), ResponseOutcome::TimedOut);
        assert_eq!(wt.metrics().outcome, Some(Outcome::TimedOut));
        // A winner before the deadline makes the timeout do nothing.
        let mut won = WarmTransfer::start(vec![id("a1")], now(), DEFAULT_TIMEOUT);
        won.respond(&id("a1"), at(10));
        assert!(!won.time_out(at(90)));
    }

    #[test]
    fn wt_7_late_responders_first_then_other_eligible_agents() {
        let mut wt = WarmTransfer::start(
            vec![id("a1"), id("a2"), id("a3"), id("a4")],
            now(),
            DEFAULT_TIMEOUT,
        );
        wt.respond(&id("a3"), at(3));
        wt.respond(&id("a4"), at(4));
        wt.respond(&id("a1"), at(8));
        assert_eq!(
            wt.choose_introductions(&[id("x1")]),
            vec![id("a4"), id("a1")]
        );
        let mut one_late = WarmTransfer::start(vec![id("a1"), id("a2")], now(), DEFAULT_TIMEOUT);
        one_late.respond(&id("a2"), at(3));
        one_late.respond(&id("a1"), at(4));
        assert_eq!(
            one_late.choose_introductions(&[id("a2"), id("x1"), id("x2")]),
            vec![id("a1"), id("x1")]
        );
        let mut none_late = WarmTransfer::start(vec![id("a1")], now(), DEFAULT_TIMEOUT);
        none_late.respond(&id("a1"), at(3));
        assert!(none_late.choose_introductions(&[]).is_empty());
    }
}
