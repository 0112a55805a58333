//! credential-fetch: a fresh provider access token for the user themself, or for a caller granted
//! `connections:credentials:read` on the credential. The refresh protocol lives in `credvault::vault`.

use std::sync::Arc;
use std::time::Duration;

use credvault::audit::{self, AuditEvent};
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
        let resource = access::credentials_resource(&connection_id, &user_id);
        if matched.route.id == RouteId::DeleteUserCredentials {
            let result = self.disconnect(&caller, &connection_id, &user_id).await;
            let mut event = AuditEvent::new(
                "credential.disconnect",
                Some(caller.subject()),
                &resource,
                result.as_ref().map(|_| ()),
            );
            if let Ok(vault::Revocation::Skipped(change)) = &result {
                event = event.reason(change.reason());
            }
            audit::record(services, event).await;
            result?;
            let mut resp = Response::new(Body::Empty);
            *resp.status_mut() = lambda_http::http::StatusCode::NO_CONTENT;
            return Ok(resp);
        }
        let min_validity = self.minimum_validity(&req)?;
        let result = self.read(&caller, &connection_id, &user_id, min_validity).await;
        let event = AuditEvent::new(
            "credential.read",
            Some(caller.subject()),
            &resource,
            result.as_ref().map(|_| ()),
        );
        let refreshed = result.as_ref().is_ok_and(|t| t.refreshed);
        audit::record(services, event.refreshed(refreshed)).await;
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

    async fn read(
        &self,
        caller: &Caller,
        connection_id: &str,
        user_id: &str,
        min_validity: Duration,
    ) -> Result<vault::FreshAccessToken, ApiError> {
        let s = &self.services;
        access::require_credential_access(
            &s.policies,
            &s.table,
            caller,
            connection_id,
            user_id,
            "connections:credentials:read",
        )
        .await?;
        vault::fresh_access_token(s, connection_id, user_id, min_validity).await
    }

    async fn disconnect(
        &self,
        caller: &Caller,
        connection_id: &str,
        user_id: &str,
    ) -> Result<vault::Revocation, ApiError> {
        let s = &self.services;
        access::require_credential_access(
            &s.policies,
            &s.table,
            caller,
            connection_id,
            user_id,
            "connections:credentials:delete",
        )
        .await?;
        vault::disconnect(s, connection_id, user_id).await
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
