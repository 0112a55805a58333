//! The chaos suite's short profile (issue 9), in `make test`: three vault processes behind a
//! round-robin front, 150 fetches at 10 concurrent over 5 users whose tokens expire every 4 s, with
//! every fault kind injected while they run (`make chaos` runs the full profile). Its invariants
//! hold whichever request meets which fault.

use credvault_tests::chaos::{Profile, ReuseClass, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_short_chaos_profile_keeps_every_invariant() {
    let profile = Profile::short(env!("CARGO_BIN_EXE_vault-process").into());
    let report = run(&profile).await;
    println!("{report}");

    // The invariants, one by one, so a failure names the one that broke; `violations` has them all
    // (and the end-state checks: every credential ACTIVE and fetchable, or dead by rotation_lost;
    // every lease bounded; nothing presented after the provider refused a credential).
    assert_eq!(report.status(500), 0, "no fetch answers 500\n{report}");
    assert_eq!(
        report.reuse_count(ReuseClass::Other),
        0,
        "no refresh token is spent by two refreshes\n{report}"
    );
    assert_eq!(
        report.bad_tokens, 0,
        "every 200 carries a token the provider accepted then\n{report}"
    );
    assert_eq!(
        report.reauth_other, 0,
        "no credential is lost but by rotation_lost\n{report}"
    );
    assert!(report.violations.is_empty(), "{report}");

    // Each probe (the vault's one presentation of a token whose rotation it never saw) is a
    // credential lost with rotation_lost, and each rotation_lost had its probe.
    let probed: std::collections::BTreeSet<&str> = report.reuse.iter().map(|r| r.subject.as_str()).collect();
    assert_eq!(report.rotation_lost, probed.len() as u64, "{report}");

    // And the run was not a quiet one: every kind of fault met the vault.
    let injected = |kind: &str| report.injected.get(kind).copied().unwrap_or(0);
    assert_eq!(
        (report.kills, report.restarts),
        (1, 1),
        "one kill inside a refresh, one restart\n{report}"
    );
    // The kill loses the rotation it held, which is then probed once; unless the refresh it held
    // rotated nothing (it was itself a probe of an answer lost before, or the provider had not
    // performed it), which loses nothing.
    assert_eq!(
        report.reuse_count(ReuseClass::Killed) + report.kills_that_lost_nothing,
        1,
        "the killed process's rotation is lost and probed once\n{report}"
    );
    // A rotate-then-fail fault may meet a refresh whose token is already spent (a probe): then no
    // answer is lost. Whether one is depends on timing; that the fault was applied does not.
    let lost_answer_faults = ["rotate, then 500", "rotate, then 502", "rotate, then reset"];
    assert!(
        lost_answer_faults
            .iter()
            .map(|kind| report.injected.get(*kind).copied().unwrap_or(0))
            .sum::<u64>()
            >= 1,
        "{report}"
    );
    let before_acting = [
        "provider 502",
        "provider 503+Retry-After",
        "provider reset",
        "provider 429+Retry-After",
    ];
    assert!(before_acting.iter().all(|kind| injected(kind) == 1), "{report}");
    // A spike window is applied for sure; whether a refresh arrives inside it depends on timing
    // (in one fresh-clone CI run none did), so the calls it held are reported, not required.
    assert!(injected("provider spike windows") >= 1, "{report}");
    assert!(injected("DynamoDB throttled calls") >= 4, "{report}");
    assert!(injected("KMS failed calls") >= 1, "{report}");
    assert!(report.status(200) > 0 && report.active_at_end > 0, "{report}");
}
