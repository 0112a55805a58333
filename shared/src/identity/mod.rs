//! Who is calling: vault user tokens (issued at login, verified on every request) and their signing key.

pub mod signing_key;
pub mod user_tokens;

pub use signing_key::SigningKey;
pub use user_tokens::UserTokens;

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person, by vault user id, with the connection they logged in through (`azp`).
    User { user_id: String, connection_id: String },
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("KMS {operation} failed: {cause}")]
    Kms { operation: &'static str, cause: String },
    #[error("the signing key is not an ECC_NIST_P256 key")]
    WrongKeyType,
    #[error("KMS returned a malformed signature")]
    BadSignature,
}

/// The caller of a request, from its bearer token. Every route but login and discovery needs one.
pub async fn authenticate(user_tokens: &UserTokens, req: &lambda_http::Request) -> Result<Caller, crate::ApiError> {
    let token = crate::http::bearer_token(req).ok_or(crate::ApiError::Unauthorized("a bearer token is required"))?;
    user_tokens.verify(token).await
}
