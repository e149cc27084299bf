//! The component stream's reader and writer, with limits of our own.
//!
//! Reading happens in three steps, so that no stanza, however built, can cost more than the
//! limits allow or end the stream:
//! 1. [`scanner`] splits bytes into top-level elements, holding each to [`ReadLimits`] as it
//!    arrives; one over a limit is dropped without being kept, and what its start tag said is
//!    kept to answer it.
//! 2. [`tree`] parses an element within the limits into a tree (no recursion; depth bounded).
//! 3. [`StanzaReader`] types it: a stanza, the handshake's answer, a stream error, or an
//!    [`InvalidStanza`] that the router answers with an error when it was an IQ request.
//!
//! [`Connection`] runs this over TCP, with a timeout on every write.

mod connection;
pub mod scanner;
pub mod tree;

use std::collections::BTreeMap;

use minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stream_error::StreamError;

pub use connection::{Connection, ConnectionError};
pub use scanner::{FramingError, Limit, ReadLimits, Summary};

use scanner::{Frame, Scanner};

/// Why a stanza could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidCause {
    /// Beyond one of the [`ReadLimits`]: dropped unread.
    Limit(Limit),
    /// Not well-formed, or not a stanza the typed parser accepts (a bad `type`, say).
    Invalid(String),
}

impl std::fmt::Display for InvalidCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Limit(limit) => write!(f, "beyond the {} limit", limit.as_str()),
            Self::Invalid(error) => f.write_str(error),
        }
    }
}

/// A stanza that could not be used, with what could be read of its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidStanza {
    /// `iq`, `message`, `presence`, or another element name as written.
    pub kind: String,
    /// `from` attribute.
    pub from: Option<String>,
    /// `to` attribute.
    pub to: Option<String>,
    /// `type` attribute.
    pub type_: Option<String>,
    /// `id` attribute.
    pub id: Option<String>,
    /// Why it could not be used.
    pub cause: InvalidCause,
}

impl InvalidStanza {
    fn new(summary: Summary, cause: InvalidCause) -> Self {
        Self {
            kind: summary.name,
            from: summary.from,
            to: summary.to,
            type_: summary.type_,
            id: summary.id,
            cause,
        }
    }
}

/// One thing read from the stream.
#[derive(Debug)]
pub enum StreamItem {
    /// The server's stream header, with its stream id.
    Header {
        /// The `id` attribute (the handshake is computed from it).
        id: Option<String>,
    },
    /// A stanza.
    Stanza(Box<Stanza>),
    /// The server accepted the component's handshake.
    Handshake,
    /// A stream error: the server ends the stream.
    Error(Box<StreamError>),
    /// A stanza that could not be used.
    Invalid(Box<InvalidStanza>),
    /// Another top-level element (ignored).
    Other(String),
    /// The server closed the stream.
    Footer,
}

/// Reads the component stream from bytes (sans-IO): [`StanzaReader::push`] bytes in,
/// [`StanzaReader::poll`] items out.
#[derive(Debug)]
pub struct StanzaReader {
    limits: ReadLimits,
    scanner: Scanner,
    prefixes: BTreeMap<Option<String>, String>,
}

impl StanzaReader {
    /// A reader at the start of a stream, with `limits`.
    pub fn new(limits: ReadLimits) -> Self {
        Self {
            limits,
            scanner: Scanner::new(limits),
            prefixes: BTreeMap::new(),
        }
    }

    /// Reads `bytes`; an error means the bytes are not an XML stream at all.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        self.scanner.push(bytes)
    }

    /// The next item read.
    pub fn poll(&mut self) -> Option<StreamItem> {
        let item = match self.scanner.poll()? {
            Frame::Header(attributes) => {
                self.prefixes = tree::header_prefixes(&attributes);
                let id = attributes
                    .into_iter()
                    .find(|(name, _)| name == "id")
                    .map(|(_, value)| value);
                StreamItem::Header { id }
            }
            Frame::Element { bytes, summary } => {
                match tree::parse_element(&bytes, &self.prefixes, &self.limits) {
                    Ok(element) => typed(element, summary),
                    Err(e) => invalid(summary, InvalidCause::Invalid(e.to_string())),
                }
            }
            Frame::Dropped { summary, limit } => invalid(summary, InvalidCause::Limit(limit)),
            Frame::Footer => StreamItem::Footer,
        };
        Some(item)
    }
}

fn invalid(summary: Summary, cause: InvalidCause) -> StreamItem {
    StreamItem::Invalid(Box::new(InvalidStanza::new(summary, cause)))
}

/// Types a top-level element.
fn typed(element: Element, summary: Summary) -> StreamItem {
    if element.is("handshake", ns::COMPONENT) {
        return StreamItem::Handshake;
    }
    if element.is("error", ns::STREAM) {
        return match StreamError::try_from(element) {
            Ok(error) => StreamItem::Error(Box::new(error)),
            Err(e) => invalid(summary, InvalidCause::Invalid(e.to_string())),
        };
    }
    let is_stanza =
        element.ns() == ns::COMPONENT && matches!(element.name(), "iq" | "message" | "presence");
    if !is_stanza {
        return StreamItem::Other(element.name().to_string());
    }
    match Stanza::try_from(element) {
        Ok(stanza) => StreamItem::Stanza(Box::new(stanza)),
        Err(e) => invalid(summary, InvalidCause::Invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='gw.localhost'>";

    fn read(input: &str) -> Vec<StreamItem> {
        let mut reader = StanzaReader::new(ReadLimits::DEFAULT);
        reader.push(input.as_bytes()).expect("a stream");
        std::iter::from_fn(|| reader.poll()).collect()
    }

    #[test]
    fn reads_what_a_server_sends() {
        let items = read(&format!(
            "{HEADER}<handshake/><iq type='get' id='p1' from='localhost' to='gw.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq><stream:error>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>"
        ));
        assert!(matches!(&items[0], StreamItem::Header { id } if id.as_deref() == Some("s1")));
        assert!(matches!(items[1], StreamItem::Handshake));
        assert!(matches!(&items[2], StreamItem::Stanza(s) if matches!(**s, Stanza::Iq(_))));
        assert!(matches!(&items[3], StreamItem::Error(_)));
        assert!(matches!(items[4], StreamItem::Footer));
        assert_eq!(items.len(), 5);
    }

    #[test]
    fn unusable_stanzas_are_reported_with_their_header_and_the_stream_goes_on() {
        let deep = format!("{}{}", "<a>".repeat(12_000), "</a>".repeat(12_000));
        let items = read(&format!(
            "{HEADER}<message from='a@b/c' to='echo@gw.localhost'>{deep}</message>\
             <iq type='bogus' id='x1' from='a@b/c' to='echo@gw.localhost'/>\
             <iq type='set' id='x2' from='a@b/c' to='echo@gw.localhost'><q xmlns='urn:q' a='1' a='2'/></iq>\
             <presence from='a@b/c' to='echo@gw.localhost'/>"
        ));
        let StreamItem::Invalid(deep) = &items[1] else {
            panic!("{:?}", items[1]);
        };
        assert_eq!(deep.kind, "message");
        assert_eq!(deep.cause, InvalidCause::Limit(Limit::Depth));
        assert_eq!(deep.to.as_deref(), Some("echo@gw.localhost"));
        let StreamItem::Invalid(bogus) = &items[2] else {
            panic!("{:?}", items[2]);
        };
        assert_eq!(bogus.id.as_deref(), Some("x1"));
        assert!(matches!(bogus.cause, InvalidCause::Invalid(_)));
        assert!(matches!(
            &items[3],
            StreamItem::Stanza(_) | StreamItem::Invalid(_)
        ));
        assert!(matches!(&items[4], StreamItem::Stanza(s) if matches!(**s, Stanza::Presence(_))));
    }

    #[test]
    fn a_message_with_a_64_kib_attribute_is_read() {
        let value = "v".repeat(64 * 1024);
        let items = read(&format!(
            "{HEADER}<message from='a@b/c' to='echo@gw.localhost'><x xmlns='urn:x' v='{value}'/></message>"
        ));
        let StreamItem::Stanza(stanza) = &items[1] else {
            panic!("{:?}", items[1]);
        };
        let Stanza::Message(message) = &**stanza else {
            panic!("not a message");
        };
        assert_eq!(message.payloads[0].attr("v").map(str::len), Some(64 * 1024));
    }

    #[test]
    fn other_elements_are_named() {
        let items = read(&format!("{HEADER}<stream:features/><x xmlns='urn:x'/>"));
        assert!(matches!(&items[1], StreamItem::Other(name) if name == "features"));
        assert!(matches!(&items[2], StreamItem::Other(name) if name == "x"));
    }
}
