//! The subscription fixtures through the handler.

use shared::fixtures::seed_example;
use shared::fixtures::{http_event, json, request, response};
use shared::memory::in_memory_services;

#[tokio::test]
async fn ppl_1_sign_up_fixture_is_201_with_the_first_charge_in_30_days() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, body) = response(
        &ppl_subscriptions::handle(&s, http_event("ppl-subscriptions", "sign-up"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["nextChargeAt"], "2027-01-31T00:00:00Z");
    assert_eq!(body["cycleAmount"], "0.00");
    let id = body["id"].as_str().unwrap();
    let mut get = json("ppl-subscriptions", "get-subscription");
    get["rawPath"] = format!("/ppl/subscriptions/{id}").into();
    get["requestContext"]["http"]["path"] = format!("/ppl/subscriptions/{id}").into();
    get["pathParameters"]["id"] = id.into();
    let (status, body) = response(&ppl_subscriptions::handle(&s, request(&get)).await.unwrap());
    assert_eq!(
        (status, body["charges"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (status, _) = response(
        &ppl_subscriptions::handle(&s, http_event("ppl-subscriptions", "get-subscription"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 404);
}

/// The fixture with its path pointed at subscription `id`.
fn at_subscription(name: &str, id: &str, tail: &str) -> serde_json::Value {
    let mut event = json("ppl-subscriptions", name);
    let path = format!("/ppl/subscriptions/{id}{tail}");
    event["rawPath"] = path.clone().into();
    event["requestContext"]["http"]["path"] = path.into();
    event["pathParameters"]["id"] = id.into();
    event
}

#[tokio::test]
async fn ppl_12_ppl_13_change_return_and_cancel_fixtures() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (_, body) = response(
        &ppl_subscriptions::handle(&s, http_event("ppl-subscriptions", "sign-up"))
            .await
            .unwrap(),
    );
    let id = body["id"].as_str().unwrap();
    let change = at_subscription("change-subscription", id, "");
    let (status, body) = response(
        &ppl_subscriptions::handle(&s, request(&change))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["clientTypes"], serde_json::json!(["buyer", "seller"]));
    assert_eq!(body["nextQuota"]["referralsPerCycle"], 5, "{body}");
    // ref-1 of the example world is not a referral this subscription received.
    let back = at_subscription("return-referral", id, "/returns");
    let (status, body) = response(&ppl_subscriptions::handle(&s, request(&back)).await.unwrap());
    assert_eq!(status, 404, "{body}");
    let cancel = at_subscription("cancel-subscription", id, "");
    let (status, body) = response(
        &ppl_subscriptions::handle(&s, request(&cancel))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, &body["status"]),
        (200, &serde_json::json!("cancelled")),
        "{body}"
    );
    let (status, body) = response(
        &ppl_subscriptions::handle(&s, request(&change))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &serde_json::json!("cancelled")),
        "{body}"
    );
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = shared::memory::in_memory_services();
    let s = &s;
    shared::fixtures::check_routes(
        "ppl-subscriptions",
        ppl_subscriptions::ROUTES,
        |req| async move { ppl_subscriptions::handle(s, req).await.unwrap() },
    )
    .await;
}
