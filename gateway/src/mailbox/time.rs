//! Calendar dates (UTC) for message names, metadata and the text owners read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A moment in UTC, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl Utc {
    /// The date of `unix` seconds since 1970.
    pub fn from_unix(unix: u64) -> Self {
        let days = (unix / 86_400) as i64;
        let rest = unix % 86_400;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Self {
            year,
            month,
            day,
            hour: (rest / 3600) as u32,
            minute: (rest % 3600 / 60) as u32,
            second: (rest % 60) as u32,
        }
    }

    /// `2026-11-24T14:03:12Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20261124-140312`, for file names that sort by time.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-24 14:03 UTC`, for people.
    pub fn human(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

/// Milliseconds since 1970 now.
pub fn unix_now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// `0:42`, `12:05`, `1:02:03`.
pub fn clock_duration(duration: Duration) -> String {
    let secs = duration.as_secs() + u64::from(duration.subsec_millis() >= 500);
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(Utc::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Utc::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        let t = Utc::from_unix(1_795_529_592);
        assert_eq!(t.rfc3339(), "2026-11-24T14:13:12Z");
        assert_eq!(t.compact(), "20261124-141312");
        assert_eq!(t.human(), "2026-11-24 14:13 UTC");
        assert_eq!(
            Utc::from_unix(4_102_444_799).rfc3339(),
            "2099-12-31T23:59:59Z"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(clock_duration(Duration::from_millis(42_400)), "0:42");
        assert_eq!(clock_duration(Duration::from_millis(59_600)), "1:00");
        assert_eq!(clock_duration(Duration::from_secs(3723)), "1:02:03");
    }
}
