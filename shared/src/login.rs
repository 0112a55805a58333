//! The login flow: start (`POST /api/authentication`), the provider callback, and the exchange of the
//! vault code for vault user tokens. See DESIGN §2 and lessons "OAuth client checklist".

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditEvent, AuditTrail};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::Envelope;
use crate::identity::{SigningKeyError, UserTokens};
use crate::oauth::Connection;
use crate::oauth::authorize::{AuthorizeError, AuthorizeRequest, authorize_url, merge_properties};
use crate::oauth::connection::{IssuedUnder, UserIdRefusal, is_valid_connection_id, user_id_for_login};
use crate::oauth::id_token::ProviderKeys;
use crate::oauth::pkce::{PkceVerifier, is_plausible_verifier, is_valid_s256_challenge, s256_challenge};
use crate::oauth::provider::{ProviderClient, TokenResponse};
use crate::store::connections::ConnectionStoreError;
use crate::store::credentials::{CredentialRepository, PlainTokens, RepositoryError};
use crate::store::login_requests::{self, ConsumeOutcome, LoginRequest};
use crate::store::vault_codes::{self, Refusal, VaultCode};
use crate::store::{StoreError, Table, connections, identities};

/// Longest vault code accepted: ours are 43 characters; anything much longer is not one.
const MAX_CODE_LEN: usize = 256;
/// Longest redirect URL accepted anywhere in the login flow.
const MAX_URL_LEN: usize = 2048;
/// How often a login retries saving when a concurrent refresh moved the credential's version.
const SAVE_ATTEMPTS: u32 = 3;

/// Why a login step did not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The request is not one the flow accepts: `code` is the stable snake_case `errorCode`, `detail`
    /// text this module wrote (never a value from the request).
    #[error("invalid ({code}): {detail}")]
    Invalid { code: &'static str, detail: String },
    #[error("no such connection")]
    ConnectionNotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Connections(#[from] ConnectionStoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error(transparent)]
    Authorize(#[from] AuthorizeError),
    #[error("the credential kept changing while a login saved it")]
    KeptChanging,
    #[error("the stored redirect URL is not valid")]
    RedirectUrl(#[source] url::ParseError),
}

impl LoginError {
    fn invalid(code: &'static str, detail: impl Into<String>) -> Self {
        LoginError::Invalid {
            code,
            detail: detail.into(),
        }
    }
}

/// The value of a query parameter given exactly once; a repeated parameter is refused as ambiguous.
fn single_param(params: &[(String, String)], name: &'static str) -> Result<Option<String>, LoginError> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.clone());
    if found.next().is_some() {
        return Err(LoginError::invalid(
            "invalid_request",
            format!("query parameter {name} is repeated"),
        ));
    }
    Ok(first)
}

/// `POST /api/authentication`. Unknown fields (antiAbuseHash, applicationId, ...) are accepted and
/// ignored: the Authress login SDK sends them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "connectionId": "con_demo",
    "redirectUrl": "https://app.example.com/after-login",
    "codeChallenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    "codeChallengeMethod": "S256",
    "connectionProperties": {"login_hint": "alice"}
}))]
pub struct StartRequest {
    #[schema(required = true, nullable = false, pattern = "^[a-zA-Z0-9._:-]{1,64}$")]
    pub connection_id: Option<String>,
    /// One of the vault's allowed redirect URLs, exactly.
    #[schema(required = true, nullable = false, max_length = 2048)]
    pub redirect_url: Option<String>,
    /// base64url SHA-256 of the app's PKCE verifier.
    #[schema(required = true, nullable = false, pattern = "^[A-Za-z0-9_-]{43}$")]
    pub code_challenge: Option<String>,
    #[schema(required = true, nullable = false, pattern = "^S256$")]
    pub code_challenge_method: Option<String>,
    /// Extra authorize parameters for the provider (`login_hint`, `prompt`, ...); the vault's own
    /// (`state`, `redirect_uri`, ...) may not be set.
    #[serde(default)]
    pub connection_properties: BTreeMap<String, String>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    pub authentication_url: String,
    pub authentication_request_id: String,
}

/// The login: its pending requests and one-time codes in the table (the PKCE verifier sealed by the
/// envelope), the provider it talks to and whose id_tokens it checks, the credentials it stores, the
/// user tokens it issues, time, and the audit of refused logins.
pub struct LoginFlow {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub credentials: Arc<dyn CredentialRepository>,
    pub provider: Arc<ProviderClient>,
    pub provider_keys: ProviderKeys,
    pub user_tokens: Arc<UserTokens>,
    pub clock: Arc<dyn Clock>,
    pub audit: Arc<AuditTrail>,
    /// The vault's own URL: the issuer of its tokens, and the base of every connection's callback.
    pub issuer: String,
    /// Where the app may be sent back to, compared exactly.
    pub allowed_redirect_urls: Vec<String>,
    pub login_request_lifetime: Duration,
    pub vault_code_lifetime: Duration,
}

impl LoginFlow {
    /// The provider redirect URI of a connection: one per connection, as a mix-up defence.
    fn callback_url(&self, connection_id: &str) -> String {
        crate::config::callback_url(&self.issuer, connection_id)
    }
}

impl LoginFlow {
    /// Where `GET /logout` (the login SDK's `logout()` when the app and the vault share no cookie
    /// domain) sends the browser: back to `redirect_uri`, only if it is an allowed redirect URL, so the
    /// vault's domain is never an open redirect. The vault keeps no browser session to end: its user
    /// tokens are bearer tokens the app forgets, and they expire.
    pub fn logout_destination(&self, redirect_uri: Option<&str>) -> Result<String, LoginError> {
        let redirect_uri =
            redirect_uri.ok_or_else(|| LoginError::invalid("invalid_redirect_url", "redirect_uri is required"))?;
        // Exact string match, as at login start.
        if !self.allowed_redirect_urls.iter().any(|allowed| allowed == redirect_uri) {
            return Err(LoginError::invalid(
                "invalid_redirect_url",
                "redirect_uri is not an allowed redirect URL",
            ));
        }
        Ok(redirect_uri.to_string())
    }

    pub async fn start(&self, req: StartRequest) -> Result<StartResponse, LoginError> {
        let connection_id = req
            .connection_id
            .filter(|c| is_valid_connection_id(c))
            .ok_or_else(|| LoginError::invalid("invalid_connection_id", "connectionId is missing or malformed"))?;
        let redirect_url = req
            .redirect_url
            .ok_or_else(|| LoginError::invalid("invalid_redirect_url", "redirectUrl is required"))?;
        // Exact string match, no normalisation: prefix, case and encoding tricks all fail here.
        if !self.allowed_redirect_urls.contains(&redirect_url) {
            return Err(LoginError::invalid(
                "invalid_redirect_url",
                "redirectUrl is not an allowed redirect URL",
            ));
        }
        if req.code_challenge_method.as_deref() != Some("S256") {
            return Err(LoginError::invalid(
                "invalid_code_challenge",
                "codeChallengeMethod must be S256",
            ));
        }
        let app_code_challenge = req
            .code_challenge
            .filter(|c| is_valid_s256_challenge(c))
            .ok_or_else(|| {
                LoginError::invalid(
                    "invalid_code_challenge",
                    "codeChallenge must be a base64url SHA-256 digest",
                )
            })?;
        let connection = connections::get(&self.table, &self.envelope, &connection_id)
            .await?
            .ok_or(LoginError::ConnectionNotFound)?;
        let properties = merge_properties(&connection.default_connection_properties, &req.connection_properties)?;

        let state = crate::random::token(32);
        let nonce = crate::random::token(32);
        let authentication_request_id = crate::random::token(24);
        let verifier = PkceVerifier::generate();
        let callback_url = self.callback_url(&connection_id);
        let authentication_url = authorize_url(
            &connection,
            &AuthorizeRequest {
                callback_url: &callback_url,
                state: &state,
                nonce: &nonce,
                code_challenge: &verifier.challenge(),
            },
            &properties,
        )?;
        let sealed_verifier = self
            .envelope
            .seal_str(
                &login_requests::verifier_context(&self.table, &state),
                verifier.secret(),
            )
            .await?;
        let expires_at = self.clock.now_secs() + self.login_request_lifetime.as_secs() as i64;
        login_requests::put(
            &self.table,
            LoginRequest {
                state,
                authentication_request_id: authentication_request_id.clone(),
                connection_id: connection_id.clone(),
                redirect_url,
                app_code_challenge,
                provider_code_verifier: sealed_verifier,
                nonce,
                requested_scope: properties.get("scope").cloned(),
                expires_at,
            },
        )
        .await?;
        tracing::info!(connection_id = %connection_id, authentication_request_id = %authentication_request_id, "login started");
        Ok(StartResponse {
            authentication_url,
            authentication_request_id,
        })
    }

    /// `GET /api/callback/{connectionId}`: returns where to redirect the browser.
    pub async fn callback(&self, connection_id: &str, params: &[(String, String)]) -> Result<String, LoginError> {
        let param = |name: &'static str| single_param(params, name);
        if !is_valid_connection_id(connection_id) {
            return Err(LoginError::invalid(
                "invalid_connection_id",
                "connectionId is malformed",
            ));
        }
        let state = param("state")?
            .filter(|s| !s.is_empty() && s.len() <= MAX_CODE_LEN)
            .ok_or_else(|| LoginError::invalid("invalid_state", "state is missing or malformed"))?;
        let now = self.clock.now_secs();
        let request = match login_requests::consume(&self.table, &state, connection_id, now).await? {
            ConsumeOutcome::Consumed(request) => request,
            ConsumeOutcome::Unknown => {
                return Err(LoginError::invalid(
                    "invalid_state",
                    "unknown or already used login state",
                ));
            }
            ConsumeOutcome::ForeignConnection => {
                return Err(LoginError::invalid(
                    "invalid_state",
                    "this login state belongs to another connection",
                ));
            }
            ConsumeOutcome::Expired => {
                return Err(LoginError::invalid("login_expired", "the login request has expired"));
            }
        };
        let fail = |error: &str| {
            app_redirect(
                &request.redirect_url,
                &[("error", error), ("nonce", &request.authentication_request_id)],
            )
        };

        if let Some(error) = param("error")? {
            // The provider refused (user said no, ...). Pass its error code on; store nothing.
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            tracing::info!(connection_id = %connection_id, provider_error = %code, "provider returned an error to the callback");
            return fail(if code.is_empty() { "access_denied" } else { &code });
        }
        let Some(code) = param("code")?.filter(|c| !c.is_empty()).map(SecretString::from) else {
            return fail("invalid_request");
        };
        let Some(connection) = connections::get(&self.table, &self.envelope, connection_id).await? else {
            return fail("server_error");
        };
        let verifier = self
            .envelope
            .open_str(
                &login_requests::verifier_context(&self.table, &state),
                &request.provider_code_verifier,
            )
            .await
            .map(PkceVerifier::from_secret);
        let verifier = match verifier {
            Ok(verifier) => verifier,
            // A verifier that does not open here was moved onto this request or altered: no exchange.
            Err(CryptoError::NotAuthentic | CryptoError::Malformed) => {
                tracing::warn!(connection_id = %connection_id, "the login request's verifier does not belong to it");
                return fail("invalid_request");
            }
            Err(e) => return Err(e.into()),
        };
        let tokens = match self
            .provider
            .exchange_code(&connection, &code, &verifier, &self.callback_url(connection_id))
            .await
        {
            Ok(tokens) => tokens,
            Err(e) => {
                tracing::warn!(connection_id = %connection_id, error = %e, "code exchange with the provider failed");
                return fail("server_error");
            }
        };
        // OIDC providers prove the user with a verified id_token; others (GitHub) through their user endpoint.
        let claims = match (&connection.issuer_url, &tokens.id_token, &connection.user_info_url) {
            (Some(_), Some(id_token), _) => {
                match self
                    .provider_keys
                    .verify(&connection, id_token.expose_secret(), &request.nonce)
                    .await
                {
                    Ok(claims) => claims.all,
                    Err(e) => {
                        tracing::warn!(connection_id = %connection_id, error = %e, "id_token refused");
                        return fail("invalid_id_token");
                    }
                }
            }
            (None, _, Some(user_info_url)) => {
                match self.provider.user_info(user_info_url, &tokens.access_token).await {
                    Ok(claims) => claims,
                    Err(e) => {
                        tracing::warn!(connection_id = %connection_id, error = %e, "user endpoint failed");
                        return fail("server_error");
                    }
                }
            }
            _ => {
                tracing::warn!(connection_id = %connection_id, "provider sent no verifiable identity (an OIDC connection needs an id_token)");
                return fail("invalid_id_token");
            }
        };
        let user_id = match user_id_for_login(&connection.user_id_expression, connection_id, &claims) {
            Ok(user_id) => user_id,
            Err(refusal) => {
                tracing::warn!(connection_id = %connection_id, refusal = ?refusal, "no vault user id can be made from this login");
                return fail(match refusal {
                    UserIdRefusal::UnverifiedEmail => "unverified_email",
                    UserIdRefusal::DoesNotFit | UserIdRefusal::ReservedPrefix => "invalid_user_id",
                });
            }
        };
        let resource = crate::access::credentials_resource(connection_id, &user_id);
        if !identities::claim_for_login(&self.table, &user_id, connection_id, &connection.generation, now).await? {
            tracing::warn!(connection_id = %connection_id, user_id = %user_id, "user id belongs to another connection; login refused");
            let event = AuditEvent::new("login.refused", Some(&user_id), &resource, Err("identity_conflict"))
                .reason("identity_conflict");
            self.audit.write(event).await;
            return fail("identity_conflict");
        }
        // The grant's scopes are what the provider says it granted; an answer without `scope` granted
        // exactly what was asked (RFC 6749 §5.1).
        let mut tokens = tokens;
        tokens.scope = tokens.scope.or_else(|| request.requested_scope.clone());
        self.save_credential(connection_id, &user_id, &connection, tokens)
            .await?;

        let vault_code = crate::random::token(32);
        vault_codes::put(
            &self.table,
            &vault_code,
            &VaultCode {
                authentication_request_id: request.authentication_request_id.clone(),
                app_code_challenge: request.app_code_challenge.clone(),
                redirect_url: request.redirect_url.clone(),
                connection_id: connection_id.to_string(),
                user_id: user_id.clone(),
                expires_at: now + self.vault_code_lifetime.as_secs() as i64,
            },
        )
        .await?;
        tracing::info!(connection_id = %connection_id, user_id = %user_id, "login completed, credential stored");
        self.audit
            .write(AuditEvent::new("credential.store", Some(&user_id), &resource, Ok(())))
            .await;
        app_redirect(
            &request.redirect_url,
            &[
                ("code", &vault_code),
                ("nonce", &request.authentication_request_id),
                ("iss", &self.issuer),
            ],
        )
    }

    /// Seals and stores the tokens of a login; a login without a refresh token keeps the stored one.
    async fn save_credential(
        &self,
        connection_id: &str,
        user_id: &str,
        connection: &Connection,
        tokens: TokenResponse,
    ) -> Result<(), LoginError> {
        let issued = IssuedUnder::of(connection);
        let repository = &self.credentials;
        let now = self.clock.now_secs();
        let lifetime = tokens.lifetime_secs();
        let sealed = repository.sealer(connection_id, user_id).await?.seal(PlainTokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            access_expires_at: now + lifetime,
            access_issued_at: now,
            token_type: tokens.token_type,
            scope: tokens.scope,
            metadata: tokens.metadata,
            keep_alive_due_at: connection.keep_alive_due(now),
        })?;
        for _ in 0..SAVE_ATTEMPTS {
            let previous = repository.get(connection_id, user_id).await?;
            match repository
                .save_after_login(connection_id, user_id, previous.as_ref(), sealed.clone(), &issued, now)
                .await
            {
                Ok(()) => return Ok(()),
                // A refresh or another login committed in between: read again and replace that version.
                Err(StoreError::ConditionFailed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LoginError::KeptChanging)
    }

    pub async fn exchange(
        &self,
        authentication_request_id: &str,
        req: TokenRequest,
    ) -> Result<VaultTokens, LoginError> {
        if req.grant_type.as_deref() != Some("authorization_code") {
            return Err(LoginError::invalid(
                "unsupported_grant_type",
                "grant_type must be authorization_code",
            ));
        }
        let code = req
            .code
            .filter(|c| !c.is_empty() && c.len() <= MAX_CODE_LEN)
            .ok_or_else(|| LoginError::invalid("invalid_request", "code is missing or malformed"))?;
        let verifier = req
            .code_verifier
            .filter(|v| is_plausible_verifier(v))
            .ok_or_else(|| LoginError::invalid("invalid_request", "code_verifier is missing or malformed"))?;
        let redirect_uri = req
            .redirect_uri
            .filter(|r| r.len() <= MAX_URL_LEN)
            .ok_or_else(|| LoginError::invalid("invalid_request", "redirect_uri is missing or too long"))?;
        if !crate::random::is_token_shaped(authentication_request_id) {
            return Err(LoginError::invalid(
                "invalid_request",
                "authenticationRequestId is not one this vault gave out",
            ));
        }
        let application_id = req.client_id.unwrap_or_else(|| DEFAULT_APPLICATION_ID.to_string());
        // The id_token's audience is the app; it may never be the audience APIs accept access tokens for.
        if !is_valid_connection_id(&application_id) || application_id == self.user_tokens.audience() {
            return Err(LoginError::invalid(
                "invalid_client",
                "client_id must be 1 to 64 characters of [a-zA-Z0-9-_.:], and not the vault's audience",
            ));
        }
        let outcome = vault_codes::consume(
            &self.table,
            &code,
            authentication_request_id,
            &s256_challenge(&verifier),
            &redirect_uri,
            self.clock.now_secs(),
        )
        .await?;
        let record = outcome.map_err(|refusal| {
            LoginError::invalid(
                "invalid_grant",
                match refusal {
                    Refusal::Unknown => "the code is unknown or was already used",
                    Refusal::Expired => "the code has expired",
                    Refusal::WrongRequest => "the code belongs to another authentication request",
                    Refusal::WrongVerifier => "code_verifier does not match the code challenge",
                    Refusal::WrongRedirect => "redirect_uri does not match the login request",
                },
            )
        })?;
        let access = self
            .user_tokens
            .issue_access(
                &record.user_id,
                &record.connection_id,
                &application_id,
                "openid profile",
            )
            .await?;
        let id = self
            .user_tokens
            .issue_id_token(&record.user_id, &application_id)
            .await?;
        Ok(VaultTokens {
            access_token: SecretString::from(access.token),
            id_token: SecretString::from(id.token),
            expires_in: access.expires_in,
            token_type: "Bearer",
        })
    }
}

fn app_redirect(redirect_url: &str, params: &[(&str, &str)]) -> Result<String, LoginError> {
    let mut url = url::Url::parse(redirect_url).map_err(LoginError::RedirectUrl)?;
    url.query_pairs_mut().extend_pairs(params);
    Ok(url.into())
}

/// `POST /api/authentication/{authenticationRequestId}/tokens`.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    #[schema(required = true, nullable = false, pattern = "^authorization_code$")]
    pub grant_type: Option<String>,
    /// The vault code the callback redirect carried.
    #[schema(required = true, nullable = false, min_length = 1, max_length = 256)]
    pub code: Option<String>,
    /// The app's PKCE verifier for the `codeChallenge` of the login start.
    #[schema(required = true, nullable = false, pattern = "^[!-~]{43,512}$")]
    pub code_verifier: Option<String>,
    /// The `redirectUrl` of the login start.
    #[schema(required = true, nullable = false, max_length = 2048)]
    pub redirect_uri: Option<String>,
    /// The application (the Authress login SDK sends its `applicationId`): the id_token's audience.
    pub client_id: Option<String>,
}

/// The application an app names none: what the Authress login SDK uses by default.
pub const DEFAULT_APPLICATION_ID: &str = "app_default";

/// The vault's tokens for a login. Both are bearer secrets: `Debug` hides them and there is no
/// `Serialize`; the handler writes the response body field by field.
pub struct VaultTokens {
    pub access_token: SecretString,
    pub id_token: SecretString,
    pub expires_in: u64,
    pub token_type: &'static str,
}

impl std::fmt::Debug for VaultTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTokens")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_tokens_debug_shows_no_token() {
        let tokens = VaultTokens {
            access_token: SecretString::from("planted-access-token"),
            id_token: SecretString::from("planted-id-token"),
            expires_in: 3600,
            token_type: "Bearer",
        };
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("planted"), "{shown}");
        assert!(shown.contains("3600"));
    }
}
