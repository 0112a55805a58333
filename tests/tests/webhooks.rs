//! Signed webhooks (credential-webhooks), over the real path: credential-events' publisher puts a
//! lifecycle event on (moto's) EventBridge, a rule like the template's puts it on an SQS queue, and the
//! queue's messages go to the handler as Lambda hands them over. It reaches a real HTTP receiver with
//! the Standard Webhooks headers, signed with a secret read from moto's Secrets Manager; the README's
//! Python verifier and the Standard Webhooks reference library (npm `standardwebhooks`) accept it, and
//! the verifier refuses a tampered body, another secret or id, a replayed or future timestamp and
//! malformed headers. A receiver that refuses, redirects or cannot be reached leaves the message on the
//! queue (a batch item failure) to come back with the same `webhook-id`; no secret is logged.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use credential_webhooks::{DeliveryError, SetupError, WebhookSender, read_secret, webhook_url};
use credvault::lifecycle::{EventKind, EventPublisher, LifecycleEvent};
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

/// A bus of the test's own, a rule on it with the template's pattern, and the queue it fills.
struct Pipeline {
    publisher: EventPublisher,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

impl Pipeline {
    async fn new() -> Self {
        let config = credvault_tests::aws::emulator_config(&credvault_tests::moto::endpoint());
        let events = aws_sdk_eventbridge::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let name = format!(
            "credvault-webhooks-{}",
            credvault::random::token(8).replace(['-', '_'], "x")
        );
        events.create_event_bus().name(&name).send().await.expect("a bus");
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name(&name)
            .event_bus_name(&name)
            .event_pattern(json!({"source": [credvault::lifecycle::SOURCE]}).to_string())
            .send()
            .await
            .expect("the webhook rule");
        events
            .put_targets()
            .rule(&name)
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("webhook-queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("the queue as its target");
        Self {
            publisher: EventPublisher {
                client: events,
                bus: name,
            },
            sqs,
            queue_url,
        }
    }

    /// Publishes `events` as credential-events does, and takes what the queue then holds: the batch
    /// Lambda would hand the function.
    async fn batch_of(&self, events: &[LifecycleEvent]) -> Value {
        self.publisher.publish(events).await.expect("published");
        let mut records = Vec::new();
        for _ in 0..20 {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for message in received.messages.unwrap_or_default() {
                records.push(json!({
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt_handle,
                    "body": message.body,
                    "eventSource": "aws:sqs",
                }));
            }
            if records.len() >= events.len() {
                break;
            }
        }
        assert_eq!(records.len(), events.len(), "the rule put every event on the queue");
        json!({"Records": records})
    }
}

fn reauth_event() -> LifecycleEvent {
    LifecycleEvent {
        kind: EventKind::ReauthenticationRequired,
        event_id: format!("9f2c{}", credvault::random::token(6)),
        connection_id: "con_google".into(),
        user_id: "google|104".into(),
        reason: Some("invalid_grant".into()),
        recovered: None,
        occurred_at: 1_796_000_000,
    }
}

async fn handle(sender: &WebhookSender, batch: &Value) -> Value {
    credential_webhooks::handle(
        sender,
        &credvault::clock::SystemClock,
        LambdaEvent::new(batch.clone(), Context::default()),
    )
    .await
}

/// What the Standard Webhooks reference library (tests/js/standard-webhooks.js) says of one request.
fn reference_library_says(secret: &str, headers: &HeaderMap, body: &[u8]) -> String {
    let root = credvault_tests::workspace_root();
    let input = json!({
        "secret": secret,
        "headers": header_map(headers),
        "body": String::from_utf8(body.to_vec()).unwrap(),
    });
    run_with_stdin(
        std::process::Command::new("node").arg(root.join("tests/js/standard-webhooks.js")),
        &input,
    )
}

fn header_map(headers: &HeaderMap) -> Value {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    json!({
        "webhook-id": header("webhook-id"),
        "webhook-timestamp": header("webhook-timestamp"),
        "webhook-signature": header("webhook-signature"),
    })
}

fn run_with_stdin(command: &mut std::process::Command, input: &Value) -> String {
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the interpreter (make bootstrap)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The README's verifier (the Python block after its `verify-webhook` marker), run on one request:
/// `True` or `False` as the receiver would decide.
fn readme_verifier_accepts(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    readme_verifier_accepts_raw(secret, header_map(headers), body)
}

fn readme_verifier_accepts_raw(secret: &str, headers: Value, body: &[u8]) -> bool {
    let root = credvault_tests::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let marker = readme
        .find("<!-- verify-webhook")
        .expect("the README shows the verifier");
    let code = &readme[marker..];
    let start = code.find("```python\n").expect("a python block") + "```python\n".len();
    let code = &code[start..];
    let code = &code[..code.find("```").unwrap()];
    let driver = format!(
        "{code}\nimport json, sys\nx = json.load(sys.stdin)\nprint(verify_credvault_webhook(x['secret'], x['headers'], x['body'].encode()))\n"
    );
    let input = json!({"secret": secret, "headers": headers, "body": String::from_utf8(body.to_vec()).unwrap()});
    match run_with_stdin(
        std::process::Command::new(root.join(".venv/bin/python"))
            .arg("-c")
            .arg(driver),
        &input,
    )
    .as_str()
    {
        "True" => true,
        "False" => false,
        other => panic!("the verifier printed {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_arrives_signed_and_the_readme_verifier_checks_it() {
    let logs = credvault_tests::logs::capture();
    let secret = format!("whk-{}", credvault::random::token(32));
    let arn = stored_secret(&secret).await;
    let (base, received) = receiver().await;
    let sender = WebhookSender::new(
        webhook_url(&format!("{base}/hook"), true).unwrap(),
        &read_secret(&secrets_client(), &arn)
            .await
            .expect("the secret from moto"),
    )
    .unwrap();
    let pipeline = Pipeline::new().await;
    let event = reauth_event();
    let batch = pipeline.batch_of(std::slice::from_ref(&event)).await;

    let before = credvault::clock::Clock::now_secs(&credvault::clock::SystemClock);
    assert_eq!(handle(&sender, &batch).await, json!({"batchItemFailures": []}));
    // The same message again (its visibility ended before it was deleted): the same webhook id.
    assert_eq!(handle(&sender, &batch).await, json!({"batchItemFailures": []}));

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

    assert_eq!(reference_library_says(&secret, headers, body), "verified");
    assert!(
        readme_verifier_accepts(&secret, headers, body),
        "the README's verifier accepts it"
    );
    let mut tampered = body.to_vec();
    let at = tampered.len() - 2;
    tampered[at] ^= 1;
    assert!(!readme_verifier_accepts(&secret, headers, &tampered), "a changed body");
    assert_ne!(reference_library_says(&secret, headers, &tampered), "verified");
    assert!(
        !readme_verifier_accepts(&format!("{secret}x"), headers, body),
        "another secret"
    );
    let with = |name: &str, value: &str| {
        let mut h = header_map(headers);
        h[name] = json!(value);
        h
    };
    assert!(
        !readme_verifier_accepts_raw(&secret, with("webhook-id", "another"), body),
        "another id"
    );
    for timestamp in [sent_at - 3600, sent_at + 3600] {
        assert!(
            !readme_verifier_accepts_raw(&secret, with("webhook-timestamp", &timestamp.to_string()), body),
            "a timestamp an hour off (a replay): {timestamp}"
        );
    }
    for (name, value) in [
        ("webhook-timestamp", "²"),
        ("webhook-timestamp", ""),
        ("webhook-signature", "v1,é"),
        ("webhook-signature", ""),
    ] {
        assert!(
            !readme_verifier_accepts_raw(&secret, with(name, value), body),
            "{name}: {value:?}"
        );
    }
    let mut missing = header_map(headers);
    missing.as_object_mut().unwrap().remove("webhook-signature");
    assert!(
        !readme_verifier_accepts_raw(&secret, missing, body),
        "no signature header"
    );

    assert!(!format!("{sender:?}").contains(&secret[4..]), "Debug hides the key");
    let logged = logs.contents();
    assert!(
        logged.contains("webhook delivered"),
        "the capture sees the function's logs"
    );
    assert!(!logged.contains(&secret[4..]), "no secret in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_redirecting_or_absent_receiver_leaves_the_message_on_the_queue() {
    let logs = credvault_tests::logs::capture();
    let secret = SecretString::from(format!("whk-{}", credvault::random::token(32)));
    let (base, received) = receiver().await;
    let pipeline = Pipeline::new().await;
    let events = [reauth_event(), reauth_event()];
    let batch = pipeline.batch_of(&events).await;
    let message_ids: Vec<Value> = batch["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!({"itemIdentifier": r["messageId"]}))
        .collect();
    let sender = WebhookSender::new(webhook_url(&format!("{base}/hook"), true).unwrap(), &secret).unwrap();

    // Refused: both messages come back.
    *received.status.lock().unwrap() = Some(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(handle(&sender, &batch).await, json!({"batchItemFailures": message_ids}));
    assert_eq!(received.requests.lock().unwrap().len(), 2);
    let one = credential_webhooks::Webhook::of_event(
        &serde_json::from_str(batch["Records"][0]["body"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        sender.deliver(&one, 0).await,
        Err(DeliveryError::Refused(503))
    ));

    // Taken: none comes back.
    *received.status.lock().unwrap() = None;
    assert_eq!(handle(&sender, &batch).await, json!({"batchItemFailures": []}));

    // A redirect is not followed: the signed message goes nowhere the operator did not name.
    let before = received.requests.lock().unwrap().len();
    let moved = WebhookSender::new(webhook_url(&format!("{base}/moved"), true).unwrap(), &secret).unwrap();
    assert_eq!(handle(&moved, &batch).await, json!({"batchItemFailures": message_ids}));
    assert!(matches!(moved.deliver(&one, 0).await, Err(DeliveryError::Refused(307))));
    assert_eq!(
        received.requests.lock().unwrap().len(),
        before,
        "/hook not reached through the redirect"
    );

    // Nobody listening: a connect failure, and the error names neither the URL nor a secret.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let absent = WebhookSender::new(webhook_url(&format!("http://{closed}/hook"), true).unwrap(), &secret).unwrap();
    assert_eq!(handle(&absent, &batch).await, json!({"batchItemFailures": message_ids}));
    let error = absent.deliver(&one, 0).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Unreachable { connect: true, .. }),
        "{error:?}"
    );
    assert!(!error.to_string().contains(&closed.port().to_string()), "{error}");

    // Not a credvault event (another source, or not JSON): dropped, never signed or sent.
    let mut foreign: Value = serde_json::from_str(batch["Records"][0]["body"].as_str().unwrap()).unwrap();
    foreign["source"] = json!("aws.s3");
    let odd = json!({"Records": [
        {"messageId": "m-foreign", "body": foreign.to_string()},
        {"messageId": "m-text", "body": "not json"},
    ]});
    let before = received.requests.lock().unwrap().len();
    assert_eq!(handle(&sender, &odd).await, json!({"batchItemFailures": []}));
    assert_eq!(received.requests.lock().unwrap().len(), before);

    use secrecy::ExposeSecret;
    let logged = logs.contents();
    assert!(
        logged.contains("webhook not delivered"),
        "the capture sees the function's logs"
    );
    assert!(!logged.contains(&secret.expose_secret()[4..]), "no secret in the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_does_not_start_with_a_weak_or_missing_secret() {
    let client = secrets_client();
    let short = stored_secret("too-short").await;
    let secret = read_secret(&client, &short).await.unwrap();
    let error = WebhookSender::new(webhook_url("https://hooks.example.com/x", false).unwrap(), &secret).unwrap_err();
    assert!(matches!(error, SetupError::WeakSecret(_)), "{error:?}");
    let missing = read_secret(
        &client,
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:none-AbCdEf",
    )
    .await
    .unwrap_err();
    assert!(matches!(missing, SetupError::SecretUnavailable(_)), "{missing:?}");
    assert!(matches!(
        webhook_url("http://hooks.example.com/x", true),
        Err(SetupError::UnsafeUrl)
    ));
}
