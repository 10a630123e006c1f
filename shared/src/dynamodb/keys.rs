//! Every key format of the table, in one place. The access-pattern table in the module docs of
//! `dynamodb` names these builders; nothing else in the adapter writes a `#`-joined key.
//!
//! Ids are `[A-Za-z0-9_-]` (see `domain::values`), so `#` never appears inside one and the
//! prefixes below cannot collide. Numbers inside sort keys are zero-padded so that string order is
//! number order.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;
use ulid::Ulid;

use crate::domain::stage::Stage;
use crate::domain::values::{AgentId, Phone, ReferralId, SubscriptionId, TeamId, Zip};
use crate::ports::DueKind;

/// The table's primary key attributes.
pub const PK: &str = "PK";
pub const SK: &str = "SK";

/// `OwnerIndex`: what belongs to an agent (their referral list by stage, the teams they lead,
/// their subscriptions).
pub const OWNER_INDEX: &str = "OwnerIndex";
pub const OWNER_PK: &str = "OwnerPK";
pub const OWNER_SK: &str = "OwnerSK";

/// `AreaIndex`: who serves a zip code and client type (eligible agents, PPL subscriptions).
pub const AREA_INDEX: &str = "AreaIndex";
pub const AREA_PK: &str = "AreaPK";
pub const AREA_SK: &str = "AreaSK";

/// `DueIndex`: the sparse index of work that falls due, partitioned by kind, sorted by due time.
pub const DUE_INDEX: &str = "DueIndex";
pub const DUE_PK: &str = "DuePK";
pub const DUE_SK: &str = "DueSK";

/// Non-key attributes the adapter itself maintains next to an entity's own fields.
pub const VERSION: &str = "version";
/// Epoch seconds; the table's TTL attribute.
pub const EXPIRES_AT: &str = "expiresAt";
/// On a due record: the caller's key and the exact due time (the sort key keeps milliseconds).
pub const DUE_KEY: &str = "dueKey";
pub const DUE_AT: &str = "dueAt";
/// On index items: the id of the entity they point to.
pub const AGENT_ID: &str = "agentId";
pub const SUBSCRIPTION_ID: &str = "subscriptionId";
pub const REFERRAL_ID: &str = "referralId";
/// On a delivery counter: how many referrals were delivered, and which.
pub const COUNT: &str = "count";
pub const REFERRALS: &str = "referrals";

/// A primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }

    /// The key as a `Key` parameter of GetItem, UpdateItem, DeleteItem.
    pub fn item(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_owned(), AttributeValue::S(self.pk.clone())),
            (SK.to_owned(), AttributeValue::S(self.sk.clone())),
        ])
    }
}

/// Milliseconds since 1970, for sort keys. Times before 1970 sort as 1970: nothing the service
/// stores is that old, and the exact time always travels in the item itself.
pub fn epoch_ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// Zero-padded to 15 digits: good until the year 33658.
fn ms15(at: Timestamp) -> String {
    format!("{:015}", epoch_ms(at))
}

// ---- referrals

pub fn referral(id: &ReferralId) -> Key {
    Key::new(format!("REF#{id}"), "REFERRAL")
}

pub const HISTORY_PREFIX: &str = "HIST#";

/// One history entry: oldest first by time, then by a monotonic ULID (entries of one call keep
/// their order).
pub fn history_entry(id: &ReferralId, at: Timestamp, seq: Ulid) -> Key {
    Key::new(
        format!("REF#{id}"),
        format!("{HISTORY_PREFIX}{}#{seq}", ms15(at)),
    )
}

/// The first history sort key at or after `at`, and one past the last of any time: the bounds
/// of a query of the entries since a moment.
pub fn history_from(at: Timestamp) -> (String, String) {
    (
        format!("{HISTORY_PREFIX}{}", ms15(at)),
        format!("{HISTORY_PREFIX}~"),
    )
}

/// How many referrals an agent was offered on one day of theirs (RC-3): its own partition, so
/// an agent's profile partition (read whole by `edit_agent`) never grows with it.
pub fn offers_on(agent: &AgentId, day: jiff::civil::Date) -> Key {
    Key::new(format!("OFFERS#{agent}#{day}"), "OFFERS")
}

/// A client's referral, by one of their contact keys (RC-4): a keyed hash, never the phone or
/// email itself; newest last, so the referrals of the past 60 days are one key range.
pub fn contact(key: &str, created_at: Timestamp, id: &ReferralId) -> Key {
    Key::new(
        contact_partition(key),
        format!("{CONTACT_PREFIX}{}#{id}", ms15(created_at)),
    )
}

/// The partition of a contact key's referrals.
pub fn contact_partition(key: &str) -> String {
    format!("CONTACT#{key}")
}

/// Where a contact key's referrals created at or after `since` start.
pub fn contact_since(since: Timestamp) -> String {
    format!("{CONTACT_PREFIX}{}", ms15(since))
}

const CONTACT_PREFIX: &str = "REF#";

/// `OwnerPK` of everything an agent owns.
pub fn owner(agent: &AgentId) -> String {
    format!("AGENT#{agent}")
}

/// `OwnerSK` of an assigned referral in its agent's list.
pub fn owned_referral(stage: Stage, id: &ReferralId) -> String {
    format!("REF#{}#{id}", stage.as_str())
}

/// The `OwnerSK` prefix of an agent's referrals, all or at one stage.
pub fn owned_referral_prefix(stage: Option<Stage>) -> String {
    match stage {
        Some(s) => format!("REF#{}#", s.as_str()),
        None => "REF#".to_owned(),
    }
}

/// `AreaPK` of the closings desk's list at one stage (In Escrow, Closed, Closed-Paid; RC-5).
pub fn desk(stage: Stage) -> String {
    format!("DESK#{}", stage.as_str())
}

/// `AreaSK` of a referral on the closings desk: in id (creation) order.
pub fn desk_referral(id: &ReferralId) -> String {
    format!("REF#{id}")
}

/// `AreaPK` of the advisors' queue (RC-2): set on an unclaimed referral's item while it is there.
pub const ADVISORS_QUEUE: &str = "QUEUE#unassigned";

/// `AreaSK` of a referral in the advisors' queue: oldest first, then by id.
pub fn queued_referral(since: Timestamp, id: &ReferralId) -> String {
    format!("{}#{id}", ms15(since))
}

/// Whether a referral at `stage` is on the closings desk.
pub fn on_desk(stage: Stage) -> bool {
    matches!(stage, Stage::InEscrow | Stage::Closed | Stage::ClosedPaid)
}

// ---- claim lines (LR-9, LR-10)

/// An agent's claim code for one referral: `#4821` is stored as `4821`, so no `#` sits inside it.
pub fn claim_code(agent: &AgentId, code: &str) -> Key {
    Key::new(
        format!("CODE#{agent}#{}", code.trim_start_matches('#')),
        "CODE",
    )
}

/// One agent's claim calls and PIN for one referral. In its own partition, so that a referral's
/// history query never reads it.
pub fn claim_calls(referral: &ReferralId, agent: &AgentId) -> Key {
    Key::new(format!("CALLS#{referral}#{agent}"), "CALLS")
}

/// The referral of an agent's latest PIN (the PIN line knows only the caller's number).
pub fn pin(agent: &AgentId) -> Key {
    Key::new(format!("PIN#{agent}"), "PIN")
}

/// The latest warm transfer an agent was alerted to (the line knows only the caller's number).
pub fn warm_transfer_line(agent: &AgentId) -> Key {
    Key::new(format!("LINE#{agent}"), "LINE")
}

/// The referral the service last texted a client about, on its agent's behalf: where the
/// client's reply goes (TX-1).
pub fn client_thread(client: &Phone) -> Key {
    Key::new(format!("THREAD#{client}"), "THREAD")
}

/// The wrong claim codes and PINs entered from one phone, counted for an hour (TX-5).
pub fn wrong_guesses(phone: &Phone) -> Key {
    Key::new(format!("GUESSES#{phone}"), "GUESSES")
}

/// When a count of wrong guesses started (epoch seconds).
pub const SINCE: &str = "since";

/// One caller's requests in one minute (TX-5): `minute` in epoch seconds.
pub fn requests(caller: &str, minute: Timestamp) -> Key {
    Key::new(format!("RATE#{caller}#{}", minute.as_second()), "RATE")
}

/// A number that texted STOP and not START since (TX-2).
pub fn opted_out(phone: &Phone) -> Key {
    Key::new(format!("OPTOUT#{phone}"), "OPTOUT")
}

// ---- agents, phones, teams

pub fn agent(id: &AgentId) -> Key {
    Key::new(format!("AGENT#{id}"), "PROFILE")
}

pub const SERVES_PREFIX: &str = "SERVES#";

/// An agent's index item for one zip they serve: keys only, so a profile is saved without
/// touching it unless its zips change; lives in the agent's partition.
pub fn agent_serves(id: &AgentId, zip: &Zip) -> Key {
    Key::new(format!("AGENT#{id}"), serving_area(zip))
}

/// `AreaPK` of the agents serving a zip (client types are read from their profiles).
pub fn serving_area(zip: &Zip) -> String {
    format!("{SERVES_PREFIX}{zip}")
}

/// `AreaSK` of an agent in a serving area.
pub fn serving_agent(id: &AgentId) -> String {
    format!("AGENT#{id}")
}

/// A verified number's one owner (TX-3).
pub fn phone(phone: &Phone) -> Key {
    Key::new(format!("PHONE#{phone}"), "PHONE")
}

/// A code texted to a number an agent says is theirs, until they type it back (TX-3).
pub fn phone_verification(agent: &AgentId, phone: &Phone) -> Key {
    Key::new(format!("VERIFY#{agent}#{phone}"), "VERIFY")
}

pub fn team(id: &TeamId) -> Key {
    Key::new(format!("TEAM#{id}"), "TEAM")
}

pub fn routing(team: &TeamId) -> Key {
    Key::new(format!("TEAM#{team}"), "ROUTING")
}

pub const LED_TEAM_PREFIX: &str = "LEADS#";

/// `OwnerSK` of a team under its lead.
pub fn led_team(id: &TeamId) -> String {
    format!("{LED_TEAM_PREFIX}{id}")
}

// ---- pay per lead

pub fn subscription(id: &SubscriptionId) -> Key {
    Key::new(format!("SUB#{id}"), "SUBSCRIPTION")
}

pub const OWNED_SUBSCRIPTION_PREFIX: &str = "SUB#";

/// `OwnerSK` of a subscription under its agent.
pub fn owned_subscription(id: &SubscriptionId) -> String {
    format!("{OWNED_SUBSCRIPTION_PREFIX}{id}")
}

/// A subscription's index item for one zip it covers: keys only.
pub fn subscription_covers(id: &SubscriptionId, zip: &Zip) -> Key {
    Key::new(format!("SUB#{id}"), coverage_area(zip))
}

/// `AreaPK` of the PPL subscriptions covering a zip (client types are read from them).
pub fn coverage_area(zip: &Zip) -> String {
    format!("PPL#{zip}")
}

/// `AreaSK` of a subscription in a coverage area.
pub fn covering_subscription(id: &SubscriptionId) -> String {
    format!("SUB#{id}")
}

pub const CHARGE_PREFIX: &str = "CHARGE#";

/// One charge per subscription and cycle (PPL-2): the key is what makes it once-only.
pub fn charge(id: &SubscriptionId, cycle: u32) -> Key {
    Key::new(format!("SUB#{id}"), format!("{CHARGE_PREFIX}{cycle:010}"))
}

/// The referrals received in one cycle, and their count (PPL-9, PPL-10).
pub fn deliveries(id: &SubscriptionId, cycle: u32) -> Key {
    Key::new(format!("SUB#{id}"), format!("DELIVERIES#{cycle:010}"))
}

// ---- due work

fn kind(kind: DueKind) -> &'static str {
    match kind {
        DueKind::Reminder => "reminder",
        DueKind::Billing => "billing",
    }
}

/// The record holding when `key`'s work of `kind` falls due.
pub fn due(k: DueKind, key: &str) -> Key {
    Key::new(format!("DUE#{}#{key}", kind(k)), "DUE")
}

/// `DuePK`: one partition per kind of work.
pub fn due_partition(k: DueKind) -> String {
    format!("DUE#{}", kind(k))
}

/// `DueSK`: the due time in zero-padded epoch milliseconds, then the key (unique per kind).
pub fn due_sort(at: Timestamp, key: &str) -> String {
    format!("{}#{key}", ms15(at))
}

/// The exclusive upper bound of `DueSK` for work due at or before `now`: `$` sorts right after
/// `#`, so every `<now-ms>#<key>` is below it and every later millisecond above it.
pub fn due_upper_bound(now: Timestamp) -> String {
    format!("{}$", ms15(now))
}

// ---- idempotency

pub fn once(key: &str) -> Key {
    Key::new(format!("ONCE#{key}"), "ONCE")
}

/// On a once-only record: `in_progress` while an attempt holds its lease, then `done`.
pub const STATE: &str = "state";
/// Epoch seconds until which an attempt in progress holds a once-only record.
pub const LEASE_UNTIL: &str = "leaseUntil";

// ---- the outbox (EF-1)

/// The sort key of every outbox item: the table's stream is filtered on it.
pub const EFFECTS_SK: &str = "EFFECTS";

/// The effects one change owes, committed with it (`effects::Effects`, keyed by `effects::key`).
pub fn effects(key: &str) -> Key {
    Key::new(format!("FX#{key}"), EFFECTS_SK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ef_1_an_outbox_item_is_found_by_its_sort_key() {
        let k = effects("created#r1");
        assert_eq!((k.pk.as_str(), k.sk.as_str()), ("FX#created#r1", "EFFECTS"));
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn entity_keys_have_their_documented_formats() {
        let r: ReferralId = "r1".parse().unwrap();
        let a: AgentId = "a-1".parse().unwrap();
        let t: TeamId = "t1".parse().unwrap();
        let s: SubscriptionId = "s1".parse().unwrap();
        let zip: Zip = "94110".parse().unwrap();
        assert_eq!(referral(&r), Key::new("REF#r1", "REFERRAL"));
        assert_eq!(agent(&a), Key::new("AGENT#a-1", "PROFILE"));
        assert_eq!(
            agent_serves(&a, &zip),
            Key::new("AGENT#a-1", "SERVES#94110")
        );
        assert_eq!(serving_area(&zip), "SERVES#94110");
        assert_eq!(serving_agent(&a), "AGENT#a-1");
        assert_eq!(
            phone(&"+14155550100".parse().unwrap()),
            Key::new("PHONE#+14155550100", "PHONE")
        );
        assert_eq!(team(&t), Key::new("TEAM#t1", "TEAM"));
        assert_eq!(routing(&t), Key::new("TEAM#t1", "ROUTING"));
        assert_eq!(led_team(&t), "LEADS#t1");
        assert_eq!(owner(&a), "AGENT#a-1");
        assert_eq!(subscription(&s), Key::new("SUB#s1", "SUBSCRIPTION"));
        assert_eq!(owned_subscription(&s), "SUB#s1");
        assert_eq!(
            subscription_covers(&s, &zip),
            Key::new("SUB#s1", "PPL#94110")
        );
        assert_eq!(covering_subscription(&s), "SUB#s1");
        assert_eq!(once("sms:r1:a1"), Key::new("ONCE#sms:r1:a1", "ONCE"));
        assert_eq!(claim_code(&a, "#0042"), Key::new("CODE#a-1#0042", "CODE"));
        assert_eq!(claim_calls(&r, &a), Key::new("CALLS#r1#a-1", "CALLS"));
        assert_eq!(pin(&a), Key::new("PIN#a-1", "PIN"));
        assert_eq!(warm_transfer_line(&a), Key::new("LINE#a-1", "LINE"));
        let p: Phone = "+14155550100".parse().unwrap();
        assert_eq!(
            wrong_guesses(&p),
            Key::new("GUESSES#+14155550100", "GUESSES")
        );
        assert_eq!(opted_out(&p), Key::new("OPTOUT#+14155550100", "OPTOUT"));
        assert_eq!(
            requests("user#a-1", at("2026-03-02T17:01:00Z")),
            Key::new("RATE#user#a-1#1772470860", "RATE")
        );
    }

    #[test]
    fn key_item_carries_both_key_attributes() {
        let item = referral(&"r9".parse().unwrap()).item();
        assert_eq!(item.len(), 2);
        assert_eq!(item[PK], AttributeValue::S("REF#r9".into()));
        assert_eq!(item[SK], AttributeValue::S("REFERRAL".into()));
    }

    #[test]
    fn lr_1_agent_list_keys_filter_by_stage_with_a_prefix() {
        let r: ReferralId = "r1".parse().unwrap();
        let sk = owned_referral(Stage::InEscrow, &r);
        assert_eq!(sk, "REF#in_escrow#r1");
        assert!(sk.starts_with(&owned_referral_prefix(Some(Stage::InEscrow))));
        assert!(sk.starts_with(&owned_referral_prefix(None)));
        // No stage's prefix is a prefix of another stage's keys.
        for a in Stage::ALL {
            for b in Stage::ALL {
                let key = owned_referral(b, &r);
                assert_eq!(key.starts_with(&owned_referral_prefix(Some(a))), a == b);
            }
        }
        // A team or subscription under the same owner never matches the referral prefix.
        assert!(!led_team(&"t1".parse().unwrap()).starts_with(&owned_referral_prefix(None)));
        assert!(
            !owned_subscription(&"s1".parse().unwrap()).starts_with(&owned_referral_prefix(None))
        );
    }

    #[test]
    fn rc_1_history_since_a_moment_bounds_only_the_later_entries() {
        let r: ReferralId = "r1".parse().unwrap();
        let (from, to) = history_from(at("2026-01-01T00:00:00.500Z"));
        let entry = |t: &str| history_entry(&r, at(t), Ulid::from_parts(1, 1)).sk;
        assert!(entry("2026-01-01T00:00:00.499Z") < from);
        for t in ["2026-01-01T00:00:00.500Z", "2099-12-31T23:59:59Z"] {
            let sk = entry(t);
            assert!(from <= sk && sk < to, "{sk}");
        }
        assert!(to < referral(&r).sk, "the referral item itself is not read");
    }

    #[test]
    fn gen_2_history_keys_sort_oldest_first() {
        let r: ReferralId = "r1".parse().unwrap();
        let early = history_entry(&r, at("2026-01-01T00:00:00Z"), Ulid::from_parts(9, 9));
        let late = history_entry(&r, at("2026-01-01T00:00:00.001Z"), Ulid::from_parts(1, 1));
        assert_eq!(early.pk, "REF#r1");
        assert!(early.sk.starts_with(HISTORY_PREFIX));
        assert!(early.sk < late.sk, "{} < {}", early.sk, late.sk);
        // Years apart, digits of different lengths still sort by time.
        let y2001 = history_entry(&r, at("2001-09-09T01:46:40Z"), Ulid::nil());
        let y1999 = history_entry(&r, at("1999-01-01T00:00:00Z"), Ulid::nil());
        assert!(y1999.sk < y2001.sk);
        // Same millisecond: the sequence decides.
        let t = at("2026-01-01T00:00:00Z");
        assert!(
            history_entry(&r, t, Ulid::from_parts(5, 1)).sk
                < history_entry(&r, t, Ulid::from_parts(5, 2)).sk
        );
    }

    #[test]
    fn billing_and_reminders_due_keys_sort_by_time_and_bound_now() {
        let now = at("2026-03-01T12:00:00Z");
        assert_eq!(due_partition(DueKind::Billing), "DUE#billing");
        assert_eq!(due_partition(DueKind::Reminder), "DUE#reminder");
        assert_eq!(
            due(DueKind::Billing, "s1"),
            Key::new("DUE#billing#s1", "DUE")
        );
        assert_eq!(due_sort(now, "s1"), "001772366400000#s1");
        let bound = due_upper_bound(now);
        // Due at now (whatever the key) is inside; a millisecond later is outside.
        assert!(due_sort(now, "zzzz~~") < bound);
        assert!(due_sort(at("2026-03-01T11:59:59.999Z"), "a") < bound);
        assert!(due_sort(at("2026-03-01T12:00:00.001Z"), "") > bound);
        assert!(due_sort(at("2020-01-01T00:00:00Z"), "z") < due_sort(now, "a"));
    }

    #[test]
    fn times_before_1970_sort_first() {
        assert_eq!(epoch_ms(at("1969-12-31T23:59:59Z")), 0);
        assert_eq!(epoch_ms(at("1970-01-01T00:00:01Z")), 1000);
    }

    #[test]
    fn ppl_2_charge_and_delivery_keys_are_per_cycle() {
        let s: SubscriptionId = "s1".parse().unwrap();
        assert_eq!(charge(&s, 3), Key::new("SUB#s1", "CHARGE#0000000003"));
        assert!(charge(&s, 9).sk < charge(&s, 10).sk);
        assert!(charge(&s, 1).sk.starts_with(CHARGE_PREFIX));
        assert_eq!(
            deliveries(&s, 2),
            Key::new("SUB#s1", "DELIVERIES#0000000002")
        );
        assert_ne!(deliveries(&s, 2), deliveries(&s, 3));
    }

    #[test]
    fn offers_on_is_per_agent_and_day() {
        let a: AgentId = "a-1".parse().unwrap();
        assert_eq!(
            offers_on(&a, jiff::civil::date(2026, 12, 1)),
            Key::new("OFFERS#a-1#2026-12-01", "OFFERS")
        );
    }

    #[test]
    fn the_advisors_queue_sorts_by_time_then_id() {
        let a: ReferralId = "r-b".parse().unwrap();
        let b: ReferralId = "r-a".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-01-01T00:00:01Z".parse().unwrap();
        assert_eq!(queued_referral(t1, &a), "001767225600000#r-b");
        assert!(queued_referral(t1, &a) < queued_referral(t2, &b));
    }

    #[test]
    fn rc_4_a_contact_keys_referrals_sort_by_creation_from_the_window_start() {
        let id: ReferralId = "r-1".parse().unwrap();
        let t1: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let key = contact("ab12", t1, &id);
        assert_eq!(key.pk, "CONTACT#ab12");
        assert_eq!(key.sk, "REF#001767225600000#r-1");
        assert!(key.sk >= contact_since(t1));
        assert!(key.sk < contact_since(t1 + jiff::SignedDuration::from_millis(1)));
    }
}
