//! RTP: the sending side's header state (SSRC, sequence, timestamp, marker) and the receiving
//! side's RFC 3550 statistics (extended highest sequence, loss, interarrival jitter).

use std::time::Instant;

use rtp::header::Header;

use super::dtmf::EventPacket;

/// Header state of the stream we send.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    sequence: u16,
    timestamp: u32,
    payload_type: u8,
    event_payload_type: Option<u8>,
    marker_next: bool,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

impl RtpSender {
    /// A stream with `ssrc`, starting at random `sequence` and `timestamp`.
    pub fn new(
        ssrc: u32,
        payload_type: u8,
        event_payload_type: Option<u8>,
        sequence: u16,
        timestamp: u32,
    ) -> Self {
        Self {
            ssrc,
            sequence,
            timestamp,
            payload_type,
            event_payload_type,
            marker_next: true,
            packets: 0,
            octets: 0,
        }
    }

    /// Our SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTP timestamp of the next packet.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// The header of an audio packet of `payload_len` bytes lasting `units` (RTP clock units);
    /// advances the stream. The first packet after a gap carries the marker bit.
    pub fn audio(&mut self, units: u32, payload_len: usize) -> Header {
        let marker = std::mem::take(&mut self.marker_next);
        let header = self.header(self.payload_type, self.timestamp, marker);
        self.count(payload_len);
        self.timestamp = self.timestamp.wrapping_add(units);
        header
    }

    /// Nothing is sent for `units`: the time passes as a gap, and the next packet is marked.
    pub fn skip(&mut self, units: u32) {
        self.timestamp = self.timestamp.wrapping_add(units);
        self.marker_next = true;
    }

    /// The header of a `telephone-event` packet for this frame (the event keeps its start
    /// timestamp); advances the stream by a frame. `None` if no event type was negotiated.
    pub fn event(&mut self, packet: &EventPacket, units_per_frame: u32) -> Option<Header> {
        let payload_type = self.event_payload_type?;
        let start = self
            .timestamp
            .wrapping_sub(packet.started_frames_ago.wrapping_mul(units_per_frame));
        let header = self.header(payload_type, start, packet.marker);
        self.count(4);
        self.timestamp = self.timestamp.wrapping_add(units_per_frame);
        self.marker_next = true;
        Some(header)
    }

    fn header(&mut self, payload_type: u8, timestamp: u32, marker: bool) -> Header {
        let header = Header {
            version: 2,
            marker,
            payload_type,
            sequence_number: self.sequence,
            timestamp,
            ssrc: self.ssrc,
            ..Header::default()
        };
        self.sequence = self.sequence.wrapping_add(1);
        header
    }

    fn count(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self
            .octets
            .wrapping_add(u32::try_from(payload_len).unwrap_or(u32::MAX));
    }
}

/// Extends 16-bit RTP sequence numbers to 64 bits, around the highest seen so far (the first
/// one lands well above zero, so earlier ones still extend without underflow).
#[derive(Debug, Clone, Default)]
pub struct SequenceExtender {
    highest: Option<u64>,
}

/// Where the first sequence number lands.
const SEQUENCE_BASE: u64 = 1 << 32;

impl SequenceExtender {
    /// The 64-bit form of `seq` (not recorded).
    pub fn extend(&self, seq: u16) -> u64 {
        let Some(highest) = self.highest else {
            return SEQUENCE_BASE | u64::from(seq);
        };
        let cycle = highest & !0xFFFF;
        [cycle - (1 << 16), cycle, cycle + (1 << 16)]
            .into_iter()
            .map(|c| c | u64::from(seq))
            .min_by_key(|c| c.abs_diff(highest))
            .unwrap_or(cycle | u64::from(seq))
    }

    /// Records `ext` as seen.
    pub fn record(&mut self, ext: u64) {
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
    }

    /// Starts again from `ext` (the sender restarted its numbering).
    pub fn restart_at(&mut self, ext: u64) {
        self.highest = Some(ext);
    }

    /// The highest seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

/// RFC 3550 statistics of the stream we receive.
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: f64,
    epoch: Instant,
    base: Option<u64>,
    sequence: SequenceExtender,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    last_transit: Option<f64>,
    jitter: f64,
}

/// Figures for an RTCP reception report.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceptionFigures {
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the start (24-bit, saturating).
    pub total_lost: u32,
    /// Extended highest sequence number received.
    pub highest_sequence: u32,
    /// Interarrival jitter in RTP clock units.
    pub jitter: u32,
}

impl ReceiveStats {
    /// Statistics of a stream with `clock_rate`, measuring arrival from `epoch`.
    pub fn new(clock_rate: u32, epoch: Instant) -> Self {
        Self {
            clock_rate: f64::from(clock_rate),
            epoch,
            base: None,
            sequence: SequenceExtender::default(),
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter: 0.0,
        }
    }

    /// A packet (authenticated) with `sequence` and `timestamp` arrived at `arrival`. Only audio
    /// packets feed the jitter estimate: event packets keep their start timestamp.
    pub fn on_packet(&mut self, sequence: u16, timestamp: u32, arrival: Instant, audio: bool) {
        let ext = self.sequence.extend(sequence);
        self.base.get_or_insert(ext);
        self.sequence.record(ext);
        self.received += 1;
        if !audio {
            return;
        }
        let arrival_units =
            arrival.saturating_duration_since(self.epoch).as_secs_f64() * self.clock_rate;
        let transit = arrival_units - f64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs();
            // Timestamp wraps and jumps would poison the estimate: ignore absurd steps.
            if d < self.clock_rate * 10.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.last_transit = Some(transit);
    }

    /// Packets received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected so far (from the sequence numbers).
    pub fn expected(&self) -> u64 {
        match (self.base, self.sequence.highest()) {
            (Some(base), Some(highest)) => highest - base + 1,
            _ => 0,
        }
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / self.clock_rate
    }

    /// Figures for the next reception report (resets the interval counters).
    pub fn report(&mut self) -> ReceptionFigures {
        let expected = self.expected();
        let lost = expected.saturating_sub(self.received);
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        let fraction_lost = (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8);
        ReceptionFigures {
            fraction_lost,
            total_lost: lost.min(0x7F_FFFF) as u32,
            highest_sequence: self
                .sequence
                .highest()
                .map_or(0, |h| (h - SEQUENCE_BASE) as u32),
            jitter: self.jitter as u32,
        }
    }
}

/// Whether the header extension of an RTP packet, if it has one, holds together: the block fits
/// the packet, and each RFC 8285 element (one-byte or two-byte) fits the block. The rtp crate
/// reads elements without checking (and panics), so a packet is checked here first.
pub fn header_extensions_fit(packet: &[u8]) -> bool {
    let Some(&first) = packet.first() else {
        return false;
    };
    if first & 0x10 == 0 {
        return true;
    }
    let start = 12 + 4 * usize::from(first & 0x0F);
    let Some(head) = packet.get(start..start + 4) else {
        return false;
    };
    let profile = u16::from_be_bytes([head[0], head[1]]);
    let length = 4 * usize::from(u16::from_be_bytes([head[2], head[3]]));
    let Some(block) = packet.get(start + 4..start + 4 + length) else {
        return false;
    };
    let one_byte = profile == 0xBEDE;
    let two_byte = profile & 0xFFF0 == 0x1000;
    if !one_byte && !two_byte {
        return true;
    }
    let mut at = 0;
    while at < block.len() {
        let b = block[at];
        if b == 0 {
            at += 1;
            continue;
        }
        let (header, len) = if one_byte {
            if b >> 4 == 15 {
                // The reserved id ends the elements.
                return true;
            }
            (1, usize::from(b & 0x0F) + 1)
        } else {
            match block.get(at + 1) {
                Some(&len) => (2, usize::from(len)),
                None => return false,
            }
        };
        at += header + len;
        if at > block.len() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the rtp_receive fuzzer: a one-byte element longer than its block panicked the
    /// rtp crate.
    #[test]
    fn header_extensions_are_checked_before_the_rtp_crate_reads_them() {
        let packet = |extension: &[u8]| {
            let mut p = vec![0x90, 0x6f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2];
            p.extend_from_slice(extension);
            p.extend_from_slice(&[0xAA; 20]);
            p
        };
        // One-byte elements (0xBEDE), one word: id 1 with 2 bytes, then padding.
        let good = packet(&[0xBE, 0xDE, 0, 1, 0x11, 1, 2, 0]);
        assert!(header_extensions_fit(&good));
        let mut buf = bytes::Bytes::from(good);
        use webrtc_util::marshal::Unmarshal;
        assert!(rtp::packet::Packet::unmarshal(&mut buf).is_ok());
        // An element claiming 16 bytes in a one-word block.
        assert!(!header_extensions_fit(&packet(&[
            0xBE, 0xDE, 0, 1, 0x1F, 1, 2, 3
        ])));
        // Two-byte elements: length byte beyond the block.
        assert!(!header_extensions_fit(&packet(&[
            0x10, 0x00, 0, 1, 5, 9, 1, 2
        ])));
        assert!(header_extensions_fit(&packet(&[
            0x10, 0x00, 0, 1, 5, 2, 1, 2
        ])));
        // A block longer than the packet.
        assert!(!header_extensions_fit(&packet(&[0xBE, 0xDE, 0, 200])));
        // No extension, or another profile: fine.
        assert!(header_extensions_fit(&[
            0x80, 0x6f, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2
        ]));
        assert!(header_extensions_fit(&packet(&[
            0x12, 0x34, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF
        ])));
    }
    use crate::media::dtmf::{Digit, DtmfSender};
    use std::time::Duration;

    #[test]
    fn sender_counts_wraps_and_marks_after_gaps() {
        let mut sender = RtpSender::new(7, 111, Some(110), 65535, u32::MAX - 100);
        let first = sender.audio(960, 50);
        assert!(first.marker);
        assert_eq!(
            (first.version, first.sequence_number, first.payload_type),
            (2, 65535, 111)
        );
        let second = sender.audio(960, 50);
        assert!(!second.marker);
        assert_eq!(second.sequence_number, 0);
        assert_eq!(second.timestamp, (u32::MAX - 100).wrapping_add(960));
        sender.skip(960);
        let after_gap = sender.audio(960, 50);
        assert!(after_gap.marker);
        assert_eq!(after_gap.timestamp, (u32::MAX - 100).wrapping_add(3 * 960));
        assert_eq!((sender.packets, sender.octets), (3, 150));
    }

    #[test]
    fn event_packets_keep_their_start_timestamp() {
        let mut sender = RtpSender::new(7, 0, Some(126), 0, 1000);
        let mut dtmf = DtmfSender::default();
        dtmf.push(Digit::from_char('9').unwrap());
        let headers: Vec<Header> = std::iter::from_fn(|| dtmf.next_frame(160))
            .map(|p| sender.event(&p, 160).unwrap())
            .collect();
        assert_eq!(headers.len(), 7);
        assert!(headers
            .iter()
            .all(|h| h.timestamp == 1000 && h.payload_type == 126));
        assert!(headers[0].marker && !headers[1].marker);
        // The stream went on meanwhile, and audio resumes marked.
        let audio = sender.audio(160, 160);
        assert_eq!(audio.timestamp, 1000 + 7 * 160);
        assert!(audio.marker);
        // Without a negotiated telephone-event there is nothing to send.
        let mut dtmf = DtmfSender::default();
        dtmf.push(Digit::from_char('1').unwrap());
        let packet = dtmf.next_frame(160).unwrap();
        assert!(RtpSender::new(1, 0, None, 0, 0)
            .event(&packet, 160)
            .is_none());
    }

    #[test]
    fn loss_and_wrap_in_reports() {
        let epoch = Instant::now();
        let mut stats = ReceiveStats::new(8000, epoch);
        for (i, seq) in [65533u16, 65534, 65535, 1, 2].into_iter().enumerate() {
            let arrival = epoch + Duration::from_millis(20 * i as u64);
            stats.on_packet(seq, 160 * i as u32, arrival, true);
        }
        assert_eq!(stats.expected(), 6);
        let report = stats.report();
        assert_eq!(report.total_lost, 1);
        assert_eq!(report.highest_sequence, 65536 + 2);
        assert_eq!(report.fraction_lost, (256 / 6) as u8);
        assert_eq!(report.jitter, 0);
        // Nothing new: nothing lost in this interval.
        assert_eq!(stats.report().fraction_lost, 0);
    }

    #[test]
    fn jitter_grows_with_uneven_arrival() {
        let epoch = Instant::now();
        let mut stats = ReceiveStats::new(8000, epoch);
        for i in 0..50u32 {
            let wobble = if i % 2 == 0 { 0 } else { 10 };
            stats.on_packet(
                i as u16,
                160 * i,
                epoch + Duration::from_millis(20 * u64::from(i) + wobble),
                true,
            );
        }
        assert!(stats.jitter_ms() > 5.0, "{}", stats.jitter_ms());
    }
}
