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
                text: Bytes::from(crate::jingle::negotiate::cname(sender.ssrc())),
            }],
        }],
    };
    let packets: [Box<dyn Packet + Send + Sync>; 2] = [Box::new(report), Box::new(sdes)];
    rtcp::packet::marshal(&packets).ok()
}

/// The peer's sender report in a compound packet, if there is one.
pub fn read_sender_report(plain: &[u8], arrived: Instant) -> Option<LastSenderReport> {
    let mut buf = plain;
    let packets = rtcp::packet::unmarshal(&mut buf).ok()?;
    packets.iter().find_map(|p| {
        p.as_any()
            .downcast_ref::<SenderReport>()
            .map(|sr| LastSenderReport {
                ntp_middle: (sr.ntp_time >> 16) as u32,
                arrived,
            })
    })
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
        let sr = read_sender_report(&bytes, now).unwrap();
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
        assert!(read_sender_report(&[0x80, 0xC8, 0x00], Instant::now()).is_none());
        assert!(read_sender_report(&[], Instant::now()).is_none());
    }
}
