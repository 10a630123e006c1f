//! The system's rules end to end, one rule per test, each named by the rule it proves
//! (`cargo test -p system-tests lr_9` runs LR-9's). Each test builds a small world of its own and
//! talks to the local runner as the apps and the telephony provider would, against the
//! DynamoDB Local and moto that `make test` started (see `harness`).
//!
//! One binary with a module per capability: one link for all of them, and cargo's test threads
//! run the tests of every capability side by side.

mod harness;

mod access;
mod billing;
mod contract;
mod cost;
mod effects;
mod load;
mod operations;
mod pipeline;
mod routing;
mod settings;
mod speed;
mod texts;
mod warm_transfer;
mod web;
