//! A clock tests can move forward, shared by every handler instance of a stack, so a test can make a
//! stored token old without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone, Default)]
pub struct TestClock {
    offset_secs: Arc<AtomicI64>,
}

impl TestClock {
    pub fn with_offset(offset_secs: i64) -> Self {
        Self {
            offset_secs: Arc::new(AtomicI64::new(offset_secs)),
        }
    }

    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }
}

impl credvault::clock::Clock for TestClock {
    fn now(&self) -> SystemTime {
        let offset = self.offset_secs.load(Ordering::SeqCst);
        let shift = Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 {
            SystemTime::now() + shift
        } else {
            SystemTime::now() - shift
        }
    }

    /// Monotonic time moves with `advance` too, so deadlines and cache ages age without waiting.
    fn instant(&self) -> Instant {
        let offset = self.offset_secs.load(Ordering::SeqCst);
        let shift = Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 {
            Instant::now() + shift
        } else {
            Instant::now().checked_sub(shift).unwrap_or_else(Instant::now)
        }
    }
}
