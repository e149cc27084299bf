//! Offer/answer: reads a caller's audio offer into what the media leg needs, and writes the
//! gateway's answer content from it and the local transport.
//!
//! Opus is chosen when offered, else PCMU, else PCMA; the `telephone-event` at the chosen codec's
//! clock rate is answered whenever offered (without it the caller's DTMF sender stays disabled);
//! `<rtcp-mux/>` is required and answered; the DTLS role is `active` or `passive`, never
//! `actpass`.

use crate::protocol::ice_udp::{Candidate, Fingerprint, IceUdpTransport, Setup};
use crate::protocol::jingle::{Content, Creator, Description, Group, Jingle, Senders, Transport};
use crate::protocol::rtp::{Parameter, PayloadType, RtpDescription, Source};

use super::end_reason::EndReason;

/// An audio codec the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus at 48 kHz.
    Opus,
    /// G.711 µ-law at 8 kHz.
    Pcmu,
    /// G.711 A-law at 8 kHz.
    Pcma,
}

impl Codec {
    /// Codecs in order of preference.
    pub const PREFERENCE: [Codec; 3] = [Codec::Opus, Codec::Pcmu, Codec::Pcma];

    /// RTP clock rate in Hz.
    pub fn clock_rate(&self) -> u32 {
        match self {
            Self::Opus => 48000,
            Self::Pcmu | Self::Pcma => 8000,
        }
    }

    /// Encoding name as in SDP and Jingle.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opus => "opus",
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
        }
    }

    /// Channel count announced in Jingle (Opus is always announced as 2).
    pub fn announced_channels(&self) -> u8 {
        match self {
            Self::Opus => 2,
            Self::Pcmu | Self::Pcma => 1,
        }
    }
}

/// Our DTLS role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    /// We send the ClientHello (`setup='active'`).
    Client,
    /// We wait for the ClientHello (`setup='passive'`).
    Server,
}

/// Hash functions accepted for the peer's certificate fingerprint, best first.
pub const FINGERPRINT_HASHES: [&str; 3] = ["sha-256", "sha-384", "sha-512"];

/// The peer's DTLS certificate fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFingerprint {
    /// Hash function name (one of [`FINGERPRINT_HASHES`]).
    pub hash: &'static str,
    /// The digest.
    pub digest: Vec<u8>,
}

/// What the media leg needs from a caller's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Name of the audio content.
    pub content_name: String,
    /// Creator of the audio content.
    pub creator: Creator,
    /// The chosen codec.
    pub codec: Codec,
    /// Its payload type number in this call.
    pub payload_type: u8,
    /// `telephone-event` payload type at the codec's clock rate, if offered.
    pub dtmf_payload_type: Option<u8>,
    /// Caller's ICE username fragment.
    pub ice_ufrag: String,
    /// Caller's ICE password.
    pub ice_pwd: String,
    /// Candidates in the offer (often none: they trickle).
    pub candidates: Vec<Candidate>,
    /// The caller's certificate fingerprint.
    pub fingerprint: RemoteFingerprint,
    /// Our DTLS role.
    pub dtls_role: DtlsRole,
    /// Whether the offer grouped contents with BUNDLE (answered with a group of our content).
    pub bundle: bool,
}

/// The local half of the transport, supplied by the media leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTransport {
    /// Our ICE username fragment.
    pub ufrag: String,
    /// Our ICE password.
    pub pwd: String,
    /// Candidates known when the answer is sent (more trickle later).
    pub candidates: Vec<Candidate>,
    /// Our RTP SSRC.
    pub ssrc: u32,
}

/// The RTCP CNAME of the stream with `ssrc` (in the answer and in RTCP SDES).
pub fn cname(ssrc: u32) -> String {
    format!("gw-{ssrc:08x}")
}

/// Reads the audio offer of a `session-initiate`. `prefer_active` picks our DTLS role when the
/// caller offers `actpass`.
pub fn read_offer(jingle: &Jingle, prefer_active: bool) -> Result<Offer, EndReason> {
    let audio = jingle
        .contents
        .iter()
        .find(|c| c.rtp().is_some_and(|rtp| rtp.media == "audio"))
        .ok_or(EndReason::UnsupportedApplications)?;
    let rtp = audio.rtp().ok_or(EndReason::UnsupportedApplications)?;
    if !rtp.rtcp_mux {
        // One ICE component per call: RTCP shares it (every WebRTC client offers this).
        return Err(EndReason::NoRtcpMux);
    }
    let (codec, payload_type) = Codec::PREFERENCE
        .iter()
        .find_map(|codec| {
            rtp.payload_types
                .iter()
                .find(|pt| pt.is(codec.name(), codec.clock_rate()))
                .map(|pt| (*codec, pt.id))
        })
        .ok_or(EndReason::UnsupportedApplications)?;
    let dtmf_payload_type = rtp
        .payload_types
        .iter()
        .find(|pt| pt.is("telephone-event", codec.clock_rate()))
        .map(|pt| pt.id);

    let transport = audio.ice_udp().ok_or(EndReason::UnsupportedTransports)?;
    let (Some(ice_ufrag), Some(ice_pwd)) = (&transport.ufrag, &transport.pwd) else {
        return Err(EndReason::UnsupportedTransports);
    };
    let (fingerprint, setup) = FINGERPRINT_HASHES
        .iter()
        .find_map(|hash| {
            transport
                .fingerprints
                .iter()
                .filter(|f| f.hash == *hash)
                .find_map(|f| {
                    Some((
                        RemoteFingerprint {
                            hash,
                            digest: f.bytes()?,
                        },
                        f.setup,
                    ))
                })
        })
        .ok_or(EndReason::NoFingerprint)?;
    let dtls_role = match setup {
        Some(Setup::Active) => DtlsRole::Server,
        Some(Setup::Passive) => DtlsRole::Client,
        Some(Setup::Actpass) | None if prefer_active => DtlsRole::Client,
        Some(Setup::Actpass) | None => DtlsRole::Server,
    };
    Ok(Offer {
        content_name: audio.name.clone(),
        creator: audio.creator,
        codec,
        payload_type,
        dtmf_payload_type,
        ice_ufrag: ice_ufrag.clone(),
        ice_pwd: ice_pwd.clone(),
        candidates: transport.candidates.clone(),
        fingerprint,
        dtls_role,
        bundle: jingle
            .group
            .as_ref()
            .is_some_and(|g| g.semantics == "BUNDLE" && g.contents.contains(&audio.name)),
    })
}

/// Writes the answer: our audio content for `session-accept` and, when the offer bundled,
/// the BUNDLE group. `fingerprint_sha256` is our certificate's fingerprint.
pub fn answer(
    offer: &Offer,
    local: &LocalTransport,
    fingerprint_sha256: &str,
) -> (Content, Option<Group>) {
    let mut payload_types = vec![PayloadType {
        id: offer.payload_type,
        name: Some(offer.codec.name().to_string()),
        clockrate: Some(offer.codec.clock_rate()),
        channels: offer.codec.announced_channels(),
        parameters: Vec::new(),
    }];
    if let Some(dtmf) = offer.dtmf_payload_type {
        payload_types.push(PayloadType {
            id: dtmf,
            name: Some("telephone-event".into()),
            clockrate: Some(offer.codec.clock_rate()),
            channels: 1,
            parameters: vec![Parameter::new("events", "0-15")],
        });
    }
    let description = RtpDescription {
        media: "audio".into(),
        ssrc: Some(local.ssrc),
        payload_types,
        rtcp_mux: true,
        sources: vec![Source {
            ssrc: local.ssrc,
            parameters: vec![Parameter::new("cname", &cname(local.ssrc))],
        }],
    };
    let setup = match offer.dtls_role {
        DtlsRole::Client => Setup::Active,
        DtlsRole::Server => Setup::Passive,
    };
    let transport = IceUdpTransport {
        ufrag: Some(local.ufrag.clone()),
        pwd: Some(local.pwd.clone()),
        candidates: local.candidates.clone(),
        skipped_candidates: 0,
        fingerprints: vec![Fingerprint {
            hash: "sha-256".into(),
            setup: Some(setup),
            value: fingerprint_sha256.to_string(),
        }],
    };
    let content = Content {
        creator: offer.creator,
        name: offer.content_name.clone(),
        senders: Senders::Both,
        description: Some(Description::Rtp(description)),
        transport: Some(Transport::IceUdp(transport)),
    };
    let group = offer.bundle.then(|| Group {
        semantics: "BUNDLE".into(),
        contents: vec![offer.content_name.clone()],
    });
    (content, group)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jingle::Jingle;
    use crate::testing::{first_jingle, BROWSER_CALL, BROWSER_PCMU_CALL};

    fn browser_offer() -> Jingle {
        Jingle::parse(&first_jingle(BROWSER_CALL, "session-initiate")).unwrap()
    }

    fn keep_codecs(jingle: &mut Jingle, names: &[&str]) {
        for content in &mut jingle.contents {
            if let Some(Description::Rtp(rtp)) = &mut content.description {
                rtp.payload_types
                    .retain(|pt| names.iter().any(|n| pt.name.as_deref() == Some(n)));
            }
        }
    }

    #[test]
    fn browser_offer_gets_opus_and_its_dtmf() {
        let offer = read_offer(&browser_offer(), true).unwrap();
        assert_eq!((offer.codec, offer.payload_type), (Codec::Opus, 111));
        assert_eq!(offer.dtmf_payload_type, Some(110));
        assert_eq!(offer.dtls_role, DtlsRole::Client);
        assert_eq!(offer.fingerprint.hash, "sha-256");
        assert_eq!(offer.fingerprint.digest.len(), 32);
        assert!(offer.bundle);
        assert_eq!(offer.ice_ufrag, "DTpP");
    }

    #[test]
    fn captured_pcmu_only_offer_gets_pcmu_and_8k_dtmf() {
        let jingle = Jingle::parse(&first_jingle(BROWSER_PCMU_CALL, "session-initiate")).unwrap();
        let offer = read_offer(&jingle, true).unwrap();
        assert_eq!((offer.codec, offer.payload_type), (Codec::Pcmu, 0));
        assert_eq!(offer.dtmf_payload_type, Some(126));
    }

    #[test]
    fn pcma_is_the_last_choice() {
        let mut jingle = browser_offer();
        keep_codecs(&mut jingle, &["PCMA", "G722", "telephone-event"]);
        let offer = read_offer(&jingle, true).unwrap();
        assert_eq!((offer.codec, offer.payload_type), (Codec::Pcma, 8));
        assert_eq!(offer.dtmf_payload_type, Some(126));
    }

    #[test]
    fn refusals_carry_the_right_reason() {
        let mut no_codec = browser_offer();
        keep_codecs(&mut no_codec, &["G722", "CN"]);
        assert_eq!(
            read_offer(&no_codec, true),
            Err(EndReason::UnsupportedApplications)
        );

        let mut no_ice = browser_offer();
        no_ice.contents[0].transport = Some(Transport::Other(
            "urn:xmpp:jingle:transports:raw-udp:1".into(),
        ));
        assert_eq!(
            read_offer(&no_ice, true),
            Err(EndReason::UnsupportedTransports)
        );

        let mut no_fingerprint = browser_offer();
        if let Some(Transport::IceUdp(t)) = &mut no_fingerprint.contents[0].transport {
            t.fingerprints.clear();
        }
        assert_eq!(
            read_offer(&no_fingerprint, true),
            Err(EndReason::NoFingerprint)
        );

        let mut no_mux = browser_offer();
        if let Some(Description::Rtp(rtp)) = &mut no_mux.contents[0].description {
            rtp.rtcp_mux = false;
        }
        assert_eq!(read_offer(&no_mux, true), Err(EndReason::NoRtcpMux));

        let mut video_only = browser_offer();
        if let Some(Description::Rtp(rtp)) = &mut video_only.contents[0].description {
            rtp.media = "video".into();
        }
        assert_eq!(
            read_offer(&video_only, true),
            Err(EndReason::UnsupportedApplications)
        );
    }

    #[test]
    fn dtls_role_follows_the_offer() {
        for (setup, prefer_active, expected) in [
            (Setup::Actpass, true, DtlsRole::Client),
            (Setup::Actpass, false, DtlsRole::Server),
            (Setup::Active, true, DtlsRole::Server),
            (Setup::Passive, false, DtlsRole::Client),
        ] {
            let mut jingle = browser_offer();
            if let Some(Transport::IceUdp(t)) = &mut jingle.contents[0].transport {
                t.fingerprints[0].setup = Some(setup);
            }
            assert_eq!(
                read_offer(&jingle, prefer_active).unwrap().dtls_role,
                expected
            );
        }
    }

    #[test]
    fn answer_has_codec_dtmf_mux_and_never_actpass() {
        let offer = read_offer(&browser_offer(), true).unwrap();
        let local = LocalTransport {
            ufrag: "abcd".into(),
            pwd: "0123456789abcdefghijkl".into(),
            candidates: Vec::new(),
            ssrc: 1234,
        };
        let (content, group) = answer(&offer, &local, "AA:BB");
        let rtp = content.rtp().unwrap();
        let ids: Vec<u8> = rtp.payload_types.iter().map(|p| p.id).collect();
        assert_eq!(ids, [111, 110]);
        assert!(rtp.rtcp_mux);
        let transport = content.ice_udp().unwrap();
        assert_eq!(transport.fingerprints[0].setup, Some(Setup::Active));
        assert_eq!(group.unwrap().contents, ["0"]);
    }
}
