//! Talking OAuth/OIDC to providers: connections, PKCE, authorize URLs, the token endpoint and id_tokens.

pub mod answer;
pub mod authorize;
pub mod client_assertion;
pub mod client_auth;
pub mod connection;
pub mod dialect;
pub mod discovery;
pub mod id_token;
pub mod limited_body;
pub mod pkce;
pub mod provider;
pub mod scopes;

pub use connection::{Connection, TokenRequestEncoding};
