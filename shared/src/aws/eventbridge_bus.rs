//! The domain event bus on EventBridge.

use crate::aws::OnFirstUse;
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::error::{entry_error, send_error};
use crate::ports::{DomainEvent, EventBus, SendError};

/// The `source` of every event this service puts, unless configured otherwise.
pub const DEFAULT_SOURCE: &str = "referrals";

/// Publishes domain events on one EventBridge bus.
#[derive(Debug, Clone)]
pub struct EventBridgeBus {
    client: OnFirstUse<aws_sdk_eventbridge::Client>,
    bus_name: String,
    source: String,
}

impl EventBridgeBus {
    /// `bus_name` is the project's bus (name or ARN). Events carry [`DEFAULT_SOURCE`] as their
    /// source; rules in the template match on it.
    pub fn new(
        client: impl Into<OnFirstUse<aws_sdk_eventbridge::Client>>,
        bus_name: impl Into<String>,
    ) -> Self {
        Self {
            client: client.into(),
            bus_name: bus_name.into(),
            source: DEFAULT_SOURCE.to_owned(),
        }
    }

    /// The same bus with another `source`, for a deployment whose rules expect one.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }
}

/// The event's `detail` object: what rules match on and targets receive, without the
/// `detailType` tag, which EventBridge carries in its own `detail-type` field.
fn detail_json(event: &DomainEvent) -> Result<String, SendError> {
    let tagged = serde_json::to_value(event)
        .map_err(|e| SendError::Rejected(format!("domain event as JSON: {e}")))?;
    let detail = match tagged {
        serde_json::Value::Object(mut fields) => fields.remove("detail"),
        _ => None,
    };
    // EventBridge requires an object, even for an event with no fields.
    Ok(detail.unwrap_or_else(|| serde_json::json!({})).to_string())
}

#[async_trait]
impl EventBus for EventBridgeBus {
    #[tracing::instrument(skip_all, fields(detail_type = event.detail_type()))]
    async fn publish(&self, event: &DomainEvent) -> Result<(), SendError> {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus_name)
            .source(&self.source)
            .detail_type(event.detail_type())
            .detail(detail_json(event)?)
            .build();
        let put = self
            .client
            .get()
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| send_error("EventBridge PutEvents", e))?;
        if put.failed_entry_count > 0 {
            let failed = put.entries().iter().find(|e| e.error_code.is_some());
            return Err(entry_error(
                "EventBridge PutEvents",
                failed.and_then(|e| e.error_code.as_deref()),
                failed.and_then(|e| e.error_message.as_deref()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detail_is_the_event_without_its_tag() {
        let event = DomainEvent::WarmTransferCompleted {
            referral_id: "r-1".parse().unwrap(),
        };
        assert_eq!(detail_json(&event).unwrap(), r#"{"referralId":"r-1"}"#);
    }
}
