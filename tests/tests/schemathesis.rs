//! Schemathesis (pinned in tests/requirements.txt) fuzzes the local stack from the OpenAPI document:
//! every operation as the stack's administrator (a service client), and the credential operations as
//! a signed-in user. Valid and invalid input alike must get no 5xx, only documented statuses, and
//! answers that match their schemas; bounded in examples (and by a deadline) so the run stays within
//! a minute or two on two cores.
//!
//! The token goes in through the document's bearer scheme, not as a raw header: Schemathesis seeds
//! ids from the claims of a raw header's JWT, and would delete the administrator's own client with
//! it. It also reuses ids it saw in answers, so the operations that can take the administrator's
//! power away run last, on their own, where no listing tells them an id.

use std::process::Stdio;
use std::time::{Duration, Instant};

use credvault_tests::{LocalStack, StackOptions};

/// Every check: no 5xx, documented statuses, content types and headers, bodies that match their
/// schema, schema-violating input refused with a 4xx, auth not ignored, deleted things gone, ...
const CHECKS: &str = "all";
/// But one: the document cannot say which ids, states and codes exist, so input it allows may
/// rightly be refused.
const EXCLUDED_CHECKS: &str = "positive_data_acceptance";

/// Test cases per operation and phase.
const MAX_EXAMPLES: &str = "25";
/// The operations that can revoke the administrator that runs the others.
const REVOKING: &str = "^(DELETE /v1/clients/.*|(PUT|DELETE) /v1/records/.*)$";

struct Run<'a> {
    who: &'a str,
    bearer: String,
    /// Extra `schemathesis run` arguments (which operations).
    filter: &'a [&'a str],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let root = credvault_tests::workspace_root();
    let work = std::env::temp_dir().join(format!("credvault-schemathesis-{}", credvault::random::token(9)));
    std::fs::create_dir_all(&work).expect("work dir");
    let schema = work.join("openapi.json");
    std::fs::write(&schema, credvault_tests::gateway::openapi_json()).expect("write the document");
    // Public operations go without a token, the others with the run's (read from the environment).
    let config = work.join("schemathesis.toml");
    let auth = "[auth.openapi.bearer]\nbearer = \"${CREDVAULT_SCHEMATHESIS_BEARER}\"\n";
    std::fs::write(&config, auth).expect("write the config");

    let user = stack.login().await;
    let runs = [
        Run {
            who: "administrator",
            bearer: stack.client_token(&stack.admin_key),
            filter: &["--exclude-name-regex", REVOKING],
        },
        Run {
            who: "user",
            bearer: user.access_token.clone(),
            filter: &["--include-tag", "credentials"],
        },
        Run {
            who: "administrator, revoking operations",
            bearer: stack.client_token(&stack.admin_key),
            filter: &["--include-name-regex", REVOKING],
        },
    ];
    let mut failures = Vec::new();
    for run in &runs {
        let started = Instant::now();
        let command = tokio::process::Command::new(root.join(".venv/bin/schemathesis"))
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(&schema)
            .args(["--url", &stack.base_url])
            .args(["--checks", CHECKS, "--exclude-checks", EXCLUDED_CHECKS])
            .args(["--max-examples", MAX_EXAMPLES])
            .args(["--seed", "20261127", "--generation-database", "none"])
            // The callback's redirect goes to the app, which does not exist here.
            .args(["--max-redirects", "0", "--request-timeout", "15"])
            // One worker: CPython 3.11 can fail compiling patterns in several threads at once.
            .args(["--workers", "1"])
            .args(["--no-color", "--output-sanitize", "true"])
            .args(run.filter)
            .args(extra_args())
            .current_dir(&work)
            .env("CREDVAULT_SCHEMATHESIS_BEARER", &run.bearer)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(150), command)
            .await
            .unwrap_or_else(|_| panic!("schemathesis ({}) did not finish within 150 s", run.who))
            .expect("schemathesis runs (make bootstrap installs it into .venv)");
        let report = String::from_utf8_lossy(&out.stdout);
        eprintln!(
            "schemathesis as the {} ({:.0?}):\n{report}{}",
            run.who,
            started.elapsed(),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            failures.push(run.who);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        failures.is_empty(),
        "schemathesis found failures or errors as: {failures:?} (its report is above)"
    );
}

/// More `schemathesis run` arguments for a longer or reported run, e.g.
/// `CREDVAULT_SCHEMATHESIS_ARGS="--max-examples 200 --max-time 600 --report har --report-dir /tmp/st"`.
fn extra_args() -> Vec<String> {
    std::env::var("CREDVAULT_SCHEMATHESIS_ARGS")
        .map(|args| args.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}
