//! Human-readable durations in config files: `"500ms"`, `"30s"`, `"5m"`, `"2h"`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written in the config as `"500ms"`, `"30s"`, `"5m"`, `"2h"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    /// A duration of `secs` seconds.
    pub const fn secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// A duration of `ms` milliseconds.
    pub const fn millis(ms: u64) -> Self {
        Self(Duration::from_millis(ms))
    }

    /// Parses `"500ms"`, `"30s"`, `"5m"`, `"2h"` or `"30"` (seconds).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number.parse().map_err(|_| {
            format!("`{text}` is not a duration such as \"500ms\", \"30s\" or \"5m\"")
        })?;
        let unit_secs = match unit.trim() {
            "ms" => 0.001,
            "" | "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{text}` (use ms, s, m or h)"
                ))
            }
        };
        let secs = value * unit_secs;
        if !secs.is_finite() || secs > 365.0 * 86400.0 {
            return Err(format!("duration `{text}` is out of range"));
        }
        Ok(Self(Duration::from_secs_f64(secs)))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"500ms\", \"30s\", \"5m\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                ConfigDuration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(ConfigDuration::secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(ConfigDuration::secs(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                ConfigDuration::parse(&v.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            ConfigDuration::parse("500ms").unwrap(),
            ConfigDuration::millis(500)
        );
        assert_eq!(
            ConfigDuration::parse("30s").unwrap(),
            ConfigDuration::secs(30)
        );
        assert_eq!(
            ConfigDuration::parse("30").unwrap(),
            ConfigDuration::secs(30)
        );
        assert_eq!(
            ConfigDuration::parse("5m").unwrap(),
            ConfigDuration::secs(300)
        );
        assert_eq!(
            ConfigDuration::parse("2h").unwrap(),
            ConfigDuration::secs(7200)
        );
        assert_eq!(
            ConfigDuration::parse("1.5s").unwrap(),
            ConfigDuration::millis(1500)
        );
    }

    #[test]
    fn rejects_nonsense() {
        assert!(ConfigDuration::parse("soon").is_err());
        assert!(ConfigDuration::parse("5 fortnights").is_err());
        assert!(ConfigDuration::parse("").is_err());
        assert!(ConfigDuration::parse("99999999999999h").is_err());
    }

    #[test]
    fn displays_round_trip() {
        for text in ["500ms", "30s", "5m", "2h", "0s"] {
            assert_eq!(ConfigDuration::parse(text).unwrap().to_string(), text);
        }
    }
}
