//! Integration tests: the gateway against a real Prosody and a real ejabberd on loopback, called
//! by a test caller with real ICE, DTLS-SRTP and RTP. Each test starts and stops its own servers.

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod architecture;
mod calls;
mod connect;
mod demo;
mod doctor;
mod faults;
mod hostile;
mod ivr;
mod media_edge;
mod operations;
mod packaging;
mod signalling;
#[cfg(feature = "sound")]
mod sound;
mod voicemail;
