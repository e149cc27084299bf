//! XEP-0353 Jingle Message Initiation: `<propose/>`, `<ringing/>`, `<proceed/>`, `<accept/>`,
//! `<reject/>`, `<retract/>` and `<finish/>` (xmpp-parsers lacks the last two and `<ringing/>`).

use minidom::Element;

use super::jingle::{ReasonElement, Sid, NS_JINGLE};
use super::rtp::NS_RTP;
use super::xml::{attr, build, required, ParseError};

/// `urn:xmpp:jingle-message:0`
pub const NS_JMI: &str = "urn:xmpp:jingle-message:0";

/// One JMI element carried in a `<message/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jmi {
    /// A call is proposed; `media` lists the RTP media of its descriptions (`audio`, `video`).
    Propose {
        /// Session id the session-initiate will use.
        sid: Sid,
        /// Media types proposed.
        media: Vec<String>,
    },
    /// The proposer withdrew the call.
    Retract {
        /// Session id.
        sid: Sid,
        /// Why, if said.
        reason: Option<ReasonElement>,
        /// Withdrawn because both parties proposed at once and this one lost (`<tie-break/>`).
        tie_break: bool,
    },
    /// One of the callee's devices accepted (sent to the callee's other devices).
    Accept {
        /// Session id.
        sid: Sid,
    },
    /// The callee proceeds: the session-initiate should go to the sender of this.
    Proceed {
        /// Session id.
        sid: Sid,
    },
    /// The callee declines.
    Reject {
        /// Session id.
        sid: Sid,
        /// Why, if said.
        reason: Option<ReasonElement>,
        /// Declined because both parties proposed at once and this one lost (`<tie-break/>`).
        tie_break: bool,
    },
    /// The callee is being alerted.
    Ringing {
        /// Session id.
        sid: Sid,
    },
    /// The session that followed the proposal has ended.
    Finish {
        /// Session id.
        sid: Sid,
        /// Why, if said.
        reason: Option<ReasonElement>,
    },
}

impl Jmi {
    /// The session id the element refers to.
    pub fn sid(&self) -> &Sid {
        match self {
            Self::Propose { sid, .. }
            | Self::Retract { sid, .. }
            | Self::Accept { sid }
            | Self::Proceed { sid }
            | Self::Reject { sid, .. }
            | Self::Ringing { sid }
            | Self::Finish { sid, .. } => sid,
        }
    }

    /// Finds and reads the JMI element among a message's payloads, if there is one.
    pub fn find(payloads: &[Element]) -> Option<Result<Self, ParseError>> {
        // Elements of a newer revision than ours are not ours to refuse: ignored.
        const KNOWN: [&str; 7] = [
            "propose", "retract", "accept", "proceed", "reject", "ringing", "finish",
        ];
        payloads
            .iter()
            .find(|p| p.has_ns(NS_JMI) && KNOWN.contains(&p.name()))
            .map(Self::parse)
    }

    /// Reads a JMI element.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        let name = match elem.name() {
            "propose" => "propose",
            "retract" => "retract",
            "accept" => "accept",
            "proceed" => "proceed",
            "reject" => "reject",
            "ringing" => "ringing",
            "finish" => "finish",
            _ => "jingle-message",
        };
        let sid = Sid(required(elem, name, "id")?.to_string());
        let reason = || {
            elem.get_child("reason", NS_JINGLE)
                .map(ReasonElement::parse)
        };
        let tie_break = elem.has_child("tie-break", NS_JMI);
        Ok(match elem.name() {
            "propose" => Self::Propose {
                sid,
                media: elem
                    .children()
                    .filter(|c| c.is("description", NS_RTP))
                    .filter_map(|c| c.attr("media").map(str::to_string))
                    .collect(),
            },
            "retract" => Self::Retract {
                sid,
                reason: reason(),
                tie_break,
            },
            "accept" => Self::Accept { sid },
            "proceed" => Self::Proceed { sid },
            "reject" => Self::Reject {
                sid,
                reason: reason(),
                tie_break,
            },
            "ringing" => Self::Ringing { sid },
            "finish" => Self::Finish {
                sid,
                reason: reason(),
            },
            _ => {
                return Err(ParseError::WrongElement {
                    expected: "propose",
                    namespace: NS_JMI,
                })
            }
        })
    }

    /// Writes the JMI element.
    pub fn to_element(&self) -> Element {
        let (name, reason, tie_break) = match self {
            Self::Propose { .. } => ("propose", None, false),
            Self::Retract {
                reason, tie_break, ..
            } => ("retract", reason.as_ref(), *tie_break),
            Self::Accept { .. } => ("accept", None, false),
            Self::Proceed { .. } => ("proceed", None, false),
            Self::Reject {
                reason, tie_break, ..
            } => ("reject", reason.as_ref(), *tie_break),
            Self::Ringing { .. } => ("ringing", None, false),
            Self::Finish { reason, .. } => ("finish", reason.as_ref(), false),
        };
        let mut b = attr!(build(name, NS_JMI), "id", self.sid().0.as_str());
        if let Self::Propose { media, .. } = self {
            b = b.append_all(
                media
                    .iter()
                    .map(|m| attr!(build("description", NS_RTP), "media", m.as_str()).build()),
            );
        }
        if let Some(reason) = reason {
            b = b.append(reason.to_element());
        }
        if tie_break {
            b = b.append(build("tie-break", NS_JMI).build());
        }
        b.build()
    }
}
