//! One generated call, in either role, with its own ICE agent, DTLS-SRTP and RTP stream on the
//! generator's shared media port: placing a call to the gateway (controlling, our offer read
//! back with the gateway's own `negotiate`), or answering one the gateway places (PCMU, so the
//! gateway transcodes). Audio is a tone encoded once and sent in a loop every 20 ms; what comes
//! back is checked, not decoded, so one core carries many calls.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jid::Jid;
use jingle_gateway::jingle::negotiate::{self, LocalTransport, Negotiated, PayloadKind};
use jingle_gateway::media::codec::{Encoder, FRAME_SAMPLES, SAMPLE_RATE};
use jingle_gateway::media::engine::MediaEngine;
use jingle_gateway::media::leg::{IceRole, LegEvent, MediaLeg};
use jingle_gateway::media::rtp::RtpSender;
use jingle_gateway::protocol::jingle::{Action, Jingle, Reason, ReasonElement, Sid};
use jingle_gateway::types::Codec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use webrtc_util::marshal::Unmarshal;

use crate::measure::{Collector, SendPacing, StreamCheck};
use crate::signalling::Signalling;

/// What every call shares: the media port and one second of tone in each codec.
pub struct Media {
    /// The generator's media engine (one UDP port for all legs).
    pub engine: Arc<MediaEngine>,
    opus: Vec<Bytes>,
    pcmu: Vec<Bytes>,
}

impl Media {
    /// Encodes the tone once per codec.
    pub fn new(engine: Arc<MediaEngine>) -> Self {
        Self {
            engine,
            opus: tone(Codec::Opus),
            pcmu: tone(Codec::Pcmu),
        }
    }

    /// The tone's Opus payloads.
    pub fn opus_frames(&self) -> Vec<Bytes> {
        self.opus.clone()
    }

    /// The average size of an Opus payload of the tone.
    pub fn opus_payload_size(&self) -> usize {
        self.opus.iter().map(Bytes::len).sum::<usize>() / self.opus.len().max(1)
    }

    fn frames(&self, codec: Codec) -> &[Bytes] {
        match codec {
            Codec::Opus => &self.opus,
            Codec::Pcmu | Codec::Pcma => &self.pcmu,
        }
    }
}

/// One second of 440 Hz (for PCMA too: the gateway drops what it cannot decode, which the
/// loss figures would show).
fn tone(codec: Codec) -> Vec<Bytes> {
    let mut encoder = Encoder::new(codec).expect("encoder");
    let mut out = vec![0u8; 1500];
    (0..50)
        .map(|f| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (i, s) in frame.iter_mut().enumerate() {
                let t = (f * FRAME_SAMPLES + i) as f32 / SAMPLE_RATE as f32;
                *s = (6000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
            }
            let n = encoder.encode(&frame, &mut out).expect("encode");
            Bytes::copy_from_slice(&out[..n])
        })
        .collect()
}

/// How a call ended before its time.
pub type CallError = String;

/// Places a call from `from` to `to`, runs it until `stop`, hangs up.
pub async fn place(
    signalling: Arc<Signalling>,
    media: Arc<Media>,
    collector: Arc<Collector>,
    from: Jid,
    to: Jid,
    stop: CancellationToken,
) -> Result<(), CallError> {
    let sid = format!("load-{:016x}", rand::random::<u64>());
    let mut jingle_in = signalling.register(&sid);
    let result = async {
        let mut leg = MediaLeg::new(media.engine.clone(), IceRole::Controlling)
            .await
            .map_err(|e| e.to_string())?;
        let local = local_transport(&mut leg).await;
        let ssrc = local.ssrc;
        let mut initiate = Jingle::new(Action::SessionInitiate, Sid(sid.clone()));
        initiate.initiator = Some(from.clone());
        initiate.contents = vec![negotiate::offer(
            &local,
            &media.engine.certificate.fingerprint_sha256,
        )];
        let started = Instant::now();
        let outcome = async {
            signalling.iq(&from, &to, initiate).await?;
            let accept = loop {
                let jingle = tokio::time::timeout(Duration::from_secs(15), jingle_in.recv())
                    .await
                    .map_err(|_| "no session-accept".to_string())?
                    .ok_or("the link closed")?;
                match jingle.action {
                    Action::SessionAccept => break jingle,
                    Action::SessionTerminate => return Err(terminated(&jingle)),
                    _ => {}
                }
            };
            negotiate::read_answer(&accept).map_err(|r| r.to_string())
        }
        .await;
        let answer = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                leg.close().await;
                return Err(e);
            }
        };
        let accepted = Instant::now();
        if let Ok(mut h) = collector.to_accept.lock() {
            h.add(accepted - started);
        }
        leg.connect(
            &answer.ice_ufrag,
            &answer.ice_pwd,
            answer.fingerprint.clone(),
            answer.dtls_role,
        );
        leg.add_remote_candidates(&answer.candidates);
        let stream = Stream::new(&answer, ssrc, accepted);
        let ended = stream
            .run(&mut leg, &mut jingle_in, &media, &collector, &stop)
            .await;
        if ended.is_ok() {
            let mut terminate = Jingle::new(Action::SessionTerminate, Sid(sid.clone()));
            terminate.reason = Some(ReasonElement {
                reason: Reason::Success,
                text: None,
            });
            signalling.send(&from, &to, terminate).await;
        }
        leg.close().await;
        ended
    }
    .await;
    signalling.unregister(&sid);
    result
}

/// Answers the gateway's call `initiate` (sent from `from` to our `to`) with PCMU, runs it
/// until the gateway hangs up or `stop`.
pub async fn answer(
    signalling: Arc<Signalling>,
    media: Arc<Media>,
    collector: Arc<Collector>,
    (from, to, initiate): crate::signalling::Incoming,
    stop: CancellationToken,
) -> Result<(), CallError> {
    let sid = initiate.sid.0.clone();
    let mut jingle_in = signalling.register(&sid);
    let result = async {
        let mut offer = negotiate::read_offer(&initiate, true).map_err(|r| r.to_string())?;
        offer.codec = Codec::Pcmu;
        offer.payload_type = offer
            .other_payload_types
            .iter()
            .find(|(_, kind)| *kind == PayloadKind::Audio(Codec::Pcmu))
            .map_or(0, |(id, _)| *id);
        // No keys are pressed on this side.
        offer.dtmf_payload_type = None;
        let mut leg = MediaLeg::new(media.engine.clone(), IceRole::Controlled)
            .await
            .map_err(|e| e.to_string())?;
        leg.connect(
            &offer.ice_ufrag,
            &offer.ice_pwd,
            offer.fingerprint.clone(),
            offer.dtls_role,
        );
        let local = local_transport(&mut leg).await;
        leg.add_remote_candidates(&offer.candidates);
        let ssrc = local.ssrc;
        let (content, group) =
            negotiate::answer(&offer, &local, &media.engine.certificate.fingerprint_sha256);
        let mut accept = Jingle::new(Action::SessionAccept, Sid(sid.clone()));
        accept.responder = Some(to.clone());
        accept.contents = vec![content];
        accept.group = group;
        if let Err(e) = signalling.iq(&to, &from, accept).await {
            leg.close().await;
            return Err(e);
        }
        let stream = Stream::new(&offer, ssrc, Instant::now());
        let ended = stream
            .run(&mut leg, &mut jingle_in, &media, &collector, &stop)
            .await;
        leg.close().await;
        match ended {
            // The gateway hanging up its leg is how a bridged call ends.
            Err(e) if e.starts_with("terminated") => Ok(()),
            other => other,
        }
    }
    .await;
    signalling.unregister(&sid);
    result
}

/// Our half of the transport for an offer or answer: the leg's credentials and first
/// candidates, and a new SSRC.
async fn local_transport(leg: &mut MediaLeg) -> LocalTransport {
    let (ufrag, pwd) = leg.local_credentials().await;
    LocalTransport {
        ufrag,
        pwd,
        candidates: leg.initial_candidates().await,
        ssrc: rand::random(),
    }
}

fn terminated(jingle: &Jingle) -> String {
    format!(
        "terminated: {}",
        jingle
            .reason
            .as_ref()
            .map_or("no reason", |r| r.reason.as_str())
    )
}

/// One call's media once the offer and answer are known.
struct Stream {
    codec: Codec,
    payload_type: u8,
    sender: RtpSender,
    check: StreamCheck,
    pacing: SendPacing,
    accepted: Instant,
}

impl Stream {
    fn new(media: &Negotiated, ssrc: u32, accepted: Instant) -> Self {
        let codec = media.codec;
        Self {
            codec,
            payload_type: media.payload_type,
            sender: RtpSender::new(
                ssrc,
                media.payload_type,
                media.dtmf_payload_type,
                rand::random(),
                rand::random(),
            ),
            check: StreamCheck::new(codec.clock_rate(), codec.frame_timestamp_units()),
            pacing: SendPacing::default(),
            accepted,
        }
    }

    /// Sends the tone every 20 ms from the moment SRTP is up, checks what comes back, follows
    /// trickled candidates; ends at `stop` (Ok) or when the call fails or is hung up (Err).
    /// The window's figures go to `collector` on the way out.
    async fn run(
        mut self,
        leg: &mut MediaLeg,
        jingle_in: &mut mpsc::UnboundedReceiver<Jingle>,
        media: &Media,
        collector: &Collector,
        stop: &CancellationToken,
    ) -> Result<(), CallError> {
        let frames = media.frames(self.codec);
        let units = self.codec.frame_timestamp_units();
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut secured = false;
        let mut first_media = true;
        let mut n = 0usize;
        let deadline = tokio::time::sleep(Duration::from_secs(20));
        tokio::pin!(deadline);
        let ended = loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                _ = &mut deadline, if !secured => break Err("media never came up".into()),
                _ = interval.tick(), if secured => {
                    let payload = &frames[n % frames.len()];
                    n += 1;
                    let header = self.sender.audio(units, payload.len());
                    leg.send_rtp(&header, payload).await;
                    let measuring = collector.measuring();
                    self.pacing.sent(Instant::now(), measuring);
                    if measuring {
                        collector.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                event = leg.next_event() => match event {
                    LegEvent::Secured => {
                        secured = true;
                        if let Ok(mut h) = collector.to_secured.lock() {
                            h.add(self.accepted.elapsed());
                        }
                    }
                    LegEvent::Rtp(packet) => {
                        let now = Instant::now();
                        let mut buf = packet;
                        let Ok(header) = rtp::header::Header::unmarshal(&mut buf) else { continue };
                        if first_media {
                            first_media = false;
                            if let Ok(mut h) = collector.to_media.lock() {
                                h.add(now - self.accepted);
                            }
                        }
                        if header.payload_type == self.payload_type {
                            self.check.packet(header.ssrc, header.sequence_number, header.timestamp, now, collector.measuring());
                        }
                    }
                    LegEvent::LocalCandidate(_) | LegEvent::Rtcp(_) => {}
                    LegEvent::Failed(reason) => break Err(format!("media failed: {reason}")),
                },
                jingle = jingle_in.recv() => match jingle {
                    Some(j) if j.action == Action::TransportInfo => {
                        for content in &j.contents {
                            if let Some(t) = content.ice_udp() {
                                leg.add_remote_candidates(&t.candidates);
                            }
                        }
                    }
                    Some(j) if j.action == Action::SessionTerminate => break Err(terminated(&j)),
                    Some(_) => {}
                    None => break Err("the link closed".into()),
                },
            }
        };
        collector.add_stream(&mut self.check.window);
        if let Ok(mut h) = collector.sent_intervals.lock() {
            h.merge(&self.pacing.intervals);
        }
        ended
    }
}
