//! Agents, their phone and serving-area index items, teams and routing settings.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    Delete, DeleteRequest, KeysAndAttributes, Put, PutRequest, TransactWriteItem, WriteRequest,
};

use super::error::{Contended, cancelled_by_condition, condition_failed, internal, store_error};
use super::keys::{self, Key};
use super::{DynamoDbStore, Item, entity_item, from_item, n, number, s, string};
use crate::domain::agent::Agent;
use crate::domain::team::{RoutingSettings, Team};
use crate::domain::values::{AgentId, ClientType, Phone, TeamId, Zip};
use crate::effects::Effects;
use crate::ports::{AgentDirectory, AgentEdit, PhoneVerification, StoreError};

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_LIMIT: usize = 100;
/// Read-modify-write attempts before giving up to the caller as retryable.
const OPTIMISTIC_ATTEMPTS: usize = 5;
/// Profile edit attempts: a busy agent's response times and settings may all land at once.
const EDIT_ATTEMPTS: u32 = 10;

/// An agent's index item for one zip they serve: keys only (the profile is read by id), so a
/// profile save writes it only when the agent's zips change.
fn serves_item(agent: &AgentId, zip: &Zip) -> Item {
    let mut item = keys::agent_serves(agent, zip).item();
    item.insert(keys::AREA_PK.to_owned(), s(keys::serving_area(zip)));
    item.insert(keys::AREA_SK.to_owned(), s(keys::serving_agent(agent)));
    item.insert(keys::AGENT_ID.to_owned(), s(agent.as_str()));
    item
}

fn agent_id(item: &Item) -> Result<AgentId, StoreError> {
    string(item, keys::AGENT_ID)?
        .parse()
        .map_err(|e: crate::domain::values::InvalidValue| StoreError::Corrupt(e.to_string()))
}

/// An index item's put, in a batch write.
pub(super) fn put_request(item: Item) -> Result<WriteRequest, StoreError> {
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(internal)?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// An index item's deletion, in a batch write.
pub(super) fn delete_request(key: &Key) -> Result<WriteRequest, StoreError> {
    let delete = DeleteRequest::builder()
        .set_key(Some(key.item()))
        .build()
        .map_err(internal)?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

impl DynamoDbStore {
    pub(super) fn put_write(&self, item: Item) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(internal)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Removes a phone item only if it still points at this agent: the number may have moved to
    /// another agent since.
    async fn release_phone(&self, phone: &Phone, agent: &AgentId) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(keys::phone(phone).item()))
            .condition_expression("#agent = :agent")
            .expression_attribute_names("#agent", keys::AGENT_ID)
            .expression_attribute_values(":agent", s(agent.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(store_error("DeleteItem", e)),
        }
    }
}

impl DynamoDbStore {
    /// The items at `keys` that exist, strongly consistent, by BatchGetItem in chunks, retrying
    /// the keys DynamoDB leaves unprocessed.
    pub(super) async fn batch_get(&self, keys: &[keys::Key]) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_LIMIT) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.iter().map(keys::Key::item).collect()))
                    .consistent_read(true)
                    .build()
                    .map_err(internal)?,
            );
            for attempt in 0u32.. {
                let Some(request) = pending.take() else { break };
                if attempt == OPTIMISTIC_ATTEMPTS as u32 * 2 {
                    return Err(StoreError::Retryable(Box::new(Contended("BatchGetItem"))));
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(25 << attempt.min(6)))
                        .await;
                }
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl AgentDirectory for DynamoDbStore {
    /// Saves the profile on the version read, with a phone item per number it gained (one
    /// transaction). Its index items change only with its zips, and so the writes a save costs
    /// are bounded by what changed, never by how many zips the agent serves (EF-4): the items of
    /// zips gained are written before the profile (a saved zip is always findable), those of
    /// zips dropped deleted after it (a stale item is harmless: readers check the profile).
    async fn edit_agent(
        &self,
        id: &AgentId,
        edit: AgentEdit<'_>,
    ) -> Result<Option<Agent>, StoreError> {
        let profile_key = keys::agent(id);
        for attempt in 0..EDIT_ATTEMPTS {
            if attempt > 0 {
                // Random waits spread the writers that lost the same race.
                let ceiling = 5u64 << attempt.min(5);
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=ceiling)))
                    .await;
            }
            let stored: Option<(Agent, u64)> = match self.get_item(&profile_key).await? {
                Some(item) => {
                    let version = number(&item, keys::VERSION)?;
                    Some((from_item(item)?, version))
                }
                None => None,
            };
            let Some(agent) = edit(stored.as_ref().map(|(a, _)| a)) else {
                return Ok(None);
            };
            debug_assert_eq!(&agent.id, id, "an edit keeps the agent's id");
            let before = stored.as_ref().map(|(a, _)| a);
            let old_zips: BTreeSet<&Zip> =
                before.map(|a| a.zips.iter().collect()).unwrap_or_default();
            let new_zips: BTreeSet<&Zip> = agent.zips.iter().collect();
            let gained: Vec<WriteRequest> = new_zips
                .difference(&old_zips)
                .map(|zip| put_request(serves_item(id, zip)))
                .collect::<Result<_, _>>()?;
            self.batch_write(gained).await?;

            let version = stored.as_ref().map(|(_, v)| *v);
            let mut profile = entity_item(&profile_key, &agent)?;
            profile.insert(keys::VERSION.to_owned(), n(version.unwrap_or(0) + 1));
            let save = match version {
                Some(v) => Put::builder()
                    .condition_expression("#version = :version")
                    .expression_attribute_names("#version", keys::VERSION)
                    .expression_attribute_values(":version", n(v)),
                None => Put::builder()
                    .condition_expression("attribute_not_exists(#pk)")
                    .expression_attribute_names("#pk", keys::PK),
            }
            .table_name(&self.table)
            .set_item(Some(profile))
            .build()
            .map_err(internal)?;
            let writes = vec![TransactWriteItem::builder().put(save).build()];
            // A number identifies its agent only once verified (`take_phone`); a number the
            // profile drops is released after the save.
            let old_phones: BTreeSet<&Phone> = before
                .map(|a| {
                    [&a.cell_phone, &a.office_phone]
                        .into_iter()
                        .flatten()
                        .collect()
                })
                .unwrap_or_default();
            let phones: BTreeSet<&Phone> = [&agent.cell_phone, &agent.office_phone]
                .into_iter()
                .flatten()
                .collect();
            match self.transact(writes).await {
                Ok(()) => {}
                Err(e) if cancelled_by_condition(&e, 0).is_some() => continue,
                Err(e) => return Err(store_error("TransactWriteItems", e)),
            }
            let dropped: Vec<WriteRequest> = old_zips
                .difference(&new_zips)
                .map(|zip| delete_request(&keys::agent_serves(id, zip)))
                .collect::<Result<_, _>>()?;
            self.batch_write(dropped).await?;
            for old in old_phones.difference(&phones) {
                self.release_phone(old, &agent.id).await?;
            }
            return Ok(Some(agent));
        }
        Err(StoreError::Retryable(Box::new(Contended("edit_agent"))))
    }

    async fn get_agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        self.get_item(&keys::agent(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn get_agents(&self, ids: &[AgentId]) -> Result<Vec<Agent>, StoreError> {
        let unique: BTreeSet<&AgentId> = ids.iter().collect();
        let keys: Vec<keys::Key> = unique.into_iter().map(keys::agent).collect();
        self.batch_get(&keys)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// The zip's index items (a query), then the profiles they name (a batch read): two round
    /// trips, and the profiles read are the current ones.
    async fn agents_serving(
        &self,
        zip: &Zip,
        client_type: ClientType,
    ) -> Result<Vec<Agent>, StoreError> {
        let query = self.query_prefix(
            Some((keys::AREA_INDEX, keys::AREA_PK, keys::AREA_SK)),
            keys::serving_area(zip),
            None,
        );
        let ids = self
            .query_all(query)
            .await?
            .iter()
            .map(agent_id)
            .collect::<Result<Vec<_>, _>>()?;
        let mut agents = self.get_agents(&ids).await?;
        // An index item outlives the zip for a moment after it is dropped; the profile decides.
        agents.retain(|a| a.serves(zip, client_type));
        Ok(agents)
    }

    async fn agent_by_phone(&self, phone: &Phone) -> Result<Option<AgentId>, StoreError> {
        self.get_item(&keys::phone(phone))
            .await?
            .as_ref()
            .map(agent_id)
            .transpose()
    }

    async fn phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
    ) -> Result<Option<PhoneVerification>, StoreError> {
        self.get_item(&keys::phone_verification(agent, phone))
            .await?
            .map(from_item)
            .transpose()
    }

    /// One transaction: the pending code (or its deletion) and the text that carries it.
    async fn save_phone_verification(
        &self,
        agent: &AgentId,
        phone: &Phone,
        verification: Option<&PhoneVerification>,
        effects: &Effects,
    ) -> Result<(), StoreError> {
        let key = keys::phone_verification(agent, phone);
        let mut writes = vec![match verification {
            Some(v) => {
                let mut item = entity_item(&key, v)?;
                // Gone by itself once it can no longer be typed back.
                item.insert(keys::EXPIRES_AT.to_owned(), n(v.valid_until.as_second()));
                self.put_write(item)?
            }
            None => TransactWriteItem::builder()
                .delete(
                    Delete::builder()
                        .table_name(&self.table)
                        .set_key(Some(key.item()))
                        .build()
                        .map_err(internal)?,
                )
                .build(),
        }];
        writes.extend(self.effects_write(effects)?);
        self.transact(writes)
            .await
            .map_err(|e| store_error("TransactWriteItems", e))
    }

    /// The number's item is put only if absent or already this agent's, and the pending code
    /// deleted, in one transaction: of two agents confirming one number, one wins.
    async fn take_phone(&self, agent: &AgentId, phone: &Phone) -> Result<bool, StoreError> {
        let mut item = keys::phone(phone).item();
        item.insert(keys::AGENT_ID.to_owned(), s(agent.as_str()));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #agent = :agent")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#agent", keys::AGENT_ID)
            .expression_attribute_values(":agent", s(agent.as_str()))
            .build()
            .map_err(internal)?;
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(keys::phone_verification(agent, phone).item()))
            .build()
            .map_err(internal)?;
        let writes = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().delete(delete).build(),
        ];
        match self.transact(writes).await {
            Ok(()) => Ok(true),
            Err(e) if cancelled_by_condition(&e, 0).is_some() => Ok(false),
            Err(e) => Err(store_error("TransactWriteItems", e)),
        }
    }

    async fn put_team(&self, team: &Team) -> Result<(), StoreError> {
        let mut item = entity_item(&keys::team(&team.id), team)?;
        item.insert(
            keys::OWNER_PK.to_owned(),
            s(keys::owner(&team.lead_agent_id)),
        );
        item.insert(keys::OWNER_SK.to_owned(), s(keys::led_team(&team.id)));
        self.put_item(item).await
    }

    async fn get_team(&self, id: &TeamId) -> Result<Option<Team>, StoreError> {
        self.get_item(&keys::team(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn teams_led_by(&self, agent: &AgentId) -> Result<Vec<Team>, StoreError> {
        let query = self.query_prefix(
            Some((keys::OWNER_INDEX, keys::OWNER_PK, keys::OWNER_SK)),
            keys::owner(agent),
            Some(keys::LED_TEAM_PREFIX.to_owned()),
        );
        let teams = self
            .query_all(query)
            .await?
            .into_iter()
            .map(from_item::<Team>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(teams
            .into_iter()
            .filter(|t| &t.lead_agent_id == agent)
            .collect())
    }

    async fn put_routing(
        &self,
        team: &TeamId,
        settings: &RoutingSettings,
    ) -> Result<(), StoreError> {
        let item = entity_item(&keys::routing(team), settings)?;
        self.put_item(item).await
    }

    async fn get_routing(&self, team: &TeamId) -> Result<Option<RoutingSettings>, StoreError> {
        self.get_item(&keys::routing(team))
            .await?
            .map(from_item)
            .transpose()
    }
}
