//! `make chaos`: the chaos suite's full profile (or the short one with `--short`), with its report
//! table. Counts can be changed with `CHAOS_FETCHES`, `CHAOS_CONCURRENCY`, `CHAOS_USERS`,
//! `CHAOS_PROCESSES`, and each fault's count with `CHAOS_FAULT_<KIND>` (see below). Exits 1 when an invariant broke. Needs the `vault-process` binary next to it
//! (`cargo build -p credvault-tests --bins`).

use credvault_tests::chaos::{Profile, run};

fn count(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let vault_bin = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("vault-process")))
        .filter(|bin| bin.exists())
        .unwrap_or_else(|| {
            eprintln!("chaos: no vault-process binary next to this one; run `cargo build -p credvault-tests --bins`");
            std::process::exit(2)
        });
    let mut profile = if std::env::args().any(|a| a == "--short") {
        Profile::short(vault_bin)
    } else {
        Profile::full(vault_bin)
    };
    profile.fetches = count("CHAOS_FETCHES", profile.fetches);
    profile.concurrency = count("CHAOS_CONCURRENCY", profile.concurrency);
    profile.users = count("CHAOS_USERS", profile.users);
    profile.processes = count("CHAOS_PROCESSES", profile.processes);
    // Fault counts: CHAOS_FAULT_<KIND>=n (0 switches a kind off), e.g. CHAOS_FAULT_LATE_SPIKES=2.
    let faults = &mut profile.faults;
    for (name, field) in [
        ("PROVIDER_ERRORS", &mut faults.provider_errors),
        ("LOST_ANSWERS", &mut faults.lost_answers),
        ("LYING_429S", &mut faults.lying_429s),
        ("LATENCY_SPIKES", &mut faults.latency_spikes),
        ("LATE_SPIKES", &mut faults.late_spikes),
        ("DYNAMODB_THROTTLES", &mut faults.dynamodb_throttles),
        ("DYNAMODB_STALLS", &mut faults.dynamodb_stalls),
        ("KMS_ERRORS", &mut faults.kms_errors),
        ("KMS_STALLS", &mut faults.kms_stalls),
        ("KILLS", &mut faults.kills),
    ] {
        *field = count(&format!("CHAOS_FAULT_{name}"), *field as usize) as u32;
    }
    let report = run(&profile).await;
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
