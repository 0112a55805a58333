//! Who may do what. For now the only rule is the one the SDKs rely on: users may read their own
//! credentials. Access records and roles (grants to other callers) build on this.

use crate::identity::Caller;

/// May `caller` read the credential of `user_id` at `connection_id`?
pub fn may_read_credentials(caller: &Caller, _connection_id: &str, user_id: &str) -> bool {
    match caller {
        Caller::User { user_id: me, .. } => me == user_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_read_only_their_own_credentials() {
        let alice = Caller::User {
            user_id: "con|alice".into(),
            connection_id: "con".into(),
        };
        assert!(may_read_credentials(&alice, "con", "con|alice"));
        assert!(!may_read_credentials(&alice, "con", "con|bob"));
    }
}
