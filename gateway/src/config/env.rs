//! `GATEWAY_<SECTION>_<KEY>` environment overrides, applied to the parsed TOML before it is typed,
//! so a container or a test can reuse one config file (`GATEWAY_XMPP_SECRET`, `GATEWAY_XMPP_PORT`).

use toml::{Table, Value};

use super::error::ConfigError;
use super::load::SECTIONS;
use super::schema::{
    CallsConfig, LogConfig, MediaConfig, PromptsConfig, StorageConfig, XmppConfig,
};

const PREFIX: &str = "GATEWAY_";

/// What applying the environment found besides the overrides it made.
#[derive(Debug, Default)]
pub struct EnvOutcome {
    /// Variables with a bad value, or naming no key of a known section.
    pub errors: Vec<ConfigError>,
    /// `GATEWAY_*` variables whose second word is no config section: set by something else
    /// (process supervisors, test scripts, Kubernetes for a service named `gateway`), ignored.
    pub ignored: Vec<String>,
}

/// Sets `[section] key` for every `GATEWAY_SECTION_KEY` variable in `env`. The value is read as
/// the type the key has by default (string, integer, boolean, array); a key with no default takes
/// the value as a string. A variable that names no section is ignored (and listed); one that
/// names a section but no key, or has a bad value, is a problem.
pub fn apply_env_overrides<I>(table: &mut Table, env: I) -> EnvOutcome
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Vec::new();
    let mut ignored = Vec::new();
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX))
        .collect();
    vars.sort();
    for (name, raw) in vars {
        let rest = name[PREFIX.len()..].to_ascii_lowercase();
        let (section, key) = rest.split_once('_').unwrap_or((rest.as_str(), ""));
        if !SECTIONS.contains(&section) {
            ignored.push(name);
            continue;
        }
        if key.is_empty() {
            errors.push(ConfigError::new(
                name,
                format!(
                    "names a section but no key: expected GATEWAY_{}_<KEY>",
                    section.to_ascii_uppercase()
                ),
            ));
            continue;
        }
        let value = match typed_value(section, key, &raw) {
            Ok(value) => value,
            Err(message) => {
                errors.push(ConfigError::new(name, message));
                continue;
            }
        };
        let target = table
            .entry(section.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        match target.as_table_mut() {
            Some(section_table) => {
                section_table.insert(key.to_string(), value);
            }
            None => errors.push(ConfigError::new(
                name,
                format!("`{section}` is not a table"),
            )),
        }
    }
    EnvOutcome { errors, ignored }
}

/// The default value of `[section] key`, if the key has one.
fn default_of(section: &str, key: &str) -> Option<Value> {
    let defaults = match section {
        "xmpp" => Value::try_from(XmppConfig::default()),
        "calls" => Value::try_from(CallsConfig::default()),
        "media" => Value::try_from(MediaConfig::default()),
        "storage" => Value::try_from(StorageConfig::default()),
        "log" => Value::try_from(LogConfig::default()),
        "prompts" => Value::try_from(PromptsConfig::default()),
        "voicemail" => Value::try_from(crate::config::VoicemailConfig::default()),
        "http" => Value::try_from(crate::config::HttpConfig::default()),
        "metrics" => Value::try_from(crate::config::MetricsConfig::default()),
        "outbound" => Value::try_from(crate::config::OutboundConfig::default()),
        "admin" => Value::try_from(crate::config::AdminConfig::default()),
        _ => return None,
    };
    defaults.ok()?.get(key).cloned()
}

/// Reads `raw` as the type of the key's default.
fn typed_value(section: &str, key: &str, raw: &str) -> Result<Value, String> {
    match default_of(section, key) {
        Some(Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(Value::Integer)
            .map_err(|_| format!("`{raw}` is not a whole number")),
        Some(Value::Boolean(_)) => match raw.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("`{raw}` is not true or false")),
        },
        Some(Value::Array(_)) => Ok(Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        )),
        _ => Ok(Value::String(raw.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn overrides_take_the_type_of_the_key() {
        let text = "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"file\"\n[endpoints.echo]\nkind = \"echo\"\n";
        let config = Config::from_toml_str(
            text,
            vars(&[
                ("GATEWAY_XMPP_SECRET", "12345"),
                ("GATEWAY_XMPP_PORT", "6000"),
                ("GATEWAY_XMPP_HOST", "127.0.0.1"),
                ("GATEWAY_XMPP_DOMAIN", "voice.localhost"),
                ("GATEWAY_CALLS_MAX_CALLS", "7"),
                ("HOME", "/ignored"),
            ]),
            &crate::endpoint::KINDS,
        )
        .unwrap();
        assert_eq!(config.xmpp.secret.as_deref(), Some("12345"));
        assert_eq!(config.xmpp.port, 6000);
        assert_eq!(config.xmpp.host, "127.0.0.1");
        assert_eq!(config.xmpp.domain.as_deref(), Some("voice.localhost"));
        assert_eq!(config.calls.max_calls, 7);
    }

    #[test]
    fn bad_overrides_name_the_variable() {
        let mut table = Table::new();
        let outcome = apply_env_overrides(
            &mut table,
            vars(&[("GATEWAY_XMPP_PORT", "lots"), ("GATEWAY_XMPP", "1")]),
        );
        let keys: Vec<_> = outcome.errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["GATEWAY_XMPP", "GATEWAY_XMPP_PORT"]);
    }

    #[test]
    fn variables_of_no_section_are_ignored_and_a_misspelt_key_is_not() {
        // What Kubernetes sets for a service named `gateway`, and what supervisors set.
        let env = vars(&[
            ("GATEWAY_PORT", "tcp://10.0.0.7:5347"),
            ("GATEWAY_SERVICE_HOST", "10.0.0.7"),
            ("GATEWAY_PORT_5347_TCP_ADDR", "10.0.0.7"),
            ("GATEWAY_CMD", "run"),
            ("GATEWAY_XMPP_SEKRET", "x"),
        ]);
        let text = "[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n[endpoints.echo]\nkind = \"echo\"\n";
        let errors = Config::from_toml_str(text, env.clone(), &crate::endpoint::KINDS).unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["xmpp.sekret"]);
        let mut table = Table::new();
        let outcome = apply_env_overrides(&mut table, env);
        assert_eq!(
            outcome.ignored,
            [
                "GATEWAY_CMD",
                "GATEWAY_PORT",
                "GATEWAY_PORT_5347_TCP_ADDR",
                "GATEWAY_SERVICE_HOST"
            ]
        );
        let without_typo = vars(&[("GATEWAY_PORT", "tcp://10.0.0.7:5347")]);
        let config = Config::from_toml_str(text, without_typo, &crate::endpoint::KINDS).unwrap();
        assert_eq!(config.ignored_env, ["GATEWAY_PORT"]);
    }
}
