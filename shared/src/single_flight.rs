//! One piece of work per key at a time inside one process: the first caller for a key leads and does
//! the work; callers that arrive while it runs wait for the leader's result instead of repeating it.
//!
//! The vault uses it for credential fetches (vault.rs): an instance serving many concurrent requests
//! for one credential (the local gateway, a long-lived container, a Lambda instance with several
//! concurrent requests) reads DynamoDB and runs the refresh protocol once for all of them. Across
//! instances the lease protocol still decides who refreshes; this only saves the work a process would
//! otherwise do many times over.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::watch;

/// A leader's outcome as followers see it: `None` while it runs, then `Some(value)`, where a `None`
/// value means "it failed: do the work yourself".
type Outcome<V> = Option<Option<V>>;

pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, watch::Receiver<Outcome<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        Self {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

/// What a caller is to do.
pub enum Turn<'a, K: Hash + Eq + Clone, V: Clone> {
    /// Do the work, then hand the result to `Leader::finish`.
    Lead(Leader<'a, K, V>),
    /// Another caller did it: its value, or `None` if it failed or gave up.
    Joined(Option<V>),
}

/// The caller doing the work for a key. Dropped without `finish` (the request was cancelled), its
/// followers are told to do the work themselves.
pub struct Leader<'a, K: Hash + Eq + Clone, V: Clone> {
    flights: &'a SingleFlight<K, V>,
    key: K,
    done: watch::Sender<Outcome<V>>,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, watch::Receiver<Outcome<V>>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Leads the work for `key`, or waits for the caller already leading it.
    pub async fn join_or_lead(&self, key: K) -> Turn<'_, K, V> {
        let running = {
            let mut flights = self.lock();
            match flights.get(&key) {
                Some(running) => running.clone(),
                None => {
                    let (done, running) = watch::channel(None);
                    flights.insert(key.clone(), running);
                    return Turn::Lead(Leader {
                        flights: self,
                        key,
                        done,
                    });
                }
            }
        };
        let mut running = running;
        match running.wait_for(Option::is_some).await {
            Ok(outcome) => Turn::Joined(outcome.clone().flatten()),
            // The leader was dropped before it finished.
            Err(_) => Turn::Joined(None),
        }
    }

    /// Keys with work running now (for tests).
    pub fn running(&self) -> usize {
        self.lock().len()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<'_, K, V> {
    /// Hands `value` (or `None`: failed) to every caller waiting on this key.
    pub fn finish(self, value: Option<V>) {
        // Ignored when nobody waits.
        let _ = self.done.send(Some(value));
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        // Callers from now on lead their own; those already waiting keep the receiver they cloned.
        self.flights.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_leaders_work() {
        let flights: Arc<SingleFlight<&str, u32>> = Arc::default();
        let work_done = AtomicU32::new(0);
        let leader = match flights.join_or_lead("k").await {
            Turn::Lead(leader) => leader,
            Turn::Joined(_) => panic!("the first caller leads"),
        };
        let followers: Vec<_> = (0..5)
            .map(|_| {
                let flights = flights.clone();
                tokio::spawn(async move {
                    match flights.join_or_lead("k").await {
                        Turn::Joined(value) => value,
                        Turn::Lead(_) => panic!("a follower led while the leader ran"),
                    }
                })
            })
            .collect();
        // Let every follower reach the flight (a current-thread runtime runs them now), then finish.
        tokio::task::yield_now().await;
        work_done.fetch_add(1, Ordering::SeqCst);
        leader.finish(Some(7));
        for follower in followers {
            assert_eq!(follower.await.unwrap(), Some(7));
        }
        assert_eq!(work_done.load(Ordering::SeqCst), 1);
        assert_eq!(flights.running(), 0, "the flight is gone once finished");
        assert!(
            matches!(flights.join_or_lead("k").await, Turn::Lead(_)),
            "the next caller leads anew"
        );
    }

    #[tokio::test]
    async fn a_leader_dropped_unfinished_sends_its_followers_to_do_the_work() {
        let flights: Arc<SingleFlight<&str, u32>> = Arc::default();
        let leader = match flights.join_or_lead("k").await {
            Turn::Lead(leader) => leader,
            Turn::Joined(_) => panic!("the first caller leads"),
        };
        let follower = {
            let flights = flights.clone();
            tokio::spawn(async move {
                match flights.join_or_lead("k").await {
                    Turn::Joined(value) => value,
                    Turn::Lead(_) => panic!("joined while the leader ran"),
                }
            })
        };
        tokio::task::yield_now().await;
        drop(leader);
        assert_eq!(follower.await.unwrap(), None);
        assert_eq!(flights.running(), 0);
    }

    #[tokio::test]
    async fn other_keys_do_not_wait() {
        let flights: SingleFlight<&str, u32> = SingleFlight::default();
        let _a = match flights.join_or_lead("a").await {
            Turn::Lead(leader) => leader,
            Turn::Joined(_) => panic!("leads a"),
        };
        assert!(matches!(flights.join_or_lead("b").await, Turn::Lead(_)));
    }
}
