//! The template's table and the adapter's keys are one declaration.

use std::collections::BTreeSet;

use shared::dynamodb::keys;
use shared::dynamodb::table::TEMPLATE;

use crate::harness::{declaration, table};

#[test]
fn template_is_a_sam_template_whose_table_matches_the_adapters_keys() {
    let template: serde_norway::Value = serde_norway::from_str(TEMPLATE).unwrap();
    assert_eq!(
        template["Transform"].as_str(),
        Some("AWS::Serverless-2016-10-31")
    );
    assert_eq!(
        template["Resources"]["ReferralTable"]["Type"].as_str(),
        Some("AWS::DynamoDB::Table")
    );

    let d = declaration();
    assert_eq!(d.billing_mode.as_deref(), Some("PAY_PER_REQUEST"));
    let ttl = d.time_to_live_specification.as_ref().expect("TTL declared");
    assert_eq!(
        (ttl.attribute_name.as_str(), ttl.enabled),
        (keys::EXPIRES_AT, true)
    );
    let schema = |k: &[shared::dynamodb::table::KeyDeclaration]| {
        k.iter()
            .map(|k| (k.attribute_name.clone(), k.key_type.clone()))
            .collect::<Vec<_>>()
    };
    let hash_range = |pk: &str, sk: &str| {
        vec![
            (pk.to_owned(), "HASH".to_owned()),
            (sk.to_owned(), "RANGE".to_owned()),
        ]
    };
    assert_eq!(schema(&d.key_schema), hash_range(keys::PK, keys::SK));
    let index = |name: &str| {
        d.global_secondary_indexes
            .iter()
            .find(|i| i.index_name == name)
            .unwrap_or_else(|| panic!("index {name} declared"))
    };
    assert_eq!(
        schema(&index(keys::OWNER_INDEX).key_schema),
        hash_range(keys::OWNER_PK, keys::OWNER_SK)
    );
    assert_eq!(
        schema(&index(keys::AREA_INDEX).key_schema),
        hash_range(keys::AREA_PK, keys::AREA_SK)
    );
    let due = index(keys::DUE_INDEX);
    assert_eq!(
        schema(&due.key_schema),
        hash_range(keys::DUE_PK, keys::DUE_SK)
    );
    // The sweep reads only what the index projects: the key and the exact due time.
    assert_eq!(due.projection.projection_type, "INCLUDE");
    assert_eq!(
        due.projection
            .non_key_attributes
            .iter()
            .collect::<BTreeSet<_>>(),
        [keys::DUE_KEY.to_owned(), keys::DUE_AT.to_owned()]
            .iter()
            .collect()
    );
    assert_eq!(d.global_secondary_indexes.len(), 3);

    // Every key attribute is defined as a string, and nothing else is (CloudFormation refuses
    // definitions no key uses).
    let defined: BTreeSet<(String, String)> = d
        .attribute_definitions
        .iter()
        .map(|a| (a.attribute_name.clone(), a.attribute_type.clone()))
        .collect();
    let used: BTreeSet<(String, String)> = d
        .key_schema
        .iter()
        .chain(
            d.global_secondary_indexes
                .iter()
                .flat_map(|i| &i.key_schema),
        )
        .map(|k| (k.attribute_name.clone(), "S".to_owned()))
        .collect();
    assert_eq!(defined, used);
}

#[tokio::test]
async fn table_created_from_the_template_has_its_indexes_and_ttl() {
    let t = table("from-template").await;
    let described = t
        .client
        .describe_table()
        .table_name(&t.name)
        .send()
        .await
        .unwrap();
    let described = described.table.unwrap();
    let mut indexes: Vec<&str> = described
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name())
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        vec![keys::AREA_INDEX, keys::DUE_INDEX, keys::OWNER_INDEX]
    );
    let ttl = t
        .client
        .describe_time_to_live()
        .table_name(&t.name)
        .send()
        .await
        .unwrap();
    let ttl = ttl.time_to_live_description.unwrap();
    assert_eq!(ttl.attribute_name(), Some(keys::EXPIRES_AT));
}
