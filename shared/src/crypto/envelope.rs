//! KMS GenerateDataKey + AES-256-GCM, bound to where the ciphertext lives.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use secrecy::SecretString;

use super::{CryptoError, DataKeyCache};

/// Format version byte of a sealed value: `[1][u16 len][wrapped data key][12-byte nonce][ciphertext+tag]`.
const FORMAT_V1: u8 = 1;

/// Where a ciphertext lives. Sent to KMS as the encryption context and used as AES-GCM additional data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    pub table: String,
    pub pk: String,
    pub sk: String,
    pub attribute: &'static str,
}

impl EncryptionContext {
    fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            ("attribute", self.attribute),
            ("pk", &self.pk),
            ("sk", &self.sk),
            ("table", &self.table),
        ]
    }

    /// One unambiguous string for the AAD and the cache key (values are JSON-quoted).
    fn canonical(&self) -> String {
        serde_json::to_string(&self.pairs()).unwrap_or_default()
    }
}

pub struct Envelope {
    kms: aws_sdk_kms::Client,
    key_id: String,
    cache: DataKeyCache,
    /// Concurrent misses for the same data key make one KMS call, not one each.
    miss_lock: tokio::sync::Mutex<()>,
}

impl Envelope {
    pub fn new(kms: aws_sdk_kms::Client, key_id: String, cache: DataKeyCache) -> Self {
        Self {
            kms,
            key_id,
            cache,
            miss_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn cache(&self) -> &DataKeyCache {
        &self.cache
    }

    pub async fn seal(&self, ctx: &EncryptionContext, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let canonical = ctx.canonical();
        let (wrapped, key) = match self.cache.for_sealing(&canonical) {
            Some(found) => found,
            None => self.generate_data_key(ctx, &canonical).await?,
        };
        let nonce_bytes = crate::random::random_bytes(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(nonce, Aad::from(canonical.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::Malformed)?;
        let wrapped_len = u16::try_from(wrapped.len()).map_err(|_| CryptoError::Malformed)?;
        let mut out = Vec::with_capacity(3 + wrapped.len() + NONCE_LEN + in_out.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub async fn open(&self, ctx: &EncryptionContext, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let SealedParts {
            wrapped_key: wrapped,
            nonce: nonce_bytes,
            ciphertext,
        } = split_sealed(sealed)?;
        let canonical = ctx.canonical();
        let key = match self.cache.get(&canonical, wrapped) {
            Some(key) => key,
            None => {
                let _one_at_a_time = self.miss_lock.lock().await;
                match self.cache.get(&canonical, wrapped) {
                    Some(key) => key,
                    None => self.decrypt_data_key(ctx, &canonical, wrapped).await?,
                }
            }
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let mut in_out = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(canonical.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::NotAuthentic)?;
        Ok(plain.to_vec())
    }

    pub async fn seal_str(&self, ctx: &EncryptionContext, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        self.seal(ctx, plaintext.as_bytes()).await
    }

    pub async fn open_str(&self, ctx: &EncryptionContext, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let bytes = self.open(ctx, sealed).await?;
        String::from_utf8(bytes)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }

    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
        canonical: &str,
    ) -> Result<(Vec<u8>, Arc<LessSafeKey>), CryptoError> {
        let mut req = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (k, v) in ctx.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| kms_error("GenerateDataKey", e))?;
        let wrapped = out.ciphertext_blob.ok_or(CryptoError::Malformed)?.into_inner();
        let plain = out.plaintext.ok_or(CryptoError::Malformed)?;
        let key = Arc::new(aes_key(plain.as_ref())?);
        self.cache.insert(canonical, wrapped.clone(), key.clone());
        Ok((wrapped, key))
    }

    async fn decrypt_data_key(
        &self,
        ctx: &EncryptionContext,
        canonical: &str,
        wrapped: &[u8],
    ) -> Result<Arc<LessSafeKey>, CryptoError> {
        let mut req = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()));
        for (k, v) in ctx.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| {
            let invalid = e
                .as_service_error()
                .is_some_and(|s| s.is_invalid_ciphertext_exception());
            if invalid {
                CryptoError::NotAuthentic
            } else {
                kms_error("Decrypt", e)
            }
        })?;
        let plain = out.plaintext.ok_or(CryptoError::Malformed)?;
        let key = Arc::new(aes_key(plain.as_ref())?);
        self.cache.insert(canonical, wrapped.to_vec(), key.clone());
        Ok(key)
    }
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, CryptoError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| CryptoError::Malformed)
}

/// The parts of a sealed value, borrowed from it.
struct SealedParts<'a> {
    wrapped_key: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn split_sealed(sealed: &[u8]) -> Result<SealedParts<'_>, CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
    if version != FORMAT_V1 || rest.len() < 2 {
        return Err(CryptoError::Malformed);
    }
    let wrapped_len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let rest = &rest[2..];
    if rest.len() < wrapped_len + NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(CryptoError::Malformed);
    }
    let (wrapped, rest) = rest.split_at(wrapped_len);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    Ok(SealedParts {
        wrapped_key: wrapped,
        nonce,
        ciphertext,
    })
}

fn kms_error<E: std::error::Error + 'static>(
    operation: &'static str,
    err: aws_sdk_kms::error::SdkError<E>,
) -> CryptoError {
    let cause = match err.as_service_error() {
        Some(service) => service.to_string(),
        None => crate::error::cause_chain(&err),
    };
    CryptoError::Kms { operation, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_unknown_format_is_malformed() {
        assert!(matches!(split_sealed(&[]), Err(CryptoError::Malformed)));
        assert!(matches!(split_sealed(&[2, 0, 0]), Err(CryptoError::Malformed)));
        assert!(matches!(split_sealed(&[1, 0, 5, 1, 2]), Err(CryptoError::Malformed)));
    }

    #[test]
    fn context_canonical_form_separates_attributes_and_items() {
        let a = EncryptionContext {
            table: "t".into(),
            pk: "p".into(),
            sk: "s".into(),
            attribute: "refreshToken",
        };
        let b = EncryptionContext {
            attribute: "accessToken",
            ..a.clone()
        };
        let c = EncryptionContext {
            pk: "p2".into(),
            ..a.clone()
        };
        assert_ne!(a.canonical(), b.canonical());
        assert_ne!(a.canonical(), c.canonical());
    }
}
