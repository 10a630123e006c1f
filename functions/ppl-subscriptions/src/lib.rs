//! Pay per lead over HTTP: sign up (`POST /ppl/subscriptions`, 201), read, change and cancel a
//! subscription (`GET`, `PUT`, `DELETE /ppl/subscriptions/{id}`, PPL-12), and return a referral
//! (`POST /ppl/subscriptions/{id}/returns`, PPL-13).

use lambda_http::{Body, Error, Request, Response};
use shared::app::billing::{
    ReturnRequest, cancel_subscription, change_subscription, return_referral, sign_up,
    view_subscription,
};
use shared::app::{AppError, Services};
use shared::domain::billing::{SignUp, SubscriptionChange};
use shared::domain::values::SubscriptionId;
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    ("POST /ppl/subscriptions", Route::SignUp),
    ("GET /ppl/subscriptions/{id}", Route::View),
    ("PUT /ppl/subscriptions/{id}", Route::Change),
    ("DELETE /ppl/subscriptions/{id}", Route::Cancel),
    ("POST /ppl/subscriptions/{id}/returns", Route::Return),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    SignUp,
    View,
    Change,
    Cancel,
    Return,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(s, ROUTES, req, |route, req| async move {
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
        Route::Change => {
            let id: SubscriptionId = http::path(req, "id")?;
            let body: SubscriptionChange = http::json_body(req)?;
            Reply::ok(&change_subscription(s, &actor, &id, body, now).await?)
        }
        Route::Cancel => {
            let id: SubscriptionId = http::path(req, "id")?;
            Reply::ok(&cancel_subscription(s, &actor, &id, now).await?)
        }
        Route::Return => {
            let id: SubscriptionId = http::path(req, "id")?;
            let body: ReturnRequest = http::json_body(req)?;
            Reply::ok(&return_referral(s, &actor, &id, body, now).await?)
        }
    }
}
