//! The advisor's side of a warm transfer: `POST /warm-transfers/{referralId}/connect-client`
//! (the briefing is done: the client joins the winner, the advisor leaves, WT-10) and
//! `POST /warm-transfers/{referralId}/complete` (the winner's call ended early: up to two more
//! agents are introduced to the client, WT-7, WT-11).

use lambda_http::{Body, Error, Request, Response};
use shared::app::Services;
use shared::app::warm_transfer::{complete, connect_client};
use shared::domain::values::ReferralId;
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    (
        "POST /warm-transfers/{referralId}/complete",
        Route::Complete,
    ),
    (
        "POST /warm-transfers/{referralId}/connect-client",
        Route::ConnectClient,
    ),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Complete,
    ConnectClient,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(s, ROUTES, req, |route, req| async move {
        let actor = http::actor(&req)?;
        let id: ReferralId = http::path(&req, "referralId")?;
        match route {
            Route::Complete => Reply::ok(&complete(s, &actor, &id, http::now(&req)).await?),
            Route::ConnectClient => {
                let key = http::header(&req, "idempotency-key");
                Reply::ok(&connect_client(s, &actor, &id, key).await?)
            }
        }
    })
    .await)
}
