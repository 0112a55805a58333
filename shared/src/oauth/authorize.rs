//! The provider authorize URL for a login request.

use std::collections::BTreeMap;

use crate::oauth::Connection;

/// Why no authorize URL was made.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// The requested `connectionProperties` are not acceptable (the caller's mistake); the text names
    /// the problem.
    #[error("{0}")]
    Properties(String),
    /// The stored connection's `authenticationUrl` does not parse.
    #[error("connection {connection_id} has a bad authenticationUrl")]
    AuthenticationUrl {
        connection_id: String,
        #[source]
        source: url::ParseError,
    },
}

/// Parameters the vault sets itself; connection properties may not override them.
const RESERVED: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
];
const MAX_PROPERTIES: usize = 32;
const MAX_PROPERTY_LEN: usize = 1024;

/// What the vault itself puts on the authorize URL for one login request.
pub struct AuthorizeRequest<'a> {
    pub callback_url: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}

/// Request `connectionProperties` merge over the connection's `defaultConnectionProperties`.
pub fn merge_properties(
    defaults: &BTreeMap<String, String>,
    requested: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, AuthorizeError> {
    if requested.len() > MAX_PROPERTIES {
        return Err(AuthorizeError::Properties("too many connectionProperties".into()));
    }
    for (k, v) in requested {
        if RESERVED.contains(&k.as_str()) {
            return Err(AuthorizeError::Properties(format!(
                "connectionProperties may not set {k}: the vault sets it"
            )));
        }
        if k.is_empty() || k.len() > MAX_PROPERTY_LEN || v.len() > MAX_PROPERTY_LEN {
            return Err(AuthorizeError::Properties(
                "a connection property is empty or too long".into(),
            ));
        }
    }
    let mut merged = defaults.clone();
    merged.extend(requested.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.retain(|k, _| !RESERVED.contains(&k.as_str()));
    Ok(merged)
}

pub fn authorize_url(
    connection: &Connection,
    request: &AuthorizeRequest<'_>,
    properties: &BTreeMap<String, String>,
) -> Result<String, AuthorizeError> {
    let mut url =
        url::Url::parse(&connection.authentication_url).map_err(|source| AuthorizeError::AuthenticationUrl {
            connection_id: connection.connection_id.clone(),
            source,
        })?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &connection.client_id)
            .append_pair("redirect_uri", request.callback_url)
            .append_pair("state", request.state)
            .append_pair("nonce", request.nonce)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in properties {
            q.append_pair(k, v);
        }
    }
    Ok(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_properties_override_defaults_but_not_reserved_parameters() {
        let defaults = BTreeMap::from([
            ("scope".to_string(), "openid".to_string()),
            ("prompt".to_string(), "none".to_string()),
        ]);
        let requested = BTreeMap::from([("prompt".to_string(), "consent".to_string())]);
        let merged = merge_properties(&defaults, &requested).unwrap();
        assert_eq!(merged["prompt"], "consent");
        assert_eq!(merged["scope"], "openid");

        let hostile = BTreeMap::from([("redirect_uri".to_string(), "https://evil".to_string())]);
        let err = merge_properties(&defaults, &hostile).unwrap_err();
        assert!(matches!(err, AuthorizeError::Properties(_)), "{err}");
    }
}
