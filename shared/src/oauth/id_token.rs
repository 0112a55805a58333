//! Verifying a provider's id_token (OIDC Core §3.1.3.7): signature against the issuer's JWKS found by
//! discovery, an algorithm allowlist, iss, aud, azp, exp, iat and the nonce of the login request.
//!
//! `jsonwebtoken` checks the signature, iss, aud and exp; it does not require `iat` (its
//! `required_spec_claims` silently skips it), so `exp` and `iat` are required by `RawClaims` itself
//! and the rest is `check_claims`, plain logic over the decoded claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};

use super::Connection;
use super::limited_body::{BodyError, MAX_PROVIDER_RESPONSE_BYTES, json_capped};
use super::provider::is_acceptable_provider_url;
use crate::clock::Clock;

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
struct RawClaims {
    sub: String,
    /// Required here, not by `Validation`: a token without them does not decode.
    #[serde(deserialize_with = "numeric_date")]
    exp: u64,
    #[serde(deserialize_with = "numeric_date")]
    iat: u64,
    #[serde(default)]
    aud: Audience,
    nonce: Option<String>,
    azp: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// `aud`: one string or an array of them (RFC 7519 §4.1.3).
#[derive(Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Default for Audience {
    fn default() -> Self {
        Audience::Many(Vec::new())
    }
}

impl Audience {
    fn len(&self) -> usize {
        match self {
            Audience::One(_) => 1,
            Audience::Many(all) => all.len(),
        }
    }

    fn contains(&self, client_id: &str) -> bool {
        match self {
            Audience::One(one) => one == client_id,
            Audience::Many(all) => all.iter().any(|a| a == client_id),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        match self {
            Audience::One(one) => serde_json::Value::from(one.as_str()),
            Audience::Many(all) => serde_json::Value::from(all.clone()),
        }
    }
}

/// A JWT NumericDate: seconds since the epoch, as an integer or (rounded, as `jsonwebtoken` does
/// for `exp`) a non-negative finite number.
fn numeric_date<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(secs) = number.as_u64() {
        return Ok(secs);
    }
    match number.as_f64() {
        Some(secs) if secs.is_finite() && (0.0..u64::MAX as f64).contains(&secs) => Ok(secs.round() as u64),
        _ => Err(serde::de::Error::custom("not a NumericDate")),
    }
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
    clock: Arc<dyn Clock>,
    cache: Mutex<HashMap<String, CachedKeys>>,
}

impl ProviderKeys {
    pub fn new(http: reqwest::Client, insecure_allow_http_loopback: bool, clock: Arc<dyn Clock>) -> Self {
        Self {
            http,
            clock,
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
        // Issuers are stored without a trailing `/`; some providers (Auth0) put one in `iss`.
        let issuer = super::discovery::normalize_issuer(issuer);
        validation.set_issuer(&[issuer.to_string(), format!("{issuer}/")]);
        validation.set_audience(&[&connection.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_LEEWAY_SECS;
        let data = jsonwebtoken::decode::<RawClaims>(id_token, &key, &validation)
            .map_err(|e| IdTokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        check_claims(
            &claims,
            &connection.client_id,
            expected_nonce,
            jsonwebtoken::get_current_timestamp(),
        )?;
        let mut all = claims.rest;
        all.insert("sub".into(), serde_json::Value::String(claims.sub.clone()));
        all.insert("aud".into(), claims.aud.to_json());
        all.insert("exp".into(), serde_json::Value::from(claims.exp));
        all.insert("iat".into(), serde_json::Value::from(claims.iat));
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
                fetched: self.clock.instant(),
            },
        );
        key.ok_or_else(|| IdTokenError::Invalid("unknown kid".into()))?
    }

    fn cached(&self, issuer: &str, kid: Option<&str>) -> Lookup {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = cache.get(issuer) else {
            return Lookup::Stale;
        };
        let age = self.clock.instant().saturating_duration_since(entry.fetched);
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
        let discovery = super::discovery::discover(&self.http, issuer, self.insecure_allow_http_loopback)
            .await
            .map_err(|e| match e {
                super::discovery::DiscoveryError::BadIssuerUrl => IdTokenError::BadIssuerUrl,
                other => IdTokenError::Discovery(other.to_string()),
            })?;
        let jwks_uri = discovery
            .jwks_uri
            .filter(|uri| is_acceptable_provider_url(uri, self.insecure_allow_http_loopback))
            .ok_or_else(|| IdTokenError::Discovery("jwks_uri is missing or not an acceptable URL".into()))?;
        self.get_json(&jwks_uri).await
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
        json_capped(resp, MAX_PROVIDER_RESPONSE_BYTES).await.map_err(|e| {
            IdTokenError::Discovery(match e {
                BodyError::NotJson => "not the expected JSON".into(),
                other => other.to_string(),
            })
        })
    }
}

/// The claim rules `jsonwebtoken` does not apply (OIDC Core §3.1.3.7), given that the signature, iss,
/// aud (contains this client) and exp have passed.
fn check_claims(claims: &RawClaims, client_id: &str, expected_nonce: &str, now_secs: u64) -> Result<(), IdTokenError> {
    let nonce_matches = claims
        .nonce
        .as_deref()
        .is_some_and(|nonce| verify_slices_are_equal(nonce.as_bytes(), expected_nonce.as_bytes()).is_ok());
    if !nonce_matches {
        return Err(IdTokenError::Invalid("nonce does not match the login request".into()));
    }
    if claims.iat > now_secs.saturating_add(CLOCK_LEEWAY_SECS) {
        return Err(IdTokenError::Invalid("iat is in the future".into()));
    }
    if !claims.aud.contains(client_id) {
        return Err(IdTokenError::Invalid("aud does not name this client".into()));
    }
    // Step 4: with several audiences azp must be present; step 5: when present it must be this client.
    match claims.azp.as_deref() {
        Some(azp) if azp != client_id => return Err(IdTokenError::Invalid("azp is not this client".into())),
        None if claims.aud.len() > 1 => {
            return Err(IdTokenError::Invalid(
                "several audiences and no azp naming this client".into(),
            ));
        }
        _ => {}
    }
    if claims.sub.is_empty() {
        return Err(IdTokenError::Invalid("empty sub".into()));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "client-a";
    const NONCE: &str = "nonce-of-the-login-request";
    const NOW: u64 = 1_700_000_000;

    fn claims(extra: serde_json::Value) -> Result<RawClaims, serde_json::Error> {
        let mut all = serde_json::json!({
            "iss": "https://issuer.example.com", "sub": "alice", "aud": CLIENT,
            "iat": NOW, "exp": NOW + 300, "nonce": NONCE,
        });
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                all.as_object_mut().unwrap().remove(k);
            } else {
                all[k] = v.clone();
            }
        }
        serde_json::from_value(all)
    }

    fn check(extra: serde_json::Value) -> Result<(), IdTokenError> {
        check_claims(&claims(extra).expect("decodes"), CLIENT, NONCE, NOW)
    }

    #[test]
    fn iat_and_exp_are_required_by_the_claims_themselves() {
        assert!(claims(serde_json::json!({})).is_ok());
        assert!(claims(serde_json::json!({"iat": null})).is_err(), "no iat");
        assert!(claims(serde_json::json!({"exp": null})).is_err(), "no exp");
        assert!(claims(serde_json::json!({"iat": "yesterday"})).is_err());
        assert!(claims(serde_json::json!({"iat": -5})).is_err());
        let fractional = claims(serde_json::json!({"iat": 1_700_000_000.4})).unwrap();
        assert_eq!(fractional.iat, NOW);
    }

    #[test]
    fn iat_may_not_be_in_the_future_beyond_the_leeway() {
        assert!(check(serde_json::json!({"iat": NOW + CLOCK_LEEWAY_SECS})).is_ok());
        assert!(check(serde_json::json!({"iat": NOW + CLOCK_LEEWAY_SECS + 1})).is_err());
        assert!(
            check(serde_json::json!({"iat": NOW - 3600})).is_ok(),
            "old iat, unexpired token"
        );
    }

    #[test]
    fn azp_follows_oidc_core_3_1_3_7() {
        assert!(check(serde_json::json!({})).is_ok(), "one audience, no azp");
        assert!(check(serde_json::json!({"azp": CLIENT})).is_ok());
        assert!(
            check(serde_json::json!({"azp": "client-b"})).is_err(),
            "azp present: it must be us"
        );
        assert!(check(serde_json::json!({"aud": [CLIENT]})).is_ok(), "an array of one");
        assert!(
            check(serde_json::json!({"aud": [CLIENT, "client-b"]})).is_err(),
            "several audiences need azp"
        );
        assert!(check(serde_json::json!({"aud": [CLIENT, "client-b"], "azp": "client-b"})).is_err());
        assert!(check(serde_json::json!({"aud": [CLIENT, "client-b"], "azp": CLIENT})).is_ok());
        assert!(
            check(serde_json::json!({"aud": ["client-b"], "azp": CLIENT})).is_err(),
            "not an audience"
        );
    }

    #[test]
    fn the_nonce_must_match_exactly() {
        assert!(check(serde_json::json!({"nonce": null})).is_err(), "no nonce");
        assert!(check(serde_json::json!({"nonce": "another"})).is_err());
        assert!(
            check(serde_json::json!({"nonce": format!("{NONCE}x")})).is_err(),
            "a longer one"
        );
        assert!(
            check(serde_json::json!({"nonce": &NONCE[1..]})).is_err(),
            "a shorter one"
        );
        assert!(check(serde_json::json!({"sub": ""})).is_err(), "empty sub");
    }
}
