//! The XMPP edge: the component link, and what the gateway tells clients about itself
//! (disco, caps, presence subscribers). Stanzas are typed here; nothing further in sees raw XML
//! except through the payload parsers of [`crate::protocol`].

mod backoff;
pub mod disco;
pub mod iq_error;
pub mod link;
pub mod outbox;
pub mod requests;
pub mod stream;
pub mod subscribers;
