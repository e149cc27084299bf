//! What clients need to see a callable contact: XEP-0030 disco#info and disco#items, and the
//! XEP-0115 caps that summarise them in presence. Features are exactly what is implemented.

use jid::Jid;
use xmpp_parsers::caps::{compute_disco, hash_caps, Caps};
use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity, Item};
use xmpp_parsers::hashes::Algo;

/// The caps node of the gateway's presence.
pub const CAPS_NODE: &str = "https://jingle-gateway.invalid/caps";

/// Features of the component domain.
const DOMAIN_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/commands",
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "jabber:iq:version",
    "urn:xmpp:ping",
];

/// Features of a virtual JID that takes calls.
const CALLEE_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "jabber:iq:version",
    "urn:ietf:rfc:5888",
    "urn:xmpp:jingle-message:0",
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle:apps:grouping:0",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:ping",
    "urn:xmpp:receipts",
];

/// Features of a virtual JID whose endpoint is not available yet: no Jingle, so clients show
/// no call button.
const UNAVAILABLE_FEATURES: &[&str] = &[
    "http://jabber.org/protocol/caps",
    "http://jabber.org/protocol/disco#info",
    "jabber:iq:version",
    "urn:xmpp:ping",
];

/// A virtual JID as disco and presence show it.
#[derive(Debug, Clone)]
pub struct VirtualJidInfo {
    /// The bare virtual JID.
    pub jid: Jid,
    /// Name shown to users.
    pub name: String,
    /// Whether its endpoint takes calls.
    pub available: bool,
    /// Its disco#info.
    pub info: DiscoInfoResult,
    /// Its caps, matching `info`.
    pub caps: Caps,
}

impl VirtualJidInfo {
    /// Describes the virtual JID `jid`.
    pub fn new(jid: Jid, name: String, available: bool) -> Self {
        let features = if available {
            CALLEE_FEATURES
        } else {
            UNAVAILABLE_FEATURES
        };
        let info = disco_info(
            Identity::new("client", "phone", "en", name.as_str()),
            features,
        );
        let caps = caps_for(&info);
        Self {
            jid,
            name,
            available,
            info,
            caps,
        }
    }

    /// Adds a feature (and updates the caps).
    pub fn with_feature(mut self, feature: &str) -> Self {
        self.info.features.insert(feature.to_string());
        self.caps = caps_for(&self.info);
        self
    }

    /// disco#info, answering a query for `node` (a caps node query gets the same features).
    pub fn info_for(&self, node: Option<String>) -> DiscoInfoResult {
        DiscoInfoResult {
            node,
            ..self.info.clone()
        }
    }
}

/// The component domain's disco#info.
pub fn domain_info(name: &str) -> DiscoInfoResult {
    disco_info(
        Identity::new("gateway", "xmpp", "en", name),
        DOMAIN_FEATURES,
    )
}

/// The component domain's disco#items: the virtual JIDs.
pub fn domain_items<'a>(
    virtual_jids: impl Iterator<Item = &'a VirtualJidInfo>,
) -> DiscoItemsResult {
    DiscoItemsResult {
        node: None,
        items: virtual_jids
            .map(|c| Item {
                jid: c.jid.clone(),
                node: None,
                name: Some(c.name.clone()),
            })
            .collect(),
        rsm: None,
    }
}

fn disco_info(identity: Identity, features: &[&str]) -> DiscoInfoResult {
    DiscoInfoResult {
        node: None,
        identities: vec![identity],
        features: features.iter().map(|f| f.to_string()).collect(),
        extensions: Vec::new(),
    }
}

fn caps_for(info: &DiscoInfoResult) -> Caps {
    let data = compute_disco(info);
    match hash_caps(&data, Algo::Sha_1) {
        Ok(hash) => Caps::new(CAPS_NODE, hash),
        // SHA-1 is always known to xmpp-parsers; an empty ver would only disable caching.
        Err(_) => Caps {
            ext: None,
            node: CAPS_NODE.into(),
            hash: Algo::Sha_1,
            ver: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_match_disco_and_never_claim_video() {
        let virtual_jid =
            VirtualJidInfo::new(Jid::new("echo@gw.localhost").unwrap(), "Echo".into(), true);
        let recomputed = hash_caps(&compute_disco(&virtual_jid.info), Algo::Sha_1).unwrap();
        assert_eq!(virtual_jid.caps.ver, recomputed.hash);
        assert!(virtual_jid
            .info
            .features
            .contains("urn:xmpp:jingle:apps:rtp:audio"));
        assert!(!virtual_jid
            .info
            .features
            .iter()
            .any(|f| f.contains("video")));

        let unavailable =
            VirtualJidInfo::new(Jid::new("vm@gw.localhost").unwrap(), "VM".into(), false);
        assert!(!unavailable.info.features.contains("urn:xmpp:jingle:1"));
        assert_ne!(unavailable.caps.ver, virtual_jid.caps.ver);
    }
}
