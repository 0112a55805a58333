//! The connection item. The client secret is sealed like any token; everything else is plain config.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::{StoreError, Table, b, classify, get_b, get_s, opt_s, s};
use crate::crypto::{CryptoError, Envelope};
use crate::oauth::{Connection, TokenRequestEncoding};

const SK: &str = "CONNECTION";
const ATTR_CLIENT_SECRET: &str = "clientSecret";

pub fn pk(connection_id: &str) -> String {
    format!("CONNECTION#{connection_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Creates or replaces a connection.
pub async fn put(table: &Table, envelope: &Envelope, connection: &Connection) -> Result<(), ConnectionStoreError> {
    let ctx = table.context(&pk(&connection.connection_id), SK, ATTR_CLIENT_SECRET);
    let sealed_secret = envelope
        .seal_str(&ctx, connection.client_secret.expose_secret())
        .await?;
    let properties = serde_json::to_string(&connection.default_connection_properties)
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
    let mut req = table
        .client
        .put_item()
        .table_name(&table.name)
        .item("pk", s(pk(&connection.connection_id)))
        .item("sk", s(SK))
        .item("connectionId", s(&connection.connection_id))
        .item("name", s(&connection.name))
        .item("authenticationUrl", s(&connection.authentication_url))
        .item("tokenUrl", s(&connection.token_url))
        .item("clientId", s(&connection.client_id))
        .item(ATTR_CLIENT_SECRET, b(sealed_secret))
        .item("defaultConnectionProperties", s(properties))
        .item(
            "supportedContentType",
            s(connection.token_request_encoding.content_type()),
        );
    if let Some(issuer) = &connection.issuer_url {
        req = req.item("issuerUrl", s(issuer));
    }
    if let Some(revocation) = &connection.revocation_url {
        req = req.item("revocationUrl", s(revocation));
    }
    req.send().await.map_err(|e| classify("PutItem", e))?;
    Ok(())
}

pub async fn get(
    table: &Table,
    envelope: &Envelope,
    connection_id: &str,
) -> Result<Option<Connection>, ConnectionStoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(pk(connection_id)))
        .key("sk", s(SK))
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    let Some(item) = out.item else {
        return Ok(None);
    };
    let ctx = table.context(&pk(connection_id), SK, ATTR_CLIENT_SECRET);
    let client_secret = envelope.open_str(&ctx, &get_b(&item, ATTR_CLIENT_SECRET)?).await?;
    let properties: BTreeMap<String, String> = serde_json::from_str(&get_s(&item, "defaultConnectionProperties")?)
        .map_err(|e| StoreError::Malformed(format!("defaultConnectionProperties: {e}")))?;
    let encoding = TokenRequestEncoding::from_content_type(&get_s(&item, "supportedContentType")?)
        .ok_or_else(|| StoreError::Malformed("supportedContentType".into()))?;
    Ok(Some(Connection {
        connection_id: get_s(&item, "connectionId")?,
        name: get_s(&item, "name")?,
        authentication_url: get_s(&item, "authenticationUrl")?,
        token_url: get_s(&item, "tokenUrl")?,
        issuer_url: opt_s(&item, "issuerUrl")?,
        revocation_url: opt_s(&item, "revocationUrl")?,
        client_id: get_s(&item, "clientId")?,
        client_secret,
        default_connection_properties: properties,
        token_request_encoding: encoding,
    }))
}
