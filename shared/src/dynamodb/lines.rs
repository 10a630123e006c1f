//! Claim codes, claim calls and the PIN line (LR-9, LR-10).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};
use jiff::Timestamp;

use super::error::{cancelled_by_condition, condition_failed, internal, store_error};
use super::{DynamoDbStore, entity_item, from_item, keys, n, number, s, string};
use crate::domain::claim::ClaimCalls;
use crate::domain::referral::HistoryEntry;
use crate::domain::texts::{GUESS_WINDOW, WrongGuesses};
use crate::domain::values::{AgentId, Phone, ReferralId};
use crate::effects::Effects;
use crate::ports::{ClaimLines, RequestCounter, Saved, StoreError, Versioned};

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

    async fn wrong_guesses(&self, phone: &Phone) -> Result<Option<WrongGuesses>, StoreError> {
        self.get_item(&keys::wrong_guesses(phone))
            .await?
            .map(|item| guesses(&item))
            .transpose()
    }

    /// One update adds the guess while the count's hour lasts; past it (or with none), one
    /// conditional put starts a new count. A racing writer makes the loser try again.
    async fn count_wrong_guess(
        &self,
        phone: &Phone,
        now: Timestamp,
    ) -> Result<WrongGuesses, StoreError> {
        let key = keys::wrong_guesses(phone);
        let cutoff = (now - GUESS_WINDOW).as_second();
        for _ in 0..3 {
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.item()))
                .update_expression("ADD #count :one")
                .condition_expression("#since > :cutoff")
                .expression_attribute_names("#count", keys::COUNT)
                .expression_attribute_names("#since", keys::SINCE)
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":cutoff", n(cutoff))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match added {
                Ok(out) => return guesses(&out.attributes.unwrap_or_default()),
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(store_error("UpdateItem", e)),
            }
            let mut item = key.item();
            item.insert(keys::COUNT.to_owned(), n(1));
            item.insert(keys::SINCE.to_owned(), n(now.as_second()));
            item.insert(
                keys::EXPIRES_AT.to_owned(),
                n((now + GUESS_WINDOW).as_second()),
            );
            let started = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#pk) OR #since <= :cutoff")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#since", keys::SINCE)
                .expression_attribute_values(":cutoff", n(cutoff))
                .send()
                .await;
            match started {
                Ok(_) => {
                    return Ok(WrongGuesses {
                        count: 1,
                        since: now,
                    });
                }
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(store_error("PutItem", e)),
            }
        }
        Err(StoreError::Retryable(
            "the count of wrong guesses is changing".into(),
        ))
    }

    async fn set_opted_out(&self, phone: &Phone, opted_out: bool) -> Result<(), StoreError> {
        let key = keys::opted_out(phone);
        if opted_out {
            return self.put_item(key.item()).await;
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key.item()))
            .send()
            .await
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(())
    }

    async fn opted_out(&self, phone: &Phone) -> Result<bool, StoreError> {
        Ok(self.get_item(&keys::opted_out(phone)).await?.is_some())
    }
}

#[async_trait]
impl RequestCounter for DynamoDbStore {
    /// One atomic update: the count, and an expiry a minute after the minute ends, so the table
    /// keeps no trace of it for long.
    async fn count_request(&self, caller: &str, minute: Timestamp) -> Result<u64, StoreError> {
        let expires = minute.as_second() + 120;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(keys::requests(caller, minute).item()))
            .update_expression("ADD #count :one SET #expires = :expires")
            .expression_attribute_names("#count", keys::COUNT)
            .expression_attribute_names("#expires", keys::EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| store_error("UpdateItem", e))?;
        number(&out.attributes.unwrap_or_default(), keys::COUNT)
    }
}

fn guesses(item: &super::Item) -> Result<WrongGuesses, StoreError> {
    let since = Timestamp::from_second(number(item, keys::SINCE)?)
        .map_err(|e| StoreError::Corrupt(format!("wrong guesses: {e}")))?;
    Ok(WrongGuesses {
        count: number(item, keys::COUNT)?,
        since,
    })
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
