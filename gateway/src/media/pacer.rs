//! Send pacing on the monotonic clock: one frame per packet time. After a stall at most
//! [`MAX_CATCH_UP`] frames go out back to back; the rest are skipped (their time passes as a gap
//! in the RTP timestamps) rather than sent as a burst.

use std::time::{Duration, Instant};

/// Frames sent back to back after a stall, at most.
pub const MAX_CATCH_UP: u64 = 3;

/// What is due at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Frames to produce and send now.
    pub send: u64,
    /// Frames whose time passed during a stall: skipped.
    pub skipped: u64,
}

/// Paces frames at a fixed packet time from a start instant.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    ptime: Duration,
    done: u64,
}

impl Pacer {
    /// Frames every `ptime` from `start` (the first is due at `start`).
    pub fn new(start: Instant, ptime: Duration) -> Self {
        Self {
            start,
            ptime,
            done: 0,
        }
    }

    /// When the next frame is due.
    pub fn next_deadline(&self) -> Instant {
        self.start + self.ptime * u32::try_from(self.done).unwrap_or(u32::MAX)
    }

    /// Frames due at `now`, counted as done.
    pub fn due(&mut self, now: Instant) -> Due {
        let elapsed = now.saturating_duration_since(self.start);
        let total = (elapsed.as_nanos() / self.ptime.as_nanos().max(1)) as u64 + 1;
        let behind = total.saturating_sub(self.done);
        let skipped = behind.saturating_sub(MAX_CATCH_UP);
        let send = behind - skipped;
        self.done += behind;
        Due { send, skipped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    #[test]
    fn one_frame_per_packet_time() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, PTIME);
        assert_eq!(
            pacer.due(start),
            Due {
                send: 1,
                skipped: 0
            }
        );
        assert_eq!(pacer.next_deadline(), start + PTIME);
        assert_eq!(
            pacer.due(start + Duration::from_millis(5)),
            Due {
                send: 0,
                skipped: 0
            }
        );
        assert_eq!(
            pacer.due(start + PTIME),
            Due {
                send: 1,
                skipped: 0
            }
        );
        assert_eq!(
            pacer.due(start + Duration::from_millis(41)),
            Due {
                send: 1,
                skipped: 0
            }
        );
    }

    #[test]
    fn a_stall_catches_up_a_little_and_skips_the_rest() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, PTIME);
        pacer.due(start);
        // 200 ms late: 10 frames were due.
        assert_eq!(
            pacer.due(start + Duration::from_millis(200)),
            Due {
                send: 3,
                skipped: 7
            }
        );
        assert_eq!(pacer.next_deadline(), start + Duration::from_millis(220));
        assert_eq!(
            pacer.due(start + Duration::from_millis(220)),
            Due {
                send: 1,
                skipped: 0
            }
        );
    }
}
