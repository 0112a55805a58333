//! Who is calling, once a request's bearer token is verified, and why a token proves nobody.

use super::signing_key::SigningKeyError;
use crate::store::StoreError;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, by vault user id, with the connection they logged in through (`azp`).
    User { user_id: String, connection_id: String },
    /// A backend service, by service client id, authenticated with one of its access keys.
    ServiceClient { client_id: String },
}

impl Caller {
    /// The id access records name this caller by.
    pub fn subject(&self) -> &str {
        match self {
            Caller::User { user_id, .. } => user_id,
            Caller::ServiceClient { client_id } => client_id,
        }
    }
}

/// Why a bearer token did not become a caller.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticationError {
    /// The token proves nobody: the reason is safe to show the caller (it never quotes the token).
    #[error("not authenticated: {0}")]
    Refused(&'static str),
    /// The vault's signing key could not be read from KMS.
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    /// The service client could not be read from the table.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored verification key does not make a decoding key.
    #[error("a stored verification key does not decode")]
    StoredKey(#[source] jsonwebtoken::errors::Error),
}
