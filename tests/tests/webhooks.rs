//! Signed webhooks (credential-webhooks): a lifecycle event, as the webhook rule hands it to the
//! function, reaches a real HTTP receiver with the Standard Webhooks headers, the signing secret read
//! from moto's Secrets Manager; the README's own Python verifier accepts it and refuses a tampered
//! body, another secret and an old timestamp. A receiver that refuses, redirects or cannot be reached
//! fails the invocation (Lambda retries it, with the same `webhook-id`), and no secret is logged.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use credential_webhooks::{DeliveryError, SetupError, WebhookSender, read_secret, webhook_url};
use credvault::lifecycle::{EventKind, LifecycleEvent};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use secrecy::SecretString;
use serde_json::{Value, json};

#[derive(Default)]
struct Received {
    status: Mutex<Option<StatusCode>>,
    requests: Mutex<Vec<(HeaderMap, Bytes)>>,
}

/// A receiver on a free port: `/hook` records each request and answers the set status (204 unset),
/// `/moved` redirects to `/hook`.
async fn receiver() -> (String, Arc<Received>) {
    let received = Arc::new(Received::default());
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                |State(r): State<Arc<Received>>, headers: HeaderMap, body: Bytes| async move {
                    r.requests.lock().unwrap().push((headers, body));
                    r.status.lock().unwrap().unwrap_or(StatusCode::NO_CONTENT)
                },
            ),
        )
        .route(
            "/moved",
            axum::routing::post(|| async { (StatusCode::TEMPORARY_REDIRECT, [("location", "/hook")]) }),
        )
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, received)
}

fn secrets_client() -> aws_sdk_secretsmanager::Client {
    credvault_tests::aws::secrets_manager(&credvault_tests::moto::endpoint())
}

async fn stored_secret(value: &str) -> String {
    credvault_tests::aws::stored_secret(&credvault_tests::moto::endpoint(), value).await
}

/// The EventBridge event a rule hands its target, around the detail credential-events published.
fn bridge_event(event: &LifecycleEvent) -> Value {
    json!({
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": event.kind.as_str(),
        "source": credvault::lifecycle::SOURCE,
        "account": "123456789012",
        "time": "2026-12-02T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": event.detail(),
    })
}

fn reauth_event() -> LifecycleEvent {
    LifecycleEvent {
        kind: EventKind::ReauthenticationRequired,
        event_id: "9f2c0d4e6b8a".into(),
        connection_id: "con_google".into(),
        user_id: "google|104".into(),
        reason: Some("invalid_grant".into()),
        recovered: None,
        occurred_at: 1_796_000_000,
    }
}

async fn invoke(sender: &WebhookSender, event: &Value) -> Result<Value, DeliveryError> {
    credential_webhooks::handle(
        sender,
        &credvault::clock::SystemClock,
        LambdaEvent::new(event.clone(), Context::default()),
    )
    .await
}

/// The README's verifier (the Python block after its `verify-webhook` marker), run on one request:
/// `True` or `False` as the receiver would decide.
fn readme_verifier_accepts(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let root = credvault_tests::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let marker = readme
        .find("<!-- verify-webhook")
        .expect("the README shows the verifier");
    let code = &readme[marker..];
    let start = code.find("```python\n").expect("a python block") + "```python\n".len();
    let code = &code[start..];
    let code = &code[..code.find("```").unwrap()];
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let input = json!({
        "secret": secret,
        "headers": {
            "webhook-id": header("webhook-id"),
            "webhook-timestamp": header("webhook-timestamp"),
            "webhook-signature": header("webhook-signature"),
        },
        "body": String::from_utf8(body.to_vec()).unwrap(),
    });
    let driver = format!(
        "{code}\nimport json, sys\nx = json.load(sys.stdin)\nprint(verify_credvault_webhook(x['secret'], x['headers'], x['body'].encode()))\n"
    );
    let mut child = std::process::Command::new(root.join(".venv/bin/python"))
        .arg("-c")
        .arg(driver)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the venv's python (make bootstrap)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    match String::from_utf8_lossy(&out.stdout).trim() {
        "True" => true,
        "False" => false,
        other => panic!("the verifier printed {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_arrives_signed_and_the_readme_verifier_checks_it() {
    let logs = credvault_tests::logs::capture();
    let secret = format!("whk-{}", credvault::random::token(32));
    let client = secrets_client();
    let arn = stored_secret(&secret).await;
    let (base, received) = receiver().await;
    let sender = WebhookSender::new(
        webhook_url(&format!("{base}/hook")).unwrap(),
        &read_secret(&client, &arn).await.expect("the secret from moto"),
    )
    .unwrap();
    let event = reauth_event();

    let before = credvault::clock::Clock::now_secs(&credvault::clock::SystemClock);
    let answer = invoke(&sender, &bridge_event(&event)).await.expect("delivered");
    assert_eq!(answer, json!({"delivered": event.event_id}));
    // A redelivery of the same transition (Lambda's retry, or the stream's) carries the same id.
    invoke(&sender, &bridge_event(&event)).await.expect("delivered again");

    let requests = received.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let (headers, body) = &requests[0];
    assert_eq!(headers["webhook-id"], event.event_id.as_str());
    assert_eq!(requests[1].0["webhook-id"], event.event_id.as_str());
    assert_eq!(headers["content-type"], "application/json");
    let sent_at: i64 = headers["webhook-timestamp"].to_str().unwrap().parse().unwrap();
    assert!(
        (before..before + 60).contains(&sent_at),
        "the attempt's time: {sent_at}"
    );
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(
        payload,
        json!({
            "type": "credential.reauthentication_required",
            "timestamp": credvault::clock::iso8601(event.occurred_at),
            "data": event.detail(),
        })
    );

    assert!(
        readme_verifier_accepts(&secret, headers, body),
        "the README's verifier accepts it"
    );
    let mut tampered = body.to_vec();
    let at = tampered.len() - 2;
    tampered[at] ^= 1;
    assert!(!readme_verifier_accepts(&secret, headers, &tampered), "a changed body");
    assert!(
        !readme_verifier_accepts(&format!("{secret}x"), headers, body),
        "another secret"
    );
    let mut other_id = headers.clone();
    other_id.insert("webhook-id", "another".parse().unwrap());
    assert!(!readme_verifier_accepts(&secret, &other_id, body), "another id");
    let mut old = headers.clone();
    old.insert("webhook-timestamp", (sent_at - 3600).to_string().parse().unwrap());
    assert!(
        !readme_verifier_accepts(&secret, &old, body),
        "an hour-old timestamp (replay)"
    );

    assert!(!format!("{sender:?}").contains(&secret[4..]), "Debug hides the key");
    assert!(!logs.contents().contains(&secret[4..]), "no secret in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_redirecting_or_absent_receiver_fails_the_invocation() {
    let logs = credvault_tests::logs::capture();
    let secret = SecretString::from(format!("whk-{}", credvault::random::token(32)));
    let (base, received) = receiver().await;
    let event = bridge_event(&reauth_event());

    *received.status.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
    let sender = WebhookSender::new(webhook_url(&format!("{base}/hook")).unwrap(), &secret).unwrap();
    assert!(matches!(
        invoke(&sender, &event).await,
        Err(DeliveryError::Refused(503))
    ));
    assert_eq!(received.requests.lock().unwrap().len(), 1);

    // A redirect is not followed: the signed message goes nowhere the operator did not name.
    let moved = WebhookSender::new(webhook_url(&format!("{base}/moved")).unwrap(), &secret).unwrap();
    assert!(matches!(invoke(&moved, &event).await, Err(DeliveryError::Refused(307))));
    assert_eq!(
        received.requests.lock().unwrap().len(),
        1,
        "/hook not reached through the redirect"
    );

    // Nobody listening: a connect failure, and the error names neither the URL nor a secret.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let absent = WebhookSender::new(webhook_url(&format!("http://{closed}/hook")).unwrap(), &secret).unwrap();
    let error = invoke(&absent, &event).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Unreachable { connect: true, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains(&closed.port().to_string()), "{error}");

    // Not a credvault event: refused without a request.
    let mut foreign = event.clone();
    foreign["source"] = json!("aws.s3");
    assert!(matches!(
        invoke(&sender, &foreign).await,
        Err(DeliveryError::NotAnEvent(_))
    ));
    assert_eq!(received.requests.lock().unwrap().len(), 1);

    use secrecy::ExposeSecret;
    assert!(
        !logs.contents().contains(&secret.expose_secret()[4..]),
        "no secret in the logs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_does_not_start_with_a_weak_or_missing_secret() {
    let client = secrets_client();
    let short = stored_secret("too-short").await;
    let secret = read_secret(&client, &short).await.unwrap();
    let error = WebhookSender::new(webhook_url("https://hooks.example.com/x").unwrap(), &secret).unwrap_err();
    assert!(matches!(error, SetupError::WeakSecret(_)), "{error:?}");
    let missing = read_secret(
        &client,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:none-AbCdEf",
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, SetupError::SecretUnavailable(_)), "{missing:?}");
    assert!(matches!(
        webhook_url("http://hooks.example.com/x"),
        Err(SetupError::UnsafeUrl)
    ));
}
