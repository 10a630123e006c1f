//! `POST /referrals`: an advisor's new referral, stored and offered; the broadcast starts on the
//! queue (LR-1, LR-11, PPL-1, PPL-9).
//!
//! An `Idempotency-Key` header makes a retried request answer with the first one's referral
//! (200 instead of 201) and broadcast nothing twice (GEN-5).

use lambda_http::{Body, Error, Request, Response};
use shared::app::Services;
use shared::app::intake::{NewReferral, create_referral};
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[("POST /referrals", Route::Create)];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Create,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(
        http::dispatch(ROUTES, req, |Route::Create, req| async move {
            let actor = http::actor(&req)?;
            let mut request: NewReferral = http::json_body(&req)?;
            // Where the advisor is told if nobody takes it (RC-2): their token's address.
            request.advisor_email = http::claim(&req, "email").and_then(|e| e.parse().ok());
            let key = http::header(&req, "idempotency-key");
            let intake = create_referral(s, &actor, request, key, http::now(&req)).await?;
            Reply::json(if intake.created { 201 } else { 200 }, &intake)
        })
        .await,
    )
}
