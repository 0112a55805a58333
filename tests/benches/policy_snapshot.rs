//! The policy snapshot every instance loads, at 10,000 access records (issue: bounded snapshot): how
//! long one load takes over the local emulator, how much memory the loaded snapshot holds, and how
//! long one permission check takes against it. Memory is measured by a counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use credvault::access::{Action, PolicyCache, ResourceUri};
use credvault_tests::{LocalStack, StackOptions};
use serde_json::json;

const RECORDS: usize = 10_000;

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A record as grants usually look: one service client or user, one role, one credential resource.
fn record_body(i: usize) -> serde_json::Value {
    json!({"recordId": format!("rec_{i:05}"), "name": format!("Backend {i} reads user {i}"),
        "users": [{"userId": format!("sc_backend_{}", i % 500)}],
        "statements": [{"roles": ["ro_reader"], "resources": [{"resourceUri": format!("Connections/con_demo/Users/user_{i:05}/Credentials")}]}],
        "status": "ACTIVE"})
}

async fn seed(stack: &LocalStack) -> usize {
    let mut body_bytes = 0;
    let mut batches = Vec::new();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(25) {
        let requests: Vec<WriteRequest> = chunk
            .iter()
            .map(|&i| {
                let body = record_body(i).to_string();
                body_bytes += body.len();
                let put = PutRequest::builder()
                    .item("pk", AttributeValue::S("RECORDS".into()))
                    .item("sk", AttributeValue::S(format!("RECORD#rec_{i:05}")))
                    .item("id", AttributeValue::S(format!("rec_{i:05}")))
                    .item("body", AttributeValue::S(body))
                    .item("createdAtMs", AttributeValue::N("1".into()))
                    .item("updatedAtMs", AttributeValue::N("1".into()))
                    .build()
                    .expect("put request");
                WriteRequest::builder().put_request(put).build()
            })
            .collect();
        batches.push(requests);
    }
    for requests in batches {
        let out = stack
            .aws
            .dynamodb
            .batch_write_item()
            .request_items(&stack.aws.table, requests)
            .send()
            .await
            .expect("batch write");
        assert!(
            out.unprocessed_items.unwrap_or_default().is_empty(),
            "moto took every item"
        );
    }
    body_bytes
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Ten 1 MB Query pages from one moto process: the deployed lease and AWS timeouts, not the test
    // stack's short ones, or a busy machine turns the load into a timeout.
    let stack = LocalStack::start(StackOptions::deployed_timeouts()).await;
    let admin = stack.client_token(&stack.admin_key);
    let role = json!({"roleId": "ro_reader", "name": "reader", "permissions": [{"action": "connections:credentials:read", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    let body_bytes = seed(&stack).await;

    let mut loads = Vec::new();
    let mut held = 0;
    for _ in 0..5 {
        let cache = PolicyCache::new(Duration::from_secs(10), stack.instance.clock.clone());
        let before = LIVE.load(Ordering::Relaxed);
        let t = Instant::now();
        let policy = cache.load_now(&stack.instance.table).await.expect("load");
        loads.push(t.elapsed());
        assert_eq!(
            policy.records().len(),
            RECORDS + 1,
            "every record and the administrator's"
        );
        held = LIVE.load(Ordering::Relaxed).saturating_sub(before);
        drop(policy);
    }
    loads.sort();
    let policy = PolicyCache::new(Duration::from_secs(10), stack.instance.clock.clone())
        .load_now(&stack.instance.table)
        .await
        .expect("load");
    let read = Action::parse("connections:credentials:read").unwrap();
    let checks = 10_000;
    let t = Instant::now();
    let mut allowed = 0;
    for i in 0..checks {
        let resource = ResourceUri::parse(&format!(
            "Connections/con_demo/Users/user_{:05}/Credentials",
            i % RECORDS
        ))
        .unwrap();
        allowed += usize::from(policy.allows(&format!("sc_backend_{}", i % 500), &resource, &read));
    }
    let per_check = t.elapsed() / checks as u32;
    assert_eq!(allowed, checks, "each backend reads its users");

    println!("policy snapshot at {RECORDS} access records (one role, one user and one resource each):");
    println!("  stored record bodies:  {:.1} MiB", body_bytes as f64 / 1048576.0);
    println!(
        "  snapshot held in memory: {:.1} MiB  (limit of stored bodies: {} MiB)",
        held as f64 / 1048576.0,
        credvault::store::policy::POLICY_LIMITS.max_bytes / 1048576
    );
    println!(
        "  load over the emulator: median {:.0} ms, worst {:.0} ms (5 loads)",
        loads[loads.len() / 2].as_secs_f64() * 1000.0,
        loads[loads.len() - 1].as_secs_f64() * 1000.0
    );
    println!(
        "  one permission check:  {:.1} us (indexed by subject, 20 records per subject)",
        per_check.as_secs_f64() * 1e6
    );
}
