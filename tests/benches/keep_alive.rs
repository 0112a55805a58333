//! Keep-alive throughput (shared/src/maintenance.rs) on the local stack: one run over a table of
//! mostly idle credentials, a few hundred of them due. Figures, measured in one run:
//! - due credentials kept alive per second, and the same refreshes made by fetches from as many
//!   concurrent callers, as a ratio (the run's overhead over the protocol's own cost);
//! - DynamoDB reads per credential examined (target at most 2.2: the consistent GetItem of the
//!   credential, the GetItem of its connection that every refresh makes, and the index queries and the
//!   cursor read spread over them), and scans (target 0: candidates come from the index).
//!
//! Call counts are deterministic, so the run exits non-zero when one misses its target.

use std::sync::atomic::Ordering;
use std::time::Instant;

use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};

const DUE: usize = 200;
const IDLE: usize = 5000;
const DAY: i64 = 86_400;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stack = LocalStack::start(StackOptions {
        keep_alive_days: Some(30),
        ..StackOptions::deployed_timeouts()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let mut due = Vec::new();
    for i in 0..DUE * 2 {
        due.push(stack.login_as(&format!("due{i}")).await);
    }
    stack.seed_idle_credentials(IDLE, 90 * DAY).await;
    stack.clock.advance(31 * DAY);
    // The first half is refreshed by fetches, the second half by the run.
    let (by_fetch, _) = due.split_at(DUE);

    // The same kind of refresh, made by fetches: as many callers at once as the run's concurrency.
    let concurrency = stack.config.keep_alive.concurrency;
    let started = Instant::now();
    for batch in by_fetch.chunks(concurrency) {
        let fetches = batch
            .iter()
            .map(|user| {
                let path = format!(
                    "/v1/connections/{}/users/{}/credentials",
                    stack.connection_id,
                    encode(&user.user_id)
                );
                stack.http.get(stack.url(&path)).bearer_auth(&user.access_token).send()
            })
            .collect();
        for resp in credvault_tests::join_all(fetches).await {
            assert_eq!(resp.expect("fetch").status(), 200);
        }
    }
    let fetch_rate = DUE as f64 / started.elapsed().as_secs_f64();

    let refreshes = stack.provider.counters().refreshes;
    stack.counters.reset();
    let started = Instant::now();
    let report = stack.instance.keep_alive().run().await.expect("keep-alive run");
    let elapsed = started.elapsed();
    let reads = stack.counters.dynamodb_reads.load(Ordering::SeqCst);
    let scans = stack.counters.dynamodb_scans.load(Ordering::SeqCst);
    let rate = report.refreshed as f64 / elapsed.as_secs_f64();
    let reads_per = reads as f64 / report.examined.max(1) as f64;

    println!(
        "keep-alive run over {} credentials ({DUE} due, concurrency {concurrency}):",
        DUE * 2 + IDLE
    );
    println!(
        "  examined {}, refreshed {}, provider refreshes {}",
        report.examined,
        report.refreshed,
        stack.provider.counters().refreshes - refreshes
    );
    println!("  kept alive per second:        {rate:.1}");
    println!(
        "  refreshed by fetches, per s:  {fetch_rate:.1}  (ratio keep-alive / fetches {:.2})",
        rate / fetch_rate
    );
    println!(
        "  DynamoDB reads per credential examined: {reads_per:.2}  (target at most 2.2: credential + connection + index share)"
    );
    println!("  index queries: {}, scans: {scans}  (target 0)", report.index_queries);
    let met = report.refreshed == DUE && report.examined == DUE && scans == 0 && reads_per <= 2.2;
    if !met {
        eprintln!("a keep-alive target was missed: {report:?}");
        std::process::exit(1);
    }
}
