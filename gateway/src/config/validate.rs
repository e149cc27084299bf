//! Checks that need more than types: required keys, JID syntax, limits that fit together.

use jid::BareJid;

use super::error::ConfigError;
use super::schema::Config;

/// Problems with the `callers` list at `key`, each naming its entry.
fn validate_callers(key: &str, entries: &[String]) -> Vec<ConfigError> {
    match super::CallerList::parse(entries) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .into_iter()
            .map(|(index, message)| ConfigError::new(format!("{key}[{index}]"), message))
            .collect(),
    }
}

/// Every semantic problem in `config`, each naming its key.
pub fn validate(config: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let xmpp = &config.xmpp;
    let domain = match xmpp.domain.as_deref() {
        None => {
            errors.push(ConfigError::new(
                "xmpp.domain",
                "is required: the component domain, e.g. \"gw.example.org\"",
            ));
            None
        }
        Some(domain) => match BareJid::new(domain) {
            Ok(jid) if jid.node().is_none() => Some(domain),
            _ => {
                errors.push(ConfigError::new(
                    "xmpp.domain",
                    format!("`{domain}` is not a domain name"),
                ));
                None
            }
        },
    };
    match xmpp.secret.as_deref() {
        None => errors.push(ConfigError::new(
            "xmpp.secret",
            "is required: the component secret configured on the XMPP server",
        )),
        Some("") => errors.push(ConfigError::new("xmpp.secret", "must not be empty")),
        Some(_) => {}
    }
    if xmpp.host.trim().is_empty() {
        errors.push(ConfigError::new("xmpp.host", "must not be empty"));
    }
    if xmpp.port == 0 {
        errors.push(ConfigError::new(
            "xmpp.port",
            "must be a port number from 1 to 65535",
        ));
    }
    if xmpp.reconnect_min.0.is_zero() {
        errors.push(ConfigError::new(
            "xmpp.reconnect_min",
            "must be longer than zero",
        ));
    }
    if xmpp.reconnect_max < xmpp.reconnect_min {
        errors.push(ConfigError::new(
            "xmpp.reconnect_max",
            format!(
                "must be at least xmpp.reconnect_min ({})",
                xmpp.reconnect_min
            ),
        ));
    }
    if xmpp.keepalive.0.as_secs() < 5 {
        errors.push(ConfigError::new("xmpp.keepalive", "must be at least 5s"));
    }

    let calls = &config.calls;
    if calls.max_calls == 0 {
        errors.push(ConfigError::new("calls.max_calls", "must be at least 1"));
    }
    if calls.max_calls_per_jid == 0 {
        errors.push(ConfigError::new(
            "calls.max_calls_per_jid",
            "must be at least 1",
        ));
    }
    for (key, value) in [
        ("calls.max_calls_per_caller", calls.max_calls_per_caller),
        ("calls.max_calls_per_domain", calls.max_calls_per_domain),
        (
            "calls.calls_per_caller_per_minute",
            calls.calls_per_caller_per_minute,
        ),
        (
            "calls.calls_per_domain_per_minute",
            calls.calls_per_domain_per_minute,
        ),
    ] {
        if value == 0 {
            errors.push(ConfigError::new(key, "must be at least 1"));
        }
    }
    errors.extend(validate_callers("calls.callers", &calls.callers));
    for (index, domain) in calls.local_domains.iter().enumerate() {
        if !BareJid::new(domain).is_ok_and(|jid| jid.node().is_none()) {
            errors.push(ConfigError::new(
                format!("calls.local_domains[{index}]"),
                format!("`{domain}` is not a domain name"),
            ));
        }
    }
    for (key, value) in [
        ("calls.ring_timeout", calls.ring_timeout),
        ("calls.answer_timeout", calls.answer_timeout),
        ("calls.max_duration", calls.max_duration),
    ] {
        if value.0.is_zero() {
            errors.push(ConfigError::new(key, "must be longer than zero"));
        }
    }

    errors.extend(validate_media(&config.media));
    errors.extend(config.admin.validate());

    if config.storage.data_dir.as_os_str().is_empty() {
        errors.push(ConfigError::new("storage.data_dir", "must not be empty"));
    }
    if let Err(e) = config.log.level.parse::<tracing_subscriber::EnvFilter>() {
        errors.push(ConfigError::new(
            "log.level",
            format!("not a log filter: {e}"),
        ));
    }

    if config.endpoints.is_empty() {
        errors.push(ConfigError::new(
            "endpoints",
            "no virtual JIDs: add at least one [endpoints.<name>] table with a `kind`",
        ));
    }
    let mut dial_targets = Vec::new();
    for (name, endpoint) in &config.endpoints {
        let key = format!("endpoints.{name}");
        if let Some(callers) = &endpoint.callers {
            errors.extend(validate_callers(&format!("{key}.callers"), callers));
        }
        errors.extend(endpoint.settings.validate(&key, config));
        dial_targets.extend(endpoint.settings.dial_targets(&key));
    }
    errors.extend(config.outbound.validate(&dial_targets));
    let has_mailboxes = config
        .endpoints
        .values()
        .any(|e| e.settings_as::<crate::config::MailboxConfig>().is_some());
    errors.extend(super::voicemail::validate_delivery(
        &config.voicemail,
        &config.http,
        has_mailboxes,
    ));
    if config.prompts.max_length.0.is_zero() {
        errors.push(ConfigError::new(
            "prompts.max_length",
            "must be longer than zero",
        ));
    }
    for name in config.endpoints.keys() {
        let valid = match domain {
            Some(domain) => BareJid::new(&format!("{name}@{domain}"))
                .map(|jid| jid.node().map(|n| n.as_str()) == Some(name.as_str()))
                .unwrap_or(false),
            None => BareJid::new(&format!("{name}@example.org")).is_ok(),
        };
        if !valid {
            errors.push(ConfigError::new(
                format!("endpoints.{name}"),
                format!("`{name}` cannot be the local part of a JID (use lower case, no spaces, @, / or :)"),
            ));
        }
    }
    errors
}

/// Parses `media.port_range` (`"20000-20999"`).
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let (low, high) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not a range such as \"20000-20999\""))?;
    let low: u16 = low
        .trim()
        .parse()
        .map_err(|_| format!("`{low}` is not a port"))?;
    let high: u16 = high
        .trim()
        .parse()
        .map_err(|_| format!("`{high}` is not a port"))?;
    if low == 0 || high < low {
        return Err(format!(
            "`{text}` must go from a lower to a higher port, both above 0"
        ));
    }
    Ok((low, high))
}

fn validate_media(media: &crate::config::MediaConfig) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Some(range) = &media.port_range {
        if let Err(e) = parse_port_range(range) {
            errors.push(ConfigError::new("media.port_range", e));
        }
    }
    for (i, server) in media.stun_servers.iter().enumerate() {
        let valid = server
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            errors.push(ConfigError::new(
                format!("media.stun_servers[{i}]"),
                format!("`{server}` is not host:port"),
            ));
        }
    }
    for (i, turn) in media.turn_servers.iter().enumerate() {
        if !turn.url.starts_with("turn:") {
            errors.push(ConfigError::new(
                format!("media.turn_servers[{i}].url"),
                format!(
                    "`{}` is not a turn: URL such as \"turn:turn.example.org:3478\"",
                    turn.url
                ),
            ));
        }
    }
    if media.max_remote_candidates == 0 {
        errors.push(ConfigError::new(
            "media.max_remote_candidates",
            "must be at least 1",
        ));
    }
    if media.ice_timeout.0.as_secs() < 2 {
        errors.push(ConfigError::new("media.ice_timeout", "must be at least 2s"));
    }
    if media.consent_timeout.0.as_secs() < 10 {
        errors.push(ConfigError::new(
            "media.consent_timeout",
            "must be at least 10s",
        ));
    }
    if let Some(path) = &media.certificate {
        if !path.is_file() {
            errors.push(ConfigError::new(
                "media.certificate",
                format!("{} is not a readable file", path.display()),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn errors_for(text: &str) -> Vec<String> {
        match Config::from_toml_str(text, Vec::new(), &crate::endpoint::KINDS) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.into_iter().map(|e| e.key).collect(),
        }
    }

    #[test]
    fn required_and_malformed_values() {
        let keys = errors_for(
            r#"
            [xmpp]
            domain = "not a domain@@"
            secret = ""
            port = 0
            reconnect_min = "10s"
            reconnect_max = "1s"
            [calls]
            max_calls = 0
            ring_timeout = "0s"
            [log]
            level = "chatty=[["
            [endpoints."Has Space"]
            kind = "echo"
            "#,
        );
        for expected in [
            "xmpp.domain",
            "xmpp.secret",
            "xmpp.port",
            "xmpp.reconnect_max",
            "calls.max_calls",
            "calls.ring_timeout",
            "log.level",
            "endpoints.Has Space",
        ] {
            assert!(
                keys.contains(&expected.to_string()),
                "{expected} missing from {keys:?}"
            );
        }
    }

    #[test]
    fn media_mistakes_name_their_key() {
        let keys = errors_for(
            r#"
            [xmpp]
            domain = "gw.localhost"
            secret = "s"
            [media]
            port_range = "9-3"
            stun_servers = ["nohost"]
            turn_servers = [{ url = "http://x", username = "u", password = "p" }]
            consent_timeout = "1s"
            certificate = "/nonexistent/cert.pem"
            [endpoints.echo]
            kind = "echo"
            "#,
        );
        assert_eq!(
            keys,
            [
                "media.port_range",
                "media.stun_servers[0]",
                "media.turn_servers[0].url",
                "media.consent_timeout",
                "media.certificate"
            ]
        );
        assert_eq!(super::parse_port_range("20000-20999"), Ok((20000, 20999)));
    }

    #[test]
    fn no_endpoints_is_a_problem() {
        let keys = errors_for("[xmpp]\ndomain = \"gw.localhost\"\nsecret = \"s\"\n");
        assert_eq!(keys, ["endpoints"]);
    }
}
