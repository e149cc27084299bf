//! The media engine: one ICE / DTLS-SRTP / RTP leg per call on a shared UDP port (or a port of
//! its own), codecs, jitter buffer, DTMF and RTCP.

pub mod candidate_policy;
pub mod codec;
pub mod dtls;
pub mod dtmf;
pub mod engine;
mod failure;
pub mod foreign;
pub mod guard;
pub mod ice;
pub mod inband_dtmf;
pub mod jitter;
pub mod leg;
pub mod pacer;
pub mod plc;
pub mod port_range;
pub mod reflexive;
pub mod rtcp;
pub mod rtp;
pub mod srtp;
pub mod stats;

pub use failure::MediaFailure;
