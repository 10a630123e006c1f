//! `POST /warm-transfers/{referralId}/complete` (advisor): the winner's call has ended; up to two
//! more agents are introduced to the client (WT-7).

use lambda_http::{Body, Error, Request, Response};
use shared::app::warm_transfer::complete;
use shared::app::{AppError, Services};
use shared::domain::values::ReferralId;
use shared::http;

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[("POST", "/warm-transfers/{referralId}/complete")];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    let result = async {
        let actor = http::actor(&req)?;
        match (req.method().as_str(), http::segments(&req).as_slice()) {
            ("POST", ["warm-transfers", id, "complete"]) => {
                let id: ReferralId = id.parse()?;
                complete(s, &actor, &id, http::now(&req)).await
            }
            _ => Err(AppError::NotFound(format!(
                "no route {} {}",
                req.method(),
                req.uri().path()
            ))),
        }
    }
    .await;
    Ok(http::reply(200, result))
}
