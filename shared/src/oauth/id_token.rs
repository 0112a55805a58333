//! Verifying a provider's id_token (OIDC Core §3.1.3.7): signature against the issuer's JWKS found by
//! discovery, an algorithm allowlist, iss, aud, azp, exp, iat and the nonce of the login request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::Connection;
use super::provider::is_acceptable_provider_url;

/// Asymmetric algorithms only: HS* would let anyone holding the client secret mint identities, and
/// `none` is not an algorithm.
const ALLOWED_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);
/// An unknown `kid` triggers a refetch (the provider rotated), but not more often than this.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(60);
const CLOCK_LEEWAY_SECS: u64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum IdTokenError {
    #[error("the connection's issuer URL is not acceptable")]
    BadIssuerUrl,
    #[error("provider discovery failed: {0}")]
    Discovery(String),
    #[error("id_token is not valid: {0}")]
    Invalid(String),
}

/// The identity an id_token proves: its verified claims.
#[derive(Debug, Clone)]
pub struct IdClaims {
    pub sub: String,
    pub all: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    nonce: Option<String>,
    azp: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Provider signing keys by issuer, fetched only from the issuer configured on the connection, never
/// from a URL a caller supplied.
pub struct ProviderKeys {
    http: reqwest::Client,
    insecure_allow_http_loopback: bool,
    cache: Mutex<HashMap<String, CachedKeys>>,
}

impl ProviderKeys {
    pub fn new(http: reqwest::Client, insecure_allow_http_loopback: bool) -> Self {
        Self {
            http,
            insecure_allow_http_loopback,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn verify(
        &self,
        connection: &Connection,
        id_token: &str,
        expected_nonce: &str,
    ) -> Result<IdClaims, IdTokenError> {
        let issuer = connection.issuer_url.as_deref().ok_or(IdTokenError::BadIssuerUrl)?;
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|e| IdTokenError::Invalid(format!("header: {e}")))?;
        if !ALLOWED_ALGORITHMS.contains(&header.alg) {
            return Err(IdTokenError::Invalid(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let key = self.key_for(issuer, header.kid.as_deref()).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[&connection.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_LEEWAY_SECS;
        let data = jsonwebtoken::decode::<RawClaims>(id_token, &key, &validation)
            .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        if claims.nonce.as_deref() != Some(expected_nonce) {
            return Err(IdTokenError::Invalid("nonce does not match the login request".into()));
        }
        if let Some(azp) = &claims.azp
            && azp != &connection.client_id
        {
            return Err(IdTokenError::Invalid("azp is not this client".into()));
        }
        if claims.sub.is_empty() {
            return Err(IdTokenError::Invalid("empty sub".into()));
        }
        let mut all = claims.rest;
        all.insert("sub".into(), serde_json::Value::String(claims.sub.clone()));
        Ok(IdClaims { sub: claims.sub, all })
    }

    async fn key_for(&self, issuer: &str, kid: Option<&str>) -> Result<DecodingKey, IdTokenError> {
        let cached = self.cached(issuer, kid);
        let keys = match cached {
            Lookup::Found(key) => return Ok(key),
            Lookup::Fresh => return Err(IdTokenError::Invalid("unknown kid".into())),
            Lookup::Stale => self.fetch(issuer).await?,
        };
        let key = find_key(&keys, kid);
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            issuer.to_string(),
            CachedKeys {
                keys,
                fetched: Instant::now(),
            },
        );
        key.ok_or_else(|| IdTokenError::Invalid("unknown kid".into()))?
    }

    fn cached(&self, issuer: &str, kid: Option<&str>) -> Lookup {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = cache.get(issuer) else {
            return Lookup::Stale;
        };
        let age = entry.fetched.elapsed();
        if age > KEYS_MAX_AGE {
            return Lookup::Stale;
        }
        match find_key(&entry.keys, kid) {
            Some(Ok(key)) => Lookup::Found(key),
            _ if age > MIN_REFETCH_INTERVAL => Lookup::Stale,
            _ => Lookup::Fresh,
        }
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, IdTokenError> {
        let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
        if !is_acceptable_provider_url(&discovery_url, self.insecure_allow_http_loopback) {
            return Err(IdTokenError::BadIssuerUrl);
        }
        let discovery: Discovery = self.get_json(&discovery_url).await?;
        // RFC 8414 §3.3: the issuer in the document must be the one we asked, or a mix-up is possible.
        if discovery.issuer != issuer {
            return Err(IdTokenError::Discovery(
                "issuer in the discovery document differs from the connection's".into(),
            ));
        }
        if !is_acceptable_provider_url(&discovery.jwks_uri, self.insecure_allow_http_loopback) {
            return Err(IdTokenError::Discovery("jwks_uri is not an acceptable URL".into()));
        }
        self.get_json(&discovery.jwks_uri).await
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, IdTokenError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|_| IdTokenError::Discovery("request failed".into()))?;
        if !resp.status().is_success() {
            return Err(IdTokenError::Discovery(format!("HTTP {}", resp.status().as_u16())));
        }
        resp.json()
            .await
            .map_err(|_| IdTokenError::Discovery("not the expected JSON".into()))
    }
}

enum Lookup {
    Found(DecodingKey),
    /// Cached recently and the kid is not there: refuse without refetching.
    Fresh,
    Stale,
}

fn find_key(keys: &JwkSet, kid: Option<&str>) -> Option<Result<DecodingKey, IdTokenError>> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        // Without a kid, only an unambiguous single-key set is acceptable.
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return None,
    };
    Some(DecodingKey::from_jwk(jwk).map_err(|e| IdTokenError::Invalid(format!("provider key: {e}"))))
}
