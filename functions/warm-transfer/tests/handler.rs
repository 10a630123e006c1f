//! The warm-transfer fixtures through the handlers: ben takes `wt-1` on the line, then the
//! advisor completes it and ana, who was alerted too, is introduced.

use shared::fixtures::seed_example;
use shared::fixtures::{http_event, json, request, response};
use shared::memory::in_memory_services;

#[tokio::test]
async fn wt_7_completing_the_fixture_transfer_introduces_the_other_alerted_agent() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    // Not connected yet: nothing to complete.
    let (status, body) = response(
        &warm_transfer::handle(&s, http_event("warm-transfer", "complete"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_connected"))
    );
    // Ben dials the line 20 s after the alerts and keys in his alert's code, #3333 (the claim
    // function's fixture does the same).
    let voice = shared::app::warm_transfer::line_call(
        &s,
        "+14155550103",
        Some("3333"),
        "2027-01-01T00:00:20Z".parse().unwrap(),
    )
    .await
    .unwrap();
    assert!(
        matches!(voice, shared::app::voice::Voice::Join { .. }),
        "{voice:?}"
    );
    let (status, body) = response(
        &warm_transfer::handle(&s, http_event("warm-transfer", "complete"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["introduced"][0]["agentId"], "ana", "{body}");
    assert_eq!(body["metrics"]["outcome"], "connected", "{body}");
    assert_eq!(body["metrics"]["timeToFirstResponseMs"], 20_000, "{body}");
    let mut agent = json("warm-transfer", "complete");
    agent["requestContext"]["authorizer"]["jwt"]["claims"]["custom:role"] = "agent".into();
    assert_eq!(
        response(&warm_transfer::handle(&s, request(&agent)).await.unwrap()).0,
        403
    );
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("warm-transfer", warm_transfer::ROUTES, |req| async move {
        warm_transfer::handle(s, req).await.unwrap()
    })
    .await;
}
