//! The body of `POST /v1/connections` and `PUT /v1/connections/{connectionId}`, as it arrives: the
//! Authress `Connection` shape plus the vault's own fields. Presets (presets.rs) fill it in, and
//! connections.rs checks and stores it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::oauth::client_auth::TokenEndpointAuthMethod;
use crate::oauth::dialect::Dialect;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionData {
    pub name: Option<String>,
    pub supported_content_type: Option<String>,
    pub user_id_expression: Option<String>,
    pub oidc_user_endpoint_url: Option<String>,
}

/// `POST /v1/connections` and `PUT /v1/connections/{connectionId}` bodies.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInput {
    pub connection_id: Option<String>,
    /// A ready-made provider (presets.json: `google`, `microsoft`, `github`, `github-app`, `slack`,
    /// `atlassian`, `salesforce`, `okta`, `auth0`, `gitlab`); what the body sets itself wins.
    pub preset: Option<String>,
    /// The preset's parameters: `tenant` (microsoft) or `domain` (okta, auth0).
    #[serde(default)]
    pub preset_parameters: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub authentication_url: Option<String>,
    pub token_url: Option<String>,
    pub issuer_url: Option<String>,
    pub revocation_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// `client_secret_basic`, `client_secret_post`, or `private_key_jwt` (then `clientSecret` is the
    /// client's PKCS#8 private key, PEM: EC P-256 or RSA). Unset: what discovery lists (Basic first),
    /// else `client_secret_post`.
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    /// With `private_key_jwt`: the `kid` its assertions name, when the provider holds several keys.
    pub client_assertion_kid: Option<String>,
    /// With `private_key_jwt`: the X.509 certificate (PEM) of that key, for providers that name keys by
    /// certificate thumbprint (Microsoft Entra certificate credentials). Public; must hold the key.
    pub client_assertion_certificate: Option<String>,
    /// How the token endpoint's answers are read: `standard` (RFC 6749), `github`, `slack`, `atlassian`.
    pub dialect: Option<Dialect>,
    /// Fields of the token answers to return beside the access token, as `metadata` of the credential
    /// (`instance_url`, `team.id`): at most 8 dotted paths of lowercase words, none naming a secret.
    pub metadata_fields: Option<Vec<String>>,
    /// Refresh credentials nobody fetched for this many days (1 to 365), so providers that expire
    /// idle refresh tokens (Microsoft: 90 days) do not; `0` turns a preset's default off.
    pub keep_alive_days: Option<u32>,
    #[serde(default)]
    pub default_connection_properties: BTreeMap<String, String>,
    pub data: Option<ConnectionData>,
}
