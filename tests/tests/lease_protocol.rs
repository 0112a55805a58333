//! The refresh lease protocol, deterministically: the protocol (credvault::vault::RefreshProtocol) over
//! the in-memory repository, the fake provider over HTTP and the test clock, so lease races are set up
//! exactly rather than waited for; and the conditional writes every race relies on, held to the same
//! table for the in-memory repository and for DynamoDB on moto.

use std::sync::Arc;
use std::time::Duration;

use credvault::config::RefreshTiming;
use credvault::oauth::Connection;
use credvault::oauth::connection::IssuedUnder;
use credvault::oauth::pkce::PkceVerifier;
use credvault::oauth::provider::ProviderClient;
use credvault::store::credentials::{
    CredentialItem, CredentialRepository, CredentialStatus, DynamoCredentials, FailedAttempt, NewTokens, PlainTokens,
    RefreshLease,
};
use credvault::vault::RefreshProtocol;
use credvault_tests::clock::TestClock;
use credvault_tests::fake_provider::Failure;
use credvault_tests::memory::{CollectedAudit, MemoryConnections, MemoryCredentials};
use credvault_tests::stack::provider_connection;
use credvault_tests::{FakeProvider, LocalStack, StackOptions};
use secrecy::{ExposeSecret, SecretString};

const USER: &str = "con_demo|alice";

fn timing() -> RefreshTiming {
    RefreshTiming {
        lease_length: Duration::from_secs(5),
        provider_timeout: Duration::from_millis(800),
        provider_attempts: 3,
        poll_deadline: Duration::from_secs(8),
        unknown_outcome_wait: Duration::from_secs(9),
    }
}

/// A real grant from the fake provider (authorize, then the code exchange), as a login gets it.
async fn provider_grant(provider: &FakeProvider, connection: &Connection, client: &ProviderClient) -> PlainTokens {
    let verifier = PkceVerifier::generate();
    let redirect_uri = "https://vault.example.com/api/callback/con_demo";
    let mut url = url::Url::parse(&connection.authentication_url).unwrap();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &connection.client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", "s")
        .append_pair("nonce", "n")
        .append_pair("code_challenge", &verifier.challenge())
        .append_pair("code_challenge_method", "S256");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let consent = http.get(url).send().await.unwrap();
    let back = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    let code = back.query_pairs().find(|(k, _)| k == "code").unwrap().1.to_string();
    let tokens = client
        .exchange_code(connection, &SecretString::from(code), &verifier, redirect_uri)
        .await
        .expect("code exchange");
    let _ = provider;
    PlainTokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        access_expires_at: 0,
        access_issued_at: 0,
        token_type: tokens.token_type,
        scope: tokens.scope,
        metadata: Default::default(),
        keep_alive_due_at: None,
    }
}

struct Protocol {
    provider: FakeProvider,
    credentials: Arc<MemoryCredentials>,
    audit: CollectedAudit,
    clock: TestClock,
    vault: RefreshProtocol,
}

/// One instance of the protocol over an expired stored credential.
async fn protocol() -> Protocol {
    let provider = FakeProvider::start().await;
    let connection = provider_connection(&provider, "con_demo");
    let client = Arc::new(ProviderClient::new(timing().provider_timeout, timing().provider_attempts).unwrap());
    let credentials = Arc::new(MemoryCredentials::default());
    let connections = Arc::new(MemoryConnections::default());
    connections
        .connections
        .lock()
        .unwrap()
        .insert("con_demo".into(), connection.clone());
    let grant = provider_grant(&provider, &connection, &client).await;
    let sealed = sealed(&*credentials, "con_demo", USER, grant).await;
    credentials
        .save_after_login("con_demo", USER, None, sealed, &IssuedUnder::of(&connection), 0)
        .await
        .unwrap();
    let clock = TestClock::default();
    let audit = CollectedAudit::default();
    let vault = RefreshProtocol {
        credentials: credentials.clone(),
        connections,
        provider: client,
        clock: Arc::new(clock.clone()),
        timing: timing(),
        audit: Arc::new(audit.clone()),
        fetches: Default::default(),
    };
    Protocol {
        provider,
        credentials,
        audit,
        clock,
        vault,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_fetches_of_an_expired_credential_make_one_refresh() {
    let p = protocol().await;
    let fetches = (0..25).map(|_| p.vault.fresh_access_token("con_demo", USER, Duration::from_secs(60)));
    let results = credvault_tests::join_all(fetches.collect()).await;
    assert!(results.iter().all(|r| r.is_ok()), "every fetch got a token");
    assert_eq!(p.provider.counters().refreshes, 1, "one provider call for all of them");
    assert_eq!(
        results.iter().filter(|r| r.as_ref().is_ok_and(|t| t.refreshed)).count(),
        1
    );
    let stored = p.credentials.refresh_token("con_demo", USER).unwrap();
    assert!(
        p.provider.refresh_token_is_live(&stored),
        "the rotated refresh token was kept"
    );
    assert_eq!(p.audit.actions(), ["credential.refresh"]);
    assert_eq!(p.provider.counters().reuse_detected, 0);
    // The lease covered the refresh from the start: no renewal was needed, one claim, one commit.
    assert_eq!(*p.credentials.writes.lock().unwrap(), ["claim", "commit"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_lease_of_another_instance_is_waited_for_and_an_expired_one_is_taken_over() {
    let mut p = protocol().await;
    // Waiting gives up after a short deadline here, so the test does not wait for real.
    p.vault.timing.poll_deadline = Duration::from_millis(300);
    let item = p.credentials.item("con_demo", USER).unwrap();
    // Another instance claimed the lease (a minute long) and died before refreshing.
    let now_ms = credvault::clock::Clock::now_millis(&p.clock);
    assert!(
        p.credentials
            .claim_lease(&item, "dead-instance", now_ms, 60_000)
            .await
            .unwrap()
    );
    // While its lease lives, a fetch waits and, past its deadline, answers 503 without a provider call.
    let waited = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(waited, Err(credvault::vault::VaultError::ProviderUnavailable { .. })),
        "{waited:?}"
    );
    assert_eq!(p.provider.counters().refreshes, 0);
    // Waiting backs off (20 ms doubling to 100 ms, jittered down to half): a handful of reads in the
    // 300 ms, not one every 10 to 20 ms.
    let reads = p.credentials.reads.load(std::sync::atomic::Ordering::Relaxed);
    assert!((3..=12).contains(&reads), "{reads} reads while waiting 300 ms");
    // Once it has run out (by the test clock, no waiting), the next fetch takes it over.
    p.clock.advance(61);
    let taken = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(taken.refreshed);
    assert_eq!(p.provider.counters().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_marks_the_credential_dead_and_stops_calling_the_provider() {
    let p = protocol().await;
    p.provider.fail_next(&[Failure::InvalidGrant]);
    let first = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(first, Err(credvault::vault::VaultError::ReauthenticationRequired)),
        "{first:?}"
    );
    assert_eq!(
        p.credentials.item("con_demo", USER).unwrap().status,
        CredentialStatus::ReauthRequired
    );
    let second = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(matches!(
        second,
        Err(credvault::vault::VaultError::ReauthenticationRequired)
    ));
    assert_eq!(
        p.provider.counters().refreshes,
        1,
        "no provider call for a dead credential"
    );
    assert_eq!(p.audit.actions(), ["credential.reauth_required"]);
}

/// A claim that took most of the lease (a slow store): the holder renews its lease before it calls the
/// provider, rather than calling with too little left for another instance not to take over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_renews_a_lease_too_short_for_the_provider_call() {
    let p = protocol().await;
    let clock = p.clock.clone();
    // The claim "takes" 4 of the lease's 5 seconds.
    *p.credentials.claim_takes.lock().unwrap() = Some(Box::new(move || clock.advance(4)));
    let fresh = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(fresh.refreshed);
    assert_eq!(p.provider.counters().refreshes, 1);
    let writes = p.credentials.writes.lock().unwrap().clone();
    assert_eq!(writes, ["claim", "renew", "commit"], "renewed before the provider call");
}

/// When even the renewal is too slow to leave enough lease, nothing is sent to the provider: the fetch
/// answers 503 and the refresh token stays unspent, for a later fetch with a faster store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enough_lease_the_provider_is_not_called() {
    let p = protocol().await;
    let (claim_clock, renewal_clock) = (p.clock.clone(), p.clock.clone());
    *p.credentials.claim_takes.lock().unwrap() = Some(Box::new(move || claim_clock.advance(4)));
    *p.credentials.renewal_takes.lock().unwrap() = Some(Box::new(move || renewal_clock.advance(4)));
    let stored = p.credentials.refresh_token("con_demo", USER).unwrap();
    let answer = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(answer, Err(credvault::vault::VaultError::ProviderUnavailable { .. })),
        "{answer:?}"
    );
    assert_eq!(
        p.provider.counters().refreshes,
        0,
        "no provider call without the lease to cover it"
    );
    assert!(
        p.credentials.item("con_demo", USER).unwrap().lease.is_none(),
        "the lease was given back"
    );
    assert_eq!(p.credentials.refresh_token("con_demo", USER).unwrap(), stored);
    // With a fast store again, the next fetch refreshes with the unspent token.
    let later = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(later.refreshed);
    assert_eq!(p.provider.counters().reuse_detected, 0);
}

/// Tokens a refresh (or a login) would seal, named `n`: `at-n`, `rt-n`.
fn tokens(n: &str) -> PlainTokens {
    PlainTokens {
        access_token: SecretString::from(format!("at-{n}")),
        refresh_token: Some(SecretString::from(format!("rt-{n}"))),
        access_expires_at: 10_000,
        access_issued_at: 0,
        token_type: "Bearer".into(),
        scope: None,
        metadata: Default::default(),
        keep_alive_due_at: None,
    }
}

/// `tokens` sealed for one credential, as a refresh or a login hands them to the repository.
async fn sealed(repo: &dyn CredentialRepository, connection_id: &str, user_id: &str, tokens: PlainTokens) -> NewTokens {
    repo.sealer(connection_id, user_id).await.unwrap().seal(tokens).unwrap()
}

/// The conditions every race relies on, for both repositories: a holder whose lease was taken over can
/// no longer commit, release, or declare the credential dead; only the new holder can.
async fn conditional_writes_hold(repo: &dyn CredentialRepository, connection_id: &str, user_id: &str) {
    let item = repo
        .get(connection_id, user_id)
        .await
        .unwrap()
        .expect("seeded credential");
    assert!(repo.claim_lease(&item, "a", 1_000, 5_000).await.unwrap(), "a claims");
    assert!(
        !repo.claim_lease(&item, "b", 2_000, 5_000).await.unwrap(),
        "a live lease is not taken over"
    );
    let leased = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert_eq!(leased.lease.as_ref().map(|l| l.owner.as_str()), Some("a"));
    assert!(
        repo.claim_lease(&leased, "b", 7_500, 5_000).await.unwrap(),
        "an expired lease is taken over"
    );
    // Its holder may have died after the provider rotated: the rotation is in doubt from now on.
    let taken_over = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert_eq!(taken_over.rotation_unconfirmed_at, Some(7), "in epoch seconds");
    let late = sealed(repo, connection_id, user_id, tokens("late")).await;
    assert!(
        !repo.commit_refresh(&item, "a", late, 0).await.unwrap(),
        "the late holder's commit is refused"
    );
    assert!(
        !repo.release_lease(&item, "a").await.unwrap(),
        "it cannot release the new lease"
    );
    assert!(
        !repo.mark_reauth_required(&item, "a", "invalid_grant", 0).await.unwrap(),
        "nor declare it dead"
    );
    assert!(
        !repo.renew_lease(&item, "a", 7_600, 5_000).await.unwrap(),
        "nor renew the lease it lost"
    );
    assert!(
        repo.renew_lease(&item, "b", 8_000, 5_000).await.unwrap(),
        "the holder renews its own lease"
    );
    let renewed = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert_eq!(
        renewed.lease.map(|l| (l.owner, l.expires_at_ms)),
        Some(("b".to_string(), 13_000)),
        "to now and a lease length"
    );
    let fresh = sealed(repo, connection_id, user_id, tokens("b")).await;
    assert!(
        repo.commit_refresh(&item, "b", fresh, 0).await.unwrap(),
        "the holder commits"
    );
    let now = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert_eq!(now.token_version, item.token_version + 1);
    assert!(now.lease.is_none());
    assert_eq!(
        repo.open_refresh_token(&now).await.unwrap().unwrap().expose_secret(),
        "rt-b"
    );
    let again = sealed(repo, connection_id, user_id, tokens("again")).await;
    assert!(
        !repo.commit_refresh(&item, "b", again, 0).await.unwrap(),
        "never twice onto one version"
    );
}

/// A backoff recorded by one instance holds for a claimer that read the item before it was recorded:
/// the stale read's claim is refused until the backoff ends, and the failure also put the rotation in
/// doubt and counted the streak.
async fn a_recorded_backoff_holds_for_stale_readers(
    repo: &dyn CredentialRepository,
    connection_id: &str,
    user_id: &str,
) {
    let stale = repo
        .get(connection_id, user_id)
        .await
        .unwrap()
        .expect("seeded credential");
    assert!(repo.claim_lease(&stale, "a", 1_000, 5_000).await.unwrap(), "a claims");
    let failed = FailedAttempt {
        next_attempt_at_ms: 10_000,
        may_have_rotated: true,
    };
    assert!(
        !repo.record_failed_attempt(&stale, "b", failed, 1).await.unwrap(),
        "only the holder records a failure"
    );
    assert!(repo.record_failed_attempt(&stale, "a", failed, 1).await.unwrap());
    let after = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert!(after.lease.is_none(), "the lease is given back");
    assert_eq!(after.next_attempt_at_ms, Some(10_000));
    assert_eq!(after.refresh_failures, stale.refresh_failures + 1);
    assert_eq!(after.rotation_unconfirmed_at, Some(1));
    assert!(
        !repo.claim_lease(&stale, "c", 9_999, 5_000).await.unwrap(),
        "a claim from a read taken before the failure waits out the backoff"
    );
    assert!(
        !repo.claim_lease(&after, "c", 9_999, 5_000).await.unwrap(),
        "so does one from a fresh read"
    );
    assert!(
        repo.claim_lease(&after, "c", 10_000, 5_000).await.unwrap(),
        "then it may claim"
    );
}

/// A login under other endpoints that brings no refresh token must not inherit the stored one, or the
/// old refresh token would be pinned to (and later sent to) endpoints it was never issued for.
async fn a_login_under_other_endpoints_drops_the_old_refresh_token(
    repo: &dyn CredentialRepository,
    connection_id: &str,
    user_id: &str,
) {
    let before = repo
        .get(connection_id, user_id)
        .await
        .unwrap()
        .expect("seeded credential");
    assert!(before.refresh_token.is_some());
    let moved = IssuedUnder {
        token_url: "https://elsewhere.example/token".into(),
        ..before.issued_under.clone().expect("pinned")
    };
    let login = |n: &str| PlainTokens {
        refresh_token: None,
        ..tokens(n)
    };
    let same = sealed(repo, connection_id, user_id, login("same")).await;
    let pinned = before.issued_under.clone().unwrap();
    repo.save_after_login(connection_id, user_id, Some(&before), same, &pinned, 0)
        .await
        .unwrap();
    let kept = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert!(
        kept.refresh_token.is_some(),
        "under the same endpoints a login without one keeps it"
    );
    let other = sealed(repo, connection_id, user_id, login("moved")).await;
    repo.save_after_login(connection_id, user_id, Some(&kept), other, &moved, 0)
        .await
        .unwrap();
    let after = repo.get(connection_id, user_id).await.unwrap().unwrap();
    assert!(after.refresh_token.is_none(), "under other endpoints it is dropped");
    assert_eq!(after.issued_under, Some(moved));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conditional_writes_hold_in_memory_and_in_dynamodb() {
    let p = protocol().await;
    a_login_under_other_endpoints_drops_the_old_refresh_token(p.credentials.as_ref(), "con_demo", USER).await;
    let p = protocol().await;
    conditional_writes_hold(p.credentials.as_ref(), "con_demo", USER).await;
    let p = protocol().await;
    a_recorded_backoff_holds_for_stale_readers(p.credentials.as_ref(), "con_demo", USER).await;

    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let dynamo = DynamoCredentials::new(stack.instance.table.clone(), stack.instance.envelope.clone());
    conditional_writes_hold(&dynamo, &stack.connection_id, &user.user_id).await;
    let carol = stack.login_as("carol").await;
    a_recorded_backoff_holds_for_stale_readers(&dynamo, &stack.connection_id, &carol.user_id).await;
    let other = stack.login_as("bob").await;
    a_login_under_other_endpoints_drops_the_old_refresh_token(&dynamo, &stack.connection_id, &other.user_id).await;
}

/// A holder that stalled past its lease, while another instance took the lease over, must not land
/// its tokens: DynamoDB itself refuses the commit, and the stored item (tokens, version, the new
/// holder's lease, every attribute) is exactly as the takeover left it, for the new holder to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_holder_is_refused_at_commit_by_dynamodb_and_changes_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let login_refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    let dynamo = DynamoCredentials::new(stack.instance.table.clone(), stack.instance.envelope.clone());
    let read = dynamo
        .get(&stack.connection_id, &user.user_id)
        .await
        .unwrap()
        .expect("the login's credential");
    let now_ms = credvault::clock::Clock::now_millis(&stack.clock);
    assert!(
        dynamo.claim_lease(&read, "late-holder", now_ms, 5_000).await.unwrap(),
        "the late holder claims first"
    );
    // Its lease runs out while it waits on the provider; another instance takes the lease over.
    assert!(
        dynamo
            .claim_lease(&read, "successor", now_ms + 6_000, 5_000)
            .await
            .unwrap(),
        "the expired lease is taken over"
    );
    let taken_over = stack.raw_credential(&user.user_id).await.unwrap();

    let scoped = |n: &str| PlainTokens {
        scope: Some(format!("scope-{n}")),
        ..tokens(n)
    };
    let late = sealed(&dynamo, &stack.connection_id, &user.user_id, scoped("late")).await;
    assert!(
        !dynamo.commit_refresh(&read, "late-holder", late, 0).await.unwrap(),
        "the late holder's commit is refused while another instance holds the lease"
    );
    assert_eq!(
        stack.raw_credential(&user.user_id).await.unwrap(),
        taken_over,
        "the refused commit changed no attribute"
    );
    let after = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(after.token_version, read.token_version);
    assert_eq!(after.lease.map(|l| l.owner).as_deref(), Some("successor"));
    assert_eq!(
        stack.stored_refresh_token(&user.user_id).await.unwrap(),
        login_refresh_token,
        "the login's refresh token is still the stored one"
    );

    // The new holder commits onto the version both read.
    let fresh = sealed(&dynamo, &stack.connection_id, &user.user_id, scoped("successor")).await;
    assert!(dynamo.commit_refresh(&read, "successor", fresh, 0).await.unwrap());
    let committed = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(committed.token_version, read.token_version + 1);
    assert!(committed.lease.is_none());
    assert_eq!(stack.stored_refresh_token(&user.user_id).await.unwrap(), "rt-successor");
}

/// The user logs in again while a refresh is in flight: the login's tokens take the item over (a new
/// version, no lease), so neither the holder, nor an instance that read the item before the login and
/// claims only now, can write tokens of the old grant over the new one: DynamoDB refuses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_during_a_refresh_leaves_no_way_to_write_the_old_grant_over_it() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let dynamo = DynamoCredentials::new(stack.instance.table.clone(), stack.instance.envelope.clone());
    let read = dynamo
        .get(&stack.connection_id, &user.user_id)
        .await
        .unwrap()
        .expect("the login's credential");
    let now_ms = credvault::clock::Clock::now_millis(&stack.clock);
    assert!(dynamo.claim_lease(&read, "holder", now_ms, 60_000).await.unwrap());

    stack.login().await;
    let relogin_refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    let after_login = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(
        after_login.token_version,
        read.token_version + 1,
        "a login is a new version"
    );

    let stale = sealed(
        &dynamo,
        &stack.connection_id,
        &user.user_id,
        tokens("from-the-old-grant"),
    )
    .await;
    assert!(
        !dynamo.commit_refresh(&read, "holder", stale, 0).await.unwrap(),
        "the holder's commit is refused: the login replaced what it read"
    );
    assert!(
        !dynamo
            .claim_lease(&read, "read-before-the-login", now_ms, 60_000)
            .await
            .unwrap(),
        "a claim on the version before the login is refused"
    );
    assert_eq!(
        stack.stored_refresh_token(&user.user_id).await.unwrap(),
        relogin_refresh_token,
        "the new login's refresh token is kept"
    );
}

/// The provider refused the refresh token and marking the credential dead is throttled: the holder
/// keeps trying while its lease lasts, so the credential ends REAUTH_REQUIRED and its dead token is
/// never sent again by whoever would take the lease over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_dead_mark_is_retried_and_the_dead_token_is_not_sent_again() {
    let p = protocol().await;
    p.credentials.throttle_next.lock().unwrap().insert("mark_reauth", 3);
    p.provider.fail_next(&[Failure::InvalidGrant]);
    let first = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(first, Err(credvault::vault::VaultError::ReauthenticationRequired)),
        "{first:?}"
    );
    let item = p.credentials.item("con_demo", USER).unwrap();
    assert_eq!(item.status, CredentialStatus::ReauthRequired);
    assert!(item.lease.is_none());
    // Well past any lease: nobody sends the dead token again.
    p.clock.advance(3600);
    let again = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(matches!(
        again,
        Err(credvault::vault::VaultError::ReauthenticationRequired)
    ));
    assert_eq!(p.provider.counters().refreshes, 1, "one call with the dead token");
    assert_eq!(p.audit.actions(), ["credential.reauth_required"]);
}

/// Fetches that join another fetch of the same credential in this instance take its token only when
/// it is valid long enough for them; one that asks for more runs the protocol itself and refreshes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_fetch_that_needs_more_validity_than_the_leaders_token_has_refreshes() {
    let p = protocol().await;
    let first = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(first.refreshed, "the stored token was expired");
    let lifetime = first.expires_at - first.issued_at;
    assert_eq!(lifetime, 3600);
    // 1600 s left of 3600: enough for the leader's 60 s, not for the follower's 1700 s (below the
    // half-lifetime cap of 1800 s, so the follower's ask counts in full).
    p.clock.advance(2000);
    *p.credentials.read_takes.lock().unwrap() = Some(Duration::from_millis(300));
    let leader = p.vault.fresh_access_token("con_demo", USER, Duration::from_secs(60));
    let follower = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        p.vault
            .fresh_access_token("con_demo", USER, Duration::from_secs(1700))
            .await
    };
    let (leader, follower) = tokio::join!(leader, follower);
    let (leader, follower) = (leader.unwrap(), follower.unwrap());
    assert!(!leader.refreshed, "the stored token was enough for the leader");
    assert!(
        follower.refreshed,
        "the follower refreshed instead of taking a token too short for it"
    );
    let now = credvault::clock::Clock::now_secs(&p.clock);
    assert!(follower.expires_at - now >= 1700, "{follower:?}");
    assert_eq!(p.provider.counters().refreshes, 2);
}

/// A fetch waiting on another instance's lease takes the token that instance commits, even when it is
/// shorter than the fetch asked for (it is as fresh as the provider makes them), instead of refreshing
/// once more; a credential without a refresh token serves its token while it is valid at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_takes_the_other_instances_commit_and_a_token_without_refresh_is_served_while_valid() {
    let p = protocol().await;
    let item = p.credentials.item("con_demo", USER).unwrap();
    let now_ms = credvault::clock::Clock::now_millis(&p.clock);
    assert!(
        p.credentials
            .claim_lease(&item, "other-instance", now_ms, 60_000)
            .await
            .unwrap()
    );
    let now = credvault::clock::Clock::now_secs(&p.clock);
    // What the other instance commits: 600 s left of 3600, less than the 1800 s the waiter asks for.
    let committed = NewTokens {
        access_token: b"the-other-instances-token".to_vec(),
        refresh_token: None,
        access_expires_at: now + 600,
        access_issued_at: now - 3000,
        token_type: "Bearer".into(),
        scope: None,
        metadata: Default::default(),
        keep_alive_due_at: None,
    };
    let commit = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            p.credentials
                .commit_refresh(&item, "other-instance", committed, now)
                .await
                .unwrap()
        );
    };
    let waiter = p.vault.fresh_access_token("con_demo", USER, Duration::from_secs(1800));
    let ((), taken) = tokio::join!(commit, waiter);
    let taken = taken.unwrap();
    assert_eq!(taken.access_token.expose_secret(), "the-other-instances-token");
    assert!(!taken.refreshed);
    assert_eq!(
        p.provider.counters().refreshes,
        0,
        "no second refresh after the other instance's"
    );

    // The credential still has its refresh token (the commit kept it). Take it away: a provider that
    // issues none (a GitHub OAuth App). The token is still valid for 600 s, below what is asked, and
    // there is no way to get a longer one: it is served, not refused.
    let mut item = p.credentials.item("con_demo", USER).unwrap();
    item.refresh_token = None;
    p.credentials.replace_item(item);
    let served = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(1800))
        .await
        .unwrap();
    assert_eq!(served.access_token.expose_secret(), "the-other-instances-token");
    // Served in its last seconds; at its expiry time it has expired (as a JWT's `exp`), and the user
    // must log in again. The expiry is set against the clock as it reads now (the test clock moves
    // with the wall clock, so a second may tick over meanwhile: that only ever makes it older).
    let expiring_at = |at: i64| {
        let mut item = p.credentials.item("con_demo", USER).unwrap();
        item.access_expires_at = at;
        p.credentials.replace_item(item);
    };
    expiring_at(credvault::clock::Clock::now_secs(&p.clock) + 2);
    let last_seconds = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(last_seconds.is_ok(), "{last_seconds:?}");
    expiring_at(credvault::clock::Clock::now_secs(&p.clock));
    let expired = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(expired, Err(credvault::vault::VaultError::ReauthenticationRequired)),
        "{expired:?}"
    );
    assert_eq!(p.provider.counters().refreshes, 0);
}

/// Many instances claim one lease at the same moment through the emulator: exactly one gets it, as
/// DynamoDB's conditional writes promise (the emulator serves one request at a time for this: its own
/// check-then-write let two claims through when two threads ran them at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_of_one_lease_in_dynamodb_grant_it_once() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let dynamo = Arc::new(DynamoCredentials::new(
        stack.instance.table.clone(),
        stack.instance.envelope.clone(),
    ));
    for round in 0..5 {
        let user = stack.login_as(&format!("racer{round}")).await;
        let read = dynamo.get(&stack.connection_id, &user.user_id).await.unwrap().unwrap();
        let now_ms = credvault::clock::Clock::now_millis(&stack.clock);
        let claims: Vec<_> = (0..24)
            .map(|i| {
                let (dynamo, read) = (dynamo.clone(), read.clone());
                tokio::spawn(async move {
                    dynamo
                        .claim_lease(&read, &format!("instance-{i}"), now_ms, 30_000)
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for claim in claims {
            won += usize::from(claim.await.unwrap().unwrap());
        }
        assert_eq!(won, 1, "round {round}: one holder");
    }
}

/// A commit throttled after the provider answered is retried while the lease could cover a retry,
/// backing off as a throttled table needs (not every few milliseconds). When the lease runs out first
/// the answer is lost, and the vault knows it: whoever refreshes next finds the rotation in doubt, and
/// the provider's refusal of the old refresh token is audited `rotation_lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_throttled_for_the_whole_lease_backs_off_and_the_lost_rotation_is_detected() {
    let p = protocol().await;
    const THROTTLED: u32 = 10_000;
    p.credentials.throttle_next.lock().unwrap().insert("commit", THROTTLED);
    let fetch = p.vault.fresh_access_token("con_demo", USER, Duration::from_secs(60));
    let lease_runs_out = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        p.clock.advance(timing().lease_length.as_secs() as i64);
    };
    let (outcome, ()) = tokio::join!(fetch, lease_runs_out);
    assert!(outcome.is_err(), "{outcome:?}");
    let tries = THROTTLED - p.credentials.throttle_next.lock().unwrap()["commit"];
    // Pauses of 10 to 20 ms, doubling up to 50 to 100 ms: at most about 18 in 800 ms; at the first
    // pause every time it would be 40 or more.
    assert!((2..=25).contains(&tries), "{tries} commits tried");
    assert_eq!(p.provider.counters().refreshes, 1);

    p.credentials.throttle_next.lock().unwrap().clear();
    p.clock.advance(3600);
    let next = p
        .vault
        .fresh_access_token("con_demo", USER, Duration::from_secs(60))
        .await;
    assert!(
        matches!(next, Err(credvault::vault::VaultError::ReauthenticationRequired)),
        "the provider rotated the stored token away: {next:?}"
    );
    assert_eq!(p.provider.counters().reuse_detected, 1);
    let reasons: Vec<Option<String>> = p
        .audit
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.action == "credential.reauth_required")
        .map(|e| e.reason.clone())
        .collect();
    assert_eq!(reasons, [Some("rotation_lost".to_string())]);
}

/// A disconnect whose mark loses a race (another instance committed between its read and its write)
/// reads again and revokes only what is stored then: one revocation at the provider, not one of a
/// token it never marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_that_loses_a_race_reads_again_and_revokes_once() {
    let p = protocol().await;
    p.credentials
        .lands_first
        .lock()
        .unwrap()
        .insert("mark_revoking", Box::new(|item| item.token_version += 1));
    let revocation = p.vault.disconnect("con_demo", USER).await.unwrap();
    assert!(
        matches!(revocation, credvault::vault::Revocation::Revoked),
        "{revocation:?}"
    );
    assert_eq!(p.provider.counters().revocations, 1);
    assert!(p.credentials.item("con_demo", USER).is_none(), "deleted");
    let writes = p.credentials.writes.lock().unwrap().clone();
    assert_eq!(
        writes,
        ["mark_revoking"],
        "one mark landed: the one made on what was stored then"
    );
}

/// Keep-alive leaves a credential that is not due yet, is leased by another instance, or whose
/// provider is backing off, without so much as trying its lease: over a sweep of thousands, each try
/// would be a conditional write billed for nothing. A lease that ran out is taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_tries_the_lease_only_of_a_due_idle_credential() {
    use credvault::vault::KeptAlive;
    let p = protocol().await;
    let stored = p.credentials.item("con_demo", USER).unwrap();
    // A minute either side of now: the test clock moves with the wall clock.
    let now_secs = credvault::clock::Clock::now_secs(&p.clock);
    let now_ms = credvault::clock::Clock::now_millis(&p.clock);
    let due = CredentialItem {
        keep_alive_due_at: Some(now_secs - 60),
        ..stored
    };
    let lease = |expires_at_ms| {
        Some(RefreshLease {
            owner: "another-instance".into(),
            expires_at_ms,
        })
    };
    let cases = [
        (
            "due in a minute",
            CredentialItem {
                keep_alive_due_at: Some(now_secs + 60),
                ..due.clone()
            },
            KeptAlive::NotDue,
        ),
        (
            "leased for another minute",
            CredentialItem {
                lease: lease(now_ms + 60_000),
                ..due.clone()
            },
            KeptAlive::Busy,
        ),
        (
            "backing off for another minute",
            CredentialItem {
                next_attempt_at_ms: Some(now_ms + 60_000),
                ..due.clone()
            },
            KeptAlive::Busy,
        ),
    ];
    for (case, item, expected) in cases {
        p.credentials.replace_item(item);
        assert_eq!(p.vault.keep_alive("con_demo", USER).await.unwrap(), expected, "{case}");
        assert!(
            p.credentials.writes.lock().unwrap().is_empty(),
            "{case}: nothing written"
        );
        assert!(
            p.credentials.refused.lock().unwrap().is_empty(),
            "{case}: no claim tried"
        );
        assert_eq!(p.provider.counters().refreshes, 0, "{case}: nothing sent");
    }
    // Due, its backoff over and another instance's lease run out: taken over and refreshed.
    p.credentials.replace_item(CredentialItem {
        lease: lease(now_ms - 60_000),
        next_attempt_at_ms: Some(now_ms - 60_000),
        ..due
    });
    assert_eq!(
        p.vault.keep_alive("con_demo", USER).await.unwrap(),
        KeptAlive::Refreshed
    );
    assert_eq!(p.provider.counters().refreshes, 1);
    assert_eq!(p.credentials.writes.lock().unwrap()[0], "claim");
}

/// Keep-alive refreshes only what a refresh can keep: a credential that is not ACTIVE, or has no
/// refresh token (a GitHub OAuth App's), is never leased or sent, however overdue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_leaves_a_credential_it_cannot_refresh_alone() {
    use credvault::vault::KeptAlive;
    let p = protocol().await;
    let stored = p.credentials.item("con_demo", USER).unwrap();
    let overdue = credvault::clock::Clock::now_secs(&p.clock) - 60;
    let without_refresh = CredentialItem {
        refresh_token: None,
        keep_alive_due_at: Some(overdue),
        ..stored.clone()
    };
    let not_active = CredentialItem {
        status: CredentialStatus::ReauthRequired,
        keep_alive_due_at: Some(overdue),
        ..stored.clone()
    };
    for item in [without_refresh, not_active] {
        p.credentials.replace_item(item.clone());
        let kept = p.vault.keep_alive("con_demo", USER).await.unwrap();
        assert_eq!(kept, KeptAlive::NotKept, "{item:?}");
        assert!(p.credentials.writes.lock().unwrap().is_empty(), "no lease claimed");
    }
    // The control: the same credential, ACTIVE with its refresh token, is refreshed.
    p.credentials.replace_item(CredentialItem {
        keep_alive_due_at: Some(overdue),
        ..stored
    });
    assert_eq!(
        p.vault.keep_alive("con_demo", USER).await.unwrap(),
        KeptAlive::Refreshed
    );
    assert_eq!(p.provider.counters().refreshes, 1);
}
