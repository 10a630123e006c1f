//! Team and agent settings over HTTP: `PUT /teams/{teamId}`, `PUT /agents/{agentId}`,
//! `PUT /agents/{agentId}/agreement`, `PUT|DELETE /agents/{agentId}/vacation`,
//! `GET|PUT /teams/{teamId}/routing`.

use lambda_http::{Body, Error, Request, Response};
use shared::app::settings::{self, AgreementRequest, ProfileRequest, TeamRequest, VacationRequest};
use shared::app::{AppError, Services};
use shared::domain::team::RoutingUpdate;
use shared::domain::values::{AgentId, TeamId};
use shared::http;

/// The routes this function answers; a test holds them equal to the template's and the
/// OpenAPI document's.
pub const ROUTES: &[(&str, &str)] = &[
    ("PUT", "/teams/{teamId}"),
    ("PUT", "/agents/{agentId}"),
    ("PUT", "/agents/{agentId}/agreement"),
    ("PUT", "/agents/{agentId}/vacation"),
    ("DELETE", "/agents/{agentId}/vacation"),
    ("GET", "/teams/{teamId}/routing"),
    ("PUT", "/teams/{teamId}/routing"),
];

pub async fn handle(s: &Services, req: Request) -> Result<Response<Body>, Error> {
    Ok(route(s, &req).await)
}

async fn route(s: &Services, req: &Request) -> Response<Body> {
    let actor = match http::actor(req) {
        Ok(a) => a,
        Err(e) => return http::error(&e),
    };
    let method = req.method().as_str();
    match (method, http::segments(req).as_slice()) {
        ("PUT", ["teams", team]) => http::reply(
            200,
            async {
                let team: TeamId = team.parse()?;
                let body: TeamRequest = http::json_body(req)?;
                settings::put_team(s, &actor, team, body).await
            }
            .await,
        ),
        ("PUT", ["agents", agent]) => http::reply(
            200,
            async {
                let agent: AgentId = agent.parse()?;
                let body: ProfileRequest = http::json_body(req)?;
                settings::put_agent(s, &actor, agent, body).await
            }
            .await,
        ),
        ("PUT", ["agents", agent, "agreement"]) => http::reply(
            200,
            async {
                let agent: AgentId = agent.parse()?;
                let body: AgreementRequest = http::json_body(req)?;
                settings::put_agreement(s, &actor, &agent, body).await
            }
            .await,
        ),
        ("PUT" | "DELETE", ["agents", agent, "vacation"]) => http::reply(
            200,
            async {
                let agent: AgentId = agent.parse()?;
                let body: Option<VacationRequest> = if method == "PUT" {
                    Some(http::json_body(req)?)
                } else {
                    None
                };
                settings::set_vacation(s, &actor, &agent, body).await
            }
            .await,
        ),
        ("GET", ["teams", team, "routing"]) => http::reply(
            200,
            async {
                let team: TeamId = team.parse()?;
                settings::get_routing(s, &actor, &team).await
            }
            .await,
        ),
        ("PUT", ["teams", team, "routing"]) => http::reply(
            200,
            async {
                let team: TeamId = team.parse()?;
                let body: RoutingUpdate = http::json_body(req)?;
                settings::put_routing(s, &actor, &team, body).await
            }
            .await,
        ),
        _ => http::error(&AppError::NotFound(format!(
            "no route {method} {}",
            req.uri().path()
        ))),
    }
}
