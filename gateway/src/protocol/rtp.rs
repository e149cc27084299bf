//! XEP-0167 RTP description (`urn:xmpp:jingle:apps:rtp:1`), read tolerantly: payload-type
//! parameters without a value (Chromium's RED) and unknown children are accepted.

use minidom::Element;

use super::xml::{attr, build, optional_parsed, required, required_parsed, ParseError};

/// `urn:xmpp:jingle:apps:rtp:1`
pub const NS_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
/// `urn:xmpp:jingle:apps:rtp:ssma:0` (XEP-0339 source-specific media attributes)
pub const NS_SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";

/// An RTP `<description/>`: the media type and the payload types on offer or chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpDescription {
    /// `audio`, `video`, ...
    pub media: String,
    /// The sender's SSRC, when given.
    pub ssrc: Option<u32>,
    /// Payload types in order of preference.
    pub payload_types: Vec<PayloadType>,
    /// `<rtcp-mux/>`: RTP and RTCP share one transport.
    pub rtcp_mux: bool,
    /// XEP-0339 `<source/>` elements.
    pub sources: Vec<Source>,
}

/// One `<payload-type/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    /// RTP payload type number (0..=127).
    pub id: u8,
    /// Encoding name (`opus`, `PCMU`, `telephone-event`); absent for static types.
    pub name: Option<String>,
    /// Clock rate in Hz.
    pub clockrate: Option<u32>,
    /// Channel count (default 1).
    pub channels: u8,
    /// Format parameters, e.g. `useinbandfec=1`.
    pub parameters: Vec<Parameter>,
}

/// A format parameter; `value` is optional because browsers send `<parameter name='111/111'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Parameter name.
    pub name: String,
    /// Parameter value, if any.
    pub value: Option<String>,
}

/// An XEP-0339 `<source/>`: an SSRC and its attributes (`cname`, `msid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The SSRC.
    pub ssrc: u32,
    /// Its `<parameter/>` children.
    pub parameters: Vec<Parameter>,
}

impl PayloadType {
    /// Whether this payload type is `name` at `clockrate` (names compare case-insensitively;
    /// static payload types 0 and 8 match PCMU and PCMA without a name).
    pub fn is(&self, name: &str, clockrate: u32) -> bool {
        let named = match &self.name {
            Some(n) => n.eq_ignore_ascii_case(name),
            None => matches!((self.id, name), (0, "PCMU") | (8, "PCMA")),
        };
        named && self.clockrate.unwrap_or(8000) == clockrate
    }

    /// Reads a `<payload-type/>`.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        let id: u8 = required_parsed(elem, "payload-type", "id")?;
        if id > 127 {
            return Err(ParseError::InvalidAttribute {
                element: "payload-type",
                attribute: "id",
                value: id.to_string(),
            });
        }
        Ok(Self {
            id,
            name: elem.attr("name").map(str::to_string),
            clockrate: optional_parsed(elem, "payload-type", "clockrate")?,
            channels: optional_parsed(elem, "payload-type", "channels")?.unwrap_or(1),
            parameters: parameters(elem, NS_RTP)?,
        })
    }

    /// Writes a `<payload-type/>`.
    pub fn to_element(&self) -> Element {
        let mut b = attr!(build("payload-type", NS_RTP), "id", self.id);
        if let Some(name) = &self.name {
            b = attr!(b, "name", name.as_str());
        }
        if let Some(clockrate) = self.clockrate {
            b = attr!(b, "clockrate", clockrate);
        }
        if self.channels != 1 {
            b = attr!(b, "channels", self.channels);
        }
        b.append_all(self.parameters.iter().map(|p| p.to_element(NS_RTP)))
            .build()
    }
}

impl Parameter {
    /// A parameter with a value.
    pub fn new(name: &str, value: &str) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    fn to_element(&self, ns: &str) -> Element {
        let b = attr!(build("parameter", ns), "name", self.name.as_str());
        match &self.value {
            Some(value) => attr!(b, "value", value.as_str()).build(),
            None => b.build(),
        }
    }
}

/// The `<parameter/>` children of `elem` in namespace `ns`.
fn parameters(elem: &Element, ns: &str) -> Result<Vec<Parameter>, ParseError> {
    elem.children()
        .filter(|c| c.is("parameter", ns))
        .map(|p| {
            Ok(Parameter {
                name: required(p, "parameter", "name")?.to_string(),
                value: p.attr("value").map(str::to_string),
            })
        })
        .collect()
}

impl RtpDescription {
    /// Reads an RTP `<description/>`.
    pub fn parse(elem: &Element) -> Result<Self, ParseError> {
        super::xml::expect(elem, "description", NS_RTP)?;
        let mut description = Self {
            media: required(elem, "description", "media")?.to_string(),
            ssrc: optional_parsed(elem, "description", "ssrc")?,
            ..Self::default()
        };
        for child in elem.children() {
            if child.is("payload-type", NS_RTP) {
                description.payload_types.push(PayloadType::parse(child)?);
            } else if child.is("rtcp-mux", NS_RTP) {
                description.rtcp_mux = true;
            } else if child.is("source", NS_SSMA) {
                description.sources.push(Source {
                    ssrc: required_parsed(child, "source", "ssrc")?,
                    parameters: parameters(child, NS_SSMA)?,
                });
            }
            // Header extensions, rtcp-fb, msid streams and anything newer are not used: ignored.
        }
        Ok(description)
    }

    /// Writes an RTP `<description/>`.
    pub fn to_element(&self) -> Element {
        let mut b = attr!(build("description", NS_RTP), "media", self.media.as_str());
        if let Some(ssrc) = self.ssrc {
            b = attr!(b, "ssrc", ssrc);
        }
        b = b.append_all(self.payload_types.iter().map(PayloadType::to_element));
        if self.rtcp_mux {
            b = b.append(build("rtcp-mux", NS_RTP).build());
        }
        b.append_all(self.sources.iter().map(|s| {
            attr!(build("source", NS_SSMA), "ssrc", s.ssrc)
                .append_all(s.parameters.iter().map(|p| p.to_element(NS_SSMA)))
                .build()
        }))
        .build()
    }
}
