//! XEP-0166 `<jingle/>`: actions, contents, reasons, BUNDLE groups and session-info payloads.
//! Descriptions and transports the gateway does not speak are kept as their namespace only, so
//! the session can refuse them with the right reason.

use std::fmt;
use std::str::FromStr;

use jid::Jid;
use minidom::Element;

use super::ice_udp::{IceUdpTransport, NS_ICE_UDP};
use super::rtp::{RtpDescription, NS_RTP};
use super::xml::{attr, build, expect, optional_parsed, required, required_parsed, ParseError};

/// `urn:xmpp:jingle:1`
pub const NS_JINGLE: &str = "urn:xmpp:jingle:1";
/// `urn:xmpp:jingle:errors:1`
pub const NS_JINGLE_ERRORS: &str = "urn:xmpp:jingle:errors:1";
/// `urn:xmpp:jingle:apps:grouping:0` (XEP-0338)
pub const NS_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
/// `urn:xmpp:jingle:apps:rtp:info:1` (XEP-0167 session-info payloads)
pub const NS_RTP_INFO: &str = "urn:xmpp:jingle:apps:rtp:info:1";

/// A Jingle session id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid(pub String);

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }
        impl $name {
            /// The name used on the wire.
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $text,)* }
            }
        }
        impl FromStr for $name {
            type Err = ();
            fn from_str(s: &str) -> Result<Self, ()> {
                match s { $($text => Ok(Self::$variant),)* _ => Err(()) }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// A Jingle action.
    Action {
        /// Accept a content-add.
        ContentAccept => "content-accept",
        /// Add a content to a session.
        ContentAdd => "content-add",
        /// Change a content's senders.
        ContentModify => "content-modify",
        /// Reject a content-add.
        ContentReject => "content-reject",
        /// Remove a content.
        ContentRemove => "content-remove",
        /// Change a description.
        DescriptionInfo => "description-info",
        /// Security information.
        SecurityInfo => "security-info",
        /// Accept a session.
        SessionAccept => "session-accept",
        /// Informational message (ringing, hold, mute) or a ping when empty.
        SessionInfo => "session-info",
        /// Start a session.
        SessionInitiate => "session-initiate",
        /// End a session.
        SessionTerminate => "session-terminate",
        /// Accept a transport-replace.
        TransportAccept => "transport-accept",
        /// Transport information (trickled candidates, ICE restart).
        TransportInfo => "transport-info",
        /// Reject a transport-replace.
        TransportReject => "transport-reject",
        /// Replace a transport.
        TransportReplace => "transport-replace",
    }
);

string_enum!(
    /// Which party created a content.
    Creator {
        /// The session initiator.
        Initiator => "initiator",
        /// The session responder.
        Responder => "responder",
    }
);

string_enum!(
    /// Which parties send media in a content.
    Senders {
        /// Both parties.
        Both => "both",
        /// Only the initiator.
        Initiator => "initiator",
        /// Nobody.
        None => "none",
        /// Only the responder.
        Responder => "responder",
    }
);

string_enum!(
    /// XEP-0166 reason conditions.
    Reason {
        /// Another session replaces this one.
        AlternativeSession => "alternative-session",
        /// The party is busy.
        Busy => "busy",
        /// The session was cancelled.
        Cancel => "cancel",
        /// Connectivity was lost.
        ConnectivityError => "connectivity-error",
        /// The party declined.
        Decline => "decline",
        /// The session reached a time limit.
        Expired => "expired",
        /// The application failed.
        FailedApplication => "failed-application",
        /// The transport failed.
        FailedTransport => "failed-transport",
        /// Something else went wrong.
        GeneralError => "general-error",
        /// The party is going away.
        Gone => "gone",
        /// Parameters are incompatible.
        IncompatibleParameters => "incompatible-parameters",
        /// A media error occurred.
        MediaError => "media-error",
        /// A security error occurred.
        SecurityError => "security-error",
        /// Normal end.
        Success => "success",
        /// A request timed out.
        Timeout => "timeout",
        /// No application type is supported.
        UnsupportedApplications => "unsupported-applications",
        /// No transport is supported.
        UnsupportedTransports => "unsupported-transports",
    }
);

string_enum!(
    /// Jingle-specific error conditions (`urn:xmpp:jingle:errors:1`).
    JingleErrorCondition {
        /// The request came at the wrong point of the session.
        OutOfOrder => "out-of-order",
        /// Both parties initiated at once.
        TieBreak => "tie-break",
        /// No session with that id.
        UnknownSession => "unknown-session",
        /// The session-info payload is not supported.
        UnsupportedInfo => "unsupported-info",
    }
);

impl JingleErrorCondition {
    /// The `<condition xmlns='urn:xmpp:jingle:errors:1'/>` element for a stanza error.
    pub fn to_element(&self) -> Element {
        build(self.as_str(), NS_JINGLE_ERRORS).build()
    }
}

/// A `<reason/>`: a condition and an optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonElement {
    /// The condition.
    pub reason: Reason,
    /// Optional text.
    pub text: Option<String>,
}

impl ReasonElement {
    /// Reads a `<reason/>` (also found inside XEP-0353 `<finish/>` and `<reject/>`); an unknown
    /// condition reads as `general-error`, as XEP-0166 asks.
    pub fn parse(elem: &Element) -> Self {
        let ns = NS_JINGLE;
        let mut reason = Reason::GeneralError;
        let mut text = None;
        for child in elem.children() {
            if child.is("text", ns) {
                text = Some(child.text());
            } else if child.has_ns(ns) {
                if let Ok(r) = child.name().parse() {
                    reason = r;
                }
            }
        }
        Self { reason, text }
    }

    /// Writes a `<reason/>`.
    pub fn to_element(&self) -> Element {
        let mut b =
            build("reason", NS_JINGLE).append(build(self.reason.as_str(), NS_JINGLE).build());
        if let Some(text) = &self.text {
            b = b.append(build("text", NS_JINGLE).append(text.as_str()).build());
        }
        b.build()
    }
}

/// What a content describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Description {
    /// An RTP session (XEP-0167).
    Rtp(RtpDescription),
    /// An application the gateway does not speak, by namespace.
    Other(String),
}

/// How a content is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// ICE-UDP (XEP-0176).
    IceUdp(IceUdpTransport),
    /// A transport the gateway does not speak, by namespace.
    Other(String),
}

/// A `<content/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Who created it.
    pub creator: Creator,
    /// Its name, unique in the session.
    pub name: String,
    /// Who sends media.
    pub senders: Senders,
    /// The application description.
    pub description: Option<Description>,
    /// The transport.
    pub transport: Option<Transport>,
}

impl Content {
    /// The RTP description, if this content has one.
    pub fn rtp(&self) -> Option<&RtpDescription> {
        match &self.description {
            Some(Description::Rtp(rtp)) => Some(rtp),
            _ => None,
        }
    }

    /// The ICE-UDP transport, if this content has one.
    pub fn ice_udp(&self) -> Option<&IceUdpTransport> {
        match &self.transport {
            Some(Transport::IceUdp(t)) => Some(t),
            _ => None,
        }
    }

    fn parse(elem: &Element) -> Result<Self, ParseError> {
        let mut content = Self {
            creator: required_parsed(elem, "content", "creator")?,
            name: required(elem, "content", "name")?.to_string(),
            senders: optional_parsed(elem, "content", "senders")?.unwrap_or(Senders::Both),
            description: None,
            transport: None,
        };
        for child in elem.children() {
            match child.name() {
                "description" if child.has_ns(NS_RTP) => {
                    content.description = Some(Description::Rtp(RtpDescription::parse(child)?));
                }
                "description" => content.description = Some(Description::Other(child.ns())),
                "transport" if child.has_ns(NS_ICE_UDP) => {
                    content.transport = Some(Transport::IceUdp(IceUdpTransport::parse(child)?));
                }
                "transport" => content.transport = Some(Transport::Other(child.ns())),
                _ => {}
            }
        }
        Ok(content)
    }

    fn to_element(&self) -> Element {
        let mut b = build("content", NS_JINGLE);
        b = attr!(b, "creator", self.creator.as_str());
        b = attr!(b, "name", self.name.as_str());
        b = attr!(b, "senders", self.senders.as_str());
        if let Some(Description::Rtp(rtp)) = &self.description {
            b = b.append(rtp.to_element());
        }
        if let Some(Transport::IceUdp(transport)) = &self.transport {
            b = b.append(transport.to_element());
        }
        b.build()
    }
}

/// A XEP-0338 `<group/>` (BUNDLE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `BUNDLE`, usually.
    pub semantics: String,
    /// Names of the grouped contents.
    pub contents: Vec<String>,
}

/// A session-info payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionInfo {
    /// The callee is being alerted.
    Ringing,
    /// The call is active again.
    Active,
    /// The sender put the call on hold.
    Hold,
    /// The sender resumed the call.
    Unhold,
    /// The sender muted.
    Mute,
    /// The sender unmuted.
    Unmute,
    /// Something else, by element name and namespace.
    Other(String, String),
}

/// A `<jingle/>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jingle {
    /// The action.
    pub action: Action,
    /// The session id.
    pub sid: Sid,
    /// `initiator` attribute (often absent on session-initiate; the IQ's `from` applies).
    pub initiator: Option<Jid>,
    /// `responder` attribute.
    pub responder: Option<Jid>,
    /// Contents.
    pub contents: Vec<Content>,
    /// Reason (session-terminate, content-reject).
    pub reason: Option<ReasonElement>,
    /// BUNDLE group.
    pub group: Option<Group>,
    /// session-info payload; `None` in a session-info is a ping.
    pub info: Option<SessionInfo>,
}

impl Jingle {
    /// A `<jingle/>` with `action` and `sid` and nothing else.
    pub fn new(action: Action, sid: Sid) -> Self {
        Self {
            action,
            sid,
            initiator: None,
            responder: None,
            contents: Vec::new(),
            reason: None,
            group: None,
            info: None,
        }
    }

    /// Reads a `<jingle/>`.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        expect(elem, "jingle", NS_JINGLE)?;
        let mut jingle = Self::new(
            required_parsed(elem, "jingle", "action")?,
            Sid(required(elem, "jingle", "sid")?.to_string()),
        );
        jingle.initiator = optional_parsed(elem, "jingle", "initiator")?;
        jingle.responder = optional_parsed(elem, "jingle", "responder")?;
        for child in elem.children() {
            if child.is("content", NS_JINGLE) {
                jingle.contents.push(Content::parse(child)?);
            } else if child.is("reason", NS_JINGLE) {
                jingle.reason = Some(ReasonElement::parse(child));
            } else if child.is("group", NS_GROUPING) {
                jingle.group = Some(Group {
                    semantics: required(child, "group", "semantics")?.to_string(),
                    contents: child
                        .children()
                        .filter(|c| c.is("content", NS_GROUPING))
                        .filter_map(|c| c.attr("name").map(str::to_string))
                        .collect(),
                });
            } else if jingle.action == Action::SessionInfo {
                jingle.info = Some(session_info(child));
            }
        }
        Ok(jingle)
    }

    /// Writes a `<jingle/>`.
    pub fn to_element(&self) -> Element {
        let mut b = build("jingle", NS_JINGLE);
        b = attr!(b, "action", self.action.as_str());
        b = attr!(b, "sid", self.sid.0.as_str());
        if let Some(initiator) = &self.initiator {
            b = attr!(b, "initiator", initiator.to_string());
        }
        if let Some(responder) = &self.responder {
            b = attr!(b, "responder", responder.to_string());
        }
        b = b.append_all(self.contents.iter().map(Content::to_element));
        if let Some(reason) = &self.reason {
            b = b.append(reason.to_element());
        }
        if let Some(group) = &self.group {
            let g = attr!(
                build("group", NS_GROUPING),
                "semantics",
                group.semantics.as_str()
            );
            b = b.append(
                g.append_all(group.contents.iter().map(|name| {
                    attr!(build("content", NS_GROUPING), "name", name.as_str()).build()
                }))
                .build(),
            );
        }
        if let Some(info) = &self.info {
            let (name, ns) = match info {
                SessionInfo::Ringing => ("ringing", NS_RTP_INFO),
                SessionInfo::Active => ("active", NS_RTP_INFO),
                SessionInfo::Hold => ("hold", NS_RTP_INFO),
                SessionInfo::Unhold => ("unhold", NS_RTP_INFO),
                SessionInfo::Mute => ("mute", NS_RTP_INFO),
                SessionInfo::Unmute => ("unmute", NS_RTP_INFO),
                SessionInfo::Other(name, ns) => (name.as_str(), ns.as_str()),
            };
            b = b.append(build(name, ns).build());
        }
        b.build()
    }
}

fn session_info(elem: &Element) -> SessionInfo {
    if !elem.has_ns(NS_RTP_INFO) {
        return SessionInfo::Other(elem.name().to_string(), elem.ns());
    }
    match elem.name() {
        "ringing" => SessionInfo::Ringing,
        "active" => SessionInfo::Active,
        "hold" => SessionInfo::Hold,
        "unhold" => SessionInfo::Unhold,
        "mute" => SessionInfo::Mute,
        "unmute" => SessionInfo::Unmute,
        other => SessionInfo::Other(other.to_string(), elem.ns()),
    }
}
