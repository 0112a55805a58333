//! Vault user tokens: ES256 JWTs signed by the KMS key, issued at login and verified on every request.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};

use super::{Caller, IdentityError, SigningKey};
use crate::clock::Clock;
use crate::error::ApiError;

/// Small: vault tokens are verified by the same clocks that issued them.
const CLOCK_LEEWAY_SECS: u64 = 30;

#[derive(Serialize, Deserialize)]
struct UserClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: i64,
    exp: i64,
    jti: String,
    azp: String,
    scope: String,
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

    /// Signs a token for `user_id`, who logged in through `connection_id`.
    pub async fn issue(&self, user_id: &str, connection_id: &str, scope: &str) -> Result<IssuedToken, IdentityError> {
        let now = self.clock.now_secs();
        let claims = UserClaims {
            iss: self.issuer.clone(),
            sub: user_id.to_string(),
            aud: self.audience.clone(),
            iat: now,
            exp: now + self.lifetime.as_secs() as i64,
            jti: crate::random::token(16),
            azp: connection_id.to_string(),
            scope: scope.to_string(),
        };
        let token = self.sign_claims(&claims).await?;
        Ok(IssuedToken {
            token,
            expires_in: self.lifetime.as_secs(),
        })
    }

    async fn sign_claims(&self, claims: &impl Serialize) -> Result<String, IdentityError> {
        let key = self.signing_key.public().await?;
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": key.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|_| IdentityError::BadSignature)?)
        );
        let signature = self.signing_key.sign(signing_input.as_bytes()).await?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Verifies a bearer token: ES256 only, our `kid`, issuer, audience, expiry.
    pub async fn verify(&self, token: &str) -> Result<Caller, ApiError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| ApiError::Unauthorized("the token is not a valid JWT"))?;
        if header.alg != Algorithm::ES256 {
            return Err(ApiError::Unauthorized("the token's algorithm is not accepted"));
        }
        let key = self.signing_key.public().await.map_err(ApiError::internal)?;
        if header.kid.as_deref() != Some(key.kid.as_str()) {
            return Err(ApiError::Unauthorized(
                "the token was not signed by a key of this vault",
            ));
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = CLOCK_LEEWAY_SECS;
        let data = jsonwebtoken::decode::<UserClaims>(token, &key.decoding_key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            ApiError::Unauthorized(match e.kind() {
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
