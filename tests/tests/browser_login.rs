//! The official `@authress/login` SDK (npm, pinned in tests/js), unmodified, in headless Chromium: the
//! demo app of `make dev` (tests/src/demo.rs) on `http://localhost:<port>`, another origin than the
//! vault on `127.0.0.1`, signs a user in through the vault and the fake provider and gets the provider
//! credential, every call crossing origins under the vault's CORS answers, then signs out. Playwright for Python
//! (tests/scripts/browser_login.py) drives the system Chromium.
//!
//! Without Chromium at `/usr/bin/chromium` this test cannot run: under CI it fails; elsewhere it says
//! so on stderr and `make test` prints its own summary line for it (scripts/test.sh).

use std::process::Stdio;

use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
/// The fake provider's access tokens in this test: a fetch refreshes once less than half is left.
const TOKEN_SECS: i64 = 120;

fn claims(jwt: &str) -> Value {
    jsonwebtoken::dangerous::insecure_decode::<Value>(jwt)
        .expect("a JWT")
        .claims
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

async fn next_line(lines: &mut Lines) -> Option<String> {
    tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
        .await
        .expect("the browser script answers within 2 minutes")
        .expect("read stdout")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_sdk_signs_in_from_another_origin_and_gets_the_credential() {
    if !std::path::Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium at {CHROMIUM}: scripts/bootstrap.sh installs it when run as root"
        );
        eprintln!("browser test NOT RUN: no Chromium at {CHROMIUM}");
        return;
    }
    let stack = LocalStack::start(StackOptions {
        demo_app_port: Some(0),
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = TOKEN_SECS);
    let app_url = stack.demo_url.clone().expect("the demo app runs");
    let root = credvault_tests::workspace_root();
    let mut browser = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/scripts/browser_login.py"))
        .env("APP_URL", &app_url)
        .env("USER_NAME", "carol")
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the test venv exists (make bootstrap)");
    let mut stdin = browser.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let fetched = next_line(&mut lines).await;
    let refreshes = stack.provider.counters().refreshes;
    if fetched.as_deref() == Some(r#"{"step": "fetched"}"#) {
        // Past half the provider token's lifetime: the page's next fetch refreshes it.
        stack.clock.advance(TOKEN_SECS / 2 + 10);
        stdin.write_all(b"aged\n").await.expect("write stdin");
    }
    let last = next_line(&mut lines).await;
    let out = browser.wait_with_output().await.expect("browser script exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser script failed: {fetched:?}\n{last:?}\n{stderr}"
    );
    let result: Value = serde_json::from_str(last.as_deref().unwrap_or_default())
        .unwrap_or_else(|e| panic!("result JSON ({e}): {last:?}\n{stderr}"));

    // Two origins: the app's and the vault's.
    let sdk = &result["sdk"];
    assert_eq!(sdk["origin"], app_url.as_str());
    assert_ne!(
        url::Url::parse(&app_url).unwrap().origin(),
        url::Url::parse(&stack.base_url).unwrap().origin()
    );
    assert_eq!(result["signedInBefore"], "false", "nobody was signed in before");
    let returned = url::Url::parse(result["returnedTo"].as_str().unwrap_or_default()).expect("returned URL");
    let query: std::collections::BTreeMap<String, String> = returned.query_pairs().into_owned().collect();
    assert_eq!(returned.origin(), url::Url::parse(&app_url).unwrap().origin());
    assert!(
        query.contains_key("code") && query.contains_key("nonce"),
        "the vault sent the browser back to the app with a code: {result}"
    );
    // The SDK cleaned the code out of the address bar.
    assert_eq!(sdk["location"], format!("{app_url}/"), "{sdk}");
    assert_eq!(result["pageError"], "", "{result}");
    assert_eq!(result["pageErrors"], serde_json::json!([]), "{result}");

    // userSessionExists, ensureToken and getUserIdentity: the vault's own user token and identity.
    assert_eq!(sdk["sessionExists"], true);
    let token = sdk["token"].as_str().expect("ensureToken gave a token");
    let token_claims = claims(token);
    assert_eq!(token_claims["iss"], stack.base_url.as_str());
    assert_eq!(token_claims["sub"], "con_demo|carol");
    let identity = &sdk["identity"];
    assert_eq!(identity["userId"], "con_demo|carol");
    assert_eq!(identity["iss"], stack.base_url.as_str());
    assert_eq!(identity["aud"], "app_demo", "the id_token is for the app the SDK names");

    // getConnectionCredentials: the provider's access token, and no refresh token.
    let issued = stack.provider.issued_secrets();
    let login_token = sdk["credentials"]["accessToken"].as_str().expect("credentials");
    assert!(issued.iter().any(|s| s == login_token), "{sdk}");
    assert!(sdk["credentials"].get("refreshToken").is_none());

    // The page's fetch button: the same token first, then (the clock aged) a refreshed one.
    assert_eq!(result["first"]["refreshed"], false);
    assert_eq!(result["first"]["credentials"]["accessToken"], login_token);
    assert_eq!(result["second"]["refreshed"], true, "{result}");
    let refreshed = result["second"]["credentials"]["accessToken"]
        .as_str()
        .unwrap_or_default();
    assert_ne!(refreshed, login_token);
    assert!(stack.provider.issued_secrets().iter().any(|s| s == refreshed));
    assert_eq!(
        stack.provider.counters().refreshes,
        refreshes + 1,
        "one refresh, for the second fetch"
    );
}
