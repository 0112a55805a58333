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

pub mod delegation;
pub mod model;
pub mod resource;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use model::{AccessRecord, Role};
pub use resource::{Action, ResourceUri};

use crate::clock::Clock;
use crate::identity::Caller;
use crate::store::documents::{self, Kind};
use crate::store::identities;
use crate::store::{StoreError, Table};

/// Every role and active record, as of one moment, with the records indexed by the subjects they name.
#[derive(Debug, Default)]
pub struct Policy {
    /// The `policyVersion` this snapshot was read at (read before the documents).
    version: i64,
    roles: HashMap<String, Role>,
    records: Vec<AccessRecord>,
    by_subject: HashMap<String, Vec<usize>>,
}

impl Policy {
    pub fn new(roles: Vec<Role>, records: Vec<AccessRecord>) -> Self {
        let records: Vec<AccessRecord> = records.into_iter().filter(AccessRecord::is_active).collect();
        let mut by_subject: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, record) in records.iter().enumerate() {
            for user in &record.users {
                let list = by_subject.entry(user.user_id.clone()).or_default();
                if list.last() != Some(&index) {
                    list.push(index);
                }
            }
        }
        Self {
            version: 0,
            roles: roles.into_iter().map(|r| (r.role_id.clone(), r)).collect(),
            records,
            by_subject,
        }
    }

    /// The policy version this snapshot was read at: grant changes checked against it are written only
    /// onto that version (store/policy.rs).
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn role(&self, role_id: &str) -> Option<&Role> {
        self.roles.get(role_id)
    }

    /// The active records, in load order.
    pub fn records(&self) -> &[AccessRecord] {
        &self.records
    }

    /// May `subject` perform `action` on `resource`?
    pub fn allows(&self, subject: &str, resource: &ResourceUri, action: &Action) -> bool {
        self.any_permission(subject, resource, action, |p| p.allow)
    }

    /// May `subject` give `action` on `resource` to others? With `onward`, including the right to give
    /// it on again (Authress `delegate`); without, a plain grant (`grant` or `delegate`).
    pub fn can_give(&self, subject: &str, resource: &ResourceUri, action: &Action, onward: bool) -> bool {
        self.any_permission(subject, resource, action, |p| {
            if onward { p.delegate } else { p.grant || p.delegate }
        })
    }

    /// Does `subject` hold the built-in administrator role on every resource?
    pub fn is_administrator(&self, subject: &str) -> bool {
        let everything = ResourceUri::parse("*").unwrap_or_else(|| unreachable!("`*` is a valid resource URI"));
        self.subject_records(subject).any(|record| {
            record.statements.iter().any(|statement| {
                statement.roles.iter().any(|r| r == model::ADMIN_ROLE_ID)
                    && statement
                        .resources
                        .iter()
                        .any(|r| ResourceUri::parse(&r.resource_uri).is_some_and(|g| g.covers(&everything)))
            })
        })
    }

    fn subject_records(&self, subject: &str) -> impl Iterator<Item = &AccessRecord> {
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.records.get(i))
    }

    /// Is there a record naming `subject` with a statement covering `resource` whose role has a
    /// permission covering `action` that `flag` accepts?
    fn any_permission(
        &self,
        subject: &str,
        resource: &ResourceUri,
        action: &Action,
        flag: impl Fn(&model::Permission) -> bool,
    ) -> bool {
        self.subject_records(subject).any(|record| {
            record.statements.iter().any(|statement| {
                statement
                    .resources
                    .iter()
                    .any(|r| ResourceUri::parse(&r.resource_uri).is_some_and(|g| g.covers(resource)))
                    && statement.roles.iter().any(|role_id| {
                        self.role(role_id).is_some_and(|role| {
                            role.permissions
                                .iter()
                                .any(|p| flag(p) && Action::parse(&p.action).is_some_and(|a| a.covers(action)))
                        })
                    })
            })
        })
    }
}

/// The policy snapshot of one instance, reloaded when older than its maximum age.
pub struct PolicyCache {
    max_age: Duration,
    clock: Arc<dyn Clock>,
    snapshot: Mutex<Option<(Instant, Arc<Policy>)>>,
    reload: tokio::sync::Mutex<()>,
}

impl PolicyCache {
    pub fn new(max_age: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            max_age,
            clock,
            snapshot: Mutex::new(None),
            reload: tokio::sync::Mutex::new(()),
        }
    }

    fn fresh(&self) -> Option<Arc<Policy>> {
        let guard = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| self.clock.instant().saturating_duration_since(*at) < self.max_age)
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
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some((self.clock.instant(), policy.clone()));
        Ok(policy)
    }

    /// A snapshot loaded now, for decisions that must not rest on a revoked grant (grant changes).
    pub async fn load_now(&self, table: &Table) -> Result<Arc<Policy>, StoreError> {
        let _one_loader = self.reload.lock().await;
        let policy = Arc::new(load_policy(table).await?);
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some((self.clock.instant(), policy.clone()));
        Ok(policy)
    }

    /// Forgets the snapshot: this instance's own grant changes apply to its next check at once.
    pub fn invalidate(&self) {
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn load_policy(table: &Table) -> Result<Policy, StoreError> {
    // The version first: a write after it makes a later check against this snapshot fail and retry.
    let version = crate::store::policy::stats(table).await?.version;
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
    Ok(Policy {
        version,
        ..Policy::new(roles, records)
    })
}

/// Why a permission check did not let the caller through.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No grant allows it (403).
    #[error("the caller has no permission for this request")]
    Forbidden,
    /// The policy could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The permission checks of one instance: its policy snapshot (`PolicyCache`) over the table the
/// roles, records and identities are in. Shared by every route of the instance, so that its own grant
/// changes (`invalidate`) apply to its next check at once.
pub struct PolicyEngine {
    cache: PolicyCache,
    table: Table,
}

impl PolicyEngine {
    pub fn new(cache: PolicyCache, table: Table) -> Self {
        Self { cache, table }
    }

    /// Succeeds when `caller` may do `action` on `resource`; otherwise `Forbidden`.
    pub async fn require(&self, caller: &Caller, resource: &str, action: &str) -> Result<(), AccessError> {
        if self.is_allowed(caller.subject(), resource, action).await? {
            Ok(())
        } else {
            Err(AccessError::Forbidden)
        }
    }

    /// May `subject` (a user or client id) do `action` on `resource`? Invalid URIs or actions grant nothing.
    pub async fn is_allowed(&self, subject: &str, resource: &str, action: &str) -> Result<bool, StoreError> {
        let (Some(resource), Some(action)) = (ResourceUri::parse(resource), Action::parse(action)) else {
            return Ok(false);
        };
        let policy = self.cache.get(&self.table).await?;
        Ok(policy.allows(subject, &resource, &action))
    }

    /// Users read and delete their own credentials: the exact user id, and a connection that id belongs
    /// to (the one they logged in through, or one an administrator linked). Anyone else needs `action`
    /// on the credential.
    pub async fn require_credential_access(
        &self,
        caller: &Caller,
        connection_id: &str,
        user_id: &str,
        action: &str,
    ) -> Result<(), AccessError> {
        if let Caller::User {
            user_id: me,
            connection_id: logged_in_through,
        } = caller
            && me == user_id
            && (logged_in_through == connection_id || self.belongs_to_now(me, connection_id).await?)
        {
            return Ok(());
        }
        self.require(caller, &credentials_resource(connection_id, user_id), action)
            .await
    }

    /// Does `user_id` belong to the connection as it is now (its current generation)?
    async fn belongs_to_now(&self, user_id: &str, connection_id: &str) -> Result<bool, StoreError> {
        match crate::store::connections::generation(&self.table, connection_id).await? {
            Some(generation) => identities::belongs_to(&self.table, user_id, connection_id, &generation).await,
            None => Ok(false),
        }
    }

    /// A snapshot loaded now, for decisions that must not rest on a revoked grant (grant changes).
    pub async fn load_now(&self) -> Result<Arc<Policy>, StoreError> {
        self.cache.load_now(&self.table).await
    }

    /// Is the caller an administrator (`vault:admin` on `*`), by the policy as it is now?
    pub async fn is_administrator(&self, caller: &Caller) -> Result<bool, StoreError> {
        Ok(self.load_now().await?.is_administrator(caller.subject()))
    }

    /// Forgets the snapshot: this instance's own grant changes apply to its next check at once.
    pub fn invalidate(&self) {
        self.cache.invalidate();
    }
}

/// The resource a credential is, for grants: `Connections/{connectionId}/Users/{userId}/Credentials`.
pub fn credentials_resource(connection_id: &str, user_id: &str) -> String {
    format!("Connections/{connection_id}/Users/{user_id}/Credentials")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SteppedClock;
    use serde_json::{Value, json};

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

    fn granting_policy() -> Policy {
        let role = |id: &str, permission: Value| -> Role {
            serde_json::from_value(json!({"roleId": id, "name": id, "permissions": [permission]})).unwrap()
        };
        let record = |id: &str, user: &str, role: &str, resource: &str| -> AccessRecord {
            serde_json::from_value(
                json!({"recordId": id, "name": id, "users": [{"userId": user}, {"userId": user}],
                "statements": [{"roles": [role], "resources": [{"resourceUri": resource}]}]}),
            )
            .unwrap()
        };
        let read = "connections:credentials:read";
        Policy::new(
            vec![
                role("ro_user", json!({"action": read, "allow": true})),
                role("ro_granter", json!({"action": read, "allow": false, "grant": true})),
                role(
                    "ro_delegator",
                    json!({"action": read, "allow": false, "delegate": true}),
                ),
            ],
            vec![
                record("rec_user", "sc_user", "ro_user", "Connections/con_a"),
                record("rec_granter", "sc_granter", "ro_granter", "Connections/con_a"),
                record("rec_delegator", "sc_delegator", "ro_delegator", "Connections/con_a"),
                record("rec_admin", "sc_admin", model::ADMIN_ROLE_ID, "*"),
                record("rec_local_admin", "sc_local_admin", model::ADMIN_ROLE_ID, "Connections"),
                record("rec_admin_named", "sc_named", "ro_user", "*"),
            ],
        )
    }

    #[test]
    fn giving_on_needs_grant_or_delegate_and_giving_onward_needs_delegate() {
        let p = granting_policy();
        let read = Action::parse("connections:credentials:read").unwrap();
        let on = ResourceUri::parse("Connections/con_a/Users/u1/Credentials").unwrap();
        let give = |subject: &str, onward: bool| p.can_give(subject, &on, &read, onward);
        assert!(
            !give("sc_user", false) && !give("sc_user", true),
            "allow alone gives nothing"
        );
        assert!(give("sc_granter", false) && !give("sc_granter", true));
        assert!(give("sc_delegator", false) && give("sc_delegator", true));
        assert!(
            !p.allows("sc_granter", &on, &read),
            "grant without allow does not allow"
        );
        assert!(
            p.allows("sc_user", &on, &read),
            "a user listed twice in a record still holds it"
        );
    }

    #[test]
    fn an_administrator_holds_the_admin_role_on_everything() {
        let p = granting_policy();
        assert!(p.is_administrator("sc_admin"));
        assert!(!p.is_administrator("sc_local_admin"), "vault:admin below `*` only");
        assert!(!p.is_administrator("sc_named"), "another role on `*`");
        assert!(!p.is_administrator("sc_user"));
        assert!(!p.is_administrator("sc_nobody"));
    }

    #[test]
    fn a_snapshot_is_used_until_exactly_its_maximum_age_and_forgotten_on_invalidate() {
        let clock = Arc::new(SteppedClock::new());
        let cache = PolicyCache::new(Duration::from_secs(10), clock.clone());
        assert!(cache.fresh().is_none(), "nothing loaded yet");
        let policy = Arc::new(policy());
        *cache.snapshot.lock().unwrap() = Some((clock.instant(), policy.clone()));
        clock.step(Duration::from_millis(9_999));
        assert!(cache.fresh().is_some_and(|p| Arc::ptr_eq(&p, &policy)));
        clock.step(Duration::from_millis(1));
        assert!(cache.fresh().is_none(), "stale at exactly 10 s");

        *cache.snapshot.lock().unwrap() = Some((clock.instant(), policy));
        assert!(cache.fresh().is_some());
        cache.invalidate();
        assert!(cache.fresh().is_none());
    }
}
