//! The provider's id_token is checked before anything is stored: a wrong nonce, audience, issuer,
//! expiry, signature or algorithm, a missing or future `iat`, or a second audience without this
//! client as `azp` sends the browser back to the app with an error.

use credvault_tests::stack::{APP_REDIRECT_URL, location};
use credvault_tests::{IdTokenFault, LocalStack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_id_token_stores_no_credential() {
    let stack = LocalStack::start(StackOptions::default()).await;
    for fault in [
        IdTokenFault::WrongNonce,
        IdTokenFault::WrongAudience,
        IdTokenFault::WrongIssuer,
        IdTokenFault::Expired,
        IdTokenFault::Unsigned,
        IdTokenFault::ForeignKey,
        IdTokenFault::SymmetricWithClientSecret,
        IdTokenFault::NoIat,
        IdTokenFault::FutureIat,
        IdTokenFault::ExtraAudienceNoAzp,
        IdTokenFault::ExtraAudienceWrongAzp,
    ] {
        stack.provider.set_knobs(|k| k.id_token_fault = Some(fault));
        let before = stack.state_snapshot().await;
        let (_, callback) = stack.login_until_callback(&credvault::random::token(32)).await;
        let back = stack.http.get(&callback).send().await.unwrap();
        assert_eq!(back.status(), 302, "{fault:?}");
        let app = url::Url::parse(&location(&back)).unwrap();
        assert!(app.as_str().starts_with(APP_REDIRECT_URL));
        let error = app
            .query_pairs()
            .find(|(k, _)| k == "error")
            .map(|(_, v)| v.into_owned());
        assert_eq!(error.as_deref(), Some("invalid_id_token"), "{fault:?}");
        assert!(app.query_pairs().all(|(k, _)| k != "code"), "{fault:?}");
        assert!(
            stack.credential("con_demo|alice").await.is_none(),
            "{fault:?}: nothing stored"
        );
        assert_eq!(
            stack.state_snapshot().await,
            before,
            "{fault:?}: the login request is consumed and nothing else is written"
        );
    }
    // The control: the same flow with a good id_token stores the credential.
    stack.provider.set_knobs(|k| k.id_token_fault = None);
    let user = stack.login().await;
    assert!(stack.credential(&user.user_id).await.is_some());
}
