//! Who may give what, following Authress: a role permission may `allow` (use it), `grant` (give it to
//! others) and `delegate` (give it, including the right to give it on). Nobody gives what they could
//! not grant themselves:
//!
//! - a record may be written only by a caller who holds, with `grant` or `delegate`, every permission
//!   the record gives, on a resource covering each resource the record names;
//! - giving `grant` or `delegate` onward needs `delegate`;
//! - a role change is checked the same way against every record that uses the role (only the
//!   permissions the change adds);
//! - built-in roles (`vault:*`) cannot be created, changed or deleted through the API, and only a holder
//!   of `vault:admin` on `*` may name one in a record.
//!
//! Everything here is pure: it decides against a `Policy` snapshot, so it is tested without a table.

use super::model::{AccessRecord, Permission, Role};
use super::{Action, Policy, ResourceUri};

/// Roles whose ids start with this belong to the vault itself.
pub const BUILT_IN_ROLE_PREFIX: &str = "vault:";

pub fn is_built_in_role(role_id: &str) -> bool {
    role_id.starts_with(BUILT_IN_ROLE_PREFIX)
}

/// Why a grant change was refused: each becomes a 403 with its own `errorCode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The caller holds no `grant` or `delegate` of `action` on a resource covering `resource`.
    CannotGrant { action: String, resource: String },
    /// The change gives `grant`/`delegate` onward, which needs `delegate`.
    CannotDelegate { action: String, resource: String },
    /// Only a holder of `vault:admin` on `*` may hand out a built-in role.
    AdministratorsOnly { role_id: String },
    /// Built-in roles are not changed through the API.
    BuiltInRole { role_id: String },
    /// A record may only name roles that exist (else a later role would give what nobody checked).
    UnknownRole { role_id: String },
}

impl Refusal {
    pub fn error_code(&self) -> &'static str {
        match self {
            Refusal::CannotGrant { .. } => "cannot_grant",
            Refusal::CannotDelegate { .. } => "cannot_delegate",
            Refusal::AdministratorsOnly { .. } => "administrators_only",
            Refusal::BuiltInRole { .. } => "built_in_role",
            Refusal::UnknownRole { .. } => "unknown_role",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::CannotGrant { action, resource } => write!(
                f,
                "the caller may not grant {action} on {resource} (it needs that permission with grant or delegate)"
            ),
            Refusal::CannotDelegate { action, resource } => write!(
                f,
                "the caller may not give the right to grant {action} on {resource} onward (it needs delegate)"
            ),
            Refusal::AdministratorsOnly { role_id } => {
                write!(f, "only a holder of vault:admin on * may hand out the role {role_id}")
            }
            Refusal::BuiltInRole { role_id } => write!(f, "{role_id} is a built-in role and cannot be changed"),
            Refusal::UnknownRole { role_id } => write!(f, "the role {role_id} does not exist"),
        }
    }
}

/// Does this permission give anything at all?
fn gives_something(p: &Permission) -> bool {
    p.allow || p.grant || p.delegate
}

/// Can `caller` give permission `p` on `resource`?
fn check_permission(policy: &Policy, caller: &str, p: &Permission, resource: &str) -> Result<(), Refusal> {
    let (Some(action), Some(uri)) = (Action::parse(&p.action), ResourceUri::parse(resource)) else {
        // Validation refuses these before any check; a value that does not parse gives nothing.
        return Ok(());
    };
    let onward = p.grant || p.delegate;
    if policy.can_give(caller, &uri, &action, onward) {
        return Ok(());
    }
    let could_grant = onward && policy.can_give(caller, &uri, &action, false);
    let (action, resource) = (action.as_string(), uri.as_string());
    if could_grant {
        Err(Refusal::CannotDelegate { action, resource })
    } else {
        Err(Refusal::CannotGrant { action, resource })
    }
}

/// May `caller` store `record` (create it, or replace another record with it)?
pub fn check_record(policy: &Policy, caller: &str, record: &AccessRecord) -> Result<(), Refusal> {
    for statement in &record.statements {
        for role_id in &statement.roles {
            if is_built_in_role(role_id) && !policy.is_administrator(caller) {
                return Err(Refusal::AdministratorsOnly {
                    role_id: role_id.clone(),
                });
            }
            let role = policy.role(role_id).ok_or_else(|| Refusal::UnknownRole {
                role_id: role_id.clone(),
            })?;
            for p in role.permissions.iter().filter(|p| gives_something(p)) {
                for resource in &statement.resources {
                    check_permission(policy, caller, p, &resource.resource_uri)?;
                }
            }
        }
    }
    Ok(())
}

/// Is `new` already given by one of `old`'s permissions (same or wider action, same or more flags)?
fn covered_by(new: &Permission, old: &[Permission]) -> bool {
    let Some(wanted) = Action::parse(&new.action) else {
        return true;
    };
    old.iter().any(|o| {
        Action::parse(&o.action).is_some_and(|a| a.covers(&wanted))
            && (!new.allow || o.allow)
            && (!new.grant || o.grant || o.delegate)
            && (!new.delegate || o.delegate)
    })
}

/// May `caller` create (`old` = None) or change a role into `new`? The records that already name the
/// role would give whatever it gains, so each gain is checked on each of their resources.
pub fn check_role_change(policy: &Policy, caller: &str, old: Option<&Role>, new: &Role) -> Result<(), Refusal> {
    if is_built_in_role(&new.role_id) {
        return Err(Refusal::BuiltInRole {
            role_id: new.role_id.clone(),
        });
    }
    let before = old.map(|r| r.permissions.as_slice()).unwrap_or_default();
    let gained: Vec<&Permission> = new
        .permissions
        .iter()
        .filter(|p| gives_something(p) && !covered_by(p, before))
        .collect();
    if gained.is_empty() {
        return Ok(());
    }
    for record in policy.records() {
        for statement in record.statements.iter().filter(|s| s.roles.contains(&new.role_id)) {
            for p in &gained {
                for resource in &statement.resources {
                    check_permission(policy, caller, p, &resource.resource_uri)?;
                }
            }
        }
    }
    Ok(())
}

/// Deleting a role takes permissions away only; built-in roles stay.
pub fn check_role_delete(role_id: &str) -> Result<(), Refusal> {
    if is_built_in_role(role_id) {
        return Err(Refusal::BuiltInRole {
            role_id: role_id.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(id: &str, permissions: serde_json::Value) -> Role {
        serde_json::from_value(json!({"roleId": id, "name": id, "permissions": permissions})).unwrap()
    }

    fn record(id: &str, user: &str, roles: &[&str], resources: &[&str]) -> AccessRecord {
        let resources: Vec<_> = resources.iter().map(|r| json!({"resourceUri": r})).collect();
        serde_json::from_value(json!({"recordId": id, "name": id, "users": [{"userId": user}],
            "statements": [{"roles": roles, "resources": resources}]}))
        .unwrap()
    }

    /// The roles the matrix and the property test share.
    fn roles() -> Vec<Role> {
        let read = "connections:credentials:read";
        vec![
            role(
                "vault:admin",
                json!([{"action": "*", "allow": true, "grant": true, "delegate": true}]),
            ),
            role("ro_read", json!([{"action": read, "allow": true}])),
            role("ro_read_grant", json!([{"action": read, "allow": true, "grant": true}])),
            role(
                "ro_read_delegate",
                json!([{"action": read, "allow": true, "delegate": true}]),
            ),
            role("ro_records", json!([{"action": "records:*", "allow": true}])),
            role("ro_all", json!([{"action": "*", "allow": true}])),
        ]
    }

    /// Allow-only, grant and delegate holders on `Connections/con_a`, and an administrator.
    fn policy() -> Policy {
        Policy::new(
            roles(),
            vec![
                record("rec_root", "sc_root", &["vault:admin"], &["*"]),
                record(
                    "rec_allow",
                    "sc_allow",
                    &["ro_read", "ro_records"],
                    &["Connections/con_a"],
                ),
                record("rec_grant", "sc_grant", &["ro_read_grant"], &["Connections/con_a"]),
                record(
                    "rec_delegate",
                    "sc_delegate",
                    &["ro_read_delegate"],
                    &["Connections/con_a"],
                ),
            ],
        )
    }

    #[test]
    fn record_writes_follow_allow_grant_delegate_across_resources() {
        let p = policy();
        let covering = "Connections/con_a";
        let child = "Connections/con_a/Users/u1/Credentials";
        let sibling = "Connections/con_b";
        let parent = "Connections";
        let ok = Ok(());
        let cannot = |r: &str| {
            Err(Refusal::CannotGrant {
                action: "connections:credentials:read".into(),
                resource: r.into(),
            })
        };
        let no_onward = |r: &str| {
            Err(Refusal::CannotDelegate {
                action: "connections:credentials:read".into(),
                resource: r.into(),
            })
        };
        // (caller, role the record gives, resource, expected)
        let cases: Vec<(&str, &str, &str, Result<(), Refusal>)> = vec![
            ("sc_allow", "ro_read", covering, cannot(covering)),
            ("sc_allow", "ro_read", child, cannot(child)),
            ("sc_grant", "ro_read", covering, ok.clone()),
            ("sc_grant", "ro_read", child, ok.clone()),
            ("sc_grant", "ro_read", sibling, cannot(sibling)),
            ("sc_grant", "ro_read", parent, cannot(parent)),
            ("sc_grant", "ro_read_grant", covering, no_onward(covering)),
            ("sc_grant", "ro_read_delegate", child, no_onward(child)),
            ("sc_delegate", "ro_read", child, ok.clone()),
            ("sc_delegate", "ro_read_grant", covering, ok.clone()),
            ("sc_delegate", "ro_read_delegate", child, ok.clone()),
            ("sc_delegate", "ro_read_delegate", sibling, cannot(sibling)),
            ("sc_root", "ro_all", "*", ok.clone()),
            ("sc_root", "vault:admin", "*", ok.clone()),
            (
                "sc_delegate",
                "ro_all",
                covering,
                Err(Refusal::CannotGrant {
                    action: "*".into(),
                    resource: covering.into(),
                }),
            ),
        ];
        for (caller, role_id, resource, expected) in cases {
            let r = record("rec_new", "sc_someone", &[role_id], &[resource]);
            assert_eq!(
                check_record(&p, caller, &r),
                expected,
                "{caller} gives {role_id} on {resource}"
            );
        }
    }

    #[test]
    fn built_in_roles_are_for_administrators_only() {
        let p = policy();
        let admin_record = record("rec_x", "sc_allow", &["vault:admin"], &["Connections/con_a"]);
        assert_eq!(
            check_record(&p, "sc_delegate", &admin_record),
            Err(Refusal::AdministratorsOnly {
                role_id: "vault:admin".into()
            })
        );
        assert_eq!(check_record(&p, "sc_root", &admin_record), Ok(()));
        // Administrator of one connection only is no administrator.
        let narrow = Policy::new(
            roles(),
            vec![record("rec_n", "sc_narrow", &["vault:admin"], &["Connections/con_a"])],
        );
        assert!(!narrow.is_administrator("sc_narrow"));
        assert!(check_record(&narrow, "sc_narrow", &admin_record).is_err());
        let admin = roles().remove(0);
        assert_eq!(
            check_role_change(&p, "sc_root", Some(&admin), &admin),
            Err(Refusal::BuiltInRole {
                role_id: "vault:admin".into()
            })
        );
        assert!(check_role_delete("vault:admin").is_err());
        assert!(check_role_delete("ro_read").is_ok());
        assert_eq!(
            check_record(&p, "sc_root", &record("rec_y", "u", &["ro_missing"], &["*"])),
            Err(Refusal::UnknownRole {
                role_id: "ro_missing".into()
            })
        );
    }

    #[test]
    fn role_changes_are_checked_against_every_record_using_the_role() {
        let p = policy();
        // sc_allow holds records:* through ro_records; widening ro_read (its own role on con_a) to `*`
        // would give it everything there.
        let old = p.role("ro_read").unwrap().clone();
        let wider = role("ro_read", json!([{"action": "*", "allow": true}]));
        assert!(matches!(
            check_role_change(&p, "sc_grant", Some(&old), &wider),
            Err(Refusal::CannotGrant { .. })
        ));
        assert_eq!(check_role_change(&p, "sc_root", Some(&old), &wider), Ok(()));
        // Narrowing or keeping needs nothing; widening within what the caller may grant is fine.
        let narrower = role(
            "ro_read",
            json!([{"action": "connections:credentials:read", "allow": false}]),
        );
        assert_eq!(check_role_change(&p, "sc_allow", Some(&old), &narrower), Ok(()));
        assert_eq!(check_role_change(&p, "sc_allow", Some(&old), &old), Ok(()));
        let with_grant = role(
            "ro_read",
            json!([{"action": "connections:credentials:read", "allow": true, "grant": true}]),
        );
        assert!(matches!(
            check_role_change(&p, "sc_grant", Some(&old), &with_grant),
            Err(Refusal::CannotDelegate { .. })
        ));
        assert_eq!(check_role_change(&p, "sc_delegate", Some(&old), &with_grant), Ok(()));
        // A role nobody uses gives nothing yet: any holder of roles:create may make it.
        let unused = role("ro_unused", json!([{"action": "*", "allow": true}]));
        assert_eq!(check_role_change(&p, "sc_allow", None, &unused), Ok(()));
    }

    #[test]
    fn what_gives_nothing_needs_no_right_to_give_and_a_kept_grant_is_no_gain() {
        let mut roles = roles();
        roles.push(role("ro_none", json!([{"action": "*", "allow": false}])));
        let p = Policy::new(roles, policy().records().to_vec());
        // sc_allow may give nothing at all, but a role that allows nothing gives nothing.
        let r = record("rec_new", "sc_someone", &["ro_none"], &["*"]);
        assert_eq!(check_record(&p, "sc_allow", &r), Ok(()));
        // Renaming ro_read_grant keeps its grant: nothing is gained, so nothing is checked.
        let old = p.role("ro_read_grant").unwrap().clone();
        let renamed = Role {
            name: "renamed".into(),
            ..old.clone()
        };
        assert_eq!(check_role_change(&p, "sc_allow", Some(&old), &renamed), Ok(()));
        let old = p.role("ro_read_delegate").unwrap().clone();
        let granting = role(
            "ro_read_delegate",
            json!([{"action": "connections:credentials:read", "allow": true, "grant": true}]),
        );
        assert_eq!(
            check_role_change(&p, "sc_allow", Some(&old), &granting),
            Ok(()),
            "delegate covers grant"
        );
    }

    #[test]
    fn each_refusal_has_its_documented_code_and_says_what_was_refused() {
        let (action, resource) = (
            "connections:credentials:read".to_string(),
            "Connections/con_a".to_string(),
        );
        let role_id = "vault:admin".to_string();
        let cases = [
            (
                Refusal::CannotGrant {
                    action: action.clone(),
                    resource: resource.clone(),
                },
                "cannot_grant",
            ),
            (
                Refusal::CannotDelegate {
                    action: action.clone(),
                    resource: resource.clone(),
                },
                "cannot_delegate",
            ),
            (
                Refusal::AdministratorsOnly {
                    role_id: role_id.clone(),
                },
                "administrators_only",
            ),
            (
                Refusal::BuiltInRole {
                    role_id: role_id.clone(),
                },
                "built_in_role",
            ),
            (
                Refusal::UnknownRole {
                    role_id: "ro_missing".into(),
                },
                "unknown_role",
            ),
        ];
        for (refusal, code) in cases {
            assert_eq!(refusal.error_code(), code);
            let message = refusal.to_string();
            let names = match &refusal {
                Refusal::CannotGrant { .. } | Refusal::CannotDelegate { .. } => {
                    message.contains(&action) && message.contains(&resource)
                }
                Refusal::AdministratorsOnly { role_id }
                | Refusal::BuiltInRole { role_id }
                | Refusal::UnknownRole { role_id } => message.contains(role_id.as_str()),
            };
            assert!(names, "{code}: {message}");
        }
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        const SUBJECTS: &[&str] = &["sc_root", "sc_allow", "sc_grant", "sc_delegate", "sc_other", "u1"];
        const RESOURCES: &[&str] = &[
            "*",
            "Connections",
            "Connections/con_a",
            "Connections/con_b",
            "Connections/con_a/Users/u1/Credentials",
            "Connections/*/Users/u1",
            "Records",
        ];
        const ACTIONS: &[&str] = &[
            "connections:credentials:read",
            "connections:credentials:delete",
            "connections:*",
            "records:*",
            "*",
        ];
        const ROLE_IDS: &[&str] = &[
            "ro_read",
            "ro_read_grant",
            "ro_read_delegate",
            "ro_records",
            "ro_all",
            "vault:admin",
            "ro_new",
        ];

        #[derive(Debug, Clone)]
        enum Write {
            Record {
                id: usize,
                users: Vec<usize>,
                roles: Vec<usize>,
                resources: Vec<usize>,
            },
            DeleteRecord {
                id: usize,
            },
            Role {
                role: usize,
                permissions: Vec<(usize, bool, bool, bool)>,
            },
            DeleteRole {
                role: usize,
            },
        }

        fn write() -> impl Strategy<Value = (usize, Write)> {
            let index = |n: usize| 0..n;
            let writer = index(SUBJECTS.len());
            let op = prop_oneof![
                4 => (index(4), prop::collection::vec(index(SUBJECTS.len()), 1..3),
                      prop::collection::vec(index(ROLE_IDS.len()), 1..3),
                      prop::collection::vec(index(RESOURCES.len()), 1..3))
                    .prop_map(|(id, users, roles, resources)| Write::Record { id, users, roles, resources }),
                1 => index(4).prop_map(|id| Write::DeleteRecord { id }),
                2 => (index(ROLE_IDS.len()), prop::collection::vec((index(ACTIONS.len()), any::<bool>(), any::<bool>(), any::<bool>()), 1..3))
                    .prop_map(|(role, permissions)| Write::Role { role, permissions }),
                1 => index(ROLE_IDS.len()).prop_map(|role| Write::DeleteRole { role }),
            ];
            (writer, op)
        }

        /// (subject, resource, action) by index into the universes above.
        type Power = (usize, usize, usize);

        /// Every power the policy allows, and every one it lets be given on (with `onward`).
        fn powers(p: &Policy) -> (Vec<Power>, Vec<(Power, bool)>) {
            let mut allowed = Vec::new();
            let mut giving = Vec::new();
            for (s, subject) in SUBJECTS.iter().enumerate() {
                for (r, resource) in RESOURCES.iter().enumerate() {
                    let uri = ResourceUri::parse(resource).unwrap();
                    for (a, action) in ACTIONS.iter().enumerate() {
                        let action = Action::parse(action).unwrap();
                        if p.allows(subject, &uri, &action) {
                            allowed.push((s, r, a));
                        }
                        for onward in [false, true] {
                            if p.can_give(subject, &uri, &action, onward) {
                                giving.push(((s, r, a), onward));
                            }
                        }
                    }
                }
            }
            (allowed, giving)
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

            /// Random writes by random callers, each applied only when the checks accept it: nobody
            /// ever ends up with a power (use, grant, delegate) that the writer who gave it could not
            /// give at that moment.
            #[test]
            fn no_write_gives_more_than_its_writer_could(writes in prop::collection::vec(write(), 1..25)) {
                let mut roles: Vec<Role> = super::roles();
                let mut records: Vec<AccessRecord> = super::policy().records().to_vec();
                for (writer, op) in writes {
                    let writer_id = SUBJECTS[writer];
                    let before = Policy::new(roles.clone(), records.clone());
                    let (mut next_roles, mut next_records) = (roles.clone(), records.clone());
                    let accepted = match &op {
                        Write::Record { id, users, roles: role_ix, resources } => {
                            let users: Vec<_> = users.iter().map(|u| json!({"userId": SUBJECTS[*u]})).collect();
                            let res: Vec<_> = resources.iter().map(|r| json!({"resourceUri": RESOURCES[*r]})).collect();
                            let role_ids: Vec<&str> = role_ix.iter().map(|r| ROLE_IDS[*r]).collect();
                            let rec: AccessRecord = serde_json::from_value(json!({"recordId": format!("rec_p{id}"),
                                "name": "p", "users": users, "statements": [{"roles": role_ids, "resources": res}]})).unwrap();
                            let ok = check_record(&before, writer_id, &rec).is_ok();
                            if ok {
                                next_records.retain(|r| r.record_id != rec.record_id);
                                next_records.push(rec);
                            }
                            ok
                        }
                        Write::DeleteRecord { id } => {
                            next_records.retain(|r| r.record_id != format!("rec_p{id}"));
                            true
                        }
                        Write::Role { role: r, permissions } => {
                            let perms: Vec<_> = permissions.iter().map(|(a, allow, grant, delegate)| json!({
                                "action": ACTIONS[*a], "allow": allow, "grant": grant, "delegate": delegate})).collect();
                            let new = role(ROLE_IDS[*r], json!(perms));
                            let old = roles.iter().find(|x| x.role_id == new.role_id);
                            let ok = check_role_change(&before, writer_id, old, &new).is_ok();
                            if ok {
                                next_roles.retain(|x| x.role_id != new.role_id);
                                next_roles.push(new);
                            }
                            ok
                        }
                        Write::DeleteRole { role: r } => {
                            let ok = check_role_delete(ROLE_IDS[*r]).is_ok();
                            if ok {
                                next_roles.retain(|x| x.role_id != ROLE_IDS[*r]);
                            }
                            ok
                        }
                    };
                    if !accepted {
                        continue;
                    }
                    let after = Policy::new(next_roles.clone(), next_records.clone());
                    let (allowed_before, giving_before) = powers(&before);
                    let (allowed_after, giving_after) = powers(&after);
                    for (s, r, a) in allowed_after.iter().filter(|x| !allowed_before.contains(x)) {
                        let uri = ResourceUri::parse(RESOURCES[*r]).unwrap();
                        let action = Action::parse(ACTIONS[*a]).unwrap();
                        prop_assert!(before.can_give(writer_id, &uri, &action, false),
                            "{writer_id} gave {} {} on {} by {op:?}", SUBJECTS[*s], ACTIONS[*a], RESOURCES[*r]);
                    }
                    for ((s, r, a), onward) in giving_after.iter().filter(|x| !giving_before.contains(x)) {
                        let uri = ResourceUri::parse(RESOURCES[*r]).unwrap();
                        let action = Action::parse(ACTIONS[*a]).unwrap();
                        prop_assert!(before.can_give(writer_id, &uri, &action, true),
                            "{writer_id} let {} give (onward: {onward}) {} on {} by {op:?}", SUBJECTS[*s], ACTIONS[*a], RESOURCES[*r]);
                    }
                    let admins_before: Vec<_> = SUBJECTS.iter().filter(|s| before.is_administrator(s)).collect();
                    for s in SUBJECTS.iter().filter(|s| after.is_administrator(s)) {
                        prop_assert!(admins_before.contains(&s) || before.is_administrator(writer_id),
                            "{writer_id} made {s} an administrator by {op:?}");
                    }
                    roles = next_roles;
                    records = next_records;
                }
            }
        }
    }
}
