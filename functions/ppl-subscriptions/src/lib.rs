//! Pay-per-lead sign-up over HTTP: `POST /ppl/subscriptions` (201) and
//! `GET /ppl/subscriptions/{id}`.

use lambda_http::{Body, Error, Request, Response};
use shared::app::billing::{sign_up, view_subscription};
use shared::app::{AppError, Services};
use shared::domain::billing::SignUp;
use shared::domain::values::SubscriptionId;
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    ("POST /ppl/subscriptions", Route::SignUp),
    ("GET /ppl/subscriptions/{id}", Route::View),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    SignUp,
    View,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::dispatch(ROUTES, req, |route, req| async move {
        answer(s, route, &req).await
    })
    .await)
}

async fn answer(s: &Services, route: Route, req: &Request) -> Result<Reply, AppError> {
    let actor = http::actor(req)?;
    let now = http::now(req);
    match route {
        Route::SignUp => {
            let body: SignUp = http::json_body(req)?;
            let key = http::header(req, "idempotency-key");
            let (view, created) = sign_up(s, &actor, body, key, now).await?;
            // A retry with the first request's key answers with what it created (EF-3).
            Reply::json(if created { 201 } else { 200 }, &view)
        }
        Route::View => {
            let id: SubscriptionId = http::path(req, "id")?;
            Reply::ok(&view_subscription(s, &actor, &id, now).await?)
        }
    }
}
