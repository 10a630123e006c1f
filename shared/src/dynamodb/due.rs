//! Work that falls due (billing, reminders), through the sparse `DueIndex`: a sweep's reads grow
//! with the items due, never with the table.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, ReturnConsumedCapacity, TransactWriteItem, Update};
use jiff::Timestamp;

use super::error::{cancelled_by_condition, internal, store_error};
use super::keys;
use super::{DynamoDbStore, Item, s, string};
use crate::effects::Effects;
use crate::ports::{DueKind, DueWork, StoreError};

/// What one sweep found, and what finding it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct DueScan {
    /// The keys due, earliest first, with their due times.
    pub due: Vec<(String, Timestamp)>,
    /// Items DynamoDB read to answer (`ScannedCount`, summed over pages).
    pub items_read: u64,
    /// Read capacity consumed (`ConsumedCapacity`, summed over pages).
    pub capacity_units: f64,
    /// Query pages.
    pub pages: u32,
}

fn due_entry(item: &Item) -> Result<(String, Timestamp), StoreError> {
    let key = string(item, keys::DUE_KEY)?.to_owned();
    let at = string(item, keys::DUE_AT)?
        .parse()
        .map_err(|e: jiff::Error| StoreError::Corrupt(e.to_string()))?;
    Ok((key, at))
}

/// A due record: in the sparse index because it carries `DuePK`/`DueSK`.
pub(super) fn due_item(kind: DueKind, key: &str, at: Timestamp) -> Item {
    let mut item = keys::due(kind, key).item();
    item.insert(keys::DUE_PK.to_owned(), s(keys::due_partition(kind)));
    item.insert(keys::DUE_SK.to_owned(), s(keys::due_sort(at, key)));
    item.insert(keys::DUE_KEY.to_owned(), s(key));
    item.insert(keys::DUE_AT.to_owned(), s(at.to_string()));
    item
}

impl DynamoDbStore {
    /// `due`, with how many items were read and the capacity consumed: the measure of a sweep
    /// for benchmarks (items read / items due should stay near 1).
    pub async fn due_with_capacity(
        &self,
        kind: DueKind,
        now: Timestamp,
    ) -> Result<DueScan, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::DUE_INDEX)
            .key_condition_expression("#pk = :pk AND #sk < :bound")
            .expression_attribute_names("#pk", keys::DUE_PK)
            .expression_attribute_names("#sk", keys::DUE_SK)
            .expression_attribute_values(":pk", s(keys::due_partition(kind)))
            .expression_attribute_values(":bound", s(keys::due_upper_bound(now)))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        let mut scan = DueScan {
            due: Vec::new(),
            items_read: 0,
            capacity_units: 0.0,
            pages: 0,
        };
        let mut start = None;
        loop {
            let out = query
                .clone()
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            scan.pages += 1;
            scan.items_read += u64::try_from(out.scanned_count).unwrap_or(0);
            scan.capacity_units += out
                .consumed_capacity
                .as_ref()
                .and_then(|c| c.capacity_units)
                .unwrap_or(0.0);
            for item in out.items.as_deref().unwrap_or_default() {
                scan.due.push(due_entry(item)?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(scan);
            }
        }
    }
}

#[async_trait]
impl DueWork for DynamoDbStore {
    async fn set_due(
        &self,
        kind: DueKind,
        key: &str,
        due: Option<Timestamp>,
    ) -> Result<(), StoreError> {
        let record = keys::due(kind, key);
        match due {
            Some(at) => {
                self.put_item(due_item(kind, key, at)).await?;
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(record.item()))
                    .send()
                    .await
                    .map_err(|e| store_error("DeleteItem", e))?;
            }
        }
        Ok(())
    }

    async fn set_due_if_absent(
        &self,
        kind: DueKind,
        key: &str,
        due: Timestamp,
    ) -> Result<bool, StoreError> {
        self.put_new(due_item(kind, key, due)).await
    }

    async fn due(
        &self,
        kind: DueKind,
        now: Timestamp,
    ) -> Result<Vec<(String, Timestamp)>, StoreError> {
        Ok(self.due_with_capacity(kind, now).await?.due)
    }

    /// Conditional on the exact due time read (`dueAt`), so of two overlapping sweeps only one
    /// moves it.
    async fn advance_due(
        &self,
        kind: DueKind,
        key: &str,
        from: Timestamp,
        to: Option<Timestamp>,
        effects: &Effects,
    ) -> Result<bool, StoreError> {
        let record = keys::due(kind, key);
        let moved = match to {
            Some(at) => TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(record.item()))
                        .update_expression("SET #sk = :sk, #at = :at")
                        .condition_expression("#at = :from")
                        .expression_attribute_names("#sk", keys::DUE_SK)
                        .expression_attribute_names("#at", keys::DUE_AT)
                        .expression_attribute_values(":sk", s(keys::due_sort(at, key)))
                        .expression_attribute_values(":at", s(at.to_string()))
                        .expression_attribute_values(":from", s(from.to_string()))
                        .build()
                        .map_err(internal)?,
                )
                .build(),
            None => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(record.item()))
                        .condition_expression("#at = :from")
                        .expression_attribute_names("#at", keys::DUE_AT)
                        .expression_attribute_values(":from", s(from.to_string()))
                        .build()
                        .map_err(internal)?,
                )
                .build(),
        };
        let mut items = vec![moved];
        items.extend(self.effects_write(effects)?);
        match self.transact(items).await {
            Ok(()) => Ok(true),
            // Another run moved it first, or committed this work's effects: not ours to do.
            Err(e)
                if cancelled_by_condition(&e, 0).is_some()
                    || cancelled_by_condition(&e, 1).is_some() =>
            {
                Ok(false)
            }
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }
}
