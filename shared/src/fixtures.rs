//! The `events/` fixtures for handler tests: the same files `cargo lambda invoke --data-file`
//! sends, so tests and local invocations exercise one set of events.

use std::path::PathBuf;

/// `events/<function>/<name>.json` in this workspace.
pub fn path(function: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(function)
        .join(format!("{name}.json"))
}

pub fn json(function: &str, name: &str) -> serde_json::Value {
    let p = path(function, name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fixture as a typed event, such as an SQS batch or a schedule's input.
pub fn event<T: serde::de::DeserializeOwned>(function: &str, name: &str) -> T {
    serde_json::from_value(json(function, name))
        .unwrap_or_else(|e| panic!("{function}/{name}: {e}"))
}

/// An API Gateway request from its JSON.
#[cfg(feature = "http")]
pub fn request(value: &serde_json::Value) -> lambda_http::Request {
    lambda_http::request::from_str(&value.to_string())
        .unwrap_or_else(|e| panic!("not an API Gateway event: {e}"))
}

#[cfg(feature = "http")]
pub fn http_event(function: &str, name: &str) -> lambda_http::Request {
    request(&json(function, name))
}

/// The status and JSON body of a response.
#[cfg(feature = "http")]
pub fn response(resp: &lambda_http::Response<lambda_http::Body>) -> (u16, serde_json::Value) {
    let body = match resp.body() {
        lambda_http::Body::Text(t) => serde_json::from_str(t).unwrap_or(serde_json::Value::Null),
        _ => serde_json::Value::Null,
    };
    (resp.status().as_u16(), body)
}

/// A (method, path) pair such as `("PUT", "/teams/{teamId}")`.
pub type Route = (String, String);

fn yaml(relative: &str) -> serde_norway::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The HTTP routes `infra/template.yaml` gives the function built as `binary` (every function's
/// with `None`).
pub fn template_routes(binary: Option<&str>) -> std::collections::BTreeSet<Route> {
    let template = yaml("infra/template.yaml");
    let mut out = std::collections::BTreeSet::new();
    let Some(resources) = template.get("Resources").and_then(|r| r.as_mapping()) else {
        return out;
    };
    for (_, resource) in resources {
        let name = resource["Metadata"]["BuildProperties"]["Binary"].as_str();
        if resource["Type"].as_str() != Some("AWS::Serverless::Function")
            || (binary.is_some() && name != binary)
        {
            continue;
        }
        for (_, event) in resource["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
        {
            if event["Type"].as_str() == Some("HttpApi") {
                let props = &event["Properties"];
                if let (Some(m), Some(p)) = (props["Method"].as_str(), props["Path"].as_str()) {
                    out.insert((m.to_uppercase(), p.to_owned()));
                }
            }
        }
    }
    out
}

/// The routes `infra/openapi.yaml` documents.
pub fn openapi_routes() -> std::collections::BTreeSet<Route> {
    let doc = yaml("infra/openapi.yaml");
    let mut out = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_mapping().into_iter().flatten() {
        for (method, _) in ops.as_mapping().into_iter().flatten() {
            if let (Some(p), Some(m)) = (path.as_str(), method.as_str())
                && ["get", "put", "post", "delete", "patch"].contains(&m)
            {
                out.insert((m.to_uppercase(), p.to_owned()));
            }
        }
    }
    out
}

/// Checks that a function's declared routes are exactly the template's routes for it, that the
/// OpenAPI document has them, and that the handler answers each (anything but "no route").
#[cfg(feature = "http")]
pub async fn check_routes<R, F, Fut>(binary: &str, routes: &crate::http::Routes<R>, handle: F)
where
    F: Fn(lambda_http::Request) -> Fut,
    Fut: std::future::Future<Output = lambda_http::Response<lambda_http::Body>>,
{
    let declared: std::collections::BTreeSet<Route> = crate::http::route_pairs(routes)
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        declared,
        template_routes(Some(binary)),
        "{binary}: ROUTES and the template differ"
    );
    let documented = openapi_routes();
    for route in &declared {
        assert!(
            documented.contains(route),
            "{binary}: {route:?} is not in infra/openapi.yaml"
        );
        let (method, template) = route;
        let path: String = template
            .split('/')
            .map(|seg| if seg.starts_with('{') { "x1" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let params: serde_json::Map<String, serde_json::Value> = template
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| (name.to_owned(), "x1".into()))
            .collect();
        let event = serde_json::json!({
            "version": "2.0", "routeKey": format!("{method} {template}"), "rawPath": path,
            "pathParameters": params,
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "requestContext": {"http": {"method": method, "path": path}, "timeEpoch": 0,
                "routeKey": format!("{method} {template}"),
                "authorizer": {"jwt": {"claims": {"sub": "x1", "custom:role": "agent"}}}},
            "body": "{}", "isBase64Encoded": false
        });
        let (status, body) = response(&handle(request(&event)).await);
        let unrouted = status == 404
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("no route"));
        assert!(!unrouted, "{binary} does not answer {method} {template}");
    }
}

/// The example world the `events/` fixtures speak of: agents `ana` (lead of `bay-team`), `ben`
/// and `cy`, all in San Francisco's 94110, and referral `ref-1`, a seller offered to `ana` and
/// `ben` at `at`, with claim codes `#1111` (ana) and `#4821` (ben); and `wt-1`, the same client as
/// a warm transfer alerted to `ana` and `ben` at `at` (codes `#2222` and `#3333`), open for 90
/// seconds. Stored through the ports, as the functions would store it.
pub async fn seed_example(store: &crate::memory::MemoryStore, at: jiff::Timestamp) {
    use crate::domain::agent::Agent;
    use crate::domain::referral::{Client, LeadDetails, PriceRange, Program, Referral};
    use crate::domain::team::Team;
    use crate::domain::values::ClientType;
    use crate::domain::warm_transfer::{DEFAULT_TIMEOUT, WarmTransfer};
    use crate::ports::{AgentDirectory, ReferralStore};

    fn valid<T: std::str::FromStr>(text: &str) -> T {
        text.parse()
            .unwrap_or_else(|_| panic!("the example value {text} is valid"))
    }
    let agent = |id: &str, phone: &str| Agent {
        id: valid(id),
        name: format!("{}{} Agent", id[..1].to_uppercase(), &id[1..]),
        email: Some(valid(&format!("{id}@agents.example.com"))),
        cell_phone: Some(valid(phone)),
        office_phone: None,
        licensed: true,
        zips: [valid("94110")].into(),
        client_types: [ClientType::Buyer, ClientType::Seller].into(),
        warm_transfer: true,
        push_token: Some(format!("device-token-{id}")),
        time_zone: valid("America/Los_Angeles"),
        vacation: None,
        fee_percent: None,
        response_times: Default::default(),
    };
    for (id, phone) in [
        ("ana", "+14155550101"),
        ("ben", "+14155550103"),
        ("cy", "+14155550104"),
    ] {
        let agent = agent(id, phone);
        store.put_agent(&agent).await.expect("in memory");
        store.verify_phones(&agent).await;
    }
    let team = Team {
        id: valid("bay-team"),
        name: "Bay Team".into(),
        lead_agent_id: valid("ana"),
        agent_ids: [valid("ben"), valid("cy")].into(),
    };
    store.put_team(&team).await.expect("in memory");
    let client = Client {
        name: "Casey Client".into(),
        phone: valid("+14155559876"),
        email: valid("casey@example.com"),
    };
    let lead = LeadDetails {
        client_type: ClientType::Seller,
        zip: valid("94110"),
        price_range: PriceRange::new(valid("800000"), valid("950000")).expect("a valid range"),
        timeline: "1-3 months".into(),
    };
    let codes = |pairs: [(&str, &str); 2]| {
        pairs
            .iter()
            .map(|(a, c)| (valid(a), (*c).to_owned()))
            .collect()
    };
    let referral = Referral {
        briefing: "Selling a 3-bed Victorian; wants to list before spring.".into(),
        team_id: Some(team.id.clone()),
        codes: codes([("ana", "#1111"), ("ben", "#4821")]),
        ..Referral::offered(
            valid("ref-1"),
            Program::Routing,
            client,
            lead,
            valid("advisor-1"),
            at,
            [valid("ana"), valid("ben")],
        )
    };
    // The same client as a live warm transfer, alerted to ana and ben at `at`.
    let transfer = WarmTransfer::start(vec![valid("ana"), valid("ben")], at, DEFAULT_TIMEOUT);
    let warm = Referral {
        id: valid("wt-1"),
        program: Program::WarmTransfer,
        team_id: None,
        codes: codes([("ana", "#2222"), ("ben", "#3333")]),
        respond_by: Some(transfer.timeout_at),
        warm_transfer: Some(transfer),
        ..referral.clone()
    };
    for r in [&referral, &warm] {
        let created = store
            .create_referral(r, &[], &crate::effects::Effects::default())
            .await
            .expect("in memory");
        assert!(created.is_new(), "the example world is seeded once");
    }
}

/// The example world with `ref-1` already claimed by `ana` at `at`: where the pipeline's
/// fixtures start.
pub async fn claimed_example(
    at: jiff::Timestamp,
) -> (
    crate::app::Services,
    std::sync::Arc<crate::memory::MemoryStore>,
    std::sync::Arc<crate::memory::Outbox>,
) {
    use crate::domain::referral::ClaimChannel;
    use crate::ports::{ClaimOutcome, ReferralStore};
    let (s, store, outbox) = crate::memory::in_memory_services();
    seed_example(&store, at).await;
    let won = store
        .claim(
            &"ref-1".parse().expect("a valid id"),
            &"ana".parse().expect("a valid id"),
            ClaimChannel::App,
            at,
        )
        .await
        .expect("in memory");
    assert!(matches!(won, ClaimOutcome::Won(_)), "ana claims ref-1");
    (s, store, outbox)
}
