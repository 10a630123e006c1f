//! The telephony provider's stand-in: `POST /_local/twilio/2010-04-01/Accounts/{sid}/Calls.json`
//! takes an outbound call as Twilio would (form fields `To`, `From`, `Url`, `StatusCallback`),
//! from the account in the path with its auth token (HTTP Basic), records it in the outbox with
//! its call sid and answers with it; `.../Calls/{CallSid}.json` (form field `Twiml`) changes a
//! live call and is recorded as a `call_update`. Nothing is dialled. A call without the account's credentials is
//! refused (401), as Twilio refuses it, so a function without the auth token fails locally too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;

use crate::outbox::{Channel, OutboxEntry};

/// The path prefix the functions reach through `TWILIO_API_BASE`.
pub const PREFIX: &str = "/_local/twilio";

/// True for `/_local/twilio/2010-04-01/Accounts/{sid}/Calls.json`.
pub fn is_create_call(path: &str) -> bool {
    let segments: Vec<&str> = path
        .strip_prefix(PREFIX)
        .unwrap_or("")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    matches!(
        segments.as_slice(),
        ["2010-04-01", "Accounts", _, "Calls.json"]
    )
}

/// The call a `/_local/twilio/2010-04-01/Accounts/{sid}/Calls/{CallSid}.json` request changes.
pub fn updated_call(path: &str) -> Option<&str> {
    let segments: Vec<&str> = path
        .strip_prefix(PREFIX)?
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["2010-04-01", "Accounts", _, "Calls", call] => call.strip_suffix(".json"),
        _ => None,
    }
}

/// The outbox entry of a call update: the call, and the TwiML it now follows.
pub fn record_update(
    call_sid: &str,
    form: &[u8],
    at: Timestamp,
) -> Result<OutboxEntry, MissingField> {
    let twiml = form_urlencoded::parse(form)
        .find(|(k, _)| k == "Twiml")
        .map(|(_, v)| v.into_owned())
        .ok_or(MissingField("Twiml"))?;
    Ok(OutboxEntry {
        channel: Channel::CallUpdate,
        to: call_sid.to_owned(),
        from: None,
        subject: None,
        body: twiml,
        attachments: None,
        url: None,
        status_callback: None,
        call_sid: Some(call_sid.to_owned()),
        at,
    })
}

/// The local Twilio account: its SID and auth token (the template's parameters' local values).
#[derive(Debug, Clone, Default)]
pub struct Account {
    pub sid: String,
    pub auth_token: String,
}

impl Account {
    /// Whether a create-call request at `path` carries this account's credentials and names it.
    pub fn authenticates(&self, path: &str, authorization: Option<&str>) -> bool {
        let expected = STANDARD.encode(format!("{}:{}", self.sid, self.auth_token));
        let in_path = path.split('/').any(|segment| segment == self.sid);
        let credentials = authorization
            .and_then(|a| a.strip_prefix("Basic "))
            .map(str::trim);
        !self.sid.is_empty() && in_path && credentials == Some(expected.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a call needs {0}")]
pub struct MissingField(&'static str);

/// The outbox entry for a create-call form, or the field it lacks (Twilio answers 400 too).
pub fn record_call(form: &[u8], at: Timestamp) -> Result<OutboxEntry, MissingField> {
    let field = |name: &str| {
        form_urlencoded::parse(form)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    let to = field("To").ok_or(MissingField("To"))?;
    let url = field("Url").ok_or(MissingField("Url"))?;
    Ok(OutboxEntry {
        channel: Channel::Call,
        body: format!("call from {}", field("From").unwrap_or_default()),
        to,
        from: field("From"),
        subject: None,
        attachments: None,
        url: Some(url),
        status_callback: field("StatusCallback"),
        call_sid: Some(call_sid()),
        at,
    })
}

/// A Twilio-shaped call sid: `CA` and 32 hex digits.
pub fn call_sid() -> String {
    format!("CA{:032x}", ulid::Ulid::new().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_create_call_path_is_served() {
        assert!(is_create_call(
            "/_local/twilio/2010-04-01/Accounts/AC123/Calls.json"
        ));
        assert!(!is_create_call(
            "/_local/twilio/2010-04-01/Accounts/AC123/Messages.json"
        ));
        assert!(!is_create_call("/twilio/sms"));
    }

    #[test]
    fn wt_10_a_call_update_is_recorded_with_its_call_and_twiml() {
        let path = "/_local/twilio/2010-04-01/Accounts/AC1/Calls/CA123.json";
        assert_eq!(updated_call(path), Some("CA123"));
        assert_eq!(
            updated_call("/_local/twilio/2010-04-01/Accounts/AC1/Calls.json"),
            None
        );
        let at: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let entry = record_update(
            "CA123",
            b"Twiml=%3CResponse%3E%3CHangup%2F%3E%3C%2FResponse%3E",
            at,
        )
        .unwrap();
        assert_eq!(entry.channel, Channel::CallUpdate);
        assert_eq!(entry.to, "CA123");
        assert_eq!(entry.body, "<Response><Hangup/></Response>");
        assert!(record_update("CA123", b"", at).is_err());
    }

    #[test]
    fn calls_need_the_accounts_credentials() {
        let account = Account {
            sid: "AC1".into(),
            auth_token: "t0k3n".into(),
        };
        let path = "/_local/twilio/2010-04-01/Accounts/AC1/Calls.json";
        let basic = format!("Basic {}", STANDARD.encode("AC1:t0k3n"));
        assert!(account.authenticates(path, Some(&basic)));
        let empty = format!("Basic {}", STANDARD.encode("AC1:"));
        assert!(!account.authenticates(path, Some(&empty)));
        assert!(!account.authenticates(path, None));
        let other = "/_local/twilio/2010-04-01/Accounts/AC2/Calls.json";
        assert!(!account.authenticates(other, Some(&basic)));
    }

    #[test]
    fn a_call_form_becomes_an_outbox_entry() {
        let at: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let form = b"To=%2B14155550101&From=%2B14155550000&Url=http%3A%2F%2F127.0.0.1%3A3000%2Ftwilio%2Fvoice%2Fclaim%3Freferral%3Dr1&StatusCallback=http%3A%2F%2F127.0.0.1%3A3000%2Ftwilio%2Fvoice%2Fstatus";
        let entry = record_call(form, at).unwrap();
        assert_eq!(entry.channel, Channel::Call);
        assert_eq!(entry.to, "+14155550101");
        assert_eq!(
            entry.url.as_deref(),
            Some("http://127.0.0.1:3000/twilio/voice/claim?referral=r1")
        );
        assert_eq!(
            entry.status_callback.as_deref(),
            Some("http://127.0.0.1:3000/twilio/voice/status")
        );
        assert_eq!(record_call(b"From=x", at), Err(MissingField("To")));
        assert!(call_sid().starts_with("CA") && call_sid().len() == 34);
    }
}
