//! Loading: TOML text, then `GATEWAY_*` environment overrides, then typed sections, then
//! validation. Every problem found on the way is collected, each naming the key it concerns.

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use super::endpoints::{endpoints, EndpointKinds};
use super::env::apply_env_overrides;
use super::error::{ConfigError, ConfigErrors};
use super::schema::{Config, ConfigOrigin};
use super::validate::validate;

/// The sections the config accepts besides `[endpoints]`.
pub(super) const SECTIONS: &[&str] = &[
    "xmpp",
    "outbound",
    "calls",
    "media",
    "storage",
    "log",
    "prompts",
    "voicemail",
    "http",
    "metrics",
    "admin",
];

impl Config {
    /// Parses and validates a config from TOML text, applying `GATEWAY_*` overrides from `env`;
    /// its endpoints may be of the kinds in `kinds` (the gateway's: `crate::endpoint::KINDS`).
    pub fn from_toml_str<I>(
        text: &str,
        env: I,
        kinds: &dyn EndpointKinds,
    ) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut table: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start].lines().count().max(1))
                .unwrap_or(0);
            ConfigErrors(vec![ConfigError::new(
                format!("line {line}"),
                e.message().trim().to_string(),
            )])
        })?;
        let env = apply_env_overrides(&mut table, env);
        let mut errors = env.errors;
        let config = Config {
            xmpp: section(&mut table, "xmpp", &mut errors),
            calls: section(&mut table, "calls", &mut errors),
            media: section(&mut table, "media", &mut errors),
            storage: section(&mut table, "storage", &mut errors),
            log: section(&mut table, "log", &mut errors),
            prompts: section(&mut table, "prompts", &mut errors),
            voicemail: section(&mut table, "voicemail", &mut errors),
            http: section(&mut table, "http", &mut errors),
            metrics: section(&mut table, "metrics", &mut errors),
            outbound: section(&mut table, "outbound", &mut errors),
            admin: section(&mut table, "admin", &mut errors),
            endpoints: endpoints(table.remove("endpoints"), kinds, &mut errors),
            origin: ConfigOrigin::Text,
            ignored_env: env.ignored,
        };
        for key in table.keys() {
            errors.push(ConfigError::new(
                key.as_str(),
                format!(
                    "unknown section (expected one of: {}, endpoints)",
                    SECTIONS.join(", ")
                ),
            ));
        }
        errors.extend(validate(&config));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads, parses and validates the config file at `path` with the process environment, its
    /// endpoints of the kinds in `kinds`.
    pub fn load(path: &std::path::Path, kinds: &dyn EndpointKinds) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError::new(
                path.display().to_string(),
                format!("cannot read config file: {e}"),
            )])
        })?;
        let mut config = Self::from_toml_str(&text, std::env::vars(), kinds)?;
        config.origin = ConfigOrigin::File(path.to_path_buf());
        Ok(config)
    }
}

/// Deserializes the section `name` into `T`, reporting every unknown key and every bad value.
/// A bad value is reported, dropped (so its default applies) and the section read again, so one
/// mistake does not hide the next.
fn section<T: DeserializeOwned + Default>(
    table: &mut Table,
    name: &str,
    errors: &mut Vec<ConfigError>,
) -> T {
    let Some(value) = table.remove(name) else {
        return T::default();
    };
    typed(value, name, errors).unwrap_or_default()
}

/// Deserializes `value` (found at `key`) into `T`, reporting unknown keys and bad values;
/// `None` when a problem could not be dropped to retry.
pub(super) fn typed<T: DeserializeOwned>(
    mut value: Value,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    // Bounded: each round drops one bad key, and a section has only so many.
    for _ in 0..64 {
        let mut ignored = Vec::new();
        let mut on_ignored = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
        let result: Result<T, _> = serde_path_to_error::deserialize(
            serde_ignored::Deserializer::new(value.clone(), &mut on_ignored),
        );
        match result {
            Ok(parsed) => {
                // Only a complete pass has visited every key, so unknown keys come from it.
                for path in &ignored {
                    errors.push(ConfigError::new(format!("{key}.{path}"), "unknown key"));
                }
                return Some(parsed);
            }
            Err(e) => {
                let path = e.path().to_string();
                let full = if path == "." || path.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}.{path}")
                };
                let message = e.into_inner().to_string();
                let first_line = message.lines().next().unwrap_or_default().to_string();
                errors.push(ConfigError::new(full, first_line));
                if !remove_path(&mut value, &path) {
                    return None;
                }
            }
        }
    }
    None
}

/// Removes the key at a dotted `path` (array indices drop the whole array). Returns whether
/// something was removed.
fn remove_path(value: &mut Value, path: &str) -> bool {
    let segments: Vec<&str> = path
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .filter(|s| !s.is_empty())
        .collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        match current.get_mut(*segment) {
            Some(next) if next.is_table() => current = next,
            _ => return false,
        }
    }
    current
        .as_table_mut()
        .map(|t| t.remove(*last).is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [xmpp]
        domain = "gw.localhost"
        secret = "secret"
        [endpoints.echo]
        kind = "echo"
    "#;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml_str(text, Vec::new(), &crate::endpoint::KINDS)
    }

    fn keys(errors: ConfigErrors) -> Vec<String> {
        errors.0.into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn minimal_config_takes_defaults() {
        let config = load(MINIMAL).unwrap();
        assert_eq!(config.xmpp.port, 5347);
        assert_eq!(config.xmpp.domain.as_deref(), Some("gw.localhost"));
        assert_eq!(config.endpoints["echo"].kind, "echo");
    }

    #[test]
    fn every_problem_is_listed_with_its_key() {
        let text = r#"
            [xmpp]
            port = "many"
            sekret = "x"
            keepalive = "soon"
            [calls]
            max_calls = -1
            [endpoints.echo]
            kind = "echo"
            volume = 3
            [endpoints.bad]
            kind = "fax"
            [nonsense]
        "#;
        let keys = keys(load(text).unwrap_err());
        for expected in [
            "xmpp.port",
            "xmpp.sekret",
            "xmpp.keepalive",
            "calls.max_calls",
            "endpoints.echo.volume",
            "endpoints.bad.kind",
            "nonsense",
            "xmpp.domain",
            "xmpp.secret",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn callers_lists_are_checked_and_a_sound_device_defaults_to_local_users() {
        let text = format!(
            "{MINIMAL}[calls]\ncallers = [\"*\", \"bad jid@@\"]\nlocal_domains = [\"x y\"]\n\
             [endpoints.lobby]\nkind = \"sound-device\"\n\
             [endpoints.desk]\nkind = \"echo\"\ncallers = [\"@local\", 3]\n"
        );
        let keys = keys(load(&text).unwrap_err());
        assert_eq!(
            keys,
            [
                "endpoints.desk.callers",
                "calls.callers[1]",
                "calls.local_domains[0]"
            ]
        );
        let text = format!(
            "{MINIMAL}[endpoints.lobby]\nkind = \"sound-device\"\n\
             [endpoints.desk]\nkind = \"echo\"\ncallers = [\"partner.example\"]\n"
        );
        let config = load(&text).unwrap();
        let caller = |jid: &str| jid::FullJid::new(jid).unwrap();
        let local = config.local_domains();
        assert_eq!(local, ["localhost"]);
        let lobby = config.callers_of("lobby");
        assert!(lobby.allows(&caller("alice@localhost/a"), &local));
        assert!(!lobby.allows(&caller("mallory@evil.example/a"), &local));
        assert!(config
            .callers_of("echo")
            .allows(&caller("mallory@evil.example/a"), &local));
        let desk = config.callers_of("desk");
        assert!(desk.allows(&caller("bob@partner.example/a"), &local));
        assert!(!desk.allows(&caller("alice@localhost/a"), &local));
    }

    #[test]
    fn peer_driven_media_warnings_are_quiet_unless_asked_for() {
        let config = load(MINIMAL).unwrap();
        let filter = config.log.filter();
        assert!(filter.starts_with("info,"), "{filter}");
        assert!(filter.contains("webrtc_ice=error"), "{filter}");
        let mut log = config.log.clone();
        log.level = "info,webrtc_ice=debug".into();
        assert!(!log.filter().contains("webrtc_ice=error"));
        assert!(log.filter().contains("dtls=error"));
        assert!(log
            .filter()
            .parse::<tracing_subscriber::EnvFilter>()
            .is_ok());
    }

    #[test]
    fn syntax_error_names_the_line() {
        let errors = load("[xmpp]\nport = = 3\n").unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert_eq!(errors.0[0].key, "line 2");
    }

    #[test]
    fn errors_are_one_line_each() {
        let errors = load("[xmpp]\nport = \"x\"\n").unwrap_err();
        for error in &errors.0 {
            assert!(!error.to_string().contains('\n'), "{error}");
        }
    }
}
