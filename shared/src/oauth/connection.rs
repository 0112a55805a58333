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
    /// How the vault user id is made from the provider's id_token claims at login, e.g.
    /// `{connectionId}|{sub}`. Changing it never re-keys stored credentials.
    pub user_id_expression: String,
}

/// The user id expression of a connection that names none.
pub const DEFAULT_USER_ID_EXPRESSION: &str = "{connectionId}|{sub}";

/// Longest vault user id: the SDKs refuse longer ones on the credentials endpoint.
pub const MAX_USER_ID_LEN: usize = 64;

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
            user_id_expression: DEFAULT_USER_ID_EXPRESSION.into(),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("planted-client-secret"), "{shown}");
        assert!(shown.contains("con_a"));
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
    fn connection_ids_follow_the_authress_pattern() {
        assert!(is_valid_connection_id("con_j1mVQTpzuouNH3vWxJDzYB"));
        assert!(is_valid_connection_id("a.b:c-d_e"));
        assert!(!is_valid_connection_id(""));
        assert!(!is_valid_connection_id("a/b"));
        assert!(!is_valid_connection_id("a|b"));
        assert!(!is_valid_connection_id(&"x".repeat(65)));
    }
}
