//! Expiry times as the v2 API shows them, computed from explicit unix times in milliseconds
//! so that the store never reads a clock.

/// `unix_ms` as Go's RFC 3339 with nanoseconds in UTC, as etcd prints `expiration`:
/// trailing zeros of the fraction dropped, and the dot too when nothing is left.
pub(crate) fn expiration_string(unix_ms: u64) -> String {
    let seconds = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = seconds / 86_400;
    let in_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    );
    if millis != 0 {
        let fraction = format!("{millis:03}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Whole seconds from `now` to `expires_at` (both unix ms), rounded up as etcd does:
/// a positive remainder counts as a second; times past give zero or less.
pub(crate) fn ttl_seconds(expires_at: u64, now: u64) -> i64 {
    let left = i128::from(expires_at) - i128::from(now);
    let mut seconds = left / 1000;
    if left % 1000 > 0 {
        seconds += 1;
    }
    i64::try_from(seconds).unwrap_or(if seconds > 0 { i64::MAX } else { i64::MIN })
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
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
    fn formats_like_go_rfc3339_nano() {
        assert_eq!(expiration_string(0), "1970-01-01T00:00:00Z");
        // 2026-11-22T06:53:29.592Z, as etcd printed a TTL key here.
        assert_eq!(
            expiration_string(1_795_330_409_592),
            "2026-11-22T06:53:29.592Z"
        );
        assert_eq!(
            expiration_string(1_795_330_409_500),
            "2026-11-22T06:53:29.5Z"
        );
        // A leap day.
        assert_eq!(expiration_string(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn ttl_rounds_up_like_etcd() {
        assert_eq!(ttl_seconds(10_000, 0), 10);
        assert_eq!(ttl_seconds(10_000, 1), 10);
        assert_eq!(ttl_seconds(10_001, 0), 11);
        assert_eq!(ttl_seconds(10_000, 10_000), 0);
        assert_eq!(ttl_seconds(10_000, 10_500), 0);
        assert_eq!(ttl_seconds(10_000, 11_500), -1);
    }
}
