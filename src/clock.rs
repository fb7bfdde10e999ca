//! Time as text: wall-clock time in the one form Kubernetes uses, RFC 3339 in UTC (`2026-11-30T07:18:17Z`),
//! formatted for JSON logs and parsed for a deletion's `deletionTimestamp`; and durations as seconds for messages.
//! Pure: the caller passes the time.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A duration as seconds with one decimal, `1.5s`, rounded to the nearest tenth (integer arithmetic: no float
/// formatting in the binary).
pub struct Seconds(pub Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_secs().saturating_mul(1000).saturating_add(u64::from(self.0.subsec_millis()));
        let tenths = millis.saturating_add(50) / 100;
        write!(f, "{}.{}s", tenths / 10, tenths % 10)
    }
}

/// `2026-11-30T07:18:17.709Z`, with milliseconds.
pub fn rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, seconds) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60,
        since.subsec_millis()
    )
}

/// Parses `2026-11-30T07:18:17Z` (fractional seconds are allowed and ignored; only UTC, as the API server writes).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u64>().ok();
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if text.len() < 20 || !text.ends_with('Z') || separators.iter().any(|&(i, c)| text.as_bytes()[i] != c) {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day) && hour < 24 && minute < 60 && second < 61;
    let days = days_from_civil(year, month, day).filter(|_| valid)?;
    Some(UNIX_EPOCH + Duration::from_secs(days * 86_400 + hour * 3600 + minute * 60 + second))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm), for dates from 1970 on.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let year = if month <= 2 { year.checked_sub(1)? } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    (era * 146_097 + day_of_era).checked_sub(719_468)
}

/// The date of a day number since 1970-01-01 (the inverse of `days_from_civil`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + 719_468;
    let era = days / 146_097;
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_kubernetes_timestamps() {
        let time = UNIX_EPOCH + Duration::from_millis(1_796_023_097_709);
        assert_eq!(rfc3339_millis(time), "2026-11-30T07:18:17.709Z");
        assert_eq!(parse_rfc3339("2026-11-30T07:18:17Z"), Some(UNIX_EPOCH + Duration::from_secs(1_796_023_097)));
        assert_eq!(parse_rfc3339("2026-11-30T07:18:17.709Z"), parse_rfc3339("2026-11-30T07:18:17Z"));
        assert_eq!(rfc3339_millis(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z"), Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800)));
    }

    #[test]
    fn seconds_with_one_decimal() {
        let text = |ms: u64| Seconds(Duration::from_millis(ms)).to_string();
        assert_eq!([text(0), text(49), text(50), text(1_449), text(10_000)], ["0.0s", "0.0s", "0.1s", "1.4s", "10.0s"]);
        assert_eq!(Seconds(Duration::MAX).to_string(), "18446744073709551.6s", "saturated, not wrapped");
    }

    #[test]
    fn every_day_round_trips() {
        for days in (0..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn malformed_timestamps_are_none() {
        for bad in [
            "",
            "2026-11-30",
            "2026-11-30T07:18:17",
            "2026-13-30T07:18:17Z",
            "2026-11-30 07:18:17Z",
            "x026-11-30T07:18:17Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
