//! The media engine: one ICE / DTLS-SRTP / RTP leg per call on a shared UDP port, codecs,
//! jitter buffer, DTMF and RTCP.

pub mod codec;
pub mod dtmf;
pub mod jitter;
pub mod pacer;
pub mod rtcp;
pub mod rtp;
