//! jingle-gateway: an XEP-0114 component that answers Jingle audio calls for virtual JIDs.

pub mod config;
pub mod jingle;
pub mod protocol;

#[cfg(test)]
mod testing;
