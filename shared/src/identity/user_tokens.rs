//! Vault user tokens: ES256 JWTs signed by the KMS key, issued at login and verified on every request.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::caller::{AuthenticationError, Caller};
use super::signing_key::{SigningKey, SigningKeyError};
use crate::clock::Clock;

/// Small: vault tokens are verified by the same clocks that issued them.
const CLOCK_LEEWAY_SECS: u64 = 30;

/// The JOSE `typ` of vault access tokens (RFC 9068). Only tokens carrying it authenticate API calls;
/// id_tokens carry `JWT` and are identity for the app, never a bearer.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
const ID_TOKEN_TYPE: &str = "JWT";

/// Claims of a vault access token. Every field is required: a token without one is refused.
#[derive(Serialize, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    /// The connection the user logged in through (Authress puts it here).
    azp: String,
    /// The application the tokens were issued to (RFC 9068).
    client_id: String,
    scope: String,
}

/// Claims of a vault id_token: for the application (`aud`), not for APIs.
#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Is a JOSE `typ` the access-token type? RFC 9068 allows the `application/` prefix, any case.
fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == ACCESS_TOKEN_TYPE || t == "application/at+jwt"
    })
}

pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

pub struct UserTokens {
    pub signing_key: SigningKey,
    issuer: String,
    audience: String,
    lifetime: Duration,
    clock: Arc<dyn Clock>,
}

impl UserTokens {
    pub fn new(
        signing_key: SigningKey,
        issuer: String,
        audience: String,
        lifetime: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            signing_key,
            issuer,
            audience,
            lifetime,
            clock,
        }
    }

    /// Signs an access token for `user_id`, who logged in through `connection_id` from `application_id`.
    pub async fn issue_access(
        &self,
        user_id: &str,
        connection_id: &str,
        application_id: &str,
        scope: &str,
    ) -> Result<IssuedToken, SigningKeyError> {
        let now = self.clock.now_secs();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.lifetime.as_secs() as i64,
            jti: crate::random::token(16),
            azp: connection_id.to_string(),
            client_id: application_id.to_string(),
            scope: scope.to_string(),
        };
        let token = self.sign_claims(ACCESS_TOKEN_TYPE, &claims).await?;
        Ok(IssuedToken {
            token,
            expires_in: self.lifetime.as_secs(),
        })
    }

    /// Signs an id_token for the application `application_id`: its audience is the app, never the vault.
    pub async fn issue_id_token(&self, user_id: &str, application_id: &str) -> Result<IssuedToken, SigningKeyError> {
        let now = self.clock.now_secs();
        let claims = IdClaims {
            iss: &self.issuer,
            sub: user_id,
            aud: application_id,
            iat: now,
            exp: now + self.lifetime.as_secs() as i64,
            jti: crate::random::token(16),
        };
        let token = self.sign_claims(ID_TOKEN_TYPE, &claims).await?;
        Ok(IssuedToken {
            token,
            expires_in: self.lifetime.as_secs(),
        })
    }

    /// The audience of vault access tokens; an application may not take it as its own id.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    async fn sign_claims(&self, typ: &str, claims: &impl Serialize) -> Result<String, SigningKeyError> {
        let key = self.signing_key.public().await?;
        let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": key.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| SigningKeyError::BadSignature)?)
        );
        let signature = self.signing_key.sign(signing_input.as_bytes()).await?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Verifies a bearer token: an access token (`typ` at+jwt; an id_token is refused), ES256 only, our
    /// `kid`, issuer, audience, expiry, and every claim present.
    pub async fn verify(&self, token: &str) -> Result<Caller, AuthenticationError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthenticationError::Refused("the token is not a valid JWT"))?;
        if header.alg != Algorithm::ES256 {
            return Err(AuthenticationError::Refused("the token's algorithm is not accepted"));
        }
        if !is_access_token_type(header.typ.as_deref()) {
            return Err(AuthenticationError::Refused(
                "the token is not an access token (an id_token is not a bearer token)",
            ));
        }
        let key = self.signing_key.public().await?;
        if header.kid.as_deref() != Some(key.kid.as_str()) {
            return Err(AuthenticationError::Refused(
                "the token was not signed by a key of this vault",
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_LEEWAY_SECS;
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.decoding_key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            AuthenticationError::Refused(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::InvalidIssuer => "the token was issued by someone else",
                ErrorKind::InvalidAudience => "the token is for another audience",
                ErrorKind::InvalidSignature => "the token's signature is not valid",
                _ => "the token is not valid",
            })
        })?;
        Ok(Caller::User {
            user_id: data.claims.sub,
            connection_id: data.claims.azp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_access_token_type_is_an_access_token() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            assert!(is_access_token_type(Some(typ)), "{typ}");
        }
        for typ in [None, Some("JWT"), Some("jwt"), Some("at+jwt2"), Some("")] {
            assert!(!is_access_token_type(typ), "{typ:?}");
        }
    }
}
