//! credential-fetch: a fresh provider access token for the user themself, or for a caller granted
//! `connections:credentials:read` on the credential. The refresh protocol lives in `credvault::vault`.

use std::sync::Arc;
use std::time::Duration;

use credvault::clock::iso8601;
use credvault::http::{Handler, json_response, query_params, respond, route, single_query_param};
use credvault::identity::{Caller, authenticate};
use credvault::oauth::connection::{MAX_USER_ID_LEN, is_valid_connection_id};
use credvault::routes::{Function, RouteId};
use credvault::{ApiError, Services, access, vault};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde_json::json;

/// A day: nothing sensible asks for a token valid longer than providers issue them.
const MAX_MINIMUM_VALIDITY_SECS: u64 = 86_400;

pub struct CredentialFetch {
    services: Arc<Services>,
}

impl CredentialFetch {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    async fn dispatch(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let matched = route(&req)?;
        if matched.route.function != Function::CredentialFetch {
            return Err(ApiError::not_found("route_not_found", "no such route"));
        }
        let caller = authenticate(&self.services, &req).await?;
        let (connection_id, user_id) = match (matched.route.id, &caller) {
            (RouteId::UserCredentials | RouteId::DeleteUserCredentials, _) => (
                matched.param("connectionId").to_string(),
                matched.param("userId").to_string(),
            ),
            (RouteId::SessionCredentials, Caller::User { user_id, connection_id }) => {
                (connection_id.clone(), user_id.clone())
            }
            (RouteId::SessionCredentials, Caller::ServiceClient { .. }) => {
                return Err(ApiError::bad_request(
                    "no_session",
                    "a service client has no session: use /v1/connections/{connectionId}/users/{userId}/credentials",
                ));
            }
            _ => return Err(ApiError::not_found("route_not_found", "no such route")),
        };
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
        let services = &self.services;
        if matched.route.id == RouteId::DeleteUserCredentials {
            let delete = "connections:credentials:delete";
            access::require_credential_access(
                &services.policies,
                &services.table,
                &caller,
                &connection_id,
                &user_id,
                delete,
            )
            .await?;
            vault::disconnect(services, &connection_id, &user_id).await?;
            tracing::info!(caller = %caller.subject(), connection_id = %connection_id, user_id = %user_id, "credential deleted");
            let mut resp = Response::new(Body::Empty);
            *resp.status_mut() = lambda_http::http::StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        let read = "connections:credentials:read";
        access::require_credential_access(
            &services.policies,
            &services.table,
            &caller,
            &connection_id,
            &user_id,
            read,
        )
        .await?;
        let min_validity = self.minimum_validity(&req)?;
        let result = vault::fresh_access_token(services, &connection_id, &user_id, min_validity).await;
        let caller_id = caller.subject();
        match &result {
            Ok(token) => {
                tracing::info!(caller = %caller_id, connection_id = %connection_id, user_id = %user_id, refreshed = token.refreshed, "credential read")
            }
            Err(e) => {
                tracing::info!(caller = %caller_id, connection_id = %connection_id, user_id = %user_id, outcome = e.error_code(), "credential read refused")
            }
        }
        let token = result?;
        let mut body = json!({
            "accessToken": token.access_token.expose_secret(),
            "expiresAt": iso8601(token.expires_at),
            "tokenType": token.token_type,
        });
        if let Some(scope) = &token.scope {
            body["scope"] = json!(scope);
        }
        Ok(json_response(200, &body))
    }

    fn minimum_validity(&self, req: &Request) -> Result<Duration, ApiError> {
        match single_query_param(&query_params(req), "minimumValiditySeconds")? {
            None => Ok(self.services.config.default_minimum_validity),
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
}

impl Handler for CredentialFetch {
    async fn handle(&self, req: Request) -> Response<Body> {
        respond(self.dispatch(req).await)
    }
}
