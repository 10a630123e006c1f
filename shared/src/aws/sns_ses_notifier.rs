//! The notifier on AWS: SMS and app push through SNS, email through SESv2.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::aws::OnFirstUse;
use async_trait::async_trait;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message, RawMessage};
use aws_sdk_sns::error::SdkError;
use aws_sdk_sns::operation::publish::PublishError;
use aws_sdk_sns::types::MessageAttributeValue;
use jiff::Timestamp;
use serde_json::json;

use super::error::send_error;
use super::mime;
use crate::domain::values::Phone;
use crate::ports::{EmailMessage, Notifier, SendError};

/// Marks an SMS as transactional: AWS then routes it for reliable delivery (it may cost more)
/// instead of the cheapest route, which is what a time-critical referral offer needs.
const SMS_TYPE: &str = "AWS.SNS.SMS.SMSType";
/// The number a text is sent from: without it AWS picks one, and replies go nowhere we read.
const ORIGINATION_NUMBER: &str = "AWS.MM.SMS.OriginationNumber";

/// Sends SMS and push through SNS and email through SESv2.
#[derive(Debug, Clone)]
pub struct SnsSesNotifier {
    sns: OnFirstUse<aws_sdk_sns::Client>,
    ses: OnFirstUse<aws_sdk_sesv2::Client>,
    sender: String,
    platform_application_arn: Option<String>,
    /// The service's own number texts go out from, so replies come back to it (TX-1).
    sms_from: Phone,
    /// The endpoint each device token was given, for this instance's life: a push then costs
    /// one request, not two.
    endpoints: Arc<Mutex<HashMap<String, String>>>,
}

impl SnsSesNotifier {
    /// `sender` is the verified SES identity emails come from, with or without a display name
    /// (`Referrals <noreply@example.com>`). `platform_application_arn` is the SNS platform
    /// application (FCM or APNs) under which raw device tokens get their endpoints; with `None`,
    /// only agents whose stored token is already an endpoint ARN can receive push. `sms_from` is
    /// the origination number (End User Messaging's, two-way enabled) texts are sent from.
    pub fn new(
        sns: impl Into<OnFirstUse<aws_sdk_sns::Client>>,
        ses: impl Into<OnFirstUse<aws_sdk_sesv2::Client>>,
        sender: impl Into<String>,
        platform_application_arn: Option<String>,
        sms_from: Phone,
    ) -> Self {
        Self {
            sns: sns.into(),
            ses: ses.into(),
            sender: sender.into(),
            platform_application_arn,
            sms_from,
            endpoints: Arc::default(),
        }
    }

    /// The SNS endpoint to publish to for a stored push token. Apps may have stored the endpoint
    /// ARN itself, or just the device token; for a token, `CreatePlatformEndpoint` returns the
    /// existing endpoint when one has the same token, so asking again is safe. The answer is
    /// kept (`endpoints`); an endpoint deleted or disabled behind our back is asked for again
    /// when a publish to it is refused (`push`).
    async fn endpoint_arn(&self, device_token: &str) -> Result<String, SendError> {
        if device_token.starts_with("arn:") {
            return Ok(device_token.to_owned());
        }
        let Some(application) = &self.platform_application_arn else {
            return Err(SendError::Rejected(
                "push token is a raw device token and no SNS platform application is configured"
                    .into(),
            ));
        };
        let created = self
            .sns
            .get()
            .create_platform_endpoint()
            .platform_application_arn(application)
            .token(device_token)
            .send()
            .await
            .map_err(|e| send_error("SNS CreatePlatformEndpoint", e))?;
        created.endpoint_arn.ok_or_else(|| {
            SendError::Rejected("SNS CreatePlatformEndpoint returned no endpoint ARN".into())
        })
    }

    async fn simple_email(&self, message: &EmailMessage) -> Result<(), SendError> {
        let text = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError::Rejected(format!("email content: {e}")))
        };
        let content = EmailContent::builder()
            .simple(
                Message::builder()
                    .subject(text(&message.subject)?)
                    .body(Body::builder().text(text(&message.body)?).build())
                    .build(),
            )
            .build();
        let destination = Destination::builder()
            .to_addresses(message.to.as_str())
            .set_cc_addresses(cc(message))
            .build();
        self.ses
            .get()
            .send_email()
            .from_email_address(&self.sender)
            .destination(destination)
            .content(content)
            .send()
            .await
            .map_err(|e| send_error("SESv2 SendEmail", e))?;
        Ok(())
    }

    /// With attachments the message is raw MIME, and its To and Cc headers are the recipients:
    /// passing a Destination as well would make some receivers list each address twice.
    async fn raw_email(&self, message: &EmailMessage) -> Result<(), SendError> {
        let boundary = format!("=_referrals_{}", ulid::Ulid::new());
        let date = Timestamp::now().strftime("%a, %d %b %Y %H:%M:%S +0000");
        let raw = mime::multipart_mixed(&self.sender, message, &boundary, &date.to_string());
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| SendError::Rejected(format!("raw email: {e}")))?;
        self.ses
            .get()
            .send_email()
            .from_email_address(&self.sender)
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(|e| send_error("SESv2 SendEmail", e))?;
        Ok(())
    }
}

fn cc(message: &EmailMessage) -> Option<Vec<String>> {
    (!message.cc.is_empty()).then(|| message.cc.iter().map(|e| e.as_str().to_owned()).collect())
}

/// The SNS `MessageStructure=json` envelope: one payload per push service, so FCM and APNs each
/// show a title and body, and `default` for any other platform.
impl SnsSesNotifier {
    fn kept_endpoint(&self, device_token: &str) -> Option<String> {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(device_token)
            .cloned()
    }

    fn keep_endpoint(&self, device_token: &str, endpoint: String) {
        if endpoint != device_token {
            self.endpoints
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(device_token.to_owned(), endpoint);
        }
    }

    fn forget_endpoint(&self, device_token: &str) {
        self.endpoints
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_token);
    }
}

/// Whether SNS refused a publish for its endpoint: disabled, or deleted (AWS answers
/// `InvalidParameter`, "No endpoint found for the target arn specified"; moto `NotFound`). A
/// refused publish sent nothing, so asking for the token's endpoint again and publishing once
/// more sends nothing twice.
fn endpoint_gone<R>(e: &SdkError<PublishError, R>) -> bool {
    e.as_service_error().is_some_and(|e| {
        e.is_endpoint_disabled_exception()
            || e.is_not_found_exception()
            || e.is_invalid_parameter_exception()
    })
}

fn push_envelope(title: &str, body: &str) -> String {
    let apns = json!({ "aps": { "alert": { "title": title, "body": body }, "sound": "default" } })
        .to_string();
    let fcm = json!({ "notification": { "title": title, "body": body } }).to_string();
    json!({
        "default": body,
        "GCM": fcm,
        "APNS": apns,
        "APNS_SANDBOX": apns,
    })
    .to_string()
}

#[async_trait]
impl Notifier for SnsSesNotifier {
    #[tracing::instrument(skip_all, fields(channel = "sms"))]
    async fn sms(&self, to: &Phone, body: &str) -> Result<(), SendError> {
        let transactional = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|e| SendError::Rejected(format!("SMS attributes: {e}")))?;
        let from = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(self.sms_from.as_str())
            .build()
            .map_err(|e| SendError::Rejected(format!("SMS attributes: {e}")))?;
        self.sns
            .get()
            .publish()
            .phone_number(to.as_str())
            .message(body)
            .message_attributes(SMS_TYPE, transactional)
            .message_attributes(ORIGINATION_NUMBER, from)
            .send()
            .await
            .map_err(|e| send_error("SNS Publish (SMS)", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(channel = "opt_in"))]
    async fn opt_in(&self, to: &Phone) -> Result<(), SendError> {
        self.sns
            .get()
            .opt_in_phone_number()
            .phone_number(to.as_str())
            .send()
            .await
            .map_err(|e| send_error("SNS OptInPhoneNumber", e))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(channel = "push"))]
    async fn push(&self, device_token: &str, title: &str, body: &str) -> Result<(), SendError> {
        let kept = self.kept_endpoint(device_token);
        let endpoint = match &kept {
            Some(endpoint) => endpoint.clone(),
            None => self.endpoint_arn(device_token).await?,
        };
        let publish = |endpoint: String| {
            self.sns
                .get()
                .publish()
                .target_arn(endpoint)
                .message_structure("json")
                .message(push_envelope(title, body))
                .send()
        };
        let published = match publish(endpoint.clone()).await {
            // The kept endpoint is gone or disabled: the token's endpoint as SNS has it now.
            Err(e) if kept.is_some() && endpoint_gone(&e) => {
                self.forget_endpoint(device_token);
                let endpoint = self.endpoint_arn(device_token).await?;
                let published = publish(endpoint.clone()).await;
                (published, endpoint)
            }
            published => (published, endpoint),
        };
        match published {
            (Ok(_), endpoint) => {
                self.keep_endpoint(device_token, endpoint);
                Ok(())
            }
            (Err(e), _) => Err(send_error("SNS Publish (push)", e)),
        }
    }

    #[tracing::instrument(skip_all, fields(channel = "email", attachments = message.attachments.len()))]
    async fn email(&self, message: &EmailMessage) -> Result<(), SendError> {
        if message.attachments.is_empty() {
            self.simple_email(message).await
        } else {
            self.raw_email(message).await
        }
    }
}

/// Makes `email` (an address, or a whole domain) a verified SESv2 sender identity, for the local
/// stack and tests: moto refuses to send from unverified senders, as SES does, and on real AWS
/// verification is done once when the account is set up, not by the functions. An identity
/// that already exists is fine.
pub async fn ensure_sender_identity(
    client: &aws_sdk_sesv2::Client,
    email: &str,
) -> Result<(), SendError> {
    match client
        .create_email_identity()
        .email_identity(email)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_already_exists_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(send_error("SESv2 CreateEmailIdentity", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_envelope_carries_title_and_body_for_each_platform() {
        let envelope: serde_json::Value =
            serde_json::from_str(&push_envelope("New \"lead\"", "94110 buyer")).unwrap();
        assert_eq!(envelope["default"], "94110 buyer");
        let fcm: serde_json::Value =
            serde_json::from_str(envelope["GCM"].as_str().unwrap()).unwrap();
        assert_eq!(fcm["notification"]["title"], "New \"lead\"");
        let apns: serde_json::Value =
            serde_json::from_str(envelope["APNS"].as_str().unwrap()).unwrap();
        assert_eq!(apns["aps"]["alert"]["body"], "94110 buyer");
        assert_eq!(envelope["APNS"], envelope["APNS_SANDBOX"]);
    }
}
