//! `[admin]`: who administers the gateway from their XMPP client (XEP-0050 ad-hoc commands on
//! the component domain).

use jid::BareJid;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[admin]`: the gateway's administrators.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Bare JIDs (`"admin@example.org"`) that see and may run the admin commands on the
    /// component domain: calls in progress, hang one up, reload the config, mailboxes. Default
    /// none: nobody.
    pub jids: Vec<String>,
}

impl AdminConfig {
    /// Whether `requester` (a bare JID as the server gives it: normalised) is an
    /// administrator.
    pub fn is_admin(&self, requester: &str) -> bool {
        self.jids
            .iter()
            .any(|jid| BareJid::new(jid).is_ok_and(|admin| admin.as_str() == requester))
    }

    /// Every entry that is not a bare JID, each naming its key.
    pub(super) fn validate(&self) -> Vec<ConfigError> {
        self.jids
            .iter()
            .enumerate()
            .filter_map(|(index, jid)| {
                let problem = match BareJid::new(jid) {
                    Ok(bare) if bare.node().is_none() => "names a domain, not a user",
                    Ok(_) => return None,
                    Err(_) => "is not a JID",
                };
                Some(ConfigError::new(
                    format!("admin.jids[{index}]"),
                    format!("`{jid}` {problem} (expected user@domain)"),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_are_bare_jids() {
        let admin = AdminConfig {
            jids: vec![
                "admin@example.org".into(),
                "example.org".into(),
                "a@example.org/phone".into(),
                "@@".into(),
            ],
        };
        let problems: Vec<String> = admin.validate().iter().map(|e| e.to_string()).collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("admin.jids[1]"), "{problems:?}");
        assert!(problems[1].starts_with("admin.jids[2]"), "{problems:?}");
        assert!(problems[2].starts_with("admin.jids[3]"), "{problems:?}");
        assert!(admin.is_admin("admin@example.org"));
        assert!(!admin.is_admin("other@example.org"));
        // Written as people write them; compared as the server normalises them.
        let admin = AdminConfig {
            jids: vec!["Admin@Example.ORG".into()],
        };
        assert!(admin.validate().is_empty());
        assert!(admin.is_admin("admin@example.org"));
    }
}
