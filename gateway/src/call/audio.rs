//! One call's audio path between the media leg and the endpoint: received RTP into the jitter
//! buffer (and key presses out of it), 20 ms ticks that play out to the endpoint and take what it
//! sends, paced RTP out with DTMF, and the RTCP reports. No I/O: packets to send are returned.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use rtp::header::Header;
use webrtc_util::marshal::Unmarshal;

use crate::endpoint::{Endpoint, EndpointEvent, Incoming, Outgoing};
use crate::jingle::negotiate::{Negotiated, PayloadKind};
use crate::media::codec::{Concealment, Decoder, Encoder, FRAME_SAMPLES};
use crate::media::dtmf::{Digit, DigitMerger, DigitSource, DtmfReceiver, DtmfSender};
use crate::media::foreign::ForeignAudio;
use crate::media::inband_dtmf::InbandDtmf;
use crate::media::jitter::{Buffered, JitterBuffer, Playout};
use crate::media::pacer::Pacer;
use crate::media::rtcp::{build_report, read_report, LastSenderReport, REPORT_INTERVAL};
use crate::media::rtp::{ReceiveStats, RtpSender};
use crate::media::stats::AudioSummary;
use crate::types::Codec;
use crate::types::EndReason;

/// The packet time.
pub const PTIME: Duration = Duration::from_millis(20);

/// A packet to send.
#[derive(Debug)]
pub struct OutPacket {
    /// RTP header.
    pub header: Header,
    /// Payload.
    pub payload: Bytes,
}

/// What a tick asks of the call.
#[derive(Debug, Default)]
pub struct TickResult {
    /// Packets to send, in order.
    pub packets: Vec<OutPacket>,
    /// The endpoint ended the call, and why.
    pub ended: Option<EndReason>,
    /// What the endpoint asked of the call (transfer, messages).
    pub requests: Vec<EndpointEvent>,
}

/// The audio path of one call.
pub struct AudioPath {
    codec: Codec,
    payload_type: u8,
    dtmf_type: Option<u8>,
    other_types: Vec<(u8, PayloadKind)>,
    /// Made at the first packet in another codec of the offer.
    foreign: Option<ForeignAudio>,
    foreign_packets: u64,
    jitter: JitterBuffer,
    received: ReceiveStats,
    remote_ssrc: Option<u32>,
    dtmf_in: DtmfReceiver,
    dtmf_out: DtmfSender,
    sender: RtpSender,
    pacer: Option<Pacer>,
    next_report: Option<Instant>,
    last_sr: Option<LastSenderReport>,
    /// The last round-trip time the peer's reports gave.
    round_trip: Option<Duration>,
    /// The share of our packets the peer's last report said were lost, in percent (our Opus
    /// encoder adds that much FEC).
    peer_loss_percent: u8,
    /// Lost packets filled in from the next packet's in-band FEC data.
    fec_recovered: u64,
    decoder: Option<Decoder>,
    encoder: Option<Encoder>,
    playout: Vec<Playout>,
    pcm: Vec<i16>,
    encoded: Vec<u8>,
    unknown_payload_types: u64,
    codec_failed: bool,
    inband: Option<InbandDtmf>,
    merger: DigitMerger,
    /// RTP timestamp units sent ahead of real time (a packet longer than 20 ms): the next ticks
    /// without audio use them up instead of leaving a gap.
    sent_ahead: u32,
}

impl AudioPath {
    /// The audio path for `offer`, sending as `ssrc`.
    pub fn new(offer: &Negotiated, ssrc: u32, now: Instant) -> Self {
        Self {
            codec: offer.codec,
            payload_type: offer.payload_type,
            dtmf_type: offer.dtmf_payload_type,
            other_types: offer.other_payload_types.clone(),
            foreign: None,
            foreign_packets: 0,
            jitter: JitterBuffer::new(),
            received: ReceiveStats::new(offer.codec.clock_rate(), now),
            remote_ssrc: None,
            dtmf_in: DtmfReceiver::default(),
            dtmf_out: DtmfSender::default(),
            sender: RtpSender::new(
                ssrc,
                offer.payload_type,
                offer.dtmf_payload_type,
                rand::random(),
                rand::random(),
            ),
            pacer: None,
            next_report: None,
            last_sr: None,
            round_trip: None,
            peer_loss_percent: 0,
            fec_recovered: 0,
            decoder: None,
            encoder: None,
            playout: Vec::with_capacity(4),
            pcm: Vec::with_capacity(FRAME_SAMPLES * 2),
            encoded: vec![0; 1500],
            unknown_payload_types: 0,
            codec_failed: false,
            inband: None,
            merger: DigitMerger::default(),
            sent_ahead: 0,
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.sender.ssrc()
    }

    /// Media is flowing from `now`: ticks and reports start.
    pub fn start(&mut self, now: Instant) {
        self.pacer = Some(Pacer::new(now, PTIME));
        self.next_report = Some(now + REPORT_INTERVAL);
    }

    /// When the next frame is due, once started.
    pub fn next_tick(&self) -> Option<Instant> {
        self.pacer.as_ref().map(Pacer::next_deadline)
    }

    /// When the next RTCP report is due, once started.
    pub fn next_report(&self) -> Option<Instant> {
        self.next_report
    }

    /// A received, authenticated RTP packet. Key presses go to the endpoint at once; audio goes
    /// into the jitter buffer.
    pub fn receive_rtp(&mut self, packet: &Bytes, now: Instant, endpoint: &mut dyn Endpoint) {
        // The rtp crate panics on header extensions whose elements overrun their block.
        if !crate::media::rtp::header_extensions_fit(packet) {
            return;
        }
        let mut buf = packet.clone();
        let Ok(rtp) = rtp::packet::Packet::unmarshal(&mut buf) else {
            return;
        };
        let header = &rtp.header;
        if self.remote_ssrc != Some(header.ssrc) {
            if self.remote_ssrc.is_some() {
                tracing::debug!(ssrc = header.ssrc, "the caller changed SSRC");
                self.jitter = JitterBuffer::new();
                self.received = ReceiveStats::new(self.codec.clock_rate(), now);
            }
            self.remote_ssrc = Some(header.ssrc);
        }
        let kind = self.kind_of(header.payload_type);
        // The timestamp in the call codec's clock, and what the jitter buffer gets.
        let (timestamp, buffered) = match kind {
            Some(PayloadKind::TelephoneEvent) => {
                self.receive_dtmf(header.timestamp, &rtp.payload, now, endpoint);
                (header.timestamp, None)
            }
            Some(PayloadKind::Audio(codec)) if codec == self.codec => {
                let duration = self
                    .codec
                    .payload_duration(&rtp.payload)
                    .unwrap_or(FRAME_SAMPLES);
                let buffered = Buffered {
                    timestamp: header.timestamp,
                    payload: rtp.payload,
                    duration,
                };
                (header.timestamp, Some(buffered))
            }
            Some(PayloadKind::Audio(codec)) => {
                self.foreign_packets += 1;
                let target = self.codec;
                let foreign = self
                    .foreign
                    .get_or_insert_with(|| ForeignAudio::new(target));
                let timestamp = foreign.timestamp(codec, header.timestamp);
                let frame = foreign
                    .transcode(codec, timestamp, &rtp.payload)
                    .unwrap_or_else(|e| {
                        tracing::debug!(error = %e, ?codec, "undecodable audio");
                        None
                    });
                let buffered = frame.map(|frame| Buffered {
                    timestamp: frame.timestamp,
                    payload: frame.payload,
                    duration: frame.duration,
                });
                (timestamp, buffered)
            }
            None => (header.timestamp, None),
        };
        let audio = matches!(kind, Some(PayloadKind::Audio(_)));
        self.received
            .on_packet(header.sequence_number, timestamp, now, audio);
        if kind.is_none() {
            self.unknown_payload_types += 1;
            return;
        }
        // A packet that is not audio still takes its sequence number.
        self.jitter.insert(
            header.sequence_number,
            buffered.unwrap_or(Buffered {
                timestamp,
                payload: Bytes::new(),
                duration: 0,
            }),
        );
    }

    /// What a received payload type carries: the answered ones, then the rest of the offer.
    fn kind_of(&self, payload_type: u8) -> Option<PayloadKind> {
        if payload_type == self.payload_type {
            Some(PayloadKind::Audio(self.codec))
        } else if Some(payload_type) == self.dtmf_type {
            Some(PayloadKind::TelephoneEvent)
        } else {
            self.other_types
                .iter()
                .find(|(id, _)| *id == payload_type)
                .map(|(_, kind)| *kind)
        }
    }

    fn receive_dtmf(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
        endpoint: &mut dyn Endpoint,
    ) {
        if let Some(digit) = self.dtmf_in.receive(timestamp, payload) {
            tracing::debug!(digit = %digit.as_char(), "DTMF received (RFC 4733)");
            if endpoint.dtmf_sources().rfc4733
                && self.merger.accept(digit, DigitSource::Rfc4733, now)
            {
                endpoint.on_dtmf(digit);
            }
        }
    }

    /// A received, authenticated RTCP packet, at `now` (and `wallclock`, for the round trip).
    pub fn receive_rtcp(&mut self, plain: &[u8], now: Instant, wallclock: SystemTime) {
        let report = read_report(plain, self.sender.ssrc(), now, wallclock);
        if let Some(sr) = report.sender_report {
            self.last_sr = Some(sr);
        }
        if let Some(rtt) = report.round_trip {
            self.round_trip = Some(rtt);
        }
        if let Some(fraction) = report.fraction_lost {
            self.peer_loss_percent = (u32::from(fraction) * 100 / 256) as u8;
            if let Some(encoder) = self.encoder.as_mut() {
                if let Err(e) = encoder.expect_loss(self.peer_loss_percent) {
                    tracing::debug!(error = %e, "cannot set the encoder's expected loss");
                }
            }
        }
    }

    /// Runs the frames due at `now`: playout to the endpoint, the endpoint's audio and events,
    /// and the packets to send.
    pub fn tick(&mut self, now: Instant, endpoint: &mut dyn Endpoint) -> TickResult {
        let mut result = TickResult::default();
        let Some(pacer) = self.pacer.as_mut() else {
            return result;
        };
        let due = pacer.due(now);
        let units = self.codec.frame_timestamp_units();
        for _ in 0..due.skipped {
            self.sender.skip(units);
        }
        for _ in 0..due.send {
            self.play_out(endpoint, now);
            while let Some(event) = endpoint.poll_event() {
                match event {
                    EndpointEvent::HangUp => result.ended = Some(EndReason::EndpointHungUp),
                    EndpointEvent::Fail(reason) => result.ended = Some(reason),
                    EndpointEvent::SendDtmf(digit) => self.send_digit(digit),
                    request => result.requests.push(request),
                }
            }
            self.produce(endpoint, &mut result.packets);
        }
        result
    }

    fn send_digit(&mut self, digit: Digit) {
        if self.dtmf_type.is_some() {
            self.dtmf_out.push(digit);
        }
    }

    fn play_out(&mut self, endpoint: &mut dyn Endpoint, now: Instant) {
        self.playout.clear();
        self.jitter.pop(&mut self.playout);
        let inband = endpoint.dtmf_sources().inband;
        let wants_pcm = (endpoint.wants_pcm() || inband) && self.ensure_decoder();
        let mut items = std::mem::take(&mut self.playout);
        for item in items.drain(..) {
            match item {
                Playout::Packet(packet) if packet.duration == 0 => {}
                Playout::Packet(packet) => {
                    let pcm = if wants_pcm {
                        self.pcm.clear();
                        decode(&mut self.decoder, &packet.payload, &mut self.pcm)
                    } else {
                        false
                    };
                    if pcm && inband {
                        self.detect_inband(endpoint, now);
                    }
                    endpoint.on_audio(Incoming::Audio {
                        payload: &packet.payload,
                        timestamp: packet.timestamp,
                        duration: packet.duration,
                        pcm: pcm.then_some(&self.pcm[..]),
                    });
                }
                Playout::Lost { duration, next } => {
                    let pcm = wants_pcm && self.recover(next.as_deref(), duration);
                    endpoint.on_audio(Incoming::Lost {
                        duration,
                        pcm: pcm.then_some(&self.pcm[..]),
                    });
                }
            }
        }
        self.playout = items;
    }

    /// Fills `self.pcm` with `duration` samples standing in for a lost packet, from `next`'s
    /// FEC data when it has some; false when there is no decoder or it failed.
    fn recover(&mut self, next: Option<&[u8]>, duration: usize) -> bool {
        let Some(decoder) = self.decoder.as_mut() else {
            return false;
        };
        self.pcm.clear();
        match decoder.recover(next, duration, &mut self.pcm) {
            Ok(Concealment::Fec) => {
                self.fec_recovered += 1;
                true
            }
            Ok(Concealment::Plc) => true,
            Err(e) => {
                tracing::debug!(error = %e, "cannot conceal lost audio");
                false
            }
        }
    }

    /// Key presses in the decoded audio of this piece (`self.pcm`).
    fn detect_inband(&mut self, endpoint: &mut dyn Endpoint, now: Instant) {
        let detector = self.inband.get_or_insert_with(InbandDtmf::default);
        let mut found = Vec::new();
        detector.feed(&self.pcm, &mut found);
        for digit in found {
            tracing::debug!(digit = %digit.as_char(), "DTMF received (in-band)");
            if self.merger.accept(digit, DigitSource::Inband, now) {
                endpoint.on_dtmf(digit);
            }
        }
    }

    /// Keys typed in a chat message during the call.
    pub fn receive_chat_digits(&mut self, text: &str, now: Instant, endpoint: &mut dyn Endpoint) {
        if !endpoint.dtmf_sources().chat {
            return;
        }
        for digit in text.chars().filter_map(Digit::from_char) {
            if self.merger.accept(digit, DigitSource::Chat, now) {
                endpoint.on_dtmf(digit);
            }
        }
    }

    fn ensure_decoder(&mut self) -> bool {
        if self.decoder.is_none() && !self.codec_failed {
            match Decoder::new(self.codec) {
                Ok(decoder) => self.decoder = Some(decoder),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a decoder");
                    self.codec_failed = true;
                }
            }
        }
        self.decoder.is_some()
    }

    fn produce(&mut self, endpoint: &mut dyn Endpoint, out: &mut Vec<OutPacket>) {
        let units = self.codec.frame_timestamp_units();
        if let Some(event) = self.dtmf_out.next_frame(units) {
            // During a key press the event replaces audio; what the endpoint had is dropped.
            let _ = endpoint.next_frame();
            if let Some(header) = self.sender.event(&event, units) {
                out.push(OutPacket {
                    header,
                    payload: Bytes::copy_from_slice(&event.payload.to_bytes()),
                });
            }
            return;
        }
        match endpoint.next_frame() {
            Outgoing::Silence => {
                let used = self.sent_ahead.min(units);
                self.sent_ahead -= used;
                if used < units {
                    self.sender.skip(units - used);
                }
            }
            Outgoing::Encoded(payload) => {
                let duration = self
                    .codec
                    .payload_duration(&payload)
                    .unwrap_or(FRAME_SAMPLES);
                let payload_units =
                    ((duration as u64 * u64::from(self.codec.clock_rate()) / 48_000) as u32).max(1);
                self.sent_ahead += payload_units.saturating_sub(units);
                let header = self.sender.audio(payload_units, payload.len());
                out.push(OutPacket { header, payload });
            }
            Outgoing::Pcm(frame) => {
                if self.encoder.is_none() && !self.codec_failed {
                    let made = Encoder::new(self.codec).and_then(|mut encoder| {
                        encoder.expect_loss(self.peer_loss_percent)?;
                        Ok(encoder)
                    });
                    match made {
                        Ok(encoder) => self.encoder = Some(encoder),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot make an encoder");
                            self.codec_failed = true;
                        }
                    }
                }
                let encoded = self
                    .encoder
                    .as_mut()
                    .map(|encoder| encoder.encode(frame, &mut self.encoded));
                match encoded {
                    Some(Ok(n)) if n > 0 => {
                        let header = self.sender.audio(units, n);
                        out.push(OutPacket {
                            header,
                            payload: Bytes::copy_from_slice(&self.encoded[..n]),
                        });
                    }
                    _ => self.sender.skip(units),
                }
            }
        }
    }

    /// The RTCP report due at `now` (`wallclock` for its NTP timestamp), if one is due.
    pub fn report(&mut self, now: Instant, wallclock: SystemTime) -> Option<Bytes> {
        let due = self.next_report?;
        if now < due {
            return None;
        }
        self.next_report = Some(now + REPORT_INTERVAL);
        let received = self.remote_ssrc.map(|ssrc| (ssrc, &mut self.received));
        build_report(&self.sender, received, self.last_sr, now, wallclock)
    }

    /// Figures for the call's end-of-call log line.
    pub fn summary(&self) -> AudioSummary {
        let jitter = self.jitter.stats();
        AudioSummary {
            received: self.received.received(),
            expected: self.received.expected(),
            sent: u64::from(self.sender.packets),
            concealed: jitter.lost.saturating_sub(self.fec_recovered),
            fec_recovered: self.fec_recovered,
            late: jitter.late,
            duplicates: jitter.duplicates,
            trimmed: jitter.trimmed,
            jitter_ms: self.received.jitter_ms(),
            unknown_payload_types: self.unknown_payload_types,
            foreign_codec: self.foreign_packets,
            round_trip_ms: self.round_trip.map(|rtt| rtt.as_secs_f64() * 1000.0),
        }
    }
}

/// Decodes into `pcm`; false when there is no decoder or it failed.
fn decode(decoder: &mut Option<Decoder>, payload: &Bytes, pcm: &mut Vec<i16>) -> bool {
    let Some(decoder) = decoder.as_mut() else {
        return false;
    };
    match decoder.decode(Some(payload), 0, pcm) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(error = %e, "undecodable audio");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Echo;
    use crate::jingle::negotiate::read_offer;
    use crate::media::dtmf::{DtmfSender, EventPayload};
    use crate::protocol::jingle::Jingle;
    use crate::testing::{first_jingle, BROWSER_CALL};
    use webrtc_util::marshal::{Marshal, MarshalSize};

    fn offer() -> Negotiated {
        let jingle = Jingle::parse(&first_jingle(BROWSER_CALL, "session-initiate")).unwrap();
        read_offer(&jingle, true).unwrap()
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Bytes {
        let header = Header {
            version: 2,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 77,
            ..Header::default()
        };
        let mut buf = vec![0u8; header.marshal_size()];
        header.marshal_to(&mut buf).unwrap();
        buf.extend_from_slice(payload);
        Bytes::from(buf)
    }

    /// An Opus packet of 20 ms (TOC 0x78: SILK wideband... config 15, 20 ms, one frame).
    const OPUS_20MS: &[u8] = &[0x78, 0x01, 0x02, 0x03];

    #[test]
    fn echo_returns_packets_in_pace_and_keys_as_dtmf() {
        let start = Instant::now();
        let offer = offer();
        let mut path = AudioPath::new(&offer, 1234, start);
        let mut echo = Echo::default();
        path.start(start);
        for i in 0..5u16 {
            path.receive_rtp(
                &rtp(111, 100 + i, 960 * u32::from(i), OPUS_20MS),
                start,
                &mut echo,
            );
        }
        let mut sent = Vec::new();
        let mut tick = 0;
        let mut run =
            |path: &mut AudioPath, echo: &mut Echo, ticks: u32, sent: &mut Vec<OutPacket>| {
                for _ in 0..ticks {
                    let result = path.tick(start + PTIME * tick, echo);
                    assert!(result.packets.len() <= 1, "burst at tick {tick}");
                    assert!(result.ended.is_none());
                    sent.extend(result.packets);
                    tick += 1;
                }
            };
        run(&mut path, &mut echo, 8, &mut sent);
        // A key press: three packets of one event.
        let mut keys = DtmfSender::default();
        keys.push(Digit::from_char('7').unwrap());
        let event = keys.next_frame(960).unwrap().payload.to_bytes();
        for seq in 105..108 {
            path.receive_rtp(&rtp(110, seq, 5000, &event), start, &mut echo);
        }
        run(&mut path, &mut echo, 10, &mut sent);
        let audio: Vec<&OutPacket> = sent
            .iter()
            .filter(|p| p.header.payload_type == 111)
            .collect();
        let events: Vec<&OutPacket> = sent
            .iter()
            .filter(|p| p.header.payload_type == 110)
            .collect();
        assert_eq!(audio.len(), 5);
        assert!(audio.iter().all(|p| &p.payload[..] == OPUS_20MS));
        assert!(audio.iter().all(|p| p.header.ssrc == 1234));
        assert_eq!(
            audio[1]
                .header
                .timestamp
                .wrapping_sub(audio[0].header.timestamp),
            960
        );
        let echoed = EventPayload::parse(&events[0].payload).unwrap();
        assert_eq!(echoed.event, 7);
        assert_eq!(events.len(), 7);
        let summary = path.summary();
        assert_eq!(
            (summary.received, summary.expected, summary.concealed),
            (8, 8, 0)
        );
    }

    #[test]
    fn long_packets_are_echoed_with_real_time_timestamps() {
        let start = Instant::now();
        let mut path = AudioPath::new(&offer(), 9, start);
        let mut echo = Echo::default();
        path.start(start);
        // 60 ms Opus packets: TOC config 15 (20 ms frames), code 3 with 3 frames.
        let sixty: &[u8] = &[0x7B, 0x03, 0x01, 0x02, 0x03];
        assert_eq!(Codec::Opus.payload_duration(sixty), Some(3 * FRAME_SAMPLES));
        for i in 0..4u16 {
            path.receive_rtp(&rtp(111, i, 2880 * u32::from(i), sixty), start, &mut echo);
        }
        let mut sent = Vec::new();
        for tick in 0..12 {
            sent.extend(path.tick(start + PTIME * tick, &mut echo).packets);
        }
        assert_eq!(sent.len(), 4, "one 60 ms packet every third tick");
        for pair in sent.windows(2) {
            assert_eq!(
                pair[1]
                    .header
                    .timestamp
                    .wrapping_sub(pair[0].header.timestamp),
                2880
            );
        }
    }

    #[test]
    fn unknown_payload_types_are_dropped_and_counted() {
        let start = Instant::now();
        let mut path = AudioPath::new(&offer(), 1, start);
        let mut echo = Echo::default();
        path.receive_rtp(&rtp(96, 1, 0, &[1, 2, 3]), start, &mut echo);
        path.receive_rtp(&Bytes::from_static(&[0x80]), start, &mut echo);
        assert_eq!(path.summary().unknown_payload_types, 1);
    }

    #[test]
    fn audio_in_another_offered_codec_reaches_the_endpoint_in_the_answered_one() {
        // Answered PCMU, but the peer sends Opus as numbered in the offer (libwebrtc does).
        let mut negotiated = offer();
        negotiated.codec = Codec::Pcmu;
        negotiated.payload_type = 0;
        negotiated.other_payload_types = vec![(111, PayloadKind::Audio(Codec::Opus))];
        let start = Instant::now();
        let mut path = AudioPath::new(&negotiated, 5, start);
        let mut echo = Echo::default();
        path.start(start);
        let mut opus = Encoder::new(Codec::Opus).unwrap();
        let mut buf = [0u8; 1500];
        let mut sent = Vec::new();
        for (i, frame) in (0u16..).zip(crate::media::codec::tests::tone(440.0, 50)) {
            let n = opus.encode(&frame, &mut buf).unwrap();
            let at = start + PTIME * u32::from(i);
            path.receive_rtp(&rtp(111, i, 960 * u32::from(i), &buf[..n]), at, &mut echo);
            sent.extend(path.tick(at, &mut echo).packets);
        }
        assert!(sent.len() > 40, "{} echoed", sent.len());
        let mut pcmu = Decoder::new(Codec::Pcmu).unwrap();
        let mut heard = Vec::new();
        for packet in &sent {
            assert_eq!((packet.header.payload_type, packet.payload.len()), (0, 160));
            pcmu.decode(Some(&packet.payload), 0, &mut heard).unwrap();
        }
        let share = crate::media::codec::tests::tone_share(&heard[heard.len() / 2..], 440.0);
        assert!(share > 0.8, "share {share}");
        let summary = path.summary();
        assert_eq!(
            (summary.foreign_codec, summary.unknown_payload_types),
            (50, 0)
        );
        assert_eq!(summary.concealed, 0);
    }

    #[test]
    fn reports_start_with_media() {
        let start = Instant::now();
        let mut path = AudioPath::new(&offer(), 1, start);
        assert!(path
            .report(start + Duration::from_secs(60), SystemTime::now())
            .is_none());
        path.start(start);
        assert!(path.report(start, SystemTime::now()).is_none());
        assert!(path
            .report(start + REPORT_INTERVAL, SystemTime::now())
            .is_some());
    }
}
