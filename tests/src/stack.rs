//! The whole local vault in one process: moto (DynamoDB + KMS), the fake provider, and the gateway
//! over the real function handlers, with a seeded connection. Tests, benchmarks and `make dev` use it.

use std::collections::BTreeMap;
use std::sync::Arc;

use credvault::config::RefreshTiming;
use credvault::oauth::pkce::s256_challenge;
use credvault::oauth::{Connection, TokenRequestEncoding};
use credvault::{Config, Instance};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::aws::{CallCounters, TestAws, vault_clients};
use crate::aws_proxy::AwsProxy;
use crate::clock::TestClock;
use crate::fake_provider::{CLIENT_ID, CLIENT_SECRET, FakeProvider};
use crate::gateway::Gateway;
use crate::log_subscription::LogSubscription;

pub const CONNECTION_ID: &str = "con_demo";
pub const APP_REDIRECT_URL: &str = "https://app.example.com/after-login";

pub struct StackOptions {
    /// How many warm "Lambda instances" serve each function.
    pub instances: usize,
    pub refresh: RefreshTiming,
    pub token_request_encoding: TokenRequestEncoding,
    pub token_endpoint_auth_method: credvault::oauth::client_auth::TokenEndpointAuthMethod,
    /// The connection's client secret, which the fake provider is told to accept.
    pub client_secret: String,
    /// The connection's dialect (the fake provider's is a knob of its own).
    pub dialect: credvault::oauth::dialect::Dialect,
    /// The connection's metadata fields (returned beside the access token).
    pub metadata_fields: Vec<String>,
    /// The connection's `keepAliveDays`.
    pub keep_alive_days: Option<u32>,
    pub extra_redirect_urls: Vec<String>,
    /// Serve the demo app (`crate::demo`) on this port of `localhost` (0 picks a free one); its URL
    /// is an allowed redirect URL, so its origin is a CORS origin of the vault.
    pub demo_app_port: Option<u16>,
    /// Gateway port; 0 picks a free one.
    pub port: u16,
    pub default_connection_properties: BTreeMap<String, String>,
    /// Use this table and these keys (made by a deployed template) instead of fresh ones.
    pub existing_resources: Option<TestAws>,
    /// Put the fault proxy between the vault and moto (for throttling tests).
    pub aws_proxy: bool,
    /// Last word on the vault's config (lifetimes, ...), applied before it is validated.
    pub configure: fn(&mut Config),
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            instances: 1,
            // Short, so fault tests finish fast; still passes the start-up check.
            refresh: RefreshTiming {
                lease_length: std::time::Duration::from_secs(9),
                provider_timeout: std::time::Duration::from_millis(800),
                provider_attempts: 3,
                poll_deadline: std::time::Duration::from_secs(8),
                unknown_outcome_wait: std::time::Duration::from_secs(9),
            },
            token_request_encoding: TokenRequestEncoding::Form,
            token_endpoint_auth_method: credvault::oauth::client_auth::TokenEndpointAuthMethod::ClientSecretPost,
            client_secret: CLIENT_SECRET.to_string(),
            dialect: credvault::oauth::dialect::Dialect::Standard,
            metadata_fields: Vec::new(),
            keep_alive_days: None,
            extra_redirect_urls: Vec::new(),
            demo_app_port: None,
            port: 0,
            default_connection_properties: BTreeMap::from([("scope".to_string(), "openid profile email".to_string())]),
            existing_resources: None,
            aws_proxy: false,
            configure: |_| {},
        }
    }
}

impl StackOptions {
    /// The deployed AWS timeouts (`deployed_aws_timeouts`) and the 60 s lease they need, for runs
    /// that make many calls into one moto on a loaded machine (benchmarks, long keep-alive runs).
    pub fn deployed_timeouts() -> Self {
        Self {
            refresh: RefreshTiming {
                lease_length: std::time::Duration::from_secs(60),
                ..RefreshTiming::default()
            },
            configure: deployed_aws_timeouts,
            ..Self::default()
        }
    }
}

pub struct LocalStack {
    pub aws: TestAws,
    /// Calls the vault's own DynamoDB and KMS clients made.
    pub counters: Arc<CallCounters>,
    /// The fault proxy the vault talks through, when asked for.
    pub aws_proxy: Option<AwsProxy>,
    pub provider: FakeProvider,
    pub base_url: String,
    /// The demo app's origin, when `StackOptions::demo_app_port` asked for it.
    pub demo_url: Option<String>,
    pub config: Config,
    pub connection_id: String,
    /// An extra instance for direct calls from tests (seeding, inspecting).
    pub instance: Arc<Instance>,
    /// The vault's clock: `advance` it to age stored tokens.
    pub clock: TestClock,
    /// credential-fetch's log, as audit-ingest's subscription reads it: `audit_flushed` before reading
    /// the trail of reads.
    pub audit_log: Arc<LogSubscription>,
    /// The access key of the administrator the stack bootstraps, as an operator would.
    pub admin_key: String,
    /// Follows no redirects, so every hop of the login can be checked.
    pub http: reqwest::Client,
}

/// A completed login, as the app sees it.
pub struct LoggedIn {
    pub user_id: String,
    pub access_token: String,
    pub id_token: String,
    pub expires_in: u64,
}

impl LocalStack {
    pub async fn start(mut options: StackOptions) -> Self {
        // With RUST_LOG set, show the vault's logs in the test output (cargo test captures them).
        if let Ok(filter) = std::env::var("RUST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let aws = match options.existing_resources.take() {
            Some(existing) => existing,
            None => TestAws::fresh().await,
        };
        let provider = FakeProvider::start().await;
        let client_secret = options.client_secret.clone();
        provider.set_knobs(|k| k.client_secret = client_secret);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", options.port))
            .await
            .expect("bind gateway");
        let base_url = format!("http://{}", listener.local_addr().expect("gateway addr"));
        let mut redirect_urls = vec![APP_REDIRECT_URL.to_string()];
        redirect_urls.extend(options.extra_redirect_urls.iter().cloned());
        let demo_app = match options.demo_app_port {
            Some(port) => {
                let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .expect("bind demo app");
                let port = listener.local_addr().expect("demo app addr").port();
                // `localhost`, where the vault is `127.0.0.1`: another origin, as in production.
                let url = format!("http://localhost:{port}");
                redirect_urls.push(format!("{url}/"));
                Some((listener, url))
            }
            None => None,
        };
        let vars = BTreeMap::from([
            ("CREDVAULT_TABLE", aws.table.clone()),
            ("CREDVAULT_DATA_KEY_ID", aws.data_key_id.clone()),
            ("CREDVAULT_SIGNING_KEY_ID", aws.signing_key_id.clone()),
            ("CREDVAULT_ISSUER", base_url.clone()),
            ("CREDVAULT_ALLOWED_REDIRECT_URLS", redirect_urls.join(",")),
            ("CREDVAULT_AWS_ENDPOINT_URL", aws.endpoint.clone()),
            ("CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK", "true".to_string()),
        ]);
        let mut config = Config::from_lookup(|name| vars.get(name).cloned()).expect("stack config");
        config.refresh = options.refresh.clone();
        // A sixth of the stack's short lease: short enough for the start-up check, long enough for a
        // moto on a busy two-core machine.
        config.aws_timeouts = credvault::config::AwsTimeouts {
            operation: options.refresh.commit_allowance(),
            attempt: options.refresh.commit_allowance() * 2 / 3,
        };
        (options.configure)(&mut config);
        config.validate().expect("stack refresh timing");

        let aws_proxy = if options.aws_proxy {
            Some(AwsProxy::start(&aws.endpoint).await)
        } else {
            None
        };
        let vault_endpoint = aws_proxy.as_ref().map_or(aws.endpoint.clone(), |p| p.url.clone());
        let counters = Arc::new(CallCounters::default());
        let clock = TestClock::default();
        let (dynamodb, kms) = vault_clients(&vault_endpoint, &counters);
        // audit-ingest is a function of its own, with its own clients (uncounted, straight to moto),
        // fed by the stand-in of credential-fetch's log subscription.
        let (ingest_dynamodb, ingest_kms) = vault_clients(&aws.endpoint, &Arc::new(CallCounters::default()));
        let ingest = Instance::from_clients(config.clone(), ingest_dynamodb, ingest_kms, Arc::new(clock.clone()))
            .expect("audit-ingest instance");
        let audit_log = LogSubscription::start(Arc::clone(&ingest.audit));
        let build = || {
            Instance::with_audit_log(
                config.clone(),
                dynamodb.clone(),
                kms.clone(),
                Arc::new(clock.clone()),
                audit_log.clone(),
            )
            .expect("instance")
        };
        let instance = Arc::new(build());
        let instances = (0..options.instances.max(1)).map(|_| build()).collect();
        Gateway::new(instances).serve(listener).await;
        let demo_url = match demo_app {
            Some((listener, url)) => {
                crate::demo::serve(listener, &base_url, CONNECTION_ID).await;
                Some(url)
            }
            None => None,
        };

        let connection = demo_connection(&provider, CONNECTION_ID, &options);
        credvault::store::connections::put(&instance.table, &instance.envelope, &connection, true)
            .await
            .expect("seed connection");

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        let (_, admin_key) = credvault::management::bootstrap::create_admin(
            &instance.access_admin(),
            &instance.service_client_admin(),
            "local administrator",
        )
        .await
        .expect("bootstrap admin");
        let admin_key = secrecy::ExposeSecret::expose_secret(&admin_key).to_string();
        counters.reset();
        Self {
            admin_key,
            audit_log,
            aws,
            counters,
            clock,
            aws_proxy,
            provider,
            base_url,
            demo_url,
            config,
            connection_id: CONNECTION_ID.to_string(),
            instance,
            http,
        }
    }

    /// Waits until the audit lines of every read so far are in the table (audit-ingest stored them).
    pub async fn audit_flushed(&self) {
        self.audit_log.flushed().await;
    }

    /// Adds another connection to the same provider (for mix-up tests).
    pub async fn add_connection(&self, connection_id: &str) {
        let connection = demo_connection(&self.provider, connection_id, &StackOptions::default());
        credvault::store::connections::put(&self.instance.table, &self.instance.envelope, &connection, true)
            .await
            .expect("add connection");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// `POST /api/authentication` with a JSON body.
    pub async fn start_login(&self, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/authentication"))
            .json(body)
            .send()
            .await
            .expect("start login")
    }

    /// A valid start body for `verifier`.
    pub fn start_body(&self, verifier: &str) -> Value {
        json!({
            "connectionId": self.connection_id,
            "redirectUrl": APP_REDIRECT_URL,
            "codeChallenge": s256_challenge(verifier),
            "codeChallengeMethod": "S256",
            "antiAbuseHash": "v2;0;0;ignored",
        })
    }

    /// Starts a login and lets the provider consent: returns (authenticationRequestId, callback URL).
    pub async fn login_until_callback(&self, verifier: &str) -> (String, String) {
        self.login_until_callback_at(&self.connection_id, verifier).await
    }

    /// The same, through another connection of the stack.
    pub async fn login_until_callback_at(&self, connection_id: &str, verifier: &str) -> (String, String) {
        let mut body = self.start_body(verifier);
        body["connectionId"] = json!(connection_id);
        let started: Value = self.start_login(&body).await.json().await.expect("start json");
        let auth_url = started["authenticationUrl"].as_str().expect("authenticationUrl");
        let consent = self.http.get(auth_url).send().await.expect("provider authorize");
        assert_eq!(consent.status(), 302, "provider should redirect to the vault callback");
        (
            started["authenticationRequestId"]
                .as_str()
                .expect("request id")
                .to_string(),
            location(&consent),
        )
    }

    /// A login of another user of the provider (its subject for this login).
    pub async fn login_as(&self, subject: &str) -> LoggedIn {
        self.provider.set_knobs(|k| k.subject = subject.to_string());
        self.login().await
    }

    /// Runs the whole browser flow and the token exchange.
    pub async fn login(&self) -> LoggedIn {
        self.login_at(&self.connection_id).await
    }

    /// The same, through another connection of the stack.
    pub async fn login_at(&self, connection_id: &str) -> LoggedIn {
        let verifier = credvault::random::token(32);
        let (request_id, callback) = self.login_until_callback_at(connection_id, &verifier).await;
        let back = self.http.get(&callback).send().await.expect("callback");
        assert_eq!(back.status(), 302, "callback should redirect to the app");
        let app = url::Url::parse(&location(&back)).expect("app redirect");
        let query: BTreeMap<String, String> = app.query_pairs().into_owned().collect();
        let code = query
            .get("code")
            .unwrap_or_else(|| panic!("no code in app redirect: {query:?}"));
        assert_eq!(query.get("nonce"), Some(&request_id));
        let resp = self.exchange(&request_id, code, &verifier, APP_REDIRECT_URL).await;
        assert_eq!(resp.status(), 200);
        let tokens: Value = resp.json().await.expect("tokens json");
        let access_token = tokens["access_token"].as_str().expect("access_token").to_string();
        let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&access_token)
            .expect("decode")
            .claims;
        LoggedIn {
            user_id: claims["sub"].as_str().expect("sub").to_string(),
            access_token,
            id_token: tokens["id_token"].as_str().unwrap_or_default().to_string(),
            expires_in: tokens["expires_in"].as_u64().unwrap_or_default(),
        }
    }

    pub async fn exchange(
        &self,
        request_id: &str,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/authentication/{request_id}/tokens")))
            .json(&json!({"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect_uri}))
            .send()
            .await
            .expect("token exchange")
    }

    /// `GET /v1/connections/{c}/users/{u}/credentials`, user id percent-encoded as the SDKs do.
    pub async fn fetch_credentials(&self, bearer: &str, user_id: &str, min_validity: Option<u64>) -> reqwest::Response {
        let mut url = self.url(&format!(
            "/v1/connections/{}/users/{}/credentials",
            self.connection_id,
            encode(user_id)
        ));
        if let Some(v) = min_validity {
            url.push_str(&format!("?minimumValiditySeconds={v}"));
        }
        self.http
            .get(url)
            .bearer_auth(bearer)
            .send()
            .await
            .expect("fetch credentials")
    }

    /// A service-client token for `access_key`, as the Authress SDK signs it.
    pub fn client_token(&self, access_key: &str) -> String {
        crate::service_client::client_token(access_key, &self.base_url, |_, _| {})
    }

    /// Calls the API with a bearer token and an optional JSON body; returns the status and JSON body.
    pub async fn call(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, self.url(path));
        if let Some(bearer) = bearer {
            req = req.bearer_auth(bearer);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("call");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// As the administrator: makes a service client with one access key; returns (client id, access key).
    pub async fn new_client(&self, name: &str) -> (String, String) {
        let admin = self.client_token(&self.admin_key);
        let (status, client) = self
            .call("POST", "/v1/clients", Some(&admin), Some(&json!({"name": name})))
            .await;
        assert_eq!(status, 201, "{client}");
        let id = client["clientId"].as_str().expect("clientId").to_string();
        let (status, key) = self
            .call("POST", &format!("/v1/clients/{id}/access-keys"), Some(&admin), None)
            .await;
        assert_eq!(status, 201, "{key}");
        (id, key["accessKey"].as_str().expect("accessKey").to_string())
    }

    /// The user disconnects (`DELETE .../credentials` of the stack's connection): the vault revokes the
    /// refresh token it held at the provider, which then no longer accepts it.
    pub async fn disconnect_and_expect_revoked(&self, user: &LoggedIn) {
        let stored = self
            .stored_refresh_token(&user.user_id)
            .await
            .expect("a stored refresh token");
        let revocations = self.provider.counters().revocations;
        let path = format!(
            "/v1/connections/{}/users/{}/credentials",
            self.connection_id,
            encode(&user.user_id)
        );
        let (status, _) = self.call("DELETE", &path, Some(&user.access_token), None).await;
        assert_eq!(status, 204);
        assert_eq!(self.provider.counters().revocations, revocations + 1);
        assert!(!self.provider.refresh_token_is_live(&stored), "revoked at the provider");
    }

    /// `count` credentials of the stack's connection that nobody refreshes (users `idle0`, `idle1`, ...),
    /// due for keep-alive `due_in` seconds from now, written straight to the table with placeholder
    /// ciphertexts the vault would fail to open, so opening one shows as an error. For runs over many
    /// credentials without as many logins.
    pub async fn seed_idle_credentials(&self, count: usize, due_in: i64) -> Vec<String> {
        use credvault::clock::Clock;
        use credvault::store::credentials::{NewTokens, save_after_login};
        let connection =
            credvault::store::connections::get(&self.instance.table, &self.instance.envelope, &self.connection_id)
                .await
                .expect("read connection")
                .expect("the stack's connection");
        let issued = credvault::oauth::connection::IssuedUnder::of(&connection);
        let now = self.clock.now_secs();
        let users: Vec<String> = (0..count).map(|i| format!("{}|idle{i}", self.connection_id)).collect();
        for chunk in users.chunks(25) {
            let writes = chunk
                .iter()
                .map(|user| {
                    let tokens = NewTokens {
                        access_token: b"placeholder: never opened".to_vec(),
                        refresh_token: Some(b"placeholder: never opened".to_vec()),
                        access_expires_at: now + 3600,
                        access_issued_at: now,
                        token_type: "Bearer".into(),
                        scope: None,
                        metadata: Default::default(),
                        keep_alive_due_at: Some(now + due_in),
                    };
                    save_after_login(
                        &self.instance.table,
                        &self.connection_id,
                        user,
                        None,
                        tokens,
                        &issued,
                        now,
                    )
                })
                .collect();
            for written in crate::join_all(writes).await {
                written.expect("seed credential");
            }
        }
        users
    }

    /// The refresh token the vault holds for `user_id`, decrypted (tests only: the API never reveals it).
    pub async fn stored_refresh_token(&self, user_id: &str) -> Option<String> {
        self.stored_refresh_token_at(&self.connection_id, user_id).await
    }

    /// The same, of a credential of another connection of the stack.
    pub async fn stored_refresh_token_at(&self, connection_id: &str, user_id: &str) -> Option<String> {
        use credvault::store::credentials::{ATTR_REFRESH_TOKEN, context};
        use secrecy::ExposeSecret;
        let item = self.credential_at(connection_id, user_id).await?;
        let ctx = context(&self.instance.table, connection_id, user_id, ATTR_REFRESH_TOKEN);
        let sealed = item.refresh_token?;
        Some(
            self.instance
                .envelope
                .open_str(&ctx, &sealed)
                .await
                .expect("open refresh token")
                .expose_secret()
                .to_string(),
        )
    }

    /// Every item of the table but audit events, as comparable text: a test takes one before and after
    /// a refused request to show it changed nothing (refusals are audited; audit.rs checks those).
    pub async fn state_snapshot(&self) -> Vec<String> {
        let mut items: Vec<String> = self
            .aws
            .scan_all()
            .await
            .iter()
            .filter(|item| {
                item.get("pk")
                    .and_then(|pk| pk.as_s().ok())
                    .is_some_and(|pk| !pk.starts_with("AUDIT#"))
            })
            .map(|item| format!("{:?}", item.iter().collect::<BTreeMap<_, _>>()))
            .collect();
        items.sort();
        items
    }

    /// The stored credential item as DynamoDB holds it, every attribute, for before/after comparisons.
    pub async fn raw_credential(&self, user_id: &str) -> Option<credvault::store::Item> {
        use aws_sdk_dynamodb::types::AttributeValue;
        self.aws
            .dynamodb
            .get_item()
            .table_name(&self.aws.table)
            .key(
                "pk",
                AttributeValue::S(credvault::store::credentials::pk(&self.connection_id)),
            )
            .key("sk", AttributeValue::S(credvault::store::credentials::sk(user_id)))
            .consistent_read(true)
            .send()
            .await
            .expect("read raw credential")
            .item
    }

    /// Leaves a lease on the stored credential as an instance that claimed it and died would: owned by
    /// `owner`, running until `expires_at_ms`, on the version stored now.
    pub async fn plant_lease(&self, user_id: &str, owner: &str, expires_at_ms: i64) {
        use aws_sdk_dynamodb::types::AttributeValue;
        let item = self.credential(user_id).await.expect("stored credential");
        self.aws
            .dynamodb
            .update_item()
            .table_name(&self.aws.table)
            .key(
                "pk",
                AttributeValue::S(credvault::store::credentials::pk(&self.connection_id)),
            )
            .key("sk", AttributeValue::S(credvault::store::credentials::sk(user_id)))
            .update_expression("SET leaseOwner = :o, leaseExpiresAtMs = :u")
            .condition_expression("tokenVersion = :v")
            .expression_attribute_values(":o", AttributeValue::S(owner.into()))
            .expression_attribute_values(":u", AttributeValue::N(expires_at_ms.to_string()))
            .expression_attribute_values(":v", AttributeValue::N(item.token_version.to_string()))
            .send()
            .await
            .expect("plant lease");
    }

    /// The stored credential item, decoded.
    pub async fn credential(&self, user_id: &str) -> Option<credvault::store::credentials::CredentialItem> {
        self.credential_at(&self.connection_id, user_id).await
    }

    /// The same, of another connection of the stack.
    pub async fn credential_at(
        &self,
        connection_id: &str,
        user_id: &str,
    ) -> Option<credvault::store::credentials::CredentialItem> {
        credvault::store::credentials::get(&self.instance.table, connection_id, user_id)
            .await
            .expect("read credential")
    }
}

/// `StackOptions::configure` for runs that push one moto process hard (benchmarks): the deployed AWS
/// timeouts, not the test stack's short ones, so the figures are the protocol's, not the emulator's
/// queue turned into timeouts. Needs a lease of at least 60 s (the timeout fits in a sixth of it).
pub fn deployed_aws_timeouts(config: &mut Config) {
    config.aws_timeouts = credvault::config::AwsTimeouts {
        operation: std::time::Duration::from_secs(10),
        attempt: std::time::Duration::from_secs(10),
    }
}

/// A connection to `provider` as the stack seeds it (for tests that run the protocol without a stack).
pub fn provider_connection(provider: &FakeProvider, connection_id: &str) -> Connection {
    demo_connection(provider, connection_id, &StackOptions::default())
}

/// The connection to the fake provider that the stack seeds.
fn demo_connection(provider: &FakeProvider, connection_id: &str, options: &StackOptions) -> Connection {
    let issuer = provider.issuer().to_string();
    Connection {
        connection_id: connection_id.to_string(),
        name: "Demo provider".to_string(),
        authentication_url: format!("{issuer}/authorize"),
        token_url: format!("{issuer}/token"),
        issuer_url: Some(issuer.clone()),
        revocation_url: Some(format!("{issuer}/revoke")),
        user_info_url: None,
        client_id: CLIENT_ID.to_string(),
        client_secret: SecretString::from(options.client_secret.clone()),
        default_connection_properties: options.default_connection_properties.clone(),
        token_request_encoding: options.token_request_encoding,
        token_endpoint_auth_method: options.token_endpoint_auth_method,
        client_assertion_kid: None,
        client_assertion_certificate: None,
        dialect: options.dialect,
        metadata_fields: options.metadata_fields.clone(),
        keep_alive_days: options.keep_alive_days,
        user_id_expression: credvault::oauth::connection::DEFAULT_USER_ID_EXPRESSION.to_string(),
        generation: credvault::random::token(9),
    }
}

pub fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Location header on {}", resp.status()))
        .to_string()
}

pub fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
