//! Builds what a function needs once per process, from its environment: the store, the settings
//! its use cases read, and the outside services it reaches. Each function asks for its own parts
//! and the template gives it exactly those settings; a part asked for without its setting stops
//! the function at start-up (fail fast), never in the middle of a request. No setting has a
//! default here: a deployment that forgot one must not run on a development value.

use std::sync::Arc;

use aws_config::SdkConfig;

use crate::app::broadcast::Senders;
use crate::app::outbox::Relay;
use crate::app::{Config, Services};
use crate::aws::{
    EventBridgeBus, EventBridgeScheduler, OnFirstUse, SnsSesNotifier, SqsBroadcastQueue,
    SqsTimerQueue, TWILIO_API, TwilioConfig, TwilioTelephony,
};
use crate::domain::billing::PriceTable;
use crate::domain::contact::ContactSecret;
use crate::dynamodb::DynamoDbStore;
use crate::twilio::{SignatureValidator, Webhooks};

#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
}

/// A product setting a function's use cases may read, each from one environment variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// `PPL_PRICES`: the pay-per-lead price table, as JSON.
    Prices,
    /// `CLOSINGS_EMAIL`.
    ClosingsEmail,
    /// `ADVISOR_EMAIL`.
    AdvisorEmail,
    /// `WARM_TRANSFER_TIMEOUT_SECONDS`: a whole number of seconds.
    WarmTransferTimeout,
    /// `PUBLIC_BASE_URL`: the API as the telephony provider requests it.
    PublicBaseUrl,
    /// `PIN_LINE_NUMBER`.
    PinLine,
    /// `WARM_TRANSFER_LINE_NUMBER`.
    WarmTransferLine,
    /// `APP_BASE_URL`.
    AppBaseUrl,
    /// `RATE_LIMIT_PER_MINUTE`: requests one caller may make in a minute (TX-5).
    RateLimit,
    /// `CONTACT_KEY_SECRET`: at least 32 characters; keys the index of clients' contacts (RC-4).
    ContactKeySecret,
}

impl Setting {
    pub fn variable(self) -> &'static str {
        match self {
            Setting::Prices => "PPL_PRICES",
            Setting::ClosingsEmail => "CLOSINGS_EMAIL",
            Setting::AdvisorEmail => "ADVISOR_EMAIL",
            Setting::WarmTransferTimeout => "WARM_TRANSFER_TIMEOUT_SECONDS",
            Setting::PublicBaseUrl => "PUBLIC_BASE_URL",
            Setting::PinLine => "PIN_LINE_NUMBER",
            Setting::WarmTransferLine => "WARM_TRANSFER_LINE_NUMBER",
            Setting::AppBaseUrl => "APP_BASE_URL",
            Setting::RateLimit => "RATE_LIMIT_PER_MINUTE",
            Setting::ContactKeySecret => "CONTACT_KEY_SECRET",
        }
    }
}

fn var(name: &'static str) -> Result<String, WiringError> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .ok_or(WiringError::Missing(name))
}

fn parsed<T: std::str::FromStr>(name: &'static str, text: &str) -> Result<T, WiringError>
where
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e: T::Err| WiringError::Invalid(name, e.to_string()))
}

/// The settings `wanted`, read through `read` (the environment, or a test's map); the others
/// are left out, so a use case reading one fails naming it.
pub fn config_from(
    wanted: &[Setting],
    read: impl Fn(&'static str) -> Result<String, WiringError>,
) -> Result<Config, WiringError> {
    let mut config = Config::default();
    for &setting in wanted {
        let name = setting.variable();
        let text = read(name)?;
        match setting {
            Setting::Prices => {
                config.prices = Some(
                    PriceTable::from_json(&text)
                        .map_err(|e| WiringError::Invalid(name, e.to_string()))?,
                )
            }
            Setting::ClosingsEmail => config.closings_email = Some(parsed(name, &text)?),
            Setting::AdvisorEmail => config.advisor_email = Some(parsed(name, &text)?),
            Setting::WarmTransferTimeout => {
                let seconds: i64 = parsed(name, &text)?;
                if seconds <= 0 {
                    return Err(WiringError::Invalid(name, "must be positive".into()));
                }
                config.warm_transfer_timeout = Some(jiff::SignedDuration::from_secs(seconds));
            }
            Setting::PublicBaseUrl => config.public_base_url = Some(url(name, text)?),
            Setting::PinLine => config.pin_line = Some(parsed(name, &text)?),
            Setting::WarmTransferLine => config.warm_transfer_line = Some(parsed(name, &text)?),
            Setting::AppBaseUrl => config.app_base_url = Some(url(name, text)?),
            Setting::RateLimit => {
                let limit: u32 = parsed(name, &text)?;
                if limit == 0 {
                    return Err(WiringError::Invalid(name, "must be positive".into()));
                }
                config.rate_limit_per_minute = Some(limit);
            }
            Setting::ContactKeySecret => {
                config.contact_secret = Some(ContactSecret::new(text.trim()).ok_or_else(|| {
                    WiringError::Invalid(name, "must be at least 32 characters".into())
                })?)
            }
        }
    }
    Ok(config)
}

fn url(name: &'static str, text: String) -> Result<String, WiringError> {
    if text.starts_with("https://") || text.starts_with("http://") {
        Ok(text.trim_end_matches('/').to_owned())
    } else {
        Err(WiringError::Invalid(name, "must be an http(s) URL".into()))
    }
}

/// The AWS configuration, loaded once per process.
pub async fn sdk() -> SdkConfig {
    crate::aws::sdk_config().await
}

/// The store (`TABLE_NAME`) and the settings `wanted`, from the environment.
pub fn services(sdk: &SdkConfig, wanted: &[Setting]) -> Result<Services, WiringError> {
    let config = config_from(wanted, var)?;
    let store = Arc::new(DynamoDbStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        var("TABLE_NAME")?,
    ));
    Ok(Services {
        agents: store.clone(),
        referrals: store.clone(),
        effects: store.clone(),
        lines: store.clone(),
        due: store.clone(),
        subscriptions: store.clone(),
        once: store.clone(),
        requests: store,
        config: Arc::new(config),
    })
}

/// Where the outbox function forwards effects: `BROADCAST_QUEUE_URL`, `EVENT_BUS_NAME`, for
/// short timers `TIMER_QUEUE_URL`, and for the others `SCHEDULE_GROUP`, `TIMERS_FUNCTION_ARN`
/// and `SCHEDULER_ROLE_ARN`. The clients are built when first used: most stream batches reach
/// only one of them.
pub fn relay(sdk: &SdkConfig) -> Result<Relay, WiringError> {
    let sqs = OnFirstUse::new(sdk, aws_sdk_sqs::Client::new);
    let queue = SqsBroadcastQueue::new(sqs.clone(), var("BROADCAST_QUEUE_URL")?);
    let timers = SqsTimerQueue::new(sqs, var("TIMER_QUEUE_URL")?);
    let bus = EventBridgeBus::new(
        OnFirstUse::new(sdk, aws_sdk_eventbridge::Client::new),
        var("EVENT_BUS_NAME")?,
    );
    let scheduler = EventBridgeScheduler::new(
        OnFirstUse::new(sdk, aws_sdk_scheduler::Client::new),
        var("SCHEDULE_GROUP")?,
        var("TIMERS_FUNCTION_ARN")?,
        var("SCHEDULER_ROLE_ARN")?,
    );
    Ok(Relay {
        queue: Arc::new(queue),
        bus: Arc::new(bus),
        scheduler: Arc::new(scheduler),
        timers: Arc::new(timers),
    })
}

/// What the broadcast function sends through: SNS and SES (`SENDER_EMAIL`, and
/// `PUSH_PLATFORM_APPLICATION_ARN` where app pushes are set up) and Twilio
/// (`TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN`, `TWILIO_FROM_NUMBER`; `TWILIO_API_BASE` points
/// it at a stand-in).
pub fn senders(sdk: &SdkConfig) -> Result<Senders, WiringError> {
    let sender: crate::domain::values::Email = parsed("SENDER_EMAIL", &var("SENDER_EMAIL")?)?;
    let notifier = SnsSesNotifier::new(
        OnFirstUse::new(sdk, aws_sdk_sns::Client::new),
        OnFirstUse::new(sdk, aws_sdk_sesv2::Client::new),
        sender.to_string(),
        std::env::var("PUSH_PLATFORM_APPLICATION_ARN")
            .ok()
            .filter(|arn| !arn.is_empty()),
        parsed("SMS_ORIGINATION_NUMBER", &var("SMS_ORIGINATION_NUMBER")?)?,
    );
    let twilio = TwilioConfig {
        base_url: std::env::var("TWILIO_API_BASE").unwrap_or_else(|_| TWILIO_API.to_owned()),
        account_sid: var("TWILIO_ACCOUNT_SID")?,
        auth_token: var("TWILIO_AUTH_TOKEN")?,
        from: parsed("TWILIO_FROM_NUMBER", &var("TWILIO_FROM_NUMBER")?)?,
    };
    Ok(Senders {
        notifier: Arc::new(notifier),
        telephony: Arc::new(TwilioTelephony::new(crate::aws::http::client(), twilio)),
    })
}

/// How the claim function checks Twilio's webhooks: `TWILIO_AUTH_TOKEN` and `PUBLIC_BASE_URL`.
pub fn webhooks() -> Result<Webhooks, WiringError> {
    Ok(Webhooks {
        validator: SignatureValidator::new(var("TWILIO_AUTH_TOKEN")?),
        public_base_url: url("PUBLIC_BASE_URL", var("PUBLIC_BASE_URL")?)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Result<String, WiringError> {
        let map: HashMap<&'static str, String> =
            pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        move |name| map.get(name).cloned().ok_or(WiringError::Missing(name))
    }

    #[test]
    fn a_function_gets_only_the_settings_it_asks_for() {
        let config = config_from(
            &[Setting::AppBaseUrl, Setting::WarmTransferTimeout],
            env(&[
                ("APP_BASE_URL", "https://app.example.com/"),
                ("WARM_TRANSFER_TIMEOUT_SECONDS", "120"),
                ("ADVISOR_EMAIL", "a@example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(
            config.app_link(&"r1".parse().unwrap()).unwrap(),
            "https://app.example.com/referrals/r1"
        );
        assert_eq!(
            config.warm_transfer_timeout().unwrap(),
            jiff::SignedDuration::from_secs(120)
        );
        // Present in the environment but not asked for: not read, and named when used.
        let e = config.advisor_email().unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(e.to_string().contains("ADVISOR_EMAIL"), "{e}");
    }

    #[test]
    fn a_missing_setting_stops_the_function_at_start_up() {
        let e = config_from(&[Setting::PinLine], env(&[])).unwrap_err();
        assert!(matches!(e, WiringError::Missing("PIN_LINE_NUMBER")), "{e}");
    }

    #[test]
    fn an_invalid_setting_stops_the_function_at_start_up() {
        for (setting, value) in [
            (Setting::WarmTransferTimeout, "0"),
            (Setting::WarmTransferTimeout, "ninety"),
            (Setting::RateLimit, "0"),
            (Setting::Prices, "{\"default\": {}}"),
            (Setting::PinLine, "555"),
            (Setting::ClosingsEmail, "closings"),
            (Setting::PublicBaseUrl, "api.example.com"),
            (Setting::ContactKeySecret, "too-short"),
        ] {
            let e = config_from(&[setting], env(&[(setting.variable(), value)])).unwrap_err();
            assert!(
                matches!(e, WiringError::Invalid(name, _) if name == setting.variable()),
                "{setting:?} = {value}: {e}"
            );
        }
    }
}
