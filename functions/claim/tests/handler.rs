//! The claim fixtures through the handler: first claim wins, later ones learn it is taken.

use shared::fixtures::seed_example;
use shared::fixtures::{http_event, json, request, response};
use shared::memory::{Sent, in_memory_services};
use shared::twilio::Webhooks;

#[tokio::test]
async fn wt_4_claim_fixture_wins_once_then_409_taken() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, body) = response(
        &claim::handle(&s, &Webhooks::development(), http_event("claim", "claim"))
            .await
            .unwrap(),
    );
    assert_eq!((status, body["agentId"].as_str()), (200, Some("ana")));
    let mut ben = json("claim", "claim");
    ben["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "ben".into();
    let (status, body) = response(
        &claim::handle(&s, &Webhooks::development(), request(&ben))
            .await
            .unwrap(),
    );
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
        &claim::handle(&s, &Webhooks::development(), http_event("claim", "decline"))
            .await
            .unwrap(),
    );
    assert_eq!(status, 200);
    let mut ben = json("claim", "claim");
    ben["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "ben".into();
    let (status, body) = response(
        &claim::handle(&s, &Webhooks::development(), request(&ben))
            .await
            .unwrap(),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("declined"))
    );
    let (status, _) = response(
        &claim::handle(&s, &Webhooks::development(), http_event("claim", "claim"))
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
        response(
            &claim::handle(&s, &Webhooks::development(), request(&advisor))
                .await
                .unwrap()
        )
        .0,
        403
    );
    let mut stranger = json("claim", "claim");
    stranger["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "cy".into();
    assert_eq!(
        response(
            &claim::handle(&s, &Webhooks::development(), request(&stranger))
                .await
                .unwrap()
        )
        .0,
        403
    );
}

#[tokio::test]
async fn routes_match_the_template_and_openapi_and_are_answered() {
    let (s, _, _) = shared::memory::in_memory_services();
    let s = &s;
    shared::fixtures::check_routes("claim", claim::ROUTES, |req| async move {
        claim::handle(s, &Webhooks::development(), req)
            .await
            .unwrap()
    })
    .await;
}

/// Sends what the handler committed, as the outbox and broadcast functions would.
async fn deliver(s: &shared::app::Services, outbox: &std::sync::Arc<shared::memory::Outbox>) {
    shared::memory::deliver(s, outbox, "2027-01-01T00:00:01Z".parse().unwrap())
        .await
        .unwrap();
}

fn twiml_of(resp: &lambda_http::Response<lambda_http::Body>) -> (u16, String) {
    let body = match resp.body() {
        lambda_http::Body::Text(t) => t.clone(),
        _ => String::new(),
    };
    (resp.status().as_u16(), body)
}

/// TX-1, LR-9: a text to the service's number arrives as End User Messaging publishes it to the
/// inbound topic (the SNS notification `cargo lambda invoke claim --data-file
/// events/claim/inbound-sms.json` sends): ben's code claims, his message is relayed to the
/// client, and the answer is texted back to him from the service's number.
#[tokio::test]
async fn tx_1_an_inbound_text_notification_claims_and_relays_to_the_client() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let event = lambda_http::LambdaEvent::new(json("claim", "inbound-sms"), Default::default());
    let answer = claim::handle_event(&s, &Webhooks::development(), event)
        .await
        .unwrap();
    assert_eq!(answer, serde_json::Value::Null);
    let r = store.get_referral_sync(&"ref-1".parse().unwrap()).unwrap();
    assert_eq!(r.assigned_agent().map(|a| a.as_str()), Some("ben"));
    // The relay and the answer are committed with the claim; the broadcast function sends them.
    deliver(&s, &outbox).await;
    let texts_to = |number: &str| -> Vec<String> {
        outbox
            .sent()
            .into_iter()
            .filter_map(|x| match x {
                Sent::Sms { to, body } if to.as_str() == number => Some(body),
                _ => None,
            })
            .collect()
    };
    assert_eq!(texts_to("+14155559876").len(), 1);
    assert!(
        texts_to("+14155550103")
            .iter()
            .any(|b| b.contains("The referral is yours")),
        "{:?}",
        texts_to("+14155550103")
    );
}

/// The same entry point still answers API Gateway's requests.
#[tokio::test]
async fn an_api_request_through_the_event_entry_point_is_answered_as_http() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let event = lambda_http::LambdaEvent::new(json("claim", "claim"), Default::default());
    let answer = claim::handle_event(&s, &Webhooks::development(), event)
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 200, "{answer}");
    let body: serde_json::Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["referralId"], "ref-1", "{body}");
}

#[tokio::test]
async fn gen_6_forged_webhook_is_403_and_claims_nothing() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    for name in [
        "twilio-voice-claim",
        "twilio-voice-status",
        "twilio-voice-pin",
    ] {
        let mut forged = json("claim", name);
        forged["body"] = forged["body"]
            .as_str()
            .unwrap()
            .replace("ben", "cy")
            .replace("%2B14155550103", "%2B14155550104")
            .into();
        forged["rawQueryString"] = forged["rawQueryString"]
            .as_str()
            .unwrap()
            .replace("ben", "cy")
            .into();
        let (status, body) = response(
            &claim::handle(&s, &Webhooks::development(), request(&forged))
                .await
                .unwrap(),
        );
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("invalid_signature")),
            "{name}"
        );
        let mut unsigned = json("claim", name);
        unsigned["headers"]
            .as_object_mut()
            .unwrap()
            .remove("x-twilio-signature");
        assert_eq!(
            response(
                &claim::handle(&s, &Webhooks::development(), request(&unsigned))
                    .await
                    .unwrap()
            )
            .0,
            403
        );
    }
    let r = store.get_referral_sync(&"ref-1".parse().unwrap()).unwrap();
    assert!(r.assignment().is_none());
    assert!(outbox.sent().is_empty(), "{:?}", outbox.sent());
}

#[tokio::test]
async fn lr_9_pressing_1_on_the_claim_call_claims() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, xml) = twiml_of(
        &claim::handle(
            &s,
            &Webhooks::development(),
            http_event("claim", "twilio-voice-claim"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(status, 200, "{xml}");
    assert!(xml.contains("<Say>The referral is yours"), "{xml}");
    let r = store.get_referral_sync(&"ref-1".parse().unwrap()).unwrap();
    assert_eq!(r.assigned_agent().map(|a| a.as_str()), Some("ben"));
}

#[tokio::test]
async fn lr_10_wt_12_a_failed_claim_call_is_tried_again_by_a_timer_and_the_pin_line_asks_for_the_pin()
 {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, _) = twiml_of(
        &claim::handle(
            &s,
            &Webhooks::development(),
            http_event("claim", "twilio-voice-status"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(status, 200);
    deliver(&s, &outbox).await;
    let sent = outbox.sent();
    assert!(
        !sent.iter().any(|x| matches!(x, Sent::Call { .. })),
        "no call at once: {sent:?}"
    );
    let retries = sent
        .iter()
        .filter(|x| {
            matches!(x, Sent::Delayed { timer, .. } | Sent::Scheduled(timer)
                if matches!(timer.payload, shared::effects::TimerPayload::ClaimCallRetry { .. }))
        })
        .count();
    assert_eq!(
        retries, 1,
        "one more try after the first failure, on a timer"
    );
    let (status, xml) = twiml_of(
        &claim::handle(
            &s,
            &Webhooks::development(),
            http_event("claim", "twilio-voice-pin"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(status, 200);
    assert!(xml.contains(r#"<Gather numDigits="6""#), "{xml}");
}

#[tokio::test]
async fn ppl_4_call_me_to_claim_places_the_call() {
    let (s, store, outbox) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let mut call = json("claim", "claim");
    call["body"] = r#"{"by": "call"}"#.into();
    let (status, body) = response(
        &claim::handle(&s, &Webhooks::development(), request(&call))
            .await
            .unwrap(),
    );
    assert_eq!((status, &body["calling"]), (202, &true.into()), "{body}");
    deliver(&s, &outbox).await;
    let placed = outbox.sent().into_iter().find_map(|x| match x {
        Sent::Call { to, url, .. } => Some((to.to_string(), url)),
        _ => None,
    });
    assert_eq!(
        placed,
        Some((
            "+14155550101".to_owned(),
            "http://127.0.0.1:3000/twilio/voice/claim?referralId=ref-1&agentId=ana".to_owned()
        ))
    );
    let mut bad = json("claim", "claim");
    bad["body"] = r#"{"by": "pigeon"}"#.into();
    assert_eq!(
        response(
            &claim::handle(&s, &Webhooks::development(), request(&bad))
                .await
                .unwrap()
        )
        .0,
        400
    );
}

#[tokio::test]
async fn wt_4_dialing_the_warm_transfer_line_wins_and_joins_the_room() {
    let (s, store, _) = in_memory_services();
    seed_example(&store, "2027-01-01T00:00:00Z".parse().unwrap()).await;
    let (status, xml) = twiml_of(
        &claim::handle(
            &s,
            &Webhooks::development(),
            http_event("claim", "twilio-voice-warm-transfer"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(status, 200, "{xml}");
    assert!(
        xml.contains(">wt-wt-1</Conference>") && xml.contains(r#"startConferenceOnEnter="false""#),
        "{xml}"
    );
    let r = store.get_referral_sync(&"wt-1".parse().unwrap()).unwrap();
    assert_eq!(r.assigned_agent().map(|a| a.as_str()), Some("ben"));
}
