//! The referral pipeline after the claim: stages, notes, payment, corrections, and what each
//! caller may see (ST-2 to ST-11, GEN-3).

use jiff::Timestamp;
use serde::Serialize;

use super::{Actor, AppError, Editing, Role, Services, idempotent_id, limits};
use crate::domain::referral::{Client, HistoryEntry, HistoryEvent, LeadDetails, Program, Referral};
use crate::domain::stage::{self, Pipeline, Stage, StageChange, StageContext, StageError};
use crate::domain::values::{AgentId, Money, ReferralId, TeamId};
use crate::effects::{Effect, Effects, Timer, TimerPayload, key};
use crate::ports::DomainEvent;

/// The name of a referral's Coming Soon schedule: one per referral, so a new date replaces it.
pub fn coming_soon_schedule(id: &ReferralId) -> String {
    format!("coming-soon-{id}")
}

/// What the caller may do with one referral (ST-11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The assigned agent or their team lead: may change it (ST-11). Only the assigned agent
    /// among them sees the client's contacts and the briefing (GEN-3).
    Owner {
        assigned: bool,
    },
    Closings,
    /// Offered but not (or not yet) theirs: lead details only.
    Offered,
    Advisor,
    None,
}

async fn access(s: &Services, actor: &Actor, r: &Referral) -> Result<Access, AppError> {
    match actor.role {
        Role::Closings => return Ok(Access::Closings),
        // The advisor who created it follows their client; other advisors work from the queue.
        Role::Advisor if r.created_by == actor.user => return Ok(Access::Advisor),
        Role::Advisor => return Ok(Access::None),
        // Admins set teams and agreements; a referral is not theirs to read (API.md).
        Role::Admin => return Ok(Access::None),
        Role::Agent => {}
    }
    let me = AgentId::from(&actor.user);
    if let Some(assigned) = r.assigned_agent() {
        if assigned == &me {
            return Ok(Access::Owner { assigned: true });
        }
        if leads_agent(s, &me, assigned, r.team_id.as_ref()).await? {
            return Ok(Access::Owner { assigned: false });
        }
    }
    Ok(if r.is_offered_to(&me) {
        Access::Offered
    } else {
        Access::None
    })
}

/// Whether `lead` leads a team `agent` is on (the referral's own team first).
async fn leads_agent(
    s: &Services,
    lead: &AgentId,
    agent: &AgentId,
    team: Option<&TeamId>,
) -> Result<bool, AppError> {
    if let Some(team) = team
        && let Some(t) = s.agents.get_team(team).await?
        && &t.lead_agent_id == lead
        && t.has_agent(agent)
    {
        return Ok(true);
    }
    Ok(s.agents
        .teams_led_by(lead)
        .await?
        .iter()
        .any(|t| t.has_agent(agent)))
}

/// A referral as one caller sees it: `client` and the advisor's `briefing` (which may mention
/// them) only for its assigned agent and closings (GEN-3); the briefing also for advisors.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferralView {
    pub id: ReferralId,
    pub program: Program,
    #[serde(flatten)]
    pub lead: LeadDetails,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub briefing: Option<String>,
    pub team_id: Option<TeamId>,
    pub stage: Option<Stage>,
    pub assigned_agent_id: Option<AgentId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<Client>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<Pipeline>,
    /// The referral fee its closing owes, once a sale price is known, to those who manage it
    /// (RC-5, ST-9): computed by `Referral::fee_owed`, as on the closings desk and the documents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee_owed: Option<Money>,
    /// A warm transfer's metrics: time to first response, alerted, responded, outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_transfer: Option<crate::domain::warm_transfer::Metrics>,
    /// For its advisor: the active referral of the same client it repeats (RC-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<ReferralId>,
    pub history: Vec<HistoryEntry>,
}

pub async fn view_referral(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
) -> Result<ReferralView, AppError> {
    let r = load(s, id).await?.0;
    let access = access(s, actor, &r).await?;
    if access == Access::None {
        return Err(AppError::Forbidden(
            "this referral is not yours to see".into(),
        ));
    }
    let contacts = matches!(access, Access::Owner { assigned: true } | Access::Closings);
    let manages = matches!(access, Access::Owner { .. } | Access::Closings);
    let history = match access {
        Access::Offered => Vec::new(),
        // Agents' notes are for those who manage the referral (API.md).
        Access::Advisor => s
            .referrals
            .history(id)
            .await?
            .into_iter()
            .filter(|h| !matches!(h.event, HistoryEvent::Note { .. }))
            .collect(),
        _ => s.referrals.history(id).await?,
    };
    let fee_owed = match (manages, r.assigned_agent()) {
        (true, Some(agent)) if r.pipeline().is_some_and(|p| p.sale_price.is_some()) => {
            let agreement = s.agents.get_agent(agent).await?.and_then(|a| a.fee_percent);
            r.fee_owed(agreement)
        }
        _ => None,
    };
    Ok(ReferralView {
        id: r.id.clone(),
        program: r.program,
        lead: r.lead.clone(),
        briefing: (contacts || access == Access::Advisor).then(|| r.briefing.clone()),
        team_id: r.team_id.clone(),
        stage: r.stage(),
        assigned_agent_id: r.assigned_agent().cloned(),
        client: contacts.then(|| r.client.clone()),
        pipeline: if manages { r.pipeline().cloned() } else { None },
        fee_owed,
        warm_transfer: (access != Access::Offered)
            .then(|| super::warm_transfer::metrics(&r, &history))
            .flatten(),
        duplicate_of: (access == Access::Advisor)
            .then(|| r.duplicate_of.clone())
            .flatten(),
        history,
    })
}

async fn load(s: &Services, id: &ReferralId) -> Result<(Referral, u64), AppError> {
    let stored = s
        .referrals
        .get_referral(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no referral {id}")))?;
    Ok((stored.value, stored.version))
}

fn stage_error(e: StageError) -> AppError {
    match e {
        StageError::Backward { .. }
        | StageError::BelowLastActive { .. }
        | StageError::NotFailable(_) => AppError::conflict("backward_move", e.to_string()),
        StageError::MissingField { .. } => AppError::unprocessable("missing_field", e.to_string()),
        StageError::WrongClientType { .. }
        | StageError::InvalidCorrection
        | StageError::PplFailReason => AppError::unprocessable("invalid_stage", e.to_string()),
        StageError::PaymentNotClosed(_) => AppError::conflict("not_closed", e.to_string()),
        StageError::ClosedPaidByClosingsOnly | StageError::CorrectionByClosingsOnly => {
            AppError::Forbidden(e.to_string())
        }
    }
}

/// Applies `change` to the referral's pipeline as `actor`, retrying on a concurrent update, and
/// saves it with what it owes (EF-1): `StageChanged` on the bus, and the Coming Soon timer started
/// or stopped. Everything that can refuse the change (access, the stage rules, a list date that
/// cannot be placed) does so before anything is written.
async fn move_pipeline(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    now: Timestamp,
    allowed: impl Fn(Access) -> bool,
    change: impl Fn(&Referral, &Pipeline) -> Result<Pipeline, StageError>,
) -> Result<Referral, AppError> {
    let mut edit = Editing::new(s, id);
    loop {
        let stored = edit.read().await?;
        let r = &stored.value;
        if !allowed(access(s, actor, r).await?) {
            return Err(AppError::Forbidden(
                "only the assigned agent, their team lead or the closings team change a referral"
                    .into(),
            ));
        }
        let current = r.pipeline().ok_or_else(|| {
            AppError::conflict("not_claimed", "nobody has claimed this referral yet")
        })?;
        let next_pipeline = change(r, current).map_err(stage_error)?;
        let (from, to) = (current.stage, next_pipeline.stage);
        let mut effects = Effects::new(key::version(id, stored.version + 1)).with(Effect::Publish(
            DomainEvent::StageChanged {
                referral_id: id.clone(),
                from: Some(from),
                to,
                escrow_entry: next_pipeline.escrow_entries,
            },
        ));
        effects.extend(coming_soon_timer(s, r, from, &next_pipeline).await?);
        let mut next = r.clone();
        if let Some(held) = next.assigned.as_mut() {
            held.pipeline = next_pipeline;
        }
        let entry = HistoryEntry::new(
            now,
            Some(actor.user.clone()),
            HistoryEvent::StageChanged {
                from: Some(from),
                to,
            },
        );
        if edit.save(&next, stored.version, &[entry], &effects).await? {
            return Ok(next);
        }
    }
}

/// The assigned agent's time zone, in which list dates fall (UTC for an unassigned referral).
async fn agent_zone(s: &Services, r: &Referral) -> Result<jiff::tz::TimeZone, AppError> {
    Ok(match r.assigned_agent() {
        Some(a) => s
            .agents
            .get_agent(a)
            .await?
            .map(|a| a.time_zone.tz().clone()),
        None => None,
    }
    .unwrap_or(jiff::tz::TimeZone::UTC))
}

/// Keeps the Coming Soon timer in step (ST-3): started (or moved) on entry, stopped on leaving.
/// A list date that cannot be placed in the agent's time zone refuses the change.
async fn coming_soon_timer(
    s: &Services,
    r: &Referral,
    from: Stage,
    next: &Pipeline,
) -> Result<Option<Effect>, AppError> {
    let name = coming_soon_schedule(&r.id);
    if next.stage == Stage::ComingSoon {
        let Some(date) = next.list_date else {
            return Ok(None);
        };
        let zone = agent_zone(s, r).await?;
        let at = date
            .to_zoned(zone)
            .map_err(|e| AppError::BadRequest(format!("listDate: {e}")))?
            .timestamp();
        Ok(Some(Effect::StartTimer(Timer {
            name,
            at,
            payload: TimerPayload::ListOnDate {
                referral_id: r.id.clone(),
            },
        })))
    } else if from == Stage::ComingSoon {
        Ok(Some(Effect::StopTimer { name }))
    } else {
        Ok(None)
    }
}

/// The assigned agent or their team lead moves the stage (ST-2 to ST-5, ST-8, ST-11, PPL-8).
pub async fn change_stage(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    change: &StageChange,
    now: Timestamp,
) -> Result<Referral, AppError> {
    if let Some(price) = change.sale_price {
        limits::amount("salePrice", price)?;
    }
    for (field, date) in [
        ("listDate", change.list_date),
        ("closeDate", change.close_date),
    ] {
        if let Some(date) = date {
            limits::day(field, date)?;
        }
    }
    if let Some(at) = change.meeting_at {
        limits::time("meetingAt", at)?;
    }
    move_pipeline(
        s,
        actor,
        id,
        now,
        |a| matches!(a, Access::Owner { .. }),
        |r, p| {
            let claimed_at = r.assignment().map_or(r.created_at, |a| a.claimed_at);
            stage::change_stage(
                p,
                change,
                StageContext {
                    program: r.program,
                    client_type: r.lead.client_type,
                    claimed_at,
                    now,
                },
            )
        },
    )
    .await
}

/// The closings team records the payment: Closed-Paid (ST-6).
pub async fn record_payment(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    now: Timestamp,
) -> Result<Referral, AppError> {
    actor.require(Role::Closings)?;
    move_pipeline(
        s,
        actor,
        id,
        now,
        |a| a == Access::Closings,
        |_, p| stage::record_payment(p, now),
    )
    .await
}

/// The closings team moves In Escrow back to Listing or Making an Offer (ST-7).
pub async fn correct_escrow(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    to: Stage,
    now: Timestamp,
) -> Result<Referral, AppError> {
    actor.require(Role::Closings)?;
    move_pipeline(
        s,
        actor,
        id,
        now,
        |a| a == Access::Closings,
        |r, p| stage::correct_escrow(p, to, r.lead.client_type, now),
    )
    .await
}

/// Coming Soon becomes Listing on its list date, fired by its timer (ST-3). A timer that fires
/// twice, or after the referral moved on, changes nothing.
pub async fn list_on_date(s: &Services, id: &ReferralId, now: Timestamp) -> Result<bool, AppError> {
    let mut edit = Editing::new(s, id);
    loop {
        let stored = edit.read().await?;
        let r = &stored.value;
        let Some(p) = r.pipeline() else {
            return Ok(false);
        };
        let zone = agent_zone(s, r).await?;
        let today = now.to_zoned(zone).date();
        let Some(next_pipeline) = stage::list_on_date(p, today, now) else {
            return Ok(false);
        };
        let effects = Effects::new(key::version(id, stored.version + 1)).with(Effect::Publish(
            DomainEvent::StageChanged {
                referral_id: id.clone(),
                from: Some(Stage::ComingSoon),
                to: Stage::Listing,
                escrow_entry: p.escrow_entries,
            },
        ));
        let mut next = r.clone();
        if let Some(held) = next.assigned.as_mut() {
            held.pipeline = next_pipeline;
        }
        let entry = HistoryEntry::new(
            now,
            None,
            HistoryEvent::StageChanged {
                from: Some(Stage::ComingSoon),
                to: Stage::Listing,
            },
        );
        if edit.save(&next, stored.version, &[entry], &effects).await? {
            return Ok(true);
        }
    }
}

/// Maximum length of a note, so one note cannot crowd out a referral's history.
pub const MAX_NOTE_CHARS: usize = limits::LONG_TEXT;

/// A note at any stage, kept with who and when (ST-10).
/// With an `Idempotency-Key`, a retried request adds nothing twice (EF-3).
pub async fn add_note(
    s: &Services,
    actor: &Actor,
    id: &ReferralId,
    text: &str,
    idempotency_key: Option<&str>,
    now: Timestamp,
) -> Result<(), AppError> {
    let text = text.trim();
    limits::required_text("text", text, MAX_NOTE_CHARS)?;
    let once = idempotency_key
        .map(|key| idempotent_id(actor, key, "note-"))
        .transpose()?;
    let (r, _) = load(s, id).await?;
    // Closings reads the notes but does not add them (API.md).
    if !matches!(access(s, actor, &r).await?, Access::Owner { .. }) {
        return Err(AppError::Forbidden(
            "only the assigned agent or their team lead add notes".into(),
        ));
    }
    let entry = HistoryEntry::new(
        now,
        Some(actor.user.clone()),
        HistoryEvent::Note {
            text: text.to_owned(),
        },
    );
    match once {
        Some(key) => {
            s.referrals
                .append_history_once(id, &[entry], &format!("{key}#{id}"))
                .await?;
        }
        None => s.referrals.append_history(id, &[entry]).await?,
    }
    Ok(())
}

/// An agent's referral list, optionally at one stage; the agent or their team lead only.
pub async fn agent_referrals(
    s: &Services,
    actor: &Actor,
    agent: &AgentId,
    stage: Option<Stage>,
) -> Result<Vec<ReferralView>, AppError> {
    let me = actor
        .agent()
        .ok_or_else(|| AppError::Forbidden("only agents have referral lists".into()))?;
    if &me != agent && !leads_agent(s, &me, agent, None).await? {
        return Err(AppError::Forbidden(
            "only the agent or their team lead sees this list".into(),
        ));
    }
    let mut list = s.referrals.agent_referrals(agent, stage).await?;
    // `closed` means Closed and Closed-Paid (API.md).
    if stage == Some(Stage::Closed) {
        list.extend(
            s.referrals
                .agent_referrals(agent, Some(Stage::ClosedPaid))
                .await?,
        );
    }
    // The team lead sees the list, not the clients' contacts (GEN-3).
    let own = &me == agent;
    Ok(list
        .into_iter()
        .map(|r| ReferralView {
            id: r.id.clone(),
            program: r.program,
            lead: r.lead.clone(),
            briefing: own.then(|| r.briefing.clone()),
            team_id: r.team_id.clone(),
            stage: r.stage(),
            assigned_agent_id: r.assigned_agent().cloned(),
            client: own.then(|| r.client.clone()),
            pipeline: r.pipeline().cloned(),
            fee_owed: None,
            warm_transfer: None,
            duplicate_of: None,
            history: Vec::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::claim_referral;
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::ClaimChannel;
    use crate::memory::Sent;
    use crate::ports::{AgentDirectory, ReferralStore};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn agent_actor(id: &str) -> Actor {
        Actor {
            user: id.parse().unwrap(),
            role: Role::Agent,
        }
    }

    fn closings() -> Actor {
        Actor {
            user: "closer".parse().unwrap(),
            role: Role::Closings,
        }
    }

    async fn claimed(
        program: Program,
    ) -> (Services, std::sync::Arc<crate::memory::Outbox>, ReferralId) {
        let (s, store, outbox) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let r = referral(program, &["a1", "a2"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        claim_referral(
            &s,
            &"a1".parse().unwrap(),
            &r.id,
            ClaimChannel::App,
            t("2026-01-02T00:00:00Z"),
        )
        .await
        .unwrap();
        (s, outbox, r.id)
    }

    #[tokio::test]
    async fn st_2_backward_move_is_409_with_a_note_hint_and_writes_nothing() {
        let (s, _, id) = claimed(Program::Routing).await;
        let a1 = agent_actor("a1");
        let now = t("2026-01-03T00:00:00Z");
        change_stage(&s, &a1, &id, &StageChange::to(Stage::Connected), now)
            .await
            .unwrap();
        let before = s.referrals.history(&id).await.unwrap().len();
        let e = change_stage(&s, &a1, &id, &StageChange::to(Stage::LeftVoicemail), now)
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (409, "backward_move"));
        assert!(e.public_message().contains("note"));
        assert_eq!(s.referrals.history(&id).await.unwrap().len(), before);
    }

    #[tokio::test]
    async fn st_4_missing_escrow_fields_are_422() {
        let (s, _, id) = claimed(Program::Routing).await;
        let e = change_stage(
            &s,
            &agent_actor("a1"),
            &id,
            &StageChange::to(Stage::InEscrow),
            t("2026-01-03T00:00:00Z"),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "missing_field"));
    }

    #[tokio::test]
    async fn st_11_only_assigned_agent_team_lead_or_closings_change_it() {
        let (s, _, id) = claimed(Program::Routing).await;
        let now = t("2026-01-03T00:00:00Z");
        let e = change_stage(
            &s,
            &agent_actor("a2"),
            &id,
            &StageChange::to(Stage::Connected),
            now,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status(), 403);
        let e = add_note(&s, &agent_actor("a2"), &id, "hi", None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        // The lead of a team a1 is on may.
        s.agents
            .put_team(&crate::domain::team::Team {
                id: "t1".parse().unwrap(),
                name: "T".into(),
                lead_agent_id: "lead".parse().unwrap(),
                agent_ids: ["a1".parse().unwrap()].into(),
            })
            .await
            .unwrap();
        change_stage(
            &s,
            &agent_actor("lead"),
            &id,
            &StageChange::to(Stage::Connected),
            now,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn st_6_payment_by_closings_only_and_st_10_history_keeps_who_and_when() {
        let (s, _, id) = claimed(Program::Routing).await;
        let a1 = agent_actor("a1");
        let now = t("2026-01-03T00:00:00Z");
        change_stage(&s, &a1, &id, &StageChange::to(Stage::Closed), now)
            .await
            .unwrap();
        let e = record_payment(&s, &a1, &id, now).await.unwrap_err();
        assert_eq!(e.status(), 403);
        add_note(&s, &a1, &id, "Paid by wire today", None, now)
            .await
            .unwrap();
        let paid = record_payment(&s, &closings(), &id, now).await.unwrap();
        assert_eq!(paid.stage(), Some(Stage::ClosedPaid));
        let history = s.referrals.history(&id).await.unwrap();
        let last = history.last().unwrap();
        assert_eq!(last.by.as_ref().map(|u| u.as_str()), Some("closer"));
        assert_eq!(last.at, now);
        assert!(history.iter().any(
            |h| matches!(&h.event, HistoryEvent::Note { text } if text == "Paid by wire today")
        ));
    }

    #[tokio::test]
    async fn st_7_correction_by_closings_moves_escrow_back() {
        let (s, _, id) = claimed(Program::Routing).await;
        let now = t("2026-01-03T00:00:00Z");
        let escrow = StageChange {
            sale_price: Some("600000".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 2, 20)),
            ..StageChange::to(Stage::InEscrow)
        };
        change_stage(&s, &agent_actor("a1"), &id, &escrow, now)
            .await
            .unwrap();
        let e = correct_escrow(&s, &agent_actor("a1"), &id, Stage::Listing, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        let back = correct_escrow(&s, &closings(), &id, Stage::Listing, now)
            .await
            .unwrap();
        assert_eq!(back.stage(), Some(Stage::Listing));
    }

    #[tokio::test]
    async fn st_3_coming_soon_schedules_the_listing_and_lists_on_the_date() {
        let (s, outbox, id) = claimed(Program::Routing).await;
        let now = t("2026-01-03T00:00:00Z");
        let soon = StageChange {
            list_date: Some(jiff::civil::date(2026, 1, 20)),
            ..StageChange::to(Stage::ComingSoon)
        };
        change_stage(&s, &agent_actor("a1"), &id, &soon, now)
            .await
            .unwrap();
        let scheduled = outbox.sent().into_iter().find_map(|x| match x {
            Sent::Scheduled(timer) => Some((timer.name, timer.at)),
            _ => None,
        });
        // Midnight of the list date in the agent's Los Angeles time.
        assert_eq!(
            scheduled,
            Some((coming_soon_schedule(&id), t("2026-01-20T08:00:00Z")))
        );
        assert!(
            !list_on_date(&s, &id, t("2026-01-20T07:59:00Z"))
                .await
                .unwrap()
        );
        assert!(
            list_on_date(&s, &id, t("2026-01-20T08:00:00Z"))
                .await
                .unwrap()
        );
        assert!(
            !list_on_date(&s, &id, t("2026-01-20T08:00:00Z"))
                .await
                .unwrap(),
            "fired twice: once"
        );
        let r = s.referrals.get_referral(&id).await.unwrap().unwrap().value;
        assert_eq!(r.stage(), Some(Stage::Listing));
    }

    /// ST-3: a new list date replaces the schedule (one name per referral); moving on cancels it.
    #[tokio::test]
    async fn st_3_a_new_list_date_replaces_the_schedule_and_moving_on_cancels_it() {
        let (s, outbox, id) = claimed(Program::Routing).await;
        let a1 = agent_actor("a1");
        let now = t("2026-01-03T00:00:00Z");
        let on = |d| StageChange {
            list_date: Some(d),
            ..StageChange::to(Stage::ComingSoon)
        };
        change_stage(&s, &a1, &id, &on(jiff::civil::date(2026, 1, 20)), now)
            .await
            .unwrap();
        change_stage(&s, &a1, &id, &on(jiff::civil::date(2026, 2, 3)), now)
            .await
            .unwrap();
        assert!(
            !list_on_date(&s, &id, t("2026-01-20T08:00:00Z"))
                .await
                .unwrap(),
            "the old date lists nothing"
        );
        change_stage(&s, &a1, &id, &StageChange::to(Stage::Listing), now)
            .await
            .unwrap();
        let timers: Vec<(String, Option<Timestamp>)> = outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Scheduled(timer) => Some((timer.name, Some(timer.at))),
                Sent::Cancelled { name } => Some((name, None)),
                _ => None,
            })
            .collect();
        let name = coming_soon_schedule(&id);
        assert_eq!(
            timers,
            vec![
                (name.clone(), Some(t("2026-01-20T08:00:00Z"))),
                (name.clone(), Some(t("2026-02-03T08:00:00Z"))),
                (name, None),
            ]
        );
    }

    #[tokio::test]
    async fn wt_9_warm_transfer_winner_updates_the_referral_after_the_call() {
        let (s, store, _) = services();
        store.put_agent(&agent("a1")).await.unwrap();
        let r = referral(Program::WarmTransfer, &["a1", "a2", "a3"]);
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let line = ClaimChannel::WarmTransferLine;
        claim_referral(
            &s,
            &"a1".parse().unwrap(),
            &r.id,
            line,
            t("2026-01-02T00:00:05Z"),
        )
        .await
        .unwrap();
        let after_call = StageChange {
            meeting_at: Some(t("2026-01-04T18:00:00Z")),
            ..StageChange::to(Stage::MeetingScheduled)
        };
        let moved = change_stage(
            &s,
            &agent_actor("a1"),
            &r.id,
            &after_call,
            t("2026-01-02T00:20:00Z"),
        )
        .await
        .unwrap();
        assert_eq!(moved.stage(), Some(Stage::MeetingScheduled));
        let e = change_stage(
            &s,
            &agent_actor("a2"),
            &r.id,
            &StageChange::to(Stage::Connected),
            t("2026-01-02T00:21:00Z"),
        )
        .await
        .unwrap_err();
        assert_eq!(
            e.status(),
            403,
            "a responder who lost the race cannot update it"
        );
    }

    #[tokio::test]
    async fn gen_3_contacts_only_for_the_assigned_agent_and_closings() {
        let (s, _, id) = claimed(Program::Routing).await;
        let mine = view_referral(&s, &agent_actor("a1"), &id).await.unwrap();
        assert!(mine.client.is_some());
        let other = view_referral(&s, &agent_actor("a2"), &id).await.unwrap();
        assert!(other.client.is_none() && other.history.is_empty());
        let json = serde_json::to_string(&other).unwrap();
        assert!(
            !json.contains("+14155559876") && !json.contains("casey@example.com"),
            "{json}"
        );
        assert!(
            view_referral(&s, &closings(), &id)
                .await
                .unwrap()
                .client
                .is_some()
        );
        let e = view_referral(&s, &agent_actor("stranger"), &id)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        // The advisor's briefing may hold the contacts too: it stays with the assigned agent.
        assert!(mine.briefing.is_some() && other.briefing.is_none());
    }

    #[tokio::test]
    async fn access_the_advisor_who_created_it_reads_it_without_notes_or_contacts() {
        let (s, _, id) = claimed(Program::Routing).await;
        let now = t("2026-01-03T00:00:00Z");
        add_note(
            &s,
            &agent_actor("a1"),
            &id,
            "Met Casey at the open house",
            None,
            now,
        )
        .await
        .unwrap();
        let creator = s.referrals.get_referral(&id).await.unwrap().unwrap();
        let advisor = Actor {
            user: creator.value.created_by.clone(),
            role: Role::Advisor,
        };
        let seen = view_referral(&s, &advisor, &id).await.unwrap();
        assert!(seen.client.is_none(), "no contacts");
        assert!(!seen.history.is_empty(), "the history, without the notes");
        let json = serde_json::to_string(&seen).unwrap();
        assert!(!json.contains("open house"), "{json}");
        assert!(!json.contains("casey@example.com"), "{json}");
        let other = Actor {
            user: "another-advisor".parse().unwrap(),
            role: Role::Advisor,
        };
        let e = view_referral(&s, &other, &id).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (403, "forbidden"));
    }

    #[tokio::test]
    async fn access_closings_reads_notes_and_contacts_but_adds_no_notes() {
        let (s, _, id) = claimed(Program::Routing).await;
        let now = t("2026-01-03T00:00:00Z");
        add_note(&s, &agent_actor("a1"), &id, "Met Casey", None, now)
            .await
            .unwrap();
        let seen = view_referral(&s, &closings(), &id).await.unwrap();
        assert!(seen.client.is_some());
        assert!(
            seen.history
                .iter()
                .any(|h| matches!(h.event, HistoryEvent::Note { .. }))
        );
        let e = add_note(&s, &closings(), &id, "closing soon", None, now)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        let notes = s.referrals.history(&id).await.unwrap();
        assert_eq!(
            notes
                .iter()
                .filter(|h| matches!(h.event, HistoryEvent::Note { .. }))
                .count(),
            1,
            "nothing written"
        );
    }

    #[tokio::test]
    async fn get_referral_is_refused_to_an_admin_who_is_not_among_its_readers() {
        let (s, _, id) = claimed(Program::Routing).await;
        let admin = Actor {
            user: "root".parse().unwrap(),
            role: Role::Admin,
        };
        let e = view_referral(&s, &admin, &id).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (403, "forbidden"));
    }

    #[tokio::test]
    async fn gen_3_the_team_lead_manages_the_referral_without_seeing_the_contacts() {
        let (s, _, id) = claimed(Program::Routing).await;
        let team = crate::domain::team::Team {
            id: "t1".parse().unwrap(),
            name: "T".into(),
            lead_agent_id: "lead".parse().unwrap(),
            agent_ids: ["a1".parse().unwrap()].into(),
        };
        s.agents.put_team(&team).await.unwrap();
        let lead = agent_actor("lead");
        let seen = view_referral(&s, &lead, &id).await.unwrap();
        assert!(seen.client.is_none() && seen.briefing.is_none());
        assert!(seen.pipeline.is_some() && !seen.history.is_empty());
        let a1: AgentId = "a1".parse().unwrap();
        let list = agent_referrals(&s, &lead, &a1, None).await.unwrap();
        assert!(
            list.iter()
                .all(|r| r.client.is_none() && r.briefing.is_none())
        );
        let now = t("2026-01-03T00:00:00Z");
        change_stage(&s, &lead, &id, &StageChange::to(Stage::Connected), now)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn lr_1_claimed_referral_shows_in_the_agents_list_by_stage() {
        let (s, _, id) = claimed(Program::Routing).await;
        let a1: AgentId = "a1".parse().unwrap();
        let list = agent_referrals(&s, &agent_actor("a1"), &a1, Some(Stage::LeftVoicemail))
            .await
            .unwrap();
        assert_eq!(list.iter().map(|r| &r.id).collect::<Vec<_>>(), vec![&id]);
        assert!(
            agent_referrals(&s, &agent_actor("a1"), &a1, Some(Stage::Connected))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            agent_referrals(&s, &agent_actor("a2"), &a1, None)
                .await
                .unwrap_err()
                .status(),
            403
        );
    }

    #[tokio::test]
    async fn gen_4_ef_4_a_stage_change_out_of_range_is_refused_before_anything_is_written() {
        let (s, outbox, id) = claimed(Program::Routing).await;
        let a1 = agent_actor("a1");
        let now = t("2026-01-03T00:00:00Z");
        let before = s.referrals.get_referral(&id).await.unwrap().unwrap();
        let far = StageChange {
            list_date: Some(jiff::civil::date(9999, 12, 31)),
            ..StageChange::to(Stage::ComingSoon)
        };
        let e = change_stage(&s, &a1, &id, &far, now).await.unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
        assert!(e.to_string().starts_with("listDate"), "{e}");
        let huge = StageChange {
            sale_price: Some("999999999999".parse().unwrap()),
            close_date: Some(jiff::civil::date(2026, 3, 1)),
            ..StageChange::to(Stage::InEscrow)
        };
        let e = change_stage(&s, &a1, &id, &huge, now).await.unwrap_err();
        assert!(e.to_string().starts_with("salePrice"), "{e}");
        // Nothing moved, nothing announced.
        let after = s.referrals.get_referral(&id).await.unwrap().unwrap();
        assert_eq!(after, before);
        assert!(
            !outbox
                .sent()
                .iter()
                .any(|x| matches!(x, Sent::Event(t, _) if t == "StageChanged")),
            "{:?}",
            outbox.sent()
        );
    }

    #[tokio::test]
    async fn ef_3_a_note_retried_with_its_key_is_added_once() {
        let (s, _, id) = claimed(Program::Routing).await;
        let a1 = agent_actor("a1");
        let now = t("2026-01-03T00:00:00Z");
        for at in [now, now + jiff::SignedDuration::from_secs(5)] {
            add_note(&s, &a1, &id, "Called, no answer", Some("note-1"), at)
                .await
                .unwrap();
        }
        add_note(&s, &a1, &id, "Called, no answer", Some("note-2"), now)
            .await
            .unwrap();
        let notes = s
            .referrals
            .history(&id)
            .await
            .unwrap()
            .into_iter()
            .filter(|h| matches!(h.event, HistoryEvent::Note { .. }))
            .count();
        assert_eq!(notes, 2, "one per key");
    }

    #[tokio::test]
    async fn ef_4_a_note_beyond_its_limit_is_refused() {
        let (s, _, id) = claimed(Program::Routing).await;
        let e = add_note(
            &s,
            &agent_actor("a1"),
            &id,
            &"x".repeat(MAX_NOTE_CHARS + 1),
            None,
            t("2026-01-03T00:00:00Z"),
        )
        .await
        .unwrap_err();
        assert_eq!((e.status(), e.code()), (400, "bad_request"));
    }
}
