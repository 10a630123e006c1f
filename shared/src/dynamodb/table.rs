//! The table as `infra/template.yaml` declares it, and CreateTable built from that declaration.
//!
//! The template is embedded, so the code that creates a table (tests, local setup) and the stack
//! that deploys it read the same text. Parse [`TEMPLATE`] with any YAML reader that tolerates
//! CloudFormation tags (`!Ref`, `!Sub`: serde_norway's `Value` keeps them as tagged values), take
//! `Resources.ReferralTable.Properties`, and deserialize it into a [`TableDeclaration`].

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use serde::Deserialize;

use super::error::{internal, store_error};
use crate::ports::StoreError;

/// The SAM template of the service.
pub const TEMPLATE: &str = include_str!("../../../infra/template.yaml");

/// The logical id of the table resource in [`TEMPLATE`].
pub const RESOURCE: &str = "ReferralTable";

/// The `Properties` of an `AWS::DynamoDB::Table` resource, as far as CreateTable needs them.
/// Properties CreateTable has no use for (tags, point-in-time recovery, ...) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDeclaration {
    pub attribute_definitions: Vec<AttributeDeclaration>,
    pub key_schema: Vec<KeyDeclaration>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDeclaration>,
    pub billing_mode: Option<String>,
    pub time_to_live_specification: Option<TtlDeclaration>,
    pub stream_specification: Option<StreamDeclaration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDeclaration {
    pub stream_view_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDeclaration {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyDeclaration {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDeclaration {
    pub index_name: String,
    pub key_schema: Vec<KeyDeclaration>,
    pub projection: ProjectionDeclaration,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDeclaration {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDeclaration {
    pub attribute_name: String,
    pub enabled: bool,
}

fn key_schema(keys: &[KeyDeclaration]) -> Result<Vec<KeySchemaElement>, StoreError> {
    keys.iter()
        .map(|k| {
            KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(KeyType::from(k.key_type.as_str()))
                .build()
                .map_err(internal)
        })
        .collect()
}

impl TableDeclaration {
    /// The CreateTable request for a table called `name` with this declaration.
    pub fn create_table_request(
        &self,
        client: &Client,
        name: &str,
    ) -> Result<CreateTableFluentBuilder, StoreError> {
        let attributes = self
            .attribute_definitions
            .iter()
            .map(|a| {
                AttributeDefinition::builder()
                    .attribute_name(&a.attribute_name)
                    .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                    .build()
                    .map_err(internal)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let indexes = self
            .global_secondary_indexes
            .iter()
            .map(|i| {
                let projection = Projection::builder()
                    .projection_type(ProjectionType::from(i.projection.projection_type.as_str()))
                    .set_non_key_attributes(
                        (!i.projection.non_key_attributes.is_empty())
                            .then(|| i.projection.non_key_attributes.clone()),
                    )
                    .build();
                GlobalSecondaryIndex::builder()
                    .index_name(&i.index_name)
                    .set_key_schema(Some(key_schema(&i.key_schema)?))
                    .projection(projection)
                    .build()
                    .map_err(internal)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(client
            .create_table()
            .table_name(name)
            .set_attribute_definitions(Some(attributes))
            .set_key_schema(Some(key_schema(&self.key_schema)?))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .set_billing_mode(self.billing_mode.as_deref().map(BillingMode::from))
            .set_stream_specification(
                self.stream_specification
                    .as_ref()
                    .map(|s| {
                        StreamSpecification::builder()
                            .stream_enabled(true)
                            .stream_view_type(StreamViewType::from(s.stream_view_type.as_str()))
                            .build()
                            .map_err(internal)
                    })
                    .transpose()?,
            ))
    }

    /// Creates the table, waits until it is active, and turns on TTL when declared (CreateTable has
    /// no TTL parameter; CloudFormation's `TimeToLiveSpecification` is an UpdateTimeToLive).
    pub async fn create(&self, client: &Client, name: &str) -> Result<(), StoreError> {
        self.create_table_request(client, name)?
            .send()
            .await
            .map_err(|e| store_error("CreateTable", e))?;
        client
            .wait_until_table_exists()
            .table_name(name)
            .wait(Duration::from_secs(300))
            .await
            .map_err(internal)?;
        if let Some(ttl) = self
            .time_to_live_specification
            .as_ref()
            .filter(|t| t.enabled)
        {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(&ttl.attribute_name)
                .enabled(true)
                .build()
                .map_err(internal)?;
            let enabled = client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(spec)
                .send()
                .await;
            match enabled {
                Ok(_) => {}
                // A retried request whose first attempt landed: the TTL is on, as asked.
                Err(e)
                    if e.code() == Some("ValidationException")
                        && e.message().is_some_and(|m| m.contains("already enabled")) => {}
                Err(e) => return Err(store_error("UpdateTimeToLive", e)),
            }
        }
        Ok(())
    }
}
