//! Warm transfer (WT-1 to WT-8): who is alerted, who wins, the timeout, and the introductions
//! after the call.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::values::{AgentId, ClientType, Email, Phone, Zip};

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
    /// The winner's phone could not be reached and the advisor sent the client to ordinary
    /// routing (WT-10).
    NotConnected,
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
    /// The advisor who started it, where they are told what becomes of it (WT-6): their token's
    /// `email` claim and the phone they gave, kept at intake.
    #[serde(default, skip_serializing_if = "Advisor::is_empty")]
    pub advisor: Advisor,
    /// The conference's legs as its callbacks report them (WT-10, WT-11).
    #[serde(default)]
    pub conference: Conference,
    /// The advisor's live call with the client, moved into the conference on `connect-client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_call_sid: Option<String>,
    /// How often the advisor asked to connect the client: each asks for one client leg.
    #[serde(default)]
    pub client_connects: u32,
    /// How often the winner was called again after their leg failed (WT-10): each call is one.
    #[serde(default)]
    pub winner_recalls: u32,
    /// The failed legs (by call SID) whose choice the advisor made on their call (WT-10): a
    /// choice posted again changes nothing.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub chosen: BTreeSet<String>,
    /// The `connect-client` requests made with an idempotency key (derived with the caller), with
    /// what each did: a retried request places no second leg (EF-3).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connect_requests: BTreeMap<String, ClientConnect>,
}

/// What one `connect-client` request did (WT-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnect {
    /// The advisor's live call with the client was moved in (else the client's phone called).
    pub moved: bool,
    pub advisor_leaves: bool,
}

/// What the advisor chose on their call when a leg of the transfer failed (WT-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegChoice {
    /// Key 1: call that person again.
    CallAgain,
    /// Key 2: give up on this winner; the client goes to ordinary routing.
    Route,
    /// Anything else: back to the conference.
    Back,
}

impl LegChoice {
    pub fn from_digits(digits: Option<&str>) -> LegChoice {
        match digits {
            Some("1") => LegChoice::CallAgain,
            Some("2") => LegChoice::Route,
            _ => LegChoice::Back,
        }
    }
}

/// Who a leg of the transfer's conference is: its `participantLabel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Leg {
    /// The winning agent.
    Agent,
    Advisor,
    Client,
}

impl Leg {
    pub fn as_str(self) -> &'static str {
        match self {
            Leg::Agent => "agent",
            Leg::Advisor => "advisor",
            Leg::Client => "client",
        }
    }

    pub fn parse(label: &str) -> Option<Leg> {
        match label {
            "agent" => Some(Leg::Agent),
            "advisor" => Some(Leg::Advisor),
            "client" => Some(Leg::Client),
            _ => None,
        }
    }
}

/// One leg of the conference: its call and when it joined and left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub call_sid: String,
    #[serde(default)]
    pub joined_at: Option<Timestamp>,
    #[serde(default)]
    pub left_at: Option<Timestamp>,
}

/// The transfer's conference as its status callbacks report it, keyed by leg label.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conference {
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub participants: BTreeMap<String, Participant>,
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    /// The callbacks applied, by `ConferenceSid#SequenceNumber`: a repeat changes nothing.
    #[serde(default)]
    pub seen: BTreeSet<String>,
}

/// What a conference status callback reports (`StatusCallbackEvent`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConferenceEvent {
    Joined {
        leg: Option<Leg>,
        call_sid: String,
    },
    Left {
        leg: Option<Leg>,
        call_sid: String,
    },
    Ended,
    /// `conference-start` and the events nothing here depends on.
    Other,
}

/// What applying a callback came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Seen before: nothing changes.
    Repeated,
    Recorded,
    /// The winner's call with the client is over (WT-11).
    CallEnded,
}

impl Conference {
    pub fn participant(&self, leg: Leg) -> Option<&Participant> {
        self.participants.get(leg.as_str())
    }

    /// The call of a leg that joined and has not left.
    pub fn on_the_line(&self, leg: Leg) -> Option<&str> {
        self.participant(leg)
            .filter(|p| p.joined_at.is_some() && p.left_at.is_none())
            .map(|p| p.call_sid.as_str())
    }

    fn joined(&self, leg: Leg) -> bool {
        self.participant(leg).is_some_and(|p| p.joined_at.is_some())
    }

    /// The leg a call is, by its label or else by the call it was recorded with.
    fn leg_of(&self, label: Option<Leg>, call_sid: &str) -> Option<Leg> {
        label.or_else(|| {
            [Leg::Agent, Leg::Advisor, Leg::Client]
                .into_iter()
                .find(|l| self.participant(*l).is_some_and(|p| p.call_sid == call_sid))
        })
    }

    /// Applies the callback `id` (its conference and sequence number). The winner's call with
    /// the client ends when, both having joined, either leaves or the conference ends.
    pub fn apply(
        &mut self,
        id: &str,
        conference_sid: &str,
        event: &ConferenceEvent,
        at: Timestamp,
    ) -> Applied {
        if !self.seen.insert(id.to_owned()) {
            return Applied::Repeated;
        }
        self.sid.get_or_insert_with(|| conference_sid.to_owned());
        let together = self.joined(Leg::Agent) && self.joined(Leg::Client);
        match event {
            ConferenceEvent::Joined { leg, call_sid } => {
                if let Some(leg) = self.leg_of(*leg, call_sid) {
                    let p = self
                        .participants
                        .entry(leg.as_str().to_owned())
                        .or_insert_with(|| Participant {
                            call_sid: call_sid.clone(),
                            joined_at: None,
                            left_at: None,
                        });
                    p.call_sid = call_sid.clone();
                    p.joined_at = Some(at);
                    p.left_at = None;
                }
                Applied::Recorded
            }
            ConferenceEvent::Left { leg, call_sid } => {
                let leg = self.leg_of(*leg, call_sid);
                if let Some(p) = leg.and_then(|l| self.participants.get_mut(l.as_str())) {
                    p.left_at = Some(at);
                }
                match leg {
                    Some(Leg::Agent | Leg::Client) if together => Applied::CallEnded,
                    _ => Applied::Recorded,
                }
            }
            ConferenceEvent::Ended => {
                self.ended_at = Some(at);
                if together {
                    Applied::CallEnded
                } else {
                    Applied::Recorded
                }
            }
            ConferenceEvent::Other => Applied::Recorded,
        }
    }
}

/// Where the advisor of a warm transfer is reached.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Advisor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
}

impl Advisor {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.phone.is_none()
    }
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
            advisor: Advisor::default(),
            conference: Conference::default(),
            client_call_sid: None,
            client_connects: 0,
            winner_recalls: 0,
            chosen: BTreeSet::new(),
            connect_requests: BTreeMap::new(),
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

    fn joined(leg: Leg, sid: &str) -> ConferenceEvent {
        ConferenceEvent::Joined {
            leg: Some(leg),
            call_sid: sid.into(),
        }
    }

    #[test]
    fn wt_11_the_call_ends_when_the_winner_or_client_leaves_after_both_joined() {
        let mut c = Conference::default();
        assert_eq!(
            c.apply("CF1#1", "CF1", &joined(Leg::Advisor, "CA-adv"), at(1)),
            Applied::Recorded
        );
        assert_eq!(
            c.apply("CF1#2", "CF1", &joined(Leg::Agent, "CA-agent"), at(2)),
            Applied::Recorded
        );
        // The advisor leaving during the briefing ends nothing.
        let advisor_left = ConferenceEvent::Left {
            leg: None,
            call_sid: "CA-adv".into(),
        };
        assert_eq!(
            c.apply("CF1#3", "CF1", &advisor_left, at(3)),
            Applied::Recorded
        );
        assert_eq!(
            c.apply("CF1#4", "CF1", &joined(Leg::Client, "CA-client"), at(4)),
            Applied::Recorded
        );
        let agent_left = ConferenceEvent::Left {
            leg: None,
            call_sid: "CA-agent".into(),
        };
        assert_eq!(
            c.apply("CF1#5", "CF1", &agent_left, at(60)),
            Applied::CallEnded
        );
        assert_eq!(
            c.apply("CF1#5", "CF1", &agent_left, at(61)),
            Applied::Repeated
        );
        assert_eq!(c.participant(Leg::Agent).unwrap().left_at, Some(at(60)));
        assert_eq!(c.participant(Leg::Client).unwrap().call_sid, "CA-client");
        assert_eq!(c.sid.as_deref(), Some("CF1"));
    }

    #[test]
    fn wt_11_a_conference_that_ends_before_the_client_joined_is_an_early_end() {
        let mut c = Conference::default();
        c.apply("CF1#1", "CF1", &joined(Leg::Agent, "CA-agent"), at(1));
        assert_eq!(
            c.apply("CF1#2", "CF1", &ConferenceEvent::Ended, at(9)),
            Applied::Recorded
        );
        let mut both = Conference::default();
        both.apply("CF2#1", "CF2", &joined(Leg::Agent, "CA-a"), at(1));
        both.apply("CF2#2", "CF2", &joined(Leg::Client, "CA-c"), at(2));
        assert_eq!(
            both.apply("CF2#3", "CF2", &ConferenceEvent::Ended, at(9)),
            Applied::CallEnded
        );
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
