//! `make chaos`: the chaos suite's full profile (or the short one with `--short`), with its report
//! table. Counts can be changed with `CHAOS_FETCHES`, `CHAOS_CONCURRENCY`, `CHAOS_USERS`,
//! `CHAOS_PROCESSES`. Exits 1 when an invariant broke. Needs the `vault-process` binary next to it
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
    let report = run(&profile).await;
    println!("{report}");
    if !report.violations.is_empty() {
        std::process::exit(1);
    }
}
