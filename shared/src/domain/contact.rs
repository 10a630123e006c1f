//! The keys a client's contacts are matched by (RC-4): a keyed hash of the normalized phone and
//! of the normalized email, so the index finds an earlier referral of the same client without
//! storing, or exposing, the contact itself.

use hmac::{Hmac, Mac};
use jiff::{SignedDuration, Timestamp};
use sha2::Sha256;

use super::referral::{Client, Referral};
use super::stage::Stage;

/// A referral of the same client counts as a duplicate for this long after it was created.
pub const DUPLICATE_WINDOW: SignedDuration = SignedDuration::from_hours(60 * 24);
/// The agent who already has the client is offered a duplicate alone for this long.
pub const FIRST_LOOK: SignedDuration = SignedDuration::from_mins(5);

/// The secret the contact keys are keyed with: without it, a key cannot be tested against a
/// guessed phone or email.
#[derive(Clone)]
pub struct ContactSecret(Vec<u8>);

impl ContactSecret {
    /// At least 32 bytes, as HMAC-SHA256 keys should be.
    pub fn new(secret: &str) -> Option<Self> {
        (secret.len() >= 32).then(|| ContactSecret(secret.as_bytes().to_vec()))
    }

    fn key(&self, kind: &str, normalized: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(kind.as_bytes());
        mac.update(b":");
        mac.update(normalized.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The client's two keys: phone (already E.164) and email (trimmed, lower case).
    pub fn keys(&self, client: &Client) -> [String; 2] {
        [
            self.key("phone", client.phone.as_str()),
            self.key("email", &client.email.as_str().trim().to_lowercase()),
        ]
    }
}

impl std::fmt::Debug for ContactSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContactSecret(..)")
    }
}

/// Whether `earlier` still makes a new referral at `now` a duplicate: created within the window
/// and still active (not closed, paid or failed, not closed for the team).
pub fn still_active(earlier: &Referral, now: Timestamp) -> bool {
    let recent = now.duration_since(earlier.created_at) <= DUPLICATE_WINDOW;
    let finished = matches!(
        earlier.stage(),
        Some(Stage::Closed | Stage::ClosedPaid | Stage::Failed)
    ) || (earlier.assigned.is_none() && earlier.closure.is_some());
    recent && !finished
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(phone: &str, email: &str) -> Client {
        Client {
            name: "Casey".into(),
            phone: phone.parse().unwrap(),
            email: email.parse().unwrap(),
        }
    }

    #[test]
    fn rc_4_the_same_contacts_give_the_same_keys_and_never_show_them() {
        let secret = ContactSecret::new("a-secret-of-at-least-thirty-two-bytes").unwrap();
        let a = secret.keys(&client("+14155559876", "Casey@Example.com"));
        let b = secret.keys(&client("+1 (415) 555-9876", "casey@EXAMPLE.com"));
        assert_eq!(a, b);
        // Either contact alone still matches: the phone key with another email, and back.
        let phone_only = secret.keys(&client("+1 415.555.9876", "other@example.com"));
        assert_eq!(phone_only[0], a[0]);
        assert_ne!(phone_only[1], a[1]);
        for key in &a {
            assert_eq!(key.len(), 64);
            assert!(!key.contains("4155559876") && !key.contains("casey"));
        }
        let other = ContactSecret::new("another-secret-of-at-least-32-bytes").unwrap();
        assert_ne!(other.keys(&client("+14155559876", "casey@example.com")), a);
        assert!(ContactSecret::new("short").is_none());
    }
}
