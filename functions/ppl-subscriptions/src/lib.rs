//! Pay-per-lead sign-up over HTTP: `POST /ppl/subscriptions` (201) and
//! `GET /ppl/subscriptions/{id}`.

use lambda_http::{Body, Error, Request, Response};
use shared::app::billing::{sign_up, view_subscription};
use shared::app::{AppError, Services};
use shared::domain::billing::SignUp;
use shared::domain::values::SubscriptionId;
use shared::http;

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/ppl/subscriptions"),
    ("GET", "/ppl/subscriptions/{id}"),
];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(route(s, &req).await)
}

async fn route(s: &Services, req: &Request) -> Response<Body> {
    let actor = match http::actor(req) {
        Ok(a) => a,
        Err(e) => return http::error(&e),
    };
    let now = http::now(req);
    match (req.method().as_str(), http::segments(req).as_slice()) {
        ("POST", ["ppl", "subscriptions"]) => http::reply(
            201,
            async {
                let body: SignUp = http::json_body(req)?;
                sign_up(s, &actor, body, now).await
            }
            .await,
        ),
        ("GET", ["ppl", "subscriptions", id]) => http::reply(
            200,
            async {
                let id: SubscriptionId = id.parse()?;
                view_subscription(s, &actor, &id, now).await
            }
            .await,
        ),
        _ => http::error(&AppError::NotFound(format!(
            "no route {} {}",
            req.method(),
            req.uri().path()
        ))),
    }
}
