//! The referral-routing service's shared crate: the domain rules, the ports the functions talk
//! through, and the adapters behind those ports.

pub mod domain;
pub mod encoding;
pub mod ports;
pub mod dynamodb;
