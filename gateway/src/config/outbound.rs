//! `[outbound]`: whom the gateway may ring (IVR `connect`, a mailbox's follow-me) and how
//! often. Every target in the config must be allowed here, and the gateway checks again before
//! each call it places, so it cannot be used to ring arbitrary people.

use jid::Jid;
use serde::{Deserialize, Serialize};

use super::duration::ConfigDuration;
use super::error::ConfigError;

/// `[outbound]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// JIDs (`sales@example.org`) and domains (`example.org`) the gateway may ring.
    pub allow: Vec<String>,
    /// Calls the gateway places at once, over all callers.
    pub max_calls: usize,
    /// Calls the gateway places per minute, over all targets.
    pub calls_per_minute: u32,
    /// Calls the gateway places to one target per minute.
    pub calls_per_target_per_minute: u32,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            max_calls: 20,
            calls_per_minute: 60,
            calls_per_target_per_minute: 6,
        }
    }
}

impl OutboundConfig {
    /// Whether `target` (a JID) may be rung: its bare JID or its domain is in `allow`.
    pub fn allows(&self, target: &str) -> bool {
        let Ok(jid) = Jid::new(target) else {
            return false;
        };
        let bare = jid.to_bare().to_string();
        let domain = jid.domain().as_str();
        self.allow
            .iter()
            .any(|entry| entry.eq_ignore_ascii_case(&bare) || entry.eq_ignore_ascii_case(domain))
    }

    /// Problems in `[outbound]` itself, and in `targets` (key and JID of every target the
    /// config rings).
    pub fn validate(&self, targets: &[(String, String)]) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        for (i, entry) in self.allow.iter().enumerate() {
            let valid = Jid::new(entry).is_ok_and(|jid| jid.resource().is_none());
            if !valid {
                errors.push(ConfigError::new(
                    format!("outbound.allow[{i}]"),
                    format!("`{entry}` is neither a bare JID nor a domain"),
                ));
            }
        }
        if self.max_calls == 0 {
            errors.push(ConfigError::new("outbound.max_calls", "must be at least 1"));
        }
        for (key, value) in [
            ("outbound.calls_per_minute", self.calls_per_minute),
            (
                "outbound.calls_per_target_per_minute",
                self.calls_per_target_per_minute,
            ),
        ] {
            if value == 0 {
                errors.push(ConfigError::new(key, "must be at least 1"));
            }
        }
        for (key, target) in targets {
            match Jid::new(target) {
                Ok(jid) if jid.node().is_some() => {
                    if !self.allows(target) {
                        errors.push(ConfigError::new(
                            key.clone(),
                            format!("`{target}` is not in outbound.allow (add it or its domain)"),
                        ));
                    }
                }
                _ => errors.push(ConfigError::new(
                    key.clone(),
                    format!("`{target}` is not a user's JID (user@domain)"),
                )),
            }
        }
        errors
    }
}

/// How the targets of a `connect` or follow-me ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingStrategy {
    /// All at once; the first to answer takes the call.
    #[default]
    All,
    /// One after the other, each for its ring timeout.
    Hunt,
}

/// The ringback played to the caller while people are rung (North American cadence).
pub const RINGBACK_PROMPT: &str = "tone:440+480:2s:4s";

/// Default ring time per target.
pub const RING_TIMEOUT: ConfigDuration = ConfigDuration::secs(20);

/// The targets of one `connect` or follow-me, with the key naming each.
pub fn target_keys(key: &str, targets: &[String]) -> Vec<(String, String)> {
    targets
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("{key}.targets[{i}]"), t.clone()))
        .collect()
}

/// Problems shared by every list of targets: none given, or a zero ring timeout.
pub fn validate_ringing(
    key: &str,
    targets: &[String],
    ring_timeout: ConfigDuration,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if targets.is_empty() {
        errors.push(ConfigError::new(
            format!("{key}.targets"),
            "needs at least one JID to ring",
        ));
    }
    if ring_timeout.0.is_zero() {
        errors.push(ConfigError::new(
            format!("{key}.ring_timeout"),
            "must be longer than zero",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, EXAMPLE_CONFIG};

    /// Problems of the example with `allow` as `[outbound] allow`, and `tables` appended.
    fn errors_for(allow: &str, tables: &str) -> Vec<String> {
        let example = EXAMPLE_CONFIG.replacen("allow = []", &format!("allow = {allow}"), 1);
        let text = format!("{example}\n{tables}");
        match Config::from_toml_str(&text, Vec::new(), &crate::endpoint::KINDS) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    const CONNECT: &str = r#"
[endpoints.desk]
kind = "ivr"
[endpoints.desk.menus.main]
greeting = "tone:500:1s"
[endpoints.desk.menus.main.entries]
"1" = { action = "connect", targets = ["sales@example.org", "boss@elsewhere.example"], no_answer = { action = "transfer", to = "voicemail" } }
"2" = { action = "connect", targets = [], ring_timeout = "0s" }
"#;

    #[test]
    fn targets_outside_the_allow_list_are_refused_by_key() {
        let errors = errors_for("[]", CONNECT);
        let joined = errors.join("\n");
        assert!(
            joined.contains("endpoints.desk.menus.main.entries.\"1\".targets[0]"),
            "{joined}"
        );
        assert!(
            joined.contains("endpoints.desk.menus.main.entries.\"1\".targets[1]"),
            "{joined}"
        );
        assert!(
            joined.contains("entries.\"2\".targets: needs at least one JID"),
            "{joined}"
        );
        assert!(joined.contains("entries.\"2\".ring_timeout"), "{joined}");

        let allow = r#"["example.org", "boss@elsewhere.example"]"#;
        let errors = errors_for(allow, CONNECT);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|e| e.contains("\"2\"")), "{errors:?}");
    }

    #[test]
    fn allows_matches_bare_jids_and_domains_only() {
        let config = super::OutboundConfig {
            allow: vec!["example.org".into(), "boss@elsewhere.example".into()],
            ..Default::default()
        };
        assert!(config.allows("anyone@example.org"));
        assert!(config.allows("anyone@example.org/phone"));
        assert!(config.allows("boss@elsewhere.example"));
        assert!(!config.allows("intern@elsewhere.example"));
        assert!(!config.allows("someone@sub.example.org"));
        assert!(!config.allows("not a jid@@"));
    }

    #[test]
    fn follow_me_rings_the_owners_who_must_be_allowed() {
        let tables = "[endpoints.voicemail.follow_me]\nring_timeout = \"10s\"\n";
        let errors = errors_for("[]", tables);
        assert!(
            errors.iter().any(
                |e| e.contains("endpoints.voicemail.owners[0]") && e.contains("outbound.allow")
            ),
            "{errors:?}"
        );
        assert_eq!(errors_for(r#"["localhost"]"#, tables), Vec::<String>::new());
    }
}
