//! Keep-alive (shared/src/maintenance.rs) through the credential-maintenance function's handler, on
//! moto: a run over 1,000 credentials refreshes exactly the ones due, through the lease protocol, finds
//! them by the sparse index (no scan), never touches the others, never refreshes a credential that
//! needs re-authentication, audits every refresh, and a run stopped at its bound is resumed where it
//! stopped.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use credvault::clock::Clock;
use credvault::store::Item;
use credvault::store::credentials;
use credvault_tests::fake_provider::Failure;
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, LoggedIn, StackOptions};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

const KEEP_ALIVE_DAYS: i64 = 30;
const DAY: i64 = 86_400;

async fn stack(configure: fn(&mut credvault::Config)) -> LocalStack {
    let stack = LocalStack::start(StackOptions {
        keep_alive_days: Some(KEEP_ALIVE_DAYS as u32),
        configure,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    stack
}

/// One scheduled invocation of credential-maintenance, as EventBridge Scheduler sends it.
async fn invoke(stack: &LocalStack) -> Value {
    let event = LambdaEvent::new(
        json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}),
        Context::default(),
    );
    credential_maintenance::handle(&stack.instance.keep_alive(), event)
        .await
        .expect("the run completes")
}

/// Every credential item, by user id, as DynamoDB holds it.
async fn credential_items(stack: &LocalStack) -> BTreeMap<String, Item> {
    stack
        .aws
        .scan_all()
        .await
        .into_iter()
        .filter_map(|item| {
            let sk = item.get("sk")?.as_s().ok()?.strip_prefix("USER#")?.to_string();
            item.get("pk")?
                .as_s()
                .ok()?
                .starts_with("CREDENTIAL#")
                .then_some((sk, item))
        })
        .collect()
}

fn keep_alive_refreshes(items: &[Item]) -> usize {
    items
        .iter()
        .filter(|item| {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str);
            text("action") == Some("credential.refresh") && text("reason") == Some("keep_alive")
        })
        .count()
}

async fn fetch(stack: &LocalStack, user: &LoggedIn) -> (u16, Value) {
    let path = format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&user.user_id)
    );
    stack.call("GET", &path, Some(&user.access_token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_over_a_thousand_credentials_refreshes_exactly_the_due_ones() {
    let stack = stack(|_| {}).await;
    let mut due = Vec::new();
    for i in 0..50 {
        due.push(stack.login_as(&format!("due{i}")).await);
    }
    // Due as well, but dead: the provider refuses them on a fetch first.
    let mut dead = Vec::new();
    for i in 0..5 {
        dead.push(stack.login_as(&format!("dead{i}")).await);
    }
    // Due as well, but a fetch refreshes it first: that moves its due date.
    let fetched = stack.login_as("fetched").await;
    let idle = stack
        .seed_idle_credentials(1000 - due.len() - dead.len() - 1, 90 * DAY)
        .await;
    assert_eq!(credential_items(&stack).await.len(), 1000);

    // A month and a day later: the logins are due, the idle ones are not.
    stack.clock.advance(KEEP_ALIVE_DAYS * DAY + DAY);
    for user in &dead {
        stack.provider.fail_next(&[Failure::InvalidGrant]);
        let (status, body) = fetch(&stack, user).await;
        assert_eq!(status, 409, "{body}");
    }
    let (status, body) = fetch(&stack, &fetched).await;
    assert_eq!(status, 200, "{body}");

    let before = credential_items(&stack).await;
    let refreshes = stack.provider.counters().refreshes;
    stack.counters.reset();
    let run_started = stack.clock.now_secs();
    let report = invoke(&stack).await;

    assert_eq!(report["refreshed"], 50, "{report}");
    assert_eq!(
        report["examined"], 50,
        "only the due ones come out of the index: {report}"
    );
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(
        stack.provider.counters().refreshes,
        refreshes + 50,
        "exactly 50 provider calls"
    );
    assert_eq!(stack.counters.dynamodb_scans.load(Ordering::SeqCst), 0, "no scan");
    assert_eq!(
        stack.counters.dynamodb_queries.load(Ordering::SeqCst),
        report["indexQueries"].as_u64().unwrap(),
        "every query was of the index"
    );

    let after = credential_items(&stack).await;
    let now = stack.clock.now_secs();
    for user in &due {
        let item = stack.credential(&user.user_id).await.expect("kept");
        assert_eq!(
            item.token_version,
            credentials_version(&before, &user.user_id) + 1,
            "refreshed once: {}",
            user.user_id
        );
        let next = item.keep_alive_due_at.expect("still kept alive");
        assert!(
            (run_started + KEEP_ALIVE_DAYS * DAY..=now + KEEP_ALIVE_DAYS * DAY).contains(&next),
            "due again a keep-alive period after its refresh"
        );
    }
    for user in idle
        .iter()
        .chain(dead.iter().map(|u| &u.user_id))
        .chain([&fetched.user_id])
    {
        assert_eq!(before.get(user), after.get(user), "untouched: {user}");
    }
    for user in &dead {
        let item = stack.credential(&user.user_id).await.expect("kept");
        assert_eq!(item.status, credentials::CredentialStatus::ReauthRequired);
        assert_eq!(item.keep_alive_due_at, None, "out of the index");
    }
    let audit: Vec<Item> = stack.aws.scan_all().await;
    assert_eq!(keep_alive_refreshes(&audit), 50, "every keep-alive refresh is audited");

    // The kept credentials work: the refreshed token is what a fetch returns, with no refresh.
    let (status, body) = fetch(&stack, &due[0]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stack.provider.counters().refreshes, refreshes + 50);

    // Nothing is due any more.
    let report = invoke(&stack).await;
    assert_eq!(
        (report["examined"].as_u64(), report["complete"].as_bool()),
        (Some(0), Some(true))
    );
}

fn credentials_version(items: &BTreeMap<String, Item>, user: &str) -> i64 {
    items[user]["tokenVersion"].as_n().unwrap().parse().unwrap()
}

/// Ten of the due credentials are leased by another instance the whole time: a run passes them by
/// (`busy`) and they stay due. Runs stopped at 20 credentials go on from where the last one stopped, so
/// no run looks at a passed-by one again before the end: 60 examined in three runs, the ten busy once.
/// Runs that started over would meet the busy ones again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_stopped_at_its_bound_is_resumed_where_it_stopped() {
    // The deployed AWS timeouts (and the lease they need), as the keep-alive bench has: on the loaded
    // test machine the test stack's 1.5 s made a whole run fail on one slow index query.
    fn bounded_runs(config: &mut credvault::Config) {
        credvault_tests::stack::deployed_aws_timeouts(config);
        config.keep_alive.max_credentials = 20;
    }
    let stack = LocalStack::start(StackOptions {
        keep_alive_days: Some(KEEP_ALIVE_DAYS as u32),
        configure: bounded_runs,
        ..StackOptions::deployed_timeouts()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    for i in 0..50 {
        stack.login_as(&format!("due{i}")).await;
    }
    let mut leased = Vec::new();
    for i in 0..10 {
        leased.push(stack.login_as(&format!("leased{i}")).await);
    }
    stack.clock.advance(KEEP_ALIVE_DAYS * DAY + DAY);
    let hour_from_now_ms = stack.clock.now_millis() + 3_600_000;
    for user in &leased {
        stack
            .plant_lease(&user.user_id, "another-instance", hour_from_now_ms)
            .await;
    }
    let refreshes = stack.provider.counters().refreshes;

    let mut runs = Vec::new();
    loop {
        let report = invoke(&stack).await;
        let complete = report["complete"] == true;
        runs.push(report);
        if complete || runs.len() > 6 {
            break;
        }
    }
    let total = |field: &str| runs.iter().map(|r| r[field].as_u64().unwrap()).sum::<u64>();
    let complete: Vec<bool> = runs.iter().map(|r| r["complete"].as_bool().unwrap()).collect();
    assert_eq!(complete, vec![false, false, true], "three bounded runs: {runs:?}");
    // Each credential examined exactly once across the runs. On a loaded machine a claim can be lost
    // to a lease clock running late, or a refresh time out (busy, failed): only that split may move.
    assert_eq!(total("examined"), 60, "each credential examined once: {runs:?}");
    // The leased ten are passed by (their lease is checked below to be untouched): busy, or an error
    // when the claim's own DynamoDB call timed out on the loaded emulator.
    assert!(
        total("busy") + total("errors") >= 10,
        "the leased ten are passed by: {runs:?}"
    );
    // Every refreshed credential made a provider call, and none of the fifty made two. A refresh can
    // reach the provider and still not count as refreshed on a loaded machine: it timed out (failed),
    // its commit failed (errors), or its lease ran out under it (busy). No refresh token twice.
    let provider = stack.provider.counters();
    let calls = provider.refreshes - refreshes;
    assert!(
        total("refreshed") <= calls && calls <= 50,
        "{calls} provider calls for {runs:?}"
    );
    assert!(total("refreshed") >= 40, "most of the fifty are refreshed: {runs:?}");
    assert_eq!(provider.reuse_detected, 0, "no refresh token spent twice");
    for user in &leased {
        let item = stack.credential(&user.user_id).await.expect("kept");
        assert_eq!(item.lease.as_ref().map(|l| l.owner.as_str()), Some("another-instance"));
    }
}

/// `keepAliveDays` through the API: presets set it, `0` turns it off, and anything outside 1 to 365
/// is a 400 that stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_days_is_checked_and_presets_set_it() {
    let stack = stack(|_| {}).await;
    let admin = stack.client_token(&stack.admin_key);
    let body = |id: &str, days: Option<Value>| {
        let mut body = json!({
            "connectionId": id, "preset": "microsoft", "presetParameters": {"tenant": "contoso.example"},
            "clientId": "c", "clientSecret": "s",
            // Endpoints given, so no discovery at login.microsoftonline.com is needed here.
            "authenticationUrl": "https://login.example.com/authorize", "tokenUrl": "https://login.example.com/token",
            "issuerUrl": null, "data": {"oidcUserEndpointUrl": "https://login.example.com/userinfo"},
        });
        if let Some(days) = days {
            body["keepAliveDays"] = days;
        }
        body
    };
    let (status, created) = stack
        .call("POST", "/v1/connections", Some(&admin), Some(&body("con_ms", None)))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["keepAliveDays"], 30,
        "the microsoft preset keeps credentials alive"
    );
    let (status, off) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&body("con_ms_off", Some(json!(0)))),
        )
        .await;
    assert_eq!((status, &off["keepAliveDays"]), (201, &Value::Null), "{off}");

    let before = stack.state_snapshot().await;
    for bad in [json!(366), json!(-1), json!("30"), json!(1.5)] {
        let (status, refused) = stack
            .call(
                "POST",
                "/v1/connections",
                Some(&admin),
                Some(&body("con_bad", Some(bad.clone()))),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {refused}");
        assert!(refused["errorCode"].is_string(), "{refused}");
    }
    assert_eq!(stack.state_snapshot().await, before, "refusals store nothing");
}
