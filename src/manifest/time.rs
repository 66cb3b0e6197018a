//! Date and duration formats the manifests use, without a calendar dependency.

/// `xs:dateTime` in UTC with milliseconds (`2026-11-25T09:00:00.123Z`), as MPD attributes,
/// `EXT-X-PROGRAM-DATE-TIME` and the `http-xsdate` UTCTiming scheme want.
pub fn xs_datetime(unix_millis: u64) -> String {
    let secs = unix_millis / 1000;
    let millis = unix_millis % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An `xs:duration` in seconds with millisecond precision (`PT2.000S`).
pub fn iso8601_duration(secs: f64) -> String {
    format!("PT{:.3}S", secs.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_in_utc_with_millis() {
        assert_eq!(xs_datetime(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(xs_datetime(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(xs_datetime(1_795_597_261_123), "2026-11-25T09:01:01.123Z");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(iso8601_duration(2.0), "PT2.000S");
        assert_eq!(iso8601_duration(0.3333), "PT0.333S");
    }
}
