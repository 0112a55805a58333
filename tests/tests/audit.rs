//! The audit trail: each credential read, refresh, re-authentication transition, disconnect and grant
//! change is an event an administrator can read back, filtered by credential or caller, with no secret.

use credvault_tests::stack::encode;
use credvault_tests::{Failure, LocalStack, StackOptions};
use serde_json::{Value, json};

fn actions(events: &Value) -> Vec<String> {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audited_action_is_recorded_and_readable_without_secrets() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let credential = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));

    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    ); // refreshes
    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    ); // served from store
    let (client_id, key) = stack.new_client("curious").await;
    assert_eq!(
        stack
            .call("GET", &credential, Some(&stack.client_token(&key)), None)
            .await
            .0,
        403
    );
    let role = json!({"roleId": "ro_audited", "name": "x", "permissions": [{"action": "a:b", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    stack.clock.advance(3500);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        409
    );
    assert_eq!(
        stack
            .call("DELETE", &credential, Some(&user.access_token), None)
            .await
            .0,
        204
    );

    // Reads reach the trail through credential-fetch's log and audit-ingest.
    stack.audit_flushed().await;
    let query = format!(
        "/v1/audit?connectionId=con_demo&userId={}&limit=50",
        encode(&user.user_id)
    );
    let (status, events) = stack.call("GET", &query, Some(&admin), None).await;
    assert_eq!(status, 200, "{events}");
    let seen = actions(&events);
    // Newest first. A read is stamped when it starts (its event is logged as it ends), so the refresh
    // or re-authentication it caused comes after it.
    let expected = [
        "credential.disconnect:ok",
        "credential.reauth_required:ok",
        "credential.read:reauthentication_required",
        "credential.read:forbidden",
        "credential.read:ok",
        "credential.refresh:ok",
        "credential.read:ok",
        "credential.store:ok",
    ];
    assert_eq!(seen, expected, "{events}");
    let reads: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credential.read" && e["outcome"] == "ok")
        .collect();
    assert_eq!(reads[0]["refreshed"], false);
    assert_eq!(reads[1]["refreshed"], true);
    assert_eq!(reads[0]["caller"], user.user_id.as_str());

    let (_, by_caller) = stack
        .call("GET", &format!("/v1/audit?caller={client_id}"), Some(&admin), None)
        .await;
    assert_eq!(actions(&by_caller), ["credential.read:forbidden"]);
    let (_, grants) = stack.call("GET", "/v1/audit?resource=Roles", Some(&admin), None).await;
    assert!(actions(&grants).contains(&"role.create:ok".to_string()), "{grants}");

    // Paging walks the whole trail without repeats.
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit?limit=3&cursor={c}"),
            None => "/v1/audit?limit=3".to_string(),
        };
        let (status, page) = stack.call("GET", &path, Some(&admin), None).await;
        assert_eq!(status, 200);
        ids.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventId"].as_str().unwrap().to_string()),
        );
        match page["pagination"]["next"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.len() >= expected.len() + 2);

    // Only administrators read it, and it holds no secret.
    assert_eq!(
        stack
            .call("GET", "/v1/audit", Some(&stack.client_token(&key)), None)
            .await
            .0,
        403
    );
    assert_eq!(
        stack.call("GET", "/v1/audit", Some(&user.access_token), None).await.0,
        403
    );
    let (_, everything) = stack.call("GET", "/v1/audit?limit=100", Some(&admin), None).await;
    let text = everything.to_string();
    for secret in stack
        .provider
        .issued_secrets()
        .iter()
        .chain([&user.access_token, &stack.admin_key, &key])
    {
        assert!(!text.contains(secret.as_str()), "an audit event holds a secret");
    }
}

/// The read path writes nothing to the table: a warm read is one DynamoDB read, a refused one writes
/// nothing either, however many an unauthorized caller asks for; each one's event is on the log as
/// the read is answered, and in the trail once audit-ingest has stored it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_refusals_are_audited_through_the_log_without_a_table_write() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let user = stack.login().await;
    let credential = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    let (stranger_id, stranger_key) = stack.new_client("stranger").await;
    let stranger = stack.client_token(&stranger_key);
    // Warm the caches (signing key, data key, grants) first: only the reads themselves are counted.
    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    );
    assert_eq!(stack.call("GET", &credential, Some(&stranger), None).await.0, 403);
    stack.audit_flushed().await;
    let lines_before = stack.audit_log.written();
    stack.counters.reset();

    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    );
    let (reads, writes, kms) = stack.counters.snapshot();
    assert_eq!(
        (reads, writes, kms),
        (1, 0, 0),
        "a warm read: the credential's GetItem only"
    );
    for _ in 0..20 {
        assert_eq!(stack.call("GET", &credential, Some(&stranger), None).await.0, 403);
    }
    let (_, writes, _) = stack.counters.snapshot();
    assert_eq!(writes, 0, "refusals write nothing to the table");
    assert_eq!(
        stack.audit_log.written() - lines_before,
        21,
        "one audit line per read asked for"
    );

    stack.audit_flushed().await;
    let (status, by_stranger) = stack
        .call(
            "GET",
            &format!("/v1/audit?caller={stranger_id}&limit=100"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{by_stranger}");
    assert_eq!(actions(&by_stranger), vec!["credential.read:forbidden"; 21]);
    let (_, by_user) = stack
        .call(
            "GET",
            &format!("/v1/audit?caller={}&limit=100", encode(&user.user_id)),
            Some(&admin),
            None,
        )
        .await;
    let reads: Vec<&Value> = by_user["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credential.read")
        .collect();
    assert_eq!(reads.len(), 2, "{by_user}");
    assert!(reads.iter().all(|e| e["outcome"] == "ok"
        && e["refreshed"] == false
        && e["resource"] == format!("Connections/con_demo/Users/{}/Credentials", user.user_id).as_str()));
}

/// audit-ingest takes the lines of one log group, stores each event once however often a batch is
/// delivered, never lets a line rewrite a stored event, skips what is not an audit line, and fails a
/// batch it cannot store so that Lambda delivers it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_ingest_stores_each_event_once_and_never_rewrites_one() {
    use audit_ingest::{AuditSource, IngestError, Ingested};
    use credvault::audit::{AuditEvent, log_line};
    use credvault_tests::log_subscription::{LOG_GROUP, packed};

    let stack = LocalStack::start(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await;
    let admin = stack.client_token(&stack.admin_key);
    let trail = &stack.instance.audit;
    let source = AuditSource {
        log_group: LOG_GROUP.to_string(),
    };
    let caller = format!("caller-{}", credvault::random::token(6));
    let event = AuditEvent::new(
        "credential.read",
        Some(&caller),
        "Connections/con_demo/Users/u1/Credentials",
        Ok(()),
    )
    .refreshed(false);
    let at_ms = 1_700_000_000_000;
    let line = log_line(&event, at_ms);
    let forged = log_line(
        &AuditEvent {
            outcome: "forbidden".into(),
            ..event.clone()
        },
        at_ms,
    );
    let diagnostic = json!({"level": "INFO", "fields": {"message": "audit event", "audit": line}}).to_string();
    let mut sequence = 0;
    let batch = packed(&[line.clone(), "START RequestId: 1".into(), diagnostic], &mut sequence);

    // DynamoDB refuses the write: the batch fails, to be delivered again.
    stack
        .aws_proxy
        .as_ref()
        .unwrap()
        .fault("PutItem", credvault_tests::aws_proxy::Fault::Unavailable, 0, 10);
    let failed = audit_ingest::handle(trail, &source, batch.clone()).await;
    assert!(matches!(failed, Err(IngestError::Store(_))), "{failed:?}");
    stack.aws_proxy.as_ref().unwrap().clear_faults();

    for _ in 0..3 {
        let ingested = audit_ingest::handle(trail, &source, batch.clone()).await.unwrap();
        assert_eq!(ingested, Ingested { stored: 1, skipped: 2 });
    }
    // The same key with another outcome: taken as delivered, and the stored event is left as it was.
    audit_ingest::handle(trail, &source, packed(&[forged], &mut sequence))
        .await
        .unwrap();
    // From another log group: refused whole.
    let mut elsewhere = packed(&[log_line(&event.clone().reason("x"), at_ms + 1)], &mut sequence);
    elsewhere.aws_logs.data.log_group = "/aws/lambda/someone-else".into();
    assert!(matches!(
        audit_ingest::handle(trail, &source, elsewhere).await,
        Err(IngestError::OtherLogGroup(_))
    ));
    // CloudWatch's check of a new subscription's destination.
    let mut control = packed(&[line], &mut sequence);
    control.aws_logs.data.message_type = "CONTROL_MESSAGE".into();
    assert_eq!(
        audit_ingest::handle(trail, &source, control).await.unwrap(),
        Ingested::default()
    );

    let (status, events) = stack
        .call(
            "GET",
            &format!("/v1/audit?caller={caller}&limit=100"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{events}");
    let stored = events["events"].as_array().unwrap();
    assert_eq!(stored.len(), 1, "one event, however often delivered: {events}");
    assert_eq!(stored[0]["eventId"], event.event_id.as_str());
    assert_eq!(stored[0]["outcome"], "ok", "as first stored");
    assert_eq!(stored[0]["time"], "2023-11-14T22:13:20.000Z");
    assert!(stored[0].get("reason").is_none(), "nothing from the other log group");
}
