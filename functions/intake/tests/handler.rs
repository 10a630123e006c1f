//! The intake fixtures through the handler.

use shared::fixtures::seed_example;
use shared::fixtures::{http_event, json, request, response};
use shared::memory::{Sent, in_memory_services};

#[tokio::test]
async fn lr_11_new_referral_for_a_team_without_routing_goes_to_its_lead_once() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, body) = response(
        &intake::handle(&s, http_event("intake", "new-referral"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["offeredTo"], serde_json::json!(["ana"]));
    // GEN-3: not even the advisor's answer repeats the contacts.
    assert!(!body.to_string().contains("casey@example.com"), "{body}");
    let queued = |o: &shared::memory::Outbox| {
        o.sent()
            .iter()
            .filter(|x| matches!(x, Sent::Queued(_)))
            .count()
    };
    assert_eq!(queued(&outbox), 3, "sms, push and email to ana");
    // GEN-5: the same Idempotency-Key is the same referral, and nobody hears of it twice.
    let (status, again) = response(
        &intake::handle(&s, http_event("intake", "new-referral"))
            .await
            .unwrap(),
    );
    assert_eq!((status, &again["id"]), (200, &body["id"]));
    // The retry may queue the offers again; the broadcast consumer sends each once.
    let now = "2027-01-01T00:00:05Z".parse().unwrap();
    for m in outbox.sent().iter().filter_map(|x| match x {
        Sent::Queued(m) => Some(m.clone()),
        _ => None,
    }) {
        shared::app::broadcast::deliver(&s, &shared::memory::senders_of(&outbox), &m, now)
            .await
            .unwrap();
    }
    let delivered = outbox
        .sent()
        .iter()
        .filter(|x| matches!(x, Sent::Sms { .. } | Sent::Push { .. } | Sent::Email(_)))
        .count();
    assert_eq!(delivered, 3);
}

#[tokio::test]
async fn gen_4_intake_refuses_agents_bad_json_and_nobody_to_offer() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let mut agent = json("intake", "new-referral");
    agent["requestContext"]["authorizer"]["jwt"]["claims"]["custom:role"] = "agent".into();
    assert_eq!(
        response(&intake::handle(&s, request(&agent)).await.unwrap()).0,
        403
    );
    let mut broken = json("intake", "new-referral");
    broken["body"] = r#"{"program": "routing", "#.into();
    assert_eq!(
        response(&intake::handle(&s, request(&broken)).await.unwrap()).0,
        400
    );
    let mut stage = json("intake", "new-referral");
    stage["body"] = stage["body"]
        .as_str()
        .unwrap()
        .replace("\"seller\"", "\"landlord\"")
        .into();
    assert_eq!(
        response(&intake::handle(&s, request(&stage)).await.unwrap()).0,
        400
    );
    // No PPL subscriber covers 94110 buyers in the example world: it waits for the advisors
    // (RC-2), and no agent hears of it.
    let (status, body) = response(
        &intake::handle(&s, http_event("intake", "new-ppl-referral"))
            .await
            .unwrap(),
    );
    assert_eq!((status, &body["offeredTo"]), (201, &serde_json::json!([])));
    assert!(body["unassignedSince"].is_string(), "{body}");
    assert!(outbox.sent().is_empty());
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("intake", intake::ROUTES, |req| async move {
        intake::handle(s, req).await.unwrap()
    })
    .await;
}
