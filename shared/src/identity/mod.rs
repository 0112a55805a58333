//! Who is calling: vault user tokens (issued at login, verified on every request), their signing key,
//! and service clients with their verification keys. Turning a request into a caller happens at the
//! HTTP edge (the `Caller` extractor of `http.rs`, through `Authenticator`); managing service clients is in `management/service_clients.rs`.

pub mod authenticator;
pub mod caller;
pub mod service_clients;
pub mod signing_key;
pub mod user_tokens;

pub use authenticator::Authenticator;
pub use caller::{AuthenticationError, Caller};
pub use signing_key::{SigningKey, SigningKeyError};
pub use user_tokens::UserTokens;
