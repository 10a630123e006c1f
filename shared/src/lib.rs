//! The referral-routing service's shared crate: the domain rules, the ports the functions talk
//! through, and the adapters behind those ports.

pub mod app;
pub mod aws;
pub mod documents;
pub mod domain;
pub mod dynamodb;
pub mod effects;
pub mod encoding;
#[cfg(feature = "fixtures")]
pub mod fixtures;
#[cfg(feature = "http")]
pub mod http;
#[cfg(any(test, feature = "memory"))]
pub mod memory;
pub mod ports;
pub mod schedule;
pub mod telemetry;
pub mod twilio;
pub mod wiring;
