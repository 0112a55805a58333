//! credential-fetch: a fresh provider access token for the user themself, or for a caller granted
//! `connections:credentials:read` on the credential, and disconnect. The refresh protocol lives in
//! `credvault::vault`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::extract::State;
use axum::response::Response;
use credvault::access::PolicyEngine;
use credvault::audit::AuditEvent;
use credvault::audit::AuditTrail;
use credvault::clock::iso8601;
use credvault::http::{Path, Query, json_response, no_content, with_fallbacks, with_method_not_allowed};
use credvault::identity::Authenticator;
use credvault::identity::Caller;
use credvault::oauth::connection::{MAX_USER_ID_LEN, is_valid_connection_id};
use credvault::openapi::{AnyRefusal, CallerRefusals, CredentialBody, ErrorBody};
use credvault::vault::RefreshProtocol;
use credvault::{ApiError, Instance, access, vault};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod token_exchange;

use token_exchange::{ACCESS_TOKEN_TYPE, OAuthError};

/// A day: nothing sensible asks for a token valid longer than providers issue them.
const MAX_MINIMUM_VALIDITY_SECS: u64 = 86_400;

/// What this function's routes use: who is calling, what they may do, the refresh protocol, the audit
/// trail, and the default of `minimumValiditySeconds`.
#[derive(Clone)]
pub struct CredentialFetch {
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<PolicyEngine>,
    pub refresh: Arc<RefreshProtocol>,
    pub audit: Arc<AuditTrail>,
    pub default_minimum_validity: Duration,
}

impl CredentialFetch {
    /// The capabilities this function takes from its instance (in `main`, and in the local gateway).
    pub fn new(instance: &Instance) -> Self {
        Self {
            authenticator: instance.authenticator.clone(),
            policy: instance.policy.clone(),
            refresh: instance.refresh.clone(),
            audit: instance.audit.clone(),
            default_minimum_validity: instance.config.default_minimum_validity,
        }
    }
}

impl FromRef<CredentialFetch> for Arc<Authenticator> {
    fn from_ref(app: &CredentialFetch) -> Self {
        app.authenticator.clone()
    }
}

/// This function's routes with their OpenAPI description, before state and fallbacks.
pub fn routes() -> OpenApiRouter<CredentialFetch> {
    OpenApiRouter::new()
        .routes(routes!(user_credentials, disconnect))
        .routes(routes!(session_credentials))
        .routes(routes!(exchange_token))
}

/// What the Lambda serves: exactly this function's routes, open to browser apps on `allowed_origins`.
pub fn router(app: CredentialFetch, allowed_origins: &[String]) -> Router {
    with_fallbacks(serve(app, allowed_origins))
}

/// The routes over their state and layers, without fallbacks (the local gateway merges these).
pub fn serve(app: CredentialFetch, allowed_origins: &[String]) -> Router {
    let (routes, _) = routes().split_for_parts();
    credvault::cors::allow(with_method_not_allowed(routes.with_state(app)), allowed_origins)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct CredentialPath {
    /// The connection the user logged in through.
    #[param(pattern = "^[a-zA-Z0-9._:-]{1,64}$")]
    connection_id: String,
    /// The vault user id (`sub` of the user's vault token); percent-encode its `|`.
    #[param(min_length = 1, max_length = 64)]
    user_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct ValidityQuery {
    /// How long the returned token must stay valid, 0 to 86400 (default: the vault's setting).
    #[param(value_type = Option<u64>, minimum = 0, maximum = 86400)]
    minimum_validity_seconds: Option<String>,
    /// Scopes the stored grant must hold, space-separated; lacking any is 409 `insufficient_scope`.
    #[param(max_length = 1024)]
    required_scopes: Option<String>,
}

/// The credential of a user: for the user themself, or a caller holding
/// `connections:credentials:read` on `Connections/{connectionId}/Users/{userId}/Credentials`.
#[utoipa::path(
    get, path = "/v1/connections/{connectionId}/users/{userId}/credentials", tag = "credentials",
    operation_id = "getUserCredentials", security(("bearer" = [])),
    params(CredentialPath, ValidityQuery),
    responses(
        (status = 200, description = "A provider access token valid for at least the requested time.", body = CredentialBody),
        (status = 400, description = "`invalid_connection_id`, `invalid_user_id`, `invalid_minimum_validity`, `invalid_required_scopes`, `invalid_path`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`credentials_not_found`", body = ErrorBody),
        (status = 409, description = "`reauthentication_required`: the provider no longer accepts the refresh token; `insufficient_scope`: the grant lacks `requiredScopes` (`missingScopes`, and `login` for the re-consent).", body = ErrorBody),
        (status = 503, description = "`provider_unavailable`: the provider is down and no valid token is stored.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        AnyRefusal,
    )
)]
async fn user_credentials(
    State(app): State<CredentialFetch>,
    Path(path): Path<CredentialPath>,
    caller: Caller,
    Query(query): Query<ValidityQuery>,
) -> Result<Response, ApiError> {
    let (connection_id, user_id) = checked_ids(path.connection_id, path.user_id)?;
    let required = required_scopes(&query)?;
    let min_validity = minimum_validity(&app, query)?;
    read(&app, &caller, &connection_id, &user_id, min_validity, &required).await
}

/// The caller's own credential for the connection it logged in with (the login SDK's
/// `getConnectionCredentials`).
#[utoipa::path(
    get, path = "/api/session/credentials", tag = "credentials", operation_id = "getSessionCredentials",
    security(("bearer" = [])),
    params(ValidityQuery),
    responses(
        (status = 200, description = "A provider access token valid for at least the requested time.", body = CredentialBody),
        (status = 400, description = "`no_session` for a service client, `invalid_minimum_validity`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`credentials_not_found`", body = ErrorBody),
        (status = 409, description = "`reauthentication_required`, `insufficient_scope`", body = ErrorBody),
        (status = 503, description = "`provider_unavailable`", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        AnyRefusal,
    )
)]
async fn session_credentials(
    State(app): State<CredentialFetch>,
    caller: Caller,
    Query(query): Query<ValidityQuery>,
) -> Result<Response, ApiError> {
    let (connection_id, user_id) = match &caller {
        Caller::User { user_id, connection_id } => checked_ids(connection_id.clone(), user_id.clone())?,
        Caller::ServiceClient { .. } => {
            return Err(ApiError::bad_request(
                "no_session",
                "a service client has no session: use /v1/connections/{connectionId}/users/{userId}/credentials",
            ));
        }
    };
    let required = required_scopes(&query)?;
    let min_validity = minimum_validity(&app, query)?;
    read(&app, &caller, &connection_id, &user_id, min_validity, &required).await
}

/// Disconnect: revokes the refresh token at the provider where it can, then deletes the credential.
/// For the user themself, or a caller holding `connections:credentials:delete`.
#[utoipa::path(
    delete, path = "/v1/connections/{connectionId}/users/{userId}/credentials", tag = "credentials",
    operation_id = "deleteUserCredentials", security(("bearer" = [])),
    params(CredentialPath),
    responses(
        (status = 204, description = "Disconnected."),
        (status = 400, description = "`invalid_connection_id`, `invalid_user_id`, `invalid_path`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`credentials_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn disconnect(
    State(app): State<CredentialFetch>,
    Path(path): Path<CredentialPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let (connection_id, user_id) = checked_ids(path.connection_id, path.user_id)?;
    let resource = access::credentials_resource(&connection_id, &user_id);
    let result = async {
        app.policy
            .require_credential_access(&caller, &connection_id, &user_id, "connections:credentials:delete")
            .await?;
        Ok::<_, ApiError>(app.refresh.disconnect(&connection_id, &user_id).await?)
    }
    .await;
    let mut event = AuditEvent::new(
        "credential.disconnect",
        Some(caller.subject()),
        &resource,
        result.as_ref().map(|_| ()).map_err(|e| e.error_code()),
    );
    if let Ok(vault::Revocation::Skipped(change)) = &result {
        event = event.reason(change.reason());
    }
    app.audit.write(event).await;
    result?;
    Ok(no_content())
}

/// Reads (refreshing first if needed) and audits the credential, refused or not.
async fn read(
    app: &CredentialFetch,
    caller: &Caller,
    connection_id: &str,
    user_id: &str,
    min_validity: Duration,
    required_scopes: &[String],
) -> Result<Response, ApiError> {
    let resource = access::credentials_resource(connection_id, user_id);
    let allowed = app
        .policy
        .require_credential_access(caller, connection_id, user_id, "connections:credentials:read")
        .await
        .map_err(ApiError::from);
    let event = AuditEvent::new("credential.read", Some(caller.subject()), &resource, Ok(()));
    let result = match allowed {
        // Allowed: the event goes to the audit log as the read ends (AuditTrail::around_read).
        Ok(()) => {
            app.audit
                .around_read(
                    event,
                    async {
                        let token = app
                            .refresh
                            .fresh_access_token(connection_id, user_id, min_validity)
                            .await?;
                        with_scopes(connection_id, token, required_scopes)
                    },
                    |token| token.refreshed,
                    ApiError::error_code,
                )
                .await
        }
        Err(refused) => {
            let event = AuditEvent::new(
                "credential.read",
                Some(caller.subject()),
                &resource,
                Err(refused.error_code()),
            );
            app.audit.refused_read(event)?;
            Err(refused)
        }
    };
    let token = result?;
    let mut body = json!({
        "accessToken": token.access_token.expose_secret(),
        "expiresAt": iso8601(token.expires_at),
        "tokenType": token.token_type,
    });
    if let Some(scope) = &token.scope {
        body["scope"] = json!(scope);
    }
    if !token.metadata.is_empty() {
        body["metadata"] = json!(token.metadata);
    }
    Ok(json_response(200, &body))
}

/// The token, if its grant holds every required scope; else the re-consent answer.
fn with_scopes(
    connection_id: &str,
    token: vault::FreshAccessToken,
    required: &[String],
) -> Result<vault::FreshAccessToken, ApiError> {
    let missing = credvault::oauth::scopes::missing(required, token.scope.as_deref());
    if missing.is_empty() {
        Ok(token)
    } else {
        Err(ApiError::insufficient_scope(
            connection_id,
            token.scope.as_deref(),
            required,
            missing,
        ))
    }
}

fn required_scopes(query: &ValidityQuery) -> Result<Vec<String>, ApiError> {
    match &query.required_scopes {
        None => Ok(Vec::new()),
        Some(list) => credvault::oauth::scopes::parse_list(list).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_required_scopes",
                "requiredScopes is space-separated scope tokens (RFC 6749 §3.3), at most 1024 characters",
            )
        }),
    }
}

/// Ids are shape-checked before any store call.
fn checked_ids(connection_id: String, user_id: String) -> Result<(String, String), ApiError> {
    if !is_valid_connection_id(&connection_id) {
        return Err(ApiError::bad_request(
            "invalid_connection_id",
            "connectionId is malformed",
        ));
    }
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN {
        return Err(ApiError::bad_request(
            "invalid_user_id",
            "userId must be 1 to 64 characters",
        ));
    }
    Ok((connection_id, user_id))
}

fn minimum_validity(app: &CredentialFetch, query: ValidityQuery) -> Result<Duration, ApiError> {
    match query.minimum_validity_seconds {
        None => Ok(app.default_minimum_validity),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_MINIMUM_VALIDITY_SECS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_minimum_validity",
                    "minimumValiditySeconds must be a whole number from 0 to 86400",
                )
            }),
    }
}

/// RFC 8693 token exchange (token_exchange.rs): the provider access token of a connection for the
/// user whose vault access token is `subject_token`, asked by that user, or by the service client
/// whose token is `actor_token` and who holds `connections:credentials:read` on the credential.
#[utoipa::path(
    post, path = "/api/authentication/oauth/tokens", tag = "credentials", operation_id = "exchangeToken",
    request_body(content = token_exchange::TokenExchangeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The provider's access token (RFC 8693 §2.2.1).", body = token_exchange::TokenExchangeBody),
        (status = 400, description = "RFC 6749 §5.2: `invalid_request`, `invalid_grant` (the user must log in again), `invalid_target` (no such credential, or not the subject's), `invalid_scope`, `unauthorized_client` (the actor lacks the grant), `unsupported_grant_type`.", body = token_exchange::OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`: the provider or the vault's storage is unavailable.", body = token_exchange::OAuthErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = "default", description = "`server_error`", body = token_exchange::OAuthErrorBody),
    )
)]
async fn exchange_token(State(app): State<CredentialFetch>, req: axum::extract::Request) -> Response {
    use axum::response::IntoResponse as _;
    match exchange(&app, req).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn exchange(app: &CredentialFetch, req: axum::extract::Request) -> Result<Response, OAuthError> {
    let content_type = req
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = axum::body::to_bytes(req.into_body(), token_exchange::MAX_BODY_BYTES + 1)
        .await
        .map_err(|_| OAuthError::invalid_request("the request body is too large or could not be read"))?;
    let request = token_exchange::parse(content_type.as_deref(), &body)?;

    let subject = app
        .authenticator
        .authenticate(request.subject_token.expose_secret())
        .await
        .map_err(|e| OAuthError::from_api(&ApiError::from(e), "invalid_request"))?;
    let Caller::User { user_id, .. } = &subject else {
        return Err(OAuthError::invalid_request(
            "subject_token must be a vault user access token, not a service client's",
        ));
    };
    let actor = match &request.actor_token {
        None => None,
        Some(token) => match app.authenticator.authenticate(token.expose_secret()).await {
            Ok(actor @ Caller::ServiceClient { .. }) => Some(actor),
            Ok(Caller::User { .. }) => {
                return Err(OAuthError::invalid_request(
                    "actor_token must be a service client's token",
                ));
            }
            Err(e) => return Err(OAuthError::from_api(&ApiError::from(e), "invalid_request")),
        },
    };
    // The one who asks: the actor when there is one, else the user themself.
    let caller = actor.as_ref().unwrap_or(&subject);
    let forbidden = if actor.is_some() {
        "unauthorized_client"
    } else {
        "invalid_target"
    };
    let connection_id = request.connection_id.as_str();
    let resource = access::credentials_resource(connection_id, user_id);
    let event = |outcome: Result<(), &str>| {
        let event = AuditEvent::new("credential.exchange", Some(caller.subject()), &resource, outcome);
        if actor.is_some() {
            event.on_behalf_of(user_id)
        } else {
            event
        }
    };
    if let Err(refused) = app
        .policy
        .require_credential_access(caller, connection_id, user_id, "connections:credentials:read")
        .await
        .map_err(ApiError::from)
    {
        if let Err(unaudited) = app.audit.refused_read(event(Err(refused.error_code()))) {
            return Err(OAuthError::from_api(&ApiError::from(unaudited), forbidden));
        }
        return Err(OAuthError::from_api(&refused, forbidden));
    }
    let token = app
        .audit
        .around_read(
            event(Ok(())),
            async {
                let token = app
                    .refresh
                    .fresh_access_token(connection_id, user_id, app.default_minimum_validity)
                    .await?;
                with_scopes(connection_id, token, &request.scope)
            },
            |token| token.refreshed,
            ApiError::error_code,
        )
        .await
        .map_err(|e| OAuthError::from_api(&e, forbidden))?;
    let now = app.refresh.clock.now_secs();
    let mut body = json!({
        "access_token": token.access_token.expose_secret(),
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": token.token_type,
        "expires_in": (token.expires_at - now).max(0),
    });
    if let Some(scope) = &token.scope {
        body["scope"] = json!(scope);
    }
    let mut response = json_response(200, &body);
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
