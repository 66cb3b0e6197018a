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

/// An RFC 3339 date and time (`2026-12-01T10:00:00Z`, `…T10:00:00.250+01:00`; a space for
/// the `T`) as Unix milliseconds; `None` for anything else, or a time before 1970.
pub fn parse_datetime(text: &str) -> Option<u64> {
    let text = text.trim();
    let b = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > days_in_month || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut at = 19;
    let mut millis = 0i64;
    if b.get(at) == Some(&b'.') {
        let fraction: String = text[at + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if fraction.is_empty() {
            return None;
        }
        at += 1 + fraction.len();
        millis = format!("{fraction:0<3}")[..3].parse().ok()?;
    }
    let offset_minutes = match text.get(at..)? {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && zone.as_bytes()[3] == b':' => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = (digits(at + 1, 2)?, digits(at + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 60 + m)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_minutes * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

/// A proleptic Gregorian date to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn datetimes_parse_back_to_what_was_written() {
        for ms in [0, 1_764_583_200_000, 1_798_000_123_456, 951_782_400_000] {
            assert_eq!(
                parse_datetime(&xs_datetime(ms)),
                Some(ms),
                "{}",
                xs_datetime(ms)
            );
        }
        assert_eq!(
            parse_datetime("2026-12-01T11:00:00+01:00"),
            parse_datetime("2026-12-01T10:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-12-01 10:00:00.5Z"),
            Some(1_796_119_200_500)
        );
        for bad in [
            "",
            "yesterday",
            "2026-12-01",
            "2026-13-01T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-12-01T10:00:00",
            "2026-12-01T10:00:00+0100",
            "2026-12-01T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "2026-12-01T10:00:00.Z",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

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
