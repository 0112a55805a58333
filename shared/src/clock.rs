//! Time comes through `Clock` so the protocol code can be driven by tests without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

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

/// RFC 3339 / ISO 8601 UTC timestamp (`2026-11-27T17:36:46Z`) for epoch seconds.
pub fn iso8601(epoch_secs: i64) -> String {
    let days = epoch_secs.div_euclid(86_400);
    let secs_of_day = epoch_secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant), valid for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        (secs_of_day % 3600) / 60,
        secs_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_801_006), "2026-11-27T17:36:46Z");
    }
}

/// ISO 8601 UTC with milliseconds (`2026-11-27T17:36:46.123Z`), the Authress `lastUpdated` form.
pub fn iso8601_millis(epoch_ms: i64) -> String {
    let secs = iso8601(epoch_ms.div_euclid(1000));
    format!("{}.{:03}Z", secs.trim_end_matches('Z'), epoch_ms.rem_euclid(1000))
}

/// Days since the Unix epoch of a civil date (H. Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the two forms `If-Unmodified-Since` arrives in, to epoch milliseconds and the precision the
/// value carries (1000 for HTTP dates, 1 for ISO 8601 with milliseconds):
/// ISO 8601 UTC (`2026-11-27T17:36:46.123Z`, what the Authress SDK sends) and the HTTP date
/// (`Fri, 27 Nov 2026 17:36:46 GMT`).
pub fn parse_http_or_iso_date(value: &str) -> Option<(i64, i64)> {
    let value = value.trim();
    if let Some(rest) = value.split_once(", ").map(|(_, r)| r) {
        // HTTP date: `27 Nov 2026 17:36:46 GMT`
        let parts: Vec<&str> = rest.split(' ').collect();
        if parts.len() != 5 || parts[4] != "GMT" {
            return None;
        }
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS.iter().position(|m| *m == parts[1])? as i64 + 1;
        let (h, m, s) = hms(parts[3])?;
        let days = days_from_civil(parts[2].parse().ok()?, month, parts[0].parse().ok()?);
        return Some(((days * 86_400 + h * 3600 + m * 60 + s) * 1000, 1000));
    }
    let (date, time) = value.strip_suffix('Z')?.split_once('T')?;
    let ymd: Vec<i64> = date.split('-').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    if ymd.len() != 3 || !(1..=12).contains(&ymd[1]) || !(1..=31).contains(&ymd[2]) {
        return None;
    }
    let (clock, millis, precision) = match time.split_once('.') {
        Some((clock, frac)) if !frac.is_empty() && frac.bytes().all(|c| c.is_ascii_digit()) => {
            let padded = format!("{frac:0<3}");
            (clock, padded[..3].parse::<i64>().ok()?, 1)
        }
        Some(_) => return None,
        None => (time, 0, 1000),
    };
    let (h, m, s) = hms(clock)?;
    let days = days_from_civil(ymd[0], ymd[1], ymd[2]);
    Some(((days * 86_400 + h * 3600 + m * 60 + s) * 1000 + millis, precision))
}

fn hms(value: &str) -> Option<(i64, i64, i64)> {
    let parts: Vec<i64> = value.split(':').map(|p| p.parse().ok()).collect::<Option<_>>()?;
    match parts[..] {
        [h, m, s] if h < 24 && m < 60 && s < 61 => Some((h, m, s)),
        _ => None,
    }
}

#[cfg(test)]
mod date_tests {
    use super::*;

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
        assert_eq!(http_date(ms / 1000), "Fri, 27 Nov 2026 17:36:46 GMT");
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "Fri, 27 Nov 2026 17:36:46 CET",
            "2026-11-27T25:00:00Z",
        ] {
            assert_eq!(parse_http_or_iso_date(bad), None, "{bad}");
        }
    }
}

/// An HTTP date (`Fri, 27 Nov 2026 17:36:46 GMT`) for epoch seconds, for `Last-Modified`.
pub fn http_date(epoch_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let iso = iso8601(epoch_secs);
    let (year, month, day) = (&iso[0..4], iso[5..7].parse::<usize>().unwrap_or(1), &iso[8..10]);
    let weekday = DAYS[epoch_secs.div_euclid(86_400).rem_euclid(7) as usize];
    format!("{weekday}, {day} {} {year} {} GMT", MONTHS[month - 1], &iso[11..19])
}
