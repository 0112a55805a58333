//! On whose authority a management change is made, and who counts as an administrator.

use crate::error::ApiError;
use crate::identity::Caller;
use crate::services::Services;

/// On whose authority a grant change is made.
#[derive(Debug, Clone, Copy)]
pub enum Authority<'a> {
    /// An API caller: checked by the delegation rules against the policy as it is now.
    Caller(&'a Caller),
    /// The operator, with AWS credentials (bootstrap, migration): not checked.
    Operator,
}

/// Is the caller an administrator (`vault:admin` on `*`), by the policy as it is now?
pub async fn is_administrator(services: &Services, caller: &Caller) -> Result<bool, ApiError> {
    Ok(services
        .policies
        .load_now(&services.table)
        .await?
        .is_administrator(caller.subject()))
}
