//! The pipeline fixtures through the handler, on a referral `ana` has claimed.

use shared::fixtures::claimed_example;
use shared::fixtures::{http_event, json, request, response};

async fn claimed() -> shared::app::Services {
    let at = "2027-01-01T00:00:00Z".parse().unwrap();
    claimed_example(at).await.0
}

#[tokio::test]
async fn st_5_stage_notes_view_and_list_fixtures() {
    let s = claimed().await;
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "agent-referrals"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 1);
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "stage"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["stage"].as_str()),
        (200, Some("meeting_scheduled")),
        "{body}"
    );
    assert_eq!(body["pipeline"]["meetingAt"], "2027-01-05T18:00:00Z");
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "notes"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    assert!(
        body["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["type"] == "note")
    );
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "get-referral"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["client"]["phone"].as_str()),
        (200, Some("+14155559876"))
    );
}

#[tokio::test]
async fn st_2_unknown_and_backward_stages_are_refused() {
    let s = claimed().await;
    let mut unknown = json("stage-update", "stage");
    unknown["body"] = r#"{"stage": "won"}"#.into();
    let (status, body) = response(&stage_update::handle(&s, request(&unknown)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("bad_request"))
    );
    response(
        &stage_update::handle(&s, http_event("stage-update", "stage"))
            .await
            .unwrap(),
    );
    let mut back = json("stage-update", "stage");
    back["body"] = r#"{"stage": "connected"}"#.into();
    let (status, body) = response(&stage_update::handle(&s, request(&back)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("backward_move"))
    );
    let mut escrow = json("stage-update", "stage");
    escrow["body"] = r#"{"stage": "in_escrow", "salePrice": "900000"}"#.into();
    let (status, body) = response(&stage_update::handle(&s, request(&escrow)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("missing_field"))
    );
}

#[tokio::test]
async fn st_6_st_7_closings_fixtures_need_the_right_stage() {
    let s = claimed().await;
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "payment"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_closed"))
    );
    let (status, _) = response(
        &stage_update::handle(&s, http_event("stage-update", "correction"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 422);
    let mut as_agent = json("stage-update", "payment");
    as_agent["requestContext"]["authorizer"]["jwt"]["claims"] =
        serde_json::json!({"sub": "ana", "custom:role": "agent"});
    assert_eq!(
        response(&stage_update::handle(&s, request(&as_agent)).await.unwrap()).0,
        403
    );
}

#[tokio::test]
async fn rc_5_the_closings_desk_fixture_lists_closed_referrals() {
    let s = claimed().await;
    let (status, body) = response(
        &stage_update::handle(&s, http_event("stage-update", "closings-referrals"))
            .await
            .unwrap(),
    );
    // ana's referral is at Left Voicemail: nothing closed yet.
    assert_eq!(
        (status, &body["items"]),
        (200, &serde_json::json!([])),
        "{body}"
    );
    let mut as_agent = json("stage-update", "closings-referrals");
    as_agent["requestContext"]["authorizer"]["jwt"]["claims"]["custom:role"] = "agent".into();
    let (status, _) = response(&stage_update::handle(&s, request(&as_agent)).await.unwrap());
    assert_eq!(status, 403);
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = shared::memory::in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("stage-update", stage_update::ROUTES, |req| async move {
        stage_update::handle(s, req).await.unwrap()
    })
    .await;
}
