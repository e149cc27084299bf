//! A small receive jitter buffer: reorders by sequence number, drops duplicates and packets that
//! come too late, and plays out 20 ms of audio per tick on average (a 60 ms packet covers three
//! ticks), reporting what was lost on the way. Playout starts once [`TARGET_DEPTH`] packets are
//! buffered and the depth is trimmed back when it grows (a burst, or a sender whose clock runs
//! fast), so delay stays small. A sender that restarts its numbering is followed.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::codec::FRAME_SAMPLES;
use super::rtp::SequenceExtender;

/// Packets buffered before playout starts (40 ms of 20 ms packets).
pub const TARGET_DEPTH: usize = 2;
/// Depth above which the oldest packets are dropped to bring delay back down.
const MAX_DEPTH: usize = 10;
/// A gap of more sequence numbers than this is a restart, not loss to conceal packet by packet.
const MAX_GAP: u64 = 25;
/// Consecutive "late" packets in sequence after which the sender is taken to have restarted
/// its numbering.
const RESTART_RUN: u32 = 3;

/// A buffered packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffered {
    /// RTP timestamp.
    pub timestamp: u32,
    /// Encoded audio.
    pub payload: Bytes,
    /// Duration in samples at 48 kHz (0 for a sequence number used by something else, such as
    /// a DTMF event).
    pub duration: usize,
}

/// What one tick plays out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// A packet, in order.
    Packet(Buffered),
    /// Audio that never arrived, to conceal.
    Lost {
        /// Its duration in samples at 48 kHz.
        duration: usize,
        /// The payload of the packet after it, when that one is here: its in-band FEC data
        /// (Opus) may hold the lost audio.
        next: Option<Bytes>,
    },
}

/// What became of an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Buffered for playout.
    Buffered,
    /// Already buffered or played.
    Duplicate,
    /// Its turn to play has passed.
    Late,
}

/// Counters of the playout side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets played out.
    pub played: u64,
    /// Packets concealed because they never came.
    pub lost: u64,
    /// Packets dropped as duplicates.
    pub duplicates: u64,
    /// Packets dropped because they came after their turn.
    pub late: u64,
    /// Packets dropped to bring the delay back down.
    pub trimmed: u64,
}

/// The jitter buffer of one received stream.
#[derive(Debug, Default)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, Buffered>,
    sequence: SequenceExtender,
    next: Option<u64>,
    last_duration: usize,
    /// Samples owed to playout: a frame per tick, less what was played.
    credit: isize,
    /// The last late packet and how many came in sequence.
    late_run: Option<(u64, u32)>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self {
            last_duration: FRAME_SAMPLES,
            ..Self::default()
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Inserts a received packet.
    pub fn insert(&mut self, seq: u16, packet: Buffered) -> Inserted {
        let ext = self.sequence.extend(seq);
        if self.next.is_some_and(|next| ext < next) {
            if !self.is_restart(ext) {
                self.stats.late += 1;
                return Inserted::Late;
            }
            // The sender started numbering again: follow it.
            self.packets.clear();
            self.next = None;
            self.late_run = None;
            self.sequence.restart_at(ext);
        }
        if self.packets.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Inserted::Duplicate;
        }
        self.sequence.record(ext);
        self.packets.insert(ext, packet);
        self.trim();
        Inserted::Buffered
    }

    /// Whether a late packet continues a run of late packets in sequence long enough to be a
    /// numbering restart rather than stragglers.
    fn is_restart(&mut self, ext: u64) -> bool {
        let run = match self.late_run {
            Some((last, count)) if ext == last + 1 => count + 1,
            _ => 1,
        };
        self.late_run = Some((ext, run));
        run >= RESTART_RUN
    }

    fn trim(&mut self) {
        while self.packets.len() > MAX_DEPTH {
            if let Some((seq, _)) = self.packets.pop_first() {
                self.stats.trimmed += 1;
                self.next = Some(seq + 1);
            }
        }
    }

    /// Plays out one tick: appends packets in order (and losses to conceal) to `out`, 20 ms of
    /// audio on average, or nothing while a longer packet played earlier still covers this tick.
    pub fn pop(&mut self, out: &mut Vec<Playout>) {
        let mut next = match self.next {
            Some(next) => next,
            None if self.packets.len() >= TARGET_DEPTH => match self.packets.keys().next() {
                Some(first) => *first,
                None => return,
            },
            None => return,
        };
        self.credit += FRAME_SAMPLES as isize;
        while self.credit > 0 {
            if let Some(packet) = self.packets.remove(&next) {
                if packet.duration > 0 {
                    self.last_duration = packet.duration;
                }
                self.credit -= packet.duration as isize;
                self.stats.played += 1;
                out.push(Playout::Packet(packet));
                next += 1;
                continue;
            }
            let Some(&later) = self.packets.keys().next() else {
                // Nothing buffered: an underrun, not (yet) a loss; no debt builds up meanwhile.
                self.credit = 0;
                break;
            };
            if later - next > MAX_GAP {
                // The sender jumped (or a long outage): resume at what we have.
                self.stats.lost += later - next;
                next = later;
                continue;
            }
            self.stats.lost += 1;
            self.credit -= self.last_duration as isize;
            out.push(Playout::Lost {
                duration: self.last_duration,
                next: self.packets.get(&(next + 1)).map(|p| p.payload.clone()),
            });
            next += 1;
        }
        self.next = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(n: u8) -> Buffered {
        Buffered {
            timestamp: u32::from(n) * 960,
            payload: Bytes::from(vec![n]),
            duration: FRAME_SAMPLES,
        }
    }

    fn play(buffer: &mut JitterBuffer) -> Vec<Playout> {
        let mut out = Vec::new();
        buffer.pop(&mut out);
        out
    }

    fn ids(out: &[Playout]) -> Vec<i32> {
        out.iter()
            .map(|p| match p {
                Playout::Packet(b) => i32::from(b.payload[0]),
                Playout::Lost { .. } => -1,
            })
            .collect()
    }

    #[test]
    fn waits_for_depth_then_plays_one_frame_per_tick() {
        let mut buffer = JitterBuffer::new();
        buffer.insert(10, packet(10));
        assert!(play(&mut buffer).is_empty());
        buffer.insert(11, packet(11));
        assert_eq!(ids(&play(&mut buffer)), [10]);
        assert_eq!(ids(&play(&mut buffer)), [11]);
        assert!(play(&mut buffer).is_empty()); // underrun, not loss
        assert_eq!(buffer.stats().lost, 0);
    }

    #[test]
    fn reorders_drops_duplicates_and_late_packets() {
        let mut buffer = JitterBuffer::new();
        assert_eq!(buffer.insert(2, packet(2)), Inserted::Buffered);
        assert_eq!(buffer.insert(1, packet(1)), Inserted::Buffered);
        assert_eq!(buffer.insert(1, packet(1)), Inserted::Duplicate);
        assert_eq!(ids(&play(&mut buffer)), [1]);
        assert_eq!(buffer.insert(1, packet(1)), Inserted::Late);
        assert_eq!(ids(&play(&mut buffer)), [2]);
        let stats = buffer.stats();
        assert_eq!((stats.duplicates, stats.late, stats.played), (1, 1, 2));
    }

    #[test]
    fn a_gap_followed_by_later_packets_is_concealed() {
        let mut buffer = JitterBuffer::new();
        for n in [1, 2, 4, 5] {
            buffer.insert(n, packet(n as u8));
        }
        let played: Vec<Playout> = (0..4).flat_map(|_| play(&mut buffer)).collect();
        assert_eq!(ids(&played), [1, 2, -1, 4]);
        assert_eq!(buffer.stats().lost, 1);
        // The loss comes with the packet after it, for its FEC data.
        assert_eq!(
            played[2],
            Playout::Lost {
                duration: FRAME_SAMPLES,
                next: Some(packet(4).payload)
            }
        );
        // Two in a row: the first has no next packet to recover from.
        let mut buffer = JitterBuffer::new();
        for n in [1, 2, 5, 6] {
            buffer.insert(n, packet(n as u8));
        }
        let played: Vec<Playout> = (0..4).flat_map(|_| play(&mut buffer)).collect();
        assert!(matches!(&played[2], Playout::Lost { next: None, .. }));
        assert!(matches!(&played[3], Playout::Lost { next: Some(_), .. }));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut buffer = JitterBuffer::new();
        for seq in [65534u16, 65535, 0, 1] {
            buffer.insert(seq, packet(seq as u8));
        }
        let played: Vec<i32> = (0..4).flat_map(|_| ids(&play(&mut buffer))).collect();
        assert_eq!(played, [254, 255, 0, 1]);
        assert_eq!(buffer.stats().lost, 0);
    }

    #[test]
    fn short_packets_fill_a_frame_and_skipped_numbers_cost_nothing() {
        let mut buffer = JitterBuffer::new();
        let half = |n: u8| Buffered {
            duration: FRAME_SAMPLES / 2,
            ..packet(n)
        };
        buffer.insert(1, half(1));
        buffer.insert(2, half(2));
        buffer.insert(
            3,
            Buffered {
                duration: 0,
                ..packet(3)
            },
        );
        buffer.insert(4, packet(4));
        assert_eq!(ids(&play(&mut buffer)), [1, 2]);
        assert_eq!(ids(&play(&mut buffer)), [3, 4]);
    }

    #[test]
    fn long_packets_cover_several_ticks() {
        let mut buffer = JitterBuffer::new();
        let long = |n: u8| Buffered {
            duration: 3 * FRAME_SAMPLES,
            ..packet(n)
        };
        for n in 1..=3 {
            buffer.insert(n, long(n as u8));
        }
        let played: Vec<Vec<i32>> = (0..7).map(|_| ids(&play(&mut buffer))).collect();
        assert_eq!(
            played,
            [vec![1], vec![], vec![], vec![2], vec![], vec![], vec![3]]
        );
    }

    #[test]
    fn a_numbering_restart_is_followed() {
        let mut buffer = JitterBuffer::new();
        for n in 1000..1003u16 {
            buffer.insert(n, packet(n as u8));
        }
        for _ in 0..3 {
            play(&mut buffer);
        }
        // The sender restarts at 10: the first two look late, the third confirms the restart.
        assert_eq!(buffer.insert(10, packet(10)), Inserted::Late);
        assert_eq!(buffer.insert(11, packet(11)), Inserted::Late);
        assert_eq!(buffer.insert(12, packet(12)), Inserted::Buffered);
        buffer.insert(13, packet(13));
        let played: Vec<i32> = (0..2).flat_map(|_| ids(&play(&mut buffer))).collect();
        assert_eq!(played, [12, 13]);
    }

    #[test]
    fn delay_is_trimmed_and_jumps_resync() {
        let mut buffer = JitterBuffer::new();
        for n in 0..30u16 {
            buffer.insert(n, packet(n as u8));
        }
        assert_eq!(buffer.stats().trimmed, 20);
        assert_eq!(ids(&play(&mut buffer)), [20]);
        buffer.insert(1000, packet(99));
        for n in 21..30 {
            assert_eq!(ids(&play(&mut buffer)), [n]);
        }
        assert_eq!(ids(&play(&mut buffer)), [99]);
    }
}
