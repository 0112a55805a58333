//! Lifecycle events from the table's stream: a credential's whole life over real HTTP (login, refresh
//! failures, recovery, the provider revoking it, `invalid_grant`, a new login, disconnect), then moto's
//! DynamoDB Stream read as Lambda would deliver it to credential-events, whose events go to moto's
//! EventBridge. The sequence is asserted exactly; a redelivered batch gives the same event ids; a
//! batch EventBridge does not take is retried from its first record, nothing after it published.

use std::sync::Mutex;

use credvault::lifecycle::{EventKind, EventPublisher, LifecycleEvent, PublishError};
use credvault_tests::fake_provider::Failure;
use credvault_tests::stack::encode;
use credvault_tests::stream::StreamReader;
use credvault_tests::{LocalStack, LoggedIn, StackOptions};
use lambda_http::lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

/// Publishes to moto's EventBridge and keeps what it published.
struct Captured {
    forward: EventPublisher,
    events: Mutex<Vec<LifecycleEvent>>,
    /// Refuse the publish with this index (counting from 0), to stand for an EventBridge outage.
    fail_publish: Option<usize>,
    publishes: Mutex<usize>,
}

impl credential_events::EventSink for Captured {
    fn publish<'a>(
        &'a self,
        events: &'a [LifecycleEvent],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PublishError>> + Send + 'a>> {
        Box::pin(async move {
            let n = {
                let mut count = self.publishes.lock().unwrap();
                *count += 1;
                *count - 1
            };
            if self.fail_publish == Some(n) {
                return Err(PublishError::Refused(vec![0]));
            }
            self.forward.publish(events).await?;
            self.events.lock().unwrap().extend(events.iter().cloned());
            Ok(())
        })
    }
}

fn publisher(stack: &LocalStack) -> EventPublisher {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(aws_sdk_eventbridge::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_eventbridge::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "credvault-tests",
        ))
        .endpoint_url(&stack.aws.endpoint)
        .build();
    EventPublisher {
        client: aws_sdk_eventbridge::Client::from_conf(config),
        bus: "default".into(),
    }
}

fn captured(stack: &LocalStack, fail_publish: Option<usize>) -> Captured {
    Captured {
        forward: publisher(stack),
        events: Mutex::new(Vec::new()),
        fail_publish,
        publishes: Mutex::new(0),
    }
}

async fn deliver(sink: &Captured, records: &[Value]) -> Value {
    credential_events::handle(sink, LambdaEvent::new(json!({"Records": records}), Context::default()))
        .await
        .expect("the batch is handled")
}

async fn fetch(stack: &LocalStack, user: &LoggedIn) -> u16 {
    let path = format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&user.user_id)
    );
    stack.call("GET", &path, Some(&user.access_token), None).await.0
}

/// The whole life of one credential, as the vault's own writes make it.
async fn a_life(stack: &LocalStack) -> LoggedIn {
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let alice = stack.login_as("alice").await;
    // Two refresh failures in a row, then a refresh that works.
    stack.clock.advance(3600);
    stack.provider.fail_next(&[Failure::Status(503)]);
    assert_eq!(fetch(stack, &alice).await, 503);
    stack.clock.advance(120);
    stack.provider.fail_next(&[Failure::Status(503)]);
    assert_eq!(fetch(stack, &alice).await, 503);
    stack.clock.advance(600);
    assert_eq!(fetch(stack, &alice).await, 200);
    // The provider revokes the grant: invalid_grant on the next refresh.
    stack.clock.advance(3600);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    assert_eq!(fetch(stack, &alice).await, 409);
    // The user logs in again, then disconnects.
    let again = stack.login_as("alice").await;
    assert_eq!(fetch(stack, &again).await, 200);
    let path = format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(&again.user_id)
    );
    assert_eq!(
        stack.call("DELETE", &path, Some(&again.access_token), None).await.0,
        204
    );
    again
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentials_life_is_told_as_exactly_its_transitions() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = a_life(&stack).await;
    let records = StreamReader::of(&stack.aws).await.records().await;
    assert!(records.len() > 10, "every write of the table is in the stream");

    let sink = captured(&stack, None);
    let answer = deliver(&sink, &records).await;
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let events = sink.events.lock().unwrap().clone();
    let told: Vec<(EventKind, Option<String>, Option<bool>)> =
        events.iter().map(|e| (e.kind, e.reason.clone(), e.recovered)).collect();
    assert_eq!(
        told,
        vec![
            (EventKind::Connected, None, Some(false)),
            (EventKind::RefreshFailing, None, None),
            (EventKind::ReauthenticationRequired, Some("invalid_grant".into()), None),
            (EventKind::Connected, None, Some(true)),
            (EventKind::Disconnected, None, None),
        ],
        "{events:#?}"
    );
    for event in &events {
        assert_eq!(
            (event.connection_id.as_str(), event.user_id.as_str()),
            ("con_demo", alice.user_id.as_str())
        );
    }
    // No token or secret in any event.
    let details: String = events.iter().map(|e| e.detail().to_string()).collect();
    for secret in stack.provider.issued_secrets() {
        assert!(!details.contains(&secret), "a secret in an event");
    }
    assert!(!details.contains(&alice.access_token));

    // Lambda delivers a batch again after a failure: the same changes, the same event ids.
    let again = captured(&stack, None);
    deliver(&again, &records).await;
    let ids = |events: &[LifecycleEvent]| events.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again.events.lock().unwrap()), ids(&events));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_eventbridge_refuses_is_retried_from_its_first_record_in_order() {
    let stack = LocalStack::start(StackOptions::default()).await;
    // Eleven users: their logins are eleven transitions, two publishes of up to ten.
    for i in 0..11 {
        stack.login_as(&format!("user{i}")).await;
    }
    let records = StreamReader::of(&stack.aws).await.records().await;
    let sink = captured(&stack, Some(1));
    let answer = deliver(&sink, &records).await;
    let published = sink.events.lock().unwrap().clone();
    assert_eq!(published.len(), 10, "the first ten went out");
    let retry_from = answer["batchItemFailures"][0]["itemIdentifier"]
        .as_str()
        .expect("the record to retry from")
        .to_string();
    // Lambda retries from that record: exactly the one left is published, nothing twice.
    let position = records
        .iter()
        .position(|r| r["dynamodb"]["SequenceNumber"] == retry_from.as_str())
        .expect("a record of the batch");
    let retry = captured(&stack, None);
    deliver(&retry, &records[position..]).await;
    let rest = retry.events.lock().unwrap().clone();
    assert_eq!(rest.len(), 1, "{rest:#?}");
    assert!(published.iter().all(|e| e.event_id != rest[0].event_id));
    assert!(rest.iter().chain(&published).all(|e| e.kind == EventKind::Connected));
}
