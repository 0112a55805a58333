//! What a token endpoint's answer means, per provider dialect: new tokens, a dead grant (the user
//! must log in again), or a transient failure that says whether the provider may have acted.
//!
//! - `standard`: RFC 6749 §5.1/§5.2: tokens with 200, errors as JSON `{"error"}` with a 4xx status.
//! - `github`: errors come with HTTP 200 as `{"error": "bad_refresh_token", ...}`; scopes are
//!   comma-separated; OAuth App tokens come without `expires_in` and without a refresh token.
//! - `slack`: every answer is HTTP 200 with `"ok": true | false`; `{"ok": false, "error":
//!   "invalid_refresh_token"}` is a dead grant, `ratelimited` says to come back; the v2 user token is
//!   under `authed_user`; scopes are comma-separated.
//! - `atlassian`: standard answers (it wants JSON request bodies, which is the connection's
//!   `supportedContentType`, not the dialect).
//!
//! Error codes are cut to short ASCII words before they go anywhere: a provider body may echo a token.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::answer::{Delivery, ProviderError, TokenResponse};
pub use super::connection::Dialect;

/// RFC 6749 `error` codes that mean the grant or the client is dead: retrying cannot help.
const STANDARD_DEAD: &[&str] = &["invalid_grant", "unauthorized_client", "invalid_client"];
/// GitHub's, answered with HTTP 200 (docs.github.com, "Troubleshooting OAuth app access token
/// request errors", and the refresh-token errors of GitHub Apps).
const GITHUB_DEAD: &[&str] = &[
    "bad_verification_code",
    "bad_refresh_token",
    "incorrect_client_credentials",
    "redirect_uri_mismatch",
    "unverified_user_email",
    "application_suspended",
];
/// Slack's `oauth.v2.access` errors that mean the token or the app is dead (api.slack.com/methods/oauth.v2.access).
const SLACK_DEAD: &[&str] = &[
    "invalid_refresh_token",
    "invalid_code",
    "code_already_used",
    "code_expired",
    "invalid_client_id",
    "bad_client_secret",
    "bad_redirect_uri",
    "invalid_grant_type",
    "token_revoked",
    "token_expired",
    "app_missing_action_url",
];
/// Slack errors that say nothing was done and to come back.
const SLACK_RETRY_LATER: &[&str] = &["ratelimited"];
/// Slack errors of its own side, after which it may or may not have acted.
const SLACK_UNKNOWN: &[&str] = &[
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// The answer `status` / `body` (with its `Retry-After`) of a token request, read in `dialect`;
/// `metadata_fields` are the connection's allow-listed fields to keep beside the tokens.
pub fn interpret(
    dialect: Dialect,
    status: u16,
    body: &[u8],
    retry_after: Option<Duration>,
    metadata_fields: &[String],
) -> Result<TokenResponse, ProviderError> {
    if !(200..300).contains(&status) {
        let error = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(sanitize_code));
        return Err(match dialect {
            Dialect::Github => failure_in(status, error, retry_after, GITHUB_DEAD),
            Dialect::Slack => failure_in(status, error, retry_after, SLACK_DEAD),
            Dialect::Standard | Dialect::Atlassian => failure_in(status, error, retry_after, STANDARD_DEAD),
        });
    }
    // A success that cannot be read may have carried a rotated refresh token.
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ProviderError::transient("token response is not JSON", Delivery::Unknown))?;
    let with_metadata = |mut answer: TokenResponse| {
        // From the top level: Slack's `team` sits beside `authed_user`, not inside it.
        answer.metadata = metadata(&value, metadata_fields);
        answer
    };
    let answer = match dialect {
        Dialect::Standard | Dialect::Atlassian => tokens(&value, false),
        Dialect::Github => match value.get("error").and_then(Value::as_str) {
            Some(error) => Err(refusal_with_200(&sanitize_code(error), GITHUB_DEAD, &[], &[])),
            None => tokens(&value, true),
        },
        Dialect::Slack => match value.get("ok").and_then(Value::as_bool) {
            Some(true) => match value.get("authed_user").filter(|u| u.get("access_token").is_some()) {
                // A user token (user scopes): the credential is the user's, not the bot's.
                Some(user) => tokens(user, true),
                None => tokens(&value, true),
            },
            Some(false) => {
                let error = value
                    .get("error")
                    .and_then(Value::as_str)
                    .map(sanitize_code)
                    .unwrap_or_else(|| "unknown_error".to_string());
                Err(refusal_with_200(&error, SLACK_DEAD, SLACK_RETRY_LATER, SLACK_UNKNOWN))
            }
            // Not Slack's shape: a success we cannot trust, which may have rotated the token.
            None => Err(ProviderError::transient("slack answer without ok", Delivery::Unknown)),
        },
    };
    answer.map(with_metadata)
}

/// The longest metadata value kept: instance URLs and ids, not documents.
const MAX_METADATA_VALUE: usize = 512;

/// The allow-listed fields of an answer, by dotted path into its objects (`team.id`). Only strings,
/// numbers and booleans are kept, as text; a missing field, or any other kind of value, is left out.
fn metadata(value: &Value, fields: &[String]) -> super::answer::ProviderMetadata {
    fields
        .iter()
        .filter_map(|field| {
            let found = field.split('.').try_fold(value, |at, key| at.get(key))?;
            let text = match found {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            (text.len() <= MAX_METADATA_VALUE).then(|| (field.clone(), text))
        })
        .collect()
}

/// A non-2xx answer: a dead grant when the code says so on a 400/401, else a transient failure that
/// says whether the provider acted.
fn failure_in(status: u16, error: Option<String>, retry_after: Option<Duration>, dead: &[&str]) -> ProviderError {
    let reason = format!(
        "HTTP {status}{}",
        error.as_ref().map(|e| format!(" {e}")).unwrap_or_default()
    );
    let delivery = match (status, error) {
        (400 | 401, Some(error)) if dead.contains(&error.as_str()) || STANDARD_DEAD.contains(&error.as_str()) => {
            return ProviderError::Permanent { status, error };
        }
        // 429 says the request was not processed; a 503 that names when to come back says the same.
        (429, _) => Delivery::RetryLater,
        (503, _) if retry_after.is_some() => Delivery::RetryLater,
        // Any other 5xx may come from a gateway after the provider acted (502, 504), or from the
        // provider failing after it rotated.
        (500..=599, _) => Delivery::Unknown,
        (_, _) => Delivery::Refused,
    };
    ProviderError::Transient {
        reason,
        retry_after,
        delivery,
    }
}

/// An error code answered with HTTP 200 (GitHub, Slack). A code the dialect does not know is a
/// refusal: the provider answered, and did nothing.
fn refusal_with_200(error: &str, dead: &[&str], retry_later: &[&str], unknown: &[&str]) -> ProviderError {
    if dead.contains(&error) {
        return ProviderError::Permanent {
            status: 200,
            error: error.to_string(),
        };
    }
    let delivery = if retry_later.contains(&error) {
        Delivery::RetryLater
    } else if unknown.contains(&error) {
        Delivery::Unknown
    } else {
        Delivery::Refused
    };
    ProviderError::Transient {
        reason: format!("HTTP 200 {error}"),
        retry_after: None,
        delivery,
    }
}

#[derive(Deserialize)]
struct RawTokens {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<Value>,
    token_type: Option<String>,
    scope: Option<String>,
    id_token: Option<String>,
}

/// The tokens of a success body. `comma_scopes`: the dialect lists scopes with commas; they are kept
/// space-separated, as RFC 6749 writes them.
fn tokens(value: &Value, comma_scopes: bool) -> Result<TokenResponse, ProviderError> {
    let raw = RawTokens::deserialize(value)
        .map_err(|_| ProviderError::transient("token response is not the expected JSON", Delivery::Unknown))?;
    let Some(access_token) = raw.access_token.filter(|t| !t.is_empty()) else {
        return Err(ProviderError::transient(
            "token response has no access_token",
            Delivery::Unknown,
        ));
    };
    let expires_in = match raw.expires_in {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        // Absent (GitHub OAuth App tokens): the token does not expire.
        _ => None,
    };
    let scope = raw.scope.map(|s| {
        if comma_scopes {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            s
        }
    });
    Ok(TokenResponse {
        access_token: SecretString::from(access_token),
        // None keeps the stored refresh token (Google sends none on refresh).
        refresh_token: raw.refresh_token.filter(|t| !t.is_empty()).map(SecretString::from),
        expires_in,
        token_type: raw.token_type.unwrap_or_else(|| "Bearer".to_string()),
        scope,
        id_token: raw.id_token.map(SecretString::from),
        metadata: Default::default(),
    })
}

/// OAuth error codes are short ASCII words; anything else is cut, so a hostile body cannot write to logs.
fn sanitize_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn read(dialect: Dialect, status: u16, body: &str) -> Result<TokenResponse, ProviderError> {
        interpret(dialect, status, body.as_bytes(), None, &[])
    }

    fn dead(result: Result<TokenResponse, ProviderError>) -> bool {
        matches!(result, Err(ProviderError::Permanent { .. }))
    }

    fn delivery(result: Result<TokenResponse, ProviderError>) -> Option<Delivery> {
        result.err().and_then(|e| e.delivery())
    }

    #[test]
    fn only_allow_listed_scalar_fields_become_metadata() {
        let fields: Vec<String> = [
            "instance_url",
            "team.id",
            "team.size",
            "issued",
            "profile",
            "absent",
            "big",
        ]
        .map(String::from)
        .to_vec();
        let long = "x".repeat(MAX_METADATA_VALUE + 1);
        // Salesforce's shape (docs: "OAuth 2.0 Web Server Flow"), with a few extra kinds of value.
        let body = serde_json::json!({
            "access_token": "00D-token", "refresh_token": "5Aep-rt", "signature": "sig", "token_type": "Bearer",
            "instance_url": "https://na1.salesforce.com", "issued": true, "profile": {"id": "p"},
            "team": {"id": "T1", "size": 12}, "big": long,
        })
        .to_string();
        let answer = interpret(Dialect::Standard, 200, body.as_bytes(), None, &fields).unwrap();
        let expected: Vec<(&str, &str)> = vec![
            ("instance_url", "https://na1.salesforce.com"),
            ("issued", "true"),
            ("team.id", "T1"),
            ("team.size", "12"),
        ];
        let got: Vec<(&str, &str)> = answer.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got, expected,
            "objects, missing fields and oversized values are left out"
        );
        // Only what is asked for: the same answer with no fields has no metadata.
        assert!(read(Dialect::Standard, 200, &body).unwrap().metadata.is_empty());
        // Slack's team sits beside authed_user, whose tokens are the credential.
        let slack = r#"{"ok": true, "access_token": "xoxb-bot", "team": {"id": "T9"},
            "authed_user": {"access_token": "xoxp-user", "token_type": "user"}}"#;
        let answer = interpret(Dialect::Slack, 200, slack.as_bytes(), None, &["team.id".to_string()]).unwrap();
        assert_eq!(answer.access_token.expose_secret(), "xoxp-user");
        assert_eq!(answer.metadata.get("team.id").map(String::as_str), Some("T9"));
        // A refusal carries no metadata at all.
        let refused = r#"{"ok": false, "error": "invalid_refresh_token", "team": {"id": "T9"}}"#;
        assert!(dead(interpret(
            Dialect::Slack,
            200,
            refused.as_bytes(),
            None,
            &["team.id".to_string()]
        )));
    }

    #[test]
    fn only_answers_that_say_nothing_happened_may_be_sent_again() {
        let delivery = |status, error: Option<&str>, retry_after: Option<u64>| {
            failure_in(
                status,
                error.map(String::from),
                retry_after.map(Duration::from_secs),
                STANDARD_DEAD,
            )
            .delivery()
        };
        assert_eq!(delivery(429, None, None), Some(Delivery::RetryLater));
        assert_eq!(delivery(429, None, Some(3)), Some(Delivery::RetryLater));
        assert_eq!(delivery(503, None, Some(3)), Some(Delivery::RetryLater));
        // No Retry-After: a 503 may come from a gateway after the provider acted, like 500, 502, 504.
        for status in [500, 502, 503, 504] {
            assert_eq!(delivery(status, None, None), Some(Delivery::Unknown), "{status}");
        }
        assert_eq!(delivery(502, None, Some(3)), Some(Delivery::Unknown));
        assert_eq!(delivery(400, Some("invalid_request"), None), Some(Delivery::Refused));
        assert_eq!(delivery(403, None, None), Some(Delivery::Refused));
        for error in STANDARD_DEAD {
            assert_eq!(delivery(400, Some(error), None), None, "{error}");
            assert_eq!(delivery(401, Some(error), None), None, "{error}");
        }
        // A dead-grant code on a 5xx is the gateway's or the provider's failure, not an answer.
        assert_eq!(delivery(500, Some("invalid_grant"), None), Some(Delivery::Unknown));
        match failure_in(429, None, Some(Duration::from_secs(7)), STANDARD_DEAD) {
            ProviderError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
            other => panic!("{other:?}"),
        }
    }

    /// On a 400, a dead grant is either the dialect's own code or an RFC 6749 one: GitHub Apps and
    /// Slack can answer `invalid_grant` with a 400 too, and their own codes with a 400 as well as a 200.
    #[test]
    fn a_400_is_dead_with_the_dialects_code_or_a_standard_one() {
        for dialect in [Dialect::Github, Dialect::Slack, Dialect::Standard, Dialect::Atlassian] {
            assert!(
                dead(read(dialect, 400, r#"{"error": "invalid_grant"}"#)),
                "{dialect:?}: invalid_grant"
            );
        }
        assert!(dead(read(Dialect::Github, 400, r#"{"error": "bad_refresh_token"}"#)));
        assert!(dead(read(Dialect::Slack, 400, r#"{"error": "invalid_refresh_token"}"#)));
        assert!(
            !dead(read(Dialect::Standard, 400, r#"{"error": "bad_refresh_token"}"#)),
            "not a standard code"
        );
    }

    #[test]
    fn an_unreadable_success_may_have_rotated_the_token() {
        for body in ["not json", r#"{"access_token": ""}"#, r#"{"token_type": "Bearer"}"#] {
            assert_eq!(
                delivery(read(Dialect::Standard, 200, body)),
                Some(Delivery::Unknown),
                "{body}"
            );
        }
    }

    #[test]
    fn hostile_error_codes_are_cut() {
        assert_eq!(
            sanitize_code("invalid_grant\nFAKE LOG LINE"),
            "invalid_grantFAKELOGLINE"
        );
        assert_eq!(sanitize_code(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn token_response_debug_shows_no_token() {
        let r = read(
            Dialect::Standard,
            200,
            r#"{"access_token":"planted-at","refresh_token":"planted-rt","expires_in":"3600"}"#,
        )
        .unwrap();
        let shown = format!("{r:?}");
        assert!(!shown.contains("planted"), "{shown}");
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.token_type, "Bearer");
    }

    #[test]
    fn standard_answers() {
        // RFC 6749 §5.1, with a space-separated scope.
        let ok = read(
            Dialect::Standard,
            200,
            r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600,
                "refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA","scope":"openid email"}"#,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(3600));
        assert_eq!(ok.scope.as_deref(), Some("openid email"));
        assert_eq!(ok.refresh_token.unwrap().expose_secret(), "tGzv3JOkF0XG5Qx2TlKWIA");
        // Google's refresh answer: no new refresh token, so the stored one is kept.
        let google = read(
            Dialect::Standard,
            200,
            r#"{"access_token":"ya29.a0","expires_in":3599,"scope":"https://www.googleapis.com/auth/drive.file openid","token_type":"Bearer","id_token":"eyJ"}"#,
        )
        .unwrap();
        assert!(google.refresh_token.is_none());
        // RFC 6749 §5.2.
        assert!(dead(read(Dialect::Standard, 400, r#"{"error":"invalid_grant"}"#)));
        assert!(!dead(read(Dialect::Atlassian, 403, r#"{"error":"invalid_grant"}"#)));
        assert!(dead(read(
            Dialect::Atlassian,
            400,
            r#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#
        )));
    }

    #[test]
    fn github_answers_errors_with_200() {
        // docs.github.com: "The code passed is incorrect or expired."
        let bad_code = r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired.","error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/#bad-verification-code"}"#;
        assert!(dead(read(Dialect::Github, 200, bad_code)));
        assert!(dead(read(
            Dialect::Github,
            200,
            r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#
        )));
        assert!(dead(read(
            Dialect::Github,
            200,
            r#"{"error":"incorrect_client_credentials"}"#
        )));
        // In the standard dialect the same body would have been read as tokens and found wanting.
        assert_eq!(
            delivery(read(Dialect::Standard, 200, bad_code)),
            Some(Delivery::Unknown)
        );
        // An unknown error code with 200: an answer, nothing done.
        assert_eq!(
            delivery(read(Dialect::Github, 200, r#"{"error":"slow_down"}"#)),
            Some(Delivery::Refused)
        );
        // An OAuth App token: comma scopes, no expiry, no refresh token.
        let app = read(
            Dialect::Github,
            200,
            r#"{"access_token":"gho_16C7e42F292c6912E7710c838347Ae178B4a","scope":"repo,gist","token_type":"bearer"}"#,
        )
        .unwrap();
        assert_eq!(app.scope.as_deref(), Some("repo gist"));
        assert_eq!(app.expires_in, None);
        assert!(app.refresh_token.is_none());
        // A GitHub App user token: expiring, with a refresh token; the scope is empty.
        let expiring = read(Dialect::Github, 200, r#"{"access_token":"ghu_16C7e42F292c6912E7710c838347Ae178B4a","expires_in":28800,"refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498","refresh_token_expires_in":15811200,"scope":"","token_type":"bearer"}"#).unwrap();
        assert_eq!(expiring.expires_in, Some(28800));
        assert!(expiring.refresh_token.is_some());
        assert_eq!(expiring.scope.as_deref(), Some(""));
    }

    #[test]
    fn slack_answers_everything_with_200_and_ok() {
        assert!(dead(read(
            Dialect::Slack,
            200,
            r#"{"ok":false,"error":"invalid_refresh_token"}"#
        )));
        assert!(dead(read(
            Dialect::Slack,
            200,
            r#"{"ok":false,"error":"token_revoked"}"#
        )));
        assert_eq!(
            delivery(read(Dialect::Slack, 200, r#"{"ok":false,"error":"ratelimited"}"#)),
            Some(Delivery::RetryLater)
        );
        assert_eq!(
            delivery(read(Dialect::Slack, 200, r#"{"ok":false,"error":"internal_error"}"#)),
            Some(Delivery::Unknown)
        );
        assert_eq!(
            delivery(read(Dialect::Slack, 200, r#"{"ok":false,"error":"invalid_arguments"}"#)),
            Some(Delivery::Refused)
        );
        // oauth.v2.access with user scopes: the user token is under authed_user.
        let v2 = read(
            Dialect::Slack,
            200,
            r#"{"ok":true,"app_id":"A0KRD7HC3","authed_user":{"id":"U1234","scope":"chat:write,users:read","access_token":"xoxp-1234","token_type":"user","refresh_token":"xoxe-1-user","expires_in":43200},
                "scope":"commands,incoming-webhook","token_type":"bot","access_token":"xoxb-17653672481","bot_user_id":"U0KRQLJ9H",
                "team":{"name":"Slack Softball Team","id":"T9TK3CUKW"},"enterprise":null,"is_enterprise_install":false}"#,
        )
        .unwrap();
        assert_eq!(v2.access_token.expose_secret(), "xoxp-1234");
        assert_eq!(v2.refresh_token.unwrap().expose_secret(), "xoxe-1-user");
        assert_eq!(v2.scope.as_deref(), Some("chat:write users:read"));
        assert_eq!(v2.expires_in, Some(43200));
        // A rotated token refresh answers at the top level.
        let refreshed = read(
            Dialect::Slack,
            200,
            r#"{"ok":true,"access_token":"xoxe.xoxp-1-new","expires_in":43200,"refresh_token":"xoxe-1-next","token_type":"user","scope":"chat:write"}"#,
        )
        .unwrap();
        assert_eq!(refreshed.access_token.expose_secret(), "xoxe.xoxp-1-new");
        // Not Slack's shape: a success that cannot be trusted, which may have rotated the token.
        assert_eq!(
            delivery(read(Dialect::Slack, 200, r#"{"access_token":"x"}"#)),
            Some(Delivery::Unknown)
        );
        // Slack's HTTP-level failures read as any provider's.
        assert_eq!(delivery(read(Dialect::Slack, 502, "")), Some(Delivery::Unknown));
    }

    #[test]
    fn expires_in_in_any_form() {
        for (body, expected) in [
            (r#"{"access_token":"a","expires_in":60}"#, Some(60)),
            (r#"{"access_token":"a","expires_in":"60"}"#, Some(60)),
            (r#"{"access_token":"a","expires_in":" 60 "}"#, Some(60)),
            (r#"{"access_token":"a"}"#, None),
            (r#"{"access_token":"a","expires_in":null}"#, None),
            (r#"{"access_token":"a","expires_in":"soon"}"#, None),
        ] {
            assert_eq!(
                read(Dialect::Standard, 200, body).unwrap().expires_in,
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn names_round_trip() {
        for d in [Dialect::Standard, Dialect::Github, Dialect::Slack, Dialect::Atlassian] {
            assert_eq!(Dialect::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        assert_eq!(Dialect::parse("okta"), None);
    }
}
