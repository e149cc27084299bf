//! Process-wide media counters, shared by every call (atomics, no locks). They show that calls
//! release what they hold (`legs_open` returns to zero) and what hostile or broken traffic was
//! dropped.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counters of the media engine.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// Media legs holding resources (ICE agent, DTLS, SRTP, tasks) right now.
    pub legs_open: AtomicI64,
    /// Media legs started since the process began.
    pub legs_started: AtomicU64,
    /// RTP packets received and authenticated.
    pub rtp_in: AtomicU64,
    /// RTP packets sent.
    pub rtp_out: AtomicU64,
    /// Bytes of RTP packets received and authenticated (as they came, SRTP included).
    pub rtp_bytes_in: AtomicU64,
    /// Bytes of RTP packets sent (SRTP included).
    pub rtp_bytes_out: AtomicU64,
    /// RTCP packets received and authenticated.
    pub rtcp_in: AtomicU64,
    /// Packets dropped because SRTP/SRTCP authentication failed.
    pub auth_failures: AtomicU64,
    /// Packets dropped as replays.
    pub replays: AtomicU64,
    /// Datagrams that were neither DTLS, RTP nor RTCP, or too short to be: dropped.
    pub garbage: AtomicU64,
    /// Remote candidates refused by policy (address family, loopback, private, count).
    pub candidates_refused: AtomicU64,
    /// Checks sent to addresses that had not answered (paid by their call's signalling).
    pub unanswered_sent: AtomicU64,
    /// Datagrams dropped to or from addresses that had not answered or proved they are a call's
    /// peer (media and junk, checks over budget).
    pub unanswered_dropped: AtomicU64,
    /// Payloads bridges passed between two calls as they were (same codec).
    pub bridge_forwarded: AtomicU64,
    /// 20 ms frames bridges passed decoded, to be encoded in the other call's codec.
    pub bridge_transcoded: AtomicU64,
}

impl MediaStats {
    /// Adds one to `counter`.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `amount` to `counter`.
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Reads `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Media legs holding resources now.
    pub fn open_legs(&self) -> i64 {
        self.legs_open.load(Ordering::Relaxed)
    }
}

/// Per-call media figures.
#[derive(Debug, Clone, Copy)]
pub struct AudioSummary {
    /// RTP packets received (authenticated).
    pub received: u64,
    /// RTP packets expected from the sequence numbers.
    pub expected: u64,
    /// RTP packets sent.
    pub sent: u64,
    /// Lost packets concealed at playout (made up from the audio before them).
    pub concealed: u64,
    /// Lost packets recovered at playout from the next packet's in-band FEC data.
    pub fec_recovered: u64,
    /// Packets that came after their turn.
    pub late: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets dropped to keep the delay down.
    pub trimmed: u64,
    /// Interarrival jitter.
    pub jitter_ms: f64,
    /// Packets of payload types not offered.
    pub unknown_payload_types: u64,
    /// Audio packets in another codec of the offer than the answered one (transcoded).
    pub foreign_codec: u64,
    /// The last round-trip time the peer's RTCP reports gave.
    pub round_trip_ms: Option<f64>,
}
