//! Managing connections through the API, in the Authress `Connection` shape. The client secret is
//! write-only: stored under KMS, never returned. With only `issuerUrl`, the endpoints come from the
//! issuer's OIDC discovery document, whose `issuer` must be that URL.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::authority::Authority;
pub use super::connection_body::{ConnectionData, ConnectionInput};
use crate::access::PolicyEngine;
use crate::crypto::Envelope;
use crate::error::ApiError;
use crate::oauth::client_assertion::{AssertionKey, ClientCertificate};
use crate::oauth::client_auth::TokenEndpointAuthMethod;
use crate::oauth::connection::{
    DEFAULT_USER_ID_EXPRESSION, MAX_KEEP_ALIVE_DAYS, MAX_METADATA_FIELDS, is_acceptable_metadata_field,
    is_valid_connection_id, is_valid_user_id_expression,
};
use crate::oauth::provider::is_acceptable_provider_url;
use crate::oauth::{Connection, TokenRequestEncoding};
use crate::store::Table;
use crate::store::connections;

/// A PEM certificate of a client key is 1 to 3 KB; room for a long chain of names, no more.
pub const MAX_CERTIFICATE_LEN: usize = 8192;
/// The connection as the API shows it: everything but the client secret.
pub fn present(connection: &Connection) -> Value {
    json!({
        "connectionId": connection.connection_id,
        "type": "OAUTH2",
        "authenticationUrl": connection.authentication_url,
        "tokenUrl": connection.token_url,
        "issuerUrl": connection.issuer_url,
        "revocationUrl": connection.revocation_url,
        "clientId": connection.client_id,
        "tokenEndpointAuthMethod": connection.token_endpoint_auth_method,
        "clientAssertionKid": connection.client_assertion_kid,
        "clientAssertionCertificate": connection.client_assertion_certificate,
        "dialect": connection.dialect,
        "metadataFields": connection.metadata_fields,
        "keepAliveDays": connection.keep_alive_days,
        "defaultConnectionProperties": connection.default_connection_properties,
        "data": {
            "name": connection.name,
            "supportedContentType": connection.token_request_encoding.content_type(),
            "userIdExpression": connection.user_id_expression,
            "oidcUserEndpointUrl": connection.user_info_url,
        },
    })
}

/// Connection management: what it writes (the table, the envelope sealing client secrets), whom it
/// asks before identity-deciding changes (the policy), and how it reads an issuer's discovery document.
pub struct ConnectionAdmin {
    pub table: Table,
    pub envelope: Arc<Envelope>,
    pub policy: Arc<PolicyEngine>,
    /// The provider HTTP client (redirects off, bounded bodies), for OIDC discovery.
    pub http: reqwest::Client,
    pub insecure_allow_http_loopback: bool,
}

impl ConnectionAdmin {
    pub async fn create(&self, authority: Authority<'_>, input: ConnectionInput) -> Result<Connection, ApiError> {
        let connection_id = input
            .connection_id
            .clone()
            .unwrap_or_else(|| format!("con_{}", crate::random::token(12).replace('-', "x")));
        let chosen_id = input.connection_id.is_some();
        let mut connection = self.build(&connection_id, input, None).await?;
        if !in_own_namespace(&connection) {
            self.require_administrator(authority, "a userIdExpression that does not start with {connectionId}|")
                .await?;
        }
        // A chosen id may be one a deleted connection had: its users' ids, and grants naming ids nobody
        // has logged in with yet, would be this connection's to make.
        if chosen_id {
            self.require_administrator(authority, "choosing the connectionId")
                .await?;
        }
        // A new generation each time the id is created: credentials of an earlier connection with this
        // id never go to this one.
        connection.generation = crate::random::token(12);
        if !connections::put(&self.table, &self.envelope, &connection, true).await? {
            return Err(ApiError::Conflict {
                code: "connection_exists",
                detail: "a connection with this id exists already".into(),
            });
        }
        Ok(connection)
    }

    /// A full replace; a body without `clientSecret` keeps the stored one, but only while every endpoint
    /// the secret is sent to stays the same: the secret was given for those endpoints, and whoever may
    /// update a connection must not be able to steer it elsewhere without knowing it.
    pub async fn update(
        &self,
        authority: Authority<'_>,
        connection_id: &str,
        input: ConnectionInput,
    ) -> Result<Connection, ApiError> {
        let existing = self.get(connection_id).await?;
        if input.connection_id.as_deref().is_some_and(|id| id != connection_id) {
            return Err(ApiError::bad_request(
                "invalid_connection_id",
                "connectionId in the body differs from the path",
            ));
        }
        let secret_given = input.client_secret.is_some();
        let generation = existing.generation.clone();
        let mut connection = self
            .build(connection_id, input, Some(existing.client_secret.clone()))
            .await?;
        connection.generation = generation;
        // Whoever decides who a login is decides which person every stored user id of the connection means.
        if identity_source(&connection) != identity_source(&existing) {
            self.require_administrator(
                authority,
                "changing issuerUrl, clientId, data.oidcUserEndpointUrl or data.userIdExpression",
            )
            .await?;
        }
        if !secret_given && secret_endpoints(&connection) != secret_endpoints(&existing) {
            return Err(bad(
                "client_secret_required",
                "changing tokenUrl, revocationUrl, issuerUrl, data.oidcUserEndpointUrl, clientId or tokenEndpointAuthMethod needs clientSecret again",
            ));
        }
        if !connections::put(&self.table, &self.envelope, &connection, false).await? {
            return Err(not_found());
        }
        Ok(connection)
    }

    /// Changes that decide identities are for administrators (`vault:admin` on `*`) and the operator.
    async fn require_administrator(&self, authority: Authority<'_>, what: &str) -> Result<(), ApiError> {
        match authority {
            Authority::Operator => Ok(()),
            Authority::Caller(caller) if self.policy.is_administrator(caller).await? => Ok(()),
            Authority::Caller(_) => Err(ApiError::refused(
                "administrators_only",
                format!("{what} is for administrators (vault:admin on *)"),
            )),
        }
    }

    pub async fn get(&self, connection_id: &str) -> Result<Connection, ApiError> {
        if !is_valid_connection_id(connection_id) {
            return Err(not_found());
        }
        connections::get(&self.table, &self.envelope, connection_id)
            .await?
            .ok_or_else(not_found)
    }

    pub async fn delete(&self, connection_id: &str) -> Result<(), ApiError> {
        if is_valid_connection_id(connection_id) && connections::delete(&self.table, connection_id).await? {
            Ok(())
        } else {
            Err(not_found())
        }
    }

    pub async fn list(&self, limit: i32, cursor: Option<&str>) -> Result<Value, ApiError> {
        let (page, next) = connections::list(&self.table, &self.envelope, limit, cursor).await?;
        let items: Vec<Value> = page.iter().map(present).collect();
        Ok(json!({"connections": items, "pagination": {"next": next.map(|cursor| json!({"cursor": cursor}))}}))
    }

    async fn build(
        &self,
        connection_id: &str,
        input: ConnectionInput,
        stored_secret: Option<SecretString>,
    ) -> Result<Connection, ApiError> {
        let input = super::presets::apply(input).map_err(|e| ApiError::bad_request("invalid_preset", e.to_string()))?;
        // Checked before discovery: a body that cannot be stored costs no call to the issuer.
        let metadata_fields = input.metadata_fields.clone().unwrap_or_default();
        if metadata_fields.len() > MAX_METADATA_FIELDS
            || !metadata_fields.iter().all(|f| is_acceptable_metadata_field(f))
        {
            return Err(bad(
                "invalid_metadata_fields",
                "metadataFields are at most 8 dotted paths of lowercase words (team.id), none naming a token, secret, key or code",
            ));
        }
        let keep_alive_days = match input.keep_alive_days {
            None | Some(0) => None,
            Some(days) if days <= MAX_KEEP_ALIVE_DAYS => Some(days),
            Some(_) => {
                return Err(bad(
                    "invalid_keep_alive_days",
                    "keepAliveDays is 1 to 365, or 0 for none",
                ));
            }
        };
        if !is_valid_connection_id(connection_id) {
            return Err(bad(
                "invalid_connection_id",
                "connectionId must be 1 to 64 characters of [a-zA-Z0-9-_.:]",
            ));
        }
        if input.kind.as_deref().is_some_and(|k| k != "OAUTH2") {
            return Err(bad(
                "unsupported_connection_type",
                "only OAUTH2 connections are supported",
            ));
        }
        let insecure = self.insecure_allow_http_loopback;
        let check_url = |field: &'static str, value: &str| {
            if value.len() <= 256 && is_acceptable_provider_url(value, insecure) {
                Ok(())
            } else {
                Err(ApiError::bad_request(
                    "invalid_url",
                    format!("{field} must be an https URL"),
                ))
            }
        };
        let issuer_url = input
            .issuer_url
            .map(|u| crate::oauth::discovery::normalize_issuer(&u).to_string());
        if let Some(issuer) = &issuer_url {
            check_url("issuerUrl", issuer)?;
        }
        let (authentication_url, token_url, discovered_revocation, discovered_auth_method) =
            match (input.authentication_url, input.token_url, &issuer_url) {
                (Some(auth), Some(token), _) => (auth, token, None, None),
                (None, None, Some(issuer)) => {
                    let d = self.discover(issuer).await?;
                    (d.authentication_url, d.token_url, d.revocation_url, Some(d.auth_method))
                }
                _ => {
                    return Err(bad(
                        "invalid_connection",
                        "give authenticationUrl and tokenUrl, or only issuerUrl to discover them",
                    ));
                }
            };
        check_url("authenticationUrl", &authentication_url)?;
        check_url("tokenUrl", &token_url)?;
        let revocation_url = input.revocation_url.or(discovered_revocation);
        let token_endpoint_auth_method = match (input.token_endpoint_auth_method, discovered_auth_method) {
            (Some(chosen), _) => chosen,
            (None, Some(discovered)) => discovered.ok_or_else(|| {
                bad(
                    "unsupported_auth_method",
                    "the provider's discovery lists neither client_secret_basic nor client_secret_post",
                )
            })?,
            (None, None) => TokenEndpointAuthMethod::ClientSecretPost,
        };
        if let Some(revocation) = &revocation_url {
            check_url("revocationUrl", revocation)?;
        }
        let client_id = input
            .client_id
            .filter(|c| !c.is_empty() && c.len() <= 256)
            .ok_or_else(|| bad("invalid_client_id", "clientId is required"))?;
        let client_secret = match (input.client_secret, stored_secret) {
            // 4096: room for an RSA key's PEM (private_key_jwt).
            (Some(secret), _) if !secret.is_empty() && secret.len() <= 4096 => SecretString::from(secret),
            (Some(_), _) => {
                return Err(bad(
                    "invalid_client_secret",
                    "clientSecret must be 1 to 4096 characters",
                ));
            }
            (None, Some(stored)) => stored,
            (None, None) => return Err(bad("invalid_client_secret", "clientSecret is required")),
        };
        let private_key_jwt = token_endpoint_auth_method == TokenEndpointAuthMethod::PrivateKeyJwt;
        if private_key_jwt && AssertionKey::parse(client_secret.expose_secret()).is_none() {
            return Err(bad(
                "invalid_client_key",
                "with private_key_jwt, clientSecret is the client's PKCS#8 private key (PEM, EC P-256 or RSA)",
            ));
        }
        let client_assertion_kid = input.client_assertion_kid.filter(|k| !k.is_empty());
        match &client_assertion_kid {
            Some(_) if !private_key_jwt => {
                return Err(bad("invalid_field", "clientAssertionKid is for private_key_jwt"));
            }
            Some(kid) if kid.len() > 128 || !kid.bytes().all(|c| c.is_ascii_graphic()) => {
                return Err(bad(
                    "invalid_field",
                    "clientAssertionKid is 1 to 128 printable characters",
                ));
            }
            _ => {}
        }
        let client_assertion_certificate = input.client_assertion_certificate.filter(|c| !c.is_empty());
        if let Some(certificate) = &client_assertion_certificate {
            if !private_key_jwt {
                return Err(bad(
                    "invalid_field",
                    "clientAssertionCertificate is for private_key_jwt",
                ));
            }
            let holds_the_key = certificate.len() <= MAX_CERTIFICATE_LEN
                && AssertionKey::parse(client_secret.expose_secret())
                    .is_some_and(|key| ClientCertificate::parse(certificate, &key).is_some());
            if !holds_the_key {
                return Err(bad(
                    "invalid_client_certificate",
                    "clientAssertionCertificate must be the PEM X.509 certificate of the key in clientSecret",
                ));
            }
        }
        let data = input.data.unwrap_or(ConnectionData {
            name: None,
            supported_content_type: None,
            user_id_expression: None,
            oidc_user_endpoint_url: None,
        });
        if let Some(url) = &data.oidc_user_endpoint_url {
            check_url("data.oidcUserEndpointUrl", url)?;
        }
        if issuer_url.is_none() && data.oidc_user_endpoint_url.is_none() {
            return Err(bad(
                "invalid_connection",
                "give issuerUrl (OIDC) or data.oidcUserEndpointUrl: the vault must learn who logged in",
            ));
        }
        let token_request_encoding = match data.supported_content_type.as_deref() {
            None => TokenRequestEncoding::Form,
            Some(value) => TokenRequestEncoding::from_content_type(value).ok_or_else(|| {
                bad(
                    "invalid_content_type",
                    "data.supportedContentType is application/x-www-form-urlencoded or application/json",
                )
            })?,
        };
        let user_id_expression = data
            .user_id_expression
            .unwrap_or_else(|| DEFAULT_USER_ID_EXPRESSION.to_string());
        if !is_valid_user_id_expression(&user_id_expression) {
            return Err(bad(
                "invalid_user_id_expression",
                "data.userIdExpression is text with {claim} placeholders",
            ));
        }
        let name = data.name.unwrap_or_else(|| connection_id.to_string());
        if name.len() > 64 || name.chars().any(char::is_control) {
            return Err(bad("invalid_field", "data.name is at most 64 printable characters"));
        }
        crate::oauth::authorize::merge_properties(&BTreeMap::new(), &input.default_connection_properties)?;

        Ok(Connection {
            connection_id: connection_id.to_string(),
            name,
            authentication_url,
            token_url,
            issuer_url,
            revocation_url,
            user_info_url: data.oidc_user_endpoint_url,
            client_id,
            client_secret,
            default_connection_properties: input.default_connection_properties,
            token_request_encoding,
            token_endpoint_auth_method,
            client_assertion_kid,
            client_assertion_certificate,
            dialect: input.dialect.unwrap_or_default(),
            metadata_fields,
            keep_alive_days,
            user_id_expression,
            // Set by `create` (a new one) or `update` (the stored one).
            generation: String::new(),
        })
    }

    /// OIDC discovery of an issuer the operator configured (never a URL from a login request).
    async fn discover(&self, issuer: &str) -> Result<Discovered, ApiError> {
        let unavailable =
            |why: &str| ApiError::bad_request("discovery_failed", format!("OIDC discovery of issuerUrl failed: {why}"));
        let d = crate::oauth::discovery::discover(&self.http, issuer, self.insecure_allow_http_loopback)
            .await
            .map_err(|e| unavailable(&e.to_string()))?;
        match (d.authorization_endpoint, d.token_endpoint) {
            (Some(authentication_url), Some(token_url)) => Ok(Discovered {
                authentication_url,
                token_url,
                revocation_url: d.revocation_endpoint,
                auth_method: TokenEndpointAuthMethod::from_discovery(
                    d.token_endpoint_auth_methods_supported.as_deref(),
                ),
            }),
            _ => Err(unavailable("the document names no authorization or token endpoint")),
        }
    }
}

/// What decides which user a login through the connection is: the issuer whose id_tokens are
/// believed (and as which client), the user endpoint, and the expression over their claims. Without
/// an issuer the token endpoint decides too: its access token is what the user endpoint is asked
/// about, so whoever answers there chooses the user.
fn identity_source(c: &Connection) -> [Option<&str>; 5] {
    [
        c.issuer_url.as_deref(),
        Some(c.client_id.as_str()),
        c.user_info_url.as_deref(),
        Some(c.user_id_expression.as_str()),
        c.issuer_url.is_none().then_some(c.token_url.as_str()),
    ]
}

/// Does the connection's user id expression keep its ids inside its own namespace
/// (`{connectionId}|...`: connection ids cannot hold `|`, so no other connection's ids start so)?
/// Other expressions can make ids other connections' users or existing grants already name.
fn in_own_namespace(c: &Connection) -> bool {
    c.user_id_expression.starts_with("{connectionId}|")
}

/// Where the connection's client secret (and the tokens it guards) are sent, as which client, and
/// how: a private key given for assertions must never become a secret sent in a body.
fn secret_endpoints(c: &Connection) -> [Option<&str>; 6] {
    [
        Some(c.token_endpoint_auth_method.as_str()),
        Some(c.token_url.as_str()),
        c.revocation_url.as_deref(),
        c.issuer_url.as_deref(),
        c.user_info_url.as_deref(),
        Some(c.client_id.as_str()),
    ]
}

fn not_found() -> ApiError {
    ApiError::not_found("connection_not_found", "no such connection")
}

fn bad(code: &'static str, detail: &str) -> ApiError {
    ApiError::bad_request(code, detail.to_string())
}

/// What an issuer's discovery document says about a new connection.
struct Discovered {
    authentication_url: String,
    token_url: String,
    revocation_url: Option<String>,
    /// `None`: it supports neither of the methods the vault speaks.
    auth_method: Option<TokenEndpointAuthMethod>,
}
