//! `POST /referrals`: an advisor's new referral, stored and offered; the broadcast starts on the
//! queue (LR-1, LR-11, PPL-1, PPL-9).
//!
//! An `Idempotency-Key` header makes a retried request answer with the first one's referral
//! (200 instead of 201) and broadcast nothing twice (GEN-5).

use lambda_http::{Body, Error, Request, Response};
use shared::app::intake::{NewReferral, create_referral};
use shared::app::{AppError, Services};
use shared::http;

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/referrals")];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    let result = async {
        if (req.method().as_str(), http::segments(&req).as_slice()) != ("POST", &["referrals"][..])
        {
            return Err(AppError::NotFound(format!(
                "no route {} {}",
                req.method(),
                req.uri().path()
            )));
        }
        let actor = http::actor(&req)?;
        let request: NewReferral = http::json_body(&req)?;
        let key = http::header(&req, "idempotency-key");
        create_referral(s, &actor, request, key, http::now(&req)).await
    }
    .await;
    Ok(match result {
        Ok(intake) => http::json(if intake.created { 201 } else { 200 }, &intake),
        Err(e) => http::error(&e),
    })
}
