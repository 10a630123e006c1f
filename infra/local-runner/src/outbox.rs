//! Everything the system has sent: SMS, push and email as moto recorded them (read from its
//! `/moto-api/data.json`), and the outbound calls the telephony stand-in took.
//!
//! moto's records carry no time, so an entry's `at` is the local clock when the runner first saw
//! it; entries are kept in that order, which never changes once seen.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jiff::Timestamp;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxEntry {
    pub channel: Channel,
    pub to: String,
    /// The number a text went out from (`AWS.MM.SMS.OriginationNumber`), as the function set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    /// An outbound call's id, as the provider answered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_sid: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Sms,
    Push,
    Email,
    Call,
    /// A change made to a live call (moved into a conference, taken out of one): `to` is the
    /// call's id, `body` the TwiML it was given.
    #[serde(rename = "call_update")]
    CallUpdate,
}

/// One message found in moto's records, with a key that identifies it across reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub key: String,
    pub channel: Channel,
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub attachments: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
struct MotoData {
    #[serde(default)]
    sns: SnsData,
    #[serde(default)]
    ses: SesData,
}

#[derive(Debug, Default, Deserialize)]
struct SnsData {
    #[serde(default, rename = "SMS")]
    sms: Vec<MotoSms>,
    #[serde(default, rename = "PlatformEndpoint")]
    endpoints: Vec<MotoEndpoint>,
}

#[derive(Debug, Deserialize)]
struct MotoSms {
    message: String,
    message_id: String,
    phone_number: String,
}

#[derive(Debug, Deserialize)]
struct MotoEndpoint {
    arn: String,
    token: String,
    #[serde(default)]
    messages: InOrder,
}

/// A JSON object's entries in document order (moto's dicts keep the order messages were
/// published in; serde_json's own map would sort the random message ids).
#[derive(Debug, Default)]
struct InOrder(Vec<(String, String)>);

impl<'de> Deserialize<'de> for InOrder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = InOrder;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of message id to message")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InOrder, A::Error> {
                let mut entries = vec![];
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(InOrder(entries))
            }
        }
        d.deserialize_map(Entries)
    }
}

#[derive(Debug, Default, Deserialize)]
struct SesData {
    #[serde(default, rename = "Message")]
    simple: Vec<MotoEmail>,
    #[serde(default, rename = "RawMessage")]
    raw: Vec<MotoRawEmail>,
}

#[derive(Debug, Deserialize)]
struct MotoEmail {
    id: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    destinations: Destinations,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Destinations {
    #[serde(default)]
    to_addresses: Vec<String>,
    #[serde(default)]
    cc_addresses: Vec<String>,
    #[serde(default)]
    bcc_addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct MotoRawEmail {
    id: String,
    #[serde(default)]
    destinations: Vec<String>,
    raw_data: String,
}

/// Distinct, in first-seen order (moto lists a raw email's recipient twice).
fn distinct(addresses: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    addresses
        .into_iter()
        .filter(|a| seen.insert(a.clone()))
        .collect()
}

/// The push text an app would show: the envelope's `default`, or the message as published.
fn push_text(message: &str) -> String {
    serde_json::from_str::<serde_json::Value>(message)
        .ok()
        .and_then(|v| v.get("default").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_else(|| message.to_owned())
}

/// Every SMS, push and email in a `data.json` document, in moto's order per kind. Email to several
/// recipients gives one entry per recipient, so each agent's mail can be found by address.
pub fn parse_moto(json: &str) -> Result<Vec<Sent>, serde_json::Error> {
    let data: MotoData = serde_json::from_str(json)?;
    let mut sent = vec![];
    for sms in data.sns.sms {
        sent.push(Sent {
            key: format!("sms:{}", sms.message_id),
            channel: Channel::Sms,
            to: sms.phone_number,
            subject: None,
            body: sms.message,
            attachments: None,
        });
    }
    for endpoint in data.sns.endpoints {
        for (id, message) in endpoint.messages.0 {
            sent.push(Sent {
                key: format!("push:{}:{id}", endpoint.arn),
                channel: Channel::Push,
                to: endpoint.token.clone(),
                subject: None,
                body: push_text(&message),
                attachments: None,
            });
        }
    }
    for email in data.ses.simple {
        let d = email.destinations;
        for to in distinct(
            d.to_addresses
                .into_iter()
                .chain(d.cc_addresses)
                .chain(d.bcc_addresses),
        ) {
            sent.push(Sent {
                key: format!("email:{}:{to}", email.id),
                channel: Channel::Email,
                to,
                subject: Some(email.subject.clone()),
                body: email.body.clone(),
                attachments: None,
            });
        }
    }
    for email in data.ses.raw {
        let mime = parse_mime(&email.raw_data);
        for to in distinct(email.destinations) {
            sent.push(Sent {
                key: format!("email:{}:{to}", email.id),
                channel: Channel::Email,
                to,
                subject: Some(mime.subject.clone()),
                body: mime.text.clone(),
                attachments: Some(mime.attachments.clone()),
            });
        }
    }
    Ok(sent)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Mime {
    pub subject: String,
    pub text: String,
    pub attachments: Vec<String>,
}

/// Splits a header block from its body and returns the headers (names lower case, folded lines
/// joined).
fn split_headers(part: &str) -> (Vec<(String, String)>, &str) {
    let part = part.trim_start_matches(['\r', '\n']);
    let (head, body) = part
        .split_once("\r\n\r\n")
        .or_else(|| part.split_once("\n\n"))
        .unwrap_or((part, ""));
    let mut headers: Vec<(String, String)> = vec![];
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A parameter of a structured header: `boundary="x"`, `filename=a.pdf`, `filename*=UTF-8''a%20b`.
fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        let v = v.trim().trim_matches('"');
        if k.eq_ignore_ascii_case(name) {
            Some(v.replace("\\\"", "\"").replace("\\\\", "\\"))
        } else if k.eq_ignore_ascii_case(&format!("{name}*")) {
            let encoded = v.split_once("''").map_or(v, |(_, e)| e);
            Some(percent_decode(encoded))
        } else {
            None
        }
    })
}

/// `%XX` sequences decoded. form_urlencoded decodes a field with no `=` whole; `+`, `&` and `=`
/// mean themselves in a MIME parameter, so they are escaped first.
fn percent_decode(text: &str) -> String {
    let escaped = text
        .replace('+', "%2B")
        .replace('&', "%26")
        .replace('=', "%3D");
    form_urlencoded::parse(escaped.as_bytes())
        .next()
        .map(|(field, _)| field.into_owned())
        .unwrap_or_default()
}

/// `=?UTF-8?B?...?=` encoded words (the only kind the service writes) decoded; other text as is.
fn decode_words(text: &str) -> String {
    text.split_whitespace()
        .map(|word| {
            word.strip_prefix("=?")
                .and_then(|w| w.strip_suffix("?="))
                .and_then(|w| {
                    let mut parts = w.splitn(3, '?');
                    let (_charset, encoding, data) = (parts.next()?, parts.next()?, parts.next()?);
                    if !encoding.eq_ignore_ascii_case("b") {
                        return None;
                    }
                    STANDARD
                        .decode(data)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
                .unwrap_or_else(|| word.to_owned())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn decode_body(headers: &[(String, String)], body: &str) -> String {
    match header(headers, "content-transfer-encoding") {
        Some(e) if e.eq_ignore_ascii_case("base64") => {
            let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(compact)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
        _ => body.trim_end().to_owned(),
    }
}

/// The subject, the text body and the attachment file names of a raw MIME message.
pub fn parse_mime(raw: &str) -> Mime {
    let (headers, body) = split_headers(raw);
    let mut mime = Mime {
        subject: header(&headers, "subject")
            .map(decode_words)
            .unwrap_or_default(),
        ..Mime::default()
    };
    let content_type = header(&headers, "content-type").unwrap_or("text/plain");
    let Some(boundary) = param(content_type, "boundary") else {
        mime.text = decode_body(&headers, body);
        return mime;
    };
    let delimiter = format!("--{boundary}");
    for part in body.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let (part_headers, part_body) = split_headers(part);
        let disposition = header(&part_headers, "content-disposition").unwrap_or("");
        let part_type = header(&part_headers, "content-type").unwrap_or("text/plain");
        if disposition.to_ascii_lowercase().starts_with("attachment") {
            mime.attachments.push(
                param(disposition, "filename")
                    .or_else(|| param(part_type, "name"))
                    .unwrap_or_default(),
            );
        } else if part_type.to_ascii_lowercase().starts_with("text/plain") && mime.text.is_empty() {
            mime.text = decode_body(&part_headers, part_body);
        }
    }
    mime
}

/// The origination number of each text the functions published, by SNS message id: moto keeps
/// no message attributes for SMS, so the permission check, which sees each request and its
/// answer, records it here.
#[derive(Debug, Default)]
pub struct TextOrigins(Mutex<std::collections::HashMap<String, String>>);

impl TextOrigins {
    pub fn record(&self, message_id: String, from: String) {
        self.0
            .lock()
            .expect("origins lock")
            .insert(message_id, from);
    }

    fn of(&self, message_id: &str) -> Option<String> {
        self.0
            .lock()
            .expect("origins lock")
            .get(message_id)
            .cloned()
    }
}

/// Whether a function may have sent something since the outbox last read moto: marked by the
/// permission check as it forwards an SNS or SES request. moto's dump is its whole state, which
/// grows with every runner on the same emulator (a full `make test` makes it megabytes), so the
/// reads after each invocation are skipped when nothing could have been sent.
#[derive(Debug, Default)]
pub struct Sends(AtomicBool);

impl Sends {
    pub fn mark(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// Marks `Sends` again when dropped still holding it.
struct Unread<'a>(Option<&'a Sends>);

impl Drop for Unread<'_> {
    fn drop(&mut self) {
        if let Some(sends) = self.0 {
            sends.mark();
        }
    }
}

/// The outbox: what was sent, in the order the runner first saw it.
#[derive(Debug, Default)]
pub struct Outbox {
    state: Mutex<OutboxState>,
    origins: std::sync::Arc<TextOrigins>,
    sends: std::sync::Arc<Sends>,
    http: reqwest::Client,
    /// moto's base URL; empty in unit tests.
    moto: String,
}

#[derive(Debug, Default)]
struct OutboxState {
    entries: Vec<OutboxEntry>,
    seen: HashSet<String>,
}

impl Outbox {
    pub fn new(
        moto: &str,
        origins: std::sync::Arc<TextOrigins>,
        sends: std::sync::Arc<Sends>,
    ) -> Self {
        Outbox {
            moto: moto.trim_end_matches('/').to_owned(),
            origins,
            sends,
            ..Outbox::default()
        }
    }

    /// Marks what moto already holds as seen: messages of an earlier run on the same emulator
    /// are not this stack's, so the outbox starts empty.
    pub async fn skip_earlier(&self) -> Result<(), String> {
        let earlier = self.read().await?;
        let mut state = self.state.lock().expect("outbox lock");
        state.seen.extend(earlier.into_iter().map(|s| s.key));
        Ok(())
    }

    /// Reads moto's records and adds the new ones, stamped `now`.
    pub async fn refresh(&self, now: Timestamp) -> Result<(), String> {
        self.sends.take();
        let mut unread = Unread(Some(&self.sends));
        let sent = self.read().await?;
        unread.0 = None;
        self.absorb(sent, now);
        Ok(())
    }

    /// As `refresh`, only if a function may have sent something since the last read.
    pub async fn refresh_if_sent(&self, now: Timestamp) -> Result<(), String> {
        if !self.sends.take() {
            return Ok(());
        }
        // Marked again unless the read completes: a failed read, or one a caller's timeout cut
        // short, is made by the next call.
        let mut unread = Unread(Some(&self.sends));
        let sent = self.read().await?;
        unread.0 = None;
        self.absorb(sent, now);
        Ok(())
    }

    /// moto's records. Its dump fails now and then (500: a model it cannot serialize while
    /// another request changes it), so a failed read is tried again a few times.
    async fn read(&self) -> Result<Vec<Sent>, String> {
        let mut attempt = 0;
        loop {
            let read = async {
                self.http
                    .get(format!("{}/moto-api/data.json", self.moto))
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)?
                    .text()
                    .await
            };
            match read.await {
                Ok(text) => return parse_moto(&text).map_err(|e| e.to_string()),
                Err(e) if attempt < 5 && e.status().is_some_and(|s| s.is_server_error()) => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Adds what moto recorded and the outbox has not seen yet, stamped `at`.
    pub fn absorb(&self, sent: Vec<Sent>, at: Timestamp) {
        let mut state = self.state.lock().expect("outbox lock");
        for s in sent {
            let from = match s.channel {
                Channel::Sms => self.origins.of(s.key.trim_start_matches("sms:")),
                _ => None,
            };
            if state.seen.insert(s.key) {
                state.entries.push(OutboxEntry {
                    channel: s.channel,
                    to: s.to,
                    from,
                    subject: s.subject,
                    body: s.body,
                    attachments: s.attachments,
                    url: None,
                    status_callback: None,
                    call_sid: None,
                    at,
                });
            }
        }
    }

    pub fn push(&self, entry: OutboxEntry) {
        self.state.lock().expect("outbox lock").entries.push(entry);
    }

    pub fn entries(&self) -> Vec<OutboxEntry> {
        self.state.lock().expect("outbox lock").entries.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = r#"{
      "sqs": {"Message": [{"body": "x"}]},
      "sns": {
        "SMS": [
          {"message": "New referral #4821", "message_id": "m-1", "phone_number": "+14155550101"},
          {"message": "PIN: 1234", "message_id": "m-2", "phone_number": "+14155550102"}
        ],
        "PlatformEndpoint": [{
          "arn": "arn:aws:sns:us-east-1:123456789012:endpoint/GCM/app/e1",
          "token": "device-token-ana", "custom_user_data": "ana", "enabled": true,
          "messages": {
            "zz-second-published-first": "{\"default\": \"New referral\", \"GCM\": \"{}\"}",
            "aa-published-second": "plain text"
          }
        }]
      },
      "ses": {
        "Message": [{"id": "e-1", "source": "no-reply@referrals.example.com",
          "subject": "Weekly", "body": "<p>Hi</p>",
          "destinations": {"ToAddresses": ["ana@example.org"], "CcAddresses": ["cc@example.org"]}}],
        "RawMessage": [{"id": "r-1", "source": "no-reply@referrals.example.com",
          "destinations": ["closings@example.org", "closings@example.org"],
          "raw_data": "From: no-reply@referrals.example.com\r\nTo: closings@example.org\r\nSubject: =?UTF-8?B?RXNjcm93IOKAkyByZWYtMQ==?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\nUmVmZXJyYWwgcmVmLTEgaXMgaW4gZXNjcm93Lg==\r\n--b1\r\nContent-Type: application/pdf; name=\"referral.pdf\"\r\nContent-Disposition: attachment; filename=\"referral.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b1\r\nContent-Type: text/plain; name*=UTF-8''r%C3%A9sum%C3%A9.txt\r\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.txt\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b1--\r\n"}]
      }
    }"#;

    #[test]
    fn sms_push_and_email_are_read_from_motos_records() {
        let sent = parse_moto(DATA).unwrap();
        let summary: Vec<(Channel, &str, &str)> = sent
            .iter()
            .map(|s| (s.channel, s.to.as_str(), s.body.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Channel::Sms, "+14155550101", "New referral #4821"),
                (Channel::Sms, "+14155550102", "PIN: 1234"),
                (Channel::Push, "device-token-ana", "New referral"),
                (Channel::Push, "device-token-ana", "plain text"),
                (Channel::Email, "ana@example.org", "<p>Hi</p>"),
                (Channel::Email, "cc@example.org", "<p>Hi</p>"),
                (
                    Channel::Email,
                    "closings@example.org",
                    "Referral ref-1 is in escrow."
                ),
            ]
        );
        let raw = sent.last().unwrap();
        assert_eq!(raw.subject.as_deref(), Some("Escrow – ref-1"));
        assert_eq!(
            raw.attachments,
            Some(vec!["referral.pdf".to_owned(), "résumé.txt".to_owned()])
        );
    }

    #[tokio::test]
    async fn moto_is_read_after_an_invocation_only_if_something_may_have_been_sent() {
        // No moto behind this outbox: a read fails, so an `Ok` is a read skipped.
        let outbox = Outbox::default();
        let now = Timestamp::UNIX_EPOCH;
        assert!(outbox.refresh_if_sent(now).await.is_ok());
        outbox.sends.mark();
        assert!(outbox.refresh_if_sent(now).await.is_err());
        // A failed read is tried again next time.
        assert!(outbox.refresh_if_sent(now).await.is_err());
    }

    #[test]
    fn a_record_seen_twice_keeps_its_first_time_and_place() {
        let outbox = Outbox::default();
        let first: Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
        let later: Timestamp = "2027-01-31T00:00:00Z".parse().unwrap();
        let sent = parse_moto(DATA).unwrap();
        outbox.absorb(sent[..1].to_vec(), first);
        outbox.absorb(sent.clone(), later);
        let entries = outbox.entries();
        assert_eq!(entries.len(), sent.len());
        assert_eq!(entries[0].at, first);
        assert_eq!(entries[0].body, "New referral #4821");
        assert!(entries[1..].iter().all(|e| e.at == later));
    }

    #[test]
    fn a_single_part_message_is_its_own_text() {
        let mime = parse_mime("Subject: Hello\nContent-Type: text/plain\n\nJust text\n");
        assert_eq!(
            mime,
            Mime {
                subject: "Hello".into(),
                text: "Just text".into(),
                attachments: vec![]
            }
        );
    }

    #[test]
    fn extended_parameters_are_percent_decoded_and_nothing_else() {
        assert_eq!(
            param(
                "attachment; filename*=UTF-8''r%C3%A9sum%C3%A9+a&b=c.txt",
                "filename"
            ),
            Some("résumé+a&b=c.txt".to_owned())
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode(""), "");
    }

    #[test]
    fn an_empty_moto_is_an_empty_outbox() {
        assert!(parse_moto("{}").unwrap().is_empty());
    }
}
