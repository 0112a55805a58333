//! credvault: the code the three Lambda functions share.
//!
//! Handlers in `functions/*` translate HTTP to calls into this crate and back; everything that decides
//! anything lives here. Start at the functions' routers and `openapi.rs` (what the API is), `login.rs`
//! (how a credential gets in) and `vault.rs` (how a fresh access token gets out).

pub mod access;
pub mod audit;
pub mod aws_failure;
pub mod clock;
pub mod config;
pub mod cors;
pub mod crypto;
pub mod error;
pub mod http;
pub mod identity;
pub mod ids;
pub mod instance;
pub mod lifecycle;
pub mod login;
pub mod maintenance;
pub mod management;
pub mod migration;
pub mod oauth;
pub mod openapi;
pub mod random;
pub mod single_flight;
pub mod store;
pub mod telemetry;
pub mod vault;

pub use config::Config;
pub use error::ApiError;
pub use instance::Instance;
