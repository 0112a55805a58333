//! login-callback: login start, the provider callback, the vault code exchange, and the public
//! documents: the discovery documents that let service APIs verify vault user tokens, and the API's
//! OpenAPI description.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use credvault::ApiError;
use credvault::http::{Json, Path, Query, json_response, redirect, with_fallbacks, with_method_not_allowed};
use credvault::login::{LoginFlow, StartRequest, StartResponse, TokenRequest};
use credvault::openapi::{AnyRefusal, CallbackParams, ErrorBody, JwksBody, OpenIdConfigurationBody, VaultTokensBody};
use secrecy::ExposeSecret;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The API's OpenAPI description, as checked in (a test keeps it equal to what the routers generate).
pub const OPENAPI_DOCUMENT: &str = include_str!("../../../infra/openapi.json");

/// This function's routes with their OpenAPI description, before state and fallbacks.
pub fn routes() -> OpenApiRouter<Arc<LoginFlow>> {
    OpenApiRouter::new()
        .routes(routes!(start_authentication))
        .routes(routes!(provider_callback))
        .routes(routes!(exchange_vault_code))
        .routes(routes!(logout))
        .routes(routes!(openid_configuration))
        .routes(routes!(jwks))
        .routes(routes!(openapi_document))
}

/// What the Lambda serves: exactly this function's routes, over the login flow (every route here is
/// the login's, or publishes what its tokens are verified with), open to browser apps on `allowed_origins`.
pub fn router(login: Arc<LoginFlow>, allowed_origins: &[String]) -> Router {
    with_fallbacks(serve(login, allowed_origins))
}

/// The routes over their state and layers, without fallbacks (the local gateway merges these).
pub fn serve(login: Arc<LoginFlow>, allowed_origins: &[String]) -> Router {
    let (routes, _) = routes().split_for_parts();
    credvault::cors::allow(with_method_not_allowed(routes.with_state(login)), allowed_origins)
}

/// Starts a login: the vault keeps the request and sends the browser to the provider.
#[utoipa::path(
    post, path = "/api/authentication", tag = "login", operation_id = "startAuthentication",
    request_body = StartRequest,
    responses(
        (status = 200, description = "Send the browser to `authenticationUrl`.", body = StartResponse),
        (status = 400, description = "A field is missing or not acceptable (`invalid_redirect_url`, `invalid_code_challenge`, ...).", body = ErrorBody),
        (status = 404, description = "`connection_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn start_authentication(
    State(login): State<Arc<LoginFlow>>,
    body: Result<Json<StartRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let started = login.start(body?.0).await?;
    Ok(json_response(200, &started))
}

/// The provider's redirect back (the connection's `redirect_uri`): consumes the login request once,
/// exchanges the provider's code, stores the credential, and sends the browser back to the app.
#[utoipa::path(
    get, path = "/api/callback/{connectionId}", tag = "login", operation_id = "providerCallback",
    params(
        ("connectionId" = String, Path, description = "The connection the login went through."),
        CallbackParams,
    ),
    responses(
        (status = 302, description = "Back to the app: `redirectUrl?code&nonce&iss` on success, `?error&nonce` when the login failed at the provider.",
            headers(("Location" = String, description = "The app's redirect URL with the outcome"))),
        (status = 400, description = "The state is unknown, used, expired or belongs to another connection (`invalid_state`, `login_expired`).", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn provider_callback(
    State(login): State<Arc<LoginFlow>>,
    Path(connection_id): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let location = login.callback(&connection_id, &params).await?;
    Ok(redirect(&location))
}

/// Exchanges the vault code for vault tokens; the code is single-use and bound to the app's PKCE challenge.
#[utoipa::path(
    post, path = "/api/authentication/{authenticationRequestId}/tokens", tag = "login", operation_id = "exchangeVaultCode",
    params(("authenticationRequestId" = String, Path, description = "`authenticationRequestId` of the login start.")),
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The vault's tokens for the user.", body = VaultTokensBody),
        (status = 400, description = "`invalid_grant` (unknown, used or expired code, wrong verifier or redirect), `unsupported_grant_type`, `invalid_request`.", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn exchange_vault_code(
    State(login): State<Arc<LoginFlow>>,
    Path(authentication_request_id): Path<String>,
    body: Result<Json<TokenRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let tokens = login.exchange(&authentication_request_id, body?.0).await?;
    Ok(json_response(
        200,
        &json!({
            "access_token": tokens.access_token.expose_secret(),
            "id_token": tokens.id_token.expose_secret(),
            "expires_in": tokens.expires_in,
            "token_type": tokens.token_type,
        }),
    ))
}

/// The login SDK's `logout()` navigates here (`?redirect_uri&client_id`): back to the app, when
/// `redirect_uri` is an allowed redirect URL. Nothing is kept to end: vault user tokens are bearer
/// tokens the app forgets (the SDK clears its cookies first), and they expire.
#[utoipa::path(
    get, path = "/logout", tag = "login", operation_id = "logout",
    params(
        ("redirect_uri" = String, Query, description = "Where to send the browser: an allowed redirect URL, exactly."),
        ("client_id" = Option<String>, Query, description = "The application (accepted, not needed)."),
    ),
    responses(
        (status = 302, description = "Back to `redirect_uri`.",
            headers(("Location" = String, description = "`redirect_uri`"))),
        (status = 400, description = "`invalid_redirect_url`: missing, or not an allowed redirect URL.", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn logout(
    State(login): State<Arc<LoginFlow>>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let redirect_uri = params
        .iter()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.as_str());
    let location = login.logout_destination(redirect_uri)?;
    Ok(redirect(&location))
}

/// How service APIs find the keys that sign vault user tokens.
#[utoipa::path(
    get, path = "/.well-known/openid-configuration", tag = "login", operation_id = "openIdConfiguration",
    responses((status = 200, description = "OpenID Provider metadata.", body = OpenIdConfigurationBody), AnyRefusal)
)]
async fn openid_configuration(State(login): State<Arc<LoginFlow>>) -> Response {
    let issuer = &login.issuer;
    json_response(
        200,
        &json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}/.well-known/openid-configuration/jwks"),
            "authorization_endpoint": format!("{issuer}/api/authentication"),
            "token_endpoint": format!("{issuer}/api/authentication/{{authenticationRequestId}}/tokens"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
        }),
    )
}

/// The public key that signs vault user tokens (the private key never leaves KMS).
#[utoipa::path(
    get, path = "/.well-known/openid-configuration/jwks", tag = "login", operation_id = "jwks",
    responses((status = 200, description = "The vault's signing key as a JWK Set.", body = JwksBody), AnyRefusal)
)]
async fn jwks(State(login): State<Arc<LoginFlow>>) -> Result<Response, ApiError> {
    let jwks = login.user_tokens.signing_key.jwks().await?;
    Ok(json_response(200, &jwks))
}

/// This description of the API (OpenAPI 3.1).
#[utoipa::path(
    get, path = "/openapi.json", tag = "login", operation_id = "openApiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object), AnyRefusal)
)]
async fn openapi_document() -> Response {
    let mut resp = Response::new(axum::body::Body::from(OPENAPI_DOCUMENT));
    resp.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    resp
}
