//! Pay-per-lead subscriptions: coverage index items, one charge per cycle, delivery quotas.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::error::{cancelled_by_condition, internal, store_error};
use super::keys;
use super::{DynamoDbStore, entity_item, from_item, n, number, s};
use crate::domain::billing::Subscription;
use crate::domain::values::{AgentId, ClientType, ReferralId, SubscriptionId, Zip};
use crate::effects::Effects;
use crate::ports::{Charge, StoreError, SubscriptionStore};

#[async_trait]
impl SubscriptionStore for DynamoDbStore {
    /// The subscription and one coverage item per (zip, client type), each a full copy (a
    /// subscription never changes), in as few transactions as fit.
    async fn create_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        let mut main = entity_item(&keys::subscription(&sub.id), sub)?;
        main.insert(keys::OWNER_PK.to_owned(), s(keys::owner(&sub.agent_id)));
        main.insert(
            keys::OWNER_SK.to_owned(),
            s(keys::owned_subscription(&sub.id)),
        );
        let mut writes = vec![self.put_write(main)?];
        for zip in &sub.zips {
            for &client_type in &sub.client_types {
                let mut item =
                    entity_item(&keys::subscription_covers(&sub.id, zip, client_type), sub)?;
                item.insert(
                    keys::AREA_PK.to_owned(),
                    s(keys::coverage_area(zip, client_type)),
                );
                item.insert(
                    keys::AREA_SK.to_owned(),
                    s(keys::covering_subscription(&sub.id)),
                );
                writes.push(self.put_write(item)?);
            }
        }
        self.write_all(writes).await
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
            keys::coverage_area(zip, client_type),
            None,
        );
        self.query_all(query)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
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
