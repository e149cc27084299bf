//! Named timers in one small table per session; the next wake-up is the earliest entry.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use jid::FullJid;

use crate::protocol::jingle::Sid;
use crate::types::CallId;

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

    /// Whether some timer is armed for exactly `at`.
    pub fn is_armed_at(&self, at: Instant) -> bool {
        self.deadlines.contains(&Some(at))
    }

    /// The deadlines armed.
    pub fn armed(&self) -> impl Iterator<Item = Instant> + '_ {
        self.deadlines.iter().flatten().copied()
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

/// Whose timers a deadline belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// A session.
    Session(CallId),
    /// A caller's proposal we proceeded with.
    Proposal(FullJid, Sid),
    /// A proposal of ours, by its sid.
    Outgoing(Sid),
}

/// Every deadline armed in the core, earliest first, so that the next wake-up is found without
/// looking at every session. A timer stopped, moved or whose owner is gone leaves its entry
/// behind; such entries are dropped when they come to the front, or all at once when they
/// outnumber the live ones.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, Owner)>>,
}

impl Deadlines {
    /// Notes that `owner` has a timer armed for `at`.
    pub fn push(&mut self, at: Instant, owner: Owner) {
        self.heap.push(Reverse((at, owner)));
    }

    /// The earliest deadline still armed (`armed` says whether `owner` has a timer at `at`).
    pub fn next(&mut self, armed: impl Fn(&Owner, Instant) -> bool) -> Option<Instant> {
        while let Some(Reverse((at, owner))) = self.heap.peek() {
            if armed(owner, *at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// The owners with a deadline due at `now` still armed, each once, in deadline order; their
    /// entries are removed.
    pub fn due(&mut self, now: Instant, armed: impl Fn(&Owner, Instant) -> bool) -> Vec<Owner> {
        let mut due: Vec<Owner> = Vec::new();
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, owner))) = self.heap.pop() else {
                break;
            };
            if armed(&owner, at) && !due.contains(&owner) {
                due.push(owner);
            }
        }
        due
    }

    /// Drops the entries no longer armed when there are more than `live` (the timers armed)
    /// allows for, so that a peer starting and ending calls cannot make the index grow.
    pub fn compact(&mut self, live: usize, armed: impl Fn(&Owner, Instant) -> bool) {
        if self.heap.len() > 2 * live + 64 {
            self.heap.retain(|Reverse((at, owner))| armed(owner, *at));
        }
    }

    /// Entries kept, stale ones included.
    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.heap.len()
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

    #[test]
    fn deadlines_skip_what_is_no_longer_armed() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut deadlines = Deadlines::default();
        for n in 0..100 {
            deadlines.push(at(n), Owner::Session(CallId(n)));
        }
        // Only the even calls still have their timer.
        let armed =
            |owner: &Owner, _: Instant| matches!(owner, Owner::Session(CallId(n)) if n % 2 == 0);
        assert_eq!(deadlines.next(armed), Some(at(0)));
        let due = deadlines.due(at(3), armed);
        assert_eq!(due, [Owner::Session(CallId(0)), Owner::Session(CallId(2))]);
        assert_eq!(
            deadlines.next(armed),
            Some(at(4)),
            "the odd 3 was dropped on the way"
        );
        deadlines.compact(20, armed);
        assert_eq!(deadlines.entries(), 96, "below the bound nothing is swept");
        deadlines.compact(5, armed);
        assert_eq!(deadlines.entries(), 48, "the stale entries are swept");
    }
}
