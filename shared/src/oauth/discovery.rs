//! OIDC discovery (RFC 8414 / OpenID Connect Discovery), one path for everything that reads an issuer's
//! document: connection set-up from `issuerUrl` alone, and the JWKS that id_tokens are checked against.
//! The issuer is compared without a trailing `/` on either side, and the document's own `issuer` must
//! be the one asked for, or a mix-up is possible (RFC 8414 §3.3).

use serde::Deserialize;

use super::limited_body::{BodyError, MAX_PROVIDER_RESPONSE_BYTES, json_capped};
use super::provider::is_acceptable_provider_url;

/// The parts of a discovery document the vault uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub jwks_uri: Option<String>,
    /// How clients may authenticate at the token endpoint; absent means `client_secret_basic`.
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the issuer URL is not acceptable")]
    BadIssuerUrl,
    #[error("the discovery request failed")]
    RequestFailed,
    #[error("the discovery document answered HTTP {0}")]
    Status(u16),
    #[error("the discovery document: {0}")]
    Body(#[from] BodyError),
    #[error("the document's issuer is not the issuer asked for")]
    IssuerMismatch,
}

/// The issuer as it is compared and as documents are found under it: without a trailing `/`.
pub fn normalize_issuer(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

/// Fetches and checks `issuer`'s discovery document (capped at 1 MB, no redirects followed).
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
    insecure_allow_http_loopback: bool,
) -> Result<Discovery, DiscoveryError> {
    let issuer = normalize_issuer(issuer);
    let url = format!("{issuer}/.well-known/openid-configuration");
    if !is_acceptable_provider_url(&url, insecure_allow_http_loopback) {
        return Err(DiscoveryError::BadIssuerUrl);
    }
    let resp = http.get(&url).send().await.map_err(|_| DiscoveryError::RequestFailed)?;
    if !resp.status().is_success() {
        return Err(DiscoveryError::Status(resp.status().as_u16()));
    }
    let document: Discovery = json_capped(resp, MAX_PROVIDER_RESPONSE_BYTES).await?;
    if normalize_issuer(&document.issuer) != issuer {
        return Err(DiscoveryError::IssuerMismatch);
    }
    Ok(document)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_compare_without_their_trailing_slash() {
        assert_eq!(
            normalize_issuer("https://accounts.google.com/"),
            "https://accounts.google.com"
        );
        assert_eq!(
            normalize_issuer("https://login.example.com/tenant"),
            "https://login.example.com/tenant"
        );
    }
}
