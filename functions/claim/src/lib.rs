//! Claiming, on every channel: the app (`POST /referrals/{id}/claim`, `/decline`) and the
//! telephony provider's webhooks for text claiming, claim calls, the PIN line and the
//! warm-transfer line (`/twilio/*`).
//!
//! App routes identify the caller by the verified token; webhooks by the provider's signature,
//! checked before anything else is read.

use lambda_http::{Body, Error, Request, Response};
use serde::{Deserialize, Serialize};
use shared::app::claim::{claim_referral, decline_referral};
use shared::app::{AppError, Services};
use shared::app::{phone, warm_transfer};
use shared::domain::referral::ClaimChannel;
use shared::domain::values::{AgentId, ReferralId};
use shared::http;
use shared::twilio::{SIGNATURE_HEADER, param};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Claimed {
    referral_id: ReferralId,
    agent_id: AgentId,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Calling {
    referral_id: ReferralId,
    agent_id: AgentId,
    call_sid: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ClaimRequest {
    /// `"call"`: "call me to claim" (LR-9, PPL-4); absent: claim now from the app.
    by: Option<ClaimBy>,
}

#[derive(Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum ClaimBy {
    App,
    Call,
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
    ("POST", "/twilio/sms"),
    ("POST", "/twilio/voice/claim"),
    ("POST", "/twilio/voice/status"),
    ("POST", "/twilio/voice/pin"),
    ("POST", "/twilio/voice/warm-transfer"),
];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(match http::segments(&req).as_slice() {
        ["twilio", ..] => http::twiml(webhook(s, &req).await),
        _ => app(s, &req).await,
    })
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(req: &Request) -> Result<T, AppError> {
    if req.body().is_empty() {
        Ok(T::default())
    } else {
        http::json_body(req)
    }
}

async fn app(s: &Services, req: &Request) -> Response<Body> {
    let result = async {
        let actor = http::actor(req)?;
        let now = http::now(req);
        let agent = actor
            .agent()
            .ok_or_else(|| AppError::Forbidden("only agents claim or decline referrals".into()))?;
        match (req.method().as_str(), http::segments(req).as_slice()) {
            ("POST", ["referrals", id, "claim"]) => {
                let id: ReferralId = id.parse()?;
                let body: ClaimRequest = body_or_default(req)?;
                if body.by == Some(ClaimBy::Call) {
                    let call_sid = phone::request_claim_call(s, &agent, &id, now).await?;
                    let calling = Calling {
                        referral_id: id,
                        agent_id: agent,
                        call_sid,
                    };
                    return Ok((202, serde_json::to_value(calling).unwrap_or_default()));
                }
                claim_referral(s, &agent, &id, ClaimChannel::App, now).await?;
                let claimed = Claimed {
                    referral_id: id,
                    agent_id: agent,
                };
                Ok((200, serde_json::to_value(claimed).unwrap_or_default()))
            }
            ("POST", ["referrals", id, "decline"]) => {
                let id: ReferralId = id.parse()?;
                let body: DeclineRequest = body_or_default(req)?;
                decline_referral(s, &agent, &id, body.for_team, now).await?;
                Ok((200, serde_json::json!({"referralId": id, "declined": true})))
            }
            _ => Err(AppError::NotFound(format!(
                "no route {} {}",
                req.method(),
                req.uri().path()
            ))),
        }
    }
    .await;
    match result {
        Ok((status, body)) => http::json(status, &body),
        Err(e) => http::error(&e),
    }
}

/// A telephony webhook: signature first (GEN-6), then the form's fields.
async fn webhook(s: &Services, req: &Request) -> Result<String, AppError> {
    let params = http::form_params(req);
    phone::verify_webhook(
        s,
        &http::path_and_query(req),
        &params,
        http::header(req, SIGNATURE_HEADER),
    )?;
    let now = http::now(req);
    let field = |name: &str| {
        param(&params, name)
            .ok_or_else(|| AppError::BadRequest(format!("the webhook lacks {name}")))
    };
    let query_id = |name: &str| {
        http::query(req, name)
            .ok_or_else(|| AppError::BadRequest(format!("the webhook URL lacks {name}")))
    };
    let digits = param(&params, "Digits").filter(|d| !d.is_empty());
    match (req.method().as_str(), http::segments(req).as_slice()) {
        ("POST", ["twilio", "sms"]) => {
            phone::inbound_sms(
                s,
                field("From")?,
                param(&params, "Body").unwrap_or(""),
                field("MessageSid")?,
                now,
            )
            .await
        }
        ("POST", ["twilio", "voice", "claim"]) => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_claim(s, &id, &agent, digits, now).await
        }
        ("POST", ["twilio", "voice", "status"]) => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_status(s, &id, &agent, field("CallStatus")?, field("CallSid")?, now)
                .await?;
            Ok(shared::twilio::twiml::empty())
        }
        ("POST", ["twilio", "voice", "pin"]) => {
            phone::voice_pin(s, field("From")?, digits, now).await
        }
        ("POST", ["twilio", "voice", "warm-transfer"]) => {
            warm_transfer::line_call(s, field("From")?, now).await
        }
        _ => Err(AppError::NotFound(format!(
            "no route {} {}",
            req.method(),
            req.uri().path()
        ))),
    }
}
