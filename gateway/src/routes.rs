//! The route table: the virtual JIDs of a config as the router serves them (disco, caps,
//! presence), as the signalling core admits calls to them (available, who may call), and
//! whom the gateway may ring and who may run its admin commands. Built the same way at start
//! and on every reload.

use std::collections::{BTreeMap, HashMap};

use crate::config::{AdminConfig, Config, MailboxConfig, OutboundConfig};
use crate::jingle::VirtualJidPolicy;
use crate::xmpp::disco::VirtualJidInfo;

/// Everything the router routes by, from one config.
#[derive(Debug, Clone)]
pub struct RouteTable {
    /// The virtual JIDs by local part, as disco and presence show them.
    pub virtual_jids: BTreeMap<String, VirtualJidInfo>,
    /// The same virtual JIDs as the signalling core admits calls to them.
    pub admission: HashMap<String, VirtualJidPolicy>,
    /// Whom the gateway may ring for callers.
    pub outbound: OutboundConfig,
    /// Who may run the admin commands.
    pub admin: AdminConfig,
}

impl RouteTable {
    /// The routes of `config`, whose virtual JIDs live on `domain`; an error names the
    /// endpoint whose name makes no JID.
    pub fn from_config(config: &Config, domain: &str) -> Result<Self, String> {
        Ok(Self {
            virtual_jids: virtual_jids_of(config, domain)?,
            admission: admission_of(config),
            outbound: config.outbound.clone(),
            admin: config.admin.clone(),
        })
    }
}

/// The virtual JIDs of `config` on `domain`, as disco and presence show them.
fn virtual_jids_of(
    config: &Config,
    domain: &str,
) -> Result<BTreeMap<String, VirtualJidInfo>, String> {
    let mut virtual_jids = BTreeMap::new();
    for (name, endpoint) in &config.endpoints {
        let jid = jid::Jid::new(&format!("{name}@{domain}"))
            .map_err(|e| format!("endpoints.{name}: {e}"))?;
        let available = endpoint.settings.available();
        if !available {
            tracing::warn!(
                jid = %jid,
                kind = endpoint.kind,
                "endpoint kind not available in this version yet: calls to this JID are refused"
            );
        }
        let display = endpoint.name.clone().unwrap_or_else(|| name.clone());
        let mut info = VirtualJidInfo::new(jid, display, available);
        if endpoint.settings_as::<MailboxConfig>().is_some() {
            info = info.with_feature(crate::protocol::adhoc::NS_COMMANDS);
        }
        virtual_jids.insert(name.clone(), info);
    }
    Ok(virtual_jids)
}

/// Each virtual JID as the signalling core admits calls to it: whether its endpoint is
/// available, and who may call it.
fn admission_of(config: &Config) -> HashMap<String, VirtualJidPolicy> {
    config
        .endpoints
        .iter()
        .map(|(name, endpoint)| {
            let virtual_jid = VirtualJidPolicy {
                available: endpoint.settings.available(),
                callers: config.callers_of(name),
            };
            (name.clone(), virtual_jid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_is_a_route_in_both_shapes() {
        let config = Config::from_toml_str(
            "[xmpp]\ndomain = \"gw.test\"\nsecret = \"s\"\n[endpoints.echo]\nkind = \"echo\"\n\
             [endpoints.other]\nkind = \"echo\"\nname = \"Other\"\n",
            Vec::new(),
            &crate::endpoint::KINDS,
        )
        .unwrap();
        let routes = RouteTable::from_config(&config, "gw.test").unwrap();
        assert_eq!(
            routes.virtual_jids.keys().collect::<Vec<_>>(),
            ["echo", "other"]
        );
        assert_eq!(
            routes.virtual_jids["other"].jid.to_string(),
            "other@gw.test"
        );
        assert_eq!(routes.virtual_jids["other"].name, "Other");
        let mut admitted: Vec<_> = routes.admission.keys().collect();
        admitted.sort();
        assert_eq!(admitted, ["echo", "other"]);
        assert!(routes.admission["echo"].available);
    }
}
