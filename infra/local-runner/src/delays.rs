//! SQS message delays on the local clock. moto holds a delayed message for its `DelaySeconds` of
//! real time, which a clock moved 90 seconds ahead never waits for; so the permission check
//! keeps every `SendMessage` with a delay here instead, answers it as SQS does, and hands it to
//! moto, undelayed, when the local clock reaches its time. The schedules' firing loop releases
//! them, in time order with the schedules (`POST /_local/clock`, and every second in real time).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::clock::LocalClock;

/// One message held back: the request as the function sent it, without its delay.
#[derive(Debug, Clone)]
pub struct Held {
    pub due: Timestamp,
    pub message_id: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

pub struct DelayedMessages {
    clock: Arc<LocalClock>,
    held: Mutex<Vec<Held>>,
    /// moto's endpoint, where a message goes when it is due.
    moto: String,
    http: reqwest::Client,
}

/// A JSON-protocol `SendMessage` body's delay, when it asks for one.
pub fn delay_of(body: &[u8]) -> Option<(SignedDuration, Bytes)> {
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let seconds = request.get("DelaySeconds")?.as_i64()?;
    if seconds <= 0 {
        return None;
    }
    request.as_object_mut()?.remove("DelaySeconds");
    Some((
        SignedDuration::from_secs(seconds),
        Bytes::from(request.to_string()),
    ))
}

impl DelayedMessages {
    pub fn new(clock: Arc<LocalClock>, moto: String) -> Self {
        DelayedMessages {
            clock,
            held: Mutex::new(Vec::new()),
            moto,
            http: reqwest::Client::new(),
        }
    }

    /// The local clock the messages are held by.
    pub fn clock(&self) -> &Arc<LocalClock> {
        &self.clock
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds a message until `delay` from now on the local clock; answers its message id.
    pub fn hold(
        &self,
        delay: SignedDuration,
        path_and_query: String,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> String {
        let message_id = ulid::Ulid::new().to_string();
        self.held().push(Held {
            due: self.clock.now() + delay,
            message_id: message_id.clone(),
            path_and_query,
            headers,
            body,
        });
        message_id
    }

    /// The time each held message is due, with its id, in the order they were sent.
    pub fn due_times(&self) -> Vec<(Timestamp, String)> {
        self.held()
            .iter()
            .map(|h| (h.due, h.message_id.clone()))
            .collect()
    }

    /// Takes the message `id` out, to be sent.
    pub fn take(&self, id: &str) -> Option<Held> {
        let mut held = self.held();
        let at = held.iter().position(|h| h.message_id == id)?;
        Some(held.remove(at))
    }

    /// Sends the message `id` to moto as it was sent, without its delay: the queue's poller
    /// delivers it from there.
    pub async fn release(&self, id: &str) -> Result<(), String> {
        let Some(held) = self.take(id) else {
            return Ok(());
        };
        let mut request = self
            .http
            .post(format!("{}{}", self.moto, held.path_and_query));
        for (name, value) in &held.headers {
            request = request.header(name, value);
        }
        let response = request
            .body(held.body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "moto refused a delayed message: {} {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_read_and_taken_off_the_request() {
        let body =
            br#"{"QueueUrl":"http://q/123456789012/timers","MessageBody":"{}","DelaySeconds":90}"#;
        let (delay, rest) = delay_of(body).unwrap();
        assert_eq!(delay, SignedDuration::from_secs(90));
        let rest: Value = serde_json::from_slice(&rest).unwrap();
        assert!(rest.get("DelaySeconds").is_none());
        assert_eq!(rest["MessageBody"], "{}");
        assert!(delay_of(br#"{"QueueUrl":"q","MessageBody":"{}","DelaySeconds":0}"#).is_none());
        assert!(delay_of(br#"{"QueueUrl":"q","MessageBody":"{}"}"#).is_none());
    }

    #[test]
    fn held_messages_are_due_on_the_local_clock() {
        let clock = Arc::new(LocalClock::default());
        let later = Timestamp::now() + SignedDuration::from_hours(24);
        clock.move_to(later);
        let delayed = DelayedMessages::new(clock.clone(), "http://127.0.0.1:1".into());
        let id = delayed.hold(
            SignedDuration::from_secs(90),
            "/".into(),
            vec![],
            Bytes::new(),
        );
        let (due, listed) = delayed.due_times().pop().unwrap();
        assert_eq!(listed, id);
        assert!(due >= later + SignedDuration::from_secs(90));
        assert!(due < clock.now() + SignedDuration::from_secs(91));
        assert!(delayed.take(&id).is_some());
        assert!(delayed.take(&id).is_none());
    }
}
