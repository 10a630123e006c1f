//! The DynamoDB adapter.
