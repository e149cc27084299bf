//! What the load generator measures: per received stream, loss, late packets, interarrival
//! jitter, sequence and timestamp continuity and the interval between packets; per sent stream,
//! how far the generator's own sending strays from 20 ms; per call, setup times. Streams add to
//! one [`Collector`] only while a measurement window is open.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jingle_gateway::media::rtp::SequenceExtender;

/// A packet later than this after its due time (from the stream's best transit) counts as late:
/// a jitter buffer of this depth would have dropped it.
const LATE_AFTER: Duration = Duration::from_millis(60);

/// Buckets: 10 µs wide up to 10 ms, 1 ms wide up to 1 s, 100 ms wide up to 60 s (the last one
/// also holds what lies beyond).
const BUCKETS: usize = 1000 + 990 + 590 + 1;

fn bucket_of(us: u64) -> usize {
    match us {
        0..10_000 => (us / 10) as usize,
        10_000..1_000_000 => 1000 + ((us - 10_000) / 1000) as usize,
        _ => (1990 + ((us - 1_000_000) / 100_000) as usize).min(BUCKETS - 1),
    }
}

/// The lower bound of bucket `i`, in microseconds.
fn bucket_start(i: usize) -> u64 {
    let i = i as u64;
    match i {
        0..1000 => i * 10,
        1000..1990 => 10_000 + (i - 1000) * 1000,
        _ => 1_000_000 + (i - 1990) * 100_000,
    }
}

/// A histogram of durations, with percentiles (to the bucket's lower bound).
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }
}

impl Histogram {
    /// Adds one value.
    pub fn add(&mut self, value: Duration) {
        self.counts[bucket_of(value.as_micros() as u64)] += 1;
        self.total += 1;
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
    }

    /// The value below which `p` (0 to 1) of the values lie, if any were added.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_start(i)));
            }
        }
        None
    }
}

/// Everything measured in one window, over all calls.
#[derive(Default)]
pub struct Collector {
    measuring: AtomicBool,
    /// RTP packets the generator sent.
    pub sent: AtomicU64,
    /// RTP packets received from the gateway.
    pub received: AtomicU64,
    /// Packets the sequence numbers say should have come.
    pub expected: AtomicU64,
    /// Packets that came after a later one, or more than 60 ms after their due time.
    pub late: AtomicU64,
    /// Consecutive packets whose timestamps do not advance by whole frames.
    pub timestamp_errors: AtomicU64,
    /// Streams that changed SSRC or restarted their sequence numbers.
    pub restarts: AtomicU64,
    /// Sum over streams of their RFC 3550 jitter at their last packet, in microseconds.
    pub jitter_us: AtomicU64,
    /// Streams that reported a jitter figure.
    pub jitter_streams: AtomicU64,
    /// |interval − what the timestamps say| between consecutive received packets.
    pub received_intervals: Mutex<Histogram>,
    /// |interval − 20 ms| between the generator's own sends.
    pub sent_intervals: Mutex<Histogram>,
    /// Call setup: session-initiate sent → session-accept received.
    pub to_accept: Mutex<Histogram>,
    /// session-accept received → DTLS-SRTP up.
    pub to_secured: Mutex<Histogram>,
    /// session-accept received → first RTP packet received.
    pub to_media: Mutex<Histogram>,
}

impl Collector {
    /// Opens or closes the measurement window.
    pub fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Ordering::Relaxed);
    }

    /// Whether a window is open.
    pub fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    /// Adds a stream's figures for a window (called by each stream as the window closes).
    pub fn add_stream(&self, stream: &mut StreamWindow) {
        let add = |counter: &AtomicU64, value: u64| counter.fetch_add(value, Ordering::Relaxed);
        add(&self.received, stream.received);
        add(&self.expected, stream.expected);
        add(&self.late, stream.late);
        add(&self.timestamp_errors, stream.timestamp_errors);
        add(&self.restarts, stream.restarts);
        if let Some(jitter) = stream.jitter_us {
            add(&self.jitter_us, jitter);
            add(&self.jitter_streams, 1);
        }
        if let Ok(mut h) = self.received_intervals.lock() {
            h.merge(&stream.intervals);
        }
        *stream = StreamWindow::default();
    }

    /// Packet loss as a share of what was expected.
    pub fn loss(&self) -> f64 {
        let expected = self.expected.load(Ordering::Relaxed);
        let received = self.received.load(Ordering::Relaxed);
        if expected == 0 {
            0.0
        } else {
            expected.saturating_sub(received) as f64 / expected as f64
        }
    }
}

/// One stream's figures within the current window.
#[derive(Default)]
pub struct StreamWindow {
    received: u64,
    expected: u64,
    late: u64,
    timestamp_errors: u64,
    restarts: u64,
    jitter_us: Option<u64>,
    intervals: Histogram,
}

/// Checks one received RTP stream.
pub struct StreamCheck {
    clock_rate: f64,
    frame_units: u32,
    ssrc: Option<u32>,
    sequence: SequenceExtender,
    /// (extended sequence, timestamp, arrival) of the highest packet so far.
    last: Option<(u64, u32, Instant)>,
    /// Smallest transit (arrival − timestamp time) seen, in seconds.
    best_transit: Option<f64>,
    epoch: Instant,
    previous_transit: Option<f64>,
    jitter: f64,
    /// The current window's figures.
    pub window: StreamWindow,
}

impl StreamCheck {
    /// A check for a stream at `clock_rate` in frames of `frame_units`.
    pub fn new(clock_rate: u32, frame_units: u32) -> Self {
        Self {
            clock_rate: f64::from(clock_rate),
            frame_units,
            ssrc: None,
            sequence: SequenceExtender::default(),
            last: None,
            best_transit: None,
            epoch: Instant::now(),
            previous_transit: None,
            jitter: 0.0,
            window: StreamWindow::default(),
        }
    }

    /// One received packet; `measuring` says whether it counts.
    pub fn packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, at: Instant, measuring: bool) {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() && measuring {
                self.window.restarts += 1;
            }
            *self = Self {
                window: std::mem::take(&mut self.window),
                ..Self::new(self.clock_rate as u32, self.frame_units)
            };
            self.ssrc = Some(ssrc);
        }
        let ext = self.sequence.extend(seq);
        let transit =
            at.duration_since(self.epoch).as_secs_f64() - f64::from(timestamp) / self.clock_rate;
        if let Some(previous) = self.previous_transit {
            // RFC 3550 A.8, in seconds (timestamp wrap is rare enough in a benchmark).
            self.jitter += ((transit - previous).abs() - self.jitter) / 16.0;
        }
        self.previous_transit = Some(transit);
        let best = *self.best_transit.get_or_insert(transit);
        if transit < best {
            self.best_transit = Some(transit);
        }
        let Some((last_ext, last_ts, last_at)) = self.last else {
            self.sequence.record(ext);
            self.last = Some((ext, timestamp, at));
            if measuring {
                self.window.received += 1;
                self.window.expected += 1;
            }
            return;
        };
        if !measuring {
            if ext > last_ext {
                self.sequence.record(ext);
                self.last = Some((ext, timestamp, at));
            }
            return;
        }
        self.window.received += 1;
        self.window.jitter_us = Some((self.jitter * 1e6) as u64);
        // Reordered (it came after a later one), or too long after its due time.
        if ext <= last_ext || transit - best > LATE_AFTER.as_secs_f64() {
            self.window.late += 1;
        }
        if ext <= last_ext {
            return;
        }
        self.window.expected += ext - last_ext;
        if ext == last_ext + 1 {
            let units = timestamp.wrapping_sub(last_ts);
            if units == 0 || units % self.frame_units != 0 || units > self.clock_rate as u32 * 60 {
                self.window.timestamp_errors += 1;
            } else {
                let due = Duration::from_secs_f64(f64::from(units) / self.clock_rate);
                let took = at.duration_since(last_at);
                self.window.intervals.add(took.abs_diff(due));
            }
        }
        self.sequence.record(ext);
        self.last = Some((ext, timestamp, at));
    }
}

/// Watches the generator's own pacing: how far each send strays from 20 ms after the last.
#[derive(Default)]
pub struct SendPacing {
    last: Option<Instant>,
    /// The current window's figures.
    pub intervals: Histogram,
}

impl SendPacing {
    /// A packet was sent at `at`.
    pub fn sent(&mut self, at: Instant, measuring: bool) {
        if let (Some(last), true) = (self.last, measuring) {
            self.intervals
                .add(at.duration_since(last).abs_diff(Duration::from_millis(20)));
        }
        self.last = Some(at);
    }
}
