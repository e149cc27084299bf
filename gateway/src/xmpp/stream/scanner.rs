//! Splits the component stream's bytes into its header, its top-level elements and its footer,
//! applying [`ReadLimits`] byte by byte before anything is parsed.
//!
//! It reads only the structure XML needs for that (tags, quoted attribute values, comments,
//! CDATA, processing instructions) and keeps a depth counter, not a stack, so a top-level element
//! over a limit costs no memory however deep or long it is: its bytes are dropped as they arrive,
//! and only what its start tag said (`id`, `from`, `to`, `type`) is kept to answer it.
//! Well-formedness is the parser's job ([`super::tree`]); the server has already checked it.

use std::collections::VecDeque;

/// How much of a stanza the gateway reads; a stanza beyond any of these is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Elements nested in a stanza, the stanza itself included.
    pub max_depth: usize,
    /// Bytes of an element or attribute name, prefix included.
    pub max_name: usize,
    /// Bytes of one attribute value, as written.
    pub max_attribute: usize,
    /// Attributes of one element.
    pub max_attributes: usize,
    /// Bytes of one run of character data, as written.
    pub max_text: usize,
    /// Bytes of a whole stanza, as written.
    pub max_stanza: usize,
}

impl ReadLimits {
    /// The gateway's limits: well above anything a client sends to a voice gateway (a Jingle
    /// offer is about 5 KiB and 6 levels deep) and above the default stanza size limits of
    /// Prosody (256 KiB) and ejabberd, yet small enough that building and dropping a tree of that
    /// size is cheap and bounded.
    pub const DEFAULT: ReadLimits = ReadLimits {
        max_depth: 32,
        max_name: 256,
        max_attribute: 128 * 1024,
        max_attributes: 64,
        max_text: 512 * 1024,
        max_stanza: 1024 * 1024,
    };
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which limit a stanza went beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`ReadLimits::max_depth`].
    Depth,
    /// [`ReadLimits::max_name`].
    Name,
    /// [`ReadLimits::max_attribute`].
    Attribute,
    /// [`ReadLimits::max_attributes`].
    Attributes,
    /// [`ReadLimits::max_text`].
    Text,
    /// [`ReadLimits::max_stanza`].
    Size,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Limit; 6] = [
        Self::Depth,
        Self::Name,
        Self::Attribute,
        Self::Attributes,
        Self::Text,
        Self::Size,
    ];

    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Depth => "depth",
            Self::Name => "name",
            Self::Attribute => "attribute",
            Self::Attributes => "attributes",
            Self::Text => "text",
            Self::Size => "size",
        }
    }
}

/// What the start tag of a dropped stanza said, as far as it could be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Element name as written (`iq`, `message`, ...), if short.
    pub name: String,
    /// `id`.
    pub id: Option<String>,
    /// `from`.
    pub from: Option<String>,
    /// `to`.
    pub to: Option<String>,
    /// `type`.
    pub type_: Option<String>,
}

/// One piece of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The stream header's attributes (namespace declarations included), values decoded.
    Header(Vec<(String, String)>),
    /// A top-level element within the limits.
    Element {
        /// Its bytes, from `<` to the last `>`.
        bytes: Vec<u8>,
        /// What its start tag said.
        summary: Summary,
    },
    /// A top-level element beyond a limit, dropped.
    Dropped {
        /// What its start tag said.
        summary: Summary,
        /// The first limit it went beyond.
        limit: Limit,
    },
    /// `</stream:stream>`: the server closed the stream.
    Footer,
}

/// Bytes that cannot be a stream: the server is broken, and the stream must be restarted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an XML stream: {0}")]
pub struct FramingError(pub &'static str);

/// Longest stream header accepted.
const MAX_HEADER: usize = 4096;
/// Longest attribute value kept from a start tag for [`Summary`] and [`Frame::Header`]
/// (a JID is at most 3071 bytes).
const MAX_CAPTURED_VALUE: usize = 3 * 1024;

/// Where in the stream the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: whitespace and the XML declaration.
    Prolog,
    /// Inside the header's start tag.
    Header,
    /// Between or inside top-level elements.
    Stream,
    /// After the footer: nothing more is read.
    Closed,
}

/// The lexical state: where in a tag, text, comment... the next byte falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lex {
    Text,
    /// After `<`.
    Open,
    StartName,
    InTag,
    AttrName,
    AfterAttrName,
    BeforeValue,
    Value(u8),
    /// After `/` in a start tag.
    EmptySlash,
    EndName,
    AfterEndName,
    /// After `<!`.
    Bang,
    /// After `<!-`.
    CommentStart,
    /// After `<!` and this many bytes of `[CDATA[`.
    CDataStart(u8),
    /// Inside a comment: how many `-` were just seen.
    Comment(u8),
    /// Inside CDATA: how many `]` were just seen.
    CData(u8),
    /// Inside a processing instruction: whether `?` was just seen.
    Pi(bool),
}

/// Which attribute values of the current start tag are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// None (a nested element).
    Nothing,
    /// `id`, `from`, `to` and `type` of a top-level element.
    Summary,
    /// Every attribute (the stream header).
    All,
}

/// The splitter. Feed it bytes with [`Scanner::push`], take frames with [`Scanner::poll`].
#[derive(Debug)]
pub struct Scanner {
    limits: ReadLimits,
    phase: Phase,
    lex: Lex,
    /// Open elements inside the stream (the current stanza is 1).
    depth: usize,
    /// The current stanza's bytes while it is within the limits.
    stanza: Vec<u8>,
    /// The first limit the current stanza went beyond.
    exceeded: Option<Limit>,
    /// Bytes of the name, value or text run being read.
    token: usize,
    /// Attributes of the current start tag so far.
    attributes: usize,
    header_bytes: usize,
    capture: Capture,
    name: Vec<u8>,
    attr_name: Vec<u8>,
    attr_value: Vec<u8>,
    /// The current attribute's value is longer than [`MAX_CAPTURED_VALUE`].
    value_too_long: bool,
    header: Vec<(String, String)>,
    summary: Summary,
    frames: VecDeque<Frame>,
}

impl Scanner {
    /// A scanner at the start of a stream.
    pub fn new(limits: ReadLimits) -> Self {
        Self {
            limits,
            phase: Phase::Prolog,
            lex: Lex::Text,
            depth: 0,
            stanza: Vec::new(),
            exceeded: None,
            token: 0,
            attributes: 0,
            header_bytes: 0,
            capture: Capture::Nothing,
            name: Vec::new(),
            attr_name: Vec::new(),
            attr_value: Vec::new(),
            value_too_long: false,
            header: Vec::new(),
            summary: Summary::default(),
            frames: VecDeque::new(),
        }
    }

    /// The next complete frame.
    pub fn poll(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    /// Reads `bytes`. After an error the scanner reads nothing more.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FramingError> {
        for &byte in bytes {
            match self.phase {
                Phase::Closed => return Ok(()),
                Phase::Header => {
                    self.header_bytes += 1;
                    if self.header_bytes > MAX_HEADER {
                        self.phase = Phase::Closed;
                        return Err(FramingError("the stream header is too long"));
                    }
                }
                Phase::Prolog | Phase::Stream => {}
            }
            if let Err(e) = self.byte(byte) {
                self.phase = Phase::Closed;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether the current stanza's bytes are still kept.
    fn keeping(&self) -> bool {
        self.exceeded.is_none()
    }

    fn exceed(&mut self, limit: Limit) {
        // The header is held to its own length limit only.
        if self.exceeded.is_none() && self.phase == Phase::Stream {
            self.exceeded = Some(limit);
            self.stanza = Vec::new();
        }
    }

    /// Counts one more byte of the current token against `max`.
    fn grow_token(&mut self, max: usize, limit: Limit) {
        self.token += 1;
        if self.token > max {
            self.exceed(limit);
        }
    }

    fn byte(&mut self, b: u8) -> Result<(), FramingError> {
        let in_stanza = self.phase == Phase::Stream && (self.depth > 0 || self.lex != Lex::Text);
        if in_stanza && self.keeping() {
            if self.stanza.len() >= self.limits.max_stanza {
                self.exceed(Limit::Size);
            } else {
                self.stanza.push(b);
            }
        }
        match self.lex {
            Lex::Text => {
                if b == b'<' {
                    self.lex = Lex::Open;
                    if self.phase == Phase::Stream && self.depth == 0 {
                        // A new top-level element (or the footer) starts here.
                        self.exceeded = None;
                        self.stanza.clear();
                        self.stanza.push(b'<');
                    }
                } else if self.depth > 0 && self.keeping() {
                    self.grow_token(self.limits.max_text, Limit::Text);
                } else if self.phase == Phase::Prolog && !b.is_ascii_whitespace() {
                    return Err(FramingError("text before the stream header"));
                }
            }
            Lex::Open => match b {
                b'/' => {
                    self.lex = Lex::EndName;
                    self.token = 0;
                }
                b'!' => self.lex = Lex::Bang,
                b'?' => self.lex = Lex::Pi(false),
                b'>' | b'=' | b'"' | b'\'' | b'<' => return Err(FramingError("a bad tag")),
                _ if b.is_ascii_whitespace() => return Err(FramingError("a bad tag")),
                _ => self.start_element(b)?,
            },
            Lex::StartName => match b {
                b'>' => self.start_tag_end(false)?,
                b'/' => self.lex = Lex::EmptySlash,
                _ if b.is_ascii_whitespace() => self.lex = Lex::InTag,
                _ => {
                    if self.keeping() {
                        self.grow_token(self.limits.max_name, Limit::Name);
                    }
                    if self.capture != Capture::Nothing && self.name.len() < 64 {
                        self.name.push(b);
                    }
                }
            },
            Lex::InTag => match b {
                b'>' => self.start_tag_end(false)?,
                b'/' => self.lex = Lex::EmptySlash,
                b'=' | b'"' | b'\'' | b'<' => return Err(FramingError("a bad attribute")),
                _ if b.is_ascii_whitespace() => {}
                _ => {
                    self.lex = Lex::AttrName;
                    self.token = 1;
                    self.attributes += 1;
                    if self.attributes > self.limits.max_attributes {
                        self.exceed(Limit::Attributes);
                    }
                    self.attr_name.clear();
                    self.attr_name.push(b);
                }
            },
            Lex::AttrName => match b {
                b'=' => self.lex = Lex::BeforeValue,
                _ if b.is_ascii_whitespace() => self.lex = Lex::AfterAttrName,
                b'>' | b'/' | b'"' | b'\'' | b'<' => {
                    return Err(FramingError("an attribute without a value"))
                }
                _ => {
                    if self.keeping() {
                        self.grow_token(self.limits.max_name, Limit::Name);
                    }
                    if self.attr_name.len() < 256 {
                        self.attr_name.push(b);
                    }
                }
            },
            Lex::AfterAttrName => match b {
                b'=' => self.lex = Lex::BeforeValue,
                _ if b.is_ascii_whitespace() => {}
                _ => return Err(FramingError("an attribute without a value")),
            },
            Lex::BeforeValue => match b {
                b'"' | b'\'' => {
                    self.lex = Lex::Value(b);
                    self.token = 0;
                    self.attr_value.clear();
                    self.value_too_long = false;
                }
                _ if b.is_ascii_whitespace() => {}
                _ => return Err(FramingError("an unquoted attribute value")),
            },
            Lex::Value(quote) => {
                if b == quote {
                    self.lex = Lex::InTag;
                    self.attribute_end();
                } else if b == b'<' {
                    return Err(FramingError("`<` in an attribute value"));
                } else {
                    if self.keeping() {
                        self.grow_token(self.limits.max_attribute, Limit::Attribute);
                    }
                    if self.capture != Capture::Nothing && !self.value_too_long {
                        if self.attr_value.len() < MAX_CAPTURED_VALUE {
                            self.attr_value.push(b);
                        } else {
                            self.value_too_long = true;
                        }
                    }
                }
            }
            Lex::EmptySlash => match b {
                b'>' => self.start_tag_end(true)?,
                _ => return Err(FramingError("`/` not followed by `>` in a tag")),
            },
            Lex::EndName => match b {
                b'>' => self.end_element()?,
                _ if b.is_ascii_whitespace() => self.lex = Lex::AfterEndName,
                _ => {
                    if self.keeping() {
                        self.grow_token(self.limits.max_name, Limit::Name);
                    }
                }
            },
            Lex::AfterEndName => match b {
                b'>' => self.end_element()?,
                _ if b.is_ascii_whitespace() => {}
                _ => return Err(FramingError("a bad end tag")),
            },
            Lex::Bang => match b {
                b'-' => self.lex = Lex::CommentStart,
                b'[' if self.depth > 0 => self.lex = Lex::CDataStart(1),
                _ => return Err(FramingError("a document type declaration")),
            },
            Lex::CommentStart => match b {
                b'-' => self.lex = Lex::Comment(0),
                _ => return Err(FramingError("a bad comment")),
            },
            Lex::CDataStart(matched) => {
                const CDATA: &[u8] = b"[CDATA[";
                if b != CDATA[matched as usize] {
                    return Err(FramingError("a bad CDATA section"));
                }
                self.lex = match matched as usize + 1 == CDATA.len() {
                    true => {
                        self.token = 0;
                        Lex::CData(0)
                    }
                    false => Lex::CDataStart(matched + 1),
                };
            }
            Lex::Comment(dashes) => {
                self.lex = match (b, dashes) {
                    (b'-', d) => Lex::Comment((d + 1).min(2)),
                    (b'>', 2) => Lex::Text,
                    _ => Lex::Comment(0),
                };
            }
            Lex::CData(brackets) => {
                if self.keeping() {
                    self.grow_token(self.limits.max_text, Limit::Text);
                }
                self.lex = match (b, brackets) {
                    (b']', n) => Lex::CData((n + 1).min(2)),
                    (b'>', 2) => Lex::Text,
                    _ => Lex::CData(0),
                };
            }
            Lex::Pi(question) => {
                self.lex = match (b, question) {
                    (b'>', true) => Lex::Text,
                    (b'?', _) => Lex::Pi(true),
                    _ => Lex::Pi(false),
                };
            }
        }
        Ok(())
    }

    /// `<` and the first byte of a name: an element starts.
    fn start_element(&mut self, first: u8) -> Result<(), FramingError> {
        self.lex = Lex::StartName;
        self.token = 1;
        self.attributes = 0;
        self.name.clear();
        match self.phase {
            Phase::Prolog => {
                self.phase = Phase::Header;
                self.header_bytes = 2;
                self.capture = Capture::All;
                return Ok(());
            }
            Phase::Header | Phase::Closed => return Err(FramingError("a tag inside a tag")),
            Phase::Stream => {}
        }
        self.depth += 1;
        if self.depth == 1 {
            self.summary = Summary::default();
            self.capture = Capture::Summary;
            self.name.push(first);
        } else {
            self.capture = Capture::Nothing;
        }
        if self.depth > self.limits.max_depth {
            self.exceed(Limit::Depth);
        }
        Ok(())
    }

    /// An attribute value ended: keep it if the current tag is captured.
    fn attribute_end(&mut self) {
        let keep = match self.capture {
            Capture::Nothing => false,
            Capture::Summary => {
                matches!(self.attr_name.as_slice(), b"id" | b"from" | b"to" | b"type")
            }
            Capture::All => true,
        };
        if !keep || self.value_too_long {
            return;
        }
        let (Ok(name), Some(value)) = (
            std::str::from_utf8(&self.attr_name),
            decode_attribute(&self.attr_value),
        ) else {
            return;
        };
        match self.capture {
            Capture::All => self.header.push((name.to_string(), value)),
            Capture::Summary => {
                let slot = match name {
                    "id" => &mut self.summary.id,
                    "from" => &mut self.summary.from,
                    "to" => &mut self.summary.to,
                    _ => &mut self.summary.type_,
                };
                *slot = Some(value);
            }
            Capture::Nothing => {}
        }
    }

    /// `>` or `/>` ended a start tag.
    fn start_tag_end(&mut self, empty: bool) -> Result<(), FramingError> {
        self.lex = Lex::Text;
        self.token = 0;
        match self.capture {
            Capture::All => {
                if empty {
                    return Err(FramingError("an empty stream header"));
                }
                self.phase = Phase::Stream;
                self.frames
                    .push_back(Frame::Header(std::mem::take(&mut self.header)));
            }
            Capture::Summary => {
                self.summary.name = String::from_utf8_lossy(&self.name).into_owned();
            }
            Capture::Nothing => {}
        }
        self.capture = Capture::Nothing;
        if empty && self.phase == Phase::Stream {
            self.close_element();
        }
        Ok(())
    }

    /// `</name>` ended an element (or, at the stream level, the stream).
    fn end_element(&mut self) -> Result<(), FramingError> {
        self.lex = Lex::Text;
        self.token = 0;
        if self.phase != Phase::Stream {
            return Err(FramingError("an end tag before the stream header"));
        }
        if self.depth == 0 {
            self.phase = Phase::Closed;
            self.stanza = Vec::new();
            self.frames.push_back(Frame::Footer);
            return Ok(());
        }
        self.close_element();
        Ok(())
    }

    /// An element closed; a top-level one becomes a frame.
    fn close_element(&mut self) {
        self.depth -= 1;
        if self.depth > 0 {
            return;
        }
        let frame = match self.exceeded.take() {
            None => Frame::Element {
                bytes: std::mem::take(&mut self.stanza),
                summary: std::mem::take(&mut self.summary),
            },
            Some(limit) => Frame::Dropped {
                summary: std::mem::take(&mut self.summary),
                limit,
            },
        };
        self.stanza = Vec::new();
        self.frames.push_back(frame);
    }
}

/// An attribute value as written, with its references replaced; `None` if one is unknown.
fn decode_attribute(raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        let reference = &rest[at + 1..end];
        let decoded = match reference {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "apos" => '\'',
            "quot" => '"',
            _ => {
                let code = match reference.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => reference.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(code)?
            }
        };
        out.push(decoded);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' \
        xmlns:stream='http://etherx.jabber.org/streams' id='abc&amp;1' from='gw.localhost'>";

    fn scan(limits: ReadLimits, input: &[u8]) -> (Vec<Frame>, Result<(), FramingError>) {
        let mut scanner = Scanner::new(limits);
        let result = scanner.push(input);
        let frames = std::iter::from_fn(|| scanner.poll()).collect();
        (frames, result)
    }

    /// The bytes of an element frame (its summary is checked where it matters).
    fn bytes(frame: &Frame) -> Option<&[u8]> {
        match frame {
            Frame::Element { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    fn header() -> Frame {
        Frame::Header(vec![
            ("xmlns".into(), "jabber:component:accept".into()),
            (
                "xmlns:stream".into(),
                "http://etherx.jabber.org/streams".into(),
            ),
            ("id".into(), "abc&1".into()),
            ("from".into(), "gw.localhost".into()),
        ])
    }

    #[test]
    fn splits_header_stanzas_and_footer_in_any_chunking() {
        let stanzas = [
            "<handshake/>",
            "<iq type='get' id='1' to='gw.localhost' from='a@b/c'><ping xmlns='urn:xmpp:ping'/></iq>",
            "<message to=\"x@gw\"><body>a &lt; b &gt; c</body><x a='>'/>\
             <y><![CDATA[<not-a-tag></not>]]></y></message>",
        ];
        let input = format!(
            "{HEADER}\n{}  {}\n{}</stream:stream>junk",
            stanzas[0], stanzas[1], stanzas[2]
        );
        let (frames, result) = scan(ReadLimits::DEFAULT, input.as_bytes());
        assert_eq!(result, Ok(()));
        assert_eq!(frames[0], header());
        let elements: Vec<_> = frames[1..4].iter().filter_map(bytes).collect();
        assert_eq!(elements, stanzas.map(str::as_bytes));
        assert_eq!(frames[4..], [Frame::Footer]);
        let Frame::Element { summary, .. } = &frames[2] else {
            panic!("{frames:?}");
        };
        let expected_summary = Summary {
            name: "iq".into(),
            id: Some("1".into()),
            from: Some("a@b/c".into()),
            to: Some("gw.localhost".into()),
            type_: Some("get".into()),
        };
        assert_eq!(*summary, expected_summary);
        // One byte at a time gives the same frames.
        let mut scanner = Scanner::new(ReadLimits::DEFAULT);
        let mut frames = Vec::new();
        for byte in input.as_bytes() {
            scanner.push(std::slice::from_ref(byte)).unwrap();
            frames.extend(std::iter::from_fn(|| scanner.poll()));
        }
        assert_eq!(frames, scan(ReadLimits::DEFAULT, input.as_bytes()).0);
    }

    #[test]
    fn a_deep_stanza_is_dropped_with_its_header_and_the_next_one_is_read() {
        let depth = 50_000;
        let mut input = format!("{HEADER}<iq type='set' id='deep' from='a@b/c' to='echo@gw'>");
        input.push_str(&"<a>".repeat(depth));
        input.push_str(&"</a>".repeat(depth));
        input.push_str("</iq><presence/>");
        let mut scanner = Scanner::new(ReadLimits::DEFAULT);
        scanner.push(input.as_bytes()).unwrap();
        assert_eq!(scanner.poll(), Some(header()));
        assert_eq!(
            scanner.poll(),
            Some(Frame::Dropped {
                summary: Summary {
                    name: "iq".into(),
                    id: Some("deep".into()),
                    from: Some("a@b/c".into()),
                    to: Some("echo@gw".into()),
                    type_: Some("set".into()),
                },
                limit: Limit::Depth,
            })
        );
        assert_eq!(
            scanner.poll().as_ref().and_then(bytes),
            Some(&b"<presence/>"[..])
        );
        // Nothing of the dropped stanza was kept.
        assert!(scanner.stanza.capacity() < 1024);
    }

    #[test]
    fn each_limit_drops_the_stanza_and_only_it() {
        let limits = ReadLimits {
            max_depth: 3,
            max_name: 8,
            max_attribute: 16,
            max_attributes: 3,
            max_text: 10,
            max_stanza: 100,
        };
        let cases = [
            ("<m><a><b><c/></b></a></m>", Limit::Depth),
            ("<m><abcdefghi/></m>", Limit::Name),
            ("<m abcdefghi='1'/>", Limit::Name),
            ("<m a='12345678901234567'/>", Limit::Attribute),
            ("<m a='1' b='2' c='3' d='4'/>", Limit::Attributes),
            ("<m>12345678901</m>", Limit::Text),
            ("<m><![CDATA[12345678901]]></m>", Limit::Text),
            (
                "<m><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a><a>1</a></m>",
                Limit::Size,
            ),
        ];
        for (stanza, limit) in cases {
            let input = format!("{HEADER}{stanza}<ok/>");
            let (frames, result) = scan(limits, input.as_bytes());
            assert_eq!(result, Ok(()), "{stanza}");
            let dropped = Frame::Dropped {
                summary: Summary {
                    name: "m".into(),
                    ..Summary::default()
                },
                limit,
            };
            assert_eq!(frames[1], dropped, "{stanza}");
            assert_eq!(bytes(&frames[2]), Some(&b"<ok/>"[..]), "{stanza}");
        }
        // Just within every limit.
        let within = "<m a='1234567890123456' b='' c=''><a><b>1234567890</b></a></m>";
        let (frames, _) = scan(limits, format!("{HEADER}{within}").as_bytes());
        assert_eq!(bytes(&frames[1]), Some(within.as_bytes()));
    }

    #[test]
    fn a_large_attribute_within_the_limit_is_kept() {
        let value = "v".repeat(64 * 1024);
        let stanza = format!("<message from='a@b/c' to='echo@gw'><x y='{value}'/></message>");
        let (frames, _) = scan(ReadLimits::DEFAULT, format!("{HEADER}{stanza}").as_bytes());
        assert_eq!(bytes(&frames[1]), Some(stanza.as_bytes()));
    }

    #[test]
    fn an_overlong_jid_is_not_kept_in_the_summary() {
        let long = "x".repeat(MAX_CAPTURED_VALUE + 1);
        let stanza = format!("<iq id='1' from='{long}' to='echo@gw'><a><b><c/></b></a></iq>");
        let limits = ReadLimits {
            max_depth: 2,
            ..ReadLimits::DEFAULT
        };
        let (frames, _) = scan(limits, format!("{HEADER}{stanza}").as_bytes());
        let Frame::Dropped { summary, .. } = &frames[1] else {
            panic!("{frames:?}");
        };
        assert_eq!(summary.from, None);
        assert_eq!(summary.to.as_deref(), Some("echo@gw"));
    }

    #[test]
    fn broken_streams_are_errors() {
        for input in [
            "hello<stream:stream>",
            "<!DOCTYPE x><stream:stream>",
            &format!("{HEADER}<a b=c/>"),
            &format!("{HEADER}<a b='<'/>"),
            &format!("{HEADER}< a/>"),
            &format!("<stream:stream a='{}'>", "x".repeat(MAX_HEADER)),
        ] {
            let (_, result) = scan(ReadLimits::DEFAULT, input.as_bytes());
            assert!(result.is_err(), "{input}");
        }
    }

    #[test]
    fn attribute_references_are_decoded() {
        assert_eq!(
            decode_attribute(b"a&amp;b&lt;&#65;&#x42;&apos;&quot;&gt;").as_deref(),
            Some("a&b<AB'\">")
        );
        assert_eq!(decode_attribute(b"&nope;"), None);
        assert_eq!(decode_attribute(b"&amp"), None);
        assert_eq!(decode_attribute(b"&#xD800;"), None);
    }
}
