//! The one error type every handler answers with: each variant has its HTTP status and stable
//! `errorCode`. Internal causes go to the log (by Display, never Debug), never to the response body.

use std::time::Duration;

use serde_json::json;

use crate::aws_failure::Failure;

/// The whole cause of an internal failure, kept for the log line.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed or unacceptable request: `code` is the stable snake_case `errorCode`.
    #[error("bad request ({code}): {detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Authenticated, but not allowed: `code` says which rule refused (`forbidden` for a missing grant).
    #[error("forbidden ({code})")]
    Forbidden { code: &'static str, detail: String },
    #[error("not found ({code})")]
    NotFound { code: &'static str, detail: String },
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The item exists already (`code`: role_exists, ...).
    #[error("conflict ({code})")]
    Conflict { code: &'static str, detail: String },
    /// `If-Unmodified-Since` lost: someone changed the item since the caller read it.
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("the credential needs the user to log in again")]
    ReauthenticationRequired,
    /// The stored grant lacks scopes the caller requires: the user must consent again. `login` is the
    /// part of a login start body (`connectionId`, `connectionProperties.scope`) that asks for them.
    #[error("the stored grant lacks required scopes")]
    InsufficientScope {
        missing: Vec<String>,
        login: serde_json::Value,
    },
    #[error("the provider is unavailable")]
    ProviderUnavailable { retry_after: Duration },
    /// DynamoDB or KMS throttled us beyond the SDK's own retries.
    #[error("throttled")]
    Throttled,
    /// DynamoDB or KMS did not answer usefully (timeout, connection failure, their own 5xx).
    #[error("a service the vault depends on is unavailable")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(Cause),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    /// The caller holds no grant for this request.
    pub fn forbidden() -> Self {
        ApiError::Forbidden {
            code: "forbidden",
            detail: "the caller has no permission for this request".into(),
        }
    }

    /// Refused by a named rule (delegation, built-in roles, ...).
    pub fn refused(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::NotFound {
            code,
            detail: detail.into(),
        }
    }

    pub fn internal(cause: impl Into<Cause>) -> Self {
        ApiError::Internal(cause.into())
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden { .. } => 403,
            ApiError::NotFound { .. } => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Conflict { .. } => 409,
            ApiError::PreconditionFailed => 412,
            ApiError::ReauthenticationRequired | ApiError::InsufficientScope { .. } => 409,
            ApiError::PayloadTooLarge => 413,
            ApiError::Internal(_) => 500,
            ApiError::ProviderUnavailable { .. } | ApiError::Throttled | ApiError::Unavailable => 503,
        }
    }

    pub fn error_code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Forbidden { code, .. } => code,
            ApiError::PreconditionFailed => "precondition_failed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::ReauthenticationRequired => "reauthentication_required",
            ApiError::InsufficientScope { .. } => "insufficient_scope",
            ApiError::ProviderUnavailable { .. } => "provider_unavailable",
            ApiError::Throttled => "throttled",
            ApiError::Unavailable => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "The request is not valid.",
            ApiError::PayloadTooLarge => "The request body is too large.",
            ApiError::Unauthorized(_) => "The request JWT found in the Authorization header is not valid.",
            ApiError::Forbidden { .. } => "The caller does not have permission for this request.",
            ApiError::NotFound { .. } => "Not found.",
            ApiError::MethodNotAllowed => "This method is not allowed on this route.",
            ApiError::Conflict { .. } => "The item exists already.",
            ApiError::PreconditionFailed => {
                "Precondition failed: the item was changed since it was read. Get the latest version and retry."
            }
            ApiError::ReauthenticationRequired => {
                "The provider no longer accepts this credential: the user must log in again."
            }
            ApiError::InsufficientScope { .. } => {
                "The user has not granted every scope required: they must log in again and consent to them."
            }
            ApiError::ProviderUnavailable { .. } => {
                "The provider is unavailable and no valid access token is stored. Retry later."
            }
            ApiError::Throttled => "The vault is busy. Retry later.",
            ApiError::Unavailable => "A service the vault depends on is unavailable. Retry later.",
            ApiError::Internal(_) => "Internal error.",
        }
    }

    /// Detail shown to the caller: only text this code wrote itself, never an upstream body.
    fn detail(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { detail, .. }
            | ApiError::NotFound { detail, .. }
            | ApiError::Conflict { detail, .. }
            | ApiError::Forbidden { detail, .. } => Some(detail.clone()),
            ApiError::Unauthorized(why) => Some((*why).to_string()),
            _ => None,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::ProviderUnavailable { retry_after } => Some(*retry_after),
            ApiError::Throttled => Some(Duration::from_secs(1)),
            ApiError::Unavailable => Some(Duration::from_secs(2)),
            _ => None,
        }
    }

    /// The JSON body, with a fresh `errorId` that is also written to the log line for this error.
    pub fn body(&self, error_id: &str) -> serde_json::Value {
        let mut body = json!({
            "title": self.title(),
            "errorCode": self.error_code(),
            "errorId": error_id,
            "status": self.status(),
        });
        if let Some(detail) = self.detail() {
            body["detail"] = json!(detail);
        }
        if let ApiError::InsufficientScope { missing, login } = self {
            body["missingScopes"] = json!(missing);
            body["login"] = login.clone();
        }
        body
    }

    /// The stored grant of (connection, `granted`) lacks `missing` of `required`.
    pub fn insufficient_scope(
        connection_id: &str,
        granted: Option<&str>,
        required: &[String],
        missing: Vec<String>,
    ) -> Self {
        let scope = crate::oauth::scopes::union(granted, required);
        ApiError::InsufficientScope {
            missing,
            login: json!({"connectionId": connection_id, "connectionProperties": {"scope": scope}}),
        }
    }
}

/// The one place a DynamoDB or KMS failure becomes an answer: throttling is a 503 `throttled`
/// (Retry-After 1 s), unavailability (timeouts, connection failures, their own 5xx) a 503
/// `service_unavailable` (Retry-After 2 s) whose cause goes to the log, and anything else a 500 whose
/// cause goes to the log only. Every `From` below that carries an AWS failure ends here.
fn answer_aws_failure(
    failure: Failure,
    service: &'static str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> ApiError {
    match failure {
        Failure::Throttled => ApiError::Throttled,
        // The cause goes to the log, where the answer points with its errorId.
        Failure::Unavailable => {
            tracing::warn!(error = %cause_chain(&err), "{service} unavailable");
            ApiError::Unavailable
        }
        Failure::Other => ApiError::internal(err),
    }
}

/// Store failures: AWS failures as above; a bad cursor is the caller's 400; a failed condition or a
/// malformed item that reaches the edge is a 500.
impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Throttled => answer_aws_failure(Failure::Throttled, "DynamoDB", err),
            StoreError::Unavailable { .. } => answer_aws_failure(Failure::Unavailable, "DynamoDB", err),
            StoreError::BadCursor => ApiError::bad_request("invalid_cursor", "the cursor is not one this API gave out"),
            other => ApiError::internal(other),
        }
    }
}

/// A read whose audit line cannot be written is not answered: the log is a service the vault
/// depends on, so this is a 503 as an unavailable store is.
impl From<crate::audit::AuditLogFailed> for ApiError {
    fn from(err: crate::audit::AuditLogFailed) -> Self {
        answer_aws_failure(Failure::Unavailable, "the audit log", err)
    }
}

impl From<crate::crypto::CryptoError> for ApiError {
    fn from(err: crate::crypto::CryptoError) -> Self {
        use crate::crypto::CryptoError;
        match err {
            CryptoError::KmsUnavailable { throttled: true, .. } => answer_aws_failure(Failure::Throttled, "KMS", err),
            CryptoError::KmsUnavailable { .. } => answer_aws_failure(Failure::Unavailable, "KMS", err),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::identity::SigningKeyError> for ApiError {
    fn from(err: crate::identity::SigningKeyError) -> Self {
        use crate::identity::SigningKeyError;
        match err {
            SigningKeyError::Kms { failure, .. } => answer_aws_failure(failure, "KMS", err),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::identity::AuthenticationError> for ApiError {
    fn from(err: crate::identity::AuthenticationError) -> Self {
        use crate::identity::AuthenticationError;
        match err {
            AuthenticationError::Refused(why) => ApiError::Unauthorized(why),
            AuthenticationError::SigningKey(key) => key.into(),
            AuthenticationError::Store(store) => store.into(),
            stored_key @ AuthenticationError::StoredKey(_) => ApiError::internal(stored_key),
        }
    }
}

impl From<crate::store::connections::ConnectionStoreError> for ApiError {
    fn from(err: crate::store::connections::ConnectionStoreError) -> Self {
        use crate::store::connections::ConnectionStoreError;
        match err {
            ConnectionStoreError::Store(store) => store.into(),
            ConnectionStoreError::Crypto(crypto) => crypto.into(),
        }
    }
}

impl From<crate::store::credentials::RepositoryError> for ApiError {
    fn from(err: crate::store::credentials::RepositoryError) -> Self {
        use crate::store::credentials::RepositoryError;
        match err {
            RepositoryError::Store(store) => store.into(),
            RepositoryError::Crypto(crypto) => crypto.into(),
        }
    }
}

impl From<crate::vault::VaultError> for ApiError {
    fn from(err: crate::vault::VaultError) -> Self {
        use crate::vault::VaultError;
        match err {
            VaultError::NotFound => ApiError::not_found(
                "credentials_not_found",
                "no credentials stored for this user and connection",
            ),
            VaultError::ReauthenticationRequired => ApiError::ReauthenticationRequired,
            VaultError::ProviderUnavailable { retry_after } => ApiError::ProviderUnavailable { retry_after },
            VaultError::Repository(repository) => repository.into(),
            VaultError::Connections(connections) => connections.into(),
            kept_changing @ VaultError::KeptChanging => ApiError::internal(kept_changing),
        }
    }
}

impl From<crate::access::AccessError> for ApiError {
    fn from(err: crate::access::AccessError) -> Self {
        use crate::access::AccessError;
        match err {
            AccessError::Forbidden => ApiError::forbidden(),
            AccessError::Store(store) => store.into(),
        }
    }
}

impl From<crate::access::model::ValidationError> for ApiError {
    fn from(err: crate::access::model::ValidationError) -> Self {
        use crate::access::model::ValidationError;
        match err {
            ValidationError::Invalid { code, detail } => ApiError::bad_request(code, detail),
            ValidationError::TooLarge => ApiError::PayloadTooLarge,
        }
    }
}

/// A grant change refused by the delegation rules: an unknown role is the caller's 400, every other
/// rule a 403 under its own code.
impl From<crate::access::delegation::Refusal> for ApiError {
    fn from(refusal: crate::access::delegation::Refusal) -> Self {
        use crate::access::delegation::Refusal;
        match refusal {
            Refusal::UnknownRole { .. } => ApiError::bad_request(refusal.error_code(), refusal.to_string()),
            other => ApiError::refused(other.error_code(), other.to_string()),
        }
    }
}

impl From<crate::oauth::authorize::AuthorizeError> for ApiError {
    fn from(err: crate::oauth::authorize::AuthorizeError) -> Self {
        use crate::oauth::authorize::AuthorizeError;
        match err {
            AuthorizeError::Properties(detail) => ApiError::bad_request("invalid_connection_properties", detail),
            bad_url @ AuthorizeError::AuthenticationUrl { .. } => ApiError::internal(bad_url),
        }
    }
}

impl From<crate::login::LoginError> for ApiError {
    fn from(err: crate::login::LoginError) -> Self {
        use crate::login::LoginError;
        match err {
            LoginError::Invalid { code, detail } => ApiError::bad_request(code, detail),
            LoginError::ConnectionNotFound => ApiError::not_found("connection_not_found", "no such connection"),
            LoginError::Store(store) => store.into(),
            LoginError::Connections(connections) => connections.into(),
            LoginError::Crypto(crypto) => crypto.into(),
            LoginError::Repository(repository) => repository.into(),
            LoginError::SigningKey(key) => key.into(),
            LoginError::Authorize(authorize) => authorize.into(),
            other @ (LoginError::KeptChanging | LoginError::RedirectUrl(_)) => ApiError::internal(other),
        }
    }
}

/// Writes the full cause chain of an error, by Display only.
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_cause_never_reaches_the_body() {
        let err = ApiError::internal("dynamodb said secret-value-123");
        let body = err.body("e1").to_string();
        assert!(!body.contains("secret-value-123"), "{body}");
        assert_eq!(err.status(), 500);
    }

    #[test]
    fn client_mistakes_are_4xx_with_stable_codes() {
        let cases = [
            (ApiError::bad_request("invalid_json", "x"), 400, "invalid_json"),
            (ApiError::Unauthorized("expired"), 401, "unauthorized"),
            (ApiError::forbidden(), 403, "forbidden"),
            (ApiError::refused("cannot_grant", "x"), 403, "cannot_grant"),
            (
                ApiError::not_found("credentials_not_found", "x"),
                404,
                "credentials_not_found",
            ),
            (ApiError::ReauthenticationRequired, 409, "reauthentication_required"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status(), status);
            let body = err.body("id");
            assert_eq!(body["errorCode"], code);
            assert_eq!(body["status"], status);
        }
    }
}
