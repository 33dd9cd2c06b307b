//! Wall-clock time as the gateway writes it: RFC 3339, UTC, milliseconds, `Z`
//! (`2026-11-24T10:00:00.120Z`). Answers (Heartbeat, BootNotification) and journal lines carry
//! it, up to hundreds of thousands of times a second, so each thread keeps a [`WallClock`] that
//! formats once per millisecond into a fixed array: no allocation, no formatting library.
//!
//! A clock before 1970 or past 9999 cannot be written in this form: the text is then empty and
//! callers treat it as "no time" (an answer that needs one becomes InternalError) rather than
//! panicking.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch (0 for a clock before 1970).
pub fn epoch_ms(at: SystemTime) -> u64 {
    epoch_millis(at).unwrap_or(0)
}

/// Microseconds since the epoch (0 for a clock before 1970).
pub fn epoch_us(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|since| u64::try_from(since.as_micros()).ok())
        .unwrap_or(0)
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub const RFC3339_MILLIS_LEN: usize = 24;

/// Milliseconds since 1970 of the first instant past 9999-12-31T23:59:59.999Z.
const YEAR_10000_MS: u64 = 253_402_300_800_000;

/// Formats `millis` since the Unix epoch, or None past year 9999.
pub fn format_millis(millis: u64) -> Option<[u8; RFC3339_MILLIS_LEN]> {
    if millis >= YEAR_10000_MS {
        return None;
    }
    let days = millis / 86_400_000;
    let in_day = millis % 86_400_000;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (in_day / 3_600_000, in_day / 60_000 % 60);
    let (second, milli) = (in_day / 1000 % 60, in_day % 1000);
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put(&mut out[0..4], year);
    put(&mut out[5..7], month);
    put(&mut out[8..10], day);
    put(&mut out[11..13], hour);
    put(&mut out[14..16], minute);
    put(&mut out[17..19], second);
    put(&mut out[20..23], milli);
    Some(out)
}

/// Writes `value` as decimal digits right-aligned into `out` (already filled with zeros).
fn put(out: &mut [u8], mut value: u64) {
    for byte in out.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the Unix epoch, or None before 1970.
pub fn epoch_millis(at: SystemTime) -> Option<u64> {
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// One thread's formatted clock, refreshed at most once per millisecond.
#[derive(Debug, Clone)]
pub struct WallClock {
    millis: Option<u64>,
    text: [u8; RFC3339_MILLIS_LEN],
    len: usize,
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock {
            millis: None,
            text: [0; RFC3339_MILLIS_LEN],
            len: 0,
        }
    }
}

impl WallClock {
    /// `at` as RFC 3339 text ("" when the clock cannot be written).
    pub fn text(&mut self, at: SystemTime) -> &str {
        let millis = epoch_millis(at);
        if millis != self.millis || self.millis.is_none() {
            self.millis = millis;
            match millis.and_then(format_millis) {
                Some(text) => {
                    self.text = text;
                    self.len = RFC3339_MILLIS_LEN;
                }
                None => self.len = 0,
            }
        }
        // Only ASCII digits and punctuation are ever stored.
        std::str::from_utf8(&self.text[..self.len]).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_milliseconds() {
        assert_eq!(
            epoch_ms(UNIX_EPOCH + std::time::Duration::from_millis(1234)),
            1234
        );
        assert_eq!(epoch_ms(UNIX_EPOCH - std::time::Duration::from_secs(1)), 0);
    }
    use std::time::Duration;

    fn text(millis: u64) -> String {
        let mut clock = WallClock::default();
        clock
            .text(UNIX_EPOCH + Duration::from_millis(millis))
            .to_owned()
    }

    #[test]
    fn formats_like_humantime() {
        let samples = [
            0,
            1,
            999,
            86_399_999,
            951_782_400_000,     // 2000-02-29
            1_700_000_000_123,   // 2023-11-14T22:13:20.123Z
            4_102_444_799_999,   // 2099-12-31T23:59:59.999Z
            253_402_300_799_999, // 9999-12-31T23:59:59.999Z
        ];
        for millis in samples
            .into_iter()
            .chain((0..2000).map(|i| i * 15_778_463_123))
        {
            let at = UNIX_EPOCH + Duration::from_millis(millis);
            let expected = humantime::format_rfc3339_millis(at).to_string();
            assert_eq!(text(millis), expected, "{millis}");
        }
    }

    #[test]
    fn unprintable_times_are_empty() {
        assert_eq!(text(YEAR_10000_MS), "");
        let mut clock = WallClock::default();
        assert_eq!(clock.text(UNIX_EPOCH - Duration::from_secs(1)), "");
        assert_eq!(clock.text(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
