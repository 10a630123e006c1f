//! The referral pipeline over HTTP: `GET /referrals/{id}`, `POST /referrals/{id}/stage`,
//! `/notes`, `/payment`, `/correction`, and `GET /agents/{agentId}/referrals?stage=`.

use lambda_http::{Body, Error, Request, Response};
use serde::Deserialize;
use shared::app::pipeline;
use shared::app::{AppError, Services};
use shared::domain::stage::{Stage, StageChange};
use shared::domain::values::{AgentId, ReferralId};
use shared::http;

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

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/referrals/{id}"),
    ("POST", "/referrals/{id}/stage"),
    ("POST", "/referrals/{id}/notes"),
    ("POST", "/referrals/{id}/payment"),
    ("POST", "/referrals/{id}/correction"),
    ("GET", "/agents/{agentId}/referrals"),
];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(route(s, &req).await)
}

async fn route(s: &Services, req: &Request) -> Response<Body> {
    let result = async {
        let actor = http::actor(req)?;
        let now = http::now(req);
        match (req.method().as_str(), http::segments(req).as_slice()) {
            ("GET", ["referrals", id]) => {
                let id: ReferralId = id.parse()?;
                to_json(pipeline::view_referral(s, &actor, &id).await?)
            }
            ("POST", ["referrals", id, "stage"]) => {
                let id: ReferralId = id.parse()?;
                let change: StageChange = http::json_body(req)?;
                pipeline::change_stage(s, &actor, &id, &change, now).await?;
                to_json(pipeline::view_referral(s, &actor, &id).await?)
            }
            ("POST", ["referrals", id, "notes"]) => {
                let id: ReferralId = id.parse()?;
                let note: NoteRequest = http::json_body(req)?;
                pipeline::add_note(s, &actor, &id, &note.text, now).await?;
                to_json(pipeline::view_referral(s, &actor, &id).await?)
            }
            ("POST", ["referrals", id, "payment"]) => {
                let id: ReferralId = id.parse()?;
                pipeline::record_payment(s, &actor, &id, now).await?;
                to_json(pipeline::view_referral(s, &actor, &id).await?)
            }
            ("POST", ["referrals", id, "correction"]) => {
                let id: ReferralId = id.parse()?;
                let body: CorrectionRequest = http::json_body(req)?;
                pipeline::correct_escrow(s, &actor, &id, body.stage, now).await?;
                to_json(pipeline::view_referral(s, &actor, &id).await?)
            }
            ("GET", ["agents", agent, "referrals"]) => {
                let agent: AgentId = agent.parse()?;
                let stage = http::query(req, "stage")
                    .map(|s| s.parse::<Stage>())
                    .transpose()?;
                to_json(pipeline::agent_referrals(s, &actor, &agent, stage).await?)
            }
            _ => Err(AppError::NotFound(format!(
                "no route {} {}",
                req.method(),
                req.uri().path()
            ))),
        }
    }
    .await;
    http::reply(200, result)
}

/// Our views are plain data: serializing them cannot fail.
fn to_json<T: serde::Serialize>(v: T) -> Result<serde_json::Value, AppError> {
    Ok(serde_json::to_value(v).unwrap_or_default())
}
