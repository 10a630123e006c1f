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
