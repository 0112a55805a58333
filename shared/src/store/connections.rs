//! The connection item. The client secret is sealed like any token; everything else is plain config.
//! All connections share one partition so they can be listed with a cursor.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::{Item, PageQuery, StoreError, Table, classify, opt_s, s};
use crate::crypto::{CryptoError, Envelope};
use crate::oauth::client_auth::TokenEndpointAuthMethod;
use crate::oauth::dialect::Dialect;
use crate::oauth::{Connection, TokenRequestEncoding};

const PK: &str = "CONNECTIONS";
const ATTR_CLIENT_SECRET: &str = "clientSecret";

fn sk(connection_id: &str) -> String {
    format!("CONNECTION#{connection_id}")
}

/// The connection item as DynamoDB holds it (serde_dynamo, camelCase attributes): the one place its
/// attribute names are spelled. The client secret is the envelope's ciphertext; properties are JSON
/// text.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredConnection {
    pk: String,
    sk: String,
    connection_id: String,
    name: String,
    authentication_url: String,
    token_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issuer_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revocation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_info_url: Option<String>,
    client_id: String,
    #[serde(with = "serde_bytes")]
    client_secret: Vec<u8>,
    default_connection_properties: String,
    supported_content_type: String,
    /// Absent on connections stored before the setting: they sent the secret in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_endpoint_auth_method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_assertion_kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_assertion_certificate: Option<String>,
    /// Absent on connections stored before dialects: standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dialect: Option<String>,
    /// Absent on connections stored before metadata: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    metadata_fields: Vec<String>,
    /// Absent: no keep-alive (and on connections stored before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_alive_days: Option<u32>,
    user_id_expression: String,
    /// Absent on connections stored before generations, until `migrate-security` gives them one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Creates (`must_be_new`) or replaces a connection. A replace lands only on the generation the
/// connection carries (the one that was read): a connection deleted and made again in between is not
/// overwritten with the old one's settings. `Ok(false)`: the condition did not hold.
pub async fn put(
    table: &Table,
    envelope: &Envelope,
    connection: &Connection,
    must_be_new: bool,
) -> Result<bool, ConnectionStoreError> {
    let ctx = table.context(PK, &sk(&connection.connection_id), ATTR_CLIENT_SECRET);
    let sealed_secret = envelope
        .seal_str(&ctx, connection.client_secret.expose_secret())
        .await?;
    let properties = serde_json::to_string(&connection.default_connection_properties)
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
    let item = super::to_item(StoredConnection {
        pk: PK.to_string(),
        sk: sk(&connection.connection_id),
        connection_id: connection.connection_id.clone(),
        name: connection.name.clone(),
        authentication_url: connection.authentication_url.clone(),
        token_url: connection.token_url.clone(),
        issuer_url: connection.issuer_url.clone(),
        revocation_url: connection.revocation_url.clone(),
        user_info_url: connection.user_info_url.clone(),
        client_id: connection.client_id.clone(),
        client_secret: sealed_secret,
        default_connection_properties: properties,
        supported_content_type: connection.token_request_encoding.content_type().to_string(),
        token_endpoint_auth_method: Some(connection.token_endpoint_auth_method.as_str().to_string()),
        client_assertion_kid: connection.client_assertion_kid.clone(),
        client_assertion_certificate: connection.client_assertion_certificate.clone(),
        dialect: Some(connection.dialect.as_str().to_string()),
        metadata_fields: connection.metadata_fields.clone(),
        keep_alive_days: connection.keep_alive_days,
        user_id_expression: connection.user_id_expression.clone(),
        generation: Some(connection.generation.clone()),
    })?;
    let mut req = table.client.put_item().table_name(&table.name).set_item(Some(item));
    req = match (must_be_new, connection.generation.is_empty()) {
        (true, _) => req.condition_expression("attribute_not_exists(pk)"),
        (false, false) => req
            .condition_expression("attribute_exists(pk) AND generation = :generation")
            .expression_attribute_values(":generation", s(&connection.generation)),
        (false, true) => req.condition_expression("attribute_exists(pk) AND attribute_not_exists(generation)"),
    };
    Ok(super::condition_outcome("PutItem", req.send().await)?)
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
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    match out.item {
        Some(item) => Ok(Some(from_item(table, envelope, item).await?)),
        None => Ok(None),
    }
}

/// Gives a connection stored before generations its first one (the security migration).
/// `Ok(false)`: it has one already, or is gone.
pub async fn assign_generation(table: &Table, connection_id: &str, generation: &str) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .update_expression("SET generation = :generation")
        .condition_expression("attribute_exists(pk) AND attribute_not_exists(generation)")
        .expression_attribute_values(":generation", s(generation))
        .send()
        .await;
    super::condition_outcome("UpdateItem", result)
}

/// The connection's generation, without opening its secret (the self-access check needs only that).
pub async fn generation(table: &Table, connection_id: &str) -> Result<Option<String>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .projection_expression("generation")
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    Ok(out.item.map(|item| opt_s(&item, "generation")).transpose()?.flatten())
}

/// `Ok(false)`: there was no such connection.
pub async fn delete(table: &Table, connection_id: &str) -> Result<bool, StoreError> {
    super::delete_existing(table, PK, &sk(connection_id)).await
}

/// One page of connections in id order, and the cursor of the next.
pub async fn list(
    table: &Table,
    envelope: &Envelope,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Connection>, Option<String>), ConnectionStoreError> {
    let page = PageQuery {
        pk: PK,
        sk_prefix: "CONNECTION#",
        limit,
        cursor,
    };
    let (items, next) = super::query_page(table, page).await?;
    let mut connections = Vec::with_capacity(items.len());
    for item in items {
        connections.push(from_item(table, envelope, item).await?);
    }
    Ok((connections, next))
}

async fn from_item(table: &Table, envelope: &Envelope, item: Item) -> Result<Connection, ConnectionStoreError> {
    let stored: StoredConnection = super::parse_item(item)?;
    let ctx = table.context(PK, &stored.sk, ATTR_CLIENT_SECRET);
    let client_secret = envelope.open_str(&ctx, &stored.client_secret).await?;
    let properties: BTreeMap<String, String> = serde_json::from_str(&stored.default_connection_properties)
        .map_err(|e| StoreError::Malformed(format!("defaultConnectionProperties: {e}")))?;
    let encoding = TokenRequestEncoding::from_content_type(&stored.supported_content_type)
        .ok_or_else(|| StoreError::Malformed("supportedContentType".into()))?;
    let token_endpoint_auth_method = match stored.token_endpoint_auth_method.as_deref() {
        None => TokenEndpointAuthMethod::ClientSecretPost,
        Some(method) => TokenEndpointAuthMethod::parse(method)
            .ok_or_else(|| StoreError::Malformed(format!("tokenEndpointAuthMethod {method}")))?,
    };
    let dialect = match stored.dialect.as_deref() {
        None => Dialect::Standard,
        Some(name) => Dialect::parse(name).ok_or_else(|| StoreError::Malformed(format!("dialect {name}")))?,
    };
    Ok(Connection {
        connection_id: stored.connection_id,
        name: stored.name,
        authentication_url: stored.authentication_url,
        token_url: stored.token_url,
        issuer_url: stored.issuer_url,
        revocation_url: stored.revocation_url,
        user_info_url: stored.user_info_url,
        client_id: stored.client_id,
        client_secret,
        default_connection_properties: properties,
        token_request_encoding: encoding,
        token_endpoint_auth_method,
        client_assertion_kid: stored.client_assertion_kid,
        client_assertion_certificate: stored.client_assertion_certificate,
        dialect,
        metadata_fields: stored.metadata_fields,
        keep_alive_days: stored.keep_alive_days,
        user_id_expression: stored.user_id_expression,
        generation: stored.generation.unwrap_or_default(),
    })
}

/// Where the refresh protocol looks a credential's connection up.
pub trait ConnectionDirectory: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> super::credentials::BoxFuture<'a, Result<Option<Connection>, ConnectionStoreError>>;
}

/// The connections in the table, their client secrets opened by the envelope.
pub struct DynamoConnections {
    table: Table,
    envelope: std::sync::Arc<Envelope>,
}

impl DynamoConnections {
    pub fn new(table: Table, envelope: std::sync::Arc<Envelope>) -> Self {
        Self { table, envelope }
    }
}

impl ConnectionDirectory for DynamoConnections {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> super::credentials::BoxFuture<'a, Result<Option<Connection>, ConnectionStoreError>> {
        Box::pin(get(&self.table, &self.envelope, connection_id))
    }
}
