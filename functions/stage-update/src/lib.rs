//! The referral pipeline over HTTP: `GET /referrals/{id}`, `POST /referrals/{id}/stage`,
//! `/notes`, `/payment`, `/correction`, `GET /agents/{agentId}/referrals?stage=`, and the
//! closings desk, `GET /closings/referrals?stage=in_escrow|closed` (RC-5), and the advisors'
//! queue, `GET /referrals?status=unassigned` (RC-2).

use lambda_http::{Body, Error, Request, Response};
use serde::Deserialize;
use shared::app::{AppError, Services};
use shared::app::{closings, pipeline, unassigned};
use shared::domain::stage::{Stage, StageChange};
use shared::domain::values::{AgentId, ReferralId};
use shared::http::{self, Reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoteRequest {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorrectionRequest {
    stage: Stage,
}

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    ("GET /referrals/{id}", Route::View),
    ("POST /referrals/{id}/stage", Route::Stage),
    ("POST /referrals/{id}/notes", Route::Note),
    ("POST /referrals/{id}/payment", Route::Payment),
    ("POST /referrals/{id}/correction", Route::Correction),
    ("GET /agents/{agentId}/referrals", Route::AgentReferrals),
    ("GET /closings/referrals", Route::ClosingsDesk),
    ("GET /referrals", Route::AdvisorsQueue),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    View,
    Stage,
    Note,
    Payment,
    Correction,
    AgentReferrals,
    ClosingsDesk,
    AdvisorsQueue,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(s, ROUTES, req, |route, req| async move {
        answer(s, route, &req).await
    })
    .await)
}

async fn answer(s: &Services, route: Route, req: &Request) -> Result<Reply, AppError> {
    let actor = http::actor(req)?;
    let now = http::now(req);
    if let Route::AgentReferrals = route {
        let agent: AgentId = http::path(req, "agentId")?;
        let stage = http::query(req, "stage")
            .map(|s| s.parse::<Stage>())
            .transpose()?;
        return Reply::ok(&pipeline::agent_referrals(s, &actor, &agent, stage).await?);
    }
    if let Route::ClosingsDesk = route {
        let (stage, limit, cursor) = (
            http::query(req, "stage"),
            http::query(req, "limit"),
            http::query(req, "cursor"),
        );
        return Reply::ok(
            &closings::closings_referrals(
                s,
                &actor,
                stage.as_deref(),
                limit.as_deref(),
                cursor.as_deref(),
            )
            .await?,
        );
    }
    if let Route::AdvisorsQueue = route {
        let (status, limit, cursor) = (
            http::query(req, "status"),
            http::query(req, "limit"),
            http::query(req, "cursor"),
        );
        return Reply::ok(
            &unassigned::unassigned_referrals(
                s,
                &actor,
                status.as_deref(),
                limit.as_deref(),
                cursor.as_deref(),
            )
            .await?,
        );
    }
    let id: ReferralId = http::path(req, "id")?;
    match route {
        Route::View | Route::AgentReferrals | Route::ClosingsDesk | Route::AdvisorsQueue => {}
        Route::Stage => {
            let change: StageChange = http::json_body(req)?;
            pipeline::change_stage(s, &actor, &id, &change, now).await?;
        }
        Route::Note => {
            let note: NoteRequest = http::json_body(req)?;
            let key = http::header(req, "idempotency-key");
            pipeline::add_note(s, &actor, &id, &note.text, key, now).await?;
        }
        Route::Payment => {
            pipeline::record_payment(s, &actor, &id, now).await?;
        }
        Route::Correction => {
            let body: CorrectionRequest = http::json_body(req)?;
            pipeline::correct_escrow(s, &actor, &id, body.stage, now).await?;
        }
    }
    // Every change answers with the referral as the caller now sees it.
    Reply::ok(&pipeline::view_referral(s, &actor, &id).await?)
}
