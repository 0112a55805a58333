//! AWS clients pointed at moto, with call counters, and a fresh table and fresh keys per test so tests
//! run in parallel without sharing state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};

/// Calls counted by operation, as an SDK interceptor sees them (one per logical call).
#[derive(Default, Debug)]
pub struct CallCounters {
    pub dynamodb_reads: AtomicU64,
    pub dynamodb_writes: AtomicU64,
    pub kms_calls: AtomicU64,
    /// Of the reads: Scans (no request path makes one) and Queries.
    pub dynamodb_scans: AtomicU64,
    pub dynamodb_queries: AtomicU64,
}

impl CallCounters {
    pub fn reset(&self) {
        self.dynamodb_reads.store(0, Ordering::SeqCst);
        self.dynamodb_writes.store(0, Ordering::SeqCst);
        self.kms_calls.store(0, Ordering::SeqCst);
        self.dynamodb_scans.store(0, Ordering::SeqCst);
        self.dynamodb_queries.store(0, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.dynamodb_reads.load(Ordering::SeqCst),
            self.dynamodb_writes.load(Ordering::SeqCst),
            self.kms_calls.load(Ordering::SeqCst),
        )
    }
}

#[derive(Debug)]
struct DynamoCounter(Arc<CallCounters>);

impl aws_sdk_dynamodb::config::Intercept for DynamoCounter {
    fn name(&self) -> &'static str {
        "credvault-test-dynamodb-counter"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        use aws_sdk_dynamodb::operation::{get_item::GetItemInput, query::QueryInput, scan::ScanInput};
        let input = context.input();
        let is_read = input.downcast_ref::<GetItemInput>().is_some()
            || input.downcast_ref::<QueryInput>().is_some()
            || input.downcast_ref::<ScanInput>().is_some();
        let counter = if is_read {
            &self.0.dynamodb_reads
        } else {
            &self.0.dynamodb_writes
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if input.downcast_ref::<ScanInput>().is_some() {
            self.0.dynamodb_scans.fetch_add(1, Ordering::SeqCst);
        }
        if input.downcast_ref::<QueryInput>().is_some() {
            self.0.dynamodb_queries.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[derive(Debug)]
struct KmsCounter(Arc<CallCounters>);

impl aws_sdk_kms::config::Intercept for KmsCounter {
    fn name(&self) -> &'static str {
        "credvault-test-kms-counter"
    }

    fn read_before_execution(
        &self,
        _context: &aws_sdk_kms::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_kms::config::ConfigBag,
    ) -> Result<(), aws_sdk_kms::error::BoxError> {
        self.0.kms_calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// The vault's own clients: counted, with the vault's retry settings, at `endpoint` (moto, or the
/// fault proxy in front of it).
pub fn vault_clients(endpoint: &str, counters: &Arc<CallCounters>) -> (aws_sdk_dynamodb::Client, aws_sdk_kms::Client) {
    clients(endpoint, Some(counters))
}

fn clients(endpoint: &str, counters: Option<&Arc<CallCounters>>) -> (aws_sdk_dynamodb::Client, aws_sdk_kms::Client) {
    let creds = Credentials::new("testing", "testing", None, None, "credvault-tests");
    let mut dynamodb = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .endpoint_url(endpoint)
        .retry_config(credvault::instance::dynamodb_retry_config());
    let mut kms = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_kms::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint);
    if let Some(counters) = counters {
        dynamodb = dynamodb.interceptor(DynamoCounter(counters.clone()));
        kms = kms.interceptor(KmsCounter(counters.clone()));
    }
    (
        aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
        aws_sdk_kms::Client::from_conf(kms.build()),
    )
}

/// The test's own view of the emulator (uncounted clients) and the table and keys of one test.
pub struct TestAws {
    pub endpoint: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub table: String,
    pub data_key_id: String,
    pub signing_key_id: String,
}

impl TestAws {
    /// A new table and new keys on the shared moto server.
    pub async fn fresh() -> Self {
        Self::fresh_at(&crate::moto::endpoint()).await
    }

    pub async fn fresh_at(endpoint: &str) -> Self {
        let (dynamodb, kms) = clients(endpoint, None);
        let table = format!("credvault-{}", credvault::random::token(8).replace(['-', '_'], "x"));
        create_table(&dynamodb, &table).await;
        let create_key = |usage: KeyUsageType, spec: KeySpec| {
            let kms = kms.clone();
            async move {
                kms.create_key()
                    .key_usage(usage)
                    .key_spec(spec)
                    .send()
                    .await
                    .expect("create key")
                    .key_metadata
                    .expect("key metadata")
                    .key_id
            }
        };
        let data_key_id = create_key(KeyUsageType::EncryptDecrypt, KeySpec::SymmetricDefault).await;
        let signing_key_id = create_key(KeyUsageType::SignVerify, KeySpec::EccNistP256).await;
        Self {
            endpoint: endpoint.to_string(),
            dynamodb,
            kms,
            table,
            data_key_id,
            signing_key_id,
        }
    }

    /// Resources made by someone else (the deployment rehearsal's stack).
    pub fn existing(endpoint: &str, table: &str, data_key_id: &str, signing_key_id: &str) -> Self {
        let (dynamodb, kms) = clients(endpoint, None);
        Self {
            endpoint: endpoint.to_string(),
            dynamodb,
            kms,
            table: table.to_string(),
            data_key_id: data_key_id.to_string(),
            signing_key_id: signing_key_id.to_string(),
        }
    }

    /// Every item of the table, raw: every page, so "every item" checks do not stop at 1 MB.
    pub async fn scan_all(&self) -> Vec<credvault::store::Item> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .expect("scan");
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return items,
            }
        }
    }
}

pub async fn create_table(dynamodb: &aws_sdk_dynamodb::Client, table: &str) {
    use credvault::store::keep_alive;
    let attr_of = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute")
    };
    let attr = |name: &str| attr_of(name, ScalarAttributeType::S);
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    dynamodb
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        // The sparse keep-alive index, as infra/template.yaml defines it (store/keep_alive.rs).
        .attribute_definitions(attr(keep_alive::ATTR_SHARD))
        .attribute_definitions(attr_of(keep_alive::ATTR_DUE, ScalarAttributeType::N))
        .global_secondary_indexes(
            aws_sdk_dynamodb::types::GlobalSecondaryIndex::builder()
                .index_name(keep_alive::INDEX)
                .key_schema(key(keep_alive::ATTR_SHARD, KeyType::Hash))
                .key_schema(key(keep_alive::ATTR_DUE, KeyType::Range))
                .projection(
                    aws_sdk_dynamodb::types::Projection::builder()
                        .projection_type(aws_sdk_dynamodb::types::ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .expect("keep-alive index"),
        )
        // Lifecycle events are read from the stream (credential-events), as infra/template.yaml has it.
        .stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(aws_sdk_dynamodb::types::StreamViewType::NewAndOldImages)
                .build()
                .expect("stream spec"),
        )
        .send()
        .await
        .expect("create table");
    dynamodb
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                .attribute_name(credvault::store::TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .expect("ttl spec"),
        )
        .send()
        .await
        .expect("enable TTL");
}

/// The SDK configuration of any further service client on the emulator (Secrets Manager, SQS,
/// EventBridge): test credentials, us-east-1, moto's endpoint.
pub fn emulator_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            Credentials::new("testing", "testing", None, None, "credvault-tests"),
        ))
        .endpoint_url(endpoint)
        .build()
}

/// A Secrets Manager client on the emulator (the webhook signing secret).
pub fn secrets_manager(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&emulator_config(endpoint))
}

/// A new secret on the emulator holding `value`; its ARN.
pub async fn stored_secret(endpoint: &str, value: &str) -> String {
    secrets_manager(endpoint)
        .create_secret()
        .name(format!("credvault-webhook-{}", credvault::random::token(8)))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("an ARN")
}
