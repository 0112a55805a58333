//! The provider's token endpoint: code exchange and refresh (RFC 6749), and revocation (RFC 7009).
//!
//! The HTTP client follows no redirects and has a timeout, and no answer is read past
//! `MAX_PROVIDER_RESPONSE_BYTES`. Errors name the HTTP status and the OAuth `error` code only: a
//! provider body may echo a token, so it never reaches a log or an error.

use std::time::Duration;

use backon::Retryable;
use secrecy::{ExposeSecret, SecretString};

pub use super::answer::{Delivery, ProviderError, TokenResponse};
use super::client_auth::{ClientCredentials, client_credentials};
use super::limited_body::{BodyError, MAX_PROVIDER_RESPONSE_BYTES, json_capped, read_capped};
use super::pkce::PkceVerifier;
use super::{Connection, TokenRequestEncoding};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_millis(1000);

/// A send error: a connection that could not be made never reached the provider; anything after
/// that (a timeout, a reset while waiting) may have.
fn send_failure(e: &reqwest::Error) -> ProviderError {
    if e.is_connect() {
        ProviderError::transient("connection failed", Delivery::NotSent)
    } else if e.is_timeout() {
        ProviderError::transient("timeout", Delivery::Unknown)
    } else {
        ProviderError::transient("connection lost", Delivery::Unknown)
    }
}

pub struct ProviderClient {
    http: reqwest::Client,
    attempts: u32,
}

impl ProviderClient {
    pub fn new(timeout: Duration, attempts: u32) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent("credvault")
            .build()?;
        Ok(Self {
            http,
            attempts: attempts.max(1),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Exchanges an authorization code. One attempt only: a code is single-use at the provider.
    pub async fn exchange_code(
        &self,
        connection: &Connection,
        code: &SecretString,
        verifier: &PkceVerifier,
        redirect_uri: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier.secret()),
        ];
        self.token_request(connection, &params).await
    }

    /// Uses a refresh token, once. Whether to try again is the refresh protocol's decision (vault.rs):
    /// only a request that provably did not reach the provider, or that it asked to repeat, may be sent
    /// again, and only while the lease covers it; `ProviderError::delivery` tells which.
    pub async fn refresh(
        &self,
        connection: &Connection,
        refresh_token: &SecretString,
    ) -> Result<TokenResponse, ProviderError> {
        let params = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose_secret()),
        ];
        self.token_request(connection, &params).await
    }

    async fn token_request(
        &self,
        connection: &Connection,
        params: &[(&str, &str)],
    ) -> Result<TokenResponse, ProviderError> {
        let (req, params) = authenticated(&self.http, &connection.token_url, connection, params)?;
        let req = req.header(reqwest::header::ACCEPT, "application/json");
        let req = match connection.token_request_encoding {
            TokenRequestEncoding::Form => req.form(&params),
            TokenRequestEncoding::Json => {
                let body: serde_json::Map<String, serde_json::Value> = params
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                    .collect();
                req.json(&body)
            }
        };
        let resp = req.send().await.map_err(|e| send_failure(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        // An answer that cannot be read may have been a success carrying a rotated refresh token.
        let body = read_capped(resp, MAX_PROVIDER_RESPONSE_BYTES).await.map_err(|e| {
            ProviderError::transient(
                match e {
                    BodyError::TooLarge { .. } => "provider answer too large",
                    BodyError::Timeout => "timeout reading response",
                    BodyError::Interrupted | BodyError::NotJson => "response interrupted",
                },
                Delivery::Unknown,
            )
        })?;
        // What the answer means is the connection's dialect's to say (dialect.rs).
        super::dialect::interpret(
            connection.dialect,
            status,
            &body,
            retry_after,
            &connection.metadata_fields,
        )
    }

    /// Who the user is, for providers without id_tokens: their user endpoint's JSON object, with
    /// `sub` set from `id` when it has none (GitHub answers `{"id": 583231, "login": ...}`).
    pub async fn user_info(
        &self,
        url: &str,
        access_token: &SecretString,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
        let resp = self
            .http
            .get(url)
            .bearer_auth(access_token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| send_failure(&e))?;
        if !resp.status().is_success() {
            return Err(ProviderError::transient(
                format!("user endpoint answered HTTP {}", resp.status().as_u16()),
                Delivery::Refused,
            ));
        }
        let mut claims: serde_json::Map<String, serde_json::Value> =
            json_capped(resp, MAX_PROVIDER_RESPONSE_BYTES).await.map_err(|e| {
                ProviderError::transient(
                    match e {
                        BodyError::TooLarge { .. } => "user endpoint answer too large",
                        BodyError::Timeout => "timeout reading the user endpoint's answer",
                        BodyError::Interrupted => "user endpoint answer interrupted",
                        BodyError::NotJson => "user endpoint did not answer a JSON object",
                    },
                    Delivery::Unknown,
                )
            })?;
        if !claims.contains_key("sub")
            && let Some(id) = claims.get("id").cloned()
        {
            let id = match id {
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::String(s) => s,
                _ => {
                    return Err(ProviderError::transient(
                        "user endpoint's id is not a string or number",
                        Delivery::Refused,
                    ));
                }
            };
            claims.insert("sub".into(), serde_json::Value::String(id));
        }
        Ok(claims)
    }

    /// RFC 7009 revocation of a refresh token: 200 is success even for unknown tokens; 5xx, 429 and
    /// connection failures are retried with jittered backoff (revoking twice is harmless).
    pub async fn revoke(
        &self,
        connection: &Connection,
        revocation_url: &str,
        token: &SecretString,
    ) -> Result<(), ProviderError> {
        let params = [("token", token.expose_secret()), ("token_type_hint", "refresh_token")];
        let revoke_once = || async {
            let (req, params) = authenticated(&self.http, revocation_url, connection, &params)?;
            let resp = req.form(&params).send().await.map_err(|e| send_failure(&e))?;
            let status = resp.status().as_u16();
            // The status is the whole answer; the body is only drained (capped) so a small one leaves
            // the connection reusable, and a huge one is cut off.
            let _ = read_capped(resp, MAX_PROVIDER_RESPONSE_BYTES).await;
            match status {
                200..=299 => Ok(()),
                status => Err(ProviderError::transient(
                    format!("revocation answered HTTP {status}"),
                    if status >= 500 || status == 429 {
                        Delivery::RetryLater
                    } else {
                        Delivery::Refused
                    },
                )),
            }
        };
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(BACKOFF_BASE)
            .with_max_delay(BACKOFF_CAP)
            .with_max_times(self.attempts.saturating_sub(1) as usize)
            .with_jitter();
        // Revoking twice is harmless: everything but a refusal is tried again.
        revoke_once
            .retry(backoff)
            .when(|e| matches!(e, ProviderError::Transient { delivery, .. } if *delivery != Delivery::Refused))
            .await
    }
}

/// A request to `endpoint` with the client's credentials, the way the connection authenticates
/// (client_auth.rs): an `Authorization` header, or more body parameters (a secret, or an assertion
/// made for this endpoint).
fn authenticated(
    http: &reqwest::Client,
    endpoint: &str,
    connection: &Connection,
    params: &[(&str, &str)],
) -> Result<(reqwest::RequestBuilder, Vec<(String, String)>), ProviderError> {
    let req = http.post(endpoint);
    let mut params: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    match client_credentials(connection, endpoint) {
        Some(ClientCredentials::Header(value)) => Ok((req.header(reqwest::header::AUTHORIZATION, value), params)),
        Some(ClientCredentials::Body(credentials)) => {
            params.extend(credentials.into_iter().map(|(k, v)| (k.to_string(), v)));
            Ok((req, params))
        }
        // Nothing was sent; the stored key is unusable, which no retry mends.
        None => Err(ProviderError::transient(
            "the connection's private key does not make a client assertion",
            Delivery::Refused,
        )),
    }
}

/// Jittered exponential backoff before retry `attempt + 1`.
pub fn backoff(attempt: u32) -> Duration {
    crate::random::jittered_backoff(BACKOFF_BASE, BACKOFF_CAP, attempt.saturating_sub(1))
}

/// The most time all backoffs of `attempts` tries can add up to (used to check the lease length).
pub fn max_total_backoff(attempts: u32) -> Duration {
    (1..attempts)
        .map(|a| (BACKOFF_BASE * 2u32.saturating_pow(a - 1)).min(BACKOFF_CAP))
        .sum()
}

/// Provider URLs must be https; plain http only to loopback, and only when the vault runs locally.
pub fn is_acceptable_provider_url(value: &str, insecure_allow_http_loopback: bool) -> bool {
    let Ok(url) = url::Url::parse(value) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" if insecure_allow_http_loopback => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_ceiling() {
        for attempt in 1..6 {
            let b = backoff(attempt);
            assert!(b <= BACKOFF_CAP, "{b:?}");
            // Jitter takes at most half: the pause doubles from BACKOFF_BASE up to the ceiling.
            let ceiling = (BACKOFF_BASE * 2u32.pow(attempt - 1)).min(BACKOFF_CAP);
            assert!(
                b >= ceiling / 2 && b <= ceiling,
                "attempt {attempt}: {b:?} of {ceiling:?}"
            );
        }
        assert_eq!(max_total_backoff(1), Duration::ZERO);
        assert_eq!(max_total_backoff(3), Duration::from_millis(300));
    }

    #[test]
    fn http_is_only_for_loopback_and_only_when_allowed() {
        assert!(is_acceptable_provider_url(
            "https://accounts.google.com/o/oauth2",
            false
        ));
        assert!(!is_acceptable_provider_url("http://127.0.0.1:8080/token", false));
        assert!(is_acceptable_provider_url("http://127.0.0.1:8080/token", true));
        assert!(!is_acceptable_provider_url("http://10.0.0.1/token", true));
        assert!(!is_acceptable_provider_url("ftp://x/token", true));
        // Loopback by name and by IPv6 address too; any other name is not loopback.
        assert!(is_acceptable_provider_url("http://localhost:8080/token", true));
        assert!(is_acceptable_provider_url("http://[::1]:8080/token", true));
        assert!(!is_acceptable_provider_url("http://localhost:8080/token", false));
        assert!(!is_acceptable_provider_url("http://provider.example.com/token", true));
        assert!(!is_acceptable_provider_url("http://localhost.example.com/token", true));
        assert!(!is_acceptable_provider_url("http://[2001:db8::1]/token", true));
        assert!(!is_acceptable_provider_url("not a url", true));
    }
}
