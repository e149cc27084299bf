//! Parses one top-level element that [`super::scanner`] found within the limits into a
//! `minidom` tree, without recursion, with the namespaces the stream header declared.

use std::collections::BTreeMap;

use minidom::rxml::error::EndOrError;
use minidom::rxml::parser::CommentMode;
use minidom::rxml::{Options, Parse, RawParser, WithOptions};
use minidom::tree_builder::TreeBuilder;
use minidom::Element;

use super::scanner::ReadLimits;

/// Why a top-level element within the limits is still not XML that can be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Not well-formed, or a prefix without a namespace.
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    /// Deeper than the limit (the scanner and the parser disagree: malformed input).
    #[error("nested too deeply")]
    TooDeep,
}

/// The namespace declarations (`xmlns`, `xmlns:prefix`) among the stream header's attributes.
pub fn header_prefixes(attributes: &[(String, String)]) -> BTreeMap<Option<String>, String> {
    attributes
        .iter()
        .filter_map(|(name, value)| match name.as_str() {
            "xmlns" => Some((None, value.clone())),
            _ => name
                .strip_prefix("xmlns:")
                .map(|prefix| (Some(prefix.to_string()), value.clone())),
        })
        .collect()
}

/// Parses `bytes`, one element, in the scope of the stream's namespace declarations `prefixes`.
pub fn parse_element(
    bytes: &[u8],
    prefixes: &BTreeMap<Option<String>, String>,
    limits: &ReadLimits,
) -> Result<Element, TreeError> {
    let mut parser = RawParser::with_options(Options {
        // The scanner has already held every token to the limits; rxml's own limit must not
        // refuse what the scanner let through.
        max_token_length: limits.max_stanza,
        comments: CommentMode::Discard,
        ..Options::default()
    });
    let mut builder = TreeBuilder::new().with_prefixes_stack(vec![prefixes.clone().into()]);
    let mut input = bytes;
    loop {
        let event = parser.parse(&mut input, true).map_err(|e| match e {
            EndOrError::NeedMoreData => TreeError::Malformed("incomplete".into()),
            EndOrError::Error(e) => TreeError::Malformed(e.to_string()),
        })?;
        let Some(event) = event else {
            return Err(TreeError::Malformed("no element".into()));
        };
        builder
            .process_event(event)
            .map_err(|e| TreeError::Malformed(e.to_string()))?;
        if builder.depth() > limits.max_depth {
            return Err(TreeError::TooDeep);
        }
        if let Some(root) = builder.root.take() {
            if !input.iter().all(u8::is_ascii_whitespace) {
                return Err(TreeError::Malformed("data after the element".into()));
            }
            return Ok(root);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_prefixes() -> BTreeMap<Option<String>, String> {
        header_prefixes(&[
            ("xmlns".into(), "jabber:component:accept".into()),
            (
                "xmlns:stream".into(),
                "http://etherx.jabber.org/streams".into(),
            ),
            ("id".into(), "x".into()),
        ])
    }

    #[test]
    fn parses_in_the_streams_namespaces() {
        let iq = parse_element(
            b"<iq type='get' id='a&amp;b'><ping xmlns='urn:xmpp:ping'/></iq>",
            &stream_prefixes(),
            &ReadLimits::DEFAULT,
        )
        .unwrap();
        assert!(iq.is("iq", "jabber:component:accept"));
        assert_eq!(iq.attr("id"), Some("a&b"));
        assert!(iq.has_child("ping", "urn:xmpp:ping"));
        let error = parse_element(
            b"<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>",
            &stream_prefixes(),
            &ReadLimits::DEFAULT,
        )
        .unwrap();
        assert!(error.is("error", "http://etherx.jabber.org/streams"));
    }

    #[test]
    fn a_64_kib_attribute_parses() {
        let value = "é".repeat(32 * 1024);
        let text = format!("<message><x xmlns='urn:x' v='{value}'/></message>");
        let message =
            parse_element(text.as_bytes(), &stream_prefixes(), &ReadLimits::DEFAULT).unwrap();
        let x = message.get_child("x", "urn:x").unwrap();
        assert_eq!(x.attr("v").map(str::len), Some(64 * 1024));
    }

    #[test]
    fn malformed_elements_are_errors() {
        for text in [
            &b"<iq><a></b></iq>"[..],
            b"<iq>",
            b"<p:iq/>",
            b"<iq/><iq/>",
            b"<iq>\xff</iq>",
            b"<iq a='&nope;'/>",
        ] {
            let result = parse_element(text, &stream_prefixes(), &ReadLimits::DEFAULT);
            assert!(
                matches!(result, Err(TreeError::Malformed(_))),
                "{}: {result:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn depth_is_checked_again() {
        let limits = ReadLimits {
            max_depth: 2,
            ..ReadLimits::DEFAULT
        };
        let result = parse_element(b"<a><b><c/></b></a>", &stream_prefixes(), &limits);
        assert_eq!(result, Err(TreeError::TooDeep));
    }
}
