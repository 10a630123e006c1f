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
    assert_eq!(body["cycleAmount"], "270.00");
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
