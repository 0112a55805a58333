//! Typed configuration, read from the environment once at start-up and validated there, so a bad value
//! stops the function before it serves anything.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required setting {0}")]
    Missing(&'static str),
    #[error("setting {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// How the refresh protocol (DESIGN §3) is timed. See `vault.rs`.
#[derive(Debug, Clone)]
pub struct RefreshTiming {
    /// How long a claimed refresh lease is held before another instance may take it over.
    pub lease_length: Duration,
    /// Timeout of one call to a provider's token endpoint.
    pub provider_timeout: Duration,
    /// How many times a transient provider failure is tried in all, within one lease.
    pub provider_attempts: u32,
    /// How long an instance that lost the lease race waits for the winner before giving up.
    pub poll_deadline: Duration,
    /// After a refresh whose outcome is unknown (a timeout, a reset, a 502), how long nobody sends the
    /// credential's refresh token again: the longest a provider may still be working on a request the
    /// vault gave up on. A second request inside it could reach the provider while the first is still
    /// being performed, and a provider with reuse detection would revoke the token family.
    pub unknown_outcome_wait: Duration,
}

impl Default for RefreshTiming {
    fn default() -> Self {
        Self {
            lease_length: Duration::from_secs(30),
            provider_timeout: Duration::from_secs(5),
            provider_attempts: 3,
            poll_deadline: Duration::from_secs(20),
            unknown_outcome_wait: Duration::from_secs(60),
        }
    }
}

impl RefreshTiming {
    /// The worst time a lease holder can spend on the provider: every attempt timing out, plus backoff.
    pub fn worst_provider_time(&self) -> Duration {
        let attempts = self.provider_attempts.max(1);
        self.provider_timeout * attempts + crate::oauth::provider::max_total_backoff(attempts)
    }

    /// How much lease a holder must have left to send one refresh request: the request's timeout, and
    /// the sixth of the lease kept for the commit after it. Checked before every attempt;
    /// `Config::validate` makes sure the DynamoDB write fits that sixth.
    pub fn provider_call_budget(&self) -> Duration {
        self.provider_timeout + self.commit_allowance()
    }

    /// What a lease keeps for the commit after the provider's answer.
    pub fn commit_allowance(&self) -> Duration {
        self.lease_length / 6
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.provider_attempts == 0 {
            return Err(invalid("CREDVAULT_PROVIDER_ATTEMPTS", "must be at least 1"));
        }
        // The lease must outlive the holder's provider calls with room to commit; otherwise a second
        // instance could take over while the first still holds a live refresh token in flight.
        if self.worst_provider_time() * 3 > self.lease_length * 2 {
            return Err(invalid(
                "CREDVAULT_LEASE_SECONDS",
                format!(
                    "lease of {:?} is not well above the worst provider time {:?} (timeout x attempts + backoff); \
                     raise the lease or lower CREDVAULT_PROVIDER_TIMEOUT_MS",
                    self.lease_length,
                    self.worst_provider_time()
                ),
            ));
        }
        if self.poll_deadline.is_zero() {
            return Err(invalid("CREDVAULT_POLL_DEADLINE_SECONDS", "must be positive"));
        }
        if self.unknown_outcome_wait < self.provider_timeout {
            return Err(invalid(
                "CREDVAULT_UNKNOWN_OUTCOME_WAIT_SECONDS",
                "must be at least the provider timeout",
            ));
        }
        Ok(())
    }
}

/// Timeouts of the DynamoDB and KMS clients. Without them a stalled call holds a refresh lease as long
/// as the SDK's defaults allow (unbounded), and another instance could take the lease over while the
/// holder still has a refresh token in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsTimeouts {
    /// One whole call, the SDK's retries included.
    pub operation: Duration,
    /// One attempt of it.
    pub attempt: Duration,
}

impl Default for AwsTimeouts {
    fn default() -> Self {
        Self {
            operation: Duration::from_secs(3),
            attempt: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The DynamoDB table holding every item kind.
    pub table_name: String,
    /// KMS symmetric key for envelope encryption.
    pub data_key_id: String,
    /// KMS ECC_NIST_P256 SIGN_VERIFY key that signs vault user tokens.
    pub signing_key_id: String,
    /// Public base URL of the vault, no trailing slash: `iss` of vault tokens and prefix of callback URLs.
    pub issuer: String,
    /// `aud` of vault user tokens.
    pub audience: String,
    /// The account id inside service-client access keys; their tokens' `aud` is
    /// `{account_id}.accounts.authress.io`, as the Authress SDK makes it.
    pub account_id: String,
    /// App redirect URLs accepted by `POST /api/authentication`, compared exactly.
    pub allowed_redirect_urls: Vec<String>,
    /// Origins (`https://app.example.com`) browser apps may call the login and credential routes
    /// from, besides the origins of the redirect URLs (`CREDVAULT_ALLOWED_ORIGINS`, comma-separated).
    pub extra_allowed_origins: Vec<String>,
    /// Endpoint override for DynamoDB and KMS (the local emulator); `None` on AWS.
    pub aws_endpoint_url: Option<String>,
    pub user_token_lifetime: Duration,
    /// Timeouts of every DynamoDB and KMS call, checked against the lease at start-up.
    pub aws_timeouts: AwsTimeouts,
    /// Used when a credentials request names no `minimumValiditySeconds`.
    pub default_minimum_validity: Duration,
    pub login_request_lifetime: Duration,
    pub vault_code_lifetime: Duration,
    pub refresh: RefreshTiming,
    pub data_key_cache_entries: usize,
    pub data_key_cache_max_age: Duration,
    /// How long an instance may use its snapshot of roles and records: the bound on how long a revoked
    /// grant keeps working (at most 30 s).
    pub grant_cache_max_age: Duration,
    /// How long audit events stay in the table (DynamoDB TTL).
    pub audit_retention: Duration,
    /// Allow plain-http provider URLs on loopback addresses. Only for the local stack and tests.
    pub insecure_allow_http_loopback: bool,
    /// The bounds of one keep-alive run of credential-maintenance.
    pub keep_alive: KeepAliveLimits,
}

/// The bounds of one keep-alive run (maintenance.rs): how many due credentials it examines, how many
/// refreshes it runs at once, and how long it may go on. What it leaves, the next run continues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepAliveLimits {
    pub max_credentials: usize,
    pub concurrency: usize,
    /// No refresh starts later than this minus a lease after the run began, so a run ends within it
    /// (the function's timeout is longer).
    pub time_budget: Duration,
}

impl Default for KeepAliveLimits {
    fn default() -> Self {
        Self {
            max_credentials: 1000,
            concurrency: 8,
            time_budget: Duration::from_secs(240),
        }
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the config from any name -> value lookup, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| get(name).filter(|v| !v.is_empty()).ok_or(ConfigError::Missing(name));
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|e| invalid(name, e.to_string())),
            }
        };
        let count = |name: &'static str, default: usize| -> Result<usize, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v.parse::<usize>().map_err(|e| invalid(name, e.to_string())),
            }
        };
        let issuer = required("CREDVAULT_ISSUER")?.trim_end_matches('/').to_string();
        url::Url::parse(&issuer).map_err(|e| invalid("CREDVAULT_ISSUER", e.to_string()))?;
        let provider_timeout = match get("CREDVAULT_PROVIDER_TIMEOUT_MS") {
            None => RefreshTiming::default().provider_timeout,
            Some(v) => Duration::from_millis(
                v.parse::<u64>()
                    .map_err(|e| invalid("CREDVAULT_PROVIDER_TIMEOUT_MS", e.to_string()))?,
            ),
        };
        let provider_attempts = match get("CREDVAULT_PROVIDER_ATTEMPTS") {
            None => RefreshTiming::default().provider_attempts,
            Some(v) => v
                .parse::<u32>()
                .map_err(|e| invalid("CREDVAULT_PROVIDER_ATTEMPTS", e.to_string()))?,
        };
        let millis = |name: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|e| invalid(name, e.to_string())),
            }
        };
        let aws_timeouts = AwsTimeouts {
            operation: millis("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", AwsTimeouts::default().operation)?,
            attempt: millis("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS", AwsTimeouts::default().attempt)?,
        };
        let refresh = RefreshTiming {
            lease_length: secs("CREDVAULT_LEASE_SECONDS", 30)?,
            provider_timeout,
            provider_attempts,
            poll_deadline: secs("CREDVAULT_POLL_DEADLINE_SECONDS", 20)?,
            unknown_outcome_wait: secs("CREDVAULT_UNKNOWN_OUTCOME_WAIT_SECONDS", 60)?,
        };
        let config = Config {
            table_name: required("CREDVAULT_TABLE")?,
            data_key_id: required("CREDVAULT_DATA_KEY_ID")?,
            signing_key_id: required("CREDVAULT_SIGNING_KEY_ID")?,
            audience: get("CREDVAULT_AUDIENCE").unwrap_or_else(|| issuer.clone()),
            account_id: get("CREDVAULT_ACCOUNT_ID").unwrap_or_else(|| "credvault".to_string()),
            issuer,
            allowed_redirect_urls: list(get("CREDVAULT_ALLOWED_REDIRECT_URLS")),
            extra_allowed_origins: list(get("CREDVAULT_ALLOWED_ORIGINS")),
            aws_endpoint_url: get("CREDVAULT_AWS_ENDPOINT_URL").filter(|v| !v.is_empty()),
            aws_timeouts,
            user_token_lifetime: secs("CREDVAULT_USER_TOKEN_SECONDS", 3600)?,
            default_minimum_validity: secs("CREDVAULT_MINIMUM_VALIDITY_SECONDS", 300)?,
            login_request_lifetime: secs("CREDVAULT_LOGIN_REQUEST_SECONDS", 600)?,
            vault_code_lifetime: secs("CREDVAULT_VAULT_CODE_SECONDS", 60)?,
            refresh,
            data_key_cache_entries: 1000,
            data_key_cache_max_age: secs("CREDVAULT_DATA_KEY_CACHE_SECONDS", 300)?,
            grant_cache_max_age: secs("CREDVAULT_GRANT_CACHE_SECONDS", 10)?,
            audit_retention: Duration::from_secs(secs("CREDVAULT_AUDIT_RETENTION_DAYS", 90)?.as_secs() * 86_400),
            insecure_allow_http_loopback: get("CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK").as_deref() == Some("true"),
            keep_alive: KeepAliveLimits {
                max_credentials: count(
                    "CREDVAULT_KEEP_ALIVE_MAX_CREDENTIALS",
                    KeepAliveLimits::default().max_credentials,
                )?,
                concurrency: count(
                    "CREDVAULT_KEEP_ALIVE_CONCURRENCY",
                    KeepAliveLimits::default().concurrency,
                )?,
                time_budget: secs(
                    "CREDVAULT_KEEP_ALIVE_TIME_BUDGET_SECONDS",
                    KeepAliveLimits::default().time_budget.as_secs(),
                )?,
            },
        };
        if !crate::ids::is_valid_id(&config.account_id) || config.account_id.contains('.') {
            return Err(invalid("CREDVAULT_ACCOUNT_ID", "must be an id without dots"));
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.refresh.validate()?;
        self.validate_aws_timeouts()?;
        if self.grant_cache_max_age > Duration::from_secs(30) {
            return Err(invalid(
                "CREDVAULT_GRANT_CACHE_SECONDS",
                "at most 30: a revoked grant must stop working within 30 s",
            ));
        }
        for url in &self.allowed_redirect_urls {
            url::Url::parse(url).map_err(|e| invalid("CREDVAULT_ALLOWED_REDIRECT_URLS", format!("{url}: {e}")))?;
        }
        for origin in &self.extra_allowed_origins {
            if origin_of(origin).as_deref() != Some(origin.as_str()) {
                return Err(invalid(
                    "CREDVAULT_ALLOWED_ORIGINS",
                    format!("{origin} is not an origin (scheme://host[:port], nothing after it)"),
                ));
            }
        }
        let KeepAliveLimits {
            max_credentials,
            concurrency,
            time_budget,
        } = &self.keep_alive;
        if *max_credentials == 0 || !(1..=64).contains(concurrency) {
            return Err(invalid(
                "CREDVAULT_KEEP_ALIVE_CONCURRENCY",
                "a run examines at least one credential, with 1 to 64 refreshes at once",
            ));
        }
        if *time_budget < self.refresh.lease_length * 2 {
            return Err(invalid(
                "CREDVAULT_KEEP_ALIVE_TIME_BUDGET_SECONDS",
                format!(
                    "{time_budget:?} leaves no room for a refresh: at least two leases ({:?})",
                    self.refresh.lease_length * 2
                ),
            ));
        }
        if self.user_token_lifetime.is_zero() || self.vault_code_lifetime.is_zero() {
            return Err(invalid("CREDVAULT_USER_TOKEN_SECONDS", "lifetimes must be positive"));
        }
        Ok(())
    }

    /// A lease holder makes DynamoDB and KMS calls around its provider call: the commit after it must fit
    /// in what the lease keeps for it (`RefreshTiming::commit_allowance`), so no stalled write can run
    /// past the lease while a rotated refresh token exists only in this process.
    fn validate_aws_timeouts(&self) -> Result<(), ConfigError> {
        let AwsTimeouts { operation, attempt } = self.aws_timeouts;
        if operation.is_zero() || attempt.is_zero() {
            return Err(invalid(
                "CREDVAULT_AWS_OPERATION_TIMEOUT_MS",
                "timeouts must be positive",
            ));
        }
        if attempt > operation {
            return Err(invalid(
                "CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS",
                format!("the attempt timeout {attempt:?} is longer than the operation timeout {operation:?}"),
            ));
        }
        if operation > self.refresh.commit_allowance() {
            return Err(invalid(
                "CREDVAULT_AWS_OPERATION_TIMEOUT_MS",
                format!(
                    "{operation:?} is longer than the {:?} a lease of {:?} keeps for the commit (a sixth); \
                     raise CREDVAULT_LEASE_SECONDS or lower the timeout",
                    self.refresh.commit_allowance(),
                    self.refresh.lease_length
                ),
            ));
        }
        Ok(())
    }

    /// The audience the Authress SDK puts in service-client tokens.
    pub fn account_audience(&self) -> String {
        format!("{}.accounts.authress.io", self.account_id)
    }

    /// The provider redirect URI for a connection: one per connection, as a mix-up defence.
    pub fn callback_url(&self, connection_id: &str) -> String {
        callback_url(&self.issuer, connection_id)
    }

    /// The origins browser apps may call the login and credential routes from (CORS): the origin of
    /// every allowed redirect URL (an app that logs in there runs there), and the explicit ones.
    pub fn allowed_origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = self.allowed_redirect_urls.iter().filter_map(|u| origin_of(u)).collect();
        origins.extend(self.extra_allowed_origins.iter().cloned());
        origins.sort();
        origins.dedup();
        origins
    }
}

/// A comma-separated setting as its non-empty, trimmed items.
fn list(value: Option<String>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The web origin of a URL (`https://app.example.com:8443`), as browsers send it in `Origin`;
/// `None` for URLs without one (`file:`, custom schemes of native apps).
pub fn origin_of(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// The provider redirect URI of a connection of the vault at `issuer`.
pub fn callback_url(issuer: &str, connection_id: &str) -> String {
    format!("{issuer}/api/callback/{connection_id}")
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: Vec<(String, String)> = [
            ("CREDVAULT_TABLE", "t"),
            ("CREDVAULT_DATA_KEY_ID", "k"),
            ("CREDVAULT_SIGNING_KEY_ID", "s"),
            ("CREDVAULT_ISSUER", "https://vault.example.com/"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        vars.extend(extra.iter().map(|(a, b)| (a.to_string(), b.to_string())));
        Config::from_lookup(|name| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_are_safe_and_issuer_loses_its_trailing_slash() {
        let c = base(&[]).unwrap();
        assert_eq!(c.issuer, "https://vault.example.com");
        assert!(c.refresh.worst_provider_time() < c.refresh.lease_length);
        assert_eq!(c.callback_url("con_a"), "https://vault.example.com/api/callback/con_a");
    }

    #[test]
    fn allowed_origins_are_the_redirect_urls_origins_and_the_explicit_ones() {
        let c = base(&[
            (
                "CREDVAULT_ALLOWED_REDIRECT_URLS",
                "https://app.example.com/cb, https://app.example.com/other,http://localhost:5173/x?y=1,myapp://callback",
            ),
            ("CREDVAULT_ALLOWED_ORIGINS", "https://console.example.org:8443, https://app.example.com"),
        ])
        .unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.allowed_origins(),
            [
                "http://localhost:5173",
                "https://app.example.com",
                "https://console.example.org:8443"
            ],
            "one per origin; a native app's custom scheme has none"
        );
        for not_an_origin in [
            "https://app.example.com/",
            "https://app.example.com/path",
            "app.example.com",
            "*",
        ] {
            let err = base(&[("CREDVAULT_ALLOWED_ORIGINS", not_an_origin)])
                .and_then(|c| c.validate())
                .unwrap_err()
                .to_string();
            assert!(err.contains("CREDVAULT_ALLOWED_ORIGINS"), "{not_an_origin}: {err}");
        }
    }

    #[test]
    fn provider_timeout_close_to_the_lease_is_refused_at_start() {
        let err = base(&[
            ("CREDVAULT_LEASE_SECONDS", "10"),
            ("CREDVAULT_PROVIDER_TIMEOUT_MS", "5000"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("CREDVAULT_LEASE_SECONDS"), "{err}");
    }

    #[test]
    fn each_missing_required_setting_is_named() {
        let all = [
            ("CREDVAULT_TABLE", "t"),
            ("CREDVAULT_DATA_KEY_ID", "k"),
            ("CREDVAULT_SIGNING_KEY_ID", "s"),
            ("CREDVAULT_ISSUER", "https://vault.example.com"),
        ];
        for (missing, _) in all {
            let err = Config::from_lookup(|name| {
                all.iter()
                    .find(|(k, _)| *k == name && *k != missing)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_err();
            assert!(
                matches!(err, ConfigError::Missing(name) if name == missing),
                "{missing}: {err}"
            );
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn aws_timeouts_are_read_and_checked_against_the_lease() {
        let c = base(&[
            ("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", "2500"),
            ("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS", "700"),
        ])
        .unwrap();
        assert_eq!(
            c.aws_timeouts,
            AwsTimeouts {
                operation: Duration::from_millis(2500),
                attempt: Duration::from_millis(700)
            }
        );
        // A 30 s lease keeps 5 s for the commit: a 5 s operation timeout fits, 5.001 s does not.
        assert!(base(&[("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", "5000")]).is_ok());
        let err = base(&[("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", "5001")]).unwrap_err();
        assert!(err.to_string().contains("CREDVAULT_AWS_OPERATION_TIMEOUT_MS"), "{err}");
        let err = base(&[
            ("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", "1000"),
            ("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS", "1001"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS"), "{err}");
        assert!(base(&[("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS", "0")]).is_err());
    }
}
