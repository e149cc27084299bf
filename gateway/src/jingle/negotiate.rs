//! Offer/answer, both ways: reads a caller's audio offer into what the media leg needs and
//! writes the gateway's answer; writes the gateway's own offer when it places a call, and reads
//! the callee's answer.
//!
//! Answering, Opus is chosen when offered, else PCMU, else PCMA; the `telephone-event` at the
//! chosen codec's clock rate is answered whenever offered (without it the caller's DTMF sender
//! stays disabled); `<rtcp-mux/>` is required and answered; the DTLS role is `active` or
//! `passive`, never `actpass`. Calling, the offer lists all three codecs with `telephone-event`
//! at both clock rates and `setup='actpass'`, and the callee's first codec is taken.

use crate::protocol::ice_udp::{Candidate, Fingerprint, IceUdpTransport, Setup};
use crate::protocol::jingle::{Content, Creator, Description, Group, Jingle, Senders, Transport};
use crate::protocol::rtp::{Parameter, PayloadType, RtpDescription, Source};

use crate::types::{cname, Codec, DtlsRole, EndReason, RemoteFingerprint, FINGERPRINT_HASHES};

/// What a payload type carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Audio in this codec.
    Audio(Codec),
    /// RFC 4733 `telephone-event`.
    TelephoneEvent,
}

impl PayloadKind {
    /// What a payload type carries, if the gateway understands it.
    fn of(pt: &PayloadType) -> Option<Self> {
        Codec::PREFERENCE
            .iter()
            .find(|codec| pt.is(codec.name(), codec.clock_rate()))
            .map(|codec| Self::Audio(*codec))
            .or_else(|| {
                [8000, 48000]
                    .iter()
                    .any(|rate| pt.is("telephone-event", *rate))
                    .then_some(Self::TelephoneEvent)
            })
    }
}

/// What the media leg needs from the peer's offer (when answering) or answer (when calling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
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
    /// The other payload types of the offer that the gateway understands. A peer should send
    /// only what the answer lists, but libwebrtc may go on with another codec of the offer.
    pub other_payload_types: Vec<(u8, PayloadKind)>,
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
    /// What else the peer's description said (the call doctor reports it).
    pub offered: OfferFacts,
}

/// What a peer's description offered beyond what the call uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferFacts {
    /// Every payload type, as `name/clockrate[/channels]` (`opus/48000/2`, `PCMU/8000`).
    pub payload_types: Vec<String>,
    /// Whether Opus came with `useinbandfec=1`.
    pub opus_fec: bool,
    /// The `setup` of its DTLS fingerprint (`actpass`, `active`, `passive`), if it said one.
    pub setup: Option<String>,
}

/// Which half of the exchange a description is.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// The peer's offer; `prefer_active` picks our DTLS role when it says `actpass`.
    Offer { prefer_active: bool },
    /// The peer's answer to our offer.
    Answer,
}

/// Name of the audio content of the calls the gateway places.
pub const OUR_CONTENT: &str = "audio";

/// Payload types of the gateway's offer: each codec, then `telephone-event` at each clock rate
/// (the ids libwebrtc uses, so answers from browsers and apps keep them).
const OUR_PAYLOAD_TYPES: [(u8, &str, u32, u8); 5] = [
    (111, "opus", 48000, 2),
    (0, "PCMU", 8000, 1),
    (8, "PCMA", 8000, 1),
    (110, "telephone-event", 48000, 1),
    (126, "telephone-event", 8000, 1),
];

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

/// Reads the audio offer of a `session-initiate`. `prefer_active` picks our DTLS role when the
/// caller offers `actpass`.
pub fn read_offer(jingle: &Jingle, prefer_active: bool) -> Result<Negotiated, EndReason> {
    read(jingle, Side::Offer { prefer_active })
}

/// Reads the callee's `session-accept` to an offer of ours.
pub fn read_answer(jingle: &Jingle) -> Result<Negotiated, EndReason> {
    read(jingle, Side::Answer)
}

fn read(jingle: &Jingle, side: Side) -> Result<Negotiated, EndReason> {
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
    let speaks = |codec: &Codec, pt: &PayloadType| pt.is(codec.name(), codec.clock_rate());
    let chosen = match side {
        // Answering: our preference among what the caller offers.
        Side::Offer { .. } => Codec::PREFERENCE.iter().find_map(|codec| {
            rtp.payload_types
                .iter()
                .find(|pt| speaks(codec, pt))
                .map(|pt| (*codec, pt.id))
        }),
        // Calling: the callee's first choice among ours.
        Side::Answer => rtp.payload_types.iter().find_map(|pt| {
            Codec::PREFERENCE
                .iter()
                .find(|codec| speaks(codec, pt))
                .map(|codec| (*codec, pt.id))
        }),
    };
    let (codec, payload_type) = chosen.ok_or(EndReason::UnsupportedApplications)?;
    let dtmf_payload_type = rtp
        .payload_types
        .iter()
        .find(|pt| pt.is("telephone-event", codec.clock_rate()))
        .map(|pt| pt.id);

    let transport = audio.ice_udp().ok_or(EndReason::UnsupportedTransports)?;
    let (Some(ice_ufrag), Some(ice_pwd)) = (&transport.ufrag, &transport.pwd) else {
        return Err(EndReason::UnsupportedTransports);
    };
    if !crate::protocol::ice_udp::credentials_valid(ice_ufrag, ice_pwd) {
        return Err(EndReason::BadIceCredentials);
    }
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
    let dtls_role = match (setup, side) {
        (Some(Setup::Active), _) => DtlsRole::Server,
        (Some(Setup::Passive), _) => DtlsRole::Client,
        (
            _,
            Side::Offer {
                prefer_active: true,
            },
        ) => DtlsRole::Client,
        (_, Side::Offer { .. }) => DtlsRole::Server,
        // An answer must not say actpass; without `setup` the answerer is active (RFC 4145).
        (_, Side::Answer) => DtlsRole::Server,
    };
    // What the peer sends is numbered as the offer says: the caller's offer, or ours.
    let offered = match side {
        Side::Offer { .. } => rtp.payload_types.clone(),
        Side::Answer => our_payload_types(),
    };
    let facts = OfferFacts {
        payload_types: rtp
            .payload_types
            .iter()
            .map(|pt| {
                let name = pt.name.as_deref().unwrap_or("static");
                let rate = pt.clockrate.map(|r| format!("/{r}")).unwrap_or_default();
                let channels = match pt.channels {
                    1 => String::new(),
                    n => format!("/{n}"),
                };
                format!("{name}{rate}{channels}")
            })
            .collect(),
        opus_fec: rtp.payload_types.iter().any(|pt| {
            pt.is("opus", 48000)
                && pt
                    .parameters
                    .iter()
                    .any(|p| p.name == "useinbandfec" && p.value.as_deref() == Some("1"))
        }),
        setup: setup.map(|s| s.as_str().to_string()),
    };
    let other_payload_types = offered
        .iter()
        .filter(|pt| pt.id != payload_type && Some(pt.id) != dtmf_payload_type)
        .filter_map(|pt| Some((pt.id, PayloadKind::of(pt)?)))
        .collect();
    Ok(Negotiated {
        content_name: audio.name.clone(),
        creator: audio.creator,
        codec,
        payload_type,
        dtmf_payload_type,
        other_payload_types,
        ice_ufrag: ice_ufrag.clone(),
        ice_pwd: ice_pwd.clone(),
        candidates: transport.candidates.clone(),
        fingerprint,
        dtls_role,
        bundle: jingle
            .group
            .as_ref()
            .is_some_and(|g| g.semantics == "BUNDLE" && g.contents.contains(&audio.name)),
        offered: facts,
    })
}

/// Writes the offer of a call the gateway places: one audio content with every codec we bridge,
/// our transport and `setup='actpass'`.
pub fn offer(local: &LocalTransport, fingerprint_sha256: &str) -> Content {
    Content {
        creator: Creator::Initiator,
        name: OUR_CONTENT.into(),
        senders: Senders::Both,
        description: Some(Description::Rtp(description(local, our_payload_types()))),
        transport: Some(Transport::IceUdp(transport(
            local,
            fingerprint_sha256,
            Setup::Actpass,
        ))),
    }
}

/// The payload types of our offer.
fn our_payload_types() -> Vec<PayloadType> {
    OUR_PAYLOAD_TYPES
        .iter()
        .map(|&(id, name, clockrate, channels)| PayloadType {
            id,
            name: Some(name.into()),
            clockrate: Some(clockrate),
            channels,
            parameters: match name {
                "opus" => vec![
                    Parameter::new("minptime", "10"),
                    Parameter::new("useinbandfec", "1"),
                ],
                "telephone-event" => vec![Parameter::new("events", "0-15")],
                _ => Vec::new(),
            },
        })
        .collect()
}

/// Writes the answer: our audio content for `session-accept` and, when the offer bundled,
/// the BUNDLE group. `fingerprint_sha256` is our certificate's fingerprint.
pub fn answer(
    offer: &Negotiated,
    local: &LocalTransport,
    fingerprint_sha256: &str,
) -> (Content, Option<Group>) {
    // Opus: we take 10 ms packets and up, and ask for in-band FEC when the peer offered it
    // (RFC 7587: the answer's useinbandfec says what the answerer wants to receive).
    let parameters = match offer.codec {
        Codec::Opus if offer.offered.opus_fec => vec![
            Parameter::new("minptime", "10"),
            Parameter::new("useinbandfec", "1"),
        ],
        Codec::Opus => vec![Parameter::new("minptime", "10")],
        _ => Vec::new(),
    };
    let mut payload_types = vec![PayloadType {
        id: offer.payload_type,
        name: Some(offer.codec.name().to_string()),
        clockrate: Some(offer.codec.clock_rate()),
        channels: offer.codec.announced_channels(),
        parameters,
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
    let setup = match offer.dtls_role {
        DtlsRole::Client => Setup::Active,
        DtlsRole::Server => Setup::Passive,
    };
    let content = Content {
        creator: offer.creator,
        name: offer.content_name.clone(),
        senders: Senders::Both,
        description: Some(Description::Rtp(description(local, payload_types))),
        transport: Some(Transport::IceUdp(transport(
            local,
            fingerprint_sha256,
            setup,
        ))),
    };
    let group = offer.bundle.then(|| Group {
        semantics: "BUNDLE".into(),
        contents: vec![offer.content_name.clone()],
    });
    (content, group)
}

/// Our RTP description: the payload types, our SSRC and its CNAME, rtcp-mux.
fn description(local: &LocalTransport, payload_types: Vec<PayloadType>) -> RtpDescription {
    RtpDescription {
        media: "audio".into(),
        ssrc: Some(local.ssrc),
        payload_types,
        rtcp_mux: true,
        sources: vec![Source {
            ssrc: local.ssrc,
            parameters: vec![Parameter::new("cname", &cname(local.ssrc))],
        }],
    }
}

/// Our ICE-UDP transport with the DTLS fingerprint and `setup`.
fn transport(local: &LocalTransport, fingerprint_sha256: &str, setup: Setup) -> IceUdpTransport {
    IceUdpTransport {
        ufrag: Some(local.ufrag.clone()),
        pwd: Some(local.pwd.clone()),
        candidates: local.candidates.clone(),
        skipped_candidates: 0,
        fingerprints: vec![Fingerprint {
            hash: "sha-256".into(),
            setup: Some(setup),
            value: fingerprint_sha256.to_string(),
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::jingle::{Action, Jingle, Sid};
    use crate::testing::{first_jingle, BROWSER_CALL, BROWSER_CALLEE, BROWSER_PCMU_CALL};

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
    fn a_browser_answer_gives_its_first_codec_and_our_dtls_server_role() {
        let accept = Jingle::parse(&first_jingle(BROWSER_CALLEE, "session-accept")).unwrap();
        let answer = read_answer(&accept).unwrap();
        assert_eq!((answer.codec, answer.payload_type), (Codec::Opus, 111));
        assert_eq!(answer.dtmf_payload_type, Some(110));
        // The browser answered setup='active': we wait for its ClientHello.
        assert_eq!(answer.dtls_role, DtlsRole::Server);

        let mut pcmu_first = accept.clone();
        keep_codecs(&mut pcmu_first, &["PCMU", "opus", "telephone-event"]);
        if let Some(Description::Rtp(rtp)) = &mut pcmu_first.contents[0].description {
            rtp.payload_types.sort_by_key(|pt| pt.id != 0);
        }
        let answer = read_answer(&pcmu_first).unwrap();
        assert_eq!((answer.codec, answer.payload_type), (Codec::Pcmu, 0));
        assert_eq!(answer.dtmf_payload_type, Some(126));
        // What else the callee may send is numbered as our offer says.
        assert_eq!(
            answer.other_payload_types,
            vec![
                (111, PayloadKind::Audio(Codec::Opus)),
                (8, PayloadKind::Audio(Codec::Pcma)),
                (110, PayloadKind::TelephoneEvent),
            ]
        );
    }

    #[test]
    fn our_offer_is_actpass_with_every_codec_and_both_dtmf_rates() {
        let local = LocalTransport {
            ufrag: "abcd".into(),
            pwd: "0123456789abcdefghijkl".into(),
            candidates: Vec::new(),
            ssrc: 99,
        };
        let content = offer(&local, "AA:BB");
        let mut initiate = Jingle::new(Action::SessionInitiate, Sid("s".into()));
        initiate.contents = vec![content.clone()];
        // Read back as a caller's offer would be: every codec and DTMF rate is there.
        let read = read_offer(&initiate, false).unwrap();
        assert_eq!(
            (read.codec, read.dtmf_payload_type),
            (Codec::Opus, Some(110))
        );
        assert_eq!(read.content_name, OUR_CONTENT);
        let rtp = content.rtp().unwrap();
        assert!(rtp.payload_types.iter().any(|pt| pt.is("PCMA", 8000)));
        assert!(rtp
            .payload_types
            .iter()
            .any(|pt| pt.is("telephone-event", 8000)));
        let transport = content.ice_udp().unwrap();
        assert_eq!(transport.fingerprints[0].setup, Some(Setup::Actpass));
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
        // The browser offered Opus with in-band FEC: the answer asks for it too.
        let opus: Vec<(&str, Option<&str>)> = rtp.payload_types[0]
            .parameters
            .iter()
            .map(|p| (p.name.as_str(), p.value.as_deref()))
            .collect();
        assert_eq!(
            opus,
            [("minptime", Some("10")), ("useinbandfec", Some("1"))]
        );
        // One that did not is not asked for it.
        let without_fec = Negotiated {
            offered: OfferFacts {
                opus_fec: false,
                ..offer.offered.clone()
            },
            ..offer.clone()
        };
        let (content, _) = answer(&without_fec, &local, "AA:BB");
        let parameters = &content.rtp().unwrap().payload_types[0].parameters;
        assert!(parameters.iter().all(|p| p.name != "useinbandfec"));
        assert!(rtp.rtcp_mux);
        let transport = content.ice_udp().unwrap();
        assert_eq!(transport.fingerprints[0].setup, Some(Setup::Active));
        assert_eq!(group.unwrap().contents, ["0"]);
    }
}
