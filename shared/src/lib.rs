//! The referral-routing service's shared crate: the domain rules, the ports the functions talk
//! through, and the adapters behind those ports.

pub mod app;
pub mod domain;
pub mod dynamodb;
pub mod encoding;
pub mod memory;
pub mod ports;
