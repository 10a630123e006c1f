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
use shared::http::{self, Reply};
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
    /// The call is placed from the stored request, right after this answer.
    calling: bool,
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

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    ("POST /referrals/{id}/claim", Route::Claim),
    ("POST /referrals/{id}/decline", Route::Decline),
    ("POST /twilio/sms", Route::Webhook(Webhook::Sms)),
    (
        "POST /twilio/voice/claim",
        Route::Webhook(Webhook::VoiceClaim),
    ),
    (
        "POST /twilio/voice/status",
        Route::Webhook(Webhook::VoiceStatus),
    ),
    ("POST /twilio/voice/pin", Route::Webhook(Webhook::VoicePin)),
    (
        "POST /twilio/voice/warm-transfer",
        Route::Webhook(Webhook::WarmTransferLine),
    ),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Claim,
    Decline,
    /// Unauthenticated: the telephony provider's signed webhooks, answered with TwiML.
    Webhook(Webhook),
}

#[derive(Debug, Clone, Copy)]
pub enum Webhook {
    Sms,
    VoiceClaim,
    VoiceStatus,
    VoicePin,
    WarmTransferLine,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::dispatch(ROUTES, req, |route, req| async move {
        match route {
            Route::Claim => claim(s, &req).await,
            Route::Decline => decline(s, &req).await,
            Route::Webhook(hook) => webhook(s, &req, hook).await.map(Reply::Twiml),
        }
    })
    .await)
}

fn body_or_default<T: serde::de::DeserializeOwned + Default>(req: &Request) -> Result<T, AppError> {
    if req.body().is_empty() {
        Ok(T::default())
    } else {
        http::json_body(req)
    }
}

fn calling_agent(req: &Request) -> Result<AgentId, AppError> {
    http::actor(req)?
        .agent()
        .ok_or_else(|| AppError::Forbidden("only agents claim or decline referrals".into()))
}

async fn claim(s: &Services, req: &Request) -> Result<Reply, AppError> {
    let agent = calling_agent(req)?;
    let id: ReferralId = http::path(req, "id")?;
    let body: ClaimRequest = body_or_default(req)?;
    let now = http::now(req);
    if body.by == Some(ClaimBy::Call) {
        let actor = http::actor(req)?;
        let key = http::header(req, "idempotency-key");
        phone::request_claim_call(s, &actor, &id, key, now).await?;
        let calling = Calling {
            referral_id: id,
            agent_id: agent,
            calling: true,
        };
        return Reply::json(202, &calling);
    }
    claim_referral(s, &agent, &id, ClaimChannel::App, now).await?;
    Reply::ok(&Claimed {
        referral_id: id,
        agent_id: agent,
    })
}

async fn decline(s: &Services, req: &Request) -> Result<Reply, AppError> {
    let agent = calling_agent(req)?;
    let id: ReferralId = http::path(req, "id")?;
    let body: DeclineRequest = body_or_default(req)?;
    decline_referral(s, &agent, &id, body.for_team, http::now(req)).await?;
    Reply::ok(&serde_json::json!({"referralId": id, "declined": true}))
}

/// A telephony webhook: signature first (GEN-6), then the form's fields.
async fn webhook(s: &Services, req: &Request, hook: Webhook) -> Result<String, AppError> {
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
    match hook {
        Webhook::Sms => {
            phone::inbound_sms(
                s,
                field("From")?,
                param(&params, "Body").unwrap_or(""),
                field("MessageSid")?,
                now,
            )
            .await
        }
        Webhook::VoiceClaim => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_claim(s, &id, &agent, digits, now).await
        }
        Webhook::VoiceStatus => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_status(s, &id, &agent, field("CallStatus")?, field("CallSid")?, now)
                .await?;
            Ok(shared::twilio::twiml::empty())
        }
        Webhook::VoicePin => phone::voice_pin(s, field("From")?, digits, now).await,
        Webhook::WarmTransferLine => warm_transfer::line_call(s, field("From")?, now).await,
    }
}
