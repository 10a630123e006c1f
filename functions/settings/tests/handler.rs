//! Every `events/settings` fixture through the handler, and the refusals around them.

use shared::fixtures::seed_example;
use shared::fixtures::{http_event, json, request, response};
use shared::memory::in_memory_services;
use shared::ports::AgentDirectory;

#[tokio::test]
async fn every_settings_fixture_succeeds_for_its_role() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    for name in [
        "put-team",
        "put-agent",
        "put-agreement",
        "put-vacation",
        "delete-vacation",
        "get-routing",
        "put-routing",
    ] {
        let (status, body) = response(
            &settings::handle(&s, http_event("settings", name))
                .await
                .unwrap(),
        );
        assert_eq!(status, 200, "{name}: {body}");
    }
    let routing = store
        .get_routing(&"bay-team".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(routing.enabled());
    assert_eq!(
        routing.members().len(),
        3,
        "LR-4: the lead is kept as fallback agent"
    );
    let ana = store
        .get_agent(&"ana".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ana.fee_percent.unwrap().to_string(), "25");
    assert!(ana.vacation.is_none());
}

#[tokio::test]
async fn tx_3_the_phone_verification_fixture_texts_a_code() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, body) = response(
        &settings::handle(&s, http_event("settings", "phone-verification"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["phone"], "+14155550109", "normalized");
    assert_eq!(body["verified"], false);
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    shared::memory::deliver(&s, &outbox, at).await.unwrap();
    assert!(outbox.sent().iter().any(|x| matches!(x,
        shared::memory::Sent::Sms { to, body } if to.as_str() == "+14155550109" && body.contains("Code: "))));
}

#[tokio::test]
async fn gen_4_malformed_json_is_400_and_writes_nothing() {
    let (s, store, _) = in_memory_services();
    let mut v = json("settings", "put-team");
    v["body"] = "{\"name\": ".into();
    let (status, body) = response(&settings::handle(&s, request(&v)).await.unwrap());
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_request");
    assert!(
        store
            .get_team(&"bay-team".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn gen_6_wrong_role_is_403_and_no_token_is_401() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let mut as_agent = json("settings", "put-team");
    as_agent["requestContext"]["authorizer"]["jwt"]["claims"]["custom:role"] = "agent".into();
    let (status, body) = response(&settings::handle(&s, request(&as_agent)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let mut anonymous = json("settings", "put-team");
    anonymous["requestContext"]
        .as_object_mut()
        .unwrap()
        .remove("authorizer");
    let (status, _) = response(&settings::handle(&s, request(&anonymous)).await.unwrap());
    assert_eq!(status, 401);
    let team = store
        .get_team(&"bay-team".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(team.agent_ids.len(), 2, "the seeded team is unchanged");
}

#[tokio::test]
async fn lr_3_too_many_warm_transfer_members_is_422_and_not_saved() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let mut v = json("settings", "put-routing");
    v["body"] = serde_json::json!({"enabled": true, "members": [
        {"agentId": "ben", "receives": "both", "warmTransfer": true},
        {"agentId": "cy", "receives": "both", "warmTransfer": true},
        {"agentId": "ana", "receives": "both", "warmTransfer": true},
        {"agentId": "ghost", "receives": "both", "warmTransfer": false}
    ]})
    .to_string()
    .into();
    let (status, body) = response(&settings::handle(&s, request(&v)).await.unwrap());
    assert_eq!(status, 422, "{body}");
    assert!(
        store
            .get_routing(&"bay-team".parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = shared::memory::in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("settings", settings::ROUTES, |req| async move {
        settings::handle(s, req).await.unwrap()
    })
    .await;
}

/// The deployed API (template) and the documented one (OpenAPI) name the same routes.
#[test]
fn openapi_and_template_routes_are_the_same_set() {
    let template = shared::fixtures::template_routes(None);
    assert!(!template.is_empty());
    assert_eq!(template, shared::fixtures::openapi_routes());
}
