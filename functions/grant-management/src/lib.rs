//! grant-management: connections, service clients and their access keys, roles, access records, and
//! permission checks, in the Authress API shapes. Each route first checks the caller's permission on
//! the resource it touches (`Connections/...`, `Clients/...`, `Roles/...`, `Records/...`).

use std::sync::Arc;

use credvault::access::admin as access_admin;
use credvault::access::{self, AccessRecord, Role};
use credvault::audit::{self, AuditEvent, AuditQuery};
use credvault::http::{
    Handler, header_text, json_body, json_body_up_to, json_response, page_params, query_params, respond, route,
    single_query_param,
};
use credvault::identity::service_clients::{self, ClientInput};
use credvault::identity::{Caller, authenticate};
use credvault::oauth::connections::{self, ConnectionInput};
use credvault::routes::{Function, Matched, RouteId};
use credvault::store::documents::Kind;
use credvault::{ApiError, Services};
use lambda_http::http::{HeaderValue, header};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

/// Access records may list up to 1000 users; their bodies are bigger than the others'.
const MAX_RECORD_BODY: usize = 128 * 1024;

pub struct GrantManagement {
    services: Arc<Services>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessKeyInput {
    public_key: Option<String>,
}

impl GrantManagement {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    async fn require(&self, caller: &Caller, resource: &str, action: &str) -> Result<(), ApiError> {
        access::require(&self.services.policies, &self.services.table, caller, resource, action).await
    }

    async fn dispatch(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let m = route(&req)?;
        if m.route.function != Function::GrantManagement {
            return Err(ApiError::not_found("route_not_found", "no such route"));
        }
        if m.route.id == RouteId::ClientJwks {
            // Public, like every JWKS: verifiers fetch it without credentials.
            let client = service_clients::load_client(&self.services, m.param("clientId"))
                .await?
                .ok_or_else(|| ApiError::not_found("client_not_found", "no such service client"))?;
            return Ok(json_response(200, &service_clients::client_jwks(&client)));
        }
        let caller = authenticate(&self.services, &req).await?;
        let result = self.dispatch_for(&req, &m, &caller).await;
        if let Some(action) = mutation_action(m.route.id) {
            let event = AuditEvent::new(
                action,
                Some(caller.subject()),
                &audited_resource(&m),
                result.as_ref().map(|_| ()),
            );
            audit::record(&self.services, event).await;
        }
        result
    }

    async fn dispatch_for(&self, req: &Request, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        match m.route.id {
            RouteId::ListConnections
            | RouteId::CreateConnection
            | RouteId::GetConnection
            | RouteId::UpdateConnection
            | RouteId::DeleteConnection => self.connections(req, m, caller).await,
            RouteId::ListClients
            | RouteId::CreateClient
            | RouteId::GetClient
            | RouteId::UpdateClient
            | RouteId::DeleteClient
            | RouteId::CreateAccessKey
            | RouteId::DeleteAccessKey => self.clients(req, m, caller).await,
            RouteId::ListRoles | RouteId::CreateRole | RouteId::GetRole | RouteId::UpdateRole | RouteId::DeleteRole => {
                self.roles(req, m, caller).await
            }
            RouteId::ListRecords
            | RouteId::CreateRecord
            | RouteId::GetRecord
            | RouteId::UpdateRecord
            | RouteId::DeleteRecord => self.records(req, m, caller).await,
            RouteId::CheckPermission => self.check_permission(m, caller).await,
            RouteId::ListAudit => self.audit_log(req, caller).await,
            _ => Err(ApiError::not_found("route_not_found", "no such route")),
        }
    }

    async fn connections(&self, req: &Request, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let s = &self.services;
        let id = m.param("connectionId");
        let resource = format!("Connections/{id}");
        match m.route.id {
            RouteId::ListConnections => {
                self.require(caller, "Connections", "connections:read").await?;
                let (limit, cursor) = page_params(req)?;
                Ok(json_response(
                    200,
                    &connections::list(s, limit, cursor.as_deref()).await?,
                ))
            }
            RouteId::CreateConnection => {
                let input: ConnectionInput = json_body(req)?;
                let target = creation_target("Connections", input.connection_id.as_deref(), "invalid_connection_id")?;
                self.require(caller, &target, "connections:create").await?;
                let created = connections::create(s, input).await?;
                Ok(json_response(201, &connections::present(&created)))
            }
            RouteId::GetConnection => {
                self.require(caller, &resource, "connections:read").await?;
                Ok(json_response(
                    200,
                    &connections::present(&connections::get(s, id).await?),
                ))
            }
            RouteId::UpdateConnection => {
                self.require(caller, &resource, "connections:update").await?;
                let updated = connections::update(s, id, json_body(req)?).await?;
                Ok(json_response(200, &connections::present(&updated)))
            }
            _ => {
                self.require(caller, &resource, "connections:delete").await?;
                connections::delete(s, id).await?;
                Ok(empty(204))
            }
        }
    }

    async fn clients(&self, req: &Request, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let s = &self.services;
        let id = m.param("clientId");
        let resource = format!("Clients/{id}");
        match m.route.id {
            RouteId::ListClients => {
                self.require(caller, "Clients", "clients:read").await?;
                let (limit, cursor) = page_params(req)?;
                Ok(json_response(
                    200,
                    &access_admin::list(s, Kind::Client, limit, cursor.as_deref()).await?,
                ))
            }
            RouteId::CreateClient => {
                let input: ClientInput = json_body(req)?;
                let target = creation_target("Clients", input.client_id.as_deref(), "invalid_client_id")?;
                self.require(caller, &target, "clients:create").await?;
                let client = service_clients::create_client(s, input).await?;
                Ok(json_response(201, &service_clients::present(&client)))
            }
            RouteId::GetClient => {
                self.require(caller, &resource, "clients:read").await?;
                let client = service_clients::load_client(s, id)
                    .await?
                    .ok_or_else(client_not_found)?;
                Ok(json_response(200, &service_clients::present(&client)))
            }
            RouteId::UpdateClient => {
                self.require(caller, &resource, "clients:update").await?;
                let client = service_clients::update_client(s, id, json_body(req)?).await?;
                Ok(json_response(200, &service_clients::present(&client)))
            }
            RouteId::DeleteClient => {
                self.require(caller, &resource, "clients:delete").await?;
                access_admin::delete(s, Kind::Client, id).await?;
                Ok(empty(204))
            }
            RouteId::CreateAccessKey => {
                self.require(caller, &resource, "clients:update").await?;
                let input: AccessKeyInput = if credvault::http::body_bytes(req).is_empty() {
                    AccessKeyInput { public_key: None }
                } else {
                    json_body(req)?
                };
                let created = service_clients::add_key(s, id, input.public_key).await?;
                let mut body = json!({"keyId": created.key.key_id, "clientId": id, "publicKey": created.key.public_key,
                    "generationDate": created.key.generation_date});
                if let Some(access_key) = &created.access_key {
                    body["accessKey"] = json!(access_key.expose_secret());
                }
                Ok(json_response(201, &body))
            }
            _ => {
                self.require(caller, &resource, "clients:update").await?;
                service_clients::delete_key(s, id, m.param("keyId")).await?;
                Ok(empty(204))
            }
        }
    }

    async fn roles(&self, req: &Request, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let s = &self.services;
        let id = m.param("roleId");
        let resource = format!("Roles/{id}");
        match m.route.id {
            RouteId::ListRoles => {
                self.require(caller, "Roles", "roles:read").await?;
                let (limit, cursor) = page_params(req)?;
                Ok(json_response(
                    200,
                    &access_admin::list(s, Kind::Role, limit, cursor.as_deref()).await?,
                ))
            }
            RouteId::CreateRole => {
                let role: Role = json_body(req)?;
                let target = creation_target(
                    "Roles",
                    Some(role.role_id.as_str()).filter(|r| !r.is_empty()),
                    "invalid_role_id",
                )?;
                self.require(caller, &target, "roles:create").await?;
                if !role.role_id.is_empty() {
                    access_admin::authorize_role(s, caller, &role.role_id.clone(), &role).await?;
                }
                let doc = access_admin::create_role(s, role).await?;
                Ok(json_response(201, &access_admin::present(Kind::Role, &doc)))
            }
            RouteId::GetRole => {
                self.require(caller, &resource, "roles:read").await?;
                Ok(json_response(
                    200,
                    &access_admin::present(Kind::Role, &access_admin::get(s, Kind::Role, id).await?),
                ))
            }
            RouteId::UpdateRole => {
                self.require(caller, &resource, "roles:update").await?;
                let role: Role = json_body(req)?;
                access_admin::authorize_role(s, caller, id, &role).await?;
                let doc = access_admin::update_role(s, id, role).await?;
                Ok(json_response(200, &access_admin::present(Kind::Role, &doc)))
            }
            _ => {
                self.require(caller, &resource, "roles:delete").await?;
                access_admin::authorize_role_delete(id)?;
                access_admin::delete(s, Kind::Role, id).await?;
                Ok(empty(204))
            }
        }
    }

    async fn records(&self, req: &Request, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let s = &self.services;
        let id = m.param("recordId");
        let resource = format!("Records/{id}");
        let (status, doc) = match m.route.id {
            RouteId::ListRecords => {
                self.require(caller, "Records", "records:read").await?;
                let (limit, cursor) = page_params(req)?;
                return Ok(json_response(
                    200,
                    &access_admin::list(s, Kind::Record, limit, cursor.as_deref()).await?,
                ));
            }
            RouteId::CreateRecord => {
                let record: AccessRecord = json_body_up_to(req, MAX_RECORD_BODY)?;
                let target = creation_target(
                    "Records",
                    Some(record.record_id.as_str()).filter(|r| !r.is_empty()),
                    "invalid_record_id",
                )?;
                self.require(caller, &target, "records:create").await?;
                access_admin::authorize_record(s, caller, &record).await?;
                (201, access_admin::create_record(s, record).await?)
            }
            RouteId::GetRecord => {
                self.require(caller, &resource, "records:read").await?;
                (200, access_admin::get(s, Kind::Record, id).await?)
            }
            RouteId::UpdateRecord => {
                self.require(caller, &resource, "records:update").await?;
                let record: AccessRecord = json_body_up_to(req, MAX_RECORD_BODY)?;
                access_admin::authorize_record(s, caller, &record).await?;
                (
                    202,
                    access_admin::update_record(s, id, record, header_text(req, "if-unmodified-since")).await?,
                )
            }
            _ => {
                self.require(caller, &resource, "records:delete").await?;
                access_admin::delete_record(s, id).await?;
                return Ok(empty(204));
            }
        };
        let mut resp = json_response(status, &access_admin::present(Kind::Record, &doc));
        if let Ok(value) = HeaderValue::from_str(&credvault::clock::http_date(doc.updated_at_ms / 1000)) {
            resp.headers_mut().insert(header::LAST_MODIFIED, value);
        }
        Ok(resp)
    }

    /// `GET /v1/audit?caller=&resource=&limit=&cursor=` (or `connectionId` and `userId` for one credential).
    async fn audit_log(&self, req: &Request, caller: &Caller) -> Result<Response<Body>, ApiError> {
        self.require(caller, "Audit", "audit:read").await?;
        let params = query_params(req);
        let (limit, cursor) = page_params(req)?;
        let resource = match (
            single_query_param(&params, "resource")?,
            single_query_param(&params, "connectionId")?,
            single_query_param(&params, "userId")?,
        ) {
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
        let caller_filter = single_query_param(&params, "caller")?;
        if caller_filter.as_deref().is_some_and(|c| c.is_empty() || c.len() > 128) {
            return Err(ApiError::bad_request("invalid_caller", "caller is 1 to 128 characters"));
        }
        let query = AuditQuery {
            caller: caller_filter,
            resource,
            limit,
            cursor,
        };
        Ok(json_response(200, &audit::list(&self.services, query).await?))
    }

    /// 200 allowed, 404 denied (the Authress answer); 403 when the caller may not ask about that user.
    async fn check_permission(&self, m: &Matched, caller: &Caller) -> Result<Response<Body>, ApiError> {
        let user_id = m.param("userId");
        if caller.subject() != user_id {
            self.require(caller, &format!("Users/{user_id}"), "users:permissions:read")
                .await?;
        }
        let (resource, permission) = (m.param("resourceUri"), m.param("permission"));
        if access::ResourceUri::parse(resource).is_none() {
            return Err(ApiError::bad_request(
                "invalid_resource_uri",
                "resourceUri is not a valid resource URI",
            ));
        }
        if access::Action::parse(permission).is_none() {
            return Err(ApiError::bad_request(
                "invalid_action",
                "permission is not a valid action",
            ));
        }
        if access::is_allowed(
            &self.services.policies,
            &self.services.table,
            user_id,
            resource,
            permission,
        )
        .await?
        {
            Ok(json_response(
                200,
                &json!({"userId": user_id, "resourceUri": resource, "permission": permission}),
            ))
        } else {
            Err(ApiError::not_found(
                "permission_denied",
                "the user does not have this permission on this resource",
            ))
        }
    }
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

/// The audit action of a route that changes something; reads are not audited here.
fn mutation_action(route: RouteId) -> Option<&'static str> {
    Some(match route {
        RouteId::CreateConnection => "connection.create",
        RouteId::UpdateConnection => "connection.update",
        RouteId::DeleteConnection => "connection.delete",
        RouteId::CreateClient => "client.create",
        RouteId::UpdateClient => "client.update",
        RouteId::DeleteClient => "client.delete",
        RouteId::CreateAccessKey => "client.key.create",
        RouteId::DeleteAccessKey => "client.key.delete",
        RouteId::CreateRole => "role.create",
        RouteId::UpdateRole => "role.update",
        RouteId::DeleteRole => "role.delete",
        RouteId::CreateRecord => "record.create",
        RouteId::UpdateRecord => "record.update",
        RouteId::DeleteRecord => "record.delete",
        _ => return None,
    })
}

/// The resource a management route acts on, from its path.
fn audited_resource(m: &Matched) -> String {
    let id = |name| m.param(name).to_string();
    match m.route.id {
        RouteId::CreateConnection => "Connections".into(),
        RouteId::CreateClient => "Clients".into(),
        RouteId::CreateRole => "Roles".into(),
        RouteId::CreateRecord => "Records".into(),
        RouteId::UpdateConnection | RouteId::DeleteConnection => format!("Connections/{}", id("connectionId")),
        RouteId::CreateAccessKey => format!("Clients/{}/AccessKeys", id("clientId")),
        RouteId::DeleteAccessKey => format!("Clients/{}/AccessKeys/{}", id("clientId"), id("keyId")),
        RouteId::UpdateClient | RouteId::DeleteClient => format!("Clients/{}", id("clientId")),
        RouteId::UpdateRole | RouteId::DeleteRole => format!("Roles/{}", id("roleId")),
        RouteId::UpdateRecord | RouteId::DeleteRecord => format!("Records/{}", id("recordId")),
        _ => String::new(),
    }
}

fn client_not_found() -> ApiError {
    ApiError::not_found("client_not_found", "no such service client")
}

fn empty(status: u16) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() =
        lambda_http::http::StatusCode::from_u16(status).unwrap_or(lambda_http::http::StatusCode::NO_CONTENT);
    resp
}

impl Handler for GrantManagement {
    async fn handle(&self, req: Request) -> Response<Body> {
        respond(self.dispatch(req).await)
    }
}
