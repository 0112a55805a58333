//! What a provider's answer comes to, whatever dialect it was read in (dialect.rs) and whatever
//! request it answered (provider.rs): new tokens, or a failure that says whether the provider may have
//! acted on the request.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the grant or the client for good (`invalid_grant`, ...).
    #[error("provider refused the grant: {error} (HTTP {status})")]
    Permanent { status: u16, error: String },
    /// Down, slow, rate-limited or otherwise not answering usefully now.
    #[error("provider unavailable: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        delivery: Delivery,
    },
}

/// What a failed request says about the provider's side: whether sending it again is safe. For a
/// refresh this is the whole question, since a provider with reuse detection revokes the token family
/// when a rotated refresh token comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// It never reached the provider (the connection could not be made): safe to send again.
    NotSent,
    /// The provider answered that it did nothing and to try again (429, or 503 with `Retry-After`).
    RetryLater,
    /// The provider answered with a refusal that is not a dead grant (another 4xx): it did nothing.
    Refused,
    /// Sent, and no trustworthy answer came back (a timeout, a reset, another 5xx, an unreadable
    /// success): the provider may have acted, for a refresh may have rotated the refresh token.
    Unknown,
}

impl ProviderError {
    pub(crate) fn transient(reason: impl Into<String>, delivery: Delivery) -> Self {
        ProviderError::Transient {
            reason: reason.into(),
            retry_after: None,
            delivery,
        }
    }

    /// What the failure says about the provider's side (`Unknown` for none: a refusal is an answer).
    pub fn delivery(&self) -> Option<Delivery> {
        match self {
            ProviderError::Permanent { .. } => None,
            ProviderError::Transient { delivery, .. } => Some(*delivery),
        }
    }
}

/// A token endpoint answer. Tokens are secrets; `Debug` shows which ones came back, not their values.
pub struct TokenResponse {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<i64>,
    pub token_type: String,
    pub scope: Option<String>,
    pub id_token: Option<SecretString>,
    /// The connection's allow-listed, non-secret fields of the answer (`instance_url`, `team.id`),
    /// which callers need beside the access token; empty when none came.
    pub metadata: ProviderMetadata,
}

/// What a token without `expires_in` counts as: providers that send none (GitHub OAuth Apps at login,
/// Salesforce on refresh) issue tokens that do not expire.
const NON_EXPIRING_SECS: i64 = 10 * 365 * 24 * 3600;

impl TokenResponse {
    /// Seconds the access token lives, as the answer says, or as good as forever when it says nothing.
    pub fn lifetime_secs(&self) -> i64 {
        self.expires_in.unwrap_or(NON_EXPIRING_SECS)
    }
}

/// Allow-listed fields of a token answer, by their dotted path, as text.
pub type ProviderMetadata = std::collections::BTreeMap<String, String>;

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("has_id_token", &self.id_token.is_some())
            .field("expires_in", &self.expires_in)
            .field("token_type", &self.token_type)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}
