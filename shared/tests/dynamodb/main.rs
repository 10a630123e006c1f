//! The DynamoDB adapter against AWS's DynamoDB Local (`DYNAMODB_ENDPOINT`), one fresh table per
//! test created from `infra/template.yaml`. Without DynamoDB Local these tests fail; they never
//! skip. Faults DynamoDB Local cannot produce are in `faults`, on mocked responses.

mod agents;
mod billing;
mod faults;
mod harness;
mod referrals;
mod template;
mod texts;
