//! Lambda entry point of audit-ingest: logging, the vault's config and table, then the Lambda runtime
//! invoking lib.rs on every batch the credential-fetch log's subscription delivers.

use std::sync::Arc;

use aws_lambda_events::event::cloudwatch_logs::LogsEvent;
use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let source = audit_ingest::AuditSource::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let trail = Arc::clone(&instance.audit);
    lambda_runtime::run(service_fn(|event: LambdaEvent<LogsEvent>| async {
        audit_ingest::handle(&trail, &source, event.payload)
            .await
            .map(|_| ())
            .map_err(lambda_http::Error::from)
    }))
    .await
}
