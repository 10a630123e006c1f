//! Team and agent settings: teams (admin), profiles (the agent), fee agreements (admin),
//! vacations (the agent) and lead-routing settings (the team lead) (LR-2 to LR-7, WT-8, PPL-7).

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Actor, AppError, Role, Services, limits};
use crate::domain::agent::{Agent, Vacation};
use crate::domain::speed::ResponseTimes;
use crate::domain::team::{RoutingError, RoutingSettings, RoutingUpdate, Team};
use crate::domain::values::{AgentId, ClientType, Email, Percent, Phone, TeamId, Zip, Zone};
use crate::ports::StoreError;

/// `PUT /teams/{teamId}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TeamRequest {
    pub name: String,
    pub lead_agent_id: AgentId,
    #[serde(
        default,
        deserialize_with = "limits::set_of_at_most::<_, _, { limits::TEAM_AGENTS }>"
    )]
    pub agent_ids: BTreeSet<AgentId>,
}

pub async fn put_team(
    s: &Services,
    actor: &Actor,
    id: TeamId,
    request: TeamRequest,
) -> Result<Team, AppError> {
    actor.require(Role::Admin)?;
    let name = request.name.trim();
    limits::required_text("name", name, limits::SHORT_TEXT)?;
    limits::list("agentIds", request.agent_ids.len(), limits::TEAM_AGENTS)?;
    let team = Team {
        id,
        name: name.to_owned(),
        lead_agent_id: request.lead_agent_id,
        agent_ids: request.agent_ids,
    };
    s.agents.put_team(&team).await?;
    Ok(team)
}

/// `PUT /agents/{agentId}`: the agent's own profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileRequest {
    pub name: String,
    pub email: Email,
    pub cell_phone: Phone,
    pub office_phone: Option<Phone>,
    pub licensed: bool,
    #[serde(
        default,
        deserialize_with = "limits::set_of_at_most::<_, _, { limits::ZIPS }>"
    )]
    pub zips: BTreeSet<Zip>,
    #[serde(default)]
    pub client_types: BTreeSet<ClientType>,
    #[serde(default)]
    pub warm_transfer: bool,
    pub push_token: Option<String>,
    pub time_zone: Zone,
}

/// Saves a profile, keeping what the agent does not set here: the fee agreement, the vacation
/// and the speed-to-lead record. Opting out of warm transfer takes effect at once (WT-8).
pub async fn put_agent(
    s: &Services,
    actor: &Actor,
    id: AgentId,
    request: ProfileRequest,
) -> Result<Agent, AppError> {
    actor.require_agent(&id)?;
    let name = request.name.trim();
    limits::required_text("name", name, limits::SHORT_TEXT)?;
    limits::list("zips", request.zips.len(), limits::ZIPS)?;
    if let Some(token) = &request.push_token {
        limits::required_text("pushToken", token, limits::DEVICE_TOKEN)?;
    }
    let profile = |stored: Option<&Agent>| Agent {
        id: id.clone(),
        name: name.to_owned(),
        email: Some(request.email.clone()),
        cell_phone: Some(request.cell_phone.clone()),
        office_phone: request.office_phone.clone(),
        licensed: request.licensed,
        zips: request.zips.clone(),
        client_types: request.client_types.clone(),
        warm_transfer: request.warm_transfer,
        push_token: request.push_token.clone(),
        time_zone: request.time_zone.clone(),
        vacation: stored.and_then(|a| a.vacation),
        fee_percent: stored.and_then(|a| a.fee_percent),
        response_times: stored.map_or_else(ResponseTimes::default, |a| a.response_times.clone()),
    };
    let saved = s
        .agents
        .edit_agent(&id, &|stored| Some(profile(stored)))
        .await?;
    // The edit always saves, so the store hands the profile back.
    saved.ok_or_else(|| StoreError::Internal("a profile edit saved nothing".into()).into())
}

/// Changes a stored profile, on the latest version of it (see `AgentDirectory::edit_agent`).
async fn edit_existing_agent(
    s: &Services,
    id: &AgentId,
    change: impl Fn(&mut Agent) + Send + Sync,
) -> Result<Agent, AppError> {
    let edit = |stored: Option<&Agent>| {
        stored.map(|a| {
            let mut a = a.clone();
            change(&mut a);
            a
        })
    };
    s.agents
        .edit_agent(id, &edit)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no agent {id}")))
}

/// `PUT /agents/{agentId}/agreement`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgreementRequest {
    pub fee_percent: Percent,
}

pub async fn put_agreement(
    s: &Services,
    actor: &Actor,
    id: &AgentId,
    request: AgreementRequest,
) -> Result<Agent, AppError> {
    actor.require(Role::Admin)?;
    edit_existing_agent(s, id, |a| a.fee_percent = Some(request.fee_percent)).await
}

/// `PUT /agents/{agentId}/vacation`: inclusive dates in the agent's time zone (LR-7, PPL-7).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VacationRequest {
    pub start: jiff::civil::Date,
    pub end: jiff::civil::Date,
}

pub async fn set_vacation(
    s: &Services,
    actor: &Actor,
    id: &AgentId,
    request: Option<VacationRequest>,
) -> Result<Agent, AppError> {
    actor.require_agent(id)?;
    let vacation = match request {
        Some(v) => {
            limits::day("start", v.start)?;
            limits::day("end", v.end)?;
            Some(Vacation::new(v.start, v.end)?)
        }
        None => None,
    };
    edit_existing_agent(s, id, |a| a.vacation = vacation).await
}

async fn led_team(s: &Services, actor: &Actor, team: &TeamId) -> Result<Team, AppError> {
    let t = s
        .agents
        .get_team(team)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no team {team}")))?;
    if actor.agent().as_ref() != Some(&t.lead_agent_id) {
        return Err(AppError::Forbidden(
            "only the team lead manages lead routing".into(),
        ));
    }
    Ok(t)
}

/// `GET /teams/{teamId}/routing`: the saved settings, or the defaults of a team that has none.
pub async fn get_routing(
    s: &Services,
    actor: &Actor,
    team: &TeamId,
) -> Result<RoutingSettings, AppError> {
    let t = led_team(s, actor, team).await?;
    Ok(s.agents
        .get_routing(team)
        .await?
        .unwrap_or_else(|| RoutingSettings::default_for(&t)))
}

/// `PUT /teams/{teamId}/routing`, every LR limit enforced by the domain.
pub async fn put_routing(
    s: &Services,
    actor: &Actor,
    team: &TeamId,
    update: RoutingUpdate,
) -> Result<RoutingSettings, AppError> {
    let t = led_team(s, actor, team).await?;
    let current = s.agents.get_routing(team).await?;
    let mut ids: Vec<AgentId> = vec![t.lead_agent_id.clone()];
    ids.extend(update.members.iter().flatten().map(|m| m.agent_id.clone()));
    ids.extend(update.fallback_agent_id.iter().cloned());
    ids.extend(
        current
            .iter()
            .flat_map(|c| c.members().iter().map(|m| m.agent_id.clone())),
    );
    ids.sort();
    ids.dedup();
    let agents = s.agents.get_agents(&ids).await?;
    let settings = RoutingSettings::apply(current.as_ref(), &t, update, |id| {
        agents.iter().find(|a| &a.id == id)
    })
    .map_err(|e| match e {
        RoutingError::UnknownAgent(_)
        | RoutingError::MemberNotReady(_)
        | RoutingError::NotOnTeam(_) => AppError::unprocessable("invalid_member", e.to_string()),
        _ => AppError::unprocessable("invalid_routing", e.to_string()),
    })?;
    s.agents.put_routing(team, &settings).await?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::testing::services;
    use crate::domain::team::{Receives, RoutingMember};

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            user: id.parse().unwrap(),
            role,
        }
    }

    fn profile(json: serde_json::Value) -> Result<ProfileRequest, serde_json::Error> {
        serde_json::from_value(json)
    }

    fn valid_profile() -> serde_json::Value {
        serde_json::json!({
            "name": "Ana Agent", "email": "ana@example.com", "cellPhone": "+14155550101",
            "licensed": true, "zips": ["94110"], "clientTypes": ["buyer"], "warmTransfer": true,
            "timeZone": "America/Los_Angeles"
        })
    }

    #[tokio::test]
    async fn gen_4_bad_profiles_are_refused_at_the_edge() {
        let mut bad_phone = valid_profile();
        bad_phone["cellPhone"] = "415-555-0101".into();
        assert!(profile(bad_phone).is_err());
        let mut bad_zone = valid_profile();
        bad_zone["timeZone"] = "Pacific".into();
        assert!(profile(bad_zone).is_err());
        let mut extra = valid_profile();
        extra["role"] = "admin".into();
        assert!(profile(extra).is_err(), "unknown fields are refused");
        assert!(profile(valid_profile()).is_ok());
    }

    #[tokio::test]
    async fn wt_8_profile_keeps_agreement_and_vacation_and_only_the_agent_edits_it() {
        let (s, _, _) = services();
        let ana: AgentId = "ana".parse().unwrap();
        let e = put_agent(
            &s,
            &actor("bob", Role::Agent),
            ana.clone(),
            profile(valid_profile()).unwrap(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 403);
        put_agent(
            &s,
            &actor("ana", Role::Agent),
            ana.clone(),
            profile(valid_profile()).unwrap(),
        )
        .await
        .unwrap();
        let fee: AgreementRequest =
            serde_json::from_value(serde_json::json!({"feePercent": 25})).unwrap();
        assert_eq!(
            put_agreement(&s, &actor("ana", Role::Agent), &ana, fee.clone())
                .await
                .unwrap_err()
                .status(),
            403
        );
        put_agreement(&s, &actor("root", Role::Admin), &ana, fee)
            .await
            .unwrap();
        let vac: VacationRequest =
            serde_json::from_value(serde_json::json!({"start": "2026-12-01", "end": "2026-12-05"}))
                .unwrap();
        set_vacation(&s, &actor("ana", Role::Agent), &ana, Some(vac))
            .await
            .unwrap();
        let mut out = valid_profile();
        out["warmTransfer"] = false.into();
        let a = put_agent(
            &s,
            &actor("ana", Role::Agent),
            ana.clone(),
            profile(out).unwrap(),
        )
        .await
        .unwrap();
        assert!(!a.warm_transfer);
        assert!(a.fee_percent.is_some() && a.vacation.is_some());
        let bad: VacationRequest =
            serde_json::from_value(serde_json::json!({"start": "2026-12-05", "end": "2026-12-01"}))
                .unwrap();
        assert_eq!(
            set_vacation(&s, &actor("ana", Role::Agent), &ana, Some(bad))
                .await
                .unwrap_err()
                .status(),
            400
        );
    }

    #[tokio::test]
    async fn lr_5_routing_with_an_unready_member_is_refused_and_not_saved() {
        let (s, _, _) = services();
        for id in ["lead", "m1"] {
            let mut p = valid_profile();
            p["cellPhone"] = "+14155550111".into();
            put_agent(
                &s,
                &actor(id, Role::Agent),
                id.parse().unwrap(),
                profile(p).unwrap(),
            )
            .await
            .unwrap();
        }
        let team: TeamId = "t1".parse().unwrap();
        let req: TeamRequest =
            serde_json::from_value(serde_json::json!({"name": "Bay Team", "leadAgentId": "lead", "agentIds": ["m1", "m2"]})).unwrap();
        assert_eq!(
            put_team(&s, &actor("lead", Role::Agent), team.clone(), req.clone())
                .await
                .unwrap_err()
                .status(),
            403
        );
        put_team(&s, &actor("root", Role::Admin), team.clone(), req)
            .await
            .unwrap();
        let update = |ids: &[&str]| RoutingUpdate {
            enabled: true,
            fallback_agent_id: None,
            members: Some(
                ids.iter()
                    .map(|i| RoutingMember {
                        agent_id: i.parse().unwrap(),
                        receives: Receives::Both,
                        warm_transfer: false,
                    })
                    .collect(),
            ),
        };
        // m2 has no profile: no account, email or phone.
        let e = put_routing(
            &s,
            &actor("lead", Role::Agent),
            &team,
            update(&["m1", "m2"]),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "invalid_member"));
        let saved = get_routing(&s, &actor("lead", Role::Agent), &team)
            .await
            .unwrap();
        assert!(!saved.enabled(), "nothing was written");
        let ok = put_routing(&s, &actor("lead", Role::Agent), &team, update(&["m1"]))
            .await
            .unwrap();
        assert!(ok.enabled() && ok.members().len() == 2);
        assert_eq!(
            get_routing(&s, &actor("m1", Role::Agent), &team)
                .await
                .unwrap_err()
                .status(),
            403
        );
    }
}
