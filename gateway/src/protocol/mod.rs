//! Typed payloads the gateway reads and writes where xmpp-parsers is too strict for real clients
//! or lacks them: Jingle with RTP and ICE-UDP (XEP-0166/0167/0176/0320/0338), JMI (XEP-0353)
//! and ad-hoc commands (XEP-0050). Pure data: parse from and serialize to `minidom` elements,
//! no I/O.

pub mod adhoc;
pub mod ice_udp;
pub mod jingle;
pub mod jmi;
pub mod rtp;
mod xml;

pub use xml::ParseError;

#[cfg(test)]
mod tests;
