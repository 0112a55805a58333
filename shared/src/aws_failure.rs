//! How a call to an AWS service failed, as far as answering and retrying go: the one place DynamoDB and
//! KMS errors are told apart into throttled, unavailable (timeouts, connection failures, 5xx) and the
//! rest. The SDK error itself is kept as the `source` of the typed errors built from this.

// The smithy types both SDKs re-export: one classification serves DynamoDB and KMS.
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// The SDK error, boxed, kept as the source of a typed error for the log.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The service refused for load: retry later (503 with Retry-After).
    Throttled,
    /// The service did not answer usefully (timeout, connection failure, its own 5xx): retry later.
    Unavailable,
    /// Anything else: a bug or a misconfiguration (500).
    Other,
}

const THROTTLED: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];
const UNAVAILABLE: &[&str] = &[
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
];

pub fn classify<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Failure {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Failure::Unavailable,
        SdkError::ServiceError(service) => match service.err().code() {
            Some(code) if THROTTLED.contains(&code) => Failure::Throttled,
            Some(code) if UNAVAILABLE.contains(&code) => Failure::Unavailable,
            _ => Failure::Other,
        },
        _ => Failure::Other,
    }
}
