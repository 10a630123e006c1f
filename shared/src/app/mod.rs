//! The use cases: each turns a request from a caller (token claims, a webhook, a schedule) into
//! domain calls and port calls. Functions call these and nothing else.

pub mod billing;
pub mod broadcast;
pub mod claim;
pub mod closings;
pub mod contact;
pub mod escrow;
#[cfg(test)]
mod faults;
pub mod intake;
pub mod limits;
pub mod offer;
pub mod outbox;
pub mod phone;
pub mod pipeline;
pub mod reminders;
pub mod settings;
pub mod unassigned;
pub mod voice;
pub mod warm_transfer;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::billing::PriceTable;
use crate::domain::contact::ContactSecret;
use crate::domain::referral::{HistoryEntry, Referral};
use crate::domain::values::{AgentId, Email, InvalidValue, Phone, ReferralId, UserId};
use crate::effects::Effects;
use crate::ports::*;

/// Who is calling, from a verified token's claims (API.md: Identity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user: UserId,
    pub role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Advisor,
    Closings,
    Admin,
}

impl Actor {
    /// The agent id of an agent caller.
    pub fn agent(&self) -> Option<AgentId> {
        (self.role == Role::Agent).then(|| AgentId::from(&self.user))
    }

    pub fn require(&self, role: Role) -> Result<(), AppError> {
        if self.role == role {
            Ok(())
        } else {
            Err(AppError::Forbidden(
                format!("this needs the {role:?} role").to_lowercase(),
            ))
        }
    }

    /// The caller as the agent `id`, or forbidden.
    pub fn require_agent(&self, id: &AgentId) -> Result<(), AppError> {
        if self.agent().as_ref() == Some(id) {
            Ok(())
        } else {
            Err(AppError::Forbidden("only that agent may do this".into()))
        }
    }
}

/// What the use cases reach: the store's ports and the settings of the function they run in,
/// built once per process (`wiring`). The outside services are reached only by the functions
/// that perform effects: `outbox::Relay` (queue, bus, scheduler) and `broadcast::Senders`
/// (texts, pushes, emails, calls).
#[derive(Clone)]
pub struct Services {
    pub agents: Arc<dyn AgentDirectory>,
    pub referrals: Arc<dyn ReferralStore>,
    pub effects: Arc<dyn EffectStore>,
    pub lines: Arc<dyn ClaimLines>,
    pub due: Arc<dyn DueWork>,
    pub subscriptions: Arc<dyn SubscriptionStore>,
    pub once: Arc<dyn Idempotency>,
    pub requests: Arc<dyn RequestCounter>,
    pub config: Arc<Config>,
}

/// The product's settings, typed. Each function is given the ones its use cases read, and only
/// those (`wiring::config`); a use case that reads one its function was not given fails as an
/// internal error naming it.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The pay-per-lead price table (PPL-1).
    pub prices: Option<PriceTable>,
    /// Copied on every set of closing documents (ES-1).
    pub closings_email: Option<Email>,
    /// Where advisors hear that a warm transfer went unanswered (WT-6).
    pub advisor_email: Option<Email>,
    /// How long alerted agents have to respond to a warm transfer (WT-6).
    pub warm_transfer_timeout: Option<jiff::SignedDuration>,
    /// The API's public base URL, as the telephony provider requests it: webhook URLs are built
    /// from it (GEN-6).
    pub public_base_url: Option<String>,
    /// The number agents call to claim with a PIN (LR-10).
    pub pin_line: Option<Phone>,
    /// The number agents dial to take a warm transfer (WT-2).
    pub warm_transfer_line: Option<Phone>,
    /// The agent app's base URL, for links in offers (PPL-3).
    pub app_base_url: Option<String>,
    /// Requests one caller may make in a minute (TX-5).
    pub rate_limit_per_minute: Option<u32>,
    /// Keys the index of clients' contacts (RC-4).
    pub contact_secret: Option<ContactSecret>,
}

fn unwired<'a, T>(setting: Option<&'a T>, name: &'static str) -> Result<&'a T, AppError> {
    setting.ok_or(AppError::Unwired(name))
}

impl Config {
    pub fn prices(&self) -> Result<&PriceTable, AppError> {
        unwired(self.prices.as_ref(), "PPL_PRICES")
    }

    pub fn closings_email(&self) -> Result<&Email, AppError> {
        unwired(self.closings_email.as_ref(), "CLOSINGS_EMAIL")
    }

    pub fn advisor_email(&self) -> Result<&Email, AppError> {
        unwired(self.advisor_email.as_ref(), "ADVISOR_EMAIL")
    }

    pub fn warm_transfer_timeout(&self) -> Result<jiff::SignedDuration, AppError> {
        unwired(
            self.warm_transfer_timeout.as_ref(),
            "WARM_TRANSFER_TIMEOUT_SECONDS",
        )
        .copied()
    }

    pub fn contact_secret(&self) -> Result<&ContactSecret, AppError> {
        unwired(self.contact_secret.as_ref(), "CONTACT_KEY_SECRET")
    }

    pub fn pin_line(&self) -> Result<&Phone, AppError> {
        unwired(self.pin_line.as_ref(), "PIN_LINE_NUMBER")
    }

    pub fn warm_transfer_line(&self) -> Result<&Phone, AppError> {
        unwired(
            self.warm_transfer_line.as_ref(),
            "WARM_TRANSFER_LINE_NUMBER",
        )
    }

    pub fn rate_limit_per_minute(&self) -> Result<u32, AppError> {
        unwired(self.rate_limit_per_minute.as_ref(), "RATE_LIMIT_PER_MINUTE").copied()
    }

    /// The full URL of a webhook path (with its query) on the public API.
    pub fn webhook(&self, path_and_query: &str) -> Result<String, AppError> {
        let base = unwired(self.public_base_url.as_ref(), "PUBLIC_BASE_URL")?;
        Ok(format!("{}{path_and_query}", base.trim_end_matches('/')))
    }

    /// The app's page for a referral.
    pub fn app_link(&self, referral: &ReferralId) -> Result<String, AppError> {
        let base = unwired(self.app_base_url.as_ref(), "APP_BASE_URL")?;
        Ok(format!(
            "{}/referrals/{referral}",
            base.trim_end_matches('/')
        ))
    }

    /// Every setting, with the local stack's development values: for tests and the demo.
    pub fn development() -> Self {
        fn known<T: std::str::FromStr>(text: &str) -> T {
            text.parse()
                .unwrap_or_else(|_| unreachable!("the development value {text} is valid"))
        }
        Config {
            prices: PriceTable::from_json(DEFAULT_PRICES).ok(),
            closings_email: Some(known("closings@referrals.example.com")),
            advisor_email: Some(known("advisors@referrals.example.com")),
            warm_transfer_timeout: Some(crate::domain::warm_transfer::DEFAULT_TIMEOUT),
            public_base_url: Some("http://127.0.0.1:3000".into()),
            pin_line: Some(known("+15005550007")),
            warm_transfer_line: Some(known("+15005550008")),
            app_base_url: Some("https://app.referrals.example.com".into()),
            rate_limit_per_minute: Some(DEFAULT_RATE_LIMIT_PER_MINUTE),
            contact_secret: ContactSecret::new("development-contact-key-secret-0000"),
        }
    }
}

/// Requests a caller may make in a minute (API.md): more are refused until the minute ends.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 300;

/// Counts a request of `caller` (a token's subject, or a phone) and refuses it, as 429
/// `rate_limited`, when the caller has made more than their limit in the minute under way (TX-5).
/// Checked before the request does anything else, so a refused one writes nothing.
pub async fn admit(s: &Services, caller: &str, now: jiff::Timestamp) -> Result<(), AppError> {
    let limit = s.config.rate_limit_per_minute()?;
    let second = now.as_second();
    let minute = jiff::Timestamp::from_second(second - second.rem_euclid(60))
        .map_err(|e| AppError::BadRequest(format!("the request time is out of range: {e}")))?;
    let count = s.requests.count_request(caller, minute).await?;
    if count > u64::from(limit) {
        return Err(AppError::RateLimited(format!(
            "more than {limit} requests in a minute: try again in {} s",
            60 - second.rem_euclid(60)
        )));
    }
    Ok(())
}

/// The local stack's Twilio auth token, for tests that sign webhooks as the stand-in does.
pub const DEVELOPMENT_TWILIO_TOKEN: &str = "local-twilio-token";

/// Development prices per referral: buyers and sellers, dearer in the Bay Area's 94xxx zips.
pub const DEFAULT_PRICES: &str = r#"{"default": {"buyer": "45.00", "seller": "65.00"}, "byZipPrefix": {"94": {"buyer": "60.00", "seller": "90.00"}}}"#;

/// The use-case boundary's one error type; `status` and `code` map it to HTTP in one place.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Invalid(#[from] InvalidValue),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A webhook without the provider's valid signature (GEN-6).
    #[error("the request signature is not valid")]
    InvalidSignature,
    #[error("{0}")]
    NotFound(String),
    /// A setting this function was not given: a wiring bug (500).
    #[error("{0} is not configured for this function")]
    Unwired(&'static str),
    /// A request body beyond its limit (413).
    #[error("the request body is over {limit} bytes")]
    TooLarge { limit: usize },
    /// More than a caller may ask for (429 `rate_limited`, TX-5).
    #[error("{0}")]
    RateLimited(String),
    /// Lost every race for a contended item: retryable (503), as a throttle is.
    #[error("{0}")]
    Busy(String),
    /// A business conflict, such as a claim that lost (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Well-formed but not acceptable, such as a stage missing its fields (422).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Send(#[from] SendError),
    /// A response or message that could not be encoded: a bug, answered as an internal error.
    #[error("could not encode: {0}")]
    Encode(#[from] serde_json::Error),
}

impl AppError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::BadRequest(_) | AppError::Invalid(_) => 400,
            AppError::Unauthorized(_) => 401,
            AppError::Forbidden(_) | AppError::InvalidSignature => 403,
            AppError::NotFound(_) => 404,
            AppError::Conflict { .. } => 409,
            AppError::Unprocessable { .. } => 422,
            AppError::Busy(_) => 503,
            AppError::TooLarge { .. } => 413,
            AppError::RateLimited(_) => 429,
            AppError::Store(e) if e.is_retryable() => 503,
            AppError::Send(SendError::Retryable(_)) => 503,
            AppError::Store(_) | AppError::Send(_) | AppError::Encode(_) | AppError::Unwired(_) => {
                500
            }
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) | AppError::Invalid(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::InvalidSignature => "invalid_signature",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { code, .. } | AppError::Unprocessable { code, .. } => code,
            AppError::Busy(_) => "unavailable",
            AppError::TooLarge { .. } => "too_large",
            AppError::RateLimited(_) => "rate_limited",
            AppError::Store(_) | AppError::Send(_) if self.status() == 503 => "unavailable",
            AppError::Store(_) | AppError::Send(_) | AppError::Encode(_) | AppError::Unwired(_) => {
                "internal"
            }
        }
    }

    /// What the caller is told: internals never leave the service.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Store(_) | AppError::Send(_) if self.status() == 503 => {
                "busy, try again".into()
            }
            AppError::Store(_) | AppError::Send(_) | AppError::Encode(_) | AppError::Unwired(_) => {
                "internal error".into()
            }
            other => other.to_string(),
        }
    }

    /// Whether a queue, stream or schedule should deliver the event again (EF-2): transient
    /// failures and bugs are retried, until they are parked where an alarm sees them; a refusal
    /// (not found, forbidden, invalid, a business conflict) never changes on a retry.
    pub fn is_retryable(&self) -> bool {
        self.status() >= 500
    }
}

/// How long an attempt holds a once-only effect: longer than any function runs, so a live
/// attempt is never taken over, and short enough that a dead one's effect is soon retried.
pub(crate) const LEASE: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);

/// Performs `effect` once for `key` (GEN-5), remembered for `keep`: a repeat does nothing and
/// answers false. The key is taken with a lease before the effect and marked done after it, so a
/// failed effect lets the key go for the retry at once, and an attempt that dies in between
/// loses nothing: its lease runs out and the next delivery performs the effect. An attempt still
/// holding the key makes this one fail as busy, to be retried.
pub(crate) async fn once<F, Fut>(
    s: &Services,
    key: &str,
    keep: jiff::SignedDuration,
    effect: F,
) -> Result<bool, AppError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), AppError>>,
{
    match s.once.begin(key, LEASE).await? {
        Begun::Done => return Ok(false),
        Begun::InProgress => {
            return Err(AppError::Busy(format!("{key} is being done")));
        }
        Begun::First => {}
    }
    match effect().await {
        Ok(()) => {
            s.once.finish(key, keep, None, &[]).await?;
            Ok(true)
        }
        Err(e) => {
            s.once.abandon(key).await?;
            Err(e)
        }
    }
}

/// How many times an edit is applied to a fresh read before giving up as busy.
const EDIT_ATTEMPTS: usize = 5;

/// The optimistic read-modify-write of a referral, in one place: `read` gives the referral with
/// its version, the caller works out the change, and `save` writes it with its history entries
/// and effects in one write, conditional on the version read. When someone else wrote in
/// between, `save` answers false and the caller reads and applies its change again; after
/// `EDIT_ATTEMPTS` lost races `read` answers busy (503), which callers retry.
///
/// ```ignore
/// let mut edit = Editing::new(s, id);
/// loop {
///     let stored = edit.read().await?;
///     let next = change(&stored.value)?;
///     if edit.save(&next, stored.version, &entries, &effects).await? {
///         return Ok(next);
///     }
/// }
/// ```
pub(crate) struct Editing<'a> {
    s: &'a Services,
    id: &'a ReferralId,
    reads: usize,
}

impl<'a> Editing<'a> {
    pub(crate) fn new(s: &'a Services, id: &'a ReferralId) -> Self {
        Editing { s, id, reads: 0 }
    }

    /// The referral as stored now, or not found; busy once it has been read too often.
    pub(crate) async fn read(&mut self) -> Result<Versioned<Referral>, AppError> {
        if self.reads == EDIT_ATTEMPTS {
            return Err(AppError::Busy(format!(
                "referral {} is changing; try again",
                self.id
            )));
        }
        self.reads += 1;
        self.s
            .referrals
            .get_referral(self.id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("no referral {}", self.id)))
    }

    /// The referral as stored now, or `None` when there is none: for a timer, whose referral
    /// may be gone, which is no error.
    pub(crate) async fn read_if_stored(&mut self) -> Result<Option<Versioned<Referral>>, AppError> {
        match self.read().await {
            Ok(stored) => Ok(Some(stored)),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves `referral` if it is still at `version`; false when someone else wrote first.
    pub(crate) async fn save(
        &self,
        referral: &Referral,
        version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<bool, AppError> {
        Ok(self
            .s
            .referrals
            .update_referral(referral, version, entries, effects)
            .await?
            == Saved::Ok)
    }
}

/// A stable id for what a caller creates with an `Idempotency-Key` (EF-3): derived from the
/// caller and their key, so a retry names the first attempt's creation and creates nothing new.
/// `prefix` keeps the kinds of id apart.
pub(crate) fn idempotent_id(actor: &Actor, key: &str, prefix: &str) -> Result<String, AppError> {
    use sha1::{Digest, Sha1};
    if key.is_empty() || key.chars().count() > limits::IDEMPOTENCY_KEY {
        return Err(AppError::BadRequest(format!(
            "Idempotency-Key must be 1 to {} characters",
            limits::IDEMPOTENCY_KEY
        )));
    }
    let digest = Sha1::digest(format!("{}\n{key}", actor.user).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}{}", &hex[..25]))
}

/// 32 random bits from the ULID generator's random source (claim codes, PINs).
pub(crate) fn random_u32() -> u32 {
    (ulid::Ulid::new().random() & u128::from(u32::MAX)) as u32
}

/// The JSON error body of API.md: `{"error": {"code", "message"}}`.
pub fn error_body(e: &AppError) -> serde_json::Value {
    serde_json::json!({"error": {"code": e.code(), "message": e.public_message()}})
}

#[cfg(test)]
pub(crate) mod testing {
    pub use crate::memory::in_memory_services as services;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tx_5_a_caller_past_the_limit_is_refused_until_the_minute_ends() {
        let (s, _, _) = testing::services();
        let mut config = (*s.config).clone();
        config.rate_limit_per_minute = Some(3);
        let s = Services {
            config: Arc::new(config),
            ..s
        };
        let at = |t: &str| t.parse::<jiff::Timestamp>().unwrap();
        for _ in 0..3 {
            admit(&s, "user#a1", at("2026-03-02T17:00:10Z"))
                .await
                .unwrap();
        }
        let e = admit(&s, "user#a1", at("2026-03-02T17:00:59Z"))
            .await
            .unwrap_err();
        assert_eq!((e.status(), e.code()), (429, "rate_limited"));
        // Another caller, or the next minute, starts afresh.
        admit(&s, "user#a2", at("2026-03-02T17:00:59Z"))
            .await
            .unwrap();
        admit(&s, "user#a1", at("2026-03-02T17:01:00Z"))
            .await
            .unwrap();
    }

    #[test]
    fn gen_4_errors_have_a_code_and_hide_internals() {
        let e = AppError::Store(StoreError::Internal("connection reset by 10.0.0.7".into()));
        assert_eq!(e.status(), 500);
        let body = error_body(&e);
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("10.0.0.7"));
        let busy = AppError::Store(StoreError::Retryable("throttled".into()));
        assert_eq!((busy.status(), busy.code()), (503, "unavailable"));
        let taken = AppError::conflict("taken", "already claimed");
        assert_eq!(
            (taken.status(), error_body(&taken)["error"]["code"].as_str()),
            (409, Some("taken"))
        );
    }
}
