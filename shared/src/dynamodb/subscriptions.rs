//! Pay-per-lead subscriptions: coverage index items, one charge per cycle, delivery quotas.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    WriteRequest,
};
use jiff::Timestamp;

use super::agents::put_request;
use super::error::{cancelled_by_condition, internal, store_error};
use super::keys;
use super::{DynamoDbStore, Item, entity_item, from_item, n, number, s, string};
use crate::domain::billing::Subscription;
use crate::domain::values::{AgentId, ClientType, ReferralId, SubscriptionId, Zip};
use crate::effects::Effects;
use crate::ports::{Charge, DueKind, StoreError, SubscriptionStore};

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
    /// The subscription and one coverage item per (zip, client type), each a full copy (a
    /// subscription never changes), in as few transactions as fit.
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
        let mut main = entity_item(&keys::subscription(&sub.id), sub)?;
        main.insert(keys::OWNER_PK.to_owned(), s(keys::owner(&sub.agent_id)));
        main.insert(
            keys::OWNER_SK.to_owned(),
            s(keys::owned_subscription(&sub.id)),
        );
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

    /// An atomic counter that only counts while below the quota: concurrent deliveries cannot
    /// overshoot it (PPL-9).
    async fn take_delivery(
        &self,
        sub: &SubscriptionId,
        cycle: u32,
        quota: u32,
        referral: &ReferralId,
    ) -> Result<bool, StoreError> {
        if quota == 0 {
            return Ok(false);
        }
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::deliveries(sub, cycle).item()))
            .update_expression("ADD #count :one, #referrals :referral")
            .condition_expression(
                "(attribute_not_exists(#count) OR #count < :quota) \
                 AND NOT contains(#referrals, :id)",
            )
            .expression_attribute_names("#count", keys::COUNT)
            .expression_attribute_names("#referrals", keys::REFERRALS)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":quota", n(quota))
            .expression_attribute_values(
                ":referral",
                AttributeValue::Ss(vec![referral.to_string()]),
            )
            .expression_attribute_values(":id", s(referral.as_str()))
            .return_values(ReturnValue::None)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                // Refused either because the quota is used up or because this referral was
                // counted already (a retried request), which keeps its delivery.
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => Ok(c
                    .item()
                    .and_then(|old| old.get(keys::REFERRALS))
                    .and_then(|r| r.as_ss().ok())
                    .is_some_and(|r| r.iter().any(|i| i == referral.as_str()))),
                _ => Err(store_error("UpdateItem", e)),
            },
        }
    }

    async fn deliveries(&self, sub: &SubscriptionId, cycle: u32) -> Result<u32, StoreError> {
        match self.get_item(&keys::deliveries(sub, cycle)).await? {
            Some(item) => number(&item, keys::COUNT),
            None => Ok(0),
        }
    }
}
