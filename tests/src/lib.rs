//! credvault-tests: the local stack (moto, a fake OAuth/OIDC provider, a local API gateway over the
//! real function handlers) and the integration tests and benchmarks that drive it.

pub mod aws;
pub mod aws_proxy;
pub mod clock;
pub mod demo;
pub mod fake_provider;
pub mod gateway;
pub mod logs;
pub mod moto;
pub mod service_client;
pub mod stack;

pub use fake_provider::{Failure, FakeProvider, IdTokenFault};
pub use stack::{LocalStack, LoggedIn, StackOptions};

/// The workspace root, where `.venv` and the scripts live.
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default()
}
