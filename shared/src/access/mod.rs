//! Who may do what: roles, access records, and the permission checks every route makes.
//!
//! Callers are subjects (a vault user id or a service client id). A subject may do `action` on
//! `resource` when an ACTIVE access record lists it and one of the record's statements names a role
//! with an allowing permission covering `action`, on a resource covering `resource` (see
//! `resource.rs` for what covers what). Users may always read and delete their own credentials.
//!
//! Checks run against a `Policy`: every role and record, loaded together and kept for at most
//! `Config::grant_cache_max_age` (default 10 s, at most 30 s), the documented bound on how long a
//! revoked grant can still be used by an instance that did not make the change itself.

pub mod admin;
pub mod bootstrap;
pub mod model;
pub mod resource;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use model::{AccessRecord, Role};
pub use resource::{Action, ResourceUri};

use crate::error::ApiError;
use crate::identity::Caller;
use crate::store::documents::{self, Kind};
use crate::store::{StoreError, Table};

/// Every role and active record, as of one moment.
#[derive(Debug, Default)]
pub struct Policy {
    roles: Vec<Role>,
    records: Vec<AccessRecord>,
}

impl Policy {
    pub fn new(roles: Vec<Role>, records: Vec<AccessRecord>) -> Self {
        Self {
            roles,
            records: records.into_iter().filter(AccessRecord::is_active).collect(),
        }
    }

    pub fn allows(&self, subject: &str, resource: &ResourceUri, action: &Action) -> bool {
        self.records.iter().filter(|r| r.has_user(subject)).any(|record| {
            record.statements.iter().any(|statement| {
                statement
                    .resources
                    .iter()
                    .any(|r| ResourceUri::parse(&r.resource_uri).is_some_and(|g| g.covers(resource)))
                    && statement.roles.iter().any(|role_id| self.role_allows(role_id, action))
            })
        })
    }

    fn role_allows(&self, role_id: &str, action: &Action) -> bool {
        self.roles.iter().find(|r| r.role_id == role_id).is_some_and(|role| {
            role.permissions
                .iter()
                .any(|p| p.allow && Action::parse(&p.action).is_some_and(|a| a.covers(action)))
        })
    }
}

/// The policy snapshot of one instance, reloaded when older than its maximum age.
pub struct PolicyCache {
    max_age: Duration,
    snapshot: Mutex<Option<(Instant, Arc<Policy>)>>,
    reload: tokio::sync::Mutex<()>,
}

impl PolicyCache {
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            snapshot: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<Policy>> {
        let guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.max_age)
            .map(|(_, p)| p.clone())
    }

    pub async fn get(&self, table: &Table) -> Result<Arc<Policy>, StoreError> {
        if let Some(policy) = self.fresh() {
            return Ok(policy);
        }
        let _one_loader = self.reload.lock().await;
        if let Some(policy) = self.fresh() {
            return Ok(policy);
        }
        let policy = Arc::new(load_policy(table).await?);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), policy.clone()));
        Ok(policy)
    }

    /// Forgets the snapshot: this instance's own grant changes apply to its next check at once.
    pub fn invalidate(&self) {
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn load_policy(table: &Table) -> Result<Policy, StoreError> {
    let roles = documents::list_all(table, Kind::Role).await?;
    let records = documents::list_all(table, Kind::Record).await?;
    let parse = |what: &str, e: serde_json::Error| StoreError::Malformed(format!("{what}: {e}"));
    let roles = roles
        .into_iter()
        .map(|d| serde_json::from_value(d.body).map_err(|e| parse("role", e)))
        .collect::<Result<_, _>>()?;
    let records = records
        .into_iter()
        .map(|d| serde_json::from_value(d.body).map_err(|e| parse("record", e)))
        .collect::<Result<_, _>>()?;
    Ok(Policy::new(roles, records))
}

/// Succeeds when `caller` may do `action` on `resource`; otherwise 403.
pub async fn require(
    policies: &PolicyCache,
    table: &Table,
    caller: &Caller,
    resource: &str,
    action: &str,
) -> Result<(), ApiError> {
    if is_allowed(policies, table, caller.subject(), resource, action).await? {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// May `subject` (a user or client id) do `action` on `resource`? Invalid URIs or actions grant nothing.
pub async fn is_allowed(
    policies: &PolicyCache,
    table: &Table,
    subject: &str,
    resource: &str,
    action: &str,
) -> Result<bool, ApiError> {
    let (Some(resource), Some(action)) = (ResourceUri::parse(resource), Action::parse(action)) else {
        return Ok(false);
    };
    let policy = policies.get(table).await.map_err(ApiError::internal)?;
    Ok(policy.allows(subject, &resource, &action))
}

/// The resource a credential is, for grants: `Connections/{connectionId}/Users/{userId}/Credentials`.
pub fn credentials_resource(connection_id: &str, user_id: &str) -> String {
    format!("Connections/{connection_id}/Users/{user_id}/Credentials")
}

/// Users read and delete their own credentials; anyone else needs `action` on the credential.
pub async fn require_credential_access(
    policies: &PolicyCache,
    table: &Table,
    caller: &Caller,
    connection_id: &str,
    user_id: &str,
    action: &str,
) -> Result<(), ApiError> {
    if matches!(caller, Caller::User { user_id: me, .. } if me == user_id) {
        return Ok(());
    }
    require(
        policies,
        table,
        caller,
        &credentials_resource(connection_id, user_id),
        action,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Policy {
        let reader: Role = serde_json::from_value(json!({"roleId": "ro_reader", "name": "Reader",
            "permissions": [{"action": "connections:credentials:read", "allow": true}]}))
        .unwrap();
        let denied: Role = serde_json::from_value(json!({"roleId": "ro_nothing", "name": "Nothing",
            "permissions": [{"action": "*", "allow": false}]}))
        .unwrap();
        let record = |id: &str, status: &str, role: &str, resource: &str| -> AccessRecord {
            serde_json::from_value(
                json!({"recordId": id, "name": id, "status": status, "users": [{"userId": "sc_backend"}],
                "statements": [{"roles": [role], "resources": [{"resourceUri": resource}]}]}),
            )
            .unwrap()
        };
        Policy::new(
            vec![reader, denied],
            vec![
                record("rec_1", "ACTIVE", "ro_reader", "Connections/con_a"),
                record("rec_2", "DELETED", "ro_reader", "Connections/con_b"),
                record("rec_3", "ACTIVE", "ro_nothing", "*"),
            ],
        )
    }

    #[test]
    fn records_grant_their_roles_on_their_resources_only() {
        let p = policy();
        let read = Action::parse("connections:credentials:read").unwrap();
        let at = |r: &str| ResourceUri::parse(r).unwrap();
        assert!(p.allows("sc_backend", &at("Connections/con_a/Users/u1/Credentials"), &read));
        assert!(
            !p.allows("sc_other", &at("Connections/con_a/Users/u1/Credentials"), &read),
            "not in the record"
        );
        assert!(
            !p.allows("sc_backend", &at("Connections/con_b/Users/u1/Credentials"), &read),
            "deleted record"
        );
        assert!(
            !p.allows("sc_backend", &at("Connections/con_c/Users/u1/Credentials"), &read),
            "allow: false grants nothing"
        );
        let delete = Action::parse("connections:credentials:delete").unwrap();
        assert!(
            !p.allows("sc_backend", &at("Connections/con_a/Users/u1/Credentials"), &delete),
            "other action"
        );
    }
}
