//! Ready-made connection settings for the providers people connect (`presets.json`, documented in the
//! README's "Connecting providers"). `POST /v1/connections` with `"preset": "google"` and a client id
//! and secret fills in the endpoints (or the issuer to discover them from), the client authentication,
//! the dialect, the scopes and properties that bring a refresh token, and the user endpoint. Anything
//! the request sets itself wins over the preset.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

use super::connection_body::{ConnectionData, ConnectionInput};
use crate::oauth::connection::{Dialect, TokenEndpointAuthMethod};

/// One provider's settings. URLs may hold `{tenant}` or `{domain}`, named in `parameters`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    /// The provider's OAuth documentation.
    pub docs: String,
    #[serde(default)]
    pub parameters: Vec<String>,
    pub issuer_url: Option<String>,
    pub authentication_url: Option<String>,
    pub token_url: Option<String>,
    pub revocation_url: Option<String>,
    pub oidc_user_endpoint_url: Option<String>,
    pub token_endpoint_auth_method: Option<TokenEndpointAuthMethod>,
    pub dialect: Dialect,
    pub supported_content_type: Option<String>,
    /// For providers whose user endpoint names the user other than by `sub` or `id`.
    pub user_id_expression: Option<String>,
    #[serde(default)]
    pub default_connection_properties: BTreeMap<String, String>,
    /// Fields of the provider's token answers callers need beside the token (`instance_url`).
    #[serde(default)]
    pub metadata_fields: Vec<String>,
    /// Where the provider expires refresh tokens left unused: how often to refresh idle ones.
    pub keep_alive_days: Option<u32>,
    pub notes: String,
}

/// Every preset, by name, read once from the file compiled in.
pub fn all() -> &'static BTreeMap<String, Preset> {
    static PRESETS: OnceLock<BTreeMap<String, Preset>> = OnceLock::new();
    PRESETS.get_or_init(|| serde_json::from_str(include_str!("presets.json")).expect("presets.json is valid"))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PresetError {
    #[error("no preset is called {0:?}")]
    Unknown(String),
    #[error("the {preset} preset needs presetParameters.{parameter}")]
    MissingParameter { preset: String, parameter: String },
    #[error("presetParameters.{0} must be a host name or tenant id (letters, digits, '.', '-')")]
    BadParameter(String),
    #[error("presetParameters.{0} is not a parameter of this preset")]
    UnexpectedParameter(String),
}

/// A tenant id or a host name: nothing that could add a path, a port, a query or another host to a URL.
fn is_safe_parameter(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-')
        && !value.starts_with(['.', '-'])
}

/// `input` with every field it leaves unset taken from its preset (when it names one).
pub fn apply(mut input: ConnectionInput) -> Result<ConnectionInput, PresetError> {
    let Some(name) = input.preset.clone() else {
        return Ok(input);
    };
    let preset = all().get(&name).ok_or_else(|| PresetError::Unknown(name.clone()))?;
    for given in input.preset_parameters.keys() {
        if !preset.parameters.contains(given) {
            return Err(PresetError::UnexpectedParameter(given.clone()));
        }
    }
    let mut values = Vec::new();
    for parameter in &preset.parameters {
        let value = input
            .preset_parameters
            .get(parameter)
            .ok_or_else(|| PresetError::MissingParameter {
                preset: name.clone(),
                parameter: parameter.clone(),
            })?;
        if !is_safe_parameter(value) {
            return Err(PresetError::BadParameter(parameter.clone()));
        }
        values.push((format!("{{{parameter}}}"), value.clone()));
    }
    let fill = |template: &Option<String>| {
        template.as_ref().map(|t| {
            values
                .iter()
                .fold(t.clone(), |url, (placeholder, value)| url.replace(placeholder, value))
        })
    };
    // Endpoints come as a set: explicit endpoints replace the preset's discovery, and the reverse.
    let explicit_endpoints = input.authentication_url.is_some() || input.token_url.is_some();
    if !explicit_endpoints {
        input.authentication_url = fill(&preset.authentication_url);
        input.token_url = fill(&preset.token_url);
        input.issuer_url = input.issuer_url.or_else(|| fill(&preset.issuer_url));
    }
    input.revocation_url = input.revocation_url.or_else(|| fill(&preset.revocation_url));
    input.token_endpoint_auth_method = input.token_endpoint_auth_method.or(preset.token_endpoint_auth_method);
    input.dialect = input.dialect.or(Some(preset.dialect));
    input.metadata_fields = input.metadata_fields.or_else(|| Some(preset.metadata_fields.clone()));
    input.keep_alive_days = input.keep_alive_days.or(preset.keep_alive_days);
    let mut properties = preset.default_connection_properties.clone();
    properties.extend(std::mem::take(&mut input.default_connection_properties));
    input.default_connection_properties = properties;
    let data = input.data.get_or_insert(ConnectionData {
        name: None,
        supported_content_type: None,
        user_id_expression: None,
        oidc_user_endpoint_url: None,
    });
    data.name = data.name.take().or_else(|| Some(preset.name.clone()));
    data.supported_content_type = data
        .supported_content_type
        .take()
        .or_else(|| preset.supported_content_type.clone());
    data.user_id_expression = data
        .user_id_expression
        .take()
        .or_else(|| preset.user_id_expression.clone());
    data.oidc_user_endpoint_url = data
        .oidc_user_endpoint_url
        .take()
        .or_else(|| fill(&preset.oidc_user_endpoint_url));
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> ConnectionInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn every_preset_is_complete_and_its_urls_are_https() {
        let names: Vec<&str> = all().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "atlassian",
                "auth0",
                "github",
                "github-app",
                "gitlab",
                "google",
                "microsoft",
                "okta",
                "salesforce",
                "slack"
            ]
        );
        for (name, preset) in all() {
            assert!(preset.docs.starts_with("https://"), "{name}");
            let has_endpoints = preset.authentication_url.is_some() && preset.token_url.is_some();
            assert!(
                has_endpoints || preset.issuer_url.is_some(),
                "{name}: endpoints or discovery"
            );
            assert!(
                preset.issuer_url.is_some() || preset.oidc_user_endpoint_url.is_some(),
                "{name}: the vault must learn who logged in"
            );
            for url in [
                &preset.issuer_url,
                &preset.authentication_url,
                &preset.token_url,
                &preset.revocation_url,
                &preset.oidc_user_endpoint_url,
            ]
            .into_iter()
            .flatten()
            {
                assert!(url.starts_with("https://"), "{name}: {url}");
                for placeholder in ["{tenant}", "{domain}"] {
                    if url.contains(placeholder) {
                        assert!(
                            preset.parameters.iter().any(|p| format!("{{{p}}}") == placeholder),
                            "{name}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_preset_fills_what_the_request_leaves_unset() {
        let google = apply(input(serde_json::json!({
            "preset": "google", "clientId": "id", "clientSecret": "secret",
            "defaultConnectionProperties": {"scope": "openid email https://www.googleapis.com/auth/drive.file"}
        })))
        .unwrap();
        assert_eq!(google.issuer_url.as_deref(), Some("https://accounts.google.com"));
        assert_eq!(google.authentication_url, None, "discovered");
        let properties = &google.default_connection_properties;
        assert_eq!(properties["access_type"], "offline");
        assert_eq!(properties["prompt"], "consent");
        assert_eq!(
            properties["scope"], "openid email https://www.googleapis.com/auth/drive.file",
            "the request's own scope wins"
        );
        let github = apply(input(
            serde_json::json!({"preset": "github", "clientId": "id", "clientSecret": "s"}),
        ))
        .unwrap();
        assert_eq!(github.dialect, Some(Dialect::Github));
        assert_eq!(
            github.token_endpoint_auth_method,
            Some(TokenEndpointAuthMethod::ClientSecretPost)
        );
        assert_eq!(
            github.data.unwrap().oidc_user_endpoint_url.as_deref(),
            Some("https://api.github.com/user")
        );
        let atlassian = apply(input(serde_json::json!({"preset": "atlassian"}))).unwrap();
        assert_eq!(
            atlassian.data.unwrap().supported_content_type.as_deref(),
            Some("application/json")
        );
    }

    #[test]
    fn explicit_endpoints_replace_the_presets_as_a_set() {
        let local = apply(input(serde_json::json!({
            "preset": "okta", "presetParameters": {"domain": "example.okta.com"},
            "authenticationUrl": "https://local/authorize", "tokenUrl": "https://local/token",
            "dialect": "standard", "tokenEndpointAuthMethod": "client_secret_basic"
        })))
        .unwrap();
        assert_eq!(
            local.issuer_url, None,
            "no discovery of the preset's issuer behind explicit endpoints"
        );
        assert_eq!(local.token_url.as_deref(), Some("https://local/token"));
        assert_eq!(
            local.token_endpoint_auth_method,
            Some(TokenEndpointAuthMethod::ClientSecretBasic)
        );
    }

    #[test]
    fn parameters_fill_urls_and_cannot_steer_them_elsewhere() {
        let okta = apply(input(serde_json::json!({
            "preset": "okta", "presetParameters": {"domain": "example.okta.com"}
        })))
        .unwrap();
        assert_eq!(okta.issuer_url.as_deref(), Some("https://example.okta.com"));
        let microsoft = apply(input(serde_json::json!({
            "preset": "microsoft", "presetParameters": {"tenant": "contoso.onmicrosoft.com"}
        })))
        .unwrap();
        assert_eq!(
            microsoft.issuer_url.as_deref(),
            Some("https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0")
        );
        for hostile in [
            "evil.com/x",
            "evil.com?",
            "a@evil.com",
            "evil.com:444",
            "",
            ".evil",
            "a b",
        ] {
            assert_eq!(
                apply(input(
                    serde_json::json!({"preset": "okta", "presetParameters": {"domain": hostile}})
                ))
                .err(),
                Some(PresetError::BadParameter("domain".into())),
                "{hostile:?}"
            );
        }
        assert_eq!(
            apply(input(serde_json::json!({"preset": "okta"}))).err(),
            Some(PresetError::MissingParameter {
                preset: "okta".into(),
                parameter: "domain".into()
            })
        );
        assert_eq!(
            apply(input(
                serde_json::json!({"preset": "google", "presetParameters": {"tenant": "x"}})
            ))
            .err(),
            Some(PresetError::UnexpectedParameter("tenant".into()))
        );
        assert_eq!(
            apply(input(serde_json::json!({"preset": "myspace"}))).err(),
            Some(PresetError::Unknown("myspace".into()))
        );
    }
}
