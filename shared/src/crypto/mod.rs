//! Envelope encryption of every secret the vault stores (DESIGN §4).
//!
//! Each ciphertext is bound to its table, item key and attribute: the context goes to AES-256-GCM as
//! additional data and to KMS as the encryption context of the data key, so a ciphertext copied onto
//! another item or attribute fails to decrypt, even when its data key is cached. Item families made
//! per unauthenticated request (login verifiers) have a coarser KMS context naming their partition,
//! so the data-key cache serves them; their additional data still names the exact item.
//! Plaintexts and data keys are zeroed when dropped.

mod data_key_cache;
mod envelope;
mod error;

pub use data_key_cache::DataKeyCache;
pub use envelope::{EncryptionContext, Envelope, LOGIN_VERIFIER_SCOPE, PartitionScope, Sealer};
pub use error::CryptoError;
