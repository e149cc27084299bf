//! Small helpers for reading and writing `minidom` elements, and the parse error they share.

use std::str::FromStr;

use minidom::{Element, ElementBuilder};

/// Why a payload could not be read. Each message is one line naming the element and attribute.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A required attribute is absent.
    #[error("<{element}/> lacks the attribute `{attribute}`")]
    MissingAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
    },
    /// An attribute has a value that cannot be used.
    #[error("<{element}/> has an invalid `{attribute}`: `{value}`")]
    InvalidAttribute {
        /// Element name.
        element: &'static str,
        /// Attribute name.
        attribute: &'static str,
        /// The value found.
        value: String,
    },
    /// The element is not the one expected.
    #[error("expected <{expected}/> in {namespace}")]
    WrongElement {
        /// Expected element name.
        expected: &'static str,
        /// Expected namespace.
        namespace: &'static str,
    },
    /// A required child is absent.
    #[error("<{element}/> lacks a <{child}/> child")]
    MissingChild {
        /// Parent element name.
        element: &'static str,
        /// Child element name.
        child: &'static str,
    },
}

/// Checks that `elem` is `<name xmlns=ns>`.
pub fn expect(elem: &Element, name: &'static str, ns: &'static str) -> Result<(), ParseError> {
    if elem.is(name, ns) {
        Ok(())
    } else {
        Err(ParseError::WrongElement {
            expected: name,
            namespace: ns,
        })
    }
}

/// The attribute `attribute` of `elem`, which must be present.
pub fn required<'a>(
    elem: &'a Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<&'a str, ParseError> {
    elem.attr(attribute)
        .ok_or(ParseError::MissingAttribute { element, attribute })
}

/// The attribute `attribute` of `elem` parsed as `T`, which must be present.
pub fn required_parsed<T: FromStr>(
    elem: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<T, ParseError> {
    let value = required(elem, element, attribute)?;
    value
        .trim()
        .parse()
        .map_err(|_| ParseError::InvalidAttribute {
            element,
            attribute,
            value: value.to_string(),
        })
}

/// The attribute `attribute` of `elem` parsed as `T`, if present.
pub fn optional_parsed<T: FromStr>(
    elem: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<Option<T>, ParseError> {
    match elem.attr(attribute) {
        None => Ok(None),
        Some(value) => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| ParseError::InvalidAttribute {
                element,
                attribute,
                value: value.to_string(),
            }),
    }
}

/// Sets attribute `$name` (a literal, checked at compile time) on an [`ElementBuilder`].
macro_rules! attr {
    ($builder:expr, $name:literal, $value:expr) => {
        $builder.attr(::minidom::rxml::xml_ncname!($name).to_owned(), $value)
    };
}
pub(crate) use attr;

/// Starts building `<name xmlns=ns>`.
pub fn build(name: &str, ns: &str) -> ElementBuilder {
    Element::builder(name, ns)
}
