//! On whose authority a management change is made. Who counts as an administrator is the policy's
//! to say (`PolicyEngine::is_administrator`).

use crate::identity::Caller;

/// On whose authority a grant change is made.
#[derive(Debug, Clone, Copy)]
pub enum Authority<'a> {
    /// An API caller: checked by the delegation rules against the policy as it is now.
    Caller(&'a Caller),
    /// The operator, with AWS credentials (bootstrap, migration): not checked.
    Operator,
}
