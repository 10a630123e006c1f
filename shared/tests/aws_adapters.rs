//! The AWS adapters against moto's real server (`infra/local/stack.sh start moto`, then
//! `eval "$(infra/local/stack.sh env)"`). moto delivers nothing, but records what was sent; each
//! test reads those records back from `/moto-api/data.json`, filtered by a phone number, address,
//! token or name unique to the test, since the tests share one server and run in parallel (so no
//! test ever resets it).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sqs::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Credentials, Intercept};
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchInput;
use jiff::Timestamp;
use serde_json::{Value, json};
use shared::aws::{
    EventBridgeBus, EventBridgeScheduler, SnsSesNotifier, SqsBroadcastQueue, ensure_sender_identity,
};
use shared::domain::values::Phone;
use shared::effects::{Delivery, Message, Recipient, Timer, TimerEvent, TimerPayload};
use shared::encoding::base64_encode;
use shared::ports::{
    Attachment, BroadcastQueue, DomainEvent, EmailMessage, EventBus, Notifier, Scheduler, SendError,
};

const SENDER_DOMAIN: &str = "example.com";
const SENDER: &str = "Referrals <noreply@example.com>";

/// moto's endpoint; fails the test (never skips it) when the emulator is not there, since a
/// skipped adapter test would pass without testing anything.
async fn moto() -> String {
    let endpoint = std::env::var("MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "MOTO_ENDPOINT is not set. Start the emulator first:\n  \
             infra/local/stack.sh install && infra/local/stack.sh start moto\n  \
             eval \"$(infra/local/stack.sh env)\""
        )
    });
    if let Err(e) = reqwest::get(format!("{endpoint}/moto-api/data.json")).await {
        panic!(
            "moto is not answering at MOTO_ENDPOINT={endpoint} ({e}). \
             Start it with: infra/local/stack.sh start moto"
        );
    }
    endpoint
}

/// A configuration pointing every client at moto, with moto's dummy credentials.
async fn sdk() -> SdkConfig {
    let endpoint = moto().await;
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("local", "local", None, None, "moto"))
        .http_client(shared::aws::http::sdk_client_over(
            shared::aws::http::build(),
        ))
        .load()
        .await
}

/// Everything moto has recorded since its last reset.
async fn recorded() -> Value {
    let endpoint = moto().await;
    reqwest::get(format!("{endpoint}/moto-api/data.json"))
        .await
        .expect("moto's data.json")
        .json()
        .await
        .expect("moto's data.json as JSON")
}

fn records<'a>(data: &'a Value, service: &str, model: &str) -> Vec<&'a Value> {
    data[service][model]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// A suffix no other test (or earlier run against the same server) uses.
fn unique() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

/// A number no other test uses: +1 415 and seven digits from a fresh ULID's randomness, the
/// exchange starting 2 to 9 as North American numbers do (one starting 0 or 1 is refused).
fn unique_phone() -> Phone {
    let random = ulid::Ulid::new().random();
    let (first, rest) = (2 + random % 8, (random / 8) % 1_000_000);
    format!("+1415{first}{rest:06}")
        .parse()
        .expect("an E.164 number")
}

async fn notifier(config: &SdkConfig, platform_application_arn: Option<String>) -> SnsSesNotifier {
    notifier_over(
        aws_sdk_sns::Client::new(config),
        config,
        platform_application_arn,
    )
    .await
}

/// As `notifier`, sending through `sns`.
async fn notifier_over(
    sns: aws_sdk_sns::Client,
    config: &SdkConfig,
    platform_application_arn: Option<String>,
) -> SnsSesNotifier {
    let ses = aws_sdk_sesv2::Client::new(config);
    verified_sender(&ses).await;
    SnsSesNotifier::new(
        sns,
        ses,
        SENDER,
        platform_application_arn,
        "+15005550009".parse().unwrap(),
    )
}

/// A push platform application of its own (FCM), by ARN.
async fn platform_application(sns: &aws_sdk_sns::Client) -> String {
    sns.create_platform_application()
        .name(format!("agentapp-{}", unique()))
        .platform("GCM")
        .attributes("PlatformCredential", "fcm-server-key")
        .send()
        .await
        .unwrap()
        .platform_application_arn
        .unwrap()
}

/// Each endpoint moto recorded for `token`, with the pushes it took (their JSON envelopes).
fn pushes_by_endpoint(data: &Value, token: &str) -> Vec<(String, Vec<Value>)> {
    records(data, "sns", "PlatformEndpoint")
        .into_iter()
        .filter(|e| e["token"] == token)
        .map(|e| {
            let pushes = e["messages"]
                .as_object()
                .unwrap()
                .values()
                .map(|m| serde_json::from_str(m.as_str().unwrap()).unwrap())
                .collect();
            (e["arn"].as_str().unwrap().to_owned(), pushes)
        })
        .collect()
}

/// moto, like SES, sends only from verified identities: verify the whole sender domain.
async fn verified_sender(ses: &aws_sdk_sesv2::Client) {
    ensure_sender_identity(ses, SENDER_DOMAIN)
        .await
        .expect("the sender domain is verified");
}

#[tokio::test]
async fn an_sms_reaches_sns_with_its_body() {
    let config = sdk().await;
    let to = unique_phone();
    let body = "New buyer lead in 94110, $800k-$1M. Reply #4821 to claim.";
    notifier(&config, None).await.sms(&to, body).await.unwrap();

    let data = recorded().await;
    let sent: Vec<&Value> = records(&data, "sns", "SMS")
        .into_iter()
        .filter(|sms| sms["phone_number"] == to.as_str())
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["message"], body);
}

/// TX-2: a number that texted START is taken off SNS's opt-out list, an action SNS accepts for
/// any number.
#[tokio::test]
async fn tx_2_an_opted_out_number_is_opted_in_again() {
    let config = sdk().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let to = unique_phone();
    notifier(&config, None).await.opt_in(&to).await.unwrap();
    let listed = sns
        .list_phone_numbers_opted_out()
        .send()
        .await
        .unwrap()
        .phone_numbers
        .unwrap_or_default();
    assert!(!listed.iter().any(|n| n == to.as_str()), "{listed:?}");
}

#[tokio::test]
async fn push_reaches_an_endpoint_arn_and_a_raw_token_gets_its_endpoint() {
    let config = sdk().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let application = platform_application(&sns).await;
    let stored_token = format!("device-{}", unique());
    let endpoint = sns
        .create_platform_endpoint()
        .platform_application_arn(&application)
        .token(&stored_token)
        .send()
        .await
        .unwrap()
        .endpoint_arn
        .unwrap();
    let raw_token = format!("device-{}", unique());
    let notifier = notifier(&config, Some(application)).await;

    notifier
        .push(&endpoint, "New referral", "Buyer in 94110")
        .await
        .unwrap();
    notifier
        .push(&raw_token, "New referral", "Seller in 94117")
        .await
        .unwrap();
    // A second push to the same raw token reuses its endpoint.
    notifier
        .push(&raw_token, "Reminder", "Update your referrals")
        .await
        .unwrap();

    let data = recorded().await;
    let pushed_to = |token: &str| -> Vec<Value> {
        let mut endpoints = pushes_by_endpoint(&data, token);
        assert_eq!(endpoints.len(), 1, "one endpoint per token: {endpoints:?}");
        endpoints.remove(0).1
    };
    let stored = pushed_to(&stored_token);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["default"], "Buyer in 94110");
    let fcm: Value = serde_json::from_str(stored[0]["GCM"].as_str().unwrap()).unwrap();
    assert_eq!(fcm["notification"]["title"], "New referral");
    let raw: BTreeSet<String> = pushed_to(&raw_token)
        .iter()
        .map(|m| m["default"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        raw,
        BTreeSet::from(["Seller in 94117".into(), "Update your referrals".into()])
    );
}

/// Counts CreatePlatformEndpoint calls made through an SNS client.
#[derive(Debug, Default, Clone)]
struct EndpointCalls(Arc<Mutex<usize>>);

impl aws_sdk_sns::config::Intercept for EndpointCalls {
    fn name(&self) -> &'static str {
        "EndpointCalls"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_sns::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_sns::config::ConfigBag,
    ) -> Result<(), aws_sdk_sns::error::BoxError> {
        let input = context.input();
        if input
            .downcast_ref::<aws_sdk_sns::operation::create_platform_endpoint::CreatePlatformEndpointInput>()
            .is_some()
        {
            *self.0.lock().unwrap() += 1;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_tokens_endpoint_is_asked_for_once_and_again_after_it_was_deleted() {
    let config = sdk().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let application = platform_application(&sns).await;
    let calls = EndpointCalls::default();
    let counted = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&config)
            .interceptor(calls.clone())
            .build(),
    );
    let notifier = notifier_over(counted, &config, Some(application.clone())).await;
    let token = format!("device-{}", unique());

    for body in ["Buyer in 94110", "Seller in 94117"] {
        notifier.push(&token, "New referral", body).await.unwrap();
    }
    assert_eq!(
        *calls.0.lock().unwrap(),
        1,
        "one endpoint request for two pushes"
    );

    // The app was reinstalled: its endpoint is deleted behind the notifier's back.
    let endpoints = sns
        .list_endpoints_by_platform_application()
        .platform_application_arn(&application)
        .send()
        .await
        .unwrap();
    let old = endpoints.endpoints()[0].endpoint_arn().unwrap().to_owned();
    sns.delete_endpoint()
        .endpoint_arn(&old)
        .send()
        .await
        .unwrap();
    notifier
        .push(&token, "Reminder", "Update your referrals")
        .await
        .unwrap();
    assert_eq!(*calls.0.lock().unwrap(), 2);

    // moto's record keeps the deleted endpoint beside the new one.
    let data = recorded().await;
    let pushed: BTreeSet<(bool, String)> = pushes_by_endpoint(&data, &token)
        .into_iter()
        .flat_map(|(arn, pushes)| {
            let deleted = arn == old;
            pushes
                .into_iter()
                .map(move |m| (deleted, m["default"].as_str().unwrap().to_owned()))
        })
        .collect();
    assert_eq!(
        pushed,
        BTreeSet::from([
            (true, "Buyer in 94110".into()),
            (true, "Seller in 94117".into()),
            (false, "Update your referrals".into()),
        ])
    );
}

#[tokio::test]
async fn a_raw_token_without_a_platform_application_is_rejected() {
    let config = sdk().await;
    let err = notifier(&config, None)
        .await
        .push("device-token", "t", "b")
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::Rejected(_)), "{err:?}");
}

fn email(to: &str, cc: &[&str], attachments: Vec<Attachment>) -> EmailMessage {
    EmailMessage {
        to: to.parse().unwrap(),
        cc: cc.iter().map(|c| c.parse().unwrap()).collect(),
        subject: "Escrow documents for referral r-1".into(),
        body: "Hello,\nthe escrow packet for 12 Elm St is attached.".into(),
        attachments,
    }
}

#[tokio::test]
async fn a_simple_email_reaches_sesv2_with_cc() {
    let config = sdk().await;
    let to = format!("agent-{}@example.org", unique());
    let cc = format!("closings-{}@example.org", unique());
    notifier(&config, None)
        .await
        .email(&email(&to, &[&cc], vec![]))
        .await
        .unwrap();

    let data = recorded().await;
    let sent: Vec<&Value> = records(&data, "ses", "Message")
        .into_iter()
        .filter(|m| m["destinations"]["ToAddresses"] == json!([to]))
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["source"], SENDER);
    assert_eq!(sent[0]["subject"], "Escrow documents for referral r-1");
    assert_eq!(
        sent[0]["body"],
        "Hello,\nthe escrow packet for 12 Elm St is attached."
    );
    assert_eq!(sent[0]["destinations"]["CcAddresses"], json!([cc]));
}

#[tokio::test]
async fn an_email_with_a_pdf_goes_out_as_raw_mime() {
    let config = sdk().await;
    let to = format!("agent-{}@example.org", unique());
    let cc = format!("lead-{}@example.org", unique());
    let pdf = b"%PDF-1.4 fake escrow packet\x00\x01\x02".to_vec();
    let attachment = Attachment {
        filename: "referral.pdf".into(),
        content_type: "application/pdf".into(),
        bytes: pdf.clone(),
    };
    notifier(&config, None)
        .await
        .email(&email(&to, &[&cc], vec![attachment]))
        .await
        .unwrap();

    let data = recorded().await;
    let sent: Vec<&Value> = records(&data, "ses", "RawMessage")
        .into_iter()
        .filter(|m| {
            m["destinations"]
                .as_array()
                .is_some_and(|d| d.contains(&json!(to)))
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]["destinations"]
            .as_array()
            .unwrap()
            .contains(&json!(cc))
    );
    let raw = sent[0]["raw_data"].as_str().unwrap();
    for expected in [
        "Subject: Escrow documents for referral r-1",
        &format!("Cc: {cc}"),
        "Content-Type: multipart/mixed; boundary=",
        "Content-Type: application/pdf; name=\"referral.pdf\"",
        "Content-Disposition: attachment; filename=\"referral.pdf\"",
        &base64_encode(&pdf),
    ] {
        assert!(raw.contains(expected), "{expected:?} missing from {raw}");
    }
}

#[tokio::test]
async fn an_unverified_sender_is_rejected_not_retried() {
    let config = sdk().await;
    let notifier = SnsSesNotifier::new(
        aws_sdk_sns::Client::new(&config),
        aws_sdk_sesv2::Client::new(&config),
        format!("noreply@unverified-{}.example", unique()),
        None,
        "+15005550009".parse().unwrap(),
    );
    let err = notifier
        .email(&email("agent@example.org", &[], vec![]))
        .await
        .unwrap_err();
    match err {
        SendError::Rejected(text) => assert!(text.contains("SESv2 SendEmail"), "{text}"),
        other => panic!("expected rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn ensuring_a_sender_identity_twice_is_fine() {
    let ses = aws_sdk_sesv2::Client::new(&sdk().await);
    let address = format!("noreply-{}@example.net", unique());
    ensure_sender_identity(&ses, &address).await.unwrap();
    ensure_sender_identity(&ses, &address).await.unwrap();
}

/// Counts SendMessageBatch calls made through a client, with their sizes.
#[derive(Debug, Default, Clone)]
struct BatchCalls(Arc<Mutex<Vec<usize>>>);

impl Intercept for BatchCalls {
    fn name(&self) -> &'static str {
        "BatchCalls"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_sqs::error::BoxError> {
        if let Some(batch) = context.input().downcast_ref::<SendMessageBatchInput>() {
            self.0.lock().unwrap().push(batch.entries().len());
        }
        Ok(())
    }
}

#[tokio::test]
async fn twenty_five_broadcast_messages_go_out_in_three_batches_and_come_back() {
    let config = sdk().await;
    let calls = BatchCalls::default();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&config)
            .interceptor(calls.clone())
            .build(),
    );
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("broadcast-{}", unique()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let sent: Vec<Delivery> = (0..25)
        .map(|i| {
            let body = format!("Buyer in 94110 for agent {i}. Reply #4821 to claim.");
            let message = match i % 3 {
                0 => Message::Sms { body },
                1 => Message::Push {
                    title: "New referral".into(),
                    body,
                },
                _ => Message::email("New referral", body),
            };
            Delivery {
                key: format!("notify#r-1#agent-{i}#{}", message.channel()),
                referral_id: Some("r-1".parse().unwrap()),
                to: Recipient::Agent {
                    agent_id: format!("agent-{i}").parse().unwrap(),
                },
                message,
            }
        })
        .collect();

    SqsBroadcastQueue::new(sqs.clone(), &queue_url)
        .enqueue(&sent)
        .await
        .unwrap();
    assert_eq!(*calls.0.lock().unwrap(), vec![10, 10, 5]);

    let mut received = Vec::new();
    for _ in 0..20 {
        let batch = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for m in batch.messages() {
            received.push(
                serde_json::from_str::<Delivery>(m.body().unwrap())
                    .expect("the body is a Delivery"),
            );
        }
        if received.len() >= sent.len() {
            break;
        }
    }
    let key = |m: &Delivery| serde_json::to_string(m).unwrap();
    let sent: BTreeSet<String> = sent.iter().map(key).collect();
    let received: BTreeSet<String> = received.iter().map(key).collect();
    assert_eq!(received, sent);
}

#[tokio::test]
async fn an_event_on_the_custom_bus_reaches_a_rule_target_with_its_detail() {
    let config = sdk().await;
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let bus = format!("referrals-{}", unique());
    events.create_event_bus().name(&bus).send().await.unwrap();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("claimed-{}", unique()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    events
        .put_rule()
        .event_bus_name(&bus)
        .name("claimed")
        .event_pattern(r#"{"source": ["referrals"], "detail-type": ["ReferralClaimed"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .event_bus_name(&bus)
        .rule("claimed")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let event = DomainEvent::ReferralClaimed {
        referral_id: "r-7".parse().unwrap(),
        agent_id: "a-1".parse().unwrap(),
    };
    EventBridgeBus::new(events, &bus)
        .publish(&event)
        .await
        .unwrap();

    let delivered = sqs
        .receive_message()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap();
    let messages = delivered.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let envelope: Value = serde_json::from_str(messages[0].body().unwrap()).unwrap();
    assert_eq!(envelope["source"], "referrals");
    assert_eq!(envelope["detail-type"], "ReferralClaimed");
    assert_eq!(
        envelope["detail"],
        json!({"referralId": "r-7", "agentId": "a-1"})
    );
}

#[tokio::test]
async fn a_schedule_is_created_then_replaced_then_cancelled_twice() {
    let config = sdk().await;
    let client = aws_sdk_scheduler::Client::new(&config);
    let scheduler = EventBridgeScheduler::new(
        client.clone(),
        "default",
        "arn:aws:lambda:us-east-1:123456789012:function:stage-timer",
        "arn:aws:iam::123456789012:role/scheduler-invoke",
    );
    let name = format!("coming-soon-r-1-{}", unique());
    let get = || {
        client
            .get_schedule()
            .group_name("default")
            .name(&name)
            .send()
    };

    let first: Timestamp = "2026-09-01T16:00:00Z".parse().unwrap();
    let payload = TimerPayload::ListOnDate {
        referral_id: "r-1".parse().unwrap(),
    };
    let timer = |at| Timer {
        name: name.clone(),
        at,
        payload: payload.clone(),
    };
    scheduler.start(&timer(first)).await.unwrap();
    let created = get().await.unwrap();
    assert_eq!(
        created.schedule_expression(),
        Some("at(2026-09-01T16:00:00)")
    );
    assert_eq!(created.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        created.action_after_completion(),
        Some(&aws_sdk_scheduler::types::ActionAfterCompletion::Delete)
    );
    assert_eq!(
        created.flexible_time_window().map(|w| w.mode()),
        Some(&aws_sdk_scheduler::types::FlexibleTimeWindowMode::Off)
    );
    let target = created.target().unwrap();
    assert_eq!(
        target.arn(),
        "arn:aws:lambda:us-east-1:123456789012:function:stage-timer"
    );
    assert_eq!(
        target.role_arn(),
        "arn:aws:iam::123456789012:role/scheduler-invoke"
    );
    // The timers function gets the payload and the time it was due.
    assert_eq!(
        serde_json::from_str::<TimerEvent>(target.input().unwrap()).unwrap(),
        TimerEvent {
            payload: payload.clone(),
            time: first
        }
    );

    // The list date moved: the same name again replaces the schedule.
    let moved: Timestamp = "2026-09-15T09:30:00-07:00".parse().unwrap();
    scheduler.start(&timer(moved)).await.unwrap();
    let replaced = get().await.unwrap();
    assert_eq!(
        replaced.schedule_expression(),
        Some("at(2026-09-15T16:30:00)")
    );
    assert_eq!(
        serde_json::from_str::<TimerEvent>(replaced.target().unwrap().input().unwrap())
            .unwrap()
            .time,
        moved
    );

    scheduler.stop(&name).await.unwrap();
    scheduler.stop(&name).await.unwrap();
    let gone = get().await.unwrap_err();
    assert!(
        gone.as_service_error()
            .is_some_and(|e| e.is_resource_not_found_exception()),
        "{gone:?}"
    );
}
