//! Claiming: first claim wins (WT-4, LR-1), declines (LR-8, PPL-5), and the PIN line after two
//! failed claim calls (LR-10).
//!
//! The race itself is settled by the store's single conditional write; these functions state the
//! same conditions, so the in-memory store and the explanation of a lost race agree with it.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::referral::{Assigned, ClaimChannel, Closure, Program, Referral};
use super::values::{AgentId, InvalidValue};

/// Why a claim did not win.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimRefusal {
    #[error("this referral has already been claimed")]
    Taken { winner: AgentId },
    #[error("this referral was not offered to you")]
    NotOffered,
    #[error("you declined this referral")]
    Declined,
    #[error("this referral is no longer open")]
    Closed(Closure),
    #[error("this referral is claimed by phone: ask for a call to claim it")]
    CallFirst,
    #[error("the time to respond to this warm transfer has passed")]
    TooLate,
    #[error("you have received all the referrals of this cycle")]
    QuotaReached,
}

/// Whether `agent` may claim `referral` at `now` on `channel`. `Ok` means the claim wins.
pub fn check_claim(
    referral: &Referral,
    agent: &AgentId,
    channel: ClaimChannel,
    now: Timestamp,
) -> Result<(), ClaimRefusal> {
    if let Some(a) = referral.assignment() {
        return Err(ClaimRefusal::Taken {
            winner: a.agent_id.clone(),
        });
    }
    if let Some(c) = referral.closure {
        return Err(ClaimRefusal::Closed(c));
    }
    if !referral.is_offered_to(agent) {
        return Err(ClaimRefusal::NotOffered);
    }
    if referral.declined.contains(agent) {
        return Err(ClaimRefusal::Declined);
    }
    if referral.call_first && !channel.is_phone() {
        return Err(ClaimRefusal::CallFirst);
    }
    if referral.respond_by.is_some_and(|deadline| now >= deadline) {
        return Err(ClaimRefusal::TooLate);
    }
    Ok(())
}

/// Applies a winning claim: the referral becomes the agent's, at Left Voicemail.
pub fn claim(
    referral: &Referral,
    agent: &AgentId,
    channel: ClaimChannel,
    now: Timestamp,
) -> Result<Referral, ClaimRefusal> {
    check_claim(referral, agent, channel, now)?;
    let mut next = referral.clone();
    next.assigned = Some(Assigned::claimed(agent.clone(), now, channel));
    Ok(next)
}

/// How long the agent took to respond to their offer, for speed to lead (GEN-1).
pub fn response_millis(referral: &Referral, agent: &AgentId, now: Timestamp) -> Option<u64> {
    let notified = referral.offers.get(agent)?;
    let ms = now.duration_since(*notified).as_millis();
    u64::try_from(ms).ok()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeclineError {
    #[error("pay-per-lead referrals cannot be declined")]
    NotDeclinable,
    #[error("only the team lead declines a referral for the whole team")]
    NotTeamLead,
    #[error("this referral was not offered to you")]
    NotOffered,
    #[error("this referral has already been claimed")]
    Taken,
}

/// Who declines, and for whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclineScope {
    /// A member declines for themselves only (LR-8).
    Myself,
    /// The team lead declines for the whole team.
    Team,
}

/// Applies a decline (LR-8, PPL-5). `is_team_lead` is whether the agent leads the referral's team.
pub fn decline(
    referral: &Referral,
    agent: &AgentId,
    scope: DeclineScope,
    is_team_lead: bool,
) -> Result<Referral, DeclineError> {
    if referral.program == Program::Ppl {
        return Err(DeclineError::NotDeclinable);
    }
    if referral.assignment().is_some() {
        return Err(DeclineError::Taken);
    }
    let mut next = referral.clone();
    match scope {
        DeclineScope::Team if !is_team_lead => return Err(DeclineError::NotTeamLead),
        DeclineScope::Team => next.closure = Some(Closure::DeclinedByTeam),
        DeclineScope::Myself if !referral.is_offered_to(agent) => {
            return Err(DeclineError::NotOffered);
        }
        DeclineScope::Myself => {
            next.declined.insert(agent.clone());
        }
    }
    Ok(next)
}

/// A claim call fails twice, then the agent gets the PIN line (LR-10).
pub const FAILED_CALLS_BEFORE_PIN: u8 = 2;
/// Wrong PINs allowed before the PIN stops working.
pub const MAX_PIN_ATTEMPTS: u8 = 3;

/// A call-status outcome that means the agent was not reached.
pub fn call_failed(status: &str) -> bool {
    matches!(status, "busy" | "no-answer" | "failed" | "canceled")
}

/// One agent's claim calls and PIN for one referral.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimCalls {
    pub failed_calls: u8,
    pub pin: Option<Pin>,
    /// Claim calls placed ("call me to claim" and the retry after a failure).
    #[serde(default)]
    pub calls_placed: u8,
    /// The provider's ids of the failed calls counted, so a status reported twice counts once.
    #[serde(default)]
    pub counted: BTreeSet<String>,
    /// The "call me to claim" requests made with an idempotency key, so a retried request
    /// places no second call (EF-3).
    #[serde(default)]
    pub requests: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    pub code: String,
    pub attempts_left: u8,
}

impl Pin {
    /// Whether `entered` is this PIN and it still works, without spending a try.
    pub fn accepts(&self, entered: &str) -> bool {
        self.attempts_left > 0 && constant_time_eq(self.code.as_bytes(), entered.as_bytes())
    }

    /// Six digits from a random number the caller draws.
    pub fn from_random(random: u32) -> Self {
        Pin {
            code: format!("{:06}", random % 1_000_000),
            attempts_left: MAX_PIN_ATTEMPTS,
        }
    }
}

impl ClaimCalls {
    /// Records a failed claim call; returns true when this failure is the one that earns a PIN.
    pub fn record_failed_call(&mut self) -> bool {
        self.failed_calls = self.failed_calls.saturating_add(1);
        self.failed_calls == FAILED_CALLS_BEFORE_PIN && self.pin.is_none()
    }

    /// Checks an entered PIN, spending an attempt when it is wrong.
    pub fn try_pin(&mut self, entered: &str) -> PinOutcome {
        let Some(pin) = self.pin.as_mut() else {
            return PinOutcome::NoPin;
        };
        if pin.attempts_left == 0 {
            return PinOutcome::Locked;
        }
        if constant_time_eq(pin.code.as_bytes(), entered.as_bytes()) {
            PinOutcome::Accepted
        } else {
            pin.attempts_left -= 1;
            if pin.attempts_left == 0 {
                PinOutcome::Locked
            } else {
                PinOutcome::Wrong {
                    attempts_left: pin.attempts_left,
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    Accepted,
    Wrong { attempts_left: u8 },
    Locked,
    NoPin,
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How long a claim code keeps working after its offer: long enough for a claimed referral's
/// texts to keep reaching the client through the code.
pub const CODE_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 30);

/// A claim code as an SMS carries it: `#` and four digits (API.md).
pub fn claim_code(random: u32) -> String {
    format!("#{:04}", random % 10_000)
}

/// Splits an inbound SMS into its claim code and the text to relay: `"#4821 Hi, I'm Ana"`.
pub fn parse_claim_sms(body: &str) -> Result<(String, String), InvalidValue> {
    let body = body.trim();
    let rest = body.strip_prefix('#').ok_or_else(|| {
        InvalidValue::new("Body", "must start with the claim code, such as #4821")
    })?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return Err(InvalidValue::new(
            "Body",
            "must start with the claim code, such as #4821",
        ));
    }
    let text = rest[digits.len()..].trim().to_owned();
    Ok((format!("#{digits}"), text))
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::domain::referral::{Client, LeadDetails, PriceRange};
    use crate::domain::values::ClientType;

    pub fn referral(program: Program, offered: &[&str]) -> Referral {
        let client = Client {
            name: "Casey Client".into(),
            phone: "+14155559876".parse().unwrap(),
            email: "casey@example.com".parse().unwrap(),
        };
        let lead = LeadDetails {
            client_type: ClientType::Seller,
            zip: "94110".parse().unwrap(),
            price_range: PriceRange::new("500000".parse().unwrap(), "700000".parse().unwrap())
                .unwrap(),
            timeline: "1-3 months".into(),
        };
        Referral {
            briefing: "Wants to sell before school starts".into(),
            ..Referral::offered(
                "r1".parse().unwrap(),
                program,
                client,
                lead,
                "advisor1".parse().unwrap(),
                "2026-01-01T00:00:00Z".parse().unwrap(),
                offered.iter().map(|a| a.parse().unwrap()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::referral;
    use super::*;

    fn id(s: &str) -> AgentId {
        s.parse().unwrap()
    }

    fn now() -> Timestamp {
        "2026-01-01T00:00:42Z".parse().unwrap()
    }

    #[test]
    fn wt_4_first_claim_wins_and_later_ones_learn_the_winner() {
        let r = referral(Program::Routing, &["a1", "a2"]);
        let won = claim(&r, &id("a2"), ClaimChannel::App, now()).unwrap();
        assert_eq!(won.assigned_agent(), Some(&id("a2")));
        assert_eq!(
            won.stage(),
            Some(crate::domain::stage::Stage::LeftVoicemail)
        );
        assert_eq!(
            claim(&won, &id("a1"), ClaimChannel::Sms, now()),
            Err(ClaimRefusal::Taken { winner: id("a2") })
        );
        // The winner claiming again is refused too: a claim happens once.
        assert!(claim(&won, &id("a2"), ClaimChannel::App, now()).is_err());
    }

    #[test]
    fn lr_1_only_offered_agents_may_claim() {
        let r = referral(Program::Routing, &["a1"]);
        assert_eq!(
            check_claim(&r, &id("x9"), ClaimChannel::App, now()),
            Err(ClaimRefusal::NotOffered)
        );
    }

    #[test]
    fn lr_8_member_decline_affects_only_that_member() {
        let r = referral(Program::Routing, &["a1", "a2"]);
        let d = decline(&r, &id("a1"), DeclineScope::Myself, false).unwrap();
        assert_eq!(
            check_claim(&d, &id("a1"), ClaimChannel::App, now()),
            Err(ClaimRefusal::Declined)
        );
        assert_eq!(check_claim(&d, &id("a2"), ClaimChannel::App, now()), Ok(()));
    }

    #[test]
    fn lr_8_team_lead_declines_for_the_whole_team() {
        let r = referral(Program::Routing, &["lead", "a2"]);
        assert_eq!(
            decline(&r, &id("a2"), DeclineScope::Team, false),
            Err(DeclineError::NotTeamLead)
        );
        let d = decline(&r, &id("lead"), DeclineScope::Team, true).unwrap();
        assert_eq!(
            check_claim(&d, &id("a2"), ClaimChannel::App, now()),
            Err(ClaimRefusal::Closed(Closure::DeclinedByTeam))
        );
    }

    #[test]
    fn ppl_5_pay_per_lead_cannot_be_declined() {
        let r = referral(Program::Ppl, &["a1"]);
        assert_eq!(
            decline(&r, &id("a1"), DeclineScope::Myself, false),
            Err(DeclineError::NotDeclinable)
        );
    }

    #[test]
    fn lr_10_two_failed_claim_calls_earn_a_pin() {
        let mut calls = ClaimCalls::default();
        assert!(call_failed("no-answer") && call_failed("busy") && !call_failed("completed"));
        assert!(!calls.record_failed_call());
        assert!(calls.record_failed_call());
        calls.pin = Some(Pin::from_random(4821));
        // A third failure does not issue another.
        assert!(!calls.record_failed_call());
        assert_eq!(calls.pin.as_ref().unwrap().code, "004821");
    }

    #[test]
    fn lr_10_pin_attempts_are_bounded() {
        let mut calls = ClaimCalls {
            failed_calls: 2,
            pin: Some(Pin::from_random(123456)),
            ..ClaimCalls::default()
        };
        assert_eq!(
            calls.try_pin("000000"),
            PinOutcome::Wrong { attempts_left: 2 }
        );
        assert_eq!(
            calls.try_pin("111111"),
            PinOutcome::Wrong { attempts_left: 1 }
        );
        assert_eq!(calls.try_pin("222222"), PinOutcome::Locked);
        // Even the right PIN no longer works.
        assert_eq!(calls.try_pin("123456"), PinOutcome::Locked);
        let mut fresh = ClaimCalls {
            failed_calls: 2,
            pin: Some(Pin::from_random(123456)),
            ..ClaimCalls::default()
        };
        assert_eq!(fresh.try_pin("123456"), PinOutcome::Accepted);
        assert_eq!(ClaimCalls::default().try_pin("123456"), PinOutcome::NoPin);
    }

    #[test]
    fn ppl_4_call_first_referrals_are_claimed_by_phone_only() {
        let mut r = referral(Program::Ppl, &["a1"]);
        r.call_first = true;
        for channel in [ClaimChannel::App, ClaimChannel::Sms] {
            assert_eq!(
                check_claim(&r, &id("a1"), channel, now()),
                Err(ClaimRefusal::CallFirst)
            );
        }
        for channel in [ClaimChannel::Call, ClaimChannel::Pin] {
            assert_eq!(check_claim(&r, &id("a1"), channel, now()), Ok(()));
        }
    }

    #[test]
    fn wt_6_no_claim_counts_after_the_response_window() {
        let mut r = referral(Program::WarmTransfer, &["a1"]);
        r.respond_by = Some(now());
        let before = now() - jiff::SignedDuration::from_millis(1);
        assert_eq!(
            check_claim(&r, &id("a1"), ClaimChannel::App, before),
            Ok(())
        );
        assert_eq!(
            check_claim(&r, &id("a1"), ClaimChannel::WarmTransferLine, now()),
            Err(ClaimRefusal::TooLate)
        );
    }

    #[test]
    fn lr_9_claim_sms_is_code_then_message() {
        assert_eq!(
            parse_claim_sms("  #4821 Hi Casey, Ana here ").unwrap(),
            ("#4821".into(), "Hi Casey, Ana here".into())
        );
        assert_eq!(
            parse_claim_sms("#77").unwrap(),
            ("#77".into(), String::new())
        );
        assert!(parse_claim_sms("hello").is_err());
        assert!(parse_claim_sms("# 12").is_err());
        assert_eq!(claim_code(4821), "#4821");
        assert_eq!(claim_code(7), "#0007");
    }

    #[test]
    fn gen_1_response_time_from_notification_to_claim() {
        let r = referral(Program::Routing, &["a1"]);
        assert_eq!(response_millis(&r, &id("a1"), now()), Some(42_000));
        assert_eq!(response_millis(&r, &id("zz"), now()), None);
    }
}
