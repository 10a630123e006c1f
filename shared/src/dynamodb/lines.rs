//! Claim codes, claim calls and the PIN line (LR-9, LR-10).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use jiff::Timestamp;

use super::error::{cancelled_by_condition, internal, store_error};
use super::{DynamoDbStore, entity_item, from_item, keys, n, number, s, string};
use crate::domain::claim::ClaimCalls;
use crate::domain::referral::HistoryEntry;
use crate::domain::values::{AgentId, Phone, ReferralId};
use crate::effects::Effects;
use crate::ports::{ClaimLines, Saved, StoreError, Versioned};

#[async_trait]
impl ClaimLines for DynamoDbStore {
    async fn code_referral(
        &self,
        agent: &AgentId,
        code: &str,
        now: Timestamp,
    ) -> Result<Option<ReferralId>, StoreError> {
        let Some(item) = self.get_item(&keys::claim_code(agent, code)).await? else {
            return Ok(None);
        };
        if number::<i64>(&item, keys::EXPIRES_AT)? < now.as_second() {
            return Ok(None);
        }
        let id = string(&item, keys::REFERRAL_ID)?;
        id.parse()
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("claim code: {e}")))
    }

    async fn claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
    ) -> Result<Versioned<ClaimCalls>, StoreError> {
        match self.get_item(&keys::claim_calls(referral, agent)).await? {
            None => Ok(Versioned {
                value: ClaimCalls::default(),
                version: 0,
            }),
            Some(item) => {
                let version = number(&item, keys::VERSION)?;
                Ok(Versioned {
                    value: from_item(item)?,
                    version,
                })
            }
        }
    }

    async fn save_claim_calls(
        &self,
        referral: &ReferralId,
        agent: &AgentId,
        calls: &ClaimCalls,
        expected_version: u64,
        entries: &[HistoryEntry],
        effects: &Effects,
    ) -> Result<Saved, StoreError> {
        let mut item = entity_item(&keys::claim_calls(referral, agent), calls)?;
        item.insert(keys::VERSION.to_owned(), n(expected_version + 1));
        let condition = if expected_version == 0 {
            "attribute_not_exists(#version)"
        } else {
            "#version = :expected"
        };
        let mut save = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#version", keys::VERSION);
        if expected_version > 0 {
            save = save.expression_attribute_values(":expected", n(expected_version));
        }
        let mut items = vec![
            TransactWriteItem::builder()
                .put(save.build().map_err(internal)?)
                .build(),
        ];
        if calls.pin.is_some() {
            let mut pin = keys::pin(agent).item();
            pin.insert(keys::REFERRAL_ID.to_owned(), s(referral.as_str()));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(pin))
                .build()
                .map_err(internal)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        items.extend(self.history_puts(referral, entries)?);
        let outbox = items.len();
        items.extend(self.effects_write(effects)?);
        match self.transact(items).await {
            Ok(()) => Ok(Saved::Ok),
            Err(e)
                if cancelled_by_condition(&e, 0).is_some()
                    || cancelled_by_condition(&e, outbox).is_some() =>
            {
                Ok(Saved::Stale)
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn pin_referral(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        self.referral_at(&keys::pin(agent)).await
    }

    async fn warm_transfer_of(&self, agent: &AgentId) -> Result<Option<ReferralId>, StoreError> {
        self.referral_at(&keys::warm_transfer_line(agent)).await
    }

    async fn set_client_thread(
        &self,
        client: &Phone,
        referral: &ReferralId,
    ) -> Result<(), StoreError> {
        let mut item = keys::client_thread(client).item();
        item.insert(keys::REFERRAL_ID.to_owned(), s(referral.as_str()));
        self.put_item(item).await
    }

    async fn client_thread(&self, client: &Phone) -> Result<Option<ReferralId>, StoreError> {
        self.referral_at(&keys::client_thread(client)).await
    }
}

impl DynamoDbStore {
    /// The `referralId` a pointer item names.
    async fn referral_at(&self, key: &keys::Key) -> Result<Option<ReferralId>, StoreError> {
        let Some(item) = self.get_item(key).await? else {
            return Ok(None);
        };
        string(&item, keys::REFERRAL_ID)?
            .parse()
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", key.pk)))
    }
}
