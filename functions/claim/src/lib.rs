//! Claiming from the app: `POST /referrals/{id}/claim` and `POST /referrals/{id}/decline`.

use lambda_http::{Body, Error, Request, Response};
use serde::{Deserialize, Serialize};
use shared::app::claim::{claim_referral, decline_referral};
use shared::app::{AppError, Services};
use shared::domain::referral::ClaimChannel;
use shared::domain::values::{AgentId, ReferralId};
use shared::http;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Claimed {
    referral_id: ReferralId,
    agent_id: AgentId,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DeclineRequest {
    #[serde(default)]
    for_team: bool,
}

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/referrals/{id}/claim"),
    ("POST", "/referrals/{id}/decline"),
];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(route(s, &req).await)
}

async fn route(s: &Services, req: &Request) -> Response<Body> {
    let result = async {
        let actor = http::actor(req)?;
        let now = http::now(req);
        let agent = actor
            .agent()
            .ok_or_else(|| AppError::Forbidden("only agents claim or decline referrals".into()))?;
        match (req.method().as_str(), http::segments(req).as_slice()) {
            ("POST", ["referrals", id, "claim"]) => {
                let id: ReferralId = id.parse()?;
                let won = claim_referral(s, &agent, &id, ClaimChannel::App, now).await?;
                Ok(serde_json::to_value(Claimed {
                    referral_id: id,
                    agent_id: won.agent_id,
                })
                .unwrap_or_default())
            }
            ("POST", ["referrals", id, "decline"]) => {
                let id: ReferralId = id.parse()?;
                let body: DeclineRequest = match req.body().is_empty() {
                    true => DeclineRequest::default(),
                    false => http::json_body(req)?,
                };
                decline_referral(s, &agent, &id, body.for_team, now).await?;
                Ok(serde_json::json!({"referralId": id, "declined": true}))
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
