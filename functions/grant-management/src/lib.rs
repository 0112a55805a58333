//! grant-management: connections, service clients and their access keys, roles, access records,
//! permission checks and the audit trail, in the Authress API shapes. Each route first checks the
//! caller's permission on the resource it touches (`Connections/...`, `Clients/...`, `Roles/...`,
//! `Records/...`); every change is audited, refused or not.

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use credvault::access::PolicyEngine;
use credvault::access::{self, AccessRecord, Role};
use credvault::audit::{AuditEvent, AuditQuery, AuditTrail};
use credvault::http::{Json, Page, Path, Query, json_response, no_content, with_fallbacks};
use credvault::identity::service_clients::{self as client_identity, ServiceClient};
use credvault::identity::{Authenticator, Caller};
use credvault::management::access::{self as access_management, AccessAdmin};
use credvault::management::authority::Authority;
use credvault::management::connections::{self, ConnectionAdmin, ConnectionInput};
use credvault::management::service_clients::{self, ClientInput, ServiceClientAdmin};
use credvault::openapi::{
    AccessKeyBody, AccessRecordBody, AnyRefusal, AuditListBody, CallerRefusals, ClientListBody, ConnectionBody,
    ConnectionListBody, ErrorBody, JwksBody, PermissionBody, RecordListBody, RoleListBody,
};
use credvault::store::documents::Kind;
use credvault::{ApiError, Instance};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Access records may list up to 1000 users; their bodies are bigger than the others'.
const MAX_RECORD_BODY: usize = 128 * 1024;

/// What this function's routes use: who is calling and what they may do, the three areas of
/// management, and the audit trail every change is written to.
#[derive(Clone)]
pub struct GrantManagement {
    pub authenticator: Arc<Authenticator>,
    pub policy: Arc<PolicyEngine>,
    pub connections: Arc<ConnectionAdmin>,
    pub access: Arc<AccessAdmin>,
    pub clients: Arc<ServiceClientAdmin>,
    pub audit: Arc<AuditTrail>,
}

impl GrantManagement {
    /// The capabilities this function takes from its instance (in `main`, and in the local gateway).
    pub fn new(instance: &Instance) -> Self {
        Self {
            authenticator: instance.authenticator.clone(),
            policy: instance.policy.clone(),
            connections: Arc::new(instance.connection_admin()),
            access: Arc::new(instance.access_admin()),
            clients: Arc::new(instance.service_client_admin()),
            audit: instance.audit.clone(),
        }
    }

    async fn require(&self, caller: &Caller, resource: &str, action: &str) -> Result<(), ApiError> {
        Ok(self.policy.require(caller, resource, action).await?)
    }

    /// Runs a change and audits it under `resource`, refused or not.
    async fn audited(
        &self,
        action: &str,
        caller: &Caller,
        resource: &str,
        change: impl Future<Output = Result<Response, ApiError>>,
    ) -> Result<Response, ApiError> {
        let result = change.await;
        let outcome = result.as_ref().map(|_| ()).map_err(|e| e.error_code());
        self.audit
            .write(AuditEvent::new(action, Some(caller.subject()), resource, outcome))
            .await;
        result
    }
}

impl FromRef<GrantManagement> for Arc<Authenticator> {
    fn from_ref(app: &GrantManagement) -> Self {
        app.authenticator.clone()
    }
}

/// This function's routes with their OpenAPI description, before state and fallbacks.
pub fn routes() -> OpenApiRouter<GrantManagement> {
    OpenApiRouter::new()
        .routes(routes!(list_connections, create_connection))
        .routes(routes!(get_connection, update_connection, delete_connection))
        .routes(routes!(list_clients, create_client))
        .routes(routes!(get_client, update_client, delete_client))
        .routes(routes!(create_access_key))
        .routes(routes!(delete_access_key))
        .routes(routes!(client_jwks))
        .routes(routes!(list_roles, create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(list_records, create_record))
        .routes(routes!(get_record, update_record, delete_record))
        .routes(routes!(check_permission))
        .routes(routes!(list_audit))
}

/// What the Lambda serves: exactly this function's routes.
pub fn router(app: GrantManagement) -> Router {
    with_fallbacks(serve(app))
}

/// The routes over their state, without fallbacks (the local gateway merges these). No CORS: the
/// management API is for backends, so browsers keep its answers from any other origin's page.
pub fn serve(app: GrantManagement) -> Router {
    let (routes, _) = routes().split_for_parts();
    routes.with_state(app)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct ConnectionPath {
    #[param(pattern = "^[a-zA-Z0-9._:-]{1,64}$")]
    connection_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct ClientPath {
    /// Starts with `sc_`.
    #[param(pattern = "^sc_[a-zA-Z0-9_:@|~-]{1,61}$")]
    client_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct AccessKeyPath {
    #[param(pattern = "^sc_[a-zA-Z0-9_:@|~-]{1,61}$")]
    client_id: String,
    key_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct RolePath {
    #[param(pattern = "^[a-zA-Z0-9._:@|~-]{1,100}$")]
    role_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct RecordPath {
    #[param(pattern = "^[a-zA-Z0-9._:@|~-]{1,100}$")]
    record_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[serde(rename_all = "camelCase")]
struct PermissionPath {
    /// The user (or service client) whose permission is checked.
    #[param(min_length = 1, max_length = 128)]
    user_id: String,
    /// A resource URI, percent-encoded as one segment (`Connections%2Fcon_a`).
    #[param(min_length = 1, max_length = 512)]
    resource_uri: String,
    /// An action, e.g. `connections:credentials:read`.
    #[param(min_length = 1, max_length = 64)]
    permission: String,
}

/// `POST /v1/clients/{clientId}/access-keys`: no body (or no `publicKey`) lets the vault make the key.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessKeyInput {
    /// Base64 DER SubjectPublicKeyInfo of the caller's own Ed25519 key; absent or null: the vault
    /// makes the key.
    #[schema(max_length = 256)]
    public_key: Option<String>,
}

/// Filters of `GET /v1/audit`: by resource, or by connection (and user); and by caller.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
struct AuditFilter {
    /// Events of this resource URI or below it.
    resource: Option<String>,
    /// Events of this connection's credentials (with `userId`, one credential).
    connection_id: Option<String>,
    user_id: Option<String>,
    /// Events of this caller (user or client id).
    #[param(min_length = 1, max_length = 128)]
    caller: Option<String>,
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    #[param(max_length = 2048)]
    cursor: Option<String>,
}

/// The resource a create touches: the collection, or the named item. An id that could never be
/// valid is a 400 before any permission is checked, so the caller learns what is wrong.
fn creation_target(collection: &str, id: Option<&str>, code: &'static str) -> Result<String, ApiError> {
    match id {
        None => Ok(collection.to_string()),
        Some(id) if access::ResourceUri::parse(&format!("{collection}/{id}")).is_some() => {
            Ok(format!("{collection}/{id}"))
        }
        Some(_) => Err(ApiError::bad_request(code, "the id has characters ids may not have")),
    }
}

// Connections.

#[utoipa::path(
    get, path = "/v1/connections", tag = "management", operation_id = "listConnections", security(("bearer" = [])),
    params(Page),
    responses((status = 200, description = "A page of connections.", body = ConnectionListBody), CallerRefusals, AnyRefusal)
)]
async fn list_connections(
    State(app): State<GrantManagement>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    app.require(&caller, "Connections", "connections:read").await?;
    let (limit, cursor) = page.limit_and_cursor()?;
    Ok(json_response(
        200,
        &app.connections.list(limit, cursor.as_deref()).await?,
    ))
}

/// Creates a connection. With only `issuerUrl`, the endpoints come from the issuer's OIDC discovery.
#[utoipa::path(
    post, path = "/v1/connections", tag = "management", operation_id = "createConnection", security(("bearer" = [])),
    request_body = ConnectionInput,
    responses(
        (status = 201, description = "Created.", body = ConnectionBody),
        (status = 400, description = "A field is missing or not acceptable.", body = ErrorBody),
        CallerRefusals,
        (status = 409, description = "`connection_exists`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn create_connection(
    State(app): State<GrantManagement>,
    caller: Caller,
    body: Result<Json<ConnectionInput>, ApiError>,
) -> Result<Response, ApiError> {
    app.audited("connection.create", &caller, "Connections", async {
        let input = body?.0;
        let target = creation_target("Connections", input.connection_id.as_deref(), "invalid_connection_id")?;
        app.require(&caller, &target, "connections:create").await?;
        let created = app.connections.create(Authority::Caller(&caller), input).await?;
        Ok(json_response(201, &connections::present(&created)))
    })
    .await
}

#[utoipa::path(
    get, path = "/v1/connections/{connectionId}", tag = "management", operation_id = "getConnection", security(("bearer" = [])),
    params(ConnectionPath),
    responses(
        (status = 200, description = "The connection, without its client secret.", body = ConnectionBody),
        CallerRefusals,
        (status = 404, description = "`connection_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn get_connection(
    State(app): State<GrantManagement>,
    Path(ConnectionPath { connection_id }): Path<ConnectionPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    app.require(
        &caller,
        &item_resource("Connections", &connection_id)?,
        "connections:read",
    )
    .await?;
    let connection = app.connections.get(&connection_id).await?;
    Ok(json_response(200, &connections::present(&connection)))
}

/// A full replace. Without `clientSecret` the stored secret stays, but only while every endpoint it
/// is sent to (and `clientId`) stays the same.
#[utoipa::path(
    put, path = "/v1/connections/{connectionId}", tag = "management", operation_id = "updateConnection", security(("bearer" = [])),
    params(ConnectionPath),
    request_body = ConnectionInput,
    responses(
        (status = 200, description = "Replaced.", body = ConnectionBody),
        (status = 400, description = "A field is not acceptable, or `client_secret_required`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`connection_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn update_connection(
    State(app): State<GrantManagement>,
    Path(ConnectionPath { connection_id }): Path<ConnectionPath>,
    caller: Caller,
    body: Result<Json<ConnectionInput>, ApiError>,
) -> Result<Response, ApiError> {
    let resource = item_resource("Connections", &connection_id)?;
    app.audited("connection.update", &caller, &resource, async {
        app.require(&caller, &resource, "connections:update").await?;
        let updated = app
            .connections
            .update(Authority::Caller(&caller), &connection_id, body?.0)
            .await?;
        Ok(json_response(200, &connections::present(&updated)))
    })
    .await
}

#[utoipa::path(
    delete, path = "/v1/connections/{connectionId}", tag = "management", operation_id = "deleteConnection", security(("bearer" = [])),
    params(ConnectionPath),
    responses(
        (status = 204, description = "Deleted; its credentials need a new login."),
        CallerRefusals,
        (status = 404, description = "`connection_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn delete_connection(
    State(app): State<GrantManagement>,
    Path(ConnectionPath { connection_id }): Path<ConnectionPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let resource = item_resource("Connections", &connection_id)?;
    app.audited("connection.delete", &caller, &resource, async {
        app.require(&caller, &resource, "connections:delete").await?;
        app.connections.delete(&connection_id).await?;
        Ok(no_content())
    })
    .await
}

// Service clients.

#[utoipa::path(
    get, path = "/v1/clients", tag = "management", operation_id = "listClients", security(("bearer" = [])),
    params(Page),
    responses((status = 200, description = "A page of service clients.", body = ClientListBody), CallerRefusals, AnyRefusal)
)]
async fn list_clients(
    State(app): State<GrantManagement>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    app.require(&caller, "Clients", "clients:read").await?;
    let (limit, cursor) = page.limit_and_cursor()?;
    Ok(json_response(
        200,
        &app.access.list(Kind::Client, limit, cursor.as_deref()).await?,
    ))
}

#[utoipa::path(
    post, path = "/v1/clients", tag = "management", operation_id = "createClient", security(("bearer" = [])),
    request_body = ClientInput,
    responses(
        (status = 201, description = "Created, without keys: add one at `/v1/clients/{clientId}/access-keys`.", body = ServiceClient),
        (status = 400, description = "A field is missing or not acceptable.", body = ErrorBody),
        CallerRefusals,
        (status = 409, description = "`client_exists`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn create_client(
    State(app): State<GrantManagement>,
    caller: Caller,
    body: Result<Json<ClientInput>, ApiError>,
) -> Result<Response, ApiError> {
    app.audited("client.create", &caller, "Clients", async {
        let input = body?.0;
        let target = creation_target("Clients", input.client_id.as_deref(), "invalid_client_id")?;
        app.require(&caller, &target, "clients:create").await?;
        let client = app.clients.create_client(Authority::Caller(&caller), input).await?;
        Ok(json_response(201, &service_clients::present(&client)))
    })
    .await
}

#[utoipa::path(
    get, path = "/v1/clients/{clientId}", tag = "management", operation_id = "getClient", security(("bearer" = [])),
    params(ClientPath),
    responses(
        (status = 200, description = "The client and its public keys.", body = ServiceClient),
        CallerRefusals,
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn get_client(
    State(app): State<GrantManagement>,
    Path(ClientPath { client_id }): Path<ClientPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    app.require(&caller, &item_resource("Clients", &client_id)?, "clients:read")
        .await?;
    let client = app.clients.get(&client_id).await?.ok_or_else(client_not_found)?;
    Ok(json_response(200, &service_clients::present(&client)))
}

#[utoipa::path(
    put, path = "/v1/clients/{clientId}", tag = "management", operation_id = "updateClient", security(("bearer" = [])),
    params(ClientPath),
    request_body = ClientInput,
    responses(
        (status = 200, description = "Updated; its keys stay.", body = ServiceClient),
        (status = 400, description = "A field is missing or not acceptable.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn update_client(
    State(app): State<GrantManagement>,
    Path(ClientPath { client_id }): Path<ClientPath>,
    caller: Caller,
    body: Result<Json<ClientInput>, ApiError>,
) -> Result<Response, ApiError> {
    let resource = item_resource("Clients", &client_id)?;
    app.audited("client.update", &caller, &resource, async {
        app.require(&caller, &resource, "clients:update").await?;
        let client = app.clients.update_client(&client_id, body?.0).await?;
        Ok(json_response(200, &service_clients::present(&client)))
    })
    .await
}

#[utoipa::path(
    delete, path = "/v1/clients/{clientId}", tag = "management", operation_id = "deleteClient", security(("bearer" = [])),
    params(ClientPath),
    responses(
        (status = 204, description = "Deleted; its keys stop working at once."),
        CallerRefusals,
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn delete_client(
    State(app): State<GrantManagement>,
    Path(ClientPath { client_id }): Path<ClientPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let resource = item_resource("Clients", &client_id)?;
    app.audited("client.delete", &caller, &resource, async {
        app.require(&caller, &resource, "clients:delete").await?;
        app.clients
            .delete_client(Authority::Caller(&caller), &client_id)
            .await?;
        Ok(no_content())
    })
    .await
}

/// Adds an access key: made by the vault (its private half is returned once, in the Authress
/// access-key format), or the caller's own public key. At most 5 per client.
#[utoipa::path(
    post, path = "/v1/clients/{clientId}/access-keys", tag = "management", operation_id = "createAccessKey", security(("bearer" = [])),
    params(ClientPath),
    request_body = Option<AccessKeyInput>,
    responses(
        (status = 201, description = "The new key.", body = AccessKeyBody),
        (status = 400, description = "`invalid_public_key`, `too_many_keys`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn create_access_key(
    State(app): State<GrantManagement>,
    Path(ClientPath { client_id }): Path<ClientPath>,
    caller: Caller,
    body: Result<Option<Json<AccessKeyInput>>, ApiError>,
) -> Result<Response, ApiError> {
    let resource = item_resource("Clients", &client_id)?;
    app.audited("client.key.create", &caller, &format!("{resource}/AccessKeys"), async {
        app.require(&caller, &resource, "clients:update").await?;
        let public_key = body?.and_then(|Json(input)| input.public_key);
        let created = app
            .clients
            .add_key(Authority::Caller(&caller), &client_id, public_key)
            .await?;
        let mut body = json!({"keyId": created.key.key_id, "clientId": client_id, "publicKey": created.key.public_key,
            "generationDate": created.key.generation_date});
        if let Some(access_key) = &created.access_key {
            body["accessKey"] = json!(access_key.expose_secret());
        }
        Ok(json_response(201, &body))
    })
    .await
}

#[utoipa::path(
    delete, path = "/v1/clients/{clientId}/access-keys/{keyId}", tag = "management", operation_id = "deleteAccessKey",
    security(("bearer" = [])),
    params(AccessKeyPath),
    responses(
        (status = 204, description = "Deleted; tokens it signed stop working at once."),
        CallerRefusals,
        (status = 404, description = "`client_not_found`, `access_key_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn delete_access_key(
    State(app): State<GrantManagement>,
    Path(AccessKeyPath { client_id, key_id }): Path<AccessKeyPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let resource = item_resource("Clients", &client_id)?;
    app.audited(
        "client.key.delete",
        &caller,
        &format!("{resource}/AccessKeys/{key_id}"),
        async {
            app.require(&caller, &resource, "clients:update").await?;
            app.clients
                .delete_key(Authority::Caller(&caller), &client_id, &key_id)
                .await?;
            Ok(no_content())
        },
    )
    .await
}

/// The client's public keys, for verifiers of its tokens. Public, like every JWKS.
#[utoipa::path(
    get, path = "/v1/clients/{clientId}/.well-known/openid-configuration/jwks", tag = "management", operation_id = "clientJwks",
    params(ClientPath),
    responses(
        (status = 200, description = "The client's keys as a JWK Set.", body = JwksBody),
        (status = 404, description = "`client_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn client_jwks(
    State(app): State<GrantManagement>,
    Path(ClientPath { client_id }): Path<ClientPath>,
) -> Result<Response, ApiError> {
    let client = app.clients.get(&client_id).await?.ok_or_else(client_not_found)?;
    Ok(json_response(200, &client_identity::client_jwks(&client)))
}

fn client_not_found() -> ApiError {
    ApiError::not_found("client_not_found", "no such service client")
}

// Roles.

#[utoipa::path(
    get, path = "/v1/roles", tag = "management", operation_id = "listRoles", security(("bearer" = [])),
    params(Page),
    responses((status = 200, description = "A page of roles.", body = RoleListBody), CallerRefusals, AnyRefusal)
)]
async fn list_roles(
    State(app): State<GrantManagement>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    app.require(&caller, "Roles", "roles:read").await?;
    let (limit, cursor) = page.limit_and_cursor()?;
    Ok(json_response(
        200,
        &app.access.list(Kind::Role, limit, cursor.as_deref()).await?,
    ))
}

/// Creates a role; the caller must be able to grant each permission it gives (delegation).
#[utoipa::path(
    post, path = "/v1/roles", tag = "management", operation_id = "createRole", security(("bearer" = [])),
    request_body = Role,
    responses(
        (status = 201, description = "Created.", body = Role),
        (status = 400, description = "A field is missing or not acceptable.", body = ErrorBody),
        CallerRefusals,
        (status = 409, description = "`role_exists`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn create_role(
    State(app): State<GrantManagement>,
    caller: Caller,
    body: Result<Json<Role>, ApiError>,
) -> Result<Response, ApiError> {
    app.audited("role.create", &caller, "Roles", async {
        let role = body?.0;
        let named = Some(role.role_id.as_str()).filter(|r| !r.is_empty());
        let target = creation_target("Roles", named, "invalid_role_id")?;
        app.require(&caller, &target, "roles:create").await?;
        let doc = app.access.create_role(Authority::Caller(&caller), role).await?;
        Ok(json_response(201, &access_management::present(Kind::Role, &doc)))
    })
    .await
}

#[utoipa::path(
    get, path = "/v1/roles/{roleId}", tag = "management", operation_id = "getRole", security(("bearer" = [])),
    params(RolePath),
    responses(
        (status = 200, description = "The role.", body = Role),
        CallerRefusals,
        (status = 404, description = "`role_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn get_role(
    State(app): State<GrantManagement>,
    Path(RolePath { role_id }): Path<RolePath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    app.require(&caller, &item_resource("Roles", &role_id)?, "roles:read")
        .await?;
    let doc = app.access.get(Kind::Role, &role_id).await?;
    Ok(json_response(200, &access_management::present(Kind::Role, &doc)))
}

#[utoipa::path(
    put, path = "/v1/roles/{roleId}", tag = "management", operation_id = "updateRole", security(("bearer" = [])),
    params(RolePath),
    request_body = Role,
    responses(
        (status = 200, description = "Replaced.", body = Role),
        (status = 400, description = "A field is missing or not acceptable.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`role_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn update_role(
    State(app): State<GrantManagement>,
    Path(RolePath { role_id }): Path<RolePath>,
    caller: Caller,
    body: Result<Json<Role>, ApiError>,
) -> Result<Response, ApiError> {
    let resource = item_resource("Roles", &role_id)?;
    app.audited("role.update", &caller, &resource, async {
        app.require(&caller, &resource, "roles:update").await?;
        let doc = app
            .access
            .update_role(Authority::Caller(&caller), &role_id, body?.0)
            .await?;
        Ok(json_response(200, &access_management::present(Kind::Role, &doc)))
    })
    .await
}

#[utoipa::path(
    delete, path = "/v1/roles/{roleId}", tag = "management", operation_id = "deleteRole", security(("bearer" = [])),
    params(RolePath),
    responses(
        (status = 204, description = "Deleted."),
        CallerRefusals,
        (status = 404, description = "`role_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn delete_role(
    State(app): State<GrantManagement>,
    Path(RolePath { role_id }): Path<RolePath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let resource = item_resource("Roles", &role_id)?;
    app.audited("role.delete", &caller, &resource, async {
        app.require(&caller, &resource, "roles:delete").await?;
        app.access.delete_role(&role_id).await?;
        Ok(no_content())
    })
    .await
}

// Access records.

#[utoipa::path(
    get, path = "/v1/records", tag = "management", operation_id = "listRecords", security(("bearer" = [])),
    params(Page),
    responses((status = 200, description = "A page of access records.", body = RecordListBody), CallerRefusals, AnyRefusal)
)]
async fn list_records(
    State(app): State<GrantManagement>,
    caller: Caller,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    app.require(&caller, "Records", "records:read").await?;
    let (limit, cursor) = page.limit_and_cursor()?;
    Ok(json_response(
        200,
        &app.access.list(Kind::Record, limit, cursor.as_deref()).await?,
    ))
}

/// Creates an access record; the caller must be able to grant everything it gives (delegation).
#[utoipa::path(
    post, path = "/v1/records", tag = "management", operation_id = "createRecord", security(("bearer" = [])),
    request_body = AccessRecord,
    responses(
        (status = 201, description = "Created.", body = AccessRecordBody,
            headers(("Last-Modified" = String, description = "When the record last changed (HTTP date)"))),
        (status = 400, description = "A field is missing or not acceptable, or `unknown_role`.", body = ErrorBody),
        CallerRefusals,
        (status = 409, description = "`record_exists`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn create_record(
    State(app): State<GrantManagement>,
    caller: Caller,
    body: Result<Json<AccessRecord, MAX_RECORD_BODY>, ApiError>,
) -> Result<Response, ApiError> {
    app.audited("record.create", &caller, "Records", async {
        let record = body?.0;
        let named = Some(record.record_id.as_str()).filter(|r| !r.is_empty());
        let target = creation_target("Records", named, "invalid_record_id")?;
        app.require(&caller, &target, "records:create").await?;
        let doc = app.access.create_record(Authority::Caller(&caller), record).await?;
        Ok(record_response(201, &doc))
    })
    .await
}

#[utoipa::path(
    get, path = "/v1/records/{recordId}", tag = "management", operation_id = "getRecord", security(("bearer" = [])),
    params(RecordPath),
    responses(
        (status = 200, description = "The record.", body = AccessRecordBody,
            headers(("Last-Modified" = String, description = "When the record last changed (HTTP date)"))),
        CallerRefusals,
        (status = 404, description = "`record_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn get_record(
    State(app): State<GrantManagement>,
    Path(RecordPath { record_id }): Path<RecordPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    app.require(&caller, &item_resource("Records", &record_id)?, "records:read")
        .await?;
    let doc = app.access.get(Kind::Record, &record_id).await?;
    Ok(record_response(200, &doc))
}

/// Replaces a record. With `If-Unmodified-Since` (its `lastUpdated`), a concurrent change is a 412
/// instead of being lost.
#[utoipa::path(
    put, path = "/v1/records/{recordId}", tag = "management", operation_id = "updateRecord", security(("bearer" = [])),
    params(
        RecordPath,
        ("If-Unmodified-Since" = Option<String>, Header, description = "The record's `lastUpdated` (ISO 8601) or an HTTP date"),
    ),
    request_body = AccessRecord,
    responses(
        (status = 202, description = "Replaced.", body = AccessRecordBody,
            headers(("Last-Modified" = String, description = "When the record last changed (HTTP date)"))),
        (status = 400, description = "A field is missing or not acceptable, or `unknown_role`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`record_not_found`", body = ErrorBody),
        (status = 412, description = "`precondition_failed`: changed since `If-Unmodified-Since`.", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn update_record(
    State(app): State<GrantManagement>,
    Path(RecordPath { record_id }): Path<RecordPath>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Json<AccessRecord, MAX_RECORD_BODY>, ApiError>,
) -> Result<Response, ApiError> {
    let resource = item_resource("Records", &record_id)?;
    app.audited("record.update", &caller, &resource, async {
        app.require(&caller, &resource, "records:update").await?;
        let record = body?.0;
        let unmodified_since = headers.get(header::IF_UNMODIFIED_SINCE).and_then(|v| v.to_str().ok());
        let doc = app
            .access
            .update_record(Authority::Caller(&caller), &record_id, record, unmodified_since)
            .await?;
        Ok(record_response(202, &doc))
    })
    .await
}

#[utoipa::path(
    delete, path = "/v1/records/{recordId}", tag = "management", operation_id = "deleteRecord", security(("bearer" = [])),
    params(RecordPath),
    responses(
        (status = 204, description = "Deleted: it gives nothing from now on."),
        CallerRefusals,
        (status = 404, description = "`record_not_found`", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn delete_record(
    State(app): State<GrantManagement>,
    Path(RecordPath { record_id }): Path<RecordPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let resource = item_resource("Records", &record_id)?;
    app.audited("record.delete", &caller, &resource, async {
        app.require(&caller, &resource, "records:delete").await?;
        app.access.delete_record(&record_id).await?;
        Ok(no_content())
    })
    .await
}

fn record_response(status: u16, doc: &credvault::store::documents::Document) -> Response {
    let mut resp = json_response(status, &access_management::present(Kind::Record, doc));
    if let Ok(value) = HeaderValue::from_str(&credvault::clock::http_date(doc.updated_at_ms / 1000)) {
        resp.headers_mut().insert(header::LAST_MODIFIED, value);
    }
    resp
}

// Checks and the audit trail.

/// Whether a user has a permission on a resource: 200 allowed, 404 denied (the Authress answer).
/// Asking about another user needs `users:permissions:read` on `Users/{userId}`.
#[utoipa::path(
    get, path = "/v1/users/{userId}/resources/{resourceUri}/permissions/{permission}", tag = "management",
    operation_id = "checkPermission", security(("bearer" = [])),
    params(PermissionPath),
    responses(
        (status = 200, description = "Allowed.", body = PermissionBody),
        (status = 400, description = "`invalid_resource_uri`, `invalid_action`, `invalid_path`.", body = ErrorBody),
        CallerRefusals,
        (status = 404, description = "`permission_denied`: the user does not have the permission.", body = ErrorBody),
        AnyRefusal,
    )
)]
async fn check_permission(
    State(app): State<GrantManagement>,
    Path(PermissionPath {
        user_id,
        resource_uri,
        permission,
    }): Path<PermissionPath>,
    caller: Caller,
) -> Result<Response, ApiError> {
    if caller.subject() != user_id {
        app.require(&caller, &format!("Users/{user_id}"), "users:permissions:read")
            .await?;
    }
    if access::ResourceUri::parse(&resource_uri).is_none() {
        return Err(ApiError::bad_request(
            "invalid_resource_uri",
            "resourceUri is not a valid resource URI",
        ));
    }
    if access::Action::parse(&permission).is_none() {
        return Err(ApiError::bad_request(
            "invalid_action",
            "permission is not a valid action",
        ));
    }
    if app.policy.is_allowed(&user_id, &resource_uri, &permission).await? {
        Ok(json_response(
            200,
            &json!({"userId": user_id, "resourceUri": resource_uri, "permission": permission}),
        ))
    } else {
        Err(ApiError::not_found(
            "permission_denied",
            "the user does not have this permission on this resource",
        ))
    }
}

/// The audit trail, newest first: credential reads, refreshes, refusals and every change.
#[utoipa::path(
    get, path = "/v1/audit", tag = "management", operation_id = "listAudit", security(("bearer" = [])),
    params(AuditFilter),
    responses(
        (status = 200, description = "A page of audit events.", body = AuditListBody),
        (status = 400, description = "`invalid_filter`, `invalid_resource_uri`, `invalid_caller`, `invalid_limit`, `invalid_cursor`.", body = ErrorBody),
        CallerRefusals,
        AnyRefusal,
    )
)]
async fn list_audit(
    State(app): State<GrantManagement>,
    caller: Caller,
    Query(filter): Query<AuditFilter>,
) -> Result<Response, ApiError> {
    app.require(&caller, "Audit", "audit:read").await?;
    let (limit, cursor) = Page {
        limit: filter.limit,
        cursor: filter.cursor,
    }
    .limit_and_cursor()?;
    let resource = match (filter.resource, filter.connection_id, filter.user_id) {
        (Some(resource), None, None) => Some(resource),
        (None, Some(connection), Some(user)) => Some(access::credentials_resource(&connection, &user)),
        (None, Some(connection), None) => Some(format!("Connections/{connection}")),
        (None, None, None) => None,
        _ => {
            return Err(ApiError::bad_request(
                "invalid_filter",
                "filter by resource, or by connectionId (and userId)",
            ));
        }
    };
    if resource
        .as_deref()
        .is_some_and(|r| access::ResourceUri::parse(r).is_none())
    {
        return Err(ApiError::bad_request(
            "invalid_resource_uri",
            "the filter is not a valid resource URI",
        ));
    }
    if filter.caller.as_deref().is_some_and(|c| c.is_empty() || c.len() > 128) {
        return Err(ApiError::bad_request("invalid_caller", "caller is 1 to 128 characters"));
    }
    let query = AuditQuery {
        caller: filter.caller,
        resource,
        limit,
        cursor,
    };
    Ok(json_response(200, &app.audit.list(query).await?))
}

/// The resource a management route acts on, `{collection}/{id}`, for an id that is one resource
/// segment. Path ids arrive percent-decoded, so `con_a%2FUsers%2Fx` would otherwise name, in the
/// permission check and the audit trail, a resource below another one; such an id names no item.
fn item_resource(collection: &str, id: &str) -> Result<String, ApiError> {
    let resource = format!("{collection}/{id}");
    if !id.contains('/') && access::ResourceUri::parse(&resource).is_some() {
        return Ok(resource);
    }
    let code = match collection {
        "Connections" => "connection_not_found",
        "Clients" => "client_not_found",
        "Roles" => "role_not_found",
        _ => "record_not_found",
    };
    Err(ApiError::not_found(code, format!("no such item in {collection}")))
}
