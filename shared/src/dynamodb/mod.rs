//! The DynamoDB adapter: every storage port on one table (`ReferralTable` in
//! `infra/template.yaml`).
//!
//! # Keys
//!
//! | entity | PK | SK | index attributes |
//! |---|---|---|---|
//! | referral | `REF#<id>` | `REFERRAL` | `OwnerPK` `AGENT#<agent>`, `OwnerSK` `REF#<stage>#<id>` once assigned; in escrow, closed or closed-paid also `AreaPK` `DESK#<stage>`, `AreaSK` `REF#<id>` (the closings desk); unclaimed and in the advisors' queue `AreaPK` `QUEUE#unassigned`, `AreaSK` `<epoch-ms, 15 digits>#<id>` (removed by the claim); `version` |
//! | history entry | `REF#<id>` | `HIST#<epoch-ms, 15 digits>#<ulid>` | |
//! | agent profile | `AGENT#<id>` | `PROFILE` | `version` |
//! | agent serves | `AGENT#<id>` | `SERVES#<zip>#<type>` | `AreaPK` `SERVES#<zip>#<type>`, `AreaSK` `AGENT#<id>`; a copy of the profile |
//! | phone (verified) | `PHONE#<e164>` | `PHONE` | `agentId`: the number's one owner (TX-3) |
//! | phone verification | `VERIFY#<agent>#<e164>` | `VERIFY` | the code, its expiry and wrong tries; `expiresAt` (the table's TTL) |
//! | team | `TEAM#<id>` | `TEAM` | `OwnerPK` `AGENT#<lead>`, `OwnerSK` `LEADS#<id>` |
//! | routing settings | `TEAM#<id>` | `ROUTING` | |
//! | subscription | `SUB#<id>` | `SUBSCRIPTION` | `OwnerPK` `AGENT#<agent>`, `OwnerSK` `SUB#<id>` |
//! | subscription covers | `SUB#<id>` | `PPL#<zip>` | `AreaPK` `PPL#<zip>`, `AreaSK` `SUB#<id>`; keys only |
//! | charge | `SUB#<id>` | `CHARGE#<cycle, 10 digits>` | |
//! | received in a cycle | `SUB#<id>` | `DELIVERIES#<cycle, 10 digits>` | `count`, `referrals` (string set): the referrals claimed in the cycle, less those returned |
//! | due record | `DUE#<kind>#<key>` | `DUE` | `DuePK` `DUE#<kind>`, `DueSK` `<epoch-ms, 15 digits>#<key>`; `dueKey`, `dueAt` |
//! | idempotency record | `ONCE#<key>` | `ONCE` | `state` (`in_progress`, `done`), `leaseUntil`, `expiresAt` (epoch seconds, the table's TTL) |
//! | outbox item (EF-1) | `FX#<key>` | `EFFECTS` | the `effects::Effects` a change owes; `expiresAt` (30 days); the stream delivers it to the outbox function |
//! | claim code | `CODE#<agent>#<digits>` | `CODE` | `referralId`, `expiresAt` |
//! | client contact (RC-4) | `CONTACT#<keyed hash of the phone or email>` | `REF#<epoch-ms, 15 digits>#<referral>` | `referralId`; `expiresAt` (60 days after the referral was created); never the contact itself |
//! | offers on a day (RC-3) | `OFFERS#<agent>#<local date>` | `OFFERS` | `count`; `expiresAt` (3 days after the date) |
//! | claim calls | `CALLS#<referral>#<agent>` | `CALLS` | the calls and PIN; `version` |
//! | PIN line | `PIN#<agent>` | `PIN` | `referralId` of the agent's latest PIN |
//! | warm-transfer line | `LINE#<agent>` | `LINE` | `referralId` of the latest warm transfer the agent was alerted to |
//! | client thread | `THREAD#<client e164>` | `THREAD` | `referralId` the service last texted the client about (TX-1) |
//! | wrong guesses | `GUESSES#<phone e164>` | `GUESSES` | `count`, `since` (epoch s), `expiresAt` an hour after `since` (TX-5) |
//! | opt-out | `OPTOUT#<phone e164>` | `OPTOUT` | present while the number is opted out of texts (TX-2) |
//! | request count | `RATE#<caller>#<minute epoch s>` | `RATE` | `count`, `expiresAt` two minutes after the minute (TX-5) |
//!
//! Entities are stored with `serde_dynamo` (their own camelCase fields) plus the attributes above;
//! [`keys`] builds every key. A subscription's coverage items are keys only: `subscriptions_covering`
//! reads each subscription, which decides (a zip dropped by a change leaves its item behind,
//! PPL-12). An agent's serving items carry a copy
//! of the profile too, rewritten with it in one transaction by `edit_agent` (which settings
//! changes and recorded response times go through), so `agents_serving` (a warm transfer's first
//! step) is one query.
//!
//! # Access patterns
//!
//! | pattern | index | key condition | caller |
//! |---|---|---|---|
//! | get a referral (with version) | table | `PK = REF#<id>, SK = REFERRAL` (strongly consistent) | `get_referral` |
//! | create a referral once | table | Put `attribute_not_exists(PK)` + history Puts + claim-code Puts `attribute_not_exists(PK) OR expiresAt < :now` + for each capped member Update `OFFERS#<agent>#<date>` ADD `count` if `attribute_not_exists(count) OR count < :cap` + the client's two `CONTACT#` Puts (+ warm-transfer line Puts), one transaction | `create_referral` |
//! | a client's referrals of the past 60 days (RC-4) | table | `PK = CONTACT#<key>, SK >= REF#<now - 60 days>`, newest first, one query per contact key (phone, email) | `referrals_by_contact` |
//! | re-offer a queued referral once (RC-2) | table | versioned Put of the queued `REF#<id>` (out of the queue, closed) + its history Put + the new referral's creation writes, one transaction | `update_with_children` |
//! | capped members' offers today (RC-3) | table | BatchGetItem `OFFERS#<agent>#<date>` (only members with a cap) | `offers_on` |
//! | claim (first wins, loser learns winner) | table | one UpdateItem of `REF#<id>` on the claim conditions; the assignment it writes is the won attempt's history entry; `ALL_OLD` on failure | `claim` |
//! | versioned update + history | table | Put `version = :expected` + history Puts, one transaction | `update_referral` |
//! | a referral's history, oldest first | table | `PK = REF#<id>` (the history items and the referral's assignment) | `history`, `append_history` |
//! | the closings desk at one stage (In Escrow, Closed, Closed-Paid), in id order | `AreaIndex` | `AreaPK = DESK#<stage>, AreaSK > REF#<after>` (set on the referral item at those stages) | `desk_referrals` |
//! | the advisors' queue, oldest first (RC-2) | `AreaIndex` | `AreaPK = QUEUE#unassigned, AreaSK > <after>` | `unassigned_referrals` |
//! | an agent's referrals, by stage | `OwnerIndex` | `OwnerPK = AGENT#<id>, begins_with(OwnerSK, REF#[<stage>#])` | `agent_referrals` |
//! | teams an agent leads | `OwnerIndex` | `OwnerPK = AGENT#<id>, begins_with(OwnerSK, LEADS#)` | `teams_led_by` |
//! | an agent's subscriptions | `OwnerIndex` | `OwnerPK = AGENT#<id>, begins_with(OwnerSK, SUB#)` | `subscriptions_of` |
//! | agents eligible by zip and client type (profile copies) | `AreaIndex` | `AreaPK = SERVES#<zip>#<type>` | `agents_serving` |
//! | PPL subscriptions by zip and client type | `AreaIndex` | `AreaPK = PPL#<zip>#<type>` | `subscriptions_covering` |
//! | an agent by id(s) | table | `PK = AGENT#<id>, SK = PROFILE` (BatchGetItem for many) | `get_agent`, `get_agents` |
//! | an agent's profile and index items | table | `PK = AGENT#<id>`, then the profile Put on `version = :read` (or `attribute_not_exists(PK)`); zips gained and dropped by batch, numbers dropped released (Delete `PHONE#` if `agentId = :agent`) | `edit_agent` |
//! | an agent by verified phone | table | `PK = PHONE#<e164>, SK = PHONE` | `agent_by_phone` |
//! | a pending phone verification | table | `PK = VERIFY#<agent>#<e164>, SK = VERIFY`; saved with the text of its code (one transaction) | `phone_verification`, `save_phone_verification` |
//! | a number's one owner | table | Put `PHONE#<e164>` if `attribute_not_exists(PK) OR agentId = :agent` + Delete `VERIFY#...`, one transaction | `take_phone` |
//! | a team, its routing | table | `PK = TEAM#<id>, SK = TEAM / ROUTING` | `get_team`, `get_routing` |
//! | a subscription, its charges | table | `PK = SUB#<id>, SK = SUBSCRIPTION / begins_with(SK, CHARGE#)` | `get_subscription`, `charges` |
//! | charge once per cycle | table | Put `SUB#<id>, CHARGE#<cycle>` with `attribute_not_exists(PK)` | `record_charge` |
//! | PPL claim: the claim and its count under quota, once | table | the claim's Update of `REF#<id>` (its conditions) + Update `SUB#<id>, DELIVERIES#<cycle>` ADD `count`, `referrals` if under `:quota` and `NOT contains(referrals, :id)`, one transaction | `claim_counted` |
//! | the referrals received in a cycle | table | `PK = SUB#<id>, SK = DELIVERIES#<cycle>` | `received` |
//! | return a PPL referral | table | versioned Put of `REF#<id>` + Update `DELIVERIES#<cycle>` DELETE `referrals` ADD `count` -1 if it `contains(referrals, :id)` + history Puts, one transaction | `return_referral` |
//! | change or cancel a subscription | table | Put `SUB#<id>, SUBSCRIPTION` + keys-only coverage Puts of new zips (old ones filtered on read) | `save_subscription` |
//! | work due by now (billing, reminders) | `DueIndex` (sparse) | `DuePK = DUE#<kind>, DueSK < <now-ms>$` | `due`, `due_with_capacity` |
//! | move a due time once | table | Update/Delete `DUE#<kind>#<key>` if `dueAt = :from` | `advance_due` |
//! | the referral of an agent's claim code | table | `PK = CODE#<agent>#<digits>, SK = CODE` | `code_referral` |
//! | an agent's claim calls for a referral | table | `PK = CALLS#<referral>#<agent>, SK = CALLS`; saved with `version = :expected` and the `PIN#<agent>` Put, one transaction | `claim_calls`, `save_claim_calls` |
//! | the referral of an agent's PIN | table | `PK = PIN#<agent>, SK = PIN` | `pin_referral` |
//! | where a client's text goes | table | `PK = THREAD#<e164>, SK = THREAD` (put before each relayed text) | `client_thread`, `set_client_thread` |
//! | a phone's wrong codes and PINs | table | `PK = GUESSES#<e164>, SK = GUESSES`: `ADD count` if `since > now - 1h`, else a put if absent or older | `wrong_guesses`, `count_wrong_guess` |
//! | whether a number opted out | table | `PK = OPTOUT#<e164>, SK = OPTOUT` (put on STOP, deleted on START) | `opted_out`, `set_opted_out` |
//! | a caller's requests this minute | table | `PK = RATE#<caller>#<minute>, SK = RATE`: `ADD count` | `count_request` |
//! | the warm transfer an agent dials into | table | `PK = LINE#<agent>, SK = LINE` (put with the referral) | `warm_transfer_of` |
//! | take a once-only effect | table | Put `ONCE#<key>` in progress with a lease if `attribute_not_exists(PK) OR expiresAt < :now OR (state = in_progress AND leaseUntil < :now)`; `ALL_OLD` on failure says done or held | `begin` |
//! | finish a once-only effect | table | Put `ONCE#<key>` done + its history Puts, one transaction | `finish` |
//! | let a failed effect go | table | Delete `ONCE#<key>` | `abandon` |
//! | commit effects once | table | Put `FX#<key>` if `attribute_not_exists(PK)`, in the transaction of the change that owes them | `effects_write`, `commit_effects` |
//!
//! No operation scans the table. Global secondary indexes are eventually consistent on AWS: a
//! list read right after a write may miss it for a moment; everything that decides a race reads
//! or conditions on the table itself.

mod agents;
mod due;
pub mod error;
pub mod keys;
mod lines;
mod referrals;
mod subscriptions;
pub mod table;

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, WriteRequest};
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use due::DueScan;
use error::{Contended, condition_failed, internal, store_error};
use keys::Key;

use crate::domain::referral::HistoryEntry;
use crate::domain::values::ReferralId;
use crate::effects::Effects;
use crate::ports::{Begun, EffectStore, Idempotency, StoreError};

/// One item, as the SDK carries it.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Every storage port on one DynamoDB table. Build the client once (in `main`) and pass it in.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: Client,
    table: String,
}

impl DynamoDbStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// A strongly consistent read of one item.
    async fn get_item(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key.item()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }

    /// Writes an item, replacing any with its key.
    async fn put_item(&self, item: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    /// Writes an item only if none has its key; false when one does.
    async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(store_error("PutItem", e)),
        }
    }

    /// Every page of a query.
    async fn query_all(&self, query: QueryFluentBuilder) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// BatchWriteItem in chunks of 25, resending what DynamoDB leaves unprocessed (with a short
    /// back-off: unprocessed items are how a batch reports throttling).
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        const BATCH: usize = 25;
        const ATTEMPTS: u32 = 8;
        for chunk in requests.chunks(BATCH) {
            let mut pending = chunk.to_vec();
            for attempt in 0.. {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt + 1 == ATTEMPTS {
                    return Err(StoreError::Retryable(Box::new(Contended("BatchWriteItem"))));
                }
                tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
            }
        }
        Ok(())
    }

    /// A query of one partition of an index (or the table), optionally by sort-key prefix.
    fn query_prefix(
        &self,
        index: Option<(&str, &str, &str)>,
        pk: String,
        sk_prefix: Option<String>,
    ) -> QueryFluentBuilder {
        let (index_name, pk_name, sk_name) = match index {
            Some((i, p, s)) => (Some(i.to_owned()), p, s),
            None => (None, keys::PK, keys::SK),
        };
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name(index_name.clone())
            // Only the table itself can be read strongly consistent.
            .consistent_read(index_name.is_none())
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(pk));
        q = match sk_prefix {
            Some(prefix) => q
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", sk_name)
                .expression_attribute_values(":prefix", s(prefix)),
            None => q.key_condition_expression("#pk = :pk"),
        };
        q
    }
}

/// An entity as an item: its own fields (serde_dynamo) plus its key.
fn entity_item<T: Serialize>(key: &Key, value: &T) -> Result<Item, StoreError> {
    let mut item: Item = serde_dynamo::to_item(value).map_err(internal)?;
    item.extend(key.item());
    Ok(item)
}

/// An entity from an item; the key and index attributes beside its fields are ignored.
fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_attribute<T: Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(value).map_err(internal)
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// A number attribute the adapter maintains (`version`, `count`).
fn number<T: FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks a numeric `{name}`")))
}

/// A string attribute the adapter maintains (`agentId`, `dueKey`).
fn string<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks a string `{name}`")))
}

/// How long an outbox item is kept: longer than any redelivery of the stream, a queue or the
/// bus, so a retried change finds its effects committed and commits nothing twice.
const EFFECTS_KEPT: SignedDuration = SignedDuration::from_hours(24 * 30);

impl DynamoDbStore {
    /// The outbox item of `effects` as a transaction's put, only if its key is new; `None` when
    /// there is nothing to commit.
    pub(crate) fn effects_write(
        &self,
        effects: &Effects,
    ) -> Result<Option<TransactWriteItem>, StoreError> {
        if effects.is_empty() {
            return Ok(None);
        }
        let mut item = entity_item(&keys::effects(&effects.key), effects)?;
        // Kept by the wall clock, as the TTL that removes it runs on it.
        let expires = Timestamp::now() + EFFECTS_KEPT;
        item.insert(keys::EXPIRES_AT.to_owned(), n(expires.as_second()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(internal)?;
        Ok(Some(TransactWriteItem::builder().put(put).build()))
    }
}

impl DynamoDbStore {
    /// The outbox item committed under `key`, as the stream delivers it (for tools and tests).
    pub async fn effects(&self, key: &str) -> Result<Option<Effects>, StoreError> {
        self.get_item(&keys::effects(key))
            .await?
            .map(from_item)
            .transpose()
    }
}

#[async_trait]
impl EffectStore for DynamoDbStore {
    async fn commit_effects(&self, effects: &Effects) -> Result<bool, StoreError> {
        let Some(write) = self.effects_write(effects)? else {
            return Ok(true);
        };
        match self.transact(vec![write]).await {
            Ok(()) => Ok(true),
            Err(e) if error::cancelled_by_condition(&e, 0).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }
}

#[async_trait]
impl Idempotency for DynamoDbStore {
    /// A conditional put of the record in progress. An expired record counts as absent whether
    /// or not DynamoDB's TTL sweeper has deleted it yet (on AWS that takes up to days), and a
    /// record in progress whose lease ran out is taken over. "Now" is this process's clock: the
    /// TTL and the retries that recover a lease run on wall-clock time too.
    async fn begin(&self, key: &str, lease: SignedDuration) -> Result<Begun, StoreError> {
        let now = Timestamp::now();
        let until = now + lease;
        let mut item = keys::once(key).item();
        item.insert(keys::STATE.to_owned(), s(IN_PROGRESS));
        item.insert(keys::LEASE_UNTIL.to_owned(), n(until.as_second()));
        // An attempt in progress expires with its lease, so that nothing waits for the TTL.
        item.insert(keys::EXPIRES_AT.to_owned(), n(until.as_second()));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(#pk) OR #expires < :now \
                 OR (#state = :inProgress AND #lease < :now)",
            )
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#expires", keys::EXPIRES_AT)
            .expression_attribute_names("#state", keys::STATE)
            .expression_attribute_names("#lease", keys::LEASE_UNTIL)
            .expression_attribute_values(":now", n(now.as_second()))
            .expression_attribute_values(":inProgress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Begun::First),
            Err(e) => {
                let held = match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => return Err(store_error("PutItem", e)),
                };
                // Records written before leases existed carry no state: they were done.
                let in_progress = held
                    .as_ref()
                    .and_then(|i| i.get(keys::STATE))
                    .and_then(|v| v.as_s().ok())
                    .is_some_and(|v| v == IN_PROGRESS);
                Ok(if in_progress {
                    Begun::InProgress
                } else {
                    Begun::Done
                })
            }
        }
    }

    async fn finish(
        &self,
        key: &str,
        keep: SignedDuration,
        referral: Option<&ReferralId>,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let mut item = keys::once(key).item();
        item.insert(keys::STATE.to_owned(), s(DONE));
        item.insert(
            keys::EXPIRES_AT.to_owned(),
            n((Timestamp::now() + keep).as_second()),
        );
        let mut writes = vec![self.put_write(item)?];
        if let Some(id) = referral {
            writes.extend(self.history_puts(id, entries)?);
        }
        self.transact(writes)
            .await
            .map_err(|e| store_error("TransactWriteItems", e))
    }

    async fn abandon(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::once(key).item()))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }
}

const IN_PROGRESS: &str = "in_progress";
const DONE: &str = "done";
