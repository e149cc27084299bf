//! RTCP: the compound report we send every few seconds (sender report with a reception report
//! block, and our CNAME), and what we read from the peer's reports.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtcp::packet::Packet;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

use super::rtp::{ReceiveStats, RtpSender};

/// How often we send a report (RFC 3550's minimum for a two-party session is 5 s).
pub const REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Seconds from 1900 (NTP) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What we keep from the peer's last sender report, to answer it in ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSenderReport {
    /// The middle 32 bits of its NTP timestamp.
    pub ntp_middle: u32,
    /// When it arrived.
    pub arrived: Instant,
}

/// A 64-bit NTP timestamp for `time`.
fn ntp_time(time: SystemTime) -> u64 {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let fraction = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | fraction
}

/// Our compound report: a sender report (with a block about the peer's stream when we received
/// any) and an SDES with our CNAME. Plain RTCP, to be protected with SRTCP.
pub fn build_report(
    sender: &RtpSender,
    received: Option<(u32, &mut ReceiveStats)>,
    last_sr: Option<LastSenderReport>,
    now: Instant,
    wallclock: SystemTime,
) -> Option<Bytes> {
    let reports = received
        .map(|(remote_ssrc, stats)| {
            let figures = stats.report();
            let (last_sender_report, delay) = match last_sr {
                Some(sr) => {
                    let waited = now.saturating_duration_since(sr.arrived);
                    (sr.ntp_middle, (waited.as_secs_f64() * 65536.0) as u32)
                }
                None => (0, 0),
            };
            vec![ReceptionReport {
                ssrc: remote_ssrc,
                fraction_lost: figures.fraction_lost,
                total_lost: figures.total_lost,
                last_sequence_number: figures.highest_sequence,
                jitter: figures.jitter,
                last_sender_report,
                delay,
            }]
        })
        .unwrap_or_default();
    let report = SenderReport {
        ssrc: sender.ssrc(),
        ntp_time: ntp_time(wallclock),
        rtp_time: sender.timestamp(),
        packet_count: sender.packets,
        octet_count: sender.octets,
        reports,
        profile_extensions: Bytes::new(),
    };
    let sdes = SourceDescription {
        chunks: vec![SourceDescriptionChunk {
            source: sender.ssrc(),
            items: vec![SourceDescriptionItem {
                sdes_type: SdesType::SdesCname,
                text: Bytes::from(crate::types::cname(sender.ssrc())),
            }],
        }],
    };
    let packets: [Box<dyn Packet + Send + Sync>; 2] = [Box::new(report), Box::new(sdes)];
    rtcp::packet::marshal(&packets).ok()
}

/// What we take from a compound RTCP packet of the peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerReport {
    /// Its sender report, to answer in ours.
    pub sender_report: Option<LastSenderReport>,
    /// The round-trip time its report block about our stream gives, when that block answers
    /// one of our sender reports (RFC 3550 6.4.1: arrival, less the LSR it echoes, less the
    /// delay it says it held it).
    pub round_trip: Option<Duration>,
    /// The fraction of our packets its report block about our stream says were lost since
    /// its previous report, in 1/256.
    pub fraction_lost: Option<u8>,
}

/// Reads the peer's compound packet `plain` (parsed once), which arrived at `arrived` (our
/// clock) and `wallclock`; `ours` is the SSRC of our stream.
pub fn read_report(plain: &[u8], ours: u32, arrived: Instant, wallclock: SystemTime) -> PeerReport {
    let mut buf = plain;
    let Ok(packets) = rtcp::packet::unmarshal(&mut buf) else {
        return PeerReport::default();
    };
    let mut report = PeerReport::default();
    for packet in &packets {
        let any = packet.as_any();
        let blocks = if let Some(sr) = any.downcast_ref::<SenderReport>() {
            report.sender_report.get_or_insert(LastSenderReport {
                ntp_middle: (sr.ntp_time >> 16) as u32,
                arrived,
            });
            &sr.reports
        } else if let Some(rr) = any.downcast_ref::<rtcp::receiver_report::ReceiverReport>() {
            &rr.reports
        } else {
            continue;
        };
        if let Some(block) = blocks.iter().find(|b| b.ssrc == ours) {
            report.fraction_lost.get_or_insert(block.fraction_lost);
        }
        let answer = blocks
            .iter()
            .find(|b| b.ssrc == ours && b.last_sender_report != 0);
        if let (None, Some(block)) = (report.round_trip, answer) {
            report.round_trip = round_trip(block.last_sender_report, block.delay, wallclock);
        }
    }
    report
}

/// The round trip from a block's LSR and DLSR, the packet having arrived at `wallclock`.
fn round_trip(last_sender_report: u32, delay: u32, wallclock: SystemTime) -> Option<Duration> {
    let arrival = (ntp_time(wallclock) >> 16) as u32;
    let units = arrival.wrapping_sub(last_sender_report).wrapping_sub(delay);
    // In 1/65536 s; more than a minute is a clock step or a forged block, not a path.
    let rtt = Duration::from_secs_f64(f64::from(units) / 65536.0);
    (rtt < Duration::from_secs(60)).then_some(rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_report_reads_back() {
        let now = Instant::now();
        let mut sender = RtpSender::new(0xABCD, 111, None, 1, 1000);
        sender.audio(960, 80);
        let mut stats = ReceiveStats::new(48000, now);
        stats.on_packet(5, 0, now, true);
        let bytes = build_report(
            &sender,
            Some((0x1234, &mut stats)),
            None,
            now,
            SystemTime::now(),
        )
        .unwrap();
        let sr = read_report(&bytes, 0xABCD, now, SystemTime::now())
            .sender_report
            .unwrap();
        assert_eq!(sr.arrived, now);
        let mut buf = &bytes[..];
        let packets = rtcp::packet::unmarshal(&mut buf).unwrap();
        let report = packets[0].as_any().downcast_ref::<SenderReport>().unwrap();
        assert_eq!(
            (report.ssrc, report.packet_count, report.octet_count),
            (0xABCD, 1, 80)
        );
        assert_eq!(report.reports[0].ssrc, 0x1234);
    }

    #[test]
    fn garbage_is_not_a_report() {
        let (now, wallclock) = (Instant::now(), SystemTime::now());
        assert_eq!(
            read_report(&[0x80, 0xC8, 0x00], 1, now, wallclock),
            PeerReport::default()
        );
        assert_eq!(read_report(&[], 1, now, wallclock), PeerReport::default());
    }

    #[test]
    fn the_round_trip_is_what_the_peer_did_not_hold() {
        let (t0, w0) = (Instant::now(), SystemTime::now());
        let ours = RtpSender::new(0xA, 111, None, 1, 1000);
        let mut peer = RtpSender::new(0xB, 111, None, 1, 1000);
        peer.audio(960, 80);
        let ms = Duration::from_millis;
        // Our report reaches the peer after 20 ms; it answers 100 ms later; its report
        // reaches us 30 ms after that: 50 ms on the path, 100 ms held.
        let our_report = build_report(&ours, None, None, t0, w0).unwrap();
        let last_sr = read_report(&our_report, 0xB, t0 + ms(20), w0).sender_report;
        let mut stats = ReceiveStats::new(48000, t0);
        stats.on_packet(1, 0, t0, true);
        let answer =
            build_report(&peer, Some((0xA, &mut stats)), last_sr, t0 + ms(120), w0).unwrap();
        let read = |packet: &[u8], ours, wallclock| read_report(packet, ours, t0, wallclock);
        let rtt = read(&answer, 0xA, w0 + ms(150))
            .round_trip
            .expect("a round trip");
        assert!(rtt.abs_diff(ms(50)) < ms(1), "{rtt:?}");
        // A block about another stream, or one answering no report of ours, gives none.
        assert!(read(&answer, 0xC, w0 + ms(150)).round_trip.is_none());
        let unanswered = build_report(&peer, Some((0xA, &mut stats)), None, t0, w0).unwrap();
        assert!(read(&unanswered, 0xA, w0).round_trip.is_none());
    }
}
