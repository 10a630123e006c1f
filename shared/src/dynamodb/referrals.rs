//! Referrals, their history, and the claim race.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, PutRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update, WriteRequest,
};
use jiff::Timestamp;
use jiff::civil::Date;
use ulid::{Generator, Ulid};

use super::error::{
    self, SdkResult, cancelled_by_any_condition, cancelled_by_condition, internal, store_error,
};
use super::keys;
use super::{DynamoDbStore, Item, entity_item, from_item, n, number, s, to_attribute};
use crate::domain::claim::{CODE_LIFETIME, ClaimRefusal, check_claim};
use crate::domain::referral::{
    Assignment, ClaimChannel, HistoryEntry, Program, Referral, with_won_claim,
};
use crate::domain::stage::{Pipeline, Stage};
use crate::domain::values::{AgentId, ReferralId};
use crate::effects::Effects;
use crate::ports::{
    ClaimOutcome, Created, Creation, QuotaPlace, ReferralStore, Saved, Spawned, StoreError,
    Versioned,
};

/// A new referral's first version.
const FIRST_VERSION: u64 = 1;

/// The referral's own field names, as serde writes them (checked by a test below).
const ASSIGNMENT: &str = "assignment";
const PIPELINE: &str = "pipeline";
const CLOSURE: &str = "closure";
const OFFERS: &str = "offers";
const DECLINED: &str = "declined";
const CALL_FIRST: &str = "callFirst";
const PROGRAM: &str = "program";
const PPL: &str = "ppl";
/// The response deadline as epoch milliseconds, beside the referral's own fields: a condition
/// compares numbers, not timestamps as text.
const RESPOND_BY_MS: &str = "respondByMs";
/// The most referrals of one contact key read to find a duplicate (RC-4).
const CONTACT_MATCHES: i32 = 20;

/// History sort keys end in a ULID from one monotonic generator, so entries written in the same
/// millisecond by this process keep the order they were given in.
fn next_sequence() -> Ulid {
    static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());
    let mut generator = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

fn history_item(id: &ReferralId, entry: &HistoryEntry) -> Result<Item, StoreError> {
    entity_item(&keys::history_entry(id, entry.at, next_sequence()), entry)
}

fn put(table: &str, item: Item) -> Result<Put, StoreError> {
    Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()
        .map_err(internal)
}

/// The referral item: its fields, its version, and its place in the agent's list once assigned.
fn referral_item(referral: &Referral, version: u64) -> Result<Item, StoreError> {
    let mut item = entity_item(&keys::referral(&referral.id), referral)?;
    item.insert(keys::VERSION.to_owned(), n(version));
    if let Some(deadline) = referral.respond_by {
        item.insert(RESPOND_BY_MS.to_owned(), n(keys::epoch_ms(deadline)));
    }
    if let (Some(agent), Some(stage)) = (referral.assigned_agent(), referral.stage()) {
        item.insert(keys::OWNER_PK.to_owned(), s(keys::owner(agent)));
        item.insert(
            keys::OWNER_SK.to_owned(),
            s(keys::owned_referral(stage, &referral.id)),
        );
        // On the closings desk while in escrow or closed; a referral put back leaves it.
        // (An assigned referral is never in the advisors' queue, so the two never share AreaPK.)
        if keys::on_desk(stage) {
            item.insert(keys::AREA_PK.to_owned(), s(keys::desk(stage)));
            item.insert(
                keys::AREA_SK.to_owned(),
                s(keys::desk_referral(&referral.id)),
            );
        }
    }
    if let (None, Some(since)) = (&referral.assigned, referral.unassigned_since) {
        item.insert(keys::AREA_PK.to_owned(), s(keys::ADVISORS_QUEUE));
        item.insert(
            keys::AREA_SK.to_owned(),
            s(keys::queued_referral(since, &referral.id)),
        );
    }
    Ok(item)
}

/// A single-item update as one item of a transaction, returning the old item when its condition
/// fails, as the update alone would.
fn transact_update(
    table: &str,
    update: UpdateItemFluentBuilder,
) -> Result<TransactWriteItem, StoreError> {
    let input = update.as_input();
    let update = Update::builder()
        .table_name(table)
        .set_key(input.get_key().clone())
        .set_update_expression(input.get_update_expression().clone())
        .set_condition_expression(input.get_condition_expression().clone())
        .set_expression_attribute_names(input.get_expression_attribute_names().clone())
        .set_expression_attribute_values(input.get_expression_attribute_values().clone())
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
        .build()
        .map_err(internal)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// When a day counter may go: two days after the day's end, so no zone still counts in it.
fn expires_after_day(day: Date) -> i64 {
    day.saturating_add(jiff::Span::new().days(3))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .map_or(0, |z| z.timestamp().as_second())
}

/// The writes of one referral's creation and where their telling conditions sit.
struct CreationWrites {
    writes: Vec<TransactWriteItem>,
    codes: Vec<usize>,
    /// The daily-cap counters' updates (RC-3).
    caps: Vec<usize>,
    outbox: Option<usize>,
}

impl DynamoDbStore {
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> SdkResult<TransactWriteItemsError> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
    }

    /// The referral replaced, only if still at `expected_version`.
    fn versioned_put(
        &self,
        referral: &Referral,
        expected_version: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let replace = Put::builder()
            .table_name(&self.table)
            .set_item(Some(referral_item(referral, expected_version + 1)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", keys::VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(replace).build())
    }

    pub(super) fn history_puts(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        entries
            .iter()
            .map(|e| {
                Ok(TransactWriteItem::builder()
                    .put(put(&self.table, history_item(id, e)?)?)
                    .build())
            })
            .collect()
    }

    /// The writes that create a referral: the referral (only if new), its claim codes (only if
    /// free), the warm-transfer line pointers, its history and its outbox item (only if new), with
    /// the positions of the conditions that mean "code in use" and "effects committed".
    fn creation_writes(
        &self,
        referral: &Referral,
        history: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<CreationWrites, StoreError> {
        let create = Put::builder()
            .table_name(&self.table)
            .set_item(Some(referral_item(referral, FIRST_VERSION)?))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(internal)?;
        let mut writes = vec![TransactWriteItem::builder().put(create).build()];
        // A code is free when nobody holds it or its holder's offer has expired (TTL deletes
        // expired items only eventually).
        let expires = referral.created_at + CODE_LIFETIME;
        for (agent, code) in &referral.codes {
            let mut item = keys::claim_code(agent, code).item();
            item.insert(keys::REFERRAL_ID.to_owned(), s(referral.id.as_str()));
            item.insert(keys::EXPIRES_AT.to_owned(), n(expires.as_second()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk) OR #expires < :now")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#expires", keys::EXPIRES_AT)
                .expression_attribute_values(":now", n(referral.created_at.as_second()))
                .build()
                .map_err(internal)?;
            writes.push(TransactWriteItem::builder().put(put).build());
        }
        let codes = (1..=referral.codes.len()).collect();
        let mut caps = Vec::new();
        for offer in &referral.capped_offers {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(keys::offers_on(&offer.agent_id, offer.day).item()))
                .update_expression("ADD #count :one SET #expires = :expires")
                .condition_expression("attribute_not_exists(#count) OR #count < :cap")
                .expression_attribute_names("#count", keys::COUNT)
                .expression_attribute_names("#expires", keys::EXPIRES_AT)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":cap", n(offer.cap))
                // Kept two days past the day it counts, whatever the agent's zone.
                .expression_attribute_values(":expires", n(expires_after_day(offer.day)))
                .build()
                .map_err(internal)?;
            caps.push(writes.len());
            writes.push(TransactWriteItem::builder().update(update).build());
        }
        // The client's referral, found by either contact key for 60 days (RC-4).
        for contact in &referral.contact_keys {
            let mut item = keys::contact(contact, referral.created_at, &referral.id).item();
            item.insert(keys::REFERRAL_ID.to_owned(), s(referral.id.as_str()));
            let until = referral.created_at + crate::domain::contact::DUPLICATE_WINDOW;
            item.insert(keys::EXPIRES_AT.to_owned(), n(until.as_second()));
            writes.push(self.put_write(item)?);
        }
        if referral.warm_transfer.is_some() {
            for agent in referral.offers.keys() {
                let mut line = keys::warm_transfer_line(agent).item();
                line.insert(keys::REFERRAL_ID.to_owned(), s(referral.id.as_str()));
                writes.push(self.put_write(line)?);
            }
        }
        writes.extend(self.history_puts(&referral.id, history)?);
        let outbox = (!effects.is_empty()).then_some(writes.len());
        writes.extend(self.effects_write(effects)?);
        Ok(CreationWrites {
            writes,
            codes,
            caps,
            outbox,
        })
    }

    /// The claim's update: assigned, at Left Voicemail, one version on, in the agent's list; only
    /// if the referral exists, is neither assigned nor closed, was offered to this agent and not
    /// declined by them (the conditions of `domain::claim::check_claim`).
    fn claim_update(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
        counted: bool,
    ) -> Result<UpdateItemFluentBuilder, StoreError> {
        let assignment = Assignment {
            agent_id: agent.clone(),
            claimed_at: now,
            channel,
        };
        let pipeline = Pipeline::claimed(now);
        // A call-first referral is claimed only by phone (PPL-4); items stored before the field
        // existed are not call-first.
        let by_phone = if channel.is_phone() {
            ""
        } else {
            " AND (attribute_not_exists(#callFirst) OR #callFirst = :false)"
        };
        // A pay-per-lead claim is written only with its count in the cycle (PPL-10); one offered
        // before referrals kept their terms is claimed as before.
        let uncounted = if counted {
            ""
        } else {
            " AND (#program <> :ppl OR attribute_not_exists(#ppl))"
        };
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::referral(id).item()))
            .update_expression(
                // A claim takes it out of the advisors' queue, if it was there (RC-2).
                "SET #assignment = :assignment, #pipeline = :pipeline, \
                 #version = #version + :one, #ownerPk = :ownerPk, #ownerSk = :ownerSk \
                 REMOVE #areaPk, #areaSk",
            )
            .condition_expression(format!(
                "attribute_exists(#pk) \
                 AND (attribute_not_exists(#assignment) OR attribute_type(#assignment, :null)) \
                 AND (attribute_not_exists(#closure) OR attribute_type(#closure, :null)) \
                 AND attribute_exists(#offers.#agent) \
                 AND NOT contains(#declined, :agent) \
                 AND (attribute_not_exists(#respondBy) OR #respondBy > :nowMs){by_phone}{uncounted}",
            ))
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#assignment", ASSIGNMENT)
            .expression_attribute_names("#pipeline", PIPELINE)
            .expression_attribute_names("#closure", CLOSURE)
            .expression_attribute_names("#offers", OFFERS)
            .expression_attribute_names("#agent", agent.as_str())
            .expression_attribute_names("#declined", DECLINED)
            .expression_attribute_names("#version", keys::VERSION)
            .expression_attribute_names("#ownerPk", keys::OWNER_PK)
            .expression_attribute_names("#ownerSk", keys::OWNER_SK)
            .expression_attribute_names("#areaPk", keys::AREA_PK)
            .expression_attribute_names("#areaSk", keys::AREA_SK)
            .expression_attribute_values(":assignment", to_attribute(&assignment)?)
            .expression_attribute_values(":pipeline", to_attribute(&pipeline)?)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ownerPk", s(keys::owner(agent)))
            .expression_attribute_values(
                ":ownerSk",
                s(keys::owned_referral(Stage::LeftVoicemail, id)),
            )
            .expression_attribute_values(":null", s("NULL"))
            .expression_attribute_values(":agent", s(agent.as_str()))
            .expression_attribute_names("#respondBy", RESPOND_BY_MS)
            .expression_attribute_values(":nowMs", n(keys::epoch_ms(now)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if !channel.is_phone() {
            update = update
                .expression_attribute_names("#callFirst", CALL_FIRST)
                .expression_attribute_values(":false", AttributeValue::Bool(false));
        }
        if !counted {
            update = update
                .expression_attribute_names("#program", PROGRAM)
                .expression_attribute_names("#ppl", PPL)
                .expression_attribute_values(":ppl", to_attribute(&Program::Ppl)?);
        }
        Ok(update)
    }
}

#[async_trait]
impl ReferralStore for DynamoDbStore {
    async fn create_referral(
        &self,
        referral: &Referral,
        history: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Created, StoreError> {
        let creation = self.creation_writes(referral, history, effects)?;
        let codes = creation.codes.clone();
        let caps = creation.caps.clone();
        let outbox = creation.outbox;
        match self.transact(creation.writes).await {
            Ok(()) => Ok(Created::Yes),
            // The effects of creating this referral are keyed by its id: committed before means
            // created before.
            Err(e)
                if cancelled_by_condition(&e, 0).is_some()
                    || outbox.is_some_and(|i| cancelled_by_condition(&e, i).is_some()) =>
            {
                Ok(Created::Exists)
            }
            Err(e)
                if codes
                    .into_iter()
                    .any(|i| cancelled_by_condition(&e, i).is_some()) =>
            {
                Ok(Created::CodeInUse)
            }
            Err(e)
                if caps
                    .into_iter()
                    .any(|i| cancelled_by_condition(&e, i).is_some()) =>
            {
                Ok(Created::AtCap)
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    /// One query per contact key (at once), newest first: a client has a handful of referrals
    /// in 60 days, so one page each holds them.
    async fn referrals_by_contact(
        &self,
        contacts: &[String],
        since: Timestamp,
    ) -> Result<Vec<ReferralId>, StoreError> {
        let queries: Vec<_> = contacts
            .iter()
            .map(|contact| {
                let query = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#pk = :pk AND #sk >= :since")
                    .expression_attribute_names("#pk", keys::PK)
                    .expression_attribute_names("#sk", keys::SK)
                    .expression_attribute_values(":pk", s(keys::contact_partition(contact)))
                    .expression_attribute_values(":since", s(keys::contact_since(since)))
                    .scan_index_forward(false)
                    .limit(CONTACT_MATCHES);
                tokio::spawn(query.send())
            })
            .collect();
        let mut found: Vec<(String, ReferralId)> = Vec::new();
        for query in queries {
            let out = query
                .await
                .map_err(|e| StoreError::Retryable(Box::new(e)))?
                .map_err(|e| store_error("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let (Some(AttributeValue::S(sk)), Some(AttributeValue::S(id))) =
                    (item.get(keys::SK), item.get(keys::REFERRAL_ID))
                else {
                    continue;
                };
                let id = id
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("{e}")))?;
                found.push((sk.clone(), id));
            }
        }
        // The sort keys are creation time then id: newest first, each referral once.
        found.sort_by(|a, b| b.cmp(a));
        found.dedup_by(|a, b| a.1 == b.1);
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }

    /// One batch read of the agents' day counters.
    async fn offers_on(
        &self,
        days: &[(AgentId, Date)],
    ) -> Result<BTreeMap<AgentId, u32>, StoreError> {
        let keys: Vec<keys::Key> = days.iter().map(|(a, d)| keys::offers_on(a, *d)).collect();
        let mut out = BTreeMap::new();
        for item in self.batch_get(&keys).await? {
            let Some(AttributeValue::S(pk)) = item.get(keys::PK) else {
                continue;
            };
            let Some((agent, _)) = days.iter().find(|(a, d)| keys::offers_on(a, *d).pk == *pk)
            else {
                continue;
            };
            let count: u32 = number(&item, keys::COUNT)?;
            out.insert(agent.clone(), count);
        }
        Ok(out)
    }

    async fn get_referral(
        &self,
        id: &ReferralId,
    ) -> Result<Option<Versioned<Referral>>, StoreError> {
        let Some(item) = self.get_item(&keys::referral(id)).await? else {
            return Ok(None);
        };
        let version = number(&item, keys::VERSION)?;
        Ok(Some(Versioned {
            value: from_item(item)?,
            version,
        }))
    }

    /// The history items and the referral item in one query: the won claim's entry is read
    /// from the assignment the claim wrote.
    async fn history(&self, id: &ReferralId) -> Result<Vec<HistoryEntry>, StoreError> {
        let key = keys::referral(id);
        let query = self.query_prefix(None, key.pk.clone(), None);
        let mut entries = Vec::new();
        let mut referral: Option<Referral> = None;
        for item in self.query_all(query).await? {
            let sk = match item.get(keys::SK) {
                Some(AttributeValue::S(sk)) => sk.clone(),
                _ => continue,
            };
            if sk.starts_with(keys::HISTORY_PREFIX) {
                entries.push(from_item(item)?);
            } else if sk == key.sk {
                referral = Some(from_item(item)?);
            }
        }
        Ok(match referral {
            Some(r) => with_won_claim(&r, entries),
            None => entries,
        })
    }

    /// One query of the entries' key range: the older entries and the referral are not read.
    async fn history_since(
        &self,
        id: &ReferralId,
        since: Timestamp,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let (from, to) = keys::history_from(since);
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("#pk = :pk AND #sk BETWEEN :from AND :to")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#sk", keys::SK)
            .expression_attribute_values(":pk", s(keys::referral(id).pk))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":to", s(to));
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// One conditional UpdateItem: the assignment it writes is also the won attempt's history
    /// entry (`history` reads it back from the item), so the state change and its record land
    /// in one write. A loser is explained from the old item the failed condition returns, with no
    /// second read; the winner needs no read either.
    async fn claim(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        match self
            .claim_update(id, agent, channel, now, false)?
            .send()
            .await
        {
            Ok(_) => Ok(ClaimOutcome::Won(Assignment {
                agent_id: agent.clone(),
                claimed_at: now,
                channel,
            })),
            Err(e) => {
                let old = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c)) => c.item().cloned(),
                    _ => return Err(store_error("UpdateItem", e)),
                };
                // The condition checks attribute_exists(PK) too: no old item means no referral.
                let Some(old) = old else {
                    return Ok(ClaimOutcome::NotFound);
                };
                let referral: Referral = from_item(old)?;
                match check_claim(&referral, agent, channel, now) {
                    Err(refusal) => Ok(ClaimOutcome::Refused(refusal)),
                    Ok(()) if referral.program == Program::Ppl && referral.ppl.is_some() => {
                        Ok(ClaimOutcome::PayPerLead(Box::new(referral)))
                    }
                    Ok(()) => Err(StoreError::Corrupt(format!(
                        "referral {id}: the claim condition refused {agent}, \
                         but the stored referral allows the claim"
                    ))),
                }
            }
        }
    }

    /// The claim's update and the cycle's count in one transaction: the count moves only while
    /// under the quota, and only once per referral.
    async fn claim_counted(
        &self,
        id: &ReferralId,
        agent: &AgentId,
        channel: ClaimChannel,
        now: Timestamp,
        place: &QuotaPlace,
    ) -> Result<ClaimOutcome, StoreError> {
        let claim = transact_update(
            &self.table,
            self.claim_update(id, agent, channel, now, true)?,
        )?;
        let count = super::subscriptions::count_received(&self.table, place, id)?;
        match self.transact(vec![claim, count]).await {
            Ok(()) => Ok(ClaimOutcome::Won(Assignment {
                agent_id: agent.clone(),
                claimed_at: now,
                channel,
            })),
            Err(e) => {
                if let Some(old) = cancelled_by_condition(&e, 0) {
                    let Some(old) = old else {
                        return Ok(ClaimOutcome::NotFound);
                    };
                    let referral: Referral = from_item(old)?;
                    return match check_claim(&referral, agent, channel, now) {
                        Err(refusal) => Ok(ClaimOutcome::Refused(refusal)),
                        Ok(()) => Err(StoreError::Corrupt(format!(
                            "referral {id}: the claim condition refused {agent}, \
                             but the stored referral allows the claim"
                        ))),
                    };
                }
                if cancelled_by_condition(&e, 1).is_some() {
                    return Ok(ClaimOutcome::Refused(ClaimRefusal::QuotaReached));
                }
                Err(store_error("TransactWriteItems", e))
            }
        }
    }

    async fn return_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        place: &QuotaPlace,
    ) -> Result<Saved, StoreError> {
        let mut writes = vec![self.versioned_put(referral, expected_version)?];
        writes.push(super::subscriptions::uncount_received(
            &self.table,
            place,
            &referral.id,
        )?);
        writes.push(super::subscriptions::not_charged(&self.table, place)?);
        writes.extend(self.history_puts(&referral.id, entries)?);
        match self.transact(writes).await {
            Ok(()) => Ok(Saved::Ok),
            // Changed since read, no longer counted (returned a moment ago), or its cycle charged
            // meanwhile: read again.
            Err(e) if cancelled_by_any_condition(&e) => Ok(Saved::Stale),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn update_referral(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError> {
        let mut items = vec![self.versioned_put(referral, expected_version)?];
        items.extend(self.history_puts(&referral.id, entries)?);
        let outbox = items.len();
        items.extend(self.effects_write(effects)?);
        match self.transact(items).await {
            Ok(()) => Ok(Saved::Ok),
            // Effects keyed by the new version already committed: someone else made that
            // version, so this change is stale too.
            Err(e)
                if cancelled_by_condition(&e, 0).is_some()
                    || cancelled_by_condition(&e, outbox).is_some() =>
            {
                Ok(Saved::Stale)
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn update_with_children(
        &self,
        referral: &Referral,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
        children: &[Creation],
    ) -> Result<Spawned, StoreError> {
        let replace = Put::builder()
            .table_name(&self.table)
            .set_item(Some(referral_item(referral, expected_version + 1)?))
            .condition_expression("#version = :expected")
            .expression_attribute_names("#version", keys::VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .build()
            .map_err(internal)?;
        let mut items = vec![TransactWriteItem::builder().put(replace).build()];
        items.extend(self.history_puts(&referral.id, entries)?);
        items.extend(self.effects_write(effects)?);
        let mut codes = Vec::new();
        for child in children {
            let base = items.len();
            let writes = self.creation_writes(&child.referral, &child.history, &child.effects)?;
            codes.extend(writes.codes.iter().map(|i| base + i));
            items.extend(writes.writes);
        }
        match self.transact(items).await {
            Ok(()) => Ok(Spawned::Ok),
            Err(e)
                if codes
                    .iter()
                    .any(|i| cancelled_by_condition(&e, *i).is_some()) =>
            {
                Ok(Spawned::CodeInUse)
            }
            // The referral changed, or this change's effects or children exist already: someone
            // else saved first.
            Err(e) if error::cancelled_by_any_condition(&e) => Ok(Spawned::Stale),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn append_history_once(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        once: &str,
    ) -> Result<bool, StoreError> {
        let mut item = keys::once(once).item();
        item.insert(keys::STATE.to_owned(), s("done"));
        let kept = Timestamp::now() + jiff::SignedDuration::from_hours(24 * 30);
        item.insert(keys::EXPIRES_AT.to_owned(), n(kept.as_second()));
        let marker = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #expires < :now")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#expires", keys::EXPIRES_AT)
            .expression_attribute_values(":now", n(Timestamp::now().as_second()))
            .build()
            .map_err(internal)?;
        let mut items = vec![TransactWriteItem::builder().put(marker).build()];
        items.extend(self.history_puts(id, entries)?);
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if cancelled_by_condition(&e, 0).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn record(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        let mut items: Vec<TransactWriteItem> = self.effects_write(effects)?.into_iter().collect();
        items.extend(self.history_puts(id, entries)?);
        if items.is_empty() {
            return Ok(true);
        }
        match self.transact(items).await {
            Ok(()) => Ok(true),
            Err(e) if !effects.is_empty() && cancelled_by_condition(&e, 0).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    /// Plain batch writes: new history items never conflict, so they need no transaction.
    async fn append_history(
        &self,
        id: &ReferralId,
        entries: &[HistoryEntry],
    ) -> Result<(), StoreError> {
        let requests = entries
            .iter()
            .map(|e| {
                let put = PutRequest::builder()
                    .set_item(Some(history_item(id, e)?))
                    .build()
                    .map_err(internal)?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_write(requests).await
    }

    async fn unassigned_referrals(
        &self,
        after: Option<(Timestamp, &ReferralId)>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::AREA_INDEX)
            .key_condition_expression("#pk = :pk AND #sk > :after")
            .expression_attribute_names("#pk", keys::AREA_PK)
            .expression_attribute_names("#sk", keys::AREA_SK)
            .expression_attribute_values(":pk", s(keys::ADVISORS_QUEUE))
            .expression_attribute_values(
                ":after",
                // `0` sorts before every zero-padded time.
                s(after.map_or_else(|| "0".to_owned(), |(at, id)| keys::queued_referral(at, id))),
            );
        query_referrals(query, limit).await
    }

    async fn desk_referrals(
        &self,
        stage: Stage,
        after: Option<&ReferralId>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::AREA_INDEX)
            .key_condition_expression("#pk = :pk AND #sk > :after")
            .expression_attribute_names("#pk", keys::AREA_PK)
            .expression_attribute_names("#sk", keys::AREA_SK)
            .expression_attribute_values(":pk", s(keys::desk(stage)))
            .expression_attribute_values(
                ":after",
                // `REF#` sorts before every `REF#<id>`.
                s(after.map_or_else(|| "REF#".to_owned(), keys::desk_referral)),
            );
        query_referrals(query, limit).await
    }

    async fn agent_referrals(
        &self,
        agent: &AgentId,
        stage: Option<Stage>,
    ) -> Result<Vec<Referral>, StoreError> {
        let query = self.query_prefix(
            Some((keys::OWNER_INDEX, keys::OWNER_PK, keys::OWNER_SK)),
            keys::owner(agent),
            Some(keys::owned_referral_prefix(stage)),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }
}

/// Up to `limit` referrals of `query`, in its order, following its pages.
async fn query_referrals(
    query: QueryFluentBuilder,
    limit: usize,
) -> Result<Vec<Referral>, StoreError> {
    let mut referrals = Vec::new();
    let mut start = None;
    while referrals.len() < limit {
        let want = i32::try_from(limit - referrals.len()).unwrap_or(i32::MAX);
        let out = query
            .clone()
            .limit(want)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| store_error("Query", e))?;
        for item in out.items.unwrap_or_default() {
            referrals.push(from_item(item)?);
        }
        start = out.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    Ok(referrals)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::claim::fixtures::referral;
    use crate::domain::referral::Program;

    #[test]
    fn wt_4_claim_condition_names_the_referrals_serde_fields() {
        let mut r = referral(Program::Routing, &["a1"]);
        r.declined.insert("a2".parse().unwrap());
        let item = referral_item(&r, 7).unwrap();
        for field in [ASSIGNMENT, PIPELINE, CLOSURE, OFFERS, DECLINED, CALL_FIRST] {
            assert!(item.contains_key(field), "no `{field}` attribute");
        }
        // Offers are a map keyed by agent id, so `#offers.#agent` addresses one offer.
        assert!(item[OFFERS].as_m().unwrap().contains_key("a1"));
        assert_eq!(item[keys::VERSION], n(7));
        // Not assigned: not in any agent's list.
        assert!(!item.contains_key(keys::OWNER_PK));
        let back: Referral = from_item(item).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn ppl_10_the_uncounted_claim_condition_names_the_referrals_serde_fields() {
        let mut r = referral(Program::Ppl, &["a1"]);
        r.ppl = Some(crate::domain::referral::PplTerms {
            price: "90".parse().unwrap(),
            subscriptions: [("a1".parse().unwrap(), "s1".parse().unwrap())].into(),
            returned: None,
        });
        let item = referral_item(&r, 1).unwrap();
        assert_eq!(item[PROGRAM], to_attribute(&Program::Ppl).unwrap());
        assert!(item.contains_key(PPL));
    }

    #[test]
    fn lr_1_assigned_referral_is_listed_under_its_agent_by_stage() {
        let r = referral(Program::Routing, &["a1"]);
        let now: Timestamp = "2026-01-01T00:01:00Z".parse().unwrap();
        let won = crate::domain::claim::claim(&r, &"a1".parse().unwrap(), ClaimChannel::App, now)
            .unwrap();
        let item = referral_item(&won, 2).unwrap();
        assert_eq!(item[keys::OWNER_PK], s("AGENT#a1"));
        assert_eq!(item[keys::OWNER_SK], s("REF#left_voicemail#r1"));
    }

    #[test]
    fn gen_2_history_sequence_is_monotonic() {
        let a = next_sequence();
        let b = next_sequence();
        assert!(a < b);
    }
}
