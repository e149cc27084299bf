//! The one place where a handler's failure becomes the stanza error of the IQ reply.

use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::jingle::Refusal;
use crate::protocol::jingle::JingleErrorCondition;

/// Why an inbound IQ request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqError {
    /// The Jingle core refused the request.
    #[error("jingle: {0:?}")]
    Jingle(Refusal),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request is addressed to a virtual JID that does not exist.
    #[error("no such JID")]
    NoSuchJid,
    /// The payload is not one the gateway answers.
    #[error("unsupported request")]
    Unsupported,
    /// The requester may not do this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request goes beyond a limit of the gateway (a stanza too large or too deep).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
}

impl IqError {
    /// The stanza error sent back.
    pub fn to_stanza_error(&self) -> StanzaError {
        let (type_, condition, text, jingle) = match self {
            Self::Jingle(Refusal::UnknownCallee) | Self::NoSuchJid => (
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "no such virtual JID on this gateway",
                None,
            ),
            Self::Jingle(Refusal::UnknownSession) => (
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                "unknown Jingle session",
                Some(JingleErrorCondition::UnknownSession),
            ),
            Self::Jingle(Refusal::OutOfOrder) => (
                ErrorType::Wait,
                DefinedCondition::UnexpectedRequest,
                "request out of order for this session",
                Some(JingleErrorCondition::OutOfOrder),
            ),
            Self::Jingle(Refusal::UnsupportedInfo) => (
                ErrorType::Modify,
                DefinedCondition::FeatureNotImplemented,
                "unsupported session-info payload",
                Some(JingleErrorCondition::UnsupportedInfo),
            ),
            Self::Jingle(Refusal::Overloaded) => (
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "too many calls in progress",
                None,
            ),
            Self::Jingle(Refusal::Forbidden) => (
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                "you may not call this address",
                None,
            ),
            Self::Jingle(Refusal::TooManyCalls) => (
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "too many calls from you or your server; try again later",
                None,
            ),
            Self::Jingle(Refusal::TieBreak) => (
                ErrorType::Cancel,
                DefinedCondition::Conflict,
                "both parties initiated a session; the other one goes on",
                Some(JingleErrorCondition::TieBreak),
            ),
            Self::Jingle(Refusal::RestartRefused) => (
                ErrorType::Wait,
                DefinedCondition::ResourceConstraint,
                "ICE restart refused: too frequent, too many, or bad credentials",
                None,
            ),
            Self::Jingle(Refusal::ShuttingDown) => (
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "the gateway is shutting down",
                None,
            ),
            Self::BadRequest(text) => (
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                text.as_str(),
                None,
            ),
            Self::Forbidden(text) => (
                ErrorType::Auth,
                DefinedCondition::Forbidden,
                text.as_str(),
                None,
            ),
            Self::NotFound(text) => (
                ErrorType::Cancel,
                DefinedCondition::ItemNotFound,
                text.as_str(),
                None,
            ),
            Self::PolicyViolation(text) => (
                ErrorType::Modify,
                DefinedCondition::PolicyViolation,
                text.as_str(),
                None,
            ),
            Self::Unsupported => (
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "this request is not supported",
                None,
            ),
        };
        let mut error = StanzaError::new(type_, condition, "en", text);
        error.other = jingle.map(|c| c.to_element());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minidom::Element;

    fn xml(error: IqError) -> String {
        String::from(&Element::from(error.to_stanza_error()))
    }

    #[test]
    fn jingle_errors_carry_their_condition() {
        let unknown = xml(IqError::Jingle(Refusal::UnknownSession));
        assert!(unknown.contains("<item-not-found"), "{unknown}");
        assert!(
            unknown.contains("<unknown-session xmlns='urn:xmpp:jingle:errors:1'"),
            "{unknown}"
        );
        let order = xml(IqError::Jingle(Refusal::OutOfOrder));
        assert!(
            order.contains("<unexpected-request") && order.contains("<out-of-order"),
            "{order}"
        );
        assert!(xml(IqError::Jingle(Refusal::Overloaded)).contains("<resource-constraint"));
        assert!(xml(IqError::Unsupported).contains("<service-unavailable"));
        assert!(xml(IqError::BadRequest("x".into())).contains("<bad-request"));
        assert!(xml(IqError::PolicyViolation("x".into())).contains("<policy-violation"));
    }
}
