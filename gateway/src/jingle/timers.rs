//! Named timers in one small table per session; the next wake-up is the earliest entry.

use std::time::Instant;

/// A session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// XEP-0353: `<proceed/>` was sent; the `session-initiate` must follow. For a call we
    /// place: the callee must answer.
    Ring,
    /// `session-initiate` received; the caller must acknowledge our `session-accept`.
    Answer,
    /// The call's longest allowed duration.
    MaxDuration,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::Ring, Timer::Answer, Timer::MaxDuration];

    fn index(self) -> usize {
        match self {
            Timer::Ring => 0,
            Timer::Answer => 1,
            Timer::MaxDuration => 2,
        }
    }
}

/// Deadlines of a session's timers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timers {
    deadlines: [Option<Instant>; 3],
}

impl Timers {
    /// Arms `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.deadlines[timer.index()] = Some(at);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.deadlines[timer.index()] = None;
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }

    /// The earliest timer due at `now`, if any.
    pub fn expired(&self, now: Instant) -> Option<Timer> {
        Timer::ALL
            .into_iter()
            .filter_map(|t| self.deadlines[t.index()].map(|at| (at, t)))
            .filter(|(at, _)| *at <= now)
            .min_by_key(|(at, _)| *at)
            .map(|(_, t)| t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_wins() {
        let start = Instant::now();
        let mut timers = Timers::default();
        assert_eq!(timers.next(), None);
        timers.set(Timer::MaxDuration, start + Duration::from_secs(100));
        timers.set(Timer::Answer, start + Duration::from_secs(10));
        assert_eq!(timers.next(), Some(start + Duration::from_secs(10)));
        assert_eq!(timers.expired(start + Duration::from_secs(9)), None);
        assert_eq!(
            timers.expired(start + Duration::from_secs(200)),
            Some(Timer::Answer)
        );
        timers.stop(Timer::Answer);
        assert_eq!(
            timers.expired(start + Duration::from_secs(200)),
            Some(Timer::MaxDuration)
        );
    }
}
