//! A user reaches their own credential by the exact user id, nothing near it: ids that extend theirs
//! (`…|alice2`, a trailing space or an invisible character), differ in case, or are percent-encoded
//! forms of another id are other users, for reading and for deleting. Every victim here has a real
//! credential, so a wrongly allowed read answers 200 and a wrongly allowed delete 204, not 404.

use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, LoggedIn, StackOptions};

/// Subjects whose vault ids (`con_demo|{subject}`) are near `con_demo|alice`.
const NEAR_ALICE: [&str; 6] = [
    "alice2",
    "alice ",
    "alice\u{200b}",
    "alice|alice",
    "Alice",
    // A literal `%32`: decoded once more than it should be, its path would name `…|alice2`.
    "alice%32",
];

fn path(user_id: &str) -> String {
    format!("/v1/connections/con_demo/users/{}/credentials", encode(user_id))
}

async fn status(stack: &LocalStack, method: &str, raw_path: &str, caller: &LoggedIn) -> u16 {
    stack.call(method, raw_path, Some(&caller.access_token), None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_near_ones_own_name_other_users_for_read_and_delete() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login_as("alice").await;
    assert_eq!(alice.user_id, "con_demo|alice");
    let mut victims = Vec::new();
    for subject in NEAR_ALICE {
        let victim = stack.login_as(subject).await;
        assert_eq!(victim.user_id, format!("con_demo|{subject}"));
        victims.push(victim);
    }
    let before = stack.state_snapshot().await;

    for victim in &victims {
        let id = &victim.user_id;
        // The id as the SDKs encode it, with its `|` left raw, and its `%` encoded once more.
        let raw_paths = [
            path(id),
            format!("/v1/connections/con_demo/users/{}/credentials", id.replace(' ', "%20")),
            format!(
                "/v1/connections/con_demo/users/{}/credentials",
                encode(id).replace('%', "%25")
            ),
        ];
        for raw_path in &raw_paths {
            assert_eq!(
                status(&stack, "GET", raw_path, &alice).await,
                403,
                "alice reading {id:?} by {raw_path}"
            );
            assert_eq!(
                status(&stack, "DELETE", raw_path, &alice).await,
                403,
                "alice deleting {id:?} by {raw_path}"
            );
        }
        // The other way round: a longer id is not its prefix either.
        assert_eq!(
            status(&stack, "GET", &path(&alice.user_id), victim).await,
            403,
            "{id:?} reading alice"
        );
        assert_eq!(
            status(&stack, "DELETE", &path(&alice.user_id), victim).await,
            403,
            "{id:?} deleting alice"
        );
    }
    assert_eq!(stack.state_snapshot().await, before, "no refusal changed anything");
    assert_eq!(stack.provider.counters().revocations, 0, "no refresh token was revoked");

    // The controls: each of them reaches exactly their own credential.
    assert_eq!(status(&stack, "GET", &path(&alice.user_id), &alice).await, 200);
    for victim in &victims {
        assert_eq!(
            status(&stack, "GET", &path(&victim.user_id), victim).await,
            200,
            "{:?} reads their own",
            victim.user_id
        );
    }
}
