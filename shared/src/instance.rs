//! One Lambda instance's shared parts, built once from the config in a function's `main`: the AWS
//! clients under their timeouts, the envelope and its data-key cache, the policy snapshot, the refresh
//! protocol with its single flight. Handlers never see this: each function's `main` takes from it the
//! capabilities its routes use (an `Authenticator`, a `PolicyEngine`, a `LoginFlow`, ...), each holding
//! only what it needs.

use std::sync::Arc;

use crate::access::{PolicyCache, PolicyEngine};
use crate::audit::{AuditLog, AuditTrail, StdoutAuditLog};
use crate::clock::{Clock, SystemClock};
use crate::config::{AwsTimeouts, Config};
use crate::crypto::{DataKeyCache, Envelope};
use crate::identity::{Authenticator, SigningKey, UserTokens};
use crate::login::LoginFlow;
use crate::management::access::AccessAdmin;
use crate::management::connections::ConnectionAdmin;
use crate::management::service_clients::ServiceClientAdmin;
use crate::oauth::id_token::ProviderKeys;
use crate::oauth::provider::ProviderClient;
use crate::store::Table;
use crate::store::connections::DynamoConnections;
use crate::store::credentials::{CredentialRepository, DynamoCredentials};
use crate::vault::RefreshProtocol;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot build the provider HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

/// DynamoDB retries: the SDK retries throttling and transient errors; a credential fetch should not
/// wait the SDK's default second before its first retry.
pub fn dynamodb_retry_config() -> aws_sdk_dynamodb::config::retry::RetryConfig {
    aws_sdk_dynamodb::config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(std::time::Duration::from_millis(25))
        .with_max_backoff(std::time::Duration::from_millis(500))
}

/// KMS retries, as DynamoDB's: the SDK's default first backoff of up to a second, doubling, would let
/// the operation timeout end a throttled call, so that throttling outlasting the retries would answer
/// as an outage (`service_unavailable`) on some calls and as `throttled` on others.
pub fn kms_retry_config() -> aws_sdk_kms::config::retry::RetryConfig {
    dynamodb_retry_config()
}

/// Every DynamoDB and KMS call of the vault runs under the configured timeouts, and KMS calls under
/// the vault's retries, whoever built the client (tests pass their own, with call counters): a stalled
/// call ends as `Unavailable` well inside a refresh lease instead of holding it.
fn with_timeouts(
    dynamodb: aws_sdk_dynamodb::Client,
    kms: aws_sdk_kms::Client,
    timeouts: AwsTimeouts,
) -> (aws_sdk_dynamodb::Client, aws_sdk_kms::Client) {
    let timeout_config = aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .operation_timeout(timeouts.operation)
        .operation_attempt_timeout(timeouts.attempt)
        .connect_timeout(timeouts.attempt)
        .build();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        dynamodb
            .config()
            .to_builder()
            .timeout_config(timeout_config.clone())
            .build(),
    );
    let kms = aws_sdk_kms::Client::from_conf(
        kms.config()
            .to_builder()
            .timeout_config(timeout_config)
            .retry_config(kms_retry_config())
            .build(),
    );
    (dynamodb, kms)
}

pub struct Instance {
    pub config: Config,
    pub table: Table,
    pub envelope: Arc<Envelope>,
    /// The stored credentials, sealing and opening their own secrets.
    pub credentials: Arc<dyn CredentialRepository>,
    /// The refresh lease protocol over those credentials (vault.rs).
    pub refresh: Arc<RefreshProtocol>,
    pub audit: Arc<AuditTrail>,
    pub provider: Arc<ProviderClient>,
    pub user_tokens: Arc<UserTokens>,
    pub clock: Arc<dyn Clock>,
    /// One policy snapshot for every route of the instance, so its own grant changes apply at once.
    pub policy: Arc<PolicyEngine>,
    pub authenticator: Arc<Authenticator>,
}

impl Instance {
    /// Builds AWS clients from the standard credential chain, pointed at the emulator when configured.
    pub async fn from_config(config: Config) -> Result<Self, StartupError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = &config.aws_endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let sdk = loader.load().await;
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk)
                .retry_config(dynamodb_retry_config())
                .build(),
        );
        let kms = aws_sdk_kms::Client::new(&sdk);
        Self::from_clients(config, dynamodb, kms, Arc::new(SystemClock))
    }

    /// Builds from ready clients: tests pass clients with call counters, or a shifted clock. Reads are
    /// audited on standard output, as in Lambda.
    pub fn from_clients(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        Self::with_audit_log(config, dynamodb, kms, clock, Arc::new(StdoutAuditLog))
    }

    /// As `from_clients`, with the audit lines of reads going to `audit_log` (the local stack's log
    /// subscription, which carries them into the table as audit-ingest does on AWS).
    pub fn with_audit_log(
        config: Config,
        dynamodb: aws_sdk_dynamodb::Client,
        kms: aws_sdk_kms::Client,
        clock: Arc<dyn Clock>,
        audit_log: Arc<dyn AuditLog>,
    ) -> Result<Self, StartupError> {
        config.validate()?;
        let (dynamodb, kms) = with_timeouts(dynamodb, kms, config.aws_timeouts);
        let provider = Arc::new(ProviderClient::new(
            config.refresh.provider_timeout,
            config.refresh.provider_attempts,
        )?);
        let envelope = Arc::new(Envelope::new(
            kms.clone(),
            config.data_key_id.clone(),
            DataKeyCache::new(
                config.data_key_cache_entries,
                config.data_key_cache_max_age,
                clock.clone(),
            ),
        ));
        let user_tokens = Arc::new(UserTokens::new(
            SigningKey::new(kms, config.signing_key_id.clone()),
            config.issuer.clone(),
            config.audience.clone(),
            config.user_token_lifetime,
            clock.clone(),
        ));
        let table = Table::new(dynamodb, config.table_name.clone());
        let credentials: Arc<dyn CredentialRepository> =
            Arc::new(DynamoCredentials::new(table.clone(), envelope.clone()));
        let audit = Arc::new(AuditTrail::new(
            table.clone(),
            clock.clone(),
            config.audit_retention,
            audit_log,
        ));
        let refresh = Arc::new(RefreshProtocol {
            credentials: credentials.clone(),
            connections: Arc::new(DynamoConnections::new(table.clone(), envelope.clone())),
            provider: provider.clone(),
            clock: clock.clone(),
            timing: config.refresh.clone(),
            audit: audit.clone(),
            fetches: Default::default(),
        });
        let policy = Arc::new(PolicyEngine::new(
            PolicyCache::new(config.grant_cache_max_age, clock.clone()),
            table.clone(),
        ));
        let authenticator = Arc::new(Authenticator {
            user_tokens: user_tokens.clone(),
            table: table.clone(),
            clock: clock.clone(),
            issuer: config.issuer.clone(),
            account_audience: config.account_audience(),
        });
        Ok(Self {
            table,
            envelope,
            credentials,
            refresh,
            audit,
            provider,
            user_tokens,
            policy,
            authenticator,
            clock,
            config,
        })
    }

    /// The login flow (login-callback), with its own cache of provider signing keys.
    /// The keep-alive run of credential-maintenance, over this instance's refresh protocol.
    pub fn keep_alive(&self) -> crate::maintenance::KeepAlive {
        crate::maintenance::KeepAlive {
            table: self.table.clone(),
            refresh: Arc::clone(&self.refresh),
            clock: Arc::clone(&self.clock),
            limits: self.config.keep_alive.clone(),
        }
    }

    pub fn login_flow(&self) -> LoginFlow {
        LoginFlow {
            table: self.table.clone(),
            envelope: self.envelope.clone(),
            credentials: self.credentials.clone(),
            provider: self.provider.clone(),
            provider_keys: ProviderKeys::new(
                self.provider.http().clone(),
                self.config.insecure_allow_http_loopback,
                self.clock.clone(),
            ),
            user_tokens: self.user_tokens.clone(),
            clock: self.clock.clone(),
            audit: self.audit.clone(),
            issuer: self.config.issuer.clone(),
            allowed_redirect_urls: self.config.allowed_redirect_urls.clone(),
            login_request_lifetime: self.config.login_request_lifetime,
            vault_code_lifetime: self.config.vault_code_lifetime,
        }
    }

    /// Connection management (grant-management).
    pub fn connection_admin(&self) -> ConnectionAdmin {
        ConnectionAdmin {
            table: self.table.clone(),
            envelope: self.envelope.clone(),
            policy: self.policy.clone(),
            http: self.provider.http().clone(),
            insecure_allow_http_loopback: self.config.insecure_allow_http_loopback,
        }
    }

    /// Roles and access records (grant-management, bootstrap).
    pub fn access_admin(&self) -> AccessAdmin {
        AccessAdmin {
            table: self.table.clone(),
            policy: self.policy.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Service clients and their keys (grant-management, bootstrap).
    pub fn service_client_admin(&self) -> ServiceClientAdmin {
        ServiceClientAdmin {
            table: self.table.clone(),
            policy: self.policy.clone(),
            clock: self.clock.clone(),
            account_id: self.config.account_id.clone(),
        }
    }
}
