//! The test caller: a user who places real calls through the XMPP server. Its offer is the one a
//! browser sends (the captured Chromium offer, restricted to the codecs a test asks for), and
//! its media is real ICE (controlling), DTLS-SRTP and RTP, built on the gateway's own media leg
//! in the other role.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jingle_gateway::config::MediaConfig;
use jingle_gateway::media::codec::{Decoder, Encoder, FRAME_SAMPLES};
use jingle_gateway::media::dtmf::{Digit, DtmfReceiver, DtmfSender};
use jingle_gateway::media::engine::MediaEngine;
use jingle_gateway::media::inband_dtmf::tone_for;
use jingle_gateway::media::leg::{IceRole, LegEvent, MediaLeg};
use jingle_gateway::media::rtp::RtpSender;
use jingle_gateway::media::stats::MediaStats;
use jingle_gateway::protocol::ice_udp::{
    Candidate, CandidateType, Fingerprint, IceUdpTransport, Setup,
};
use jingle_gateway::protocol::jingle::{Action, Description, Jingle, Sid, Transport};
use jingle_gateway::protocol::jmi::{Jmi, NS_JMI};
use jingle_gateway::types::{Codec, DtlsRole, RemoteFingerprint, FINGERPRINT_HASHES};
use minidom::Element;
use webrtc_util::marshal::Unmarshal;

use super::audio::Tone;
use super::client::XmppClient;
use super::relay::Relay;

const CAPTURE: &str = include_str!("../fixtures/interop/browser-call-as-seen-by-component.xml");

/// The captured browser offer (`session-initiate` payload).
fn browser_offer() -> Jingle {
    let start = CAPTURE.find("<jingle").expect("capture has Jingle");
    let end = start + CAPTURE[start..].find("</jingle>").expect("closed") + "</jingle>".len();
    let element: Element = CAPTURE[start..end].parse().expect("well-formed");
    Jingle::parse(&element).expect("browser offer parses")
}

/// What a call offers and how it rings.
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// Encoding names kept in the offer (telephone-event is always kept).
    pub codecs: Vec<&'static str>,
    /// Ring with XEP-0353 first.
    pub jmi: bool,
    /// Candidates added to the offer besides the real ones.
    pub extra_candidates: Vec<Candidate>,
    /// Offer only `extra_candidates` (so ICE cannot connect when they lead nowhere).
    pub only_extra_candidates: bool,
    /// Signal a fingerprint that is not our certificate's.
    pub wrong_fingerprint: bool,
    /// Use only the gateway's candidates of this type (to force a path, such as its relay).
    pub only_gateway_candidates: Option<CandidateType>,
    /// Route the media through this relay: the gateway sees only its gateway side, the caller
    /// only its caller side.
    pub relay: Option<Arc<Relay>>,
}

impl CallSetup {
    /// The full browser offer (Opus first).
    pub fn browser() -> Self {
        Self {
            codecs: vec!["opus", "red", "G722", "PCMU", "PCMA", "CN"],
            ..Self::only("opus")
        }
    }

    /// An offer of one codec.
    pub fn only(codec: &'static str) -> Self {
        Self {
            codecs: vec![codec],
            jmi: false,
            extra_candidates: Vec::new(),
            only_extra_candidates: false,
            wrong_fingerprint: false,
            only_gateway_candidates: None,
            relay: None,
        }
    }
}

/// A host candidate at `address`.
pub fn host_candidate(address: std::net::SocketAddr) -> Candidate {
    Candidate {
        component: 1,
        foundation: "1".into(),
        generation: 0,
        id: None,
        ip: address.ip(),
        port: address.port(),
        priority: 2_130_706_431,
        protocol: "udp".into(),
        candidate_type: CandidateType::Host,
        rel_addr: None,
        rel_port: None,
        network: None,
    }
}

/// What to do during an exchange of media.
#[derive(Debug, Clone, Default)]
pub struct Exchange {
    /// How long to send.
    pub duration: Duration,
    /// The tone sent.
    pub tone_hz: f32,
    /// Keys to press (RFC 4733), starting after one second.
    pub dtmf: &'static str,
    /// Send forged SRTP (bad tags) and replays of our own packets among the real ones.
    pub hostile: bool,
    /// Before the first real packet, send this many forged SRTP packets, each from another
    /// SSRC (an attacker taking the stream's SSRC slots before the genuine one comes).
    pub ssrc_flood: u32,
    /// Load mode: send one second of tone encoded once, in a loop, and count what comes back
    /// without decoding it (so that many calls fit on one machine with the gateway).
    pub light: bool,
    /// Key presses at given times after media started.
    pub script: Vec<(Duration, Press)>,
    /// Send speech (the recorded fixture, in a loop) instead of the tone.
    pub speech: bool,
    /// Send audio in this codec and payload type instead of the answered one (as libwebrtc
    /// does when it answers PCMU to an offer that also listed Opus).
    pub send_as: Option<(Codec, u8)>,
}

/// A way of pressing a key.
#[derive(Debug, Clone)]
pub enum Press {
    /// An RFC 4733 event.
    Rfc4733(char),
    /// DTMF tones in the audio (150 ms).
    Inband(char),
    /// Digits typed in a chat message to the called JID.
    Chat(&'static str),
}

impl Exchange {
    /// `seconds` of a tone at `hz`.
    pub fn tone(seconds: u64, hz: f32) -> Self {
        Self {
            duration: Duration::from_secs(seconds),
            tone_hz: hz,
            ..Self::default()
        }
    }
}

/// What came back during an exchange.
#[derive(Debug, Default)]
pub struct Received {
    /// Decoded audio, 48 kHz mono.
    pub pcm: Vec<i16>,
    /// Keys received as RFC 4733 events.
    pub digits: String,
    /// RTP packets received.
    pub packets: u64,
    /// The Jingle reason, if the gateway ended the call.
    pub terminated: Option<String>,
    /// Why the caller's own media failed, if it did.
    pub media_failed: Option<String>,
    /// Chat messages received during the exchange: (from, body).
    pub messages: Vec<(String, String)>,
}

/// A call in progress.
pub struct Call {
    /// Session id.
    pub sid: String,
    /// The JID the session went to (bare, or the full JID that proceeded).
    pub to: String,
    /// The codec the gateway chose.
    pub codec: Codec,
    /// The gateway's candidates (from its answer, then trickled).
    pub gateway_candidates: Vec<Candidate>,
    /// The type of the gateway's candidates to use, if restricted.
    pub(super) only_gateway_candidates: Option<CandidateType>,
    /// Media goes through a relay: the gateway's trickled candidates are not used.
    pub(super) relayed: bool,
    /// The gateway's current ICE username fragment.
    pub gateway_ufrag: String,
    pub(super) content_name: String,
    pub(super) payload_type: u8,
    pub(super) dtmf_type: Option<u8>,
    pub(super) leg: MediaLeg,
    pub(super) sender: RtpSender,
}

/// A user who places calls (and answers the calls the gateway places, see `callee.rs`).
pub struct TestCaller {
    /// Its XMPP client.
    pub client: XmppClient,
    pub(super) engine: Arc<MediaEngine>,
}

/// Media settings for a caller (or a gateway) in a test: loopback, any free port.
pub fn loopback_media() -> MediaConfig {
    MediaConfig {
        port: 0,
        local_address: Some("127.0.0.1".parse().expect("address")),
        bind_address: "127.0.0.1".parse().expect("address"),
        allow_loopback_candidates: true,
        ..MediaConfig::default()
    }
}

impl TestCaller {
    /// Logs in `user` (created if needed) on the server's c2s port.
    pub async fn new(c2s_port: u16, user: &str) -> TestCaller {
        Self::device(c2s_port, user, "test").await
    }

    /// Logs in `user` as the device `resource` (a user may have several online).
    pub async fn device(c2s_port: u16, user: &str, resource: &str) -> TestCaller {
        let client = XmppClient::login(c2s_port, user, resource).await;
        let engine = MediaEngine::start(&loopback_media(), Arc::new(MediaStats::default()))
            .await
            .expect("caller media");
        TestCaller {
            client,
            engine: Arc::new(engine),
        }
    }

    /// Calls `callee` with `setup`; returns the call once the gateway accepted it, or the reason
    /// it was refused (IQ error condition, Jingle reason or JMI rejection).
    pub async fn call(&mut self, callee: &str, setup: &CallSetup) -> Result<Call, String> {
        let sid = format!("call-{:016x}", rand::random::<u64>());
        let mut leg = MediaLeg::new(self.engine.clone(), IceRole::Controlling)
            .await
            .map_err(|e| e.to_string())?;
        let (ufrag, pwd) = leg.local_credentials().await;
        let mut candidates = leg.initial_candidates().await;
        if setup.only_extra_candidates {
            candidates.clear();
        }
        candidates.extend(setup.extra_candidates.iter().cloned());
        if let Some(relay) = &setup.relay {
            candidates = vec![host_candidate(relay.gateway_side)];
        }

        let mut to = callee.to_string();
        if setup.jmi {
            let propose = Jmi::Propose {
                sid: Sid(sid.clone()),
                media: vec!["audio".into()],
            }
            .to_element();
            self.client.send_message(callee, vec![propose]).await;
            let answer = self
                .client
                .expect("JMI proceed or reject", Duration::from_secs(10), |s| {
                    s.name() == "message"
                        && (s.has_child("proceed", NS_JMI) || s.has_child("reject", NS_JMI))
                })
                .await;
            if answer.has_child("reject", NS_JMI) {
                leg.close().await;
                return Err("jmi-reject".into());
            }
            to = answer.attr("from").unwrap_or(callee).to_string();
        }

        let mut offer = browser_offer();
        offer.sid = Sid(sid.clone());
        let content = &mut offer.contents[0];
        if let Some(Description::Rtp(rtp)) = &mut content.description {
            rtp.payload_types.retain(|pt| {
                let name = pt.name.as_deref().unwrap_or_default();
                name == "telephone-event"
                    || setup.codecs.iter().any(|c| c.eq_ignore_ascii_case(name))
            });
        }
        content.transport = Some(Transport::IceUdp(IceUdpTransport {
            ufrag: Some(ufrag),
            pwd: Some(pwd),
            candidates,
            skipped_candidates: 0,
            fingerprints: vec![Fingerprint {
                hash: "sha-256".into(),
                setup: Some(Setup::Actpass),
                value: if setup.wrong_fingerprint {
                    Fingerprint::format_hex(&[0xAB; 32])
                } else {
                    self.engine.certificate.fingerprint_sha256.clone()
                },
            }],
        }));
        let answer = self.client.iq(&to, "set", offer.to_element()).await;
        if answer.attr("type") == Some("error") {
            leg.close().await;
            let condition = answer
                .get_child("error", super::client::NS_CLIENT)
                .and_then(|e| e.children().next())
                .map(|c| c.name().to_string())
                .unwrap_or_default();
            return Err(condition);
        }

        let sid_matches = |s: &Element, action: &str| {
            jingle_of(s).is_some_and(|j| j.sid.0 == sid && j.action.as_str() == action)
        };
        let accept_or_terminate = self
            .client
            .expect("session-accept", Duration::from_secs(10), |s| {
                sid_matches(s, "session-accept") || sid_matches(s, "session-terminate")
            })
            .await;
        let accept = jingle_of(&accept_or_terminate).expect("jingle");
        if accept.action == Action::SessionTerminate {
            leg.close().await;
            return Err(accept
                .reason
                .map(|r| r.reason.as_str().to_string())
                .unwrap_or_default());
        }
        let content = &accept.contents[0];
        let rtp = content.rtp().expect("answer has RTP");
        let transport = content.ice_udp().expect("answer has ICE-UDP");
        let chosen = &rtp.payload_types[0];
        let codec = [Codec::Opus, Codec::Pcmu, Codec::Pcma]
            .into_iter()
            .find(|c| chosen.is(c.name(), c.clock_rate()))
            .expect("a codec we know");
        let dtmf_type = rtp
            .payload_types
            .iter()
            .find(|p| p.is("telephone-event", codec.clock_rate()))
            .map(|p| p.id);
        let (fingerprint, their_setup) = FINGERPRINT_HASHES
            .iter()
            .find_map(|hash| {
                let f = transport.fingerprint(hash)?;
                Some((
                    RemoteFingerprint {
                        hash,
                        digest: f.bytes()?,
                    },
                    f.setup,
                ))
            })
            .expect("answer fingerprint");
        assert_ne!(
            their_setup,
            Some(Setup::Actpass),
            "the answer must not say actpass"
        );
        let role = if their_setup == Some(Setup::Active) {
            DtlsRole::Server
        } else {
            DtlsRole::Client
        };
        leg.connect(
            transport.ufrag.as_deref().expect("ufrag"),
            transport.pwd.as_deref().expect("pwd"),
            fingerprint,
            role,
        );
        let mut usable: Vec<Candidate> = transport
            .candidates
            .iter()
            .filter(|c| {
                setup
                    .only_gateway_candidates
                    .is_none_or(|t| c.candidate_type == t)
            })
            .cloned()
            .collect();
        if let Some(relay) = &setup.relay {
            let gateway = usable
                .iter()
                .find(|c| c.candidate_type == CandidateType::Host && c.ip.is_ipv4())
                .expect("a host candidate of the gateway");
            relay.set_gateway(std::net::SocketAddr::new(gateway.ip, gateway.port));
            usable = vec![host_candidate(relay.caller_side)];
        }
        leg.add_remote_candidates(&usable);
        let sender = RtpSender::new(
            rand::random(),
            chosen.id,
            dtmf_type,
            rand::random(),
            rand::random(),
        );
        Ok(Call {
            sid,
            to,
            codec,
            gateway_candidates: transport.candidates.clone(),
            only_gateway_candidates: setup.only_gateway_candidates,
            relayed: setup.relay.is_some(),
            gateway_ufrag: transport.ufrag.clone().unwrap_or_default(),
            content_name: content.name.clone(),
            payload_type: chosen.id,
            dtmf_type,
            leg,
            sender,
        })
    }

    /// Sends a tone (and keys) for a while and collects what comes back.
    pub async fn exchange(&mut self, call: &mut Call, plan: &Exchange) -> Received {
        let mut received = Received::default();
        let (send_codec, send_type) = plan.send_as.unwrap_or((call.codec, call.payload_type));
        let mut encoder = Encoder::new(send_codec).expect("encoder");
        let mut decoder = Decoder::new(call.codec).expect("decoder");
        let mut tone = Tone::new(plan.tone_hz);
        let mut keys = DtmfSender::default();
        let mut key_receiver = DtmfReceiver::default();
        let units = send_codec.frame_timestamp_units();
        let mut encoded = vec![0u8; 1500];
        let mut script: std::collections::VecDeque<(Duration, Press)> =
            plan.script.iter().cloned().collect();
        let mut overlay: Vec<i16> = Vec::new();
        let speech = if plan.speech {
            speech_fixture()
        } else {
            Vec::new()
        };
        let mut speech_at = 0usize;
        // One second of the tone, encoded once (an integer number of periods of any whole Hz).
        let precoded: Vec<Vec<u8>> = if plan.light {
            (0..50)
                .map(|_| {
                    let n = encoder
                        .encode(&tone.next_frame(), &mut encoded)
                        .expect("encode");
                    encoded[..n].to_vec()
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut sent: Vec<Bytes> = Vec::new();
        let mut secured = call.leg.is_secured();
        let mut ticks = 0u64;
        let total_ticks = (plan.duration.as_millis() / 20) as u64;
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = tokio::time::Instant::now() + plan.duration + Duration::from_secs(15);
        while ticks < total_ticks && received.terminated.is_none() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    assert!(received.media_failed.is_some(), "the call never connected");
                    break;
                }
                _ = interval.tick(), if secured => {
                    ticks += 1;
                    if ticks == 1 {
                        for n in 0..plan.ssrc_flood {
                            let mut forged = vec![0x80, call.payload_type & 0x7f];
                            forged.extend_from_slice(&(n as u16).to_be_bytes());
                            forged.extend_from_slice(&rand::random::<[u8; 8]>());
                            forged.extend_from_slice(&[0x55; 50]);
                            call.leg.send_datagram(&forged).await;
                            if n % 100 == 99 {
                                // Paced, so that the socket buffers do not drop them.
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                        }
                    }
                    if ticks == 50 {
                        for key in plan.dtmf.chars().filter_map(Digit::from_char) {
                            keys.push(key);
                        }
                    }
                    let elapsed = Duration::from_millis(ticks * 20);
                    while script.front().is_some_and(|(at, _)| *at <= elapsed) {
                        let Some((_, press)) = script.pop_front() else { break };
                        match press {
                            Press::Rfc4733(key) => {
                                keys.push(Digit::from_char(key).expect("a key"));
                            }
                            Press::Inband(key) => {
                                overlay.extend(tone_for(key, 150, 5000.0));
                                overlay.extend(std::iter::repeat_n(0, 48 * 100));
                            }
                            Press::Chat(text) => {
                                let body = Element::builder("body", super::client::NS_CLIENT).append(text).build();
                                let to = call.to.clone();
                                self.client.send_message(&to, vec![body]).await;
                            }
                        }
                    }
                    if let Some(event) = keys.next_frame(units) {
                        if let Some(header) = call.sender.event(&event, units) {
                            call.leg.send_rtp(&header, &event.payload.to_bytes()).await;
                        }
                        continue;
                    }
                    let payload: &[u8] = if !overlay.is_empty() {
                        let mut frame = [0i16; FRAME_SAMPLES];
                        for (sample, tone) in frame.iter_mut().zip(overlay.drain(..FRAME_SAMPLES.min(overlay.len()))) {
                            *sample = tone;
                        }
                        let n = encoder.encode(&frame, &mut encoded).expect("encode");
                        &encoded[..n]
                    } else if plan.light {
                        &precoded[(ticks % 50) as usize]
                    } else if plan.speech {
                        let mut frame = [0i16; FRAME_SAMPLES];
                        for sample in frame.iter_mut() {
                            *sample = speech[speech_at % speech.len()];
                            speech_at += 1;
                        }
                        let n = encoder.encode(&frame, &mut encoded).expect("encode");
                        &encoded[..n]
                    } else {
                        let n = encoder.encode(&tone.next_frame(), &mut encoded).expect("encode");
                        &encoded[..n]
                    };
                    let mut header = call.sender.audio(units, payload.len());
                    header.payload_type = send_type;
                    let packet = call.leg.send_rtp(&header, payload).await;
                    if plan.hostile {
                        sent.extend(packet);
                    }
                    if plan.hostile && ticks % 10 == 5 {
                        // A forged packet (its tag broken) and a replay of an earlier one.
                        if let Some(last) = sent.last() {
                            // An unseen sequence number (so the replay check passes), a broken tag.
                            let mut forged = last.to_vec();
                            let seq = u16::from_be_bytes([forged[2], forged[3]]).wrapping_add(30);
                            forged[2..4].copy_from_slice(&seq.to_be_bytes());
                            let end = forged.len() - 1;
                            forged[end] ^= 0x55;
                            call.leg.send_datagram(&forged).await;
                        }
                        if sent.len() > 5 {
                            let old = sent[sent.len() - 5].clone();
                            call.leg.send_datagram(&old).await;
                        }
                        call.leg.send_datagram(&[0x05u8; 40]).await;
                        // Larger than any RTP packet (and than an Ethernet MTU).
                        call.leg.send_datagram(&[0x80u8; 3000]).await;
                    }
                }
                event = call.leg.next_event() => match event {
                    LegEvent::Secured => secured = true,
                    LegEvent::Rtp(packet) => {
                        let mut buf = packet.clone();
                        let Ok(rtp) = rtp::packet::Packet::unmarshal(&mut buf) else { continue };
                        received.packets += 1;
                        if Some(rtp.header.payload_type) == call.dtmf_type {
                            if let Some(key) = key_receiver.receive(rtp.header.timestamp, &rtp.payload) {
                                received.digits.push(key.as_char());
                            }
                        } else if rtp.header.payload_type == call.payload_type && !plan.light {
                            let _ = decoder.decode(Some(&rtp.payload), FRAME_SAMPLES, &mut received.pcm);
                        }
                    }
                    LegEvent::Rtcp(packet) => {
                        // Answered at once, as RFC 3550 receivers do (in their next report):
                        // the gateway learns the round trip.
                        if let Some(answer) = answer_sender_report(&packet, call.sender.ssrc()) {
                            call.leg.send_rtcp(&answer).await;
                        }
                    }
                    LegEvent::LocalCandidate(_) => {}
                    LegEvent::Failed(reason) => {
                        // Keep listening: the gateway's session-terminate says why.
                        received.media_failed = Some(reason.to_string());
                        secured = false;
                    }
                },
                stanza = self.client.read() => {
                    let Some(stanza) = stanza else { panic!("XMPP stream ended") };
                    match jingle_of(&stanza) {
                        Some(j) if j.sid.0 == call.sid && j.action == Action::TransportInfo => {
                            for content in &j.contents {
                                if let Some(t) = content.ice_udp() {
                                    if let (Some(ufrag), Some(pwd)) = (&t.ufrag, &t.pwd) {
                                        if *ufrag != call.gateway_ufrag {
                                            // The gateway's answer to our ICE restart.
                                            call.gateway_ufrag = ufrag.clone();
                                            call.leg.set_remote_credentials(ufrag, pwd).await.expect("remote credentials");
                                        }
                                    }
                                    call.gateway_candidates.extend(t.candidates.iter().cloned());
                                    let usable: Vec<Candidate> = t
                                        .candidates
                                        .iter()
                                        .filter(|_| !call.relayed)
                                        .filter(|c| call.only_gateway_candidates.is_none_or(|k| c.candidate_type == k))
                                        .cloned()
                                        .collect();
                                    call.leg.add_remote_candidates(&usable);
                                }
                            }
                        }
                        Some(j) if j.sid.0 == call.sid && j.action == Action::SessionTerminate => {
                            received.terminated = Some(j.reason.map(|r| r.reason.as_str().to_string()).unwrap_or_default());
                        }
                        None if stanza.name() == "message" => {
                            if let Some(body) = stanza.get_child("body", super::client::NS_CLIENT) {
                                let from = stanza.attr("from").unwrap_or_default().to_string();
                                received.messages.push((from, body.text()));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        received
    }

    /// Hangs up with `session-terminate` (success) and releases the media.
    pub async fn hang_up(&mut self, mut call: Call) {
        let mut terminate = Jingle::new(Action::SessionTerminate, Sid(call.sid.clone()));
        terminate.reason = Some(jingle_gateway::protocol::jingle::ReasonElement {
            reason: jingle_gateway::protocol::jingle::Reason::Success,
            text: None,
        });
        let answer = self
            .client
            .iq(&call.to, "set", terminate.to_element())
            .await;
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "terminate refused: {}",
            String::from(&answer)
        );
        call.leg.close().await;
    }

    /// Restarts ICE (as clients do when the network changes): new credentials and candidates in a
    /// transport-info; the gateway's new credentials come back in one (handled by `exchange`).
    pub async fn restart_ice(&mut self, call: &mut Call) {
        let (ufrag, pwd) = call.leg.restart().await.expect("restart");
        let candidates = call.leg.initial_candidates().await;
        let mut info = Jingle::new(Action::TransportInfo, Sid(call.sid.clone()));
        info.contents = vec![jingle_gateway::protocol::jingle::Content {
            creator: jingle_gateway::protocol::jingle::Creator::Initiator,
            name: call.content_name.clone(),
            senders: jingle_gateway::protocol::jingle::Senders::Both,
            description: None,
            transport: Some(Transport::IceUdp(IceUdpTransport {
                ufrag: Some(ufrag),
                pwd: Some(pwd),
                candidates,
                ..IceUdpTransport::default()
            })),
        }];
        let answer = self.client.iq(&call.to, "set", info.to_element()).await;
        assert_eq!(
            answer.attr("type"),
            Some("result"),
            "restart refused: {}",
            String::from(&answer)
        );
    }

    /// Drops the media without telling the gateway (a client that crashed).
    pub async fn vanish(&mut self, mut call: Call) -> String {
        call.leg.close().await;
        call.sid
    }

    /// Calls `callee` and returns the Jingle reason the gateway ended the call with, whether it
    /// refused the session-initiate or accepted and then terminated (within `timeout`).
    pub async fn call_ended(
        &mut self,
        callee: &str,
        setup: &CallSetup,
        timeout: Duration,
    ) -> Option<String> {
        match self.call(callee, setup).await {
            Err(reason) => Some(reason),
            Ok(call) => self.wait_terminate(&call.sid, timeout).await,
        }
    }

    /// Waits for the gateway's `session-terminate` of `sid`; returns its reason.
    pub async fn wait_terminate(&mut self, sid: &str, timeout: Duration) -> Option<String> {
        let stanza = self
            .client
            .try_expect(timeout, |s| {
                jingle_of(s).is_some_and(|j| j.sid.0 == sid && j.action == Action::SessionTerminate)
            })
            .await?;
        jingle_of(&stanza)
            .and_then(|j| j.reason)
            .map(|r| r.reason.as_str().to_string())
    }

    /// Media counters of this caller.
    pub fn stats(&self) -> &MediaStats {
        &self.engine.stats
    }

    /// Closes the caller's media port.
    pub async fn close(self) {
        self.engine.close().await;
        self.client.close().await;
    }
}

/// The recorded speech fixture, 48 kHz mono.
/// The speech fixture, 48 kHz mono.
pub fn speech_fixture() -> Vec<i16> {
    let bytes = include_bytes!("../fixtures/audio/speech-16k.flac");
    jingle_gateway::prompt::decode::decode(bytes, Some("flac"), 60).expect("speech fixture decodes")
}

/// The Jingle payload of an IQ set, parsed.
pub fn jingle_of(stanza: &Element) -> Option<Jingle> {
    if stanza.name() != "iq" || stanza.attr("type") != Some("set") {
        return None;
    }
    stanza
        .get_child("jingle", jingle_gateway::protocol::jingle::NS_JINGLE)
        .and_then(|j| Jingle::parse(j).ok())
}

/// A receiver report answering the sender report in `plain` (its LSR echoed, no delay held),
/// from our stream `ours`; none if `plain` holds no sender report.
fn answer_sender_report(plain: &[u8], ours: u32) -> Option<Vec<u8>> {
    use rtcp::receiver_report::ReceiverReport;
    use rtcp::reception_report::ReceptionReport;
    use rtcp::sender_report::SenderReport;
    use webrtc_util::marshal::Marshal;
    let mut buf = plain;
    let packets = rtcp::packet::unmarshal(&mut buf).ok()?;
    let report = packets
        .iter()
        .find_map(|p| p.as_any().downcast_ref::<SenderReport>())?;
    let answer = ReceiverReport {
        ssrc: ours,
        reports: vec![ReceptionReport {
            ssrc: report.ssrc,
            last_sender_report: (report.ntp_time >> 16) as u32,
            delay: 0,
            ..ReceptionReport::default()
        }],
        ..ReceiverReport::default()
    };
    answer.marshal().ok().map(|bytes| bytes.to_vec())
}
