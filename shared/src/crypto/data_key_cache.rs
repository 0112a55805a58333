//! Decrypted data keys, kept briefly in memory so a warm credential fetch costs no KMS call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::LessSafeKey;

use crate::clock::Clock;

struct Entry {
    key: Arc<LessSafeKey>,
    created: Instant,
}

/// Bounded by entry count and age. Entries are keyed by encryption context *and* wrapped key, so a
/// cached key is only ever used for the context KMS released it under.
pub struct DataKeyCache {
    max_entries: usize,
    max_age: Duration,
    clock: Arc<dyn Clock>,
    entries: Mutex<HashMap<(String, Vec<u8>), Entry>>,
    /// The newest key per context, reused when sealing a new value for the same attribute.
    newest: Mutex<HashMap<String, Vec<u8>>>,
}

impl DataKeyCache {
    pub fn new(max_entries: usize, max_age: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            max_entries,
            max_age,
            clock,
            entries: Mutex::new(HashMap::new()),
            newest: Mutex::new(HashMap::new()),
        }
    }

    fn young(&self, entry: &Entry) -> bool {
        self.clock.instant().saturating_duration_since(entry.created) < self.max_age
    }

    pub fn get(&self, context: &str, wrapped: &[u8]) -> Option<Arc<LessSafeKey>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(&(context.to_string(), wrapped.to_vec()))?;
        self.young(entry).then(|| entry.key.clone())
    }

    /// A fresh-enough key already released for this context, with its wrapped form, for sealing.
    pub fn for_sealing(&self, context: &str) -> Option<(Vec<u8>, Arc<LessSafeKey>)> {
        let wrapped = self
            .newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(context)
            .cloned()?;
        let key = self.get(context, &wrapped)?;
        Some((wrapped, key))
    }

    pub fn insert(&self, context: &str, wrapped: Vec<u8>, key: Arc<LessSafeKey>) {
        if self.max_entries == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| self.young(e));
        if entries.len() >= self.max_entries
            && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            (context.to_string(), wrapped.clone()),
            Entry {
                key,
                created: self.clock.instant(),
            },
        );
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        // A newest key whose entry was evicted or aged out is forgotten with it.
        newest.retain(|ctx, w| entries.contains_key(&(ctx.clone(), w.clone())));
        newest.insert(context.to_string(), wrapped);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SteppedClock;
    use aws_lc_rs::aead::{AES_256_GCM, UnboundKey};

    fn key() -> Arc<LessSafeKey> {
        Arc::new(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap()))
    }

    #[test]
    fn a_key_is_only_found_under_its_own_context() {
        let cache = DataKeyCache::new(10, Duration::from_secs(60), Arc::new(crate::clock::SystemClock));
        cache.insert("ctx-a", vec![1], key());
        assert!(cache.get("ctx-a", &[1]).is_some());
        assert!(cache.get("ctx-b", &[1]).is_none());
        assert!(cache.for_sealing("ctx-a").is_some());
        assert!(cache.for_sealing("ctx-b").is_none());
    }

    #[test]
    fn the_cache_is_bounded_and_keys_age_out() {
        let cache = DataKeyCache::new(3, Duration::from_secs(60), Arc::new(crate::clock::SystemClock));
        for i in 0..10u8 {
            cache.insert(&format!("ctx-{i}"), vec![i], key());
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.get("ctx-9", &[9]).is_some());

        let short = DataKeyCache::new(3, Duration::from_millis(1), Arc::new(crate::clock::SystemClock));
        short.insert("ctx", vec![1], key());
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("ctx", &[1]).is_none());
    }

    /// A key is young for strictly less than `max_age`: at exactly its age it is gone, for reading and
    /// for sealing.
    #[test]
    fn a_key_ages_out_at_exactly_its_maximum_age() {
        let clock = Arc::new(SteppedClock::new());
        let cache = DataKeyCache::new(10, Duration::from_secs(60), clock.clone());
        cache.insert("ctx", vec![1], key());
        clock.step(Duration::from_secs(59));
        assert!(cache.get("ctx", &[1]).is_some());
        assert!(cache.for_sealing("ctx").is_some());
        clock.step(Duration::from_secs(1));
        assert!(cache.get("ctx", &[1]).is_none());
        assert!(cache.for_sealing("ctx").is_none());
    }

    /// Sealing reuses the newest key of each context, however many contexts came after, while its
    /// entry lives; and an evicted entry is not offered for sealing.
    #[test]
    fn each_context_keeps_its_newest_key_for_sealing_until_evicted() {
        // A second passes between inserts, so "oldest" is never a tie.
        let clock = Arc::new(SteppedClock::new());
        let cache = DataKeyCache::new(2, Duration::from_secs(60), clock.clone());
        let insert = |context: &str, wrapped: u8| {
            clock.step(Duration::from_secs(1));
            cache.insert(context, vec![wrapped], key());
        };
        assert!(cache.is_empty());
        insert("ctx-a", 1);
        insert("ctx-a", 2);
        assert!(!cache.is_empty());
        assert_eq!(cache.for_sealing("ctx-a").map(|(wrapped, _)| wrapped), Some(vec![2]));
        // ctx-b evicts ctx-a's oldest entry, not its newest.
        insert("ctx-b", 3);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.for_sealing("ctx-a").map(|(wrapped, _)| wrapped), Some(vec![2]));
        assert_eq!(cache.for_sealing("ctx-b").map(|(wrapped, _)| wrapped), Some(vec![3]));
        // ctx-c evicts ctx-a's last one: nothing is left to seal ctx-a with.
        insert("ctx-c", 4);
        assert!(cache.for_sealing("ctx-a").is_none());
        assert!(cache.get("ctx-b", &[3]).is_some());
    }

    #[test]
    fn a_cache_of_no_entries_keeps_nothing() {
        let cache = DataKeyCache::new(0, Duration::from_secs(60), Arc::new(crate::clock::SystemClock));
        cache.insert("ctx", vec![1], key());
        assert!(cache.is_empty());
        assert!(cache.get("ctx", &[1]).is_none());
    }
}
