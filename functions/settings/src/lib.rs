//! Team and agent settings over HTTP: `PUT /teams/{teamId}`, `PUT /agents/{agentId}`,
//! `PUT /agents/{agentId}/agreement`, `PUT|DELETE /agents/{agentId}/vacation`,
//! `GET|PUT /teams/{teamId}/routing`, `POST /agents/{agentId}/phone-verification[/confirm]`.

use lambda_http::{Body, Error, Request, Response};
use shared::app::settings::{
    self, AgreementRequest, PhoneConfirmation, PhoneVerificationRequest, ProfileRequest,
    TeamRequest, VacationRequest,
};
use shared::app::{AppError, Services};
use shared::domain::team::RoutingUpdate;
use shared::domain::values::{AgentId, TeamId};
use shared::http::{self, Reply};

/// The routes this function answers, each once; a test holds them equal to the template's and
/// the OpenAPI document's.
pub const ROUTES: &http::Routes<Route> = &[
    ("PUT /teams/{teamId}", Route::Team),
    ("PUT /agents/{agentId}", Route::Agent),
    ("PUT /agents/{agentId}/agreement", Route::Agreement),
    ("PUT /agents/{agentId}/vacation", Route::Vacation),
    ("DELETE /agents/{agentId}/vacation", Route::EndVacation),
    ("GET /teams/{teamId}/routing", Route::Routing),
    ("PUT /teams/{teamId}/routing", Route::SaveRouting),
    (
        "POST /agents/{agentId}/phone-verification",
        Route::VerifyPhone,
    ),
    (
        "POST /agents/{agentId}/phone-verification/confirm",
        Route::ConfirmPhone,
    ),
];

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Team,
    Agent,
    Agreement,
    Vacation,
    EndVacation,
    Routing,
    SaveRouting,
    VerifyPhone,
    ConfirmPhone,
}

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(http::serve(s, ROUTES, req, |route, req| async move {
        answer(s, route, &req).await
    })
    .await)
}

async fn answer(s: &Services, route: Route, req: &Request) -> Result<Reply, AppError> {
    let actor = http::actor(req)?;
    let agent = || http::path::<AgentId>(req, "agentId");
    let team = || http::path::<TeamId>(req, "teamId");
    match route {
        Route::Team => {
            let body: TeamRequest = http::json_body(req)?;
            Reply::ok(&settings::put_team(s, &actor, team()?, body).await?)
        }
        Route::Agent => {
            let body: ProfileRequest = http::json_body(req)?;
            Reply::ok(&settings::put_agent(s, &actor, agent()?, body).await?)
        }
        Route::Agreement => {
            let body: AgreementRequest = http::json_body(req)?;
            Reply::ok(&settings::put_agreement(s, &actor, &agent()?, body).await?)
        }
        Route::Vacation => {
            let body: VacationRequest = http::json_body(req)?;
            Reply::ok(&settings::set_vacation(s, &actor, &agent()?, Some(body)).await?)
        }
        Route::EndVacation => Reply::ok(&settings::set_vacation(s, &actor, &agent()?, None).await?),
        Route::Routing => Reply::ok(&settings::get_routing(s, &actor, &team()?).await?),
        Route::SaveRouting => {
            let body: RoutingUpdate = http::json_body(req)?;
            Reply::ok(&settings::put_routing(s, &actor, &team()?, body).await?)
        }
        Route::VerifyPhone => {
            let body: PhoneVerificationRequest = http::json_body(req)?;
            let status =
                settings::request_phone_verification(s, &actor, &agent()?, body, http::now(req))
                    .await?;
            Reply::json(202, &status)
        }
        Route::ConfirmPhone => {
            let body: PhoneConfirmation = http::json_body(req)?;
            Reply::ok(
                &settings::confirm_phone_verification(s, &actor, &agent()?, body, http::now(req))
                    .await?,
            )
        }
    }
}
