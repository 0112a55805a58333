//! The numbers of DESIGN §6 over the local stack, printed as figures and ratios measured in one run:
//! - a warm fetch of a valid token: DynamoDB and KMS calls per fetch (target 1 read, 0 KMS);
//! - fetch latency against a bare GetItem on the same emulator (target within 1.5x);
//! - herds of 10, 100 and 1,000 concurrent fetches of an expired credential: provider refresh calls
//!   (target exactly 1), reads per fetch, and p50/p99 latency against the provider's own latency and
//!   against as many concurrent bare GetItems.
//!
//! Call counts are deterministic, so the run exits non-zero when one misses its target; latencies are
//! reported only (this machine is shared). Every latency sample is also written to `bench-output/` as
//! CSV, which `tests/scripts/plot_bench.py` draws (`make bench` does both).

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};

const WARM_FETCHES: usize = 200;
/// Herd sizes: the DESIGN's 100, and a tenth and ten times that.
const HERDS: [usize; 3] = [10, 100, 1000];
const PROVIDER_LATENCY: Duration = Duration::from_millis(200);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes one series of latency samples (milliseconds, one per line) for the plot.
fn save_samples(series: &str, samples: &[Duration]) {
    let dir = credvault_tests::workspace_root().join("bench-output");
    let lines: String = samples.iter().map(|d| format!("{:.3}\n", ms(*d))).collect();
    let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(format!("{series}.csv")), lines));
    if let Err(e) = written {
        eprintln!("could not write the {series} samples: {e}");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut met = warm_fetch(None).await;
    met &= warm_fetch(Some(Duration::from_millis(10))).await;
    met &= warm_service_client_fetch().await;
    for herd in HERDS {
        met &= concurrent_expired(herd).await;
    }
    // Call counts are deterministic, so a missed one fails the run; latencies are only reported.
    if !met {
        eprintln!("a call-count target was missed");
        std::process::exit(1);
    }
}

/// With `latency`, DynamoDB and KMS are reached through the proxy, which adds that much to every call
/// (and so does the bare GetItem it is compared with): on moto alone, one Python process serves every
/// call, so calls made at the same time still queue; with a network round trip they overlap.
async fn warm_fetch(latency: Option<Duration>) -> bool {
    let stack = LocalStack::start(StackOptions {
        aws_proxy: latency.is_some(),
        ..StackOptions::default()
    })
    .await;
    if let (Some(latency), Some(proxy)) = (latency, &stack.aws_proxy) {
        proxy.set_latency(latency);
    }
    let user = stack.login().await;
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
    let url = stack.url(&format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&user.user_id)
    ));

    // Counted: the vault's own clients only (the bare GetItems below use a separate, uncounted client).
    stack.counters.reset();
    let mut fetch = Vec::with_capacity(WARM_FETCHES);
    let mut bare = Vec::with_capacity(WARM_FETCHES);
    let bare_client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "t", "t", None, None, "bench",
            ))
            .endpoint_url(stack.aws_proxy.as_ref().map_or(&stack.aws.endpoint, |p| &p.url))
            .build(),
    );
    // Interleaved, so both see the same machine load.
    for _ in 0..WARM_FETCHES {
        let t = Instant::now();
        let resp = stack
            .http
            .get(&url)
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
        fetch.push(t.elapsed());
        // audit-ingest's write of this read's event, untimed: on AWS it comes seconds later, in a
        // batch; here it would otherwise land in moto's queue during the bare GetItem below.
        stack.audit_flushed().await;

        let t = Instant::now();
        bare_client
            .get_item()
            .table_name(&stack.aws.table)
            .key(
                "pk",
                AttributeValue::S(credvault::store::credentials::pk(&stack.connection_id)),
            )
            .key(
                "sk",
                AttributeValue::S(credvault::store::credentials::sk(&user.user_id)),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        bare.push(t.elapsed());
    }
    let (reads, writes, kms) = stack.counters.snapshot();
    let n = WARM_FETCHES as f64;
    match latency {
        None => println!("warm fetch of a valid token ({WARM_FETCHES} fetches, one instance, moto directly):"),
        Some(l) => println!(
            "warm fetch of a valid token ({WARM_FETCHES} fetches, one instance, {} ms network latency to moto):",
            l.as_millis()
        ),
    }
    println!("  DynamoDB reads per fetch:  {:.2}  (target 1)", reads as f64 / n);
    println!(
        "  DynamoDB writes per fetch: {:.2}  (target 0: the audit event goes to the log, audit-ingest stores it)",
        writes as f64 / n
    );
    println!("  KMS calls per fetch:       {:.2}  (target 0)", kms as f64 / n);
    fetch.sort();
    bare.sort();
    let tag = latency.map_or("moto".to_string(), |l| format!("latency{}ms", l.as_millis()));
    save_samples(&format!("warm-fetch-{tag}"), &fetch);
    save_samples(&format!("warm-getitem-{tag}"), &bare);
    let (f50, b50) = (percentile(&fetch, 0.5), percentile(&bare, 0.5));
    let (f99, b99) = (percentile(&fetch, 0.99), percentile(&bare, 0.99));
    println!("  fetch over the gateway: p50 {:.2} ms, p99 {:.2} ms", ms(f50), ms(f99));
    println!("  bare GetItem on moto:   p50 {:.2} ms, p99 {:.2} ms", ms(b50), ms(b99));
    println!(
        "  ratio fetch / GetItem:  p50 {:.2}x, p99 {:.2}x  (target <= 1.2x at p50, 1.5x at p99)",
        ms(f50) / ms(b50),
        ms(f99) / ms(b99)
    );
    reads == WARM_FETCHES as u64 && writes == 0 && kms == 0
}

async fn warm_service_client_fetch() -> bool {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let (client_id, key) = stack.new_client("bench backend").await;
    let admin = stack.client_token(&stack.admin_key);
    let role = serde_json::json!({"roleId": "ro_bench", "name": "bench",
        "permissions": [{"action": "connections:credentials:read", "allow": true}]});
    stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await;
    let record = serde_json::json!({"recordId": "rec_bench", "name": "bench", "users": [{"userId": client_id}],
        "statements": [{"roles": ["ro_bench"], "resources": [{"resourceUri": "Connections/con_demo"}]}]});
    stack.call("POST", "/v1/records", Some(&admin), Some(&record)).await;
    let token = stack.client_token(&key);
    let url = stack.url(&format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&user.user_id)
    ));
    assert_eq!(
        stack.http.get(&url).bearer_auth(&token).send().await.unwrap().status(),
        200
    );
    stack.counters.reset();
    for _ in 0..WARM_FETCHES {
        let resp = stack.http.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let (reads, writes, kms) = stack.counters.snapshot();
    let n = WARM_FETCHES as f64;
    println!("warm service-client fetch ({WARM_FETCHES} fetches; grants cached up to their bound):");
    println!(
        "  DynamoDB reads per fetch:  {:.2}  (target <= 2: the client's keys, the credential)",
        reads as f64 / n
    );
    println!(
        "  DynamoDB writes per fetch: {:.2}  (target 0: the audit event goes to the log, audit-ingest stores it)",
        writes as f64 / n
    );
    println!("  KMS calls per fetch:       {:.2}  (target 0)", kms as f64 / n);
    reads <= 2 * WARM_FETCHES as u64 && writes == 0 && kms == 0
}

/// A herd of `concurrent` fetches of one expired credential; `false` when a call-count target is missed.
async fn concurrent_expired(concurrent: usize) -> bool {
    // One moto process answers a thousand concurrent calls in seconds (see the bare GetItems below),
    // so the herd runs with the deployed lease and AWS timeouts long enough for that, not the test
    // stack's short ones: the figures are the protocol's, not the emulator's timeouts.
    let stack = LocalStack::start(StackOptions {
        instances: 4,
        refresh: credvault::config::RefreshTiming {
            lease_length: Duration::from_secs(60),
            provider_timeout: Duration::from_secs(5),
            provider_attempts: 3,
            poll_deadline: Duration::from_secs(30),
            unknown_outcome_wait: Duration::from_secs(60),
        },
        configure: credvault_tests::stack::deployed_aws_timeouts,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 3600;
        k.latency = PROVIDER_LATENCY;
    });
    let url = stack.url(&format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&user.user_id)
    ));
    // Only the herd is counted, not the login before it.
    stack.counters.reset();
    let handles: Vec<_> = (0..concurrent)
        .map(|_| {
            let (http, url, bearer) = (stack.http.clone(), url.clone(), user.access_token.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let resp = http.get(url).bearer_auth(bearer).send().await.unwrap();
                let ok = resp.status() == 200;
                resp.bytes().await.unwrap();
                (ok, t.elapsed())
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut successes = 0;
    for h in handles {
        let (ok, elapsed) = h.await.unwrap();
        successes += usize::from(ok);
        latencies.push(elapsed);
    }
    latencies.sort();
    let counters = stack.provider.counters();
    let provider = ms(PROVIDER_LATENCY);
    println!(
        "{concurrent} concurrent fetches of an expired credential (4 instances, provider latency {provider:.0} ms):"
    );
    println!("  successes:               {successes}/{concurrent}");
    println!("  provider refresh calls:  {}  (target 1)", counters.refreshes);
    println!("  rotated tokens reused:   {}", counters.reuse_detected);
    let (reads, writes, kms) = stack.counters.snapshot();
    let n = concurrent as f64;
    println!(
        "  per fetch: {:.2} DynamoDB reads, {:.2} writes, {:.2} KMS calls",
        reads as f64 / n,
        writes as f64 / n,
        kms as f64 / n
    );
    let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
    // The emulator's own answer to the same burst: 100 concurrent bare GetItems.
    let bare: Vec<_> = (0..concurrent)
        .map(|_| {
            let (client, table) = (stack.aws.dynamodb.clone(), stack.aws.table.clone());
            let (pk, sk) = (
                credvault::store::credentials::pk(&stack.connection_id),
                credvault::store::credentials::sk(&user.user_id),
            );
            tokio::spawn(async move {
                let t = Instant::now();
                client
                    .get_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(pk))
                    .key("sk", AttributeValue::S(sk))
                    .consistent_read(true)
                    .send()
                    .await
                    .unwrap();
                t.elapsed()
            })
        })
        .collect();
    let mut bare_latencies = Vec::new();
    for h in bare {
        bare_latencies.push(h.await.unwrap());
    }
    bare_latencies.sort();
    save_samples(&format!("herd-{concurrent}-fetch"), &latencies);
    save_samples(&format!("herd-{concurrent}-getitem"), &bare_latencies);
    let (b50, b99) = (percentile(&bare_latencies, 0.5), percentile(&bare_latencies, 0.99));
    println!(
        "  {concurrent} concurrent bare GetItems on moto: p50 {:.0} ms, p99 {:.0} ms",
        ms(b50),
        ms(b99)
    );
    println!(
        "  latency p50 {:.0} ms ({:.2}x provider), p99 {:.0} ms ({:.2}x provider)",
        ms(p50),
        ms(p50) / provider,
        ms(p99),
        ms(p99) / provider
    );
    println!(
        "  (herd p99 - provider latency) / bare p99: {:.2}  (target <= 1.5)",
        (ms(p99) - provider) / ms(b99)
    );
    counters.refreshes == 1 && successes == concurrent && counters.reuse_detected == 0
}
