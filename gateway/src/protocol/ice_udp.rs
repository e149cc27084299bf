//! XEP-0176 ICE-UDP transport with XEP-0320 DTLS fingerprints, read tolerantly: candidates
//! without `generation` (browser trickle), several fingerprints, `<gathering-complete/>` and
//! other unknown children are accepted. A candidate that cannot be used (say, an mDNS host name
//! instead of an address) is skipped rather than failing the whole stanza.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use minidom::Element;

use super::xml::{attr, build, expect, optional_parsed, required, required_parsed, ParseError};

/// `urn:xmpp:jingle:transports:ice-udp:1`
pub const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
/// `urn:xmpp:jingle:apps:dtls:0`
pub const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";

/// An ICE-UDP `<transport/>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceUdpTransport {
    /// ICE username fragment.
    pub ufrag: Option<String>,
    /// ICE password.
    pub pwd: Option<String>,
    /// Candidates that could be read.
    pub candidates: Vec<Candidate>,
    /// Candidates skipped because they could not be read.
    pub skipped_candidates: usize,
    /// DTLS certificate fingerprints.
    pub fingerprints: Vec<Fingerprint>,
}

/// Whether `ufrag` and `pwd` follow RFC 8839: `ice-char` (letters, digits, `+`, `/`), a ufrag
/// of 4 to 256 characters and a password of 22 to 256.
pub fn credentials_valid(ufrag: &str, pwd: &str) -> bool {
    let ice_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    (4..=256).contains(&ufrag.len())
        && (22..=256).contains(&pwd.len())
        && ice_chars(ufrag)
        && ice_chars(pwd)
}

/// ICE candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    /// A local interface address.
    Host,
    /// An address learned from a STUN server.
    ServerReflexive,
    /// An address learned from a connectivity check.
    PeerReflexive,
    /// A TURN relay address.
    Relay,
}

impl CandidateType {
    /// Every type, in the order of their discriminants.
    pub const ALL: [CandidateType; 4] = [
        Self::Host,
        Self::ServerReflexive,
        Self::PeerReflexive,
        Self::Relay,
    ];

    /// The name used in Jingle and SDP.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::ServerReflexive => "srflx",
            Self::PeerReflexive => "prflx",
            Self::Relay => "relay",
        }
    }
}

impl FromStr for CandidateType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "host" => Ok(Self::Host),
            "srflx" => Ok(Self::ServerReflexive),
            "prflx" => Ok(Self::PeerReflexive),
            "relay" => Ok(Self::Relay),
            _ => Err(()),
        }
    }
}

/// One ICE `<candidate/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Component: 1 for RTP (2 for RTCP without rtcp-mux).
    pub component: u8,
    /// ICE foundation.
    pub foundation: String,
    /// Generation (0 when absent).
    pub generation: u8,
    /// Candidate id (required by XEP-0176, often absent in practice).
    pub id: Option<String>,
    /// Address.
    pub ip: IpAddr,
    /// Port.
    pub port: u16,
    /// ICE priority.
    pub priority: u32,
    /// `udp` or `tcp`.
    pub protocol: String,
    /// Candidate type.
    pub candidate_type: CandidateType,
    /// Related address (server-reflexive and relay candidates).
    pub rel_addr: Option<IpAddr>,
    /// Related port.
    pub rel_port: Option<u16>,
    /// Network index.
    pub network: Option<u8>,
}

/// DTLS role, XEP-0320 `setup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Sends the DTLS ClientHello.
    Active,
    /// Waits for the ClientHello.
    Passive,
    /// Either (only valid in an offer).
    Actpass,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Passive => "passive",
            Self::Actpass => "actpass",
        }
    }
}

impl FromStr for Setup {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "active" => Ok(Self::Active),
            "passive" => Ok(Self::Passive),
            "actpass" => Ok(Self::Actpass),
            _ => Err(()),
        }
    }
}

/// A DTLS certificate `<fingerprint/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name (`sha-256`).
    pub hash: String,
    /// DTLS role the sender takes.
    pub setup: Option<Setup>,
    /// The fingerprint as written: colon-separated hex bytes.
    pub value: String,
}

impl Fingerprint {
    /// The fingerprint's bytes, if `value` is well-formed colon-separated hex.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.value
            .trim()
            .split(':')
            .map(|byte| {
                if byte.len() == 2 {
                    u8::from_str_radix(byte, 16).ok()
                } else {
                    None
                }
            })
            .collect()
    }

    /// Formats `bytes` as `AA:BB:...`.
    pub fn format_hex(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len() * 3);
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                out.push(':');
            }
            out.push_str(&format!("{b:02X}"));
        }
        out
    }
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}:{}",
            self.candidate_type.as_str(),
            self.protocol,
            self.ip,
            self.port
        )
    }
}

impl Candidate {
    /// Reads a `<candidate/>`.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        const C: &str = "candidate";
        Ok(Self {
            component: required_parsed(elem, C, "component")?,
            foundation: required(elem, C, "foundation")?.to_string(),
            generation: optional_parsed(elem, C, "generation")?.unwrap_or(0),
            id: elem.attr("id").map(str::to_string),
            ip: required_parsed(elem, C, "ip")?,
            port: required_parsed(elem, C, "port")?,
            priority: required_parsed(elem, C, "priority")?,
            protocol: required(elem, C, "protocol")?.to_ascii_lowercase(),
            candidate_type: required_parsed(elem, C, "type")?,
            rel_addr: optional_parsed(elem, C, "rel-addr")?,
            rel_port: optional_parsed(elem, C, "rel-port")?,
            network: optional_parsed(elem, C, "network")?,
        })
    }

    /// Writes a `<candidate/>`.
    pub fn to_element(&self) -> Element {
        let mut b = build("candidate", NS_ICE_UDP);
        b = attr!(b, "component", self.component);
        b = attr!(b, "foundation", self.foundation.as_str());
        b = attr!(b, "generation", self.generation);
        if let Some(id) = &self.id {
            b = attr!(b, "id", id.as_str());
        }
        b = attr!(b, "ip", self.ip.to_string());
        b = attr!(b, "port", self.port);
        b = attr!(b, "priority", self.priority);
        b = attr!(b, "protocol", self.protocol.as_str());
        b = attr!(b, "type", self.candidate_type.as_str());
        if let Some(rel_addr) = self.rel_addr {
            b = attr!(b, "rel-addr", rel_addr.to_string());
        }
        if let Some(rel_port) = self.rel_port {
            b = attr!(b, "rel-port", rel_port);
        }
        if let Some(network) = self.network {
            b = attr!(b, "network", network);
        }
        b.build()
    }
}

impl IceUdpTransport {
    /// Reads an ICE-UDP `<transport/>`.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        expect(elem, "transport", NS_ICE_UDP)?;
        let mut transport = Self {
            ufrag: elem.attr("ufrag").map(str::to_string),
            pwd: elem.attr("pwd").map(str::to_string),
            ..Self::default()
        };
        for child in elem.children() {
            if child.is("candidate", NS_ICE_UDP) {
                match Candidate::parse(child) {
                    Ok(candidate) => transport.candidates.push(candidate),
                    Err(e) => {
                        tracing::debug!(error = %e, "skipping unusable ICE candidate");
                        transport.skipped_candidates += 1;
                    }
                }
            } else if child.is("fingerprint", NS_DTLS) {
                transport.fingerprints.push(Fingerprint {
                    hash: required(child, "fingerprint", "hash")?.to_ascii_lowercase(),
                    setup: optional_parsed(child, "fingerprint", "setup")?,
                    value: child.text().trim().to_string(),
                });
            }
            // <gathering-complete/>, <remote-candidate/> and others: nothing to do.
        }
        Ok(transport)
    }

    /// Writes an ICE-UDP `<transport/>`.
    pub fn to_element(&self) -> Element {
        let mut b = build("transport", NS_ICE_UDP);
        if let Some(ufrag) = &self.ufrag {
            b = attr!(b, "ufrag", ufrag.as_str());
        }
        if let Some(pwd) = &self.pwd {
            b = attr!(b, "pwd", pwd.as_str());
        }
        b = b.append_all(self.fingerprints.iter().map(|f| {
            let fb = attr!(build("fingerprint", NS_DTLS), "hash", f.hash.as_str());
            let fb = match f.setup {
                Some(setup) => attr!(fb, "setup", setup.as_str()),
                None => fb,
            };
            fb.append(f.value.as_str()).build()
        }));
        b.append_all(self.candidates.iter().map(Candidate::to_element))
            .build()
    }

    /// The first fingerprint using `hash`.
    pub fn fingerprint(&self, hash: &str) -> Option<&Fingerprint> {
        self.fingerprints.iter().find(|f| f.hash == hash)
    }
}
