//! The product rules of SPEC.md as pure code: no I/O, no clock. Callers pass "now".

pub mod agent;
pub mod billing;
pub mod claim;
pub mod contact;
pub mod referral;
pub mod reminder;
pub mod speed;
pub mod stage;
pub mod team;
pub mod texts;
pub mod values;
pub mod warm_transfer;
