//! `POST /warm-transfers/{referralId}/complete` (advisor): the winner's call has ended; up to two
//! more agents are introduced to the client (WT-7).

use lambda_http::{Body, Error, Request, Response};
use shared::app::Services;
use shared::app::warm_transfer::complete;
use shared::domain::values::ReferralId;
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[(
    "POST /warm-transfers/{referralId}/complete",
    Route::Complete,
)];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Complete,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(
        http::serve(s, ROUTES, req, |Route::Complete, req| async move {
            let actor = http::actor(&req)?;
            let id: ReferralId = http::path(&req, "referralId")?;
            Reply::ok(&complete(s, &actor, &id, http::now(&req)).await?)
        })
        .await,
    )
}
