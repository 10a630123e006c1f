//! Claiming, on every channel: the app (`POST /referrals/{id}/claim`, `/decline`), texts to the
//! service's number (the inbound SMS topic, TX-1), and the telephony provider's webhooks for
//! claim calls, the PIN line, the warm-transfer line, its conference and the advisor's choice
//! when a leg fails (`/twilio/voice/*`).
//!
//! App routes identify the caller by the verified token; webhooks by the provider's signature,
//! checked before anything else is read; texts by the sender AWS received them from.

use lambda_http::{Body, Error, LambdaEvent, Request, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shared::app::claim::{claim_referral, decline_referral};
use shared::app::{AppError, Services};
use shared::app::{phone, warm_transfer};
use shared::domain::referral::ClaimChannel;
use shared::domain::values::{AgentId, ReferralId};
use shared::domain::warm_transfer::Leg;
use shared::http::{self, Reply};
use shared::twilio::{SIGNATURE_HEADER, Webhooks, param, render};

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
    (
        "POST /twilio/voice/conference",
        Route::Webhook(Webhook::Conference),
    ),
    (
        "POST /twilio/voice/leg-choice",
        Route::Webhook(Webhook::LegChoice),
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
    VoiceClaim,
    VoiceStatus,
    VoicePin,
    WarmTransferLine,
    /// The warm-transfer conference's status callbacks (WT-11).
    Conference,
    /// The advisor's key press on their call after a leg of the transfer failed (WT-10).
    LegChoice,
}

/// One invocation: an API Gateway request, or an SNS notification of the inbound SMS topic.
pub async fn handle_event(
    s: &Services,
    hooks: &Webhooks,
    event: LambdaEvent<Value>,
) -> Result<Value, Error> {
    let (payload, _) = event.into_parts();
    if payload["Records"][0]["EventSource"] == "aws:sns" {
        let event: SnsEvent = serde_json::from_value(payload)?;
        texts(s, &event).await?;
        return Ok(Value::Null);
    }
    let req = lambda_http::request::from_str(&payload.to_string())?;
    Ok(gateway_response(handle(s, hooks, req).await?))
}

/// API Gateway's HTTP API response (payload format 2.0).
fn gateway_response(response: Response<Body>) -> Value {
    let headers: serde_json::Map<String, Value> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), Value::from(v.to_str().ok()?))))
        .collect();
    let (body, base64) = match response.body() {
        Body::Text(t) => (t.clone(), false),
        Body::Binary(b) => (base64_encode(b), true),
        _ => (String::new(), false),
    };
    serde_json::json!({
        "statusCode": response.status().as_u16(),
        "headers": headers,
        "body": body,
        "isBase64Encoded": base64,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The inbound topic's notifications, as Lambda receives them from SNS.
#[derive(Deserialize)]
struct SnsEvent {
    #[serde(rename = "Records")]
    records: Vec<SnsRecord>,
}

#[derive(Deserialize)]
struct SnsRecord {
    #[serde(rename = "Sns")]
    sns: SnsMessage,
}

#[derive(Deserialize)]
struct SnsMessage {
    #[serde(rename = "Message")]
    message: String,
    /// When SNS took the text: the handler's "now".
    #[serde(rename = "Timestamp")]
    timestamp: jiff::Timestamp,
}

/// Each text of the notification (TX-1). A text that cannot be read is logged and dropped (a
/// retry could not read it either); a transient failure fails the invocation, so Lambda's
/// asynchronous retries deliver it again, and what it had committed is not repeated (GEN-5).
async fn texts(s: &Services, event: &SnsEvent) -> Result<(), AppError> {
    for record in &event.records {
        let text: phone::InboundText = match serde_json::from_str(&record.sns.message) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "not an inbound SMS notification; dropped");
                continue;
            }
        };
        let span = tracing::info_span!("text", message_id = %text.inbound_message_id);
        let _guard = span.enter();
        // A phone that texts past its rate limit is not answered (TX-5).
        let caller = format!("phone#{}", text.origination_number);
        match shared::app::admit(s, &caller, record.sns.timestamp).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "text dropped");
                continue;
            }
        }
        match phone::receive_text(s, &text, record.sns.timestamp).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => return Err(e),
            Err(e) => tracing::warn!(error = %e, "text refused"),
        }
    }
    Ok(())
}

pub async fn handle(s: &Services, hooks: &Webhooks, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(s, ROUTES, req, |route, req| async move {
        match route {
            Route::Claim => claim(s, &req).await,
            Route::Decline => decline(s, &req).await,
            Route::Webhook(hook) => webhook(s, hooks, &req, hook).await.map(Reply::Twiml),
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

/// A warm transfer's leg, as its webhook URL names it.
fn leg(text: &str) -> Result<Leg, AppError> {
    Leg::parse(text).ok_or_else(|| AppError::BadRequest(format!("no leg {text}")))
}

/// A telephony webhook: signature first (GEN-6), then the form's fields.
async fn webhook(
    s: &Services,
    hooks: &Webhooks,
    req: &Request,
    hook: Webhook,
) -> Result<String, AppError> {
    let params = http::form_params(req);
    hooks.verify(
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
    // Calls into the lines are counted by the caller's phone (TX-5); the provider's callbacks
    // about calls the service placed are not.
    if matches!(hook, Webhook::VoicePin | Webhook::WarmTransferLine) {
        shared::app::admit(s, &format!("phone#{}", field("From")?), now).await?;
    }
    let digits = param(&params, "Digits").filter(|d| !d.is_empty());
    match hook {
        Webhook::VoiceClaim => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_claim(s, &id, &agent, digits, now)
                .await
                .map(|v| render(&v))
        }
        // A warm transfer's leg the system placed (WT-10): the URL names the leg.
        Webhook::VoiceStatus if http::query(req, "leg").is_some() => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            warm_transfer::leg_status(
                s,
                &id,
                leg(&query_id("leg")?)?,
                field("CallStatus")?,
                field("CallSid")?,
            )
            .await?;
            Ok(shared::twilio::twiml::empty())
        }
        Webhook::WarmTransferLine if http::query(req, "leg").is_some() => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            warm_transfer::leg_call(s, &id, leg(&query_id("leg")?)?, digits)
                .await
                .map(|v| render(&v))
        }
        Webhook::VoiceStatus => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let agent: AgentId = query_id("agentId")?.parse()?;
            phone::voice_status(s, &id, &agent, field("CallStatus")?, field("CallSid")?, now)
                .await?;
            Ok(shared::twilio::twiml::empty())
        }
        Webhook::VoicePin => phone::voice_pin(s, field("From")?, digits, now)
            .await
            .map(|v| render(&v)),
        Webhook::WarmTransferLine => warm_transfer::line_call(s, field("From")?, digits, now)
            .await
            .map(|v| render(&v)),
        Webhook::LegChoice => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let leg = leg(&query_id("leg")?)?;
            warm_transfer::leg_choice(s, &id, leg, &query_id("failed")?, digits, now)
                .await
                .map(|v| render(&v))
        }
        Webhook::Conference => {
            let id: ReferralId = query_id("referralId")?.parse()?;
            let callback = warm_transfer::ConferenceCallback::parse(|name| param(&params, name))?;
            warm_transfer::conference_event(s, &id, &callback, now).await?;
            Ok(shared::twilio::twiml::empty())
        }
    }
}
