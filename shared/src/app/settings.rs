//! Team and agent settings: teams (admin), profiles (the agent), fee agreements (admin),
//! vacations (the agent) and lead-routing settings (the team lead) (LR-2 to LR-7, WT-8, PPL-7).

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{Actor, AppError, Role, Services, limits};
use crate::domain::agent::{Agent, Vacation};
use crate::domain::speed::ResponseTimes;
use crate::domain::team::{RoutingError, RoutingSettings, RoutingUpdate, Team};
use crate::domain::values::{AgentId, ClientType, Email, Percent, Phone, TeamId, Zip, Zone};
use crate::effects::{Delivery, Effect, Effects, Message, Recipient};
use crate::ports::{PhoneVerification, StoreError};

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
    for phone in [Some(&request.cell_phone), request.office_phone.as_ref()]
        .into_iter()
        .flatten()
    {
        refuse_if_taken(s, &id, phone).await?;
    }
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

/// 409 `phone_taken` when another agent holds `phone` (TX-3). A number no agent proved yet is
/// free to save: it identifies nobody until the agent who saved it confirms its code.
async fn refuse_if_taken(s: &Services, agent: &AgentId, phone: &Phone) -> Result<(), AppError> {
    match s.agents.agent_by_phone(phone).await? {
        Some(owner) if &owner != agent => Err(AppError::conflict(
            "phone_taken",
            format!("{phone} belongs to another agent"),
        )),
        _ => Ok(()),
    }
}

/// How long a texted verification code works.
const VERIFICATION_VALID: SignedDuration = SignedDuration::from_mins(15);
/// Wrong codes before a verification code stops working (TX-5).
const VERIFICATION_TRIES: u8 = 3;
/// A request within this time of the last code sends nothing new: a retried request never texts
/// twice, and nobody can make the service text a number over and over.
const VERIFICATION_RESEND_AFTER: SignedDuration = SignedDuration::from_secs(60);

/// `POST /agents/{agentId}/phone-verification`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneVerificationRequest {
    pub phone: Phone,
}

/// `POST /agents/{agentId}/phone-verification/confirm`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneConfirmation {
    pub phone: Phone,
    pub code: String,
}

/// Where a number stands for its agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhoneStatus {
    pub phone: Phone,
    pub verified: bool,
}

/// Texts a 6-digit code to `phone` (TX-3), committed with the pending code (EF-1). A new request
/// replaces the code before it, but not within a minute of it (a retry texts nothing twice). A
/// number another agent holds is refused with nothing sent.
pub async fn request_phone_verification(
    s: &Services,
    actor: &Actor,
    id: &AgentId,
    request: PhoneVerificationRequest,
    now: Timestamp,
) -> Result<PhoneStatus, AppError> {
    actor.require_agent(id)?;
    let phone = request.phone;
    refuse_if_taken(s, id, &phone).await?;
    let recent = s.agents.phone_verification(id, &phone).await?.filter(|p| {
        p.wrong_tries < VERIFICATION_TRIES && now < p.sent_at + VERIFICATION_RESEND_AFTER
    });
    if recent.is_some() {
        return Ok(PhoneStatus {
            phone,
            verified: false,
        });
    }
    let code = format!("{:06}", super::random_u32() % 1_000_000);
    let key = format!("verify#{id}#{phone}#{}", ulid::Ulid::new());
    let effects = Effects::new(key.clone()).with(Effect::Deliver(Delivery {
        key,
        referral_id: None,
        to: Recipient::Phone {
            phone: phone.clone(),
        },
        message: Message::Sms {
            body: format!(
                "Code: {code} confirms this number for your referral account. It works for 15 minutes; if you did not ask for it, ignore this text."
            ),
        },
    }));
    let pending = PhoneVerification {
        code,
        sent_at: now,
        valid_until: now + VERIFICATION_VALID,
        wrong_tries: 0,
    };
    s.agents
        .save_phone_verification(id, &phone, Some(&pending), &effects)
        .await?;
    Ok(PhoneStatus {
        phone,
        verified: false,
    })
}

/// The number becomes the agent's and identifies them (TX-3): one conditional write, so of two
/// agents confirming one number only one holds it (409 `phone_taken` for the other). A wrong
/// code counts; after 3 the code stops working and a new one must be asked for (TX-5).
pub async fn confirm_phone_verification(
    s: &Services,
    actor: &Actor,
    id: &AgentId,
    request: PhoneConfirmation,
    now: Timestamp,
) -> Result<PhoneStatus, AppError> {
    actor.require_agent(id)?;
    let phone = request.phone;
    // Confirmed already (a retry of a confirmation that landed): the same answer again.
    if s.agents.agent_by_phone(&phone).await?.as_ref() == Some(id) {
        return Ok(PhoneStatus {
            phone,
            verified: true,
        });
    }
    let not_verified = |message: &str| AppError::unprocessable("not_verified", message);
    let Some(pending) = s
        .agents
        .phone_verification(id, &phone)
        .await?
        .filter(|p| p.valid_until > now && p.wrong_tries < VERIFICATION_TRIES)
    else {
        return Err(not_verified(
            "no code is waiting for this number: ask for a new one",
        ));
    };
    if request.code.trim() != pending.code {
        let tries = pending.wrong_tries.saturating_add(1);
        let left = (tries < VERIFICATION_TRIES).then_some(PhoneVerification {
            wrong_tries: tries,
            ..pending
        });
        s.agents
            .save_phone_verification(id, &phone, left.as_ref(), &Effects::default())
            .await?;
        return Err(not_verified(if left.is_some() {
            "the code is wrong"
        } else {
            "the code is wrong, and that was the last try: ask for a new one"
        }));
    }
    if !s.agents.take_phone(id, &phone).await? {
        return Err(AppError::conflict(
            "phone_taken",
            format!("{phone} belongs to another agent"),
        ));
    }
    Ok(PhoneStatus {
        phone,
        verified: true,
    })
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
        // A number beyond its documented limit (EF-4).
        RoutingError::DailyCapOutOfRange(..) | RoutingError::ContactDeadlineOutOfRange(_) => {
            AppError::BadRequest(e.to_string())
        }
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

    fn now() -> Timestamp {
        "2026-03-02T17:00:00Z".parse().unwrap()
    }

    /// The code in the last verification text sent to `phone`.
    fn texted_code(outbox: &crate::memory::Outbox, phone: &str) -> String {
        outbox
            .sent()
            .into_iter()
            .rev()
            .find_map(|x| match x {
                crate::memory::Sent::Sms { to, body } if to.as_str() == phone => {
                    Some(body.split("Code: ").nth(1)?[..6].to_owned())
                }
                _ => None,
            })
            .expect("a code was texted")
    }

    async fn verify(
        s: &Services,
        outbox: &std::sync::Arc<crate::memory::Outbox>,
        agent: &str,
        phone: &str,
    ) {
        let id: AgentId = agent.parse().unwrap();
        let who = actor(agent, Role::Agent);
        let phone: Phone = phone.parse().unwrap();
        let request = PhoneVerificationRequest {
            phone: phone.clone(),
        };
        request_phone_verification(s, &who, &id, request, now())
            .await
            .unwrap();
        crate::memory::deliver(s, outbox, now()).await.unwrap();
        let code = texted_code(outbox, phone.as_str());
        let confirmed = PhoneConfirmation { phone, code };
        let status = confirm_phone_verification(s, &who, &id, confirmed, now())
            .await
            .unwrap();
        assert!(status.verified);
    }

    #[tokio::test]
    async fn tx_3_a_number_identifies_its_agent_only_once_the_texted_code_comes_back() {
        let (s, _store, outbox) = services();
        let ana = actor("ana", Role::Agent);
        put_agent(
            &s,
            &ana,
            "ana".parse().unwrap(),
            profile(valid_profile()).unwrap(),
        )
        .await
        .unwrap();
        let phone: Phone = "+14155550101".parse().unwrap();
        assert_eq!(s.agents.agent_by_phone(&phone).await.unwrap(), None);
        verify(&s, &outbox, "ana", "+1 415 555 0101").await;
        assert_eq!(
            s.agents.agent_by_phone(&phone).await.unwrap(),
            Some("ana".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn tx_3_a_second_agent_is_refused_a_verified_number() {
        let (s, _store, outbox) = services();
        verify(&s, &outbox, "ana", "+14155550101").await;
        let sent_before = outbox.sent().len();
        // Saved in a profile, or asked to be verified: 409 phone_taken, and nothing written or sent.
        let mut taken = valid_profile();
        taken["cellPhone"] = "+1 (415) 555-0101".into();
        let m = actor("m", Role::Agent);
        let e = put_agent(&s, &m, "m".parse().unwrap(), profile(taken).unwrap())
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "phone_taken"));
        assert!(
            s.agents
                .get_agent(&"m".parse().unwrap())
                .await
                .unwrap()
                .is_none()
        );
        let request = PhoneVerificationRequest {
            phone: "+14155550101".parse().unwrap(),
        };
        let e = request_phone_verification(&s, &m, &"m".parse().unwrap(), request, now())
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "phone_taken"));
        assert_eq!(outbox.sent().len(), sent_before);
    }

    #[tokio::test]
    async fn tx_3_of_two_agents_confirming_one_number_only_the_first_holds_it() {
        let (s, _store, outbox) = services();
        let phone: Phone = "+14155550101".parse().unwrap();
        for agent in ["ana", "m"] {
            let request = PhoneVerificationRequest {
                phone: phone.clone(),
            };
            request_phone_verification(
                &s,
                &actor(agent, Role::Agent),
                &agent.parse().unwrap(),
                request,
                now(),
            )
            .await
            .unwrap();
        }
        crate::memory::deliver(&s, &outbox, now()).await.unwrap();
        let codes: Vec<String> = outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                crate::memory::Sent::Sms { body, .. } => {
                    Some(body.split("Code: ").nth(1)?[..6].to_owned())
                }
                _ => None,
            })
            .collect();
        assert_eq!(codes.len(), 2);
        let confirm = |agent: &'static str, code: String| {
            let s = s.clone();
            let phone = phone.clone();
            async move {
                let request = PhoneConfirmation { phone, code };
                confirm_phone_verification(
                    &s,
                    &actor(agent, Role::Agent),
                    &agent.parse().unwrap(),
                    request,
                    now(),
                )
                .await
            }
        };
        assert!(confirm("ana", codes[0].clone()).await.unwrap().verified);
        let e = confirm("m", codes[1].clone()).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "phone_taken"));
        assert_eq!(
            s.agents.agent_by_phone(&phone).await.unwrap(),
            Some("ana".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn tx_5_three_wrong_verification_codes_end_the_code() {
        let (s, _store, outbox) = services();
        let ana = actor("ana", Role::Agent);
        let id: AgentId = "ana".parse().unwrap();
        let phone: Phone = "+14155550101".parse().unwrap();
        let request = PhoneVerificationRequest {
            phone: phone.clone(),
        };
        request_phone_verification(&s, &ana, &id, request, now())
            .await
            .unwrap();
        crate::memory::deliver(&s, &outbox, now()).await.unwrap();
        let code = texted_code(&outbox, phone.as_str());
        let wrong = if code == "000000" { "111111" } else { "000000" };
        for _ in 0..3 {
            let request = PhoneConfirmation {
                phone: phone.clone(),
                code: wrong.into(),
            };
            let e = confirm_phone_verification(&s, &ana, &id, request, now())
                .await
                .unwrap_err();
            assert_eq!((e.status(), e.code()), (422, "not_verified"));
        }
        // The right code no longer works: guessing a million codes three at a time is no way in.
        let request = PhoneConfirmation {
            phone: phone.clone(),
            code,
        };
        let e = confirm_phone_verification(&s, &ana, &id, request, now())
            .await
            .unwrap_err();
        assert_eq!(e.code(), "not_verified");
        assert_eq!(s.agents.agent_by_phone(&phone).await.unwrap(), None);
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
                        daily_cap: None,
                    })
                    .collect(),
            ),
            contact_deadline_minutes: None,
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
