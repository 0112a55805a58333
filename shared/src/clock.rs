//! Time comes through `Clock` so the protocol code can be driven by tests without sleeping: wall time
//! for expiries and TTLs, and monotonic time for deadlines, lease budgets and cache ages. Calendar
//! work (ISO 8601 and HTTP dates) is done by the `time` and `httpdate` crates.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Monotonic time, for measuring how long something took or how much of a budget is left. A test
    /// clock moves it with wall time.
    fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Whole seconds since the Unix epoch: the unit of token expiries and DynamoDB TTLs.
    fn now_secs(&self) -> i64 {
        unix_secs(self.now())
    }

    /// Milliseconds since the Unix epoch: the unit of lease expiries, which are shorter than a second apart.
    fn now_millis(&self) -> i64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// The Authress `lastUpdated` form: UTC, always three fractional digits.
const ISO_MILLIS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const ISO_SECONDS: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");

fn utc_from_millis(epoch_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(epoch_ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 / ISO 8601 UTC timestamp (`2026-11-27T17:36:46Z`) for epoch seconds.
pub fn iso8601(epoch_secs: i64) -> String {
    utc_from_millis(epoch_secs.saturating_mul(1000))
        .format(ISO_SECONDS)
        .unwrap_or_default()
}

/// ISO 8601 UTC with milliseconds (`2026-11-27T17:36:46.123Z`), the Authress `lastUpdated` form.
pub fn iso8601_millis(epoch_ms: i64) -> String {
    utc_from_millis(epoch_ms).format(ISO_MILLIS).unwrap_or_default()
}

/// An HTTP date (`Fri, 27 Nov 2026 17:36:46 GMT`) for epoch seconds, for `Last-Modified`.
pub fn http_date(epoch_secs: i64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_secs(epoch_secs.max(0) as u64);
    httpdate::fmt_http_date(at)
}

/// Parses the two forms `If-Unmodified-Since` arrives in, to epoch milliseconds and the precision the
/// value carries (1 when it has fractional seconds, else 1000): ISO 8601 / RFC 3339
/// (`2026-11-27T17:36:46.123Z`, what the Authress SDK sends) and the HTTP date
/// (`Fri, 27 Nov 2026 17:36:46 GMT`). Impossible dates (`2026-02-31`) are refused.
pub fn parse_http_or_iso_date(value: &str) -> Option<(i64, i64)> {
    let value = value.trim();
    if let Ok(at) = OffsetDateTime::parse(value, &Rfc3339) {
        let ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()?;
        let precision = if value.contains('.') { 1 } else { 1000 };
        return Some((ms, precision));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some((i64::try_from(secs).ok()?.checked_mul(1000)?, 1000))
}

/// A clock for unit tests that moves only when `step` is called: wall and monotonic time together,
/// so an age or a budget can be put exactly at its boundary.
#[cfg(test)]
pub(crate) struct SteppedClock {
    started: (SystemTime, Instant),
    elapsed: std::sync::Mutex<std::time::Duration>,
}

#[cfg(test)]
impl SteppedClock {
    pub(crate) fn new() -> Self {
        Self {
            started: (SystemTime::now(), Instant::now()),
            elapsed: Default::default(),
        }
    }

    pub(crate) fn step(&self, by: std::time::Duration) {
        *self.elapsed.lock().unwrap() += by;
    }
}

#[cfg(test)]
impl Clock for SteppedClock {
    fn now(&self) -> SystemTime {
        self.started.0 + *self.elapsed.lock().unwrap()
    }
    fn instant(&self) -> Instant {
        self.started.1 + *self.elapsed.lock().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_801_006), "2026-11-27T17:36:46Z");
        assert_eq!(iso8601_millis(1_795_801_006_005), "2026-11-27T17:36:46.005Z");
    }

    #[test]
    fn both_date_forms_parse_to_the_same_instant() {
        let ms = 1_795_801_006_123;
        assert_eq!(iso8601_millis(ms), "2026-11-27T17:36:46.123Z");
        assert_eq!(parse_http_or_iso_date("2026-11-27T17:36:46.123Z"), Some((ms, 1)));
        assert_eq!(parse_http_or_iso_date("2026-11-27T17:36:46Z"), Some((ms - 123, 1000)));
        assert_eq!(
            parse_http_or_iso_date("Fri, 27 Nov 2026 17:36:46 GMT"),
            Some((ms - 123, 1000))
        );
        assert_eq!(
            parse_http_or_iso_date("2026-11-27T18:36:46.123+01:00"),
            Some((ms, 1)),
            "an offset is the same instant"
        );
        assert_eq!(http_date(ms / 1000), "Fri, 27 Nov 2026 17:36:46 GMT");
    }

    #[test]
    fn impossible_and_malformed_dates_are_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-02-31T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-27T25:00:00Z",
            "2026-11-27T17:36:46",
            "Fri, 27 Nov 2026 17:36:46 CET",
            "Tue, 31 Feb 2026 10:00:00 GMT",
        ] {
            assert_eq!(parse_http_or_iso_date(bad), None, "{bad}");
        }
    }
}
