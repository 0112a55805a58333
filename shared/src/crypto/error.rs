//! How sealing or opening a secret failed.

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// KMS refused for load, or did not answer usefully: the caller may retry later.
    #[error("KMS {operation} is throttled or unavailable")]
    KmsUnavailable {
        operation: &'static str,
        throttled: bool,
        #[source]
        source: crate::aws_failure::Source,
    },
    #[error("KMS {operation} failed")]
    Kms {
        operation: &'static str,
        #[source]
        source: crate::aws_failure::Source,
    },
    #[error("stored ciphertext is malformed")]
    Malformed,
    #[error("ciphertext does not belong to this item and attribute, or was altered")]
    NotAuthentic,
}
