//! RFC 8693 token exchange: `POST /api/authentication/oauth/tokens` with
//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange`. The hop an MCP server or any API server
//! takes: it holds the user's vault access token (`subject_token`) and needs the provider's access token
//! for a connection (`audience` or `resource`), without ever holding a refresh token.
//!
//! - Without `actor_token`, the subject must be the credential's own user (as for a fetch of one's own
//!   credential). With one (a service client's token), the actor needs `connections:credentials:read`
//!   on `Connections/{connection}/Users/{subject}/Credentials`. The audit names both.
//! - The answer is the credential fetch's (the same lease protocol), in RFC 8693 §2.2.1's words.
//! - Errors are RFC 6749 §5.2 bodies (`{"error", "error_description"}`), never the vault's own shape:
//!   a token endpoint's clients expect these.

use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use credvault::ApiError;
use credvault::oauth::connection::is_valid_connection_id;
use secrecy::SecretString;
use serde_json::json;

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Two JWTs and a few names: anything longer is not a token exchange.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The request's parameters, for the OpenAPI description (the handler parses the body itself).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeForm {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`
    grant_type: String,
    /// A vault user access token.
    subject_token: String,
    /// `urn:ietf:params:oauth:token-type:access_token`
    subject_token_type: String,
    /// A service client's token, when a service acts for the user.
    actor_token: Option<String>,
    /// `urn:ietf:params:oauth:token-type:jwt`, with `actor_token`.
    actor_token_type: Option<String>,
    /// The connection id (or give it as `resource`).
    audience: Option<String>,
    resource: Option<String>,
    /// `urn:ietf:params:oauth:token-type:access_token`, the only one issued.
    requested_token_type: Option<String>,
    /// Scopes the provider token must carry, space-separated.
    scope: Option<String>,
}

/// RFC 8693 §2.2.1.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeBody {
    /// The provider's access token.
    access_token: String,
    issued_token_type: String,
    token_type: String,
    /// Seconds it stays valid.
    expires_in: i64,
    scope: Option<String>,
}

/// RFC 6749 §5.2.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OAuthErrorBody {
    error: String,
    error_description: String,
}

/// A well-formed exchange request. The tokens stay secret (`Debug` shows neither).
pub struct ExchangeRequest {
    pub subject_token: SecretString,
    pub actor_token: Option<SecretString>,
    /// The connection named by `audience` or `resource`.
    pub connection_id: String,
    /// Scopes the provider token must carry (`scope`), if the caller names them.
    pub scope: Vec<String>,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("has_actor_token", &self.actor_token.is_some())
            .field("connection_id", &self.connection_id)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// An RFC 6749 §5.2 error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    /// Text this code wrote; never a token or other secret from the request (a missing scope is named).
    pub description: String,
    pub retry_after: Option<Duration>,
    /// More members of the body (`missing_scopes`, `login` for `invalid_scope`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            retry_after: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", description)
    }

    pub fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_target", description)
    }

    /// The vault's own refusal, in a token endpoint's words. `forbidden` is what a policy refusal
    /// means here: `unauthorized_client` for an actor without the grant, `invalid_target` for a user
    /// asking for a credential that is not theirs.
    pub fn from_api(err: &ApiError, forbidden: &'static str) -> Self {
        match err {
            ApiError::Unauthorized(why) => Self::invalid_request(format!("a token is not valid: {why}")),
            ApiError::Forbidden { .. } => Self::new(
                400,
                forbidden,
                "the caller may not read this user's credential for this connection",
            ),
            ApiError::NotFound { .. } => Self::invalid_target("no credential is stored for this user and connection"),
            ApiError::ReauthenticationRequired => Self::new(
                400,
                "invalid_grant",
                "the provider no longer accepts this credential: the user must log in again",
            ),
            // RFC 6749's word for it, with the fetch's re-consent help.
            ApiError::InsufficientScope { missing, login } => {
                let mut error = Self::new(
                    400,
                    "invalid_scope",
                    format!("the stored grant lacks {}", missing.join(" ")),
                );
                error.extra.insert("missing_scopes".into(), json!(missing));
                error.extra.insert("login".into(), login.clone());
                error
            }
            ApiError::BadRequest { .. } | ApiError::PayloadTooLarge => {
                Self::invalid_request("the request is not acceptable")
            }
            ApiError::ProviderUnavailable { .. } | ApiError::Throttled | ApiError::Unavailable => Self {
                retry_after: err.retry_after(),
                ..Self::new(503, "temporarily_unavailable", "retry later")
            },
            _ => Self::new(500, "server_error", "internal error"),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.error, "error_description": self.description});
        if let Some(object) = body.as_object_mut() {
            object.extend(self.extra);
        }
        let mut resp = credvault::http::json_response(self.status, &body);
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&after.as_millis().div_ceil(1000).max(1).to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The request's parameters: form-encoded as RFC 6749 §4.1.3 has them, or a JSON object of strings
/// (as Authress's own token endpoint takes them). A parameter given twice is refused (§3.2).
fn parameters(content_type: Option<&str>, body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(OAuthError::invalid_request("the request body is too large"));
    }
    let media_type = content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let pairs: Vec<(String, String)> = match media_type.as_deref() {
        Some("application/x-www-form-urlencoded") => url::form_urlencoded::parse(body).into_owned().collect(),
        Some("application/json") => {
            let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
                .map_err(|_| OAuthError::invalid_request("the body is not a JSON object"))?;
            object
                .into_iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(v) => Ok((k, v)),
                    _ => Err(OAuthError::invalid_request("every parameter is a string")),
                })
                .collect::<Result<_, _>>()?
        }
        _ => {
            return Err(OAuthError::invalid_request(
                "send the parameters as application/x-www-form-urlencoded",
            ));
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in &pairs {
        if !seen.insert(name.as_str()) {
            return Err(OAuthError::invalid_request("a parameter is given more than once"));
        }
    }
    Ok(pairs)
}

/// A well-formed token-exchange request, or the error a token endpoint answers it with.
pub fn parse(content_type: Option<&str>, body: &[u8]) -> Result<ExchangeRequest, OAuthError> {
    let pairs = parameters(content_type, body)?;
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    match get("grant_type") {
        None => return Err(OAuthError::invalid_request("grant_type is required")),
        Some(GRANT_TYPE) => {}
        Some(_) => {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                "this endpoint takes only the token-exchange grant",
            ));
        }
    }
    let subject_token = get("subject_token").ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
    if get("subject_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!(
            "subject_token_type must be {ACCESS_TOKEN_TYPE} (a vault user access token)"
        )));
    }
    let actor_token = match (get("actor_token"), get("actor_token_type")) {
        (None, None) => None,
        (Some(token), Some(JWT_TOKEN_TYPE)) => Some(SecretString::from(token.to_string())),
        (Some(_), _) => {
            return Err(OAuthError::invalid_request(format!(
                "actor_token_type must be {JWT_TOKEN_TYPE} (a service client's token)"
            )));
        }
        (None, Some(_)) => return Err(OAuthError::invalid_request("actor_token_type without actor_token")),
    };
    if get("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type can only be {ACCESS_TOKEN_TYPE}"
        )));
    }
    let connection_id = match (get("audience"), get("resource")) {
        (None, None) => {
            return Err(OAuthError::invalid_request(
                "name the connection as audience (or resource)",
            ));
        }
        (Some(a), Some(r)) if a != r => {
            return Err(OAuthError::invalid_target(
                "audience and resource name different connections",
            ));
        }
        (Some(c), _) | (None, Some(c)) => c,
    };
    if !is_valid_connection_id(connection_id) {
        return Err(OAuthError::invalid_target("the audience is not a connection id"));
    }
    let scope = match get("scope") {
        None => Vec::new(),
        Some(scope) => match credvault::oauth::scopes::parse_list(scope) {
            Some(list) => list,
            None => {
                return Err(OAuthError::new(
                    400,
                    "invalid_scope",
                    "scope is space-separated scope tokens (RFC 6749 §3.3)",
                ));
            }
        },
    };
    Ok(ExchangeRequest {
        subject_token: SecretString::from(subject_token.to_string()),
        actor_token,
        connection_id: connection_id.to_string(),
        scope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    type Params = Vec<(&'static str, &'static str)>;

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            out.append_pair(k, v);
        }
        out.finish().into_bytes()
    }

    fn valid() -> Params {
        vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", "the.subject.jwt"),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", "con_google"),
        ]
    }

    fn error_of(pairs: &[(&str, &str)]) -> (&'static str, String) {
        let err = parse(FORM, &form(pairs)).expect_err("refused");
        (err.error, err.description)
    }

    #[test]
    fn a_minimal_request_names_the_subject_and_the_connection() {
        let request = parse(FORM, &form(&valid())).unwrap();
        assert_eq!(request.subject_token.expose_secret(), "the.subject.jwt");
        assert_eq!(request.connection_id, "con_google");
        assert!(request.actor_token.is_none() && request.scope.is_empty());
        let shown = format!("{request:?}");
        assert!(!shown.contains("the.subject.jwt"), "{shown}");
    }

    #[test]
    fn an_actor_resource_and_scope_are_read() {
        let mut pairs = valid();
        pairs.retain(|(k, _)| *k != "audience");
        pairs.extend([
            ("resource", "con_google"),
            ("actor_token", "the.actor.jwt"),
            ("actor_token_type", JWT_TOKEN_TYPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("scope", "openid https://www.googleapis.com/auth/drive.readonly"),
        ]);
        let request = parse(FORM, &form(&pairs)).unwrap();
        assert_eq!(request.actor_token.unwrap().expose_secret(), "the.actor.jwt");
        assert_eq!(
            request.scope,
            ["openid", "https://www.googleapis.com/auth/drive.readonly"]
        );
        // JSON bodies carry the same parameters.
        let json: serde_json::Map<String, serde_json::Value> =
            valid().into_iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
        let request = parse(
            Some("application/json; charset=utf-8"),
            json!(json).to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(request.connection_id, "con_google");
    }

    #[test]
    fn every_malformed_request_gets_its_rfc_error() {
        let with = |change: &dyn Fn(&mut Params)| {
            let mut pairs = valid();
            change(&mut pairs);
            error_of(&pairs).0
        };
        let set = |k: &'static str, v: &'static str| {
            move |p: &mut Params| {
                p.retain(|(name, _)| *name != k);
                p.push((k, v));
            }
        };
        let drop = |k: &'static str| move |p: &mut Params| p.retain(|(name, _)| *name != k);
        assert_eq!(with(&set("grant_type", "authorization_code")), "unsupported_grant_type");
        assert_eq!(with(&drop("grant_type")), "invalid_request");
        assert_eq!(with(&drop("subject_token")), "invalid_request");
        assert_eq!(with(&set("subject_token_type", JWT_TOKEN_TYPE)), "invalid_request");
        assert_eq!(with(&drop("subject_token_type")), "invalid_request");
        assert_eq!(with(&set("actor_token", "x")), "invalid_request", "no actor_token_type");
        assert_eq!(
            with(&set("actor_token_type", JWT_TOKEN_TYPE)),
            "invalid_request",
            "no actor_token"
        );
        assert_eq!(
            with(&set(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token"
            )),
            "invalid_request",
            "never a refresh token"
        );
        assert_eq!(with(&drop("audience")), "invalid_request");
        assert_eq!(with(&set("audience", "https://evil.example/")), "invalid_target");
        assert_eq!(with(&set("resource", "con_other")), "invalid_target");
        assert_eq!(with(&set("scope", "a  b")), "invalid_scope");
        assert_eq!(with(&set("scope", "quote\"d")), "invalid_scope");
        // A parameter given twice, another media type, a body too large, JSON that is not strings.
        let mut twice = valid();
        twice.push(("audience", "con_other"));
        assert_eq!(error_of(&twice).0, "invalid_request");
        assert_eq!(
            parse(Some("text/plain"), &form(&valid())).unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(parse(None, &form(&valid())).unwrap_err().error, "invalid_request");
        assert_eq!(
            parse(FORM, &vec![b'a'; MAX_BODY_BYTES + 1]).unwrap_err().error,
            "invalid_request"
        );
        assert_eq!(
            parse(Some("application/json"), br#"{"grant_type": 1}"#)
                .unwrap_err()
                .error,
            "invalid_request"
        );
        // No description quotes the request.
        let (_, description) = error_of(&[("grant_type", "secret-looking-value")]);
        assert!(!description.contains("secret-looking-value"), "{description}");
    }
}
