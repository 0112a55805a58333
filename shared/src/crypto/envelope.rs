//! KMS GenerateDataKey + AES-256-GCM, bound to where the ciphertext lives.
//!
//! Two bindings, told apart by the format byte:
//! - item (`FORMAT_ITEM_KEY`, the original format): the KMS encryption context and the AAD both name
//!   the exact item; one data key per item and attribute.
//! - partition (`FORMAT_PARTITION_KEY`): for item families in `PARTITION_SCOPES`, made for every
//!   unauthenticated request. The KMS context (and the data-key cache key) names the table, the
//!   family's fixed partition, the sort key and the attribute, so one cached data key serves them all;
//!   the AAD still names the exact item, so a ciphertext moved to another item of the family fails.
//!
//! Plaintexts and data keys live only in buffers that are zeroed when dropped.

use std::sync::Arc;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use zeroize::Zeroizing;

use super::data_key_cache::DataKeyCache;
use super::error::CryptoError;

/// Sealed value: `[format][u16 len][wrapped data key][12-byte nonce][ciphertext+tag]`.
/// The data key was released for the exact item.
const FORMAT_ITEM_KEY: u8 = 1;
/// Same layout; the data key was released for the item's partition scope.
const FORMAT_PARTITION_KEY: u8 = 2;

/// A family of items whose data keys KMS releases per family rather than per item. Its items have
/// `pk = "<partition>#<item>"`, this `sk` and this attribute; KMS sees `pk = <partition>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionScope {
    pub partition: &'static str,
    pub sk: &'static str,
    pub attribute: &'static str,
}

/// Login requests are made by unauthenticated callers, one per login start: their verifiers are
/// sealed under a data key KMS releases for the whole `LOGIN` partition, so a warm start makes no KMS
/// call (the AAD still binds each verifier to its own request). `store/login_requests.rs` lays its
/// items out by this scope.
pub const LOGIN_VERIFIER_SCOPE: PartitionScope = PartitionScope {
    partition: "LOGIN",
    sk: "LOGIN_REQUEST",
    attribute: "providerCodeVerifier",
};

/// Every partition scope. Anything else keeps a per-item KMS context (and the key policy expects it).
const PARTITION_SCOPES: &[PartitionScope] = &[LOGIN_VERIFIER_SCOPE];

/// Where a ciphertext lives. Sent to KMS as the encryption context (coarsened to a partition for the
/// families in `PARTITION_SCOPES`) and, always exactly, used as AES-GCM additional data.
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

    /// The partition scope this item belongs to, if any.
    fn partition_scope(&self) -> Option<&'static PartitionScope> {
        PARTITION_SCOPES.iter().find(|scope| {
            scope.sk == self.sk
                && scope.attribute == self.attribute
                && self
                    .pk
                    .strip_prefix(scope.partition)
                    .and_then(|rest| rest.strip_prefix('#'))
                    .is_some_and(|item| !item.is_empty())
        })
    }

    /// The `pk` KMS sees in the encryption context of new ciphertexts for this item.
    pub fn kms_pk(&self) -> &str {
        self.partition_scope().map_or(&self.pk, |scope| scope.partition)
    }
}

/// A context together with the binding a ciphertext uses: what goes to KMS, to the cache, to the AAD.
struct Binding<'a> {
    ctx: &'a EncryptionContext,
    scope: Option<&'static PartitionScope>,
}

impl<'a> Binding<'a> {
    /// New ciphertexts use the partition binding wherever the item has one.
    fn for_sealing(ctx: &'a EncryptionContext) -> Self {
        Self {
            ctx,
            scope: ctx.partition_scope(),
        }
    }

    /// The binding a stored ciphertext declares; a partition binding only opens on an item of its
    /// family (anywhere else it was moved there).
    fn for_opening(ctx: &'a EncryptionContext, format: u8) -> Result<Self, CryptoError> {
        match format {
            FORMAT_ITEM_KEY => Ok(Self { ctx, scope: None }),
            FORMAT_PARTITION_KEY => match ctx.partition_scope() {
                Some(scope) => Ok(Self {
                    ctx,
                    scope: Some(scope),
                }),
                None => Err(CryptoError::NotAuthentic),
            },
            _ => Err(CryptoError::Malformed),
        }
    }

    fn format(&self) -> u8 {
        if self.scope.is_some() {
            FORMAT_PARTITION_KEY
        } else {
            FORMAT_ITEM_KEY
        }
    }

    /// The KMS encryption context.
    fn kms_pairs(&self) -> [(&'static str, &str); 4] {
        let mut pairs = self.ctx.pairs();
        if let Some(scope) = self.scope {
            pairs[1].1 = scope.partition;
        }
        pairs
    }

    /// The data-key cache key: exactly the KMS encryption context the key was released under.
    fn cache_key(&self) -> String {
        serde_json::to_string(&self.kms_pairs()).unwrap_or_default()
    }

    /// The AES-GCM additional data: always the exact item (values JSON-quoted, so unambiguous). The
    /// item binding keeps the original form, so its ciphertexts still open.
    fn aad(&self) -> String {
        match self.scope {
            None => serde_json::to_string(&self.ctx.pairs()).unwrap_or_default(),
            Some(_) => {
                let format = FORMAT_PARTITION_KEY.to_string();
                let [a, b, c, d] = self.ctx.pairs();
                serde_json::to_string(&[("format", format.as_str()), a, b, c, d]).unwrap_or_default()
            }
        }
    }
}

/// A data key ready to seal values for one encryption context, with no KMS call left to make.
pub struct Sealer {
    format: u8,
    aad: String,
    wrapped: Vec<u8>,
    key: Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce_bytes = crate::random::random_bytes(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let wrapped_len = u16::try_from(self.wrapped.len()).map_err(|_| CryptoError::Malformed)?;
        let header_len = 3 + self.wrapped.len() + NONCE_LEN;
        // Encrypted in the buffer that is returned, sized so it never reallocates: no copy of the
        // plaintext is left behind, even when sealing fails half-way.
        let mut out = Zeroizing::new(Vec::with_capacity(header_len + plaintext.len() + AES_256_GCM.tag_len()));
        out.push(self.format);
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&self.wrapped);
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(self.aad.as_bytes()), &mut out[header_len..])
            .map_err(|_| CryptoError::Malformed)?;
        out.extend_from_slice(tag.as_ref());
        Ok(std::mem::take(&mut *out))
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
        self.sealer(ctx).await?.seal(plaintext)
    }

    /// Everything sealing a value under `ctx` needs from KMS, obtained now (from the cache or one
    /// `GenerateDataKey`): the refresh protocol takes it before calling the provider, so nothing
    /// between the provider's answer and the commit can fail on KMS.
    pub async fn sealer(&self, ctx: &EncryptionContext) -> Result<Sealer, CryptoError> {
        self.sealer_bound(&Binding::for_sealing(ctx)).await
    }

    async fn sealer_bound(&self, binding: &Binding<'_>) -> Result<Sealer, CryptoError> {
        let cache_key = binding.cache_key();
        let (wrapped, key) = match self.cache.for_sealing(&cache_key) {
            Some(found) => found,
            None => self.generate_data_key(binding, &cache_key).await?,
        };
        Ok(Sealer {
            format: binding.format(),
            aad: binding.aad(),
            wrapped,
            key,
        })
    }

    /// The plaintext, in a buffer that is zeroed when dropped and redacted in `Debug`.
    pub async fn open(&self, ctx: &EncryptionContext, sealed: &[u8]) -> Result<SecretSlice<u8>, CryptoError> {
        let SealedParts {
            format,
            wrapped_key: wrapped,
            nonce: nonce_bytes,
            ciphertext,
        } = split_sealed(sealed)?;
        let binding = Binding::for_opening(ctx, format)?;
        let cache_key = binding.cache_key();
        let key = match self.cache.get(&cache_key, wrapped) {
            Some(key) => key,
            None => {
                let _one_at_a_time = self.miss_lock.lock().await;
                match self.cache.get(&cache_key, wrapped) {
                    Some(key) => key,
                    None => self.decrypt_data_key(&binding, &cache_key, wrapped).await?,
                }
            }
        };
        let nonce = Nonce::try_assume_unique_for_key(nonce_bytes).map_err(|_| CryptoError::Malformed)?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plain = key
            .open_in_place(nonce, Aad::from(binding.aad().as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::NotAuthentic)?;
        // `Box<[u8]>::from` allocates exactly once for exactly the plaintext: no reallocation copies.
        Ok(SecretSlice::from(Box::<[u8]>::from(&*plain)))
    }

    pub async fn seal_str(&self, ctx: &EncryptionContext, plaintext: &str) -> Result<Vec<u8>, CryptoError> {
        self.seal(ctx, plaintext.as_bytes()).await
    }

    pub async fn open_str(&self, ctx: &EncryptionContext, sealed: &[u8]) -> Result<SecretString, CryptoError> {
        let bytes = self.open(ctx, sealed).await?;
        let text = std::str::from_utf8(bytes.expose_secret()).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(Box::<str>::from(text)))
    }

    async fn generate_data_key(
        &self,
        binding: &Binding<'_>,
        cache_key: &str,
    ) -> Result<(Vec<u8>, Arc<LessSafeKey>), CryptoError> {
        let mut req = self
            .kms
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (k, v) in binding.kms_pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req.send().await.map_err(|e| kms_error("GenerateDataKey", e))?;
        let plain = Zeroizing::new(out.plaintext.ok_or(CryptoError::Malformed)?.into_inner());
        let wrapped = out.ciphertext_blob.ok_or(CryptoError::Malformed)?.into_inner();
        let key = Arc::new(aes_key(&plain)?);
        self.cache.insert(cache_key, wrapped.clone(), key.clone());
        Ok((wrapped, key))
    }

    async fn decrypt_data_key(
        &self,
        binding: &Binding<'_>,
        cache_key: &str,
        wrapped: &[u8],
    ) -> Result<Arc<LessSafeKey>, CryptoError> {
        let mut req = self
            .kms
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()));
        for (k, v) in binding.kms_pairs() {
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
        let plain = Zeroizing::new(out.plaintext.ok_or(CryptoError::Malformed)?.into_inner());
        let key = Arc::new(aes_key(&plain)?);
        self.cache.insert(cache_key, wrapped.to_vec(), key.clone());
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
    format: u8,
    wrapped_key: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn split_sealed(sealed: &[u8]) -> Result<SealedParts<'_>, CryptoError> {
    let (&format, rest) = sealed.split_first().ok_or(CryptoError::Malformed)?;
    if !matches!(format, FORMAT_ITEM_KEY | FORMAT_PARTITION_KEY) || rest.len() < 2 {
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
        format,
        wrapped_key: wrapped,
        nonce,
        ciphertext,
    })
}

fn kms_error<E>(operation: &'static str, err: aws_sdk_kms::error::SdkError<E>) -> CryptoError
where
    E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use crate::aws_failure::{Failure, classify};
    match classify(&err) {
        failure @ (Failure::Throttled | Failure::Unavailable) => CryptoError::KmsUnavailable {
            operation,
            throttled: failure == Failure::Throttled,
            source: Box::new(err),
        },
        Failure::Other => CryptoError::Kms {
            operation,
            source: Box::new(err),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::login_requests::{ATTR_PROVIDER_VERIFIER, VERIFIER_KMS_SCOPE};

    fn ctx(pk: &str, sk: &str, attribute: &'static str) -> EncryptionContext {
        EncryptionContext {
            table: "t".into(),
            pk: pk.into(),
            sk: sk.into(),
            attribute,
        }
    }

    fn verifier(item: &str) -> EncryptionContext {
        ctx(&format!("LOGIN#{item}"), VERIFIER_KMS_SCOPE.sk, ATTR_PROVIDER_VERIFIER)
    }

    fn credential(user: &str, attribute: &'static str) -> EncryptionContext {
        ctx("CREDENTIAL#con_demo", &format!("USER#{user}"), attribute)
    }

    /// An envelope whose KMS is unreachable: whatever it opens or seals came from its cache alone.
    fn offline_envelope() -> Envelope {
        use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url("http://127.0.0.1:9")
            .retry_config(aws_sdk_kms::config::retry::RetryConfig::disabled())
            .build();
        Envelope::new(
            aws_sdk_kms::Client::from_conf(conf),
            "key".into(),
            DataKeyCache::new(10, Duration::from_secs(60), Arc::new(crate::clock::SystemClock)),
        )
    }

    /// Puts a data key in the cache as if KMS had released it for `ctx`'s sealing binding.
    fn warm(envelope: &Envelope, ctx: &EncryptionContext, wrapped: u8) {
        let key = Arc::new(aes_key(&[wrapped; 32]).unwrap());
        envelope
            .cache
            .insert(&Binding::for_sealing(ctx).cache_key(), vec![wrapped; 16], key);
    }

    #[test]
    fn truncated_or_unknown_format_is_malformed() {
        assert!(matches!(split_sealed(&[]), Err(CryptoError::Malformed)));
        assert!(matches!(split_sealed(&[3, 0, 0]), Err(CryptoError::Malformed)));
        assert!(matches!(split_sealed(&[1, 0, 5, 1, 2]), Err(CryptoError::Malformed)));
        assert!(matches!(split_sealed(&[2, 0, 5, 1, 2]), Err(CryptoError::Malformed)));
        // Too short for the key length: refused, not read past its end.
        for short in [&[1][..], &[2, 0]] {
            assert!(matches!(split_sealed(short), Err(CryptoError::Malformed)), "{short:?}");
        }
        // An unknown format is refused however complete the rest looks.
        let mut unknown = vec![3, 0, 4];
        unknown.extend([0; 4 + NONCE_LEN + 16]);
        assert!(matches!(split_sealed(&unknown), Err(CryptoError::Malformed)));
        unknown[0] = FORMAT_ITEM_KEY;
        assert!(split_sealed(&unknown).is_ok(), "the same bytes in a known format");
    }

    /// The shortest sealed value, an empty plaintext (only the tag after the nonce), opens.
    #[tokio::test]
    async fn an_empty_value_seals_and_opens() {
        let envelope = offline_envelope();
        let at = credential("alice", "accessToken");
        warm(&envelope, &at, 9);
        let sealed = envelope.seal(&at, b"").await.unwrap();
        assert_eq!(sealed.len(), 3 + 16 + NONCE_LEN + AES_256_GCM.tag_len());
        let opened = envelope
            .open(&at, &sealed)
            .await
            .expect("the shortest sealed value opens");
        assert!(opened.expose_secret().is_empty());
        assert!(matches!(
            envelope.open(&at, &sealed[..sealed.len() - 1]).await,
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn item_contexts_keep_their_kms_context_and_aad_exactly_as_before() {
        let a = credential("alice", "refreshToken");
        let binding = Binding::for_sealing(&a);
        assert_eq!(binding.format(), FORMAT_ITEM_KEY);
        assert_eq!(a.kms_pk(), "CREDENTIAL#con_demo");
        let original =
            r#"[["attribute","refreshToken"],["pk","CREDENTIAL#con_demo"],["sk","USER#alice"],["table","t"]]"#;
        assert_eq!(binding.aad(), original, "the AAD of format 1, unchanged");
        assert_eq!(binding.cache_key(), original, "KMS context = the item");
        let other_attribute = credential("alice", "accessToken");
        let other_item = credential("bob", "refreshToken");
        for other in [&other_attribute, &other_item] {
            assert_ne!(Binding::for_sealing(other).aad(), binding.aad());
            assert_ne!(Binding::for_sealing(other).cache_key(), binding.cache_key());
        }
        // Client secrets too: their pk is shared, their sort key tells them apart.
        let secret = ctx("CONNECTIONS", "CONNECTION#con_demo", "clientSecret");
        assert_eq!(secret.kms_pk(), "CONNECTIONS");
        assert_eq!(Binding::for_sealing(&secret).format(), FORMAT_ITEM_KEY);
    }

    #[test]
    fn login_verifiers_share_a_kms_context_but_not_their_aad() {
        let (a, b) = (verifier("digest-a"), verifier("digest-b"));
        let (ba, bb) = (Binding::for_sealing(&a), Binding::for_sealing(&b));
        assert_eq!(ba.format(), FORMAT_PARTITION_KEY);
        assert_eq!(a.kms_pk(), "LOGIN");
        assert_eq!(
            ba.kms_pairs(),
            [
                ("attribute", "providerCodeVerifier"),
                ("pk", "LOGIN"),
                ("sk", "LOGIN_REQUEST"),
                ("table", "t"),
            ]
        );
        assert_eq!(
            ba.cache_key(),
            bb.cache_key(),
            "one cached data key serves every login start"
        );
        assert_ne!(ba.aad(), bb.aad(), "each ciphertext is bound to its own login request");
        assert!(ba.aad().contains("LOGIN#digest-a"));
        // The old format for the same item: KMS context and AAD of the exact item, as before.
        let old = Binding::for_opening(&a, FORMAT_ITEM_KEY).unwrap();
        assert_eq!(old.kms_pairs(), a.pairs());
        assert_ne!(old.aad(), ba.aad());
    }

    #[test]
    fn only_the_declared_family_gets_a_partition_scope() {
        for not_in_family in [
            ctx("LOGIN", "LOGIN_REQUEST", ATTR_PROVIDER_VERIFIER),
            ctx("LOGIN#", "LOGIN_REQUEST", ATTR_PROVIDER_VERIFIER),
            ctx("LOGINX#d", "LOGIN_REQUEST", ATTR_PROVIDER_VERIFIER),
            ctx("LOGIN#d", "OTHER", ATTR_PROVIDER_VERIFIER),
            ctx("LOGIN#d", "LOGIN_REQUEST", "refreshToken"),
            ctx("CREDENTIAL#c", "LOGIN_REQUEST", ATTR_PROVIDER_VERIFIER),
        ] {
            assert_eq!(not_in_family.kms_pk(), not_in_family.pk, "{not_in_family:?}");
            assert_eq!(Binding::for_sealing(&not_in_family).format(), FORMAT_ITEM_KEY);
            assert!(matches!(
                Binding::for_opening(&not_in_family, FORMAT_PARTITION_KEY),
                Err(CryptoError::NotAuthentic)
            ));
        }
    }

    #[tokio::test]
    async fn a_warm_verifier_key_seals_and_opens_without_kms_and_only_on_its_own_item() {
        let envelope = offline_envelope();
        let (a, b) = (verifier("digest-a"), verifier("digest-b"));
        warm(&envelope, &a, 7);
        let sealed_a = envelope
            .seal_str(&a, "verifier-a")
            .await
            .expect("sealed from the cache");
        let sealed_b = envelope
            .seal_str(&b, "verifier-b")
            .await
            .expect("the same key serves b");
        assert_eq!(sealed_a[0], FORMAT_PARTITION_KEY);
        assert_eq!(sealed_a[3..19], sealed_b[3..19], "one data key");

        let opened: SecretString = envelope.open_str(&a, &sealed_a).await.unwrap();
        assert_eq!(opened.expose_secret(), "verifier-a");
        assert!(matches!(
            envelope.open(&b, &sealed_a).await,
            Err(CryptoError::NotAuthentic)
        ));
        let on_a_credential = credential("alice", "refreshToken");
        warm(&envelope, &on_a_credential, 7);
        assert!(matches!(
            envelope.open(&on_a_credential, &sealed_a).await,
            Err(CryptoError::NotAuthentic)
        ));
        // Relabelled as the per-item format, the partition key is looked up for the exact item,
        // which KMS never released it for (here: the unreachable KMS is asked, and fails).
        let mut relabelled = sealed_a.clone();
        relabelled[0] = FORMAT_ITEM_KEY;
        assert!(envelope.open(&a, &relabelled).await.is_err());
    }

    #[tokio::test]
    async fn a_verifier_sealed_in_the_per_item_format_still_opens() {
        let envelope = offline_envelope();
        let a = verifier("digest-a");
        let old = Binding { ctx: &a, scope: None };
        let key = Arc::new(aes_key(&[5; 32]).unwrap());
        envelope.cache.insert(&old.cache_key(), vec![5; 16], key);
        let sealed = envelope
            .sealer_bound(&old)
            .await
            .unwrap()
            .seal(b"old-verifier")
            .unwrap();
        assert_eq!(sealed[0], FORMAT_ITEM_KEY);
        let opened = envelope.open_str(&a, &sealed).await.expect("format 1 opens as before");
        assert_eq!(opened.expose_secret(), "old-verifier");
    }

    #[tokio::test]
    async fn open_returns_a_redacted_zeroizing_buffer_and_item_ciphertexts_round_trip() {
        let envelope = offline_envelope();
        let at = credential("alice", "accessToken");
        warm(&envelope, &at, 9);
        let sealed = envelope.seal(&at, b"planted-access-token").await.unwrap();
        assert_eq!(sealed[0], FORMAT_ITEM_KEY);
        assert!(!sealed.windows(7).any(|w| w == b"planted"), "sealed is ciphertext");
        let opened: SecretSlice<u8> = envelope.open(&at, &sealed).await.unwrap();
        assert_eq!(opened.expose_secret(), b"planted-access-token");
        let shown = format!("{opened:?}");
        assert!(!shown.contains("planted") && !shown.contains("112"), "{shown}");
        let elsewhere = credential("alice", "refreshToken");
        warm(&envelope, &elsewhere, 9);
        assert!(matches!(
            envelope.open(&elsewhere, &sealed).await,
            Err(CryptoError::NotAuthentic)
        ));
    }

    /// A sealer in a log line says which binding it seals under, and nothing of its data key.
    #[tokio::test]
    async fn a_sealer_shows_its_format_and_nothing_of_its_key() {
        let envelope = offline_envelope();
        let (a, at) = (verifier("digest-a"), credential("alice", "accessToken"));
        warm(&envelope, &a, 7);
        warm(&envelope, &at, 7);
        let partition = format!("{:?}", envelope.sealer(&a).await.unwrap());
        let item = format!("{:?}", envelope.sealer(&at).await.unwrap());
        assert!(partition.contains("format: 2"), "{partition}");
        assert!(item.contains("format: 1"), "{item}");
        for shown in [partition, item] {
            assert!(
                !shown.contains('7') && !shown.contains("wrapped") && !shown.contains("key"),
                "{shown}"
            );
        }
    }
}
