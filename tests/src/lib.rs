//! credvault-tests: the local stack (moto, a fake OAuth/OIDC provider, a local API gateway over the
//! real function handlers) and the integration tests and benchmarks that drive it.

pub mod aws;
pub mod aws_proxy;
pub mod chaos;
pub mod clock;
pub mod demo;
pub mod fake_provider;
pub mod gateway;
pub mod log_subscription;
pub mod logs;
pub mod memory;
pub mod moto;
pub mod service_client;
pub mod stack;
pub mod stream;

pub use fake_provider::{Failure, FakeProvider, IdTokenFault};
pub use stack::{LocalStack, LoggedIn, StackOptions};

/// The workspace root, where `.venv` and the scripts live.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}

/// Awaits all `futures` together in this task (they may borrow; the test crate has no futures crate),
/// returning their outputs in order.
pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    use std::task::Poll;
    let mut futures: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The `accessToken` of a credential fetch that must have succeeded.
pub async fn access_token_of(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 200, "the fetch succeeded");
    resp.json::<serde_json::Value>().await.expect("json")["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_string()
}
