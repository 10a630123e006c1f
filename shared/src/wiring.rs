//! Builds the production `Services` once per process, from the environment: every SDK client and
//! adapter, and the typed configuration. A missing setting stops the function at start-up (fail
//! fast), never in the middle of a request.

use std::sync::Arc;

use crate::app::{Config, Services};
use crate::aws::{
    EventBridgeBus, EventBridgeScheduler, OnFirstUse, SnsSesNotifier, SqsBroadcastQueue,
    TWILIO_API, TwilioConfig, TwilioTelephony,
};
use crate::dynamodb::DynamoDbStore;

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

fn var(name: &'static str) -> Result<String, WiringError> {
    std::env::var(name).map_err(|_| WiringError::Missing(name))
}

/// Reads the environment the template gives every function:
/// `TABLE_NAME`, `BROADCAST_QUEUE_URL`, `EVENT_BUS_NAME`, `SCHEDULE_GROUP`,
/// `TIMERS_FUNCTION_ARN`, `SCHEDULER_ROLE_ARN`, `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`,
/// `TWILIO_FROM_NUMBER`; optionally `TWILIO_API_BASE`, `PUSH_PLATFORM_APPLICATION_ARN`, and
/// those of [`Config::from_env`].
pub async fn services_from_env() -> Result<Services, WiringError> {
    let config = Config::from_env().map_err(|e| WiringError::Invalid(e.to_string()))?;
    let sdk = crate::aws::sdk_config().await;
    // The table is used by every invocation; the other clients are built when first used.
    let store = Arc::new(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        var("TABLE_NAME")?,
    ));
    let notifier = SnsSesNotifier::new(
        OnFirstUse::new(&sdk, aws_sdk_sns::Client::new),
        OnFirstUse::new(&sdk, aws_sdk_sesv2::Client::new),
        config.sender_email.to_string(),
        std::env::var("PUSH_PLATFORM_APPLICATION_ARN").ok(),
    );
    let queue = SqsBroadcastQueue::new(
        OnFirstUse::new(&sdk, aws_sdk_sqs::Client::new),
        var("BROADCAST_QUEUE_URL")?,
    );
    let bus = EventBridgeBus::new(
        OnFirstUse::new(&sdk, aws_sdk_eventbridge::Client::new),
        var("EVENT_BUS_NAME")?,
    );
    let scheduler = EventBridgeScheduler::new(
        OnFirstUse::new(&sdk, aws_sdk_scheduler::Client::new),
        var("SCHEDULE_GROUP")?,
        var("TIMERS_FUNCTION_ARN")?,
        var("SCHEDULER_ROLE_ARN")?,
    );
    let twilio = TwilioConfig {
        base_url: std::env::var("TWILIO_API_BASE").unwrap_or_else(|_| TWILIO_API.to_owned()),
        account_sid: var("TWILIO_ACCOUNT_SID")?,
        auth_token: var("TWILIO_AUTH_TOKEN")?,
        from: var("TWILIO_FROM_NUMBER")?
            .parse()
            .map_err(|e| WiringError::Invalid(format!("TWILIO_FROM_NUMBER: {e}")))?,
    };
    let telephony = TwilioTelephony::new(crate::aws::http::client(), twilio);
    Ok(Services {
        agents: store.clone(),
        referrals: store.clone(),
        effects: store.clone(),
        lines: store.clone(),
        due: store.clone(),
        subscriptions: store.clone(),
        once: store,
        notifier: Arc::new(notifier),
        queue: Arc::new(queue),
        bus: Arc::new(bus),
        scheduler: Arc::new(scheduler),
        telephony: Arc::new(telephony),
        config: Arc::new(config),
    })
}
