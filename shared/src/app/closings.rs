//! The closings desk (RC-5, ST-9): referrals in escrow and closed, each with the fee it owes.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Actor, AppError, Role, Services};
use crate::domain::referral::{LeadDetails, Program, Referral};
use crate::domain::stage::Stage;
use crate::domain::values::{AgentId, Money, Percent, ReferralId};

/// A page of the list: `limit` by default, at most `MAX_LIMIT` (API.md).
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

/// One referral on the desk.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeskItem {
    pub id: ReferralId,
    pub program: Program,
    #[serde(flatten)]
    pub lead: LeadDetails,
    pub stage: Stage,
    pub assigned_agent_id: AgentId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    pub sale_price: Option<Money>,
    pub close_date: Option<jiff::civil::Date>,
    /// The agent's agreement, if any; none means no fee.
    pub fee_percent: Option<Percent>,
    /// None while the sale price is unknown (a closing that skipped In Escrow without one).
    pub fee_owed: Option<Money>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeskPage {
    pub items: Vec<DeskItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The stages a filter lists, in the order they are listed: the work list (in escrow, closed
/// awaiting payment) by default; `closed` means Closed and Closed-Paid (RC-5).
fn desks(filter: Option<&str>) -> Result<&'static [Stage], AppError> {
    match filter {
        None => Ok(&[Stage::InEscrow, Stage::Closed]),
        Some("in_escrow") => Ok(&[Stage::InEscrow]),
        Some("closed") => Ok(&[Stage::Closed, Stage::ClosedPaid]),
        Some(other) => Err(AppError::BadRequest(format!(
            "stage: `{other}` is not one of in_escrow, closed"
        ))),
    }
}

/// Where a page starts: the desk's index and the last referral listed before it. The cursor is
/// `<desk>.<referral id>` (the id empty at a desk's start).
fn parse_cursor(
    cursor: Option<&str>,
    desks: usize,
) -> Result<(usize, Option<ReferralId>), AppError> {
    let Some(cursor) = cursor else {
        return Ok((0, None));
    };
    let bad = || AppError::BadRequest("cursor: not a cursor this list gave".into());
    let (desk, after) = cursor.split_once('.').ok_or_else(bad)?;
    let desk: usize = desk.parse().map_err(|_| bad())?;
    if desk >= desks {
        return Err(bad());
    }
    let after = match after {
        "" => None,
        id => Some(id.parse().map_err(|_| bad())?),
    };
    Ok((desk, after))
}

/// A list's `?limit=`: `DEFAULT_LIMIT` when absent, from 1 to `MAX_LIMIT`.
pub(crate) fn parse_limit(limit: Option<&str>) -> Result<usize, AppError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| AppError::BadRequest(format!("limit: must be from 1 to {MAX_LIMIT}"))),
    }
}

/// The closings team's work list (RC-5): referrals in escrow and closed, each with the fee it
/// owes, computed by [`Referral::fee_owed`] as everywhere else. Closings only.
pub async fn closings_referrals(
    s: &Services,
    actor: &Actor,
    stage: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> Result<DeskPage, AppError> {
    actor.require(Role::Closings)?;
    let desks = desks(stage)?;
    let limit = parse_limit(limit)?;
    let (mut desk, mut after) = parse_cursor(cursor, desks.len())?;
    let mut listed: Vec<Referral> = Vec::new();
    let mut next_cursor = None;
    while desk < desks.len() {
        // One more than fits tells whether a next page exists.
        let want = limit - listed.len() + 1;
        let mut page = s
            .referrals
            .desk_referrals(desks[desk], after.as_ref(), want)
            .await?;
        if page.len() == want {
            page.pop();
            listed.extend(page);
            let last = listed.last().map(|r| r.id.to_string()).unwrap_or_default();
            next_cursor = Some(format!("{desk}.{last}"));
            break;
        }
        listed.extend(page);
        desk += 1;
        after = None;
        if listed.len() == limit {
            if desk < desks.len() {
                next_cursor = Some(format!("{desk}."));
            }
            break;
        }
    }
    let ids: Vec<AgentId> = listed
        .iter()
        .filter_map(|r| r.assigned_agent().cloned())
        .collect();
    let agents: BTreeMap<AgentId, _> = s
        .agents
        .get_agents(&ids)
        .await?
        .into_iter()
        .map(|a| (a.id.clone(), a))
        .collect();
    let items = listed
        .into_iter()
        .filter_map(|r| {
            let agent_id = r.assigned_agent()?.clone();
            let agent = agents.get(&agent_id);
            let fee_percent = agent.and_then(|a| a.fee_percent);
            let pipeline = r.pipeline()?;
            Some(DeskItem {
                id: r.id.clone(),
                program: r.program,
                lead: r.lead.clone(),
                stage: pipeline.stage,
                agent_name: agent.map(|a| a.name.clone()),
                sale_price: pipeline.sale_price,
                close_date: pipeline.close_date,
                fee_percent,
                fee_owed: r.fee_owed(fee_percent),
                assigned_agent_id: agent_id,
            })
        })
        .collect();
    Ok(DeskPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::claim::claim_referral;
    use crate::app::pipeline::{agent_referrals, change_stage, record_payment, view_referral};
    use crate::app::testing::services;
    use crate::domain::agent::fixtures::agent;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::ClaimChannel;
    use crate::domain::stage::{FailReason, StageChange};
    use crate::memory::MemoryStore;
    use crate::ports::{AgentDirectory, ReferralStore};
    use jiff::Timestamp;
    use rust_decimal::Decimal;
    use std::sync::Arc;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn actor(id: &str, role: Role) -> Actor {
        Actor {
            user: id.parse().unwrap(),
            role,
        }
    }

    fn closings() -> Actor {
        actor("closer", Role::Closings)
    }

    /// A referral `id` of `program`, claimed by a1 (agreement 3%) and moved through `stages`.
    async fn moved(
        s: &Services,
        store: &Arc<MemoryStore>,
        id: &str,
        program: Program,
        stages: &[StageChange],
    ) -> ReferralId {
        let mut a = agent("a1");
        a.fee_percent = Some(Percent::new(Decimal::new(3, 0)).unwrap());
        store.put_agent(&a).await.unwrap();
        let r = Referral {
            id: id.parse().unwrap(),
            ..referral(program, &["a1"])
        };
        store
            .create_referral(&r, &[], &crate::effects::Effects::default())
            .await
            .unwrap();
        let a1: AgentId = "a1".parse().unwrap();
        let now = t("2026-01-02T00:00:00Z");
        claim_referral(s, &a1, &r.id, ClaimChannel::App, now)
            .await
            .unwrap();
        for change in stages {
            change_stage(s, &actor("a1", Role::Agent), &r.id, change, now)
                .await
                .unwrap();
        }
        r.id
    }

    fn escrow(price: &str) -> StageChange {
        StageChange {
            sale_price: Some(price.parse().unwrap()),
            close_date: Some("2026-03-01".parse().unwrap()),
            ..StageChange::to(Stage::InEscrow)
        }
    }

    fn failed() -> StageChange {
        StageChange {
            fail_reason: Some(FailReason::Other),
            ..StageChange::to(Stage::Failed)
        }
    }

    fn fees(page: &DeskPage) -> Vec<(String, Stage, Option<String>)> {
        page.items
            .iter()
            .map(|i| (i.id.to_string(), i.stage, i.fee_owed.map(|f| f.to_string())))
            .collect()
    }

    #[tokio::test]
    async fn rc_5_st_9_the_desk_lists_escrow_and_closed_with_the_fee_owed_after_a_failed_too() {
        let (s, store, _) = services();
        let closed = StageChange::to(Stage::Closed);
        moved(&s, &store, "r1", Program::Routing, &[escrow("400000")]).await;
        let revived = moved(
            &s,
            &store,
            "r2",
            Program::Routing,
            &[escrow("500000"), failed(), closed.clone()],
        )
        .await;
        moved(
            &s,
            &store,
            "r3",
            Program::Ppl,
            &[escrow("300000"), closed.clone()],
        )
        .await;
        let paid = moved(
            &s,
            &store,
            "r4",
            Program::Routing,
            &[escrow("100000"), closed],
        )
        .await;
        moved(&s, &store, "r5", Program::Routing, &[]).await;
        record_payment(&s, &closings(), &paid, t("2026-03-02T00:00:00Z"))
            .await
            .unwrap();
        let work = closings_referrals(&s, &closings(), None, None, None)
            .await
            .unwrap();
        assert_eq!(
            fees(&work),
            vec![
                ("r1".into(), Stage::InEscrow, Some("12000.00".into())),
                ("r2".into(), Stage::Closed, Some("15000.00".into())),
                ("r3".into(), Stage::Closed, Some("0.00".into())),
            ]
        );
        let closed = closings_referrals(&s, &closings(), Some("closed"), None, None)
            .await
            .unwrap();
        let stages: Vec<Stage> = closed.items.iter().map(|i| i.stage).collect();
        assert_eq!(stages, [Stage::Closed, Stage::Closed, Stage::ClosedPaid]);
        // The referral view states the same fee, from the same computation.
        let view = view_referral(&s, &closings(), &revived).await.unwrap();
        assert_eq!(view.fee_owed.unwrap().to_string(), "15000.00");
    }

    #[tokio::test]
    async fn rc_5_gen_4_the_desk_is_for_closings_and_refuses_an_unknown_stage_or_limit() {
        let (s, _, _) = services();
        let e = closings_referrals(&s, &actor("a1", Role::Agent), None, None, None)
            .await
            .unwrap_err();
        assert_eq!(e.status(), 403);
        for (stage, limit, cursor) in [
            (Some("listing"), None, None),
            (None, Some("0"), None),
            (None, Some("201"), None),
            (None, None, Some("9.x")),
        ] {
            let e = closings_referrals(&s, &closings(), stage, limit, cursor)
                .await
                .unwrap_err();
            assert_eq!(e.status(), 400, "{stage:?} {limit:?} {cursor:?}");
        }
    }

    #[tokio::test]
    async fn rc_5_the_desk_pages_through_every_referral_once() {
        let (s, store, _) = services();
        for i in 0..5 {
            let stages = if i % 2 == 0 {
                vec![escrow("100000")]
            } else {
                vec![escrow("100000"), StageChange::to(Stage::Closed)]
            };
            moved(&s, &store, &format!("r{i}"), Program::Routing, &stages).await;
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = closings_referrals(&s, &closings(), None, Some("2"), cursor.as_deref())
                .await
                .unwrap();
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|i| i.id.to_string()));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(seen, ["r0", "r2", "r4", "r1", "r3"]);
    }

    #[tokio::test]
    async fn api_the_agents_closed_list_holds_closed_and_closed_paid() {
        let (s, store, _) = services();
        let closed = StageChange::to(Stage::Closed);
        moved(
            &s,
            &store,
            "r1",
            Program::Routing,
            std::slice::from_ref(&closed),
        )
        .await;
        let paid = moved(&s, &store, "r2", Program::Routing, &[closed]).await;
        record_payment(&s, &closings(), &paid, t("2026-03-02T00:00:00Z"))
            .await
            .unwrap();
        let a1: AgentId = "a1".parse().unwrap();
        let list = agent_referrals(&s, &actor("a1", Role::Agent), &a1, Some(Stage::Closed))
            .await
            .unwrap();
        let mut ids: Vec<String> = list.iter().map(|r| r.id.to_string()).collect();
        ids.sort();
        assert_eq!(ids, ["r1", "r2"]);
    }
}
