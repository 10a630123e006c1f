//! Adapters for the AWS side effects and the telephony provider: the production
//! implementations of the `Notifier`, `BroadcastQueue`, `EventBus`, `Scheduler` and `Telephony`
//! ports. Each takes SDK (or HTTP) clients that `main` builds once, outside the handler, so warm
//! invocations reuse their connections. SDK failures become `SendError` in one place, [`error`].

pub mod error;
mod eventbridge_bus;
mod eventbridge_scheduler;
pub mod http;
mod mime;
mod on_first_use;
mod sns_ses_notifier;
mod sqs_broadcast_queue;
mod sqs_timer_queue;
mod twilio_telephony;

pub use eventbridge_bus::{DEFAULT_SOURCE, EventBridgeBus};
pub use eventbridge_scheduler::EventBridgeScheduler;
pub use on_first_use::OnFirstUse;
pub use sns_ses_notifier::{SnsSesNotifier, ensure_sender_identity};
pub use sqs_broadcast_queue::SqsBroadcastQueue;
pub use sqs_timer_queue::{SqsTimerQueue, delay_seconds};
pub use twilio_telephony::{TWILIO_API, TwilioConfig, TwilioTelephony};

/// The AWS configuration from the standard chain: region and credentials from the Lambda
/// environment in production; locally, `AWS_ENDPOINT_URL_<SERVICE>` and the dummy credentials
/// that `infra/local/stack.sh env` exports point every client at the emulators, with no code
/// path of its own. Requests go through the process's one HTTPS client, [`http::client`].
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http::sdk_client())
        .load()
        .await
}
