//! The claim fixtures through the handler: first claim wins, later ones learn it is taken.

use shared::fixtures::{http_event, json, request, response};
use shared::memory::{in_memory_services, seed_example};

#[tokio::test]
async fn wt_4_claim_fixture_wins_once_then_409_taken() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, body) = response(
        &claim::handle(&s, http_event("claim", "claim"))
            .await
            .unwrap(),
    );
    assert_eq!((status, body["agentId"].as_str()), (200, Some("ana")));
    let mut ben = json("claim", "claim");
    ben["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "ben".into();
    let (status, body) = response(&claim::handle(&s, request(&ben)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("taken"))
    );
    // GEN-3: the loser's answer carries nothing of the client.
    assert!(!body.to_string().contains("+14155559876"));
}

#[tokio::test]
async fn lr_8_decline_fixture_then_the_decliner_cannot_claim() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, _) = response(
        &claim::handle(&s, http_event("claim", "decline"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    let mut ben = json("claim", "claim");
    ben["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "ben".into();
    let (status, body) = response(&claim::handle(&s, request(&ben)).await.unwrap());
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("declined"))
    );
    let (status, _) = response(
        &claim::handle(&s, http_event("claim", "claim"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200, "the referral stayed open for ana");
}

#[tokio::test]
async fn gen_6_advisor_token_cannot_claim_and_stranger_is_403() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let mut advisor = json("claim", "claim");
    advisor["requestContext"]["authorizer"]["jwt"]["claims"]["custom:role"] = "advisor".into();
    assert_eq!(
        response(&claim::handle(&s, request(&advisor)).await.unwrap()).0,
        403
    );
    let mut stranger = json("claim", "claim");
    stranger["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "cy".into();
    assert_eq!(
        response(&claim::handle(&s, request(&stranger)).await.unwrap()).0,
        403
    );
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = shared::memory::in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("claim", claim::ROUTES, |req| async move {
        claim::handle(s, req).await.unwrap()
    })
    .await;
}
