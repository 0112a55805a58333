//! credential-maintenance: the scheduled keep-alive run (shared/src/maintenance.rs). EventBridge
//! Scheduler invokes it (infra/template.yaml, `KeepAliveSchedule`); the event carries nothing it
//! needs. It answers with the run's report, and fails the invocation only when DynamoDB fails for
//! the index or the cursor (a refresh that fails is counted in the report, not raised).

use credvault::maintenance::KeepAlive;
use lambda_http::lambda_runtime::LambdaEvent;
use serde_json::Value;

/// One invocation: one bounded run, from where the last one stopped.
pub async fn handle(keep_alive: &KeepAlive, _event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
    let report = keep_alive.run().await.map_err(|error| {
        tracing::error!(%error, "keep-alive run failed");
        error
    })?;
    tracing::info!(
        examined = report.examined,
        refreshed = report.refreshed,
        dead = report.dead,
        failed = report.failed,
        errors = report.errors,
        complete = report.complete,
        "keep-alive run"
    );
    Ok(serde_json::to_value(report)?)
}
