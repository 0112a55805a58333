//! A connection: one configured provider (Google, GitHub, the demo provider, ...).

use std::collections::BTreeMap;
use std::fmt;

use secrecy::SecretString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRequestEncoding {
    /// `application/x-www-form-urlencoded`, what RFC 6749 specifies and most providers take.
    Form,
    /// `application/json`, for providers that want it (Authress `data.supportedContentType`).
    Json,
}

impl TokenRequestEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            TokenRequestEncoding::Form => "application/x-www-form-urlencoded",
            TokenRequestEncoding::Json => "application/json",
        }
    }

    pub fn from_content_type(value: &str) -> Option<Self> {
        match value {
            "application/x-www-form-urlencoded" => Some(TokenRequestEncoding::Form),
            "application/json" => Some(TokenRequestEncoding::Json),
            _ => None,
        }
    }
}

/// How the vault authenticates as the OAuth client at the provider's token and revocation endpoints
/// (RFC 6749 §2.3.1, OIDC Core §9): HTTP Basic with the form-encoded id and secret, or both in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// HTTP Basic with the form-encoded client id and secret: what RFC 6749 says every server
    /// supports, and OIDC discovery's default.
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the request body.
    ClientSecretPost,
    /// A JWT about the client signed with its private key (RFC 7523; Microsoft Entra's certificate
    /// credentials): the connection's `clientSecret` is the PKCS#8 key, never sent anywhere.
    PrivateKeyJwt,
}

impl TokenEndpointAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenEndpointAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenEndpointAuthMethod::ClientSecretPost => "client_secret_post",
            TokenEndpointAuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "client_secret_basic" => Some(TokenEndpointAuthMethod::ClientSecretBasic),
            "client_secret_post" => Some(TokenEndpointAuthMethod::ClientSecretPost),
            "private_key_jwt" => Some(TokenEndpointAuthMethod::PrivateKeyJwt),
            _ => None,
        }
    }

    /// The method to use with a provider whose discovery document lists `supported`
    /// (`token_endpoint_auth_methods_supported`): Basic when it is listed, or when nothing is listed
    /// (OIDC Discovery §3: the default is `client_secret_basic`), else `client_secret_post` if listed.
    /// `None`: the provider supports neither. `private_key_jwt` is never picked: it needs a key, which
    /// the connection names by choosing it.
    pub fn from_discovery(supported: Option<&[String]>) -> Option<Self> {
        let Some(supported) = supported else {
            return Some(TokenEndpointAuthMethod::ClientSecretBasic);
        };
        [
            TokenEndpointAuthMethod::ClientSecretBasic,
            TokenEndpointAuthMethod::ClientSecretPost,
        ]
        .into_iter()
        .find(|method| supported.iter().any(|s| s == method.as_str()))
    }
}

/// How the provider words its token answers: `standard` (RFC 6749), `github` (errors with HTTP 200),
/// `slack` (`ok: false`, the user token under `authed_user`), `atlassian`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    #[default]
    Standard,
    Github,
    Slack,
    Atlassian,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Standard => "standard",
            Dialect::Github => "github",
            Dialect::Slack => "slack",
            Dialect::Atlassian => "atlassian",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Dialect::Standard, Dialect::Github, Dialect::Slack, Dialect::Atlassian]
            .into_iter()
            .find(|d| d.as_str() == value)
    }
}

#[derive(Clone)]
pub struct Connection {
    pub connection_id: String,
    pub name: String,
    pub authentication_url: String,
    pub token_url: String,
    /// OIDC issuer: when set, id_tokens are required and verified against its discovered JWKS.
    pub issuer_url: Option<String>,
    /// RFC 7009 revocation endpoint, used on disconnect.
    pub revocation_url: Option<String>,
    /// Where a provider without id_tokens (GitHub) tells who the user is, given the access token
    /// (Authress `data.oidcUserEndpointUrl`). Used only when there is no `issuer_url`.
    pub user_info_url: Option<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub default_connection_properties: BTreeMap<String, String>,
    pub token_request_encoding: TokenRequestEncoding,
    /// How the vault authenticates as the client at the token and revocation endpoints.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// The `kid` of the client's key in its assertions (`private_key_jwt`), when the provider wants one.
    pub client_assertion_kid: Option<String>,
    /// The X.509 certificate (PEM, public) of the client's key, when the provider names keys by their
    /// certificate's thumbprint (Microsoft Entra): its assertions then carry `x5t#S256` and `x5t`.
    pub client_assertion_certificate: Option<String>,
    /// How its token endpoint's answers are read (dialect.rs).
    pub dialect: Dialect,
    /// Fields of the token answers callers get beside the access token (`instance_url`, `team.id`):
    /// never a secret (`is_acceptable_metadata_field`).
    pub metadata_fields: Vec<String>,
    /// Refresh a credential nobody fetched for this many days, so its refresh token does not expire
    /// unused (Microsoft: 90 days idle); `None`: never (maintenance.rs).
    pub keep_alive_days: Option<u32>,
    /// How the vault user id is made from the provider's id_token claims at login, e.g.
    /// `{connectionId}|{sub}`. Changing it never re-keys stored credentials.
    pub user_id_expression: String,
    /// New each time the connection id is created: credentials of a deleted and re-created
    /// connection are not sent to it.
    pub generation: String,
}

/// At most this many metadata fields per connection.
/// The longest keep-alive period: refresh tokens that live longer unused need no keeping alive.
pub const MAX_KEEP_ALIVE_DAYS: u32 = 365;

impl Connection {
    /// When a credential refreshed (or logged in) at `now` is next due for a keep-alive refresh.
    pub fn keep_alive_due(&self, now_secs: i64) -> Option<i64> {
        self.keep_alive_days.map(|days| now_secs + i64::from(days) * 86_400)
    }
}

pub const MAX_METADATA_FIELDS: usize = 8;

/// Words no metadata field may contain: the answer's other secrets (tokens, keys, codes) must never
/// reach a caller through the metadata, whoever configures the connection.
const SECRET_WORDS: [&str; 6] = ["token", "secret", "password", "code", "key", "assertion"];

/// Can `field` be a metadata field? A dotted path (`team.id`) of 1 to 8 lowercase words of
/// `[a-z0-9_]`, at most 64 characters, none of which looks like a secret.
pub fn is_acceptable_metadata_field(field: &str) -> bool {
    let segments: Vec<&str> = field.split('.').collect();
    field.len() <= 64
        && segments.len() <= 8
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        })
        && !SECRET_WORDS.iter().any(|word| field.contains(word))
}

/// What a credential was issued under. Its refresh token (and the connection's client secret with
/// it) is only ever sent back to these endpoints of this generation of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedUnder {
    pub token_url: String,
    pub revocation_url: Option<String>,
    pub client_id: String,
    pub connection_generation: String,
}

/// Why a connection no longer fits a credential issued under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointChange {
    /// The connection is gone: there is no endpoint the credential may be sent to.
    ConnectionDeleted,
    /// The connection was deleted (and perhaps created again): another generation, or none.
    ConnectionReplaced,
    /// The token endpoint or the client id changed.
    TokenEndpointChanged,
    /// Stored before credentials recorded their endpoints, and never migrated.
    NotPinned,
}

impl EndpointChange {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            EndpointChange::ConnectionDeleted => "connection_deleted",
            EndpointChange::ConnectionReplaced => "connection_replaced",
            EndpointChange::TokenEndpointChanged => "endpoint_changed",
            EndpointChange::NotPinned => "not_pinned",
        }
    }
}

impl IssuedUnder {
    pub fn of(connection: &Connection) -> Self {
        Self {
            token_url: connection.token_url.clone(),
            revocation_url: connection.revocation_url.clone(),
            client_id: connection.client_id.clone(),
            connection_generation: connection.generation.clone(),
        }
    }

    /// May this credential's refresh token go to `connection`'s token endpoint?
    pub fn token_endpoint_fits(issued: Option<&IssuedUnder>, connection: &Connection) -> Result<(), EndpointChange> {
        let issued = issued.ok_or(EndpointChange::NotPinned)?;
        if issued.connection_generation != connection.generation {
            return Err(EndpointChange::ConnectionReplaced);
        }
        if issued.token_url != connection.token_url || issued.client_id != connection.client_id {
            return Err(EndpointChange::TokenEndpointChanged);
        }
        Ok(())
    }

    /// The revocation endpoint this credential's refresh token may be sent to, if it may be sent at all.
    pub fn revocation_endpoint<'a>(
        issued: Option<&IssuedUnder>,
        connection: &'a Connection,
    ) -> Result<Option<&'a str>, EndpointChange> {
        Self::token_endpoint_fits(issued, connection)?;
        let issued = issued.ok_or(EndpointChange::NotPinned)?;
        match (&issued.revocation_url, &connection.revocation_url) {
            (Some(pinned), Some(now)) if pinned == now => Ok(Some(now)),
            (None, None) => Ok(None),
            _ => Err(EndpointChange::TokenEndpointChanged),
        }
    }
}

/// The user id expression of a connection that names none.
pub const DEFAULT_USER_ID_EXPRESSION: &str = "{connectionId}|{sub}";

/// Longest vault user id: the SDKs refuse longer ones on the credentials endpoint.
pub const MAX_USER_ID_LEN: usize = 64;

/// Why no user id could be made from a login's claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIdRefusal {
    /// A placeholder's claim is missing or not a string or number, or the id is empty or too long.
    DoesNotFit,
    /// The expression uses `{email}` and the provider did not assert `email_verified: true`: anyone
    /// could register that address there and become its owner here.
    UnverifiedEmail,
    /// The id would start with the service-client prefix: user and client ids never meet.
    ReservedPrefix,
}

/// Does the expression name `claim` as a placeholder?
fn uses_claim(expression: &str, claim: &str) -> bool {
    expression.contains(&format!("{{{claim}}}"))
}

/// The vault user id a login makes: the connection's expression over the provider's verified claims.
pub fn user_id_for_login(
    expression: &str,
    connection_id: &str,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, UserIdRefusal> {
    if uses_claim(expression, "email") && claims.get("email_verified") != Some(&serde_json::Value::Bool(true)) {
        return Err(UserIdRefusal::UnverifiedEmail);
    }
    let user_id = user_id_from_claims(expression, connection_id, claims).ok_or(UserIdRefusal::DoesNotFit)?;
    if user_id.starts_with(crate::ids::CLIENT_ID_PREFIX) {
        return Err(UserIdRefusal::ReservedPrefix);
    }
    Ok(user_id)
}

/// Fills `{connectionId}` and `{claim}` placeholders from the id_token claims. `None` when a claim is
/// missing or not a string or number, or the result is empty or too long.
pub fn user_id_from_claims(
    expression: &str,
    connection_id: &str,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Option<String> {
    let mut out = String::new();
    let mut rest = expression;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..].find('}')? + open;
        let name = &rest[open + 1..close];
        match name {
            "connectionId" => out.push_str(connection_id),
            _ => match claims.get(name)? {
                serde_json::Value::String(s) => out.push_str(s),
                serde_json::Value::Number(n) => out.push_str(&n.to_string()),
                _ => return None,
            },
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    (!out.is_empty() && out.len() <= MAX_USER_ID_LEN && !out.chars().any(char::is_control)).then_some(out)
}

/// An expression is placeholders of word characters between plain text.
pub fn is_valid_user_id_expression(expression: &str) -> bool {
    if expression.is_empty() || expression.len() > 128 || !expression.contains('{') {
        return false;
    }
    let mut rest = expression;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| c + open) else {
            return false;
        };
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return false;
        }
        rest = &rest[close + 1..];
    }
    !rest.contains('}')
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("connection_id", &self.connection_id)
            .field("name", &self.name)
            .field("authentication_url", &self.authentication_url)
            .field("token_url", &self.token_url)
            .field("issuer_url", &self.issuer_url)
            .field("revocation_url", &self.revocation_url)
            .field("user_info_url", &self.user_info_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("token_request_encoding", &self.token_request_encoding)
            .field("metadata_fields", &self.metadata_fields)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Connection ids as Authress allows them: `^[a-zA-Z0-9-_.:]+$`, at most 64 characters.
pub fn is_valid_connection_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_fields_are_dotted_words_that_name_no_secret() {
        for ok in ["instance_url", "team.id", "enterprise.id", "a.b.c", "x1_2"] {
            assert!(is_acceptable_metadata_field(ok), "{ok}");
        }
        for refused in [
            "",
            "team.",
            ".id",
            "Team.id",
            "team id",
            "refresh_token",
            "authed_user.access_token",
            "id_token",
            "client_secret",
            "api_key",
            "keys",
            "code",
            "passwords",
            "assertion",
            &"a.".repeat(10),
            &"x".repeat(65),
        ] {
            assert!(!is_acceptable_metadata_field(refused), "{refused}");
        }
    }

    #[test]
    fn debug_hides_the_client_secret() {
        let c = Connection {
            connection_id: "con_a".into(),
            name: "A".into(),
            authentication_url: "https://a/auth".into(),
            token_url: "https://a/token".into(),
            issuer_url: None,
            revocation_url: None,
            user_info_url: None,
            client_id: "client".into(),
            client_secret: SecretString::from("planted-client-secret"),
            default_connection_properties: BTreeMap::new(),
            token_request_encoding: TokenRequestEncoding::Form,
            token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
            dialect: Dialect::Standard,
            client_assertion_kid: None,
            client_assertion_certificate: None,
            metadata_fields: Vec::new(),
            keep_alive_days: None,
            user_id_expression: DEFAULT_USER_ID_EXPRESSION.into(),
            generation: "g1".into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("planted-client-secret"), "{shown}");
        assert!(shown.contains("con_a"));

        // Pins: the same connection fits; each change that would steer the refresh token does not.
        let pinned = IssuedUnder::of(&c);
        assert_eq!(IssuedUnder::token_endpoint_fits(Some(&pinned), &c), Ok(()));
        assert_eq!(
            IssuedUnder::token_endpoint_fits(None, &c),
            Err(EndpointChange::NotPinned)
        );
        let moved = Connection {
            token_url: "https://evil.example/token".into(),
            ..c.clone()
        };
        assert_eq!(
            IssuedUnder::token_endpoint_fits(Some(&pinned), &moved),
            Err(EndpointChange::TokenEndpointChanged)
        );
        let other_client = Connection {
            client_id: "other".into(),
            ..c.clone()
        };
        assert!(IssuedUnder::token_endpoint_fits(Some(&pinned), &other_client).is_err());
        let recreated = Connection {
            generation: "g2".into(),
            ..c.clone()
        };
        assert_eq!(
            IssuedUnder::token_endpoint_fits(Some(&pinned), &recreated),
            Err(EndpointChange::ConnectionReplaced)
        );
        assert_eq!(IssuedUnder::revocation_endpoint(Some(&pinned), &c), Ok(None));
        let revoking = Connection {
            revocation_url: Some("https://evil.example/revoke".into()),
            ..c.clone()
        };
        assert!(IssuedUnder::revocation_endpoint(Some(&pinned), &revoking).is_err());
        let pinned_revoking = IssuedUnder::of(&revoking);
        assert_eq!(
            IssuedUnder::revocation_endpoint(Some(&pinned_revoking), &revoking),
            Ok(Some("https://evil.example/revoke"))
        );
    }

    #[test]
    fn user_ids_are_made_from_claims() {
        let claims = serde_json::json!({"sub": "abc", "email": "a@example.com", "tid": 42, "groups": ["x"]});
        let claims = claims.as_object().unwrap();
        assert_eq!(
            user_id_from_claims(DEFAULT_USER_ID_EXPRESSION, "con_g", claims).as_deref(),
            Some("con_g|abc")
        );
        assert_eq!(
            user_id_from_claims("{email}", "con_g", claims).as_deref(),
            Some("a@example.com")
        );
        assert_eq!(
            user_id_from_claims("t{tid}|{sub}", "c", claims).as_deref(),
            Some("t42|abc")
        );
        assert_eq!(user_id_from_claims("{missing}", "c", claims), None);
        assert_eq!(user_id_from_claims("{groups}", "c", claims), None);
        assert!(is_valid_user_id_expression("{connectionId}|{sub}"));
        for bad in ["", "sub", "{", "{}", "{a b}", "{sub}}", "{sub"] {
            assert!(!is_valid_user_id_expression(bad), "{bad}");
        }
    }

    #[test]
    fn login_user_ids_need_verified_emails_and_stay_out_of_the_client_namespace() {
        let verified = serde_json::json!({"sub": "abc", "email": "a@example.com", "email_verified": true});
        let unverified = serde_json::json!({"sub": "abc", "email": "a@example.com", "email_verified": false});
        let stringly = serde_json::json!({"sub": "abc", "email": "a@example.com", "email_verified": "true"});
        let silent = serde_json::json!({"sub": "abc", "email": "a@example.com"});
        let of = |v: &serde_json::Value| v.as_object().unwrap().clone();
        assert_eq!(
            user_id_for_login("{email}", "c", &of(&verified)).as_deref(),
            Ok("a@example.com")
        );
        for claims in [&unverified, &stringly, &silent] {
            assert_eq!(
                user_id_for_login("mail|{email}", "c", &of(claims)),
                Err(UserIdRefusal::UnverifiedEmail),
                "{claims}"
            );
        }
        // Expressions without {email} do not care about it.
        assert_eq!(user_id_for_login("{sub}", "c", &of(&silent)).as_deref(), Ok("abc"));
        let client_like = serde_json::json!({"sub": "sc_admin"});
        assert_eq!(
            user_id_for_login("{sub}", "c", &of(&client_like)),
            Err(UserIdRefusal::ReservedPrefix)
        );
        assert_eq!(
            user_id_for_login("{connectionId}|{sub}", "sc_x", &of(&verified)),
            Err(UserIdRefusal::ReservedPrefix)
        );
        assert_eq!(
            user_id_for_login("{missing}", "c", &of(&verified)),
            Err(UserIdRefusal::DoesNotFit)
        );
    }

    #[test]
    fn connection_ids_follow_the_authress_pattern() {
        assert!(is_valid_connection_id("con_j1mVQTpzuouNH3vWxJDzYB"));
        assert!(is_valid_connection_id("a.b:c-d_e"));
        assert!(!is_valid_connection_id(""));
        assert!(!is_valid_connection_id("a/b"));
        assert!(!is_valid_connection_id("a|b"));
        assert!(!is_valid_connection_id(&"x".repeat(65)));
    }
}
