//! SRTP and SRTCP for one call, with the guards webrtc-srtp needs in front of it: packets too
//! short to hold a tag are dropped before they reach code that would panic on them, SRTCP without
//! the E bit (which webrtc-srtp would accept unauthenticated) is dropped, the replay window only
//! starts at the first *authenticated* packet (a forged first packet cannot anchor it), and
//! webrtc-srtp, which keeps state for every SSRC it sees before authenticating, only sees SSRCs
//! that authenticated: a packet from a new SSRC is first tried on a probe context (rebuilt every
//! [`PROBE_REBUILD`] packets, so a flood of made-up SSRCs costs bounded state and takes no slot
//! from the genuine stream), and the SSRCs that authenticated are bounded.

use std::collections::HashSet;

use bytes::Bytes;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_util::replay_detector::{ReplayDetector, WrappedSlidingWindowDetector};

/// Replay window, in packets.
const REPLAY_WINDOW: usize = 128;
/// Authenticated SSRCs per protocol (RTP, RTCP) at most: the stream's, and a few changes.
const MAX_SSRCS: usize = 16;
/// Packets from new SSRCs the probe context tries before it is made afresh.
const PROBE_REBUILD: usize = 64;
/// RTP fixed header length.
const RTP_HEADER: usize = 12;
/// RTCP header plus sender SSRC.
const RTCP_HEADER: usize = 8;
/// SRTCP E flag and index.
const SRTCP_INDEX: usize = 4;

/// Why a received packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Failed authentication (or too short to carry a tag).
    Authentication,
    /// Seen before, or too old.
    Replay,
    /// From one SSRC too many.
    UnknownSource,
}

/// The two directions of one call's SRTP.
pub struct SrtpSession {
    outbound: Context,
    inbound: Context,
    /// Tries packets from SSRCs not authenticated yet, keeping the inbound context clean.
    probe: Context,
    probed: usize,
    remote_key: Vec<u8>,
    remote_salt: Vec<u8>,
    profile: ProtectionProfile,
    remote_ssrc: Option<u32>,
    rtp_ssrcs: HashSet<u32>,
    rtcp_ssrcs: HashSet<u32>,
}

/// Keys exported from the DTLS handshake.
pub struct SrtpKeys {
    /// Our master key.
    pub local_key: Vec<u8>,
    /// Our master salt.
    pub local_salt: Vec<u8>,
    /// The peer's master key.
    pub remote_key: Vec<u8>,
    /// The peer's master salt.
    pub remote_salt: Vec<u8>,
}

impl SrtpSession {
    /// Contexts for both directions with `profile`.
    pub fn new(profile: ProtectionProfile, keys: &SrtpKeys) -> Result<Self, webrtc_srtp::Error> {
        let detector = |max: u64| -> webrtc_srtp::option::ContextOption {
            Box::new(move || Box::new(AuthenticatedStart::new(REPLAY_WINDOW, max)))
        };
        Ok(Self {
            outbound: Context::new(&keys.local_key, &keys.local_salt, profile, None, None)?,
            inbound: Context::new(
                &keys.remote_key,
                &keys.remote_salt,
                profile,
                Some(detector(u64::from(u16::MAX))),
                Some(detector(0x7FFF_FFFF)),
            )?,
            probe: Context::new(&keys.remote_key, &keys.remote_salt, profile, None, None)?,
            probed: 0,
            remote_key: keys.remote_key.clone(),
            remote_salt: keys.remote_salt.clone(),
            profile,
            remote_ssrc: None,
            rtp_ssrcs: HashSet::new(),
            rtcp_ssrcs: HashSet::new(),
        })
    }

    /// Whether a packet from an SSRC not authenticated yet authenticates, tried on the probe
    /// context so the inbound one keeps state for authenticated SSRCs only.
    fn probe(&mut self, packet: &[u8], rtcp: bool) -> Result<(), Dropped> {
        if self.probed >= PROBE_REBUILD {
            self.probe = Context::new(
                &self.remote_key,
                &self.remote_salt,
                self.profile,
                None,
                None,
            )
            .map_err(|_| Dropped::Authentication)?;
            self.probed = 0;
        }
        self.probed += 1;
        let result = match rtcp {
            false => self.probe.decrypt_rtp(packet).map(drop),
            true => self.probe.decrypt_rtcp(packet).map(drop),
        };
        result.map_err(|_| Dropped::Authentication)
    }

    /// The SSRC of the caller's authenticated stream, once known.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// Protects a plain RTP packet whose header is `header`.
    pub fn protect_rtp(&mut self, packet: &[u8], header: &rtp::header::Header) -> Option<Bytes> {
        self.outbound.encrypt_rtp_with_header(packet, header).ok()
    }

    /// Protects a plain RTCP compound packet.
    pub fn protect_rtcp(&mut self, packet: &[u8]) -> Option<Bytes> {
        self.outbound.encrypt_rtcp(packet).ok()
    }

    /// Authenticates and decrypts an SRTP packet into plain RTP.
    pub fn unprotect_rtp(&mut self, packet: &[u8]) -> Result<Bytes, Dropped> {
        if packet.len()
            < RTP_HEADER + self.profile.rtp_auth_tag_len() + self.profile.aead_auth_tag_len()
        {
            return Err(Dropped::Authentication);
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        if !self.rtp_ssrcs.contains(&ssrc) {
            if self.rtp_ssrcs.len() >= MAX_SSRCS {
                return Err(Dropped::UnknownSource);
            }
            self.probe(packet, false)?;
            self.rtp_ssrcs.insert(ssrc);
        }
        match self.inbound.decrypt_rtp(packet) {
            Ok(plain) => {
                self.remote_ssrc = Some(ssrc);
                Ok(plain)
            }
            Err(webrtc_srtp::Error::SrtpSsrcDuplicated(..)) => Err(Dropped::Replay),
            Err(_) => Err(Dropped::Authentication),
        }
    }

    /// Authenticates and decrypts an SRTCP packet into plain RTCP.
    pub fn unprotect_rtcp(&mut self, packet: &[u8]) -> Result<Bytes, Dropped> {
        let tag = self.profile.rtcp_auth_tag_len() + self.profile.aead_auth_tag_len();
        if packet.len() < RTCP_HEADER + SRTCP_INDEX + tag {
            return Err(Dropped::Authentication);
        }
        // The E flag is the top bit of the index word, which sits before the tag (AES-CM) or at
        // the end (AEAD). Without it webrtc-srtp returns the packet unauthenticated.
        let index_at = packet.len() - SRTCP_INDEX - self.profile.rtcp_auth_tag_len();
        if packet[index_at] & 0x80 == 0 {
            return Err(Dropped::Authentication);
        }
        let ssrc = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        if !self.rtcp_ssrcs.contains(&ssrc) {
            if self.rtcp_ssrcs.len() >= MAX_SSRCS {
                return Err(Dropped::UnknownSource);
            }
            self.probe(packet, true)?;
            self.rtcp_ssrcs.insert(ssrc);
        }
        match self.inbound.decrypt_rtcp(packet) {
            Ok(plain) => Ok(plain),
            Err(webrtc_srtp::Error::SrtcpSsrcDuplicated(..)) => Err(Dropped::Replay),
            Err(_) => Err(Dropped::Authentication),
        }
    }
}

/// A sliding-window replay detector that starts at the first packet that authenticates, so that
/// a forged packet arriving first cannot move the window for the genuine stream.
struct AuthenticatedStart {
    window: WrappedSlidingWindowDetector,
    started: bool,
    pending: u64,
}

impl AuthenticatedStart {
    fn new(size: usize, max: u64) -> Self {
        Self {
            window: WrappedSlidingWindowDetector::new(size, max),
            started: false,
            pending: 0,
        }
    }
}

impl ReplayDetector for AuthenticatedStart {
    fn check(&mut self, seq: u64) -> bool {
        if self.started {
            self.window.check(seq)
        } else {
            self.pending = seq;
            true
        }
    }

    fn accept(&mut self) {
        if !self.started {
            self.started = true;
            self.window.check(self.pending);
        }
        self.window.accept();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp::header::Header;

    fn keys() -> SrtpKeys {
        SrtpKeys {
            local_key: vec![1; 16],
            local_salt: vec![2; 14],
            remote_key: vec![1; 16],
            remote_salt: vec![2; 14],
        }
    }

    fn pair(profile: ProtectionProfile) -> (SrtpSession, SrtpSession) {
        let mut k = keys();
        if matches!(profile, ProtectionProfile::AeadAes128Gcm) {
            k.local_salt.truncate(12);
            k.remote_salt.truncate(12);
        }
        (
            SrtpSession::new(profile, &k).unwrap(),
            SrtpSession::new(profile, &k).unwrap(),
        )
    }

    fn rtp(sender: &mut SrtpSession, ssrc: u32, seq: u16) -> Bytes {
        let header = Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: u32::from(seq) * 960,
            ssrc,
            ..Header::default()
        };
        let mut buf = vec![0u8; 12];
        webrtc_util::marshal::Marshal::marshal_to(&header, &mut buf).unwrap();
        buf.extend_from_slice(&[seq as u8; 40]);
        sender.protect_rtp(&buf, &header).unwrap()
    }

    #[test]
    fn forged_and_replayed_packets_do_not_disturb_the_genuine_stream() {
        for profile in [
            ProtectionProfile::Aes128CmHmacSha1_80,
            ProtectionProfile::AeadAes128Gcm,
        ] {
            let (mut alice, mut bob) = pair(profile);
            let (mut mallory, _) = pair(profile);
            // A forged packet arrives first, with a far-away sequence number.
            let mut forged = rtp(&mut mallory, 99, 300).to_vec();
            let last = forged.len() - 1;
            forged[last] ^= 0xFF;
            assert_eq!(bob.unprotect_rtp(&forged), Err(Dropped::Authentication));
            // The genuine stream starts low and is accepted.
            let first = rtp(&mut alice, 99, 10);
            assert!(bob.unprotect_rtp(&first).is_ok(), "{profile:?}");
            assert_eq!(bob.remote_ssrc(), Some(99));
            // A replay is refused; the next genuine packet is fine.
            assert_eq!(bob.unprotect_rtp(&first), Err(Dropped::Replay));
            assert!(bob.unprotect_rtp(&rtp(&mut alice, 99, 11)).is_ok());
            // Garbage of every short length is dropped without a panic.
            for len in 0..40 {
                let junk = vec![0x80u8; len];
                assert!(bob.unprotect_rtp(&junk).is_err());
                assert!(bob.unprotect_rtcp(&junk).is_err());
            }
        }
    }

    #[test]
    fn srtcp_without_the_e_flag_is_refused() {
        let (mut alice, mut bob) = pair(ProtectionProfile::Aes128CmHmacSha1_80);
        // A receiver report in clear with a fake index word and tag.
        let mut fake = vec![0x81, 0xC9, 0x00, 0x07, 0, 0, 0, 1];
        fake.extend_from_slice(&[0u8; 24]);
        fake.extend_from_slice(&[0x00, 0, 0, 5]);
        fake.extend_from_slice(&[0u8; 10]);
        assert_eq!(bob.unprotect_rtcp(&fake), Err(Dropped::Authentication));
        let rr = [0x80u8, 0xC9, 0x00, 0x01, 0, 0, 0, 1];
        let protected = alice.protect_rtcp(&rr).unwrap();
        assert_eq!(bob.unprotect_rtcp(&protected).unwrap().as_ref(), &rr);
    }

    /// A flood of made-up SSRCs before the genuine stream takes none of its place.
    #[test]
    fn an_ssrc_flood_before_the_genuine_stream_does_not_shut_it_out() {
        let (mut alice, mut bob) = pair(ProtectionProfile::Aes128CmHmacSha1_80);
        let (mut mallory, _) = pair(ProtectionProfile::Aes128CmHmacSha1_80);
        for ssrc in 0..10_000u32 {
            let mut forged = rtp(&mut mallory, ssrc + 1000, 1).to_vec();
            forged[20] ^= 1;
            assert_eq!(bob.unprotect_rtp(&forged), Err(Dropped::Authentication));
        }
        assert!(bob.rtp_ssrcs.is_empty());
        assert!(bob.unprotect_rtp(&rtp(&mut alice, 5, 1)).is_ok());
        assert_eq!(bob.remote_ssrc(), Some(5));
        // A replay of the first packet is caught by the inbound context.
        assert_eq!(
            bob.unprotect_rtp(&rtp_again(&mut alice, 5, 1)),
            Err(Dropped::Replay)
        );
        // An authenticated change of SSRC is taken; made-up ones still cost nothing.
        assert!(bob.unprotect_rtp(&rtp(&mut alice, 6, 1)).is_ok());
        assert_eq!(bob.remote_ssrc(), Some(6));
        assert_eq!(bob.rtp_ssrcs.len(), 2);
        // Authenticated SSRCs are bounded too.
        for ssrc in 100..100 + MAX_SSRCS as u32 {
            let _ = bob.unprotect_rtp(&rtp(&mut alice, ssrc, 1));
        }
        assert_eq!(bob.rtp_ssrcs.len(), MAX_SSRCS);
        assert_eq!(
            bob.unprotect_rtp(&rtp(&mut alice, 999, 1)),
            Err(Dropped::UnknownSource)
        );
    }

    /// The packet `rtp` would make, from a sender made afresh (a replay of the first one).
    fn rtp_again(_: &mut SrtpSession, ssrc: u32, seq: u16) -> Bytes {
        let (mut fresh, _) = pair(ProtectionProfile::Aes128CmHmacSha1_80);
        rtp(&mut fresh, ssrc, seq)
    }
}
