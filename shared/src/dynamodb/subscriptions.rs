//! Pay-per-lead subscriptions: coverage index items, one charge per cycle, delivery quotas.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, TransactWriteItem, Update, WriteRequest,
};
use jiff::Timestamp;

use super::agents::put_request;
use super::error::{cancelled_by_condition, internal, store_error};
use super::keys;
use super::{DynamoDbStore, Item, entity_item, from_item, n, s, string};
use crate::domain::billing::Subscription;
use crate::domain::values::{AgentId, ClientType, ReferralId, SubscriptionId, Zip};
use crate::effects::Effects;
use crate::ports::{Charge, DueKind, QuotaPlace, StoreError, SubscriptionStore};

/// A subscription's index item for one zip it covers: keys only.
fn coverage_item(id: &SubscriptionId, zip: &Zip) -> Item {
    let mut item = keys::subscription_covers(id, zip).item();
    item.insert(keys::AREA_PK.to_owned(), s(keys::coverage_area(zip)));
    item.insert(keys::AREA_SK.to_owned(), s(keys::covering_subscription(id)));
    item.insert(keys::SUBSCRIPTION_ID.to_owned(), s(id.as_str()));
    item
}

#[async_trait]
impl SubscriptionStore for DynamoDbStore {
    /// The coverage items (keys only, one per zip) first, so a stored subscription is always
    /// found by its zips; then the subscription, only if new. Writes are bounded by the zips
    /// (at most 200), never multiplied by the client types (EF-4).
    async fn create_subscription(
        &self,
        sub: &Subscription,
        first_charge: Timestamp,
    ) -> Result<bool, StoreError> {
        let coverage: Vec<WriteRequest> = sub
            .zips
            .iter()
            .map(|zip| put_request(coverage_item(&sub.id, zip)))
            .collect::<Result<_, _>>()?;
        self.batch_write(coverage).await?;
        let main = subscription_item(sub)?;
        // The subscription and its first charge's due record land together: none is stored
        // that the billing sweep would never find.
        let create = Put::builder()
            .table_name(&self.table)
            .set_item(Some(main))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(internal)?;
        let due = super::due::due_item(DueKind::Billing, sub.id.as_str(), first_charge);
        let writes = vec![
            TransactWriteItem::builder().put(create).build(),
            self.put_write(due)?,
        ];
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            Err(e) if cancelled_by_condition(&e, 0).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn get_subscription(
        &self,
        id: &SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.get_item(&keys::subscription(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn subscriptions_of(&self, agent: &AgentId) -> Result<Vec<Subscription>, StoreError> {
        let query = self.query_prefix(
            Some((keys::OWNER_INDEX, keys::OWNER_PK, keys::OWNER_SK)),
            keys::owner(agent),
            Some(keys::OWNED_SUBSCRIPTION_PREFIX.to_owned()),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn subscriptions_covering(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Subscription>, StoreError> {
        let query = self.query_prefix(
            Some((keys::AREA_INDEX, keys::AREA_PK, keys::AREA_SK)),
            keys::coverage_area(zip),
            None,
        );
        let ids: Vec<SubscriptionId> = self
            .query_all(query)
            .await?
            .iter()
            .map(|item| {
                string(item, keys::SUBSCRIPTION_ID)?.parse().map_err(
                    |e: crate::domain::values::InvalidValue| StoreError::Corrupt(e.to_string()),
                )
            })
            .collect::<Result<_, _>>()?;
        let mut subs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(sub) = self.get_subscription(&id).await? {
                subs.push(sub);
            }
        }
        // A coverage item outlives a zip for a moment after it is dropped; the subscription
        // decides.
        subs.retain(|sub| sub.covers(zip, client_type));
        Ok(subs)
    }

    /// The key is (subscription, cycle), so a second charge for a cycle fails its condition.
    async fn record_charge(
        &self,
        sub: &SubscriptionId,
        charge: &Charge,
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        let item = entity_item(&keys::charge(sub, charge.cycle), charge)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .build()
            .map_err(internal)?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        items.extend(self.effects_write(effects)?);
        match self.transact(items).await {
            Ok(()) => Ok(true),
            // The cycle charged before, or its receipt committed before: charged once (PPL-2).
            Err(e)
                if cancelled_by_condition(&e, 0).is_some()
                    || cancelled_by_condition(&e, 1).is_some() =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn charges(&self, sub: &SubscriptionId) -> Result<Vec<Charge>, StoreError> {
        let query = self.query_prefix(
            None,
            keys::subscription(sub).pk,
            Some(keys::CHARGE_PREFIX.to_owned()),
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    async fn save_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        // Coverage first: a saved zip is always found. Items of dropped zips stay behind and are
        // filtered on read (`subscriptions_covering`); rewriting a kept zip's item is harmless.
        let coverage: Vec<WriteRequest> = sub
            .zips
            .iter()
            .map(|zip| put_request(coverage_item(&sub.id, zip)))
            .collect::<Result<_, _>>()?;
        self.batch_write(coverage).await?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(subscription_item(sub)?))
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", keys::PK)
            .send()
            .await
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    async fn received(
        &self,
        sub: &SubscriptionId,
        cycle: u32,
    ) -> Result<Vec<ReferralId>, StoreError> {
        let Some(item) = self.get_item(&keys::deliveries(sub, cycle)).await? else {
            return Ok(Vec::new());
        };
        let mut ids = match item.get(keys::REFERRALS) {
            Some(AttributeValue::Ss(ids)) => ids
                .iter()
                .map(|id| {
                    id.parse()
                        .map_err(|e: crate::domain::values::InvalidValue| {
                            StoreError::Corrupt(e.to_string())
                        })
                })
                .collect::<Result<Vec<ReferralId>, _>>()?,
            _ => Vec::new(),
        };
        ids.sort();
        Ok(ids)
    }
}

/// The cycle's count of received referrals moved by one for `referral`, only while under the
/// quota and only once per referral: what a PPL claim adds to its transaction (PPL-10).
pub(super) fn count_received(
    table: &str,
    place: &QuotaPlace,
    referral: &ReferralId,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(
            keys::deliveries(&place.subscription, place.cycle).item(),
        ))
        .update_expression("ADD #count :one, #referrals :referral")
        .condition_expression(
            "(attribute_not_exists(#count) OR #count < :quota) \
             AND NOT contains(#referrals, :id)",
        )
        .expression_attribute_names("#count", keys::COUNT)
        .expression_attribute_names("#referrals", keys::REFERRALS)
        .expression_attribute_values(":one", n(1))
        .expression_attribute_values(":quota", n(place.quota))
        .expression_attribute_values(":referral", AttributeValue::Ss(vec![referral.to_string()]))
        .expression_attribute_values(":id", s(referral.as_str()))
        .build()
        .map_err(internal)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A returned referral taken out of the cycle it counted in, freeing its place (PPL-13); only
/// if it is still counted there, so a repeated return frees nothing twice.
pub(super) fn uncount_received(
    table: &str,
    place: &QuotaPlace,
    referral: &ReferralId,
) -> Result<TransactWriteItem, StoreError> {
    let update = Update::builder()
        .table_name(table)
        .set_key(Some(
            keys::deliveries(&place.subscription, place.cycle).item(),
        ))
        .update_expression("ADD #count :minus DELETE #referrals :referral")
        .condition_expression("contains(#referrals, :id)")
        .expression_attribute_names("#count", keys::COUNT)
        .expression_attribute_names("#referrals", keys::REFERRALS)
        .expression_attribute_values(":minus", AttributeValue::N("-1".into()))
        .expression_attribute_values(":referral", AttributeValue::Ss(vec![referral.to_string()]))
        .expression_attribute_values(":id", s(referral.as_str()))
        .build()
        .map_err(internal)?;
    Ok(TransactWriteItem::builder().update(update).build())
}

/// A check that the charge paying for `place`'s cycle is not made: a return must not credit
/// what a charge already paid for (PPL-13).
pub(super) fn not_charged(
    table: &str,
    place: &QuotaPlace,
) -> Result<TransactWriteItem, StoreError> {
    let check = ConditionCheck::builder()
        .table_name(table)
        .set_key(Some(
            keys::charge(&place.subscription, place.cycle.saturating_add(1)).item(),
        ))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", keys::PK)
        .build()
        .map_err(internal)?;
    Ok(TransactWriteItem::builder().condition_check(check).build())
}

/// The subscription's item, found under its agent.
fn subscription_item(sub: &Subscription) -> Result<Item, StoreError> {
    let mut main = entity_item(&keys::subscription(&sub.id), sub)?;
    main.insert(keys::OWNER_PK.to_owned(), s(keys::owner(&sub.agent_id)));
    main.insert(
        keys::OWNER_SK.to_owned(),
        s(keys::owned_subscription(&sub.id)),
    );
    Ok(main)
}
