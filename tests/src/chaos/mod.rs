//! The chaos suite (issue 9): several vault processes (the `vault-process` binary) sharing one moto
//! and one fake provider behind a round-robin front; a driver runs concurrent credential fetches
//! while faults are injected (provider errors before it acted and after it rotated, latency spikes
//! longer than the lease, DynamoDB throttling and stalls, KMS errors and stalls, SIGKILL of a process
//! inside its crash window and a restart on the same port), then checks the invariants.
//!
//! Faults are scheduled, not drawn: each enabled kind is injected the configured number of times, at
//! points spread over the run (their order shuffled), so every run injects every fault; chance only
//! decides which request meets which fault. The invariants must hold whatever it decides.

pub mod processes;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::aws::{CallCounters, TestAws, vault_clients};
use crate::aws_proxy::{AwsProxy, Fault};
use crate::fake_provider::{Failure, FakeProvider, RefreshCall, RefreshOutcome};
use crate::stack::{APP_REDIRECT_URL, CONNECTION_ID, encode, location, provider_connection};
use processes::{Front, VaultProcess, pid_owning_local_port};

/// The vault's refresh timing in the chaos runs (the local stack's: short, so faults clear fast).
pub const LEASE_SECONDS: u64 = 9;
pub const PROVIDER_TIMEOUT_MS: u64 = 800;
/// A latency spike: the provider sits on the call longer than the lease, then performs it anyway.
pub const SPIKE: Duration = Duration::from_secs(LEASE_SECONDS + 2);
/// How long a killed process's refresh is held at the provider before it is performed: the kill
/// lands inside it, so the provider rotates after the process is gone (the crash window).
const KILL_HOLD: Duration = Duration::from_millis(400);

/// How many of each fault a run injects (0 switches a kind off).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Provider failures before it acted: 500, 502, 503 + Retry-After, 429 + Retry-After, reset.
    pub provider_errors: u32,
    /// The provider rotates, then the answer is lost: 502, 500, or a reset.
    pub lost_answers: u32,
    /// The provider rotates, then answers 429 (a provider breaking its word: 429 says it did nothing).
    /// Off in both profiles; see the README.
    pub lying_429s: u32,
    /// Windows in which the provider takes longer than the lease (`SPIKE`) over every token call,
    /// and drops the work of a caller that hung up (it has not acted when the vault times out).
    pub latency_spikes: u32,
    /// The provider holds one call longer than the lease (`SPIKE`), then performs it although the
    /// caller gave up long ago. Off by default: it breaks the invariants (README, known gaps).
    pub late_spikes: u32,
    /// Bursts of DynamoDB throttling (GetItem or UpdateItem), each more than the SDK retries.
    pub dynamodb_throttles: u32,
    /// Windows in which every DynamoDB call stalls past the SDK's attempt timeout.
    pub dynamodb_stalls: u32,
    /// Bursts of KMS errors (5xx or throttling) on Decrypt and GenerateDataKey.
    pub kms_errors: u32,
    /// Windows in which every KMS call stalls past the attempt timeout.
    pub kms_stalls: u32,
    /// SIGKILLs of the process whose refresh is at the provider, each followed by a restart.
    pub kills: u32,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub processes: usize,
    pub fetches: usize,
    pub concurrency: usize,
    pub users: usize,
    /// Provider access-token lifetime: every few seconds each user's token needs a refresh.
    pub token_lifetime_secs: i64,
    /// Each worker's pause between two fetches (on average; drawn from half to one and a half of
    /// it), so the run lasts long enough for every token to expire several times.
    pub pace: Duration,
    pub faults: Faults,
    /// The `vault-process` binary.
    pub vault_bin: PathBuf,
}

impl Profile {
    /// `make chaos`: 1,000 fetches, 50 concurrent, 20 users, every fault.
    pub fn full(vault_bin: PathBuf) -> Self {
        Self {
            name: "full".into(),
            processes: 3,
            fetches: 1000,
            concurrency: 50,
            users: 20,
            token_lifetime_secs: 4,
            pace: Duration::from_millis(1500),
            faults: Faults {
                provider_errors: 10,
                lost_answers: 3,
                lying_429s: 0,
                latency_spikes: 2,
                late_spikes: 0,
                dynamodb_throttles: 6,
                dynamodb_stalls: 2,
                kms_errors: 4,
                kms_stalls: 2,
                kills: 2,
            },
            vault_bin,
        }
    }

    /// `make test`: the same, smaller.
    pub fn short(vault_bin: PathBuf) -> Self {
        Self {
            name: "short".into(),
            processes: 3,
            fetches: 150,
            concurrency: 10,
            users: 5,
            token_lifetime_secs: 4,
            pace: Duration::from_millis(1000),
            faults: Faults {
                provider_errors: 4,
                lost_answers: 1,
                lying_429s: 0,
                latency_spikes: 1,
                late_spikes: 0,
                dynamodb_throttles: 2,
                dynamodb_stalls: 1,
                kms_errors: 2,
                kms_stalls: 1,
                kills: 1,
            },
            vault_bin,
        }
    }
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Provider(Failure),
    ProviderSpike,
    DynamoThrottle(&'static str),
    DynamoStall,
    KmsError(&'static str, Fault),
    KmsStall,
    Kill,
}

fn schedule(faults: &Faults) -> Vec<Event> {
    let cycle = |n: u32, kinds: &[Event]| -> Vec<Event> { (0..n as usize).map(|i| kinds[i % kinds.len()]).collect() };
    let mut events = Vec::new();
    events.extend(cycle(
        faults.provider_errors,
        &[
            Event::Provider(Failure::Status(502)),
            Event::Provider(Failure::StatusRetryAfter(503, 1)),
            Event::Provider(Failure::Reset),
            Event::Provider(Failure::StatusRetryAfter(429, 1)),
            Event::Provider(Failure::Status(500)),
        ],
    ));
    events.extend(cycle(
        faults.lost_answers,
        &[
            Event::Provider(Failure::RotateThenStatus(502)),
            Event::Provider(Failure::RotateThenReset),
            Event::Provider(Failure::RotateThenStatus(500)),
        ],
    ));
    events.extend(cycle(
        faults.lying_429s,
        &[Event::Provider(Failure::RotateThenStatus(429))],
    ));
    events.extend(cycle(faults.latency_spikes, &[Event::ProviderSpike]));
    events.extend(cycle(faults.late_spikes, &[Event::Provider(Failure::Slow(SPIKE))]));
    events.extend(cycle(
        faults.dynamodb_throttles,
        &[Event::DynamoThrottle("GetItem"), Event::DynamoThrottle("UpdateItem")],
    ));
    events.extend(cycle(faults.dynamodb_stalls, &[Event::DynamoStall]));
    events.extend(cycle(
        faults.kms_errors,
        &[
            Event::KmsError("Decrypt", Fault::Unavailable),
            Event::KmsError("GenerateDataKey", Fault::Throttle),
        ],
    ));
    events.extend(cycle(faults.kms_stalls, &[Event::KmsStall]));
    events.extend(cycle(faults.kills, &[Event::Kill]));
    // Fisher-Yates with the vault's own randomness.
    for i in (1..events.len()).rev() {
        let j = ((credvault::random::unit_fraction() * (i + 1) as f64) as usize).min(i);
        events.swap(i, j);
    }
    events
}

/// Why a rotated-away refresh token was presented again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReuseClass {
    /// (a) The call that spent it had its answer lost on purpose (rotate-then-fail, or held past
    /// the vault's timeout): the vault's next refresh probes with the old token once.
    LostAnswer,
    /// (b) The call that spent it came from a process killed while it was at the provider.
    Killed,
    /// (c) Anything else: two refreshes used one token. Must never happen.
    Other,
}

/// One reuse, classified, and what explains it (no token values).
#[derive(Debug, Clone)]
pub struct Reuse {
    pub class: ReuseClass,
    pub subject: String,
    pub detail: String,
}

/// Ports seen open, by process id.
type PortLog = Arc<Mutex<HashMap<u32, BTreeSet<u16>>>>;

/// One SIGKILL: when, the held call's caller, and every loopback port the process had open then
/// (its other refreshes in flight died with it too).
#[derive(Debug, Clone)]
pub struct Kill {
    pub at: SystemTime,
    pub held_peer: SocketAddr,
    pub ports: Vec<u16>,
}

impl Kill {
    /// Was `call` sent by the killed process and spent no later than the process could have seen
    /// its answer (before the kill, or while held)?
    fn owns(&self, call: &RefreshCall) -> bool {
        self.ports.contains(&call.peer.port())
            && call.arrived_at <= self.at
            && call
                .served_at
                .is_some_and(|at| at <= self.at + KILL_HOLD + Duration::from_millis(200))
    }
}

/// One fetch as the driver saw it.
struct Fetch {
    status: u16,
    latency: Duration,
}

#[derive(Debug, Default)]
pub struct Report {
    pub profile: String,
    pub processes: usize,
    pub users: usize,
    pub concurrency: usize,
    pub fetches: usize,
    pub statuses: BTreeMap<u16, u64>,
    /// Fetches that got no HTTP answer at all.
    pub transport_errors: u64,
    pub refreshes: u64,
    /// Faults actually injected, by kind.
    pub injected: BTreeMap<String, u64>,
    pub answers_lost: u64,
    pub kills: u64,
    pub restarts: u64,
    /// Credentials REAUTH_REQUIRED whose audit says `rotation_lost`.
    pub rotation_lost: u64,
    /// Of those, credentials whose audit event is missing (the item's `reauthReason` says it).
    pub audit_missing: u64,
    /// Credentials REAUTH_REQUIRED for any other reason.
    pub reauth_other: u64,
    pub active_at_end: u64,
    pub reuse: Vec<Reuse>,
    /// Calls held by a spike that the provider still performed (their caller had given up).
    pub spiked_calls_performed: u64,
    /// 200s whose token the provider did not accept while the request ran, or that belongs to
    /// another user.
    pub bad_tokens: u64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub duration: Duration,
    /// What each kill cost: the subject whose refresh was held, and what the provider then did with it.
    pub kill_details: Vec<String>,
    /// Kills whose held refresh rotated nothing: it was itself a probe (a token whose rotation was
    /// already lost), was refused, or was not performed by the provider before the run ended. They lose
    /// nothing, so no probe follows them.
    pub kills_that_lost_nothing: u64,
    /// Broken invariants, one line each. Empty: every invariant held.
    pub violations: Vec<String>,
}

impl Report {
    pub fn reuse_count(&self, class: ReuseClass) -> u64 {
        self.reuse.iter().filter(|r| r.class == class).count() as u64
    }

    pub fn status(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let statuses = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let injected = self
            .injected
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<(&str, String)> = vec![
            (
                "profile",
                format!(
                    "{}: {} vault processes, {} users, {} concurrent, {:.1} s",
                    self.profile,
                    self.processes,
                    self.users,
                    self.concurrency,
                    self.duration.as_secs_f64()
                ),
            ),
            ("fetches", self.fetches.to_string()),
            ("statuses", statuses),
            ("no answer at all", self.transport_errors.to_string()),
            ("provider refresh calls", self.refreshes.to_string()),
            ("faults injected", injected),
            ("answers lost (rotate, then fail)", self.answers_lost.to_string()),
            (
                "spike-held calls performed after all",
                self.spiked_calls_performed.to_string(),
            ),
            (
                "kills inside a refresh / restarts",
                format!("{} / {}", self.kills, self.restarts),
            ),
            ("credentials lost: rotation_lost", self.rotation_lost.to_string()),
            ("credentials lost: other reasons", self.reauth_other.to_string()),
            (
                "rotation_lost with no audit event (item says)",
                self.audit_missing.to_string(),
            ),
            ("credentials valid at the end", self.active_at_end.to_string()),
            (
                "reuse (a) probe after a lost answer",
                self.reuse_count(ReuseClass::LostAnswer).to_string(),
            ),
            (
                "reuse (b) probe after a kill",
                self.reuse_count(ReuseClass::Killed).to_string(),
            ),
            (
                "reuse (c) two refreshes, one token",
                self.reuse_count(ReuseClass::Other).to_string(),
            ),
            ("200s with a token the provider refused", self.bad_tokens.to_string()),
            (
                "latency p50 / p99 / max",
                format!(
                    "{} ms / {} ms / {} ms",
                    self.p50.as_millis(),
                    self.p99.as_millis(),
                    self.max.as_millis()
                ),
            ),
            (
                "invariants",
                if self.violations.is_empty() {
                    "all hold".to_string()
                } else {
                    format!("{} BROKEN", self.violations.len())
                },
            ),
        ];
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        writeln!(f, "| {:width$} | value |", "chaos run")?;
        writeln!(f, "|{}|-------|", "-".repeat(width + 2))?;
        for (k, v) in rows {
            writeln!(f, "| {k:width$} | {v} |")?;
        }
        for kill in &self.kill_details {
            writeln!(f, "kill: {kill}")?;
        }
        for reuse in &self.reuse {
            let class = match reuse.class {
                ReuseClass::LostAnswer => "(a)",
                ReuseClass::Killed => "(b)",
                ReuseClass::Other => "(c)",
            };
            writeln!(f, "reuse {class} for {}: {}", reuse.subject, reuse.detail)?;
        }
        for v in &self.violations {
            writeln!(f, "BROKEN: {v}")?;
        }
        Ok(())
    }
}

/// A user of the run: the provider subject and the vault's user id and token for it.
struct User {
    subject: String,
    user_id: String,
    bearer: String,
}

/// Runs `profile` from scratch (its own table, keys, provider, processes, ports) and reports.
pub async fn run(profile: &Profile) -> Report {
    let started = Instant::now();
    let aws = TestAws::fresh().await;
    let provider = FakeProvider::start().await;
    provider.set_knobs(|k| {
        k.access_token_lifetime_secs = profile.token_lifetime_secs;
        k.rotate_refresh_tokens = true;
        k.reuse_detection = true;
    });
    // One fault proxy per service, so a stall of one is not a stall of the other.
    let dynamodb_proxy = AwsProxy::start(&aws.endpoint).await;
    let kms_proxy = AwsProxy::start(&aws.endpoint).await;
    let (front_listener, front_url) = Front::bind().await;

    let env: BTreeMap<String, String> = [
        ("CREDVAULT_TABLE", aws.table.clone()),
        ("CREDVAULT_DATA_KEY_ID", aws.data_key_id.clone()),
        ("CREDVAULT_SIGNING_KEY_ID", aws.signing_key_id.clone()),
        ("CREDVAULT_ISSUER", front_url.clone()),
        ("CREDVAULT_ALLOWED_REDIRECT_URLS", APP_REDIRECT_URL.to_string()),
        ("CREDVAULT_AWS_ENDPOINT_URL", dynamodb_proxy.url.clone()),
        ("CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK", "true".to_string()),
        ("CREDVAULT_LEASE_SECONDS", LEASE_SECONDS.to_string()),
        ("CREDVAULT_PROVIDER_TIMEOUT_MS", PROVIDER_TIMEOUT_MS.to_string()),
        ("CREDVAULT_PROVIDER_ATTEMPTS", "3".to_string()),
        ("CREDVAULT_POLL_DEADLINE_SECONDS", "8".to_string()),
        // Past the longest the provider holds a call (`SPIKE`): no refresh token is sent again while
        // the provider may still be performing a request the vault gave up on.
        (
            "CREDVAULT_UNKNOWN_OUTCOME_WAIT_SECONDS",
            (SPIKE.as_secs() + 1).to_string(),
        ),
        // A sixth of the lease for one whole call, two thirds of that for one attempt.
        ("CREDVAULT_AWS_OPERATION_TIMEOUT_MS", "1500".to_string()),
        ("CREDVAULT_AWS_ATTEMPT_TIMEOUT_MS", "1000".to_string()),
        // Data keys cached for 2 s only, so KMS stays on the path and its faults meet the vault.
        ("CREDVAULT_DATA_KEY_CACHE_SECONDS", "2".to_string()),
        ("CHAOS_DYNAMODB_ENDPOINT", dynamodb_proxy.url.clone()),
        ("CHAOS_KMS_ENDPOINT", kms_proxy.url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // The driver's own instance, straight to moto: seeds the connection, reads the table at the end.
    let config = credvault::Config::from_lookup(|name| env.get(name).cloned()).expect("chaos config");
    let (dynamodb, kms) = vault_clients(&aws.endpoint, &Arc::new(CallCounters::default()));
    let services = credvault::Instance::from_clients(config, dynamodb, kms, Arc::new(credvault::clock::SystemClock))
        .expect("driver instance");
    let connection = provider_connection(&provider, CONNECTION_ID);
    credvault::store::connections::put(&services.table, &services.envelope, &connection, true)
        .await
        .expect("seed connection");

    let mut vaults = Vec::new();
    for _ in 0..profile.processes.max(1) {
        vaults.push(
            VaultProcess::start(&profile.vault_bin, &env, 0)
                .await
                .expect("vault process"),
        );
    }
    let front = Front::serve(
        front_listener,
        front_url,
        vaults.iter().map(VaultProcess::url).collect(),
    );
    let vaults = Arc::new(tokio::sync::Mutex::new(vaults));
    // Every loopback port each process has had open, sampled every 50 ms: which process sent a
    // provider call is told by its port, also for connections it made just before it was killed.
    let port_log: PortLog = Arc::default();
    let monitoring = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let monitor = {
        let (vaults, port_log, monitoring) = (vaults.clone(), port_log.clone(), monitoring.clone());
        tokio::spawn(async move {
            while monitoring.load(Ordering::SeqCst) {
                let pids: Vec<u32> = vaults.lock().await.iter().filter_map(VaultProcess::pid).collect();
                for pid in pids {
                    let ports = processes::local_ports_of(pid);
                    port_log
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(pid)
                        .or_default()
                        .extend(ports);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("driver client");
    let mut users = Vec::new();
    for i in 0..profile.users {
        let subject = format!("chaos-user-{i:02}");
        provider.set_knobs(|k| k.subject = subject.clone());
        let (user_id, bearer) = login(&http, &front.url).await;
        users.push(User {
            subject,
            user_id,
            bearer,
        });
    }
    let users = Arc::new(users);

    // The run: workers take fetches off a counter; the scheduler injects faults as fetches complete.
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let fetches: Arc<Mutex<Vec<Fetch>>> = Arc::default();
    let bad_tokens = Arc::new(AtomicUsize::new(0));
    let killed_peers: Arc<Mutex<Vec<Kill>>> = Arc::default();
    let restarts = Arc::new(AtomicUsize::new(0));
    let spikes = Arc::new(AtomicUsize::new(0));
    let events = schedule(&profile.faults);
    // Set once every fault has been handed out (and every kill and stall has finished).
    let scheduled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scheduler = {
        let (spikes, port_log, scheduled) = (spikes.clone(), port_log.clone(), scheduled.clone());
        let (done, provider, dynamodb_proxy, kms_proxy, vaults, env, killed_peers, restarts) = (
            done.clone(),
            provider.clone(),
            dynamodb_proxy.clone(),
            kms_proxy.clone(),
            vaults.clone(),
            env.clone(),
            killed_peers.clone(),
            restarts.clone(),
        );
        let (total, bin) = (profile.fetches, profile.vault_bin.clone());
        tokio::spawn(async move {
            let mut background = Vec::new();
            let count = events.len();
            for (i, event) in events.into_iter().enumerate() {
                // Spread over the middle 80 % of the run.
                let at = total / 10 + (i + 1) * (total * 8 / 10) / (count + 1);
                while done.load(Ordering::SeqCst) < at {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                match event {
                    Event::Provider(failure) => provider.fail_next(&[failure]),
                    Event::DynamoThrottle(op) => dynamodb_proxy.throttle(op, 0, 4),
                    Event::KmsError(op, fault) => kms_proxy.fault(op, fault, 0, 4),
                    Event::ProviderSpike => background.push(tokio::spawn(spike(provider.clone(), spikes.clone()))),
                    Event::DynamoStall => background.push(tokio::spawn(stall(dynamodb_proxy.clone()))),
                    Event::KmsStall => background.push(tokio::spawn(stall(kms_proxy.clone()))),
                    Event::Kill => background.push(tokio::spawn(kill_mid_refresh(
                        provider.clone(),
                        vaults.clone(),
                        bin.clone(),
                        env.clone(),
                        killed_peers.clone(),
                        restarts.clone(),
                        port_log.clone(),
                    ))),
                }
            }
            for task in background {
                let _ = task.await;
            }
            scheduled.store(true, Ordering::SeqCst);
        })
    };
    let mut workers = Vec::new();
    for _ in 0..profile.concurrency.max(1) {
        let (next, done, fetches, bad_tokens, users, provider, http, front_url) = (
            next.clone(),
            done.clone(),
            fetches.clone(),
            bad_tokens.clone(),
            users.clone(),
            provider.clone(),
            http.clone(),
            front.url.clone(),
        );
        let (total, pace, scheduled) = (profile.fetches, profile.pace, scheduled.clone());
        workers.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(pace.mul_f64(0.5 + credvault::random::unit_fraction())).await;
                let n = next.fetch_add(1, Ordering::SeqCst);
                // Past the count, fetches go on until every scheduled fault has met a refresh
                // (at most twice the count), so every run injects all of them.
                let drained = scheduled.load(Ordering::SeqCst) && provider.pending_failures() == 0;
                if n >= total && (drained || n >= total * 2) {
                    return;
                }
                let pick = (credvault::random::unit_fraction() * users.len() as f64) as usize;
                let user = &users[pick.min(users.len() - 1)];
                let (status, good) = fetch(&http, &front_url, user, &provider).await;
                if good == Some(false) {
                    bad_tokens.fetch_add(1, Ordering::SeqCst);
                }
                fetches.lock().unwrap_or_else(|p| p.into_inner()).push(status);
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for worker in workers {
        let _ = worker.await;
    }
    let _ = scheduler.await;
    monitoring.store(false, Ordering::SeqCst);
    let _ = monitor.await;

    // Quiet: no more faults; calls the provider still holds finish (they may spend a token).
    provider.clear_failures();
    dynamodb_proxy.set_latency(Duration::ZERO);
    kms_proxy.set_latency(Duration::ZERO);
    let quiet_until = Instant::now() + SPIKE + Duration::from_secs(2);
    while provider.slow_calls_in_flight() > 0 && Instant::now() < quiet_until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut report = Report {
        profile: profile.name.clone(),
        processes: profile.processes,
        users: profile.users,
        concurrency: profile.concurrency,
        fetches: profile.fetches,
        restarts: restarts.load(Ordering::SeqCst) as u64,
        ..Report::default()
    };

    // Every credential ends valid, or dead with `rotation_lost`: fetch each until it says which.
    let mut end_status = HashMap::new();
    for user in users.iter() {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            let (status, good) = fetch(&http, &front.url, user, &provider).await;
            if good == Some(false) {
                report.violations.push(format!(
                    "{}: the final 200 carried a token the provider refused",
                    user.subject
                ));
            }
            if status.status == 200 || status.status == 409 || Instant::now() >= deadline {
                break status.status;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        end_status.insert(user.subject.clone(), status);
    }

    // What the run did.
    let all = std::mem::take(&mut *fetches.lock().unwrap_or_else(|p| p.into_inner()));
    report.fetches = all.len();
    for f in &all {
        if f.status == 0 {
            report.transport_errors += 1;
        } else {
            *report.statuses.entry(f.status).or_default() += 1;
        }
    }
    let mut latencies: Vec<Duration> = all.iter().map(|f| f.latency).collect();
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    report.p50 = pick(0.50);
    report.p99 = pick(0.99);
    report.max = latencies.last().copied().unwrap_or_default();
    report.bad_tokens = bad_tokens.load(Ordering::SeqCst) as u64;
    let counters = provider.counters();
    report.refreshes = counters.refreshes;
    report.answers_lost = counters.answers_lost;
    let calls = provider.refresh_calls();
    for call in &calls {
        if let Some(failure) = call.failure {
            *report.injected.entry(failure_label(failure)).or_default() += 1;
        }
    }
    let killed = killed_peers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    report.kills = killed.len() as u64;
    if report.kills > 0 {
        report.injected.remove("provider held (kill)");
        report.injected.insert("SIGKILL mid-refresh".into(), report.kills);
    }
    if dynamodb_proxy.throttled() > 0 {
        report
            .injected
            .insert("DynamoDB throttled calls".into(), dynamodb_proxy.throttled());
    }
    if kms_proxy.throttled() > 0 {
        report.injected.insert("KMS failed calls".into(), kms_proxy.throttled());
    }
    let spiked: Vec<&RefreshCall> = calls
        .iter()
        .filter(|c| c.failure.is_none() && !c.latency.is_zero())
        .collect();
    if !spiked.is_empty() {
        report.injected.insert(
            format!("calls held {} s by a spike", SPIKE.as_secs()),
            spiked.len() as u64,
        );
        report.spiked_calls_performed = spiked.iter().filter(|c| c.served_at.is_some()).count() as u64;
    }
    for (kind, n) in [
        ("provider spike windows", spikes.load(Ordering::SeqCst) as u32),
        ("DynamoDB stall windows", profile.faults.dynamodb_stalls),
        ("KMS stall windows", profile.faults.kms_stalls),
    ] {
        if n > 0 {
            report.injected.insert(kind.into(), u64::from(n));
        }
    }
    for kill in &killed {
        let held = calls
            .iter()
            .filter(|c| c.peer == kill.held_peer && c.failure == Some(Failure::Slow(KILL_HOLD)));
        for call in held {
            report.kills_that_lost_nothing += u64::from(call.outcome != Some(RefreshOutcome::Rotated));
            report.kill_details.push(format!(
                "the process was killed while the provider held its refresh for {} (then: {})",
                call.subject.as_deref().unwrap_or("an unknown token"),
                match call.outcome {
                    Some(RefreshOutcome::Rotated) => "rotated, the new token lost with the process",
                    Some(RefreshOutcome::Reused) => "a reuse: the held call was itself a probe",
                    Some(RefreshOutcome::Refused) => "refused, the family already revoked",
                    None => "not performed",
                }
            ));
        }
    }
    report.reuse = classify_reuse(&calls, &killed, Duration::from_millis(PROVIDER_TIMEOUT_MS));

    // The stored credentials and the audit trail.
    let items = aws.scan_all().await;
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let mut reasons: HashMap<String, Vec<String>> = HashMap::new();
    let mut item_reasons: HashMap<String, String> = HashMap::new();
    for item in &items {
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
        if text("pk").starts_with("AUDIT#") && text("action") == "credential.reauth_required" {
            reasons.entry(text("resource")).or_default().push(text("reason"));
        }
        if text("pk").starts_with("CREDENTIAL#") && !text("reauthReason").is_empty() {
            item_reasons.insert(text("sk"), text("reauthReason"));
        }
    }
    for user in users.iter() {
        let item = credvault::store::credentials::get(&services.table, CONNECTION_ID, &user.user_id)
            .await
            .ok()
            .flatten();
        let Some(item) = item else {
            report
                .violations
                .push(format!("{}: credential item is gone", user.subject));
            continue;
        };
        if let Some(lease) = &item.lease
            && lease.expires_at_ms > now_ms + (LEASE_SECONDS as i64) * 1000
        {
            report.violations.push(format!(
                "{}: lease expires {} ms from now, past the lease length",
                user.subject,
                lease.expires_at_ms - now_ms
            ));
        }
        let resource = credvault::access::credentials_resource(CONNECTION_ID, &user.user_id);
        let audit = reasons.get(&resource).cloned().unwrap_or_default();
        let fetched = end_status.get(&user.subject).copied().unwrap_or(0);
        match item.status {
            credvault::store::credentials::CredentialStatus::Active => {
                report.active_at_end += 1;
                // The refresh token it keeps is this user's, and the provider still takes it.
                use credvault::store::credentials::{ATTR_REFRESH_TOKEN, context};
                let ctx = context(&services.table, CONNECTION_ID, &user.user_id, ATTR_REFRESH_TOKEN);
                let stored = match &item.refresh_token {
                    Some(sealed) => services.envelope.open_str(&ctx, sealed).await.ok(),
                    None => None,
                };
                let stored = stored.map(|t| secrecy::ExposeSecret::expose_secret(&t).to_string());
                match stored {
                    Some(token) if provider.refresh_token_subject(&token).as_deref() != Some(&user.subject) => {
                        report.violations.push(format!(
                            "{}: the stored refresh token belongs to another user",
                            user.subject
                        ))
                    }
                    Some(token) if !provider.refresh_token_is_live(&token) => report.violations.push(format!(
                        "{}: ACTIVE, but the provider no longer takes its stored refresh token",
                        user.subject
                    )),
                    Some(_) => {}
                    None => report
                        .violations
                        .push(format!("{}: ACTIVE without a readable refresh token", user.subject)),
                }
                if fetched != 200 {
                    report.violations.push(format!(
                        "{}: credential is ACTIVE but the final fetch answered {fetched}",
                        user.subject
                    ));
                }
            }
            credvault::store::credentials::CredentialStatus::ReauthRequired => {
                let on_item = item_reasons.get(&credvault::store::credentials::sk(&user.user_id));
                if audit.iter().any(|r| r == "rotation_lost") {
                    report.rotation_lost += 1;
                } else if audit.is_empty() && on_item.map(String::as_str) == Some("rotation_lost") {
                    // The item says why; the audit event was not written (its process was killed
                    // between marking the credential and auditing it).
                    report.rotation_lost += 1;
                    report.audit_missing += 1;
                } else {
                    report.reauth_other += 1;
                    report.violations.push(format!(
                        "{}: REAUTH_REQUIRED without a rotation_lost audit event (audit reasons: {audit:?})",
                        user.subject
                    ));
                }
            }
            other => report.violations.push(format!("{}: ends {other:?}", user.subject)),
        }
    }

    // The other invariants.
    for (status, n) in &report.statuses {
        if *status == 500 {
            report.violations.push(format!("{n} fetches answered 500"));
        }
    }
    if report.bad_tokens > 0 {
        report.violations.push(format!(
            "{} fetches answered 200 with a token the provider did not accept then",
            report.bad_tokens
        ));
    }
    let dead: BTreeSet<&str> = users
        .iter()
        .filter(|u| end_status.get(&u.subject) == Some(&409))
        .map(|u| u.subject.as_str())
        .collect();
    for reuse in &report.reuse {
        match reuse.class {
            ReuseClass::Other => report
                .violations
                .push(format!("reuse (c) for {}: {}", reuse.subject, reuse.detail)),
            _ if !dead.contains(reuse.subject.as_str()) => report.violations.push(format!(
                "a probe ({:?}) for {} did not end in rotation_lost",
                reuse.class, reuse.subject
            )),
            _ => {}
        }
    }
    report.violations.extend(presented_after_refusal(&calls, &killed));
    let probed: BTreeSet<&str> = report.reuse.iter().map(|r| r.subject.as_str()).collect();
    for user in users.iter() {
        let resource = credvault::access::credentials_resource(CONNECTION_ID, &user.user_id);
        let lost = reasons
            .get(&resource)
            .is_some_and(|r| r.iter().any(|r| r == "rotation_lost"));
        if lost && !probed.contains(user.subject.as_str()) {
            report.violations.push(format!(
                "{}: rotation_lost, but the provider never saw its refresh token reused",
                user.subject
            ));
        }
    }
    vaults.lock().await.clear();
    report.duration = started.elapsed();
    report
}

/// One credential fetch through the front; for a 200, whether the provider accepted its token
/// during the request.
async fn fetch(http: &reqwest::Client, front: &str, user: &User, provider: &FakeProvider) -> (Fetch, Option<bool>) {
    let url = format!(
        "{front}/v1/connections/{CONNECTION_ID}/users/{}/credentials",
        encode(&user.user_id)
    );
    let sent_at = SystemTime::now();
    let started = Instant::now();
    let resp = http.get(url).bearer_auth(&user.bearer).send().await;
    let Ok(resp) = resp else {
        return (
            Fetch {
                status: 0,
                latency: started.elapsed(),
            },
            None,
        );
    };
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let answered_at = SystemTime::now();
    let latency = started.elapsed();
    // Accepted then, and issued to this very user.
    let good = (status == 200).then(|| {
        body["accessToken"].as_str().is_some_and(|token| {
            provider.access_token_accepted_during(token, sent_at, answered_at)
                && provider.access_token_subject(token).as_deref() == Some(user.subject.as_str())
        })
    });
    (Fetch { status, latency }, good)
}

/// A login through the front, as an app and browser do it: (vault user id, vault user token).
async fn login(http: &reqwest::Client, front: &str) -> (String, String) {
    let verifier = credvault::random::token(32);
    let body = json!({
        "connectionId": CONNECTION_ID,
        "redirectUrl": APP_REDIRECT_URL,
        "codeChallenge": credvault::oauth::pkce::s256_challenge(&verifier),
        "codeChallengeMethod": "S256",
    });
    let started: Value = http
        .post(format!("{front}/api/authentication"))
        .json(&body)
        .send()
        .await
        .expect("start login")
        .json()
        .await
        .expect("start login json");
    let request_id = started["authenticationRequestId"]
        .as_str()
        .expect("request id")
        .to_string();
    let consent = http
        .get(started["authenticationUrl"].as_str().expect("authenticationUrl"))
        .send()
        .await
        .expect("provider authorize");
    let back = http.get(location(&consent)).send().await.expect("callback");
    let app = url::Url::parse(&location(&back)).expect("app redirect");
    let code = app
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code in app redirect");
    let tokens: Value = http
        .post(format!("{front}/api/authentication/{request_id}/tokens"))
        .json(&json!({"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": APP_REDIRECT_URL}))
        .send()
        .await
        .expect("token exchange")
        .json()
        .await
        .expect("tokens json");
    let bearer = tokens["access_token"].as_str().expect("access_token").to_string();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&bearer)
        .expect("decode vault token")
        .claims;
    (claims["sub"].as_str().expect("sub").to_string(), bearer)
}

/// Every call to the fault proxy stalls past the SDK's attempt timeout, for a second.
/// For a second the provider takes `SPIKE` over every token call that arrives.
async fn spike(provider: FakeProvider, spikes: Arc<AtomicUsize>) {
    spikes.fetch_add(1, Ordering::SeqCst);
    let before = provider.refresh_calls().len();
    provider.set_knobs(|k| k.latency = SPIKE);
    // A second, or longer until at least one refresh call met the spike (at most 10 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let until = Instant::now() + Duration::from_secs(9);
    while provider.refresh_calls().len() == before && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    provider.set_knobs(|k| k.latency = Duration::ZERO);
}

async fn stall(proxy: AwsProxy) {
    proxy.set_latency(Duration::from_millis(1200));
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.set_latency(Duration::ZERO);
}

/// Holds the next refresh at the provider, SIGKILLs the process that sent it while it is held (the
/// provider then rotates with nobody to answer: the crash window), and restarts it on its port.
async fn kill_mid_refresh(
    provider: FakeProvider,
    vaults: Arc<tokio::sync::Mutex<Vec<VaultProcess>>>,
    bin: PathBuf,
    env: BTreeMap<String, String>,
    killed_peers: Arc<Mutex<Vec<Kill>>>,
    restarts: Arc<AtomicUsize>,
    port_log: PortLog,
) {
    // A few tries: the held call's socket may be gone before it is looked up (then nothing is killed
    // and the provider performs that refresh for a live caller).
    for _ in 0..5 {
        let held = provider.hold_next_refresh(KILL_HOLD);
        let Ok(Ok(peer)) = tokio::time::timeout(Duration::from_secs(20), held).await else {
            return;
        };
        let mut vaults = vaults.lock().await;
        let pids: Vec<u32> = vaults.iter().filter_map(VaultProcess::pid).collect();
        let Some(pid) = pid_owning_local_port(peer.port(), &pids) else {
            eprintln!(
                "chaos: no vault process owns port {}; holding another refresh",
                peer.port()
            );
            continue;
        };
        let Some(victim) = vaults.iter_mut().find(|v| v.pid() == Some(pid)) else {
            continue;
        };
        let mut ports = processes::local_ports_of(pid);
        victim.kill().await;
        ports.extend(
            port_log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pid)
                .unwrap_or_default(),
        );
        killed_peers.lock().unwrap_or_else(|p| p.into_inner()).push(Kill {
            at: SystemTime::now(),
            held_peer: peer,
            ports,
        });
        let port = victim.port;
        tokio::time::sleep(Duration::from_millis(300)).await;
        match VaultProcess::start(&bin, &env, port).await {
            Ok(restarted) => {
                *victim = restarted;
                restarts.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => eprintln!("chaos: restart failed: {e}"),
        }
        return;
    }
}

fn failure_label(failure: Failure) -> String {
    match failure {
        Failure::Status(s) => format!("provider {s}"),
        Failure::StatusRetryAfter(s, _) => format!("provider {s}+Retry-After"),
        Failure::Reset => "provider reset".into(),
        Failure::RotateThenStatus(s) => format!("rotate, then {s}"),
        Failure::RotateThenReset => "rotate, then reset".into(),
        Failure::Slow(d) if d == KILL_HOLD => "provider held (kill)".into(),
        Failure::Slow(d) => format!("latency spike {} s", d.as_secs()),
        Failure::Hang => "provider hang".into(),
        Failure::InvalidGrant => "invalid_grant".into(),
    }
}

/// Classifies every presentation of an already rotated-away refresh token by the call that spent it.
pub fn classify_reuse(calls: &[RefreshCall], killed: &[Kill], vault_timeout: Duration) -> Vec<Reuse> {
    let mut out = Vec::new();
    for reuse in calls.iter().filter(|c| c.outcome == Some(RefreshOutcome::Reused)) {
        let spent = calls
            .iter()
            .find(|c| c.token_id == reuse.token_id && c.outcome == Some(RefreshOutcome::Rotated));
        let subject = reuse.subject.clone().unwrap_or_default();
        let Some(spent) = spent else {
            out.push(Reuse {
                class: ReuseClass::Other,
                subject,
                detail: "no call spent the token".into(),
            });
            continue;
        };
        let after = |c: &RefreshCall| spent.served_at.is_some_and(|at| c.arrived_at >= at);
        let class = match spent.failure {
            Some(Failure::RotateThenStatus(_) | Failure::RotateThenReset) if after(reuse) => ReuseClass::LostAnswer,
            _ if killed.iter().any(|k| k.owns(spent) && reuse.arrived_at > k.at) && after(reuse) => ReuseClass::Killed,
            Some(Failure::Slow(d)) if d > vault_timeout && after(reuse) => ReuseClass::LostAnswer,
            None if spent.latency > vault_timeout && after(reuse) => ReuseClass::LostAnswer,
            _ => ReuseClass::Other,
        };
        let ms = |a: SystemTime, b: SystemTime| {
            b.duration_since(a)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_else(|e| -(e.duration().as_millis() as i64))
        };
        let detail = format!(
            "spent by a call with {} from port {} that arrived {} ms before the reuse and was performed {} ms before it; the reuse itself had {}, from port {}{}",
            spent.failure.map_or("no fault".to_string(), failure_label),
            spent.peer.port(),
            ms(spent.arrived_at, reuse.arrived_at),
            spent.served_at.map_or(0, |at| ms(at, reuse.served_at.unwrap_or(at))),
            reuse.failure.map_or("no fault".to_string(), failure_label),
            reuse.peer.port(),
            killed
                .iter()
                .filter(|k| k.ports.contains(&spent.peer.port()) || k.ports.contains(&reuse.peer.port()))
                .map(|k| {
                    let had = |port: u16| if k.ports.contains(&port) { "had" } else { "did not have" };
                    format!(
                        "; a process killed {} ms after the spending call arrived {} the spending port and {} the reusing port",
                        ms(spent.arrived_at, k.at),
                        had(spent.peer.port()),
                        had(reuse.peer.port()),
                    )
                })
                .collect::<String>(),
        );
        out.push(Reuse { class, subject, detail });
    }
    out
}

/// After the provider refused a subject's refresh token (reuse, or a revoked family), the credential
/// is dead: the vault must present nothing more for that subject.
/// A refusal whose caller was killed before it could record it does not count: that knowledge died
/// with the process, and the next holder learns it again, once.
fn presented_after_refusal(calls: &[RefreshCall], kills: &[Kill]) -> Vec<String> {
    let mut refused_at: HashMap<&str, SystemTime> = HashMap::new();
    let lost_with_process = |call: &RefreshCall| {
        kills.iter().any(|k| {
            k.ports.contains(&call.peer.port())
                && call
                    .served_at
                    .is_some_and(|at| at <= k.at && k.at <= at + Duration::from_secs(3))
        })
    };
    for call in calls.iter().filter(|c| !lost_with_process(c)) {
        // Only refusals the vault was told of: an injected fault loses the answer (or its caller).
        if let (Some(subject), Some(RefreshOutcome::Reused | RefreshOutcome::Refused), Some(at), None) =
            (call.subject.as_deref(), call.outcome, call.served_at, call.failure)
        {
            let entry = refused_at.entry(subject).or_insert(at);
            *entry = (*entry).min(at);
        }
    }
    let mut out = Vec::new();
    let ms = |a: SystemTime, b: SystemTime| b.duration_since(a).map_or(0, |d| d.as_millis());
    for (subject, at) in refused_at {
        let refusal = calls
            .iter()
            .find(|c| c.subject.as_deref() == Some(subject) && c.served_at == Some(at));
        let later: Vec<String> = calls
            .iter()
            .filter(|c| c.subject.as_deref() == Some(subject) && c.arrived_at > at)
            .map(|c| {
                format!(
                    "token #{} from port {} {} ms after it: {:?}",
                    c.token_id.unwrap_or_default(),
                    c.peer.port(),
                    ms(at, c.arrived_at),
                    c.outcome
                )
            })
            .collect();
        if !later.is_empty() {
            out.push(format!(
                "{subject}: {} refresh calls after the provider refused the credential's refresh token \
                 (token #{} from port {}): {}",
                later.len(),
                refusal.and_then(|c| c.token_id).unwrap_or_default(),
                refusal.map_or(0, |c| c.peer.port()),
                later.join("; ")
            ));
        }
    }
    out
}
