//! Teams and their lead-routing settings (LR-1 to LR-7, LR-11).

use std::collections::BTreeSet;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::agent::Agent;
use super::values::{AgentId, ClientType, TeamId};

/// At most this many members receive a team's broadcasts (LR-2).
pub const MAX_ROUTING_MEMBERS: usize = 10;
/// At most this many members receive warm transfers, the fallback agent included (LR-3).
pub const MAX_WARM_TRANSFER_MEMBERS: usize = 3;
/// The largest daily cap a member's rule may set (RC-3); no cap means no limit.
pub const MAX_DAILY_CAP: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Team {
    pub id: TeamId,
    pub name: String,
    pub lead_agent_id: AgentId,
    pub agent_ids: BTreeSet<AgentId>,
}

impl Team {
    /// The lead and every agent on the team.
    pub fn has_agent(&self, agent: &AgentId) -> bool {
        &self.lead_agent_id == agent || self.agent_ids.contains(agent)
    }
}

/// Which referrals a routing member receives (LR-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Receives {
    Buyer,
    Seller,
    Both,
}

impl Receives {
    pub fn matches(self, client_type: ClientType) -> bool {
        matches!(
            (self, client_type),
            (Receives::Both, _)
                | (Receives::Buyer, ClientType::Buyer)
                | (Receives::Seller, ClientType::Seller)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingMember {
    pub agent_id: AgentId,
    pub receives: Receives,
    #[serde(default)]
    pub warm_transfer: bool,
    /// At most this many referrals offered a day, in the member's time zone (RC-3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_cap: Option<u32>,
}

/// A team's lead-routing settings. Always within the LR limits, however they are built: by
/// [`RoutingSettings::new`], by [`RoutingSettings::apply`] (which also checks each member's
/// profile), or read back from storage (checked again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RoutingFields")]
pub struct RoutingSettings {
    enabled: bool,
    fallback_agent_id: AgentId,
    members: Vec<RoutingMember>,
    /// Minutes the assigned agent has to record a contact before the referral is taken back
    /// (RC-1); off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    contact_deadline_minutes: Option<u16>,
}

/// Routing settings as written, before they are checked.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoutingFields {
    enabled: bool,
    fallback_agent_id: AgentId,
    members: Vec<RoutingMember>,
    #[serde(default)]
    contact_deadline_minutes: Option<u16>,
}

impl TryFrom<RoutingFields> for RoutingSettings {
    type Error = RoutingError;

    fn try_from(f: RoutingFields) -> Result<Self, RoutingError> {
        RoutingSettings::new(f.enabled, f.fallback_agent_id, f.members)?
            .with_contact_deadline(f.contact_deadline_minutes)
    }
}

/// The shortest and longest contact deadline a team lead may set, in minutes (RC-1).
pub const CONTACT_DEADLINE_MINUTES: std::ops::RangeInclusive<u16> = 5..=240;

/// What a team lead sends. Absent parts keep their saved values, so disabling with
/// `{"enabled": false}` keeps every member (LR-6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingUpdate {
    pub enabled: bool,
    pub fallback_agent_id: Option<AgentId>,
    pub members: Option<Vec<RoutingMember>>,
    /// Absent keeps the saved deadline; `null` turns it off; a number sets it (RC-1).
    #[serde(default, deserialize_with = "present")]
    pub contact_deadline_minutes: Option<Option<u16>>,
}

/// A field that may be sent as `null`: present (`Some`, perhaps `Some(None)`) or absent (`None`,
/// by `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<u16>>, D::Error> {
    Option::<u16>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("a team routes to at most {MAX_ROUTING_MEMBERS} members, not {0}")]
    TooManyMembers(usize),
    #[error(
        "at most {MAX_WARM_TRANSFER_MEMBERS} members receive warm transfers, the fallback agent included, not {0}"
    )]
    TooManyWarmTransferMembers(usize),
    #[error("agent {0} is listed twice")]
    DuplicateMember(AgentId),
    #[error("dailyCap of agent {0} must be between 1 and {MAX_DAILY_CAP}, not {1}")]
    DailyCapOutOfRange(AgentId, u32),
    #[error("contactDeadlineMinutes must be between 5 and 240, not {0}")]
    ContactDeadlineOutOfRange(u16),

    #[error("agent {0} is not on this team")]
    NotOnTeam(AgentId),
    #[error("agent {0} has no profile yet")]
    UnknownAgent(AgentId),
    #[error("{0}: every member needs their own license, account email and phone")]
    MemberNotReady(String),
}

impl RoutingSettings {
    /// The settings of a team that never saved any: off, the lead as fallback agent (LR-4).
    pub fn default_for(team: &Team) -> Self {
        RoutingSettings {
            enabled: false,
            fallback_agent_id: team.lead_agent_id.clone(),
            members: vec![RoutingMember {
                agent_id: team.lead_agent_id.clone(),
                receives: Receives::Both,
                warm_transfer: true,
                daily_cap: None,
            }],
            contact_deadline_minutes: None,
        }
    }

    /// Applies a team lead's update to the saved settings, enforcing every LR limit.
    ///
    /// The fallback agent cannot be removed: if an update leaves them out, they are put back
    /// (LR-4). They always receive every referral and warm transfers.
    pub fn apply<'a>(
        current: Option<&RoutingSettings>,
        team: &Team,
        update: RoutingUpdate,
        agent: impl Fn(&AgentId) -> Option<&'a Agent>,
    ) -> Result<RoutingSettings, RoutingError> {
        let saved = current.cloned().unwrap_or_else(|| Self::default_for(team));
        let fallback = update
            .fallback_agent_id
            .unwrap_or(saved.fallback_agent_id.clone());
        let members = update.members.unwrap_or(saved.members);
        let deadline = update
            .contact_deadline_minutes
            .unwrap_or(saved.contact_deadline_minutes);
        let settings = RoutingSettings::new(update.enabled, fallback, members)?
            .with_contact_deadline(deadline)?;
        for m in &settings.members {
            if !team.has_agent(&m.agent_id) {
                return Err(RoutingError::NotOnTeam(m.agent_id.clone()));
            }
            let profile =
                agent(&m.agent_id).ok_or_else(|| RoutingError::UnknownAgent(m.agent_id.clone()))?;
            profile
                .routing_readiness()
                .map_err(RoutingError::MemberNotReady)?;
        }
        Ok(settings)
    }

    /// Settings within the LR limits: no member twice, at most ten members and three
    /// warm-transfer members, and the fallback agent a member who receives every referral and
    /// warm transfers (put first if the list leaves them out: they cannot be removed, LR-4).
    pub fn new(
        enabled: bool,
        fallback: AgentId,
        mut members: Vec<RoutingMember>,
    ) -> Result<Self, RoutingError> {
        let mut seen = BTreeSet::new();
        for m in &members {
            if !seen.insert(m.agent_id.clone()) {
                return Err(RoutingError::DuplicateMember(m.agent_id.clone()));
            }
            if let Some(cap) = m.daily_cap.filter(|c| !(1..=MAX_DAILY_CAP).contains(c)) {
                return Err(RoutingError::DailyCapOutOfRange(m.agent_id.clone(), cap));
            }
        }
        match members.iter_mut().find(|m| m.agent_id == fallback) {
            Some(m) => {
                m.receives = Receives::Both;
                m.warm_transfer = true;
            }
            None => members.insert(
                0,
                RoutingMember {
                    agent_id: fallback.clone(),
                    receives: Receives::Both,
                    warm_transfer: true,
                    daily_cap: None,
                },
            ),
        }
        if members.len() > MAX_ROUTING_MEMBERS {
            return Err(RoutingError::TooManyMembers(members.len()));
        }
        let warm = members.iter().filter(|m| m.warm_transfer).count();
        if warm > MAX_WARM_TRANSFER_MEMBERS {
            return Err(RoutingError::TooManyWarmTransferMembers(warm));
        }
        Ok(RoutingSettings {
            enabled,
            fallback_agent_id: fallback,
            members,
            contact_deadline_minutes: None,
        })
    }

    /// These settings with a contact deadline (RC-1), or none: 5 to 240 minutes.
    pub fn with_contact_deadline(mut self, minutes: Option<u16>) -> Result<Self, RoutingError> {
        if let Some(m) = minutes.filter(|m| !CONTACT_DEADLINE_MINUTES.contains(m)) {
            return Err(RoutingError::ContactDeadlineOutOfRange(m));
        }
        self.contact_deadline_minutes = minutes;
        Ok(self)
    }

    /// How long an assigned agent has to record a contact, while routing is on (RC-1).
    pub fn contact_deadline(&self) -> Option<jiff::SignedDuration> {
        self.contact_deadline_minutes
            .filter(|_| self.enabled)
            .map(|m| jiff::SignedDuration::from_mins(i64::from(m)))
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn fallback_agent_id(&self) -> &AgentId {
        &self.fallback_agent_id
    }

    pub fn members(&self) -> &[RoutingMember] {
        &self.members
    }

    /// The member's daily cap, if their rule sets one (RC-3).
    pub fn daily_cap(&self, agent: &AgentId) -> Option<u32> {
        self.members
            .iter()
            .find(|m| &m.agent_id == agent)
            .and_then(|m| m.daily_cap)
    }

    /// Members who receive warm transfers, the fallback agent first (LR-3).
    pub fn warm_transfer_members(&self) -> Vec<AgentId> {
        let mut out = vec![self.fallback_agent_id.clone()];
        out.extend(
            self.members
                .iter()
                .filter(|m| m.warm_transfer && m.agent_id != self.fallback_agent_id)
                .map(|m| m.agent_id.clone()),
        );
        out
    }
}

/// Who hears of a new team referral (LR-1, LR-2, LR-4, LR-6, LR-7, LR-11).
///
/// With lead routing on: the fallback agent always, then every member whose rule matches the
/// client type and who is not on vacation. With it off, or never set up: the team lead only.
pub fn broadcast_recipients<'a>(
    team: &Team,
    settings: Option<&RoutingSettings>,
    agent: impl Fn(&AgentId) -> Option<&'a Agent>,
    client_type: ClientType,
    now: Timestamp,
) -> Vec<AgentId> {
    let Some(settings) = settings.filter(|s| s.enabled) else {
        return vec![team.lead_agent_id.clone()];
    };
    let mut out = vec![settings.fallback_agent_id.clone()];
    for m in &settings.members {
        if m.agent_id == settings.fallback_agent_id || !m.receives.matches(client_type) {
            continue;
        }
        if agent(&m.agent_id).is_some_and(|a| !a.on_vacation(now)) {
            out.push(m.agent_id.clone());
        }
    }
    out
}

/// One offer that counts against a member's daily cap (RC-3): stored with the referral, and
/// counted in the same write, only while the agent's count for their day is under the cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CappedOffer {
    pub agent_id: AgentId,
    /// The agent's own calendar day when offered.
    pub day: Date,
    pub cap: u32,
}

/// The recipients still under their daily cap (RC-3), and the offers to count for those who
/// have one. `offered_on` gives how many referrals an agent was offered on a day of theirs.
pub fn within_daily_caps<'a>(
    settings: Option<&RoutingSettings>,
    recipients: Vec<AgentId>,
    agent: impl Fn(&AgentId) -> Option<&'a Agent>,
    offered_on: impl Fn(&AgentId, Date) -> u32,
    now: Timestamp,
) -> (Vec<AgentId>, Vec<CappedOffer>) {
    let Some(settings) = settings.filter(|s| s.enabled) else {
        return (recipients, Vec::new());
    };
    let mut kept = Vec::new();
    let mut capped = Vec::new();
    for id in recipients {
        let (Some(cap), Some(profile)) = (settings.daily_cap(&id), agent(&id)) else {
            kept.push(id);
            continue;
        };
        let day = profile.local_date(now);
        if offered_on(&id, day) < cap {
            capped.push(CappedOffer {
                agent_id: id.clone(),
                day,
                cap,
            });
            kept.push(id);
        }
    }
    (kept, capped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::agent::{Vacation, fixtures::agent};
    use std::collections::BTreeMap;

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    fn team(n: usize) -> (Team, BTreeMap<AgentId, Agent>) {
        let mut agents = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for i in 0..n {
            let a = agent(&format!("m{i}"));
            ids.insert(a.id.clone());
            agents.insert(a.id.clone(), a);
        }
        let lead = agent("lead");
        agents.insert(lead.id.clone(), lead);
        let team = Team {
            id: "t1".parse().unwrap(),
            name: "Team".into(),
            lead_agent_id: id("lead"),
            agent_ids: ids,
        };
        (team, agents)
    }

    fn member(s: &str, receives: Receives, warm_transfer: bool) -> RoutingMember {
        RoutingMember {
            agent_id: id(s),
            receives,
            warm_transfer,
            daily_cap: None,
        }
    }

    fn apply(
        current: Option<&RoutingSettings>,
        team: &Team,
        agents: &BTreeMap<AgentId, Agent>,
        update: RoutingUpdate,
    ) -> Result<RoutingSettings, RoutingError> {
        RoutingSettings::apply(current, team, update, |a| agents.get(a))
    }

    #[test]
    fn lr_2_ten_members_at_most() {
        let (team, agents) = team(10);
        let nine: Vec<_> = (0..9)
            .map(|i| member(&format!("m{i}"), Receives::Both, false))
            .collect();
        // Nine members plus the lead as fallback agent make ten.
        let ok = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(nine),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(ok.members.len(), 10);
        let ten: Vec<_> = (0..10)
            .map(|i| member(&format!("m{i}"), Receives::Both, false))
            .collect();
        let err = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(ten),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err, RoutingError::TooManyMembers(11));
    }

    #[test]
    fn lr_2_lr_3_settings_read_back_are_held_to_the_same_limits() {
        let members: Vec<serde_json::Value> = (0..11)
            .map(|i| serde_json::json!({"agentId": format!("m{i}"), "receives": "both"}))
            .collect();
        let eleven =
            serde_json::json!({"enabled": true, "fallbackAgentId": "m0", "members": members});
        assert!(serde_json::from_value::<RoutingSettings>(eleven).is_err());
        let warm: Vec<serde_json::Value> = (0..4)
            .map(|i| serde_json::json!({"agentId": format!("m{i}"), "receives": "both", "warmTransfer": true}))
            .collect();
        let four = serde_json::json!({"enabled": true, "fallbackAgentId": "m0", "members": warm});
        assert!(serde_json::from_value::<RoutingSettings>(four).is_err());
        let ok = serde_json::json!({"enabled": false, "fallbackAgentId": "m0", "members": []});
        let read: RoutingSettings = serde_json::from_value(ok).unwrap();
        assert_eq!(
            read.members().len(),
            1,
            "LR-4: the fallback agent is always a member"
        );
    }

    #[test]
    fn lr_3_three_warm_transfer_members_including_fallback() {
        let (team, agents) = team(4);
        let two = vec![
            member("m0", Receives::Both, true),
            member("m1", Receives::Buyer, true),
        ];
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(two),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            s.warm_transfer_members(),
            vec![id("lead"), id("m0"), id("m1")]
        );
        let three = vec![
            member("m0", Receives::Both, true),
            member("m1", Receives::Buyer, true),
            member("m2", Receives::Seller, true),
        ];
        let err = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(three),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(err, RoutingError::TooManyWarmTransferMembers(4));
    }

    #[test]
    fn lr_4_fallback_defaults_to_lead_and_cannot_be_removed() {
        let (team, agents) = team(2);
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![member("m0", Receives::Buyer, false)]),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.fallback_agent_id, id("lead"));
        assert!(s.members.iter().any(|m| m.agent_id == id("lead")));
        // Changed to a member: that member is forced to receive everything and warm transfers.
        let s2 = apply(
            Some(&s),
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                fallback_agent_id: Some(id("m0")),
                members: Some(vec![member("m0", Receives::Buyer, false)]),
                ..Default::default()
            },
        )
        .unwrap();
        let fb = s2.members.iter().find(|m| m.agent_id == id("m0")).unwrap();
        assert_eq!(fb.receives, Receives::Both);
        assert!(fb.warm_transfer);
        // Leaving the fallback agent out of the list puts them back.
        let s3 = apply(
            Some(&s2),
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![member("m1", Receives::Seller, false)]),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(s3.members.iter().any(|m| m.agent_id == id("m0")));
    }

    #[test]
    fn lr_4_fallback_always_notified() {
        let (team, mut agents) = team(2);
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                fallback_agent_id: Some(id("m0")),
                members: Some(vec![
                    member("m0", Receives::Both, true),
                    member("m1", Receives::Buyer, false),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
        let now: Timestamp = "2026-12-02T18:00:00Z".parse().unwrap();
        agents.get_mut(&id("m0")).unwrap().vacation = Some(
            Vacation::new(
                jiff::civil::date(2026, 12, 1),
                jiff::civil::date(2026, 12, 3),
            )
            .unwrap(),
        );
        let got = broadcast_recipients(&team, Some(&s), |a| agents.get(a), ClientType::Seller, now);
        assert_eq!(got, vec![id("m0")]);
    }

    #[test]
    fn lr_2_buyer_only_members_never_hear_of_sellers() {
        let (team, agents) = team(3);
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![
                    member("m0", Receives::Buyer, false),
                    member("m1", Receives::Seller, false),
                    member("m2", Receives::Both, false),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
        let now = Timestamp::UNIX_EPOCH;
        let sellers =
            broadcast_recipients(&team, Some(&s), |a| agents.get(a), ClientType::Seller, now);
        assert_eq!(sellers, vec![id("lead"), id("m1"), id("m2")]);
        let buyers =
            broadcast_recipients(&team, Some(&s), |a| agents.get(a), ClientType::Buyer, now);
        assert_eq!(buyers, vec![id("lead"), id("m0"), id("m2")]);
    }

    #[test]
    fn lr_5_member_without_phone_is_refused_with_a_clear_message() {
        let (team, mut agents) = team(1);
        agents.get_mut(&id("m0")).unwrap().cell_phone = None;
        let err = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![member("m0", Receives::Both, false)]),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("m0 lacks a phone number"), "{err}");
    }

    #[test]
    fn lr_5_member_must_be_on_the_team_and_listed_once() {
        let (team, mut agents) = team(1);
        let stranger = agent("stranger");
        agents.insert(stranger.id.clone(), stranger);
        let not_on_team = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![member("stranger", Receives::Both, false)]),
                ..Default::default()
            },
        );
        assert_eq!(not_on_team, Err(RoutingError::NotOnTeam(id("stranger"))));
        let twice = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![
                    member("m0", Receives::Both, false),
                    member("m0", Receives::Buyer, false),
                ]),
                ..Default::default()
            },
        );
        assert_eq!(twice, Err(RoutingError::DuplicateMember(id("m0"))));
    }

    #[test]
    fn lr_6_disabling_keeps_settings_and_enabling_restores_them() {
        let (team, agents) = team(2);
        let on = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![member("m0", Receives::Buyer, true)]),
                ..Default::default()
            },
        )
        .unwrap();
        let off = apply(Some(&on), &team, &agents, RoutingUpdate::default()).unwrap();
        assert!(!off.enabled);
        assert_eq!(off.members, on.members);
        let now = Timestamp::UNIX_EPOCH;
        // Off: broadcasts stop; the lead alone hears (LR-11).
        assert_eq!(
            broadcast_recipients(&team, Some(&off), |a| agents.get(a), ClientType::Buyer, now),
            vec![id("lead")]
        );
        let again = apply(
            Some(&off),
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(again, on);
    }

    #[test]
    fn lr_7_member_on_vacation_gets_no_broadcast() {
        let (team, mut agents) = team(2);
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![
                    member("m0", Receives::Both, false),
                    member("m1", Receives::Both, false),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
        agents.get_mut(&id("m1")).unwrap().vacation = Some(
            Vacation::new(
                jiff::civil::date(2026, 12, 1),
                jiff::civil::date(2026, 12, 3),
            )
            .unwrap(),
        );
        let during: Timestamp = "2026-12-02T18:00:00Z".parse().unwrap();
        let after: Timestamp = "2026-12-04T18:00:00Z".parse().unwrap();
        let r1 = broadcast_recipients(
            &team,
            Some(&s),
            |a| agents.get(a),
            ClientType::Buyer,
            during,
        );
        assert_eq!(r1, vec![id("lead"), id("m0")]);
        let r2 = broadcast_recipients(&team, Some(&s), |a| agents.get(a), ClientType::Buyer, after);
        assert_eq!(r2, vec![id("lead"), id("m0"), id("m1")]);
    }

    #[test]
    fn lr_11_team_without_routing_reaches_the_lead_only() {
        let (team, agents) = team(3);
        let got = broadcast_recipients(
            &team,
            None,
            |a| agents.get(a),
            ClientType::Seller,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(got, vec![id("lead")]);
    }

    #[test]
    fn lr_1_enabled_routing_broadcasts_to_members() {
        let (team, agents) = team(2);
        let s = apply(
            None,
            &team,
            &agents,
            RoutingUpdate {
                enabled: true,
                members: Some(vec![
                    member("m0", Receives::Both, false),
                    member("m1", Receives::Both, false),
                ]),
                ..Default::default()
            },
        )
        .unwrap();
        let got = broadcast_recipients(
            &team,
            Some(&s),
            |a| agents.get(a),
            ClientType::Seller,
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn rc_3_a_daily_cap_is_between_1_and_1000() {
        let capped = |cap| {
            let mut m = member("m0", Receives::Both, false);
            m.daily_cap = Some(cap);
            RoutingSettings::new(true, id("lead"), vec![m])
        };
        assert_eq!(
            capped(0),
            Err(RoutingError::DailyCapOutOfRange(id("m0"), 0))
        );
        assert_eq!(
            capped(1001),
            Err(RoutingError::DailyCapOutOfRange(id("m0"), 1001))
        );
        let ok = capped(3).unwrap();
        assert_eq!(ok.daily_cap(&id("m0")), Some(3));
        assert_eq!(ok.daily_cap(&id("lead")), None);
    }

    #[test]
    fn rc_1_a_contact_deadline_is_5_to_240_minutes_kept_until_cleared() {
        let (team, agents) = team(1);
        let update = |json: serde_json::Value| serde_json::from_value::<RoutingUpdate>(json);
        for bad in [4, 241] {
            let e = apply(
                None,
                &team,
                &agents,
                update(serde_json::json!({"enabled": true, "contactDeadlineMinutes": bad}))
                    .unwrap(),
            )
            .unwrap_err();
            assert_eq!(e, RoutingError::ContactDeadlineOutOfRange(bad));
        }
        let set = apply(
            None,
            &team,
            &agents,
            update(serde_json::json!({"enabled": true, "contactDeadlineMinutes": 30})).unwrap(),
        )
        .unwrap();
        assert_eq!(
            set.contact_deadline(),
            Some(jiff::SignedDuration::from_mins(30))
        );
        // Absent keeps it; routing off suspends it; null clears it.
        let kept = apply(
            Some(&set),
            &team,
            &agents,
            update(serde_json::json!({"enabled": false})).unwrap(),
        )
        .unwrap();
        assert_eq!(kept.contact_deadline_minutes, Some(30));
        assert_eq!(kept.contact_deadline(), None);
        let cleared = apply(
            Some(&set),
            &team,
            &agents,
            update(serde_json::json!({"enabled": true, "contactDeadlineMinutes": null})).unwrap(),
        )
        .unwrap();
        assert_eq!(cleared.contact_deadline(), None);
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["contactDeadlineMinutes"], 30);
        let back: RoutingSettings = serde_json::from_value(json).unwrap();
        assert_eq!(back, set);
    }

    #[test]
    fn rc_3_an_agent_at_the_cap_of_their_own_day_is_skipped() {
        let (team, mut agents) = team(2);
        let mut m0 = member("m0", Receives::Both, false);
        m0.daily_cap = Some(2);
        let s = RoutingSettings::new(
            true,
            id("lead"),
            vec![m0, member("m1", Receives::Both, false)],
        )
        .unwrap();
        agents.get_mut(&id("m0")).unwrap().time_zone = "America/Los_Angeles".parse().unwrap();
        // 06:00 UTC on the 2nd is still the 1st in Los Angeles.
        let now: Timestamp = "2026-12-02T06:00:00Z".parse().unwrap();
        let all = broadcast_recipients(&team, Some(&s), |a| agents.get(a), ClientType::Buyer, now);
        let counts = |a: &AgentId, day: Date| match (a.as_str(), day.to_string().as_str()) {
            ("m0", "2026-12-01") => 2,
            ("m0", _) => 0,
            _ => 50,
        };
        let (kept, capped) =
            within_daily_caps(Some(&s), all.clone(), |a| agents.get(a), counts, now);
        assert_eq!(
            kept,
            vec![id("lead"), id("m1")],
            "uncapped members are never skipped"
        );
        assert!(capped.is_empty());
        let next_morning: Timestamp = "2026-12-02T16:00:00Z".parse().unwrap();
        let (kept, capped) =
            within_daily_caps(Some(&s), all, |a| agents.get(a), counts, next_morning);
        assert_eq!(kept, vec![id("lead"), id("m0"), id("m1")]);
        assert_eq!(
            capped,
            vec![CappedOffer {
                agent_id: id("m0"),
                day: jiff::civil::date(2026, 12, 2),
                cap: 2
            }]
        );
    }
}
