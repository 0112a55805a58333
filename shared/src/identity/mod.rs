//! Who is calling: vault user tokens (issued at login, verified on every request) and their signing key.

pub mod service_clients;
pub mod signing_key;
pub mod user_tokens;

pub use signing_key::SigningKey;
pub use user_tokens::UserTokens;

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

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A KMS call for the signing key failed (throttled, unavailable or otherwise).
    #[error("KMS {operation} failed")]
    Kms {
        operation: &'static str,
        failure: crate::aws_failure::Failure,
        #[source]
        source: crate::aws_failure::Source,
    },
    #[error("the signing key is not an ECC_NIST_P256 key")]
    WrongKeyType,
    #[error("KMS returned a malformed signature")]
    BadSignature,
}

/// The caller of a request, from its bearer token: a vault user token (ES256) or a service-client
/// token (EdDSA). Every route but login and discovery needs one.
pub async fn authenticate(services: &crate::Services, req: &lambda_http::Request) -> Result<Caller, crate::ApiError> {
    let token = crate::http::bearer_token(req).ok_or(crate::ApiError::Unauthorized("a bearer token is required"))?;
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| crate::ApiError::Unauthorized("the token is not a valid JWT"))?;
    match (header.alg, header.kid.as_deref()) {
        (jsonwebtoken::Algorithm::EdDSA, Some(kid)) => service_clients::verify(services, token, kid).await,
        _ => services.user_tokens.verify(token).await,
    }
}
