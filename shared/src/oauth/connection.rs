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
    pub client_id: String,
    pub client_secret: SecretString,
    pub default_connection_properties: BTreeMap<String, String>,
    pub token_request_encoding: TokenRequestEncoding,
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
            client_id: "client".into(),
            client_secret: SecretString::from("planted-client-secret"),
            default_connection_properties: BTreeMap::new(),
            token_request_encoding: TokenRequestEncoding::Form,
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("planted-client-secret"), "{shown}");
        assert!(shown.contains("con_a"));
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
