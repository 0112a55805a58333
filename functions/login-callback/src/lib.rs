//! login-callback: login start, the provider callback, the vault code exchange, and the discovery
//! documents that let service APIs verify vault user tokens.

use std::sync::Arc;

use credvault::http::{Handler, json_body, json_response, query_params, redirect, respond, route};
use credvault::routes::{Function, RouteId};
use credvault::{ApiError, Services, login};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde_json::json;

pub struct LoginCallback {
    services: Arc<Services>,
}

impl LoginCallback {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    async fn dispatch(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let matched = route(&req)?;
        if matched.route.function != Function::LoginCallback {
            return Err(ApiError::not_found("route_not_found", "no such route"));
        }
        let services = &self.services;
        match matched.route.id {
            RouteId::StartAuthentication => {
                let started = login::start(services, json_body(&req)?).await?;
                Ok(json_response(200, &json!(started)))
            }
            RouteId::ProviderCallback => {
                let location = login::callback(services, matched.param("connectionId"), &query_params(&req)).await?;
                Ok(redirect(&location))
            }
            RouteId::ExchangeVaultCode => {
                let tokens =
                    login::exchange(services, matched.param("authenticationRequestId"), json_body(&req)?).await?;
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
            RouteId::OpenIdConfiguration => Ok(json_response(200, &openid_configuration(&services.config.issuer))),
            RouteId::Jwks => {
                let jwks = services
                    .user_tokens
                    .signing_key
                    .jwks()
                    .await
                    .map_err(ApiError::internal)?;
                Ok(json_response(200, &jwks))
            }
            _ => Err(ApiError::not_found("route_not_found", "no such route")),
        }
    }
}

impl Handler for LoginCallback {
    async fn handle(&self, req: Request) -> Response<Body> {
        respond(self.dispatch(req).await)
    }
}

fn openid_configuration(issuer: &str) -> serde_json::Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/openid-configuration/jwks"),
        "authorization_endpoint": format!("{issuer}/api/authentication"),
        "token_endpoint": format!("{issuer}/api/authentication/{{authenticationRequestId}}/tokens"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    })
}
